/*
 * loop.c -- the loop object: one struct loop per berth loop (a userdata of
 * class berth.Loop). It owns the ev_loop, the anchor table, the shared
 * scratch buffer and the list of cleanups that free the per-loop state of
 * the other files; it knows nothing of what those files keep.
 *
 * Invariants: lp->L is non-NULL exactly while ev_run is on the C stack, and
 * only then can watcher callbacks run; callbacks touch Lua only through
 * lp->L and only inside loop_pcall (R2). The ev_loop is destroyed last, in
 * the loop's __gc (L6): every object keeps its loop alive through a user
 * value, and the loop got its metatable first, so it is finalized after
 * all of them.
 *
 * The anchor table is the loop's user value 1, found through the weak
 * registry table of loops: nothing roots it but the loop, so a loop Lua
 * dropped is collected together with what it anchored (9.15). While the
 * loop itself is being finalized the lookup finds nothing; anchoring is
 * moot then, and loop_keep just clears the flag.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "logfmt.h"

#define LOOP_UV_ANCHORS 1

/* registry[&loops_key]: a weak table from a loop's address to its
 * userdata, so C holding only the struct can reach the userdata. */
static char loops_key;

struct cleanup {
  struct cleanup *next;
  void (*fn)(struct loop *, void *);
  void *ud;
};

static void loop_wakeup_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)ev; (void)w; (void)revents; /* only ends the blocking poll */
}

/* Release everything but what Lua itself frees. */
static int loop__gc(lua_State *L) {
  struct loop *lp = luaL_checkudata(L, 1, CLS_LOOP);
  if (lp->ev == NULL)
    return 0;
  luaL_unref(L, LUA_REGISTRYINDEX, lp->logger);
  lp->logger = LUA_NOREF;
  while (lp->cleanups != NULL) {
    struct cleanup *c = lp->cleanups;
    lp->cleanups = c->next;
    c->fn(lp, c->ud);
    free(c);
  }
  ev_timer_stop(lp->ev, &lp->wakeup);
  ev_loop_destroy(lp->ev);
  lp->ev = NULL;
  free(lp->scratch);
  lp->scratch = NULL;
  buf_free(&lp->spare);
  return 0;
}

static int loop__tostring(lua_State *L) {
  lua_pushfstring(L, "Loop (%p)", lua_touserdata(L, 1));
  return 1;
}

struct loop *loop_check(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, CLS_LOOP);
}

void loop_atclose(lua_State *L, struct loop *lp,
                  void (*fn)(struct loop *, void *), void *ud) {
  struct cleanup *c = malloc(sizeof *c);
  if (c == NULL) {
    fn(lp, ud); /* nothing will free it later: do it now */
    luaL_error(L, "not enough memory");
  }
  c->fn = fn;
  c->ud = ud;
  c->next = lp->cleanups;
  lp->cleanups = c;
}

static void loop_register(lua_State *L, struct loop *lp) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &loops_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &loops_key);
  }
  lua_pushvalue(L, -2);
  lua_rawsetp(L, -2, lp);
  lua_pop(L, 1);
}

/* Push the loop's userdata; returns 0 (and pushes nil) once it is being
 * finalized. [-0, +1, -] */
static int loop_pushself(lua_State *L, struct loop *lp) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &loops_key) != LUA_TTABLE)
    return 0;
  int t = lua_rawgetp(L, -1, lp);
  lua_remove(L, -2);
  return t == LUA_TUSERDATA;
}

/* Push the anchor table, or nil while the loop is being finalized. */
static int loop_pushanchors(lua_State *L, struct loop *lp) {
  if (!loop_pushself(L, lp))
    return 0;
  lua_getiuservalue(L, -1, LOOP_UV_ANCHORS);
  lua_remove(L, -2);
  return 1;
}

void *loop_newobject(lua_State *L, struct loop *lp, size_t size, int nuv) {
  void *p = lua_newuserdatauv(L, size, nuv);
  if (!loop_pushself(L, lp))
    luaL_error(L, "berth: the loop is gone");
  lua_setiuservalue(L, -2, UV_LOOP);
  return p;
}

void *loop_newobjectby(lua_State *L, int idx, size_t size, int nuv) {
  idx = lua_absindex(L, idx);
  void *p = lua_newuserdatauv(L, size, nuv);
  if (lua_getiuservalue(L, idx, UV_LOOP) != LUA_TUSERDATA)
    luaL_error(L, "berth: the loop is gone");
  lua_setiuservalue(L, -2, UV_LOOP);
  return p;
}

/* [-0, +1, m] the new loop userdata */
struct loop *loop_new(lua_State *L) {
  struct loop *lp = lua_newuserdatauv(L, sizeof *lp, 1);
  memset(lp, 0, sizeof *lp);
  lp->logger = LUA_NOREF;
  lp->limits = (struct limits)LIMITS_DEFAULT;
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
  ev_init(&lp->wakeup, loop_wakeup_cb);
  lua_newtable(L);
  lua_setiuservalue(L, -2, LOOP_UV_ANCHORS);
  loop_register(L, lp);
  return lp;
}

void loop_keep(lua_State *L, struct loop *lp, const void *key, int idx,
               unsigned char *flag, int want) {
  if (!*flag == !want)
    return;
  idx = idx ? lua_absindex(L, idx) : 0;
  BERTH_ASSERT("loop_keep: anchoring needs the object", !want || idx);
  if (loop_pushanchors(L, lp)) {
    if (want)
      lua_pushvalue(L, idx);
    else
      lua_pushnil(L); /* removing a key allocates nothing: cannot raise */
    lua_rawsetp(L, -2, key);
  }
  lua_pop(L, 1);
  *flag = (unsigned char)(want != 0);
  lp->nanchors += want ? 1 : -1;
}

int loop_pushanchored(lua_State *L, struct loop *lp, const void *key) {
  if (!loop_pushanchors(L, lp))
    return LUA_TNIL;
  int t = lua_rawgetp(L, -1, key);
  lua_remove(L, -2);
  return t;
}

void loop_pushanchorlist(lua_State *L, struct loop *lp) {
  lua_newtable(L);
  int list = lua_gettop(L);
  lua_Integer n = 0;
  if (!loop_pushanchors(L, lp)) {
    lua_pop(L, 1);
    return;
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_rawseti(L, list, ++n);
  }
  lua_pop(L, 1);
}

/* Message handler: the error with a traceback of where it was raised. */
static int loop_msgh(lua_State *L) {
  const char *msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* One record straight to stderr: `prefix` then text[0..len). Used where
 * no Lua logger can be called. */
static void loop_logtext(const char *level, const char *prefix,
                         const char *text, size_t len) {
  char stack[1024];
  size_t n = strlen(prefix);
  char *line = n + len <= sizeof stack ? stack : malloc(n + len);
  if (line == NULL) { /* out of memory: the text alone, still one record */
    logfmt_emit(level, NULL, text, len);
    return;
  }
  memcpy(line, prefix, n); /* NOLINT(bugprone-not-null-terminated-result): a length, not a C string */
  memcpy(line + n, text, len);
  logfmt_emit(level, NULL, line, n + len);
  if (line != stack)
    free(line);
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
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len); /* loop_msgh made it */
    loop_logtext("error", "internal error: ", msg ? msg : "?", len);
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

/* Log through the Lua logger when one is set and the loop runs (berth.log
 * decides what is shown, and adds the connection being handled); else one
 * record straight to stderr. */
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
  logfmt_emit(level, NULL, text, strlen(text));
}

/* ev_run on behalf of thread L. Re-entry would let callbacks resume tasks
 * from inside a task or a callback, so it is refused (R7) -- before
 * anything is armed, so the error leaves nothing behind (9.1). */
int loop_run(lua_State *L, struct loop *lp, int mode) {
  if (lp->L != NULL)
    return luaL_error(L, "berth: the loop is already running (run and step "
                         "cannot be called from a task or a callback)");
  lp->L = L;
  int alive = ev_run(lp->ev, mode);
  lp->L = NULL;
  return alive;
}

/* timeout 0: do not block; < 0: block until something happens. */
int loop_step(lua_State *L, struct loop *lp, double timeout) {
  if (lp->L != NULL)
    return loop_run(L, lp, 0); /* raises */
  if (timeout == 0)
    return loop_run(L, lp, EVRUN_NOWAIT);
  if (timeout < 0)
    return loop_run(L, lp, EVRUN_ONCE);
  ev_timer_set(&lp->wakeup, timeout, 0);
  ev_timer_start(lp->ev, &lp->wakeup);
  int alive = loop_run(L, lp, EVRUN_ONCE);
  ev_timer_stop(lp->ev, &lp->wakeup);
  return alive;
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
