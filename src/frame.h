/*
 * frame.h -- length-prefixed frames: a size prefix of 1 to 8 bytes, then
 * that many bytes of payload, as Lua's string.pack("s4", ...) writes them.
 * sock:read(">s4") reads one such frame (src/socket_io.c).
 *
 * Contract: no lua.h here (unit-tested and fuzzed alone); nothing is
 * allocated and nothing past p[n] is read. Formats follow string.pack's
 * spelling of a length-prefixed string: an optional byte order ('<'
 * little, '>' big, '=' native; native when absent) and 's' with an
 * optional prefix size in bytes (1 to 8; 8, a size_t, when absent). Only
 * that: "s4", ">s2", "<s8", "=s". Anything else is not a frame format.
 */
#ifndef BERTH_FRAME_H
#define BERTH_FRAME_H

#include <stddef.h>
#include <stdint.h>

struct frame_fmt {
  unsigned char size; /* bytes of the length prefix, 1..8 */
  unsigned char big;  /* big-endian prefix */
};

/* frame_find results */
#define FRAME_MORE 0        /* the prefix or the payload is not all there */
#define FRAME_DONE 1        /* a whole frame: *hdr + *len bytes */
#define FRAME_TOOLARGE (-1) /* the prefix announces more than `max` */

/* Parse fmt[0..len): 0 and *f set, or -1 when it is not a frame format. */
int frame_parse(const char *fmt, size_t len, struct frame_fmt *f);

/* The frame at the start of p[0..n): FRAME_DONE with the prefix size in
 * *hdr and the payload size in *len, FRAME_MORE, or FRAME_TOOLARGE when
 * the announced payload is over `max` (found as soon as the prefix is in,
 * before the payload arrives). *hdr and *len are set whenever the prefix
 * is complete. */
int frame_find(const struct frame_fmt *f, const char *p, size_t n,
               uint64_t max, size_t *hdr, uint64_t *len);

/* Write the prefix of a `len`-byte payload into out: the prefix size, or
 * 0 when len does not fit in it. */
size_t frame_prefix(const struct frame_fmt *f, uint64_t len, char out[8]);

#endif
