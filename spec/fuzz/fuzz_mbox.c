/*
 * fuzz_mbox.c -- libFuzzer target for src/mbox.c.
 *
 * The input is a program run against a small mailbox (4 or 8 KiB, so
 * records wrap around the end of the ring all the time) and a reference
 * model: a queue of (length, seed) pairs, the bytes they take, and the
 * doorbell. Opcodes: put a record (one to three iovecs; lengths up to and
 * past the capacity), get (into a buffer large enough or too small),
 * clear the doorbell, reset. After every step the mailbox must agree with
 * the model exactly: what put refuses (full, too large), whether it asks
 * for a wake-up, the length and every byte of what get returns, the bytes
 * queued.
 *
 * fuzz-sources: src/mbox.c src/shm.c
 *
 * Built by scripts/fuzz with clang -fsanitize=fuzzer,address,undefined and
 * linked against the sources above. Pure C, no Lua.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mbox.h"

#define QMAX 4096
#define BIG 9000

#define FUZZ_NAME "fuzz_mbox"
#include "fuzz.h"

static size_t in_len(struct in *in, size_t cap) {
  switch (in_u8(in) & 3) {
  case 0: return in_u8(in) % 16;                        /* tiny */
  case 1: return in_u8(in) * 4u;                        /* small */
  case 2: return cap - 8 - (in_u8(in) % 24);            /* about the ring */
  default: return ((size_t)in_u8(in) << 8 | in_u8(in)) % BIG; /* any */
  }
}

struct model {
  size_t len[QMAX];
  uint8_t seed[QMAX];
  size_t head, count;
  uint64_t used;
  int bell;
};

static uint64_t pad8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

static void fill(uint8_t *p, size_t n, uint8_t seed) {
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)(seed + i * 131);
}

static void step_put(struct mbox *m, struct model *md, struct in *in) {
  static uint8_t src[BIG];
  size_t len = in_len(in, (size_t)mbox_cap(m));
  uint8_t seed = in_u8(in);
  fill(src, len, seed);
  struct iovec iov[3];
  int n = 1 + in_u8(in) % 3;
  size_t a = n > 1 ? len / 3 : len, b = n > 2 ? len / 3 : len - a;
  iov[0] = (struct iovec){src, a};
  iov[1] = (struct iovec){src + a, n > 2 ? b : len - a};
  iov[2] = (struct iovec){src + a + b, len - a - b};
  int ring = -1, rc = mbox_put(m, iov, n, &ring);
  uint64_t need = 8 + pad8(len);
  int want = need > mbox_cap(m) ? -EMSGSIZE
           : need > mbox_cap(m) - md->used ? -ENOSPC : 0;
  if (rc != want)
    FAIL("put %zu: got %d, want %d (used %llu)", len, rc, want,
         (unsigned long long)md->used);
  if (rc != 0)
    return;
  if (ring != !md->bell)
    FAIL("put: ring %d with the bell %s", ring, md->bell ? "set" : "clear");
  md->bell = 1;
  if (md->count == QMAX)
    FAIL("model overflow"); /* cannot happen: 8 bytes a record at least */
  size_t at = (md->head + md->count++) % QMAX;
  md->len[at] = len;
  md->seed[at] = seed;
  md->used += need;
}

static void step_get(struct mbox *m, struct model *md, struct in *in) {
  static uint8_t buf[BIG], want[BIG];
  size_t bufsize = in_u8(in) & 1 ? BIG : in_u8(in) * 8u;
  size_t len = 0;
  int rc = mbox_get(m, buf, bufsize, &len);
  if (md->count == 0) {
    if (rc != 0)
      FAIL("get on empty: %d", rc);
    return;
  }
  size_t l = md->len[md->head];
  uint8_t seed = md->seed[md->head];
  md->head = (md->head + 1) % QMAX;
  md->count--;
  md->used -= 8 + pad8(l);
  if (len != l || rc != (l > bufsize ? -EMSGSIZE : 1))
    FAIL("get: rc %d len %zu, want len %zu (buf %zu)", rc, len, l, bufsize);
  if (rc == 1) {
    fill(want, l, seed);
    if (memcmp(buf, want, l) != 0)
      FAIL("get: wrong bytes in a record of %zu", l);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static unsigned char zone[16384] __attribute__((aligned(64)));
  struct in in = {data, size};
  struct mbox m;
  struct model md;
  size_t cap = in_u8(&in) & 1 ? 8192 : 4096;
  size_t zsize = mbox_zone_size(cap);
  memset(&md, 0, sizeof md);
  if (mbox_init(zone, zsize, NULL) != 0 || mbox_open(&m, zone, zsize) != 0 ||
      mbox_cap(&m) != cap)
    FAIL("init");
  while (in.n > 0) {
    switch (in_u8(&in) % 8) {
    case 0: case 1: case 2: step_put(&m, &md, &in); break;
    case 3: case 4: case 5: step_get(&m, &md, &in); break;
    case 6:
      if (mbox_clear_bell(&m) != md.bell)
        FAIL("clear_bell");
      md.bell = 0;
      break;
    default:
      if (in_u8(&in) % 4 == 0) {
        mbox_reset(&m);
        md.head = md.count = 0;
        md.used = 0;
        md.bell = 0;
      }
      break;
    }
    if (mbox_used(&m) != md.used)
      FAIL("used %llu, model %llu", (unsigned long long)mbox_used(&m),
           (unsigned long long)md.used);
  }
  return 0;
}
