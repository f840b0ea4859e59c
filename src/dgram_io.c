/*
 * dgram_io.c -- Datagram receive and send: the hot path.
 *
 * Receiving. One recvmmsg reads up to DGRAM_BATCH datagrams into the
 * loop's receive area (each into a slot of max_datagram bytes; MSG_TRUNC
 * gives the real size of one that did not fit), and they are copied at
 * once into the socket's read-ahead queue, before any Lua runs: the area
 * is shared by the loop's Datagrams, and a callback or handler may well
 * receive on another one. Every consumer then takes datagrams from the
 * queue: recvfrom/recv in a task, or the dispatch that calls on("packet")
 * or starts a handler task per datagram. The queue plus the running
 * handlers are bounded by max_queue: at the bound nothing more is read,
 * and the kernel's buffer (recvbuf) holds, then drops, the rest. A
 * truncated datagram is counted and reported (on("truncated"), else the
 * log), never handed out cut.
 *
 * Sending. sendto/send try sendto(2) at once. What the kernel refuses with
 * EAGAIN goes into the socket's send queue, drained by the write watcher.
 * Bursts are batched: inside a dispatch (on("packet") callbacks and the
 * first run of handler tasks) every send is queued and one sendmmsg sends
 * the replies to a whole batch; elsewhere the first send on a socket in a
 * round of callbacks (I/O callbacks after a poll, or the tasks the
 * scheduler resumes before one) goes at once and reports its error at
 * once, and the next ones are queued and sent together by the flusher at
 * the end of that round. The
 * queue holds DGRAM_BATCH datagrams and DGRAM_SENDQ_BYTES bytes; when it
 * is full a task waits for room (backpressure) and a callback gets nil,
 * "wouldblock". Sends never block the loop.
 */
#define _GNU_SOURCE /* struct mmsghdr */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core.h"
#include "dgram.h"

#define MAX_UDP4 65507 /* 65535 - IPv4 header - UDP header */
#define MAX_UDP6 65527 /* 65535 - UDP header (no jumbograms) */

/* ------------------------------------------------------------ timeouts */

static void dgram_timer_arm(struct dgram *d) {
  struct ev_loop *ev = d->loop->ev;
  ev_tstamp next = -1;
  if (d->reader.task != NULL && d->reader.deadline >= 0)
    next = d->reader.deadline;
  if (d->writer.task != NULL && d->writer.deadline >= 0 &&
      (next < 0 || d->writer.deadline < next))
    next = d->writer.deadline;
  ev_timer_stop(ev, &d->timer);
  if (next < 0)
    return;
  ev_tstamp after = next - ev_now(ev);
  ev_timer_set(&d->timer, after > 0 ? after : 0, 0);
  ev_timer_start(ev, &d->timer);
}

static struct task *dgram_takedue(struct waiter *w, ev_tstamp now) {
  if (w->task == NULL || w->deadline < 0 || w->deadline > now)
    return NULL;
  w->timedout = 1;
  return waiter_take(w);
}

/* Both waiters may be due. Each waiting task holds the Datagram on its
 * stack, so resuming the first cannot free it under the second. */
static void dgram_timer_cb(struct ev_loop *ev, ev_timer *t, int revents) {
  (void)revents;
  struct dgram *d = t->data;
  struct loop *lp = d->loop;
  struct task *r = dgram_takedue(&d->reader, ev_now(ev));
  struct task *w = dgram_takedue(&d->writer, ev_now(ev));
  dgram_timer_arm(d); /* before the resumes: afterwards d may be gone */
  if (r != NULL)
    sched_resume(lp, r);
  if (w != NULL)
    sched_resume(lp, w);
}

/* ----------------------------------------------------------- receiving */

size_t dgram_room(const struct dgram *d) {
  size_t used = d->rq.count + (size_t)d->active;
  if (d->max_queue == SIZE_MAX)
    return SIZE_MAX;
  return used < d->max_queue ? d->max_queue - used : 0;
}

/* Make the receive area hold `want` slots of `slot` bytes if it can:
 * returns how many it holds (at least 1), or 0 without memory. Its pages
 * are touched only as datagrams land, so small datagrams cost little of
 * the 4 MiB. */
static unsigned dgram_area(struct dgramset *set, size_t slot, size_t want) {
  size_t size = slot > DGRAM_AREA ? slot : DGRAM_AREA;
  if (set->areasize < size) {
    free(set->area);
    set->area = malloc(size);
    set->areasize = set->area != NULL ? size : 0;
    if (set->area == NULL)
      return 0;
  }
  size_t fit = set->areasize / slot;
  if (want > DGRAM_BATCH)
    want = DGRAM_BATCH;
  return (unsigned)(want < fit ? want : fit);
}

/* Queue the datagram of msgs[i] (its address unmapped: a dual-stack
 * socket reports IPv4 peers as IPv4). */
static int dgram_take(struct dgram *d, struct dgramset *set, unsigned i,
                      size_t slot) {
  struct mmsghdr *m = &set->msgs[i];
  size_t size = m->msg_len;
  if ((m->msg_hdr.msg_flags & MSG_TRUNC) && size <= slot)
    size = slot + 1; /* cut, real size unknown: at least one byte more */
  int cut = size > slot;
  size_t len = cut ? slot : size;
  struct net_addr a;
  memset(&a, 0, sizeof a);
  a.len = m->msg_hdr.msg_namelen <= sizeof a.ss ? m->msg_hdr.msg_namelen : 0;
  memcpy(&a.ss, &set->addrs[i], a.len);
  net_addr_unmap(&a);
  if (dgq_push(&d->rq, &a.ss, a.len, set->iov[i].iov_base, len, size) < 0)
    return -ENOMEM;
  d->received++;
  d->bytes_in += len;
  d->truncated += (uint64_t)cut;
  return 0;
}

/* One recvmmsg of up to `want` datagrams into the read-ahead queue: how
 * many, or -errno (-EAGAIN: none; readable is cleared). */
static int dgram_fill(struct dgram *d, size_t want) {
  struct dgramset *set = d->loop->dgrams;
  size_t slot = d->max_datagram;
  unsigned n = dgram_area(set, slot, want);
  if (n == 0)
    return -ENOMEM;
  for (unsigned i = 0; i < n; i++) {
    set->iov[i].iov_base = set->area + (size_t)i * slot;
    set->iov[i].iov_len = slot;
    memset(&set->msgs[i], 0, sizeof set->msgs[i]);
    set->msgs[i].msg_hdr.msg_name = &set->addrs[i];
    set->msgs[i].msg_hdr.msg_namelen = sizeof set->addrs[i];
    set->msgs[i].msg_hdr.msg_iov = &set->iov[i];
    set->msgs[i].msg_hdr.msg_iovlen = 1;
  }
  int got = net_recvmmsg(d->fd, set->msgs, n);
  d->recv_calls++;
  if (got <= 0) {
    if (got == -EAGAIN || got == 0)
      d->readable = 0;
    return got == 0 ? -EAGAIN : got;
  }
  if ((unsigned)got < n)
    d->readable = 0; /* drained the kernel: wait for readiness next time */
  for (int i = 0; i < got; i++)
    if (dgram_take(d, set, (unsigned)i, slot) < 0)
      return -ENOMEM;
  return got;
}

/* A datagram bigger than max_datagram: on("truncated", fn(size, host,
 * port)) if set (a plain protected call), else a warning at most once a
 * second. Host and port are at hidx, hidx + 1. [-0, +0, m] */
static void dgram_report(lua_State *L, struct dgram *d, int didx,
                         size_t size, int hidx) {
  struct loop *lp = d->loop;
  if (lua_getiuservalue(L, didx, DGRAM_UV_TRUNC) == LUA_TFUNCTION) {
    lua_getiuservalue(L, didx, DGRAM_UV_ONERROR);
    lua_insert(L, -2);
    int herr = lua_gettop(L) - 1;
    lua_pushinteger(L, (lua_Integer)size);
    lua_pushvalue(L, hidx);
    lua_pushvalue(L, hidx + 1);
    sched_pcall(L, lp, 3, herr, didx);
    lua_settop(L, herr - 1);
    return;
  }
  lua_pop(L, 1);
  if (ev_now(lp->ev) - d->lastwarn >= 1.0) {
    d->lastwarn = ev_now(lp->ev);
    loop_log(lp, "warn", "udp: dropped a %zu-byte datagram from %s:%d: "
             "max_datagram is %zu (on(\"truncated\") to handle these)",
             size, lua_tostring(L, hidx), (int)lua_tointeger(L, hidx + 1),
             d->max_datagram);
  }
}

/* Take the oldest read-ahead datagram, which was cut: report it, then
 * nil, "toolarge", size, host, port (who sent it, to answer). */
static int dgram_readtrunc(lua_State *L, struct dgram *d,
                           const struct dgq_item *it) {
  size_t size = it->size;
  dgram_pushaddr(L, it->addr, it->alen);
  dgq_pop(&d->rq, 1); /* before Lua runs: it may close d and free rq */
  dgram_report(L, d, 1, size, lua_gettop(L) - 1);
  lua_pushnil(L);
  lua_pushliteral(L, "toolarge");
  lua_pushinteger(L, (lua_Integer)size);
  lua_rotate(L, -5, 3); /* nil, "toolarge", size, host, port */
  return 5;
}

/* Complete a receive from the queue and the kernel: the number of results
 * pushed, or -1 when the task has to wait for readiness. */
static int dgram_tryread(lua_State *L, struct dgram *d, int withaddr) {
  for (;;) {
    struct dgq_item it;
    if (dgq_front(&d->rq, &it) == 0) {
      if (it.size > it.len)
        return dgram_readtrunc(L, d, &it);
      lua_pushlstring(L, it.data, it.len);
      if (withaddr)
        dgram_pushaddr(L, it.addr, it.alen);
      dgq_pop(&d->rq, 1);
      return withaddr ? 3 : 1;
    }
    if (d->quiet)
      return util_fail(L, "closed"); /* shutdown: nothing more comes */
    if (!d->readable)
      return -1;
    size_t want = dgram_room(d);
    int rc = dgram_fill(d, want > 0 ? want : 1);
    if (rc == -EAGAIN)
      return -1;
    if (rc < 0)
      return util_failerr(L, -rc); /* "refused": a connected peer's ICMP */
  }
}

static int dgram_recv_k(lua_State *L, int status, lua_KContext ctx);

static int dgram_doread(lua_State *L, int withaddr, int retry) {
  struct dgram *d = dgram_check(L, 1);
  double timeout = check_timeout(L, 2, withaddr ? "recvfrom: timeout"
                                                : "recv: timeout", d->timeout);
  struct loop *lp = d->loop;
  if (d->fd < 0)
    return util_fail(L, "closed");
  if (!retry) {
    const char *what = withaddr ? "recvfrom" : "recv";
    if (d->reader.task != NULL)
      return luaL_error(L, "datagram socket already has a pending receive");
    if (d->mode != DM_TASK)
      return luaL_error(L, "%s: the socket is served by %s", what,
                        d->mode == DM_CALLBACK ? "on(\"packet\")" : "serve()");
    sched_checkwait(L, lp, what);
    d->reader.deadline = loop_deadline(lp, timeout);
  } else if (d->reader.timedout) {
    d->reader.timedout = 0;
    return util_fail(L, "timeout");
  }
  int n = dgram_tryread(L, d, withaddr);
  if (n >= 0)
    return sched_spend(L, lp, n);
  sched_register(lp, &d->reader); /* the timer sees its deadline */
  if (!ev_is_active(&d->rio))
    ev_io_start(lp->ev, &d->rio);
  dgram_timer_arm(d);
  return sched_park(L, lp, NULL, withaddr, dgram_recv_k);
}

static int dgram_recv_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return dgram_doread(L, (int)ctx, 1);
}

/* recvfrom([timeout]) -> data, host, port */
static int dgram_recvfrom(lua_State *L) {
  lua_settop(L, 2);
  return dgram_doread(L, 1, 0);
}

/* recv([timeout]) -> data: for a connected socket, whose peer is known. */
static int dgram_recv(lua_State *L) {
  lua_settop(L, 2);
  return dgram_doread(L, 0, 0);
}

/* ------------------------------------------------------------- sending */

static int dgram_sqroom(const struct dgram *d, size_t len) {
  return d->sq.count == 0 ||
         (d->sq.count < DGRAM_BATCH && d->sq.bytes + len <= DGRAM_SENDQ_BYTES);
}

/* Send what the queue holds, in sendmmsg batches, until it is empty or
 * the kernel is full. A datagram the kernel refuses is dropped and
 * counted; on a connected socket its error is also kept for the next
 * send, the way the kernel reports a peer's ICMP errors. No Lua. */
static void dgram_sendqueue(struct dgram *d) {
  while (d->sq.count > 0) {
    struct dgq_item it[DGRAM_BATCH];
    struct mmsghdr m[DGRAM_BATCH];
    struct iovec iov[DGRAM_BATCH];
    size_t n = dgq_gather(&d->sq, it, DGRAM_BATCH);
    memset(m, 0, n * sizeof m[0]);
    for (size_t i = 0; i < n; i++) {
      iov[i].iov_base = (void *)it[i].data;
      iov[i].iov_len = it[i].len;
      m[i].msg_hdr.msg_name = it[i].alen > 0 ? (void *)it[i].addr : NULL;
      m[i].msg_hdr.msg_namelen = (socklen_t)it[i].alen;
      m[i].msg_hdr.msg_iov = &iov[i];
      m[i].msg_hdr.msg_iovlen = 1;
    }
    int rc = net_sendmmsg(d->fd, m, (unsigned)n);
    d->send_calls++;
    if (rc > 0) {
      for (int i = 0; i < rc; i++)
        d->bytes_out += it[i].len;
      d->sent += (uint64_t)rc;
      dgq_pop(&d->sq, (size_t)rc);
    } else if (rc == -EAGAIN || rc == 0) {
      return; /* the write watcher goes on */
    } else {
      d->dropped++;
      d->last_error = net_errcode(-rc);
      if (d->connected)
        d->serr = rc;
      dgq_pop(&d->sq, 1);
    }
  }
}

void dgram_flushnow(struct dgram *d) {
  dgram_sendqueue(d);
}

/* After the queue was sent from a watcher: what the kernel did not take
 * keeps the write watcher running (C keeps holding the Datagram, L1);
 * empty, C lets go. A waiting writer goes on once the queue is half
 * empty; its task holds the Datagram, so it outlives the resume. No Lua
 * runs but the resume, and letting go cannot raise. */
static void dgram_drained(struct dgram *d) {
  struct loop *lp = d->loop;
  if (d->sq.count > 0) {
    if (!ev_is_active(&d->wio))
      ev_io_start(lp->ev, &d->wio);
  } else {
    ev_io_stop(lp->ev, &d->wio);
    dgram_keep(lp->L, d, 0);
  }
  if (d->writer.task != NULL && d->sq.count <= DGRAM_BATCH / 2 &&
      d->sq.bytes <= DGRAM_SENDQ_BYTES / 2) {
    struct task *t = waiter_take(&d->writer);
    dgram_timer_arm(d); /* its deadline no longer counts */
    sched_resume(lp, t);
  }
}

static void dgram_flush_all(struct loop *lp) {
  struct dgramset *set = lp->dgrams;
  set->epoch++; /* a new round: the next send on each socket goes at once */
  while (!link_empty(&set->dirty)) {
    struct dgram *d = link_entry(set->dirty.next, struct dgram, dirty);
    link_remove(&d->dirty);
    d->deferred = 0;
    dgram_sendqueue(d);
    dgram_drained(d);
  }
  ev_idle_stop(lp->ev, &set->flush_idle);
}

static void dgram_flush_idle_cb(struct ev_loop *ev, ev_idle *w, int revents) {
  (void)ev; (void)revents;
  dgram_flush_all(w->data);
}

static void dgram_flush_prepare_cb(struct ev_loop *ev, ev_prepare *w,
                                   int revents) {
  (void)ev; (void)revents;
  dgram_flush_all(w->data);
}

static void dgram_flush_check_cb(struct ev_loop *ev, ev_check *w,
                                 int revents) {
  (void)ev; (void)revents;
  dgram_flush_all(w->data);
}

/* Lowest priority: after the scheduler's prepare watcher has resumed the
 * queued tasks, and after the I/O callbacks of an iteration. Unref'd:
 * they alone must not keep run() going. */
void dgram_startflusher(struct loop *lp, struct dgramset *set) {
  ev_prepare_init(&set->flush_prepare, dgram_flush_prepare_cb);
  ev_check_init(&set->flush_check, dgram_flush_check_cb);
  ev_idle_init(&set->flush_idle, dgram_flush_idle_cb);
  set->flush_prepare.data = set->flush_check.data = set->flush_idle.data = lp;
  ev_set_priority(&set->flush_prepare, EV_MINPRI);
  ev_set_priority(&set->flush_check, EV_MINPRI);
  ev_prepare_start(lp->ev, &set->flush_prepare);
  ev_check_start(lp->ev, &set->flush_check);
  ev_unref(lp->ev);
  ev_unref(lp->ev);
}

void dgram_stopflusher(struct loop *lp, struct dgramset *set) {
  ev_ref(lp->ev); /* balance the unrefs */
  ev_ref(lp->ev);
  ev_prepare_stop(lp->ev, &set->flush_prepare);
  ev_check_stop(lp->ev, &set->flush_check);
  ev_idle_stop(lp->ev, &set->flush_idle);
}

/* The write watcher runs while the queue holds something, and C holds the
 * Datagram meanwhile (L1). idx: its stack index. [-0, +0, m] */
static void dgram_armwrite(lua_State *L, struct dgram *d, int idx) {
  struct ev_loop *ev = d->loop->ev;
  if (d->sq.count > 0 && !ev_is_active(&d->wio))
    ev_io_start(ev, &d->wio);
  else if (d->sq.count == 0 && ev_is_active(&d->wio))
    ev_io_stop(ev, &d->wio);
  dgram_keep(L, d, idx);
}

static void dgram_flush(lua_State *L, struct dgram *d, int idx) {
  dgram_sendqueue(d);
  dgram_armwrite(L, d, idx);
}

/* Queue a datagram. A dispatch sends its batch, and arms, at its end; a
 * full kernel (`full`, or the write watcher already running) is the write
 * watcher's business; a burst is the flusher's. */
static int dgram_enqueue(lua_State *L, struct dgram *d, int idx,
                         const char *p, size_t len, const struct net_addr *to,
                         int full) {
  if (dgq_push(&d->sq, to ? (const void *)&to->ss : NULL, to ? to->len : 0, p,
               len, len) < 0)
    return luaL_error(L, "not enough memory");
  if (d->batching)
    return 0;
  if (full || ev_is_active(&d->wio)) {
    dgram_armwrite(L, d, idx);
    return 0;
  }
  if (!d->deferred) {
    struct dgramset *set = d->loop->dgrams;
    d->deferred = 1;
    link_push(&set->dirty, &d->dirty);
    if (!ev_is_active(&set->flush_idle)) /* the poll must not block now */
      ev_idle_start(d->loop->ev, &set->flush_idle);
  }
  dgram_keep(L, d, idx);
  return 0;
}

/* Send one datagram, or queue it, without waiting: 0, -EAGAIN when the
 * queue is full too (the caller waits or says "wouldblock"), or -errno.
 * `to` NULL: the connected peer. The Datagram is at idx. */
static int dgram_post(lua_State *L, struct dgram *d, int idx, const char *p,
                      size_t len, const struct net_addr *to) {
  if ((d->family == AF_INET && len > MAX_UDP4) ||
      (d->family == AF_INET6 && len > MAX_UDP6))
    return -EMSGSIZE; /* said now, not when a queued batch goes out */
  unsigned epoch = d->loop->dgrams->epoch + 1;
  int burst = d->send_epoch == epoch; /* a second send in this round */
  d->send_epoch = epoch;
  if (d->batching || d->sq.count > 0 || burst) {
    if (!dgram_sqroom(d, len) && (d->batching || d->deferred))
      dgram_flush(L, d, idx);
    if (!dgram_sqroom(d, len))
      return -EAGAIN;
    return dgram_enqueue(L, d, idx, p, len, to, 0);
  }
  long n = net_sendto(d->fd, p, len, to);
  d->send_calls++;
  if (n >= 0) {
    d->sent++;
    d->bytes_out += len;
    return 0;
  }
  if (n == -EAGAIN)
    return dgram_enqueue(L, d, idx, p, len, to, 1);
  return (int)n;
}

/* Writable: send the queue. */
static void dgram_wio_cb(struct ev_loop *ev, ev_io *w, int revents) {
  (void)ev; (void)revents;
  struct dgram *d = w->data;
  dgram_sendqueue(d);
  dgram_drained(d);
}

static int dgram_send_k(lua_State *L, int status, lua_KContext ctx);

/* sendto(data, host, port) (withaddr) or send(data). Arguments are parsed
 * again on every attempt (L8). */
static int dgram_dosend(lua_State *L, int withaddr, int retry) {
  struct dgram *d = dgram_check(L, 1);
  size_t len;
  const char *p = luaL_checklstring(L, 2, &len);
  struct net_addr a;
  if (withaddr) {
    int n = dgram_checkaddr(L, d, 3, &a, "sendto");
    if (n > 0)
      return n;
  } else if (!d->connected && d->fd >= 0) {
    return luaL_error(L, "send: the datagram socket is not connected "
                         "(connect first, or use sendto)");
  }
  if (d->fd < 0)
    return util_fail(L, "closed");
  if (!retry && d->writer.task != NULL)
    return luaL_error(L, "datagram socket already has a pending send");
  if (retry && d->writer.timedout) {
    d->writer.timedout = 0;
    return util_fail(L, "timeout");
  }
  if (d->serr != 0) {
    int err = -d->serr;
    d->serr = 0;
    return util_failerr(L, err);
  }
  int rc = dgram_post(L, d, 1, p, len, withaddr ? &a : NULL);
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (rc != -EAGAIN || !sched_canwait(L, d->loop))
    return util_failerr(L, -rc); /* a callback: nil, "wouldblock" */
  if (!retry)
    d->writer.deadline = loop_deadline(d->loop, d->timeout);
  sched_register(d->loop, &d->writer);
  dgram_timer_arm(d);
  return sched_park(L, d->loop, NULL, withaddr, dgram_send_k);
}

static int dgram_send_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return dgram_dosend(L, (int)ctx, 1);
}

static int dgram_sendto(lua_State *L) {
  lua_settop(L, 4);
  return dgram_dosend(L, 1, 0);
}

static int dgram_send(lua_State *L) {
  lua_settop(L, 2);
  return dgram_dosend(L, 0, 0);
}

/* ------------------------------------------------------------ dispatch */

/* An on("packet") call. Stack: fn, data, host, port, dgram. A string fn
 * returns goes back to the sender (reply_to, set by the dispatch for this
 * datagram); a callback never waits, so a full queue drops it (counted). */
static int dgram_callpacket(lua_State *L) {
  struct dgram *d = dgram_check(L, 5);
  lua_pushvalue(L, 5);
  lua_insert(L, 1); /* keep the Datagram below the call (L4) */
  lua_call(L, 4, 1);
  if (lua_type(L, 2) != LUA_TSTRING || d->fd < 0)
    return 0;
  size_t len;
  const char *p = lua_tolstring(L, 2, &len);
  int rc = dgram_post(L, d, 1, p, len, &d->reply_to);
  if (rc < 0) {
    d->dropped++;
    d->last_error = net_errcode(-rc);
  }
  return 0;
}

static int dgram_handler_k(lua_State *L, int status, lua_KContext ctx);

/* A handler task: fn(data, host, port, dgram); a string it returns is
 * sent to host, port with sendto (so it may wait for room). Stack: fn,
 * data, host, port, dgram. */
static int dgram_runhandler(lua_State *L) {
  for (int i = 1; i <= 5; i++)
    lua_pushvalue(L, i);
  lua_callk(L, 4, 1, 0, dgram_handler_k);
  return dgram_handler_k(L, LUA_OK, 0);
}

static int dgram_handler_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  if (ctx == 0 && lua_type(L, 6) == LUA_TSTRING) {
    lua_pushcfunction(L, dgram_sendto);
    lua_pushvalue(L, 5);
    lua_pushvalue(L, 6);
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 4);
    lua_callk(L, 4, 0, 1, dgram_handler_k);
  }
  return 0;
}

/* A handler task ended; its Datagram is on the stack top. */
static void dgram_handlerdone(lua_State *L, int ok) {
  (void)ok;
  struct dgram *d = dgram_check(L, -1);
  d->active--;
  if (d->fd >= 0)
    dgram_sync(d); /* there may be room to read again */
}

/* Hand the oldest read-ahead datagram to the callback, or to a new
 * handler task. The Datagram is at idx for the whole call (L4). */
static void dgram_deliver(lua_State *L, struct dgram *d, int idx) {
  struct loop *lp = d->loop;
  struct dgq_item it;
  int base = lua_gettop(L);
  dgq_front(&d->rq, &it);
  if (it.size > it.len) {
    size_t size = it.size;
    dgram_pushaddr(L, it.addr, it.alen);
    dgq_pop(&d->rq, 1);
    dgram_report(L, d, idx, size, base + 1);
    lua_settop(L, base);
    return;
  }
  memcpy(&d->reply_to.ss, it.addr, it.alen);
  d->reply_to.len = (socklen_t)it.alen;
  int handler = d->mode == DM_HANDLER;
  lua_getiuservalue(L, idx, DGRAM_UV_ONERROR);
  lua_pushcfunction(L, handler ? dgram_runhandler : dgram_callpacket);
  lua_getiuservalue(L, idx, handler ? DGRAM_UV_HANDLER : DGRAM_UV_PACKET);
  lua_pushlstring(L, it.data, it.len);
  dgram_pushaddr(L, it.addr, it.alen);
  lua_pushvalue(L, idx);
  dgq_pop(&d->rq, 1);
  if (!handler) {
    sched_pcall(L, lp, 5, base + 1, idx);
    lua_settop(L, base);
    return;
  }
  struct taskopts o = {idx, base + 1, dgram_handlerdone};
  struct task *t = sched_spawn(L, lp, 5, &o);
  d->active++; /* before it runs: it may end, and count down, at once */
  lua_settop(L, base);
  sched_resume(lp, t);
}

static int dgram_deliverable(const struct dgram *d) {
  return d->fd >= 0 && d->mode != DM_TASK && !d->paused;
}

/* Readable in callback or handler mode, run protected: up to DGRAM_ROUNDS
 * recvmmsg batches, each datagram delivered, then that batch's replies go
 * out with one sendmmsg. Lua runs between deliveries, and may close or pause d:
 * the state is looked at again every time. */
static int dgram_dispatch(lua_State *L) {
  struct dgram *d = lua_touserdata(L, 1);
  if (loop_pushanchored(L, d->loop, d) != LUA_TUSERDATA)
    return 0;
  int idx = lua_gettop(L);
  d->batching = 1;
  for (int fills = 0;;) {
    while (d->rq.count > 0 && dgram_deliverable(d))
      dgram_deliver(L, d, idx);
    if (!dgram_deliverable(d) || d->quiet || !d->readable ||
        fills++ == DGRAM_ROUNDS)
      break;
    if (d->sq.count > 0)
      dgram_sendqueue(d); /* this batch's replies go before the next read */
    size_t want = dgram_room(d);
    int rc = want > 0 ? dgram_fill(d, want) : -EAGAIN;
    if (rc < 0) {
      if (rc != -EAGAIN)
        d->last_error = net_errcode(-rc); /* e.g. a connected peer's ICMP */
      break;
    }
  }
  d->batching = 0;
  if (d->fd >= 0) {
    dgram_flush(L, d, idx);
    dgram_sync(d);
  }
  return 0;
}

/* Readable: resume the waiting receiver, or dispatch. With neither, the
 * watcher was left running by the last receive: stop it now (lazy stop,
 * so back-to-back receives never touch epoll). */
static void dgram_rio_cb(struct ev_loop *ev, ev_io *w, int revents) {
  (void)revents;
  struct dgram *d = w->data;
  d->readable = 1;
  if (d->reader.task != NULL) {
    struct task *t = waiter_take(&d->reader);
    dgram_timer_arm(d); /* its deadline no longer counts */
    sched_resume(d->loop, t); /* d may be gone after this */
    return;
  }
  if (d->mode != DM_TASK)
    loop_pcall(d->loop, dgram_dispatch, d);
  else
    ev_io_stop(ev, w);
}

void dgram_initwatchers(struct dgram *d) {
  ev_io_init(&d->rio, dgram_rio_cb, d->fd, EV_READ);
  ev_io_init(&d->wio, dgram_wio_cb, d->fd, EV_WRITE);
  ev_init(&d->timer, dgram_timer_cb);
  d->rio.data = d->wio.data = d->timer.data = d;
}

const luaL_Reg dgram_io_methods[] = {
  {"recvfrom", dgram_recvfrom},
  {"recv", dgram_recv},
  {"sendto", dgram_sendto},
  {"send", dgram_send},
  {NULL, NULL}
};
