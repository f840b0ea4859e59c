/*
 * bus.h -- messages between the members of a berth group: publish to
 * every member, or send to the member that owns a connection.
 *
 * Contract: no lua.h here; 0 (or a count) on success, -errno on failure.
 * A struct bus is one member's endpoint; it lives in that process only.
 *
 * Transport: unix datagram sockets in the abstract namespace (no files,
 * no descriptor passing). Member `slot` receives on the name
 * "\0berth.<creator pid>.<region nonce>.<slot>". A datagram is a 40-byte
 * header (kind, topic length, publisher slot and instance, sequence
 * number, target connection id), the topic, then the payload; at most
 * BUS_MSG_MAX bytes in all (-EMSGSIZE beyond).
 *
 * Delivery: publish sends one datagram to every member that is LIVE or
 * RETIRED -- the publisher included, so subscribers in the publishing
 * process (and a group of one) get the message the same way as everyone
 * else, in the same order. Sends never block: when a member's queue is
 * full the datagram is dropped for that member only and its bus_dropped
 * counter in the member table goes up. Unix datagrams are reliable and
 * ordered, so what is not dropped arrives in the order each publisher
 * sent it. Each (publisher, destination) pair numbers its datagrams from
 * 0, so a receiver also learns how many it missed (bus_msg.lost).
 *
 * The queue bound -- measured, not what SO_RCVBUF suggests. Linux ignores
 * SO_RCVBUF for unix datagram sockets. A member's queue is bounded by
 *   (1) net.unix.max_dgram_qlen + 1 datagrams in total from all senders
 *       (a sysctl read when the socket is made: 10 in a bare kernel or a
 *       container's fresh network namespace, 512 where systemd set it;
 *       bus_qlen() reads it), and
 *   (2) per publisher, the publisher's SO_SNDBUF for that destination:
 *       the kernel charges an unread datagram to its sender's send
 *       buffer by its "truesize" (measured with the default 208 KiB,
 *       net.core.wmem_default: 278 messages of 100 bytes, 93 of 1 KiB;
 *       2605 of 100 bytes with sndbuf 1,000,000, which the kernel
 *       doubles; settable with bus_open's sndbuf, up to wmem_max).
 * Because of (2), a publisher uses a separate unbound socket for each
 * destination: with one socket, a subscriber that stops reading would
 * fill the publisher's send buffer and make every other destination drop
 * too. With (1) at 10, a subscriber that is off the CPU for a moment
 * while others publish fast will drop; raise the sysctl for a deeper
 * queue (it is per network namespace). Measured between two processes
 * on a shared 2-core VM (spec/c/bench_shm.c bus): with the publisher
 * paced to the queue, ~50,000 messages/s at qlen 10 and ~100,000/s at
 * qlen 512, no loss; unpaced, the subscriber keeps 17,000-53,000/s and
 * the rest is dropped and counted.
 *
 * Trust: any local process can send to an abstract name, so receivers
 * turn on SO_PASSCRED and refuse datagrams from another uid (counted in
 * bus_rejected), as well as malformed ones.
 */
#ifndef BERTH_BUS_H
#define BERTH_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "shm.h"

#define BUS_MSG_MAX 65536  /* header + topic + payload */
#define BUS_HDR_SIZE 40
#define BUS_TOPIC_MAX 255
#define BUS_BATCH 32       /* datagrams per recvmmsg */

enum bus_kind {
  BUS_TOPIC = 1,
  BUS_DIRECT = 2
};

/* A received message. topic/data point into the bus's receive buffer and
 * stay valid until the next bus_recv_batch. */
struct bus_msg {
  int kind;
  int from_slot;
  uint64_t from;      /* publisher's instance id */
  uint64_t seq;       /* its number in the (publisher -> us) stream */
  uint64_t lost;      /* datagrams of that stream lost just before it */
  uint64_t target;    /* BUS_DIRECT: the connection id */
  const char *topic;
  size_t topic_len;
  const char *data;
  size_t len;
};

struct bus_addr {
  struct sockaddr_un sun;
  socklen_t len;
};

struct bus_stream {
  uint64_t instance;  /* the other end's instance */
  uint64_t seq;       /* next sequence number */
};

struct bus {
  struct shm *r;
  int slot;
  int fd;                               /* bound; watch it for reading */
  int sndbuf;
  uid_t uid;
  int out[SHM_MEMBERS];                 /* per destination, -1 until used */
  struct bus_stream tx[SHM_MEMBERS];    /* per destination */
  struct bus_stream rx[SHM_MEMBERS];    /* per publisher slot */
  struct bus_addr names[SHM_MEMBERS];
  unsigned char *rbuf;                  /* BUS_BATCH x BUS_MSG_MAX */
};

/* Bind member `slot`'s endpoint (then mark the member LIVE). `sndbuf`:
 * bytes for SO_SNDBUF of each destination socket, 0 for the system
 * default (at least BUS_MSG_MAX, so a maximal message always fits). */
int bus_open(struct bus *b, struct shm *r, int slot, int sndbuf);
void bus_close(struct bus *b);
static inline int bus_fd(const struct bus *b) { return b->fd; }

/* To every receiving member: how many queued it (>= 0), or -EMSGSIZE
 * (topic over BUS_TOPIC_MAX or the whole over BUS_MSG_MAX). */
int bus_publish(struct bus *b, const void *topic, size_t topic_len,
                const void *data, size_t len);
/* To the member owning connection `conn`: 0; -ENOENT (no live owner);
 * -EAGAIN (its queue is full: dropped and counted); -EMSGSIZE. */
int bus_send_to(struct bus *b, uint64_t conn, const void *data, size_t len);
/* Read up to `max` (<= BUS_BATCH) waiting datagrams with one recvmmsg and
 * decode them into msgs: how many, 0 when nothing valid was waiting, or
 * -errno. Refused datagrams are skipped and counted. */
int bus_recv_batch(struct bus *b, struct bus_msg *msgs, int max);

/* net.unix.max_dgram_qlen (see the queue bound above), or -errno. */
int bus_qlen(void);

#endif
