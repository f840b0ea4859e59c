/*
 * mbox.h -- a mailbox in shared memory: a bounded ring of byte records
 * that any number of processes append to and one process reads.
 *
 * Contract: no lua.h here; functions return 0 (or a count) on success and
 * -errno on failure. Nothing inside the zone is a pointer: positions are
 * byte counts that only grow (a 64-bit count does not wrap in practice),
 * reduced modulo the capacity, a power of two.
 *
 * Why it exists: the bus (bus.c) first sent each message as a unix
 * datagram, and Linux bounds a unix datagram queue by a count of
 * datagrams (net.unix.max_dgram_qlen: 10 in a fresh network namespace),
 * not by bytes, so a subscriber that was off the CPU for a moment lost
 * messages after ten. A mailbox holds as many records as fit in its bytes
 * and the datagram socket is only a doorbell.
 *
 * Writers: mbox_put takes the robust lock, checks the room, copies the
 * record at the tail and publishes the new tail, then unlocks: the lock
 * is held for the copy only (no system call, nothing that grows with the
 * queue). A record that does not fit is refused (-ENOSPC): the newest
 * message is the one dropped, never one already queued, so what a reader
 * gets from one writer is always in that writer's order. A writer that
 * dies holding the lock leaves nothing to repair: the tail moves only
 * after the copy, so a half-written record is never visible; the next
 * locker only counts the recovery.
 *
 * The reader: mbox_get copies the record at the head out and publishes
 * the new head, without the lock (one reader per mailbox). Writers read
 * the head to see the room, so a record's bytes are reused only after
 * the reader copied them.
 *
 * Doorbell: `bell` says a wake-up is on its way. A writer that appended
 * sets it (atomic exchange) and, when it was clear, must wake the reader
 * (mbox_put says so through *ring); the reader clears it (exchange)
 * before it reads the records, so a record appended after the reader
 * looked is always followed by a wake-up, and a writer whose exchange
 * found it set knows one is already pending. Writers therefore send at
 * most one wake-up per reader drain, however fast they append.
 *
 * Record: an 8-byte header (payload length, and the length xor a
 * constant, so a reader that finds garbage -- memory scribbled on --
 * notices), the payload, padding to 8 bytes. The header never wraps
 * (positions are multiples of 8, so is the capacity); the payload may.
 */
#ifndef BERTH_MBOX_H
#define BERTH_MBOX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define MBOX_MIN_CAP ((size_t)4096)
#define MBOX_RECORD_HDR 8

/* The zone: this header, then the ring of `cap` bytes. Public for the
 * tests; nothing but mbox.c changes it. The head (the reader's) and the
 * tail (the writers') are on cache lines of their own. */
struct mbox_hdr {
  uint32_t magic;
  uint32_t version;
  uint64_t cap;                 /* ring bytes, a power of two */
  uint64_t data_off;            /* from the zone's base */
  _Atomic uint64_t recoveries;  /* the lock was taken from a dead holder */
  _Atomic uint64_t peak;        /* most bytes ever queued */
  _Atomic uint64_t corrupt;     /* bad records the reader skipped */
  pthread_mutex_t lock;         /* writers */
  _Alignas(64) _Atomic uint64_t head;  /* next byte to read */
  _Alignas(64) _Atomic uint64_t tail;  /* end of the published records */
  _Atomic uint32_t bell;        /* a wake-up is on its way */
};

/* Process-local handle. */
struct mbox {
  struct mbox_hdr *h;
  unsigned char *data;
};

/* Zone bytes for a ring of `cap` bytes (rounded up to a power of two). */
size_t mbox_zone_size(size_t cap);
/* Build an empty mailbox in `zone` (a shm_zone_init): the ring is the
 * largest power of two that fits. -EINVAL when below MBOX_MIN_CAP. */
int mbox_init(void *zone, size_t size, void *arg);
/* A handle on the mailbox in `zone` of `size` bytes; -EPROTO if there is
 * none (or it claims more bytes than the zone has). */
int mbox_open(struct mbox *m, void *zone, size_t size);

/* Append one record: the concatenation of `iov`. 0; -ENOSPC (full: the
 * record is dropped); -EMSGSIZE (it could never fit); or a lock error.
 * *ring is set to 1 when the caller must wake the reader. */
int mbox_put(struct mbox *m, const struct iovec *iov, int iovcnt, int *ring);
/* The reader: copy the oldest record into buf and drop it from the ring.
 * 1 with *len set; 0 when empty; -EMSGSIZE when it is larger than
 * bufsize (it is dropped); -EBADMSG when the ring held garbage (every
 * queued record is dropped and `corrupt` counted). */
int mbox_get(struct mbox *m, void *buf, size_t bufsize, size_t *len);
/* The reader, before reading: clear the doorbell. Returns whether it
 * was set. */
int mbox_clear_bell(struct mbox *m);
/* Bytes queued now (records and their headers). */
uint64_t mbox_used(const struct mbox *m);
static inline uint64_t mbox_cap(const struct mbox *m) { return m->h->cap; }
/* Drop everything queued and clear the doorbell (a new reader takes the
 * mailbox over), under the lock. */
int mbox_reset(struct mbox *m);

#endif
