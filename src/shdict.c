/*
 * shdict.c -- the shared dictionary. See shdict.h for the contract. No
 * lua.h here.
 *
 * Invariants (under the lock, when not dirty):
 *   - every chunk of an assigned page is either free (type 0, on its
 *     class's free list) or used (on its class's LRU list and in exactly
 *     one hash chain, the one of its hash) -- except the chunks of the
 *     draining page before drain_pos: free and on no list;
 *   - pages [0, brk) are assigned (page table holds their class), pages
 *     [brk, npages) are untouched;
 *   - entries, used and each class's nused count exactly the used chunks.
 */
#define _GNU_SOURCE /* getrandom */
#include "shdict.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#include "shm.h"

#define SD_MAGIC 0x54434453u /* "SDCT" */
#define SD_VERSION 1u
#define SD_FREE 0            /* type of a free chunk */
#define SD_NOCLASS 0xffu     /* page table: not assigned */
#define SD_CLASSES_MAX 48
#define SD_MIN_CHUNK 64
#define SD_MIN_PAGES 8
#define SD_BYTES_PER_BUCKET 128 /* one bucket per 128 bytes of pages */
#define SD_PAGE_MIN 1024u
#define SD_PAGE_MAX (1u << 20)
#define SD_PAGE_DEFAULT_MIN 4096u
#define SD_PAGE_DEFAULT_MAX 65536u
#define SD_NOPAGE UINT32_MAX

struct sd_ent {
  uint32_t hnext;   /* next in the hash chain */
  uint32_t prev;    /* LRU list when used, free list when free */
  uint32_t next;
  uint32_t hash;
  uint64_t stamp;   /* last use: orders the LRU tails of different classes */
  uint64_t wstamp;  /* last write: flush_all expires what came before */
  double expires;   /* 0: never */
  uint32_t vlen;
  uint16_t klen;
  uint8_t type;     /* SD_FREE or an shdict_type */
  uint8_t cls;
  /* key bytes, then value bytes */
};
_Static_assert(sizeof(struct sd_ent) == SHDICT_OVERHEAD, "entry header");

struct sd_list {
  uint32_t head, tail;
};

struct sd_class {
  uint32_t size;    /* chunk bytes */
  uint32_t npages;
  uint32_t nused;
  struct sd_list lru;  /* head: most recently used */
  struct sd_list free;
};

struct sd_hdr {
  uint32_t magic;
  uint32_t version;
  uint64_t size;
  pthread_mutex_t lock;
  uint32_t dirty;      /* a change is under way (see shdict.h) */
  uint32_t policy;
  uint32_t page_size;
  uint32_t page_shift;
  uint32_t npages;
  uint32_t brk;        /* pages handed out so far */
  uint32_t nbuckets;   /* a power of two */
  uint32_t nclasses;
  uint32_t ptable_off;
  uint32_t buckets_off;
  uint32_t pages_off;
  uint32_t drain_page;   /* being emptied for another class, or SD_NOPAGE */
  uint32_t drain_for;    /* the class that gets it */
  uint32_t drain_pos;    /* chunks of it done */
  uint64_t seed[2];
  uint64_t clock;      /* stamps: +1 per use or write */
  uint64_t flush_stamp;
  uint64_t entries;
  uint64_t used;
  uint64_t evictions;
  uint64_t expired;
  uint64_t steals;
  uint64_t resets;
  uint64_t recoveries;
  struct sd_class cls[SD_CLASSES_MAX];
};

/* --- access ------------------------------------------------------------ */

static struct sd_hdr *sd_h(const struct shdict *d) {
  return (struct sd_hdr *)d->base;
}

static struct sd_ent *sd_e(const struct shdict *d, uint32_t off) {
  return (struct sd_ent *)(d->base + off);
}

static uint32_t *sd_buckets(const struct shdict *d) {
  return (uint32_t *)(d->base + sd_h(d)->buckets_off);
}

static uint8_t *sd_ptable(const struct shdict *d) {
  return d->base + sd_h(d)->ptable_off;
}

static char *sd_key(struct sd_ent *e) {
  return (char *)(e + 1);
}

static char *sd_value(struct sd_ent *e) {
  return (char *)(e + 1) + e->klen;
}

static uint32_t sd_page_of(const struct sd_hdr *h, uint32_t off) {
  return (off - h->pages_off) >> h->page_shift;
}

static uint32_t sd_page_at(const struct sd_hdr *h, uint32_t page) {
  return h->pages_off + (page << h->page_shift);
}

/* --- hashing: SipHash-1-3, keyed per dictionary ----------------------- */

static uint64_t sd_rotl(uint64_t x, int b) {
  return (x << b) | (x >> (64 - b));
}

static void sd_sipround(uint64_t v[4]) {
  v[0] += v[1];
  v[1] = sd_rotl(v[1], 13) ^ v[0];
  v[0] = sd_rotl(v[0], 32);
  v[2] += v[3];
  v[3] = sd_rotl(v[3], 16) ^ v[2];
  v[0] += v[3];
  v[3] = sd_rotl(v[3], 21) ^ v[0];
  v[2] += v[1];
  v[1] = sd_rotl(v[1], 17) ^ v[2];
  v[2] = sd_rotl(v[2], 32);
}

static uint64_t sd_le64(const unsigned char *p, size_t n) {
  uint64_t w = 0;
  for (size_t i = 0; i < n; i++)
    w |= (uint64_t)p[i] << (8 * i);
  return w;
}

/* Keyed so that clients choosing keys cannot aim at one chain. */
static uint32_t sd_hash(const struct sd_hdr *h, const void *key, size_t n) {
  const unsigned char *p = key;
  uint64_t v[4] = {h->seed[0] ^ 0x736f6d6570736575ull,
                   h->seed[1] ^ 0x646f72616e646f6dull,
                   h->seed[0] ^ 0x6c7967656e657261ull,
                   h->seed[1] ^ 0x7465646279746573ull};
  size_t full = n & ~(size_t)7;
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m = sd_le64(p + i, 8);
    v[3] ^= m;
    sd_sipround(v);
    v[0] ^= m;
  }
  uint64_t last = (uint64_t)n << 56 | sd_le64(p + full, n - full);
  v[3] ^= last;
  sd_sipround(v);
  v[0] ^= last;
  v[2] ^= 0xff;
  sd_sipround(v);
  sd_sipround(v);
  sd_sipround(v);
  uint64_t x = v[0] ^ v[1] ^ v[2] ^ v[3];
  return (uint32_t)(x ^ (x >> 32));
}

/* --- lists of chunks (LRU and free lists share the links) ------------- */

static void sd_list_unlink(struct shdict *d, struct sd_list *l, uint32_t off) {
  struct sd_ent *e = sd_e(d, off);
  if (e->prev)
    sd_e(d, e->prev)->next = e->next;
  else
    l->head = e->next;
  if (e->next)
    sd_e(d, e->next)->prev = e->prev;
  else
    l->tail = e->prev;
  e->prev = e->next = 0;
}

static void sd_list_push(struct shdict *d, struct sd_list *l, uint32_t off) {
  struct sd_ent *e = sd_e(d, off);
  e->prev = 0;
  e->next = l->head;
  if (l->head)
    sd_e(d, l->head)->prev = off;
  else
    l->tail = off;
  l->head = off;
}

/* --- the hash table ---------------------------------------------------- */

static uint32_t *sd_bucket(struct shdict *d, uint32_t hash) {
  return &sd_buckets(d)[hash & (sd_h(d)->nbuckets - 1)];
}

static uint32_t sd_find(struct shdict *d, const void *key, size_t klen,
                        uint32_t hash) {
  for (uint32_t off = *sd_bucket(d, hash); off;) {
    struct sd_ent *e = sd_e(d, off);
    if (e->hash == hash && e->klen == klen &&
        memcmp(sd_key(e), key, klen) == 0)
      return off;
    off = e->hnext;
  }
  return 0;
}

static void sd_hash_unlink(struct shdict *d, uint32_t off) {
  struct sd_ent *e = sd_e(d, off);
  uint32_t *pp = sd_bucket(d, e->hash);
  while (*pp != off && *pp != 0)
    pp = &sd_e(d, *pp)->hnext;
  if (*pp == off)
    *pp = e->hnext;
  e->hnext = 0;
}

/* --- layout, classes, clearing ---------------------------------------- */

static uint32_t sd_pow2_ceil(uint64_t n) {
  uint32_t p = 16;
  while (p < n && p < (1u << 30))
    p <<= 1;
  return p;
}

static uint64_t sd_align(uint64_t n, uint64_t a) {
  return (n + a - 1) & ~(a - 1);
}

/* Fit as many pages as the zone holds after the header, the page table
 * and the buckets they need. */
static int sd_layout(struct sd_hdr *h) {
  uint64_t fixed = sd_align(sizeof *h, 64);
  uint64_t ps = h->page_size;
  if (h->size <= fixed + 128)
    return -EINVAL;
  uint64_t n = (h->size - fixed - 128) / (ps + 1 + 4 * ps / SD_BYTES_PER_BUCKET);
  for (; n >= SD_MIN_PAGES; n--) {
    uint32_t nb = sd_pow2_ceil(n * ps / SD_BYTES_PER_BUCKET);
    uint64_t buckets = sd_align(fixed + n, 8);
    uint64_t pages = sd_align(buckets + 4 * (uint64_t)nb, 64);
    if (pages + n * ps <= h->size) {
      h->npages = (uint32_t)n;
      h->nbuckets = nb;
      h->ptable_off = (uint32_t)fixed;
      h->buckets_off = (uint32_t)buckets;
      h->pages_off = (uint32_t)pages;
      return 0;
    }
  }
  return -EINVAL;
}

/* 64 bytes, then x1.25 (8-byte steps), the last class one whole page. */
static void sd_classes(struct sd_hdr *h) {
  uint32_t n = 0, sz = SD_MIN_CHUNK;
  while (n < SD_CLASSES_MAX - 1 && sz < h->page_size) {
    h->cls[n++].size = sz;
    uint32_t next = (sz * 5 / 4 + 7) & ~7u;
    sz = next > sz + 8 ? next : sz + 8;
  }
  h->cls[n++].size = h->page_size;
  h->nclasses = n;
}

/* Empty the dictionary (init, and the reset after a death mid-change).
 * Counters and the clock survive. */
static void sd_clear(struct shdict *d) {
  struct sd_hdr *h = sd_h(d);
  memset(sd_buckets(d), 0, (size_t)h->nbuckets * sizeof(uint32_t));
  memset(sd_ptable(d), SD_NOCLASS, h->npages);
  for (uint32_t i = 0; i < h->nclasses; i++) {
    struct sd_class *c = &h->cls[i];
    c->npages = c->nused = 0;
    c->lru.head = c->lru.tail = c->free.head = c->free.tail = 0;
  }
  h->brk = 0;
  h->drain_page = SD_NOPAGE;
  h->entries = h->used = 0;
}

/* --- allocation and eviction ------------------------------------------ */

static int sd_dead(const struct sd_hdr *h, const struct sd_ent *e,
                   double now) {
  return (e->expires > 0 && e->expires <= now) || e->wstamp <= h->flush_stamp;
}

/* Take a used entry out of its chain and LRU list; the chunk is then on
 * no list at all. */
static void sd_unlink(struct shdict *d, uint32_t off) {
  struct sd_hdr *h = sd_h(d);
  struct sd_ent *e = sd_e(d, off);
  struct sd_class *c = &h->cls[e->cls];
  sd_hash_unlink(d, off);
  sd_list_unlink(d, &c->lru, off);
  c->nused--;
  h->entries--;
  h->used -= c->size;
}

static void sd_release(struct shdict *d, uint32_t off) {
  struct sd_ent *e = sd_e(d, off);
  sd_unlink(d, off);
  e->type = SD_FREE;
  sd_list_push(d, &sd_h(d)->cls[e->cls].free, off);
}

/* Remove an entry to make room: an expired one is counted as such. */
static void sd_reclaim(struct shdict *d, uint32_t off, double now, int free) {
  struct sd_hdr *h = sd_h(d);
  if (sd_dead(h, sd_e(d, off), now)) {
    h->expired++;
  } else {
    h->evictions++;
    d->evicted++;
  }
  if (free)
    sd_release(d, off);
  else
    sd_unlink(d, off);
}

/* Cut `page` into chunks of class `c`, lowest address first on the free
 * list (so a fresh page fills in address order). */
static void sd_carve(struct shdict *d, uint32_t page, uint32_t c) {
  struct sd_hdr *h = sd_h(d);
  struct sd_class *k = &h->cls[c];
  uint32_t base = sd_page_at(h, page), n = h->page_size / k->size;
  sd_ptable(d)[page] = (uint8_t)c;
  k->npages++;
  for (uint32_t i = n; i-- > 0;) {
    uint32_t off = base + i * k->size;
    struct sd_ent *e = sd_e(d, off);
    e->type = SD_FREE;
    e->cls = (uint8_t)c;
    e->hnext = 0;
    sd_list_push(d, &k->free, off);
  }
}

/* Empty the draining page chunk by chunk, at most `steps` of them; once
 * it is empty it is carved for drain_for. A processed chunk is marked
 * free and put on no list, so nothing can use it again meanwhile. */
static void sd_drain(struct shdict *d, double now, uint32_t steps) {
  struct sd_hdr *h = sd_h(d);
  uint32_t page = h->drain_page;
  struct sd_class *k = &h->cls[sd_ptable(d)[page]];
  uint32_t base = sd_page_at(h, page), n = h->page_size / k->size;
  for (; h->drain_pos < n && steps > 0; h->drain_pos++, steps--) {
    uint32_t off = base + h->drain_pos * k->size;
    struct sd_ent *e = sd_e(d, off);
    if (e->type == SD_FREE)
      sd_list_unlink(d, &k->free, off);
    else
      sd_reclaim(d, off, now, 0);
    e->type = SD_FREE;
  }
  if (h->drain_pos < n)
    return;
  k->npages--;
  h->steals++;
  h->drain_page = SD_NOPAGE;
  sd_carve(d, page, h->drain_for);
}

static void sd_drain_start(struct sd_hdr *h, uint32_t page, uint32_t c) {
  h->drain_page = page;
  h->drain_for = c;
  h->drain_pos = 0;
}

/* The class other than `c`, with at least `min_pages` pages, whose LRU
 * tail was used least recently; SD_NOCLASS when none holds an entry. */
static uint32_t sd_victim(struct shdict *d, uint32_t c, uint32_t min_pages) {
  const struct sd_hdr *h = sd_h(d);
  uint32_t best = SD_NOCLASS;
  uint64_t stamp = UINT64_MAX;
  for (uint32_t i = 0; i < h->nclasses; i++) {
    uint32_t t = h->cls[i].lru.tail;
    if (i != c && t && h->cls[i].npages >= min_pages &&
        sd_e(d, t)->stamp < stamp) {
      stamp = sd_e(d, t)->stamp;
      best = i;
    }
  }
  return best;
}

/* Some page of another class than `c` (all its chunks free: used when
 * no other class holds an entry at all), or SD_NOPAGE. */
static uint32_t sd_any_page(struct shdict *d, uint32_t c) {
  const uint8_t *pt = sd_ptable(d);
  for (uint32_t p = 0; p < sd_h(d)->brk; p++)
    if (pt[p] != c)
      return p;
  return SD_NOPAGE;
}

/* Class `c` has no entry it could evict for itself: it gets a page now,
 * the one being drained if any (finished at once), else the page holding
 * the oldest entry of a class with pages to spare. The one step that
 * evicts a whole page under the lock; it happens once per class, since a
 * class keeps its last page (unless every other class has just one). */
static void sd_take_page(struct shdict *d, uint32_t c, double now) {
  struct sd_hdr *h = sd_h(d);
  if (h->drain_page == SD_NOPAGE) {
    uint32_t v = sd_victim(d, c, 2); /* leave every class its last page */
    if (v == SD_NOCLASS)
      v = sd_victim(d, c, 1);
    uint32_t page = v != SD_NOCLASS ? sd_page_of(h, h->cls[v].lru.tail)
                                    : sd_any_page(d, c);
    if (page == SD_NOPAGE)
      return;
    sd_drain_start(h, page, c);
  }
  h->drain_for = c;
  sd_drain(d, now, UINT32_MAX);
}

/* Make at least one chunk of class `c` free (see shdict.h, Eviction). */
static void sd_refill(struct shdict *d, uint32_t c, double now) {
  struct sd_hdr *h = sd_h(d);
  struct sd_class *k = &h->cls[c];
  if (h->brk < h->npages) {
    sd_carve(d, h->brk++, c);
    return;
  }
  if (k->lru.tail == 0) {
    sd_take_page(d, c, now);
    return;
  }
  /* Another class's oldest entry has waited at least twice as long as
   * ours: start moving its page here, SHDICT_DRAIN_STEP chunks per refill
   * (so the lock is never held for a page of evictions). Without the
   * factor 2, classes in balance pass pages back and forth and evict
   * fresh entries with them (bench_shm evict: 43% hits instead of 48%). */
  if (h->policy == SHDICT_EVICT_GLOBAL && h->drain_page == SD_NOPAGE) {
    uint32_t v = sd_victim(d, c, 2);
    if (v != SD_NOCLASS &&
        (h->clock - sd_e(d, h->cls[v].lru.tail)->stamp) / 2 >
            h->clock - sd_e(d, k->lru.tail)->stamp)
      sd_drain_start(h, sd_page_of(h, h->cls[v].lru.tail), c);
  }
  if (h->drain_page != SD_NOPAGE)
    sd_drain(d, now, SHDICT_DRAIN_STEP);
  if (k->free.head == 0 && k->lru.tail)
    sd_reclaim(d, k->lru.tail, now, 1);
  else if (k->free.head == 0)
    sd_take_page(d, c, now);
}

/* A free chunk of class `c`, evicting as needed; 0 only if the zone has
 * no page at all (init refuses such zones). */
static uint32_t sd_alloc(struct shdict *d, uint32_t c, double now) {
  struct sd_class *k = &sd_h(d)->cls[c];
  if (k->free.head == 0)
    sd_refill(d, c, now);
  uint32_t off = k->free.head;
  if (off)
    sd_list_unlink(d, &k->free, off);
  return off;
}

/* Smallest class whose chunks hold `need` bytes, or -E2BIG. */
static int sd_class_of(const struct sd_hdr *h, size_t need) {
  uint32_t lo = 0, hi = h->nclasses;
  if (need > h->page_size)
    return -E2BIG;
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (h->cls[mid].size < need)
      lo = mid + 1;
    else
      hi = mid;
  }
  return (int)lo;
}

/* --- locking and repair ------------------------------------------------ */

/* A holder that died while dirty may have left any list half-linked:
 * start over empty. Marking dirty until our own unlock means a death
 * during this reset is repaired the same way. */
static int sd_lock(struct shdict *d) {
  struct sd_hdr *h = sd_h(d);
  int rc = shm_lock(&h->lock);
  if (rc != SHM_LOCK_RECOVERED)
    return rc;
  if (h->dirty) {
    sd_clear(d);
    h->resets++;
  } else {
    h->recoveries++;
  }
  return 0;
}

static void sd_unlock(struct shdict *d) {
  sd_h(d)->dirty = 0;
  shm_unlock(&sd_h(d)->lock);
}

/* --- values ------------------------------------------------------------ */

static int sd_val_size(const struct shdict_val *v, size_t *n) {
  switch (v->type) {
  case SHDICT_STR: *n = v->len; return v->s || !v->len ? 0 : -EINVAL;
  case SHDICT_INT:
  case SHDICT_FLOAT: *n = 8; return 0;
  case SHDICT_BOOL: *n = 1; return 0;
  default: return -EINVAL;
  }
}

static void sd_val_write(struct sd_ent *e, const struct shdict_val *v,
                         size_t vlen) {
  char *p = sd_value(e);
  e->type = (uint8_t)v->type;
  e->vlen = (uint32_t)vlen;
  if (v->type == SHDICT_STR) {
    if (vlen)
      memcpy(p, v->s, vlen);
  } else if (v->type == SHDICT_INT) {
    memcpy(p, &v->n.i, 8);
  } else if (v->type == SHDICT_FLOAT) {
    memcpy(p, &v->n.f, 8);
  } else {
    p[0] = (char)(v->n.b != 0);
  }
}

static int sd_val_read(struct sd_ent *e, struct shdict_val *out, void *buf,
                       size_t bufsize) {
  const char *p = sd_value(e);
  out->type = e->type;
  out->expires = e->expires;
  out->s = NULL;
  out->len = 0;
  if (e->type == SHDICT_STR) {
    out->len = e->vlen;
    if (e->vlen > bufsize)
      return -ENOBUFS;
    if (e->vlen)
      memcpy(buf, p, e->vlen);
    out->s = buf;
  } else if (e->type == SHDICT_INT) {
    memcpy(&out->n.i, p, 8);
  } else if (e->type == SHDICT_FLOAT) {
    memcpy(&out->n.f, p, 8);
  } else {
    out->n.b = p[0] != 0;
  }
  return 0;
}

/* --- operations -------------------------------------------------------- */

/* The live entry for the key, or 0. A dead one met here is reclaimed. */
static uint32_t sd_lookup(struct shdict *d, const void *key, size_t klen,
                          uint32_t hash, double now) {
  struct sd_hdr *h = sd_h(d);
  uint32_t off = sd_find(d, key, klen, hash);
  if (off && sd_dead(h, sd_e(d, off), now)) {
    h->dirty = 1;
    h->expired++;
    sd_release(d, off);
    off = 0;
  }
  return off;
}

static void sd_touch(struct shdict *d, uint32_t off) {
  struct sd_hdr *h = sd_h(d);
  struct sd_ent *e = sd_e(d, off);
  struct sd_list *lru = &h->cls[e->cls].lru;
  if (lru->head != off) {
    sd_list_unlink(d, lru, off);
    sd_list_push(d, lru, off);
  }
  e->stamp = ++h->clock;
}

struct sd_item {
  const void *key;
  size_t klen;
  uint32_t hash;
  uint32_t cls;
  const struct shdict_val *v;
  size_t vlen;
  double expires;
};

/* Write the item over entry `off` (0: none) -- in place when it stays in
 * the same class, else in a new chunk. Marks the dictionary dirty. */
static int sd_store(struct shdict *d, uint32_t off, const struct sd_item *it,
                    double now) {
  struct sd_hdr *h = sd_h(d);
  h->dirty = 1;
  if (off && sd_e(d, off)->cls != it->cls) {
    sd_release(d, off); /* first: its chunk may be the one we get */
    off = 0;
  }
  if (off == 0) {
    if ((off = sd_alloc(d, it->cls, now)) == 0)
      return -ENOMEM;
    struct sd_ent *e = sd_e(d, off);
    struct sd_class *k = &h->cls[it->cls];
    e->hash = it->hash;
    e->klen = (uint16_t)it->klen;
    memcpy(sd_key(e), it->key, it->klen);
    uint32_t *b = sd_bucket(d, it->hash);
    e->hnext = *b;
    *b = off;
    sd_list_push(d, &k->lru, off);
    k->nused++;
    h->entries++;
    h->used += k->size;
  }
  struct sd_ent *e = sd_e(d, off);
  sd_val_write(e, it->v, it->vlen);
  e->expires = it->expires;
  sd_touch(d, off);
  e->wstamp = e->stamp;
  return 0;
}

static int sd_check_key(const void *key, size_t klen) {
  return (key == NULL || klen == 0 || klen > SHDICT_KEY_MAX) ? -EINVAL : 0;
}

int shdict_get(struct shdict *d, const void *key, size_t klen, double now,
               struct shdict_val *out, void *buf, size_t bufsize) {
  int rc = sd_check_key(key, klen);
  if (rc < 0)
    return rc;
  uint32_t hash = sd_hash(sd_h(d), key, klen);
  if ((rc = sd_lock(d)) < 0)
    return rc;
  uint32_t off = sd_lookup(d, key, klen, hash, now);
  if (off == 0) {
    rc = -ENOENT;
  } else {
    sd_h(d)->dirty = 1;
    sd_touch(d, off);
    sd_h(d)->dirty = 0; /* the copy below changes nothing shared */
    rc = sd_val_read(sd_e(d, off), out, buf, bufsize);
  }
  sd_unlock(d);
  return rc;
}

int shdict_set(struct shdict *d, const void *key, size_t klen,
               const struct shdict_val *v, double expires, int mode,
               double now) {
  struct sd_item it = {key, klen, 0, 0, v, 0, expires > 0 ? expires : 0};
  int rc = sd_check_key(key, klen);
  if (rc == 0)
    rc = sd_val_size(v, &it.vlen);
  if (rc == 0 && (mode < SHDICT_SET || mode > SHDICT_REPLACE))
    rc = -EINVAL;
  if (rc == 0)
    rc = sd_class_of(sd_h(d), SHDICT_OVERHEAD + klen + it.vlen);
  if (rc < 0)
    return rc;
  it.cls = (uint32_t)rc;
  it.hash = sd_hash(sd_h(d), key, klen);
  if ((rc = sd_lock(d)) < 0)
    return rc;
  uint32_t off = sd_lookup(d, key, klen, it.hash, now);
  if (mode == SHDICT_ADD && off)
    rc = -EEXIST;
  else if (mode == SHDICT_REPLACE && !off)
    rc = -ENOENT;
  else
    rc = sd_store(d, off, &it, now);
  sd_unlock(d);
  return rc;
}

static int sd_is_num(const struct shdict_val *v) {
  return v->type == SHDICT_INT || v->type == SHDICT_FLOAT;
}

static double sd_as_float(const struct shdict_val *v) {
  return v->type == SHDICT_INT ? (double)v->n.i : v->n.f;
}

/* r = a + b with the rules of shdict_incr. */
static int sd_add(const struct shdict_val *a, const struct shdict_val *b,
                  struct shdict_val *r) {
  if (!sd_is_num(a) || !sd_is_num(b))
    return -EDOM;
  r->s = NULL;
  r->len = 0;
  if (a->type == SHDICT_INT && b->type == SHDICT_INT) {
    r->type = SHDICT_INT;
    return __builtin_add_overflow(a->n.i, b->n.i, &r->n.i) ? -ERANGE : 0;
  }
  r->type = SHDICT_FLOAT;
  r->n.f = sd_as_float(a) + sd_as_float(b);
  return 0;
}

/* incr on an existing entry: in place (a number is 8 bytes either way,
 * so the class does not change). */
static int sd_incr_live(struct shdict *d, uint32_t off,
                        const struct shdict_val *delta,
                        struct shdict_val *out) {
  struct sd_ent *e = sd_e(d, off);
  struct shdict_val cur;
  if (e->type != SHDICT_INT && e->type != SHDICT_FLOAT)
    return -EDOM;
  sd_val_read(e, &cur, NULL, 0);
  int rc = sd_add(&cur, delta, out);
  if (rc < 0)
    return rc;
  sd_h(d)->dirty = 1;
  sd_val_write(e, out, 8);
  sd_touch(d, off);
  e->wstamp = e->stamp;
  out->expires = e->expires;
  return 0;
}

int shdict_incr(struct shdict *d, const void *key, size_t klen,
                const struct shdict_val *delta, const struct shdict_val *init,
                double init_expires, double now, struct shdict_val *out) {
  int rc = sd_check_key(key, klen);
  if (rc == 0 && (!sd_is_num(delta) || (init && !sd_is_num(init))))
    rc = -EDOM;
  if (rc == 0)
    rc = sd_class_of(sd_h(d), SHDICT_OVERHEAD + klen + 8);
  if (rc < 0)
    return rc;
  struct sd_item it = {key, klen, sd_hash(sd_h(d), key, klen), (uint32_t)rc,
                       out, 8, init_expires > 0 ? init_expires : 0};
  if ((rc = sd_lock(d)) < 0)
    return rc;
  uint32_t off = sd_lookup(d, key, klen, it.hash, now);
  if (off)
    rc = sd_incr_live(d, off, delta, out);
  else if (init == NULL)
    rc = -ENOENT;
  else if ((rc = sd_add(init, delta, out)) == 0)
    rc = sd_store(d, 0, &it, now);
  if (rc == 0 && !off)
    out->expires = it.expires;
  sd_unlock(d);
  return rc;
}

int shdict_delete(struct shdict *d, const void *key, size_t klen,
                  double now) {
  int rc = sd_check_key(key, klen);
  if (rc < 0)
    return rc;
  uint32_t hash = sd_hash(sd_h(d), key, klen);
  if ((rc = sd_lock(d)) < 0)
    return rc;
  uint32_t off = sd_lookup(d, key, klen, hash, now);
  if (off == 0) {
    rc = -ENOENT;
  } else {
    sd_h(d)->dirty = 1;
    sd_release(d, off);
  }
  sd_unlock(d);
  return rc;
}

/* Bytes the live keys of bucket `b` take in a keys() batch. */
static size_t sd_bucket_bytes(struct shdict *d, uint32_t b, double now) {
  size_t n = 0;
  for (uint32_t off = sd_buckets(d)[b]; off; off = sd_e(d, off)->hnext)
    if (!sd_dead(sd_h(d), sd_e(d, off), now))
      n += 2 + sd_e(d, off)->klen;
  return n;
}

static int sd_bucket_copy(struct shdict *d, uint32_t b, double now,
                          unsigned char *p) {
  int n = 0;
  for (uint32_t off = sd_buckets(d)[b]; off; off = sd_e(d, off)->hnext) {
    struct sd_ent *e = sd_e(d, off);
    if (sd_dead(sd_h(d), e, now))
      continue;
    memcpy(p, &e->klen, 2);
    memcpy(p + 2, sd_key(e), e->klen);
    p += 2 + e->klen;
    n++;
  }
  return n;
}

int shdict_keys(struct shdict *d, double now, size_t *cursor, void *buf,
                size_t bufsize, size_t *used) {
  int rc = sd_lock(d);
  if (rc < 0)
    return rc;
  struct sd_hdr *h = sd_h(d);
  size_t b = *cursor, pos = 0;
  int n = 0;
  for (size_t scanned = 0; b < h->nbuckets && scanned < SHDICT_SCAN_BUCKETS;
       b++, scanned++) {
    size_t need = sd_bucket_bytes(d, (uint32_t)b, now);
    if (need > bufsize - pos) {
      if (pos == 0)
        rc = -ENOBUFS;
      break;
    }
    n += sd_bucket_copy(d, (uint32_t)b, now, (unsigned char *)buf + pos);
    pos += need;
  }
  *cursor = b >= h->nbuckets ? 0 : b;
  *used = pos;
  sd_unlock(d);
  return rc < 0 ? rc : n;
}

int shdict_flush_all(struct shdict *d) {
  int rc = sd_lock(d);
  if (rc < 0)
    return rc;
  sd_h(d)->flush_stamp = sd_h(d)->clock;
  sd_unlock(d);
  return 0;
}

/* Reclaim the dead entries of bucket `b`, up to `left`; returns how many. */
static size_t sd_flush_bucket(struct shdict *d, uint32_t b, double now,
                              size_t left) {
  struct sd_hdr *h = sd_h(d);
  size_t n = 0;
  for (uint32_t off = sd_buckets(d)[b]; off && n < left;) {
    uint32_t next = sd_e(d, off)->hnext;
    if (sd_dead(h, sd_e(d, off), now)) {
      h->dirty = 1;
      h->expired++;
      sd_release(d, off);
      n++;
    }
    off = next;
  }
  return n;
}

int shdict_flush_expired(struct shdict *d, double now, size_t max) {
  size_t left = max ? max : SIZE_MAX, freed = 0;
  uint32_t b = 0;
  do {
    int rc = sd_lock(d);
    if (rc < 0)
      return rc;
    uint32_t nb = sd_h(d)->nbuckets;
    for (uint32_t i = 0; b < nb && i < SHDICT_SCAN_BUCKETS && left; b++, i++) {
      size_t n = sd_flush_bucket(d, b, now, left);
      freed += n;
      left -= n;
    }
    int more = b < nb && left;
    sd_unlock(d);
    if (!more)
      break;
  } while (1);
  return freed > INT_MAX ? INT_MAX : (int)freed;
}

int shdict_stats(struct shdict *d, struct shdict_stats *st) {
  int rc = sd_lock(d);
  if (rc < 0)
    return rc;
  struct sd_hdr *h = sd_h(d);
  st->capacity = (size_t)h->npages * h->page_size;
  st->used = (size_t)h->used;
  st->entries = (size_t)h->entries;
  st->max_entry = h->page_size;
  st->page_size = h->page_size;
  st->evictions = h->evictions;
  st->expired = h->expired;
  st->steals = h->steals;
  st->resets = h->resets;
  st->recoveries = h->recoveries;
  sd_unlock(d);
  return 0;
}

void shdict_test_hold_lock(struct shdict *d, int dirty) {
  if (sd_lock(d) == 0 && dirty)
    sd_h(d)->dirty = 1;
}

/* --- creation ---------------------------------------------------------- */

/* 1/32 of the zone, a power of two within the default bounds. */
static unsigned sd_default_page(size_t size) {
  unsigned p = SD_PAGE_DEFAULT_MIN;
  while (p < SD_PAGE_DEFAULT_MAX && (size_t)p * 2 * 32 <= size)
    p *= 2;
  return p;
}

size_t shdict_min_size(void) {
  return sd_align(sizeof(struct sd_hdr), 64) + 256 +
         (size_t)SD_MIN_PAGES * (SD_PAGE_DEFAULT_MIN + 1 + 4 * 64);
}

static int sd_config(struct sd_hdr *h, size_t size,
                     const struct shdict_config *cfg) {
  unsigned ps = cfg && cfg->page_size ? cfg->page_size : sd_default_page(size);
  int policy = cfg ? cfg->policy : SHDICT_EVICT_GLOBAL;
  if (ps < SD_PAGE_MIN || ps > SD_PAGE_MAX || (ps & (ps - 1)) != 0 ||
      (policy != SHDICT_EVICT_GLOBAL && policy != SHDICT_EVICT_CLASS))
    return -EINVAL;
  h->page_size = ps;
  h->page_shift = (uint32_t)__builtin_ctz(ps);
  h->policy = (uint32_t)policy;
  if (cfg && (cfg->seed[0] || cfg->seed[1])) {
    h->seed[0] = cfg->seed[0];
    h->seed[1] = cfg->seed[1];
  } else if (getrandom(h->seed, sizeof h->seed, 0) != (ssize_t)sizeof h->seed) {
    return errno ? -errno : -EIO;
  }
  return 0;
}

int shdict_init(void *zone, size_t size, const struct shdict_config *cfg) {
  struct sd_hdr *h = zone;
  if (size < sizeof *h || size > UINT32_MAX)
    return -EINVAL;
  memset(h, 0, sizeof *h);
  h->size = size;
  int rc = sd_config(h, size, cfg);
  if (rc == 0)
    rc = sd_layout(h);
  if (rc == 0)
    rc = shm_mutex_init(&h->lock);
  if (rc < 0)
    return rc;
  sd_classes(h);
  struct shdict d = {zone, size, 0};
  sd_clear(&d);
  h->version = SD_VERSION;
  h->magic = SD_MAGIC;
  return 0;
}

int shdict_open(struct shdict *d, void *zone, size_t size) {
  const struct sd_hdr *h = zone;
  if (size < sizeof *h || h->magic != SD_MAGIC || h->version != SD_VERSION ||
      h->size != size)
    return -EPROTO;
  d->base = zone;
  d->size = size;
  d->evicted = 0;
  return 0;
}

static int sd_zone_init(void *zone, size_t size, void *arg) {
  return shdict_init(zone, size, arg);
}

int shdict_attach(struct shdict *d, struct shm *r, const char *name,
                  size_t size, const struct shdict_config *cfg,
                  int *created) {
  struct shm_zone z;
  int rc = shm_zone(r, name, size, sd_zone_init, (void *)cfg, &z);
  if (rc < 0)
    return rc;
  if (created)
    *created = z.created;
  return shdict_open(d, z.base, z.size);
}

/* --- errors ------------------------------------------------------------ */

const char *shdict_errcode(int rc) {
  switch (rc) {
  case 0: return "ok";
  case -ENOENT: return "notfound";
  case -EEXIST: return "exists";
  case -E2BIG: return "toolarge";
  case -EDOM: return "notanumber";
  case -ERANGE: return "overflow";
  case -ENOBUFS: return "nobufs";
  case -EINVAL: return "invalid";
  case -EPROTO: return "badzone";
  case -ENOMEM: return "nomemory";
  default: return "error";
  }
}

const char *shdict_strerror(int rc) {
  switch (rc) {
  case 0: return "success";
  case -ENOENT: return "no such key";
  case -EEXIST: return "key already exists";
  case -E2BIG: return "entry too large for this dictionary";
  case -EDOM: return "value is not a number";
  case -ERANGE: return "integer overflow";
  case -ENOBUFS: return "buffer too small for the value";
  case -EINVAL: return "invalid argument";
  case -EPROTO: return "zone is not a dictionary of this version";
  case -ENOMEM: return "dictionary has no memory";
  case -ENOTRECOVERABLE: return "dictionary lock is not recoverable";
  default: return "dictionary error";
  }
}
