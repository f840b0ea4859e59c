/*
 * mbox.c -- a mailbox ring in shared memory. See mbox.h for the contract.
 * No lua.h here.
 *
 * Memory order: the tail is stored and loaded seq_cst, and the doorbell
 * is only ever changed by exchanges, so "a writer whose exchange found the
 * bell set" and "the reader's exchange that cleared it" are ordered with
 * the tail: a reader that cleared the bell and then loads the tail sees
 * every record whose writer did not ring. The head is published with a
 * release store after the copy out, and writers load it with acquire, so
 * they never overwrite bytes the reader is still copying.
 */
#include "mbox.h"

#include <errno.h>
#include <string.h>

#include "shm.h"

#define MBOX_MAGIC 0x584f424du /* "MBOX" */
#define MBOX_VERSION 1u
#define MBOX_CHECK 0x9e3779b9u

static uint64_t mbox_pad(uint64_t n) {
  return (n + 7) & ~(uint64_t)7;
}

static uint64_t mbox_hdr_size(void) {
  return (sizeof(struct mbox_hdr) + 63) & ~(uint64_t)63;
}

size_t mbox_zone_size(size_t cap) {
  size_t c = MBOX_MIN_CAP;
  while (c < cap && c < ((size_t)1 << 40))
    c <<= 1;
  return (size_t)mbox_hdr_size() + c;
}

int mbox_init(void *zone, size_t size, void *arg) {
  (void)arg;
  struct mbox_hdr *h = zone;
  uint64_t hs = mbox_hdr_size();
  if (size < hs + MBOX_MIN_CAP)
    return -EINVAL;
  uint64_t cap = MBOX_MIN_CAP;
  while (cap * 2 <= size - hs)
    cap *= 2;
  memset(h, 0, sizeof *h);
  int rc = shm_mutex_init(&h->lock);
  if (rc < 0)
    return rc;
  h->cap = cap;
  h->data_off = hs;
  h->version = MBOX_VERSION;
  atomic_store(&h->tail, 0);
  atomic_store(&h->head, 0);
  h->magic = MBOX_MAGIC; /* last: mbox_open checks it first */
  return 0;
}

int mbox_open(struct mbox *m, void *zone, size_t size) {
  struct mbox_hdr *h = zone;
  if (size < sizeof *h || h->magic != MBOX_MAGIC ||
      h->version != MBOX_VERSION || h->cap < MBOX_MIN_CAP ||
      (h->cap & (h->cap - 1)) != 0 || h->data_off != mbox_hdr_size() ||
      h->cap > size - h->data_off)
    return -EPROTO;
  m->h = h;
  m->data = (unsigned char *)zone + h->data_off;
  return 0;
}

/* --- the ring's bytes ---------------------------------------------------- */

/* Copy n bytes in at position pos, wrapping at the end of the ring. */
static void mbox_write(struct mbox *m, uint64_t pos, const void *p, size_t n) {
  uint64_t cap = m->h->cap, at = pos & (cap - 1);
  size_t first = n < cap - at ? n : (size_t)(cap - at);
  memcpy(m->data + at, p, first);
  memcpy(m->data, (const unsigned char *)p + first, n - first);
}

static void mbox_read(const struct mbox *m, uint64_t pos, void *p, size_t n) {
  uint64_t cap = m->h->cap, at = pos & (cap - 1);
  size_t first = n < cap - at ? n : (size_t)(cap - at);
  memcpy(p, m->data + at, first);
  memcpy((unsigned char *)p + first, m->data, n - first);
}

/* --- writers ------------------------------------------------------------- */

/* The lock; a dead holder left nothing half-published (see mbox.h). */
static int mbox_lock(struct mbox *m) {
  int rc = shm_lock(&m->h->lock);
  if (rc == SHM_LOCK_RECOVERED) {
    atomic_fetch_add(&m->h->recoveries, 1);
    rc = 0;
  }
  return rc;
}

static void mbox_note_peak(struct mbox_hdr *h, uint64_t used) {
  if (used > atomic_load_explicit(&h->peak, memory_order_relaxed))
    atomic_store_explicit(&h->peak, used, memory_order_relaxed);
}

int mbox_put(struct mbox *m, const struct iovec *iov, int iovcnt, int *ring) {
  struct mbox_hdr *h = m->h;
  size_t len = 0;
  *ring = 0;
  for (int i = 0; i < iovcnt; i++) {
    if (iov[i].iov_len > UINT32_MAX - len)
      return -EMSGSIZE;
    len += iov[i].iov_len;
  }
  uint64_t need = MBOX_RECORD_HDR + mbox_pad(len);
  if (need > h->cap)
    return -EMSGSIZE;
  int rc = mbox_lock(m);
  if (rc < 0)
    return rc;
  uint64_t tail = atomic_load_explicit(&h->tail, memory_order_relaxed);
  uint64_t head = atomic_load_explicit(&h->head, memory_order_acquire);
  if (need > h->cap - (tail - head)) {
    shm_unlock(&h->lock);
    return -ENOSPC;
  }
  uint32_t rh[2] = {(uint32_t)len, (uint32_t)len ^ MBOX_CHECK};
  mbox_write(m, tail, rh, sizeof rh);
  uint64_t pos = tail + MBOX_RECORD_HDR;
  for (int i = 0; i < iovcnt; i++) {
    mbox_write(m, pos, iov[i].iov_base, iov[i].iov_len);
    pos += iov[i].iov_len;
  }
  atomic_store(&h->tail, tail + need); /* publishes the record */
  mbox_note_peak(h, tail + need - head);
  shm_unlock(&h->lock);
  *ring = atomic_exchange(&h->bell, 1) == 0;
  return 0;
}

int mbox_reset(struct mbox *m) {
  int rc = mbox_lock(m);
  if (rc < 0)
    return rc;
  atomic_store(&m->h->head, atomic_load(&m->h->tail));
  (void)atomic_exchange(&m->h->bell, 0);
  shm_unlock(&m->h->lock);
  return 0;
}

/* --- the reader ---------------------------------------------------------- */

int mbox_clear_bell(struct mbox *m) {
  return atomic_exchange(&m->h->bell, 0) != 0;
}

uint64_t mbox_used(const struct mbox *m) {
  return atomic_load(&m->h->tail) -
         atomic_load_explicit(&m->h->head, memory_order_relaxed);
}

int mbox_get(struct mbox *m, void *buf, size_t bufsize, size_t *len) {
  struct mbox_hdr *h = m->h;
  uint64_t head = atomic_load_explicit(&h->head, memory_order_relaxed);
  uint64_t tail = atomic_load(&h->tail);
  if (head == tail)
    return 0;
  uint32_t rh[2];
  mbox_read(m, head, rh, sizeof rh);
  uint64_t need = MBOX_RECORD_HDR + mbox_pad(rh[0]);
  if ((rh[0] ^ MBOX_CHECK) != rh[1] || (head & 7) != 0 ||
      need > tail - head) {
    /* Not a record: skip everything queued, which is all suspect. */
    atomic_fetch_add(&h->corrupt, 1);
    atomic_store_explicit(&h->head, tail, memory_order_release);
    return -EBADMSG;
  }
  int rc = 1;
  if (rh[0] > bufsize)
    rc = -EMSGSIZE;
  else
    mbox_read(m, head + MBOX_RECORD_HDR, buf, rh[0]);
  *len = rh[0];
  atomic_store_explicit(&h->head, head + need, memory_order_release);
  return rc;
}
