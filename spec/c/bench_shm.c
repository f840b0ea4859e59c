/*
 * bench_shm.c -- measurements of the shared-memory layer for the report
 * (not a test: CMake does not build it, scripts/test does not run it).
 *
 *   cc -O2 -std=c11 -D_DEFAULT_SOURCE -Isrc -o build/bench_shm \
 *      spec/c/bench_shm.c src/shm.c src/shdict.c src/bus.c \
 *      src/mbox.c src/shmetrics.c src/buffer.c
 *   build/bench_shm [incr|dict|evict|bus|metrics]...   (default: all)
 *
 * incr     shdict_incr ops/s from 1, 2 and 4 processes (one hot key, and
 *          one key per process), and single-process get/set
 * evict    hit ratio of SHDICT_EVICT_GLOBAL vs SHDICT_EVICT_CLASS on a
 *          steady mixed-size workload and on one whose sizes shift, and
 *          the longest single set (a page steal evicting a whole page)
 * bus      messages/s from one process to another: unpaced (what gets
 *          through, what is dropped) and paced to the queue (no loss)
 * metrics  shmetrics_format for 10,000 series over 4 and 64 members,
 *          and the cost of an update
 * Each figure is the best of a few runs (the machine is shared).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"
#include "bus.h"
#include "monotime.h"
#include "shdict.h"
#include "shm.h"
#include "shmetrics.h"

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static double unit(void) {
  return (double)(rng() >> 11) / 9007199254740992.0;
}

/* --- incr ------------------------------------------------------------------ */

struct incr_args {
  struct shdict *d;
  int procs, n, own_key;
  atomic_int *go;
};

static void incr_worker(struct incr_args *a, int index) {
  char key[16];
  struct shdict_val one = {SHDICT_INT, {.i = 1}, NULL, 0, 0}, init = one, out;
  snprintf(key, sizeof key, a->own_key ? "k%d" : "hot", index);
  atomic_fetch_add(&a->go[0], 1);
  while (!atomic_load(&a->go[1]))
    ;
  for (int i = 0; i < a->n; i++)
    shdict_incr(a->d, key, strlen(key), &one, &init, 0, 1, &out);
}

static double incr_run(struct shm *r, int procs, int own_key) {
  static int round;
  char name[32];
  struct shdict d;
  struct shm_zone z;
  snprintf(name, sizeof name, "bench.incr.%d", round++);
  if (shdict_attach(&d, r, name, 1 << 20, NULL, NULL) != 0 ||
      shm_zone(r, name + 6, 64, NULL, NULL, &z) != 0)
    exit(1);
  struct incr_args a = {&d, procs, 2000000 / procs, own_key, z.base};
  pid_t pid[4];
  for (int i = 0; i < procs; i++)
    if ((pid[i] = fork()) == 0) {
      incr_worker(&a, i);
      _exit(0);
    }
  while (atomic_load(&a.go[0]) < procs)
    sched_yield();
  double t0 = monotime_now();
  atomic_store(&a.go[1], 1);
  for (int i = 0; i < procs; i++)
    waitpid(pid[i], NULL, 0);
  return (double)a.n * procs / (monotime_now() - t0);
}

static void bench_incr(struct shm *r) {
  for (int own = 0; own < 2; own++)
    for (int procs = 1; procs <= 4; procs *= 2) {
      double best = 0;
      for (int k = 0; k < 3; k++) {
        double v = incr_run(r, procs, own);
        best = v > best ? v : best;
      }
      printf("incr %-10s %d process%s: %6.2f M ops/s\n",
             own ? "own keys" : "one key", procs, procs > 1 ? "es" : "  ",
             best / 1e6);
    }
}

static void bench_dict(struct shm *r) {
  struct shdict d;
  char key[32], buf[256], val[100];
  struct shdict_val v = {SHDICT_STR, {0}, val, sizeof val, 0}, out;
  memset(val, 'v', sizeof val);
  shdict_attach(&d, r, "bench.dict", 16 << 20, NULL, NULL);
  enum { N = 100000 };
  for (int i = 0; i < N; i++) { /* first writes: pages get touched */
    int n = snprintf(key, sizeof key, "key:%d", i);
    shdict_set(&d, key, (size_t)n, &v, 0, SHDICT_SET, 1);
  }
  double t0 = cpu_now();
  for (int i = 0; i < N; i++) {
    int n = snprintf(key, sizeof key, "key:%d", i);
    shdict_set(&d, key, (size_t)n, &v, 0, SHDICT_SET, 1);
  }
  double t1 = cpu_now();
  for (int rep = 0; rep < 5; rep++)
    for (int i = 0; i < N; i++) {
      int n = snprintf(key, sizeof key, "key:%d", i);
      shdict_get(&d, key, (size_t)n, 1, &out, buf, sizeof buf);
    }
  double t2 = cpu_now();
  for (int rep = 0; rep < 5; rep++)
    for (int i = 0; i < N; i++)
      snprintf(key, sizeof key, "key:%d", i);
  double t3 = cpu_now(), fmt = (t3 - t2) / (5.0 * N);
  printf("dict (100,000 keys, 16 MiB) overwrite a 100-byte value: %.0f ns;"
         " get: %.0f ns (cpu per op)\n", ((t1 - t0) / N - fmt) * 1e9,
         ((t2 - t1) / (5.0 * N) - fmt) * 1e9);
}

/* --- eviction policies -------------------------------------------------------- */

/* Sizes: 50% ~100 B, 40% ~1 KiB, 10% ~8 KiB, fixed per key. */
static size_t size_of_key(uint64_t k, int phase) {
  uint64_t h = k * 0x9e3779b97f4a7c15ull >> 32;
  if (phase == 1) /* the shifted workload's second half: all ~4 KiB */
    return 3000 + h % 2000;
  unsigned pick = (unsigned)(h % 10);
  return pick < 5 ? 60 + h % 80 : pick < 9 ? 700 + h % 600 : 6000 + h % 4000;
}

/* Cache-aside: get; on a miss, set. Keys skewed toward low numbers. */
static double evict_run(int policy, int shifted, struct shdict_stats *st) {
  enum { KEYS = 50000, OPS = 2000000, SIZE = 16 << 20 };
  static char val[10000], buf[10000];
  struct shdict d;
  struct shdict_config cfg = {0, policy, {1, 2}};
  void *mem = aligned_alloc(64, SIZE);
  if (!mem || shdict_init(mem, SIZE, &cfg) || shdict_open(&d, mem, SIZE))
    exit(1);
  rng_state = 88172645463325252ull;
  long hits = 0, gets = 0;
  for (int i = 0; i < OPS; i++) {
    int phase = shifted && i >= OPS / 2;
    double u = unit();
    uint64_t k = (uint64_t)(KEYS * u * u * u) + (uint64_t)phase * KEYS;
    char key[24];
    int n = snprintf(key, sizeof key, "k%llu", (unsigned long long)k);
    struct shdict_val out, v = {SHDICT_STR, {0}, val, size_of_key(k, phase), 0};
    int rc = shdict_get(&d, key, (size_t)n, 1, &out, buf, sizeof buf);
    if (i >= OPS / 4 && (!shifted || i >= OPS * 3 / 4)) { /* warmed up */
      gets++;
      hits += rc == 0;
    }
    if (rc != 0)
      shdict_set(&d, key, (size_t)n, &v, 0, SHDICT_SET, 1);
  }
  shdict_stats(&d, st);
  free(mem);
  return (double)hits / (double)gets;
}

static void bench_evict(void) {
  static const char *const names[] = {"global", "class"};
  for (int shifted = 0; shifted < 2; shifted++)
    for (int p = 0; p < 2; p++) {
      struct shdict_stats st;
      double hr = evict_run(p, shifted, &st);
      printf("evict %-7s %-8s hit ratio %5.1f%%, evictions %llu, steals %llu,"
             " used %.0f%%\n", shifted ? "shifted" : "steady", names[p],
             hr * 100, (unsigned long long)st.evictions,
             (unsigned long long)st.steals, 100.0 * st.used / st.capacity);
    }
  /* The longest sets: the first of a class with no page (takes a whole
   * 64 KiB page of 64-byte entries at once) and the worst of the rest
   * (page moves in steps), in CPU time. */
  enum { SIZE = 16 << 20 };
  struct shdict d;
  void *mem = aligned_alloc(64, SIZE);
  if (!mem || shdict_init(mem, SIZE, NULL) || shdict_open(&d, mem, SIZE))
    exit(1);
  struct shdict_val small = {SHDICT_INT, {.i = 1}, NULL, 0, 0}, out;
  static char big[4000];
  struct shdict_val large = {SHDICT_STR, {0}, big, sizeof big, 0};
  char key[24], b8[8];
  for (int i = 0; i < 400000; i++) {
    int n = snprintf(key, sizeof key, "s%d", i);
    shdict_set(&d, key, (size_t)n, &small, 0, SHDICT_SET, 1);
  }
  for (int i = 0; i < 400000; i++) { /* scatter the LRU order */
    int n = snprintf(key, sizeof key, "s%llu",
                     (unsigned long long)(rng() % 400000));
    shdict_get(&d, key, (size_t)n, 1, &out, b8, sizeof b8);
  }
  double first = 0, worst = 0, sum = 0;
  static double times[2000];
  for (int i = 0; i < 2000; i++) {
    int n = snprintf(key, sizeof key, "big%d", i);
    double t0 = cpu_now();
    shdict_set(&d, key, (size_t)n, &large, 0, SHDICT_SET, 1);
    double t = cpu_now() - t0;
    times[i] = t;
    if (i == 0)
      first = t;
    else
      sum += t, worst = t > worst ? t : worst;
  }
  int over = 0; /* sets slower than 20 us */
  for (int i = 1; i < 2000; i++)
    over += times[i] > 20e-6;
  struct shdict_stats st;
  shdict_stats(&d, &st);
  printf("evict set of 4 KiB over 64-byte entries (page %zu): first of its "
         "class %.0f us, then mean %.1f us, worst %.1f us, %d of 1999 over "
         "20 us (cpu; %llu steals)\n", st.page_size, first * 1e6,
         sum / 1999 * 1e6, worst * 1e6, over, (unsigned long long)st.steals);
  free(mem);
}

/* --- bus ---------------------------------------------------------------------- */

enum { BUS_N = 200000 };

struct bus_args {
  struct shm *r;
  int pub_slot, sub_slot;
  size_t size;
  int paced;
  atomic_int *sync; /* [0] subscriber ready, [1] publisher done */
};

static void bus_subscriber(struct bus_args *a) {
  struct bus b;
  struct bus_msg m[BUS_BATCH];
  if (bus_open(&b, a->r, a->sub_slot, 0) || shm_member_live(a->r, a->sub_slot))
    _exit(1);
  atomic_store(&a->sync[0], 1);
  for (;;) {
    int n = bus_recv_batch(&b, m, BUS_BATCH);
    if (n == 0) {
      if (atomic_load(&a->sync[1]))
        break;
      struct pollfd p = {bus_fd(&b), POLLIN, 0};
      poll(&p, 1, 10);
    }
  }
  _exit(0);
}

static void bus_run(struct shm *r, size_t size, int paced) {
  struct shm_zone z;
  char name[32];
  static int round;
  snprintf(name, sizeof name, "bench.bus.%d", round++);
  if (shm_zone(r, name, 64, NULL, NULL, &z) != 0)
    exit(1);
  /* The publisher stays STARTING: it sends, it receives nothing. */
  struct bus_args a = {r, shm_member_claim(r, 1, 0), shm_member_claim(r, 2, 0),
                       size, paced, z.base};
  pid_t pid = fork();
  if (pid == 0)
    bus_subscriber(&a);
  struct bus b;
  static char msg[BUS_MSG_MAX];
  if (bus_open(&b, r, a.pub_slot, 0))
    exit(1);
  while (!atomic_load(&a.sync[0]))
    usleep(100);
  struct shm_member *sub = shm_member(r, a.sub_slot);
  /* Paced: no more in flight than the subscriber's mailbox holds. */
  long window = (long)(BUS_RING_DEFAULT / (8 + ((BUS_HDR_SIZE + 5 + size + 7) & ~(size_t)7)));
  double t0 = monotime_now();
  for (long i = 0; i < BUS_N; i++) {
    while (paced && (long)atomic_load(&sub->bus_received) <= i - window)
      sched_yield();
    bus_publish(&b, "bench", 5, msg, size);
  }
  while ((long)(atomic_load(&sub->bus_received) +
                atomic_load(&sub->bus_dropped)) < BUS_N)
    sched_yield();
  double t = monotime_now() - t0;
  atomic_store(&a.sync[1], 1);
  waitpid(pid, NULL, 0);
  uint64_t got = atomic_load(&sub->bus_received);
  printf("bus %-7s %5zu-byte messages: %7.0f delivered/s, %5.1f%% dropped"
         " (%.0f sent/s)\n", paced ? "paced" : "unpaced", size,
         (double)got / t, 100.0 * (double)(BUS_N - (long)got) / BUS_N,
         BUS_N / t);
  bus_close(&b);
  shm_member_free(r, a.pub_slot);
  shm_member_free(r, a.sub_slot);
}

static void bench_bus(struct shm *r) {
  printf("bus: mailboxes of %zu KiB\n", BUS_RING_DEFAULT >> 10);
  static const size_t sizes[] = {64, 1024, 16384};
  for (int paced = 0; paced < 2; paced++)
    for (int i = 0; i < 3; i++)
      bus_run(r, sizes[i], paced);
}

/* --- metrics --------------------------------------------------------------------- */

static void bench_metrics_members(int members) {
  struct shm r = SHM_INIT;
  struct shmetrics m;
  if (shm_create(&r, 0) || shmetrics_attach(&m, &r, NULL))
    exit(1);
  static const double bounds[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5};
  int slots[64];
  for (int i = 0; i < members; i++)
    slots[i] = shm_member_claim(&r, i, 0);
  char v[16];
  /* 10,000 series: 9,000 counters and gauges, 1,000 histograms. */
  for (int i = 0; i < 10000; i++) {
    snprintf(v, sizeof v, "%d", i);
    struct shmetrics_label l[] = {{"route", v}, {"method", "GET"}};
    int type = i < 1000 ? SHMETRICS_HISTOGRAM
                        : i % 2 ? SHMETRICS_COUNTER : SHMETRICS_GAUGE;
    const char *name = type == SHMETRICS_HISTOGRAM ? "http_request_seconds"
                       : type == SHMETRICS_COUNTER ? "http_requests_total"
                                                   : "inflight";
    int s = shmetrics_register(&m, type, name, "Bench.", l, 2,
                               type == SHMETRICS_HISTOGRAM ? bounds : NULL,
                               type == SHMETRICS_HISTOGRAM ? 10 : 0);
    for (int k = 0; k < members; k++) {
      if (type == SHMETRICS_HISTOGRAM)
        shmetrics_observe(&m, slots[k], s, unit());
      else
        shmetrics_add(&m, slots[k], s, (double)(rng() % 1000));
    }
  }
  struct buf out = BUF_INIT;
  double best = 1e9;
  for (int rep = 0; rep < 10; rep++) {
    out.len = out.off = 0;
    double t0 = cpu_now();
    shmetrics_format(&m, &out);
    double t = cpu_now() - t0;
    best = t < best ? t : best;
  }
  printf("metrics format 10,000 series (1,000 histograms) x %2d members: "
         "%.2f ms cpu, %zu bytes\n", members, best * 1e3, out.len);
  if (members == 4) {
    FILE *f = fopen("build/bench_metrics.txt", "w");
    if (f) {
      fwrite(buf_begin(&out), 1, out.len, f);
      fclose(f);
    }
    double t0 = cpu_now();
    for (int i = 0; i < 10000000; i++)
      shmetrics_add(&m, slots[0], 1001 + (i & 1023) * 2, 1);
    printf("metrics counter add: %.1f ns (cpu)\n", (cpu_now() - t0) / 1e7 * 1e9);
  }
  buf_free(&out);
  shm_close(&r);
}

static void bench_metrics(void) {
  bench_metrics_members(4);
  bench_metrics_members(64);
}

int main(int argc, char **argv) {
  struct shm r = SHM_INIT;
  if (shm_create(&r, 0) != 0)
    return 1;
  int all = argc < 2;
  for (int i = all ? 0 : 1; i < (all ? 1 : argc); i++) {
    const char *w = all ? "all" : argv[i];
    int any = !strcmp(w, "all");
    if (any || !strcmp(w, "incr")) bench_incr(&r);
    if (any || !strcmp(w, "dict")) bench_dict(&r);
    if (any || !strcmp(w, "evict")) bench_evict();
    if (any || !strcmp(w, "bus")) bench_bus(&r);
    if (any || !strcmp(w, "metrics")) bench_metrics();
  }
  shm_close(&r);
  return 0;
}
