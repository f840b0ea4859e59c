/*
 * module.c -- luaopen_berth_core: the `berth.core` module table. Each
 * function receives its loop as upvalue 1. The state's default loop lives
 * in the registry until lua_close, so it is finalized after every object
 * that points to it (L6); core.newloop() makes another table bound to a new
 * loop, which lives as long as that table or any of its objects.
 */
#include <errno.h>

#include "berth.h"
#include "check.h"
#include "core.h"
#include "options.h"

#define LOOP_REGKEY "berth.loop"

static struct loop *m_loop(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

static int m_spawn(lua_State *L) {
  struct loop *lp = m_loop(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = sched_new(L, lp, 0, lua_gettop(L) - 1);
  sched_queue(L, lp, co);
  return 1;
}

static int m_now(lua_State *L) {
  lua_pushnumber(L, ev_now(m_loop(L)->ev));
  return 1;
}

static void m_checktop(lua_State *L, struct loop *lp, const char *what) {
  if (lp->current != NULL)
    luaL_error(L, "%s: cannot run the loop from inside a task", what);
}

static int m_run(lua_State *L) {
  struct loop *lp = m_loop(L);
  m_checktop(L, lp, "run");
  loop_run(L, lp, 0);
  lua_pushboolean(L, 1);
  return 1;
}

static void m_wakeup(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)ev; (void)w; (void)revents; /* only ends the blocking poll */
}

/* One iteration; blocks at most `timeout` seconds (0: never). Returns
 * whether the loop still has work. */
static int m_step(lua_State *L) {
  struct loop *lp = m_loop(L);
  double timeout = luaL_optnumber(L, 1, 0);
  m_checktop(L, lp, "step");
  int alive;
  if (timeout <= 0) {
    alive = loop_run(L, lp, EVRUN_NOWAIT);
  } else {
    ev_timer bound;
    ev_timer_init(&bound, m_wakeup, timeout, 0);
    ev_timer_start(lp->ev, &bound);
    alive = loop_run(L, lp, EVRUN_ONCE);
    ev_timer_stop(lp->ev, &bound);
  }
  lua_pushboolean(L, alive);
  return 1;
}

static int m_stop(lua_State *L) {
  ev_break(m_loop(L)->ev, EVBREAK_ALL);
  return 0;
}

static int m_shutdown(lua_State *L) {
  loop_shutdown(L, m_loop(L), luaL_optnumber(L, 1, BERTH_GRACE));
  return 0;
}

static int m_stats(lua_State *L) {
  loop_stats(L, m_loop(L));
  return 1;
}

/* Replace a registry-held function; returns the previous one (or nil). */
static int m_setref(lua_State *L, int *ref) {
  if (!lua_isnil(L, 1))
    luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, *ref);
  luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  lua_pushvalue(L, 1);
  *ref = lua_isnil(L, 1) ? LUA_NOREF : luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static int m_onerror(lua_State *L) { return m_setref(L, &m_loop(L)->onerror); }
static int m_setlogger(lua_State *L) { return m_setref(L, &m_loop(L)->logger); }

static int m_suspend_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return lua_gettop(L); /* what wake() pushed */
}

/* suspend() -> the values given to wake(). Task only. The caller must make
 * sure exactly one wake() follows (lua/berth/sync.lua keeps the books). */
static int m_suspend(lua_State *L) {
  sched_checktask(L, m_loop(L), "suspend");
  lua_settop(L, 0);
  return sched_park(L, 0, m_suspend_k);
}

/* wake(co, ...): queue a task parked in suspend(), with values. */
static int m_wake(lua_State *L) {
  struct loop *lp = m_loop(L);
  lua_State *co = lua_tothread(L, 1);
  luaL_argcheck(L, co != NULL && lua_status(co) == LUA_YIELD && co != L, 1,
                "a suspended task expected");
  int n = lua_gettop(L) - 1;
  if (!lua_checkstack(co, n))
    return luaL_error(L, "wake: too many values");
  lua_xmove(L, co, n);
  sched_queue(L, lp, co);
  return 0;
}

/* limits([table]) -> the defaults for servers listened to from now on,
 * and the loop-scope limits (cpu_budget: for tasks started from now on). */
static int m_limits(lua_State *L) {
  struct loop *lp = m_loop(L);
  if (!lua_isnoneornil(L, 1)) {
    options_check(L, 1, OPT_LIMITS);
    struct limits lim = lp->limits;
    limits_read(L, 1, &lim, LIMITS_ALL, "limits");
    lp->limits = lim;
    sched_setcpubudget(L, lp, lim.cpu_budget);
  }
  limits_push(L, &lp->limits, LIMITS_ALL);
  return 1;
}

/* The loop's backend descriptor (epoll): readable when I/O is ready, for
 * embedding in a foreign loop. Timers are not on it: step() at least as
 * often as the shortest timeout needs.
 * libev 4.33 has no public accessor, but ev_embed_start sets the public
 * io.fd of an ev_embed to exactly this descriptor: embed the loop into a
 * throwaway loop for a moment and read it there. */
static int m_fd(lua_State *L) {
  struct loop *lp = m_loop(L);
  if (!(ev_backend(lp->ev) & ev_embeddable_backends()))
    return util_fail(L, "unsupported");
  struct ev_loop *tmp = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
  if (tmp == NULL)
    return util_failerr(L, ENOMEM);
  ev_embed probe;
  ev_embed_init(&probe, NULL, lp->ev);
  ev_embed_start(tmp, &probe);
  int fd = probe.io.fd;
  ev_embed_stop(tmp, &probe);
  ev_loop_destroy(tmp);
  lua_pushinteger(L, fd);
  return 1;
}

static int m_newloop(lua_State *L);

static const luaL_Reg m_funcs[] = {
  {"listen", srv_listen},
  {"connect", sock_connect},
  {"adopt", sock_adopt},
  {"resolve", resolve_lookup},
  {"spawn", m_spawn},
  {"suspend", m_suspend},
  {"wake", m_wake},
  {"sleep", timer_sleep},
  {"timer", timer_new},
  {"signal", timer_signal},
  {"watch", timer_watch},
  {"now", m_now},
  {"run", m_run},
  {"step", m_step},
  {"stop", m_stop},
  {"shutdown", m_shutdown},
  {"stats", m_stats},
  {"limits", m_limits},
  {"fd", m_fd},
  {"newloop", m_newloop},
  {"onerror", m_onerror},
  {"setlogger", m_setlogger},
  {NULL, NULL}
};

/* The module table for the loop at the top; pops it. [-1, +1, m] */
static void m_pushcore(lua_State *L) {
  luaL_newlibtable(L, m_funcs);           /* stack: loop, M */
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, m_funcs, 1);
  luaL_getmetatable(L, CLS_SOCKET);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "Socket");
  luaL_getmetatable(L, CLS_SERVER);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -4, "ServerSocket");
  lua_pop(L, 2);
  lua_pushliteral(L, BERTH_VERSION);
  lua_setfield(L, -2, "version");
  proc_open(L);
  lua_setfield(L, -2, "proc");
  check_open(L);
  lua_setfield(L, -2, "check");
  options_open(L);
  lua_setfield(L, -2, "options");
  lua_remove(L, -2);
}

static int m_newloop(lua_State *L) {
  loop_new(L);
  m_pushcore(L);
  return 1;
}

int luaopen_berth_core(lua_State *L) {
  sock_open(L);
  srv_open(L);
  timer_open(L);
  lua_pop(L, 2);
  loop_new(L);                            /* stack: loop */
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, LOOP_REGKEY);
  m_pushcore(L);
  return 1;
}
