/*
 * shdict.h -- a dictionary in a shared-memory zone: string keys; string,
 * integer, float and boolean values; TTLs; bounded memory with LRU
 * eviction. Every process of a berth group that maps the zone sees the
 * same dictionary, and every operation is atomic across them.
 *
 * Contract: no lua.h here. Functions return 0 (or a count) on success and
 * a negative errno-style code on failure; shdict_errcode/shdict_strerror
 * name them. Nothing inside the zone is a pointer: entries, lists and
 * buckets are 32-bit offsets from the zone's base (so a zone is < 4 GiB).
 *
 * Locking: one robust process-shared mutex per dictionary, held for the
 * hash lookup and the copy in or out -- never across a system call, never
 * for work that grows with the dictionary's size. keys() and
 * flush_expired() walk the table in batches of SHDICT_SCAN_BUCKETS
 * buckets, releasing the lock between batches.
 *
 * Memory: the zone is a header, a page table, the hash buckets, and pages
 * of page_size bytes (by default 1/32 of the zone, rounded down to a power
 * of two, between 4 KiB and 64 KiB). A page belongs to one size class and
 * is cut into chunks of the class size (64 bytes, then growing by 1.25x,
 * up to page_size); an entry (48-byte header + key + value) takes one
 * chunk of the smallest class it fits. An entry larger than a page is
 * refused (-E2BIG): the biggest value is page_size - 48 - key length.
 * Pages are handed out as classes need them and touched only then.
 *
 * Eviction: each class keeps its entries in LRU order (a get or a write
 * moves an entry to the front). When a class needs a chunk and there is
 * neither a free chunk nor an unassigned page, it evicts its own least
 * recently used entry -- unless (SHDICT_EVICT_GLOBAL, the default) the
 * oldest entry of another class with two pages or more has waited at
 * least twice as long as its own: then the page holding that entry starts
 * moving to the class that needs room, SHDICT_DRAIN_STEP of its chunks
 * emptied per allocation, so no operation holds the lock for a page's
 * worth of evictions (a 64 KiB page holds 1024 small entries: ~0.1-0.3
 * ms). So memory follows the workload's sizes instead of staying with
 * whichever class filled it first. Measured (spec/c/bench_shm.c evict):
 * on a steady mix of sizes both policies hit 48%; when the sizes shift,
 * GLOBAL hits 27% and CLASS 3%. SHDICT_EVICT_CLASS evicts only within
 * the class (memcached without its rebalancer). Either way, a class with
 * no page at all takes one at once, emptying it in one go: once per
 * class, since a class keeps its last page. Evicting an expired entry
 * counts as "expired", a live one as an eviction.
 *
 * Time: expiry is an absolute CLOCK_MONOTONIC time in seconds (the same
 * clock in every process on Linux); callers pass `now` (monotime_now(),
 * monotime.h), so expiry is a plain comparison and tests control time.
 * An expired entry is invisible at once and its memory is reclaimed
 * lazily: when a lookup meets it, when eviction reaches it, or by
 * flush_expired(). flush_all() is O(1): it marks every entry written so
 * far as expired.
 *
 * Crashes: a process that dies holding the lock leaves the mutex to the
 * next locker. Every structural change happens with a "dirty" flag set;
 * if the dead holder was in the middle of one, the dictionary is reset
 * (all entries lost, `resets` counted) because its lists may be broken.
 * If it died in a read-only stretch (copying a value out), nothing is
 * lost and only `recoveries` is counted.
 */
#ifndef BERTH_SHDICT_H
#define BERTH_SHDICT_H

#include <stddef.h>
#include <stdint.h>

struct shm;

enum shdict_type {
  SHDICT_NONE = 0,
  SHDICT_STR,
  SHDICT_INT,
  SHDICT_FLOAT,
  SHDICT_BOOL
};

/* A value. In: `s`/`len` for strings, `n.*` for the others. Out (get,
 * incr): strings are copied into the caller's buffer and `s` points
 * there; after -ENOBUFS, `len` is the size needed. */
struct shdict_val {
  int type;
  union {
    int64_t i;
    double f;
    int b;
  } n;
  const char *s;
  size_t len;
  double expires; /* out: the entry's expiry, 0 for none */
};

enum shdict_policy {
  SHDICT_EVICT_GLOBAL = 0,
  SHDICT_EVICT_CLASS = 1
};

/* Zero fields take the defaults. */
struct shdict_config {
  unsigned page_size;  /* power of two, 1 KiB .. 1 MiB */
  int policy;
  uint64_t seed[2];    /* hash key; all zero: random */
};

struct shdict_stats {
  size_t capacity;     /* bytes of pages */
  size_t used;         /* bytes of chunks holding entries */
  size_t entries;      /* including expired ones not yet reclaimed */
  size_t max_entry;    /* largest key + value + SHDICT_OVERHEAD */
  size_t page_size;
  uint64_t evictions;  /* live entries removed to make room */
  uint64_t expired;    /* expired entries reclaimed */
  uint64_t steals;     /* pages moved from one size class to another */
  uint64_t resets;     /* emptied after a holder died mid-change */
  uint64_t recoveries; /* holder died; nothing lost */
};

/* Process-local handle. `evicted` counts the live entries this handle's
 * own operations evicted, so a caller can tell whether its set pushed
 * something out without another trip under the lock. */
struct shdict {
  unsigned char *base;
  size_t size;
  uint64_t evicted;
};

#define SHDICT_OVERHEAD 48       /* entry header bytes */
#define SHDICT_KEY_MAX 65535
#define SHDICT_SCAN_BUCKETS 256  /* buckets per lock hold in scans */
#define SHDICT_DRAIN_STEP 16     /* chunks moved per allocation */

enum shdict_mode {
  SHDICT_SET = 0,   /* store */
  SHDICT_ADD,       /* only if absent (or expired): else -EEXIST */
  SHDICT_REPLACE    /* only if present: else -ENOENT */
};

/* Smallest zone shdict_init accepts with default settings. */
size_t shdict_min_size(void);
/* Build an empty dictionary in `zone` (a shm_zone_init-shaped helper is
 * shdict_attach's). -EINVAL when the zone is too small or too large (4
 * GiB) or the config is invalid. */
int shdict_init(void *zone, size_t size, const struct shdict_config *cfg);
/* A handle on a dictionary built in `zone`; -EPROTO if it is not one. */
int shdict_open(struct shdict *d, void *zone, size_t size);
/* Find or create the dictionary zone `name` of `size` bytes in region
 * `r` (the creator builds it with `cfg`, NULL for defaults) and open it.
 * Sets *created when this call built it. */
int shdict_attach(struct shdict *d, struct shm *r, const char *name,
                  size_t size, const struct shdict_config *cfg,
                  int *created);

/* -ENOENT when absent or expired; -ENOBUFS when a string does not fit in
 * buf (out->len says how big it is; retry). */
int shdict_get(struct shdict *d, const void *key, size_t klen, double now,
               struct shdict_val *out, void *buf, size_t bufsize);
/* expires: absolute monotonic seconds, 0 for never. */
int shdict_set(struct shdict *d, const void *key, size_t klen,
               const struct shdict_val *v, double expires, int mode,
               double now);
/* key += delta. Integer + integer stays an integer (-ERANGE on
 * overflow); any float makes a float; a non-number (delta, init or the
 * stored value) is -EINVAL. When the key is absent: with `init` it is
 * stored as init + delta, expiring at init_expires; without, -ENOENT. The
 * stored expiry of an existing key is kept. The result goes to *out. */
int shdict_incr(struct shdict *d, const void *key, size_t klen,
                const struct shdict_val *delta, const struct shdict_val *init,
                double init_expires, double now, struct shdict_val *out);
/* 0, or -ENOENT when there was nothing (live) to delete. */
int shdict_delete(struct shdict *d, const void *key, size_t klen, double now);
/* Scan a batch of live keys into buf as [uint16 length][bytes]...,
 * starting at *cursor (0 to begin). Returns how many keys were written;
 * *cursor comes back 0 when the scan is complete. Keys present for the
 * whole scan are returned exactly once; keys added or removed during it
 * may or may not be. -ENOBUFS when not even one bucket fits in buf. */
int shdict_keys(struct shdict *d, double now, size_t *cursor, void *buf,
                size_t bufsize, size_t *used);
int shdict_flush_all(struct shdict *d);
/* Reclaim up to `max` expired entries (0: all); returns how many. */
int shdict_flush_expired(struct shdict *d, double now, size_t max);
int shdict_stats(struct shdict *d, struct shdict_stats *st);

/* A short stable token ("notfound", "exists", "toolarge", ...) and a
 * sentence for an error code. */
const char *shdict_errcode(int rc);
const char *shdict_strerror(int rc);

/* Test hook: take the lock (marking the dictionary mid-change when
 * `dirty`) and return without releasing it. Only for tests that then kill
 * the process to exercise lock recovery. */
void shdict_test_hold_lock(struct shdict *d, int dirty);

#endif
