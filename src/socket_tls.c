/*
 * socket_tls.c -- TLS on berth's sockets, the Lua side of tls.c: the
 * TLSContext class (a table of options made into a context), the
 * handshake as a blocking Socket operation, the Socket methods starttls,
 * handshake and tlsinfo, ServerSocket:settls, and the core.tls table. Owns
 * struct tlsstate: the loop's default session ticket keys.
 *
 * The handshake is a Socket operation of the task that owns the socket:
 * it steps tls_handshake and parks on the reader (the handshake only ever
 * waits to read: tls.h), with the handshake deadline as the reader's.
 * A TLS server's handler task runs it before the user's handler
 * (server.c), STARTTLS and the client side of berth.connect run the same
 * code. A connection that never speaks costs what a plain one does plus
 * a small struct tls: tls.c makes the OpenSSL object on the first byte.
 *
 * A server's failed handshake never reaches the error handler (port
 * scanners, garbage, timeouts are not errors of the program): it is
 * counted in server:stats() and logged at debug level with the reason.
 *
 * Contexts are immutable: server:settls(opts) and reloading build a new
 * one and swap it in; connections keep the one they started with (tls.c
 * counts references), so a broken file never disturbs what is running.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core.h"
#include "tls.h"

#define STLS_ERRLEN 320

struct tlsstate {
  struct tls_keys *keys;   /* the default ticket keys of new contexts */
  unsigned char bytes[TLS_TICKET_KEY_SIZE * TLS_TICKET_KEYS_MAX];
  size_t len;
  int given;               /* set from outside (a master): kept as given */
};

struct stls_ctx {          /* a TLSContext; user value 1: its options */
  struct tls_ctx *ctx;
};

enum stls_mode { STLS_METHOD, STLS_HANDLER };

/* ------------------------------------------------------- ticket keys */

static void tlsstate_free(struct loop *lp, void *ud) {
  struct tlsstate *st = ud;
  tls_keys_unref(st->keys);
  memset(st->bytes, 0, sizeof st->bytes);
  free(st);
  lp->tls = NULL;
}

static int stls_usekeys(struct tlsstate *st, const unsigned char *b,
                        size_t n) {
  struct tls_keys *k = tls_keys_new(b, n);
  if (k == NULL)
    return -1;
  tls_keys_unref(st->keys);
  st->keys = k;
  memmove(st->bytes, b, n);
  st->len = n;
  return 0;
}

/* The loop's state, made on first use with one random key. */
static struct tlsstate *stls_state(lua_State *L, struct loop *lp) {
  if (lp->tls != NULL)
    return lp->tls;
  struct tlsstate *st = calloc(1, sizeof *st);
  unsigned char key[TLS_TICKET_KEY_SIZE];
  if (st == NULL || tls_random(key, sizeof key) < 0 ||
      stls_usekeys(st, key, sizeof key) < 0) {
    free(st);
    luaL_error(L, "tls: cannot make session ticket keys");
  }
  lp->tls = st;
  loop_atclose(L, lp, tlsstate_free, st);
  return st;
}

/* ------------------------------------------------------------ options */

static const char *const stls_known[] = {
  "cert", "key", "ca", "verify", "alpn", "ciphers", "ciphersuites",
  "min_version", "sni", "ticket_keys", "servername", "server", "timeout",
  NULL
};

static void stls_checkkeys(lua_State *L, int idx) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    int i = 0;
    while (k && stls_known[i] && strcmp(stls_known[i], k) != 0)
      i++;
    if (k == NULL || stls_known[i] == NULL)
      luaL_error(L, "tls: unknown option '%s'", luaL_tolstring(L, -1, NULL));
  }
}

/* A string option or NULL; the table keeps the string alive. */
static const char *stls_str(lua_State *L, int idx, const char *k) {
  int t = lua_getfield(L, idx, k);
  const char *v = NULL;
  if (t == LUA_TSTRING)
    v = lua_tostring(L, -1);
  else if (t != LUA_TNIL)
    luaL_error(L, "tls: %s must be a string", k);
  lua_pop(L, 1);
  return v;
}

static enum tls_verify stls_verify(lua_State *L, int idx, int server) {
  int t = lua_getfield(L, idx, "verify");
  enum tls_verify v = server ? TLS_VERIFY_NONE : TLS_VERIFY_REQUIRED;
  if (t == LUA_TBOOLEAN) {
    v = lua_toboolean(L, -1) ? TLS_VERIFY_REQUIRED : TLS_VERIFY_NONE;
  } else if (t == LUA_TSTRING) {
    static const char *const names[] = {"none", "optional", "required", NULL};
    v = (enum tls_verify)luaL_checkoption(L, -1, NULL, names);
    if (!server && v == TLS_VERIFY_OPTIONAL)
      luaL_error(L, "tls: verify = \"optional\" is for servers");
  } else if (t != LUA_TNIL) {
    luaL_error(L, "tls: verify must be a boolean, \"none\", \"optional\" "
                  "or \"required\"");
  }
  lua_pop(L, 1);
  return v;
}

static int stls_version(lua_State *L, int idx) {
  static const char *const names[] = {"1.0", "1.1", "1.2", "1.3", NULL};
  int t = lua_getfield(L, idx, "min_version");
  int v = 0;
  if (t == LUA_TNUMBER) {
    lua_pushfstring(L, "%.1f", lua_tonumber(L, -1));
    lua_replace(L, -2);
  }
  if (t != LUA_TNIL) {
    const char *s = lua_tostring(L, -1);
    if (s != NULL && strncmp(s, "TLSv", 4) == 0)
      s += 4;
    for (int i = 0; s != NULL && names[i]; i++)
      if (strcmp(s, names[i]) == 0)
        v = 0x0301 + i;
    if (v == 0)
      luaL_error(L, "tls: min_version must be \"1.2\" or \"1.3\" (or "
                    "\"1.0\", \"1.1\")");
  }
  lua_pop(L, 1);
  return v;
}

/* ALPN: a protocol name or a list of them, pushed in wire format (each
 * name after its length byte); nothing pushed when there is none. */
static int stls_alpn(lua_State *L, int idx) {
  int t = lua_getfield(L, idx, "alpn");
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (t == LUA_TSTRING) {
    lua_createtable(L, 1, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
  } else if (t != LUA_TTABLE) {
    luaL_error(L, "tls: alpn must be a string or a list of strings");
  }
  int list = lua_gettop(L);
  lua_Integer n = luaL_len(L, list);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (lua_Integer i = 1; i <= n; i++) {
    size_t len;
    lua_geti(L, list, i);
    const char *p = lua_tolstring(L, -1, &len);
    lua_pop(L, 1); /* balanced for the buffer; the list keeps the string */
    if (p == NULL || len == 0 || len > 255)
      luaL_error(L, "tls: alpn names must be strings of 1 to 255 bytes");
    luaL_addchar(&b, (char)len);
    luaL_addlstring(&b, p, len);
  }
  luaL_pushresult(&b);
  lua_remove(L, list);
  if (n == 0)
    luaL_error(L, "tls: alpn must name at least one protocol");
  return 1;
}

/* sni = {["name"] = {cert=, key=}, ...}: an array of struct tls_sni
 * pushed (a userdata); its strings live in the options table. */
static size_t stls_sni(lua_State *L, int idx, const struct tls_sni **out) {
  *out = NULL;
  int t = lua_getfield(L, idx, "sni");
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (t != LUA_TTABLE)
    luaL_error(L, "tls: sni must be a table");
  size_t n = 0;
  for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1))
    n++;
  struct tls_sni *list = lua_newuserdatauv(L, (n ? n : 1) * sizeof *list, 0);
  size_t i = 0;
  for (lua_pushnil(L); lua_next(L, -3); lua_pop(L, 1), i++) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TTABLE)
      luaL_error(L, "tls: sni maps names to {cert=, key=} tables");
    list[i].name = lua_tostring(L, -2);
    list[i].cert = stls_str(L, lua_gettop(L), "cert");
    list[i].key = stls_str(L, lua_gettop(L), "key");
    if (list[i].cert == NULL)
      luaL_error(L, "tls: sni[\"%s\"] needs cert", list[i].name);
  }
  lua_remove(L, -2);
  *out = list;
  return n;
}

/* Read the options table at idx into o; leaves its temporaries pushed
 * (the ALPN string and the SNI list) for the caller to pop after use. */
static void stls_readopts(lua_State *L, int idx, int server,
                          struct tls_opts *o) {
  memset(o, 0, sizeof *o);
  stls_checkkeys(L, idx);
  o->server = server;
  o->cert = stls_str(L, idx, "cert");
  o->key = stls_str(L, idx, "key");
  o->ca = stls_str(L, idx, "ca");
  o->ciphers = stls_str(L, idx, "ciphers");
  o->ciphersuites = stls_str(L, idx, "ciphersuites");
  o->ticket_keys = stls_str(L, idx, "ticket_keys");
  o->verify = stls_verify(L, idx, server);
  o->min_version = stls_version(L, idx);
  if (stls_alpn(L, idx)) {
    o->alpn = (const unsigned char *)lua_tolstring(L, -1, &o->alpnlen);
  }
  o->nsni = stls_sni(L, idx, &o->sni);
  if (!server && (o->nsni > 0 || o->ticket_keys))
    luaL_error(L, "tls: sni and ticket_keys are for servers");
}

/* --------------------------------------------------------- TLSContext */

static struct stls_ctx *stls_testctx(lua_State *L, int idx) {
  return luaL_testudata(L, idx, CLS_TLSCTX);
}

/* A TLSContext for the options table at idx: pushed (1), or nil, "tls",
 * message pushed (3). The userdata exists before the context it will own,
 * so an error in between leaks nothing. [-0, +1|3, m] */
static int stls_newctx(lua_State *L, struct loop *lp, int idx, int server) {
  idx = lua_absindex(L, idx);
  int top = lua_gettop(L);
  struct tls_opts o;
  stls_readopts(L, idx, server, &o);
  if (server && o.ticket_keys == NULL)
    o.keys = stls_state(L, lp)->keys;
  struct stls_ctx *u = lua_newuserdatauv(L, sizeof *u, 1);
  u->ctx = NULL;
  luaL_setmetatable(L, CLS_TLSCTX);
  char err[STLS_ERRLEN];
  u->ctx = tls_ctx_new(&o, err, sizeof err);
  if (u->ctx == NULL) {
    lua_settop(L, top);
    lua_pushnil(L);
    lua_pushliteral(L, "tls");
    lua_pushstring(L, err);
    return 3;
  }
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, -2, 1);
  lua_copy(L, -1, top + 1); /* over the temporaries, if there were any */
  lua_settop(L, top + 1);
  return 1;
}

static int stls_ctx__gc(lua_State *L) {
  struct stls_ctx *u = luaL_checkudata(L, 1, CLS_TLSCTX);
  tls_ctx_unref(u->ctx);
  u->ctx = NULL;
  return 0;
}

static int stls_ctx__tostring(lua_State *L) {
  struct stls_ctx *u = luaL_checkudata(L, 1, CLS_TLSCTX);
  lua_pushfstring(L, "TLSContext (%s, %p)",
                  u->ctx && tls_ctx_isserver(u->ctx) ? "server" : "client",
                  (void *)u);
  return 1;
}

/* ctx:isserver() */
static int stls_ctx_isserver(lua_State *L) {
  struct stls_ctx *u = luaL_checkudata(L, 1, CLS_TLSCTX);
  lua_pushboolean(L, u->ctx && tls_ctx_isserver(u->ctx));
  return 1;
}

/* ctx:options() -> the table it was made from */
static int stls_ctx_options(lua_State *L) {
  luaL_checkudata(L, 1, CLS_TLSCTX);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

int stls_servercontext(lua_State *L, struct loop *lp, int idx) {
  struct stls_ctx *u = stls_testctx(L, idx);
  if (u != NULL) {
    if (u->ctx == NULL || !tls_ctx_isserver(u->ctx))
      luaL_error(L, "tls: a client TLSContext cannot serve");
    lua_pushvalue(L, idx);
    return 1;
  }
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "tls: a table of options or a TLSContext expected");
  return stls_newctx(L, lp, idx, 1);
}

void stls_setserver(lua_State *L, struct server *sv, int svidx) {
  sv->tls = ((struct stls_ctx *)lua_touserdata(L, -1))->ctx;
  lua_setiuservalue(L, svidx, SRV_UV_TLS);
}

/* ------------------------------------------------------- the handshake */

static void stls_peername(const struct sock *s, char *buf, size_t len) {
  struct net_addr a;
  char host[NET_ADDRSTRLEN];
  int port = 0;
  memset(&a, 0, sizeof a);
  memcpy(&a.ss, &s->peer, s->peerlen);
  a.len = s->peerlen;
  if (s->peerlen == 0 || net_format_addr(&a, host, sizeof host, &port) < 0)
    snprintf(buf, len, "?");
  else
    snprintf(buf, len, "%s:%d", host, port);
}

/* The handshake failed with rc (-errno, TLS_E*, or -ETIMEDOUT for the
 * deadline): close the socket; a server's connection is counted and
 * logged. Pushes false (handler), or nil, code, reason. */
static int stls_failed(lua_State *L, struct sock *s, int rc, int mode) {
  char why[STLS_ERRLEN];
  const char *code = rc == -ETIMEDOUT ? "timeout" : sock_errcode(rc);
  if (rc == -ETIMEDOUT)
    snprintf(why, sizeof why, "handshake timeout");
  else
    tls_why(s->tls, why, sizeof why);
  if (s->srv != NULL) {
    char peer[NET_ADDRSTRLEN + 8];
    s->srv->tls_failed++;
    stls_peername(s, peer, sizeof peer);
    loop_log(s->loop, "debug", "tls: handshake with %s failed: %s", peer,
             why);
  }
  sock_destroy(L, s, 1, code);
  if (mode == STLS_HANDLER) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, code);
  lua_pushstring(L, why);
  return 3;
}

static int stls_step_k(lua_State *L, int status, lua_KContext ctx);

/* Step the handshake of the socket at index 1: done, failed, or parked
 * on the reader until readable (or the reader's deadline). */
static int stls_step(lua_State *L, int mode, int retry) {
  struct sock *s = sock_check(L, 1);
  struct loop *lp = s->loop;
  if (s->fd < 0) { /* closed meanwhile (shutdown, close from elsewhere) */
    if (mode == STLS_HANDLER) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return util_fail(L, s->why);
  }
  if (retry && s->reader.timedout) {
    s->reader.timedout = 0;
    return stls_failed(L, s, -ETIMEDOUT, mode);
  }
  int rc = tls_handshake(s->tls);
  sock_tlsio(L, s, 1);
  if (rc == -EAGAIN) {
    s->readable = 0;
    sched_register(lp, &s->reader); /* the timer sees its deadline */
    if (!ev_is_active(&s->rio))
      ev_io_start(lp->ev, &s->rio);
    sock_timer_arm(s);
    return sched_park(L, lp, NULL, mode, stls_step_k);
  }
  if (rc != 0)
    return stls_failed(L, s, rc, mode);
  if (s->srv != NULL)
    s->srv->tls_ok++;
  s->readable = 1; /* the first request may have come with the Finished */
  lua_settop(L, 1);
  if (mode == STLS_HANDLER)
    lua_pushboolean(L, 1);
  return 1;
}

static int stls_step_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return stls_step(L, (int)ctx, 1);
}

/* The deadline of a server connection's handshake: from the accept. */
static ev_tstamp stls_deadline(const struct sock *s) {
  return s->lim->handshake_timeout > 0 ? s->created + s->lim->handshake_timeout
                                      : -1;
}

int stls_handshake(lua_State *L) {
  struct sock *s = sock_check(L, 1);
  lua_settop(L, 1);
  if (s->fd < 0 || s->tls == NULL) {
    lua_pushboolean(L, s->fd >= 0);
    return 1;
  }
  sched_checkwait(L, s->loop, "handshake");
  s->reader.deadline = stls_deadline(s);
  return stls_step(L, STLS_HANDLER, 0);
}

/* Raise unless the socket can start a blocking TLS step now. */
static void stls_checkidle(lua_State *L, struct sock *s, const char *what) {
  if (s->reader.task != NULL || s->writer.task != NULL)
    luaL_error(L, "%s: the socket has a pending read or write", what);
  if (s->callback)
    luaL_error(L, "%s: the socket is in on(\"data\") mode", what);
  sched_checkwait(L, s->loop, what);
}

/* sock:handshake([timeout]) -> sock | nil, code, reason: complete the
 * handshake of a socket from server:accept() (reads do it implicitly). */
static int stls_handshake_m(lua_State *L) {
  struct sock *s = sock_check(L, 1);
  double timeout = check_timeout(L, 2, "handshake: timeout", -2);
  lua_settop(L, 1);
  if (s->fd < 0)
    return util_fail(L, s->why);
  if (s->tls == NULL)
    return luaL_error(L, "handshake: not a TLS socket");
  if (tls_established(s->tls))
    return 1;
  stls_checkidle(L, s, "handshake");
  s->reader.deadline = timeout == -2 ? stls_deadline(s)
                                     : loop_deadline(s->loop, timeout);
  return stls_step(L, STLS_METHOD, 0);
}

/* The context argument of starttls: a TLSContext, or a table of options
 * made into one now (server side for an accepted socket, client side
 * otherwise, unless it says server = true/false), whose servername and
 * timeout fill in the missing arguments. Returns the context, or NULL
 * with nil, "tls", message pushed. */
static struct stls_ctx *stls_startctx(lua_State *L, struct sock *s) {
  if (lua_type(L, 2) != LUA_TTABLE)
    return luaL_checkudata(L, 2, CLS_TLSCTX);
  lua_settop(L, 4);
  if (lua_isnil(L, 3)) {
    lua_getfield(L, 2, "servername");
    lua_replace(L, 3);
  }
  if (lua_isnil(L, 4)) {
    lua_getfield(L, 2, "timeout");
    lua_replace(L, 4);
  }
  int server = s->srv != NULL;
  if (lua_getfield(L, 2, "server") != LUA_TNIL)
    server = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (stls_newctx(L, s->loop, 2, server) > 1)
    return NULL;
  lua_replace(L, 2);
  return lua_touserdata(L, 2);
}

/* sock:starttls(ctx | opts [, servername [, timeout]]) -> sock | nil,
 * code, reason: TLS from now on, server or client side as the context
 * is. Bytes read but not consumed yet are the start of the TLS stream. */
static int stls_starttls(lua_State *L) {
  struct sock *s = sock_check(L, 1);
  struct stls_ctx *u = stls_startctx(L, s);
  if (u == NULL)
    return 3;
  const char *name = luaL_optstring(L, 3, NULL);
  double timeout = check_timeout(L, 4, "starttls: timeout", -2);
  struct loop *lp = s->loop;
  if (s->fd < 0)
    return util_fail(L, s->why);
  if (s->tls != NULL)
    return luaL_error(L, "starttls: the socket already has TLS");
  if (u->ctx == NULL)
    return luaL_error(L, "starttls: a TLSContext expected");
  if (!tls_ctx_isserver(u->ctx) && tls_ctx_verifies(u->ctx) && name == NULL)
    return luaL_error(L, "starttls: servername needed to verify the "
                         "server (or verify = false)");
  stls_checkidle(L, s, "starttls");
  struct tls *t = tls_new(u->ctx, s->fd, &s->wbuf, name);
  if (t == NULL || tls_preload(t, buf_begin(&s->rbuf), s->rbuf.len) < 0) {
    tls_free(t);
    return luaL_error(L, "not enough memory");
  }
  buf_free(&s->rbuf); /* those bytes are the TLS stream's now */
  s->rscan = 0;
  s->tls = t;
  if (timeout == -2)
    timeout = s->lim->handshake_timeout > 0 ? s->lim->handshake_timeout
                                           : lp->limits.handshake_timeout;
  s->reader.deadline = loop_deadline(lp, timeout > 0 ? timeout : -1);
  lua_settop(L, 1);
  return stls_step(L, STLS_METHOD, 0);
}

static void stls_setstr(lua_State *L, const char *k, const char *v,
                        size_t len) {
  if (v == NULL)
    return;
  lua_pushlstring(L, v, len);
  lua_setfield(L, -2, k);
}

/* sock:tlsinfo() -> {version, cipher, alpn, sni, resumed, verified, peer}
 * or nil (no TLS, not established, closed). */
static int stls_info(lua_State *L) {
  struct sock *s = sock_check(L, 1);
  struct tls_info i;
  if (s->fd < 0 || s->tls == NULL || tls_info(s->tls, &i) < 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 7);
  stls_setstr(L, "version", i.version, strlen(i.version));
  stls_setstr(L, "cipher", i.cipher, i.cipher ? strlen(i.cipher) : 0);
  if (i.alpnlen > 0)
    stls_setstr(L, "alpn", (const char *)i.alpn, i.alpnlen);
  stls_setstr(L, "sni", i.sni, i.sni ? strlen(i.sni) : 0);
  if (i.verified)
    stls_setstr(L, "peer", i.subject, strlen(i.subject));
  lua_pushboolean(L, i.resumed);
  lua_setfield(L, -2, "resumed");
  lua_pushboolean(L, i.verified);
  lua_setfield(L, -2, "verified");
  return 1;
}

/* server:settls(opts | ctx | nil) -> server | nil, "tls", message: new
 * handshakes use the new context, established connections keep theirs.
 * nil re-reads the files of the options it has (reload); on failure
 * nothing changes. */
static int stls_settls(lua_State *L) {
  struct server *sv = luaL_checkudata(L, 1, CLS_SERVER);
  lua_settop(L, 2);
  if (lua_isnil(L, 2)) {
    if (lua_getiuservalue(L, 1, SRV_UV_TLS) != LUA_TUSERDATA)
      return luaL_error(L, "settls: the server has no TLS options");
    lua_getiuservalue(L, -1, 1);
    lua_replace(L, 2);
    lua_settop(L, 2);
  }
  int n = stls_servercontext(L, sv->loop, 2);
  if (n > 1)
    return n;
  stls_setserver(L, sv, 1);
  lua_settop(L, 1);
  return 1;
}

void stls_srvstats(lua_State *L, const struct server *sv) {
  if (sv->tls == NULL && sv->tls_ok == 0 && sv->tls_failed == 0)
    return;
  lua_pushinteger(L, sv->tls_ok);
  lua_setfield(L, -2, "tls_handshakes");
  lua_pushinteger(L, sv->tls_failed);
  lua_setfield(L, -2, "tls_failed");
}

/* ----------------------------------------------------------- core.tls */

static struct loop *stls_loop(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* context(opts, server) -> TLSContext | nil, "tls", message */
static int stls_context(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  return stls_newctx(L, stls_loop(L), 1, lua_toboolean(L, 2));
}

/* ticketkeys(bytes): the keys of contexts made from now on (1 to 8 keys
 * of 80 bytes; the first encrypts); they are kept as given from then on:
 * rotate() leaves them alone. ticketkeys() -> the keys in force. */
static int stls_ticketkeys(lua_State *L) {
  struct tlsstate *st = stls_state(L, stls_loop(L));
  if (lua_isnoneornil(L, 1)) {
    lua_pushlstring(L, (const char *)st->bytes, st->len);
    return 1;
  }
  size_t len;
  const char *b = luaL_checklstring(L, 1, &len);
  if (stls_usekeys(st, (const unsigned char *)b, len) < 0)
    return luaL_argerror(L, 1, "1 to 8 keys of 80 bytes expected");
  st->given = 1;
  lua_pushboolean(L, 1);
  return 1;
}

/* rotate() -> whether it rotated: a new random key encrypts, the previous
 * one still decrypts (tickets issued before stay good); keys given with
 * ticketkeys() are not rotated here (their owner rotates them). */
static int stls_rotate(lua_State *L) {
  struct tlsstate *st = stls_state(L, stls_loop(L));
  unsigned char b[2 * TLS_TICKET_KEY_SIZE];
  if (st->given) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (tls_random(b, TLS_TICKET_KEY_SIZE) < 0)
    return luaL_error(L, "tls: no random bytes");
  memcpy(b + TLS_TICKET_KEY_SIZE, st->bytes, TLS_TICKET_KEY_SIZE);
  stls_usekeys(st, b, sizeof b);
  memset(b, 0, sizeof b);
  lua_pushboolean(L, 1);
  return 1;
}

/* newkeys([n]) -> n (default 1) random ticket keys, as one string */
static int stls_newkeys(lua_State *L) {
  lua_Integer n = luaL_optinteger(L, 1, 1);
  luaL_argcheck(L, n >= 1 && n <= TLS_TICKET_KEYS_MAX, 1, "1 to 8 keys");
  unsigned char b[TLS_TICKET_KEY_SIZE * TLS_TICKET_KEYS_MAX];
  size_t len = (size_t)n * TLS_TICKET_KEY_SIZE;
  if (tls_random(b, len) < 0)
    return luaL_error(L, "tls: no random bytes");
  lua_pushlstring(L, (const char *)b, len);
  memset(b, 0, sizeof b);
  return 1;
}

static const luaL_Reg stls_funcs[] = {
  {"context", stls_context},
  {"ticketkeys", stls_ticketkeys},
  {"rotate", stls_rotate},
  {"newkeys", stls_newkeys},
  {NULL, NULL}
};

static const luaL_Reg stls_ctx_meta[] = {
  {"__gc", stls_ctx__gc},
  {"__tostring", stls_ctx__tostring},
  {NULL, NULL}
};

static const luaL_Reg stls_ctx_methods[] = {
  {"isserver", stls_ctx_isserver},
  {"options", stls_ctx_options},
  {NULL, NULL}
};

static const luaL_Reg stls_sock_methods[] = {
  {"starttls", stls_starttls},
  {"handshake", stls_handshake_m},
  {"tlsinfo", stls_info},
  {NULL, NULL}
};

static const luaL_Reg stls_srv_methods[] = {
  {"settls", stls_settls},
  {NULL, NULL}
};

/* Add the methods to a class's method table. */
static void stls_addmethods(lua_State *L, const char *cls,
                            const luaL_Reg *methods) {
  luaL_getmetatable(L, cls);
  lua_getfield(L, -1, "__index");
  luaL_setfuncs(L, methods, 0);
  lua_pop(L, 2);
}

void stls_classes(lua_State *L) {
  util_newclass(L, CLS_TLSCTX, stls_ctx_meta, stls_ctx_methods);
  lua_pop(L, 1);
  stls_addmethods(L, CLS_SOCKET, stls_sock_methods);
  stls_addmethods(L, CLS_SERVER, stls_srv_methods);
}

void stls_open(lua_State *L) {
  luaL_newlibtable(L, stls_funcs);
  lua_insert(L, -2);
  luaL_setfuncs(L, stls_funcs, 1);
}
