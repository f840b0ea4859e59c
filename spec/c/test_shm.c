/*
 * test_shm.c -- the shared region (src/shm.c): creation and attachment at
 * another address, zones (rules, races, a creator dying in init), robust
 * locks, the member table and connection ids. Multi-process with fork;
 * every child is reaped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "forks.h"
#include "shm.h"

static struct shm region = SHM_INIT;

static void test_create_and_attach_elsewhere(void) {
  struct shm r = SHM_INIT, r2 = SHM_INIT;
  CHECK(shm_create(&r, 4 << 20) == 0);
  CHECK(r.size == 4 << 20 && shm_fd(&r) >= 0);
  CHECK(shm_creator(&r) == getpid());
  CHECK(fcntl(shm_fd(&r), F_GETFD) & FD_CLOEXEC);
  /* A second mapping of the same memfd: another address, same bytes. */
  CHECK(shm_attach(&r2, dup(shm_fd(&r))) == 0);
  CHECK(r2.base != r.base && r2.size == r.size);
  CHECK(shm_nonce(&r2) == shm_nonce(&r));
  struct shm_zone z1, z2;
  CHECK(shm_zone(&r, "data", 1000, NULL, NULL, &z1) == 0 && z1.created);
  CHECK(shm_zone(&r2, "data", 1000, NULL, NULL, &z2) == 0 && !z2.created);
  CHECK(z1.base != z2.base);
  CHECK(shm_off(&r, z1.base) == shm_off(&r2, z2.base));
  strcpy(z1.base, "written through one mapping");
  CHECK(strcmp(z2.base, "written through one mapping") == 0);
  /* Sealed: nobody can shrink it under the others. */
  CHECK(ftruncate(shm_fd(&r), 4096) != 0 && errno == EPERM);
  shm_close(&r2);
  shm_close(&r);
  CHECK(r.base == NULL && r.fd == -1);
}

static void test_attach_refuses_foreign(void) {
  struct shm r = SHM_INIT;
  int fd = memfd_create("not-berth", MFD_CLOEXEC);
  CHECK(fd >= 0 && ftruncate(fd, 1 << 20) == 0);
  CHECK(shm_attach(&r, fd) == -EPROTO); /* and fd is closed */
  CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF);
  CHECK(shm_attach(&r, -1) == -EBADF);
}

static int count_init(void *zone, size_t size, void *arg) {
  (void)size;
  atomic_int *calls = arg;
  atomic_fetch_add(calls, 1);
  memset(zone, 0xab, 16);
  return 0;
}

static int failing_init(void *zone, size_t size, void *arg) {
  (void)zone;
  (void)size;
  (void)arg;
  return -EIO;
}

static void test_zone_rules(void) {
  struct shm r = SHM_INIT;
  struct shm_zone z;
  char name[SHM_NAME_MAX + 2];
  CHECK(shm_create(&r, 1 << 20) == 0);
  memset(name, 'n', sizeof name - 1);
  name[sizeof name - 1] = '\0';
  CHECK(shm_zone(&r, name, 64, NULL, NULL, &z) == -ENAMETOOLONG);
  name[SHM_NAME_MAX] = '\0';
  CHECK(shm_zone(&r, name, 64, NULL, NULL, &z) == 0);
  CHECK(shm_zone(&r, "", 64, NULL, NULL, &z) == -EINVAL);
  CHECK(shm_zone(&r, "zero", 0, NULL, NULL, &z) == -EINVAL);
  CHECK(shm_zone(&r, "huge", 2 << 20, NULL, NULL, &z) == -ENOSPC);
  /* A later caller gets the zone as created, whatever size it asks. */
  atomic_int calls = 0;
  CHECK(shm_zone(&r, "sized", 100, count_init, &calls, &z) == 0);
  CHECK(z.created && z.size == 100 && calls == 1);
  CHECK(((unsigned char *)z.base)[15] == 0xab);
  CHECK(shm_zone(&r, "sized", 5000, count_init, &calls, &z) == 0);
  CHECK(!z.created && z.size == 100 && calls == 1);
  CHECK(shm_off(&r, z.base) % SHM_ALIGN == 0);
  /* A failed init leaves the zone not ready; the next caller builds it. */
  CHECK(shm_zone(&r, "flaky", 64, failing_init, NULL, &z) == -EIO);
  CHECK(shm_zone(&r, "flaky", 64, count_init, &calls, &z) == 0);
  CHECK(z.created && calls == 2);
  shm_close(&r);
}

static void test_zone_table_full(void) {
  struct shm r = SHM_INIT;
  struct shm_zone z;
  char name[16];
  int made = 0, rc = 0;
  CHECK(shm_create(&r, 1 << 20) == 0);
  for (int i = 0; rc == 0 && i < SHM_ZONES_MAX + 1; i++) {
    snprintf(name, sizeof name, "z%d", i);
    rc = shm_zone(&r, name, 64, NULL, NULL, &z);
    made += rc == 0;
  }
  CHECK(made == SHM_ZONES_MAX && rc == -ENOSPC);
  CHECK(shm_zone(&r, "z0", 64, NULL, NULL, &z) == 0); /* still found */
  shm_close(&r);
}

/* --- zone creation race and a creator that dies inside init ----------- */

struct race {
  atomic_int *calls;
  int created;
};

static int race_child(void *arg) {
  atomic_int *calls = arg;
  struct shm_zone z;
  int rc = shm_zone(&region, "race", 4096, count_init, calls, &z);
  CHILD_CHECK(rc == 0);
  CHILD_CHECK(((unsigned char *)z.base)[0] == 0xab); /* never half-built */
  return z.created ? 10 : 0;
}

static void test_zone_race(void) {
  struct shm_zone cz;
  CHECK(shm_zone(&region, "race-counter", sizeof(atomic_int), NULL, NULL,
                 &cz) == 0);
  atomic_int *calls = cz.base;
  pid_t pids[6];
  int creators = 0, failed = 0;
  for (int i = 0; i < 6; i++)
    pids[i] = forks_run(race_child, calls);
  for (int i = 0; i < 6; i++) {
    int rc = forks_wait(pids[i]);
    creators += rc == 10;
    failed += rc != 10 && rc != 0;
  }
  CHECK(failed == 0 && creators == 1 && atomic_load(calls) == 1);
}

static int dying_init(void *zone, size_t size, void *arg) {
  (void)zone;
  (void)size;
  (void)arg;
  _exit(3); /* the creator dies holding the region lock, mid-init */
}

static int die_in_init(void *arg) {
  (void)arg;
  struct shm_zone z;
  shm_zone(&region, "orphan", 128, dying_init, NULL, &z);
  return 0;
}

static void test_creator_dies_in_init(void) {
  uint64_t before = shm_lock_recoveries(&region);
  CHECK(forks_wait(forks_run(die_in_init, NULL)) == 3);
  atomic_int calls = 0;
  struct shm_zone z;
  CHECK(shm_zone(&region, "orphan", 128, count_init, &calls, &z) == 0);
  CHECK(z.created && calls == 1);
  CHECK(shm_lock_recoveries(&region) == before + 1);
}

/* --- robust locks ------------------------------------------------------ */

static int hold_and_die(void *arg) {
  CHILD_CHECK(shm_lock(arg) == 0);
  return 7; /* exits holding it */
}

static void test_lock_owner_dies(void) {
  struct shm_zone z;
  CHECK(shm_zone(&region, "mutex", sizeof(pthread_mutex_t), NULL, NULL,
                 &z) == 0);
  CHECK(shm_mutex_init(z.base) == 0);
  CHECK(forks_wait(forks_run(hold_and_die, z.base)) == 7);
  CHECK(shm_lock(z.base) == SHM_LOCK_RECOVERED);
  shm_unlock(z.base);
  CHECK(shm_lock(z.base) == 0); /* consistent again */
  shm_unlock(z.base);
}

/* --- members and connection ids ---------------------------------------- */

static void test_member_lifecycle(void) {
  struct shm r = SHM_INIT;
  CHECK(shm_create(&r, 1 << 20) == 0);
  int a = shm_member_claim(&r, 1, 0), b = shm_member_claim(&r, 2, 4242);
  CHECK(a == 0 && b == 1);
  struct shm_member *ma = shm_member(&r, a), *mb = shm_member(&r, b);
  CHECK(ma->state == SHM_STARTING && ma->worker == 1 && ma->pid == 0);
  CHECK(mb->pid == 4242 && mb->instance > ma->instance);
  CHECK(shm_member_set_pid(&r, a, 99) == 0 && ma->pid == 99);
  CHECK(shm_member_retire(&r, a) == -EINVAL); /* not live yet */
  CHECK(shm_member_live(&r, a) == 0 && ma->state == SHM_LIVE);
  CHECK(shm_member_live(&r, a) == -EINVAL);
  CHECK(shm_member_retire(&r, a) == 0 && ma->state == SHM_RETIRED);
  atomic_store(&ma->bus_dropped, 5);
  uint64_t old = ma->instance;
  CHECK(shm_member_free(&r, a) == 0 && ma->state == SHM_FREE);
  CHECK(shm_member_free(&r, a) == -EINVAL);
  CHECK(shm_member_live(&r, a) == -EINVAL);
  /* The slot comes back with a new instance and zeroed counters. */
  CHECK(shm_member_claim(&r, 3, 0) == a);
  CHECK(ma->instance > mb->instance && ma->instance != old);
  CHECK(ma->bus_dropped == 0 && ma->worker == 3);
  CHECK(shm_member(&r, -1) == NULL && shm_member(&r, SHM_MEMBERS) == NULL);
  shm_close(&r);
}

static void test_member_table_full(void) {
  struct shm r = SHM_INIT;
  CHECK(shm_create(&r, 1 << 20) == 0);
  int ok = 1;
  for (int i = 0; i < SHM_MEMBERS; i++)
    ok &= shm_member_claim(&r, i, 0) == i;
  CHECK(ok);
  CHECK(shm_member_claim(&r, 0, 0) == -ENOSPC);
  CHECK(shm_member_free(&r, 77) == 0 && shm_member_claim(&r, 0, 0) == 77);
  shm_close(&r);
}

static void test_conn_ids(void) {
  struct shm r = SHM_INIT;
  CHECK(shm_create(&r, 1 << 20) == 0);
  int a = shm_member_claim(&r, 1, 0), b = shm_member_claim(&r, 2, 0);
  uint64_t ia = shm_member(&r, a)->instance, ib = shm_member(&r, b)->instance;
  uint64_t id1 = shm_conn_id(ia, 1), id2 = shm_conn_id(ib, 1);
  uint64_t idmax = shm_conn_id(ib, SHM_ID_COUNTER_MAX);
  CHECK(id1 != 0 && id2 != 0 && id1 != id2);
  CHECK(idmax > 0 && idmax < ((uint64_t)1 << 63)); /* a Lua integer */
  CHECK(shm_conn_id(ia, 0) == 0 && shm_conn_id(ia, SHM_ID_COUNTER_MAX + 1) == 0);
  CHECK(shm_conn_id(((uint64_t)1 << SHM_ID_TAG_BITS) - 1, SHM_ID_COUNTER_MAX) <
        ((uint64_t)1 << 63));
  /* Only a member that receives owns connections. */
  CHECK(shm_conn_owner(&r, id1) == -ENOENT);
  CHECK(shm_member_live(&r, a) == 0 && shm_member_live(&r, b) == 0);
  CHECK(shm_conn_owner(&r, id1) == a && shm_conn_owner(&r, id2) == b);
  CHECK(shm_conn_owner(&r, idmax) == b);
  CHECK(shm_member_retire(&r, b) == 0 && shm_conn_owner(&r, id2) == b);
  CHECK(shm_member_free(&r, b) == 0 && shm_conn_owner(&r, id2) == -ENOENT);
  /* The slot's next member makes other ids; the old ones stay unowned. */
  CHECK(shm_member_claim(&r, 2, 0) == b && shm_member_live(&r, b) == 0);
  CHECK(shm_conn_owner(&r, id2) == -ENOENT);
  CHECK(shm_conn_owner(&r, shm_conn_id(shm_member(&r, b)->instance, 1)) == b);
  CHECK(shm_conn_owner(&r, 0) == -ENOENT);
  CHECK(shm_conn_owner(&r, ((uint64_t)1 << 63) + id1) == -ENOENT);
  shm_close(&r);
}

/* Members claimed from several processes at once get distinct slots and
 * instances. */
static int claim_child(void *arg) {
  (void)arg;
  for (int i = 0; i < 10; i++)
    CHILD_CHECK(shm_member_claim(&region, i, getpid()) >= 0);
  return 0;
}

static void test_claims_from_processes(void) {
  pid_t p[4];
  for (int i = 0; i < 4; i++)
    p[i] = forks_run(claim_child, NULL);
  int bad = 0;
  for (int i = 0; i < 4; i++)
    bad += forks_wait(p[i]) != 0;
  CHECK(bad == 0);
  int claimed = 0, dup = 0;
  for (int i = 0; i < SHM_MEMBERS; i++) {
    struct shm_member *m = shm_member(&region, i);
    if (m->state == SHM_FREE)
      continue;
    claimed++;
    for (int j = 0; j < i; j++)
      dup += shm_member(&region, j)->state != SHM_FREE &&
             shm_member(&region, j)->instance == m->instance;
  }
  CHECK(claimed == 40 && dup == 0);
  for (int i = 0; i < SHM_MEMBERS; i++)
    shm_member_free(&region, i);
}

int main(void) {
  alarm(120);
  if (shm_create(&region, 8 << 20) != 0) {
    printf("FAIL: cannot create a region\n");
    return 1;
  }
  RUN(test_create_and_attach_elsewhere);
  RUN(test_attach_refuses_foreign);
  RUN(test_zone_rules);
  RUN(test_zone_table_full);
  RUN(test_zone_race);
  RUN(test_creator_dies_in_init);
  RUN(test_lock_owner_dies);
  RUN(test_member_lifecycle);
  RUN(test_member_table_full);
  RUN(test_conn_ids);
  RUN(test_claims_from_processes);
  shm_close(&region);
  return CHECK_DONE();
}
