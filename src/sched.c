/*
 * sched.c -- tasks: the coroutines berth starts and parks. This is the only
 * file that calls lua_resume (R1).
 *
 * A task is anchored from sched_new until it ends, so C may hold its
 * lua_State* while it waits (L7): anchors[co] is the thread itself, or the
 * object the task owns (a handler's connection socket), which in turn holds
 * the thread in a user value. One table slot per task thus says both what
 * keeps the task alive and what to close when it ends. Waits yield the sentinel
 * (R3); any other yield reaching the scheduler is an error of that task.
 * Resumes run only at the loop's top level: directly from a watcher callback,
 * or through the pending queue when Lua code caused the wake-up (R7).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core.h"

static char sched_sentinel; /* its address is what every berth wait yields */
static char sched_hookkey;  /* registry: the loop, for the count hook */

#define HOOK_COUNT 10000     /* VM instructions between budget checks */

static double monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The runaway-handler check. A task over its CPU budget is made to yield
 * from inside the hook: unlike an error, a yield cannot be caught by the
 * handler's own pcall. Threads inherit their creator's hook, so nested
 * coroutines are covered too; their yield surfaces in the task, whose own
 * hook then yields it to the scheduler, which ends it. */
static void sched_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &sched_hookkey);
  struct loop *lp = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (lp == NULL || lp->current == NULL || lp->cpu_budget <= 0 ||
      monotonic() - lp->resumed_at <= lp->cpu_budget)
    return;
  lp->overrun = 1;
  if (L != lp->current) /* a nested coroutine: the task must follow it */
    lua_sethook(lp->current, sched_hook, LUA_MASKCOUNT, 1);
  if (lua_isyieldable(L)) {
    lua_yield(L, 0); /* from a hook it returns; the yield happens after */
    return;
  }
  luaL_error(L, "cpu budget exceeded"); /* inside a C call: the best we can */
}

/* The hook has only the thread; the registry slot names the loop whose
 * task is running. It is created here, where allocation may fail safely;
 * each resume then only overwrites it. */
void sched_setcpubudget(lua_State *L, struct loop *lp, double seconds) {
  lp->cpu_budget = seconds > 0 ? seconds : 0;
  lua_pushlightuserdata(L, lp);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &sched_hookkey);
}

/* Stack: fn, args (nargs). Pops them and pushes the new thread; the task
 * is anchored. With `owned` (a stack index, else 0) the caller must make
 * that object hold the thread before anything can collect it.
 * [-(nargs+1), +1, m] */
lua_State *sched_new(lua_State *L, struct loop *lp, int owned, int nargs) {
  if (owned)
    owned = lua_absindex(L, owned);
  lua_State *co = lua_newthread(L);
  loop_anchor(L, lp, co, owned ? owned : -1);
  lp->ntasks++;
  if (lp->cpu_budget > 0)
    lua_sethook(co, sched_hook, LUA_MASKCOUNT, HOOK_COUNT);
  lua_insert(L, -(nargs + 2));
  if (!lua_checkstack(co, nargs + 1))
    luaL_error(L, "berth: too many arguments for a task");
  lua_xmove(L, co, nargs + 1);
  return co;
}

/* Queue co for a resume at the top of the next loop iteration. [-0,+0,m] */
void sched_queue(lua_State *L, struct loop *lp, lua_State *co) {
  if (lp->qhead + lp->qlen == lp->qcap) {
    if (lp->qhead > 0) { /* slide the live part down before growing */
      for (size_t i = 0; i < lp->qlen; i++)
        lp->queue[i] = lp->queue[lp->qhead + i];
      lp->qhead = 0;
    }
    if (lp->qlen == lp->qcap) {
      size_t cap = lp->qcap ? lp->qcap * 2 : 64;
      /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
      lua_State **q = realloc(lp->queue, cap * sizeof *q);
      if (q == NULL)
        luaL_error(L, "berth: out of memory queueing a task");
      lp->queue = q;
      lp->qcap = cap;
    }
  }
  lp->queue[lp->qhead + lp->qlen++] = co;
  if (!ev_is_active(&lp->idle))
    ev_idle_start(lp->ev, &lp->idle);
}

/* Resume what was queued before this call; what those tasks queue waits
 * for the next iteration, so one busy task cannot starve the poll. */
void sched_drain(struct loop *lp) {
  size_t n = lp->qlen;
  while (n-- > 0 && lp->qlen > 0) {
    lua_State *co = lp->queue[lp->qhead++];
    if (--lp->qlen == 0)
      lp->qhead = 0;
    sched_resume(lp, co);
  }
  if (lp->qlen == 0 && ev_is_active(&lp->idle))
    ev_idle_stop(lp->ev, &lp->idle);
}

void sched_checktask(lua_State *L, struct loop *lp, const char *what) {
  if (L != lp->current)
    luaL_error(L, "%s: must be called from a berth task", what);
}

/* The one parking helper (R4): the caller has armed its watcher and
 * recorded the waiter; k retries the operation when the task is resumed. */
int sched_park(lua_State *L, lua_KContext ctx, lua_KFunction k) {
  lua_pushlightuserdata(L, &sched_sentinel);
  return lua_yieldk(L, 1, ctx, k);
}

/* Push the error handler for a task that owned the object at `idx`: its
 * server's on("error") for a connection socket, else the loop's default.
 * Returns 0 and pushes nothing when there is none. [-0, +(0|1), -] */
static int sched_pushhandler(lua_State *L, struct loop *lp, int idx) {
  int top = lua_gettop(L);
  if (luaL_testudata(L, idx, CLS_SOCKET) &&
      lua_getiuservalue(L, idx, SOCK_UV_SERVER) == LUA_TUSERDATA &&
      lua_getiuservalue(L, -1, SRV_UV_ONERROR) == LUA_TFUNCTION) {
    lua_remove(L, -2);
    return 1;
  }
  lua_settop(L, top);
  if (lua_rawgeti(L, LUA_REGISTRYINDEX, lp->onerror) == LUA_TFUNCTION)
    return 1;
  lua_pop(L, 1);
  return 0;
}

/* Report a task's error. Stack: err, traceback, owned; pops all three and
 * calls the handler protected: a failing handler is logged, nothing more. */
void sched_report(lua_State *L, struct loop *lp) {
  int top = lua_gettop(L);
  if (!sched_pushhandler(L, lp, top)) {
    fprintf(stderr, "berth: error in task: %s\n", lua_tostring(L, top - 1));
    lua_pop(L, 3);
    return;
  }
  lua_insert(L, top - 2); /* stack: handler, err, traceback, owned */
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    fprintf(stderr, "berth: error in error handler: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* Message handler keeping both the error and its traceback. */
static int sched_msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  luaL_traceback(L, L, msg, 1);
  lua_rawseti(L, -2, 2);
  return 1;
}

int sched_pcall(lua_State *L, struct loop *lp, int nargs, int ownidx) {
  ownidx = ownidx ? lua_absindex(L, ownidx) : 0;
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, sched_msgh);
  lua_insert(L, base);
  int st = lua_pcall(L, nargs, 0, base);
  lua_remove(L, base);
  if (st != LUA_OK) {
    if (lua_istable(L, -1)) {
      lua_rawgeti(L, -1, 1);
      lua_rawgeti(L, -2, 2);
      lua_remove(L, -3);
    } else { /* an error in the handler itself, e.g. out of memory */
      lua_pushvalue(L, -1);
    }
    if (ownidx)
      lua_pushvalue(L, ownidx);
    else
      lua_pushnil(L);
    sched_report(L, lp);
  }
  return st;
}

struct ending {
  struct loop *lp;
  lua_State *co;
  int status;
  double ran;     /* seconds of the last resume, for the overrun message */
};

/* Push what the owned object of the task is, or nil. [-0, +1, -] */
static void sched_pushowned(lua_State *L, struct ending *e) {
  if (loop_pushanchored(L, e->lp, e->co) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
}

/* Push the error and its traceback for the failed (not yet unwound) task
 * co. [-0, +2, m] */
static void sched_pusherror(lua_State *L, struct ending *e) {
  lua_State *co = e->co;
  if (e->status == LUA_YIELD && e->lp->overrun)
    lua_pushfstring(L, "cpu budget exceeded: the task ran %d ms without "
                       "yielding", (int)(e->ran * 1000));
  else if (e->status == LUA_YIELD)
    lua_pushliteral(L, "attempt to yield from a berth task outside a nested "
                       "coroutine (use berth.sleep or a berth call to wait)");
  else
    lua_xmove(co, L, 1); /* the error object */
  const char *msg = lua_tostring(L, -1);
  if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, -1));
  else
    lua_pushvalue(L, -1);
  /* Traceback first: the task's stack is still there to walk (R1.6). */
  luaL_traceback(L, co, msg, 0);
  lua_remove(L, -2);
}

/* A task failed: traceback, run its <close> variables, report. */
static int sched_fail(lua_State *L) {
  struct ending *e = lua_touserdata(L, 1);
  lua_sethook(e->co, NULL, 0, 0); /* its <close> handlers may run freely */
  if (e->status == LUA_ERRMEM) {
    /* No room for a traceback: free what the task held first. */
    lua_resetthread(e->co);
    lua_gc(L, LUA_GCCOLLECT);
    lua_pushliteral(L, "not enough memory");
    lua_pushliteral(L, "not enough memory (the task was ended to free it)");
    sched_pushowned(L, e);
    sched_report(L, e->lp);
    return 0;
  }
  sched_pusherror(L, e);           /* stack: e, err, traceback */
  lua_resetthread(e->co);          /* runs its pending <close> variables */
  sched_pushowned(L, e);
  sched_report(L, e->lp);
  return 0;
}

/* Close what the task owned (its connection socket). */
static int sched_closeowned(lua_State *L) {
  struct ending *e = lua_touserdata(L, 1);
  sched_pushowned(L, e);
  if (!lua_isnil(L, -1) && luaL_callmeta(L, -1, "__close"))
    lua_pop(L, 1);
  return 0;
}

/* A task returned, raised, or yielded a foreign value. The report and the
 * close run protected, each on its own (an out-of-memory in the report
 * must not keep the socket open); the bookkeeping cannot fail. */
static void sched_end(struct ending *e) {
  struct loop *lp = e->lp;
  if (e->status != LUA_OK) {
    loop_pcall(lp, sched_fail, e);
    lua_resetthread(e->co); /* in case the report failed before it */
  } else {
    lua_settop(e->co, 0);
  }
  lp->overrun = 0;
  loop_pcall(lp, sched_closeowned, e);
  loop_unanchor(lp->L, lp, e->co);
  lp->ntasks--;
  loop_taskended(lp);
}

/* Resume co from the loop's top level (R1). The fast case -- a task
 * parking again -- touches nothing but the two stacks. */
void sched_resume(struct loop *lp, lua_State *co) {
  int nargs = 0, nres = 0;
  if (lua_status(co) == LUA_OK)
    nargs = lua_gettop(co) - 1; /* first run: [fn, args...] */
  lp->current = co;
  lp->budget = BERTH_BUDGET;
  if (lp->cpu_budget > 0) {
    lp->resumed_at = monotonic();
    lua_pushlightuserdata(lp->L, lp); /* the slot exists: no allocation */
    lua_rawsetp(lp->L, LUA_REGISTRYINDEX, &sched_hookkey);
  }
  int st = lua_resume(co, lp->L, nargs, &nres);
  lp->current = NULL;
  if (st == LUA_YIELD && nres == 1 &&
      lua_touserdata(co, -1) == &sched_sentinel) {
    lua_pop(co, 1);
    return;
  }
  if (st == LUA_YIELD)
    lua_pop(co, nres);
  struct ending e = {lp, co, st, lp->overrun ? monotonic() - lp->resumed_at : 0};
  sched_end(&e);
}
