/*
 * shm.h -- the shared region of one berth master and its workers: named
 * zones, robust process-shared locks, and the member table.
 *
 * Contract: no lua.h here; functions return 0 (or a count/index) on
 * success and -errno on failure.
 *
 * The region is one memfd (MFD_CLOEXEC, sealed against resizing) mapped
 * MAP_SHARED. The master (or a single process) creates it before it starts
 * workers; a worker maps it from a descriptor it is given. Each process
 * maps it at its own address, so nothing inside holds a pointer: every
 * reference is an offset from the region's base (or from a zone's base).
 * Pages are committed only when touched, so a large size costs address
 * space, not memory. The size is fixed at creation.
 *
 * Layout: a header (magic, layout version, size, a random nonce, the
 * region lock, the zone table, the member table), then zones, allocated by
 * bumping a break and never freed. A zone is created once by name; later
 * callers get the same zone (its creation size, whatever they ask for).
 * A zone is initialised by the creator's callback under the region lock,
 * so nobody can see it half-built; if the creator dies inside the
 * callback, the zone stays "not ready" and the next caller initialises it
 * again from scratch.
 *
 * Locks are pthread mutexes, PTHREAD_PROCESS_SHARED and ROBUST. When a
 * holder dies, the next locker gets EOWNERDEAD; shm_lock() then makes the
 * mutex consistent and returns SHM_LOCK_RECOVERED so the caller repairs
 * what the dead holder may have left half-done (each structure says what
 * it loses). The region lock itself guards only writes that are ordered so
 * that a death between any two of them leaves a usable state (at worst a
 * leaked piece of the break).
 *
 * Members: SHM_MEMBERS slots, one per live process of the group. A slot
 * is FREE, STARTING (claimed by the master for a worker it is spawning),
 * LIVE (the worker runs and receives bus messages), or RETIRED (draining
 * after a reload; still owns its connections and still receives). The
 * master frees a slot after reaping its process. Each claim gets an
 * instance id from a 64-bit counter in the region, unique over the
 * region's life. Slot fields are atomics: readers (the bus, the metrics
 * scrape) look at them without the lock.
 *
 * Connection ids (sock:id()) are tag << 39 | counter: the tag is the low
 * 24 bits of the owner's instance (never 0, and never the tag of another
 * live member: a claim skips instance numbers whose tag is taken), the
 * counter is the worker's own count of connections, 1 .. 2^39-1. An id is
 * therefore positive, below 2^63 (a Lua integer), unique among the
 * connections of all live members, and maps back to its owner's slot by
 * the tag. The split gives a worker 5.5e11 connections (127 days at 50,000
 * a second) and the group 16.7 million instances before a tag repeats --
 * and a repeated tag is only ever that of a member long dead.
 */
#ifndef BERTH_SHM_H
#define BERTH_SHM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SHM_DEFAULT_SIZE ((size_t)256 << 20) /* address space, not memory */
#define SHM_MIN_SIZE ((size_t)1 << 20)
#define SHM_MEMBERS 128    /* 64 workers, each replaced during a reload */
#define SHM_ZONES_MAX 64
#define SHM_NAME_MAX 63    /* bytes in a zone name */
#define SHM_ALIGN 64       /* zones start on a cache line */

/* Process-local handle of a mapped region. */
struct shm {
  unsigned char *base;
  size_t size;
  int fd;
};

#define SHM_INIT {NULL, 0, -1}

/* Create a region of `size` bytes (0: SHM_DEFAULT_SIZE), rounded up to a
 * page. The handle owns the memfd (shm_fd gives it to pass on). */
int shm_create(struct shm *r, size_t size);
/* Map the region behind `fd`; the handle takes the descriptor over (it is
 * closed by shm_close, and on failure). -EPROTO when it is not a berth
 * region of this layout version (a worker from another build). */
int shm_attach(struct shm *r, int fd);
/* Unmap and close; the region lives on while any process maps it. */
void shm_close(struct shm *r);

static inline int shm_fd(const struct shm *r) { return r->fd; }
static inline void *shm_ptr(const struct shm *r, uint64_t off) {
  return r->base + off;
}
static inline uint64_t shm_off(const struct shm *r, const void *p) {
  return (uint64_t)((const unsigned char *)p - r->base);
}
/* The region's random 64-bit nonce (names of the bus sockets). */
uint64_t shm_nonce(const struct shm *r);
/* The pid of the process that created the region. */
pid_t shm_creator(const struct shm *r);

/* --- zones ------------------------------------------------------------ */

/* Builds a fresh zone's contents (memory may hold garbage from a creator
 * that died half-way). Runs under the region lock: keep it short, do not
 * call shm_* from it. 0 or -errno (the zone then stays not ready). */
typedef int shm_zone_init(void *zone, size_t size, void *arg);

struct shm_zone {
  void *base;     /* in this process */
  size_t size;    /* as created */
  int created;    /* 1 when this call ran `init` */
};

/* Find the zone `name` (1..SHM_NAME_MAX bytes) or create it with `size`
 * bytes and run `init` on it (NULL: leave it zeroed). -ENAMETOOLONG,
 * -EINVAL (empty name or size 0), -ENOSPC (the region or its zone table is
 * full), or init's error. */
int shm_zone(struct shm *r, const char *name, size_t size,
             shm_zone_init *init, void *arg, struct shm_zone *z);

/* --- robust locks ----------------------------------------------------- */

#define SHM_LOCK_RECOVERED 1 /* locked; the previous holder died */

int shm_mutex_init(pthread_mutex_t *m);
/* 0 or SHM_LOCK_RECOVERED (the caller now holds a consistent mutex and
 * must repair the structure it guards), or -errno (-ENOTRECOVERABLE). */
int shm_lock(pthread_mutex_t *m);
void shm_unlock(pthread_mutex_t *m);

/* --- members ---------------------------------------------------------- */

enum shm_state {
  SHM_FREE = 0,
  SHM_STARTING,
  SHM_LIVE,
  SHM_RETIRED
};

/* One slot. A cache line, so one member's counters do not share a line
 * with another's. */
struct shm_member {
  _Atomic uint32_t state;
  _Atomic int32_t pid;
  _Atomic int32_t worker;       /* the number users see */
  uint32_t pad_;
  _Atomic uint64_t instance;
  _Atomic uint64_t bus_dropped; /* messages to it lost: its queue was full
                                   (added to by every publisher) */
  _Atomic uint64_t bus_sent;    /* datagrams it queued (it alone writes) */
  _Atomic uint64_t bus_received;/* datagrams it read (it alone writes) */
  _Atomic uint64_t bus_rejected;/* records it read and refused */
  _Atomic uint64_t bus_mbox;    /* region offset of its mailbox (bus.c),
                                   set before it turns LIVE; 0: none */
};

/* The slot, or NULL when out of range. */
struct shm_member *shm_member(const struct shm *r, int slot);
/* A member that receives bus messages and owns connections. */
static inline int shm_state_receives(uint32_t state) {
  return state == SHM_LIVE || state == SHM_RETIRED;
}

/* Claim the lowest free slot as STARTING for worker number `worker` (pid 0
 * while unknown): the slot index, or -ENOSPC. Counters start at 0. */
int shm_member_claim(struct shm *r, int worker, pid_t pid);
int shm_member_set_pid(struct shm *r, int slot, pid_t pid);
/* STARTING -> LIVE (the worker, once its bus endpoint is bound); -EINVAL
 * from any other state. */
int shm_member_live(struct shm *r, int slot);
/* LIVE -> RETIRED (the master, when it tells the worker to drain). */
int shm_member_retire(struct shm *r, int slot);
/* Any -> FREE: the master, after reaping the process (and after folding
 * its metrics into the retired totals). */
int shm_member_free(struct shm *r, int slot);

/* --- connection ids --------------------------------------------------- */

#define SHM_ID_COUNTER_BITS 39
#define SHM_ID_TAG_BITS 24
#define SHM_ID_COUNTER_MAX (((uint64_t)1 << SHM_ID_COUNTER_BITS) - 1)

static inline uint64_t shm_id_tag(uint64_t instance) {
  return instance & (((uint64_t)1 << SHM_ID_TAG_BITS) - 1);
}
/* The id of a member's connection number `counter` (1..SHM_ID_COUNTER_MAX),
 * or 0 when the counter is out of range. */
static inline uint64_t shm_conn_id(uint64_t instance, uint64_t counter) {
  if (counter == 0 || counter > SHM_ID_COUNTER_MAX)
    return 0;
  return shm_id_tag(instance) << SHM_ID_COUNTER_BITS | counter;
}
/* The slot of the live (or retired) member that made `id`, or -ENOENT. */
int shm_conn_owner(const struct shm *r, uint64_t id);

/* How many times the region lock was recovered from a dead holder. */
uint64_t shm_lock_recoveries(const struct shm *r);

#endif
