/*
 * fuzz_ws.c -- libFuzzer target for src/ws_frame.c (and src/sha1.c).
 *
 * The first input byte picks a mode, the rest is its operand (copied into
 * exact-size heap blocks so ASan sees any read past them):
 *   header:  ws_parse_header under rules chosen by the input, against a
 *            plain reference decoding of RFC 6455 §5.2 (result and every
 *            field). Every shorter prefix must answer "need more" or, for
 *            an error the first two bytes show, the same error; a header
 *            in its shortest length encoding must rebuild byte for byte
 *            with ws_build_header.
 *   build:   ws_build_header from input-chosen fields, parsed back: the
 *            same fields, or the reference's verdict on those bytes.
 *   mask:    ws_mask at an input-chosen alignment and payload offset,
 *            whole and split in two with the running offset, against a
 *            byte-at-a-time reference; masking twice restores the data.
 *   utf8:    ws_utf8_feed/ws_utf8_done over input-chosen pieces against a
 *            reference that decodes code points and finds the first byte
 *            after which no continuation can be valid UTF-8: each feed
 *            must fail exactly when its piece reaches that byte, and done
 *            must agree on a complete, valid input.
 *   accept:  ws_accept_key on arbitrary keys: 28 base64 characters and a
 *            NUL, equal for equal keys fed as one string.
 *
 * fuzz-sources: src/ws_frame.c src/sha1.c
 *
 * Built by scripts/fuzz with clang -fsanitize=fuzzer,address,undefined and
 * linked against src/ws_frame.c and src/sha1.c directly. Pure C, no Lua.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

#define FUZZ_NAME "fuzz_ws"
#include "fuzz.h"

static uint8_t *copy(const uint8_t *p, size_t n) {
  uint8_t *s = malloc(n ? n : 1);
  if (s == NULL)
    abort();
  if (n)
    memcpy(s, p, n);
  return s;
}

/* --- headers ---------------------------------------------------------- */

static const uint64_t max_frames[8] = {0, 1, 125, 126, 1000, 65535, 65536,
                                       (uint64_t)1 << 32};

static const struct ws_rules *pick_rules(uint8_t sel, struct ws_rules *r) {
  if (sel == 0xff)
    return NULL;
  r->allowed_rsv = sel & 7;
  r->require_mask = sel >> 3 & 1;
  r->forbid_mask = sel >> 4 & 1;
  r->max_frame = max_frames[sel >> 5];
  return r;
}

static int ref_header(const uint8_t *p, size_t n, const struct ws_rules *r,
                      struct ws_frame *f) {
  if (n < 2)
    return 0;
  unsigned fin = p[0] >> 7, rsv = p[0] >> 4 & 7, op = p[0] & 15;
  unsigned masked = p[1] >> 7, l7 = p[1] & 127;
  int data = op == 1 || op == 2, control = op == 8 || op == 9 || op == 10;
  if (!data && !control && op != 0)
    return WS_EOPCODE;
  if (rsv & ~(r && data ? r->allowed_rsv : 0u))
    return WS_ERSV;
  if (control && !fin)
    return WS_ECONTROL_FRAG;
  if (control && l7 > 125)
    return WS_ECONTROL_LEN;
  if (r && r->require_mask && !masked)
    return WS_EMASK_REQUIRED;
  if (r && r->forbid_mask && masked)
    return WS_EMASK_FORBIDDEN;
  size_t ext = l7 == 126 ? 2 : l7 == 127 ? 8 : 0, need = 2 + ext + 4 * masked;
  if (n < need)
    return 0;
  uint64_t len = l7;
  if (ext) {
    len = 0;
    for (size_t i = 0; i < ext; i++)
      len = len * 256 + p[2 + i];
  }
  if (len > (uint64_t)INT64_MAX)
    return WS_ELEN64;
  if (r && r->max_frame != 0 && len > r->max_frame)
    return WS_ETOO_BIG;
  f->fin = fin;
  f->rsv = rsv;
  f->opcode = op;
  f->masked = (int)masked;
  f->len = len;
  for (int i = 0; i < 4; i++)
    f->mask[i] = masked ? p[2 + ext + (size_t)i] : 0;
  f->header_len = need;
  return (int)need;
}

static void same_frame(const struct ws_frame *a, const struct ws_frame *b) {
  if (a->fin != b->fin || a->rsv != b->rsv || a->opcode != b->opcode ||
      a->masked != b->masked || a->len != b->len ||
      a->header_len != b->header_len ||
      (a->masked && memcmp(a->mask, b->mask, 4) != 0))
    FAIL("frame fields differ from the reference");
}

static int shortest(const struct ws_frame *f) {
  size_t want = f->len < 126 ? 2 : f->len <= 0xffff ? 4 : 10;
  return f->header_len == want + (f->masked ? 4 : 0);
}

static void check_header(const uint8_t *bytes, size_t n,
                         const struct ws_rules *r) {
  uint8_t *p = copy(bytes, n);
  struct ws_frame f, g;
  int got = ws_parse_header(p, n, &f, r);
  int want = ref_header(p, n, r, &g);
  if (got != want)
    FAIL("ws_parse_header %d, reference %d", got, want);
  if (got > 0)
    same_frame(&f, &g);
  for (size_t k = 0; k < n && k < 14; k++) {
    struct ws_frame h;
    int part = ws_parse_header(p, k, &h, r);
    if (got > 0 && (size_t)got <= k) {
      if (part != got)
        FAIL("prefix of %zu holding the header: %d", k, part);
    } else if (part != 0 && !(got < 0 && part == got)) {
      FAIL("prefix of %zu: %d, whole %d", k, part, got);
    }
  }
  if (got > 0 && shortest(&f) && (f.rsv == 0 || f.rsv == WS_RSV1)) {
    uint8_t out[14];
    size_t bn = ws_build_header(out, (int)f.fin, f.rsv != 0, (int)f.opcode,
                                f.len, f.masked ? f.mask : NULL);
    if (bn != (size_t)got || memcmp(out, p, bn) != 0)
      FAIL("rebuilt header differs (%zu bytes, parsed %d)", bn, got);
  }
  free(p);
}

static void fuzz_header(const uint8_t *d, size_t n) {
  struct ws_rules rules;
  if (n < 1)
    return;
  check_header(d + 1, n - 1, pick_rules(d[0], &rules));
}

static void fuzz_build(const uint8_t *d, size_t n) {
  if (n < 14)
    return;
  int fin = d[0] & 1, rsv1 = d[0] >> 1 & 1, op = d[0] >> 2 & 15;
  int masked = d[0] >> 6 & 1;
  uint64_t len = 0;
  for (int i = 0; i < 8; i++)
    len = len << 8 | d[2 + i];
  len >>= d[1] % 64; /* every magnitude, and below 2^63 unless shift 0 */
  uint8_t out[14];
  size_t bn = ws_build_header(out, fin, rsv1, op, len, masked ? d + 10 : NULL);
  struct ws_rules rules;
  const struct ws_rules *r = pick_rules(d[0] >> 7 ? 0xff : d[1], &rules);
  check_header(out, bn, r);
  struct ws_frame f;
  if (ws_parse_header(out, bn, &f, r) > 0 &&
      (f.fin != (unsigned)fin || f.rsv != (rsv1 ? WS_RSV1 : 0u) ||
       f.opcode != (unsigned)op || f.len != len || f.masked != masked))
    FAIL("built header parses to other fields");
}

/* --- masking ----------------------------------------------------------- */

static void fuzz_mask(const uint8_t *d, size_t n) {
  if (n < 7)
    return;
  const uint8_t *mask = d;
  size_t offset = d[4], align = d[5] & 7, len = n - 7;
  size_t cut = len ? d[6] % (len + 1) : 0;
  uint8_t *a = malloc(len + align + 1), *ref = copy(d + 7, len);
  if (a == NULL)
    abort();
  memcpy(a + align, d + 7, len);
  for (size_t i = 0; i < len; i++)
    ref[i] ^= mask[(offset + i) % 4];
  ws_mask(a + align, cut, mask, offset);
  ws_mask(a + align + cut, len - cut, mask, offset + cut);
  if (len && memcmp(a + align, ref, len) != 0)
    FAIL("mask(len %zu, offset %zu, cut %zu, align %zu) differs", len,
         offset, cut, align);
  ws_mask(a + align, len, mask, offset);
  if (len && memcmp(a + align, d + 7, len) != 0)
    FAIL("masking twice is not the identity");
  free(a);
  free(ref);
}

/* --- UTF-8 ------------------------------------------------------------- */

/* Some code point in [lo, hi] is a valid scalar value of an L-byte
 * sequence (not overlong, not a surrogate, at most U+10FFFF). */
static int viable(uint32_t lo, uint32_t hi, int L) {
  static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
  static const uint32_t max[5] = {0, 0x7f, 0x7ff, 0xffff, 0x10ffff};
  uint32_t a = lo > min[L] ? lo : min[L], b = hi < max[L] ? hi : max[L];
  if (a > b)
    return 0;
  return !(a >= 0xd800 && b <= 0xdfff);
}

/* The index of the first byte after which p cannot be valid UTF-8, or n;
 * *complete is 0 when p ends inside a (still viable) sequence. */
static size_t ref_utf8(const uint8_t *p, size_t n, int *complete) {
  *complete = 1;
  for (size_t i = 0; i < n;) {
    unsigned c = p[i];
    int L = c < 0x80 ? 1 : c < 0xc0 ? 0 : c < 0xe0 ? 2 : c < 0xf0 ? 3
          : c < 0xf8 ? 4 : 0;
    if (L == 0)
      return i;
    uint32_t bits = c & (0x7fu >> (L == 1 ? 0 : L));
    for (int k = 1;; k++) {
      int rem = 6 * (L - k);
      uint32_t lo = bits << rem, hi = lo | ((1u << rem) - 1);
      if (!viable(lo, hi, L))
        return i + (size_t)k - 1;
      if (k == L)
        break;
      if (i + (size_t)k >= n) {
        *complete = 0;
        return n;
      }
      unsigned b = p[i + (size_t)k];
      if ((b & 0xc0) != 0x80)
        return i + (size_t)k;
      bits = bits << 6 | (b & 0x3f);
    }
    i += (size_t)L;
  }
  return n;
}

static void fuzz_utf8(const uint8_t *d, size_t n) {
  if (n < 1)
    return;
  size_t ncuts = d[0] % 5, len = n - 1;
  uint8_t *p = copy(d + 1, len);
  int complete;
  size_t fail = ref_utf8(p, len, &complete);
  struct ws_utf8 u = {0};
  size_t pos = 0;
  for (size_t k = 0; k <= ncuts; k++) {
    /* piece ends spread over the input, chosen by its own bytes */
    size_t end = len;
    if (k < ncuts && len > 0)
      end = pos + (len - pos) * (p[k % len] & 7) / 8;
    int r = ws_utf8_feed(&u, p + pos, end - pos);
    int want = fail < end ? -1 : 0;
    if (r != want)
      FAIL("feed up to %zu: %d, reference fails at %zu of %zu", end, r, fail,
           len);
    pos = end;
  }
  int done = ws_utf8_done(&u), want = fail == len && complete ? 0 : -1;
  if (done != want)
    FAIL("done %d, reference %d (fail %zu, complete %d)", done, want, fail,
         complete);
  free(p);
}

/* --- handshake --------------------------------------------------------- */

static void fuzz_accept(const uint8_t *d, size_t n) {
  char *key = (char *)copy(d, n);
  char a[29], b[29];
  memset(a, 0x55, sizeof a);
  ws_accept_key(key, n, a);
  if (a[28] != '\0' || strlen(a) != 28 || a[27] != '=')
    FAIL("accept value is not 28 base64 characters");
  for (int i = 0; i < 27; i++)
    if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                "0123456789+/", a[i]) || a[i] == '\0')
      FAIL("accept value has a non-base64 character");
  ws_accept_key(key, n, b);
  if (memcmp(a, b, sizeof a) != 0)
    FAIL("accept value differs for the same key");
  free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  const uint8_t *d = data + 1;
  size_t n = size - 1;
  switch (data[0] % 5) {
  case 0: fuzz_header(d, n); break;
  case 1: fuzz_build(d, n); break;
  case 2: fuzz_mask(d, n); break;
  case 3: fuzz_utf8(d, n); break;
  default: fuzz_accept(d, n); break;
  }
  return 0;
}
