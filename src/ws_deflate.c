/*
 * ws_deflate.c -- permessage-deflate with zlib (see ws_deflate.h).
 *
 * Contract: no lua.h. zlib allocates with malloc; every stream this file
 * initialises is ended by the matching *_end, which is idempotent.
 */
#include <string.h>

#include "ws_deflate.h"

#define STEP 16384 /* output room per zlib call */

static const unsigned char tail[4] = {0x00, 0x00, 0xff, 0xff};

int ws_deflate_init(struct ws_deflate *d, int level, int window_bits,
                    int mem_level, int no_takeover) {
  memset(d, 0, sizeof *d);
  /* Negative windowBits: raw deflate, no zlib header (RFC 7692 §7.2.1). */
  if (deflateInit2(&d->z, level, Z_DEFLATED, -window_bits, mem_level,
                   Z_DEFAULT_STRATEGY) != Z_OK)
    return WS_DEFLATE_NOMEM;
  d->ready = 1;
  d->no_takeover = no_takeover;
  return 0;
}

void ws_deflate_end(struct ws_deflate *d) {
  if (d->ready)
    deflateEnd(&d->z);
  d->ready = 0;
}

int ws_deflate_message(struct ws_deflate *d, const void *p, size_t n,
                       struct buf *out) {
  size_t start = out->len;
  d->z.next_in = (Bytef *)p;
  d->z.avail_in = (uInt)n;
  for (;;) {
    char *dst = buf_reserve(out, n / 2 + 64 < STEP ? n / 2 + 64 : STEP);
    if (dst == NULL)
      return WS_DEFLATE_NOMEM;
    size_t room = buf_room(out);
    d->z.next_out = (Bytef *)dst;
    d->z.avail_out = (uInt)room;
    int rc = deflate(&d->z, Z_SYNC_FLUSH);
    buf_commit(out, room - d->z.avail_out);
    if (rc != Z_OK && rc != Z_BUF_ERROR)
      return WS_DEFLATE_NOMEM;
    /* Done when all input is in and the flush did not fill the room. */
    if (d->z.avail_in == 0 && d->z.avail_out > 0)
      break;
  }
  /* A sync flush ends in an empty stored block: its 4 bytes go (§7.2.1). */
  if (out->len - start >= 4 &&
      memcmp(buf_begin(out) + out->len - 4, tail, 4) == 0)
    out->len -= 4;
  if (d->no_takeover)
    deflateReset(&d->z);
  return 0;
}

int ws_inflate_init(struct ws_inflate *f, int no_takeover) {
  memset(f, 0, sizeof *f);
  if (inflateInit2(&f->z, -15) != Z_OK)
    return WS_DEFLATE_NOMEM;
  f->ready = 1;
  f->no_takeover = no_takeover;
  return 0;
}

void ws_inflate_end(struct ws_inflate *f) {
  if (f->ready)
    inflateEnd(&f->z);
  f->ready = 0;
}

/* Inflate p[0..n) into out, never letting it pass max by more than the
 * one byte that shows it would. */
static int inflate_some(struct ws_inflate *f, const void *p, size_t n,
                        struct buf *out, size_t max) {
  f->z.next_in = (Bytef *)p;
  f->z.avail_in = (uInt)n;
  for (;;) {
    size_t want = STEP, left = max - out->len;
    if (left < want)
      want = left + 1;
    char *dst = buf_reserve(out, want);
    if (dst == NULL)
      return WS_DEFLATE_NOMEM;
    f->z.next_out = (Bytef *)dst;
    f->z.avail_out = (uInt)want;
    int rc = inflate(&f->z, Z_SYNC_FLUSH);
    buf_commit(out, want - f->z.avail_out);
    if (out->len > max)
      return WS_INFLATE_TOOBIG;
    if (rc == Z_STREAM_END) {
      /* A final block ends the stream; a message may go on after it only
       * as a new one (what follows, if anything, starts afresh). */
      inflateReset(&f->z);
      if (f->z.avail_in == 0)
        return 0;
      continue;
    }
    if (rc == Z_MEM_ERROR)
      return WS_DEFLATE_NOMEM;
    if (rc != Z_OK && rc != Z_BUF_ERROR)
      return WS_INFLATE_BAD;
    if (f->z.avail_in == 0 && f->z.avail_out > 0)
      return 0;
    if (rc == Z_BUF_ERROR && f->z.avail_out > 0)
      return WS_INFLATE_BAD; /* no progress with room to spare */
  }
}

int ws_inflate_frame(struct ws_inflate *f, const void *p, size_t n, int fin,
                     struct buf *out, size_t max) {
  if (out->len > max)
    return WS_INFLATE_TOOBIG;
  int rc = n > 0 ? inflate_some(f, p, n, out, max) : 0;
  if (rc == 0 && fin)
    rc = inflate_some(f, tail, sizeof tail, out, max);
  if (fin && f->no_takeover)
    inflateReset(&f->z);
  return rc;
}
