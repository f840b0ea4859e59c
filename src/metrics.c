/*
 * metrics.c -- the C side of berth.metrics: this process's handle on the
 * group's metrics store (shmetrics.c) and its updates, the per-loop
 * sampler (event-loop lag, then the Lua collector of the built-in
 * metrics), and the scrape. Owns struct mstate.
 *
 * Updates write this member's own cells in the shared region: no lock,
 * no system call (shmetrics.h, ~3 ns). A scrape sums every member's cells
 * and writes the Prometheus text; with 10,000 series that is ~5 ms of CPU,
 * too long for a loop that must never wait more than a millisecond. So a
 * task that asks for the text (core.metrics.format) parks while a
 * short-lived thread formats it -- the thread reads shared memory only,
 * never Lua -- and is resumed through an ev_async with the text; the loop
 * only copies the result into a Lua string. Outside a task (a script's
 * main chunk) the text is made in place.
 *
 * Lifetime of a scrape: the job is shared by the thread and the loop, the
 * state by the loop and its running threads, freed by whichever lets go
 * last (`refs`); once the loop is gone (`dead`) a finishing thread frees
 * its job (resolve.c's scheme).
 *
 * Lag: a one-shot timer re-armed each `interval`; when it fires, how much
 * later than due it runs (by the real clock) is the time the loop was
 * busy with other work -- the lag every callback sees. It is observed
 * into a histogram series the Lua side registered. The timer is unref'd:
 * the sampler never keeps run() going.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "core.h"
#include "monotime.h"
#include "shm.h"
#include "shmetrics.h"

static pthread_mutex_t metrics_mu = PTHREAD_MUTEX_INITIALIZER;
static struct shmetrics metrics_store;
static int metrics_ok;

struct mjob {
  struct mjob *next;
  struct mstate *ms;
  struct waiter w;
  struct buf out;
  int rc;
  double secs;          /* formatting time, CPU of its thread */
};

struct mstate {
  struct loop *loop;
  pthread_mutex_t mu;
  struct mjob *done;    /* finished scrapes, newest first */
  int refs;             /* the loop + running threads */
  int dead;             /* the loop is gone */
  ev_async async;
  ev_timer tick;
  double interval;      /* seconds between samples; 0: stopped */
  double due;           /* when the tick should fire (real clock) */
  double lastlag;
  int lag_series;       /* histogram of the lag, or -1 */
  int collect;          /* registry ref: the Lua collector, or LUA_NOREF */
};

/* The store, attached on first use (the region is made if need be). */
static struct shmetrics *metrics_get(lua_State *L) {
  if (metrics_ok)
    return &metrics_store;
  struct shm *r = shared_region(L); /* may raise: before the mutex */
  pthread_mutex_lock(&metrics_mu);
  int rc = metrics_ok ? 0 : shmetrics_attach(&metrics_store, r, NULL);
  if (rc == 0)
    metrics_ok = 1;
  pthread_mutex_unlock(&metrics_mu);
  if (rc < 0)
    luaL_error(L, "metrics: cannot make the store: %s",
               rc == -ENOSPC ? "the shared region is full" : strerror(-rc));
  return &metrics_store;
}

/* ------------------------------------------------------------ updates */

static const char *const metrics_types[] = {"counter", "gauge", "histogram",
                                            NULL};

/* Read the strings of the array at idx into out[] (at most max). */
static size_t metrics_strings(lua_State *L, int idx, const char **out,
                              size_t max, const char *what) {
  if (lua_isnoneornil(L, idx))
    return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  size_t n = (size_t)luaL_len(L, idx);
  if (n > max)
    luaL_error(L, "metrics: too many %s (at most %d)", what, (int)max);
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
    out[i] = lua_tostring(L, -1);
    if (out[i] == NULL)
      luaL_error(L, "metrics: %s must be strings", what);
    lua_pop(L, 1); /* the table keeps the string alive */
  }
  return n;
}

static size_t metrics_bounds(lua_State *L, int idx, double *out) {
  if (lua_isnoneornil(L, idx))
    return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  size_t n = (size_t)luaL_len(L, idx);
  if (n > SHMETRICS_BOUNDS_MAX)
    luaL_error(L, "metrics: at most %d buckets", SHMETRICS_BOUNDS_MAX);
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
    out[i] = luaL_checknumber(L, -1);
    lua_pop(L, 1);
  }
  return n;
}

/* register(type, name, help, labelnames, labelvalues, bounds) -> series:
 * the same family and labels give the same series in every member. */
static int metrics_register(lua_State *L) {
  struct shmetrics *m = metrics_get(L);
  int type = luaL_checkoption(L, 1, NULL, metrics_types) + SHMETRICS_COUNTER;
  const char *name = luaL_checkstring(L, 2);
  const char *help = luaL_optstring(L, 3, "");
  const char *names[SHMETRICS_LABELS_MAX], *values[SHMETRICS_LABELS_MAX];
  struct shmetrics_label labels[SHMETRICS_LABELS_MAX];
  double bounds[SHMETRICS_BOUNDS_MAX];
  size_t n = metrics_strings(L, 4, names, SHMETRICS_LABELS_MAX, "labels");
  if (metrics_strings(L, 5, values, SHMETRICS_LABELS_MAX, "label values") != n)
    return luaL_error(L, "metrics: %s: %d label names but a different number "
                      "of values", name, (int)n);
  size_t nb = metrics_bounds(L, 6, bounds);
  for (size_t i = 0; i < n; i++)
    labels[i] = (struct shmetrics_label){names[i], values[i]};
  int rc = shmetrics_register(m, type, name, help, labels, n, bounds, nb);
  if (rc == -EEXIST)
    return luaL_error(L, "metrics: %s is already registered as another type "
                      "or with other buckets", name);
  if (rc == -ENOSPC)
    return luaL_error(L, "metrics: the store is full (%d series)",
                      (int)shmetrics_count(m));
  if (rc < 0)
    return luaL_error(L, "metrics: %s: invalid name, label or buckets", name);
  lua_pushinteger(L, rc);
  return 1;
}

static int metrics_series(lua_State *L) {
  return (int)luaL_checkinteger(L, 1);
}

/* add(series, v): a counter (v >= 0) or a gauge. */
static int metrics_add(lua_State *L) {
  int s = metrics_series(L);
  double v = luaL_checknumber(L, 2);
  if (shmetrics_add(metrics_get(L), shared_slot(), s, v) < 0)
    return luaL_error(L, "metrics: a counter only goes up (got %f), or "
                      "not a counter or gauge", v);
  return 0;
}

static int metrics_set(lua_State *L) {
  int s = metrics_series(L);
  double v = luaL_checknumber(L, 2);
  if (shmetrics_set(metrics_get(L), shared_slot(), s, v) < 0)
    return luaL_error(L, "metrics: set: not a gauge");
  return 0;
}

static int metrics_observe(lua_State *L) {
  int s = metrics_series(L);
  double v = luaL_checknumber(L, 2);
  if (shmetrics_observe(metrics_get(L), shared_slot(), s, v) < 0)
    return luaL_error(L, "metrics: observe: not a histogram, or NaN");
  return 0;
}

static int metrics_count(lua_State *L) {
  lua_pushinteger(L, shmetrics_count(metrics_get(L)));
  return 1;
}

/* ------------------------------------------------------------- scrape */

static void mstate_unref(struct mstate *ms) {
  pthread_mutex_lock(&ms->mu);
  int last = --ms->refs == 0;
  pthread_mutex_unlock(&ms->mu);
  if (last) {
    pthread_mutex_destroy(&ms->mu);
    free(ms);
  }
}

static void *metrics_thread(void *arg) {
  struct mjob *j = arg;
  struct mstate *ms = j->ms;
  double t0 = monotime_now();
  j->rc = shmetrics_format(&metrics_store, &j->out);
  j->secs = monotime_now() - t0;
  pthread_mutex_lock(&ms->mu);
  if (ms->dead) {
    buf_free(&j->out);
    free(j);
  } else {
    j->next = ms->done;
    ms->done = j;
    ev_async_send(ms->loop->ev, &ms->async);
  }
  pthread_mutex_unlock(&ms->mu);
  mstate_unref(ms);
  return NULL;
}

static void metrics_jobfree(struct mjob *j) {
  buf_free(&j->out);
  free(j);
}

/* On the loop: resume each task whose text is ready. */
static void metrics_async_cb(struct ev_loop *ev, ev_async *w, int revents) {
  (void)revents;
  struct mstate *ms = w->data;
  pthread_mutex_lock(&ms->mu);
  struct mjob *j = ms->done;
  ms->done = NULL;
  pthread_mutex_unlock(&ms->mu);
  while (j != NULL) {
    struct mjob *next = j->next;
    ev_unref(ev); /* this scrape no longer keeps the loop running */
    struct task *t = waiter_take(&j->w);
    if (t != NULL)
      sched_resume(ms->loop, t); /* its continuation frees the job */
    else
      metrics_jobfree(j); /* the task ended meanwhile (shutdown) */
    j = next;
  }
}

static void mstate_free(struct loop *lp, void *ud) {
  struct mstate *ms = ud;
  lp->metrics = NULL;
  ev_ref(lp->ev);
  ev_async_stop(lp->ev, &ms->async);
  if (ev_is_active(&ms->tick)) {
    ev_ref(lp->ev);
    ev_timer_stop(lp->ev, &ms->tick);
  }
  pthread_mutex_lock(&ms->mu);
  ms->dead = 1;
  struct mjob *j = ms->done;
  ms->done = NULL;
  pthread_mutex_unlock(&ms->mu);
  while (j != NULL) {
    struct mjob *next = j->next;
    metrics_jobfree(j);
    j = next;
  }
  mstate_unref(ms);
}

static void metrics_tick_cb(struct ev_loop *ev, ev_timer *w, int revents);

static struct mstate *mstate_get(lua_State *L, struct loop *lp) {
  if (lp->metrics != NULL)
    return lp->metrics;
  struct mstate *ms = calloc(1, sizeof *ms);
  if (ms == NULL || pthread_mutex_init(&ms->mu, NULL) != 0) {
    free(ms);
    luaL_error(L, "not enough memory");
  }
  ms->refs = 1;
  ms->loop = lp;
  ms->lag_series = -1;
  ms->collect = LUA_NOREF;
  ev_async_init(&ms->async, metrics_async_cb);
  ms->async.data = ms;
  ev_async_start(lp->ev, &ms->async);
  ev_unref(lp->ev); /* only outstanding scrapes keep the loop alive */
  ev_init(&ms->tick, metrics_tick_cb);
  ms->tick.data = ms;
  lp->metrics = ms;
  loop_atclose(L, lp, mstate_free, ms);
  return ms;
}

/* ------------------------------------------------------- MetricsText */

/* The text of a scrape, in C memory: the loop never makes one big Lua
 * string of it (a copy of a megabyte, and a megabyte of GC debt, in one
 * iteration); the scrape handler sends it a slice per loop turn. */
#define CLS_MTEXT "berth.MetricsText"

struct mtext {
  struct buf b;
};

static struct mtext *mtext_check(lua_State *L) {
  return luaL_checkudata(L, 1, CLS_MTEXT);
}

/* Push a MetricsText that takes over *b (left empty). [-0, +1, m] */
static void mtext_push(lua_State *L, struct buf *b) {
  struct mtext *t = lua_newuserdatauv(L, sizeof *t, 0);
  t->b = (struct buf)BUF_INIT;
  luaL_setmetatable(L, CLS_MTEXT);
  t->b = *b;
  *b = (struct buf)BUF_INIT;
}

static int mtext_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)mtext_check(L)->b.len);
  return 1;
}

/* sub(i [, j]) -> bytes i..j, with string.sub's rules. */
static int mtext_sub(lua_State *L) {
  struct mtext *t = mtext_check(L);
  lua_Integer len = (lua_Integer)t->b.len;
  lua_Integer i = luaL_checkinteger(L, 2), j = luaL_optinteger(L, 3, -1);
  if (i < 0)
    i = i < -len ? 1 : len + i + 1;
  else if (i == 0)
    i = 1;
  if (j < 0)
    j = j < -len ? 0 : len + j + 1;
  else if (j > len)
    j = len;
  if (i > j)
    lua_pushliteral(L, "");
  else
    lua_pushlstring(L, buf_begin(&t->b) + i - 1, (size_t)(j - i + 1));
  return 1;
}

/* text() -> all of it as one string. */
static int mtext_text(lua_State *L) {
  struct mtext *t = mtext_check(L);
  lua_pushlstring(L, buf_begin(&t->b), t->b.len);
  return 1;
}

/* free(): release the memory now (also __close and __gc). */
static int mtext_free(lua_State *L) {
  buf_free(&mtext_check(L)->b);
  return 0;
}

static const luaL_Reg mtext_meta[] = {
  {"__len", mtext_len}, {"__gc", mtext_free}, {"__close", mtext_free},
  {NULL, NULL}
};
static const luaL_Reg mtext_methods[] = {
  {"len", mtext_len}, {"sub", mtext_sub}, {"text", mtext_text},
  {"free", mtext_free}, {NULL, NULL}
};

/* ------------------------------------------------------------- format */

static int metrics_format_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  struct mjob *j = (struct mjob *)ctx;
  int n = 2;
  if (j->rc < 0) {
    n = util_fail(L, "nomemory");
  } else {
    mtext_push(L, &j->out);
    lua_pushnumber(L, j->secs);
  }
  metrics_jobfree(j);
  return n;
}

/* In place, where no task can wait. -> MetricsText, seconds */
static int metrics_format_here(lua_State *L, struct shmetrics *m) {
  struct buf out = BUF_INIT;
  double t0 = monotime_now();
  int rc = shmetrics_format(m, &out);
  double secs = monotime_now() - t0;
  if (rc < 0) {
    buf_free(&out);
    return util_fail(L, "nomemory");
  }
  mtext_push(L, &out);
  lua_pushnumber(L, secs);
  return 2;
}

/* format([here]) -> the Prometheus text of every series of the group (a
 * MetricsText), and the seconds its formatting took | nil, "nomemory".
 * In a task, the text is made on a thread while the task waits; with
 * `here` (or outside a task) on the loop itself. */
static int metrics_format(lua_State *L) {
  struct loop *lp = lua_touserdata(L, lua_upvalueindex(1));
  struct shmetrics *m = metrics_get(L);
  if (lua_toboolean(L, 1) || !sched_canwait(L, lp))
    return metrics_format_here(L, m);
  struct mstate *ms = mstate_get(L, lp);
  struct mjob *j = calloc(1, sizeof *j);
  if (j == NULL)
    return luaL_error(L, "not enough memory");
  j->out = (struct buf)BUF_INIT;
  j->ms = ms;
  j->w = (struct waiter)WAITER_INIT;
  pthread_attr_t attr;
  pthread_t tid;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_mutex_lock(&ms->mu);
  ms->refs++;
  pthread_mutex_unlock(&ms->mu);
  int rc = pthread_create(&tid, &attr, metrics_thread, j);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    mstate_unref(ms);
    free(j);
    return metrics_format_here(L, m);
  }
  ev_ref(lp->ev); /* an outstanding scrape keeps run() going */
  return sched_park(L, lp, &j->w, (lua_KContext)j, metrics_format_k);
}

/* ------------------------------------------------------------ sampler */

static int metrics_collect_p(lua_State *L) {
  struct mstate *ms = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ms->collect);
  lua_pushnumber(L, ms->lastlag);
  sched_pcall(L, ms->loop, 1, 0, 0);
  return 0;
}

static void metrics_arm(struct mstate *ms) {
  struct ev_loop *ev = ms->loop->ev;
  ev_now_update(ev); /* due by the real clock, not the iteration's start */
  ms->due = ev_now(ev) + ms->interval;
  ev_timer_set(&ms->tick, ms->interval, 0);
  ev_timer_start(ev, &ms->tick);
}

static void metrics_tick_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)revents;
  struct mstate *ms = w->data;
  ev_now_update(ev);
  double lag = ev_now(ev) - ms->due;
  ms->lastlag = lag > 0 ? lag : 0;
  if (ms->lag_series >= 0 && metrics_ok)
    shmetrics_observe(&metrics_store, shared_slot(), ms->lag_series,
                      ms->lastlag);
  ev_ref(ev); /* the timer stays unref'd while it runs again */
  metrics_arm(ms);
  ev_unref(ev);
  if (ms->collect != LUA_NOREF)
    loop_pcall(ms->loop, metrics_collect_p, ms);
}

/* start(interval, lag_series|nil, collect|nil): sample every `interval`
 * seconds: the lag into the histogram, then collect(lag) (protected).
 * Again: replaces the settings. */
static int metrics_start(lua_State *L) {
  struct loop *lp = lua_touserdata(L, lua_upvalueindex(1));
  double interval = check_time(L, 1, "metrics.start: interval", 0.1);
  if (!(interval > 0) || isinf(interval))
    return luaL_error(L, "metrics.start: interval must be > 0");
  int series = lua_isnoneornil(L, 2) ? -1 : (int)luaL_checkinteger(L, 2);
  if (!lua_isnoneornil(L, 3))
    luaL_checktype(L, 3, LUA_TFUNCTION);
  metrics_get(L);
  struct mstate *ms = mstate_get(L, lp);
  lua_settop(L, 3);
  int ref = lua_isnil(L, 3) ? LUA_NOREF : luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_unref(L, LUA_REGISTRYINDEX, ms->collect);
  ms->collect = ref;
  ms->lag_series = series;
  ms->interval = interval;
  if (ev_is_active(&ms->tick)) {
    ev_ref(lp->ev);
    ev_timer_stop(lp->ev, &ms->tick);
  }
  metrics_arm(ms);
  ev_unref(lp->ev); /* sampling never keeps run() going */
  return 0;
}

static int metrics_stop(lua_State *L) {
  struct loop *lp = lua_touserdata(L, lua_upvalueindex(1));
  struct mstate *ms = lp->metrics;
  if (ms != NULL && ev_is_active(&ms->tick)) {
    ev_ref(lp->ev);
    ev_timer_stop(lp->ev, &ms->tick);
    luaL_unref(L, LUA_REGISTRYINDEX, ms->collect);
    ms->collect = LUA_NOREF;
  }
  return 0;
}

/* cpu() -> CPU seconds this thread (the loop's) has used: what the loop
 * itself spent, without the scrape threads or the time it was preempted
 * (the benchmarks and specs measure a scrape's cost to the loop so). */
static int metrics_cpu(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
  return 1;
}

/* lag() -> the last sampled lag in seconds (0 before the first). */
static int metrics_lag(lua_State *L) {
  struct loop *lp = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushnumber(L, lp->metrics ? lp->metrics->lastlag : 0);
  return 1;
}

static const luaL_Reg metrics_funcs[] = {
  {"register", metrics_register},
  {"add", metrics_add},
  {"set", metrics_set},
  {"observe", metrics_observe},
  {"count", metrics_count},
  {"format", metrics_format},
  {"start", metrics_start},
  {"stop", metrics_stop},
  {"lag", metrics_lag},
  {"cpu", metrics_cpu},
  {NULL, NULL}
};

/* Takes the loop from the top; pushes core.metrics. [-1, +1, m] */
void metrics_open(lua_State *L) {
  if (luaL_getmetatable(L, CLS_MTEXT) == LUA_TNIL) {
    util_newclass(L, CLS_MTEXT, mtext_meta, mtext_methods);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  luaL_newlibtable(L, metrics_funcs);
  lua_rotate(L, -2, 1); /* stack: M, loop */
  luaL_setfuncs(L, metrics_funcs, 1);
}
