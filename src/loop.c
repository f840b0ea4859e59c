/*
 * loop.c -- the loop object: one struct loop per berth loop (a userdata of
 * class berth.Loop). It owns the ev_loop, the anchor table, the pending
 * queue, the shared scratch buffer and the shutdown sequence.
 *
 * Invariants: lp->L is non-NULL exactly while ev_run is on the C stack, and
 * only then can watcher callbacks run; callbacks touch Lua only through
 * lp->L and only inside loop_pcall (R2). The ev_loop is destroyed last, in
 * the loop's __gc (L6).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

static void loop_prepare_cb(struct ev_loop *ev, ev_prepare *w, int revents) {
  (void)ev; (void)revents;
  sched_drain((struct loop *)w->data);
}

/* Only exists to keep the poll from blocking while resumes are queued. */
static void loop_idle_cb(struct ev_loop *ev, ev_idle *w, int revents) {
  (void)ev; (void)revents;
  sched_drain((struct loop *)w->data);
}

static int loop_finish(lua_State *L);

static void loop_grace_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)ev; (void)revents;
  struct loop *lp = w->data;
  loop_pcall(lp, loop_finish, lp);
}

/* Release everything but what Lua itself frees. Runs from __gc, when no
 * callback can run any more: every object that could is collected first,
 * because each one keeps its loop alive through a user value. */
static int loop__gc(lua_State *L) {
  struct loop *lp = luaL_checkudata(L, 1, CLS_LOOP);
  if (lp->ev == NULL)
    return 0;
  luaL_unref(L, LUA_REGISTRYINDEX, lp->anchors);
  luaL_unref(L, LUA_REGISTRYINDEX, lp->onerror);
  luaL_unref(L, LUA_REGISTRYINDEX, lp->logger);
  lp->anchors = lp->onerror = lp->logger = LUA_NOREF;
  resolve_free(lp->resolver);
  lp->resolver = NULL;
  ev_ref(lp->ev); /* balance the unref of the prepare watcher */
  ev_prepare_stop(lp->ev, &lp->prepare);
  ev_idle_stop(lp->ev, &lp->idle);
  ev_timer_stop(lp->ev, &lp->grace);
  if (lp->inotify >= 0) {
    ev_ref(lp->ev);
    ev_io_stop(lp->ev, &lp->inotify_io);
    close(lp->inotify);
    lp->inotify = -1;
  }
  ev_loop_destroy(lp->ev);
  lp->ev = NULL;
  free(lp->queue);
  free(lp->scratch);
  lp->queue = NULL;
  lp->scratch = NULL;
  return 0;
}

static int loop__tostring(lua_State *L) {
  lua_pushfstring(L, "Loop (%p)", lua_touserdata(L, 1));
  return 1;
}

struct loop *loop_check(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, CLS_LOOP);
}

/* registry["berth.loops"]: a weak table from a loop's address to its
 * userdata, so C holding only the struct can give new objects their loop. */
#define LOOPS_REGKEY "berth.loops"

static void loop_register(lua_State *L, struct loop *lp) {
  if (luaL_getsubtable(L, LUA_REGISTRYINDEX, LOOPS_REGKEY) == 0) {
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
  }
  lua_pushvalue(L, -2);
  lua_rawsetp(L, -2, lp);
  lua_pop(L, 1);
}

void *loop_newobject(lua_State *L, struct loop *lp, size_t size, int nuv) {
  void *p = lua_newuserdatauv(L, size, nuv);
  lua_getfield(L, LUA_REGISTRYINDEX, LOOPS_REGKEY);
  lua_rawgetp(L, -1, lp);
  lua_remove(L, -2);
  lua_setiuservalue(L, -2, UV_LOOP);
  return p;
}

/* [-0, +1, m] the new loop userdata */
struct loop *loop_new(lua_State *L) {
  struct loop *lp = lua_newuserdatauv(L, sizeof *lp, 0);
  memset(lp, 0, sizeof *lp);
  lp->anchors = lp->onerror = lp->logger = LUA_NOREF;
  lp->limits = (struct limits)LIMITS_DEFAULT;
  lp->inotify = -1;
  if (luaL_newmetatable(L, CLS_LOOP)) {
    lua_pushcfunction(L, loop__gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, loop__tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_setmetatable(L, -2);
  lp->scratch = malloc(BERTH_SCRATCH);
  /* NOSIGMASK: a library must not change the process signal mask. */
  lp->ev = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
  if (lp->ev == NULL || lp->scratch == NULL)
    luaL_error(L, "berth: cannot create the event loop");
  lua_newtable(L);
  lp->anchors = luaL_ref(L, LUA_REGISTRYINDEX);
  ev_prepare_init(&lp->prepare, loop_prepare_cb);
  ev_idle_init(&lp->idle, loop_idle_cb);
  ev_init(&lp->grace, loop_grace_cb);
  lp->prepare.data = lp->idle.data = lp->grace.data = lp;
  ev_prepare_start(lp->ev, &lp->prepare);
  ev_unref(lp->ev); /* the prepare watcher alone must not keep run() going */
  loop_register(L, lp);
  return lp;
}

/* anchors[key] = value at idx [-0, +0, m] */
void loop_anchor(lua_State *L, struct loop *lp, const void *key, int idx) {
  idx = lua_absindex(L, idx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->anchors);
  lua_pushvalue(L, idx);
  lua_rawsetp(L, -2, key);
  lua_pop(L, 1);
  lp->nanchors++;
}

/* anchors[key] = nil; never raises: removing a key allocates nothing.
 * [-0, +0, -] */
void loop_unanchor(lua_State *L, struct loop *lp, const void *key) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->anchors);
  lua_pushnil(L);
  lua_rawsetp(L, -2, key);
  lua_pop(L, 1);
  lp->nanchors--;
}

/* Push anchors[key]; returns its type. [-0, +1, -] */
int loop_pushanchored(lua_State *L, struct loop *lp, const void *key) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->anchors);
  int t = lua_rawgetp(L, -1, key);
  lua_remove(L, -2);
  return t;
}

/* Message handler: the error with a traceback of where it was raised. */
static int loop_msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Run f(ud) protected on the running thread (R2). A failure here is a bug
 * in berth or an out-of-memory: report it and carry on serving. */
int loop_pcall(struct loop *lp, lua_CFunction f, void *ud) {
  lua_State *L = lp->L;
  lua_pushcfunction(L, loop_msgh);
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, ud);
  int st = lua_pcall(L, 1, 0, -3);
  if (st != LUA_OK) {
    fprintf(stderr, "berth: internal error: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return st;
}

struct logmsg {
  struct loop *lp;
  const char *level, *text;
};

static int loop_calllogger(lua_State *L) {
  struct logmsg *m = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, m->lp->logger);
  lua_pushstring(L, m->level);
  lua_pushstring(L, m->text);
  lua_call(L, 2, 0);
  return 0;
}

/* Log through the Lua logger when one is set and the loop runs; to stderr
 * otherwise (berth.log decides what is shown). */
void loop_log(struct loop *lp, const char *level, const char *fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is right above */
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (lp->L != NULL && lp->logger != LUA_NOREF) {
    struct logmsg m = {lp, level, text};
    loop_pcall(lp, loop_calllogger, &m);
    return;
  }
  fprintf(stderr, "berth [%s] %s\n", level, text);
}

/* ev_run on behalf of thread L. Re-entry would let callbacks resume tasks
 * from inside a task or a callback, so it is refused (R7). */
int loop_run(lua_State *L, struct loop *lp, int mode) {
  if (lp->L != NULL)
    return luaL_error(L, "berth: the loop is already running");
  lp->L = L;
  int alive = ev_run(lp->ev, mode);
  lp->L = NULL;
  return alive;
}

/* Step 2 and 3 of the shutdown order (L6): close every object the loop
 * still holds, waking its waiters with nil,"closed", then let them run. */
static int loop_finish(lua_State *L) {
  struct loop *lp = lua_touserdata(L, 1);
  ev_timer_stop(lp->ev, &lp->grace);
  lp->draining = 0;
  srv_closeall(L, lp);
  lua_newtable(L); /* the anchored objects, collected before closing any */
  int list = lua_gettop(L), n = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->anchors);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -1) == LUA_TUSERDATA)
      lua_rawseti(L, list, ++n);
    else
      lua_pop(L, 1);
  }
  lua_pop(L, 1);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    if (luaL_callmeta(L, -1, "__close"))
      lua_pop(L, 1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  sched_drain(lp);
  ev_break(lp->ev, EVBREAK_ALL);
  return 0;
}

/* Graceful stop: listeners close now; tasks get `grace` seconds; then
 * loop_finish closes what is left. Called again, it only shortens the wait. */
/* loop_finish runs `after` seconds from now, at the loop's top level. */
static void loop_finishin(struct loop *lp, double after) {
  ev_timer_stop(lp->ev, &lp->grace);
  ev_timer_set(&lp->grace, after, 0);
  ev_timer_start(lp->ev, &lp->grace);
}

void loop_shutdown(lua_State *L, struct loop *lp, double grace) {
  if (!lp->draining) {
    lp->draining = 1;
    srv_closeall(L, lp);
  }
  if (lp->ntasks == 0 || grace <= 0)
    loop_finishin(lp, 0);
  else if (!ev_is_active(&lp->grace) ||
           ev_timer_remaining(lp->ev, &lp->grace) > grace)
    loop_finishin(lp, grace);
}

/* Called by the scheduler when a task ends: a draining loop finishes as
 * soon as the last task is gone (at top level, via the grace timer). */
void loop_taskended(struct loop *lp) {
  if (lp->draining && lp->ntasks == 0)
    loop_finishin(lp, 0);
}

/* ev_now is the time the loop last woke up; Lua code that blocked (a
 * popen, a long computation) leaves it stale, and a deadline computed from
 * it would already be past. Refresh it for every timed wait. */
ev_tstamp loop_deadline(struct loop *lp, double timeout) {
  if (timeout < 0)
    return -1;
  ev_now_update(lp->ev);
  return ev_now(lp->ev) + timeout;
}

static void setint(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* [-0, +1, m] */
void loop_stats(lua_State *L, struct loop *lp) {
  lua_createtable(L, 0, 8);
  setint(L, "active", lp->active);
  setint(L, "total", lp->total);
  setint(L, "bytes_in", (lua_Integer)lp->bytes_in);
  setint(L, "bytes_out", (lua_Integer)lp->bytes_out);
  setint(L, "tasks", lp->ntasks);
  setint(L, "sockets", lp->nsockets);
  setint(L, "servers", lp->nservers);
  setint(L, "anchors", lp->nanchors);
}
