/*
 * signal.c -- berth.signal (class berth.Signal): run a callback in a new
 * task on each delivery of a signal.
 *
 * A Signal is anchored while armed (C holds it, no task does). Its watcher
 * is unref'd: signals never keep berth.run() going by themselves.
 *
 * One loop per signal per process: libev can deliver a signal to one loop
 * only, and aborts the process when a second loop asks for it. Which loop
 * owns which signal is therefore process-wide state, kept here under a
 * lock (loops may live in different threads): a second loop asking for a
 * signal gets a Lua error naming it instead (9.4). Watchers of the same
 * loop share the signal freely.
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "core.h"

#define SIGNAL_UV_FN 2 /* the callback (1 is the loop) */

struct sigw {
  struct loop *loop;
  ev_signal w;
  unsigned char anchored;
};

static const struct { const char *name; int signo; } signames[] = {
  {"INT", SIGINT}, {"TERM", SIGTERM}, {"HUP", SIGHUP}, {"QUIT", SIGQUIT},
  {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"CHLD", SIGCHLD},
  {"WINCH", SIGWINCH}, {"ALRM", SIGALRM}, {"PIPE", SIGPIPE}, {NULL, 0}
};

/* The process-wide owners: which loop watches each signal, how often. */
static pthread_mutex_t owners_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
  const struct loop *loop;
  int watchers;
} owners[NSIG];

static int signal_claim(const struct loop *lp, int signo) {
  int ok;
  pthread_mutex_lock(&owners_mu);
  ok = owners[signo].watchers == 0 || owners[signo].loop == lp;
  if (ok) {
    owners[signo].loop = lp;
    owners[signo].watchers++;
  }
  pthread_mutex_unlock(&owners_mu);
  return ok;
}

static void signal_unclaim(int signo) {
  pthread_mutex_lock(&owners_mu);
  if (--owners[signo].watchers == 0)
    owners[signo].loop = NULL;
  pthread_mutex_unlock(&owners_mu);
}

static int signal_number(const char *name) {
  if (strncmp(name, "SIG", 3) == 0)
    name += 3;
  for (int i = 0; signames[i].name; i++)
    if (strcmp(signames[i].name, name) == 0)
      return signames[i].signo;
  return 0;
}

static const char *signal_name(int signo) {
  for (int i = 0; signames[i].name; i++)
    if (signames[i].signo == signo)
      return signames[i].name;
  return "?";
}

static int signal_fire(lua_State *L) {
  struct sigw *g = lua_touserdata(L, 1);
  loop_pushanchored(L, g->loop, g);
  lua_getiuservalue(L, 2, SIGNAL_UV_FN);
  lua_pushstring(L, signal_name(g->w.signum));
  sched_resume(g->loop, sched_spawn(L, g->loop, 1, NULL));
  return 0;
}

static void signal_cb(struct ev_loop *ev, ev_signal *w, int revents) {
  (void)ev; (void)revents;
  struct sigw *g = w->data;
  loop_pcall(g->loop, signal_fire, g);
}

/* Stop the watcher and give the signal back (idempotent). */
static void signal_stop(struct sigw *g) {
  if (!ev_is_active(&g->w))
    return;
  BERTH_ASSERT("the loop is finalized last", g->loop->ev != NULL);
  ev_ref(g->loop->ev);
  ev_signal_stop(g->loop->ev, &g->w);
  signal_unclaim(g->w.signum);
}

/* berth.signal(name, fn) -> Signal */
int signal_new(lua_State *L) {
  struct loop *lp = loop_check(L, lua_upvalueindex(1));
  const char *name = luaL_checkstring(L, 1);
  int signo = signal_number(name);
  luaL_argcheck(L, signo != 0, 1, "unknown signal name");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  struct sigw *g = loop_newobject(L, lp, sizeof *g, 2);
  memset(g, 0, sizeof *g);
  g->loop = lp;
  ev_signal_init(&g->w, signal_cb, signo);
  g->w.data = g;
  luaL_setmetatable(L, CLS_SIGNAL);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, SIGNAL_UV_FN);
  loop_keep(L, lp, g, -1, &g->anchored, 1);
  if (!signal_claim(lp, signo)) {
    loop_keep(L, lp, g, 0, &g->anchored, 0);
    return luaL_error(L, "signal: SIG%s is already watched by another berth "
                         "loop (a signal belongs to one loop per process)",
                      signal_name(signo));
  }
  ev_signal_start(lp->ev, &g->w);
  ev_unref(lp->ev);
  return 1;
}

static int signal_cancel(lua_State *L) {
  struct sigw *g = luaL_checkudata(L, 1, CLS_SIGNAL);
  signal_stop(g);
  loop_keep(L, g->loop, g, 0, &g->anchored, 0);
  lua_pushboolean(L, 1);
  return 1;
}

static int signal__gc(lua_State *L) {
  signal_stop(luaL_checkudata(L, 1, CLS_SIGNAL));
  return 0;
}

static const luaL_Reg signal_meta[] = {
  {"__gc", signal__gc}, {"__close", signal_cancel}, {NULL, NULL}
};
static const luaL_Reg signal_methods[] = {
  {"cancel", signal_cancel}, {NULL, NULL}
};

/* [-0, +0, m] */
void signal_open(lua_State *L) {
  util_newclass(L, CLS_SIGNAL, signal_meta, signal_methods);
  lua_pop(L, 1);
}
