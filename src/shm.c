/*
 * shm.c -- the shared region: header, zones, robust locks, member table.
 * See shm.h for the contract. No lua.h here.
 */
#define _GNU_SOURCE /* memfd_create, F_ADD_SEALS */
/* scripts/lint force-includes lua.h ahead of this file, which settles the
 * glibc feature macros without _GNU_SOURCE; have them read again (a no-op
 * in a normal build, where nothing came before). */
#undef _FEATURES_H
#include <features.h>
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHM_MAGIC 0x4d485342u /* "BSHM" */
#define SHM_VERSION 1u

struct shm_zone_ent {
  char name[SHM_NAME_MAX + 1];
  uint64_t off;
  uint64_t size;
  _Atomic uint32_t ready;  /* init ran to the end */
};

struct shm_hdr {
  uint32_t magic;
  uint32_t version;
  uint64_t size;
  uint64_t layout;         /* sizeof this header: another build differs */
  uint64_t nonce;
  int32_t creator;
  uint32_t nzones;
  pthread_mutex_t lock;    /* zones, the break, member claims */
  uint64_t brk;            /* next free byte */
  uint64_t next_instance;  /* under the lock */
  _Atomic uint64_t recoveries;
  struct shm_zone_ent zones[SHM_ZONES_MAX];
  struct shm_member members[SHM_MEMBERS];
};

static struct shm_hdr *shm_hdr(const struct shm *r) {
  return (struct shm_hdr *)r->base;
}

static uint64_t shm_align(uint64_t n) {
  return (n + SHM_ALIGN - 1) & ~(uint64_t)(SHM_ALIGN - 1);
}

/* --- robust locks ----------------------------------------------------- */

int shm_mutex_init(pthread_mutex_t *m) {
  pthread_mutexattr_t a;
  int rc = pthread_mutexattr_init(&a);
  if (rc != 0)
    return -rc;
  rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  if (rc == 0)
    rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  if (rc == 0)
    rc = pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  return -rc;
}

/* EOWNERDEAD: we hold the lock but the state it guards may be half-done.
 * Marking it consistent first means a crash of ours during the repair is
 * itself recovered by the next locker (who repairs again). */
int shm_lock(pthread_mutex_t *m) {
  int rc = pthread_mutex_lock(m);
  if (rc == 0)
    return 0;
  if (rc == EOWNERDEAD) {
    rc = pthread_mutex_consistent(m);
    return rc == 0 ? SHM_LOCK_RECOVERED : -rc;
  }
  return -rc;
}

void shm_unlock(pthread_mutex_t *m) {
  pthread_mutex_unlock(m);
}

/* The region lock: nothing to repair (see shm.h), only counted. */
static int shm_lock_region(const struct shm *r) {
  struct shm_hdr *h = shm_hdr(r);
  int rc = shm_lock(&h->lock);
  if (rc == SHM_LOCK_RECOVERED) {
    atomic_fetch_add(&h->recoveries, 1);
    rc = 0;
  }
  return rc;
}

uint64_t shm_lock_recoveries(const struct shm *r) {
  return atomic_load(&shm_hdr(r)->recoveries);
}

/* --- create / attach -------------------------------------------------- */

static int shm_map(struct shm *r, int fd, size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    return -errno;
  r->base = p;
  r->size = size;
  r->fd = fd;
  return 0;
}

static int shm_init_header(struct shm *r) {
  struct shm_hdr *h = shm_hdr(r);
  uint64_t nonce = 0;
  if (getrandom(&nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce)
    return errno ? -errno : -EIO;
  int rc = shm_mutex_init(&h->lock);
  if (rc < 0)
    return rc;
  h->size = r->size;
  h->layout = sizeof *h;
  h->nonce = nonce;
  h->creator = (int32_t)getpid();
  h->brk = shm_align(sizeof *h);
  h->next_instance = 1;
  h->version = SHM_VERSION;
  h->magic = SHM_MAGIC; /* last: an attacher checks it first */
  return 0;
}

int shm_create(struct shm *r, size_t size) {
  long page = sysconf(_SC_PAGESIZE);
  if (size == 0)
    size = SHM_DEFAULT_SIZE;
  if (size < SHM_MIN_SIZE)
    size = SHM_MIN_SIZE;
  size = (size + (size_t)page - 1) & ~((size_t)page - 1);
  int fd = memfd_create("berth.shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return -errno;
  int rc = 0;
  /* Sealed: a process that shrank it would make everyone else SIGBUS. */
  if (ftruncate(fd, (off_t)size) != 0 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    rc = -errno;
  if (rc == 0)
    rc = shm_map(r, fd, size);
  if (rc == 0 && (rc = shm_init_header(r)) < 0)
    munmap(r->base, size);
  if (rc < 0) {
    close(fd);
    r->base = NULL;
    r->fd = -1;
  }
  return rc;
}

static int shm_check_header(const struct shm *r) {
  const struct shm_hdr *h = shm_hdr(r);
  if (r->size < sizeof *h || h->magic != SHM_MAGIC ||
      h->version != SHM_VERSION || h->layout != sizeof *h ||
      h->size != r->size)
    return -EPROTO;
  return 0;
}

int shm_attach(struct shm *r, int fd) {
  struct stat st;
  int rc = fstat(fd, &st) == 0 ? 0 : -errno;
  if (rc == 0 && (size_t)st.st_size < sizeof(struct shm_hdr))
    rc = -EPROTO;
  if (rc == 0)
    rc = shm_map(r, fd, (size_t)st.st_size);
  if (rc == 0 && (rc = shm_check_header(r)) < 0)
    munmap(r->base, r->size);
  if (rc < 0) {
    close(fd);
    r->base = NULL;
    r->size = 0;
    r->fd = -1;
  }
  return rc;
}

void shm_close(struct shm *r) {
  if (r->base != NULL)
    munmap(r->base, r->size);
  if (r->fd >= 0)
    close(r->fd);
  r->base = NULL;
  r->size = 0;
  r->fd = -1;
}

uint64_t shm_nonce(const struct shm *r) {
  return shm_hdr(r)->nonce;
}

pid_t shm_creator(const struct shm *r) {
  return (pid_t)shm_hdr(r)->creator;
}

/* --- zones ------------------------------------------------------------ */

static struct shm_zone_ent *shm_zone_find(struct shm_hdr *h,
                                          const char *name) {
  for (uint32_t i = 0; i < h->nzones; i++)
    if (strcmp(h->zones[i].name, name) == 0)
      return &h->zones[i];
  return NULL;
}

/* A new table entry and its memory. Ordering: the break moves first and
 * nzones last, so a death in between leaks the space and nothing else. */
static struct shm_zone_ent *shm_zone_new(struct shm_hdr *h, const char *name,
                                         size_t len, size_t size) {
  uint64_t need = shm_align(size);
  if (h->nzones >= SHM_ZONES_MAX || need < size || h->brk > h->size ||
      need > h->size - h->brk)
    return NULL;
  struct shm_zone_ent *z = &h->zones[h->nzones];
  memset(z, 0, sizeof *z);
  memcpy(z->name, name, len); /* len <= SHM_NAME_MAX: the caller checked */
  z->off = h->brk;
  z->size = size;
  h->brk += need;
  h->nzones++;
  return z;
}

/* (Re)build a zone that is not ready: a fresh one, or one whose creator
 * died (or failed) inside init. */
static int shm_zone_build(struct shm *r, struct shm_zone_ent *e,
                          shm_zone_init *init, void *arg) {
  int rc = 0;
  if (init != NULL)
    rc = init(shm_ptr(r, e->off), e->size, arg);
  if (rc == 0)
    atomic_store(&e->ready, 1);
  return rc;
}

int shm_zone(struct shm *r, const char *name, size_t size,
             shm_zone_init *init, void *arg, struct shm_zone *z) {
  size_t len = strlen(name);
  if (len == 0 || size == 0)
    return -EINVAL;
  if (len > SHM_NAME_MAX)
    return -ENAMETOOLONG;
  struct shm_hdr *h = shm_hdr(r);
  int rc = shm_lock_region(r);
  if (rc < 0)
    return rc;
  struct shm_zone_ent *e = shm_zone_find(h, name);
  z->created = 0;
  if (e == NULL && (e = shm_zone_new(h, name, len, size)) == NULL)
    rc = -ENOSPC;
  if (rc == 0 && !atomic_load(&e->ready)) {
    rc = shm_zone_build(r, e, init, arg);
    z->created = rc == 0;
  }
  if (rc == 0) {
    z->base = shm_ptr(r, e->off);
    z->size = (size_t)e->size;
  }
  shm_unlock(&h->lock);
  return rc;
}

/* --- members ---------------------------------------------------------- */

struct shm_member *shm_member(const struct shm *r, int slot) {
  if (slot < 0 || slot >= SHM_MEMBERS)
    return NULL;
  return &shm_hdr(r)->members[slot];
}

/* Is `tag` (never 0) the connection-id tag of a member that may still own
 * connections? Caller holds the region lock. */
static int shm_tag_taken(struct shm_hdr *h, uint64_t tag) {
  for (int i = 0; i < SHM_MEMBERS; i++) {
    struct shm_member *m = &h->members[i];
    if (atomic_load(&m->state) != SHM_FREE &&
        shm_id_tag(atomic_load(&m->instance)) == tag)
      return 1;
  }
  return 0;
}

/* The next instance number whose tag is neither 0 nor taken. At most
 * SHM_MEMBERS + 1 numbers are skipped. */
static uint64_t shm_next_instance(struct shm_hdr *h) {
  for (;;) {
    uint64_t inst = h->next_instance++;
    uint64_t tag = shm_id_tag(inst);
    if (tag != 0 && !shm_tag_taken(h, tag))
      return inst;
  }
}

static void shm_member_reset(struct shm_member *m, int worker, pid_t pid,
                             uint64_t instance) {
  atomic_store_explicit(&m->pid, (int32_t)pid, memory_order_relaxed);
  atomic_store_explicit(&m->worker, worker, memory_order_relaxed);
  atomic_store_explicit(&m->instance, instance, memory_order_relaxed);
  atomic_store_explicit(&m->bus_dropped, 0, memory_order_relaxed);
  atomic_store_explicit(&m->bus_sent, 0, memory_order_relaxed);
  atomic_store_explicit(&m->bus_received, 0, memory_order_relaxed);
  atomic_store_explicit(&m->bus_rejected, 0, memory_order_relaxed);
  atomic_store_explicit(&m->bus_mbox, 0, memory_order_relaxed);
}

int shm_member_claim(struct shm *r, int worker, pid_t pid) {
  struct shm_hdr *h = shm_hdr(r);
  int rc = shm_lock_region(r);
  if (rc < 0)
    return rc;
  rc = -ENOSPC;
  for (int i = 0; i < SHM_MEMBERS; i++) {
    struct shm_member *m = &h->members[i];
    if (atomic_load(&m->state) != SHM_FREE)
      continue;
    shm_member_reset(m, worker, pid, shm_next_instance(h));
    /* Published last (seq_cst store): a reader that sees the state sees
     * the fields. */
    atomic_store(&m->state, SHM_STARTING);
    rc = i;
    break;
  }
  shm_unlock(&h->lock);
  return rc;
}

/* Move `slot` from state `from` (any state but FREE when from < 0) to
 * `to`, under the region lock. */
static int shm_member_move(struct shm *r, int slot, int from, uint32_t to) {
  struct shm_member *m = shm_member(r, slot);
  if (m == NULL)
    return -EINVAL;
  int rc = shm_lock_region(r);
  if (rc < 0)
    return rc;
  uint32_t now = atomic_load(&m->state);
  if (from >= 0 ? now != (uint32_t)from : now == SHM_FREE)
    rc = -EINVAL;
  else
    atomic_store(&m->state, to);
  shm_unlock(&shm_hdr(r)->lock);
  return rc;
}

int shm_member_set_pid(struct shm *r, int slot, pid_t pid) {
  struct shm_member *m = shm_member(r, slot);
  if (m == NULL || atomic_load(&m->state) == SHM_FREE)
    return -EINVAL;
  atomic_store(&m->pid, (int32_t)pid);
  return 0;
}

int shm_member_live(struct shm *r, int slot) {
  return shm_member_move(r, slot, SHM_STARTING, SHM_LIVE);
}

int shm_member_retire(struct shm *r, int slot) {
  return shm_member_move(r, slot, SHM_LIVE, SHM_RETIRED);
}

int shm_member_free(struct shm *r, int slot) {
  return shm_member_move(r, slot, -1, SHM_FREE);
}

int shm_conn_owner(const struct shm *r, uint64_t id) {
  uint64_t tag = id >> SHM_ID_COUNTER_BITS;
  if (tag == 0 || tag >> SHM_ID_TAG_BITS != 0 ||
      (id & SHM_ID_COUNTER_MAX) == 0)
    return -ENOENT;
  struct shm_hdr *h = shm_hdr(r);
  for (int i = 0; i < SHM_MEMBERS; i++) {
    struct shm_member *m = &h->members[i];
    if (shm_state_receives(atomic_load(&m->state)) &&
        shm_id_tag(atomic_load(&m->instance)) == tag)
      return i;
  }
  return -ENOENT;
}
