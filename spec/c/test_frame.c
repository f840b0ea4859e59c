/*
 * test_frame.c -- unit tests for src/frame.c: the format syntax (what
 * string.pack spells for a length-prefixed string, and nothing else), the
 * prefix decoded in both byte orders and every size, incomplete prefixes
 * and payloads, the size limit seen from the prefix alone, and prefixes
 * written back. Prints one line per case and ends with "N passed, N failed".
 */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "frame.h"

static int parses(const char *s, unsigned size, int big) {
  struct frame_fmt f;
  return frame_parse(s, strlen(s), &f) == 0 && f.size == size && f.big == big;
}

static int refused(const char *s) {
  struct frame_fmt f;
  return frame_parse(s, strlen(s), &f) == -1;
}

static int native_big(void) {
  const uint16_t probe = 1;
  return *(const unsigned char *)&probe == 0;
}

static void test_formats(void) {
  CHECK(parses(">s4", 4, 1));
  CHECK(parses("<s4", 4, 0));
  CHECK(parses(">s1", 1, 1));
  CHECK(parses("<s8", 8, 0));
  CHECK(parses(">s", 8, 1));
  CHECK(parses("s2", 2, native_big()));
  CHECK(parses("=s2", 2, native_big()));
  CHECK(parses("s", 8, native_big()));
  CHECK(refused(""));
  CHECK(refused(">"));
  CHECK(refused(">s0"));
  CHECK(refused(">s9"));
  CHECK(refused(">s16"));
  CHECK(refused(">s4 "));
  CHECK(refused(">I4"));
  CHECK(refused("l"));
  CHECK(refused("a"));
  CHECK(refused("<>s4"));
  CHECK(refused("!s4"));
  /* The length counts: an embedded zero ends nothing. */
  struct frame_fmt f;
  CHECK(frame_parse(">s4\0", 4, &f) == -1);
  CHECK(frame_parse(">s4", 2, &f) == 0 && f.size == 8);
}

static void test_find(void) {
  struct frame_fmt be = {4, 1}, le = {2, 0};
  size_t hdr = 0;
  uint64_t len = 0;
  const char msg[] = "\0\0\0\5hello, and the next";
  CHECK(frame_find(&be, msg, sizeof msg - 1, 100, &hdr, &len) == FRAME_DONE);
  CHECK(hdr == 4 && len == 5);
  CHECK(frame_find(&be, msg, 9, 100, &hdr, &len) == FRAME_DONE);
  CHECK(frame_find(&be, msg, 8, 100, &hdr, &len) == FRAME_MORE);
  CHECK(hdr == 4 && len == 5); /* the prefix is known already */
  for (size_t n = 0; n < 4; n++)
    CHECK(frame_find(&be, msg, n, 100, &hdr, &len) == FRAME_MORE);
  const char small[] = "\3\0abc";
  CHECK(frame_find(&le, small, 5, 100, &hdr, &len) == FRAME_DONE);
  CHECK(hdr == 2 && len == 3);
  const char empty[] = "\0\0\0\0";
  CHECK(frame_find(&be, empty, 4, 0, &hdr, &len) == FRAME_DONE && len == 0);
}

static void test_limit(void) {
  struct frame_fmt be8 = {8, 1}, be4 = {4, 1};
  size_t hdr;
  uint64_t len;
  /* Over the limit as soon as the prefix says so, payload or not. */
  const char big[] = "\0\0\1\0";
  CHECK(frame_find(&be4, big, 4, 255, &hdr, &len) == FRAME_TOOLARGE);
  CHECK(len == 256);
  CHECK(frame_find(&be4, big, 4, 256, &hdr, &len) == FRAME_MORE);
  /* The largest prefix cannot wrap the size computation around. */
  const char huge[] = "\377\377\377\377\377\377\377\377x";
  CHECK(frame_find(&be8, huge, 9, UINT64_MAX, &hdr, &len) == FRAME_MORE);
  CHECK(len == UINT64_MAX);
  CHECK(frame_find(&be8, huge, 9, (uint64_t)1 << 40, &hdr, &len) ==
        FRAME_TOOLARGE);
}

static void test_every_size(void) {
  for (unsigned size = 1; size <= 8; size++) {
    for (int big = 0; big <= 1; big++) {
      struct frame_fmt f = {(unsigned char)size, (unsigned char)big};
      uint64_t want = size == 8 ? UINT64_C(0x0102030405060708)
                                : (UINT64_C(1) << (8 * size)) - 2;
      char out[8], in[16];
      CHECK(frame_prefix(&f, want, out) == size);
      memcpy(in, out, size);
      memset(in + size, 'x', sizeof in - size);
      size_t hdr;
      uint64_t len;
      CHECK(frame_find(&f, in, sizeof in, UINT64_MAX, &hdr, &len) != -1);
      CHECK(hdr == size && len == want);
      /* Byte order: the most significant byte first for big. */
      unsigned char first = (unsigned char)out[0];
      unsigned char msb = (unsigned char)(want >> (8 * (size - 1)));
      unsigned char lsb = (unsigned char)want;
      CHECK(first == (big ? msb : lsb));
      if (size < 8)
        CHECK(frame_prefix(&f, UINT64_C(1) << (8 * size), out) == 0);
    }
  }
}

int main(void) {
  RUN(test_formats);
  RUN(test_find);
  RUN(test_limit);
  RUN(test_every_size);
  return CHECK_DONE();
}
