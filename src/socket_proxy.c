/*
 * socket_proxy.c -- the PROXY protocol on berth's sockets, the Lua side of
 * proxy_proto.c and cidr.c: a listener's settings (listen{proxy_protocol=,
 * proxy_trusted=}) and the loop's defaults for them, reading a served
 * connection's header before its
 * handler runs, sock:proxied(), and core.proxy.header for the connections
 * berth opens to pass a client's address on. Owns struct spx (a server's
 * settings and counters, a userdata in the server's SRV_UV_PROXY) and
 * struct spxdefaults (the loop's defaults, lp->proxy).
 *
 * The header is read in the handler task, before the TLS handshake and
 * before the user's handler (server.c), by one blocking step parked on the
 * socket's reader like any read, with the deadline `proxy_timeout` after
 * the accept. Bytes are received into the socket's read buffer: whatever
 * arrived after the header stays there for the handler's first read, or
 * becomes the start of the TLS stream (tls_preload). A connection whose
 * header is malformed, late, or missing where it is required, or that
 * sends one from an untrusted address, is closed before any Lua of the
 * program runs; it is counted in server:stats() and logged at debug level.
 *
 * Trust: with proxy_trusted, only peers inside those ranges may send a
 * header. In "required" mode any other peer is refused at the accept (no
 * task is started for it); in "optional" mode it is served as a direct
 * client, and refused if its first bytes are a PROXY header. Without
 * proxy_trusted every peer is trusted: the listener is meant to be reached
 * only through the balancer (bind it where only the balancer can).
 *
 * After a header with addresses, the socket's cached peer is the client's
 * (sock:peer(), logs, the default error handler). The balancer's address
 * and the header itself are kept in the socket's SOCK_UV_PROXY as one
 * string: a length byte, the balancer's sockaddr, the header's bytes;
 * sock:proxied() parses it again when asked (rarely: no table is built per
 * connection).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "check.h"
#include "cidr.h"
#include "core.h"
#include "proxy_proto.h"
#include "tls.h"

#define SPX_CHUNK 4096 /* receive size while the header is read */

enum spx_mode { SPX_OFF, SPX_REQUIRED, SPX_OPTIONAL };

struct spx {
  int mode;              /* enum spx_mode */
  long ok, failed, refused;
  size_t ntrusted;       /* 0: every peer is trusted */
  struct cidr trusted[]; /* ntrusted rules */
};

/* The loop's defaults for listeners that do not say (core.proxy.defaults,
 * the host's --proxy-protocol and --proxy-trusted): a struct spx whose
 * counters are unused. */
struct spxdefaults {
  struct spx *d;         /* NULL: off */
};

/* ------------------------------------------------------------- listen */

/* The proxy_trusted list at the top: every rule parsed into sp (sized for
 * `n` rules); a bad one raises, naming it and `api`. */
static void spx_readtrusted(lua_State *L, struct spx *sp, size_t n,
                            const char *api) {
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, -1, (lua_Integer)i + 1);
    const char *what = lua_pushfstring(L, "%s: proxy_trusted[%d]", api,
                                       (int)i + 1);
    const char *text = check_string(L, -2, what, NULL);
    if (text == NULL || cidr_parse(text, &sp->trusted[i]) < 0)
      check_fail(L, -2, what, "an address or a range like \"10.0.0.0/8\", "
                              "\"fd00::/8\" or \"unix\"");
    lua_pop(L, 2);
  }
  sp->ntrusted = n;
}

/* A mode from the value at idx (checked by options.c): true, false or
 * "optional"; `def` for nil. */
static int spx_mode(lua_State *L, int idx, int def) {
  if (lua_isnil(L, idx))
    return def;
  return lua_type(L, idx) == LUA_TSTRING ? SPX_OPTIONAL
         : lua_toboolean(L, idx)        ? SPX_REQUIRED
                                        : SPX_OFF;
}

/* A new struct spx (a userdata, pushed) for `mode` with the list of
 * ranges at `list` (a table, or nil: none); `api` names the caller in
 * messages. [-0, +1, v] */
static struct spx *spx_new(lua_State *L, int mode, int list,
                           const char *api) {
  list = lua_absindex(L, list);
  size_t n = lua_istable(L, list) ? (size_t)luaL_len(L, list) : 0;
  if (n > 4096)
    luaL_error(L, "%s: proxy_trusted has more than 4096 ranges", api);
  struct spx *sp = lua_newuserdatauv(L, sizeof *sp + n * sizeof(struct cidr),
                                     0);
  memset(sp, 0, sizeof *sp);
  sp->mode = mode;
  lua_pushvalue(L, list);
  spx_readtrusted(L, sp, n, api);
  lua_pop(L, 1);
  return sp;
}

void sproxy_listen(lua_State *L, int optidx, struct server *sv, int svidx) {
  struct spx *def = sv->loop->proxy ? sv->loop->proxy->d : NULL;
  optidx = lua_absindex(L, optidx);
  svidx = lua_absindex(L, svidx);
  lua_getfield(L, optidx, "proxy_protocol");
  int mode = spx_mode(L, -1, def ? def->mode : SPX_OFF);
  lua_getfield(L, optidx, "proxy_trusted");  /* stack: mode, list */
  if (mode == SPX_OFF) {
    if (!lua_isnil(L, -1))
      luaL_error(L, "listen: proxy_trusted needs proxy_protocol");
    lua_pop(L, 2);
    return;
  }
  struct spx *sp;
  if (lua_isnil(L, -1) && def != NULL) { /* the default ranges */
    size_t size = sizeof *sp + def->ntrusted * sizeof(struct cidr);
    sp = lua_newuserdatauv(L, size, 0);
    memcpy(sp, def, size);
    sp->mode = mode;
  } else {
    sp = spx_new(L, mode, -1, "listen");
  }
  sv->proxy = sp;
  lua_setiuservalue(L, svidx, SRV_UV_PROXY);
  lua_pop(L, 2);
}

static void spxdefaults_free(struct loop *lp, void *ud) {
  struct spxdefaults *pd = ud;
  free(pd->d);
  free(pd);
  lp->proxy = NULL;
}

/* core.proxy.defaults([{protocol =, trusted =}]) -> the defaults in force
 * for listeners made from now on (a listener's own options win). */
static int spx_defaults(lua_State *L) {
  struct loop *lp = loop_check(L, lua_upvalueindex(1));
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "protocol");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN &&
        !(lua_type(L, -1) == LUA_TSTRING &&
          strcmp(lua_tostring(L, -1), "optional") == 0))
      check_fail(L, -1, "proxy.defaults: protocol",
                 "true, false or \"optional\"");
    int mode = spx_mode(L, -1, SPX_OFF);
    lua_getfield(L, 1, "trusted");
    if (!lua_isnil(L, -1) && !lua_istable(L, -1))
      check_fail(L, -1, "proxy.defaults: trusted", "a list of ranges");
    struct spx *sp = spx_new(L, mode, -1, "proxy.defaults");
    size_t size = sizeof *sp + sp->ntrusted * sizeof(struct cidr);
    struct spx *copy = mode == SPX_OFF ? NULL : malloc(size);
    if (mode != SPX_OFF && copy == NULL)
      return luaL_error(L, "not enough memory");
    if (copy != NULL)
      memcpy(copy, sp, size);
    if (lp->proxy == NULL) {
      struct spxdefaults *pd = calloc(1, sizeof *pd);
      if (pd == NULL) {
        free(copy);
        return luaL_error(L, "not enough memory");
      }
      lp->proxy = pd;
      loop_atclose(L, lp, spxdefaults_free, pd);
    }
    free(lp->proxy->d);
    lp->proxy->d = copy;
    lua_settop(L, 0);
  }
  const struct spx *d = lp->proxy ? lp->proxy->d : NULL;
  lua_createtable(L, 0, 2);
  if (d == NULL)
    lua_pushboolean(L, 0);
  else if (d->mode == SPX_OPTIONAL)
    lua_pushliteral(L, "optional");
  else
    lua_pushboolean(L, 1);
  lua_setfield(L, -2, "protocol");
  lua_createtable(L, d ? (int)d->ntrusted : 0, 0);
  for (size_t i = 0; d != NULL && i < d->ntrusted; i++) {
    char text[CIDR_STRLEN];
    if (cidr_format(&d->trusted[i], text, sizeof text) >= 0) {
      lua_pushstring(L, text);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
  }
  lua_setfield(L, -2, "trusted");
  return 1;
}

static int spx_trusts(const struct spx *sp, const struct net_addr *a) {
  return sp->ntrusted == 0 || cidr_match_any(sp->trusted, sp->ntrusted, a);
}

int sproxy_admit(struct server *sv, const struct net_addr *peer) {
  struct spx *sp = sv->proxy;
  if (sp == NULL || sp->mode != SPX_REQUIRED || spx_trusts(sp, peer))
    return 1;
  sp->refused++;
  return 0;
}

void sproxy_srvstats(lua_State *L, const struct server *sv) {
  const struct spx *sp = sv->proxy;
  if (sp == NULL)
    return;
  lua_pushinteger(L, sp->ok);
  lua_setfield(L, -2, "proxy_ok");
  lua_pushinteger(L, sp->failed);
  lua_setfield(L, -2, "proxy_failed");
  lua_pushinteger(L, sp->refused);
  lua_setfield(L, -2, "proxy_refused");
}

/* ------------------------------------------------------ reading it */

static struct net_addr spx_peer(const struct sock *s) {
  struct net_addr a;
  memset(&a, 0, sizeof a);
  memcpy(&a.ss, &s->peer, s->peerlen);
  a.len = s->peerlen;
  return a;
}

/* Close the connection: its header is missing, late or broken (`why`),
 * or came from an untrusted peer. Pushes false. */
static int spx_fail(lua_State *L, struct sock *s, const char *why,
                    int refused) {
  struct net_addr a = spx_peer(s);
  char host[NET_ADDRSTRLEN];
  int port = 0;
  if (s->peerlen == 0 || net_format_addr(&a, host, sizeof host, &port) < 0)
    strcpy(host, "?");
  if (refused)
    s->srv->proxy->refused++;
  else
    s->srv->proxy->failed++;
  loop_log(s->loop, "debug", "proxy protocol: %s:%d: %s", host, port, why);
  sock_destroy(L, s, 1, "closed");
  lua_pushboolean(L, 0);
  return 1;
}

/* Keep the balancer's address and the header's `len` bytes (the start of
 * rbuf) in SOCK_UV_PROXY, then drop them from the buffer. [-0, +0, m] */
static void spx_keep(lua_State *L, struct sock *s, size_t len) {
  luaL_Buffer b;
  unsigned char alen = (unsigned char)s->peerlen;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, (char)alen);
  luaL_addlstring(&b, (const char *)&s->peer, alen);
  luaL_addlstring(&b, buf_begin(&s->rbuf), len);
  luaL_pushresult(&b);
  sock_setuv(L, 1, SOCK_UV_PROXY);
  buf_consume(&s->rbuf, len);
}

/* The bytes after the header: the handler's first read, or the start of
 * the TLS stream. */
static int spx_handon(lua_State *L, struct sock *s) {
  s->rscan = 0;
  if (s->rbuf.len == 0) {
    buf_free(&s->rbuf);
  } else if (s->tls != NULL) {
    if (tls_preload(s->tls, buf_begin(&s->rbuf), s->rbuf.len) < 0)
      return luaL_error(L, "not enough memory");
    buf_free(&s->rbuf);
  } else {
    s->msg_start = ev_now(s->loop->ev); /* message_timeout runs from here */
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* A complete header of `len` bytes from a trusted peer. */
static int spx_accept(lua_State *L, struct sock *s, size_t len,
                      const struct pp_header *h) {
  spx_keep(L, s, len);
  /* The header is the balancer's, not the client's: a connection that has
   * sent only it is still young (not an idle keep-alive client that a
   * shutdown, or its drain delay, closes before its first request). The
   * loop's total keeps the bytes. */
  s->bytes_in -= len < s->bytes_in ? len : s->bytes_in;
  if (pp_has_addresses(h) && h->src.len <= sizeof s->peer)
    sock_setpeer(s, &h->src);
  s->srv->proxy->ok++;
  return spx_handon(L, s);
}

/* What the bytes so far say: > 0 a header of that length, 0 more needed,
 * < 0 none (PP_ESIGNATURE) or a malformed one. */
static int spx_parse(struct sock *s, struct pp_header *h) {
  return pp_parse((const uint8_t *)buf_begin(&s->rbuf), s->rbuf.len, h);
}

/* One receive into rbuf (not through TLS: these bytes come first). */
static void spx_recv(lua_State *L, struct sock *s) {
  char *p = buf_reserve(&s->rbuf, SPX_CHUNK);
  if (p == NULL) {
    luaL_error(L, "not enough memory");
    return;
  }
  size_t room = buf_room(&s->rbuf);
  long got = net_recv(s->fd, p, room);
  if (got > 0) {
    buf_commit(&s->rbuf, (size_t)got);
    sock_countin(s, (size_t)got);
    s->readable = (size_t)got == room;
  } else if (got == 0) {
    s->eof = 1;
  } else if (got == -EAGAIN) {
    s->readable = 0;
  } else {
    s->rerr = (int)got;
  }
}

static int spx_step_k(lua_State *L, int status, lua_KContext ctx);

/* Decide from the bytes so far, or park until more come. `trusted`: the
 * peer may send a header (ctx of the continuation). */
static int spx_step(lua_State *L, int trusted, int retry) {
  struct sock *s = sock_check(L, 1);
  struct loop *lp = s->loop;
  int optional = s->srv->proxy->mode == SPX_OPTIONAL;
  if (s->fd < 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (retry && s->reader.timedout) {
    s->reader.timedout = 0;
    if (optional && s->rbuf.len == 0)
      return spx_handon(L, s); /* a direct client that waits for us */
    return spx_fail(L, s, "no complete header in time", 0);
  }
  for (;;) {
    struct pp_header h;
    int rc = s->rbuf.len > 0 ? spx_parse(s, &h) : 0;
    if (rc == PP_ESIGNATURE && optional)
      return spx_handon(L, s); /* a direct client */
    if (rc != 0 && !trusted)
      return spx_fail(L, s, "a header from an untrusted address", 1);
    if (rc > 0)
      return spx_accept(L, s, (size_t)rc, &h);
    if (rc < 0)
      return spx_fail(L, s, pp_strerror(rc), 0);
    if (s->eof || s->rerr) {
      if (optional && s->rbuf.len == 0)
        return spx_handon(L, s); /* the handler sees the EOF */
      return spx_fail(L, s, "closed before a complete header", 0);
    }
    if (!s->readable)
      break;
    spx_recv(L, s);
  }
  sched_register(lp, &s->reader); /* the timer sees its deadline */
  if (!ev_is_active(&s->rio))
    ev_io_start(lp->ev, &s->rio);
  sock_timer_arm(s);
  return sched_park(L, lp, NULL, trusted, spx_step_k);
}

static int spx_step_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return spx_step(L, (int)ctx, 1);
}

int sproxy_header(lua_State *L) {
  struct sock *s = sock_check(L, 1);
  lua_settop(L, 1);
  if (s->fd < 0 || s->srv == NULL || s->srv->proxy == NULL) {
    lua_pushboolean(L, s->fd >= 0);
    return 1;
  }
  sched_checkwait(L, s->loop, "proxy header");
  struct net_addr peer = spx_peer(s);
  int trusted = spx_trusts(s->srv->proxy, &peer);
  double limit = s->lim->proxy_timeout;
  s->reader.deadline = limit > 0 ? s->created + limit : -1;
  return spx_step(L, trusted, 0);
}

/* ------------------------------------------------------ sock:proxied() */

/* The kept string at the top: the balancer's address into *lb, the
 * header's bytes and length. NULL if it is malformed (it never is). */
static const uint8_t *spx_unpack(lua_State *L, struct net_addr *lb,
                                 size_t *hlen) {
  size_t n;
  const uint8_t *p = (const uint8_t *)lua_tolstring(L, -1, &n);
  if (n < 1 || (size_t)p[0] + 1 > n || p[0] > sizeof lb->ss)
    return NULL;
  memset(lb, 0, sizeof *lb);
  memcpy(&lb->ss, p + 1, p[0]);
  lb->len = p[0];
  *hlen = n - 1 - p[0];
  return p + 1 + p[0];
}

static void spx_setstr(lua_State *L, const char *k, const void *p,
                       size_t len) {
  lua_pushlstring(L, p, len);
  lua_setfield(L, -2, k);
}

static void spx_setbytes(lua_State *L, const char *k,
                         const struct pp_bytes *b) {
  if (b->p != NULL)
    spx_setstr(L, k, b->p, b->len);
}

/* info.ssl from the SSL TLV's value. [-0, +0, m] */
static void spx_pushssl(lua_State *L, const uint8_t *v, size_t len) {
  struct pp_ssl ssl;
  if (pp_ssl_parse(v, len, &ssl) < 0)
    return;
  lua_createtable(L, 0, 8);
  lua_pushboolean(L, (ssl.client & PP_CLIENT_SSL) != 0);
  lua_setfield(L, -2, "tls");
  lua_pushboolean(L, (ssl.client & (PP_CLIENT_CERT_CONN |
                                    PP_CLIENT_CERT_SESS)) != 0);
  lua_setfield(L, -2, "cert");
  lua_pushboolean(L, ssl.verify == 0);
  lua_setfield(L, -2, "verified");
  spx_setbytes(L, "version", &ssl.version);
  spx_setbytes(L, "cn", &ssl.cn);
  spx_setbytes(L, "cipher", &ssl.cipher);
  spx_setbytes(L, "sig_alg", &ssl.sig_alg);
  spx_setbytes(L, "key_alg", &ssl.key_alg);
  lua_setfield(L, -2, "ssl");
}

/* The TLVs: named fields for the known ones, and every one in `tlvs`
 * ({type =, value =}, in order). [-0, +0, m] */
static void spx_pushtlvs(lua_State *L, const uint8_t *p,
                         const struct pp_header *h) {
  static const struct { uint8_t type; const char *name; } known[] = {
    {PP_TLV_ALPN, "alpn"}, {PP_TLV_AUTHORITY, "authority"},
    {PP_TLV_UNIQUE_ID, "unique_id"}, {PP_TLV_NETNS, "netns"},
  };
  lua_createtable(L, (int)h->ntlv, 0);
  for (size_t i = 0; i < h->ntlv; i++) {
    const struct pp_tlv *t = &h->tlv[i];
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, t->type);
    lua_setfield(L, -2, "type");
    spx_setstr(L, "value", p + t->off, t->len);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "tlvs");
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    int at = pp_tlv_find(h, known[i].type);
    if (at >= 0)
      spx_setstr(L, known[i].name, p + h->tlv[at].off, h->tlv[at].len);
  }
  int ssl = pp_tlv_find(h, PP_TLV_SSL);
  if (ssl >= 0)
    spx_pushssl(L, p + h->tlv[ssl].off, h->tlv[ssl].len);
}

/* The header's own fields into the table at the top. [-0, +0, m] */
static void spx_pushinfo(lua_State *L, const uint8_t *p,
                         const struct pp_header *h) {
  lua_pushinteger(L, h->version);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, h->command == PP_CMD_LOCAL ? "local" : "proxy");
  lua_setfield(L, -2, "command");
  if (pp_has_addresses(h)) {
    if (util_pushaddr(L, &h->dst) == 2) {
      lua_setfield(L, -3, "dst_port");
      lua_setfield(L, -2, "dst_host");
    } else {
      lua_pop(L, 2);
    }
  }
  spx_pushtlvs(L, p, h);
}

/* sock:proxied() -> host, port, info of the balancer that sent the
 * connection's PROXY header; nil for a connection that had none. */
static int spx_proxied(lua_State *L) {
  sock_check(L, 1);
  if (sock_getuv(L, 1, SOCK_UV_PROXY) != LUA_TSTRING)
    return 1; /* nil */
  struct net_addr lb;
  size_t hlen;
  struct pp_header h;
  const uint8_t *p = spx_unpack(L, &lb, &hlen);
  if (p == NULL || pp_parse(p, hlen, &h) <= 0)
    return luaL_error(L, "proxied: the kept header is damaged");
  if (util_pushaddr(L, &lb) != 2) {
    lua_pop(L, 2);
    lua_pushnil(L);
    lua_pushnil(L);
  }
  lua_createtable(L, 0, 8);
  spx_pushinfo(L, p, &h);
  return 3;
}

/* ------------------------------------------------------ outbound */

/* The original destination the header of the socket at idx named, into
 * *dst: 1, or 0 when it had none. */
static int spx_keptdst(lua_State *L, int idx, struct net_addr *dst) {
  int found = 0;
  if (sock_getuv(L, idx, SOCK_UV_PROXY) == LUA_TSTRING) {
    struct net_addr lb;
    size_t hlen;
    struct pp_header h;
    const uint8_t *p = spx_unpack(L, &lb, &hlen);
    if (p != NULL && pp_parse(p, hlen, &h) > 0 && pp_has_addresses(&h)) {
      *dst = h.dst;
      found = 1;
    }
  }
  lua_pop(L, 1);
  return found;
}

/* The source and destination to announce for the socket at idx: its
 * client (the peer, a proxied one included) and the address that client
 * reached (the header's destination, else the socket's own). 0 or -errno. */
static int spx_addrs(lua_State *L, int idx, struct net_addr *src,
                     struct net_addr *dst) {
  struct sock *s = sock_check(L, idx);
  if (s->peerlen == 0 && (s->fd < 0 || net_peer_addr(s->fd, src) < 0))
    return -ENOTCONN;
  if (s->peerlen > 0)
    *src = spx_peer(s);
  if (spx_keptdst(L, idx, dst))
    return 0;
  return s->fd < 0 ? -ENOTCONN : net_local_addr(s->fd, dst);
}

/* core.proxy.header(version, [source]) -> the PROXY header (1 or 2) that
 * announces the client of the Socket `source`; without one, a v2 LOCAL or
 * v1 UNKNOWN header. nil, code, errno when the source has no addresses. */
static int spx_header(lua_State *L) {
  int version = (int)check_integer(L, 1, "proxy header: version", 0, 1, 2);
  struct net_addr src, dst;
  int have = !lua_isnoneornil(L, 2);
  if (have) {
    int rc = spx_addrs(L, 2, &src, &dst);
    if (rc < 0)
      return util_failerr(L, -rc);
  }
  uint8_t out[PP_V2_HDR + 216 + 16]; /* v2 with two unix paths at most */
  int n = version == 1
              ? pp_build_v1((char *)out, sizeof out, have ? &src : NULL,
                            have ? &dst : NULL)
              : pp_build_v2(out, sizeof out, have ? &src : NULL,
                            have ? &dst : NULL, NULL, 0);
  if (n < 0)
    return util_failerr(L, -n);
  lua_pushlstring(L, (const char *)out, (size_t)n);
  return 1;
}

static const luaL_Reg spx_funcs[] = {
  {"header", spx_header},
  {"defaults", spx_defaults},
  {NULL, NULL}
};

static const luaL_Reg spx_sock_methods[] = {
  {"proxied", spx_proxied},
  {NULL, NULL}
};

void sproxy_open(lua_State *L) {
  luaL_getmetatable(L, CLS_SOCKET);
  lua_getfield(L, -1, "__index");
  luaL_setfuncs(L, spx_sock_methods, 0);
  lua_pop(L, 2);
}

void sproxy_push(lua_State *L) {
  luaL_newlibtable(L, spx_funcs);
  lua_insert(L, -2);
  luaL_setfuncs(L, spx_funcs, 1);
}
