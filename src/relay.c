/*
 * relay.c -- from:relay(to [, timeout]): every byte `from` receives, sent
 * on `to`, until `from` ends; the bytes never become Lua strings. A proxy
 * is two relays, one per direction, each in its own task.
 *
 * When neither socket has TLS, the bytes go socket -> pipe -> socket with
 * splice(2) and never enter this process's memory; otherwise they go
 * through the loop's scratch buffer (decrypted, re-encrypted) with the
 * sockets' own read and write paths. Bytes a read left in `from`'s buffer,
 * and output already queued on `to`, go first, so the stream keeps its
 * order. Backpressure is the sockets': a relay waits for `to` to take what
 * it holds before it reads more (the pipe, or `to`'s buffer past its high
 * watermark), so a slow reader stops the sender.
 *
 * The relay holds `from`'s read side and `to`'s write side: while it waits
 * it is their reader or writer (a second one is a programming error, as
 * for read and write), and closing either socket ends it. Every byte moved
 * counts as activity on both sockets, for their idle timeouts.
 *
 * Owns struct relayset: the loop's spare pipes. A relay holds a pipe only
 * while bytes are in it; one that waits for its source with an empty pipe
 * gives the pipe back, so an idle proxied connection holds no pipe (and
 * no more descriptors than its two sockets). At most RELAY_SPARES pipes
 * are kept; they are closed with the loop.
 *
 * State across waits lives in a berth.Relay userdata at stack index 4
 * (the task's stack, L8); its __gc closes a pipe that a task ended
 * mid-relay left behind (the bytes in it are lost with the connection).
 */
#define _GNU_SOURCE /* splice, pipe2, F_SETPIPE_SZ */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "core.h"
#include "tls.h"

#define CLS_RELAY "berth.Relay"

#define RELAY_PIPE (1024 * 1024) /* asked of F_SETPIPE_SZ: fewer splices */
#define RELAY_SPARES 16          /* spare pipes kept per loop */
#define RELAY_ROUNDS 16          /* moves per resume before others run */

struct spare {
  int fd[2];
  size_t cap;
};

struct relayset {
  struct spare spare[RELAY_SPARES];
  int nspare;
};

/* One relay's progress, kept across its waits. */
struct relaystate {
  struct loop *loop;
  struct spare pipe;     /* fd[0] < 0: none held */
  size_t inpipe;         /* bytes in the pipe */
  lua_Integer moved;     /* bytes sent on `to` so far */
  int copy;              /* splice refused: copy through C instead */
};

enum step { S_MOVED, S_WAITREAD, S_WAITWRITE, S_EOF, S_FAILED };

/* --------------------------------------------------------------- pipes */

static void relayset_free(struct loop *lp, void *ud) {
  struct relayset *set = ud;
  for (int i = 0; i < set->nspare; i++) {
    close(set->spare[i].fd[0]);
    close(set->spare[i].fd[1]);
  }
  free(set);
  lp->relays = NULL;
}

static struct relayset *relay_set(lua_State *L, struct loop *lp) {
  if (lp->relays == NULL) {
    struct relayset *set = calloc(1, sizeof *set);
    if (set == NULL)
      luaL_error(L, "not enough memory");
    lp->relays = set;
    loop_atclose(L, lp, relayset_free, set);
  }
  return lp->relays;
}

/* A pipe for st: a spare, or a new one enlarged if the system allows.
 * 0, or -errno (out of descriptors: the caller copies instead). */
static int relay_takepipe(lua_State *L, struct relaystate *st) {
  struct relayset *set = relay_set(L, st->loop);
  if (set->nspare > 0) {
    st->pipe = set->spare[--set->nspare];
    return 0;
  }
  if (pipe2(st->pipe.fd, O_NONBLOCK | O_CLOEXEC) != 0)
    return -errno;
  /* Past the user's pipe quota the kernel refuses: the default will do. */
  (void)fcntl(st->pipe.fd[1], F_SETPIPE_SZ, RELAY_PIPE);
  int cap = fcntl(st->pipe.fd[1], F_GETPIPE_SZ);
  st->pipe.cap = cap > 0 ? (size_t)cap : 65536;
  return 0;
}

static void relay_closepipe(struct relaystate *st) {
  if (st->pipe.fd[0] >= 0) {
    close(st->pipe.fd[0]);
    close(st->pipe.fd[1]);
  }
  st->pipe.fd[0] = st->pipe.fd[1] = -1;
  st->inpipe = 0;
}

/* Give an empty pipe back to the spares (or close it). */
static void relay_putpipe(struct relaystate *st) {
  struct relayset *set = st->loop->relays;
  if (st->pipe.fd[0] < 0 || st->inpipe > 0)
    return;
  if (set != NULL && set->nspare < RELAY_SPARES) {
    set->spare[set->nspare++] = st->pipe;
    st->pipe.fd[0] = st->pipe.fd[1] = -1;
    return;
  }
  relay_closepipe(st);
}

static int relay__gc(lua_State *L) {
  relay_closepipe(luaL_checkudata(L, 1, CLS_RELAY));
  return 0;
}

/* ---------------------------------------------------------------- moves */

/* One splice out of the pipe (if it holds bytes) and one into it (if it
 * has room): S_MOVED when either moved, else what to wait for. A pipe
 * holding bytes waits for `to`, never for `from` as well: a readable
 * source would wake the relay for nothing while the pipe is full. */
static enum step relay_splice(lua_State *L, struct relaystate *st,
                              struct sock *from, struct sock *to) {
  const unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
  int progress = 0;
  if (st->inpipe > 0) {
    ssize_t n = splice(st->pipe.fd[0], NULL, to->fd, NULL, st->inpipe, flags);
    if (n > 0) {
      st->inpipe -= (size_t)n;
      st->moved += n;
      sock_countout(to, (size_t)n);
      progress = 1;
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      to->werr = -errno;
      return S_FAILED;
    }
  }
  if (!from->eof && (st->pipe.fd[0] < 0 || st->inpipe < st->pipe.cap)) {
    if (st->pipe.fd[0] < 0 && relay_takepipe(L, st) != 0) {
      st->copy = 1; /* no descriptor for a pipe: copy instead */
      return S_MOVED;
    }
    ssize_t n = splice(from->fd, NULL, st->pipe.fd[1], NULL,
                       st->pipe.cap - st->inpipe, flags);
    if (n > 0) {
      st->inpipe += (size_t)n;
      sock_countin(from, (size_t)n);
      progress = 1;
    } else if (n == 0) {
      from->eof = 1;
    } else if (errno == EINVAL && st->inpipe == 0) {
      st->copy = 1; /* this socket cannot be spliced: copy instead */
      return S_MOVED;
    } else if (errno != EAGAIN && errno != EINTR) {
      from->rerr = -errno;
      return S_FAILED;
    } else {
      from->readable = 0;
    }
  }
  if (progress)
    return S_MOVED;
  if (st->inpipe > 0)
    return S_WAITWRITE;
  return from->eof ? S_EOF : S_WAITREAD;
}

/* TLS on a side: one receive into the scratch buffer, sent or queued on
 * `to` (which waits for its buffer to drain before the next one). */
static enum step relay_copy(lua_State *L, struct relaystate *st,
                            struct sock *from, struct sock *to) {
  char *p = from->loop->scratch;
  if (from->eof)
    return S_EOF;
  if (!from->readable)
    return S_WAITREAD;
  long got = sock_recv(L, from, 1, p, BERTH_SCRATCH);
  if (got == 0) {
    from->eof = 1;
    return S_EOF;
  }
  if (got == -EAGAIN)
    return S_WAITREAD;
  if (got < 0) {
    from->rerr = (int)got;
    return S_FAILED;
  }
  struct iovec iov = {p, (size_t)got};
  int top = lua_gettop(L);
  if (sock_put(L, to, 2, &iov, 1) != 0) {
    lua_settop(L, top); /* the failure is in `to`: reported from there */
    return S_FAILED;
  }
  st->moved += got;
  return S_MOVED;
}

/* ------------------------------------------------------------ the method */

/* nil, code, moved: the code of whichever side ended it. [-0, +3, m] */
static int relay_fail(lua_State *L, struct relaystate *st, struct sock *from,
                      struct sock *to) {
  const char *code = "closed";
  if (from->fd < 0)
    code = from->why;
  else if (to->fd < 0)
    code = to->why;
  else if (to->werr)
    code = sock_errcode(to->werr);
  else if (from->rerr)
    code = sock_errcode(from->rerr);
  relay_closepipe(st); /* bytes still in it cannot reach `to` now */
  lua_pushnil(L);
  lua_pushstring(L, code);
  lua_pushinteger(L, st->moved);
  return 3;
}

static int relay_k(lua_State *L, int status, lua_KContext ctx);

static int relay_waitread(lua_State *L, struct relaystate *st,
                          struct sock *from, struct sock *to,
                          double timeout) {
  struct loop *lp = st->loop;
  relay_putpipe(st); /* an idle relay holds no pipe */
  if (from->reader.task != NULL || to->writer.task != NULL)
    return luaL_error(L, "relay: the socket has another pending %s",
                      from->reader.task != NULL ? "read" : "write");
  from->reader.deadline = loop_deadline(lp, timeout);
  to->writer.deadline = -1;
  sched_register(lp, &from->reader); /* the timer sees its deadline */
  sched_registeralso(lp, &to->writer); /* closing `to` ends it too */
  if (!ev_is_active(&from->rio))
    ev_io_start(lp->ev, &from->rio);
  sock_timer_arm(from);
  if (from->rbuf.len == 0)
    buf_free(&from->rbuf);
  return sched_park(L, lp, NULL, 0, relay_k);
}

/* Wait until `to` has at most `target` bytes queued and, with a pipe
 * holding bytes, is writable again. */
static int relay_waitwrite(lua_State *L, struct relaystate *st,
                           struct sock *from, struct sock *to, size_t target,
                           double timeout) {
  struct loop *lp = st->loop;
  if (from->reader.task != NULL || to->writer.task != NULL)
    return luaL_error(L, "relay: the socket has another pending %s",
                      from->reader.task != NULL ? "read" : "write");
  /* Bytes stuck on the way to `to` are output without progress: its send
   * timeout bounds this wait as it bounds a buffered write. */
  double send = to->send_timeout;
  if (send > 0 && (timeout < 0 || send < timeout))
    timeout = send;
  to->wtarget = target;
  to->writer.deadline = loop_deadline(lp, timeout);
  from->reader.deadline = -1;
  /* The source's readiness must not wake it (its waiter is only there so
   * that a close ends the relay): with the read watcher on, a readable
   * source woke the relay for every few KB while `to` was full -- five
   * times the splices, most of them EAGAIN. relay_waitread restarts it. */
  if (ev_is_active(&from->rio))
    ev_io_stop(lp->ev, &from->rio);
  if (!ev_is_active(&to->wio)) {
    ev_io_start(lp->ev, &to->wio);
    sock_hold(L, to, 2);
  }
  sched_register(lp, &to->writer);
  sched_registeralso(lp, &from->reader); /* closing `from` ends it too */
  sock_timer_arm(to);
  return sched_park(L, lp, NULL, 0, relay_k);
}

/* Programming errors, raised before anything moves. */
static void relay_checkfirst(lua_State *L, struct sock *from,
                             struct sock *to) {
  if (from == to)
    luaL_argerror(L, 2, "a socket cannot relay to itself");
  if (from->reader.task != NULL)
    luaL_error(L, "socket already has a pending read");
  if (to->writer.task != NULL)
    luaL_error(L, "socket already has a pending write");
  if (from->callback)
    luaL_error(L, "relay: the socket is in on(\"data\") mode");
  if ((from->tls != NULL && !tls_established(from->tls)) ||
      (to->tls != NULL && !tls_established(to->tls)))
    luaL_error(L, "relay: the TLS handshake is not done "
                  "(sock:handshake() first)");
}

/* The relay's state at index 4, made on the first call. */
static struct relaystate *relay_state(lua_State *L, struct loop *lp,
                                      int retry) {
  if (retry)
    return luaL_checkudata(L, 4, CLS_RELAY);
  lua_settop(L, 3);
  struct relaystate *st = lua_newuserdatauv(L, sizeof *st, 0);
  st->loop = lp;
  st->pipe.fd[0] = st->pipe.fd[1] = -1;
  st->pipe.cap = 0;
  st->inpipe = 0;
  st->moved = 0;
  st->copy = 0;
  luaL_setmetatable(L, CLS_RELAY);
  return st;
}

/* A side that cannot go on, or nothing to do: 1 to stop now. */
static int relay_broken(const struct sock *from, const struct sock *to) {
  return from->fd < 0 || to->fd < 0 || to->werr || to->shut_wr ||
         (from->rerr && from->rbuf.len == 0);
}

/* What `from` read but did not consume goes to `to` first. 0, or -1 when
 * `to` failed. */
static int relay_flushrbuf(lua_State *L, struct relaystate *st,
                           struct sock *from, struct sock *to) {
  struct iovec iov = {(void *)buf_begin(&from->rbuf), from->rbuf.len};
  int top = lua_gettop(L);
  if (sock_put(L, to, 2, &iov, 1) != 0) {
    lua_settop(L, top);
    return -1;
  }
  st->moved += (lua_Integer)iov.iov_len;
  buf_consume(&from->rbuf, iov.iov_len);
  from->rscan = 0;
  return 0;
}

static int relay_run(lua_State *L, int retry) {
  struct sock *from = sock_check(L, 1), *to = sock_check(L, 2);
  struct loop *lp = from->loop;
  double timeout = check_timeout(L, 3, "relay: timeout", from->rtimeout);
  if (!retry) {
    sched_checkwait(L, lp, "relay");
    if (from->fd >= 0 && to->fd >= 0)
      relay_checkfirst(L, from, to);
  }
  struct relaystate *st = relay_state(L, lp, retry);
  if (retry && (from->reader.timedout || to->writer.timedout)) {
    from->reader.timedout = to->writer.timedout = 0;
    relay_closepipe(st);
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    lua_pushinteger(L, st->moved);
    return 3;
  }
  for (int round = 0;; round++) {
    if (relay_broken(from, to))
      return relay_fail(L, st, from, to);
    if (round == RELAY_ROUNDS)
      return sched_passk(L, lp, 0, relay_k); /* let the others run */
    if (from->rbuf.len > 0) {
      if (relay_flushrbuf(L, st, from, to) != 0)
        return relay_fail(L, st, from, to);
      continue;
    }
    int splicing = from->tls == NULL && to->tls == NULL && !st->copy;
    if (to->wbuf.len > (splicing ? 0 : to->hiwat))
      return relay_waitwrite(L, st, from, to, splicing ? 0 : to->lowat,
                             timeout);
    enum step step = splicing ? relay_splice(L, st, from, to)
                              : relay_copy(L, st, from, to);
    switch (step) {
    case S_MOVED:
      break;
    case S_WAITREAD:
      return relay_waitread(L, st, from, to, timeout);
    case S_WAITWRITE:
      return relay_waitwrite(L, st, from, to, 0, timeout);
    case S_EOF:
      relay_putpipe(st);
      lua_pushinteger(L, st->moved);
      return 1;
    case S_FAILED:
      return relay_fail(L, st, from, to);
    }
  }
}

static int relay_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return relay_run(L, 1);
}

/* from:relay(to [, timeout]) -> bytes moved, at from's EOF | nil, code,
 * bytes moved. timeout: seconds without progress (default: from's read
 * timeout). `to` is not shut down at the end: the caller decides. */
static int relay_relay(lua_State *L) {
  return relay_run(L, 0);
}

const luaL_Reg relay_methods[] = {
  {"relay", relay_relay},
  {NULL, NULL}
};

static const luaL_Reg relay_meta[] = {
  {"__gc", relay__gc},
  {NULL, NULL}
};

static const luaL_Reg relay_none[] = {{NULL, NULL}};

void relay_open(lua_State *L) {
  util_newclass(L, CLS_RELAY, relay_meta, relay_none);
  lua_pop(L, 1);
}
