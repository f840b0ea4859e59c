/*
 * test_shmetrics.c -- the metrics store (src/shmetrics.c): registration
 * rules; values from 3 processes summed; a retired member's counters kept
 * and its gauges dropped; escaping; scrapes that stay monotonic while a
 * worker counts and another process retires it; 10,000 series. Every
 * scrape is checked by a small parser of the text format 0.0.4: line
 * grammar, HELP and TYPE before a family's samples, families contiguous,
 * histogram buckets increasing and cumulative, ending at +Inf equal to
 * _count. Every child is reaped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buffer.h"
#include "check.h"
#include "forks.h"
#include "shm.h"
#include "shmetrics.h"

static struct shm region = SHM_INIT;
static struct shmetrics metrics;

/* --- a parser of the exposition ----------------------------------------- */

#define P_MAX 32768

struct sample {
  char key[512];   /* name{labels} as written */
  double value;
};

struct family {
  char name[256];
  char type[16];
  int help, samples, closed;
};

struct parsed {
  struct sample *s;
  int n;
  struct family f[1024];
  int nf;
  int current;          /* family of the previous sample, -1 */
  char hseries[512];    /* histogram series in progress: name{labels-le} */
  double hle, hcum, hinf;
  int hstate;           /* 0 none, 1 buckets, 2 +Inf seen, 3 _sum seen */
  char error[256];
};

static int p_fail(struct parsed *p, const char *why, const char *line) {
  if (!p->error[0])
    snprintf(p->error, sizeof p->error, "%s: %.150s", why, line);
  return -1;
}

static struct family *p_family(struct parsed *p, const char *name, int make) {
  for (int i = 0; i < p->nf; i++)
    if (strcmp(p->f[i].name, name) == 0)
      return &p->f[i];
  if (!make || p->nf >= 1024)
    return NULL;
  struct family *f = &p->f[p->nf++];
  memset(f, 0, sizeof *f);
  snprintf(f->name, sizeof f->name, "%s", name);
  return f;
}

static size_t p_name(const char *s, int colon) {
  size_t i = 0;
  while ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
         s[i] == '_' || (colon && s[i] == ':') || (i > 0 && s[i] >= '0' && s[i] <= '9'))
    i++;
  return i;
}

static int p_value(const char *s, double *v) {
  if (strcmp(s, "+Inf") == 0) { *v = INFINITY; return 0; }
  if (strcmp(s, "-Inf") == 0) { *v = -INFINITY; return 0; }
  if (strcmp(s, "NaN") == 0) { *v = NAN; return 0; }
  char *end;
  *v = strtod(s, &end);
  return (end != s && *end == '\0' && isfinite(*v)) ? 0 : -1;
}

/* "# HELP name text" / "# TYPE name type": before any of its samples. */
static int p_comment(struct parsed *p, const char *line) {
  int help = strncmp(line, "# HELP ", 7) == 0;
  if (!help && strncmp(line, "# TYPE ", 7) != 0)
    return 0; /* another comment */
  const char *name = line + 7;
  size_t n = p_name(name, 1);
  if (n == 0 || name[n] != ' ')
    return p_fail(p, "bad HELP/TYPE line", line);
  char nm[256];
  snprintf(nm, sizeof nm, "%.*s", (int)n, name);
  struct family *f = p_family(p, nm, 1);
  if (f == NULL || f->samples)
    return p_fail(p, "HELP/TYPE after samples or repeated family", line);
  const char *rest = name + n + 1;
  if (help) {
    for (const char *c = rest; *c; c++)
      if (*c == '\\' && c[1] != '\\' && c[1] != 'n')
        return p_fail(p, "bad escape in HELP", line);
      else if (*c == '\\')
        c++;
    if (f->help++)
      return p_fail(p, "second HELP", line);
    return 0;
  }
  if (strcmp(rest, "counter") && strcmp(rest, "gauge") &&
      strcmp(rest, "histogram") && strcmp(rest, "summary") &&
      strcmp(rest, "untyped"))
    return p_fail(p, "bad TYPE", line);
  if (f->type[0])
    return p_fail(p, "second TYPE", line);
  snprintf(f->type, sizeof f->type, "%s", rest);
  return 0;
}

/* {k="v",...}: checks the grammar; copies the labels without `le` into
 * `rest`, and le's value into `le` (empty when absent). */
static int p_labels(const char **sp, char *rest, size_t cap, char *le) {
  const char *s = *sp;
  size_t rn = 0;
  le[0] = rest[0] = '\0';
  if (*s != '{')
    return 0;
  s++;
  while (*s != '}') {
    size_t n = p_name(s, 0);
    if (n == 0 || s[n] != '=' || s[n + 1] != '"')
      return -1;
    const char *start = s;
    int is_le = n == 2 && memcmp(s, "le", 2) == 0;
    const char *v = s + n + 2, *c = v;
    while (*c && *c != '"') {
      if (*c == '\\' && c[1] != '\\' && c[1] != '"' && c[1] != 'n')
        return -1;
      c += *c == '\\' ? 2 : 1;
    }
    if (*c != '"')
      return -1;
    if (is_le) {
      snprintf(le, 64, "%.*s", (int)(c - v), v);
    } else {
      int w = snprintf(rest + rn, cap - rn, "%s%.*s", rn ? "," : "",
                       (int)(c + 1 - start), start);
      rn += (size_t)w;
    }
    s = c + 1;
    if (*s == ',')
      s++;
    else if (*s != '}')
      return -1;
  }
  *sp = s + 1;
  return 0;
}

/* Histogram rules, one series at a time: buckets, _sum, _count. */
static int p_histogram(struct parsed *p, const char *base, const char *suffix,
                       const char *rest, const char *le, double v,
                       const char *line) {
  char series[512];
  snprintf(series, sizeof series, "%s{%s}", base, rest);
  if (strcmp(suffix, "_bucket") == 0) {
    double bound;
    if (p_value(le, &bound) < 0 && strcmp(le, "+Inf") != 0)
      return p_fail(p, "bucket without a valid le", line);
    if (strcmp(le, "+Inf") == 0)
      bound = INFINITY;
    if (p->hstate == 0 || strcmp(series, p->hseries) != 0) {
      if (p->hstate != 0)
        return p_fail(p, "histogram series left unfinished", line);
      snprintf(p->hseries, sizeof p->hseries, "%s", series);
      p->hstate = 1;
      p->hle = -INFINITY;
      p->hcum = 0;
    }
    if (p->hstate != 1 || !(bound > p->hle) || v < p->hcum)
      return p_fail(p, "buckets not increasing/cumulative", line);
    p->hle = bound;
    p->hcum = v;
    if (isinf(bound)) {
      p->hstate = 2;
      p->hinf = v;
    }
    return 0;
  }
  if (strcmp(series, p->hseries) != 0)
    return p_fail(p, "_sum/_count of another series", line);
  if (strcmp(suffix, "_sum") == 0 && p->hstate == 2) {
    p->hstate = 3;
    return 0;
  }
  if (strcmp(suffix, "_count") == 0 && p->hstate == 3 && v == p->hinf) {
    p->hstate = 0;
    return 0;
  }
  return p_fail(p, "histogram without +Inf, _sum, or _count != +Inf", line);
}

static int p_sample(struct parsed *p, const char *line) {
  char name[256], rest[512], le[64];
  size_t n = p_name(line, 1);
  if (n == 0 || n >= sizeof name)
    return p_fail(p, "bad metric name", line);
  snprintf(name, sizeof name, "%.*s", (int)n, line);
  const char *s = line + n;
  if (p_labels(&s, rest, sizeof rest, le) < 0 || *s != ' ')
    return p_fail(p, "bad labels", line);
  double v;
  if (p_value(s + 1, &v) < 0)
    return p_fail(p, "bad value", line);
  /* Its family: the name itself, or a histogram's base name. */
  struct family *f = p_family(p, name, 0);
  const char *suffix = "";
  char base[256];
  snprintf(base, sizeof base, "%s", name);
  if (f == NULL) {
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    for (int i = 0; i < 3 && f == NULL; i++) {
      size_t sl = strlen(sfx[i]);
      if (n > sl && strcmp(name + n - sl, sfx[i]) == 0) {
        base[n - sl] = '\0';
        f = p_family(p, base, 0);
        suffix = sfx[i];
      }
    }
  }
  if (f == NULL || !f->help || !f->type[0])
    return p_fail(p, "sample before its HELP and TYPE", line);
  int fi = (int)(f - p->f);
  if (p->current >= 0 && p->current != fi)
    p->f[p->current].closed = 1; /* its samples must not come back */
  if (f->closed)
    return p_fail(p, "family not contiguous", line);
  p->current = fi;
  f->samples++;
  if (strcmp(f->type, "histogram") == 0) {
    if (!suffix[0])
      return p_fail(p, "histogram sample without suffix", line);
    if (p_histogram(p, base, suffix, rest, le, v, line) < 0)
      return -1;
  } else if (suffix[0]) { /* "le" is an ordinary label here */
    return p_fail(p, "histogram suffix outside a histogram", line);
  }
  if (p->n < P_MAX) {
    size_t kl = (size_t)(s - line);
    snprintf(p->s[p->n].key, sizeof p->s[p->n].key, "%.*s", (int)kl, line);
    p->s[p->n++].value = v;
  }
  return 0;
}

/* Parse `text`; 0, or -1 with p->error set. */
static int parse(struct parsed *p, const char *text, size_t len) {
  static struct sample store[P_MAX];
  memset(p, 0, sizeof *p);
  p->s = store;
  p->current = -1;
  char line[4096];
  for (size_t at = 0; at < len;) {
    const char *nl = memchr(text + at, '\n', len - at);
    if (nl == NULL)
      return p_fail(p, "last line without newline", text + at);
    size_t n = (size_t)(nl - (text + at));
    if (n >= sizeof line)
      return p_fail(p, "line too long", text + at);
    memcpy(line, text + at, n);
    line[n] = '\0';
    at += n + 1;
    int rc = line[0] == '#' ? p_comment(p, line) : p_sample(p, line);
    if (rc < 0)
      return -1;
  }
  return p->hstate == 0 ? 0 : p_fail(p, "unfinished histogram", "end");
}

static double value_of(const struct parsed *p, const char *key) {
  for (int i = 0; i < p->n; i++)
    if (strcmp(p->s[i].key, key) == 0)
      return p->s[i].value;
  return NAN;
}

/* Scrape and parse; prints the parser's complaint. */
static int scrape(struct parsed *p) {
  struct buf b = BUF_INIT;
  int rc = shmetrics_format(&metrics, &b);
  if (rc == 0 && (rc = parse(p, buf_begin(&b), b.len)) < 0)
    printf("# parse error: %s\n", p->error);
  buf_free(&b);
  return rc;
}

/* --- tests ---------------------------------------------------------------- */

static const double bounds[] = {0.1, 0.5, 1};

static void test_registration_rules(void) {
  struct shmetrics_label ab[] = {{"b", "1"}, {"a", "2"}};
  struct shmetrics_label ba[] = {{"a", "2"}, {"b", "1"}};
  struct shmetrics_label bad[] = {{"__x", "1"}};
  struct shmetrics_label le[] = {{"le", "1"}};
  struct shmetrics_label twice[] = {{"a", "1"}, {"a", "2"}};
  struct shmetrics_label badname[] = {{"1a", "1"}};
  int c = SHMETRICS_COUNTER, g = SHMETRICS_GAUGE, h = SHMETRICS_HISTOGRAM;
  int s1 = shmetrics_register(&metrics, c, "rules_total", "help", ab, 2, NULL, 0);
  CHECK(s1 >= 0);
  CHECK(shmetrics_register(&metrics, c, "rules_total", "other help", ba, 2,
                           NULL, 0) == s1);
  CHECK(shmetrics_register(&metrics, c, "rules_total", "", NULL, 0, NULL, 0) > s1);
  CHECK(shmetrics_register(&metrics, g, "rules_total", "", NULL, 0, NULL, 0) == -EEXIST);
  CHECK(shmetrics_register(&metrics, c, "9bad", "", NULL, 0, NULL, 0) == -EINVAL);
  CHECK(shmetrics_register(&metrics, c, "bad-name", "", NULL, 0, NULL, 0) == -EINVAL);
  CHECK(shmetrics_register(&metrics, c, "ns:ok_total", "", NULL, 0, NULL, 0) >= 0);
  CHECK(shmetrics_register(&metrics, c, "x_total", "", bad, 1, NULL, 0) == -EINVAL);
  CHECK(shmetrics_register(&metrics, c, "x_total", "", twice, 2, NULL, 0) == -EINVAL);
  CHECK(shmetrics_register(&metrics, c, "x_total", "", badname, 1, NULL, 0) == -EINVAL);
  CHECK(shmetrics_register(&metrics, c, "x_total", "", NULL, 0, bounds, 3) == -EINVAL);
  CHECK(shmetrics_register(&metrics, h, "rh", "", le, 1, bounds, 3) == -EINVAL);
  CHECK(shmetrics_register(&metrics, g, "le_ok", "", le, 1, NULL, 0) >= 0);
  double unsorted[] = {1, 0.5}, inf[] = {1, INFINITY};
  CHECK(shmetrics_register(&metrics, h, "rh", "", NULL, 0, unsorted, 2) == -EINVAL);
  CHECK(shmetrics_register(&metrics, h, "rh", "", NULL, 0, inf, 2) == -EINVAL);
  CHECK(shmetrics_register(&metrics, h, "rh", "", NULL, 0, NULL, 0) == -EINVAL);
  int hs = shmetrics_register(&metrics, h, "rh", "", NULL, 0, bounds, 3);
  CHECK(hs >= 0);
  CHECK(shmetrics_register(&metrics, h, "rh", "", ab, 2, bounds, 2) == -EEXIST);
  /* Updates check the type. */
  CHECK(shmetrics_add(&metrics, 0, s1, -1) == -EINVAL);
  CHECK(shmetrics_add(&metrics, 0, s1, NAN) == -EINVAL);
  CHECK(shmetrics_set(&metrics, 0, s1, 1) == -EINVAL);
  CHECK(shmetrics_observe(&metrics, 0, s1, 1) == -EINVAL);
  CHECK(shmetrics_add(&metrics, 0, hs, 1) == -EINVAL);
  CHECK(shmetrics_observe(&metrics, 0, hs, NAN) == -EINVAL);
  CHECK(shmetrics_add(&metrics, SHM_MEMBERS, s1, 1) == -EINVAL);
  CHECK(shmetrics_add(&metrics, 0, 1 << 30, 1) == -EINVAL);
  struct parsed p;
  CHECK(scrape(&p) == 0);
}

/* Each of 3 children counts in its own slot and exits (its slot stays
 * claimed until the parent retires it, as a master would). */
struct worker {
  int slot, i;
};

static int metrics_child(void *arg) {
  const struct worker *w = arg;
  struct shmetrics m;
  struct shmetrics_label path[] = {{"path", "/"}};
  CHILD_CHECK(shmetrics_attach(&m, &region, NULL) == 0);
  int c = shmetrics_register(&m, SHMETRICS_COUNTER, "requests_total",
                             "Requests served.", path, 1, NULL, 0);
  int g = shmetrics_register(&m, SHMETRICS_GAUGE, "connections",
                             "Open connections.", NULL, 0, NULL, 0);
  int h = shmetrics_register(&m, SHMETRICS_HISTOGRAM, "latency_seconds",
                             "Request latency.", NULL, 0, bounds, 3);
  CHILD_CHECK(c >= 0 && g >= 0 && h >= 0);
  for (int k = 0; k < 10 * (w->i + 1); k++)
    CHILD_CHECK(shmetrics_add(&m, w->slot, c, 1) == 0);
  CHILD_CHECK(shmetrics_set(&m, w->slot, g, 5) == 0);
  CHILD_CHECK(shmetrics_set(&m, w->slot, g, w->i + 1) == 0);
  for (int k = 0; k <= w->i; k++) {
    CHILD_CHECK(shmetrics_observe(&m, w->slot, h, 0.05) == 0);
    CHILD_CHECK(shmetrics_observe(&m, w->slot, h, 0.5) == 0); /* le: in 0.5 */
    CHILD_CHECK(shmetrics_observe(&m, w->slot, h, 2) == 0);
  }
  return 0;
}

static void test_three_processes_then_retire(void) {
  struct worker w[3];
  pid_t pid[3];
  for (int i = 0; i < 3; i++) {
    w[i] = (struct worker){shm_member_claim(&region, i + 1, 0), i};
    pid[i] = forks_run(metrics_child, &w[i]);
  }
  int bad = 0;
  for (int i = 0; i < 3; i++)
    bad += forks_wait(pid[i]) != 0;
  CHECK(bad == 0);
  struct parsed p;
  CHECK(scrape(&p) == 0);
  CHECK(value_of(&p, "requests_total{path=\"/\"}") == 60);
  CHECK(value_of(&p, "connections") == 6);
  CHECK(value_of(&p, "latency_seconds_bucket{le=\"0.1\"}") == 6);
  CHECK(value_of(&p, "latency_seconds_bucket{le=\"0.5\"}") == 12);
  CHECK(value_of(&p, "latency_seconds_bucket{le=\"1\"}") == 12);
  CHECK(value_of(&p, "latency_seconds_bucket{le=\"+Inf\"}") == 18);
  CHECK(value_of(&p, "latency_seconds_count") == 18);
  double sum = value_of(&p, "latency_seconds_sum");
  CHECK(sum > 6 * 2.55 - 1e-9 && sum < 6 * 2.55 + 1e-9);
  /* The master reaps the second worker: its counter stays, its gauge goes. */
  CHECK(shmetrics_retire(&metrics, w[1].slot) == 0);
  CHECK(shm_member_free(&region, w[1].slot) == 0);
  CHECK(scrape(&p) == 0);
  CHECK(value_of(&p, "requests_total{path=\"/\"}") == 60);
  CHECK(value_of(&p, "connections") == 4);
  CHECK(value_of(&p, "latency_seconds_count") == 18);
  /* A new worker in that slot starts from zero. */
  CHECK(shm_member_claim(&region, 2, 0) == w[1].slot);
  CHECK(scrape(&p) == 0);
  CHECK(value_of(&p, "requests_total{path=\"/\"}") == 60);
  for (int i = 0; i < 3; i++) {
    shmetrics_retire(&metrics, w[i].slot);
    shm_member_free(&region, w[i].slot);
  }
  CHECK(scrape(&p) == 0);
  CHECK(value_of(&p, "requests_total{path=\"/\"}") == 60);
  CHECK(value_of(&p, "connections") == 0);
  CHECK(value_of(&p, "latency_seconds_bucket{le=\"+Inf\"}") == 18);
}

static void test_escaping(void) {
  struct shmetrics_label l[] = {{"v", "a\"b\\c\nd"}};
  int s = shmetrics_register(&metrics, SHMETRICS_GAUGE, "escaped",
                             "Back\\slash and\nnewline.", l, 1, NULL, 0);
  int slot = shm_member_claim(&region, 1, 0);
  CHECK(s >= 0 && slot >= 0);
  CHECK(shmetrics_set(&metrics, slot, s, -2.5) == 0);
  struct buf b = BUF_INIT;
  CHECK(shmetrics_format(&metrics, &b) == 0);
  CHECK(buf_append(&b, "", 1) == 0);
  CHECK(strstr(buf_begin(&b), "# HELP escaped Back\\\\slash and\\nnewline.\n"));
  CHECK(strstr(buf_begin(&b), "escaped{v=\"a\\\"b\\\\c\\nd\"} -2.5\n"));
  buf_free(&b);
  struct parsed p;
  CHECK(scrape(&p) == 0);
  shm_member_free(&region, slot);
}

/* A worker counts to N while the parent scrapes; once it is gone another
 * process (the "master") retires it. No scrape may see the total go down,
 * and the end is exact. At half way the worker waits until a scrape has
 * begun and ended after its last add, so one scrape surely falls inside
 * the count however the machine schedules the three processes. */
enum { MONO_N = 200000 };

struct mono {
  int slot, series;
  atomic_int *sync; /* [0] worker gone, [1] master done, [2] scrapes */
};

static int mono_worker(void *arg) {
  const struct mono *mo = arg;
  for (int i = 0; i < MONO_N; i++) {
    if (i == MONO_N / 2) {
      /* The scrape that ends as number now + 2 began after this load. */
      atomic_thread_fence(memory_order_seq_cst);
      int now = atomic_load(&mo->sync[2]);
      while (atomic_load(&mo->sync[2]) < now + 2)
        sched_yield();
    }
    CHILD_CHECK(shmetrics_add(&metrics, mo->slot, mo->series, 1) == 0);
  }
  return 0;
}

static int mono_master(void *arg) {
  const struct mono *mo = arg;
  while (!atomic_load(&mo->sync[0]))
    sched_yield();
  CHILD_CHECK(shmetrics_retire(&metrics, mo->slot) == 0);
  CHILD_CHECK(shm_member_free(&region, mo->slot) == 0);
  atomic_store(&mo->sync[1], 1);
  return 0;
}

static void test_monotonic_across_retire(void) {
  struct shm_zone z;
  CHECK(shm_zone(&region, "mono", 64, NULL, NULL, &z) == 0);
  struct mono mo = {shm_member_claim(&region, 1, 0),
                    shmetrics_register(&metrics, SHMETRICS_COUNTER,
                                       "mono_total", "Counted.", NULL, 0,
                                       NULL, 0), z.base};
  pid_t master = forks_run(mono_master, &mo);
  pid_t worker = forks_run(mono_worker, &mo);
  struct parsed p;
  double last = 0;
  int down = 0, errors = 0, gone = 0, between = 0;
  while (!atomic_load(&mo.sync[1])) {
    if (!gone && waitpid(worker, NULL, WNOHANG) == worker) {
      gone = 1;
      atomic_store(&mo.sync[0], 1);
    }
    errors += scrape(&p) != 0;
    double v = value_of(&p, "mono_total");
    down += !(v >= last);
    between += v > 0 && v < MONO_N;
    last = v;
    atomic_fetch_add(&mo.sync[2], 1);
  }
  if (!gone)
    forks_wait(worker);
  CHECK(forks_wait(master) == 0);
  CHECK(errors == 0);
  CHECK(down == 0);
  CHECK(between > 0); /* a scrape saw the count under way */
  CHECK(scrape(&p) == 0 && value_of(&p, "mono_total") == MONO_N);
}

/* The parser must refuse what breaks the format, or the checks above
 * prove nothing. */
static void test_parser_refuses(void) {
  static const char *const bad[] = {
    "x 1\n",                                            /* no HELP/TYPE */
    "# TYPE x counter\nx 1\n",                          /* no HELP */
    "# HELP x h\n# TYPE x counter\nx 1\n# HELP x h\n",   /* HELP after */
    "# HELP x h\n# TYPE x counter\nx{a=\"1} 1\n",       /* bad labels */
    "# HELP x h\n# TYPE x counter\nx{a=\"\\q\"} 1\n",  /* bad escape */
    "# HELP x h\n# TYPE x counter\nx one\n",            /* bad value */
    "# HELP x h\n# TYPE x counter\n# HELP y h\n# TYPE y gauge\n"
    "x 1\ny 1\nx{a=\"b\"} 2\n",                         /* split family */
    "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
    "h_bucket{le=\"2\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n",
    "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\n"
    "h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",       /* count */
    "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\n"
    "h_count 1\n",                                      /* no +Inf */
    "# HELP x h\n# TYPE x counter\nx 1",                 /* no newline */
  };
  static const char good[] =
    "# HELP h h\n# TYPE h histogram\nh_bucket{a=\"x\",le=\"1\"} 1\n"
    "h_bucket{a=\"x\",le=\"+Inf\"} 2\nh_sum{a=\"x\"} 1.5\n"
    "h_count{a=\"x\"} 2\n# HELP x h\n# TYPE x gauge\nx{le=\"a\"} -1e-3\n";
  struct parsed p;
  int accepted = 0;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (parse(&p, bad[i], strlen(bad[i])) == 0) {
      printf("# accepted bad input %zu\n", i);
      accepted++;
    }
  CHECK(accepted == 0);
  CHECK(parse(&p, good, strlen(good)) == 0);
  CHECK(value_of(&p, "h_count{a=\"x\"}") == 2);
}

static void test_ten_thousand_series(void) {
  struct shm r = SHM_INIT;
  struct shmetrics m;
  CHECK(shm_create(&r, 0) == 0);
  CHECK(shmetrics_attach(&m, &r, NULL) == 0);
  int slot = shm_member_claim(&r, 1, 0), bad = 0;
  char v[16];
  for (int i = 0; i < 10000; i++) {
    snprintf(v, sizeof v, "%d", i);
    struct shmetrics_label l[] = {{"id", v}};
    int s = shmetrics_register(&m, i % 2 ? SHMETRICS_GAUGE : SHMETRICS_COUNTER,
                               i % 2 ? "many_gauge" : "many_total", "Many.",
                               l, 1, NULL, 0);
    bad += s != i || shmetrics_add(&m, slot, s, i) != 0;
  }
  CHECK(bad == 0 && shmetrics_count(&m) == 10000);
  struct buf b = BUF_INIT;
  struct parsed p;
  CHECK(shmetrics_format(&m, &b) == 0);
  CHECK(parse(&p, buf_begin(&b), b.len) == 0 && p.n == 10000 && p.nf == 2);
  CHECK(value_of(&p, "many_gauge{id=\"9999\"}") == 9999);
  buf_free(&b);
  shm_close(&r);
}

int main(void) {
  alarm(120);
  if (shm_create(&region, 0) != 0 || shmetrics_attach(&metrics, &region, NULL) != 0) {
    printf("FAIL: cannot create the region\n");
    return 1;
  }
  RUN(test_parser_refuses);
  RUN(test_registration_rules);
  RUN(test_three_processes_then_retire);
  RUN(test_escaping);
  RUN(test_monotonic_across_retire);
  RUN(test_ten_thousand_series);
  shm_close(&region);
  return CHECK_DONE();
}
