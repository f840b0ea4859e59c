/*
 * server.c -- the ServerSocket userdata (class berth.ServerSocket): listen,
 * the accept paths, pause/resume, close, stats.
 *
 * Two ways to accept. With on("connection", fn) (and so berth.serve) the
 * accept loop runs in C: each readiness event accepts up to
 * BERTH_ACCEPT_MAX connections and starts a handler task for each, with no
 * Lua run per accept but the handler itself. Without it, server:accept()
 * parks the calling task on the listen watcher.
 *
 * Lifetime: a server in handler mode is anchored while it listens (no task
 * holds it); an accepting task holds the server through its own stack.
 * Every open server is on its loop's list, so shutdown can close them all.
 *
 * EMFILE/ENFILE (R9): the listen watcher stops and a 100 ms timer retries,
 * so no busy loop while the process is out of descriptors; existing
 * connections are unaffected; a warning is logged at most once a second.
 *
 * TLS (listen{tls=}): each accepted socket is wrapped with the server's
 * context of the moment, and its handler task runs the handshake
 * (socket_tls.c) before the handler; a failed one ends the task quietly.
 * PROXY protocol (listen{proxy_protocol=}): the handler task reads the
 * header first, before any handshake (socket_proxy.c); a required header's
 * sender outside proxy_trusted is closed at the accept.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core.h"
#include "options.h"
#include "tls.h"

#define BACKOFF_SECONDS 0.1

struct srvset {
  struct link open;      /* open servers */
  long nopen;
  long accepted, rejected, active; /* served connections, all servers */
};

static struct server *srv_check(lua_State *L, int idx) {
  return util_self(L, idx, CLS_SERVER);
}

/* Handler mode: C holds the server (no task does) while it listens. */
static void srv_keep(lua_State *L, struct server *sv, int idx) {
  loop_keep(L, sv->loop, sv, idx, &sv->anchored, sv->handler && sv->fd >= 0);
}

/* Start or stop the listen watcher to match the state. */
static void srv_sync(struct server *sv) {
  int want = sv->fd >= 0 && !sv->paused && !sv->backoff &&
             (sv->handler || sv->acceptor.task != NULL);
  if (want && !ev_is_active(&sv->lio))
    ev_io_start(sv->loop->ev, &sv->lio);
  else if (!want && ev_is_active(&sv->lio))
    ev_io_stop(sv->loop->ev, &sv->lio);
}

/* Out of descriptors: stop accepting for a moment instead of spinning,
 * and say so at most once a second. */
static void srv_backoff(struct server *sv, int err) {
  struct loop *lp = sv->loop;
  sv->backoff = 1;
  srv_sync(sv);
  ev_timer_stop(lp->ev, &sv->timer);
  ev_timer_set(&sv->timer, BACKOFF_SECONDS, 0);
  ev_timer_start(lp->ev, &sv->timer);
  if (ev_now(lp->ev) - sv->lastwarn >= 1.0) {
    sv->lastwarn = ev_now(lp->ev);
    loop_log(lp, "warn", "accept: %s; pausing accepts for %.0f ms",
             strerror(err), BACKOFF_SECONDS * 1000);
  }
}

/* Push the closed Socket the next accept will fill: one made ahead, so the
 * userdata exists before the descriptor (9.14) and a readiness event that
 * finds nothing to accept wastes no allocation. [-0, +1, m] */
static struct sock *srv_pushspare(lua_State *L, struct server *sv, int idx) {
  if (lua_getiuservalue(L, idx, SRV_UV_SPARE) == LUA_TUSERDATA)
    return lua_touserdata(L, -1);
  lua_pop(L, 1);
  struct sock *s = sock_new(L, sv->loop);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, SRV_UV_SPARE);
  return s;
}

/* Accept one connection as a Socket: 1 pushed, 0 nothing waiting, or -errno.
 * Over max_connections the connection is closed at once and counted. */
static int srv_acceptone(lua_State *L, struct server *sv, int idx) {
  struct sock *s = srv_pushspare(L, sv, idx);
  for (;;) {
    struct net_addr peer;
    int fd = net_accept(sv->fd, &peer);
    if (fd < 0) {
      lua_pop(L, 1); /* the spare stays for next time */
      return fd == -EAGAIN ? 0 : fd;
    }
    if ((size_t)sv->active >= sv->lim.max_connections) {
      close(fd);
      sv->rejected++;
      sv->loop->servers->rejected++;
      continue;
    }
    if (!sproxy_admit(sv, &peer)) { /* not a balancer we trust: no task */
      close(fd);
      continue;
    }
    if (sv->tls != NULL && (s->tls = tls_new(sv->tls, fd, &s->wbuf, NULL))
                           == NULL) {
      close(fd);
      lua_pop(L, 1);
      return -ENOMEM;
    }
    lua_pushnil(L);
    lua_setiuservalue(L, idx, SRV_UV_SPARE);
    sock_attach(s, fd);
    sock_setpeer(s, &peer);
    s->srv = sv;
    s->owned = sv->handler;
    sock_uselimits(s, &sv->lim); /* sv outlives s (SOCK_UV_SERVER) */
    lua_pushvalue(L, idx);
    lua_setiuservalue(L, -2, SOCK_UV_SERVER);
    lua_getiuservalue(L, idx, SRV_UV_ONERROR);
    lua_setiuservalue(L, -2, SOCK_UV_ONERROR);
    if (sv->tcp) /* responses go out as written: writev already batches */
      net_set_bool(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    sv->accepted++;
    sv->active++;
    sv->loop->servers->accepted++;
    sv->loop->servers->active++;
    sock_timer_arm(s); /* the idle timeout runs from the accept */
    return 1;
  }
}

static int srv_handler_k(lua_State *L, int status, lua_KContext ctx);

/* handler(sock), then what it wrote is flushed before the task ends (9.8),
 * so the shutdown's grace covers it too; the task's done callback
 * (sock_handlerdone) then closes the socket. Stack: handler, sock. */
static int srv_callhandler(lua_State *L) {
  lua_pushvalue(L, 2);
  lua_rotate(L, 1, 1);                       /* sock, handler, sock */
  lua_callk(L, 1, 0, 1, srv_handler_k);
  return srv_handler_k(L, LUA_OK, 1);
}

/* After the TLS handshake: the handler runs only if it succeeded. */
static int srv_handshake_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  if (!lua_toboolean(L, -1))
    return 0; /* failed: counted and logged; the socket is closed */
  lua_pop(L, 1);
  return srv_callhandler(L);
}

/* A TLS connection's handshake comes before the handler. */
static int srv_starttls(lua_State *L) {
  if (sock_check(L, 2)->tls == NULL)
    return srv_callhandler(L);
  lua_pushcfunction(L, stls_handshake);
  lua_pushvalue(L, 2);
  lua_callk(L, 1, 1, 0, srv_handshake_k);
  return srv_handshake_k(L, LUA_OK, 0);
}

/* After the PROXY header: the rest only if it was read. */
static int srv_proxy_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  if (!lua_toboolean(L, -1))
    return 0; /* missing, late, broken or untrusted: counted and logged */
  lua_pop(L, 1);
  return srv_starttls(L);
}

/* A handler task's function. A PROXY header comes first, then a TLS
 * handshake: the balancer writes its header before the client's bytes. */
static int srv_runhandler(lua_State *L) {
  struct sock *s = sock_check(L, 2);
  if (s->srv == NULL || s->srv->proxy == NULL)
    return srv_starttls(L);
  lua_pushcfunction(L, sproxy_header);
  lua_pushvalue(L, 2);
  lua_callk(L, 1, 1, 0, srv_proxy_k);
  return srv_proxy_k(L, LUA_OK, 0);
}

static int srv_handler_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lua_settop(L, 1);
  struct sock *s = sock_check(L, 1);
  if (ctx == 1 && s->fd >= 0 && s->wbuf.len > 0 && !s->callback &&
      s->writer.task == NULL) {
    lua_getfield(L, 1, "flush");
    lua_pushvalue(L, 1);
    lua_callk(L, 1, 0, 2, srv_handler_k);
  }
  return 0;
}

/* Start the handler task for the socket on the stack top (server at idx);
 * pops the socket. */
static void srv_spawnhandler(lua_State *L, struct server *sv, int idx) {
  int sock = lua_gettop(L);
  lua_getiuservalue(L, idx, SRV_UV_ONERROR);
  lua_pushcfunction(L, srv_runhandler);
  lua_getiuservalue(L, idx, SRV_UV_HANDLER);
  lua_pushvalue(L, sock);
  struct taskopts o = {sock, sock + 1, sock_handlerdone};
  struct task *t = sched_spawn(L, sv->loop, 2, &o);
  lua_settop(L, sock - 1);
  sched_resume(sv->loop, t);
}

/* A handler task for the connection at `sock` (socket.c's onreadable),
 * running fn(sock) with fn on the stack top (popped): the same ownership
 * as an accepted connection's first handler (the socket owned, its error
 * handler, the flush after fn returns, sock_handlerdone), minus the TLS
 * handshake, which is behind it. Not started yet. [-1, +0, m] */
struct task *srv_spawnconn(lua_State *L, struct loop *lp, int sock) {
  sock = lua_absindex(L, sock);
  int fn = lua_gettop(L);
  lua_getiuservalue(L, sock, SOCK_UV_ONERROR);
  lua_pushcfunction(L, srv_callhandler);
  lua_pushvalue(L, fn);
  lua_pushvalue(L, sock);
  struct taskopts o = {sock, fn + 1, sock_handlerdone};
  struct task *t = sched_spawn(L, lp, 2, &o);
  lua_settop(L, fn - 1);
  return t;
}

/* The C accept loop for handler mode, run protected from the watcher. The
 * server stays on the stack while handlers run (L4), and a handler may
 * close it: fd is re-checked after each one. */
static int srv_dispatch(lua_State *L) {
  struct server *sv = lua_touserdata(L, 1);
  struct loop *lp = sv->loop;
  loop_pushanchored(L, lp, sv);
  int idx = lua_gettop(L);
  for (int i = 0; i < BERTH_ACCEPT_MAX && sv->fd >= 0 && !sv->paused; i++) {
    int rc = srv_acceptone(L, sv, idx);
    if (rc == 0)
      break;
    if (rc < 0) {
      if (rc == -EMFILE || rc == -ENFILE || rc == -ENOBUFS || rc == -ENOMEM)
        srv_backoff(sv, -rc);
      else
        loop_log(lp, "warn", "accept: %s", strerror(-rc));
      break;
    }
    srv_spawnhandler(L, sv, idx);
  }
  return 0;
}

static void srv_lio_cb(struct ev_loop *ev, ev_io *w, int revents) {
  (void)ev; (void)revents;
  struct server *sv = w->data;
  struct task *t = waiter_take(&sv->acceptor);
  if (t != NULL) {
    srv_sync(sv);
    sched_resume(sv->loop, t);
  } else if (sv->handler) {
    /* Out of memory (--max-memory) before a socket or task could be made:
     * back off like EMFILE rather than spin (the connection waits). */
    if (loop_pcall(sv->loop, srv_dispatch, sv) != LUA_OK && sv->fd >= 0)
      srv_backoff(sv, ENOMEM);
  } else {
    srv_sync(sv);
  }
}

/* The one timer: the EMFILE back-off while it lasts, otherwise the
 * deadline of a pending accept. */
static void srv_timer_arm(struct server *sv) {
  struct ev_loop *ev = sv->loop->ev;
  if (sv->backoff)
    return; /* srv_backoff armed it; the deadline is looked at after */
  ev_timer_stop(ev, &sv->timer);
  if (sv->acceptor.task == NULL || sv->acceptor.deadline < 0)
    return;
  ev_tstamp after = sv->acceptor.deadline - ev_now(ev);
  ev_timer_set(&sv->timer, after > 0 ? after : 0, 0);
  ev_timer_start(ev, &sv->timer);
}

static void srv_timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)ev; (void)revents;
  struct server *sv = w->data;
  if (sv->backoff) {
    sv->backoff = 0;
    srv_sync(sv);
  }
  struct waiter *a = &sv->acceptor;
  if (a->task != NULL && a->deadline >= 0 &&
      a->deadline <= ev_now(sv->loop->ev)) {
    struct task *t = waiter_take(a);
    a->timedout = 1;
    srv_sync(sv);
    sched_resume(sv->loop, t);
    return;
  }
  srv_timer_arm(sv); /* a back-off ended before the accept deadline */
}

/* Idempotent close (L3); `wake` is 0 from __gc (L5). */
static void srv_destroy(lua_State *L, struct server *sv, int wake) {
  if (sv->fd < 0)
    return;
  struct loop *lp = sv->loop;
  ev_io_stop(lp->ev, &sv->lio);
  ev_timer_stop(lp->ev, &sv->timer);
  close(sv->fd);
  sv->fd = -1;
  if (sv->unlink_path) {
    unlink(sv->unlink_path);
    sv->unlink_path = NULL;
  }
  link_remove(&sv->link);
  lp->servers->nopen--;
  if (wake)
    waiter_wake(L, lp, &sv->acceptor);
  else
    waiter_drop(&sv->acceptor);
  srv_keep(L, sv, 0);
}

void srv_closeall(lua_State *L, struct loop *lp) {
  struct link *open = &lp->servers->open;
  while (!link_empty(open))
    srv_destroy(L, link_entry(open->next, struct server, link), 1);
}

void srv_stats(lua_State *L, struct loop *lp) {
  lua_pushinteger(L, lp->servers->nopen);
  lua_setfield(L, -2, "servers");
  lua_pushinteger(L, lp->servers->active);
  lua_setfield(L, -2, "connections");
  lua_pushinteger(L, lp->servers->accepted);
  lua_setfield(L, -2, "accepted");
  lua_pushinteger(L, lp->servers->rejected);
  lua_setfield(L, -2, "rejected");
}

/* A connection sv accepted has closed (socket.c). */
void srv_connclosed(struct server *sv) {
  sv->active--;
  sv->loop->servers->active--;
}

static int srv_close(lua_State *L) {
  srv_destroy(L, srv_check(L, 1), 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int srv__gc(lua_State *L) {
  struct server *sv = srv_check(L, 1);
  srv_destroy(L, sv, 0);
  return 0;
}

static int srv__tostring(lua_State *L) {
  struct server *sv = srv_check(L, 1);
  if (sv->fd < 0)
    lua_pushliteral(L, "ServerSocket (closed)");
  else
    lua_pushfstring(L, "ServerSocket (%p)", (void *)sv);
  return 1;
}

static int srv_accept_k(lua_State *L, int status, lua_KContext ctx);

static int srv_doaccept(lua_State *L, int retry) {
  struct server *sv = srv_check(L, 1);
  if (sv->fd < 0)
    return util_fail(L, "closed");
  if (!retry) {
    if (sv->handler)
      return luaL_error(L, "accept: the server has an on(\"connection\") handler");
    if (sv->acceptor.task != NULL)
      return luaL_error(L, "server already has a pending accept");
    double t = check_timeout(L, 2, "accept: timeout", -1);
    sched_checkwait(L, sv->loop, "accept");
    sv->acceptor.deadline = loop_deadline(sv->loop, t);
  } else if (sv->acceptor.timedout) {
    sv->acceptor.timedout = 0;
    return util_fail(L, "timeout");
  }
  if (!sv->paused && !sv->backoff) {
    int rc = srv_acceptone(L, sv, 1);
    if (rc > 0)
      return 1;
    if (rc == -EMFILE || rc == -ENFILE)
      srv_backoff(sv, -rc);
    else if (rc < 0)
      return util_failerr(L, -rc);
  }
  sched_register(sv->loop, &sv->acceptor); /* the watcher and timer see it */
  srv_sync(sv);
  srv_timer_arm(sv);
  return sched_park(L, sv->loop, NULL, 0, srv_accept_k);
}

static int srv_accept_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return srv_doaccept(L, 1);
}

static int srv_accept(lua_State *L) {
  lua_settop(L, 2);
  return srv_doaccept(L, 0);
}

static int srv_on(lua_State *L) {
  struct server *sv = srv_check(L, 1);
  static const char *const names[] = {"connection", "error", NULL};
  int which = luaL_checkoption(L, 2, NULL, names);
  lua_settop(L, 3);
  if (which == 0 && lua_type(L, 3) == LUA_TSTRING) /* "module.name" */
    util_handlermodule(L, 3, "handler");
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (which == 0) {
    if (sv->acceptor.task != NULL)
      return luaL_error(L, "on: the server has a pending accept");
    lua_setiuservalue(L, 1, SRV_UV_HANDLER);
    sv->handler = 1;
    srv_keep(L, sv, 1);
    srv_sync(sv);
  } else {
    lua_setiuservalue(L, 1, SRV_UV_ONERROR);
  }
  lua_settop(L, 1);
  return 1;
}

static int srv_pause(lua_State *L) {
  struct server *sv = srv_check(L, 1);
  sv->paused = 1;
  srv_sync(sv);
  lua_settop(L, 1);
  return 1;
}

static int srv_resume(lua_State *L) {
  struct server *sv = srv_check(L, 1);
  sv->paused = 0;
  srv_sync(sv);
  lua_settop(L, 1);
  return 1;
}

static int srv_port(lua_State *L) {
  struct server *sv = srv_check(L, 1);
  struct net_addr a;
  char host[NET_ADDRSTRLEN];
  int port = 0;
  if (sv->fd < 0 || net_local_addr(sv->fd, &a) < 0 ||
      net_format_addr(&a, host, sizeof host, &port) < 0)
    return util_fail(L, "closed");
  lua_pushinteger(L, port);
  return 1;
}

/* address() -> host, port: the same shape as Socket:address() and
 * Socket:peer() (one naming scheme for addresses). */
static int srv_address(lua_State *L) {
  struct server *sv = srv_check(L, 1);
  struct net_addr a;
  if (sv->fd < 0 || net_local_addr(sv->fd, &a) < 0)
    return util_fail(L, "closed");
  return util_pushaddr(L, &a);
}

static int srv_stats_m(lua_State *L) {
  struct server *sv = srv_check(L, 1);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, sv->accepted);
  lua_setfield(L, -2, "accepted");
  lua_pushinteger(L, sv->active);
  lua_setfield(L, -2, "active");
  lua_pushinteger(L, sv->rejected);
  lua_setfield(L, -2, "rejected");
  stls_srvstats(L, sv);
  sproxy_srvstats(L, sv);
  return 1;
}

static int srv_limits(lua_State *L) {
  limits_push(L, &srv_check(L, 1)->lim, LIMITS_SCOPE_SERVER);
  return 1;
}

static int srv_fd(lua_State *L) {
  lua_pushinteger(L, srv_check(L, 1)->fd);
  return 1;
}

/* --------------------------------------------------------------- listen */

static int optbool(lua_State *L, const char *k, int def) {
  int t = lua_getfield(L, 1, k);
  int v = t == LUA_TNIL ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static lua_Integer optint(lua_State *L, const char *k, lua_Integer def) {
  lua_getfield(L, 1, k);
  lua_Integer v = lua_isnil(L, -1) ? def : luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  return v;
}

static const char *optstr(lua_State *L, const char *k, const char *def) {
  lua_getfield(L, 1, k);
  const char *v = lua_isnil(L, -1) ? def : luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the table still holds the string */
  return v;
}

/* The listening fd per the options: 0 and *fd set, or -errno. */
static int srv_openfd(lua_State *L, int *fd, const char **path) {
  *path = optstr(L, "path", NULL);
  lua_Integer adopt = optint(L, "fd", -1);
  if (adopt >= 0) {
    int rc = net_check_listening((int)adopt);
    *fd = (int)adopt;
    return rc;
  }
  int backlog = (int)optint(L, "backlog", BERTH_BACKLOG);
  struct net_addr a;
  int rc;
  if (*path != NULL) {
    rc = net_parse_unix(*path, &a);
  } else {
    const char *host = optstr(L, "host", "127.0.0.1");
    lua_Integer port = optint(L, "port", 0);
    if (strcmp(host, "0.0.0.0") == 0)
      host = "*";
    rc = net_parse_ip(host, (int)port, &a);
    if (rc == -EINVAL)
      return luaL_error(L, "listen: host must be a numeric address, \"*\" or "
                           "\"localhost\" (got \"%s\")", host);
  }
  if (rc < 0)
    return rc;
  int flags = (optbool(L, "reuseaddr", 1) ? NET_REUSEADDR : 0) |
              (optbool(L, "reuseport", 0) ? NET_REUSEPORT : 0);
  rc = net_listen(&a, backlog, flags);
  if (rc < 0)
    return rc;
  *fd = rc;
  return 0;
}

/* A closed ServerSocket of lp. [-0, +1, m] */
static struct server *srv_new(lua_State *L, struct loop *lp) {
  struct server *sv = loop_newobject(L, lp, sizeof *sv, SRV_NUV);
  memset(sv, 0, sizeof *sv);
  sv->loop = lp;
  sv->fd = -1;
  sv->acceptor = (struct waiter)WAITER_INIT;
  link_init(&sv->link);
  luaL_setmetatable(L, CLS_SERVER);
  return sv;
}

static void srv_attach(struct server *sv, int fd) {
  struct loop *lp = sv->loop;
  struct net_addr a;
  sv->fd = fd;
  ev_io_init(&sv->lio, srv_lio_cb, fd, EV_READ);
  ev_init(&sv->timer, srv_timer_cb);
  sv->lio.data = sv->timer.data = sv;
  sv->tcp = net_local_addr(fd, &a) == 0 &&
            ((struct sockaddr *)&a.ss)->sa_family != AF_UNIX;
  link_push(&lp->servers->open, &sv->link);
  lp->servers->nopen++;
}

/* berth.listen{...} -> ServerSocket | nil, code, errno (or nil, "tls",
 * message for a missing or broken certificate). The userdata exists
 * before the socket does (9.14): nothing after the bind can fail but the
 * path's copy, and a server with its fd closes on __gc. */
int srv_listen(lua_State *L) {
  struct loop *lp = loop_check(L, lua_upvalueindex(1));
  options_check(L, 1, OPT_LISTEN); /* every key and value: opt* can trust */
  struct limits lim = lp->limits;
  limits_read(L, 1, &lim, LIMITS_SCOPE_SERVER, "listen");
  lua_settop(L, 1);
  if (lua_getfield(L, 1, "tls") != LUA_TNIL) { /* before any descriptor */
    if (stls_servercontext(L, lp, 2) > 1)
      return 3;
    lua_replace(L, 2);
  }
  struct server *sv = srv_new(L, lp);      /* stack: opts, ctx|nil, sv */
  sv->lim = lim;
  if (!lua_isnil(L, 2)) {
    lua_pushvalue(L, 2);
    stls_setserver(L, sv, 3);
  }
  lua_remove(L, 2);                        /* stack: opts, sv */
  sproxy_listen(L, 1, sv, 2);              /* may raise: no fd yet */
  const char *path;
  int fd = -1;
  int rc = srv_openfd(L, &fd, &path);
  if (rc < 0)
    return util_failerr(L, -rc);
  srv_attach(sv, fd);
  if (path != NULL) { /* the user value keeps the string for the unlink */
    lua_pushstring(L, path);
    sv->unlink_path = lua_tostring(L, -1);
    lua_setiuservalue(L, 2, SRV_UV_PATH);
  }
  return 1;
}

static void srvset_free(struct loop *lp, void *ud) {
  free(ud);
  lp->servers = NULL;
}

void srv_init(lua_State *L, struct loop *lp) {
  struct srvset *set = calloc(1, sizeof *set);
  if (set == NULL)
    luaL_error(L, "not enough memory");
  link_init(&set->open);
  lp->servers = set;
  loop_atclose(L, lp, srvset_free, set);
}

static const luaL_Reg srv_meta[] = {
  {"__gc", srv__gc},
  {"__close", srv_close},
  {"__tostring", srv__tostring},
  {NULL, NULL}
};

static const luaL_Reg srv_methods[] = {
  {"accept", srv_accept},
  {"on", srv_on},
  {"pause", srv_pause},
  {"resume", srv_resume},
  {"close", srv_close},
  {"port", srv_port},
  {"address", srv_address},
  {"stats", srv_stats_m},
  {"fd", srv_fd},
  {"limits", srv_limits},
  {NULL, NULL}
};

/* Leaves the method table on the stack. [-0, +1, m] */
void srv_open(lua_State *L) {
  util_newclass(L, CLS_SERVER, srv_meta, srv_methods);
}
