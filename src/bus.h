/*
 * bus.h -- messages between the members of a berth group: publish to
 * every member, or send to the member that owns a connection.
 *
 * Contract: no lua.h here; 0 (or a count) on success, -errno on failure.
 * A struct bus is one member's endpoint; it lives in that process only.
 *
 * Transport: each member has a mailbox (mbox.h) in the shared region, a
 * ring of records bounded in bytes, and a unix datagram socket in the
 * abstract namespace, "\0berth.<creator pid>.<region nonce>.<slot>", used
 * only as a doorbell. A message is one record: a 40-byte header (kind,
 * topic length, publisher slot and instance, sequence number, target
 * connection id), the topic, then the payload; at most BUS_MSG_MAX bytes
 * in all (-EMSGSIZE beyond). Sending appends the record to the
 * destination's mailbox under its lock (held for the copy only) and rings
 * the doorbell only when none is pending (mbox.h), so a burst of messages
 * costs one datagram per time the receiver drains. A lost doorbell (its
 * socket queue full) is harmless: one is pending already.
 *
 * Why not one datagram per message (the first design): Linux bounds a
 * unix datagram queue by net.unix.max_dgram_qlen datagrams -- 10 in a
 * fresh network namespace, 512 where systemd set it -- whatever their
 * size, so a subscriber off the CPU for a moment dropped after ten
 * messages. A mailbox of 1 MiB holds ~8,000 messages of 64 bytes.
 * Measured between two processes (spec/c/bench_shm.c bus, shared 2-core
 * VM): with the publisher paced to the mailbox, no loss, 540,000
 * messages/s of 64 bytes, 500,000 of 1 KiB, 150,000 of 16 KiB (the
 * datagram design: 50,000/s of 64 bytes at qlen 10); unpaced, 620,000/s
 * of 64 bytes get through and 11% are dropped and counted.
 *
 * Delivery: publish appends to the mailbox of every member that is LIVE
 * or RETIRED -- the publisher included, so subscribers in the publishing
 * process (and a group of one) get the message the same way as everyone
 * else, in the same order. Sending never blocks: when a member's mailbox
 * is full, the message is dropped for that member only (the newest one:
 * what is queued stays) and its bus_dropped counter in the member table
 * goes up. A mailbox is FIFO and each publisher appends in its own order,
 * so what is not dropped arrives in the order each publisher sent it.
 * Each (publisher, destination) pair numbers its messages from 0, so a
 * receiver also learns how many it missed (bus_msg.lost).
 *
 * A member's mailbox is made (or, in a reused slot, emptied) by bus_open,
 * before the member turns LIVE; its offset is in the member table
 * (shm_member.bus_mbox). It lives in zone "bus.<slot>.<bytes>" of the
 * region, reused by the next member of the slot.
 *
 * Trust: only processes that map the region can append to a mailbox; any
 * local process can send to an abstract name, but a datagram carries
 * nothing, so a stranger can only cause a spurious wake-up.
 */
#ifndef BERTH_BUS_H
#define BERTH_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "mbox.h"
#include "shm.h"

#define BUS_MSG_MAX 65536  /* header + topic + payload */
#define BUS_HDR_SIZE 40
#define BUS_TOPIC_MAX 255
#define BUS_BATCH 32       /* messages per bus_recv_batch at most */
#define BUS_RING_DEFAULT ((size_t)1 << 20)
#define BUS_RING_MIN ((size_t)256 << 10) /* a few maximal messages */

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
  uint64_t lost;      /* messages of that stream lost just before it */
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
  int fd;                               /* doorbell: watch it for reading */
  int out;                              /* unbound: rings the others */
  struct mbox box;                      /* ours */
  struct bus_stream tx[SHM_MEMBERS];    /* per destination */
  struct bus_stream rx[SHM_MEMBERS];    /* per publisher slot */
  struct bus_addr names[SHM_MEMBERS];
  unsigned char *rbuf;                  /* BUS_BATCH x BUS_MSG_MAX */
};

/* Make (or take over) member `slot`'s mailbox of `ring` bytes (0:
 * BUS_RING_DEFAULT; at least BUS_RING_MIN), and bind its doorbell; then
 * the caller marks the member LIVE. */
int bus_open(struct bus *b, struct shm *r, int slot, size_t ring);
void bus_close(struct bus *b);
static inline int bus_fd(const struct bus *b) { return b->fd; }

/* To every receiving member: how many queued it (>= 0), or -EMSGSIZE
 * (topic over BUS_TOPIC_MAX or the whole over BUS_MSG_MAX). */
int bus_publish(struct bus *b, const void *topic, size_t topic_len,
                const void *data, size_t len);
/* To the member owning connection `conn`: 0; -ENOENT (no live owner);
 * -EAGAIN (its mailbox is full: dropped and counted); -EMSGSIZE. */
int bus_send_to(struct bus *b, uint64_t conn, const void *data, size_t len);
/* Take the doorbell's datagrams, then read up to `max` (<= BUS_BATCH)
 * queued messages into msgs: how many, 0 when none. Malformed records
 * are skipped and counted (bus_rejected). */
int bus_recv_batch(struct bus *b, struct bus_msg *msgs, int max);
/* Whether messages are still queued: a reader that stopped before the
 * mailbox was empty must come back without waiting for a doorbell. */
int bus_pending(const struct bus *b);

#endif
