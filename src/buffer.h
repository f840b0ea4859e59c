/*
 * buffer.h -- growable byte buffer and the pure searches the readers need.
 *
 * Contract: no lua.h here (fuzzable and unit-tested alone). A struct buf owns
 * its memory; buf_free() releases it and leaves an empty, reusable buffer.
 * Bytes live in data[off .. off+len); consuming advances `off`, and the space
 * is reclaimed lazily when more room is needed, so consume is O(1).
 * Allocation failures return -ENOMEM and leave the buffer unchanged.
 */
#ifndef BERTH_BUFFER_H
#define BERTH_BUFFER_H

#include <stddef.h>

struct buf {
  char *data;
  size_t off;   /* first unconsumed byte */
  size_t len;   /* unconsumed bytes */
  size_t cap;   /* allocated bytes */
};

#define BUF_INIT {NULL, 0, 0, 0}

/* The first unconsumed byte; a buffer with no memory yet is "" (NULL + 0
 * would be undefined behaviour). */
static inline const char *buf_begin(const struct buf *b) {
  return b->data ? b->data + b->off : "";
}

void buf_free(struct buf *b);

/* Make room for at least `n` more bytes; returns the tail or NULL (ENOMEM). */
char *buf_reserve(struct buf *b, size_t n);
/* Free bytes after the tail (valid until the next reserve/append). */
size_t buf_room(const struct buf *b);
/* Mark `n` bytes written at the tail as data. */
void buf_commit(struct buf *b, size_t n);

int buf_append(struct buf *b, const void *p, size_t n);
void buf_consume(struct buf *b, size_t n);

/*
 * Search helpers on a plain byte range, shared by the socket reader (which
 * also searches data it has not yet copied into a buf).
 *
 * buf_find_line: look for '\n' in p[from..n). On success returns 0, sets
 * *linelen (bytes before the end of line, "\r\n" or "\n" excluded) and
 * *total (bytes including the end of line). Returns -1 when there is no
 * complete line yet.
 */
int buf_find_line(const char *p, size_t n, size_t from, size_t *linelen,
                  size_t *total);

/* buf_find: offset of the first `d` (dlen > 0) in p[from..n), or -1. */
long buf_find(const char *p, size_t n, size_t from, const char *d,
              size_t dlen);

#endif
