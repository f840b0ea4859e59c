/*
 * socket.c -- the Socket userdata (class berth.Socket): its lifetime,
 * watchers, timeouts, event callbacks, options and addresses. The read and
 * write methods live in socket_io.c. Owns struct sockset: the loop's open
 * sockets (for shutdown) and its byte counters.
 *
 * Lifetime (L1): a task waiting on a socket keeps it alive through its own
 * stack (the method's self argument), and the task is anchored; so a socket
 * is anchored only when C holds it with no task in between: in callback mode
 * (on("data")), with on("close"/"drain") registered, or while its write
 * buffer drains after the writer moved on. An idle socket Lua dropped is
 * collected and closed by __gc, like a Lua file. Its read watcher may still
 * be active then (it is stopped lazily), which __gc handles (L2).
 *
 * A Socket exists before its descriptor (sock_new, then sock_attach), the
 * way liolib's newprefile does: whatever fails in between leaks nothing.
 *
 * An error in a connection's code ends that connection: a handler task's
 * error closes its socket (sock_handlerdone), and so does an error in an
 * on("data"/"drain") callback; on("close") then gets "error".
 *
 * TLS (s->tls, tls.h) changes only how bytes enter and leave: receives go
 * through sock_recv, and the encrypted bytes OpenSSL writes go out at once
 * or into the write buffer, which drains as for a plain socket. A close
 * sends close_notify; the other socket_tls.c does.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "core.h"
#include "tls.h"

struct sockset {
  struct link open;      /* open sockets */
  long nopen, total;
  uint64_t bytes_in, bytes_out;
};

/* Every Socket begins with this address (util_tagged): sock_check, called
 * by every method, needs no metatable lookup. */
static const char sock_tag = 0;

struct sock *sock_check(lua_State *L, int idx) {
  return util_checktagged(L, idx, sizeof(struct sock), &sock_tag, CLS_SOCKET);
}

static struct sock *sock_checkopen(lua_State *L, int idx) {
  struct sock *s = sock_check(L, idx);
  if (s->fd < 0)
    luaL_error(L, "attempt to use a closed socket");
  return s;
}

/* Does C hold this socket without a task holding it for us? A handler's
 * socket is anchored through its task (sched.c) for as long as it is open,
 * which covers a draining write buffer; callbacks, though, find their
 * socket by its own anchor key, so with callbacks it is anchored too. */
static int sock_needsanchor(const struct sock *s) {
  return s->fd >= 0 && (s->callback || s->events || (s->parked && !s->owned) ||
                        (!s->owned && ev_is_active(&s->wio)));
}

/* [-0, +0, m] */
void sock_hold(lua_State *L, struct sock *s, int idx) {
  loop_keep(L, s->loop, s, idx, &s->anchored, s->anchored || sock_needsanchor(s));
}

/* [-0, +0, -] */
void sock_release(lua_State *L, struct sock *s) {
  if (!sock_needsanchor(s))
    loop_keep(L, s->loop, s, 0, &s->anchored, 0);
}

void sock_countin(struct sock *s, size_t n) {
  s->bytes_in += n;
  s->loop->socks->bytes_in += n;
  s->last_active = ev_now(s->loop->ev);
}

void sock_countout(struct sock *s, size_t n) {
  s->bytes_out += n;
  s->loop->socks->bytes_out += n;
  s->last_active = s->last_drain = ev_now(s->loop->ev);
}

/* ---------------------------------------------------------------- I/O */

long sock_recv(lua_State *L, struct sock *s, int idx, char *p, size_t n) {
  if (s->tls == NULL) {
    long got = net_recv(s->fd, p, n);
    if (got == -EAGAIN || (got > 0 && (size_t)got < n))
      s->readable = 0; /* drained the kernel: wait for readiness next */
    if (got > 0)
      sock_countin(s, (size_t)got);
    return got;
  }
  long got = tls_recv(s->tls, p, n);
  sock_tlsio(L, s, idx); /* an alert or a key update may have been sent */
  /* OpenSSL may hold more records than the kernel does: readiness alone
   * would miss them. */
  s->readable = got > 0 && tls_readable(s->tls);
  if (got > 0)
    s->last_active = ev_now(s->loop->ev);
  return got;
}

void sock_tlsio(lua_State *L, struct sock *s, int idx) {
  size_t in, out;
  int werr = tls_take(s->tls, &in, &out);
  if (in > 0)
    sock_countin(s, in);
  if (out > 0)
    sock_countout(s, out);
  if (werr && !s->werr) {
    s->werr = werr;
    buf_free(&s->wbuf);
  }
  if (idx != 0)
    sock_armwrite(L, s, idx);
}

const char *sock_errcode(int err) {
  return TLS_ISERR(err) ? tls_errcode(err) : net_errcode(-err);
}

int sock_failerr(lua_State *L, int err) {
  return TLS_ISERR(err) ? util_fail(L, tls_errcode(err))
                        : util_failerr(L, -err);
}

/* ------------------------------------------------------------- timeouts */

static ev_tstamp earliest(ev_tstamp a, ev_tstamp b) {
  return a < 0 || (b >= 0 && b < a) ? b : a;
}

/* When the connection itself must end: idle, or output stuck (-1: never). */
static ev_tstamp sock_enddeadline(const struct sock *s) {
  ev_tstamp at = -1;
  if (s->idle_timeout > 0)
    at = s->last_active + s->idle_timeout;
  if (s->send_timeout > 0 && s->wbuf.len > 0)
    at = earliest(at, s->last_drain + s->send_timeout);
  return at;
}

static ev_tstamp sock_nextdeadline(const struct sock *s) {
  ev_tstamp next = sock_enddeadline(s);
  if (s->reader.task)
    next = earliest(next, s->reader.deadline);
  if (s->writer.task)
    next = earliest(next, s->writer.deadline);
  return next;
}

/* One timer serves every deadline of a socket. It is only ever moved
 * earlier; a timer that fires early re-arms itself (R10: activity only
 * updates a timestamp, no stop/start per I/O). */
void sock_timer_arm(struct sock *s) {
  ev_tstamp next = sock_nextdeadline(s);
  struct ev_loop *ev = s->loop->ev;
  if (next < 0 || (ev_is_active(&s->timer) && s->timer_at <= next))
    return;
  ev_timer_stop(ev, &s->timer);
  ev_tstamp after = next - ev_now(ev);
  ev_timer_set(&s->timer, after > 0 ? after : 0, 0);
  ev_timer_start(ev, &s->timer);
  s->timer_at = next;
}

/* The waiter's task if its deadline has passed, taken; else NULL. */
static struct task *sock_takedue(struct waiter *w, ev_tstamp now) {
  if (w->task == NULL || w->deadline < 0 || w->deadline > now)
    return NULL;
  w->timedout = 1;
  return waiter_take(w);
}

struct wake2 {
  struct sock *s;
  struct task *r, *w;
};

/* Both waiters may be due; the socket is kept on the stack while the first
 * runs, since it may drop its last reference (L4). */
static int sock_wakedue(lua_State *L) {
  struct wake2 *d = lua_touserdata(L, 1);
  struct task *w = d->w;
  int held = d->s->anchored && loop_pushanchored(L, d->s->loop, d->s);
  if (d->r)
    sched_resume(d->s->loop, d->r);
  if (w)
    sched_resume(d->s->loop, w);
  if (held)
    lua_pop(L, 1);
  return 0;
}

/* Idle or stuck: the connection ends; its waiters learn "timeout". */
static int sock_expire(lua_State *L) {
  sock_destroy(L, lua_touserdata(L, 1), 0, "timeout");
  return 0;
}

static void sock_timer_cb(struct ev_loop *ev, ev_timer *t, int revents) {
  (void)revents;
  struct sock *s = t->data;
  ev_tstamp now = ev_now(ev);
  ev_tstamp end = sock_enddeadline(s);
  if (end >= 0 && end <= now) {
    loop_pcall(s->loop, sock_expire, s);
    return;
  }
  struct wake2 d = {s, sock_takedue(&s->reader, now),
                    sock_takedue(&s->writer, now)};
  sock_timer_arm(s); /* before the resumes: afterwards s may be gone */
  if (d.r && !d.w)
    sched_resume(s->loop, d.r);
  else if (d.w)
    loop_pcall(s->loop, sock_wakedue, &d);
}

/* ------------------------------------------------------------ callbacks */

int sock_getuv(lua_State *L, int idx, int n) {
  if (n <= SOCK_NUV)
    return lua_getiuservalue(L, idx, n);
  if (lua_getiuservalue(L, idx, SOCK_UV_MORE) != LUA_TTABLE)
    return LUA_TNIL; /* the nil pushed */
  int t = lua_rawgeti(L, -1, n - SOCK_NUV);
  lua_remove(L, -2);
  return t;
}

void sock_setuv(lua_State *L, int idx, int n) {
  idx = lua_absindex(L, idx);
  if (n <= SOCK_NUV) {
    lua_setiuservalue(L, idx, n);
    return;
  }
  if (lua_getiuservalue(L, idx, SOCK_UV_MORE) != LUA_TTABLE) {
    lua_pop(L, 1);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1); /* nothing to clear */
      return;
    }
    lua_createtable(L, SOCK_UV_PROXY - SOCK_NUV, 0);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, SOCK_UV_MORE);
  }
  lua_rotate(L, -2, 1);
  lua_rawseti(L, -2, n - SOCK_NUV);
  lua_pop(L, 1);
}

/* Push the on(event) function from user value `uv`; 0 (nothing pushed)
 * when there is none. `idx` is the socket. */
static int sock_pushcb(lua_State *L, int idx, int uv) {
  if (sock_getuv(L, idx, uv) == LUA_TFUNCTION)
    return 1;
  lua_pop(L, 1);
  return 0;
}

/* Call a callback (pushed, with nargs arguments above it) protected; an
 * error is reported to the socket's error handler and ends the
 * connection. */
static void sock_callback(lua_State *L, struct sock *s, int idx, int nargs) {
  lua_getiuservalue(L, idx, SOCK_UV_ONERROR);
  lua_insert(L, -(nargs + 2));
  int herr = lua_gettop(L) - nargs - 1;
  if (sched_pcall(L, s->loop, nargs, herr, idx) != LUA_OK && s->fd >= 0)
    sock_destroy(L, s, idx, "error");
  lua_remove(L, herr);
}

/* Hand one chunk to on("data"): what a read left buffered first (9.9),
 * else one recv into the scratch buffer. Runs protected from the read
 * watcher; the socket is on the stack for the whole call (L4), and fd is
 * re-checked after Lua ran. */
static int sock_ondata(lua_State *L) {
  struct sock *s = lua_touserdata(L, 1);
  struct loop *lp = s->loop;
  loop_pushanchored(L, lp, s);
  int idx = lua_gettop(L);
  if (s->rbuf.len > 0) {
    if (sock_pushcb(L, idx, SOCK_UV_ONDATA)) {
      lua_pushlstring(L, buf_begin(&s->rbuf), s->rbuf.len);
      buf_free(&s->rbuf);
      sock_callback(L, s, idx, 1);
    }
    return 0;
  }
  long got = s->eof ? 0 : sock_recv(L, s, idx, lp->scratch, BERTH_SCRATCH);
  if (got == -EAGAIN)
    return 0;
  if (got <= 0) {
    s->eof = got == 0;
    s->rerr = got < 0 ? (int)got : 0;
    sock_destroy(L, s, idx, got == 0 ? "closed" : sock_errcode((int)got));
    return 0;
  }
  if (sock_pushcb(L, idx, SOCK_UV_ONDATA)) {
    lua_pushlstring(L, lp->scratch, (size_t)got);
    sock_callback(L, s, idx, 1);
  }
  /* Records OpenSSL already holds raise no readiness: deliver them next. */
  if (s->fd >= 0 && s->callback && s->tls != NULL && s->readable)
    ev_feed_event(lp->ev, &s->rio, EV_READ);
  return 0;
}

/* onreadable: bytes (or EOF) came for a parked connection, which no task
 * holds. Its function runs as a new handler task owning the socket; the
 * task holds the socket before the anchor goes. */
static int sock_unpark(lua_State *L) {
  struct sock *s = lua_touserdata(L, 1);
  loop_pushanchored(L, s->loop, s);
  int idx = lua_gettop(L);
  lua_getiuservalue(L, idx, SOCK_UV_ONDATA);
  struct task *t = srv_spawnconn(L, s->loop, idx);
  lua_pushnil(L);
  lua_setiuservalue(L, idx, SOCK_UV_ONDATA);
  s->parked = 0;
  s->owned = 1;
  sock_release(L, s);
  sched_resume(s->loop, t); /* its first read finds the bytes */
  return 0;
}

static int sock_ondrain(lua_State *L) {
  struct sock *s = lua_touserdata(L, 1);
  loop_pushanchored(L, s->loop, s);
  if (sock_pushcb(L, -1, SOCK_UV_ONDRAIN))
    sock_callback(L, s, lua_gettop(L) - 1, 0);
  return 0;
}

/* ------------------------------------------------------------- watchers */

/* Readable: resume the waiting reader, or feed on("data"). With neither,
 * the watcher was left running by the last read: stop it now (lazy stop,
 * so back-to-back reads never touch epoll). */
static void sock_rio_cb(struct ev_loop *ev, ev_io *w, int revents) {
  (void)revents;
  struct sock *s = w->data;
  s->readable = 1;
  if (s->reader.task != NULL) {
    waiter_resume(s->loop, &s->reader); /* s may be gone after this */
    return;
  }
  if (s->callback)
    loop_pcall(s->loop, sock_ondata, s);
  else if (s->parked && !s->owned)
    loop_pcall(s->loop, sock_unpark, s);
  else
    ev_io_stop(ev, w);
}

static void sock_drainbuf(struct sock *s) {
  struct buf *b = &s->wbuf;
  struct iovec iov = {(void *)buf_begin(b), b->len};
  if (b->len == 0)
    return; /* a relay waits for writability with nothing buffered */
  long n = net_writev(s->fd, &iov, 1);
  if (n > 0) {
    buf_consume(b, (size_t)n);
    sock_countout(s, (size_t)n);
  } else if (n != -EAGAIN) {
    s->werr = (int)n;
    buf_free(b);
  }
}

/* The write buffer is empty: free it, and half-close if asked to. */
static void sock_drained(struct sock *s) {
  buf_free(&s->wbuf);
  if (s->shut_wr && !s->werr)
    shutdown(s->fd, SHUT_WR);
}

/* Send what is queued now (a reader is about to wait: the batch of replies
 * to a pipelined burst goes out in one writev); the write watcher keeps
 * draining whatever the kernel does not take. */
void sock_flushnow(lua_State *L, struct sock *s) {
  sock_drainbuf(s);
  if (s->wbuf.len == 0 && s->writer.task == NULL) {
    ev_io_stop(s->loop->ev, &s->wio);
    sock_drained(s);
    sock_release(L, s);
  }
}

/* Writable: finish a connect, or drain the write buffer. The writer is
 * resumed once the buffer is at its target (low watermark, or empty for
 * flush) or the write side failed. */
static void sock_wio_cb(struct ev_loop *ev, ev_io *w, int revents) {
  (void)revents;
  struct sock *s = w->data;
  struct loop *lp = s->loop;
  if (s->connecting) {
    s->connecting = 0;
  } else {
    sock_drainbuf(s);
    if (s->wbuf.len > 0 && (s->writer.task == NULL ||
                            s->wbuf.len > s->wtarget))
      return;
    if (s->wbuf.len == 0)
      sock_drained(s);
  }
  if (s->wbuf.len == 0 || s->werr)
    ev_io_stop(ev, w);
  if (s->drain_cb && s->wbuf.len == 0) {
    s->drain_cb = 0;
    if (s->events)
      loop_pcall(lp, sock_ondrain, s);
    if (s->fd < 0)
      return;
  }
  struct task *t = waiter_take(&s->writer);
  sock_release(lp->L, s);
  if (t != NULL)
    sched_resume(lp, t); /* s may be gone after this */
}

/* -------------------------------------------------------------- objects */

static void sockset_free(struct loop *lp, void *ud) {
  free(ud);
  lp->socks = NULL;
}

void sock_init(lua_State *L, struct loop *lp) {
  struct sockset *set = calloc(1, sizeof *set);
  if (set == NULL)
    luaL_error(L, "not enough memory");
  link_init(&set->open);
  lp->socks = set;
  loop_atclose(L, lp, sockset_free, set);
}

/* The limits of connected and adopted sockets (LIMITS_NONE's values). */
static const struct limits sock_nolimits = LIMITS_NONE;

/* A connection's time limit as the float it keeps (seconds; 0: none).
 * Past 10^9 s (31 years) it is none, so it never overflows to inf. */
static float sock_limittime(double t) {
  return t > 0 && t < 1e9 ? (float)t : 0;
}

void sock_uselimits(struct sock *s, const struct limits *lim) {
  s->lim = lim;
  s->maxline = lim->maxline;
  s->idle_timeout = sock_limittime(lim->idle_timeout);
  s->send_timeout = sock_limittime(lim->send_timeout);
}

/* A closed Socket of lp. [-0, +1, m] */
struct sock *sock_new(lua_State *L, struct loop *lp) {
  struct sock *s = loop_newobject(L, lp, sizeof *s, SOCK_NUV);
  memset(s, 0, sizeof *s);
  s->tag = &sock_tag;
  s->loop = lp;
  s->fd = -1;
  s->why = "closed";
  sock_uselimits(s, &sock_nolimits);
  s->hiwat = BERTH_HIWAT;
  s->lowat = BERTH_LOWAT;
  s->rtimeout = s->wtimeout = -1;
  s->reader = s->writer = (struct waiter)WAITER_INIT;
  link_init(&s->link);
  luaL_setmetatable(L, CLS_SOCKET);
  return s;
}

/* Give a new Socket its open, non-blocking descriptor. Cannot fail. */
void sock_attach(struct sock *s, int fd) {
  struct loop *lp = s->loop;
  s->fd = fd;
  s->why = NULL;
  s->readable = 1; /* optimistic: data often arrives with the connection */
  ev_io_init(&s->rio, sock_rio_cb, fd, EV_READ);
  ev_io_init(&s->wio, sock_wio_cb, fd, EV_WRITE);
  ev_init(&s->timer, sock_timer_cb);
  s->rio.data = s->wio.data = s->timer.data = s;
  s->created = s->last_active = s->last_drain = ev_now(lp->ev);
  link_push(&lp->socks->open, &s->link);
  lp->socks->nopen++;
  lp->socks->total++;
}

/* Keep an address for peer(), also after close; one that does not fit (a
 * long unix path) is not kept, and peer() asks the kernel while open. */
void sock_setpeer(struct sock *s, const struct net_addr *a) {
  if (a->len <= sizeof s->peer) {
    memcpy(&s->peer, &a->ss, a->len);
    s->peerlen = (unsigned char)a->len;
  }
}

static void sock_notepeer(struct sock *s) {
  struct net_addr a;
  if (s->peerlen == 0 && s->fd >= 0 && net_peer_addr(s->fd, &a) == 0)
    sock_setpeer(s, &a);
}

/* The one idempotent destroy (L3). Stop before close (L2); buffered output
 * gets one last non-blocking send; waiters are queued to see nil,"closed"
 * (R6); on("close") runs last, with the socket fully closed. */
void sock_destroy(lua_State *L, struct sock *s, int idx, const char *why) {
  if (s->fd < 0)
    return;
  struct loop *lp = s->loop;
  ev_io_stop(lp->ev, &s->rio);
  ev_io_stop(lp->ev, &s->wio);
  ev_timer_stop(lp->ev, &s->timer);
  if (s->tls != NULL)
    tls_close(s->tls); /* close_notify: sent, or queued for the send below */
  if (s->wbuf.len > 0 && s->werr == 0)
    sock_drainbuf(s);
  if (why != NULL)
    sock_notepeer(s);
  close(s->fd);
  s->fd = -1;
  tls_free(s->tls);
  s->tls = NULL;
  s->why = why ? why : "closed";
  buf_free(&s->rbuf);
  buf_free(&s->wbuf);
  free(s->fstate); /* an unfinished message's, if any */
  s->fstate = NULL;
  link_remove(&s->link);
  lp->socks->nopen--;
  if (s->srv)
    srv_connclosed(s->srv);
  if (s->inbox && why != NULL)
    inbox_sockclosed(L, s);
  s->callback = 0;
  s->parked = 0; /* its function is dropped with the socket */
  if (why == NULL) { /* __gc: no task can be waiting, nothing may run */
    waiter_drop(&s->reader);
    waiter_drop(&s->writer);
    s->events = 0;
    sock_release(L, s);
    return;
  }
  waiter_wake(L, lp, &s->reader);
  waiter_wake(L, lp, &s->writer);
  int events = s->events;
  s->events = 0;
  if (idx != 0)
    lua_pushvalue(L, idx);
  else
    loop_pushanchored(L, lp, s); /* nil unless it is anchored */
  idx = lua_gettop(L);
  sock_release(L, s);
  if (events && !lua_isnil(L, idx) && sock_pushcb(L, idx, SOCK_UV_ONCLOSE)) {
    lua_pushstring(L, why);
    sock_callback(L, s, idx, 1);
  }
  lua_pop(L, 1);
}

/* Shutdown: close every open socket, waking the tasks waiting on them. */
void sock_closeall(lua_State *L, struct loop *lp) {
  struct link *open = &lp->socks->open;
  while (!link_empty(open))
    sock_destroy(L, link_entry(open->next, struct sock, link), 0, "closed");
}

/* A connection that has not sent its first byte yet may have its first
 * request on the way: it is not idle until it is a second old (Go's
 * Shutdown waits 5 s for those), lest a new client's request be lost. */
int sock_isyoung(const struct sock *s) {
  return s->bytes_in == 0 &&
         ev_now(s->loop->ev) - s->created < BERTH_YOUNG_SECONDS;
}

/* Is s a served connection waiting for its next message? */
static int sock_isidle(const struct sock *s) {
  return s->srv != NULL && s->rbuf.len == 0 && s->wbuf.len == 0 &&
         (s->reader.task != NULL || s->callback ||
          (s->parked && !s->owned)) &&
         !(s->tls != NULL && tls_readable(s->tls));
}

/* Destroying a socket runs Lua only through its on("close"); after that,
 * anything in the list may have changed, so the walk starts over. Returns
 * how many idle connections were spared for being young. */
int sock_closeidle(lua_State *L, struct loop *lp) {
  struct link *open = &lp->socks->open;
  int young = 0;
  for (struct link *l = open->next; l != open;) {
    struct sock *s = link_entry(l, struct sock, link);
    if (!sock_isidle(s) || (sock_isyoung(s) && ++young)) {
      l = l->next;
      continue;
    }
    int callbacks = s->events;
    struct link *next = l->next;
    sock_destroy(L, s, 0, "closed");
    l = callbacks ? open->next : next;
    young = callbacks ? 0 : young;
  }
  return young;
}

/* Parked (onreadable) and held by no task: wait for readiness with no
 * task at all. What is already here -- bytes a read left buffered,
 * records OpenSSL decrypted, the EOF -- starts the task on the next loop
 * turn, as readiness would. The idle timeout keeps running (the socket's
 * own timer). [-0, +0, m] */
static void sock_park(lua_State *L, struct sock *s, int idx) {
  struct ev_loop *ev = s->loop->ev;
  sock_hold(L, s, idx);
  if (s->rbuf.len == 0)
    buf_free(&s->rbuf); /* an idle connection holds no buffer */
  if (!ev_is_active(&s->rio))
    ev_io_start(ev, &s->rio);
  if (s->rbuf.len > 0 || s->eof || s->rerr ||
      (s->tls != NULL && tls_readable(s->tls)))
    ev_feed_event(ev, &s->rio, EV_READ);
  sock_timer_arm(s);
}

/* A handler task ended; the socket is on the stack top. Callbacks keep it
 * open (callback mode on a served connection), and so does onreadable
 * (parked until its next bytes) -- unless a shutdown is draining the loop
 * and the connection is idle: then it closes now, as a reader coming back
 * to wait would (socket_io.c). Otherwise it closes, after the handler's
 * task flushed what it wrote (server.c). */
void sock_handlerdone(lua_State *L, int ok) {
  struct sock *s = sock_check(L, -1);
  s->owned = 0;
  if (s->fd < 0)
    return;
  if (ok && s->parked && !(sock_isidle(s) && s->loop->draining &&
                            !sock_isyoung(s))) {
    sock_park(L, s, lua_gettop(L));
    return;
  }
  if (ok && (s->callback || s->events)) {
    sock_hold(L, s, -1);
    return;
  }
  sock_destroy(L, s, lua_gettop(L), ok ? "closed" : "error");
}

void sock_stats(lua_State *L, struct loop *lp) {
  struct sockset *set = lp->socks;
  lua_pushinteger(L, set->nopen);
  lua_setfield(L, -2, "sockets");
  lua_pushinteger(L, set->nopen);
  lua_setfield(L, -2, "active");
  lua_pushinteger(L, set->total);
  lua_setfield(L, -2, "total");
  lua_pushinteger(L, (lua_Integer)set->bytes_in);
  lua_setfield(L, -2, "bytes_in");
  lua_pushinteger(L, (lua_Integer)set->bytes_out);
  lua_setfield(L, -2, "bytes_out");
}

static int sock_close(lua_State *L) {
  struct sock *s = sock_self(L);
  sock_destroy(L, s, 1, "closed"); /* a local close says closed (9.11) */
  lua_pushboolean(L, 1);
  return 1;
}

static int sock__gc(lua_State *L) {
  struct sock *s = sock_self(L);
  if (s->fd >= 0)
    sock_destroy(L, s, 1, NULL);
  return 0;
}

static int sock__tostring(lua_State *L) {
  struct sock *s = sock_self(L);
  if (s->fd < 0)
    lua_pushliteral(L, "Socket (closed)");
  else
    lua_pushfstring(L, "Socket (%p)", (void *)s);
  return 1;
}

/* -------------------------------------------------------------- methods */

/* on("data"): bytes a read left buffered come first (9.9): the watcher is
 * fed an event so they are delivered from the loop, not inside on(). */
static void sock_setcallback(struct sock *s, int on) {
  struct ev_loop *ev = s->loop->ev;
  s->callback = on != 0;
  if (!on) {
    ev_io_stop(ev, &s->rio);
    return;
  }
  ev_io_start(ev, &s->rio);
  if (s->rbuf.len > 0 || s->eof)
    ev_feed_event(ev, &s->rio, EV_READ);
}

/* Whether the socket at idx has on("close") or on("drain"). */
static int sock_hasevents(lua_State *L, int idx) {
  int onclose = sock_getuv(L, idx, SOCK_UV_ONCLOSE) == LUA_TFUNCTION;
  int ondrain = sock_getuv(L, idx, SOCK_UV_ONDRAIN) == LUA_TFUNCTION;
  lua_pop(L, 2);
  return onclose || ondrain;
}

/* on("message", fn): the socket's inbox calls fn(msg, from) (berth.bus),
 * as sock:inbox():on(fn) does; here, so that on()'s argument errors name
 * on() whatever the event. */
static int sock_onmessage(lua_State *L) {
  lua_settop(L, 3);
  lua_getfield(L, 1, "inbox");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);               /* stack: sock, event, fn, inbox */
  lua_getfield(L, 4, "on");
  lua_pushvalue(L, 4);
  lua_pushvalue(L, 3);
  lua_call(L, 2, 0);
  lua_settop(L, 1);
  return 1;
}

static int sock_on(lua_State *L) {
  static const char *const names[] = {"data", "close", "drain", "message",
                                      NULL};
  static const int uvs[] = {SOCK_UV_ONDATA, SOCK_UV_ONCLOSE, SOCK_UV_ONDRAIN};
  struct sock *s = sock_self(L);
  int which = luaL_checkoption(L, 2, NULL, names);
  if (which == 3)
    return sock_onmessage(L);
  if (s->fd < 0 && lua_isnil(L, 3)) {
    lua_settop(L, 1); /* unregistering on a closed socket: nothing to do */
    return 1;
  }
  sock_checkopen(L, 1);
  int set = !lua_isnil(L, 3); /* nil unregisters */
  if (set)
    luaL_checktype(L, 3, LUA_TFUNCTION);
  if (which == 0 && s->reader.task)
    return luaL_error(L, "on: socket has a pending read");
  if (which == 0 && set && s->parked)
    return luaL_error(L, "on: the socket waits in onreadable");
  lua_settop(L, 3);
  sock_setuv(L, 1, uvs[which]);
  if (which == 0)
    sock_setcallback(s, set);
  else /* on(event, nil) unregisters: a handler's socket closes again */
    s->events = sock_hasevents(L, 1);
  sock_hold(L, s, 1);
  sock_release(L, s);
  lua_settop(L, 1);
  return 1;
}

/* onreadable(fn): the connection waits for its next bytes with no task.
 * Once the task that owns it (a handler) has returned -- or at once when
 * no task owns it -- nothing runs until bytes or the EOF arrive; then
 * fn(sock) runs as a new handler task, owning the socket as the first
 * handler did. One shot; onreadable(nil) cancels. On a closed socket:
 * nil, "closed" (or the code it closed with). */
static int sock_onreadable(lua_State *L) {
  struct sock *s = sock_self(L);
  lua_settop(L, 2);
  if (s->fd < 0)
    return util_fail(L, s->why); /* closed meanwhile: nothing to wait for */
  if (lua_isnil(L, 2)) {
    s->parked = 0;
    lua_setiuservalue(L, 1, SOCK_UV_ONDATA);
    sock_release(L, s); /* the read watcher stops lazily */
    return 1;
  }
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (s->callback)
    return luaL_error(L, "onreadable: the socket is in on(\"data\") mode");
  if (s->reader.task)
    return luaL_error(L, "onreadable: socket has a pending read");
  lua_setiuservalue(L, 1, SOCK_UV_ONDATA);
  s->parked = 1;
  if (!s->owned)
    sock_park(L, s, 1);
  return 1;
}

static int sock_settimeout(lua_State *L) {
  struct sock *s = sock_self(L);
  /* nil or a negative number: no timeout (as documented before times
   * were checked everywhere); otherwise a time like any other. */
  double t = lua_isnumber(L, 2) && lua_tonumber(L, 2) < 0
                 ? -1 : check_timeout(L, 2, "settimeout: seconds", -1);
  static const char *const which[] = {"both", "read", "write", NULL};
  int w = luaL_checkoption(L, 3, "both", which);
  if (w != 2)
    s->rtimeout = t;
  if (w != 1)
    s->wtimeout = t;
  lua_settop(L, 1);
  return 1;
}

static int sock_setsize(lua_State *L, size_t *field) {
  lua_Integer n = luaL_checkinteger(L, 3);
  luaL_argcheck(L, n > 0, 3, "must be positive");
  *field = (size_t)n;
  return 0;
}

/* A write watermark: beyond 4 GiB means the same as 4 GiB (a buffer
 * never holds that much: max_output). */
static uint32_t sock_watermark(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 3);
  luaL_argcheck(L, n > 0, 3, "must be positive");
  return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* A time limit for setoption (the value at 3): seconds, 0, false or
 * math.huge for none, or true for `loopval`, the loop's value of it
 * (berth.limits{}, the host's option): what a served connection gets. */
static float sock_checklimit(lua_State *L, const char *what,
                             double loopval) {
  if (lua_type(L, 3) == LUA_TBOOLEAN && lua_toboolean(L, 3))
    return sock_limittime(loopval);
  return sock_limittime(check_time(L, 3, what, 0)); /* inf: none */
}

static int sock_setoption(lua_State *L) {
  struct sock *s = sock_checkopen(L, 1);
  const struct limits *deflim = &s->loop->limits;
  static const char *const names[] = {"nodelay", "keepalive", "maxline",
                                      "highwater", "lowwater", "idle_timeout",
                                      "send_timeout", NULL};
  int rc = 0;
  switch (luaL_checkoption(L, 2, NULL, names)) {
  case 0:
    rc = net_set_bool(s->fd, IPPROTO_TCP, TCP_NODELAY, lua_toboolean(L, 3));
    break;
  case 1:
    rc = net_set_bool(s->fd, SOL_SOCKET, SO_KEEPALIVE, lua_toboolean(L, 3));
    break;
  case 2: sock_setsize(L, &s->maxline); break;
  case 3: s->hiwat = sock_watermark(L); break;
  case 4: s->lowat = sock_watermark(L); break;
  case 5: /* none: a WebSocket may stay quiet for minutes */
    s->idle_timeout = sock_checklimit(L, "setoption: idle_timeout",
                                      deflim->idle_timeout);
    sock_timer_arm(s);
    break;
  case 6:
    s->send_timeout = sock_checklimit(L, "setoption: send_timeout",
                                      deflim->send_timeout);
    sock_timer_arm(s);
    break;
  }
  if (rc < 0)
    return util_failerr(L, -rc);
  lua_settop(L, 1);
  return 1;
}

static int sock_shutdown(lua_State *L) {
  struct sock *s = sock_self(L);
  static const char *const hows[] = {"w", "r", "rw", NULL};
  int how = luaL_checkoption(L, 2, "w", hows);
  if (s->fd < 0)
    return util_fail(L, s->why);
  if (how != 0 && shutdown(s->fd, SHUT_RD) != 0)
    return util_failerr(L, errno);
  if (how != 1) {
    if (s->tls != NULL && !s->shut_wr) {
      tls_close(s->tls); /* close_notify first; reading goes on */
      sock_tlsio(L, s, 1);
    }
    /* With output queued, SHUT_WR waits for it to drain (sock_wio_cb). */
    if (s->wbuf.len == 0 && shutdown(s->fd, SHUT_WR) != 0)
      return util_failerr(L, errno);
    s->shut_wr = 1;
  }
  lua_settop(L, 1);
  return 1;
}

static int sock_peer(lua_State *L) {
  struct sock *s = sock_self(L);
  struct net_addr a;
  sock_notepeer(s);
  if (s->peerlen > 0) {
    memset(&a, 0, sizeof a);
    memcpy(&a.ss, &s->peer, s->peerlen);
    a.len = s->peerlen;
  } else if (s->fd < 0) {
    return util_fail(L, s->why);
  } else {
    int rc = net_peer_addr(s->fd, &a);
    if (rc < 0)
      return util_failerr(L, -rc);
  }
  return util_pushaddr(L, &a);
}

/* The peer as log records show it: "1.2.3.4:5", "[::1]:5", a unix path;
 * "" when unknown (an unnamed unix client). */
void sock_peertext(struct sock *s, char *out, size_t len) {
  struct net_addr a;
  char host[NET_ADDRSTRLEN];
  int port;
  sock_notepeer(s);
  memset(&a, 0, sizeof a);
  if (len > 0)
    out[0] = '\0';
  if (s->peerlen == 0 || len == 0)
    return;
  memcpy(&a.ss, &s->peer, s->peerlen);
  a.len = s->peerlen;
  if (net_format_addr(&a, host, sizeof host, &port) < 0)
    return;
  if (a.ss.ss_family == AF_INET6)
    snprintf(out, len, "[%s]:%d", host, port);
  else if (a.ss.ss_family == AF_INET)
    snprintf(out, len, "%s:%d", host, port);
  else
    snprintf(out, len, "%s", host);
}

static int sock_localaddr(lua_State *L) {
  struct sock *s = sock_self(L);
  struct net_addr a;
  if (s->fd < 0)
    return util_fail(L, s->why);
  int rc = net_local_addr(s->fd, &a);
  if (rc < 0)
    return util_failerr(L, -rc);
  return util_pushaddr(L, &a);
}

static int sock_pending(lua_State *L) {
  struct sock *s = sock_self(L);
  lua_pushinteger(L, (lua_Integer)s->wbuf.len);
  lua_pushinteger(L, (lua_Integer)s->rbuf.len);
  return 2;
}

static int sock_stats_m(lua_State *L) {
  struct sock *s = sock_self(L);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)s->bytes_in);
  lua_setfield(L, -2, "bytes_in");
  lua_pushinteger(L, (lua_Integer)s->bytes_out);
  lua_setfield(L, -2, "bytes_out");
  lua_pushnumber(L, s->created);
  lua_setfield(L, -2, "created");
  return 1;
}

static int sock_fd(lua_State *L) {
  struct sock *s = sock_self(L);
  lua_pushinteger(L, s->fd < 0 ? -1 : s->fd);
  return 1;
}

/* -------------------------------------------------------------- connect */

static int sock_connect_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int idx = (int)ctx;
  struct sock *s = sock_check(L, idx);
  if (s->fd < 0)
    return util_fail(L, s->why);
  int err = s->writer.timedout ? ETIMEDOUT : -net_connect_result(s->fd);
  s->writer.timedout = 0;
  if (err == 0) {
    /* An idle timeout given next counts from here, as a served
     * connection's counts from its accept, not from the connect's start. */
    s->last_active = s->last_drain = ev_now(s->loop->ev);
    lua_settop(L, idx);
    return 1;
  }
  sock_destroy(L, s, idx, "closed");
  return util_failerr(L, err);
}

/* connect(addr, port|nil, timeout): a numeric IP and port, or a unix path
 * when port is nil. Task only; resolution happens before, in Lua. */
int sock_connect(lua_State *L) {
  struct loop *lp = loop_check(L, lua_upvalueindex(1));
  const char *host = luaL_checkstring(L, 1);
  double timeout = check_timeout(L, 3, "connect: timeout", -1);
  struct net_addr a;
  sched_checkwait(L, lp, "connect");
  int rc = lua_isnoneornil(L, 2)
               ? net_parse_unix(host, &a)
               : net_parse_ip(host, (int)luaL_checkinteger(L, 2), &a);
  if (rc < 0)
    return util_failerr(L, -rc);
  lua_settop(L, 3);
  struct sock *s = sock_new(L, lp); /* stack: host, port, timeout, sock */
  int pending;
  int fd = net_connect(&a, &pending);
  if (fd < 0)
    return util_failerr(L, -fd);
  sock_attach(s, fd);
  sock_setpeer(s, &a);
  if (((struct sockaddr *)&a.ss)->sa_family != AF_UNIX)
    net_set_bool(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  if (!pending)
    return 1;
  s->connecting = 1;
  s->writer.deadline = loop_deadline(lp, timeout);
  sock_hold(L, s, 4); /* before registering: it may raise */
  sched_register(lp, &s->writer);
  ev_io_start(lp->ev, &s->wio);
  sock_timer_arm(s);
  return sched_park(L, lp, NULL, 4, sock_connect_k);
}

/* adopt(fd) -> Socket: take over a connected stream or seqpacket socket
 * (a socketpair end, an inherited connection); it is made non-blocking. */
int sock_adopt(lua_State *L) {
  struct loop *lp = loop_check(L, lua_upvalueindex(1));
  lua_Integer fd = luaL_checkinteger(L, 1);
  luaL_argcheck(L, fd >= 0 && fd <= INT32_MAX, 1, "not a descriptor");
  struct sock *s = sock_new(L, lp);
  int fl = fcntl((int)fd, F_GETFL);
  if (fl < 0 || fcntl((int)fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
      fcntl((int)fd, F_SETFD, FD_CLOEXEC) != 0)
    return util_failerr(L, errno);
  sock_attach(s, (int)fd);
  return 1;
}

static const luaL_Reg sock_meta[] = {
  {"__gc", sock__gc},
  {"__close", sock_close},
  {"__tostring", sock__tostring},
  {NULL, NULL}
};

static const luaL_Reg sock_methods[] = {
  {"close", sock_close},
  {"on", sock_on},
  {"onreadable", sock_onreadable},
  {"settimeout", sock_settimeout},
  {"setoption", sock_setoption},
  {"shutdown", sock_shutdown},
  {"peer", sock_peer},
  {"localaddr", sock_localaddr},
  {"address", sock_localaddr},
  {"pending", sock_pending},
  {"stats", sock_stats_m},
  {"fd", sock_fd},
  {NULL, NULL}
};

/* Leaves the method table on the stack. [-0, +1, m] */
void sock_open(lua_State *L) {
  util_newclass(L, CLS_SOCKET, sock_meta, sock_methods);
  luaL_setfuncs(L, sock_io_methods, 0);
  luaL_setfuncs(L, relay_methods, 0);
}
