/*
 * buffer.c -- see buffer.h for the contract. No lua.h here.
 */
#define _GNU_SOURCE /* memmem */
#include "buffer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BUF_MIN_CAP 512

void buf_free(struct buf *b) {
  free(b->data);
  b->data = NULL;
  b->off = b->len = b->cap = 0;
}

size_t buf_room(const struct buf *b) {
  return b->cap - b->off - b->len;
}

/* Slide live bytes to the front when that frees enough room; otherwise grow
 * geometrically so appends stay amortised O(1). */
char *buf_reserve(struct buf *b, size_t n) {
  if (b->data != NULL && buf_room(b) >= n) /* no memory yet: allocate */
    return b->data + b->off + b->len;
  if (b->data != NULL && b->off > 0 && b->cap - b->len >= n) {
    memmove(b->data, b->data + b->off, b->len);
    b->off = 0;
    return b->data + b->len;
  }
  if (n > (size_t)-1 / 2 - b->len)
    return NULL;
  size_t need = b->len + n;
  size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
  while (cap < need)
    cap *= 2;
  char *p = malloc(cap);
  if (p == NULL)
    return NULL;
  if (b->data != NULL && b->len > 0)
    memcpy(p, b->data + b->off, b->len);
  free(b->data);
  b->data = p;
  b->off = 0;
  b->cap = cap;
  return p + b->len;
}

void buf_commit(struct buf *b, size_t n) {
  b->len += n;
}

int buf_append(struct buf *b, const void *p, size_t n) {
  if (n == 0)
    return 0;
  char *tail = buf_reserve(b, n);
  if (tail == NULL)
    return -ENOMEM;
  memcpy(tail, p, n);
  b->len += n;
  return 0;
}

/* An emptied buffer rewinds so the next append starts at the front. */
void buf_consume(struct buf *b, size_t n) {
  if (n >= b->len) {
    b->off = b->len = 0;
    return;
  }
  b->off += n;
  b->len -= n;
}

int buf_find_line(const char *p, size_t n, size_t from, size_t *linelen,
                  size_t *total) {
  if (from >= n)
    return -1;
  const char *nl = memchr(p + from, '\n', n - from);
  if (nl == NULL)
    return -1;
  size_t end = (size_t)(nl - p);
  *total = end + 1;
  *linelen = (end > 0 && p[end - 1] == '\r') ? end - 1 : end;
  return 0;
}

long buf_find(const char *p, size_t n, size_t from, const char *d,
              size_t dlen) {
  if (dlen == 0 || from >= n || n - from < dlen)
    return -1;
  const char *hit = memmem(p + from, n - from, d, dlen);
  return hit ? (long)(hit - p) : -1;
}
