/*
 * dgq.c -- the datagram FIFO. See dgq.h for the contract. No lua.h here.
 *
 * A record is a 16-byte header (data length, real size, address length,
 * padding) followed by the address and the data, each rounded up to 8
 * bytes. struct buf keeps records contiguous and consumes from the front
 * in O(1); since every record is a multiple of 8 bytes and buf slides its
 * bytes to offset 0 of a malloc'ed block, every record starts 8-aligned.
 */
#include "dgq.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

struct dgq_head {
  uint32_t len, size, alen;
};

#define ALIGN8(n) (((n) + 7) & ~(size_t)7)
#define HEAD ALIGN8(sizeof(struct dgq_head)) /* 16 */

static size_t rec_size(const struct dgq_head *h) {
  return HEAD + ALIGN8(h->alen) + ALIGN8(h->len);
}

int dgq_push(struct dgq *q, const void *addr, size_t alen, const void *data,
             size_t len, size_t size) {
  if (alen > DGQ_ADDRMAX || size < len || size > UINT32_MAX)
    return -EINVAL;
  struct dgq_head h = {(uint32_t)len, (uint32_t)size, (uint32_t)alen};
  size_t n = rec_size(&h);
  char *p = buf_reserve(&q->b, n);
  if (p == NULL)
    return -ENOMEM;
  memset(p, 0, n); /* padding too: nothing uninitialised is ever copied */
  memcpy(p, &h, sizeof h);
  if (alen > 0)
    memcpy(p + HEAD, addr, alen);
  if (len > 0)
    memcpy(p + HEAD + ALIGN8(alen), data, len);
  buf_commit(&q->b, n);
  q->count++;
  q->bytes += len;
  return 0;
}

/* The record at p: its item, and its total size. */
static size_t rec_item(const char *p, struct dgq_item *it) {
  struct dgq_head h;
  memcpy(&h, p, sizeof h);
  it->alen = h.alen;
  it->addr = h.alen > 0 ? p + HEAD : NULL;
  it->len = h.len;
  it->size = h.size;
  it->data = p + HEAD + ALIGN8(h.alen);
  return rec_size(&h);
}

int dgq_front(const struct dgq *q, struct dgq_item *it) {
  if (q->count == 0)
    return -1;
  rec_item(buf_begin(&q->b), it);
  return 0;
}

size_t dgq_gather(const struct dgq *q, struct dgq_item *items, size_t max) {
  const char *p = buf_begin(&q->b);
  size_t n = 0;
  for (; n < max && n < q->count; n++)
    p += rec_item(p, &items[n]);
  return n;
}

void dgq_pop(struct dgq *q, size_t n) {
  if (n >= q->count) {
    buf_consume(&q->b, q->b.len);
    q->count = q->bytes = 0;
    return;
  }
  size_t skip = 0;
  for (size_t i = 0; i < n; i++) {
    struct dgq_item it;
    skip += rec_item(buf_begin(&q->b) + skip, &it);
    q->bytes -= it.len;
  }
  buf_consume(&q->b, skip);
  q->count -= n;
}

void dgq_free(struct dgq *q) {
  buf_free(&q->b);
  q->count = q->bytes = 0;
}
