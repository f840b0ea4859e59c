/*
 * load_util.h - shared plumbing for the load generators of the berth
 * benchmarks (loadgen.c, udpload.c, wsload.c, tlsload.c, bulk.c): monotonic
 * time, SIGINT/SIGTERM handling, a latency histogram, a PRNG, option value
 * parsing, address resolution, the fd limit, and the CPU time of the server
 * process under test (utime + stime from /proc/PID/stat), so that each tool
 * can report the server's CPU seconds over exactly its measured window.
 *
 * Header-only on purpose, like libev_server.h: each tool is built from a
 * single .c file. Everything here is `static inline` so that a tool that
 * does not use a helper compiles without an unused-function warning.
 */
#ifndef BENCH_LOAD_UTIL_H
#define BENCH_LOAD_UTIL_H

#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------- time */

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t secs_to_ns(double s)
{
    return (uint64_t)(s * 1e9);
}

/* epoll_wait timeout in ms until `deadline`, at most 100 ms */
static inline int wait_ms(uint64_t deadline)
{
    uint64_t t = now_ns();
    if (t >= deadline)
        return 0;
    uint64_t ms = (deadline - t + 999999) / 1000000;
    return ms > 100 ? 100 : (int)ms;
}

/* ---------------------------------------------------------------- signals */

static volatile sig_atomic_t g_stop;

static inline void on_stop_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static inline void setup_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal; /* no SA_RESTART: epoll_wait returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* -------------------------------------------------------------- histogram */

/* log-linear histogram of nanoseconds: 128 sub-buckets per power of two,
 * so a percentile is within 1/128 (< 0.8 %) of the true value */
#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_SIZE (HIST_SUB + (64 - HIST_SUB_BITS) * HIST_SUB)

struct hist {
    uint64_t bucket[HIST_SIZE];
    uint64_t count;
};

static inline unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS */
    unsigned shift = e - HIST_SUB_BITS;
    return HIST_SUB + shift * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
}

static inline double hist_value(unsigned idx)
{
    if (idx < HIST_SUB)
        return idx;
    unsigned shift = (idx - HIST_SUB) / HIST_SUB;
    uint64_t m = (idx - HIST_SUB) % HIST_SUB + HIST_SUB;
    return (double)(m << shift) + (double)(1ull << shift) / 2.0;
}

static inline void hist_add(struct hist *h, uint64_t ns)
{
    h->bucket[hist_index(ns)]++;
    h->count++;
}

/* the p-quantile (0 < p < 1) in microseconds, 0 when empty */
static inline double hist_pct_us(const struct hist *h, double p)
{
    if (h->count == 0)
        return 0;
    uint64_t target = (uint64_t)(p * (double)h->count + 0.5);
    if (target < 1)
        target = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_SIZE; i++) {
        seen += h->bucket[i];
        if (seen >= target)
            return hist_value(i) / 1000.0;
    }
    return 0;
}

/* " p50_us=… p99_us=… p999_us=…" for a result line */
static inline void hist_print(FILE *f, const struct hist *h)
{
    fprintf(f, " p50_us=%.1f p99_us=%.1f p999_us=%.1f", hist_pct_us(h, 0.50),
            hist_pct_us(h, 0.99), hist_pct_us(h, 0.999));
}

/* ------------------------------------------------------------------- PRNG */

static inline uint64_t rng_next(uint64_t *s) /* xorshift64* */
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* fill p with pseudo-random bytes from a fixed seed (same bytes every run) */
static inline void fill_pattern(unsigned char *p, size_t n, uint64_t seed)
{
    uint64_t s = seed | 1;
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(rng_next(&s) >> 56);
}

/* ---------------------------------------------------------------- options */

static inline bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static inline bool parse_secs(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

/* ----------------------------------------------------------- environment */

/* resolve host:port for `socktype` (SOCK_STREAM/SOCK_DGRAM); exits on error */
static inline struct addrinfo *resolve(const char *prog, const char *host, const char *port,
                                       int socktype)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = socktype};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "%s: %s:%s: %s\n", prog, host, port, gai_strerror(rc));
        exit(2);
    }
    return ai;
}

/* raise the soft fd limit so that `need` descriptors fit, if allowed */
static inline void raise_nofile(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= (rlim_t)need)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)need
                      ? (rlim_t)need : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* ------------------------------------------------------------- server CPU */

/* utime + stime of process `pid` in seconds (all its threads), or -1.
 * The command name (field 2) may contain spaces and parentheses, so the
 * fields are counted from the last ')'. */
static inline double proc_cpu_s(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15) */
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                     &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(ut + st) / (double)(hz > 0 ? hz : 100);
}

/* the server's CPU seconds over a window: begin, end, then print */
struct cpu_window {
    long pid;     /* 0: not measured */
    double begin; /* -1: not begun or unavailable */
    double end;
};

static inline void cpu_begin(struct cpu_window *w)
{
    w->begin = w->end = -1;
    if (w->pid > 0)
        w->begin = proc_cpu_s(w->pid);
}

static inline void cpu_end(struct cpu_window *w)
{
    if (w->pid > 0 && w->begin >= 0 && w->end < 0)
        w->end = proc_cpu_s(w->pid);
}

/* " srv_cpu_s=…" when both ends were read, else nothing */
static inline void cpu_print(FILE *f, const struct cpu_window *w)
{
    if (w->pid > 0 && w->begin >= 0 && w->end >= w->begin)
        fprintf(f, " srv_cpu_s=%.3f", w->end - w->begin);
}

#endif
