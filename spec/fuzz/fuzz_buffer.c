/*
 * fuzz_buffer.c -- libFuzzer target for src/buffer.c.
 *
 * The input is a program: each step takes an opcode byte and its operands
 * from the input and applies one operation both to a struct buf and to a
 * reference model (a plain array holding exactly the unconsumed bytes).
 * After every step the buffer must hold the same bytes as the model and keep
 * its invariants:
 *   - off + len <= cap, room == cap - off - len;
 *   - data == NULL exactly when cap == 0;
 *   - an empty buffer is rewound (len == 0 implies off == 0);
 *   - reserve(n) returns the tail, leaves >= n bytes of room, keeps the
 *     bytes, reallocates only when the room is short (or there is no
 *     memory yet: even reserve(0) must return a real tail), and does not
 *     over-allocate (cap <= max(512, 2 * (len + n)));
 *   - a reserve that cannot be satisfied returns NULL and changes nothing.
 * The whole room after a reserve is written (ASan catches an overstated
 * room). buf_find_line and buf_find are compared with naive searches on the
 * buffer's bytes and on raw input slices, with a fuzzer-chosen "from".
 *
 * spec/fuzz/repro/buffer_reserve0_null (a3 0a) is the input that found
 * buf_reserve(b, 0) on a buffer with no memory computing NULL + 0 and
 * returning NULL; scripts/fuzz replays it as part of the corpus.
 *
 * fuzz-sources: src/buffer.c
 *
 * Built by scripts/fuzz with clang -fsanitize=fuzzer,address,undefined and
 * linked against src/buffer.c directly. Pure C, no Lua.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"

#define FUZZ_NAME "fuzz_buffer"
#include "fuzz.h"

#define MODEL_MAX (1u << 20) /* keep a single input's memory bounded */
#define MIN_CAP 512

/* Up to `want` bytes of raw input (fewer at the end). */
static const uint8_t *in_bytes(struct in *in, size_t want, size_t *got) {
  const uint8_t *p = in->p;
  *got = want < in->n ? want : in->n;
  in->p += *got;
  in->n -= *got;
  return p;
}

/* A size in a few useful ranges: tiny, around the minimum capacity, up to
 * 64 KiB. */
static size_t in_size(struct in *in) {
  uint8_t sel = in_u8(in);
  switch (sel & 3) {
  case 0: return sel >> 2;                          /* 0..63 */
  case 1: return MIN_CAP - 32 + (sel >> 2);         /* 480..543 */
  case 2: return in_u16(in) & 0x0fff;               /* 0..4095 */
  default: return in_u16(in);                       /* 0..65535 */
  }
}


/* The reference: the unconsumed bytes are data[off .. off+len). */
struct model {
  uint8_t *data;
  size_t off, len, cap;
};

static const char *model_bytes(const struct model *m) {
  return m->data ? (const char *)m->data + m->off : NULL; /* no NULL + 0 */
}

static void check(const struct buf *b, const struct model *m, const char *op) {
  if (b->off + b->len > b->cap || b->off + b->len < b->off)
    FAIL("%s: off %zu + len %zu > cap %zu", op, b->off, b->len, b->cap);
  if ((b->data == NULL) != (b->cap == 0))
    FAIL("%s: data %p with cap %zu", op, (void *)b->data, b->cap);
  if (buf_room(b) != b->cap - b->off - b->len)
    FAIL("%s: room %zu", op, buf_room(b));
  if (b->len == 0 && b->off != 0)
    FAIL("%s: empty buffer not rewound (off %zu)", op, b->off);
  if (b->len != m->len)
    FAIL("%s: len %zu, model %zu", op, b->len, m->len);
  if (m->len && memcmp(buf_begin(b), model_bytes(m), m->len) != 0)
    FAIL("%s: bytes differ from the model", op);
}

static void model_append(struct model *m, const void *p, size_t n) {
  if (n == 0)
    return;
  if (m->off > 0) { /* compact before growing */
    memmove(m->data, m->data + m->off, m->len);
    m->off = 0;
  }
  if (m->len + n > m->cap) {
    size_t cap = m->cap ? m->cap : 1024;
    while (cap < m->len + n)
      cap *= 2;
    uint8_t *d = realloc(m->data, cap);
    if (d == NULL)
      abort();
    m->data = d;
    m->cap = cap;
  }
  memcpy(m->data + m->len, p, n);
  m->len += n;
}

static void model_consume(struct model *m, size_t n) {
  if (n >= m->len) {
    m->off = m->len = 0;
    return;
  }
  m->off += n;
  m->len -= n;
}

/* --- naive references for the searches ------------------------------- */

static int ref_find_line(const char *p, size_t n, size_t from,
                         size_t *linelen, size_t *total) {
  for (size_t i = from; i < n; i++) {
    if (p[i] == '\n') {
      *total = i + 1;
      *linelen = (i > 0 && p[i - 1] == '\r') ? i - 1 : i;
      return 0;
    }
  }
  return -1;
}

static long ref_find(const char *p, size_t n, size_t from, const char *d,
                     size_t dlen) {
  if (dlen == 0)
    return -1;
  for (size_t i = from; i < n && n - i >= dlen; i++)
    if (memcmp(p + i, d, dlen) == 0)
      return (long)i;
  return -1;
}

/* Compare both searches on p[0..n) against the references. The haystack is
 * copied to an exact-size heap block so ASan sees any read past n. */
static void check_searches(const char *hay, size_t n, size_t from,
                           const char *delim, size_t dlen) {
  char *p = malloc(n ? n : 1);
  char *d = malloc(dlen ? dlen : 1);
  if (p == NULL || d == NULL)
    abort();
  if (n)
    memcpy(p, hay, n);
  if (dlen)
    memcpy(d, delim, dlen);

  size_t ll = (size_t)-1, tt = (size_t)-1, rl = 0, rt = 0;
  int got = buf_find_line(p, n, from, &ll, &tt);
  int want = ref_find_line(p, n, from, &rl, &rt);
  if (got != want)
    FAIL("find_line(n=%zu, from=%zu) = %d, reference %d", n, from, got,
         want);
  if (got == 0 && (ll != rl || tt != rt))
    FAIL("find_line(n=%zu, from=%zu): linelen %zu total %zu, reference "
         "%zu %zu", n, from, ll, tt, rl, rt);

  long at = buf_find(p, n, from, d, dlen);
  long rat = ref_find(p, n, from, d, dlen);
  if (at != rat)
    FAIL("find(n=%zu, from=%zu, dlen=%zu) = %ld, reference %ld", n, from,
         dlen, at, rat);
  free(p);
  free(d);
}

/* A "from" in 0..n+2, biased to the interesting ends. */
static size_t pick_from(struct in *in, size_t n) {
  uint8_t sel = in_u8(in);
  switch (sel & 3) {
  case 0: return 0;
  case 1: return n + (sel >> 2) % 3;            /* n, n+1, n+2 */
  case 2: return n >= (size_t)(sel >> 2) ? n - (sel >> 2) : 0;
  default: return n ? in_u16(in) % (n + 3) : in_u16(in) % 3;
  }
}

/* A delimiter: raw input bytes, or a slice of the haystack (so hits and
 * near-misses are common). */
static const char *pick_delim(struct in *in, const char *hay, size_t n,
                              size_t *dlen) {
  uint8_t sel = in_u8(in);
  size_t want = (size_t)(sel >> 1) % 9; /* 0..8, 0 exercises dlen == 0 */
  if ((sel & 1) && n > 0) {
    size_t at = in_u16(in) % n;
    *dlen = want < n - at ? want : n - at;
    return hay + at;
  }
  return (const char *)in_bytes(in, want, dlen);
}

/* Bytes from a 4-letter alphabet so lines and CRLFs are dense. */
static void alphabet(uint8_t *dst, const uint8_t *src, size_t n) {
  static const char abc[4] = {'a', '\r', '\n', 'b'};
  for (size_t i = 0; i < n; i++)
    dst[i] = (uint8_t)abc[src[i] & 3];
}

/* --- buffer operations ------------------------------------------------- */

static void op_append(struct buf *b, struct model *m, struct in *in,
                      int dense) {
  size_t n = in_size(in);
  if (m->len + n > MODEL_MAX)
    return;
  uint8_t *src = malloc(n ? n : 1);
  if (src == NULL)
    abort();
  size_t got;
  const uint8_t *raw = in_bytes(in, n, &got);
  if (dense)
    alphabet(src, raw, got);
  else if (got)
    memcpy(src, raw, got);
  for (size_t i = got; i < n; i++) /* input ran out: a recognisable fill */
    src[i] = (uint8_t)(i * 31 + 7);
  size_t cap = b->cap;
  if (buf_append(b, src, n) != 0)
    FAIL("append(%zu) failed at len %zu", n, b->len);
  if (n == 0 && b->cap != cap)
    FAIL("append(0) reallocated");
  model_append(m, src, n);
  free(src);
  check(b, m, "append");
}

static void op_consume(struct buf *b, struct model *m, struct in *in) {
  uint8_t sel = in_u8(in);
  size_t n;
  switch (sel & 3) {
  case 0: n = m->len; break;                        /* exactly all */
  case 1: n = m->len + 1 + (sel >> 2); break;       /* more than all */
  case 2: n = (size_t)-1; break;
  default: n = m->len ? in_u16(in) % (m->len + 1) : 0;
  }
  size_t cap = b->cap;
  buf_consume(b, n);
  model_consume(m, n);
  if (b->cap != cap)
    FAIL("consume changed cap");
  check(b, m, "consume");
}

/* reserve(n), write the whole room (so a wrong room is an ASan error), then
 * commit k <= n of the bytes. */
static void op_reserve_commit(struct buf *b, struct model *m, struct in *in) {
  size_t n = in_size(in);
  if (m->len + n > MODEL_MAX)
    return;
  size_t oldcap = b->cap, oldroom = buf_room(b);
  char *tail = buf_reserve(b, n);
  if (tail == NULL)
    FAIL("reserve(%zu) failed at len %zu", n, b->len);
  if (tail != b->data + b->off + b->len)
    FAIL("reserve(%zu) returned a pointer that is not the tail", n);
  size_t room = buf_room(b);
  if (room < n)
    FAIL("reserve(%zu): room %zu", n, room);
  if (oldcap != 0 && oldroom >= n && b->cap != oldcap)
    FAIL("reserve(%zu) reallocated with room %zu", n, oldroom);
  size_t bound = 2 * (b->len + n) > MIN_CAP ? 2 * (b->len + n) : MIN_CAP;
  if (b->cap != oldcap && b->cap > bound)
    FAIL("reserve(%zu) at len %zu grew cap to %zu", n, b->len, b->cap);
  check(b, m, "reserve");
  memset(tail, 0xA5, room);
  size_t k = n ? in_u16(in) % (n + 1) : 0;
  size_t got;
  const uint8_t *raw = in_bytes(in, k, &got);
  if (got)
    memcpy(tail, raw, got);
  buf_commit(b, k);
  model_append(m, tail, k);
  check(b, m, "commit");
}

/* A request no allocator can meet must fail cleanly and change nothing. */
static void op_reserve_huge(struct buf *b, struct model *m, struct in *in) {
  struct buf before = *b;
  size_t n = (size_t)-1 - in_u8(in);
  if (in_u8(in) & 1)
    n = (size_t)-1 / 2 - b->len + 1 + in_u8(in);
  if (buf_reserve(b, n) != NULL)
    FAIL("reserve(%zu) succeeded", n);
  if (memcmp(&before, b, sizeof before) != 0)
    FAIL("failed reserve(%zu) changed the buffer", n);
  check(b, m, "reserve-huge");
}

static void op_free(struct buf *b, struct model *m) {
  buf_free(b);
  if (b->data != NULL || b->cap || b->len || b->off)
    FAIL("free left data %p cap %zu", (void *)b->data, b->cap);
  m->off = m->len = 0;
  check(b, m, "free");
}

static void op_search_buffer(const struct buf *b, const struct model *m,
                             struct in *in) {
  size_t from = pick_from(in, m->len);
  size_t dlen;
  const char *d = pick_delim(in, model_bytes(m), m->len, &dlen);
  check_searches(model_bytes(m), m->len, from, d, dlen);
  (void)b;
}

static void op_search_raw(struct in *in, int dense) {
  size_t n = in_u8(in);
  size_t got;
  const uint8_t *raw = in_bytes(in, n, &got);
  uint8_t *hay = malloc(got ? got : 1);
  if (hay == NULL)
    abort();
  if (dense)
    alphabet(hay, raw, got);
  else if (got)
    memcpy(hay, raw, got);
  size_t from = pick_from(in, got);
  size_t dlen;
  const char *d = pick_delim(in, (const char *)hay, got, &dlen);
  char dd[8];
  if (dense && dlen) { /* keep the delimiter in the same alphabet */
    alphabet((uint8_t *)dd, (const uint8_t *)d, dlen);
    d = dd;
  }
  check_searches((const char *)hay, got, from, d, dlen);
  free(hay);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct in in = {data, size};
  struct buf b = BUF_INIT;
  struct model m = {NULL, 0, 0, 0};
  check(&b, &m, "init");
  while (in.n > 0) {
    switch (in_u8(&in) % 10) {
    case 0: op_append(&b, &m, &in, 0); break;
    case 1: op_append(&b, &m, &in, 1); break;
    case 2: op_consume(&b, &m, &in); break;
    case 3: op_reserve_commit(&b, &m, &in); break;
    case 4: op_reserve_huge(&b, &m, &in); break;
    case 5: op_free(&b, &m); break;
    case 6: op_search_buffer(&b, &m, &in); break;
    case 7: op_search_raw(&in, 0); break;
    case 8: op_search_raw(&in, 1); break;
    default: op_consume(&b, &m, &in); op_append(&b, &m, &in, 1); break;
    }
  }
  buf_free(&b);
  free(m.data);
  return 0;
}
