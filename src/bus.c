/*
 * bus.c -- the message bus between members. See bus.h for the contract
 * and the measured queue bound. No lua.h here.
 */
#define _GNU_SOURCE /* recvmmsg, struct ucred, SOCK_CLOEXEC */
/* scripts/lint force-includes lua.h ahead of this file, which settles the
 * glibc feature macros without _GNU_SOURCE; have them read again (a no-op
 * in a normal build, where nothing came before). */
#undef _FEATURES_H
#include <features.h>
#include "bus.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUS_MAGIC 0x53554231u /* "1BUS": version 1 */

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

/* The receive socket: bound, credentials on every datagram. */
static int bus_bind(struct bus *b) {
  int fd = bus_socket(), on = 1;
  if (fd < 0)
    return fd;
  const struct bus_addr *a = &b->names[b->slot];
  if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0 ||
      bind(fd, (const struct sockaddr *)&a->sun, a->len) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  b->fd = fd;
  return 0;
}

int bus_open(struct bus *b, struct shm *r, int slot, int sndbuf) {
  if (shm_member(r, slot) == NULL || sndbuf < 0)
    return -EINVAL;
  memset(b, 0, sizeof *b);
  b->r = r;
  b->slot = slot;
  b->fd = -1;
  b->uid = geteuid();
  b->sndbuf = sndbuf == 0 ? 0 : sndbuf < BUS_MSG_MAX ? BUS_MSG_MAX : sndbuf;
  for (int i = 0; i < SHM_MEMBERS; i++) {
    b->out[i] = -1;
    bus_name(r, i, &b->names[i]);
  }
  /* Address space only: the kernel commits what recvmmsg writes. */
  b->rbuf = malloc((size_t)BUS_BATCH * BUS_MSG_MAX);
  if (b->rbuf == NULL)
    return -ENOMEM;
  int rc = bus_bind(b);
  if (rc < 0) {
    free(b->rbuf);
    b->rbuf = NULL;
  }
  return rc;
}

void bus_close(struct bus *b) {
  if (b->fd >= 0)
    close(b->fd);
  for (int i = 0; i < SHM_MEMBERS; i++)
    if (b->out[i] >= 0)
      close(b->out[i]);
  free(b->rbuf);
  b->rbuf = NULL;
  b->fd = -1;
  for (int i = 0; i < SHM_MEMBERS; i++)
    b->out[i] = -1;
}

/* The socket for sending to `dst`, made on first use (see bus.h: one
 * per destination, so one full queue does not block the others). */
static int bus_out(struct bus *b, int dst) {
  if (b->out[dst] >= 0)
    return b->out[dst];
  int fd = bus_socket();
  if (fd < 0)
    return fd;
  if (b->sndbuf > 0 &&
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &b->sndbuf, sizeof b->sndbuf) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  b->out[dst] = fd;
  return fd;
}

/* --- sending ------------------------------------------------------------ */

/* One datagram to member `dst` (of instance `inst`): 0, -EAGAIN (its
 * queue is full: dropped, counted on it), or another -errno (it is gone:
 * ECONNREFUSED until the master frees its slot). */
static int bus_send_one(struct bus *b, int dst, uint64_t inst,
                        struct bus_hdr *h, struct iovec *iov, int iovcnt) {
  struct bus_stream *tx = &b->tx[dst];
  if (tx->instance != inst) { /* a new member there: a new stream */
    tx->instance = inst;
    tx->seq = 0;
  }
  h->seq = tx->seq++;
  int fd = bus_out(b, dst);
  if (fd < 0)
    return fd;
  struct msghdr mh = {0};
  mh.msg_name = &b->names[dst].sun;
  mh.msg_namelen = b->names[dst].len;
  mh.msg_iov = iov;
  mh.msg_iovlen = (size_t)iovcnt;
  if (sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
    atomic_fetch_add_explicit(&shm_member(b->r, b->slot)->bus_sent, 1,
                              memory_order_relaxed);
    return 0;
  }
  int err = errno;
  if (err == EAGAIN || err == ENOBUFS) {
    atomic_fetch_add_explicit(&shm_member(b->r, dst)->bus_dropped, 1,
                              memory_order_relaxed);
    return -EAGAIN;
  }
  return -err;
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
  int rc = bus_send_one(b, dst, inst, &h, iov, 2);
  return rc == -ECONNREFUSED ? -ENOENT : rc;
}

/* --- receiving ---------------------------------------------------------- */

/* The sender's uid from SCM_CREDENTIALS, or -1 when there is none. */
static long bus_sender_uid(struct msghdr *mh) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
        c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
      struct ucred uc;
      memcpy(&uc, CMSG_DATA(c), sizeof uc);
      return (long)uc.uid;
    }
  }
  return -1;
}

/* How many datagrams of the stream from `h`'s publisher went missing
 * before this one; tracks the stream. */
static uint64_t bus_track(struct bus *b, const struct bus_hdr *h) {
  struct bus_stream *rx = &b->rx[h->from_slot];
  uint64_t lost;
  if (rx->instance != h->from) { /* its first datagram to reach us */
    rx->instance = h->from;
    lost = h->seq;
  } else {
    lost = h->seq >= rx->seq ? h->seq - rx->seq : 0;
  }
  rx->seq = h->seq + 1;
  return lost;
}

/* 0 and `out` filled, or -EBADMSG for a datagram to refuse. */
static int bus_decode(struct bus *b, struct mmsghdr *mm, struct bus_msg *out) {
  const unsigned char *p = mm->msg_hdr.msg_iov->iov_base;
  size_t n = mm->msg_len;
  struct bus_hdr h;
  if (bus_sender_uid(&mm->msg_hdr) != (long)b->uid ||
      (mm->msg_hdr.msg_flags & MSG_TRUNC) || n < sizeof h)
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
  struct mmsghdr mm[BUS_BATCH];
  struct iovec iov[BUS_BATCH];
  union {
    char buf[CMSG_SPACE(sizeof(struct ucred))];
    struct cmsghdr align;
  } ctl[BUS_BATCH];
  if (max > BUS_BATCH)
    max = BUS_BATCH;
  if (max <= 0)
    return -EINVAL;
  memset(mm, 0, sizeof mm[0] * (size_t)max);
  memset(ctl, 0, sizeof ctl[0] * (size_t)max);
  for (int i = 0; i < max; i++) {
    iov[i].iov_base = b->rbuf + (size_t)i * BUS_MSG_MAX;
    iov[i].iov_len = BUS_MSG_MAX;
    mm[i].msg_hdr.msg_iov = &iov[i];
    mm[i].msg_hdr.msg_iovlen = 1;
    mm[i].msg_hdr.msg_control = ctl[i].buf;
    mm[i].msg_hdr.msg_controllen = sizeof ctl[i].buf;
  }
  int got = recvmmsg(b->fd, mm, (unsigned)max, MSG_DONTWAIT, NULL);
  if (got < 0)
    return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
  struct shm_member *self = shm_member(b->r, b->slot);
  int n = 0;
  for (int i = 0; i < got; i++) {
    if (bus_decode(b, &mm[i], &msgs[n]) == 0)
      n++;
    else
      atomic_fetch_add_explicit(&self->bus_rejected, 1, memory_order_relaxed);
  }
  atomic_fetch_add_explicit(&self->bus_received, (uint64_t)got,
                            memory_order_relaxed);
  return n;
}

int bus_qlen(void) {
  char text[32];
  int fd = open("/proc/sys/net/unix/max_dgram_qlen", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  ssize_t n = read(fd, text, sizeof text - 1);
  int err = errno;
  close(fd);
  if (n <= 0)
    return n < 0 ? -err : -EIO;
  text[n] = '\0';
  return atoi(text);
}
