/*
 * socket_io.c -- Socket read and write methods: the I/O hot path.
 *
 * Reads are served from the socket's C buffer; when it is empty, one recv
 * lands in the loop's shared scratch buffer and a request it satisfies is
 * answered straight from there, so a connection whose requests arrive
 * whole never allocates a buffer of its own (idle connections hold none).
 * A read that cannot complete parks its task (R4) and retries in its
 * continuation; all state across the yield lives in struct sock or on the
 * task's stack, whose arguments a continuation simply parses again (L8).
 *
 * Writes go out with one writev at once; only what the kernel refuses is
 * copied into the write buffer, and a task yields only above the high
 * watermark until the buffer drains to the low one (backpressure, R11).
 * One exception batches pipelined replies: while unread input is already
 * buffered, a write is queued instead, and the read that next has to wait
 * sends the whole batch with one writev (the write watcher is armed as a
 * safety net, so a handler that stops reading still gets it sent).
 *
 * On a TLS socket a write is encrypted at once (several strings gathered
 * into one record) and what the kernel does not take of the records is
 * what gets buffered, so the watermarks, max_output and pending() count
 * bytes on the wire; reads decrypt into the same buffers (sock_recv).
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "core.h"
#include "frame.h"
#include "tls.h"

enum rfmt { RF_COUNT, RF_LINE, RF_LINE_EOL, RF_ALL, RF_SOME, RF_UNTIL,
            RF_FRAME, RF_INTO };
enum rkind { RK_READ, RK_READSOME, RK_READUNTIL, RK_READINTO };
enum rmatch { R_MORE, R_DONE, R_TOOLARGE };

/* A read request, parsed from the method's arguments on every attempt. */
struct rreq {
  enum rfmt fmt;
  size_t n;          /* RF_COUNT: bytes; RF_SOME: at most */
  const char *delim; /* RF_UNTIL */
  size_t dlen;
  double timeout;    /* per call; -1 none */
  const struct sock_framing *fr; /* RF_FRAME */
  int nres;          /* RF_FRAME: the results its match pushed */
  struct buf *into;  /* RF_INTO: the Buffer (stack index 2) */
};

#define READ_CHUNK (16 * 1024)

static const struct sock_framing prefix_framing;

/* A string format: "l", "L", "a", or a length-prefixed frame (">s4"). */
static void rreq_parsefmt(lua_State *L, struct rreq *q) {
  size_t len;
  const char *f = luaL_optlstring(L, 2, "l", &len);
  struct frame_fmt ff;
  if (*f == '*') { /* accept Lua 5.1 style "*l" */
    f++;
    len--;
  }
  switch (*f) {
  case 'l': q->fmt = RF_LINE; break;
  case 'L': q->fmt = RF_LINE_EOL; break;
  case 'a': q->fmt = RF_ALL; break;
  default:
    if (frame_parse(f, len, &ff) != 0)
      luaL_argerror(L, 2, "invalid format");
    q->fmt = RF_FRAME;
    q->fr = &prefix_framing;
  }
}

/* A retry (the continuation) parses again all but the timeout: the
 * deadline set by the first attempt stands. */
static void rreq_parse(lua_State *L, struct sock *s, int kind, int retry,
                       struct rreq *q) {
  q->fr = NULL;
  q->timeout = retry ? -1
                     : check_timeout(L, kind == RK_READINTO ? 4 : 3,
                                     "read: timeout", s->rtimeout);
  if (kind == RK_READINTO) {
    q->into = lbuf_check(L, 2);
    lua_Integer max = luaL_optinteger(L, 3, BERTH_SCRATCH);
    luaL_argcheck(L, max > 0, 3, "must be positive");
    q->fmt = RF_INTO;
    q->n = (size_t)max;
  } else if (kind == RK_READSOME) {
    lua_Integer max = luaL_optinteger(L, 2, BERTH_SCRATCH);
    luaL_argcheck(L, max > 0, 2, "must be positive");
    q->fmt = RF_SOME;
    q->n = (size_t)max;
  } else if (kind == RK_READUNTIL) {
    q->delim = luaL_checklstring(L, 2, &q->dlen);
    luaL_argcheck(L, q->dlen > 0, 2, "empty delimiter");
    q->fmt = RF_UNTIL;
  } else if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "negative count");
    q->fmt = RF_COUNT;
    q->n = (size_t)n;
  } else {
    rreq_parsefmt(L, q);
  }
}

/* n > limit + extra, without wrapping around when the limit is "none"
 * (SIZE_MAX): the sum would overflow to a tiny number (9.12). */
static int over(size_t n, size_t limit, size_t extra) {
  return limit <= SIZE_MAX - extra && n > limit + extra;
}

/* Match q against bytes p[0..n). s->rscan records how far a search went in
 * vain, so bytes dribbling in are not searched again (no O(n^2)). */
static enum rmatch rreq_match(lua_State *L, struct sock *s, struct rreq *q,
                              char *p, size_t n, size_t *ret, size_t *take) {
  size_t len, total;
  long at;
  switch (q->fmt) {
  case RF_FRAME:
    *take = 0;
    q->nres = q->fr->match(L, s, p, n, take);
    return q->nres > 0 ? R_DONE : R_MORE;
  case RF_COUNT:
    if (q->n > s->lim->max_input)
      return R_TOOLARGE;
    if (n < q->n)
      return R_MORE;
    *ret = *take = q->n;
    return R_DONE;
  case RF_SOME:
  case RF_INTO:
    if (n == 0)
      return R_MORE;
    *ret = *take = n < q->n ? n : q->n;
    return R_DONE;
  case RF_ALL:
    return n > s->lim->max_input ? R_TOOLARGE : R_MORE; /* EOF completes it */
  case RF_LINE:
  case RF_LINE_EOL:
    if (buf_find_line(p, n, s->rscan, &len, &total) == 0) {
      if (len > s->maxline)
        return R_TOOLARGE;
      *ret = q->fmt == RF_LINE ? len : total;
      *take = total;
      return R_DONE;
    }
    s->rscan = n;
    return over(n, s->maxline, 1) ? R_TOOLARGE : R_MORE; /* a pending \r */
  case RF_UNTIL:
    at = buf_find(p, n, s->rscan, q->delim, q->dlen);
    if (at >= 0) {
      if ((size_t)at > s->maxline)
        return R_TOOLARGE;
      *ret = (size_t)at;
      *take = (size_t)at + q->dlen;
      return R_DONE;
    }
    s->rscan = n >= q->dlen ? n - q->dlen + 1 : 0;
    return over(n, s->maxline, q->dlen - 1) ? R_TOOLARGE : R_MORE;
  }
  return R_MORE;
}

/* EOF or an error on the read side: "a" gets everything; any other read
 * gets nil, code and the unreturned bytes, so nothing is lost (E2). */
static int sock_readend(lua_State *L, struct sock *s, const struct rreq *q) {
  struct buf *b = &s->rbuf;
  int n = 1;
  if (q->fmt == RF_FRAME && q->fr->end != NULL)
    return q->fr->end(L, s);
  if (q->fmt != RF_ALL || s->rerr) {
    lua_pushnil(L);
    lua_pushstring(L, s->rerr ? sock_errcode(s->rerr) : "closed");
    n = 3;
  }
  lua_pushlstring(L, buf_begin(b), b->len);
  buf_consume(b, b->len);
  s->rscan = 0;
  return n;
}

/* The writable start of the buffer ("" when it has no memory: n is 0). */
static char *buf_w(struct buf *b) {
  return (char *)buf_begin(b);
}

/* A request completed at p[0..ret) of a match (take bytes consumed): push
 * what it returns (a framing pushed its own results). */
static int rreq_push(lua_State *L, const struct rreq *q, const char *p,
                     size_t ret) {
  if (q->fmt == RF_FRAME)
    return q->nres;
  if (q->fmt == RF_INTO) {
    if (buf_append(q->into, p, ret) < 0)
      return luaL_error(L, "not enough memory");
    lua_pushinteger(L, (lua_Integer)ret);
    return 1;
  }
  lua_pushlstring(L, p, ret);
  return 1;
}

/* The memory of an empty Buffer whose read parks goes to the loop's one
 * spare block rather than to free(), and the next read into an empty
 * Buffer takes it back: ping-pong traffic over many connections then
 * allocates nothing per message, and an idle connection still holds no
 * receive memory. */
static void sock_lendbuf(struct loop *lp, struct buf *b) {
  if (lp->spare.data == NULL && b->cap >= BERTH_SCRATCH) {
    lp->spare = *b;
    lp->spare.off = lp->spare.len = 0;
    *b = (struct buf)BUF_INIT;
  } else {
    buf_free(b);
  }
}

static void sock_borrowbuf(struct loop *lp, struct buf *b) {
  if (b->data == NULL && lp->spare.data != NULL) {
    *b = lp->spare;
    lp->spare = (struct buf)BUF_INIT;
  }
}

/* readinto with nothing buffered: one recv straight into the Buffer's
 * room, no copy; the bytes count as a result (1) or EOF and errors are
 * recorded in s (0). */
static int sock_fillinto(lua_State *L, struct sock *s, struct rreq *q) {
  sock_borrowbuf(s->loop, q->into);
  char *dst = buf_reserve(q->into, q->n);
  if (dst == NULL)
    return luaL_error(L, "not enough memory");
  long got = sock_recv(L, s, 1, dst, q->n);
  if (got <= 0) {
    if (q->into->len == 0)
      sock_lendbuf(s->loop, q->into); /* a Buffer left as garbage at EOF
                                         holds no room the GC cannot see */
    if (got == 0)
      s->eof = 1;
    else if (got != -EAGAIN)
      s->rerr = (int)got;
    return 0;
  }
  buf_commit(q->into, (size_t)got);
  lua_pushinteger(L, got);
  return 1;
}

/* One recv. An empty buffer receives into the loop's scratch buffer and a
 * request completed there is pushed directly (returns its result count);
 * everything else is appended to rbuf (returns 0). EOF and errors are
 * recorded in s. A framing may consume bytes without completing (and may
 * close the socket: then nothing is kept). */
static int sock_fill(lua_State *L, struct sock *s, struct rreq *q) {
  struct buf *b = &s->rbuf;
  int scratch = b->len == 0;
  if (scratch && q->fmt == RF_INTO)
    return sock_fillinto(L, s, q);
  size_t room = BERTH_SCRATCH;
  char *dst = s->loop->scratch;
  if (!scratch) {
    size_t want = READ_CHUNK;
    if (q->fmt == RF_COUNT && q->n > b->len && q->n - b->len > want)
      want = q->n - b->len;
    if ((dst = buf_reserve(b, want)) == NULL)
      return luaL_error(L, "not enough memory");
    room = buf_room(b);
  }
  long got = sock_recv(L, s, 1, dst, room);
  if (got <= 0) {
    if (got == 0)
      s->eof = 1;
    else if (got != -EAGAIN)
      s->rerr = (int)got;
    return 0;
  }
  if (b->len == 0)
    s->msg_start = s->last_active; /* the first byte of a new message */
  if (!scratch) {
    buf_commit(b, (size_t)got);
    return 0;
  }
  size_t ret = 0, take = 0;
  int n = 0;
  if (rreq_match(L, s, q, dst, (size_t)got, &ret, &take) == R_DONE) {
    n = rreq_push(L, q, dst, ret);
    s->rscan = 0;
  } else if (q->fmt != RF_FRAME) {
    take = 0;
  }
  if (s->fd >= 0 && buf_append(b, dst + take, (size_t)got - take) < 0)
    return luaL_error(L, "not enough memory");
  return n;
}

/* Complete q from the buffer and the kernel: the number of results pushed,
 * or -1 when the task has to wait for readiness. */
static int sock_tryread(lua_State *L, struct sock *s, struct rreq *q) {
  struct buf *b = &s->rbuf;
  for (;;) {
    size_t ret = 0, take = 0;
    int n;
    switch (rreq_match(L, s, q, buf_w(b), b->len, &ret, &take)) {
    case R_DONE:
      n = rreq_push(L, q, buf_begin(b), ret);
      if (s->fd < 0)
        return n; /* a framing closed it: the buffer is gone */
      buf_consume(b, take);
      s->rscan = 0;
      s->msg_start = ev_now(s->loop->ev); /* the next message starts now */
      return n;
    case R_TOOLARGE:
      return util_fail(L, "toolarge");
    case R_MORE:
      if (take > 0)
        buf_consume(b, take); /* a framing used part of it */
      break;
    }
    if (s->eof || s->rerr)
      return sock_readend(L, s, q);
    if (!s->readable)
      return -1;
    if ((n = sock_fill(L, s, q)) > 0)
      return n;
  }
}

/* While the loop drains (shutdown), a served connection about to wait for
 * its next message with nothing buffered either way is idle: it closes now
 * instead of holding the shutdown for the whole grace period (9.7). */
static int sock_idleatshutdown(const struct sock *s) {
  return s->loop->draining && s->srv != NULL && s->rbuf.len == 0 &&
         s->wbuf.len == 0 && !sock_isyoung(s);
}

/* A message (line, delimited block, frame) that has started must be
 * complete by msg_start + message_timeout, however slowly its bytes
 * dribble in: the slowloris defence. Waiting for the first byte is the
 * idle timeout's job. */
static void sock_messagedeadline(struct sock *s) {
  if (s->lim->message_timeout <= 0 || s->rbuf.len == 0)
    return;
  ev_tstamp at = s->msg_start + s->lim->message_timeout;
  if (s->reader.deadline < 0 || at < s->reader.deadline)
    s->reader.deadline = at;
}

/* The read family. `retry` is set in the continuation k (with ctx): the
 * per-call deadline then stands, and a timeout reported by the timer is
 * returned. */
static int sock_readwith(lua_State *L, struct sock *s, struct rreq *q,
                         int retry, lua_KContext ctx, lua_KFunction k) {
  if (s->fd < 0)
    return util_fail(L, s->why);
  if (!retry) {
    if (s->reader.task != NULL)
      return luaL_error(L, "socket already has a pending read");
    if (s->callback)
      return luaL_error(L, "read: the socket is in on(\"data\") mode");
    sched_checkwait(L, s->loop, "read");
    s->rscan = 0;
    s->reader.deadline = loop_deadline(s->loop, q->timeout);
  } else if (s->reader.timedout) {
    s->reader.timedout = 0;
    return util_fail(L, "timeout"); /* nothing consumed: a retry sees it all */
  }
  int n = sock_tryread(L, s, q);
  if (n >= 0)
    return sched_spend(L, s->loop, n);
  if (s->wbuf.len > 0 && s->writer.task == NULL)
    sock_flushnow(L, s);
  if (sock_idleatshutdown(s)) {
    sock_destroy(L, s, 1, "closed");
    return util_fail(L, "closed");
  }
  if (q->fmt == RF_LINE || q->fmt == RF_LINE_EOL || q->fmt == RF_UNTIL ||
      q->fmt == RF_FRAME)
    sock_messagedeadline(s);
  sched_register(s->loop, &s->reader); /* the timer sees its deadline */
  if (!ev_is_active(&s->rio))
    ev_io_start(s->loop->ev, &s->rio);
  sock_timer_arm(s);
  if (s->rbuf.len == 0)
    buf_free(&s->rbuf); /* idle connections hold no buffer */
  if (q->fmt == RF_INTO && q->into->len == 0)
    sock_lendbuf(s->loop, q->into); /* nor a Buffer they only read into */
  return sched_park(L, s->loop, NULL, ctx, k);
}

static int sock_read_k(lua_State *L, int status, lua_KContext ctx);

static int sock_doread(lua_State *L, int kind, int retry) {
  struct sock *s = sock_self(L);
  struct rreq q;
  rreq_parse(L, s, kind, retry, &q);
  return sock_readwith(L, s, &q, retry, kind, sock_read_k);
}

static int sock_read_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return sock_doread(L, (int)ctx, 1);
}

static int sock_read(lua_State *L) { return sock_doread(L, RK_READ, 0); }
static int sock_readsome(lua_State *L) { return sock_doread(L, RK_READSOME, 0); }
static int sock_readuntil(lua_State *L) { return sock_doread(L, RK_READUNTIL, 0); }
static int sock_readinto(lua_State *L) { return sock_doread(L, RK_READINTO, 0); }

/* read(">s4"): a frame behind a length prefix (frame.h), the format at
 * stack index 2. A payload over max_input is refused as the prefix
 * arrives: nil, "toolarge", nothing consumed (as read(n) does). */
static int prefix_match(lua_State *L, struct sock *s, char *p, size_t n,
                        size_t *take) {
  size_t len, hdr = 0;
  uint64_t plen = 0;
  struct frame_fmt ff;
  const char *f = lua_tolstring(L, 2, &len);
  if (*f == '*') {
    f++;
    len--;
  }
  frame_parse(f, len, &ff); /* checked by rreq_parsefmt */
  switch (frame_find(&ff, p, n, s->lim->max_input, &hdr, &plen)) {
  case FRAME_DONE:
    lua_pushlstring(L, p + hdr, (size_t)plen);
    *take = hdr + (size_t)plen;
    return 1;
  case FRAME_TOOLARGE:
    return util_fail(L, "toolarge");
  default:
    return 0;
  }
}

static const struct sock_framing prefix_framing = {prefix_match, NULL, 3};

static int sock_frame_k(lua_State *L, int status, lua_KContext ctx);

static int sock_doframe(lua_State *L, struct sock *s,
                        const struct sock_framing *fr, int retry) {
  struct rreq q = {RF_FRAME, 0, NULL, 0, -1, fr, 0, NULL};
  q.timeout = check_timeout(L, fr->timeout_arg, "read: timeout", s->rtimeout);
  return sock_readwith(L, s, &q, retry, (lua_KContext)fr, sock_frame_k);
}

static int sock_frame_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return sock_doframe(L, sock_check(L, 1), (const struct sock_framing *)ctx,
                      1);
}

int sock_readframe(lua_State *L, struct sock *s,
                   const struct sock_framing *fr) {
  return sock_doframe(L, s, fr, 0);
}

/* ---------------------------------------------------------------- write */

#define WRITE_IOV 64

/* Encrypt p[0..n) (tls.h: sent now, or queued in wbuf; `cork` queues only):
 * 0, -errno (the write side failed) or -EMSGSIZE (past max_output). */
static int sock_tlsput(lua_State *L, struct sock *s, const char *p, size_t n,
                       int cork) {
  long rc = tls_send(s->tls, p, n, cork);
  sock_tlsio(L, s, 0);
  if (rc == -ENOMEM)
    return luaL_error(L, "not enough memory");
  if (rc < 0) {
    s->werr = (int)rc;
    return (int)rc;
  }
  return s->wbuf.len > s->lim->max_output ? -EMSGSIZE : 0;
}

/* TLS: gather small pieces into one record (the scratch buffer is free
 * while a write runs); a large piece goes through as it is. A peer that
 * does not read is refused before anything is encrypted when output is
 * queued already, and at most one gathering's worth later otherwise. */
static int sock_tlssend(lua_State *L, struct sock *s, struct iovec *iov,
                        int cnt) {
  size_t total = 0, used = 0;
  for (int i = 0; i < cnt; i++)
    total += iov[i].iov_len;
  if (s->wbuf.len > 0 && over(s->wbuf.len + total, s->lim->max_output, 0))
    return -EMSGSIZE;
  int cork = s->rbuf.len > 0, rc = 0;
  char *gather = s->loop->scratch;
  for (int i = 0; i < cnt && rc == 0; i++) {
    size_t len = iov[i].iov_len;
    if (used > 0 && (used + len > BERTH_SCRATCH || len > BERTH_SCRATCH / 4)) {
      rc = sock_tlsput(L, s, gather, used, cork);
      used = 0;
    }
    if (rc != 0)
      break;
    if (len > BERTH_SCRATCH / 4 || cnt == 1) {
      rc = sock_tlsput(L, s, iov[i].iov_base, len, cork);
    } else if (len > 0) {
      memcpy(gather + used, iov[i].iov_base, len);
      used += len;
    }
  }
  if (rc == 0 && used > 0)
    rc = sock_tlsput(L, s, gather, used, cork);
  return rc;
}

/* Send iov[0..cnt) now if nothing is queued before it, and buffer what the
 * kernel did not take. Returns 0, -errno (the write side failed), or
 * -EMSGSIZE when buffering the rest would pass max_output: checked before
 * copying, so a huge write to a peer that does not read costs nothing. */
static int sock_send(lua_State *L, struct sock *s, struct iovec *iov, int cnt,
                     int now) {
  if (s->tls != NULL) /* encrypted now: no queueing without sending */
    return sock_tlssend(L, s, iov, cnt);
  size_t sent = 0, total = 0;
  for (int i = 0; i < cnt; i++)
    total += iov[i].iov_len;
  if (now && s->wbuf.len == 0 && s->rbuf.len == 0) {
    long n = net_writev(s->fd, iov, cnt);
    if (n < 0 && n != -EAGAIN) {
      s->werr = (int)n;
      return (int)n;
    }
    sent = n > 0 ? (size_t)n : 0;
    sock_countout(s, sent);
  }
  if (s->wbuf.len + (total - sent) > s->lim->max_output)
    return -EMSGSIZE;
  for (int i = 0; i < cnt; i++) {
    size_t len = iov[i].iov_len;
    if (sent >= len) {
      sent -= len;
      continue;
    }
    if (buf_append(&s->wbuf, (char *)iov[i].iov_base + sent, len - sent) < 0)
      return luaL_error(L, "not enough memory");
    sent = 0;
  }
  return 0;
}

/* Park the writer until the buffer is at `target` bytes or less; k
 * continues (with sock_drained_k's verdict). */
static int sock_waitwrite(lua_State *L, struct sock *s, size_t target,
                          double timeout, int retry, lua_KContext ctx,
                          lua_KFunction k) {
  s->wtarget = target;
  if (!retry)
    s->writer.deadline = loop_deadline(s->loop, timeout);
  sched_register(s->loop, &s->writer);
  sock_timer_arm(s);
  return sched_park(L, s->loop, NULL, ctx, k);
}

int sock_waitdrain(lua_State *L, struct sock *s, int retry, lua_KContext ctx,
                   lua_KFunction k) {
  return sock_waitwrite(L, s, s->lowat, s->wtimeout, retry, ctx, k);
}

/* After a write wait: closed, timed out or failed (the failure pushed: its
 * count), still above target (-1: wait again), or done (0). */
int sock_afterwait(lua_State *L, struct sock *s) {
  if (s->fd < 0)
    return util_fail(L, s->why);
  if (s->writer.timedout) {
    s->writer.timedout = 0;
    return util_fail(L, "timeout"); /* the data stays queued and is sent */
  }
  if (s->werr)
    return sock_failerr(L, s->werr);
  return s->wbuf.len > s->wtarget ? -1 : 0;
}

static int sock_write_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  struct sock *s = sock_self(L);
  int rc = sock_afterwait(L, s);
  if (rc > 0)
    return rc;
  if (rc < 0)
    return sock_waitwrite(L, s, (size_t)ctx, 0, 1, ctx, sock_write_k);
  lua_settop(L, 1);
  return 1;
}

void sock_armwrite(lua_State *L, struct sock *s, int idx) {
  if (s->wbuf.len > 0 && !ev_is_active(&s->wio)) {
    s->last_drain = ev_now(s->loop->ev); /* the send timeout starts now */
    ev_io_start(s->loop->ev, &s->wio);
    sock_hold(L, s, idx);
    if (s->send_timeout > 0)
      sock_timer_arm(s);
  }
}

/* Whether s can be written to now: 0, or the failure pushed (its count).
 * A second writer is a programming error. */
static int sock_canput(lua_State *L, struct sock *s) {
  if (s->fd < 0)
    return util_fail(L, s->why);
  if (s->writer.task != NULL)
    return luaL_error(L, "socket already has a pending write");
  if (s->tls != NULL && !tls_established(s->tls))
    return luaL_error(L, "write: the TLS handshake is not done "
                         "(sock:handshake() first)");
  if (s->werr)
    return sock_failerr(L, s->werr);
  if (s->shut_wr)
    return util_fail(L, "closed"); /* this side is closed for writing */
  return 0;
}

static int sock_putv(lua_State *L, struct sock *s, int idx, struct iovec *iov,
                     int cnt, int now) {
  int rc = sock_canput(L, s);
  if (rc != 0)
    return rc;
  rc = sock_send(L, s, iov, cnt, now);
  if (rc == -EMSGSIZE) {
    sock_destroy(L, s, idx, "toolarge"); /* a peer that does not read */
    return util_fail(L, "toolarge");
  }
  if (rc < 0)
    return sock_failerr(L, rc);
  sock_armwrite(L, s, idx);
  if (s->wbuf.len > 0)
    s->drain_cb = 1; /* on("drain") fires when it has emptied */
  return 0;
}

int sock_put(lua_State *L, struct sock *s, int idx, struct iovec *iov,
             int cnt) {
  return sock_putv(L, s, idx, iov, cnt, 1);
}

int sock_queue(lua_State *L, struct sock *s, int idx, struct iovec *iov,
               int cnt) {
  return sock_putv(L, s, idx, iov, cnt, 0);
}

int sock_overhigh(lua_State *L, const struct sock *s) {
  return s->fd >= 0 && s->wbuf.len > s->hiwat && sched_canwait(L, s->loop);
}

/* write()'s argument i, a string, a number or a Buffer: its bytes into
 * *iov, and in *b the Buffer (emptied once sent) or NULL. Raises for
 * anything else. */
static void sock_arg(lua_State *L, int i, struct iovec *iov, struct buf **b) {
  size_t len;
  *b = lua_type(L, i) == LUA_TUSERDATA ? lbuf_test(L, i) : NULL;
  if (*b != NULL) {
    iov->iov_base = (void *)buf_begin(*b);
    iov->iov_len = (*b)->len;
    return;
  }
  iov->iov_base = (void *)luaL_checklstring(L, i, &len);
  iov->iov_len = len;
}

/* Every argument is checked before any byte goes out (9.10); the first
 * WRITE_IOV are kept in iov and bufs, as the first batch. */
static int sock_checkargs(lua_State *L, int top, struct iovec *iov,
                          struct buf **bufs) {
  struct iovec spare;
  struct buf *b;
  int cnt = 0;
  for (int i = 2; i <= top; i++) {
    if (cnt < WRITE_IOV) {
      sock_arg(L, i, &iov[cnt], &bufs[cnt]);
      cnt++;
    } else {
      sock_arg(L, i, &spare, &b);
    }
  }
  return cnt;
}

static int sock_write(lua_State *L) {
  struct sock *s = sock_self(L);
  int top = lua_gettop(L), rc;
  struct iovec iov[WRITE_IOV];
  struct buf *bufs[WRITE_IOV];
  int cnt = sock_checkargs(L, top, iov, bufs);
  if (top < 2 && (rc = sock_canput(L, s)) != 0)
    return rc; /* nothing to send: sock_putv does not check */
  for (int i = 2 + cnt; cnt > 0;) {
    if ((rc = sock_putv(L, s, 1, iov, cnt, 1)) != 0)
      return rc;
    for (int j = 0; j < cnt; j++)
      if (bufs[j] != NULL) /* sent or copied into the write buffer */
        buf_consume(bufs[j], bufs[j]->len);
    for (cnt = 0; i <= top && cnt < WRITE_IOV; i++, cnt++)
      sock_arg(L, i, &iov[cnt], &bufs[cnt]);
  }
  if (sock_overhigh(L, s))
    return sock_waitwrite(L, s, s->lowat, s->wtimeout, 0, (lua_KContext)s->lowat,
                          sock_write_k);
  lua_settop(L, 1); /* a callback cannot wait: it buffers, and on("drain") */
  return 1;
}

static int sock_flush(lua_State *L) {
  struct sock *s = sock_self(L);
  double timeout = check_timeout(L, 2, "flush: timeout", s->wtimeout);
  sched_checkwait(L, s->loop, "flush");
  if (s->fd < 0)
    return util_fail(L, s->why);
  if (s->werr)
    return sock_failerr(L, s->werr);
  if (s->writer.task != NULL)
    return luaL_error(L, "socket already has a pending write");
  lua_settop(L, 1);
  if (s->wbuf.len == 0)
    return 1;
  return sock_waitwrite(L, s, 0, timeout, 0, 0, sock_write_k);
}

const luaL_Reg sock_io_methods[] = {
  {"read", sock_read},
  {"readsome", sock_readsome},
  {"readuntil", sock_readuntil},
  {"readinto", sock_readinto},
  {"write", sock_write},
  {"flush", sock_flush},
  {NULL, NULL}
};
