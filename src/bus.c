/*
 * bus.c -- the message bus between members: mailboxes in the region, a
 * datagram doorbell each. See bus.h for the contract. No lua.h here.
 */
#define _GNU_SOURCE /* recvmmsg, SOCK_CLOEXEC */
/* scripts/lint force-includes lua.h ahead of this file, which settles the
 * glibc feature macros without _GNU_SOURCE; have them read again (a no-op
 * in a normal build, where nothing came before). */
#undef _FEATURES_H
#include <features.h>
#include "bus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUS_MAGIC 0x53554232u /* "2BUS": version 2, in a mailbox record */
#define BUS_BELLS 32          /* doorbell datagrams taken per recvmmsg */

struct bus_hdr {
  uint32_t magic;
  uint8_t kind;
  uint8_t topic_len;
  uint16_t from_slot;
  uint64_t from;
  uint64_t seq;
  uint64_t target;
  uint64_t reserved;
};
_Static_assert(sizeof(struct bus_hdr) == BUS_HDR_SIZE, "bus header");

/* --- names and sockets ------------------------------------------------- */

static void bus_name(const struct shm *r, int slot, struct bus_addr *a) {
  char name[96];
  int n = snprintf(name, sizeof name, "berth.%d.%016llx.%d",
                   (int)shm_creator(r), (unsigned long long)shm_nonce(r),
                   slot);
  memset(&a->sun, 0, sizeof a->sun);
  a->sun.sun_family = AF_UNIX;
  memcpy(a->sun.sun_path + 1, name, (size_t)n); /* [0] = 0: abstract */
  a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static int bus_socket(void) {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  return fd;
}

static int bus_bind(struct bus *b) {
  int fd = bus_socket();
  if (fd < 0)
    return fd;
  const struct bus_addr *a = &b->names[b->slot];
  if (bind(fd, (const struct sockaddr *)&a->sun, a->len) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  b->fd = fd;
  return 0;
}

/* Our mailbox: made in zone "bus.<slot>.<bytes>", or taken over from the
 * slot's previous member and emptied, then announced in the member table
 * (the member is not LIVE yet, so no sender looks there meanwhile). */
static int bus_mailbox(struct bus *b, size_t ring) {
  char name[SHM_NAME_MAX + 1];
  struct shm_zone z;
  snprintf(name, sizeof name, "bus.%d.%zu", b->slot, ring);
  int rc = shm_zone(b->r, name, mbox_zone_size(ring), mbox_init, NULL, &z);
  if (rc == 0)
    rc = mbox_open(&b->box, z.base, z.size);
  if (rc == 0 && !z.created)
    rc = mbox_reset(&b->box);
  if (rc == 0)
    atomic_store(&shm_member(b->r, b->slot)->bus_mbox, shm_off(b->r, z.base));
  return rc;
}

int bus_open(struct bus *b, struct shm *r, int slot, size_t ring) {
  if (shm_member(r, slot) == NULL)
    return -EINVAL;
  memset(b, 0, sizeof *b);
  b->r = r;
  b->slot = slot;
  b->fd = b->out = -1;
  if (ring == 0)
    ring = BUS_RING_DEFAULT;
  if (ring < BUS_RING_MIN)
    ring = BUS_RING_MIN;
  for (int i = 0; i < SHM_MEMBERS; i++)
    bus_name(r, i, &b->names[i]);
  /* Address space only: the kernel commits what the copies touch. */
  b->rbuf = malloc((size_t)BUS_BATCH * BUS_MSG_MAX);
  if (b->rbuf == NULL)
    return -ENOMEM;
  int rc = bus_mailbox(b, ring);
  if (rc == 0)
    rc = bus_bind(b);
  if (rc == 0 && (b->out = bus_socket()) < 0)
    rc = b->out;
  if (rc < 0)
    bus_close(b);
  return rc;
}

void bus_close(struct bus *b) {
  if (b->fd >= 0)
    close(b->fd);
  if (b->out >= 0)
    close(b->out);
  free(b->rbuf);
  b->rbuf = NULL;
  b->fd = b->out = -1;
}

/* --- sending ------------------------------------------------------------ */

/* Member dst's mailbox, if it announced one inside the region. */
static int bus_dest(struct bus *b, struct shm_member *m, struct mbox *box) {
  uint64_t off = atomic_load(&m->bus_mbox);
  if (off == 0 || off >= b->r->size)
    return -ENOENT;
  return mbox_open(box, shm_ptr(b->r, off), b->r->size - (size_t)off);
}

/* Wake dst. 0, or -ENOENT when nothing is bound there any more: the
 * member died and its slot is not freed yet; its bell is cleared again,
 * so the next sender tries (and learns) too. A full socket queue is no
 * failure: wake-ups are pending then. */
static int bus_ring(struct bus *b, int dst, struct mbox *box) {
  static const char ding = 1;
  const struct bus_addr *a = &b->names[dst];
  if (sendto(b->out, &ding, 1, MSG_DONTWAIT | MSG_NOSIGNAL,
             (const struct sockaddr *)&a->sun, a->len) == 1)
    return 0;
  if (errno != ECONNREFUSED && errno != ENOENT)
    return 0;
  mbox_clear_bell(box);
  return -ENOENT;
}

/* One message to member `dst` (of instance `inst`): 0, -EAGAIN (its
 * mailbox is full: dropped, counted on it), -ENOENT (it is gone), or
 * another -errno. */
static int bus_send_one(struct bus *b, int dst, uint64_t inst,
                        struct bus_hdr *h, struct iovec *iov, int iovcnt) {
  struct bus_stream *tx = &b->tx[dst];
  struct shm_member *m = shm_member(b->r, dst);
  struct mbox box;
  if (tx->instance != inst) { /* a new member there: a new stream */
    tx->instance = inst;
    tx->seq = 0;
  }
  h->seq = tx->seq++;
  int ring = 0, rc = bus_dest(b, m, &box);
  if (rc == 0)
    rc = mbox_put(&box, iov, iovcnt, &ring);
  if (rc == -ENOSPC) {
    atomic_fetch_add_explicit(&m->bus_dropped, 1, memory_order_relaxed);
    return -EAGAIN;
  }
  if (rc < 0)
    return rc;
  atomic_fetch_add_explicit(&shm_member(b->r, b->slot)->bus_sent, 1,
                            memory_order_relaxed);
  return ring ? bus_ring(b, dst, &box) : 0;
}

static void bus_header(const struct bus *b, struct bus_hdr *h, int kind,
                       size_t topic_len, uint64_t target) {
  memset(h, 0, sizeof *h);
  h->magic = BUS_MAGIC;
  h->kind = (uint8_t)kind;
  h->topic_len = (uint8_t)topic_len;
  h->from_slot = (uint16_t)b->slot;
  h->from = atomic_load_explicit(&shm_member(b->r, b->slot)->instance,
                                 memory_order_relaxed);
  h->target = target;
}

int bus_publish(struct bus *b, const void *topic, size_t topic_len,
                const void *data, size_t len) {
  if (topic_len > BUS_TOPIC_MAX || len > BUS_MSG_MAX - BUS_HDR_SIZE - topic_len)
    return -EMSGSIZE;
  struct bus_hdr h;
  bus_header(b, &h, BUS_TOPIC, topic_len, 0);
  struct iovec iov[3] = {{&h, sizeof h},
                         {(void *)topic, topic_len},
                         {(void *)data, len}};
  int queued = 0;
  for (int i = 0; i < SHM_MEMBERS; i++) {
    struct shm_member *m = shm_member(b->r, i);
    if (!shm_state_receives(atomic_load(&m->state)))
      continue;
    uint64_t inst = atomic_load(&m->instance);
    if (bus_send_one(b, i, inst, &h, iov, 3) == 0)
      queued++;
  }
  return queued;
}

int bus_send_to(struct bus *b, uint64_t conn, const void *data, size_t len) {
  if (len > BUS_MSG_MAX - BUS_HDR_SIZE)
    return -EMSGSIZE;
  int dst = shm_conn_owner(b->r, conn);
  if (dst < 0)
    return dst;
  struct bus_hdr h;
  bus_header(b, &h, BUS_DIRECT, 0, conn);
  struct iovec iov[2] = {{&h, sizeof h}, {(void *)data, len}};
  uint64_t inst = atomic_load(&shm_member(b->r, dst)->instance);
  return bus_send_one(b, dst, inst, &h, iov, 2);
}

/* --- receiving ---------------------------------------------------------- */

/* Take every doorbell datagram waiting (their content is meaningless). */
static void bus_take_bells(struct bus *b) {
  struct mmsghdr mm[BUS_BELLS];
  struct iovec iov[BUS_BELLS];
  char sink[BUS_BELLS];
  for (;;) {
    memset(mm, 0, sizeof mm);
    for (int i = 0; i < BUS_BELLS; i++) {
      iov[i].iov_base = &sink[i];
      iov[i].iov_len = 1;
      mm[i].msg_hdr.msg_iov = &iov[i];
      mm[i].msg_hdr.msg_iovlen = 1;
    }
    int got = recvmmsg(b->fd, mm, BUS_BELLS, MSG_DONTWAIT, NULL);
    if (got < BUS_BELLS)
      return;
  }
}

/* How many messages of `h`'s stream went missing before this one;
 * tracks the stream. */
static uint64_t bus_track(struct bus *b, const struct bus_hdr *h) {
  struct bus_stream *rx = &b->rx[h->from_slot];
  uint64_t lost;
  if (rx->instance != h->from) { /* its first message to reach us */
    rx->instance = h->from;
    lost = h->seq;
  } else {
    lost = h->seq >= rx->seq ? h->seq - rx->seq : 0;
  }
  rx->seq = h->seq + 1;
  return lost;
}

/* 0 and `out` filled, or -EBADMSG for a record to refuse. */
static int bus_decode(struct bus *b, const unsigned char *p, size_t n,
                      struct bus_msg *out) {
  struct bus_hdr h;
  if (n < sizeof h)
    return -EBADMSG;
  memcpy(&h, p, sizeof h);
  if (h.magic != BUS_MAGIC || (h.kind != BUS_TOPIC && h.kind != BUS_DIRECT) ||
      h.from_slot >= SHM_MEMBERS || h.topic_len > n - sizeof h)
    return -EBADMSG;
  out->kind = h.kind;
  out->from_slot = h.from_slot;
  out->from = h.from;
  out->seq = h.seq;
  out->lost = bus_track(b, &h);
  out->target = h.target;
  out->topic = (const char *)p + sizeof h;
  out->topic_len = h.topic_len;
  out->data = out->topic + h.topic_len;
  out->len = n - sizeof h - h.topic_len;
  return 0;
}

int bus_recv_batch(struct bus *b, struct bus_msg *msgs, int max) {
  if (max > BUS_BATCH)
    max = BUS_BATCH;
  if (max <= 0)
    return -EINVAL;
  struct shm_member *self = shm_member(b->r, b->slot);
  bus_take_bells(b);
  mbox_clear_bell(&b->box); /* before reading: see mbox.h */
  int n = 0;
  size_t used = 0;
  uint64_t got = 0;
  while (n < max) {
    unsigned char *at = b->rbuf + used;
    size_t len = 0;
    int rc = mbox_get(&b->box, at, BUS_MSG_MAX, &len);
    if (rc == 0)
      break;
    got++;
    if (rc < 0 || bus_decode(b, at, len, &msgs[n]) < 0) {
      atomic_fetch_add_explicit(&self->bus_rejected, 1, memory_order_relaxed);
      continue;
    }
    n++;
    used += len;
  }
  atomic_fetch_add_explicit(&self->bus_received, got, memory_order_relaxed);
  return n;
}

int bus_pending(const struct bus *b) {
  return mbox_used(&b->box) > 0;
}
