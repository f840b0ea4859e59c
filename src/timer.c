/*
 * timer.c -- time: berth.sleep and berth.timer (class berth.Timer).
 *
 * A sleeping task holds its Timer on its own stack, so sleep needs no
 * anchor; the Timer and the task point at each other through the sleeper
 * waiter, whichever goes first unlinks both. A timer with a callback is
 * anchored while armed: C holds it and no task does. Each firing runs the
 * callback in a new task, so callbacks may block like any handler.
 *
 * Times: NaN is an error; a negative or zero delay means "at once"; +inf
 * means "never" (a sleep that only shutdown ends, a timer that never
 * fires), so no non-finite number ever reaches libev's timer heap (9.5).
 */
#include <math.h>
#include <string.h>

#include "check.h"
#include "core.h"

#define TIMER_UV_FN 2     /* the callback (1 is the loop) */
#define RETRY_SECONDS 0.1 /* a firing whose task could not be made */

struct timer {
  struct loop *loop;
  ev_timer w;
  struct waiter sleeper; /* berth.sleep: the task to resume */
  unsigned char anchored;
};

static void timer_disarm(lua_State *L, struct timer *t) {
  ev_timer_stop(t->loop->ev, &t->w);
  loop_keep(L, t->loop, t, 0, &t->anchored, 0);
}

/* The callback's task is made before a one-shot timer lets go of it, so a
 * failure (out of memory) leaves it armed for a retry, not lost (9.14). */
static int timer_fire(lua_State *L) {
  struct timer *t = lua_touserdata(L, 1);
  struct loop *lp = t->loop;
  loop_pushanchored(L, lp, t); /* kept on the stack while Lua runs (L4) */
  lua_getiuservalue(L, 2, TIMER_UV_FN);
  lua_pushvalue(L, 2);
  struct task *task = sched_spawn(L, lp, 1, NULL);
  if (t->w.repeat <= 0)
    timer_disarm(L, t); /* one-shot: collectable once the task lets go */
  sched_resume(lp, task);
  return 0;
}

static void timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)revents;
  struct timer *t = w->data;
  if (t->sleeper.task != NULL) {
    waiter_resume(t->loop, &t->sleeper);
  } else if (t->anchored && loop_pcall(t->loop, timer_fire, t) != LUA_OK &&
             t->anchored && !ev_is_active(w)) {
    ev_timer_set(w, RETRY_SECONDS, 0);
    ev_timer_start(ev, w);
  }
}

static struct timer *timer_push(lua_State *L, struct loop *lp) {
  struct timer *t = loop_newobject(L, lp, sizeof *t, 2);
  memset(t, 0, sizeof *t);
  t->loop = lp;
  t->sleeper = (struct waiter)WAITER_INIT;
  ev_init(&t->w, timer_cb);
  t->w.data = t;
  luaL_setmetatable(L, CLS_TIMER);
  return t;
}

static int timer_sleep_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  lua_pushboolean(L, 1);
  return 1;
}

/* berth.sleep(seconds): 0 just lets every other ready task run first. */
int timer_sleep(lua_State *L) {
  struct loop *lp = loop_check(L, lua_upvalueindex(1));
  luaL_checkany(L, 1);
  double secs = check_time(L, 1, "sleep: seconds", 0);
  sched_checkwait(L, lp, "sleep");
  if (secs <= 0) {
    lua_pushboolean(L, 1);
    return sched_pass(L, lp, 1);
  }
  struct timer *t = timer_push(L, lp); /* stays on this task's stack */
  sched_register(lp, &t->sleeper);
  if (!isinf(secs)) {
    ev_now_update(lp->ev); /* Lua may have run long: count from the real now */
    ev_timer_set(&t->w, secs, 0);
    ev_timer_start(lp->ev, &t->w);
  }
  return sched_park(L, lp, NULL, 0, timer_sleep_k);
}

/* berth.timer(after, repeat, fn) -> Timer */
int timer_new(lua_State *L) {
  struct loop *lp = loop_check(L, lua_upvalueindex(1));
  luaL_checkany(L, 1);
  double after = check_time(L, 1, "timer: after", 0);
  double rep = check_time(L, 2, "timer: repeat", 0);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  struct timer *t = timer_push(L, lp);
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, -2, TIMER_UV_FN);
  if (isinf(after) && after > 0)
    return 1; /* never fires: nothing to arm or anchor */
  loop_keep(L, lp, t, -1, &t->anchored, 1);
  ev_now_update(lp->ev);
  ev_timer_set(&t->w, after > 0 ? after : 0, rep > 0 && !isinf(rep) ? rep : 0);
  ev_timer_start(lp->ev, &t->w);
  return 1;
}

static int timer_cancel(lua_State *L) {
  struct timer *t = luaL_checkudata(L, 1, CLS_TIMER);
  timer_disarm(L, t);
  lua_pushboolean(L, 1);
  return 1;
}

static int timer__gc(lua_State *L) {
  struct timer *t = luaL_checkudata(L, 1, CLS_TIMER);
  waiter_drop(&t->sleeper);
  BERTH_ASSERT("the loop is finalized last", t->loop->ev != NULL);
  ev_timer_stop(t->loop->ev, &t->w);
  return 0;
}

static int timer__tostring(lua_State *L) {
  struct timer *t = luaL_checkudata(L, 1, CLS_TIMER);
  lua_pushfstring(L, "Timer (%s)", ev_is_active(&t->w) ? "armed" : "idle");
  return 1;
}

static const luaL_Reg timer_meta[] = {
  {"__gc", timer__gc}, {"__close", timer_cancel},
  {"__tostring", timer__tostring}, {NULL, NULL}
};
static const luaL_Reg timer_methods[] = {
  {"cancel", timer_cancel}, {NULL, NULL}
};

/* [-0, +0, m] */
void timer_open(lua_State *L) {
  util_newclass(L, CLS_TIMER, timer_meta, timer_methods);
  lua_pop(L, 1);
}
