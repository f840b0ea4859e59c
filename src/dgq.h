/*
 * dgq.h -- a FIFO of datagrams, each with the address it came from or goes
 * to, kept in one growable buffer (struct buf). A Datagram socket has two:
 * the datagrams one recvmmsg read ahead of its consumer, and the datagrams
 * waiting for one sendmmsg (or for the kernel to take them).
 *
 * Contract: no lua.h here (unit-tested and fuzzed alone). Records are
 * copied in whole: the queue never points into the caller's memory. Each
 * record is [header][address][data], every part padded to 8 bytes, so an
 * address handed out is aligned for struct sockaddr. Items returned by
 * dgq_front/dgq_gather point into the queue and stay valid until the next
 * push, pop or free. Allocation failures return -ENOMEM and leave the
 * queue as it was.
 */
#ifndef BERTH_DGQ_H
#define BERTH_DGQ_H

#include <stddef.h>

#include "buffer.h"

/* The largest address a record holds: a struct sockaddr_storage. */
#define DGQ_ADDRMAX 128

struct dgq {
  struct buf b;
  size_t count;  /* datagrams queued */
  size_t bytes;  /* their data bytes (what a bound on the queue counts) */
};

#define DGQ_INIT {BUF_INIT, 0, 0}

struct dgq_item {
  const void *addr;  /* alen bytes; NULL when alen is 0 */
  size_t alen;
  const char *data;  /* len bytes */
  size_t len;
  size_t size;       /* the datagram's real size: > len when it was cut */
};

/* Append a datagram: `len` bytes kept of a datagram of `size` bytes
 * (size >= len; size > len records a truncation). -EINVAL for an address
 * over DGQ_ADDRMAX, size < len, or a size past 4 GiB. */
int dgq_push(struct dgq *q, const void *addr, size_t alen, const void *data,
             size_t len, size_t size);
/* The oldest datagram: 0 and *it, or -1 when the queue is empty. */
int dgq_front(const struct dgq *q, struct dgq_item *it);
/* Up to `max` datagrams from the front, oldest first: how many. */
size_t dgq_gather(const struct dgq *q, struct dgq_item *items, size_t max);
/* Drop the `n` oldest datagrams (all of them when n >= count). */
void dgq_pop(struct dgq *q, size_t n);
/* Drop everything and release the memory; the queue stays usable. */
void dgq_free(struct dgq *q);

#endif
