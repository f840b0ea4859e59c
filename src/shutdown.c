/*
 * shutdown.c -- the graceful stop of a loop, above the objects it closes.
 * Owns struct drain: the grace timer.
 *
 * shutdown_start: draining() is true at once (berth.health answers 503);
 * after the drain delay, if there is one, listeners close; served
 * connections that wait
 * for their next message with nothing buffered (idle keep-alive clients)
 * close one loop iteration later -- after the tasks queued with the
 * shutdown (berth.on_shutdown hooks: a goodbye line, a WebSocket "going
 * away") had their turn -- and so does any that becomes idle later, when
 * its handler comes back to read (socket_io.c checks lp->draining);
 * handlers in the middle of a message get the grace period (9.7). The loop
 * finishes as soon as the last task ends, or when the grace period is over.
 * Unconnected Datagrams stop receiving at once, like listeners (dgram.c);
 * connected ones are clients and keep the grace period. At the finish,
 * Datagrams close with the sockets.
 *
 * shutdown_finish (L6, steps 2-4): every server and socket closes, waking
 * the tasks that wait on them with nil,"closed"; every other anchored
 * object (timers, signals, watches, callback sockets) is closed through
 * its __close; the woken tasks run once; the tasks still alive are ended
 * (their <close> variables run); the loop stops. Nothing is left: stats()
 * shows no socket and no task, and the loop can be used again.
 */
#include <math.h>
#include <stdlib.h>

#include "core.h"

struct drain {
  ev_timer grace;
  ev_timer sweep;  /* closes idle connections, one iteration in */
  ev_timer delay;  /* the drain delay: listeners close when it ends */
  double grace_s;  /* the grace asked for, kept for the delay's end */
};

static int shutdown_finish_p(lua_State *L) {
  shutdown_finish(L, lua_touserdata(L, 1));
  return 0;
}

static void shutdown_grace_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)ev; (void)revents;
  loop_pcall(w->data, shutdown_finish_p, w->data);
}

/* Close the idle connections; while young ones were spared, look again
 * when they are old enough. */
static int shutdown_sweep_p(lua_State *L) {
  struct loop *lp = lua_touserdata(L, 1);
  if (lp->draining && sock_closeidle(L, lp) > 0 && lp->drain != NULL) {
    ev_timer_set(&lp->drain->sweep, BERTH_YOUNG_SECONDS / 4, 0);
    ev_timer_start(lp->ev, &lp->drain->sweep);
  }
  return 0;
}

static void shutdown_sweep_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)ev; (void)revents;
  loop_pcall(w->data, shutdown_sweep_p, w->data);
}

/* The last task ended: a draining loop finishes now (at top level). */
static int shutdown_onidle(lua_State *L) {
  struct loop *lp = lua_touserdata(L, 1);
  if (lp->draining)
    shutdown_finish(L, lp);
  return 0;
}

static void shutdown_delay_cb(struct ev_loop *ev, ev_timer *w, int revents);

static void drain_free(struct loop *lp, void *ud) {
  struct drain *d = ud;
  ev_timer_stop(lp->ev, &d->grace);
  ev_timer_stop(lp->ev, &d->sweep);
  ev_timer_stop(lp->ev, &d->delay);
  free(d);
  lp->drain = NULL;
}

static struct drain *drain_get(lua_State *L, struct loop *lp) {
  if (lp->drain != NULL)
    return lp->drain;
  struct drain *d = calloc(1, sizeof *d);
  if (d == NULL)
    luaL_error(L, "not enough memory");
  ev_init(&d->grace, shutdown_grace_cb);
  ev_init(&d->sweep, shutdown_sweep_cb);
  ev_init(&d->delay, shutdown_delay_cb);
  d->grace.data = d->sweep.data = d->delay.data = lp;
  lp->drain = d;
  loop_atclose(L, lp, drain_free, d);
  return d;
}

/* Close each anchored object but tasks (sched_killall ends those). */
static void shutdown_closeanchored(lua_State *L, struct loop *lp) {
  loop_pushanchorlist(L, lp);
  int list = lua_gettop(L);
  lua_Integer n = luaL_len(L, list);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    if (!luaL_testudata(L, -1, CLS_TASK) && luaL_callmeta(L, -1, "__close"))
      lua_pop(L, 1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

void shutdown_finish(lua_State *L, struct loop *lp) {
  BERTH_ASSERT("shutdown_finish: not at the loop's top level", lp->L != NULL);
  if (lp->drain != NULL) {
    ev_timer_stop(lp->ev, &lp->drain->grace);
    ev_timer_stop(lp->ev, &lp->drain->sweep);
    ev_timer_stop(lp->ev, &lp->drain->delay);
  }
  srv_closeall(L, lp);
  sock_closeall(L, lp);
  dgram_closeall(L, lp);
  shutdown_closeanchored(L, lp);
  sched_drain(lp);
  sched_killall(L, lp);
  lp->draining = 0;
  ev_break(lp->ev, EVBREAK_ALL);
}

/* The listeners close: from now on the loop ends with its last task. */
static void shutdown_close(lua_State *L, struct loop *lp) {
  struct drain *d = lp->drain;
  sched_onidle(lp, shutdown_onidle);
  srv_closeall(L, lp);
  dgram_quiesce(L, lp);
  ev_timer_set(&d->sweep, 0, 0);
  ev_timer_start(lp->ev, &d->sweep);
}

static void shutdown_grace(lua_State *L, struct loop *lp, double grace);

static int shutdown_delayed_p(lua_State *L) {
  struct loop *lp = lua_touserdata(L, 1);
  if (lp->draining && lp->drain != NULL) {
    shutdown_close(L, lp);
    shutdown_grace(L, lp, lp->drain->grace_s);
  }
  return 0;
}

static void shutdown_delay_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)ev; (void)revents;
  loop_pcall(w->data, shutdown_delayed_p, w->data);
}

/* Graceful stop. For `delay` seconds (> 0 and finite) only draining() says
 * so: a health check answers 503 and the balancer stops sending while the
 * listeners still accept. Then listeners close, idle connections close,
 * and the tasks get `grace`. Called again, it only shortens the wait (and
 * ends a delay at once). `grace` < 0 or +inf: wait for the tasks as long
 * as they take. */
void shutdown_start(lua_State *L, struct loop *lp, double grace,
                    double delay) {
  struct drain *d = drain_get(L, lp);
  if (!lp->draining) {
    lp->draining = 1;
    if (delay > 0 && !isinf(delay)) {
      d->grace_s = grace;
      ev_timer_set(&d->delay, delay, 0);
      ev_timer_start(lp->ev, &d->delay);
      return;
    }
    shutdown_close(L, lp);
  } else if (ev_is_active(&d->delay)) {
    ev_timer_stop(lp->ev, &d->delay);
    shutdown_close(L, lp);
  }
  shutdown_grace(L, lp, grace);
}

/* Arm the grace timer (the listeners are closed). */
static void shutdown_grace(lua_State *L, struct loop *lp, double grace) {
  struct drain *d = drain_get(L, lp);
  if (sched_ntasks(lp) == 0 || grace == 0)
    grace = 0;
  else if (grace < 0 || isinf(grace))
    return;
  if (ev_is_active(&d->grace) && ev_timer_remaining(lp->ev, &d->grace) <= grace)
    return;
  ev_timer_stop(lp->ev, &d->grace);
  ev_timer_set(&d->grace, grace, 0);
  ev_timer_start(lp->ev, &d->grace);
}
