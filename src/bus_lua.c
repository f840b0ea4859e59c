/*
 * bus_lua.c -- berth.bus and connection identity: this process's endpoint
 * on the group's bus (bus.c), the delivery of its messages to Lua, and
 * the Inbox class behind sock:id(), sock:inbox() and sock:on("message").
 *
 * One endpoint per process (one mailbox per member), made on first use
 * and owned by the loop that made it: its doorbell is an ev_io of that
 * loop, unref'd (like a signal, the bus never keeps berth.run() going by
 * itself). Another loop of the same process asking for the bus gets an
 * error. Once the endpoint is open the member is LIVE: publishers send to
 * it from then on (messages published before are not seen).
 *
 * Delivery runs from the doorbell watcher, protected (R2), at most
 * BUSL_BUDGET messages per wake-up (R9); what is left is fed back to the
 * watcher for the next iteration. A topic message goes to the Lua
 * dispatcher (berth.bus keeps the subscriptions); a direct message goes
 * to the Inbox of its connection id, looked up in a weak table.
 *
 * Inbox: made by sock:id() with the socket's id and kept alive by the
 * socket (SOCK_UV_INBOX); it keeps the socket (INBOX_UV_SOCK), so a task
 * waiting on the inbox keeps both. Its messages queue (at most
 * INBOX_MAX; beyond, the newest is dropped and counted) until a task
 * reads them (inbox:read, or `for msg in sock:inbox()`), or they go to an
 * on("message") callback, called like on("data"): protected, errors to
 * the socket's error handler, and an error closes the connection. When
 * the socket closes (socket.c calls inbox_sockclosed), a waiting reader
 * gets what is queued, then nil, "closed".
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "check.h"
#include "core.h"
#include "shm.h"

#define BUSL_BUDGET 256   /* messages delivered per wake-up */
#define INBOX_MAX 1024    /* messages an inbox queues */

enum { INBOX_UV_QUEUE = 2, INBOX_UV_FN, INBOX_UV_SOCK,
       INBOX_NUV = INBOX_UV_SOCK };

struct busep {
  struct loop *loop;
  struct bus b;
  ev_io io;
  uint64_t lost;           /* messages missed (gaps in the streams) */
  uint64_t undeliverable;  /* direct messages to no open connection */
  struct bus_msg msgs[BUS_BATCH];
};

struct inbox {
  struct loop *loop;
  uint64_t id;
  struct waiter reader;
  ev_timer timer;          /* the read's deadline, or a callback's turn */
  lua_Integer head, count; /* queue[2k+1] = msg, queue[2k+2] = from */
  uint64_t dropped, received;
  unsigned closed : 1;
  unsigned callback : 1;
  unsigned char anchored;  /* C holds it: queued messages for on() */
};

static pthread_mutex_t busl_mu = PTHREAD_MUTEX_INITIALIZER;
static struct busep *busl_ep;  /* this process's endpoint, or NULL */
static size_t busl_ring;       /* mailbox bytes for it (0: default) */

/* registry[&busl_key]: { dispatch = fn, inboxes = weak id -> Inbox } */
static char busl_key;

/* Push the registry table of the bus's Lua side. [-0, +1, m] */
static void busl_pushstate(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &busl_key) == LUA_TTABLE)
    return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 2);
  lua_newtable(L);                       /* stack: state, inboxes */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "inboxes");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &busl_key);
}

static int busl_worker_of_slot(const struct busep *ep, int slot) {
  struct shm_member *m = shm_member(ep->b.r, slot);
  return m ? atomic_load(&m->worker) : -1;
}

/* --------------------------------------------------------------- inbox */

static struct inbox *inbox_check(lua_State *L, int idx) {
  return util_self(L, idx, CLS_INBOX);
}

static void inbox_settimer(struct inbox *ib, double after) {
  struct ev_loop *ev = ib->loop->ev;
  ev_timer_stop(ev, &ib->timer);
  ev_timer_set(&ib->timer, after > 0 ? after : 0, 0);
  ev_timer_start(ev, &ib->timer);
}

/* Take the oldest message: pushes msg, from. [-0, +2, -] */
static void inbox_pop(lua_State *L, struct inbox *ib, int idx) {
  lua_getiuservalue(L, idx, INBOX_UV_QUEUE);
  lua_Integer k = 2 * ib->head;
  lua_rawgeti(L, -1, k + 1);
  lua_rawgeti(L, -2, k + 2);
  lua_pushnil(L);
  lua_rawseti(L, -4, k + 1); /* removing a key cannot raise */
  lua_pushnil(L);
  lua_rawseti(L, -4, k + 2);
  lua_remove(L, -3);
  ib->head++;
  if (--ib->count == 0)
    ib->head = 0; /* keys start over: the table stays small */
}

/* Call on("message") with msg, from (pushed above the inbox at idx),
 * protected, like on("data"): an error goes to the socket's handler and
 * closes the connection. The socket stays on the stack meanwhile (L4). */
static void inbox_callback(lua_State *L, struct inbox *ib, int idx) {
  lua_getiuservalue(L, idx, INBOX_UV_SOCK);
  struct sock *s = sock_check(L, -1);
  int sidx = lua_gettop(L);
  lua_getiuservalue(L, sidx, SOCK_UV_ONERROR);
  lua_getiuservalue(L, idx, INBOX_UV_FN);
  lua_rotate(L, sidx - 2, 3);      /* sock, onerror, fn, msg, from */
  sidx -= 2;
  if (sched_pcall(L, ib->loop, 2, sidx + 1, sidx) != LUA_OK && s->fd >= 0)
    sock_destroy(L, s, sidx, "error");
  lua_settop(L, sidx - 1);
}

/* Hand the queued messages to on("message"), while it stays set. */
static void inbox_flush(lua_State *L, struct inbox *ib, int idx) {
  while (ib->count > 0 && ib->callback) {
    inbox_pop(L, ib, idx);
    inbox_callback(L, ib, idx);
  }
}

/* A message for this inbox (at idx): msg and from are pushed. Pops both.
 * From the loop (the doorbell's delivery): the reader resumes at once. */
static void inbox_deliver(lua_State *L, struct busep *ep, struct inbox *ib,
                          int idx) {
  if (ib->closed) {
    ep->undeliverable++;
    lua_pop(L, 2);
    return;
  }
  ib->received++;
  if (ib->callback) {
    inbox_callback(L, ib, idx);
    return;
  }
  if (ib->count >= INBOX_MAX) { /* the reader lags: drop the newest */
    ib->dropped++;
    lua_pop(L, 2);
    return;
  }
  lua_getiuservalue(L, idx, INBOX_UV_QUEUE);
  lua_Integer k = 2 * (ib->head + ib->count);
  lua_rotate(L, -3, 1);            /* queue, msg, from */
  lua_rawseti(L, -3, k + 2);
  lua_rawseti(L, -2, k + 1);
  lua_pop(L, 1);
  ib->count++;
  if (ib->reader.task != NULL) {
    ev_timer_stop(ib->loop->ev, &ib->timer);
    waiter_resume(ib->loop, &ib->reader);
  }
}

/* The turn of the messages queued before on("message") was set: the
 * inbox was anchored for it (inbox_on), and is let go after. */
static int inbox_timer_p(lua_State *L) {
  struct inbox *ib = lua_touserdata(L, 1);
  loop_pushanchored(L, ib->loop, ib);
  int idx = lua_gettop(L);
  inbox_flush(L, ib, idx);
  loop_keep(L, ib->loop, ib, 0, &ib->anchored, 0);
  return 0;
}

/* The deadline of a read, or the queued messages' turn (on). */
static void inbox_timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)ev; (void)revents;
  struct inbox *ib = w->data;
  if (ib->reader.task != NULL) {
    ib->reader.timedout = 1;
    waiter_resume(ib->loop, &ib->reader);
  } else if (ib->anchored) {
    loop_pcall(ib->loop, inbox_timer_p, ib);
  }
}

static int inbox_read_k(lua_State *L, int status, lua_KContext ctx);

/* read([timeout]) -> msg, from | nil, "timeout" | nil, "closed". Queued
 * messages come first, also after the socket closed. */
static int inbox_doread(lua_State *L, int retry) {
  struct inbox *ib = inbox_check(L, 1);
  if (ib->count > 0) {
    ev_timer_stop(ib->loop->ev, &ib->timer);
    inbox_pop(L, ib, 1);
    return 2;
  }
  if (retry && ib->reader.timedout) {
    ib->reader.timedout = 0;
    return util_fail(L, "timeout");
  }
  if (ib->closed)
    return util_fail(L, "closed");
  if (!retry) {
    double t = check_timeout(L, 2, "inbox:read: timeout", -1);
    if (ib->callback)
      return luaL_error(L, "inbox:read: on(\"message\") is set");
    if (ib->reader.task != NULL)
      return luaL_error(L, "inbox already has a pending read");
    sched_checkwait(L, ib->loop, "inbox:read");
    ib->reader.deadline = loop_deadline(ib->loop, t);
    ib->reader.timedout = 0;
  }
  sched_register(ib->loop, &ib->reader);
  if (ib->reader.deadline >= 0)
    inbox_settimer(ib, ib->reader.deadline - ev_now(ib->loop->ev));
  return sched_park(L, ib->loop, NULL, 0, inbox_read_k);
}

static int inbox_read_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return inbox_doread(L, 1);
}

static int inbox_read(lua_State *L) {
  lua_settop(L, 2);
  return inbox_doread(L, 0);
}

/* `for msg, from in sock:inbox() do`: read with no timeout; the loop
 * ends at the first nil (closed). The generic for's own arguments are
 * not a timeout: dropped. */
static int inbox__call(lua_State *L) {
  lua_settop(L, 1);
  lua_pushnil(L);
  return inbox_doread(L, 0);
}

/* on(fn | nil): messages go to fn(msg, from) from now on; those already
 * queued get their turn at the next iteration, from the loop. */
static int inbox_on(lua_State *L) {
  struct inbox *ib = inbox_check(L, 1);
  if (!lua_isnil(L, 2))
    luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!lua_isnil(L, 2) && ib->reader.task != NULL)
    return luaL_error(L, "on: the inbox has a pending read");
  lua_settop(L, 2);
  lua_setiuservalue(L, 1, INBOX_UV_FN);
  ib->callback = !lua_isnil(L, 2);
  if (ib->callback && ib->count > 0 && !ib->anchored) {
    /* Anchored until the timer has run: C holds it, no task does. */
    loop_keep(L, ib->loop, ib, 1, &ib->anchored, 1);
    inbox_settimer(ib, 0);
  }
  lua_settop(L, 1);
  return 1;
}

static int inbox_id(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)inbox_check(L, 1)->id);
  return 1;
}

/* stats() -> {pending=, received=, dropped=, closed=} */
static int inbox_stats(lua_State *L) {
  struct inbox *ib = inbox_check(L, 1);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, ib->count);
  lua_setfield(L, -2, "pending");
  lua_pushinteger(L, (lua_Integer)ib->received);
  lua_setfield(L, -2, "received");
  lua_pushinteger(L, (lua_Integer)ib->dropped);
  lua_setfield(L, -2, "dropped");
  lua_pushboolean(L, ib->closed);
  lua_setfield(L, -2, "closed");
  return 1;
}

/* __close (and shutdown): no more turn for queued messages. */
static int inbox__close(lua_State *L) {
  struct inbox *ib = inbox_check(L, 1);
  if (ib->reader.task == NULL)
    ev_timer_stop(ib->loop->ev, &ib->timer);
  loop_keep(L, ib->loop, ib, 0, &ib->anchored, 0);
  return 0;
}

static int inbox__gc(lua_State *L) {
  struct inbox *ib = inbox_check(L, 1);
  waiter_drop(&ib->reader);
  BERTH_ASSERT("the loop is finalized last", ib->loop->ev != NULL);
  ev_timer_stop(ib->loop->ev, &ib->timer);
  return 0;
}

static int inbox__tostring(lua_State *L) {
  struct inbox *ib = inbox_check(L, 1);
  char text[64];
  snprintf(text, sizeof text, "Inbox (%llu%s)", (unsigned long long)ib->id,
           ib->closed ? ", closed" : "");
  lua_pushstring(L, text);
  return 1;
}

void inbox_sockclosed(lua_State *L, struct sock *s) {
  struct inbox *ib = s->inbox;
  ib->closed = 1;
  if (ib->reader.task != NULL) {
    ev_timer_stop(ib->loop->ev, &ib->timer);
    waiter_wake(L, ib->loop, &ib->reader);
  }
}

/* -------------------------------------------------------------- endpoint */

/* One topic message to the Lua dispatcher; one direct message to its
 * inbox. Stack: the state table at st. */
static void busl_one(lua_State *L, struct busep *ep, int st,
                     const struct bus_msg *m) {
  int from = busl_worker_of_slot(ep, m->from_slot);
  ep->lost += m->lost;
  if (m->kind == BUS_DIRECT) {
    lua_getfield(L, st, "inboxes");
    if (lua_rawgeti(L, -1, (lua_Integer)m->target) != LUA_TUSERDATA) {
      ep->undeliverable++;
      lua_pop(L, 2);
      return;
    }
    int idx = lua_gettop(L);
    lua_pushlstring(L, m->data, m->len);
    lua_pushinteger(L, from);
    inbox_deliver(L, ep, lua_touserdata(L, idx), idx);
    lua_settop(L, idx - 2);
    return;
  }
  if (lua_getfield(L, st, "dispatch") != LUA_TFUNCTION) {
    lua_pop(L, 1); /* nobody subscribes */
    return;
  }
  lua_pushlstring(L, m->topic, m->topic_len);
  lua_pushlstring(L, m->data, m->len);
  lua_pushinteger(L, from);
  lua_pushinteger(L, (lua_Integer)m->lost);
  sched_pcall(L, ep->loop, 4, 0, 0);
}

/* Protected, from the doorbell: deliver a budget's worth of messages;
 * if more wait, come back next iteration (the bell is cleared: no
 * datagram would say so). */
static int busl_deliver(lua_State *L) {
  struct busep *ep = lua_touserdata(L, 1);
  busl_pushstate(L);
  int st = lua_gettop(L);
  for (int budget = BUSL_BUDGET; budget > 0;) {
    int n = bus_recv_batch(&ep->b, ep->msgs, BUS_BATCH);
    if (n <= 0)
      break;
    budget -= n;
    for (int i = 0; i < n; i++) {
      busl_one(L, ep, st, &ep->msgs[i]);
      lua_settop(L, st);
    }
  }
  if (bus_pending(&ep->b))
    ev_feed_event(ep->loop->ev, &ep->io, EV_READ);
  return 0;
}

static void busl_io_cb(struct ev_loop *ev, ev_io *w, int revents) {
  (void)ev; (void)revents;
  struct busep *ep = w->data;
  loop_pcall(ep->loop, busl_deliver, ep);
}

static void busl_free(struct loop *lp, void *ud) {
  struct busep *ep = ud;
  ev_ref(lp->ev);
  ev_io_stop(lp->ev, &ep->io);
  bus_close(&ep->b);
  pthread_mutex_lock(&busl_mu);
  if (busl_ep == ep)
    busl_ep = NULL;
  pthread_mutex_unlock(&busl_mu);
  free(ep);
}

/* Open the endpoint on loop lp: the mailbox, the doorbell, LIVE. */
static struct busep *busl_make(lua_State *L, struct loop *lp) {
  struct shm *r = shared_region(L);
  int slot = shared_slot();
  if (slot < 0)
    luaL_error(L, "bus: this process has no member slot");
  busl_pushstate(L); /* made now: nothing below may fail half-way */
  lua_pop(L, 1);
  struct busep *ep = calloc(1, sizeof *ep);
  if (ep == NULL)
    luaL_error(L, "not enough memory");
  int rc = bus_open(&ep->b, r, slot, busl_ring);
  if (rc < 0) {
    free(ep);
    luaL_error(L, "bus: cannot open this process's mailbox: %s",
               strerror(-rc));
  }
  ep->loop = lp;
  if (atomic_load(&shm_member(r, slot)->state) == SHM_STARTING)
    shm_member_live(r, slot);
  ev_io_init(&ep->io, busl_io_cb, bus_fd(&ep->b), EV_READ);
  ep->io.data = ep;
  ev_io_start(lp->ev, &ep->io);
  ev_unref(lp->ev); /* the bus alone does not keep run() going */
  pthread_mutex_lock(&busl_mu);
  busl_ep = ep;
  pthread_mutex_unlock(&busl_mu);
  loop_atclose(L, lp, busl_free, ep); /* on failure it frees ep first */
  return ep;
}

/* The endpoint, opened on lp if there is none. [-0, +0, v] */
static struct busep *busl_get(lua_State *L, struct loop *lp) {
  pthread_mutex_lock(&busl_mu);
  struct busep *ep = busl_ep;
  pthread_mutex_unlock(&busl_mu);
  if (ep != NULL && ep->loop != lp)
    luaL_error(L, "bus: another loop of this process has the bus (one "
                  "loop per process receives its messages)");
  return ep != NULL ? ep : busl_make(L, lp);
}

static struct loop *busl_loop(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* The inbox of the socket at idx, made (with its id) if it has none.
 * Pushes it. [-0, +1, v] */
static struct inbox *busl_inbox(lua_State *L, struct sock *s, int idx) {
  idx = lua_absindex(L, idx);
  if (s->inbox != NULL) {
    sock_getuv(L, idx, SOCK_UV_INBOX);
    return s->inbox;
  }
  busl_get(L, s->loop);
  uint64_t id = shared_connid(L);
  struct inbox *ib = loop_newobject(L, s->loop, sizeof *ib, INBOX_NUV);
  memset(ib, 0, sizeof *ib);
  ib->loop = s->loop;
  ib->id = id;
  ib->reader = (struct waiter)WAITER_INIT;
  ev_init(&ib->timer, inbox_timer_cb);
  ib->timer.data = ib;
  luaL_setmetatable(L, CLS_INBOX);
  int i = lua_gettop(L);
  lua_newtable(L);
  lua_setiuservalue(L, i, INBOX_UV_QUEUE);
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, i, INBOX_UV_SOCK);
  busl_pushstate(L);
  lua_getfield(L, -1, "inboxes");
  lua_pushvalue(L, i);
  lua_rawseti(L, -2, (lua_Integer)id);
  lua_pop(L, 2);
  lua_pushvalue(L, i);
  sock_setuv(L, idx, SOCK_UV_INBOX);
  ib->closed = s->fd < 0;
  s->inbox = ib; /* last: every allocation is done */
  return ib;
}

/* sock:id() -> this connection's id, unique in the group. */
static int busl_sockid(lua_State *L) {
  struct sock *s = sock_check(L, 1);
  if (s->inbox == NULL && s->fd < 0)
    return util_fail(L, s->why);
  lua_pushinteger(L, (lua_Integer)busl_inbox(L, s, 1)->id);
  return 1;
}

/* sock:inbox() -> its Inbox (made with the id if need be). */
static int busl_sockinbox(lua_State *L) {
  struct sock *s = sock_check(L, 1);
  if (s->inbox == NULL && s->fd < 0)
    return util_fail(L, s->why);
  busl_inbox(L, s, 1);
  return 1;
}

/* ---------------------------------------------------------- core.bus */

static const char *busl_topic(lua_State *L, size_t *len) {
  const char *t = luaL_checklstring(L, 1, len);
  if (*len == 0 || *len > BUS_TOPIC_MAX)
    luaL_argerror(L, 1, "a topic is 1 to 255 bytes");
  return t;
}

/* publish(topic, msg) -> how many members queued it | nil, "toolarge" */
static int busl_publish(lua_State *L) {
  size_t tlen, len;
  const char *topic = busl_topic(L, &tlen);
  const char *msg = luaL_checklstring(L, 2, &len);
  struct busep *ep = busl_get(L, busl_loop(L));
  int n = bus_publish(&ep->b, topic, tlen, msg, len);
  if (n < 0)
    return util_fail(L, n == -EMSGSIZE ? "toolarge" : "error");
  lua_pushinteger(L, n);
  return 1;
}

/* send_to(id, msg) -> true | nil, "notfound" | "full" | "toolarge" */
static int busl_send_to(lua_State *L) {
  lua_Integer id = luaL_checkinteger(L, 1);
  size_t len;
  const char *msg = luaL_checklstring(L, 2, &len);
  struct busep *ep = busl_get(L, busl_loop(L));
  int rc = id > 0 ? bus_send_to(&ep->b, (uint64_t)id, msg, len) : -ENOENT;
  switch (rc) {
  case 0: lua_pushboolean(L, 1); return 1;
  case -ENOENT: return util_fail(L, "notfound");
  case -EAGAIN: return util_fail(L, "full");
  case -EMSGSIZE: return util_fail(L, "toolarge");
  default: return util_failerr(L, -rc);
  }
}

/* ondeliver(fn): fn(topic, msg, from, lost) for each topic message. */
static int busl_ondeliver(lua_State *L) {
  if (!lua_isnil(L, 1))
    luaL_checktype(L, 1, LUA_TFUNCTION);
  busl_pushstate(L);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "dispatch");
  return 0;
}

/* open(): receive from now on (subscribe calls it). */
static int busl_lopen(lua_State *L) {
  busl_get(L, busl_loop(L));
  return 0;
}

/* configure(queue_bytes): the mailbox size, before the bus is open. */
static int busl_configure(lua_State *L) {
  size_t n = check_size(L, 1, "bus.configure: queue", 0);
  if (n != (size_t)-1 && n < BUS_RING_MIN)
    return luaL_error(L, "bus.configure: queue must be at least %d bytes",
                      (int)BUS_RING_MIN);
  pthread_mutex_lock(&busl_mu);
  int open = busl_ep != NULL;
  if (!open)
    busl_ring = n == (size_t)-1 ? 0 : n;
  pthread_mutex_unlock(&busl_mu);
  if (open)
    return luaL_error(L, "bus.configure: the bus is open already");
  return 0;
}

/* call(fn, ...) -> ok: fn(...) protected, an error to the loop's
 * handler (each subscriber is called so: one failing does not stop the
 * others). */
static int busl_call(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int n = lua_gettop(L) - 1;
  lua_pushboolean(L, sched_pcall(L, busl_loop(L), n, 0, 0) == LUA_OK);
  return 1;
}

/* owner(id) -> the worker number of the member that made connection id
 * (0: a single process), or nil when none that lives did. */
static int busl_owner(lua_State *L) {
  lua_Integer id = luaL_checkinteger(L, 1);
  struct shm *r = shared_region(L);
  int slot = id > 0 ? shm_conn_owner(r, (uint64_t)id) : -ENOENT;
  if (slot < 0)
    return 0;
  lua_pushinteger(L, atomic_load(&shm_member(r, slot)->worker));
  return 1;
}

static void busl_setint(lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

/* stats() -> this member's counters, or nil while the bus is not open. */
static int busl_stats(lua_State *L) {
  struct busep *ep = busl_ep;
  if (ep == NULL)
    return 0;
  struct shm_member *m = shm_member(ep->b.r, ep->b.slot);
  int members = 0;
  for (int i = 0; i < SHM_MEMBERS; i++)
    members += shm_state_receives(atomic_load(&shm_member(ep->b.r, i)->state));
  lua_createtable(L, 0, 10);
  busl_setint(L, "sent", atomic_load(&m->bus_sent));
  busl_setint(L, "received", atomic_load(&m->bus_received));
  busl_setint(L, "dropped", atomic_load(&m->bus_dropped));
  busl_setint(L, "rejected", atomic_load(&m->bus_rejected));
  busl_setint(L, "lost", ep->lost);
  busl_setint(L, "undeliverable", ep->undeliverable);
  busl_setint(L, "queued", mbox_used(&ep->b.box));
  busl_setint(L, "capacity", mbox_cap(&ep->b.box));
  busl_setint(L, "peak", atomic_load(&ep->b.box.h->peak));
  busl_setint(L, "members", (uint64_t)members);
  return 1;
}

static const luaL_Reg inbox_meta[] = {
  {"__gc", inbox__gc}, {"__close", inbox__close}, {"__call", inbox__call},
  {"__tostring", inbox__tostring}, {NULL, NULL}
};
static const luaL_Reg inbox_methods[] = {
  {"read", inbox_read}, {"on", inbox_on}, {"id", inbox_id},
  {"stats", inbox_stats}, {NULL, NULL}
};
static const luaL_Reg busl_funcs[] = {
  {"publish", busl_publish},
  {"send_to", busl_send_to},
  {"ondeliver", busl_ondeliver},
  {"open", busl_lopen},
  {"configure", busl_configure},
  {"call", busl_call},
  {"owner", busl_owner},
  {"stats", busl_stats},
  {NULL, NULL}
};

/* Takes the loop from the top; pushes core.bus. Socket gets id() and
 * inbox(). [-1, +1, m] */
void busl_open(lua_State *L) {
  if (luaL_getmetatable(L, CLS_INBOX) == LUA_TNIL) {
    util_newclass(L, CLS_INBOX, inbox_meta, inbox_methods);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  luaL_getmetatable(L, CLS_SOCKET);
  lua_getfield(L, -1, "__index");
  lua_pushcfunction(L, busl_sockid);
  lua_setfield(L, -2, "id");
  lua_pushcfunction(L, busl_sockinbox);
  lua_setfield(L, -2, "inbox");
  lua_pop(L, 2);
  luaL_newlibtable(L, busl_funcs);
  lua_rotate(L, -2, 1); /* stack: M, loop */
  luaL_setfuncs(L, busl_funcs, 1);
}
