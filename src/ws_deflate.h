/*
 * ws_deflate.h -- permessage-deflate (RFC 7692): compressing and
 * decompressing WebSocket messages with zlib's raw deflate.
 *
 * Contract: no lua.h, no global state. Output is appended to a struct buf
 * (buffer.h). A message is compressed as one raw-deflate block sequence
 * ending in an empty stored block, whose 4 tail bytes 00 00 ff ff are
 * removed (§7.2.1); decompression feeds them back after the message's last
 * frame (§7.2.2). Without context takeover the stream is reset after each
 * message, so every message decodes on its own.
 *
 * Decompression is bounded: a message whose output would pass `max` bytes
 * fails with WS_INFLATE_TOOBIG as soon as the limit is reached, however
 * small its compressed form (a decompression bomb costs at most `max`
 * bytes of memory and the time to produce them).
 */
#ifndef BERTH_WS_DEFLATE_H
#define BERTH_WS_DEFLATE_H

#include <stddef.h>
#include <zlib.h>

#include "buffer.h"

#define WS_INFLATE_TOOBIG (-1) /* output past max: close 1009 */
#define WS_INFLATE_BAD (-2)    /* not a valid deflate stream: close 1007 */
#define WS_DEFLATE_NOMEM (-3)

struct ws_deflate {
  z_stream z;
  int ready;       /* deflateInit2 succeeded */
  int no_takeover; /* reset after each message */
};

struct ws_inflate {
  z_stream z;
  int ready;
  int no_takeover;
};

/* level 0..9 (or -1: zlib's default), window_bits 9..15, mem_level 1..9.
 * Returns 0 or WS_DEFLATE_NOMEM. */
int ws_deflate_init(struct ws_deflate *d, int level, int window_bits,
                    int mem_level, int no_takeover);
void ws_deflate_end(struct ws_deflate *d);
/* Compress p[0..n) as one message, appending it to out (without the 4
 * tail bytes). Returns 0 or WS_DEFLATE_NOMEM. */
int ws_deflate_message(struct ws_deflate *d, const void *p, size_t n,
                       struct buf *out);

/* Decompression accepts any window size (up to 15 bits). */
int ws_inflate_init(struct ws_inflate *f, int no_takeover);
void ws_inflate_end(struct ws_inflate *f);
/* Decompress one frame's payload p[0..n), appending to out, which may not
 * grow past max bytes; `fin`: the message's last frame. Returns 0 or a
 * negative WS_INFLATE_* / WS_DEFLATE_NOMEM. */
int ws_inflate_frame(struct ws_inflate *f, const void *p, size_t n, int fin,
                     struct buf *out, size_t max);

#endif
