/*
 * module.c -- luaopen_berth_core: the `berth.core` module table. Each
 * function receives the state's default loop as upvalue 1; the loop itself
 * lives in the registry until lua_close, so it is finalized after every
 * object that points to it (L6).
 */
#include "berth.h"
#include "core.h"

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
 * and the loop's cpu_budget for tasks started from now on. */
static int m_limits(lua_State *L) {
  struct loop *lp = m_loop(L);
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    struct limits lim = lp->limits;
    srv_readlimits(L, 1, &lim);
    lp->limits = lim;
    if (lua_getfield(L, 1, "cpu_budget") != LUA_TNIL)
      sched_setcpubudget(L, lp, lua_toboolean(L, -1) ? luaL_checknumber(L, -1) : 0);
    lua_pop(L, 1);
  }
  srv_pushlimits(L, &lp->limits);
  if (lp->cpu_budget > 0)
    lua_pushnumber(L, lp->cpu_budget);
  else
    lua_pushboolean(L, 0);
  lua_setfield(L, -2, "cpu_budget");
  return 1;
}

static const luaL_Reg m_funcs[] = {
  {"listen", srv_listen},
  {"connect", sock_connect},
  {"resolve", resolve_lookup},
  {"spawn", m_spawn},
  {"suspend", m_suspend},
  {"wake", m_wake},
  {"sleep", timer_sleep},
  {"timer", timer_new},
  {"signal", timer_signal},
  {"now", m_now},
  {"run", m_run},
  {"step", m_step},
  {"stop", m_stop},
  {"shutdown", m_shutdown},
  {"stats", m_stats},
  {"limits", m_limits},
  {"onerror", m_onerror},
  {"setlogger", m_setlogger},
  {NULL, NULL}
};

int luaopen_berth_core(lua_State *L) {
  struct loop *lp = loop_new(L);          /* stack: loop */
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, LOOP_REGKEY);
  luaL_newlibtable(L, m_funcs);           /* stack: loop, M */
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, m_funcs, 1);
  sock_open(L, lp);
  lua_setfield(L, -2, "Socket");
  srv_open(L, lp);
  lua_setfield(L, -2, "ServerSocket");
  timer_open(L, lp);
  lua_pushliteral(L, BERTH_VERSION);
  lua_setfield(L, -2, "version");
  lua_remove(L, -2);
  return 1;
}
