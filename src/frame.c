/*
 * frame.c -- length-prefixed frames; see frame.h for the contract and the
 * formats. No lua.h here.
 *
 * The prefix is decoded byte by byte in the format's order, so the host's
 * own byte order matters only for '=' (native), read once from a probe.
 */
#include "frame.h"

static int frame_native_big(void) {
  const uint16_t probe = 1;
  return *(const unsigned char *)&probe == 0;
}

int frame_parse(const char *fmt, size_t len, struct frame_fmt *f) {
  size_t i = 0;
  f->big = (unsigned char)frame_native_big();
  if (i < len && (fmt[i] == '<' || fmt[i] == '>' || fmt[i] == '=')) {
    if (fmt[i] != '=')
      f->big = fmt[i] == '>';
    i++;
  }
  if (i >= len || fmt[i] != 's')
    return -1;
  i++;
  f->size = 8; /* "s" alone: a size_t, as string.pack */
  if (i < len) {
    if (fmt[i] < '1' || fmt[i] > '8' || i + 1 != len)
      return -1;
    f->size = (unsigned char)(fmt[i] - '0');
  }
  return 0;
}

int frame_find(const struct frame_fmt *f, const char *p, size_t n,
               uint64_t max, size_t *hdr, uint64_t *len) {
  const unsigned char *u = (const unsigned char *)p;
  uint64_t v = 0;
  if (n < f->size)
    return FRAME_MORE;
  for (unsigned i = 0; i < f->size; i++) {
    unsigned at = f->big ? i : f->size - 1 - i;
    v = v << 8 | u[at];
  }
  *hdr = f->size;
  *len = v;
  if (v > max)
    return FRAME_TOOLARGE;
  /* v <= max < n - size is checked without adding: no wrap-around. */
  return n - f->size >= v ? FRAME_DONE : FRAME_MORE;
}

size_t frame_prefix(const struct frame_fmt *f, uint64_t len, char out[8]) {
  if (f->size < 8 && len >> (8 * f->size) != 0)
    return 0;
  for (unsigned i = 0; i < f->size; i++) {
    unsigned at = f->big ? f->size - 1 - i : i;
    out[at] = (char)(len & 0xff);
    len >>= 8;
  }
  return f->size;
}
