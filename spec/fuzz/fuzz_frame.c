/*
 * fuzz_frame.c -- libFuzzer target for src/frame.c.
 *
 * Input: one byte choosing the format (size 1..8, byte order), one byte
 * choosing the limit, then a stream of bytes read as consecutive frames,
 * the way sock:read(">s4") reads them. Every call sees a fresh heap copy of
 * exactly the bytes it is given, so ASan catches any read past n. Checked:
 *   - frame_parse accepts a string iff it matches [<>=]?s[1-8]? (a naive
 *     matcher), also on the input's own first bytes as a format string;
 *   - frame_find agrees with a reference decoder (the prefix value built
 *     by multiplication from the other end) on DONE / MORE / TOOLARGE and
 *     on the sizes; shorter prefixes of a DONE frame (every cut in the
 *     length prefix, three in the payload) are MORE;
 *   - the frames found, written back with frame_prefix and their payloads,
 *     give the consumed input byte for byte.
 *
 * fuzz-sources: src/frame.c
 *
 * Built by scripts/fuzz with clang -fsanitize=fuzzer,address,undefined and
 * linked against src/frame.c directly. Pure C, no Lua.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define FUZZ_NAME "fuzz_frame"
#include "fuzz.h"

/* [<>=]?s[1-8]? over s[0..n) */
static int naive_is_format(const uint8_t *s, size_t n) {
  size_t i = 0;
  if (i < n && (s[i] == '<' || s[i] == '>' || s[i] == '='))
    i++;
  if (i >= n || s[i] != 's')
    return 0;
  i++;
  return i == n || (i + 1 == n && s[i] >= '1' && s[i] <= '8');
}

/* The reference decoder: most significant byte weighs 256^(size-1). */
static int naive_find(const struct frame_fmt *f, const uint8_t *p, size_t n,
                      uint64_t max, uint64_t *len) {
  if (n < f->size)
    return FRAME_MORE;
  uint64_t v = 0, weight = 1;
  for (unsigned k = 0; k < f->size; k++) {
    unsigned at = f->big ? f->size - 1 - k : k; /* least significant first */
    v += weight * p[at];
    weight = k + 1 < 8 ? weight * 256 : 0;
  }
  *len = v;
  if (v > max)
    return FRAME_TOOLARGE;
  return (uint64_t)(n - f->size) >= v ? FRAME_DONE : FRAME_MORE;
}

/* frame_find on an exact-size heap copy of p[0..n). */
static int find_copy(const struct frame_fmt *f, const uint8_t *p, size_t n,
                     uint64_t max, size_t *hdr, uint64_t *len) {
  char *copy = malloc(n ? n : 1);
  if (copy == NULL)
    abort();
  if (n)
    memcpy(copy, p, n);
  int rc = frame_find(f, copy, n, max, hdr, len);
  free(copy);
  return rc;
}

static uint64_t pick_max(uint8_t sel) {
  switch (sel & 3) {
  case 0: return sel >> 2;                 /* 0..63 */
  case 1: return (uint64_t)(sel >> 2) << 4; /* up to about 1 KiB */
  case 2: return UINT64_MAX >> (sel >> 2);
  default: return UINT64_MAX;
  }
}

static void check_format_strings(const uint8_t *data, size_t size) {
  size_t n = size < 4 ? size : 4;
  for (size_t k = 0; k <= n; k++) {
    struct frame_fmt f;
    char *copy = malloc(k ? k : 1);
    if (copy == NULL)
      abort();
    if (k)
      memcpy(copy, data, k);
    int rc = frame_parse(copy, k, &f);
    free(copy);
    if ((rc == 0) != naive_is_format(data, k))
      FAIL("frame_parse of %zu input bytes: %d", k, rc);
    if (rc == 0 && (f.size < 1 || f.size > 8))
      FAIL("frame_parse: size %u", f.size);
  }
}

/* One frame at p[0..n): checked against the reference; returns the bytes
 * it occupies (0: none complete). Appends its re-encoding to *out. */
static size_t one_frame(const struct frame_fmt *f, const uint8_t *p, size_t n,
                        uint64_t max, uint8_t *out, size_t *outlen) {
  size_t hdr = 0;
  uint64_t len = 0, want = 0;
  int rc = find_copy(f, p, n, max, &hdr, &len);
  int ref = naive_find(f, p, n, max, &want);
  if (rc != ref)
    FAIL("frame_find %d, reference %d (n %zu)", rc, ref, n);
  if (n >= f->size && (hdr != f->size || len != want))
    FAIL("sizes: hdr %zu len %llu, want %u %llu", hdr,
         (unsigned long long)len, f->size, (unsigned long long)want);
  if (rc != FRAME_DONE)
    return 0;
  size_t total = hdr + (size_t)len;
  /* Shorter prefixes: every cut inside the length prefix, and a few in
   * the payload (all of them would be quadratic in the input). */
  size_t cuts[] = {total - 1, hdr + (size_t)len / 2, hdr};
  for (size_t k = 0; k < hdr + 3; k++) {
    size_t cut = k < hdr ? k : cuts[k - hdr], h;
    uint64_t l;
    if (cut < total && find_copy(f, p, cut, max, &h, &l) != FRAME_MORE)
      FAIL("a %zu-byte prefix of a %zu-byte frame is not MORE", cut, total);
  }
  char prefix[8];
  if (frame_prefix(f, len, prefix) != hdr)
    FAIL("frame_prefix of %llu", (unsigned long long)len);
  memcpy(out + *outlen, prefix, hdr);
  memcpy(out + *outlen + hdr, p + hdr, (size_t)len);
  *outlen += total;
  return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_format_strings(data, size);
  if (size < 2)
    return 0;
  struct frame_fmt f = {(unsigned char)(1 + (data[0] & 7)),
                        (unsigned char)((data[0] >> 3) & 1)};
  uint64_t max = pick_max(data[1]);
  const uint8_t *p = data + 2;
  size_t n = size - 2, at = 0, outlen = 0;
  uint8_t *out = malloc(n ? n : 1);
  if (out == NULL)
    abort();
  for (;;) {
    size_t used = one_frame(&f, p + at, n - at, max, out, &outlen);
    if (used == 0)
      break;
    at += used;
  }
  if (outlen != at || (at && memcmp(out, p, at) != 0))
    FAIL("re-encoded frames differ from the %zu bytes they came from", at);
  free(out);
  return 0;
}
