/*
 * module.c -- luaopen_berth_core: the `berth.core` module table. Each
 * function receives its loop as upvalue 1. The state's default loop lives
 * in the registry until lua_close, so it is finalized after every object
 * that points to it (L6); core.newloop() makes another table bound to a new
 * loop, which lives as long as that table or any of its objects.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "berth.h"
#include "check.h"
#include "core.h"
#include "logfmt.h"
#include "options.h"

#define LOOP_REGKEY "berth.loop"

static struct loop *m_loop(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* spawn(fn, ...) -> the task's coroutine; it starts at the next iteration. */
static int m_spawn(lua_State *L) {
  struct loop *lp = m_loop(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  struct task *t = sched_spawn(L, lp, lua_gettop(L) - 1, NULL);
  sched_queue(L, lp, t);
  return 1;
}

static int m_now(lua_State *L) {
  lua_pushnumber(L, ev_now(m_loop(L)->ev));
  return 1;
}

static int m_run(lua_State *L) {
  loop_run(L, m_loop(L), 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* One iteration; blocks at most `timeout` seconds (0: never; math.huge:
 * until something happens). Returns whether the loop still has work. */
static int m_step(lua_State *L) {
  double timeout = check_timeout(L, 1, "step: timeout", 0);
  lua_pushboolean(L, loop_step(L, m_loop(L), timeout));
  return 1;
}

static int m_stop(lua_State *L) {
  ev_break(m_loop(L)->ev, EVBREAK_ALL);
  return 0;
}

/* shutdown([grace [, delay]]): grace in seconds (default 10); math.huge
 * waits for the tasks as long as they take. delay: seconds during which
 * only draining() tells (default: the loop's drain_delay limit). */
static int m_shutdown(lua_State *L) {
  struct loop *lp = m_loop(L);
  double grace = check_time(L, 1, "shutdown: grace", BERTH_GRACE);
  double delay = check_time(L, 2, "shutdown: delay", lp->limits.drain_delay);
  shutdown_start(L, lp, grace, delay);
  return 0;
}

static int m_draining(lua_State *L) {
  lua_pushboolean(L, m_loop(L)->draining);
  return 1;
}

static int m_stats(lua_State *L) {
  struct loop *lp = m_loop(L);
  lua_createtable(L, 0, 8);
  sock_stats(L, lp);
  srv_stats(L, lp);
  dgram_stats(L, lp);
  lua_pushinteger(L, sched_ntasks(lp));
  lua_setfield(L, -2, "tasks");
  lua_pushinteger(L, sched_nerrors(lp));
  lua_setfield(L, -2, "errors");
  lua_pushinteger(L, lp->nanchors);
  lua_setfield(L, -2, "anchors");
  return 1;
}

static int m_onerror(lua_State *L) {
  if (!lua_isnil(L, 1))
    luaL_checktype(L, 1, LUA_TFUNCTION);
  sched_setonerror(L, m_loop(L), 1);
  return 1;
}

/* Replace the logger; returns the previous one (or nil). */
static int m_setlogger(lua_State *L) {
  struct loop *lp = m_loop(L);
  if (!lua_isnil(L, 1))
    luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->logger);
  luaL_unref(L, LUA_REGISTRYINDEX, lp->logger);
  lua_pushvalue(L, 1);
  lp->logger = lua_isnil(L, 1) ? LUA_NOREF : luaL_ref(L, LUA_REGISTRYINDEX);
  if (lua_isnil(L, 1))
    lua_pop(L, 1);
  return 1;
}

/* The peer of the Socket at idx as text, into buf; NULL if it is not a
 * Socket or the peer is unknown. */
static const char *m_peerof(lua_State *L, int idx, char *buf, size_t len) {
  struct sock *s = luaL_testudata(L, idx, CLS_SOCKET);
  if (s == NULL)
    return NULL;
  sock_peertext(s, buf, len);
  return buf[0] ? buf : NULL;
}

/* log(level, message [, peer]): one record on stderr, in one write
 * (logfmt.h), whatever the level (berth.log filters). `peer` is a string,
 * a Socket, false for none, or nil for the connection being handled: the
 * one the running task owns, or whose callback is running. */
static int m_log(lua_State *L) {
  const char *level = luaL_checkstring(L, 1);
  size_t len;
  lua_settop(L, 3); /* stack: level, message, peer */
  const char *msg = luaL_tolstring(L, 2, &len);
  char buf[NET_ADDRSTRLEN + 16];
  const char *peer = NULL;
  if (lua_type(L, 3) == LUA_TSTRING) {
    peer = lua_tostring(L, 3);
  } else if (lua_isnoneornil(L, 3)) {
    sched_pushowner(L);
    peer = m_peerof(L, -1, buf, sizeof buf);
  } else if (lua_toboolean(L, 3)) {
    peer = m_peerof(L, 3, buf, sizeof buf);
  }
  logfmt_emit(level, peer, msg, len);
  return 0;
}

/* logformat([name]) -> the record format in force ("text" or "json"),
 * after setting it to `name`. Process-wide, like stderr. */
static int m_logformat(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) {
    int f = logfmt_parse(luaL_checkstring(L, 1));
    if (f < 0)
      return luaL_error(L, "log format must be \"text\" or \"json\" (got "
                           "\"%s\")", lua_tostring(L, 1));
    logfmt_setup((enum logfmt_format)f, logfmt_worker(), logfmt_master());
  }
  lua_pushstring(L, logfmt_name(logfmt_current()));
  return 1;
}

/* realpath(path) -> the canonical absolute path (symbolic links and "."
 * and ".." resolved), or nil, code, errno. Hot reload uses it to tell the
 * application's modules from the libraries'. */
static int m_realpath(lua_State *L) {
  char out[PATH_MAX];
  if (realpath(luaL_checkstring(L, 1), out) == NULL)
    return util_failerr(L, errno);
  lua_pushstring(L, out);
  return 1;
}

/* suspend() -> the values given to wake(). Task only. */
static int m_suspend(lua_State *L) {
  return sched_suspend(L, m_loop(L));
}

/* wake(task, ...) -> whether the task was suspended (and is now queued
 * with the values); waking twice wakes once (9.13). */
static int m_wake(lua_State *L) {
  lua_pushboolean(L, sched_wake(L, m_loop(L), 1, lua_gettop(L) - 1));
  return 1;
}

/* checkwait(what): raise unless the caller is a task that can wait now. */
static int m_checkwait(lua_State *L) {
  sched_checkwait(L, m_loop(L), luaL_optstring(L, 1, "wait"));
  return 0;
}

/* current() -> the running task's handle (for wake), or nil. */
static int m_current(lua_State *L) {
  sched_pushcurrent(L, m_loop(L));
  return 1;
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
  {"udp", dgram_new},
  {"connect", sock_connect},
  {"adopt", sock_adopt},
  {"resolve", resolve_lookup},
  {"buffer", lbuf_new},
  {"spawn", m_spawn},
  {"suspend", m_suspend},
  {"wake", m_wake},
  {"current", m_current},
  {"checkwait", m_checkwait},
  {"sleep", timer_sleep},
  {"timer", timer_new},
  {"signal", signal_new},
  {"watch", fwatch_new},
  {"now", m_now},
  {"run", m_run},
  {"step", m_step},
  {"stop", m_stop},
  {"shutdown", m_shutdown},
  {"draining", m_draining},
  {"stats", m_stats},
  {"limits", m_limits},
  {"fd", m_fd},
  {"newloop", m_newloop},
  {"onerror", m_onerror},
  {"setlogger", m_setlogger},
  {"log", m_log},
  {"logformat", m_logformat},
  {"realpath", m_realpath},
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
  luaL_getmetatable(L, CLS_DGRAM);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -5, "Datagram");
  lua_pop(L, 3);
  lua_pushliteral(L, BERTH_VERSION);
  lua_setfield(L, -2, "version");
  proc_open(L);
  lua_setfield(L, -2, "proc");
  check_open(L);
  lua_setfield(L, -2, "check");
  options_open(L);
  lua_setfield(L, -2, "options");
  lua_pushvalue(L, -2);
  stls_open(L);
  lua_setfield(L, -2, "tls");
  shared_open(L);
  lua_setfield(L, -2, "shared");
  lua_pushvalue(L, -2);
  busl_open(L);
  lua_setfield(L, -2, "bus");
  lua_pushvalue(L, -2);
  metrics_open(L);
  lua_setfield(L, -2, "metrics");
  lua_pushvalue(L, -2);
  sproxy_push(L);
  lua_setfield(L, -2, "proxy");
  http_push(L);
  lua_setfield(L, -2, "http");
  ws_push(L);
  lua_setfield(L, -2, "ws");
  lua_pushvalue(L, -2);
  resp_push(L);
  lua_setfield(L, -2, "resp");
  lua_remove(L, -2);
}

/* A loop with every file's per-loop state. [-0, +1, m] */
static struct loop *m_pushloop(lua_State *L) {
  struct loop *lp = loop_new(L);
  sched_init(L, lp);
  sock_init(L, lp);
  srv_init(L, lp);
  return lp;
}

static int m_newloop(lua_State *L) {
  m_pushloop(L);
  m_pushcore(L);
  return 1;
}

int luaopen_berth_core(lua_State *L) {
  lbuf_open(L); /* before sock_open: the I/O methods hold its metatable */
  sock_open(L);
  srv_open(L);
  dgram_open(L);
  lua_pop(L, 3);
  stls_classes(L);
  sproxy_open(L);
  timer_open(L);
  signal_open(L);
  fwatch_open(L);
  http_open(L);
  ws_open(L);
  relay_open(L);
  m_pushloop(L);                          /* stack: loop */
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, LOOP_REGKEY);
  m_pushcore(L);
  return 1;
}
