/*
 * fuzz_shdict.c -- libFuzzer target for src/shdict.c.
 *
 * The input is a program. Its first byte picks the dictionary: a small
 * zone (12 to 40 pages) with small pages (1, 2 or 4 KiB), 200 keys and
 * either eviction policy, so memory runs out, entries are evicted and pages change class
 * all the time. Each following step is an opcode and its operands: set
 * (SET/ADD/REPLACE; string, integer, float or boolean; with or without a
 * TTL, some already past; sizes up to and just over the largest entry),
 * get (into a big or a too-small buffer), delete, incr (integer or float
 * or non-number deltas, near the int64 limits, with or without init),
 * flush_all, flush_expired, keys (a full scan), the clock moving on, and
 * "fill" (dozens of sets of one size range from three bytes, so that even
 * the short inputs libFuzzer starts with run the zone full).
 *
 * Every step is applied to a reference model too: a table of the keys
 * with their value and expiry. The dictionary must return exactly what
 * the model says -- never a wrong value, a stale one after a delete or
 * replace, an expired one, or a wrong error code. The one freedom the
 * dictionary has is eviction: after each step whose stats show evictions
 * went up by n, a scan (which changes no LRU order) must find exactly n
 * live model keys gone, and those leave the model. After any other step a
 * live model key that is missing is a failure (checked on get, on incr
 * and delete results, on full scans, and every 64 steps).
 *
 * fuzz-sources: src/shdict.c src/shm.c
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

#include "shdict.h"

#define NKEYS 200
#define ZONE_MAX (40 * 4096)

#define FUZZ_NAME "fuzz_shdict"
#include "fuzz.h"

static uint64_t in_u64(struct in *in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | in_u8(in);
  return v;
}

/* --- the model ------------------------------------------------------------ */

struct mval {
  int type;
  int64_t i;
  double f;
  int b;
  uint8_t seed;   /* strings: byte j is seed + 31 * j */
  size_t len;
};

struct mkey {
  int present;
  struct mval v;
  double expires;
};

struct fz {
  struct shdict d;
  struct mkey m[NKEYS];
  double now;
  size_t max_entry;
  uint64_t evictions;
  char key[NKEYS][64];
  size_t klen[NKEYS];
  char *buf;      /* a value's bytes, max_entry long */
  char *scan;     /* keys() output */
};

static int live(const struct fz *z, int k) {
  const struct mkey *e = &z->m[k];
  return e->present && (e->expires == 0 || e->expires > z->now);
}

static void fill(char *p, uint8_t seed, size_t len) {
  for (size_t j = 0; j < len; j++)
    p[j] = (char)(seed + 31 * j);
}

/* Keys of several lengths (so entries land in several classes). */
static void make_keys(struct fz *z) {
  for (int k = 0; k < NKEYS; k++) {
    int n = snprintf(z->key[k], sizeof z->key[k], "k%03d", k);
    size_t pad = (size_t)(k % 5) * 11;
    memset(z->key[k] + n, 'x', pad);
    z->klen[k] = (size_t)n + pad;
  }
}

/* A value from the input; strings get a length in one of several ranges,
 * including just over what an entry can hold. */
static struct mval in_value(struct in *in, struct fz *z, int k) {
  struct mval v = {0};
  uint8_t sel = in_u8(in);
  size_t most = z->max_entry - SHDICT_OVERHEAD - z->klen[k];
  v.type = SHDICT_STR + sel % 4;
  if (v.type == SHDICT_INT) {
    v.i = (int64_t)in_u64(in);
    if (sel & 0x40)
      v.i = (sel & 0x80) ? INT64_MAX - (v.i & 3) : INT64_MIN + (v.i & 3);
  } else if (v.type == SHDICT_FLOAT) {
    uint64_t bits = in_u64(in);
    memcpy(&v.f, &bits, sizeof v.f);
    if (sel & 0x40)
      v.f = (double)(int8_t)bits / 4;
  } else if (v.type == SHDICT_BOOL) {
    v.b = sel >> 7;
  } else {
    uint8_t r = in_u8(in);
    v.seed = in_u8(in);
    switch ((sel >> 2) & 7) {
    case 0: case 1: v.len = r % 24; break;
    case 2: case 3: v.len = (size_t)r * 2; break;
    case 4: v.len = (size_t)r * 8 % (most + 1); break;
    case 5: case 6: v.len = most - r % 8; break;
    default: v.len = most + (r % 3 == 0) + r % 64 * (r % 3 == 1); break;
    }
  }
  return v;
}

static struct shdict_val to_val(const struct fz *z, const struct mval *v) {
  struct shdict_val out = {v->type, {0}, NULL, 0, 0};
  if (v->type == SHDICT_INT)
    out.n.i = v->i;
  else if (v->type == SHDICT_FLOAT)
    out.n.f = v->f;
  else if (v->type == SHDICT_BOOL)
    out.n.b = v->b;
  else {
    fill(z->buf, v->seed, v->len);
    out.s = z->buf;
    out.len = v->len;
  }
  return out;
}

static int same(const struct mval *m, const struct shdict_val *v) {
  if (m->type != v->type)
    return 0;
  switch (m->type) {
  case SHDICT_INT: return m->i == v->n.i;
  case SHDICT_FLOAT: return memcmp(&m->f, &v->n.f, sizeof m->f) == 0;
  case SHDICT_BOOL: return m->b == v->n.b;
  default: break;
  }
  if (m->len != v->len)
    return 0;
  for (size_t j = 0; j < m->len; j++)
    if (v->s[j] != (char)(m->seed + 31 * j))
      return 0;
  return 1;
}

/* --- checks ---------------------------------------------------------------- */

/* Which keys a full scan returns (live ones only); -1 on a scan error. */
static int scan_keys(struct fz *z, unsigned char found[NKEYS]) {
  size_t cursor = 0, used;
  memset(found, 0, NKEYS);
  do {
    int n = shdict_keys(&z->d, z->now, &cursor, z->scan, 1 << 16, &used);
    if (n < 0)
      return -1;
    for (size_t at = 0; at < used;) {
      uint16_t len;
      memcpy(&len, z->scan + at, 2);
      const char *p = z->scan + at + 2; /* "kNNN..." */
      int k = len >= 4 ? (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0')
                       : -1;
      if (k < 0 || k >= NKEYS || len != z->klen[k] ||
          memcmp(z->scan + at + 2, z->key[k], len) != 0 || found[k]++)
        FAIL("scan returned a bad or repeated key");
      at += 2 + (size_t)len;
    }
  } while (cursor != 0);
  return 0;
}

/* The evictions of the last step must be exactly the live keys now
 * missing; they leave the model. With none, nothing may be missing. */
static void check_evictions(struct fz *z, int full) {
  struct shdict_stats st;
  unsigned char found[NKEYS];
  if (shdict_stats(&z->d, &st) != 0)
    FAIL("stats failed");
  if (st.used > st.capacity)
    FAIL("used %zu > capacity %zu", st.used, st.capacity);
  uint64_t ev = st.evictions - z->evictions;
  z->evictions = st.evictions;
  if (ev == 0 && !full)
    return;
  if (scan_keys(z, found) < 0)
    FAIL("keys scan failed");
  uint64_t missing = 0;
  for (int k = 0; k < NKEYS; k++) {
    if (found[k] && !live(z, k))
      FAIL("key %d is in the dictionary but not (live) in the model", k);
    if (live(z, k) && !found[k]) {
      missing++;
      z->m[k].present = 0;
    }
  }
  if (missing != ev)
    FAIL("%llu evictions but %llu live keys gone",
         (unsigned long long)ev, (unsigned long long)missing);
}

/* --- operations ------------------------------------------------------------- */

/* One set, checked against the model and applied to it. */
static void set_checked(struct fz *z, int k, int mode, const struct mval *v,
                        double expires) {
  struct shdict_val dv = to_val(z, v);
  int rc = shdict_set(&z->d, z->key[k], z->klen[k], &dv, expires, mode, z->now);
  int want = 0;
  if (SHDICT_OVERHEAD + z->klen[k] + (v->type == SHDICT_STR ? v->len :
      v->type == SHDICT_BOOL ? 1 : 8) > z->max_entry)
    want = -E2BIG;
  else if (mode == SHDICT_ADD && live(z, k))
    want = -EEXIST;
  else if (mode == SHDICT_REPLACE && !live(z, k))
    want = -ENOENT;
  if (rc != want)
    FAIL("set(k%d, mode %d) = %d, model %d", k, mode, rc, want);
  if (rc == 0) {
    z->m[k].present = 1;
    z->m[k].v = *v;
    z->m[k].expires = expires > 0 ? expires : 0;
  }
}

static void op_set(struct fz *z, struct in *in, int k) {
  uint8_t sel = in_u8(in);
  struct mval v = in_value(in, z, k);
  double expires = 0;
  if (sel & 0x10)
    expires = z->now + (double)(in_u8(in) % 16) / 4 - 0.5; /* some past */
  set_checked(z, k, sel % 3, &v, expires);
}

/* Many sets from a few bytes, so that short inputs fill the zone: n
 * strings of one size range on keys k, k+7, k+14... (each checked for
 * evictions as a step of its own). */
static void check_evictions(struct fz *z, int full);

static void op_fill(struct fz *z, struct in *in, int k) {
  uint8_t n = 4 + in_u8(in) % 60, sel = in_u8(in), seed = in_u8(in);
  size_t unit = (size_t)1 << (sel % 11); /* 1 .. 1024 bytes */
  for (int j = 0; j < n; j++) {
    int key = (k + 7 * j) % NKEYS;
    struct mval v = {SHDICT_STR, 0, 0, 0, (uint8_t)(seed + j), 0};
    size_t most = z->max_entry - SHDICT_OVERHEAD - z->klen[key];
    v.len = unit * (1 + (size_t)((seed + j) % 3));
    if (v.len > most)
      v.len = most;
    set_checked(z, key, SHDICT_SET, &v, (sel & 0x80) ? z->now + j % 4 : 0);
    check_evictions(z, 0);
  }
}

static void op_get(struct fz *z, struct in *in, int k) {
  struct shdict_val out;
  size_t bufsize = (in_u8(in) & 7) ? z->max_entry : 3;
  int rc = shdict_get(&z->d, z->key[k], z->klen[k], z->now, &out, z->buf,
                      bufsize);
  if (!live(z, k)) {
    if (rc != -ENOENT)
      FAIL("get(k%d) = %d for a key the model has not (live)", k, rc);
    return;
  }
  const struct mval *m = &z->m[k].v;
  if (rc == -ENOBUFS && m->type == SHDICT_STR && m->len > bufsize &&
      out.len == m->len)
    return;
  if (rc != 0)
    FAIL("get(k%d) = %d for a live key", k, rc);
  if (!same(m, &out) || out.expires != z->m[k].expires)
    FAIL("get(k%d) returned another value than the model's", k);
}

static void op_delete(struct fz *z, int k) {
  int rc = shdict_delete(&z->d, z->key[k], z->klen[k], z->now);
  if (rc != (live(z, k) ? 0 : -ENOENT))
    FAIL("delete(k%d) = %d, model live %d", k, rc, live(z, k));
  z->m[k].present = 0;
}

/* The model's incr: 0 and *r, or the error. */
static int model_add(const struct mval *a, const struct mval *b,
                     struct mval *r) {
  memset(r, 0, sizeof *r);
  if ((a->type != SHDICT_INT && a->type != SHDICT_FLOAT) ||
      (b->type != SHDICT_INT && b->type != SHDICT_FLOAT))
    return -EDOM;
  if (a->type == SHDICT_INT && b->type == SHDICT_INT) {
    r->type = SHDICT_INT;
    return __builtin_add_overflow(a->i, b->i, &r->i) ? -ERANGE : 0;
  }
  r->type = SHDICT_FLOAT;
  r->f = (a->type == SHDICT_INT ? (double)a->i : a->f) +
         (b->type == SHDICT_INT ? (double)b->i : b->f);
  return 0;
}

static int is_num(const struct mval *v) {
  return v->type == SHDICT_INT || v->type == SHDICT_FLOAT;
}

static void op_incr(struct fz *z, struct in *in, int k) {
  uint8_t sel = in_u8(in);
  struct mval delta = in_value(in, z, k), init = in_value(in, z, k), r;
  double init_exp = (sel & 2) ? z->now + (double)(sel >> 4) : 0;
  int with_init = sel & 1;
  struct shdict_val dd = to_val(z, &delta), di = to_val(z, &init), out;
  /* Both strings share z->buf: a string is only ever refused for its type. */
  int rc = shdict_incr(&z->d, z->key[k], z->klen[k], &dd,
                       with_init ? &di : NULL, init_exp, z->now, &out);
  int want;
  if (!is_num(&delta) || (with_init && !is_num(&init)))
    want = -EDOM;
  else if (live(z, k))
    want = model_add(&z->m[k].v, &delta, &r);
  else if (!with_init)
    want = -ENOENT;
  else
    want = model_add(&init, &delta, &r);
  if (rc != want)
    FAIL("incr(k%d) = %d, model %d", k, rc, want);
  if (rc != 0)
    return;
  if (!same(&r, &out))
    FAIL("incr(k%d) result differs from the model", k);
  if (!live(z, k)) {
    z->m[k].present = 1;
    z->m[k].expires = init_exp;
  }
  z->m[k].v = r;
}

static void op_flush_all(struct fz *z) {
  if (shdict_flush_all(&z->d) != 0)
    FAIL("flush_all failed");
  for (int k = 0; k < NKEYS; k++)
    z->m[k].present = 0;
}

static void op_flush_expired(struct fz *z, struct in *in) {
  size_t max = in_u8(in) % 8;
  int n = shdict_flush_expired(&z->d, z->now, max);
  if (n < 0 || (max && (size_t)n > max))
    FAIL("flush_expired(%zu) = %d", max, n);
}

/* --- the program ------------------------------------------------------------- */

static void setup(struct fz *z, uint8_t sel, void *zone) {
  static const unsigned pages[] = {1024, 2048, 4096, 1024};
  struct shdict_config cfg = {pages[sel & 3], (sel >> 2) & 1, {7, 9}};
  /* 12 to 40 pages: a few dozen entries fill it. */
  size_t size = (size_t)cfg.page_size * (12 + (sel >> 3) % 29);
  if (shdict_init(zone, size, &cfg) != 0 || shdict_open(&z->d, zone, size) != 0)
    FAIL("cannot build a %zu-byte dictionary", size);
  struct shdict_stats st;
  shdict_stats(&z->d, &st);
  z->max_entry = st.max_entry;
  z->now = 1000.0;
  make_keys(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static _Alignas(64) unsigned char zone[ZONE_MAX];
  static char buf[4096 + 64], scan[1 << 16];
  static struct fz z;
  struct in in = {data, size};
  memset(&z, 0, sizeof z);
  z.buf = buf;
  z.scan = scan;
  setup(&z, in_u8(&in), zone);
  for (unsigned step = 1; in.n > 0; step++) {
    uint8_t op = in_u8(&in);
    int k = in_u8(&in) % NKEYS;
    switch (op % 13) {
    case 0: case 1: case 2: op_set(&z, &in, k); break;
    case 3: case 4: op_get(&z, &in, k); break;
    case 5: op_delete(&z, k); break;
    case 6: case 7: op_incr(&z, &in, k); break;
    case 8: if ((op >> 4) == 0) op_flush_all(&z); break;
    case 9: op_flush_expired(&z, &in); break;
    case 10: z.now += (double)(op >> 4) / 8; break;
    case 11: op_fill(&z, &in, k); break;
    default: check_evictions(&z, 1); continue;
    }
    check_evictions(&z, step % 64 == 0);
  }
  check_evictions(&z, 1);
  return 0;
}
