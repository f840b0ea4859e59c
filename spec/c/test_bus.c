/*
 * test_bus.c -- the bus (src/bus.c): one process publishing to itself;
 * direct messages by connection id; size limits; 100,000 messages from 4
 * publisher processes to 4 subscribers, none lost or reordered; a lagging
 * subscriber that drops (counted, and seen as a gap) while the others lose
 * nothing; datagrams from strangers (only a wake-up); a member that died
 * or was replaced. Every child is reaped.
 *
 * Flow control in the loss-free test: a mailbox holds what fits in its
 * bytes (see bus.h), so "receivers that keep up" is made exact: a
 * publisher sends message t only once every subscriber has read more than
 * t - W messages, W times a record's size below the mailbox's capacity,
 * so no mailbox can overflow whatever the scheduler does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bus.h"
#include "check.h"
#include "forks.h"
#include "shm.h"

static struct shm region = SHM_INIT;

static int claim_live(struct bus *b, struct shm *r) {
  int slot = shm_member_claim(r, 1, getpid());
  if (slot < 0 || bus_open(b, r, slot, 0) != 0 || shm_member_live(r, slot) != 0)
    return -1;
  return slot;
}

/* Receive one message, waiting up to ~2 s. */
static int recv_one(struct bus *b, struct bus_msg *m) {
  for (int i = 0; i < 2000; i++) {
    int n = bus_recv_batch(b, m, 1);
    if (n != 0)
      return n;
    usleep(1000);
  }
  return 0;
}

static void free_all(struct shm *r) {
  for (int i = 0; i < SHM_MEMBERS; i++)
    shm_member_free(r, i);
}

static void test_single_process(void) {
  struct shm r = SHM_INIT;
  struct bus b;
  struct bus_msg m;
  CHECK(shm_create(&r, 4 << 20) == 0);
  int slot = claim_live(&b, &r);
  CHECK(slot == 0 && bus_fd(&b) >= 0);
  uint64_t inst = shm_member(&r, slot)->instance;
  CHECK(bus_recv_batch(&b, &m, 1) == 0); /* nothing yet */
  CHECK(bus_publish(&b, "news", 4, "hello", 5) == 1);
  CHECK(recv_one(&b, &m) == 1);
  CHECK(m.kind == BUS_TOPIC && m.from == inst && m.from_slot == slot);
  CHECK(m.seq == 0 && m.lost == 0);
  CHECK(m.topic_len == 4 && memcmp(m.topic, "news", 4) == 0);
  CHECK(m.len == 5 && memcmp(m.data, "hello", 5) == 0);
  uint64_t conn = shm_conn_id(inst, 42);
  CHECK(bus_send_to(&b, conn, "direct", 6) == 0);
  CHECK(recv_one(&b, &m) == 1);
  CHECK(m.kind == BUS_DIRECT && m.target == conn && m.seq == 1);
  CHECK(m.len == 6 && memcmp(m.data, "direct", 6) == 0 && m.topic_len == 0);
  CHECK(bus_send_to(&b, shm_conn_id(inst + 1, 42), "x", 1) == -ENOENT);
  CHECK(shm_member(&r, slot)->bus_sent == 2);
  CHECK(shm_member(&r, slot)->bus_received == 2);
  shm_member_free(&r, slot);
  bus_close(&b);
  shm_close(&r);
}

static void test_size_limits(void) {
  struct shm r = SHM_INIT;
  struct bus b;
  struct bus_msg m;
  static char big[BUS_MSG_MAX];
  char topic[BUS_TOPIC_MAX + 1];
  CHECK(shm_create(&r, 4 << 20) == 0);
  CHECK(claim_live(&b, &r) == 0);
  memset(topic, 't', sizeof topic);
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (char)(i * 7);
  size_t most = BUS_MSG_MAX - BUS_HDR_SIZE - BUS_TOPIC_MAX;
  CHECK(bus_publish(&b, topic, BUS_TOPIC_MAX + 1, "x", 1) == -EMSGSIZE);
  CHECK(bus_publish(&b, topic, BUS_TOPIC_MAX, big, most + 1) == -EMSGSIZE);
  CHECK(bus_publish(&b, topic, BUS_TOPIC_MAX, big, most) == 1);
  CHECK(recv_one(&b, &m) == 1);
  CHECK(m.topic_len == BUS_TOPIC_MAX && m.len == most);
  CHECK(memcmp(m.data, big, most) == 0);
  CHECK(bus_send_to(&b, shm_conn_id(shm_member(&r, 0)->instance, 1), big,
                    BUS_MSG_MAX - BUS_HDR_SIZE + 1) == -EMSGSIZE);
  /* A mailbox of the default size holds 15 maximal messages, no more. */
  int queued = 0;
  while (bus_publish(&b, topic, BUS_TOPIC_MAX, big, most) == 1)
    queued++;
  CHECK(queued == (int)(BUS_RING_DEFAULT / (BUS_MSG_MAX + 8)));
  CHECK(shm_member(&r, 0)->bus_dropped == 1);
  bus_close(&b);
  shm_close(&r);
}

/* --- 4 publishers x 4 subscribers, flow-controlled --------------------- */

enum { NPROC = 4, TOTAL = 100000, PER = TOTAL / NPROC };

struct payload {
  uint32_t pub;
  uint32_t k;
  char pad[24];
};

struct mesh {
  int slots[NPROC];
  int index;
  int window;
  atomic_long *reserved;   /* in the region */
  atomic_int *ready;
};

static long min_received(const struct mesh *mx) {
  long least = -1;
  for (int i = 0; i < NPROC; i++) {
    long n = (long)atomic_load(&shm_member(&region, mx->slots[i])->bus_received);
    if (least < 0 || n < least)
      least = n;
  }
  return least;
}

/* Read what is waiting; check order (per publisher: k counts up, no
 * gap). Returns messages read, or -1 on a wrong one. */
static int mesh_drain(struct bus *b, uint32_t *next) {
  struct bus_msg m[BUS_BATCH];
  int n = bus_recv_batch(b, m, BUS_BATCH);
  for (int i = 0; i < n; i++) {
    struct payload p;
    if (m[i].len != sizeof p || m[i].lost != 0)
      return -1;
    memcpy(&p, m[i].data, sizeof p);
    if (p.pub >= NPROC || p.k != next[p.pub]++)
      return -1;
  }
  return n;
}

static int mesh_child(void *arg) {
  struct mesh *mx = arg;
  struct bus b;
  uint32_t next[NPROC] = {0};
  int slot = mx->slots[mx->index];
  CHILD_CHECK(bus_open(&b, &region, slot, 0) == 0);
  CHILD_CHECK(shm_member_live(&region, slot) == 0);
  atomic_fetch_add(mx->ready, 1);
  while (atomic_load(mx->ready) < NPROC)
    sched_yield();
  long got = 0, res = -1;
  uint32_t sent = 0;
  while (sent < PER || got < TOTAL) {
    int n = mesh_drain(&b, next), burst = 0;
    CHILD_CHECK(n >= 0);
    got += n;
    for (;;) { /* send while the window is open */
      if (sent < PER && res < 0)
        res = atomic_fetch_add(mx->reserved, 1);
      if (res < 0 || min_received(mx) <= res - mx->window)
        break;
      struct payload p = {(uint32_t)mx->index, sent, {0}};
      CHILD_CHECK(bus_publish(&b, "mesh", 4, &p, sizeof p) == NPROC);
      sent++;
      burst++;
      res = -1;
    }
    if (n == 0 && burst == 0) {
      struct pollfd pfd = {bus_fd(&b), POLLIN, 0};
      struct timespec soon = {0, 100000};
      ppoll(&pfd, 1, &soon, NULL); /* wake at the next message, or soon */
    }
  }
  for (int i = 0; i < NPROC; i++)
    CHILD_CHECK(next[i] == PER);
  bus_close(&b);
  return 0;
}

static void test_four_by_four_no_loss(void) {
  struct shm_zone z;
  CHECK(shm_zone(&region, "mesh", 64, NULL, NULL, &z) == 0);
  /* 4-byte topic, 32-byte payload: 88 bytes a record; 2,000 of them
   * take 176 KB of a 1 MiB mailbox. */
  struct mesh mx = {{0}, 0, 2000, z.base,
                    (atomic_int *)((char *)z.base + 32)};
  pid_t p[NPROC];
  for (int i = 0; i < NPROC; i++)
    mx.slots[i] = shm_member_claim(&region, i + 1, 0);
  for (int i = 0; i < NPROC; i++) {
    mx.index = i;
    p[i] = forks_run(mesh_child, &mx);
  }
  int bad = 0;
  uint64_t dropped = 0, received = 0;
  for (int i = 0; i < NPROC; i++)
    bad += forks_wait(p[i]) != 0;
  for (int i = 0; i < NPROC; i++) {
    dropped += shm_member(&region, mx.slots[i])->bus_dropped;
    received += shm_member(&region, mx.slots[i])->bus_received;
  }
  CHECK(mx.window >= 1 && bad == 0);
  CHECK(dropped == 0 && received == (uint64_t)TOTAL * NPROC);
  free_all(&region);
}

/* --- a lagging subscriber ----------------------------------------------- */

enum { LAG_N = 200, LAG_SIZE = 32 << 10 };

struct lag {
  int slot;
  int lagging;
  atomic_int *sync; /* [0] ready, [1] lagger may read, [2] it read k,
                       [3] it is done reading */
};

static int lag_fast(void *arg) {
  struct lag *l = arg;
  struct bus b;
  struct bus_msg m[BUS_BATCH];
  CHILD_CHECK(bus_open(&b, &region, l->slot, BUS_RING_MIN) == 0);
  CHILD_CHECK(shm_member_live(&region, l->slot) == 0);
  atomic_fetch_add(&l->sync[0], 1);
  uint64_t next = 0;
  while (next < LAG_N + 1) {
    int n = bus_recv_batch(&b, m, BUS_BATCH);
    CHILD_CHECK(n >= 0);
    for (int i = 0; i < n; i++) {
      CHILD_CHECK(m[i].seq == next && m[i].lost == 0 && m[i].len == LAG_SIZE);
      CHILD_CHECK(((const unsigned char *)m[i].data)[0] == (next & 0xff));
      next++;
    }
    if (n == 0)
      usleep(100);
  }
  bus_close(&b);
  return 0;
}

/* Never reads until told; then checks it got an unbroken prefix, and
 * that the next message reports the gap. */
static int lag_slow(void *arg) {
  struct lag *l = arg;
  struct bus b;
  struct bus_msg m[BUS_BATCH];
  CHILD_CHECK(bus_open(&b, &region, l->slot, BUS_RING_MIN) == 0);
  CHILD_CHECK(shm_member_live(&region, l->slot) == 0);
  atomic_fetch_add(&l->sync[0], 1);
  while (!atomic_load(&l->sync[1]))
    usleep(500);
  int k = 0, n;
  while ((n = bus_recv_batch(&b, m, BUS_BATCH)) > 0)
    for (int i = 0; i < n; i++, k++)
      CHILD_CHECK(m[i].seq == (uint64_t)k && m[i].lost == 0);
  atomic_store(&l->sync[2], k);
  atomic_store(&l->sync[3], 1);
  CHILD_CHECK(recv_one(&b, m) == 1); /* the last message, after the gap */
  CHILD_CHECK(m[0].seq == LAG_N && m[0].lost == (uint64_t)(LAG_N - k));
  bus_close(&b);
  return 0;
}

static void test_lagging_subscriber(void) {
  struct shm_zone z;
  struct bus pub;
  static unsigned char msg[LAG_SIZE];
  CHECK(shm_zone(&region, "lag", 64, NULL, NULL, &z) == 0);
  int me = claim_live(&pub, &region);
  struct lag l[3];
  pid_t p[3];
  for (int i = 0; i < 3; i++) {
    l[i] = (struct lag){shm_member_claim(&region, 10 + i, 0), i == 2, z.base};
    p[i] = forks_run(i == 2 ? lag_slow : lag_fast, &l[i]);
  }
  while (atomic_load(&l[0].sync[0]) < 3)
    usleep(500);
  /* The publisher never reads either: its own copies are dropped too. */
  int fast_ok = me >= 0;
  for (int t = 0; t <= LAG_N; t++) {
    if (t == LAG_N) { /* the lagger reads up, then one more message */
      atomic_store(&l[0].sync[1], 1);
      while (atomic_load(&l[0].sync[3]) == 0)
        usleep(500);
    }
    /* Fast subscribers keep up: at most 4 of these in flight. */
    while ((long)shm_member(&region, l[0].slot)->bus_received < t - 4 ||
           (long)shm_member(&region, l[1].slot)->bus_received < t - 4)
      usleep(100);
    memset(msg, t & 0xff, sizeof msg);
    fast_ok &= bus_publish(&pub, "lag", 3, msg, sizeof msg) >= 2;
  }
  int rc[3];
  for (int i = 0; i < 3; i++)
    rc[i] = forks_wait(p[i]);
  int k = atomic_load(&l[0].sync[2]);
  uint64_t lag_dropped = shm_member(&region, l[2].slot)->bus_dropped;
  CHECK(fast_ok && rc[0] == 0 && rc[1] == 0 && rc[2] == 0);
  CHECK(shm_member(&region, l[0].slot)->bus_dropped == 0);
  CHECK(shm_member(&region, l[1].slot)->bus_dropped == 0);
  /* As many as fit in its mailbox: record = header + topic + payload,
   * rounded up to 8, plus the record's own 8 bytes. */
  int fit = (int)(BUS_RING_MIN / (8 + ((BUS_HDR_SIZE + 3 + LAG_SIZE + 7) & ~7)));
  CHECK(k == fit);
  CHECK(lag_dropped == (uint64_t)(LAG_N - k));
  printf("# lagging subscriber: queued %d of %d messages of %d KiB, "
         "dropped %llu\n", k, LAG_N, LAG_SIZE >> 10,
         (unsigned long long)lag_dropped);
  bus_close(&pub);
  free_all(&region);
}

/* --- datagrams from strangers ------------------------------------------- */

static int send_raw(const struct bus_addr *to, const void *p, size_t n) {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  ssize_t w = sendto(fd, p, n, 0, (const struct sockaddr *)&to->sun, to->len);
  close(fd);
  return w == (ssize_t)n ? 0 : -1;
}

/* What the first design's receivers had to refuse: a well-formed
 * message datagram. Now a datagram is only a doorbell, whoever sends it. */
struct wire {
  uint32_t magic;
  uint8_t kind, topic_len;
  uint16_t from_slot;
  uint64_t from, seq, target, reserved;
  char data[4];
};

static int foreign_child(void *arg) {
  struct wire w = {0x53554232u, BUS_TOPIC, 0, 0, 1, 0, 0, 0, "evil"};
  CHILD_CHECK(setuid(65534) == 0);
  return send_raw(arg, &w, sizeof w) == 0 ? 0 : 1;
}

static void test_stranger_datagrams(void) {
  struct bus b, other;
  struct bus_msg m;
  int slot = claim_live(&b, &region), peer = claim_live(&other, &region);
  CHECK(slot >= 0 && peer >= 0);
  struct shm_member *me = shm_member(&region, slot);
  CHECK(send_raw(&b.names[slot], "garbage", 7) == 0);
  if (geteuid() == 0) /* another uid: only root can become one */
    CHECK(forks_wait(forks_run(foreign_child, &b.names[slot])) == 0);
  CHECK(bus_recv_batch(&b, &m, 1) == 0); /* woken for nothing */
  CHECK(bus_publish(&other, "ok", 2, "fine", 4) == 2);
  CHECK(recv_one(&b, &m) == 1 && m.len == 4 && memcmp(m.data, "fine", 4) == 0);
  CHECK(bus_recv_batch(&b, &m, 1) == 0);
  CHECK(me->bus_rejected == 0 && me->bus_received == 1);
  bus_close(&b);
  bus_close(&other);
  free_all(&region);
}

/* --- members that die or are replaced --------------------------------------- */

static int read_three(void *arg) {
  int slot = *(int *)arg;
  struct bus b;
  struct bus_msg m;
  CHILD_CHECK(bus_open(&b, &region, slot, 0) == 0);
  CHILD_CHECK(shm_member_live(&region, slot) == 0);
  for (uint64_t i = 0; i < 3; i++) {
    CHILD_CHECK(recv_one(&b, &m) == 1);
    CHILD_CHECK(m.seq == i && m.lost == 0);
  }
  bus_close(&b);
  return 0;
}

static void test_member_replaced(void) {
  struct bus pub;
  int me = claim_live(&pub, &region);
  shm_member_retire(&region, me); /* still sends, as a draining worker */
  int slot = shm_member_claim(&region, 2, 0);
  pid_t p = forks_run(read_three, &slot);
  while (shm_member(&region, slot)->state != SHM_LIVE)
    usleep(200);
  uint64_t conn = shm_conn_id(shm_member(&region, slot)->instance, 9);
  for (int i = 0; i < 3; i++)
    CHECK(bus_send_to(&pub, conn, "m", 1) == 0);
  CHECK(forks_wait(p) == 0);
  /* Dead, not yet freed: its socket is gone; not an error to publish. */
  CHECK(bus_send_to(&pub, conn, "m", 1) == -ENOENT);
  CHECK(bus_publish(&pub, "t", 1, "m", 1) == 1); /* ourselves only */
  CHECK(shm_member_free(&region, slot) == 0);
  CHECK(bus_send_to(&pub, conn, "m", 1) == -ENOENT);
  /* A new member in the same slot: a new stream, numbered from 0. */
  CHECK(shm_member_claim(&region, 2, 0) == slot);
  p = forks_run(read_three, &slot);
  while (shm_member(&region, slot)->state != SHM_LIVE)
    usleep(200);
  for (int i = 0; i < 3; i++)
    CHECK(bus_publish(&pub, "t", 1, "n", 1) == 2);
  CHECK(forks_wait(p) == 0);
  bus_close(&pub);
  free_all(&region);
}

int main(void) {
  alarm(120);
  if (shm_create(&region, 64 << 20) != 0) {
    printf("FAIL: cannot create a region\n");
    return 1;
  }
  RUN(test_single_process);
  RUN(test_size_limits);
  RUN(test_four_by_four_no_loss);
  RUN(test_lagging_subscriber);
  RUN(test_stranger_datagrams);
  RUN(test_member_replaced);
  shm_close(&region);
  return CHECK_DONE();
}
