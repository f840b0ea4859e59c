/*
 * shmetrics.h -- counters, gauges and histograms kept per member in the
 * shared region, summed only when scraped into the Prometheus text format
 * (version 0.0.4).
 *
 * Contract: no lua.h here; 0 (or an index) on success, -errno on failure.
 *
 * Registry (shared, under a lock, rare): a family has a name, help, type
 * and, for a histogram, its bucket bounds; a series is a family plus a
 * label set, rendered once at registration as k="v",... (sorted by label
 * name, values escaped). Registering the same family + labels again, from
 * any member, returns the same series index, so every member agrees on
 * it. Records are written before they are published (a release store of
 * the count), never change afterwards, and are never freed.
 *
 * Values (per member, no lock): each series owns a run of 8-byte cells;
 * each member slot has its own array of cells, written only by that
 * member, so an update is a relaxed atomic load and store -- no locked
 * instruction, no lock. A counter or gauge is one cell (a double); a
 * histogram with n bounds is n+1 bucket counts (the last for values above
 * every bound) and the sum. Gauges are per worker and scraped as their
 * sum over the live members.
 *
 * Retired totals: when the master reaps a member it calls
 * shmetrics_retire(slot), which adds the slot's counters and histograms
 * into a "retired" array and zeroes the slot (a dead member's gauges are
 * dropped). So counters stay monotonic across worker crashes and rolling
 * reloads: nothing a dead worker counted is lost, not even on SIGKILL,
 * because its cells were in shared memory all along. Retire must come
 * before shm_member_free (a slot is reused with zeroed cells).
 *
 * Scrape: shmetrics_format sums, for every series, the cells of every
 * claimed slot plus the retired array into a private snapshot, then
 * writes the text. It takes no lock a worker waits on: a seqcount
 * (bumped by retire) makes it retake the snapshot if a retire ran
 * meanwhile, so a reaped member is never counted twice or not at all.
 * Measured (spec/c/bench_shm.c metrics, shared 2-core VM): 10,000 series,
 * 1,000 of them histograms with 10 buckets, over 4 members: 5 ms of CPU
 * for 1.26 MB of text (7 ms over 64 members); an update costs ~3 ns.
 * promtool check metrics accepts the output.
 *
 * Crashes: a death inside registration leaves at worst leaked cells or
 * pool bytes; the next locker rebuilds the two hash tables from the
 * published records (they are derived data). A death inside retire (the
 * master's) may count part of one slot twice.
 */
#ifndef BERTH_SHMETRICS_H
#define BERTH_SHMETRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buffer.h"

struct shm;

enum shmetrics_type {
  SHMETRICS_COUNTER = 1,
  SHMETRICS_GAUGE,
  SHMETRICS_HISTOGRAM
};

#define SHMETRICS_ZONE "berth.metrics"
#define SHMETRICS_NAME_MAX 255
#define SHMETRICS_HELP_MAX 1024
#define SHMETRICS_LABELS_MAX 16     /* labels per series */
#define SHMETRICS_RENDERED_MAX 2048 /* bytes of a rendered label set */
#define SHMETRICS_BOUNDS_MAX 64     /* histogram buckets */

/* Zero fields take the defaults (16384 series, 65536 cells per member,
 * 128 bytes of names/help/labels per series). */
struct shmetrics_config {
  uint32_t max_series;
  uint32_t max_cells;
  uint32_t pool_bytes;
};

struct shmetrics {
  struct shm *r;
  unsigned char *base;
  size_t size;
};

struct shmetrics_label {
  const char *name;
  const char *value;
};

/* Bytes of region a store of this configuration takes. */
size_t shmetrics_zone_size(const struct shmetrics_config *cfg);
/* Find or create the store in region `r` (zone SHMETRICS_ZONE). */
int shmetrics_attach(struct shmetrics *m, struct shm *r,
                     const struct shmetrics_config *cfg);

/* The series index for family `name` with these labels, registering it
 * if new. -EINVAL: a bad name, label name (the "__" prefix and, for a
 * histogram, "le" are reserved), duplicate label, bounds not strictly
 * increasing or not finite, or too many of something; -EEXIST: the family
 * exists with another type or other bounds; -ENOSPC: a table is full. */
int shmetrics_register(struct shmetrics *m, int type, const char *name,
                       const char *help, const struct shmetrics_label *labels,
                       size_t nlabels, const double *bounds, size_t nbounds);

/* Updates by the member in `slot` (its own cells). -EINVAL for a wrong
 * series or type, or a negative/NaN counter increment. */
int shmetrics_add(struct shmetrics *m, int slot, int series, double v);
int shmetrics_set(struct shmetrics *m, int slot, int series, double v);
int shmetrics_observe(struct shmetrics *m, int slot, int series, double v);

/* Fold `slot` into the retired totals and zero it. Only once the
 * member's process is gone (it must not write meanwhile). */
int shmetrics_retire(struct shmetrics *m, int slot);

/* Append the exposition of every series to `out`: 0 or -ENOMEM. */
int shmetrics_format(struct shmetrics *m, struct buf *out);

/* Registered series (for tests and stats). */
uint32_t shmetrics_count(const struct shmetrics *m);

#endif
