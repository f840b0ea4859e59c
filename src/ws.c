/*
 * ws.c -- berth.core.ws: a WebSocket connection (class berth.WebSocket)
 * over a Socket, for berth.websocket.
 *
 * Frames are read straight from the socket's buffer (a framing,
 * sock_readframe): parsed and checked by ws_frame.c, unmasked in place
 * with word-sized XORs, and an unfragmented uncompressed message becomes
 * its Lua string with one copy, from the buffer it arrived in. Fragments
 * are reassembled (bounded by max_message: 1009), text is validated as
 * UTF-8 across fragments (1007), compressed messages are inflated
 * (permessage-deflate, ws_deflate.c, with the same bound against bombs).
 * Control frames are handled as they arrive, between a message's
 * fragments too: a ping is answered with a pong, a pong is dropped, a
 * close is answered with a close and ends the connection. A protocol
 * error fails the connection (RFC 6455 §7.1.7): a close frame with the
 * code (1002, 1007, 1009), then the TCP connection closes.
 *
 * receive() returns message, "text"|"binary", or nil, "closed", code,
 * reason (the peer's close, our failure's code, or 1006 when the TCP
 * connection ended without a close frame), or nil, "timeout" (the
 * connection stays usable). Writes go through sock_put with the socket's
 * backpressure; trysend never waits (broadcast to groups).
 *
 * Lifetime: user value 2 is the socket. The WebSocket owns C memory (the
 * reassembly and output buffers, zlib streams), freed by __gc.
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core.h"
#include "ws_deflate.h"
#include "ws_frame.h"

#define CLS_WS "berth.WebSocket"

enum { WS_UV_SOCK = 2, WS_NUV = WS_UV_SOCK };
enum { WS_OPEN, WS_CLOSING, WS_CLOSED }; /* CLOSING: our close frame sent */

#define KEYS 256 /* masking keys drawn from getrandom at once */

struct ws {
  struct loop *loop;
  struct sock *s;
  unsigned char client;    /* we mask what we send, the peer may not */
  unsigned char state;
  unsigned char deflate;   /* permessage-deflate negotiated */
  unsigned char msg_op;    /* opcode of the message being reassembled */
  unsigned char msg_z;     /* ... and whether it is compressed */
  int code;                /* how it closed: the close code */
  size_t reason_len;
  char reason[124];
  size_t max_message;
  size_t min_deflate;      /* shorter messages are sent uncompressed */
  struct ws_utf8 utf8;
  struct buf msg;          /* the message being reassembled */
  struct buf out;          /* compressed or masked output */
  struct ws_deflate def;
  struct ws_inflate inf;
  size_t keypos;
  uint8_t keys[KEYS];
};

static struct ws *ws_check(lua_State *L, int idx) {
  return util_self(L, idx, CLS_WS);
}

/* ------------------------------------------------------------ writing */

/* A fresh masking key (RFC 6455 §5.3: from a strong source). */
static void ws_newmask(struct ws *w, uint8_t mask[4]) {
  if (w->keypos + 4 > KEYS) {
    if (getrandom(w->keys, KEYS, 0) != KEYS) {
      /* Not expected on Linux >= 3.17; never reuse the old keys as-is. */
      uint32_t x = (uint32_t)time(NULL) ^ (uint32_t)(uintptr_t)w;
      for (size_t i = 0; i < KEYS; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        w->keys[i] ^= (uint8_t)x;
      }
    }
    w->keypos = 0;
  }
  memcpy(mask, w->keys + w->keypos, 4);
  w->keypos += 4;
}

/* One frame with FIN set. Output goes through w->out when it must be
 * compressed or masked. Returns 0 or a failure's count (sock_put). */
static int ws_sendframe(lua_State *L, struct ws *w, int sockidx, int op,
                        const char *p, size_t n, int compress) {
  uint8_t hdr[14], mask[4];
  int rsv1 = 0;
  buf_consume(&w->out, w->out.len);
  if (compress) {
    if (ws_deflate_message(&w->def, p, n, &w->out) != 0)
      return luaL_error(L, "not enough memory");
    p = buf_begin(&w->out);
    n = w->out.len;
    rsv1 = 1;
  }
  if (w->client) {
    ws_newmask(w, mask);
    if (!compress && buf_append(&w->out, p, n) != 0)
      return luaL_error(L, "not enough memory");
    p = buf_begin(&w->out);
    ws_mask((uint8_t *)p, n, mask, 0);
  }
  size_t hl = ws_build_header(hdr, 1, rsv1, op, n, w->client ? mask : NULL);
  struct iovec iov[2] = {{hdr, hl}, {(void *)p, n}};
  int rc = sock_put(L, w->s, sockidx, iov, 2);
  if (w->out.cap > 256 * 1024)
    buf_free(&w->out); /* a big message's room is not kept */
  return rc;
}

/* A close frame: code (0: none) and reason. */
static int ws_sendclose(lua_State *L, struct ws *w, int sockidx, int code,
                        const char *reason, size_t rlen) {
  char payload[125];
  size_t n = 0;
  if (code > 0) {
    payload[0] = (char)(code >> 8);
    payload[1] = (char)(code & 0xff);
    if (rlen > sizeof payload - 2)
      rlen = sizeof payload - 2;
    memcpy(payload + 2, reason, rlen);
    n = 2 + rlen;
  }
  w->state = WS_CLOSING;
  if (w->s->fd < 0)
    return 0;
  int top = lua_gettop(L);
  ws_sendframe(L, w, sockidx, WS_OP_CLOSE, payload, n, 0);
  lua_settop(L, top); /* a failure to say goodbye changes nothing */
  return 0;
}

/* ------------------------------------------------------------ reading */

static void ws_setreason(struct ws *w, int code, const char *r, size_t n) {
  w->code = code;
  if (n > sizeof w->reason)
    n = sizeof w->reason;
  memcpy(w->reason, r, n);
  w->reason_len = n;
}

/* nil, "closed", code, reason [-0, +4, m] */
static int ws_pushclosed(lua_State *L, const struct ws *w) {
  lua_pushnil(L);
  lua_pushliteral(L, "closed");
  lua_pushinteger(L, w->code ? w->code : 1006);
  lua_pushlstring(L, w->reason, w->reason_len);
  return 4;
}

/* The connection is over: the socket (stack 1) closes. */
static int ws_finish(lua_State *L, struct ws *w) {
  w->state = WS_CLOSED;
  buf_free(&w->msg);
  w->msg_op = 0;
  sock_destroy(L, w->s, 1, "closed");
  return ws_pushclosed(L, w);
}

/* Fail the connection (§7.1.7) with `code`. */
static int ws_fail(lua_State *L, struct ws *w, int code, const char *why) {
  if (w->state == WS_OPEN)
    ws_sendclose(L, w, 1, code, "", 0);
  ws_setreason(w, code, why, strlen(why));
  return ws_finish(L, w);
}

/* The peer's close frame (§5.5.1, §7.4). */
static int ws_onclose(lua_State *L, struct ws *w, const uint8_t *p,
                      size_t n) {
  int code = 1005; /* no status received */
  if (n == 1)
    return ws_fail(L, w, 1002, "close frame of 1 byte");
  if (n >= 2) {
    code = p[0] << 8 | p[1];
    struct ws_utf8 u = {0};
    if (!ws_close_code_valid((unsigned)code))
      return ws_fail(L, w, 1002, "invalid close code");
    if (ws_utf8_feed(&u, p + 2, n - 2) != 0 || ws_utf8_done(&u) != 0)
      return ws_fail(L, w, 1007, "close reason is not UTF-8");
  }
  if (w->state == WS_OPEN) /* echo the code (§5.5.1), then close */
    ws_sendclose(L, w, 1, n >= 2 ? code : 0, "", 0);
  ws_setreason(w, code, n > 2 ? (const char *)p + 2 : "", n > 2 ? n - 2 : 0);
  return ws_finish(L, w);
}

/* Text must be UTF-8 from the first byte on: check what was added. */
static int ws_text_ok(struct ws *w, const char *p, size_t n, int fin) {
  if (w->msg_op != WS_OP_TEXT)
    return 1;
  if (ws_utf8_feed(&w->utf8, (const uint8_t *)p, n) != 0)
    return 0;
  return !fin || ws_utf8_done(&w->utf8) == 0;
}

static void ws_pushkind(lua_State *L, int op) {
  if (op == WS_OP_TEXT)
    lua_pushliteral(L, "text");
  else
    lua_pushliteral(L, "binary");
}

/* A data frame's payload: 2 (message, kind pushed), 0 (more frames), or
 * the count of a failure pushed. */
static int ws_ondata(lua_State *L, struct ws *w, const struct ws_frame *f,
                     const char *p) {
  if (f->opcode == WS_OP_CONT && w->msg_op == 0)
    return ws_fail(L, w, 1002, "continuation frame outside a message");
  if (f->opcode != WS_OP_CONT) {
    if (w->msg_op != 0)
      return ws_fail(L, w, 1002, "new message inside a fragmented one");
    w->msg_op = (unsigned char)f->opcode;
    w->msg_z = (f->rsv & WS_RSV1) != 0;
    w->utf8.state = 0;
    if (f->fin && !w->msg_z) { /* the common case: one frame, one copy */
      if (!ws_text_ok(w, p, f->len, 1))
        return ws_fail(L, w, 1007, "text message is not UTF-8");
      lua_pushlstring(L, p, f->len);
      ws_pushkind(L, w->msg_op);
      w->msg_op = 0;
      return 2;
    }
  }
  size_t before = w->msg.len;
  if (w->msg_z) {
    int rc = ws_inflate_frame(&w->inf, p, f->len, (int)f->fin, &w->msg,
                              w->max_message);
    if (rc == WS_INFLATE_TOOBIG)
      return ws_fail(L, w, 1009, "message too big");
    if (rc != 0)
      return ws_fail(L, w, 1007, "invalid compressed data");
  } else if (buf_append(&w->msg, p, f->len) != 0) {
    return luaL_error(L, "not enough memory");
  }
  if (!ws_text_ok(w, buf_begin(&w->msg) + before, w->msg.len - before,
                  (int)f->fin))
    return ws_fail(L, w, 1007, "text message is not UTF-8");
  if (!f->fin)
    return 0;
  lua_pushlstring(L, buf_begin(&w->msg), w->msg.len);
  ws_pushkind(L, w->msg_op);
  w->msg_op = 0;
  if (w->msg.cap > 256 * 1024)
    buf_free(&w->msg);
  else
    buf_consume(&w->msg, w->msg.len);
  return 2;
}

/* A control frame; 0 to go on, or the count of results pushed. */
static int ws_oncontrol(lua_State *L, struct ws *w, const struct ws_frame *f,
                        const uint8_t *p) {
  if (f->opcode == WS_OP_CLOSE)
    return ws_onclose(L, w, p, f->len);
  if (f->opcode == WS_OP_PING && w->state == WS_OPEN) {
    int top = lua_gettop(L);
    ws_sendframe(L, w, 1, WS_OP_PONG, (const char *)p, f->len, 0);
    lua_settop(L, top); /* a write failure shows on the next read */
  }
  return 0;
}

/* The framing: stack 1 = socket, 2 = WebSocket. Consumes whole frames
 * until a message is complete or the connection ends. */
static int ws_match(lua_State *L, struct sock *s, char *p, size_t n,
                    size_t *take) {
  struct ws *w = lua_touserdata(L, 2);
  struct ws_rules rules = {w->deflate ? WS_RSV1 : 0, !w->client, w->client,
                           w->max_message};
  size_t used = 0;
  int r = 0;
  (void)s;
  while (r == 0 && w->state != WS_CLOSED) {
    struct ws_frame f;
    int hl = ws_parse_header((const uint8_t *)p + used, n - used, &f, &rules);
    if (hl < 0) {
      r = ws_fail(L, w, ws_error_close_code(hl), "protocol error");
      break;
    }
    if (hl == 0)
      break;
    int data = f.opcode < WS_OP_CLOSE;
    if (data && !w->msg_z && (f.rsv & WS_RSV1) == 0 && w->max_message &&
        w->msg.len + f.len > w->max_message) {
      r = ws_fail(L, w, 1009, "message too big");
      break;
    }
    if (f.len > n - used - (size_t)hl)
      break; /* the payload is not all here yet */
    char *pl = p + used + hl;
    if (f.masked)
      ws_mask((uint8_t *)pl, f.len, f.mask, 0);
    used += (size_t)hl + f.len;
    r = data ? ws_ondata(L, w, &f, pl)
             : ws_oncontrol(L, w, &f, (const uint8_t *)pl);
  }
  *take = used;
  return r;
}

/* EOF or a reset without a close frame: 1006 (§7.1.5). */
static int ws_end(lua_State *L, struct sock *s) {
  struct ws *w = lua_touserdata(L, 2);
  (void)s;
  if (w->code == 0)
    ws_setreason(w, 1006, "", 0);
  return ws_finish(L, w);
}

static const struct sock_framing ws_framing = {ws_match, ws_end, 3};

/* Stack from (ws, a, b): (sock, ws, a, b). */
static struct ws *ws_withsock(lua_State *L, int nargs) {
  struct ws *w = ws_check(L, 1);
  lua_settop(L, nargs);
  lua_getiuservalue(L, 1, WS_UV_SOCK);
  lua_insert(L, 1);
  return w;
}

/* ws:receive([timeout]) -> message, kind | nil, "closed", code, reason |
 * nil, "timeout" */
static int ws_receive(lua_State *L) {
  struct ws *w = ws_withsock(L, 2);
  if (w->state == WS_CLOSED || w->s->fd < 0) {
    if (w->code == 0)
      ws_setreason(w, 1006, "", 0);
    w->state = WS_CLOSED;
    return ws_pushclosed(L, w);
  }
  return sock_readframe(L, w->s, &ws_framing);
}

/* --------------------------------------------------------- the methods */

static int ws_kind(lua_State *L, int idx) {
  static const char *const kinds[] = {"text", "binary", NULL};
  return luaL_checkoption(L, idx, "text", kinds) ? WS_OP_BINARY : WS_OP_TEXT;
}

/* Check a message to send: its opcode; text must be UTF-8. */
static int ws_checkmsg(lua_State *L, const char *p, size_t n, int kidx) {
  int op = ws_kind(L, kidx);
  struct ws_utf8 u = {0};
  if (op == WS_OP_TEXT &&
      (ws_utf8_feed(&u, (const uint8_t *)p, n) != 0 || ws_utf8_done(&u)))
    luaL_argerror(L, 2, "a text message must be UTF-8 (send it as binary)");
  return op;
}

static int ws_send_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  struct ws *w = ws_check(L, 2);
  int rc = sock_afterwait(L, w->s);
  if (rc > 0)
    return rc;
  if (rc < 0)
    return sock_waitdrain(L, w->s, 1, ctx, ws_send_k);
  lua_pushvalue(L, 2);
  return 1;
}

static int ws_isopen(const struct ws *w) {
  return w->state == WS_OPEN && w->s->fd >= 0;
}

/* ws:send(data [, "text"|"binary"]) -> ws | nil, code. Waits above the
 * socket's high watermark, like Socket:write. */
static int ws_send(lua_State *L) {
  size_t n;
  struct ws *w = ws_check(L, 1);
  const char *p = luaL_checklstring(L, 2, &n);
  int op = ws_checkmsg(L, p, n, 3);
  ws_withsock(L, 3); /* stack: sock, ws, data, kind */
  if (!ws_isopen(w))
    return util_fail(L, "closed");
  int rc = ws_sendframe(L, w, 1, op, p, n, w->deflate && n >= w->min_deflate);
  if (rc != 0)
    return rc;
  if (sock_overhigh(L, w->s))
    return sock_waitdrain(L, w->s, 0, 0, ws_send_k);
  lua_pushvalue(L, 2);
  return 1;
}

/* ws:trysend(data, kind, max_lag) -> true | false, "closed"|"slow": never
 * waits; refuses when the socket's unsent output would pass max_lag. */
static int ws_trysend(lua_State *L) {
  size_t n;
  struct ws *w = ws_check(L, 1);
  const char *p = luaL_checklstring(L, 2, &n);
  int op = ws_checkmsg(L, p, n, 3);
  lua_Integer lag = luaL_checkinteger(L, 4);
  if (!ws_isopen(w)) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "closed");
    return 2;
  }
  if (w->s->wbuf.len + n > (size_t)lag) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "slow");
    return 2;
  }
  ws_withsock(L, 1);
  int rc = ws_sendframe(L, w, 1, op, p, n, w->deflate && n >= w->min_deflate);
  if (rc != 0)
    return rc;
  lua_pushboolean(L, 1);
  return 1;
}

/* ws:ping([data]) -> ws | nil, code */
static int ws_ping(lua_State *L) {
  size_t n = 0;
  struct ws *w = ws_check(L, 1);
  const char *p = luaL_optlstring(L, 2, "", &n);
  luaL_argcheck(L, n <= 125, 2, "a ping carries at most 125 bytes");
  ws_withsock(L, 2);
  if (!ws_isopen(w))
    return util_fail(L, "closed");
  int rc = ws_sendframe(L, w, 1, WS_OP_PING, p, n, 0);
  if (rc != 0)
    return rc;
  lua_pushvalue(L, 2);
  return 1;
}

/* ws:_closeframe([code [, reason]]) -> whether the caller should now wait
 * for the peer's close (a task, nobody else reading, not closed yet). */
static int ws_closeframe(lua_State *L) {
  struct ws *w = ws_check(L, 1);
  lua_Integer code = luaL_optinteger(L, 2, 1000);
  size_t rn;
  const char *reason = luaL_optlstring(L, 3, "", &rn);
  luaL_argcheck(L, ws_close_code_valid((unsigned)code), 2,
                "not a close code an endpoint may send");
  luaL_argcheck(L, rn <= 123, 3, "a close reason has at most 123 bytes");
  ws_withsock(L, 3);
  if (ws_isopen(w)) {
    ws_sendclose(L, w, 1, (int)code, reason, rn);
    ws_setreason(w, (int)code, reason, rn);
  }
  lua_pushboolean(L, w->state == WS_CLOSING && w->s->fd >= 0 &&
                         w->s->reader.task == NULL &&
                         sched_canwait(L, w->loop));
  return 1;
}

/* ws:_abort(): close the TCP connection now. */
static int ws_abort(lua_State *L) {
  struct ws *w = ws_withsock(L, 1);
  w->state = WS_CLOSED;
  if (w->code == 0)
    ws_setreason(w, 1006, "", 0);
  sock_destroy(L, w->s, 1, "closed");
  return 0;
}

/* ws:isopen() -> whether messages can still be sent. */
static int ws_isopen_m(lua_State *L) {
  lua_pushboolean(L, ws_isopen(ws_check(L, 1)));
  return 1;
}

/* ws:closeinfo() -> code, reason once closed (nil before). */
static int ws_closeinfo(lua_State *L) {
  struct ws *w = ws_check(L, 1);
  if (w->code == 0)
    return 0;
  lua_pushinteger(L, w->code);
  lua_pushlstring(L, w->reason, w->reason_len);
  return 2;
}

/* ws:lag() -> bytes written and not yet taken by the kernel. */
static int ws_lag(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)ws_check(L, 1)->s->wbuf.len);
  return 1;
}

static int ws_socket(lua_State *L) {
  ws_check(L, 1);
  lua_getiuservalue(L, 1, WS_UV_SOCK);
  return 1;
}

static int ws__gc(lua_State *L) {
  struct ws *w = ws_check(L, 1);
  buf_free(&w->msg);
  buf_free(&w->out);
  ws_deflate_end(&w->def);
  ws_inflate_end(&w->inf);
  return 0;
}

static int ws__tostring(lua_State *L) {
  static const char *const names[] = {"open", "closing", "closed"};
  struct ws *w = ws_check(L, 1);
  lua_pushfstring(L, "WebSocket (%s)", names[w->state]);
  return 1;
}

/* --------------------------------------------------------------- making */

static lua_Integer opt_int(lua_State *L, const char *k, lua_Integer def) {
  lua_getfield(L, 2, k);
  lua_Integer v = lua_isnil(L, -1) ? def : luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, const char *k) {
  lua_getfield(L, 2, k);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Negotiated deflate parameters (berth.websocket decided them). */
static void ws_setdeflate(lua_State *L, struct ws *w) {
  int bits = (int)opt_int(L, "window_bits", 15);
  int level = (int)opt_int(L, "level", 1);
  int mem = (int)opt_int(L, "mem_level", 8);
  luaL_argcheck(L, bits >= 9 && bits <= 15, 2, "window_bits: 9..15");
  luaL_argcheck(L, level >= -1 && level <= 9, 2, "level: -1..9");
  luaL_argcheck(L, mem >= 1 && mem <= 9, 2, "mem_level: 1..9");
  w->min_deflate = (size_t)opt_int(L, "min_deflate", 64);
  if (ws_deflate_init(&w->def, level, bits, mem,
                      opt_bool(L, "deflate_no_takeover")) != 0 ||
      ws_inflate_init(&w->inf, opt_bool(L, "inflate_no_takeover")) != 0)
    luaL_error(L, "not enough memory");
  w->deflate = 1;
}

/* new(sock, {client=, max_message=, deflate=, window_bits=, level=,
 * mem_level=, min_deflate=, deflate_no_takeover=, inflate_no_takeover=})
 * -> WebSocket on an open socket whose handshake is done. */
static int ws_new(lua_State *L) {
  struct sock *s = sock_check(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  struct ws *w = loop_newobject(L, s->loop, sizeof *w, WS_NUV);
  memset(w, 0, offsetof(struct ws, keys));
  w->loop = s->loop;
  w->s = s;
  w->keypos = KEYS;
  luaL_setmetatable(L, CLS_WS);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, WS_UV_SOCK);
  w->client = (unsigned char)opt_bool(L, "client");
  lua_Integer max = opt_int(L, "max_message", 1 << 20);
  luaL_argcheck(L, max > 0, 2, "max_message must be positive");
  w->max_message = (size_t)max;
  if (opt_bool(L, "deflate"))
    ws_setdeflate(L, w);
  return 1;
}

/* accept(key) -> Sec-WebSocket-Accept, or nil when key is not a valid
 * Sec-WebSocket-Key. */
static int ws_acceptf(lua_State *L) {
  size_t n;
  const char *key = luaL_checklstring(L, 1, &n);
  char out[29];
  if (!ws_key_valid(key, n))
    return 0;
  ws_accept_key(key, n, out);
  lua_pushstring(L, out);
  return 1;
}

/* newkey() -> a Sec-WebSocket-Key: 16 random bytes in base64. */
static int ws_newkey(lua_State *L) {
  static const char b64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  uint8_t raw[18] = {0};
  char out[24];
  if (getrandom(raw, 16, 0) != 16)
    return luaL_error(L, "getrandom: %s", strerror(errno));
  for (int i = 0, o = 0; i < 18; i += 3, o += 4) {
    uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
    out[o] = b64[v >> 18 & 63];
    out[o + 1] = b64[v >> 12 & 63];
    out[o + 2] = b64[v >> 6 & 63];
    out[o + 3] = b64[v & 63];
  }
  out[22] = out[23] = '='; /* 16 bytes: the last group has one byte */
  lua_pushlstring(L, out, 24);
  return 1;
}

static const luaL_Reg ws_meta[] = {
  {"__gc", ws__gc},
  {"__tostring", ws__tostring},
  {NULL, NULL}
};

static const luaL_Reg ws_methods[] = {
  {"receive", ws_receive},
  {"send", ws_send},
  {"trysend", ws_trysend},
  {"ping", ws_ping},
  {"_closeframe", ws_closeframe},
  {"_abort", ws_abort},
  {"isopen", ws_isopen_m},
  {"closeinfo", ws_closeinfo},
  {"lag", ws_lag},
  {"socket", ws_socket},
  {NULL, NULL}
};

static const luaL_Reg ws_funcs[] = {
  {"new", ws_new},
  {"accept", ws_acceptf},
  {"newkey", ws_newkey},
  {NULL, NULL}
};

void ws_open(lua_State *L) {
  util_newclass(L, CLS_WS, ws_meta, ws_methods);
  lua_pop(L, 1);
}

/* The core.ws table, with the class's method table as WebSocket.
 * [-0, +1, m] */
void ws_push(lua_State *L) {
  luaL_newlib(L, ws_funcs);
  luaL_getmetatable(L, CLS_WS);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "WebSocket");
  lua_pop(L, 1);
}
