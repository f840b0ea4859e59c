/*
 * test_mbox.c -- the mailbox ring (src/mbox.c): sizes and refusals; FIFO
 * order across the end of the ring; full, then room again; the doorbell
 * (rung once per drain); garbage found and skipped; reset; four writer
 * processes and a reader with no record lost or reordered; a reader that
 * sleeps on a pipe doorbell and is never left asleep with records queued;
 * a writer that dies holding the lock. Every child is reaped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "forks.h"
#include "mbox.h"
#include "shm.h"

/* A zone in shared memory, so children write where the parent reads. */
static void *shared_zone(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static int put1(struct mbox *m, const void *p, size_t n, int *ring) {
  struct iovec iov = {(void *)p, n};
  return mbox_put(m, &iov, 1, ring);
}

static void test_sizes(void) {
  size_t size = mbox_zone_size(5000);
  void *z = shared_zone(size);
  struct mbox m;
  int ring;
  CHECK(z != NULL);
  CHECK(mbox_init(z, 100, NULL) == -EINVAL);
  CHECK(mbox_open(&m, z, size) == -EPROTO); /* never built */
  CHECK(mbox_init(z, size, NULL) == 0);
  CHECK(mbox_open(&m, z, size) == 0);
  CHECK(mbox_cap(&m) == 8192); /* 5000 rounded up to a power of two */
  CHECK(mbox_open(&m, z, size - 1) == -EPROTO); /* claims more than it has */
  static char big[8192];
  CHECK(put1(&m, big, 8192 - 8, &ring) == 0); /* exactly the ring */
  CHECK(put1(&m, "x", 1, &ring) == -ENOSPC);
  size_t len;
  CHECK(mbox_get(&m, big, sizeof big, &len) == 1 && len == 8192 - 8);
  CHECK(put1(&m, big, 8192 - 7, &ring) == -EMSGSIZE); /* never fits */
  CHECK(mbox_used(&m) == 0);
  munmap(z, size);
}

static void test_fifo_wrap(void) {
  size_t size = mbox_zone_size(MBOX_MIN_CAP);
  void *z = shared_zone(size);
  struct mbox m;
  char in[300], out[300];
  int ring;
  CHECK(mbox_init(z, size, NULL) == 0 && mbox_open(&m, z, size) == 0);
  /* Records of varying sizes, three queued at a time, for many laps. */
  unsigned next_in = 0, next_out = 0;
  for (int round = 0; round < 2000; round++) {
    while (next_in < next_out + 3) {
      size_t n = 1 + (next_in * 37) % sizeof in;
      memset(in, (int)(next_in & 0xff), n);
      CHECK(put1(&m, in, n, &ring) == 0);
      next_in++;
    }
    size_t len = 0;
    size_t want = 1 + (next_out * 37) % sizeof in;
    CHECK(mbox_get(&m, out, sizeof out, &len) == 1);
    CHECK(len == want && (unsigned char)out[0] == (next_out & 0xff) &&
          (unsigned char)out[len - 1] == (next_out & 0xff));
    next_out++;
  }
  CHECK(mbox_used(&m) > 0);
  /* A record split across the end comes out whole; iovecs concatenate. */
  struct iovec iov[3] = {{"ab", 2}, {"", 0}, {"cdef", 4}};
  while (mbox_get(&m, out, sizeof out, &(size_t){0}) == 1)
    ;
  CHECK(mbox_put(&m, iov, 3, &ring) == 0);
  size_t len;
  CHECK(mbox_get(&m, out, sizeof out, &len) == 1 && len == 6 &&
        memcmp(out, "abcdef", 6) == 0);
  CHECK(mbox_get(&m, out, sizeof out, &len) == 0);
  /* Too big for the reader's buffer: reported and dropped. */
  CHECK(put1(&m, in, 100, &ring) == 0 && put1(&m, "z", 1, &ring) == 0);
  CHECK(mbox_get(&m, out, 50, &len) == -EMSGSIZE && len == 100);
  CHECK(mbox_get(&m, out, 50, &len) == 1 && len == 1 && out[0] == 'z');
  munmap(z, size);
}

static void test_full_then_room(void) {
  size_t size = mbox_zone_size(MBOX_MIN_CAP);
  void *z = shared_zone(size);
  struct mbox m;
  char rec[56], out[64]; /* 64-byte records: 64 fit in 4096 */
  int ring, n = 0;
  CHECK(mbox_init(z, size, NULL) == 0 && mbox_open(&m, z, size) == 0);
  memset(rec, 'r', sizeof rec);
  while (put1(&m, rec, sizeof rec, &ring) == 0)
    n++;
  CHECK(n == 64 && mbox_used(&m) == 4096);
  CHECK(put1(&m, rec, 1, &ring) == -ENOSPC); /* the newest is dropped */
  size_t len;
  CHECK(mbox_get(&m, out, sizeof out, &len) == 1 && len == sizeof rec);
  CHECK(put1(&m, rec, sizeof rec, &ring) == 0); /* room for exactly one */
  CHECK(put1(&m, rec, 1, &ring) == -ENOSPC);
  CHECK(atomic_load(&m.h->peak) == 4096);
  munmap(z, size);
}

static void test_doorbell(void) {
  size_t size = mbox_zone_size(MBOX_MIN_CAP);
  void *z = shared_zone(size);
  struct mbox m;
  int ring;
  char out[8];
  size_t len;
  CHECK(mbox_init(z, size, NULL) == 0 && mbox_open(&m, z, size) == 0);
  CHECK(put1(&m, "a", 1, &ring) == 0 && ring == 1);
  CHECK(put1(&m, "b", 1, &ring) == 0 && ring == 0); /* one is pending */
  CHECK(mbox_clear_bell(&m) == 1);
  CHECK(mbox_clear_bell(&m) == 0);
  CHECK(mbox_get(&m, out, sizeof out, &len) == 1);
  CHECK(put1(&m, "c", 1, &ring) == 0 && ring == 1); /* cleared: ring again */
  CHECK(put1(&m, "d", 1, &ring) == 0 && ring == 0);
  CHECK(put1(&m, out, 0, &ring) == 0); /* an empty record is a record */
  CHECK(mbox_reset(&m) == 0);
  CHECK(mbox_used(&m) == 0 && mbox_get(&m, out, sizeof out, &len) == 0);
  CHECK(put1(&m, "e", 1, &ring) == 0 && ring == 1); /* reset cleared it */
  munmap(z, size);
}

static void test_garbage(void) {
  size_t size = mbox_zone_size(MBOX_MIN_CAP);
  void *z = shared_zone(size);
  struct mbox m;
  int ring;
  char out[64];
  size_t len;
  CHECK(mbox_init(z, size, NULL) == 0 && mbox_open(&m, z, size) == 0);
  CHECK(put1(&m, "hello", 5, &ring) == 0 && put1(&m, "world", 5, &ring) == 0);
  m.data[0] ^= 0x40; /* scribble on the first record's length */
  CHECK(mbox_get(&m, out, sizeof out, &len) == -EBADMSG);
  CHECK(mbox_used(&m) == 0 && atomic_load(&m.h->corrupt) == 1);
  CHECK(put1(&m, "again", 5, &ring) == 0);
  CHECK(mbox_get(&m, out, sizeof out, &len) == 1 && len == 5 &&
        memcmp(out, "again", 5) == 0);
  munmap(z, size);
}

/* --- four writers, one reader --------------------------------------------- */

enum { WRITERS = 4, PER_WRITER = 20000 };

struct rec {
  uint32_t writer, k;
  char pad[16];
};

struct writers {
  struct mbox m;
  int index;
  atomic_long *full; /* ENOSPC seen (retried): the reader fell behind */
};

static int writer_child(void *arg) {
  struct writers *w = arg;
  for (uint32_t k = 0; k < PER_WRITER; k++) {
    struct rec r = {(uint32_t)w->index, k, {0}};
    int ring, rc;
    while ((rc = put1(&w->m, &r, sizeof r, &ring)) == -ENOSPC) {
      atomic_fetch_add(w->full, 1);
      sched_yield();
    }
    CHILD_CHECK(rc == 0);
  }
  return 0;
}

static void test_four_writers(void) {
  size_t size = mbox_zone_size(16384);
  void *z = shared_zone(size);
  atomic_long *full = shared_zone(4096);
  struct writers w;
  CHECK(z && full && mbox_init(z, size, NULL) == 0);
  CHECK(mbox_open(&w.m, z, size) == 0);
  w.full = full;
  pid_t p[WRITERS];
  for (int i = 0; i < WRITERS; i++) {
    w.index = i;
    p[i] = forks_run(writer_child, &w);
  }
  uint32_t next[WRITERS] = {0};
  long got = 0, bad = 0;
  while (got < (long)WRITERS * PER_WRITER && !bad) {
    struct rec r;
    size_t len;
    int rc = mbox_get(&w.m, &r, sizeof r, &len);
    if (rc == 0) {
      sched_yield();
      continue;
    }
    if (rc != 1 || len != sizeof r || r.writer >= WRITERS ||
        r.k != next[r.writer]++)
      bad++;
    got++;
  }
  int failed = 0;
  for (int i = 0; i < WRITERS; i++)
    failed += forks_wait(p[i]) != 0;
  CHECK(bad == 0 && failed == 0 && got == (long)WRITERS * PER_WRITER);
  for (int i = 0; i < WRITERS; i++)
    CHECK(next[i] == PER_WRITER);
  printf("# 4 writers: %d records, the ring (16 KiB) was full %ld times\n",
         WRITERS * PER_WRITER, atomic_load(full));
  munmap(z, size);
  munmap(full, 4096);
}

/* --- the doorbell protocol under contention ------------------------------- */

enum { BELL_N = 30000 };

struct bells {
  struct mbox m;
  int pipe[2];
  int index;
  atomic_long *rung;
};

/* Append in bursts with pauses; write to the pipe when told to ring. */
static int bell_writer(void *arg) {
  struct bells *b = arg;
  close(b->pipe[0]);
  for (uint32_t k = 0; k < BELL_N; k++) {
    struct rec r = {(uint32_t)b->index, k, {0}};
    int ring, rc;
    while ((rc = put1(&b->m, &r, sizeof r, &ring)) == -ENOSPC)
      usleep(50);
    CHILD_CHECK(rc == 0);
    if (ring) {
      atomic_fetch_add(b->rung, 1);
      CHILD_CHECK(write(b->pipe[1], "x", 1) == 1);
    }
    if (k % 1000 == 999)
      usleep(200);
  }
  return 0;
}

/* The reader only reads after a doorbell: had one been lost while records
 * were queued, it would sleep until the alarm ends the test. */
static void test_doorbell_never_lost(void) {
  size_t size = mbox_zone_size(MBOX_MIN_CAP);
  void *z = shared_zone(size);
  atomic_long *rung = shared_zone(4096);
  struct bells b;
  CHECK(z && rung && mbox_init(z, size, NULL) == 0);
  CHECK(mbox_open(&b.m, z, size) == 0 && pipe(b.pipe) == 0);
  b.rung = rung;
  pid_t p[2];
  for (int i = 0; i < 2; i++) {
    b.index = i;
    p[i] = forks_run(bell_writer, &b);
  }
  close(b.pipe[1]);
  uint32_t next[2] = {0};
  long got = 0, bad = 0, wakeups = 0;
  while (got < 2L * BELL_N) {
    struct pollfd pfd = {b.pipe[0], POLLIN, 0};
    if (poll(&pfd, 1, 5000) != 1)
      break; /* a lost wake-up */
    char sink[256];
    if (read(b.pipe[0], sink, sizeof sink) <= 0)
      break;
    wakeups++;
    mbox_clear_bell(&b.m);
    struct rec r;
    size_t len;
    int rc;
    while ((rc = mbox_get(&b.m, &r, sizeof r, &len)) == 1) {
      if (r.writer > 1 || r.k != next[r.writer]++)
        bad++;
      got++;
    }
  }
  CHECK(forks_wait(p[0]) == 0 && forks_wait(p[1]) == 0);
  CHECK(got == 2L * BELL_N && bad == 0);
  CHECK(atomic_load(rung) < 2L * BELL_N); /* bursts rang once */
  printf("# doorbell: %ld records, %ld rung, %ld wake-ups\n", got,
         atomic_load(rung), wakeups);
  close(b.pipe[0]);
  munmap(z, size);
  munmap(rung, 4096);
}

/* --- a writer that dies holding the lock ---------------------------------- */

static int die_locked(void *arg) {
  struct mbox *m = arg;
  CHILD_CHECK(shm_lock(&m->h->lock) == 0);
  _exit(0); /* holding it */
}

static void test_dead_writer(void) {
  size_t size = mbox_zone_size(MBOX_MIN_CAP);
  void *z = shared_zone(size);
  struct mbox m;
  int ring;
  char out[8];
  size_t len;
  CHECK(mbox_init(z, size, NULL) == 0 && mbox_open(&m, z, size) == 0);
  CHECK(put1(&m, "1", 1, &ring) == 0);
  CHECK(forks_wait(forks_run(die_locked, &m)) == 0);
  CHECK(put1(&m, "2", 1, &ring) == 0);
  CHECK(atomic_load(&m.h->recoveries) == 1);
  CHECK(mbox_get(&m, out, sizeof out, &len) == 1 && out[0] == '1');
  CHECK(mbox_get(&m, out, sizeof out, &len) == 1 && out[0] == '2');
  munmap(z, size);
}

int main(void) {
  alarm(120);
  RUN(test_sizes);
  RUN(test_fifo_wrap);
  RUN(test_full_then_room);
  RUN(test_doorbell);
  RUN(test_garbage);
  RUN(test_four_writers);
  RUN(test_doorbell_never_lost);
  RUN(test_dead_writer);
  return CHECK_DONE();
}
