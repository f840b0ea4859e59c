/*
 * test_ws_frame.c -- unit tests for src/ws_frame.c and src/sha1.c: frame
 * headers (RFC 6455 §5.7 examples, every protocol error and its close code,
 * limits at and one past the bound), header building, masking against a
 * byte-by-byte reference at every offset and alignment, incremental UTF-8
 * validation, close codes, and the handshake (RFC 6455 §1.3 example, FIPS
 * 180 SHA-1 vectors).
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sha1.h"
#include "ws_frame.h"

static int parse(const uint8_t *p, size_t n, struct ws_frame *f,
                 const struct ws_rules *r) {
  uint8_t *copy = malloc(n ? n : 1); /* exact size: overreads show */
  if (copy == NULL)
    abort();
  memcpy(copy, p, n);
  int res = ws_parse_header(copy, n, f, r);
  free(copy);
  return res;
}

/* The header from two bytes (plus extra bytes), with no rules. */
static int parse2(uint8_t b0, uint8_t b1, const struct ws_rules *r) {
  uint8_t p[14] = {b0, b1};
  struct ws_frame f;
  return parse(p, sizeof p, &f, r);
}

/* --- headers ------------------------------------------------------------ */

static void test_rfc_examples(void) {
  struct ws_frame f;
  static const uint8_t hello[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
  CHECK(parse(hello, sizeof hello, &f, NULL) == 2);
  CHECK(f.fin == 1 && f.rsv == 0 && f.opcode == WS_OP_TEXT);
  CHECK(!f.masked && f.len == 5 && f.header_len == 2);

  uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                      0x7f, 0x9f, 0x4d, 0x51, 0x58};
  const struct ws_rules server = {0, 1, 0, 0};
  CHECK(parse(masked, sizeof masked, &f, &server) == 6);
  CHECK(f.masked && f.len == 5 && f.header_len == 6);
  CHECK(memcmp(f.mask, "\x37\xfa\x21\x3d", 4) == 0);
  ws_mask(masked + 6, 5, f.mask, 0);
  CHECK(memcmp(masked + 6, "Hello", 5) == 0);

  static const uint8_t frag1[] = {0x01, 0x03, 'H', 'e', 'l'};
  static const uint8_t frag2[] = {0x80, 0x02, 'l', 'o'};
  CHECK(parse(frag1, sizeof frag1, &f, NULL) == 2);
  CHECK(f.fin == 0 && f.opcode == WS_OP_TEXT && f.len == 3);
  CHECK(parse(frag2, sizeof frag2, &f, NULL) == 2);
  CHECK(f.fin == 1 && f.opcode == WS_OP_CONT && f.len == 2);

  static const uint8_t ping[] = {0x89, 0x05, 'H', 'e', 'l', 'l', 'o'};
  CHECK(parse(ping, sizeof ping, &f, NULL) == 2 && f.opcode == WS_OP_PING);

  static const uint8_t b256[] = {0x82, 0x7e, 0x01, 0x00};
  CHECK(parse(b256, sizeof b256, &f, NULL) == 4 && f.len == 256);
  static const uint8_t b64k[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0};
  CHECK(parse(b64k, sizeof b64k, &f, NULL) == 10 && f.len == 65536);
}

static void test_need_more(void) {
  static const uint8_t full[] = {0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0,
                                 1, 2, 3, 4};
  struct ws_frame f;
  for (size_t n = 0; n < sizeof full; n++)
    CHECK(parse(full, n, &f, NULL) == 0);
  CHECK(parse(full, sizeof full, &f, NULL) == 14);
  CHECK(f.len == 65536 && f.masked && memcmp(f.mask, "\1\2\3\4", 4) == 0);
  static const uint8_t mid[] = {0x81, 0xfe, 0x00, 0x7e, 9, 9, 9, 9};
  for (size_t n = 0; n < sizeof mid; n++)
    CHECK(parse(mid, n, &f, NULL) == 0);
  CHECK(parse(mid, sizeof mid, &f, NULL) == 8 && f.len == 126);
}

static void test_reserved_opcodes(void) {
  static const unsigned ok[] = {0, 1, 2, 8, 9, 10};
  for (unsigned op = 0; op < 16; op++) {
    int valid = 0;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
      valid |= ok[i] == op;
    int r = parse2((uint8_t)(0x80 | op), 0, NULL);
    CHECK(valid ? r == 2 : r == WS_EOPCODE);
  }
}

static void test_rsv_bits(void) {
  const struct ws_rules deflate = {WS_RSV1, 0, 0, 0};
  CHECK(parse2(0x81 | 0x40, 0, NULL) == WS_ERSV);
  CHECK(parse2(0x81 | 0x20, 0, NULL) == WS_ERSV);
  CHECK(parse2(0x81 | 0x10, 0, NULL) == WS_ERSV);
  CHECK(parse2(0x81 | 0x40, 0, &deflate) == 2);
  CHECK(parse2(0x82 | 0x40, 0, &deflate) == 2);
  CHECK(parse2(0x81 | 0x20, 0, &deflate) == WS_ERSV);
  /* Not on continuations or control frames, negotiated or not. */
  CHECK(parse2(0x80 | 0x40, 0, &deflate) == WS_ERSV);
  CHECK(parse2(0x89 | 0x40, 0, &deflate) == WS_ERSV);
  CHECK(parse2(0x88 | 0x40, 0, &deflate) == WS_ERSV);
  struct ws_frame f;
  uint8_t p[2] = {0xc1, 0x00};
  CHECK(parse(p, 2, &f, &deflate) == 2 && f.rsv == WS_RSV1);
}

static void test_control_frames(void) {
  CHECK(parse2(0x89, 125, NULL) == 2);
  CHECK(parse2(0x89, 126, NULL) == WS_ECONTROL_LEN);
  CHECK(parse2(0x88, 127, NULL) == WS_ECONTROL_LEN);
  CHECK(parse2(0x8a, 126, NULL) == WS_ECONTROL_LEN);
  CHECK(parse2(0x09, 0, NULL) == WS_ECONTROL_FRAG);
  CHECK(parse2(0x08, 0, NULL) == WS_ECONTROL_FRAG);
  CHECK(parse2(0x0a, 0, NULL) == WS_ECONTROL_FRAG);
  CHECK(parse2(0x01, 0, NULL) == 2); /* data frames may be fragments */
}

static void test_lengths(void) {
  struct ws_frame f;
  /* Non-minimal encodings are accepted. */
  static const uint8_t n16[] = {0x82, 126, 0, 5};
  CHECK(parse(n16, 4, &f, NULL) == 4 && f.len == 5);
  static const uint8_t n64[] = {0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5};
  CHECK(parse(n64, 10, &f, NULL) == 10 && f.len == 5);
  static const uint8_t top[] = {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0};
  CHECK(parse(top, 10, &f, NULL) == WS_ELEN64);
  static const uint8_t max[] = {0x82, 127, 0x7f, 0xff, 0xff, 0xff,
                                0xff, 0xff, 0xff, 0xff};
  CHECK(parse(max, 10, &f, NULL) == 10 && f.len == INT64_MAX);
}

static void test_max_frame(void) {
  const struct ws_rules lim = {0, 0, 0, 1000};
  struct ws_frame f;
  static const uint8_t at[] = {0x82, 126, 0x03, 0xe8};   /* 1000 */
  static const uint8_t over[] = {0x82, 126, 0x03, 0xe9}; /* 1001 */
  CHECK(parse(at, 4, &f, &lim) == 4 && f.len == 1000);
  CHECK(parse(over, 4, &f, &lim) == WS_ETOO_BIG);
  CHECK(ws_error_close_code(WS_ETOO_BIG) == 1009);
  const struct ws_rules none = {0, 0, 0, 0};
  static const uint8_t big[] = {0x82, 127, 0, 0, 1, 0, 0, 0, 0, 0};
  CHECK(parse(big, 10, &f, &none) == 10 && f.len == 1ull << 40);
}

static void test_masking_rules(void) {
  const struct ws_rules server = {0, 1, 0, 0}, client = {0, 0, 1, 0};
  CHECK(parse2(0x81, 0x00, &server) == WS_EMASK_REQUIRED);
  CHECK(parse2(0x81, 0x80, &server) == 6);
  CHECK(parse2(0x89, 0x00, &server) == WS_EMASK_REQUIRED);
  CHECK(parse2(0x81, 0x80, &client) == WS_EMASK_FORBIDDEN);
  CHECK(parse2(0x81, 0x00, &client) == 2);
  CHECK(parse2(0x81, 0x00, NULL) == 2 && parse2(0x81, 0x80, NULL) == 6);
}

static void test_close_codes_of_errors(void) {
  static const int errs[] = {WS_EOPCODE, WS_ERSV, WS_ECONTROL_LEN,
                             WS_ECONTROL_FRAG, WS_ELEN64, WS_EMASK_REQUIRED,
                             WS_EMASK_FORBIDDEN};
  for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
    CHECK(ws_error_close_code(errs[i]) == 1002);
  CHECK(ws_error_close_code(WS_ETOO_BIG) == 1009);
}

static void test_build_header(void) {
  static const uint64_t lens[] = {0, 1, 125, 126, 65535, 65536,
                                  (uint64_t)1 << 32, INT64_MAX};
  static const size_t sizes[] = {2, 2, 2, 4, 4, 10, 10, 10};
  static const uint8_t mask[4] = {0xde, 0xad, 0xbe, 0xef};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    for (int m = 0; m < 2; m++) {
      uint8_t out[14];
      struct ws_frame f;
      size_t n = ws_build_header(out, 1, 0, WS_OP_BINARY, lens[i],
                                 m ? mask : NULL);
      CHECK(n == sizes[i] + (m ? 4 : 0));
      CHECK(parse(out, n, &f, NULL) == (int)n);
      CHECK(f.len == lens[i] && f.fin == 1 && f.opcode == WS_OP_BINARY);
      CHECK(f.masked == m && f.rsv == 0);
      CHECK(!m || memcmp(f.mask, mask, 4) == 0);
    }
  }
  uint8_t out[14];
  CHECK(ws_build_header(out, 0, 1, WS_OP_TEXT, 3, NULL) == 2);
  CHECK(out[0] == 0x41 && out[1] == 3);
  CHECK(ws_build_header(out, 1, 0, WS_OP_CLOSE, 2, NULL) == 2);
  CHECK(out[0] == 0x88 && out[1] == 2);
}

/* --- masking ------------------------------------------------------------ */

static void test_mask_against_reference(void) {
  static const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
  uint8_t block[64], ref[64];
  for (size_t align = 0; align < 8; align++) {
    for (size_t off = 0; off < 16; off++) {
      for (size_t len = 0; len <= 40; len++) {
        for (size_t i = 0; i < sizeof block; i++)
          block[i] = ref[i] = (uint8_t)(i * 37 + 11);
        for (size_t i = 0; i < len; i++)
          ref[align + i] ^= mask[(off + i) % 4];
        ws_mask(block + align, len, mask, off);
        CHECK(memcmp(block, ref, sizeof block) == 0);
      }
    }
  }
}

static void test_mask_piecewise(void) {
  static const uint8_t mask[4] = {0xa1, 0xb2, 0xc3, 0xd4};
  uint8_t whole[200], pieces[200];
  for (size_t i = 0; i < sizeof whole; i++)
    whole[i] = pieces[i] = (uint8_t)i;
  ws_mask(whole, sizeof whole, mask, 0);
  size_t cuts[] = {0, 1, 3, 4, 11, 17, 64, 99, 150, 200};
  for (size_t k = 0; k + 1 < sizeof cuts / sizeof cuts[0]; k++)
    ws_mask(pieces + cuts[k], cuts[k + 1] - cuts[k], mask, cuts[k]);
  CHECK(memcmp(whole, pieces, sizeof whole) == 0);
  ws_mask(whole, sizeof whole, mask, 0); /* masking twice is the identity */
  for (size_t i = 0; i < sizeof whole; i++)
    CHECK(whole[i] == (uint8_t)i);
}

/* --- UTF-8 -------------------------------------------------------------- */

static int utf8(const char *s, size_t n) {
  struct ws_utf8 u = {0};
  if (ws_utf8_feed(&u, (const uint8_t *)s, n) != 0)
    return -1;
  return ws_utf8_done(&u);
}

#define U(s) utf8(s, sizeof(s) - 1)

static void test_utf8_vectors(void) {
  CHECK(U("") == 0);
  CHECK(U("Hello, world: plain ASCII over several words") == 0);
  CHECK(U("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5") == 0); /* kosme */
  CHECK(U("\xc2\x80") == 0 && U("\xdf\xbf") == 0);
  CHECK(U("\xe0\xa0\x80") == 0 && U("\xef\xbf\xbf") == 0);
  CHECK(U("\xed\x9f\xbf") == 0 && U("\xee\x80\x80") == 0);
  CHECK(U("\xf0\x90\x80\x80") == 0 && U("\xf4\x8f\xbf\xbf") == 0);
  CHECK(U("\x00") == 0);
  /* Overlongs. */
  CHECK(U("\xc0\x80") == -1 && U("\xc1\xbf") == -1);
  CHECK(U("\xe0\x80\x80") == -1 && U("\xe0\x9f\xbf") == -1);
  CHECK(U("\xf0\x80\x80\x80") == -1 && U("\xf0\x8f\xbf\xbf") == -1);
  /* Surrogates. */
  CHECK(U("\xed\xa0\x80") == -1 && U("\xed\xbf\xbf") == -1);
  /* Past U+10FFFF, and bytes that never appear. */
  CHECK(U("\xf4\x90\x80\x80") == -1 && U("\xf5\x80\x80\x80") == -1);
  CHECK(U("\xf8\x88\x80\x80\x80") == -1 && U("\xfe") == -1);
  CHECK(U("\xff") == -1);
  /* Unexpected continuations, and a lead byte cut short. */
  CHECK(U("\x80") == -1 && U("a\xbf") == -1);
  CHECK(U("\xc2\x80\x80") == -1);
  CHECK(U("\xe1\x80" "a") == -1 && U("\xc2" "a") == -1);
  /* Truncated at the end: not a failure of feed, but not done either. */
  CHECK(U("\xc2") == -1 && U("\xe1\x80") == -1 && U("\xf0\x90\x80") == -1);
  /* A bad byte after a long ASCII run (the word path hands over). */
  CHECK(U("0123456789abcdef0123456789\xc0\x80") == -1);
  CHECK(U("01234567\xce\xba" "89abcdef") == 0);
}

/* Every split of each vector into two feeds gives the same verdict, and
 * feed fails as soon as the prefix is hopeless. */
static void test_utf8_split(void) {
  static const char *const vecs[] = {
    "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
    ("ab\xf0\x9f\x98\x80" "cdefghijklmnop\xe2\x82\xac"),
    "\xed\xa0\x80",
    "\xf4\x90\x80\x80",
    "abcdefghij\xc0\x80",
    "\xe1\x80",
  };
  for (size_t v = 0; v < sizeof vecs / sizeof vecs[0]; v++) {
    size_t n = strlen(vecs[v]);
    int whole = utf8(vecs[v], n);
    for (size_t cut = 0; cut <= n; cut++) {
      struct ws_utf8 u = {0};
      const uint8_t *p = (const uint8_t *)vecs[v];
      int a = ws_utf8_feed(&u, p, cut);
      int b = ws_utf8_feed(&u, p + cut, n - cut);
      int got = (a || b) ? -1 : ws_utf8_done(&u);
      CHECK(got == whole);
      CHECK(a == 0 || b == -1); /* a failure sticks */
    }
  }
  /* The surrogate fails on its second byte, before the third arrives. */
  struct ws_utf8 u = {0};
  CHECK(ws_utf8_feed(&u, (const uint8_t *)"\xed", 1) == 0);
  CHECK(ws_utf8_feed(&u, (const uint8_t *)"\xa0", 1) == -1);
  CHECK(ws_utf8_feed(&u, (const uint8_t *)"a", 1) == -1);
  CHECK(ws_utf8_done(&u) == -1);
  struct ws_utf8 w = {0};
  CHECK(ws_utf8_feed(&w, (const uint8_t *)"\xf4", 1) == 0);
  CHECK(ws_utf8_feed(&w, (const uint8_t *)"\x90", 1) == -1);
}

/* --- close codes and handshake ------------------------------------------ */

static void test_close_code_valid(void) {
  for (unsigned c = 0; c < 6000; c++) {
    int want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011) ||
               (c >= 3000 && c <= 4999);
    CHECK(ws_close_code_valid(c) == want);
  }
  CHECK(!ws_close_code_valid(1004) && !ws_close_code_valid(1005));
  CHECK(!ws_close_code_valid(1006) && !ws_close_code_valid(1015));
  CHECK(!ws_close_code_valid(1012) && !ws_close_code_valid(2999));
  CHECK(ws_close_code_valid(1000) && ws_close_code_valid(4999));
}

static void test_accept_key(void) {
  char out[29];
  const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
  ws_accept_key(key, strlen(key), out);
  CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
  CHECK(ws_key_valid(key, strlen(key)));
  CHECK(!ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=", 23));
  CHECK(!ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==x", 25));
  CHECK(!ws_key_valid("dGhlIHNhbXBsZSBub25jZ===", 24));
  CHECK(!ws_key_valid("dGhlIHNhbXBsZSBub25j*Q==", 24));
  CHECK(!ws_key_valid("dGhlIHNhbXBsZSBub25j\0Q==", 24));
}

static void hex(const uint8_t *d, char *out) {
  for (int i = 0; i < SHA1_DIGEST_LEN; i++)
    snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int sha1_is(const void *p, size_t n, const char *want) {
  struct sha1 s;
  uint8_t d[SHA1_DIGEST_LEN];
  char h[41];
  sha1_init(&s);
  sha1_update(&s, p, n);
  sha1_final(&s, d);
  hex(d, h);
  return strcmp(h, want) == 0;
}

static void test_sha1_fips(void) {
  CHECK(sha1_is("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d"));
  CHECK(sha1_is("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709"));
  const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(sha1_is(two, strlen(two), "84983e441c3bd26ebaae4aa1f95129e5e54670f1"));
  char *million = malloc(1000000);
  if (million == NULL)
    abort();
  memset(million, 'a', 1000000);
  CHECK(sha1_is(million, 1000000,
                "34aa973cd4c4daa4f61eeb2bdbad27316534016f"));
  /* The same million fed in uneven pieces. */
  struct sha1 s;
  uint8_t d[SHA1_DIGEST_LEN];
  char h[41];
  sha1_init(&s);
  size_t step = 1;
  for (size_t off = 0; off < 1000000; off += step, step = step * 7 % 131 + 1)
    sha1_update(&s, million + off,
                off + step > 1000000 ? 1000000 - off : step);
  sha1_final(&s, d);
  hex(d, h);
  CHECK(strcmp(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f") == 0);
  free(million);
}

/* Lengths around the padding boundary (55, 56, 63, 64, 65): one update and
 * byte-at-a-time updates agree. */
static void test_sha1_boundaries(void) {
  uint8_t msg[130];
  for (size_t i = 0; i < sizeof msg; i++)
    msg[i] = (uint8_t)(i * 7);
  for (size_t n = 50; n <= 130; n++) {
    struct sha1 a, b;
    uint8_t da[SHA1_DIGEST_LEN], db[SHA1_DIGEST_LEN];
    sha1_init(&a);
    sha1_update(&a, msg, n);
    sha1_final(&a, da);
    sha1_init(&b);
    for (size_t i = 0; i < n; i++)
      sha1_update(&b, msg + i, 1);
    sha1_final(&b, db);
    CHECK(memcmp(da, db, sizeof da) == 0);
  }
}

int main(void) {
  RUN(test_rfc_examples);
  RUN(test_need_more);
  RUN(test_reserved_opcodes);
  RUN(test_rsv_bits);
  RUN(test_control_frames);
  RUN(test_lengths);
  RUN(test_max_frame);
  RUN(test_masking_rules);
  RUN(test_close_codes_of_errors);
  RUN(test_build_header);
  RUN(test_mask_against_reference);
  RUN(test_mask_piecewise);
  RUN(test_utf8_vectors);
  RUN(test_utf8_split);
  RUN(test_close_code_valid);
  RUN(test_accept_key);
  RUN(test_sha1_fips);
  RUN(test_sha1_boundaries);
  return CHECK_DONE();
}
