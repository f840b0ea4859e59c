/*
 * sched.c -- tasks: the coroutines berth starts and parks. This is the only
 * file that calls lua_resume (R1), and the owner of struct sched: the run
 * queue, the fairness and CPU budgets, the running task and the list of
 * live tasks. The CPU budget costs nothing until a task overruns it: see
 * "the hook" below.
 *
 * A task is a berth.Task userdata: user value 2 is its thread, 3 the object
 * it owns (a handler's connection socket) and 4 its error handler, both
 * given at spawn, so ending a task never needs to know what it owned. The
 * Task is anchored from spawn until it ends (L7), and it sits on its own
 * thread's stack as a to-be-closed value under the task's function: when
 * Lua code closes the coroutine from outside (coroutine.close), its
 * __close tells the scheduler at once (9.3).
 *
 * A waiting task and what it waits on point at each other (struct waiter);
 * whichever side goes first unlinks both. A task's state says who may run
 * it: the scheduler resumes only a NEW or PARKED task, and a continuation
 * that finds its task not RUNNING was resumed from outside (coroutine.resume
 * on a task's thread), which ends that task with an error instead of
 * corrupting the scheduler's books (9.3). A task in the run queue is marked
 * queued, so it is never queued twice (9.13).
 *
 * Resumes run only at the loop's top level: directly from a watcher
 * callback, or through the run queue when Lua code caused the wake-up (R7).
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "logfmt.h"
#include "monotime.h"
#include "watchdog.h"

enum { TASK_UV_THREAD = 2, TASK_UV_OWNED, TASK_UV_ONERROR,
       TASK_NUV = TASK_UV_ONERROR };

enum task_state { T_NEW, T_RUNNING, T_PARKED, T_ENDED };

struct task {
  struct loop *loop;
  lua_State *co;
  struct waiter *waiting;   /* the wait it is parked in, or NULL */
  struct waiter *also;      /* a second one that may end it (a relay) */
  lua_KFunction k;          /* the parked call's continuation */
  lua_KContext ctx;
  void (*done)(lua_State *L, int ok); /* NULL once it ran */
  unsigned char state;
  unsigned char queued;     /* in the run queue (at most once) */
  unsigned char suspended;  /* parked in core.suspend: only wake ends it */
  unsigned char anchored;
  struct link link;         /* the loop's live tasks */
};

/* A coroutine the running task resumed, innermost first. The spinning
 * code may be in any of them, so the watchdog hooks them all. Entries
 * live on the C stack of sched_nestcall, which unlinks its own before it
 * returns or raises. */
struct nest {
  lua_State *co;
  struct nest *outer;
};

struct sched {
  struct task *current;     /* the task being resumed now, or NULL */
  struct task **queue;      /* the run queue: anchored tasks */
  size_t qhead, qlen, qcap;
  ev_prepare prepare;       /* drains the queue each iteration */
  ev_idle idle;             /* keeps the poll from blocking meanwhile */
  int budget;               /* buffered reads left in this resume */
  double cpu_budget;        /* seconds without yielding, 0 off */
  struct watchdog *watchdog; /* from the first budget on; signals overruns */
  struct nest *volatile nest; /* coroutines the current task runs inside */
  volatile sig_atomic_t overrun; /* the current task is over its budget */
  int onerror;              /* registry ref: default error handler */
  int idle_pending;         /* the last task ended: call onidle */
  long nerrors;             /* errors reported (tasks and callbacks) */
  lua_CFunction onidle;
  long ntasks;
  struct link tasks;
  const void *registry;     /* its state's registry: tells states apart */
};

/* What this thread is handling now, innermost first: the task being
 * resumed, or the object whose callback sched_pcall runs. Log records use
 * it to name the connection (sched_pushowner). Per thread, not per loop:
 * a log call does not know its loop, and states on other threads have
 * their own. Saved and restored around each resume and callback, so
 * nesting (a loop stepped from inside another's task) unwinds right. */
struct sched_ctx {
  struct task *task;        /* the running task, or NULL */
  struct loop *loop;        /* else the loop of the callback ... */
  const void *obj;          /* ... and its object (anchored under itself) */
};
static _Thread_local struct sched_ctx sched_now;

/* ---------------------------------------------------------- the queue */

static void sched_wakeidle(struct sched *sc, struct loop *lp) {
  if (!ev_is_active(&sc->idle))
    ev_idle_start(lp->ev, &sc->idle);
}

void sched_queue(lua_State *L, struct loop *lp, struct task *t) {
  struct sched *sc = lp->sched;
  if (t->queued)
    return;
  if (sc->qhead + sc->qlen == sc->qcap) {
    if (sc->qhead > 0) { /* slide the live part down before growing */
      /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
      memmove(sc->queue, sc->queue + sc->qhead, sc->qlen * sizeof *sc->queue);
      sc->qhead = 0;
    }
    if (sc->qlen == sc->qcap) {
      size_t cap = sc->qcap ? sc->qcap * 2 : 64;
      /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
      struct task **q = realloc(sc->queue, cap * sizeof *q);
      if (q == NULL)
        luaL_error(L, "berth: out of memory queueing a task");
      sc->queue = q;
      sc->qcap = cap;
    }
  }
  sc->queue[sc->qhead + sc->qlen++] = t;
  t->queued = 1;
  sched_wakeidle(sc, lp);
}

/* ------------------------------------------------------ task endings */

static int sched_callonidle(lua_State *L) {
  struct loop *lp = lua_touserdata(L, 1);
  return lp->sched->onidle(L);
}

/* At top level: the last task has ended. */
static void sched_checkidle(struct loop *lp) {
  struct sched *sc = lp->sched;
  if (sc->idle_pending && sc->ntasks == 0) {
    sc->idle_pending = 0;
    if (sc->onidle)
      loop_pcall(lp, sched_callonidle, lp);
  }
}

/* Unlink t from whatever it waits on: both waits end together. */
static void task_unwait(struct task *t) {
  if (t->waiting) {
    t->waiting->task = NULL;
    t->waiting = NULL;
  }
  if (t->also) {
    t->also->task = NULL;
    t->also = NULL;
  }
}

/* The bookkeeping of an ending, which cannot fail: off its wait, off the
 * list of live tasks, uncounted. The anchor goes unless the run queue
 * still holds the task (the drain drops it then). */
static void task_retire(lua_State *L, struct task *t) {
  struct sched *sc = t->loop->sched;
  task_unwait(t);
  t->state = T_ENDED;
  t->suspended = 0;
  link_remove(&t->link);
  sc->ntasks--;
  sc->idle_pending = 1;
  if (!t->queued)
    loop_keep(L, t->loop, t, 0, &t->anchored, 0);
}

struct doneargs {
  struct task *t;
  int ok;
};

/* Run the task's done callback with its owned object on the stack top. */
static int sched_calldone(lua_State *L) {
  struct doneargs *d = lua_touserdata(L, 1);
  void (*done)(lua_State *, int) = d->t->done;
  d->t->done = NULL;
  loop_pushanchored(L, d->t->loop, d->t);
  lua_getiuservalue(L, -1, TASK_UV_OWNED);
  done(L, d->ok);
  return 0;
}

/* Protected and at top level: a done callback closes sockets and runs
 * their on("close"). */
static void task_done(struct loop *lp, struct task *t, int ok) {
  if (t->done == NULL)
    return;
  struct doneargs d = {t, ok};
  loop_pcall(lp, sched_calldone, &d);
}

/* A task was ended outside the scheduler (closed or resumed from outside):
 * retire it now, and let the drain run its done callback at top level. */
static void task_kill(lua_State *L, struct task *t) {
  task_retire(L, t);
  sched_queue(L, t->loop, t);
}

/* ------------------------------------------------------------ errors */

/* Push the task's error handler, or the loop's; 0 when neither. */
static int sched_pushhandler(lua_State *L, struct loop *lp, int idx) {
  if (idx && lua_type(L, idx) == LUA_TFUNCTION) {
    lua_pushvalue(L, idx);
    return 1;
  }
  if (lua_rawgeti(L, LUA_REGISTRYINDEX, lp->sched->onerror) == LUA_TFUNCTION)
    return 1;
  lua_pop(L, 1);
  return 0;
}

/* Log `what` and the value at idx (any value: luaL_tolstring, so an error
 * object's __tostring is used) as one record, straight to stderr: there
 * is no handler to give it to. [-0, +0, m] */
static void sched_logerror(lua_State *L, const char *what, int idx) {
  idx = lua_absindex(L, idx);
  lua_pushstring(L, what);
  luaL_tolstring(L, idx, NULL);
  lua_concat(L, 2);
  size_t len;
  const char *msg = lua_tolstring(L, -1, &len);
  logfmt_emit("error", NULL, msg, len);
  lua_pop(L, 1);
}

/* Report an error. Stack: err, traceback, owned; pops all three and calls
 * the handler at `hidx` (or the loop's) protected: a failing handler is
 * logged, nothing more. */
static void sched_report(lua_State *L, struct loop *lp, int hidx) {
  int top = lua_gettop(L);
  lp->sched->nerrors++;
  hidx = hidx ? lua_absindex(L, hidx) : 0;
  if (!sched_pushhandler(L, lp, hidx)) {
    sched_logerror(L, "error in task: ", top - 1);
    lua_pop(L, 3);
    return;
  }
  lua_insert(L, top - 2); /* stack: handler, err, traceback, owned */
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    sched_logerror(L, "error in error handler: ", -1);
    lua_pop(L, 1);
  }
}

int sched_pcall(lua_State *L, struct loop *lp, int nargs, int onerror,
                int ownidx) {
  onerror = onerror ? lua_absindex(L, onerror) : 0;
  ownidx = ownidx ? lua_absindex(L, ownidx) : 0;
  int base = lua_gettop(L) - nargs;
  struct sched_ctx outer = sched_now;
  lua_pushcfunction(L, util_msgh);
  lua_insert(L, base);
  sched_now.task = NULL;
  sched_now.loop = lp;
  sched_now.obj = ownidx ? lua_touserdata(L, ownidx) : NULL;
  int st = lua_pcall(L, nargs, 0, base);
  sched_now = outer;
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
    sched_report(L, lp, onerror);
  }
  return st;
}

struct ending {
  struct task *t;
  int status;
  double ran;     /* seconds of the last resume, for the overrun message */
};

/* Push the error and its traceback for the failed (not yet unwound) task.
 * [-0, +2, m] */
static void sched_pusherror(lua_State *L, struct ending *e) {
  lua_State *co = e->t->co;
  if (e->status == LUA_YIELD && e->t->loop->sched->overrun)
    lua_pushfstring(L, "cpu budget exceeded: the task ran %d ms without "
                       "yielding", (int)(e->ran * 1000));
  else if (e->status == LUA_YIELD)
    lua_pushliteral(L, "attempt to yield from a berth task outside a nested "
                       "coroutine (use berth.sleep or a berth call to wait)");
  else
    lua_xmove(co, L, 1); /* the error object */
  const char *msg = luaL_tolstring(L, -1, NULL);
  /* Traceback first: the task's stack is still there to walk (R1.6). */
  luaL_traceback(L, co, msg, 0);
  lua_remove(L, -2);
}

/* A task failed: traceback, run its <close> variables, report. */
static int sched_fail(lua_State *L) {
  struct ending *e = lua_touserdata(L, 1);
  struct task *t = e->t;
  lua_sethook(t->co, NULL, 0, 0); /* its <close> handlers may run freely */
  loop_pushanchored(L, t->loop, t);
  int tidx = lua_gettop(L);
  if (e->status == LUA_ERRMEM) {
    /* No room for a traceback: free what the task held first. */
    lua_resetthread(t->co);
    lua_gc(L, LUA_GCCOLLECT);
    lua_pushliteral(L, "not enough memory");
    lua_pushliteral(L, "not enough memory (the task was ended to free it)");
  } else {
    sched_pusherror(L, e);         /* stack: e, task, err, traceback */
    lua_resetthread(t->co);        /* runs its pending <close> variables */
  }
  lua_getiuservalue(L, tidx, TASK_UV_OWNED);
  lua_getiuservalue(L, tidx, TASK_UV_ONERROR);
  lua_insert(L, -4);               /* stack: e, task, h, err, tb, owned */
  sched_report(L, t->loop, tidx + 1);
  return 0;
}

/* A task returned, raised, or yielded a foreign value. The report and the
 * done callback run protected, each on its own (an out-of-memory in the
 * report must not keep the socket open); the bookkeeping cannot fail. */
static void sched_end(struct loop *lp, struct task *t, int status) {
  struct sched *sc = lp->sched;
  struct ending e = {t, status,
                     sc->overrun ? monotime_now() - watchdog_started(sc->watchdog) : 0};
  if (status != LUA_OK) {
    loop_pcall(lp, sched_fail, &e);
    lua_resetthread(t->co); /* in case the report failed before it */
  } else {
    lua_settop(t->co, 0);
  }
  sc->overrun = 0;
  task_done(lp, t, status == LUA_OK);
  task_retire(lp->L, t);
  sched_checkidle(lp);
}

/* ------------------------------------------------------------ the hook */

/* The scheduler whose task this thread is running now, if L belongs to
 * that task's state (one thread may run two states); else NULL. */
static struct sched *sched_running(lua_State *L) {
  struct task *t = sched_now.task;
  struct sched *sc = t != NULL ? t->loop->sched : NULL;
  if (sc == NULL || sc->current != t ||
      sc->registry != lua_topointer(L, LUA_REGISTRYINDEX))
    return NULL;
  return sc;
}

/* The runaway-task check costs nothing while tasks behave: no hook is set.
 * The loop's watchdog (watchdog.h) notices a resume that has lasted the
 * budget and, in a signal handler on the loop's thread, sets a count hook
 * on the task's thread and on every coroutine the task is running inside
 * (sched_fire). The hook makes the task yield: unlike an error, a yield
 * cannot be caught by the task's own pcall. Where it cannot yield (inside
 * a C call such as a string.gsub callback) the hook raises and, from then
 * on, checks at every instruction, so the error a pcall catches is raised
 * again at once and the first instruction where a yield is possible ends
 * the task (9.16). A nested coroutine's yield surfaces in the task, whose
 * own hook yields it. */
static void sched_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  struct sched *sc = sched_running(L);
  if (sc == NULL || !sc->overrun) {
    /* A coroutine hooked in an earlier overrun, resumed within budget. */
    lua_sethook(L, NULL, 0, 0);
    return;
  }
  struct task *t = sc->current;
  lua_sethook(t->co, sched_hook, LUA_MASKCOUNT, 1);
  if (L != t->co)
    lua_sethook(L, sched_hook, LUA_MASKCOUNT, 1);
  if (lua_isyieldable(L)) {
    lua_yield(L, 0); /* from a hook it returns; the yield happens after */
    return;
  }
  luaL_error(L, "cpu budget exceeded");
}

/* The watchdog's signal handler, on the loop's thread, with the resume it
 * signalled still running: only what is async-signal-safe (lua_sethook is;
 * lua.c stops a script on SIGINT the same way). */
static void sched_fire(void *ud) {
  struct sched *sc = ud;
  struct task *t = sc->current;
  if (t == NULL)
    return;
  sc->overrun = 1;
  lua_sethook(t->co, sched_hook, LUA_MASKCOUNT, 1);
  for (struct nest *n = sc->nest; n != NULL; n = n->outer)
    lua_sethook(n->co, sched_hook, LUA_MASKCOUNT, 1);
}

/* ------------------------------------------------- nested coroutines */

/* Call upvalue 1 with the arguments, protected, with co on the running
 * task's list of nested coroutines meanwhile (outside a task, or for
 * another state, on no list). The entry goes before an error is raised
 * again. `where`: an error string gets the caller's position, as from the
 * stock coroutine.wrap (whose own luaL_where now sees only this C call). */
static int sched_nestcall(lua_State *L, lua_State *co, int where) {
  struct sched *sc = sched_running(L);
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  struct nest me = {co, sc != NULL ? sc->nest : NULL};
  if (sc != NULL)
    sc->nest = &me;
  int st = lua_pcall(L, n, LUA_MULTRET, 0);
  if (sc != NULL)
    sc->nest = me.outer;
  if (st == LUA_OK)
    return lua_gettop(L);
  if (where && st != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

/* coroutine.resume(co, ...), upvalue 1 the function it replaced. */
static int sched_coresume(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTHREAD); /* the stock message */
  return sched_nestcall(L, lua_tothread(L, 1), 0);
}

/* What coroutine.wrap returns: upvalues the wrapped function and its
 * thread. */
static int sched_cowrapped(lua_State *L) {
  return sched_nestcall(L, lua_tothread(L, lua_upvalueindex(2)), 1);
}

/* coroutine.wrap(f), upvalue 1 the function it replaced: its result is
 * wrapped again when its thread can be found (the stock wrap keeps it as
 * upvalue 1); else returned as it is. */
static int sched_cowrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, 1, 1);
  if (lua_getupvalue(L, 1, 1) != NULL && lua_isthread(L, -1)) {
    lua_pushcclosure(L, sched_cowrapped, 2);
    return 1;
  }
  lua_settop(L, 1);
  return 1;
}

static char sched_cokey; /* registry: the coroutine library is wrapped */

/* Replace coroutine.resume and coroutine.wrap (in package.loaded, which
 * the global coroutine is) with the wrappers above, once per state. A
 * function saved before is not watched: a runaway coroutine resumed
 * through it is ended when it gives control back to its task. */
static void sched_wrapcoroutines(lua_State *L) {
  static const luaL_Reg wrappers[] = {
    {"resume", sched_coresume}, {"wrap", sched_cowrap}, {NULL, NULL}};
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &sched_cokey) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "coroutine") == LUA_TTABLE) {
    for (const luaL_Reg *w = wrappers; w->name != NULL; w++) {
      if (lua_getfield(L, -1, w->name) != LUA_TFUNCTION) {
        lua_pop(L, 1);
        continue;
      }
      lua_pushcclosure(L, w->func, 1);
      lua_setfield(L, -2, w->name);
    }
  }
  lua_pop(L, 2);
  lua_pushboolean(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &sched_cokey);
}

/* The first budget starts the watchdog and wraps the coroutine library. */
void sched_setcpubudget(lua_State *L, struct loop *lp, double seconds) {
  struct sched *sc = lp->sched;
  if (seconds > 0 && sc->watchdog == NULL) {
    sched_wrapcoroutines(L);
    sc->watchdog = watchdog_new(sched_fire, sc);
    if (sc->watchdog == NULL)
      luaL_error(L, "cpu_budget: cannot start the watchdog: %s",
                 strerror(errno));
  }
  sc->cpu_budget = seconds > 0 ? seconds : 0;
  if (sc->watchdog != NULL)
    watchdog_setbudget(sc->watchdog, sc->cpu_budget);
}

double sched_cpubudget(struct loop *lp) {
  return lp->sched->cpu_budget;
}

/* ------------------------------------------------------- spawn, resume */

static int sched_main_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L; (void)status; (void)ctx;
  return 0; /* closes the Task slot: RUNNING, so its __close ignores it */
}

/* On top of a new task's stack: coroutine.resume from outside calls the
 * value on top (below its arguments), this, and not the task's function. */
static int sched_guard(lua_State *L) {
  return luaL_error(L, "a berth task cannot be started from outside berth");
}

/* A task's first function. Stack: task, fn, args, guard. The Task becomes
 * a to-be-closed value, so closing the coroutine from outside is noticed. */
static int sched_main(lua_State *L) {
  lua_settop(L, -2);
  lua_toclose(L, 1);
  lua_callk(L, lua_gettop(L) - 2, 0, 0, sched_main_k);
  return 0;
}

struct task *sched_spawn(lua_State *L, struct loop *lp, int nargs,
                         const struct taskopts *o) {
  struct sched *sc = lp->sched;
  int base = lua_gettop(L) - nargs; /* the function */
  int owned = o && o->owned ? lua_absindex(L, o->owned) : 0;
  int onerror = o && o->onerror ? lua_absindex(L, o->onerror) : 0;
  struct task *t = loop_newobject(L, lp, sizeof *t, TASK_NUV);
  memset(t, 0, sizeof *t);
  t->loop = lp;
  link_init(&t->link);
  t->state = T_ENDED; /* until it is fully made */
  luaL_setmetatable(L, CLS_TASK);
  t->co = lua_newthread(L);
  lua_setiuservalue(L, -2, TASK_UV_THREAD);
  if (owned) {
    lua_pushvalue(L, owned);
    lua_setiuservalue(L, -2, TASK_UV_OWNED);
  }
  if (onerror) {
    lua_pushvalue(L, onerror);
    lua_setiuservalue(L, -2, TASK_UV_ONERROR);
  }
  if (!lua_checkstack(t->co, nargs + 4))
    luaL_error(L, "berth: too many arguments for a task");
  loop_keep(L, lp, t, -1, &t->anchored, 1);
  /* Nothing below can raise. */
  t->state = T_NEW;
  t->done = o ? o->done : NULL;
  link_push(&sc->tasks, &t->link);
  sc->ntasks++;
  lua_pushcfunction(t->co, sched_main);
  lua_getiuservalue(L, -1, TASK_UV_THREAD); /* stack: fn, args, task, co */
  lua_rotate(L, base, 2);                    /* task, co, fn, args */
  lua_pushvalue(L, base);
  lua_xmove(L, t->co, 1);                    /* co: main, task */
  lua_xmove(L, t->co, nargs + 1);            /* co: main, task, fn, args */
  lua_pushcfunction(t->co, sched_guard);     /* co: ..., guard */
  lua_remove(L, base);                       /* L: co */
  return t;
}

/* Is the thread where the state says it is? Something outside the
 * scheduler may have run it (and sched_main or sched_k not noticed, as
 * when it ran to completion). */
static int sched_resumable(const struct task *t) {
  int st = lua_status(t->co);
  if (t->state == T_NEW)
    return st == LUA_OK && lua_gettop(t->co) >= 4;
  return t->state == T_PARKED && st == LUA_YIELD;
}

void sched_resume(struct loop *lp, struct task *t) {
  struct sched *sc = lp->sched;
  BERTH_ASSERT("sched_resume: a queued task is resumed by the drain",
               !t->queued);
  BERTH_ASSERT("sched_resume: not at the loop's top level",
               sc->current == NULL && lp->L != NULL);
  if (t->state == T_ENDED)
    return;
  if (!sched_resumable(t)) {
    task_kill(lp->L, t);
    return;
  }
  int nargs = t->state == T_NEW ? lua_gettop(t->co) - 1 : 0, nres = 0;
  t->state = T_RUNNING;
  sc->current = t;
  sc->budget = BERTH_BUDGET;
  struct sched_ctx outer = sched_now;
  sched_now.task = t;
  watchdog_begin(sc->watchdog);
  int st = lua_resume(t->co, lp->L, nargs, &nres);
  watchdog_end(sc->watchdog);
  sched_now = outer;
  sc->current = NULL;
  if (st == LUA_YIELD)
    lua_pop(t->co, nres);
  if (st == LUA_YIELD && t->state == T_PARKED) {
    if (sc->overrun) { /* signalled, but it parked before the hook ran */
      sc->overrun = 0;
      lua_sethook(t->co, NULL, 0, 0);
    }
    return;
  }
  sched_end(lp, t, st);
}

static int sched_resetthread(lua_State *L);

/* The drain found a task ended from outside: its <close> variables (a
 * coroutine that died of an error still has them), its done callback,
 * then its anchor. */
static void sched_reap(struct loop *lp, struct task *t) {
  loop_pcall(lp, sched_resetthread, t);
  task_done(lp, t, 0);
  loop_keep(lp->L, lp, t, 0, &t->anchored, 0);
}

/* Resume what was queued before this call; what those tasks queue waits
 * for the next iteration, so one busy task cannot starve the poll. */
void sched_drain(struct loop *lp) {
  struct sched *sc = lp->sched;
  size_t n = sc->qlen;
  while (n-- > 0 && sc->qlen > 0) {
    struct task *t = sc->queue[sc->qhead++];
    if (--sc->qlen == 0)
      sc->qhead = 0;
    t->queued = 0;
    if (t->state == T_ENDED)
      sched_reap(lp, t);
    else
      sched_resume(lp, t);
  }
  if (sc->qlen == 0 && ev_is_active(&sc->idle))
    ev_idle_stop(lp->ev, &sc->idle);
  sched_checkidle(lp);
}

/* ------------------------------------------------------------- parking */

int sched_canwait(lua_State *L, struct loop *lp) {
  struct task *t = lp->sched->current;
  return t != NULL && t->co == L && lua_isyieldable(L);
}

void sched_checkwait(lua_State *L, struct loop *lp, const char *what) {
  struct task *t = lp->sched->current;
  if (t == NULL || t->co != L)
    luaL_error(L, "%s: must be called from a berth task", what);
  if (!lua_isyieldable(L))
    luaL_error(L, "%s: cannot wait here: the task is inside a C call that "
                  "cannot yield (a metamethod, a table.sort comparator, a "
                  "string.gsub callback...)", what);
}

/* Every parked call continues here first. A task not RUNNING was resumed
 * by coroutine.resume from outside: end it rather than let it run a berth
 * call's continuation the scheduler knows nothing about. */
static int sched_k(lua_State *L, int status, lua_KContext ctx) {
  struct task *t = (struct task *)ctx;
  if (t->state != T_RUNNING) {
    task_kill(L, t);
    return luaL_error(L, "a berth task cannot be resumed from outside berth");
  }
  return t->k(L, status, t->ctx);
}

void sched_register(struct loop *lp, struct waiter *w) {
  struct task *t = lp->sched->current;
  BERTH_ASSERT("sched_register: no running task", t != NULL);
  BERTH_ASSERT("sched_register: the waiter is taken", w->task == NULL);
  BERTH_ASSERT("sched_register: the task already waits", t->waiting == NULL);
  w->task = t;
  t->waiting = w;
}

void sched_registeralso(struct loop *lp, struct waiter *w) {
  struct task *t = lp->sched->current;
  BERTH_ASSERT("sched_registeralso: no running task", t != NULL);
  BERTH_ASSERT("sched_registeralso: the waiter is taken", w->task == NULL);
  BERTH_ASSERT("sched_registeralso: the task waits twice already",
               t->also == NULL);
  w->task = t;
  t->also = w;
}

int sched_park(lua_State *L, struct loop *lp, struct waiter *w,
               lua_KContext ctx, lua_KFunction k) {
  struct task *t = lp->sched->current;
  BERTH_ASSERT("sched_park: not the running task, or it cannot yield",
               t != NULL && t->co == L && lua_isyieldable(L));
  if (w != NULL)
    sched_register(lp, w);
  t->k = k;
  t->ctx = ctx;
  t->state = T_PARKED;
  return lua_yieldk(L, 0, (lua_KContext)t, sched_k);
}

static int sched_pass_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L; (void)status;
  return (int)ctx; /* the results, still on the stack */
}

int sched_passk(lua_State *L, struct loop *lp, lua_KContext ctx,
                lua_KFunction k) {
  sched_queue(L, lp, lp->sched->current);
  return sched_park(L, lp, NULL, ctx, k);
}

int sched_pass(lua_State *L, struct loop *lp, int n) {
  return sched_passk(L, lp, n, sched_pass_k);
}

int sched_spend(lua_State *L, struct loop *lp, int n) {
  if (--lp->sched->budget > 0 || !sched_canwait(L, lp))
    return n;
  return sched_pass(L, lp, n);
}

/* ------------------------------------------------------------- waiters */

struct task *waiter_take(struct waiter *w) {
  struct task *t = w->task;
  if (t != NULL)
    task_unwait(t);
  return t;
}

void waiter_drop(struct waiter *w) {
  waiter_take(w);
}

void waiter_resume(struct loop *lp, struct waiter *w) {
  struct task *t = waiter_take(w);
  if (t != NULL)
    sched_resume(lp, t);
}

void waiter_wake(lua_State *L, struct loop *lp, struct waiter *w) {
  struct task *t = waiter_take(w);
  if (t != NULL)
    sched_queue(L, lp, t);
}

/* ------------------------------------------------------ suspend, wake */

static int sched_suspend_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return lua_gettop(L); /* what wake() pushed */
}

int sched_suspend(lua_State *L, struct loop *lp) {
  sched_checkwait(L, lp, "suspend");
  lua_settop(L, 0);
  lp->sched->current->suspended = 1;
  return sched_park(L, lp, NULL, 0, sched_suspend_k);
}

/* Wake a task parked in suspend with the `nvals` values on the top;
 * returns 0 (and wakes nothing) when it is not waiting there: a second
 * wake, or a task that has ended. */
int sched_wake(lua_State *L, struct loop *lp, int taskidx, int nvals) {
  struct task *t = luaL_checkudata(L, taskidx, CLS_TASK);
  if (t->loop != lp || t->state != T_PARKED || !t->suspended || t->queued)
    return 0;
  if (!lua_checkstack(t->co, nvals))
    luaL_error(L, "wake: too many values");
  sched_queue(L, lp, t);
  t->suspended = 0;
  lua_xmove(L, t->co, nvals);
  return 1;
}

void sched_pushcurrent(lua_State *L, struct loop *lp) {
  struct task *t = lp->sched->current;
  if (t == NULL)
    lua_pushnil(L);
  else
    loop_pushanchored(L, lp, t);
}

/* Only a state's own objects may be pushed on it: the context is per
 * thread, and one thread may run two states. */
void sched_pushowner(lua_State *L) {
  const void *registry = lua_topointer(L, LUA_REGISTRYINDEX);
  struct sched_ctx c = sched_now;
  if (c.task != NULL && c.task->loop->sched->registry == registry &&
      loop_pushanchored(L, c.task->loop, c.task) == LUA_TUSERDATA) {
    lua_getiuservalue(L, -1, TASK_UV_OWNED);
    lua_remove(L, -2);
  } else if (c.task == NULL && c.obj != NULL &&
             c.loop->sched->registry == registry) {
    loop_pushanchored(L, c.loop, c.obj); /* nil if it is not anchored */
  } else {
    lua_pushnil(L);
  }
}

/* ------------------------------------------------------------ shutdown */

static int sched_resetthread(lua_State *L) {
  struct task *t = lua_touserdata(L, 1);
  if (lua_resetthread(t->co) != LUA_OK) {
    lua_xmove(t->co, L, 1);
    loop_log(t->loop, "warn", "a <close> variable failed while shutdown "
             "ended a task: %s", luaL_tolstring(L, -1, NULL));
  }
  return 0;
}

void sched_killall(lua_State *L, struct loop *lp) {
  struct sched *sc = lp->sched;
  (void)L;
  BERTH_ASSERT("sched_killall: inside a task", sc->current == NULL);
  while (!link_empty(&sc->tasks)) {
    struct task *t = link_entry(sc->tasks.next, struct task, link);
    task_unwait(t);
    t->state = T_ENDED; /* its Task's __close, run below, ignores it now */
    lua_sethook(t->co, NULL, 0, 0);
    loop_pcall(lp, sched_resetthread, t);
    task_done(lp, t, 0);
    task_retire(lp->L, t);
  }
  sched_checkidle(lp);
}

void sched_onidle(struct loop *lp, lua_CFunction fn) {
  lp->sched->onidle = fn;
}

long sched_ntasks(struct loop *lp) {
  return lp->sched->ntasks;
}

long sched_nerrors(struct loop *lp) {
  return lp->sched->nerrors;
}

/* Set the loop's default error handler to the function at idx (or none
 * for nil); pushes the previous one. [-0, +1, m] */
void sched_setonerror(lua_State *L, struct loop *lp, int idx) {
  struct sched *sc = lp->sched;
  idx = lua_absindex(L, idx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, sc->onerror);
  luaL_unref(L, LUA_REGISTRYINDEX, sc->onerror);
  sc->onerror = LUA_NOREF;
  if (!lua_isnil(L, idx)) {
    lua_pushvalue(L, idx);
    sc->onerror = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

/* ---------------------------------------------------------- the class */

/* A Task's to-be-closed slot closes when its function returns (RUNNING),
 * when the scheduler resets it (ENDED), or when Lua code closes the
 * coroutine from outside: only the last is news. */
static int task__close(lua_State *L) {
  struct task *t = luaL_checkudata(L, 1, CLS_TASK);
  if (t->state == T_NEW || t->state == T_PARKED)
    task_kill(L, t);
  return 0;
}

static int task__tostring(lua_State *L) {
  static const char *const names[] = {"new", "running", "parked", "ended"};
  struct task *t = luaL_checkudata(L, 1, CLS_TASK);
  lua_pushfstring(L, "Task (%s)", names[t->state]);
  return 1;
}

static const luaL_Reg task_meta[] = {
  {"__close", task__close}, {"__tostring", task__tostring}, {NULL, NULL}
};
static const luaL_Reg task_methods[] = {{NULL, NULL}};

static void sched_prepare_cb(struct ev_loop *ev, ev_prepare *w, int revents) {
  (void)ev; (void)revents;
  sched_drain(w->data);
}

/* Only exists to keep the poll from blocking while resumes are queued. */
static void sched_idle_cb(struct ev_loop *ev, ev_idle *w, int revents) {
  (void)ev; (void)revents;
  sched_drain(w->data);
}

static void sched_free(struct loop *lp, void *ud) {
  struct sched *sc = ud;
  watchdog_free(sc->watchdog); /* joins its thread: no signal comes after */
  ev_ref(lp->ev); /* balance the unref of the prepare watcher */
  ev_prepare_stop(lp->ev, &sc->prepare);
  ev_idle_stop(lp->ev, &sc->idle);
  free(sc->queue);
  free(sc);
  lp->sched = NULL;
}

void sched_init(lua_State *L, struct loop *lp) {
  if (luaL_getmetatable(L, CLS_TASK) == LUA_TNIL) {
    util_newclass(L, CLS_TASK, task_meta, task_methods);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  struct sched *sc = calloc(1, sizeof *sc);
  if (sc == NULL)
    luaL_error(L, "not enough memory");
  sc->onerror = LUA_NOREF;
  sc->registry = lua_topointer(L, LUA_REGISTRYINDEX);
  link_init(&sc->tasks);
  ev_prepare_init(&sc->prepare, sched_prepare_cb);
  ev_idle_init(&sc->idle, sched_idle_cb);
  sc->prepare.data = sc->idle.data = lp;
  ev_prepare_start(lp->ev, &sc->prepare);
  ev_unref(lp->ev); /* the prepare watcher alone must not keep run() going */
  lp->sched = sc;
  loop_atclose(L, lp, sched_free, sc);
}
