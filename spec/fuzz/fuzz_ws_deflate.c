/*
 * fuzz_ws_deflate.c -- libFuzzer target for src/ws_deflate.c.
 *
 * The first input byte picks a mode and parameters, the rest is its
 * operand:
 *   inflate:   arbitrary bytes as a compressed message, cut into frames at
 *              input-chosen points, under a small output limit: the result
 *              is 0, WS_INFLATE_TOOBIG or WS_INFLATE_BAD, and the output
 *              never passes the limit by more than one byte -- however
 *              much the bytes would inflate to (bombs included).
 *   roundtrip: the operand compressed as two messages (with or without
 *              context takeover, input-chosen level and window), each
 *              inflated back in input-chosen frames: the same bytes.
 *
 * fuzz-sources: src/ws_deflate.c src/buffer.c -lz
 *
 * Built by scripts/fuzz with clang -fsanitize=fuzzer,address,undefined.
 * Pure C, no Lua.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_deflate.h"

#define FUZZ_NAME "fuzz_ws_deflate"
#include "fuzz.h"

/* Inflate p[0..n) as frames cut every `step` bytes (step 0: one frame). */
static int inflate_frames(struct ws_inflate *f, const uint8_t *p, size_t n,
                          size_t step, struct buf *out, size_t max) {
  if (step == 0)
    step = n ? n : 1;
  size_t at = 0;
  do {
    size_t len = n - at < step ? n - at : step;
    int rc = ws_inflate_frame(f, p + at, len, at + len == n, out, max);
    if (rc != 0)
      return rc;
    at += len;
  } while (at < n);
  return 0;
}

static void fuzz_inflate(uint8_t sel, const uint8_t *p, size_t n) {
  struct ws_inflate f;
  struct buf out = BUF_INIT;
  size_t max = 1 + (size_t)(sel & 0x3f) * 97;
  if (ws_inflate_init(&f, sel & 0x40) != 0)
    return;
  for (int round = 0; round < 2; round++) {
    buf_consume(&out, out.len);
    int rc = inflate_frames(&f, p, n, (size_t)(sel >> 4) * 3, &out, max);
    if (rc != 0 && rc != WS_INFLATE_TOOBIG && rc != WS_INFLATE_BAD)
      FAIL("unexpected result %d\n", rc);
    if (out.len > max + 1)
      FAIL("output %zu past the limit %zu\n", out.len, max);
    if (rc != 0)
      break;
  }
  ws_inflate_end(&f);
  buf_free(&out);
}

static void fuzz_roundtrip(uint8_t sel, const uint8_t *p, size_t n) {
  struct ws_deflate d;
  struct ws_inflate f;
  struct buf z = BUF_INIT, out = BUF_INIT;
  int takeover = sel & 1;
  int level = (sel >> 1) % 10;
  int bits = 9 + (sel >> 4) % 7;
  if (ws_deflate_init(&d, level, bits, 8, !takeover) != 0)
    return;
  if (ws_inflate_init(&f, !takeover) != 0) {
    ws_deflate_end(&d);
    return;
  }
  size_t half = n / 2;
  const uint8_t *msgs[2] = {p, p + half};
  size_t lens[2] = {half, n - half};
  for (int i = 0; i < 2; i++) {
    buf_consume(&z, z.len);
    buf_consume(&out, out.len);
    if (ws_deflate_message(&d, msgs[i], lens[i], &z) != 0)
      FAIL("deflate failed\n");
    int rc = inflate_frames(&f, (const uint8_t *)buf_begin(&z), z.len,
                            (size_t)(sel & 7) + 1, &out, lens[i]);
    if (rc != 0)
      FAIL("inflate of our own output failed: %d\n", rc);
    if (out.len != lens[i] || memcmp(buf_begin(&out), msgs[i], lens[i]) != 0)
      FAIL("round trip of %zu bytes differs\n", lens[i]);
  }
  ws_deflate_end(&d);
  ws_inflate_end(&f);
  buf_free(&z);
  buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  uint8_t mode = data[0], sel = data[1];
  size_t n = size - 2;
  uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees overreads */
  if (copy == NULL)
    return 0;
  memcpy(copy, data + 2, n);
  if (mode & 1)
    fuzz_roundtrip(sel, copy, n);
  else
    fuzz_inflate(sel, copy, n);
  free(copy);
  return 0;
}
