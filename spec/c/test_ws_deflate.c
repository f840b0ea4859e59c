/*
 * test_ws_deflate.c -- unit tests for src/ws_deflate.c: the examples of RFC
 * 7692 §7.2.3, round trips with and without context takeover, messages
 * split into frames at every point, the decompression bomb limit (at the
 * limit, one past it, and a tiny input that inflates to megabytes), and
 * corrupt input.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ws_deflate.h"

static int inflate_one(struct ws_inflate *f, const void *p, size_t n,
                       struct buf *out, size_t max) {
  buf_consume(out, out->len);
  return ws_inflate_frame(f, p, n, 1, out, max);
}

static int out_is(const struct buf *b, const char *s) {
  return b->len == strlen(s) && memcmp(buf_begin(b), s, b->len) == 0;
}

/* RFC 7692 §7.2.3.1-7.2.3.4: "Hello" compressed, with takeover, uncompressed
 * (a stored block), and ending in a final block. */
static void test_rfc_examples(void) {
  static const unsigned char hello[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
  static const unsigned char again[] = {0xf2, 0x00, 0x11, 0x00, 0x00};
  static const unsigned char stored[] = {0x00, 0x05, 0x00, 0xfa, 0xff, 0x48,
                                         0x65, 0x6c, 0x6c, 0x6f, 0x00};
  static const unsigned char final[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00};
  struct ws_inflate f;
  struct buf out = BUF_INIT;
  CHECK(ws_inflate_init(&f, 0) == 0);
  CHECK(inflate_one(&f, hello, sizeof hello, &out, 100) == 0 && out_is(&out, "Hello"));
  CHECK(inflate_one(&f, again, sizeof again, &out, 100) == 0 && out_is(&out, "Hello"));
  ws_inflate_end(&f);
  CHECK(ws_inflate_init(&f, 1) == 0);
  CHECK(inflate_one(&f, stored, sizeof stored, &out, 100) == 0 && out_is(&out, "Hello"));
  CHECK(inflate_one(&f, final, sizeof final, &out, 100) == 0 && out_is(&out, "Hello"));
  CHECK(inflate_one(&f, hello, sizeof hello, &out, 100) == 0 && out_is(&out, "Hello"));
  ws_inflate_end(&f);
  ws_inflate_end(&f); /* idempotent */
  buf_free(&out);
}

static void fill(char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    p[i] = (i % 7 == 0) ? (char)(seed >> 16) : "berth deflate "[i % 14];
  }
}

/* Messages of many sizes, in sequence, each decoded whole. */
static void roundtrip(int takeover) {
  struct ws_deflate d;
  struct ws_inflate f;
  struct buf z = BUF_INIT, out = BUF_INIT;
  CHECK(ws_deflate_init(&d, 6, 15, 8, !takeover) == 0);
  CHECK(ws_inflate_init(&f, !takeover) == 0);
  static const size_t sizes[] = {0, 1, 5, 100, 4096, 70000, 300000};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    size_t n = sizes[i];
    char *msg = malloc(n + 1);
    fill(msg, n, (unsigned)i);
    buf_consume(&z, z.len);
    CHECK(ws_deflate_message(&d, msg, n, &z) == 0);
    CHECK(z.len >= 1);
    CHECK(inflate_one(&f, buf_begin(&z), z.len, &out, n) == 0);
    CHECK(out.len == n && memcmp(buf_begin(&out), msg, n) == 0);
    free(msg);
  }
  ws_deflate_end(&d);
  ws_inflate_end(&f);
  buf_free(&z);
  buf_free(&out);
}

static void test_roundtrip_takeover(void) { roundtrip(1); }
static void test_roundtrip_no_takeover(void) { roundtrip(0); }

/* Without takeover, each message decodes with a fresh inflater. */
static void test_no_takeover_independent(void) {
  struct ws_deflate d;
  struct buf z = BUF_INIT, out = BUF_INIT;
  CHECK(ws_deflate_init(&d, 6, 15, 8, 1) == 0);
  for (int i = 0; i < 3; i++) {
    struct ws_inflate f;
    buf_consume(&z, z.len);
    CHECK(ws_deflate_message(&d, "repeat repeat repeat", 20, &z) == 0);
    CHECK(ws_inflate_init(&f, 0) == 0);
    CHECK(inflate_one(&f, buf_begin(&z), z.len, &out, 100) == 0);
    CHECK(out_is(&out, "repeat repeat repeat"));
    ws_inflate_end(&f);
  }
  ws_deflate_end(&d);
  buf_free(&z);
  buf_free(&out);
}

/* A compressed message split into two frames at every byte. */
static void test_split_frames(void) {
  struct ws_deflate d;
  struct buf z = BUF_INIT, out = BUF_INIT;
  char msg[3000];
  fill(msg, sizeof msg, 7);
  CHECK(ws_deflate_init(&d, 9, 15, 9, 1) == 0);
  CHECK(ws_deflate_message(&d, msg, sizeof msg, &z) == 0);
  for (size_t cut = 0; cut <= z.len; cut++) {
    struct ws_inflate f;
    CHECK(ws_inflate_init(&f, 0) == 0);
    buf_consume(&out, out.len);
    CHECK(ws_inflate_frame(&f, buf_begin(&z), cut, 0, &out, sizeof msg) == 0);
    CHECK(ws_inflate_frame(&f, buf_begin(&z) + cut, z.len - cut, 1, &out,
                           sizeof msg) == 0);
    CHECK(out.len == sizeof msg && memcmp(buf_begin(&out), msg, sizeof msg) == 0);
    ws_inflate_end(&f);
  }
  ws_deflate_end(&d);
  buf_free(&z);
  buf_free(&out);
}

/* The bomb limit: exactly max is fine, one byte more fails, and 16 MiB of
 * zeros (a few KiB compressed) stops at the limit. */
static void test_bomb_limit(void) {
  struct ws_deflate d;
  struct ws_inflate f;
  struct buf z = BUF_INIT, out = BUF_INIT;
  size_t big = 16u << 20;
  char *zeros = calloc(1, big);
  CHECK(ws_deflate_init(&d, 9, 15, 9, 1) == 0);
  CHECK(ws_deflate_message(&d, zeros, 1000, &z) == 0);
  CHECK(ws_inflate_init(&f, 1) == 0);
  CHECK(inflate_one(&f, buf_begin(&z), z.len, &out, 1000) == 0 && out.len == 1000);
  CHECK(inflate_one(&f, buf_begin(&z), z.len, &out, 999) == WS_INFLATE_TOOBIG);
  CHECK(out.len <= 1000);
  ws_inflate_end(&f);
  buf_consume(&z, z.len);
  CHECK(ws_deflate_message(&d, zeros, big, &z) == 0);
  CHECK(z.len < 64 * 1024);
  CHECK(ws_inflate_init(&f, 1) == 0);
  CHECK(inflate_one(&f, buf_begin(&z), z.len, &out, 65536) == WS_INFLATE_TOOBIG);
  CHECK(out.len <= 65537 && out.cap < 2 * 65536 + 16384);
  /* A limit already passed by earlier frames fails at once. */
  CHECK(ws_inflate_frame(&f, "", 0, 1, &out, 10) == WS_INFLATE_TOOBIG);
  ws_inflate_end(&f);
  ws_deflate_end(&d);
  free(zeros);
  buf_free(&z);
  buf_free(&out);
}

static void test_corrupt(void) {
  static const unsigned char bad[] = {0xff, 0xff, 0xff, 0xff, 0x00};
  static const unsigned char reserved[] = {0x07, 0x00}; /* block type 3 */
  struct ws_inflate f;
  struct buf out = BUF_INIT;
  CHECK(ws_inflate_init(&f, 0) == 0);
  CHECK(inflate_one(&f, bad, sizeof bad, &out, 1000) == WS_INFLATE_BAD);
  ws_inflate_end(&f);
  CHECK(ws_inflate_init(&f, 0) == 0);
  CHECK(inflate_one(&f, reserved, sizeof reserved, &out, 1000) == WS_INFLATE_BAD);
  ws_inflate_end(&f);
  buf_free(&out);
}

int main(void) {
  RUN(test_rfc_examples);
  RUN(test_roundtrip_takeover);
  RUN(test_roundtrip_no_takeover);
  RUN(test_no_takeover_independent);
  RUN(test_split_frames);
  RUN(test_bomb_limit);
  RUN(test_corrupt);
  return CHECK_DONE();
}
