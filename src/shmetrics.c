/*
 * shmetrics.c -- the metrics store and its Prometheus text exposition.
 * See shmetrics.h for the contract. No lua.h here.
 *
 * Zone layout: header | families | series | family buckets | series
 * buckets | pool (names, escaped help, rendered labels, bounds) | cells:
 * SHM_MEMBERS + 1 arrays of max_cells 8-byte cells, one per member slot
 * and the last for the retired totals.
 */
#include "shmetrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm.h"

#define SM_MAGIC 0x54454d53u /* "SMET" */
#define SM_VERSION 1u
#define SM_RETIRED SHM_MEMBERS /* index of the retired array */
#define SM_DEFAULT_SERIES 16384u
#define SM_DEFAULT_CELLS 65536u
#define SM_POOL_PER_SERIES 128u

struct sm_family {
  uint32_t name_off, name_len;
  uint32_t help_off, help_len;  /* escaped */
  uint32_t type;
  uint32_t nbounds;
  uint32_t bounds_off;          /* doubles, 8-aligned in the pool */
  uint32_t hnext;               /* index + 1 */
  uint32_t hash;
  uint32_t pad_;
};

struct sm_series {
  uint32_t family;
  uint32_t labels_off, labels_len;  /* k="v",... without braces */
  uint32_t cell, ncells;
  uint32_t hnext;                   /* index + 1 */
  uint32_t hash;
  uint32_t pad_;
};

struct sm_hdr {
  uint32_t magic;
  uint32_t version;
  uint64_t size;
  pthread_mutex_t lock;           /* registration and retire */
  _Atomic uint32_t seq;           /* odd while a retire folds */
  _Atomic uint32_t nseries;       /* published records */
  _Atomic uint32_t nfamilies;
  uint32_t ncells;
  uint32_t pool_used;
  uint32_t max_series;
  uint32_t max_cells;
  uint32_t pool_bytes;
  uint32_t nbuckets;              /* per hash table, a power of two */
  uint32_t pad_;
  uint64_t families_off, series_off, fbuckets_off, sbuckets_off;
  uint64_t pool_off, cells_off;
  uint64_t recoveries;
};

/* --- layout ------------------------------------------------------------ */

static uint64_t sm_align(uint64_t n) {
  return (n + 63) & ~(uint64_t)63;
}

static void sm_defaults(const struct shmetrics_config *in,
                        struct shmetrics_config *c) {
  c->max_series = in && in->max_series ? in->max_series : SM_DEFAULT_SERIES;
  c->max_cells = in && in->max_cells ? in->max_cells : SM_DEFAULT_CELLS;
  c->pool_bytes = in && in->pool_bytes ? in->pool_bytes
                                       : c->max_series * SM_POOL_PER_SERIES;
}

static uint32_t sm_nbuckets(uint32_t max_series) {
  uint32_t n = 16;
  while (n < 2 * (uint64_t)max_series && n < (1u << 30))
    n <<= 1;
  return n;
}

/* Offsets of every part for `c`; returns the total size. */
static uint64_t sm_layout(const struct shmetrics_config *c, struct sm_hdr *h) {
  uint32_t nb = sm_nbuckets(c->max_series);
  uint64_t off = sm_align(sizeof(struct sm_hdr));
  h->families_off = off;
  off = sm_align(off + (uint64_t)c->max_series * sizeof(struct sm_family));
  h->series_off = off;
  off = sm_align(off + (uint64_t)c->max_series * sizeof(struct sm_series));
  h->fbuckets_off = off;
  off = sm_align(off + (uint64_t)nb * 4);
  h->sbuckets_off = off;
  off = sm_align(off + (uint64_t)nb * 4);
  h->pool_off = off;
  off = sm_align(off + c->pool_bytes);
  h->cells_off = off;
  h->nbuckets = nb;
  return off + (uint64_t)(SHM_MEMBERS + 1) * c->max_cells * 8;
}

size_t shmetrics_zone_size(const struct shmetrics_config *cfg) {
  struct shmetrics_config c;
  struct sm_hdr h;
  sm_defaults(cfg, &c);
  return (size_t)sm_layout(&c, &h);
}

static struct sm_hdr *sm_h(const struct shmetrics *m) {
  return (struct sm_hdr *)m->base;
}

static struct sm_family *sm_fam(const struct shmetrics *m, uint32_t i) {
  return (struct sm_family *)(m->base + sm_h(m)->families_off) + i;
}

static struct sm_series *sm_ser(const struct shmetrics *m, uint32_t i) {
  return (struct sm_series *)(m->base + sm_h(m)->series_off) + i;
}

static uint32_t *sm_fbuckets(const struct shmetrics *m) {
  return (uint32_t *)(m->base + sm_h(m)->fbuckets_off);
}

static uint32_t *sm_sbuckets(const struct shmetrics *m) {
  return (uint32_t *)(m->base + sm_h(m)->sbuckets_off);
}

static char *sm_pool(const struct shmetrics *m, uint32_t off) {
  return (char *)m->base + sm_h(m)->pool_off + off;
}

/* Slot `a`'s array (SM_RETIRED: the retired totals). */
static _Atomic uint64_t *sm_cells(const struct shmetrics *m, int a) {
  const struct sm_hdr *h = sm_h(m);
  return (_Atomic uint64_t *)(m->base + h->cells_off +
                              (uint64_t)a * h->max_cells * 8);
}

/* --- attach ------------------------------------------------------------ */

static int sm_zone_init(void *zone, size_t size, void *arg) {
  struct sm_hdr *h = zone;
  const struct shmetrics_config *c = arg;
  memset(h, 0, sizeof *h);
  if (sm_layout(c, h) > size)
    return -EINVAL;
  int rc = shm_mutex_init(&h->lock);
  if (rc < 0)
    return rc;
  h->size = size;
  h->max_series = c->max_series;
  h->max_cells = c->max_cells;
  h->pool_bytes = c->pool_bytes;
  memset((char *)zone + h->fbuckets_off, 0, (size_t)h->nbuckets * 4);
  memset((char *)zone + h->sbuckets_off, 0, (size_t)h->nbuckets * 4);
  h->version = SM_VERSION;
  h->magic = SM_MAGIC;
  return 0;
}

int shmetrics_attach(struct shmetrics *m, struct shm *r,
                     const struct shmetrics_config *cfg) {
  struct shmetrics_config c;
  struct shm_zone z;
  sm_defaults(cfg, &c);
  if (c.max_series > (1u << 24) || c.max_cells > (1u << 28))
    return -EINVAL;
  size_t size = shmetrics_zone_size(&c);
  int rc = shm_zone(r, SHMETRICS_ZONE, size, sm_zone_init, &c, &z);
  if (rc < 0)
    return rc;
  const struct sm_hdr *h = z.base;
  if (h->magic != SM_MAGIC || h->version != SM_VERSION || h->size != z.size)
    return -EPROTO;
  m->r = r;
  m->base = z.base;
  m->size = z.size;
  return 0;
}

uint32_t shmetrics_count(const struct shmetrics *m) {
  return atomic_load_explicit(&sm_h(m)->nseries, memory_order_acquire);
}

/* --- validation and rendering ------------------------------------------ */

static uint32_t sm_hash(uint32_t h, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)p[i]) * 16777619u;
  return h;
}

static int sm_name_ok(const char *s, int colon) {
  size_t n = strlen(s);
  if (n == 0 || n > SHMETRICS_NAME_MAX)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
             (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok)
      return 0;
  }
  return 1;
}

/* Append `s` escaped for a label value (\\, \", \n) or, when `help`, for
 * HELP text (\\, \n). Returns the new length, or 0 when out of room. */
static size_t sm_escape(char *out, size_t pos, size_t cap, const char *s,
                        int help) {
  for (; *s; s++) {
    const char *rep = NULL;
    if (*s == '\\')
      rep = "\\\\";
    else if (*s == '\n')
      rep = "\\n";
    else if (*s == '"' && !help)
      rep = "\\\"";
    size_t n = rep ? 2 : 1;
    if (pos + n > cap)
      return 0;
    memcpy(out + pos, rep ? rep : s, n);
    pos += n;
  }
  return pos;
}

static int sm_check_labels(const struct shmetrics_label *l, size_t n,
                           int type) {
  if (n > SHMETRICS_LABELS_MAX)
    return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (!l[i].name || !l[i].value || !sm_name_ok(l[i].name, 0) ||
        strncmp(l[i].name, "__", 2) == 0 ||
        (type == SHMETRICS_HISTOGRAM && strcmp(l[i].name, "le") == 0))
      return -EINVAL;
    for (size_t j = 0; j < i; j++)
      if (strcmp(l[i].name, l[j].name) == 0)
        return -EINVAL;
  }
  return 0;
}

/* k="v",... sorted by name, so the same set in any order is one series.
 * Returns the length, or -EINVAL when over SHMETRICS_RENDERED_MAX. */
static int sm_render(const struct shmetrics_label *l, size_t n, char *out) {
  size_t order[SHMETRICS_LABELS_MAX], pos = 0;
  for (size_t i = 0; i < n; i++) { /* insertion sort: n <= 16 */
    size_t j = i;
    for (; j > 0 && strcmp(l[order[j - 1]].name, l[i].name) > 0; j--)
      order[j] = order[j - 1];
    order[j] = i;
  }
  for (size_t k = 0; k < n; k++) {
    const struct shmetrics_label *x = &l[order[k]];
    size_t nl = strlen(x->name);
    if (pos + nl + 4 > SHMETRICS_RENDERED_MAX)
      return -EINVAL;
    if (k > 0)
      out[pos++] = ',';
    memcpy(out + pos, x->name, nl);
    pos += nl;
    out[pos++] = '=';
    out[pos++] = '"';
    pos = sm_escape(out, pos, SHMETRICS_RENDERED_MAX - 1, x->value, 0);
    if (pos == 0)
      return -EINVAL;
    out[pos++] = '"';
  }
  return (int)pos;
}

static int sm_check_bounds(const double *b, size_t n, int type) {
  if (type != SHMETRICS_HISTOGRAM)
    return n == 0 ? 0 : -EINVAL;
  if (n == 0 || n > SHMETRICS_BOUNDS_MAX || b == NULL)
    return -EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!isfinite(b[i]) || (i > 0 && !(b[i] > b[i - 1])))
      return -EINVAL;
  return 0;
}

/* --- the registry (under the lock) ------------------------------------- */

static void sm_link_family(struct shmetrics *m, uint32_t i) {
  struct sm_family *f = sm_fam(m, i);
  uint32_t *b = &sm_fbuckets(m)[f->hash & (sm_h(m)->nbuckets - 1)];
  f->hnext = *b;
  *b = i + 1;
}

static void sm_link_series(struct shmetrics *m, uint32_t i) {
  struct sm_series *s = sm_ser(m, i);
  uint32_t *b = &sm_sbuckets(m)[s->hash & (sm_h(m)->nbuckets - 1)];
  s->hnext = *b;
  *b = i + 1;
}

/* After a holder died: the hash tables are derived from the published
 * records, so rebuild them; a retire cut short gets its seqcount even. */
static void sm_repair(struct shmetrics *m) {
  struct sm_hdr *h = sm_h(m);
  memset(sm_fbuckets(m), 0, (size_t)h->nbuckets * 4);
  memset(sm_sbuckets(m), 0, (size_t)h->nbuckets * 4);
  uint32_t nf = atomic_load(&h->nfamilies), ns = atomic_load(&h->nseries);
  for (uint32_t i = 0; i < nf; i++)
    sm_link_family(m, i);
  for (uint32_t i = 0; i < ns; i++)
    sm_link_series(m, i);
  if (atomic_load(&h->seq) & 1)
    atomic_fetch_add(&h->seq, 1);
  h->recoveries++;
}

static int sm_lock(struct shmetrics *m) {
  int rc = shm_lock(&sm_h(m)->lock);
  if (rc == SHM_LOCK_RECOVERED) {
    sm_repair(m);
    rc = 0;
  }
  return rc;
}

/* Family index, or -1. */
static long sm_find_family(struct shmetrics *m, const char *name,
                           size_t len, uint32_t hash) {
  uint32_t i = sm_fbuckets(m)[hash & (sm_h(m)->nbuckets - 1)];
  while (i) {
    struct sm_family *f = sm_fam(m, i - 1);
    if (f->hash == hash && f->name_len == len &&
        memcmp(sm_pool(m, f->name_off), name, len) == 0)
      return (long)(i - 1);
    i = f->hnext;
  }
  return -1;
}

static long sm_find_series(struct shmetrics *m, uint32_t fam,
                           const char *labels, size_t len, uint32_t hash) {
  uint32_t i = sm_sbuckets(m)[hash & (sm_h(m)->nbuckets - 1)];
  while (i) {
    struct sm_series *s = sm_ser(m, i - 1);
    if (s->hash == hash && s->family == fam && s->labels_len == len &&
        memcmp(sm_pool(m, s->labels_off), labels, len) == 0)
      return (long)(i - 1);
    i = s->hnext;
  }
  return -1;
}

/* Copy `n` bytes into the pool (8-aligned); its offset, or -ENOSPC. */
static long sm_pool_put(struct shmetrics *m, const void *p, size_t n) {
  struct sm_hdr *h = sm_h(m);
  uint32_t at = (h->pool_used + 7) & ~7u;
  if (at > h->pool_bytes || n > h->pool_bytes - at)
    return -ENOSPC;
  if (n)
    memcpy(sm_pool(m, at), p, n);
  h->pool_used = at + (uint32_t)n;
  return at;
}

struct sm_def {
  int type;
  const char *name;
  size_t name_len;
  uint32_t name_hash;
  const char *help;       /* escaped */
  size_t help_len;
  const double *bounds;
  size_t nbounds;
  const char *labels;     /* rendered */
  size_t labels_len;
};

static int sm_same_family(struct shmetrics *m, uint32_t i,
                          const struct sm_def *d) {
  struct sm_family *f = sm_fam(m, i);
  if ((int)f->type != d->type || f->nbounds != d->nbounds)
    return 0;
  return d->nbounds == 0 ||
         memcmp(sm_pool(m, f->bounds_off), d->bounds,
                d->nbounds * sizeof(double)) == 0;
}

static long sm_new_family(struct shmetrics *m, const struct sm_def *d) {
  struct sm_hdr *h = sm_h(m);
  uint32_t i = atomic_load(&h->nfamilies);
  if (i >= h->max_series)
    return -ENOSPC;
  long name = sm_pool_put(m, d->name, d->name_len);
  long help = name < 0 ? name : sm_pool_put(m, d->help, d->help_len);
  long bounds = help < 0 ? help
                         : sm_pool_put(m, d->bounds, d->nbounds * sizeof(double));
  if (bounds < 0)
    return bounds;
  struct sm_family *f = sm_fam(m, i);
  memset(f, 0, sizeof *f);
  f->name_off = (uint32_t)name;
  f->name_len = (uint32_t)d->name_len;
  f->help_off = (uint32_t)help;
  f->help_len = (uint32_t)d->help_len;
  f->type = (uint32_t)d->type;
  f->nbounds = (uint32_t)d->nbounds;
  f->bounds_off = (uint32_t)bounds;
  f->hash = d->name_hash;
  sm_link_family(m, i);
  atomic_store_explicit(&h->nfamilies, i + 1, memory_order_release);
  return (long)i;
}

static long sm_new_series(struct shmetrics *m, uint32_t fam,
                          const struct sm_def *d, uint32_t hash) {
  struct sm_hdr *h = sm_h(m);
  uint32_t i = atomic_load(&h->nseries);
  uint32_t ncells = d->type == SHMETRICS_HISTOGRAM
                        ? (uint32_t)d->nbounds + 2 : 1;
  if (i >= h->max_series || ncells > h->max_cells - h->ncells)
    return -ENOSPC;
  long labels = sm_pool_put(m, d->labels, d->labels_len);
  if (labels < 0)
    return labels;
  struct sm_series *s = sm_ser(m, i);
  memset(s, 0, sizeof *s);
  s->family = fam;
  s->labels_off = (uint32_t)labels;
  s->labels_len = (uint32_t)d->labels_len;
  s->cell = h->ncells;
  s->ncells = ncells;
  s->hash = hash;
  h->ncells += ncells;
  sm_link_series(m, i);
  atomic_store_explicit(&h->nseries, i + 1, memory_order_release);
  return (long)i;
}

static long sm_register_locked(struct shmetrics *m, const struct sm_def *d) {
  long fam = sm_find_family(m, d->name, d->name_len, d->name_hash);
  if (fam >= 0 && !sm_same_family(m, (uint32_t)fam, d))
    return -EEXIST;
  uint32_t hash = sm_hash(d->name_hash, d->labels, d->labels_len);
  if (fam >= 0) {
    long s = sm_find_series(m, (uint32_t)fam, d->labels, d->labels_len, hash);
    if (s >= 0)
      return s;
  } else if ((fam = sm_new_family(m, d)) < 0) {
    return fam;
  }
  return sm_new_series(m, (uint32_t)fam, d, hash);
}

int shmetrics_register(struct shmetrics *m, int type, const char *name,
                       const char *help, const struct shmetrics_label *labels,
                       size_t nlabels, const double *bounds, size_t nbounds) {
  char rendered[SHMETRICS_RENDERED_MAX], esc[2 * SHMETRICS_HELP_MAX + 1];
  if (type < SHMETRICS_COUNTER || type > SHMETRICS_HISTOGRAM || !name ||
      !sm_name_ok(name, 1) || (help && strlen(help) > SHMETRICS_HELP_MAX))
    return -EINVAL;
  int rc = sm_check_labels(labels, nlabels, type);
  if (rc == 0)
    rc = sm_check_bounds(bounds, nbounds, type);
  int rlen = rc == 0 ? sm_render(labels, nlabels, rendered) : rc;
  if (rlen < 0)
    return rlen;
  struct sm_def d = {type, name, strlen(name), 0, esc, 0, bounds, nbounds,
                     rendered, (size_t)rlen};
  d.name_hash = sm_hash(2166136261u, name, d.name_len);
  d.help_len = help ? sm_escape(esc, 0, sizeof esc, help, 1) : 0;
  if ((rc = sm_lock(m)) < 0)
    return rc;
  long idx = sm_register_locked(m, &d);
  shm_unlock(&sm_h(m)->lock);
  return (int)idx;
}

/* --- updates (no lock: one writer per slot) ---------------------------- */

static double sm_bound(const struct shmetrics *m, const struct sm_family *f,
                       uint32_t i) {
  double b;
  memcpy(&b, sm_pool(m, f->bounds_off) + i * sizeof b, sizeof b);
  return b;
}

static double sm_load_f(_Atomic uint64_t *c) {
  uint64_t bits = atomic_load_explicit(c, memory_order_relaxed);
  double v;
  memcpy(&v, &bits, sizeof v);
  return v;
}

static void sm_store_f(_Atomic uint64_t *c, double v) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  atomic_store_explicit(c, bits, memory_order_relaxed);
}

/* The first cell of `series` in `slot`'s array, if it has type `type`. */
static _Atomic uint64_t *sm_cell(struct shmetrics *m, int slot, int series,
                                 int type, const struct sm_series **out) {
  struct sm_hdr *h = sm_h(m);
  if (slot < 0 || slot >= SHM_MEMBERS || series < 0 ||
      (uint32_t)series >= atomic_load_explicit(&h->nseries,
                                               memory_order_acquire))
    return NULL;
  const struct sm_series *s = sm_ser(m, (uint32_t)series);
  if ((int)sm_fam(m, s->family)->type != type)
    return NULL;
  if (out)
    *out = s;
  return sm_cells(m, slot) + s->cell;
}

int shmetrics_add(struct shmetrics *m, int slot, int series, double v) {
  _Atomic uint64_t *c = sm_cell(m, slot, series, SHMETRICS_COUNTER, NULL);
  if (c != NULL && !(v >= 0)) /* a counter only goes up (and NaN fails) */
    return -EINVAL;
  if (c == NULL)
    c = sm_cell(m, slot, series, SHMETRICS_GAUGE, NULL);
  if (c == NULL)
    return -EINVAL;
  sm_store_f(c, sm_load_f(c) + v);
  return 0;
}

int shmetrics_set(struct shmetrics *m, int slot, int series, double v) {
  _Atomic uint64_t *c = sm_cell(m, slot, series, SHMETRICS_GAUGE, NULL);
  if (c == NULL)
    return -EINVAL;
  sm_store_f(c, v);
  return 0;
}

int shmetrics_observe(struct shmetrics *m, int slot, int series, double v) {
  const struct sm_series *s;
  _Atomic uint64_t *c = sm_cell(m, slot, series, SHMETRICS_HISTOGRAM, &s);
  if (c == NULL || isnan(v))
    return -EINVAL;
  const struct sm_family *f = sm_fam(m, s->family);
  uint32_t i = 0;
  while (i < f->nbounds && v > sm_bound(m, f, i)) /* le: bound included */
    i++;
  atomic_store_explicit(&c[i], atomic_load_explicit(&c[i],
                        memory_order_relaxed) + 1, memory_order_relaxed);
  sm_store_f(&c[f->nbounds + 1], sm_load_f(&c[f->nbounds + 1]) + v);
  return 0;
}

/* --- retire -------------------------------------------------------------- */

/* Add slot cells of series `s` into the retired array. */
static void sm_fold(struct shmetrics *m, const struct sm_series *s,
                    _Atomic uint64_t *from, _Atomic uint64_t *to) {
  uint32_t type = sm_fam(m, s->family)->type;
  if (type == SHMETRICS_GAUGE)
    return;
  uint32_t last = s->cell + s->ncells - 1; /* counter value or hist. sum */
  for (uint32_t c = s->cell; c < last; c++)
    atomic_store_explicit(&to[c], atomic_load_explicit(&to[c],
                          memory_order_relaxed) + atomic_load_explicit(&from[c],
                          memory_order_relaxed), memory_order_relaxed);
  sm_store_f(&to[last], sm_load_f(&to[last]) + sm_load_f(&from[last]));
}

int shmetrics_retire(struct shmetrics *m, int slot) {
  if (slot < 0 || slot >= SHM_MEMBERS)
    return -EINVAL;
  int rc = sm_lock(m);
  if (rc < 0)
    return rc;
  struct sm_hdr *h = sm_h(m);
  uint32_t seq = atomic_load_explicit(&h->seq, memory_order_relaxed);
  atomic_store_explicit(&h->seq, seq + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  _Atomic uint64_t *from = sm_cells(m, slot), *to = sm_cells(m, SM_RETIRED);
  uint32_t n = atomic_load(&h->nseries);
  for (uint32_t i = 0; i < n; i++)
    sm_fold(m, sm_ser(m, i), from, to);
  for (uint32_t c = 0; c < h->ncells; c++)
    atomic_store_explicit(&from[c], 0, memory_order_relaxed);
  atomic_store_explicit(&h->seq, seq + 2, memory_order_release);
  shm_unlock(&h->lock);
  return 0;
}

/* --- scrape: snapshot ---------------------------------------------------- */

struct sm_snap {
  uint32_t nseries, nfamilies, ncells;
  uint64_t *cells;     /* summed: u64 counts, double bits elsewhere */
  uint32_t *order;     /* series grouped by family, in index order */
  uint32_t *first;     /* per family: start in order[]; [nfamilies] = end */
};

/* Add one array into the snapshot, cell by cell according to the type. */
static void sm_snap_add(struct shmetrics *m, struct sm_snap *sn,
                        _Atomic uint64_t *a) {
  for (uint32_t i = 0; i < sn->nseries; i++) {
    const struct sm_series *s = sm_ser(m, i);
    uint32_t last = s->cell + s->ncells - 1, c = s->cell;
    if (sm_fam(m, s->family)->type == SHMETRICS_HISTOGRAM)
      for (; c < last; c++)
        sn->cells[c] += atomic_load_explicit(&a[c], memory_order_relaxed);
    double v;
    memcpy(&v, &sn->cells[last], sizeof v);
    v += sm_load_f(&a[last]);
    memcpy(&sn->cells[last], &v, sizeof v);
  }
}

/* Sum every claimed slot and the retired totals; retake it if a retire
 * moved values between arrays meanwhile (seqcount). */
static void sm_snap_sum(struct shmetrics *m, struct sm_snap *sn) {
  struct sm_hdr *h = sm_h(m);
  for (;;) {
    uint32_t seq = atomic_load_explicit(&h->seq, memory_order_acquire);
    if (seq & 1) {
      sched_yield();
      continue;
    }
    memset(sn->cells, 0, (size_t)sn->ncells * 8);
    for (int a = 0; a < SHM_MEMBERS; a++)
      if (atomic_load(&shm_member(m->r, a)->state) != SHM_FREE)
        sm_snap_add(m, sn, sm_cells(m, a));
    sm_snap_add(m, sn, sm_cells(m, SM_RETIRED));
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&h->seq, memory_order_relaxed) == seq)
      return;
  }
}

/* Counting sort of the series by family (stable: registration order). */
static void sm_snap_group(struct shmetrics *m, struct sm_snap *sn) {
  memset(sn->first, 0, ((size_t)sn->nfamilies + 1) * sizeof(uint32_t));
  for (uint32_t i = 0; i < sn->nseries; i++)
    sn->first[sm_ser(m, i)->family + 1]++;
  for (uint32_t f = 0; f < sn->nfamilies; f++)
    sn->first[f + 1] += sn->first[f];
  uint32_t *fill = sn->first; /* reuse: shift back afterwards */
  for (uint32_t i = 0; i < sn->nseries; i++)
    sn->order[fill[sm_ser(m, i)->family]++] = i;
  for (uint32_t f = sn->nfamilies; f > 0; f--)
    sn->first[f] = sn->first[f - 1];
  sn->first[0] = 0;
}

static int sm_snap_take(struct shmetrics *m, struct sm_snap *sn) {
  struct sm_hdr *h = sm_h(m);
  /* Families are published before their series: every series we see has
   * its family. */
  sn->nseries = atomic_load_explicit(&h->nseries, memory_order_acquire);
  sn->nfamilies = atomic_load_explicit(&h->nfamilies, memory_order_acquire);
  sn->ncells = 0;
  if (sn->nseries > 0) {
    const struct sm_series *s = sm_ser(m, sn->nseries - 1);
    sn->ncells = s->cell + s->ncells;
  }
  sn->cells = malloc(((size_t)sn->ncells + 1) * 8);
  sn->order = malloc(((size_t)sn->nseries + 1) * sizeof(uint32_t));
  sn->first = malloc(((size_t)sn->nfamilies + 2) * sizeof(uint32_t));
  if (!sn->cells || !sn->order || !sn->first)
    return -ENOMEM;
  sm_snap_sum(m, sn);
  sm_snap_group(m, sn);
  return 0;
}

static void sm_snap_free(struct sm_snap *sn) {
  free(sn->cells);
  free(sn->order);
  free(sn->first);
}

/* --- scrape: text -------------------------------------------------------- */

/* Shortest text that reads back as `v` (Prometheus float syntax). */
static size_t sm_fmt_double(char *out, double v) {
  if (isnan(v))
    return (size_t)snprintf(out, 32, "NaN");
  if (isinf(v))
    return (size_t)snprintf(out, 32, v > 0 ? "+Inf" : "-Inf");
  if (v > -1e15 && v < 1e15 && v == (double)(int64_t)v) /* integral */
    return (size_t)snprintf(out, 32, "%.0f", v);
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(out, 32, "%.*g", prec, v);
    if (strtod(out, NULL) == v)
      break;
  }
  return (size_t)n;
}

static size_t sm_fmt_u64(char *out, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++)
    out[i] = tmp[n - 1 - i];
  return n;
}

struct sm_out {
  struct buf *b;
  int err;
};

static void sm_put(struct sm_out *o, const char *p, size_t n) {
  if (o->err == 0 && buf_append(o->b, p, n) < 0)
    o->err = -ENOMEM;
}

static void sm_puts(struct sm_out *o, const char *s) {
  sm_put(o, s, strlen(s));
}

/* name[suffix]{labels[,extra]} value\n */
static void sm_sample(struct sm_out *o, const char *name, size_t nlen,
                      const char *suffix, const char *labels, size_t llen,
                      const char *extra, const char *value, size_t vlen) {
  sm_put(o, name, nlen);
  sm_puts(o, suffix);
  if (llen || extra) {
    sm_put(o, "{", 1);
    sm_put(o, labels, llen);
    if (extra) {
      if (llen)
        sm_put(o, ",", 1);
      sm_puts(o, extra);
    }
    sm_put(o, "}", 1);
  }
  sm_put(o, " ", 1);
  sm_put(o, value, vlen);
  sm_put(o, "\n", 1);
}

static void sm_head(struct sm_out *o, struct shmetrics *m,
                    const struct sm_family *f) {
  static const char *const types[] = {"", "counter", "gauge", "histogram"};
  const char *name = sm_pool(m, f->name_off);
  sm_puts(o, "# HELP ");
  sm_put(o, name, f->name_len);
  sm_put(o, " ", 1);
  sm_put(o, sm_pool(m, f->help_off), f->help_len);
  sm_puts(o, "\n# TYPE ");
  sm_put(o, name, f->name_len);
  sm_put(o, " ", 1);
  sm_puts(o, types[f->type]);
  sm_put(o, "\n", 1);
}

static void sm_histogram(struct sm_out *o, struct shmetrics *m,
                         const struct sm_family *f, const struct sm_series *s,
                         const uint64_t *cells) {
  const char *name = sm_pool(m, f->name_off), *labels = sm_pool(m, s->labels_off);
  char le[48], val[32];
  uint64_t cum = 0;
  for (uint32_t i = 0; i <= f->nbounds; i++) {
    cum += cells[i];
    if (i < f->nbounds) {
      size_t n = sm_fmt_double(val, sm_bound(m, f, i));
      snprintf(le, sizeof le, "le=\"%.*s\"", (int)n, val);
    } else {
      snprintf(le, sizeof le, "le=\"+Inf\"");
    }
    size_t vl = sm_fmt_u64(val, cum);
    sm_sample(o, name, f->name_len, "_bucket", labels, s->labels_len, le, val, vl);
  }
  double sum;
  memcpy(&sum, &cells[f->nbounds + 1], sizeof sum);
  size_t vl = sm_fmt_double(val, sum);
  sm_sample(o, name, f->name_len, "_sum", labels, s->labels_len, NULL, val, vl);
  vl = sm_fmt_u64(val, cum);
  sm_sample(o, name, f->name_len, "_count", labels, s->labels_len, NULL, val, vl);
}

static void sm_series_text(struct sm_out *o, struct shmetrics *m,
                           const struct sm_family *f, const struct sm_series *s,
                           const uint64_t *cells) {
  if (f->type == SHMETRICS_HISTOGRAM) {
    sm_histogram(o, m, f, s, cells);
    return;
  }
  char val[32];
  double v;
  memcpy(&v, cells, sizeof v);
  size_t vl = sm_fmt_double(val, v);
  sm_sample(o, sm_pool(m, f->name_off), f->name_len, "",
            sm_pool(m, s->labels_off), s->labels_len, NULL, val, vl);
}

int shmetrics_format(struct shmetrics *m, struct buf *out) {
  struct sm_snap sn = {0};
  int rc = sm_snap_take(m, &sn);
  struct sm_out o = {out, rc};
  for (uint32_t f = 0; o.err == 0 && f < sn.nfamilies; f++) {
    if (sn.first[f] == sn.first[f + 1])
      continue; /* a family whose first series is not published yet */
    const struct sm_family *fam = sm_fam(m, f);
    sm_head(&o, m, fam);
    for (uint32_t k = sn.first[f]; k < sn.first[f + 1]; k++) {
      const struct sm_series *s = sm_ser(m, sn.order[k]);
      sm_series_text(&o, m, fam, s, sn.cells + s->cell);
    }
  }
  sm_snap_free(&sn);
  return o.err;
}
