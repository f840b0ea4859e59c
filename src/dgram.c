/*
 * dgram.c -- the Datagram userdata (class berth.Datagram): UDP over IPv4
 * and IPv6, and unix datagram sockets. Its lifetime, options, addresses,
 * events and shutdown live here; the receive and send paths in
 * dgram_io.c. Owns struct dgramset (made by the first berth.udp of a
 * loop): the loop's open Datagrams, and the receive area.
 *
 * A Datagram is served in one of three modes, like a ServerSocket:
 *   task      recvfrom/recv/packets() park the calling task;
 *   callback  on("packet", fn): fn(data, host, port, dgram) is a plain
 *             protected call on the loop, per datagram;
 *   handler   serve(fn): fn(data, host, port, dgram) runs in a new task
 *             per datagram, started from C (berth.serve_udp).
 * In callback and handler mode, a string fn returns is sent back to the
 * datagram's sender.
 *
 * Lifetime (L1): a task waiting on a Datagram holds it through its own
 * stack; C holds it, and so anchors it, only in callback or handler mode
 * and while its send queue drains. An idle Datagram Lua dropped is
 * collected and closed by __gc. The userdata exists before its descriptor
 * (dgram_alloc, then dgram_attach), so a failure in between leaks nothing.
 *
 * Errors raised by callbacks and handlers go to on("error") (or
 * berth.onerror) and never close the socket: one bad datagram must not
 * stop a server.
 */
#define _GNU_SOURCE /* struct mmsghdr in dgram.h */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "core.h"
#include "dgram.h"
#include "options.h"

/* ------------------------------------------------------------- the set */

static void dgramset_free(struct loop *lp, void *ud) {
  struct dgramset *set = ud;
  dgram_stopflusher(lp, set);
  free(set->area);
  free(set);
  lp->dgrams = NULL;
}

/* The loop's Datagram state, made on first use. [-0, +0, m] */
static struct dgramset *dgram_set(lua_State *L, struct loop *lp) {
  if (lp->dgrams != NULL)
    return lp->dgrams;
  struct dgramset *set = calloc(1, sizeof *set);
  if (set == NULL)
    luaL_error(L, "not enough memory");
  link_init(&set->open);
  link_init(&set->dirty);
  dgram_startflusher(lp, set);
  lp->dgrams = set;
  loop_atclose(L, lp, dgramset_free, set);
  return set;
}

/* ------------------------------------------------------------- anchors */

struct dgram *dgram_check(lua_State *L, int idx) {
  return util_self(L, idx, CLS_DGRAM);
}

static struct dgram *dgram_checkopen(lua_State *L, int idx) {
  struct dgram *d = dgram_check(L, idx);
  if (d->fd < 0)
    luaL_error(L, "attempt to use a closed datagram socket");
  return d;
}

/* Does C hold it with no task in between? Callbacks and handlers find
 * their Datagram by its anchor key; a draining send queue has only the
 * write watcher. */
static int dgram_needsanchor(const struct dgram *d) {
  return d->fd >= 0 && (d->mode != DM_TASK || d->sq.count > 0);
}

/* [-0, +0, m] (want 0: cannot raise) */
void dgram_keep(lua_State *L, struct dgram *d, int idx) {
  loop_keep(L, d->loop, d, idx, &d->anchored, dgram_needsanchor(d));
}

/* Start or stop the read watcher to match the state. A task waiting has
 * it started by the park; it is stopped lazily (dgram_io.c). */
void dgram_sync(struct dgram *d) {
  struct ev_loop *ev = d->loop->ev;
  int want = d->fd >= 0 && !d->paused && !d->quiet &&
             ((d->mode == DM_CALLBACK) ||
              (d->mode == DM_HANDLER && dgram_room(d) > 0) ||
              d->reader.task != NULL);
  if (want && !ev_is_active(&d->rio))
    ev_io_start(ev, &d->rio);
  else if (!want && d->mode != DM_TASK && ev_is_active(&d->rio))
    ev_io_stop(ev, &d->rio);
  /* Datagrams read ahead and not handed out yet come first: the kernel
   * may have nothing more to say, so readiness alone would not deliver
   * them (e.g. after resume() or switching to callbacks). */
  if (want && d->mode != DM_TASK && d->rq.count > 0)
    ev_feed_event(ev, &d->rio, EV_READ);
}

/* ------------------------------------------------------------- objects */

/* A closed Datagram of lp. [-0, +1, m] */
static struct dgram *dgram_alloc(lua_State *L, struct loop *lp) {
  struct dgram *d = loop_newobject(L, lp, sizeof *d, DGRAM_NUV);
  memset(d, 0, sizeof *d);
  d->loop = lp;
  d->fd = -1;
  d->reader = d->writer = (struct waiter)WAITER_INIT;
  d->rq = (struct dgq)DGQ_INIT;
  d->sq = (struct dgq)DGQ_INIT;
  d->timeout = -1;
  d->max_datagram = DGRAM_MAXSIZE;
  d->max_queue = DGRAM_BATCH; /* both set by dgram_new */
  link_init(&d->link);
  link_init(&d->dirty);
  luaL_setmetatable(L, CLS_DGRAM);
  return d;
}

/* Give a new Datagram its open, non-blocking descriptor. Cannot fail. */
static void dgram_attach(struct dgram *d, int fd, int family) {
  struct loop *lp = d->loop;
  d->fd = fd;
  d->family = family;
  d->readable = 1; /* a datagram may be there already: try before waiting */
  dgram_initwatchers(d);
  link_push(&lp->dgrams->open, &d->link);
  lp->dgrams->nopen++;
}

/* The one idempotent destroy (L3): stop before close (L2); what the send
 * queue holds gets one last non-blocking try; waiters see nil, "closed"
 * (R6), or are only unlinked from __gc (`wake` 0: nothing may run, L5). */
void dgram_destroy(lua_State *L, struct dgram *d, int wake) {
  if (d->fd < 0)
    return;
  struct loop *lp = d->loop;
  BERTH_ASSERT("the loop is finalized last", lp->ev != NULL);
  ev_io_stop(lp->ev, &d->rio);
  ev_io_stop(lp->ev, &d->wio);
  ev_timer_stop(lp->ev, &d->timer);
  if (d->sq.count > 0)
    dgram_flushnow(d);
  close(d->fd);
  d->fd = -1;
  if (d->unlink_path != NULL) {
    unlink(d->unlink_path);
    d->unlink_path = NULL;
  }
  dgq_free(&d->rq);
  dgq_free(&d->sq);
  link_remove(&d->dirty);
  d->deferred = 0;
  link_remove(&d->link);
  lp->dgrams->nopen--;
  if (wake) {
    waiter_wake(L, lp, &d->reader);
    waiter_wake(L, lp, &d->writer);
  } else {
    waiter_drop(&d->reader);
    waiter_drop(&d->writer);
  }
  dgram_keep(L, d, 0);
}

void dgram_quiesce(lua_State *L, struct loop *lp) {
  if (lp->dgrams == NULL)
    return;
  struct link *open = &lp->dgrams->open;
  for (struct link *l = open->next; l != open; l = l->next) {
    struct dgram *d = link_entry(l, struct dgram, link);
    if (d->connected)
      continue; /* a client of one peer: it keeps its grace period */
    d->quiet = 1;
    dgram_sync(d);
    if (d->rq.count == 0) /* it would wait for what will not come */
      waiter_wake(L, lp, &d->reader);
  }
}

void dgram_closeall(lua_State *L, struct loop *lp) {
  if (lp->dgrams == NULL)
    return;
  struct link *open = &lp->dgrams->open;
  while (!link_empty(open))
    dgram_destroy(L, link_entry(open->next, struct dgram, link), 1);
}

void dgram_stats(lua_State *L, struct loop *lp) {
  lua_pushinteger(L, lp->dgrams ? lp->dgrams->nopen : 0);
  lua_setfield(L, -2, "datagrams");
}

/* ------------------------------------------------------------- options */

static int optbool(lua_State *L, int idx, const char *k, int def) {
  int t = lua_getfield(L, idx, k);
  int v = t == LUA_TNIL ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static lua_Integer optint(lua_State *L, int idx, const char *k,
                          lua_Integer def, lua_Integer lo, lua_Integer hi) {
  if (lua_getfield(L, idx, k) == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  int isint;
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (!isint || v < lo || v > hi)
    luaL_error(L, "udp: %s must be an integer %I..%I", k, lo, hi);
  lua_pop(L, 1);
  return v;
}

/* A string option; the table keeps it alive. */
static const char *optstr(lua_State *L, int idx, const char *k) {
  int t = lua_getfield(L, idx, k);
  if (t != LUA_TNIL && t != LUA_TSTRING)
    luaL_error(L, "udp: %s must be a string", k);
  const char *v = lua_tostring(L, -1);
  lua_pop(L, 1);
  return v;
}

/* The address a new socket binds. No host, port or path: a client, bound
 * to the wildcard on an ephemeral port so it can reach any address --
 * IPv6 dual-stack where there is IPv6 (*v6any set), else IPv4. */
static int dgram_bindaddr(lua_State *L, int idx, struct net_addr *a,
                          int *v6any) {
  const char *path = optstr(L, idx, "path");
  const char *host = optstr(L, idx, "host");
  lua_Integer port = optint(L, idx, "port", -1, 0, 65535);
  *v6any = 0;
  if (path != NULL)
    return net_parse_unix(path, a);
  if (host == NULL && port < 0) {
    *v6any = 1;
    return net_parse_ip("::", 0, a);
  }
  if (host == NULL || strcmp(host, "0.0.0.0") == 0)
    host = host ? "*" : "127.0.0.1";
  if (net_parse_ip(host, port < 0 ? 0 : (int)port, a) < 0)
    return luaL_error(L, "udp: host must be a numeric address, \"*\" or "
                         "\"localhost\" (got \"%s\")", host);
  return 0;
}

/* The descriptor per the options: its family (and *fd), or -errno. */
static int dgram_openfd(lua_State *L, int idx, int *fd) {
  lua_Integer adopt = optint(L, idx, "fd", -1, 0, INT32_MAX);
  if (adopt >= 0) {
    *fd = (int)adopt;
    return net_check_dgram(*fd);
  }
  struct net_addr a;
  int v6any;
  int rc = dgram_bindaddr(L, idx, &a, &v6any);
  if (rc < 0)
    return rc;
  int flags = (optbool(L, idx, "reuseaddr", 0) ? NET_REUSEADDR : 0) |
              (optbool(L, idx, "reuseport", 0) ? NET_REUSEPORT : 0) |
              (optbool(L, idx, "broadcast", 0) ? NET_BROADCAST : 0);
  rc = net_udp_open(&a, flags);
  if (rc == -EAFNOSUPPORT && v6any) { /* no IPv6 here: an IPv4 client */
    net_parse_ip("*", 0, &a);
    rc = net_udp_open(&a, flags);
  }
  if (rc < 0)
    return rc;
  *fd = rc;
  return net_addr_family(&a);
}

/* Join one group: {group = "239.1.2.3", interface = "127.0.0.1"}, at the
 * stack top. 0 or -errno. */
static int dgram_joinone(lua_State *L, struct dgram *d) {
  if (!lua_istable(L, -1))
    luaL_error(L, "udp: multicast must be {group=, interface=} or a list "
                  "of them");
  const char *group = optstr(L, -1, "group");
  const char *iface = optstr(L, -1, "interface");
  struct net_addr g;
  if (group == NULL || net_parse_ip(group, 0, &g) < 0)
    luaL_error(L, "udp: multicast group must be a numeric address");
  int rc = net_addr_tofamily(&g, d->family);
  return rc < 0 ? rc : net_multicast(d->fd, &g, iface, 1);
}

static int dgram_joinall(lua_State *L, struct dgram *d, int idx) {
  int rc = 0;
  if (lua_getfield(L, idx, "multicast") == LUA_TNIL) {
    /* none */
  } else if (lua_istable(L, -1) && lua_rawlen(L, -1) > 0) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n && rc == 0; i++) {
      lua_rawgeti(L, -1, i);
      rc = dgram_joinone(L, d);
      lua_pop(L, 1);
    }
  } else {
    rc = dgram_joinone(L, d);
  }
  lua_pop(L, 1);
  return rc;
}

/* Options set on the open socket: buffer sizes, multicast groups. */
static int dgram_setup(lua_State *L, struct dgram *d, int idx) {
  lua_Integer rb = optint(L, idx, "recvbuf", 0, 0, INT32_MAX); /* 0: as is */
  lua_Integer sb = optint(L, idx, "sendbuf", 0, 0, INT32_MAX);
  int rc = 0;
  if (rb > 0)
    rc = net_set_int(d->fd, SOL_SOCKET, SO_RCVBUF, (int)rb);
  if (rc == 0 && sb > 0)
    rc = net_set_int(d->fd, SOL_SOCKET, SO_SNDBUF, (int)sb);
  if (rc == 0 && d->family != AF_UNIX)
    rc = dgram_joinall(L, d, idx);
  return rc;
}

/* berth.udp{...} -> Datagram | nil, code, errno. Programming errors (an
 * unknown option, a bad value: core.options "udp") raise before anything
 * is opened. */
int dgram_new(lua_State *L) {
  struct loop *lp = loop_check(L, lua_upvalueindex(1));
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  lua_settop(L, 1);
  options_check(L, 1, OPT_UDP); /* every key and value: opt* can trust */
  struct limits lim = lp->limits;
  limits_read(L, 1, &lim, LIMITS_SCOPE_DATAGRAM, "udp");
  size_t maxd = lim.max_datagram == LIMITS_NONE_SIZE ? DGRAM_MAXSIZE
                                                     : lim.max_datagram;
  size_t maxq = lim.max_queue;
  if (maxd > UINT32_MAX)
    return luaL_error(L, "udp: max_datagram is too large");
  dgram_set(L, lp);
  struct dgram *d = dgram_alloc(L, lp); /* stack: opts, dgram */
  d->max_datagram = maxd;
  d->max_queue = maxq;
  int fd = -1;
  int family = dgram_openfd(L, 1, &fd);
  if (family < 0)
    return util_failerr(L, -family);
  dgram_attach(d, fd, family);
  lua_getfield(L, 1, "fd");
  const char *path = lua_isnil(L, -1) ? optstr(L, 1, "path") : NULL;
  lua_pop(L, 1);
  if (path != NULL) { /* the user value keeps the string for the unlink */
    lua_pushstring(L, path);
    d->unlink_path = lua_tostring(L, -1);
    lua_setiuservalue(L, 2, DGRAM_UV_PATH);
  }
  int rc = dgram_setup(L, d, 1);
  if (rc < 0) {
    dgram_destroy(L, d, 0);
    return util_failerr(L, -rc);
  }
  lua_settop(L, 2);
  return 1;
}

/* ------------------------------------------------------------- methods */

static int dgram_close(lua_State *L) {
  dgram_destroy(L, dgram_check(L, 1), 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int dgram__gc(lua_State *L) {
  dgram_destroy(L, dgram_check(L, 1), 0);
  return 0;
}

static int dgram__tostring(lua_State *L) {
  struct dgram *d = dgram_check(L, 1);
  if (d->fd < 0)
    lua_pushliteral(L, "Datagram (closed)");
  else
    lua_pushfstring(L, "Datagram (%p)", (void *)d);
  return 1;
}

/* Switch to `mode` with `fn` (at stack index 3) in user value `uv`, or
 * back to task mode when fn is nil. The anchor comes first: it may raise,
 * and nothing has changed yet then. */
static int dgram_setmode(lua_State *L, struct dgram *d, int mode, int uv,
                         const char *what) {
  int off = lua_isnil(L, 3);
  if (!off && d->mode != DM_TASK && d->mode != mode)
    return luaL_error(L, "%s: the socket is already served by %s", what,
                      d->mode == DM_CALLBACK ? "on(\"packet\")" : "serve()");
  if (!off && d->reader.task != NULL)
    return luaL_error(L, "%s: the socket has a pending receive", what);
  if (off && d->mode != mode)
    return 0;
  if (!off && d->fd >= 0)
    loop_keep(L, d->loop, d, 1, &d->anchored, 1);
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, 1, uv);
  d->mode = off ? DM_TASK : (unsigned)mode;
  if (off && ev_is_active(&d->rio))
    ev_io_stop(d->loop->ev, &d->rio);
  dgram_keep(L, d, 1);
  dgram_sync(d);
  return 0;
}

/* on("packet" | "truncated" | "error", fn or nil) */
static int dgram_on(lua_State *L) {
  struct dgram *d = dgram_check(L, 1);
  static const char *const names[] = {"packet", "truncated", "error", NULL};
  static const int uvs[] = {DGRAM_UV_PACKET, DGRAM_UV_TRUNC, DGRAM_UV_ONERROR};
  int which = luaL_checkoption(L, 2, NULL, names);
  lua_settop(L, 3);
  if (which == 0 && lua_type(L, 3) == LUA_TSTRING) /* "module.name" */
    util_handlermodule(L, 3, "packet_handler");
  if (!lua_isnil(L, 3))
    luaL_checktype(L, 3, LUA_TFUNCTION);
  if (which == 0) {
    dgram_setmode(L, d, DM_CALLBACK, DGRAM_UV_PACKET, "on");
  } else {
    lua_setiuservalue(L, 1, uvs[which]);
  }
  lua_settop(L, 1);
  return 1;
}

/* serve(fn, "module.name" or nil): a handler task per datagram. */
static int dgram_serve(lua_State *L) {
  struct dgram *d = dgram_check(L, 1);
  lua_settop(L, 2);
  if (lua_type(L, 2) == LUA_TSTRING) /* "module.name" */
    util_handlermodule(L, 2, "packet_handler");
  if (!lua_isnil(L, 2))
    luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushnil(L);
  lua_rotate(L, 2, 1); /* stack: dgram, nil, fn -- fn at 3 like on() */
  dgram_setmode(L, d, DM_HANDLER, DGRAM_UV_HANDLER, "serve");
  lua_settop(L, 1);
  return 1;
}

static int dgram_pause(lua_State *L) {
  struct dgram *d = dgram_check(L, 1);
  d->paused = 1;
  dgram_sync(d);
  lua_settop(L, 1);
  return 1;
}

static int dgram_resume(lua_State *L) {
  struct dgram *d = dgram_check(L, 1);
  d->paused = 0;
  dgram_sync(d);
  lua_settop(L, 1);
  return 1;
}

static int dgram_settimeout(lua_State *L) {
  struct dgram *d = dgram_check(L, 1);
  /* nil or a negative number: none, as Socket:settimeout says */
  d->timeout = lua_isnumber(L, 2) && lua_tonumber(L, 2) < 0
                   ? -1 : check_timeout(L, 2, "settimeout: seconds", -1);
  lua_settop(L, 1);
  return 1;
}

/* Push host, port of a raw address; "" and 0 for an unnamed unix peer.
 * [-0, +2, m] */
void dgram_pushaddr(lua_State *L, const void *addr, size_t alen) {
  struct net_addr a;
  memset(&a, 0, sizeof a);
  if (alen > sizeof a.ss)
    alen = sizeof a.ss;
  memcpy(&a.ss, addr, alen);
  a.len = (socklen_t)alen;
  char host[NET_ADDRSTRLEN];
  int port = 0;
  if (alen == 0 || net_format_addr(&a, host, sizeof host, &port) < 0)
    host[0] = '\0';
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
}

static int dgram_address(lua_State *L) {
  struct dgram *d = dgram_check(L, 1);
  struct net_addr a;
  if (d->fd < 0 || net_local_addr(d->fd, &a) < 0)
    return util_fail(L, "closed");
  net_addr_unmap(&a);
  dgram_pushaddr(L, &a.ss, a.len);
  return 2;
}

static int dgram_port(lua_State *L) {
  int n = dgram_address(L);
  if (n == 2)
    lua_remove(L, -2);
  return n == 2 ? 1 : n;
}

static int dgram_peer(lua_State *L) {
  struct dgram *d = dgram_check(L, 1);
  struct net_addr a;
  if (d->fd < 0)
    return util_fail(L, "closed");
  if (!d->connected || net_peer_addr(d->fd, &a) < 0)
    return util_fail(L, "notconnected");
  net_addr_unmap(&a);
  dgram_pushaddr(L, &a.ss, a.len);
  return 2;
}

/* An address from the arguments at hidx (host or path) and hidx+1 (port),
 * made to fit the socket: 0, or a failure pushed (a runtime condition: an
 * IPv6 peer for an IPv4 socket, an unnamed unix peer). A malformed host
 * or port is a programming error and raises. */
int dgram_checkaddr(lua_State *L, struct dgram *d, int hidx,
                    struct net_addr *a, const char *what) {
  const char *host = luaL_checkstring(L, hidx);
  if (d->family == AF_UNIX)
    return net_parse_unix(host, a) < 0 ? util_fail(L, "invalid") : 0;
  lua_Integer port = luaL_checkinteger(L, hidx + 1);
  luaL_argcheck(L, port >= 0 && port <= 65535, hidx + 1, "port out of range");
  if (net_parse_ip(host, (int)port, a) < 0)
    return luaL_error(L, "%s: host must be a numeric address (got \"%s\")",
                      what, host);
  return net_addr_tofamily(a, d->family) < 0 ? util_fail(L, "invalid") : 0;
}

/* connect(host, port) or connect(path): datagrams now come only from
 * there, send/recv need no address, and the kernel reports ICMP errors
 * ("refused"). Not a blocking call. */
static int dgram_connect(lua_State *L) {
  struct dgram *d = dgram_checkopen(L, 1);
  struct net_addr a;
  int n = dgram_checkaddr(L, d, 2, &a, "connect");
  if (n > 0)
    return n;
  int rc = net_udp_connect(d->fd, &a);
  if (rc < 0)
    return util_failerr(L, -rc);
  /* Datagrams read ahead from anyone before stay, as the kernel keeps
   * those it had queued: they arrived while anyone was welcome. */
  d->connected = 1;
  lua_settop(L, 1);
  return 1;
}

static int dgram_multicast(lua_State *L, int join) {
  struct dgram *d = dgram_checkopen(L, 1);
  const char *group = luaL_checkstring(L, 2);
  const char *iface = luaL_optstring(L, 3, NULL);
  struct net_addr g;
  if (net_parse_ip(group, 0, &g) < 0)
    return luaL_argerror(L, 2, "a numeric multicast address expected");
  int rc = net_addr_tofamily(&g, d->family);
  if (rc == 0)
    rc = net_multicast(d->fd, &g, iface, join);
  if (rc < 0)
    return util_failerr(L, -rc);
  lua_settop(L, 1);
  return 1;
}

static int dgram_join(lua_State *L) { return dgram_multicast(L, 1); }
static int dgram_leave(lua_State *L) { return dgram_multicast(L, 0); }

/* setoption(name, value): socket options and the two limits. */
static int dgram_setoption(lua_State *L) {
  struct dgram *d = dgram_checkopen(L, 1);
  static const char *const names[] = {"broadcast", "recvbuf", "sendbuf",
    "ttl", "multicast_ttl", "multicast_loop", "max_datagram", "max_queue",
    NULL};
  int which = luaL_checkoption(L, 2, NULL, names);
  int v6 = d->family == AF_INET6, rc = 0;
  lua_Integer n = which == 0 || which == 5 ? lua_toboolean(L, 3)
                                           : luaL_checkinteger(L, 3);
  luaL_argcheck(L, n >= 0 && n <= INT32_MAX, 3, "out of range");
  switch (which) {
  case 0: rc = net_set_int(d->fd, SOL_SOCKET, SO_BROADCAST, (int)n); break;
  case 1: rc = net_set_int(d->fd, SOL_SOCKET, SO_RCVBUF, (int)n); break;
  case 2: rc = net_set_int(d->fd, SOL_SOCKET, SO_SNDBUF, (int)n); break;
  case 3:
    rc = net_set_int(d->fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP,
                     v6 ? IPV6_UNICAST_HOPS : IP_TTL, (int)n);
    break;
  case 4:
    rc = net_set_int(d->fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP,
                     v6 ? IPV6_MULTICAST_HOPS : IP_MULTICAST_TTL, (int)n);
    break;
  case 5:
    rc = net_set_int(d->fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP,
                     v6 ? IPV6_MULTICAST_LOOP : IP_MULTICAST_LOOP, (int)n);
    break;
  case 6:
    luaL_argcheck(L, n > 0 && (size_t)n <= UINT32_MAX, 3, "must be positive");
    d->max_datagram = (size_t)n;
    break;
  default:
    luaL_argcheck(L, n > 0, 3, "must be positive");
    d->max_queue = (size_t)n;
    dgram_sync(d);
  }
  if (rc < 0)
    return util_failerr(L, -rc);
  lua_settop(L, 1);
  return 1;
}

static void setint(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static int dgram_stats_m(lua_State *L) {
  struct dgram *d = dgram_check(L, 1);
  lua_createtable(L, 0, 16);
  setint(L, "received", (lua_Integer)d->received);
  setint(L, "sent", (lua_Integer)d->sent);
  setint(L, "truncated", (lua_Integer)d->truncated);
  setint(L, "dropped", (lua_Integer)d->dropped);
  setint(L, "bytes_in", (lua_Integer)d->bytes_in);
  setint(L, "bytes_out", (lua_Integer)d->bytes_out);
  setint(L, "recv_calls", (lua_Integer)d->recv_calls);
  setint(L, "send_calls", (lua_Integer)d->send_calls);
  setint(L, "queued", (lua_Integer)d->rq.count);
  setint(L, "sending", (lua_Integer)d->sq.count);
  setint(L, "handlers", (lua_Integer)d->active);
  setint(L, "max_datagram", (lua_Integer)d->max_datagram);
  setint(L, "max_queue", d->max_queue == SIZE_MAX ? -1
                                                  : (lua_Integer)d->max_queue);
  int v;
  if (d->fd >= 0 && net_get_int(d->fd, SOL_SOCKET, SO_RCVBUF, &v) == 0)
    setint(L, "recvbuf", v);
  if (d->fd >= 0 && net_get_int(d->fd, SOL_SOCKET, SO_SNDBUF, &v) == 0)
    setint(L, "sendbuf", v);
  if (d->last_error != NULL) {
    lua_pushstring(L, d->last_error);
    lua_setfield(L, -2, "last_error");
  }
  return 1;
}

static int dgram_fd(lua_State *L) {
  lua_pushinteger(L, dgram_check(L, 1)->fd);
  return 1;
}

static const luaL_Reg dgram_meta[] = {
  {"__gc", dgram__gc},
  {"__close", dgram_close},
  {"__tostring", dgram__tostring},
  {NULL, NULL}
};

static const luaL_Reg dgram_methods[] = {
  {"close", dgram_close},
  {"on", dgram_on},
  {"serve", dgram_serve},
  {"pause", dgram_pause},
  {"resume", dgram_resume},
  {"settimeout", dgram_settimeout},
  {"connect", dgram_connect},
  {"address", dgram_address},
  {"port", dgram_port},
  {"peer", dgram_peer},
  {"join", dgram_join},
  {"leave", dgram_leave},
  {"setoption", dgram_setoption},
  {"stats", dgram_stats_m},
  {"fd", dgram_fd},
  {NULL, NULL}
};

/* Leaves the method table on the stack. [-0, +1, m] */
void dgram_open(lua_State *L) {
  util_newclass(L, CLS_DGRAM, dgram_meta, dgram_methods);
  util_pushmetaaddr(L, CLS_DGRAM); /* util_self, as util_newclass gives */
  luaL_setfuncs(L, dgram_io_methods, 1);
}
