/*
 * http.c -- berth.core.http: the per-request work of berth.http in C.
 * Classes berth.http.Config, berth.http.Request, berth.http.Response and
 * berth.http.Body.
 *
 * readrequest(sock, conf [, timeout]) parses a request head straight from
 * the socket's buffer (a framing, sock_readframe) with http_parse.c. The
 * head's bytes are copied once, into the Request; its fields become Lua
 * values only when the handler asks for them (req.method, req.headers...).
 * A head that is not valid HTTP/1.1 is answered here (400, 414, 431, 501,
 * 505, with Connection: close) and the caller only ends the connection.
 *
 * A Response builds its head in C: the status line, a Date cached per
 * second, the header lines the handler set (checked, so no CR/LF can be
 * injected) and the framing headers, which are berth's alone
 * (Content-Length for send, chunked for write, Connection). Head and body
 * leave in one writev (sock_put); a writer above the high watermark waits
 * like Socket:write. Whether the connection persists is decided when the
 * head goes out, and said in it: Connection: close when the request asked,
 * for HTTP/1.0 without keep-alive, while the loop drains, and when an
 * unread request body is too large to skip.
 *
 * Request bodies are read with readbody(sock, req|body, timeout, max), a
 * framing over Content-Length or the chunked decoder (http_chunked_next),
 * which sends 100 Continue first when the client waits for it.
 *
 * Lifetime: Request user values: its socket, its Response, the headers
 * and args tables once made; the Response's: its Request, and a spill
 * block for header lines that outgrow its inline room. None owns C memory
 * or a descriptor, so none needs __gc; the pointers between them stay valid
 * because each keeps the other alive.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"
#include "http_parse.h"

#define CLS_HCONF "berth.http.Config"
#define CLS_HREQ  "berth.http.Request"
#define CLS_HRES  "berth.http.Response"
#define CLS_HBODY "berth.http.Body"

/* A Config, a Request and a Response begin with the address of their
 * class's static, their tag (util_tagged): they are checked without a
 * metatable lookup. */
static const char conf_tag = 0, req_tag = 0, res_tag = 0;

/* readrequest's upvalues: the metatables of the objects it makes once per
 * request (an upvalue is an array slot; the registry is a hash lookup). */
enum { READ_UP_REQMT = 1, READ_UP_RESMT };

#define HEADERS_CAP 512        /* most header lines a server may allow */
#define RES_INLINE 256         /* header lines kept in the Response */
#define DISCARD_MAX (64 * 1024) /* an unread body skipped, not closed on */
#define HEAD_ROOM 160          /* status line + Date; framing lines */
#define QUEUE_MAX (16 * 1024)  /* response pieces held back to go together */

enum { REQ_UV_SOCK = 2, REQ_UV_RES, REQ_UV_HEADERS, REQ_UV_ARGS,
       REQ_NUV = REQ_UV_ARGS };
enum { RES_UV_REQ = 2, RES_UV_SPILL, RES_NUV = RES_UV_SPILL };

struct hconf {
  const void *tag;         /* util_tagged: &conf_tag */
  struct http_limits lim;
  size_t max_header_line;
  int64_t max_body;
  unsigned char date;      /* send a Date header */
};

/* A body being read: Content-Length or chunked. */
struct hbody {
  struct http_chunked ck;
  int64_t left;            /* Content-Length bytes not read yet */
  unsigned char chunked;
  unsigned char done;
};

struct hres;

struct hreq {
  const void *tag;         /* util_tagged: &req_tag */
  struct http_request r;   /* pointers into the head bytes below */
  struct hbody b;
  struct hres *res;
  int64_t max_body;
  int body_error;          /* status of the default answer: 413, 400 */
  unsigned char continued; /* 100 Continue sent */
  size_t headlen;
  struct http_header h[];  /* r.nheaders of them, then the head */
};

struct hres {
  const void *tag;         /* util_tagged: &res_tag */
  struct hreq *q;
  struct sock *s;
  int status;
  unsigned char head_only; /* HEAD: headers, never a body */
  unsigned char date;
  unsigned char started, done, chunked, close, upgraded;
  unsigned char has_length, has_date, said_close, has_conn, ka10;
  unsigned char nowait;    /* finishing: queue, never wait (res_end) */
  int64_t length;          /* a Content-Length the handler set */
  size_t hlen, hcap;
  char *hdr;               /* header lines: inl, or the spill block */
  char inl[RES_INLINE];
};

/* ----------------------------------------------------------- the date */

/* Date is cached per second (RFC 9110 §6.6.1 wants one per response);
 * the loop's time, so a busy second costs one formatting. */
static const char *http_datenow(struct loop *lp) {
  static char cached[30];
  static time_t at = -1;
  time_t now = (time_t)ev_now(lp->ev);
  if (now != at && http_date(now, cached) > 0)
    at = now;
  return cached;
}

/* --------------------------------------------------------------- config */

static lua_Integer conf_int(lua_State *L, const char *k, lua_Integer def,
                            lua_Integer min, lua_Integer max) {
  lua_getfield(L, 1, k);
  lua_Integer v = lua_isnil(L, -1) ? def : luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  if (v < min || v > max)
    luaL_error(L, "http: %s must be in %I..%I", k, min, max);
  return v;
}

static int conf_bool(lua_State *L, const char *k, int def) {
  lua_getfield(L, 1, k);
  int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* config{max_line=, max_head=, max_headers=, max_header_line=, max_body=,
 * date=, require_host=} -> Config */
static int http_config(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  struct hconf *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  c->tag = &conf_tag;
  c->lim.max_line = (size_t)conf_int(L, "max_line", 8192, 16, 1 << 20);
  /* max_head does not count the final CRLF CRLF; the parser does. */
  c->lim.max_header_bytes =
      (size_t)conf_int(L, "max_head", 65536, 64, 1 << 24) + 4;
  c->lim.max_headers =
      (size_t)conf_int(L, "max_headers", 100, 1, HEADERS_CAP);
  c->lim.host_optional = !conf_bool(L, "require_host", 1);
  c->max_header_line = (size_t)conf_int(L, "max_header_line", 8192, 16,
                                        1 << 24);
  c->max_body = conf_int(L, "max_body", 1 << 20, 0, INT64_MAX);
  c->date = (unsigned char)conf_bool(L, "date", 1);
  luaL_setmetatable(L, CLS_HCONF);
  return 1;
}

/* ------------------------------------------------------------- requests */

/* An error response, written now; the caller closes the connection.
 * [-0, +0, m] */
static void http_senderror(lua_State *L, struct sock *s, int idx, int status,
                           int date) {
  char out[512];
  const char *reason = http_reason(status);
  size_t n = http_status_line(status, 1, out, sizeof out);
  int k = snprintf(out + n, sizeof out - n,
                   "%s%s%sContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n%s\n",
                   date ? "Date: " : "",
                   date ? http_datenow(s->loop) : "", date ? "\r\n" : "",
                   strlen(reason) + 1, reason);
  struct iovec iov = {out, n + (size_t)k};
  int top = lua_gettop(L);
  if (s->fd >= 0)
    sock_put(L, s, idx, &iov, 1); /* a failure: nothing more to say */
  lua_settop(L, top);
}

/* A header line (name through the end of its value) over the limit. */
static int http_longline(const struct http_request *r, size_t max) {
  for (size_t i = 0; i < r->nheaders; i++) {
    const struct http_header *h = &r->headers[i];
    if ((size_t)(h->value + h->value_len - h->name) > max)
      return 1;
  }
  return 0;
}

static const char *rebase(const char *ptr, const char *from, size_t n,
                          const char *to) {
  uintptr_t p = (uintptr_t)ptr, f = (uintptr_t)from;
  return p >= f && p <= f + n ? to + (p - f) : ptr;
}

/* Copy a parsed head into a new Request (its socket at stack index 1).
 * [-0, +1, m] */
static struct hreq *req_new(lua_State *L, const struct http_request *r,
                            const char *p, size_t n) {
  size_t hs = r->nheaders * sizeof(struct http_header);
  struct hreq *q = loop_newobjectby(L, 1, sizeof *q + hs + n, REQ_NUV);
  memset(q, 0, sizeof *q);
  q->tag = &req_tag;
  char *head = (char *)q->h + hs;
  memcpy(head, p, n);
  q->r = *r;
  q->r.headers = q->h;
  q->r.method = rebase(r->method, p, n, head);
  q->r.target = rebase(r->target, p, n, head);
  q->r.path = rebase(r->path, p, n, head);
  q->r.query = rebase(r->query, p, n, head);
  q->r.authority = rebase(r->authority, p, n, head);
  q->r.host = rebase(r->host, p, n, head);
  for (size_t i = 0; i < r->nheaders; i++) {
    q->h[i] = r->headers[i];
    q->h[i].name = rebase(r->headers[i].name, p, n, head);
    q->h[i].value = rebase(r->headers[i].value, p, n, head);
  }
  q->headlen = n;
  q->b.chunked = r->chunked;
  q->b.left = r->content_length > 0 ? r->content_length : 0;
  q->b.done = !r->chunked && q->b.left == 0;
  lua_pushvalue(L, lua_upvalueindex(READ_UP_REQMT));
  lua_setmetatable(L, -2);
  return q;
}

/* The Response of q (request at idx; the socket s at 1). [-0, +1, m] */
static struct hres *res_new(lua_State *L, struct sock *s, struct hreq *q,
                            const struct hconf *c, int idx) {
  struct hres *r = loop_newobjectby(L, 1, sizeof *r, RES_NUV);
  memset(r, 0, offsetof(struct hres, inl));
  r->tag = &res_tag;
  r->q = q;
  r->s = s;
  r->status = 200;
  r->hdr = r->inl;
  r->hcap = RES_INLINE;
  r->date = c->date;
  r->head_only = q->r.method_len == 4 && memcmp(q->r.method, "HEAD", 4) == 0;
  r->close = q->r.conn_close ||
             (q->r.minor_version == 0 && !q->r.conn_keepalive);
  r->ka10 = q->r.minor_version == 0 && !r->close;
  q->res = r;
  q->max_body = c->max_body;
  lua_pushvalue(L, lua_upvalueindex(READ_UP_RESMT));
  lua_setmetatable(L, -2);
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, -2, RES_UV_REQ);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, REQ_UV_RES);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, idx, REQ_UV_SOCK);
  return r;
}

/* The head framing: stack 1 = socket, 2 = Config. It runs only inside
 * readrequest (or its continuation): the upvalues are readrequest's. */
static int head_match(lua_State *L, struct sock *s, char *p, size_t n,
                      size_t *take) {
  const struct hconf *c = lua_touserdata(L, 2);
  struct http_header hdrs[HEADERS_CAP];
  struct http_request r;
  memset(&r, 0, sizeof r);
  r.headers = hdrs;
  r.max_headers = c->lim.max_headers;
  int rc = http_parse_request(p, n, s->rscan, &r, &c->lim);
  if (rc == HTTP_INCOMPLETE) {
    s->rscan = n;
    return 0;
  }
  if (rc > 0 && http_longline(&r, c->max_header_line))
    rc = HTTP_EHEADERS_TOO_LARGE;
  if (rc < 0) {
    int status = http_error_status(rc);
    http_senderror(L, s, 1, status, c->date);
    lua_pushnil(L);
    lua_pushliteral(L, "badrequest");
    lua_pushinteger(L, status);
    return 3;
  }
  *take = (size_t)rc;
  struct hreq *q = req_new(L, &r, p, (size_t)rc);
  res_new(L, s, q, c, lua_gettop(L));
  return 2;
}

static const struct sock_framing head_framing = {head_match, NULL, 3};

/* readrequest(sock, conf [, timeout]) -> Request, Response | nil, code,
 * extra ("badrequest" and the status answered; or a read's failure). */
static int http_readrequest(lua_State *L) {
  struct sock *s = sock_check(L, 1);
  util_checktagged(L, 2, sizeof(struct hconf), &conf_tag, CLS_HCONF);
  lua_settop(L, 3);
  return sock_readframe(L, s, &head_framing);
}

/* ---------------------------------------------------------------- bodies */

/* The body framing: stack 1 = socket, 2 = Request or Body, 4 = max (nil:
 * the whole Content-Length body at once). Pushes the next piece, false at
 * the end, or nil, "badrequest", 400 for broken chunked framing. */
static struct hbody *body_of(lua_State *L, int idx) {
  struct hreq *q = util_tagged(L, idx, sizeof *q, &req_tag);
  return q ? &q->b : luaL_checkudata(L, idx, CLS_HBODY);
}

static int body_chunked(lua_State *L, struct hbody *b, const char *p,
                        size_t n, size_t *take) {
  size_t used, off, len;
  int rc = http_chunked_next(&b->ck, p, n, &used, &off, &len);
  *take = used;
  switch (rc) {
  case HTTP_CHUNK_MORE:
    return 0;
  case HTTP_CHUNK_DATA:
    lua_pushlstring(L, p + off, len);
    return 1;
  case HTTP_CHUNK_DONE:
    b->done = 1;
    lua_pushboolean(L, 0);
    return 1;
  default:
    b->done = 1;
    lua_pushnil(L);
    lua_pushliteral(L, "badrequest");
    lua_pushinteger(L, http_error_status(rc));
    return 3;
  }
}

static int body_match(lua_State *L, struct sock *s, char *p, size_t n,
                      size_t *take) {
  (void)s;
  struct hbody *b = body_of(L, 2);
  lua_Integer max = luaL_optinteger(L, 4, 0);
  if (b->chunked)
    return body_chunked(L, b, p, n, take);
  size_t want = (size_t)b->left;
  if (max > 0 && (size_t)max < want)
    want = (size_t)max;
  if (max > 0 && n < want)
    want = n;
  if (want == 0 || n < want)
    return 0;
  lua_pushlstring(L, p, want);
  *take = want;
  b->left -= (int64_t)want;
  b->done = b->left == 0;
  return 1;
}

static const struct sock_framing body_framing = {body_match, NULL, 3};

/* 100 Continue, once, before the first read of a body the client holds
 * back for it (RFC 9110 §10.1.1); not once a response has started. */
static int req_continue(lua_State *L, struct sock *s, struct hreq *q) {
  if (!q->r.expect_continue || q->continued || q->res->started)
    return 0;
  static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
  struct iovec iov = {(void *)line, sizeof line - 1};
  q->continued = 1;
  return sock_put(L, s, 1, &iov, 1);
}

/* readbody(sock, req|body [, timeout [, max]]) -> piece | false at the
 * end | nil, code, extra */
static int http_readbody(lua_State *L) {
  struct sock *s = sock_check(L, 1);
  struct hbody *b = body_of(L, 2);
  lua_settop(L, 4);
  if (b->done) {
    lua_pushboolean(L, 0);
    return 1;
  }
  struct hreq *q = util_tagged(L, 2, sizeof *q, &req_tag);
  int rc = q ? req_continue(L, s, q) : 0;
  if (rc != 0)
    return rc;
  return sock_readframe(L, s, &body_framing);
}

/* body(length | nil, chunked) -> Body: the decoder of a response body
 * (berth.http's client). */
static int http_newbody(lua_State *L) {
  lua_Integer len = luaL_optinteger(L, 1, 0);
  int chunked = lua_toboolean(L, 2);
  struct hbody *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  b->chunked = (unsigned char)chunked;
  b->left = len > 0 ? len : 0;
  b->done = !chunked && b->left == 0;
  luaL_setmetatable(L, CLS_HBODY);
  return 1;
}

/* ------------------------------------------------------- request fields */

static struct hreq *req_check(lua_State *L, int idx) {
  return util_checktagged(L, idx, sizeof(struct hreq), &req_tag, CLS_HREQ);
}

static int name_eq(const char *a, size_t n, const char *b, size_t m) {
  if (n != m)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i]))
      return 0;
  return 1;
}

static void push_lower(lua_State *L, const char *s, size_t n) {
  luaL_Buffer B;
  char *d = luaL_buffinitsize(L, &B, n);
  for (size_t i = 0; i < n; i++)
    d[i] = (char)tolower((unsigned char)s[i]);
  luaL_pushresultsize(&B, n);
}

/* Header tables look names up case-insensitively. */
static int headers__index(lua_State *L) {
  size_t n;
  const char *k = lua_tolstring(L, 2, &n);
  if (k == NULL)
    return 0;
  push_lower(L, k, n);
  lua_rawget(L, 1);
  return 1;
}

/* req.headers: lower-case name -> value; a name sent more than once has
 * its values joined with ", " (RFC 9110 §5.3), "; " for Cookie. */
static void req_pushheaders(lua_State *L, struct hreq *q) {
  lua_createtable(L, 0, (int)q->r.nheaders);
  int t = lua_gettop(L);
  for (size_t i = 0; i < q->r.nheaders; i++) {
    const struct http_header *h = &q->h[i];
    push_lower(L, h->name, h->name_len);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, t) == LUA_TSTRING) {
      int cookie = name_eq(h->name, h->name_len, "cookie", 6);
      lua_pushstring(L, cookie ? "; " : ", ");
      lua_pushlstring(L, h->value, h->value_len);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, h->value, h->value_len);
    }
    lua_rawset(L, t);
  }
  luaL_setmetatable(L, "berth.http.Headers");
}

/* One query argument into the table at -3 (key at -2, value at -1 on the
 * stack): a name given twice becomes a list of its values. */
static void args_set(lua_State *L) {
  lua_pushvalue(L, -2);
  int t = lua_rawget(L, -4);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    lua_rawset(L, -3);
    return;
  }
  if (t == LUA_TSTRING) {
    lua_createtable(L, 2, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, -3);
    lua_pushvalue(L, -2);
    lua_rawset(L, -6);
  }
  lua_insert(L, -2);                       /* stack: t, k, list, v */
  lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
  lua_pop(L, 2);
}

/* Push s[0..n) percent-decoded ('+' as space), or raw if malformed. */
static void push_decoded(lua_State *L, const char *s, size_t n) {
  luaL_Buffer B;
  char *d = luaL_buffinitsize(L, &B, n);
  size_t out;
  if (http_pct_decode(s, n, d, &out, 1) != 0) {
    memcpy(d, s, n);
    out = n;
  }
  luaL_pushresultsize(&B, out);
}

/* req.args: the query's name=value pairs, decoded. */
static void req_pushargs(lua_State *L, struct hreq *q) {
  lua_newtable(L);
  const char *p = q->r.query, *end = p + q->r.query_len;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *e = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(e - p));
    if (e > p) {
      push_decoded(L, p, (size_t)((eq ? eq : e) - p));
      if (eq)
        push_decoded(L, eq + 1, (size_t)(e - eq - 1));
      else
        lua_pushliteral(L, "");
      args_set(L);
    }
    p = e + 1;
  }
}

/* A lazily made table in user value uv. */
static int req_pushlazy(lua_State *L, struct hreq *q, int uv,
                        void (*make)(lua_State *, struct hreq *)) {
  if (lua_getiuservalue(L, 1, uv) == LUA_TTABLE)
    return 1;
  lua_pop(L, 1);
  make(L, q);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, uv);
  return 1;
}

static int req_peer(lua_State *L) {
  lua_getiuservalue(L, 1, REQ_UV_SOCK);
  lua_getfield(L, -1, "peer");
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  return 1;
}

/* Fields by name; methods (upvalue 2) first. */
static int req__index(lua_State *L) {
  struct hreq *q = req_check(L, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL)
    return 1;
  const char *k = lua_tostring(L, 2);
  const struct http_request *r = &q->r;
  if (k == NULL)
    return 0;
  if (strcmp(k, "method") == 0)
    lua_pushlstring(L, r->method, r->method_len);
  else if (strcmp(k, "path") == 0)
    lua_pushlstring(L, r->path, r->path_len);
  else if (strcmp(k, "query") == 0)
    lua_pushlstring(L, r->query, r->query_len);
  else if (strcmp(k, "target") == 0)
    lua_pushlstring(L, r->target, r->target_len);
  else if (strcmp(k, "version") == 0)
    lua_pushstring(L, r->minor_version ? "1.1" : "1.0");
  else if (strcmp(k, "host") == 0)
    lua_pushlstring(L, r->authority_len ? r->authority : r->host,
                    r->authority_len ? r->authority_len : r->host_len);
  else if (strcmp(k, "headers") == 0)
    return req_pushlazy(L, q, REQ_UV_HEADERS, req_pushheaders);
  else if (strcmp(k, "args") == 0)
    return req_pushlazy(L, q, REQ_UV_ARGS, req_pushargs);
  else if (strcmp(k, "socket") == 0)
    lua_getiuservalue(L, 1, REQ_UV_SOCK);
  else if (strcmp(k, "peer") == 0)
    return req_peer(L);
  else if (strcmp(k, "length") == 0 && r->content_length >= 0)
    lua_pushinteger(L, (lua_Integer)r->content_length);
  else if (strcmp(k, "chunked") == 0)
    lua_pushboolean(L, r->chunked);
  else if (strcmp(k, "expect") == 0)
    lua_pushboolean(L, r->expect_continue);
  else if (strcmp(k, "upgrade") == 0)
    lua_pushboolean(L, r->conn_upgrade && r->has_upgrade);
  else if (strcmp(k, "max_body") == 0)
    lua_pushinteger(L, (lua_Integer)q->max_body);
  else
    lua_pushnil(L);
  return 1;
}

/* req:header(name) -> every value of that header, in order (none: no
 * results). Case-insensitive; builds no table. */
static int req_header(lua_State *L) {
  struct hreq *q = req_check(L, 1);
  size_t n;
  const char *name = luaL_checklstring(L, 2, &n);
  int found = 0;
  for (size_t i = 0; i < q->r.nheaders; i++) {
    const struct http_header *h = &q->h[i];
    if (name_eq(h->name, h->name_len, name, n)) {
      luaL_checkstack(L, 1, "too many header lines");
      lua_pushlstring(L, h->value, h->value_len);
      found++;
    }
  }
  return found;
}

/* req:complete() -> whether the body has been read to its end. */
static int req_complete(lua_State *L) {
  lua_pushboolean(L, req_check(L, 1)->b.done);
  return 1;
}

/* req:_fail(status): the body could not be had (413 too large, 400 bad
 * framing, 408 too slow); a response not started says so, and closes. */
static int req_fail(lua_State *L) {
  struct hreq *q = req_check(L, 1);
  q->body_error = (int)luaL_checkinteger(L, 2);
  return 0;
}

static int req__tostring(lua_State *L) {
  struct hreq *q = req_check(L, 1);
  luaL_Buffer B;
  luaL_buffinit(L, &B);
  luaL_addstring(&B, "Request (");
  luaL_addlstring(&B, q->r.method, q->r.method_len);
  luaL_addchar(&B, ' ');
  luaL_addlstring(&B, q->r.target, q->r.target_len);
  luaL_addchar(&B, ')');
  luaL_pushresult(&B);
  return 1;
}

/* ------------------------------------------------------------ responses */

static struct hres *res_check(lua_State *L, int idx) {
  return util_checktagged(L, idx, sizeof(struct hres), &res_tag, CLS_HRES);
}

static void res_unstarted(lua_State *L, const struct hres *r) {
  if (r->started)
    luaL_error(L, "http: the response has started (its head is sent)");
}

static int res_status(lua_State *L) {
  struct hres *r = res_check(L, 1);
  lua_Integer st = luaL_checkinteger(L, 2);
  luaL_argcheck(L, st >= 100 && st <= 999, 2, "not an HTTP status");
  res_unstarted(L, r);
  r->status = (int)st;
  lua_settop(L, 1);
  return 1;
}

/* Append to the header lines, spilling into a bigger block (a userdata in
 * RES_UV_SPILL) when the inline room is full. */
static void res_append(lua_State *L, struct hres *r, const char *p, size_t n) {
  if (r->hlen + n > r->hcap) {
    size_t cap = r->hcap * 2;
    while (cap < r->hlen + n)
      cap *= 2;
    char *block = lua_newuserdatauv(L, cap, 0);
    memcpy(block, r->hdr, r->hlen);
    lua_setiuservalue(L, 1, RES_UV_SPILL);
    r->hdr = block;
    r->hcap = cap;
  }
  memcpy(r->hdr + r->hlen, p, n);
  r->hlen += n;
}

static int has_token(const char *v, size_t n, const char *tok) {
  size_t t = strlen(tok);
  for (size_t i = 0; i + t <= n; i++)
    if (name_eq(v + i, t, tok, t) && (i + t == n || v[i + t] == ',' ||
                                      v[i + t] == ' '))
      return 1;
  return 0;
}

/* Headers berth writes itself, and those it must know of. Returns 1 when
 * the line is not to be stored. */
static int res_special(lua_State *L, struct hres *r, const char *k,
                       size_t kn, const char *v, size_t vn) {
  if (name_eq(k, kn, "content-length", 14)) {
    char *end;
    char num[24];
    if (vn == 0 || vn >= sizeof num || !isdigit((unsigned char)v[0]))
      luaL_argerror(L, 3, "Content-Length must be digits");
    memcpy(num, v, vn);
    num[vn] = '\0';
    long long x = strtoll(num, &end, 10);
    if (*end != '\0' || x < 0)
      luaL_argerror(L, 3, "Content-Length must be digits");
    r->has_length = 1;
    r->length = x;
    return 1;
  }
  if (name_eq(k, kn, "transfer-encoding", 17))
    luaL_argerror(L, 2, "berth.http frames the body itself (send or write)");
  if (name_eq(k, kn, "connection", 10)) {
    r->has_conn = 1;
    if (has_token(v, vn, "close"))
      r->close = r->said_close = 1;
  } else if (name_eq(k, kn, "date", 4)) {
    r->has_date = 1;
  }
  return 0;
}

/* res:header(name, value): one more header line (a name may repeat). */
static int res_header(lua_State *L) {
  struct hres *r = res_check(L, 1);
  size_t kn, vn;
  const char *k = luaL_checklstring(L, 2, &kn);
  const char *v = luaL_checklstring(L, 3, &vn);
  luaL_argcheck(L, http_token_valid(k, kn), 2, "not a header name");
  luaL_argcheck(L, http_value_valid(v, vn), 3,
                "not a header value (control characters, or spaces around)");
  res_unstarted(L, r);
  if (!res_special(L, r, k, kn, v, vn)) {
    res_append(L, r, k, kn);
    res_append(L, r, ": ", 2);
    res_append(L, r, v, vn);
    res_append(L, r, "\r\n", 2);
  }
  lua_settop(L, 1);
  return 1;
}

static int res_bodyless(const struct hres *r) {
  return r->status < 200 || r->status == 204 || r->status == 304;
}

/* Decide persistence, now that the head goes out. */
static void res_decide(struct hres *r) {
  const struct hreq *q = r->q;
  if (r->s->loop->draining)
    r->close = 1;
  if (!q->b.done && !q->body_error &&
      ((q->r.expect_continue && !q->continued) || q->b.chunked ||
       q->b.left > DISCARD_MAX))
    r->close = 1;
  if (q->body_error)
    r->close = 1;
  if (r->status == 101)
    r->upgraded = 1;
}

/* "Content-Length: N\r\n" at p; returns its length (no printf on the
 * path every response takes). */
static int put_length(char *p, int64_t n) {
  char digits[24];
  int d = 0;
  do {
    digits[d++] = (char)('0' + n % 10);
    n /= 10;
  } while (n > 0);
  static const char name[16] = {'C', 'o', 'n', 't', 'e', 'n', 't', '-',
                                 'L', 'e', 'n', 'g', 't', 'h', ':', ' '};
  memcpy(p, name, sizeof name); /* no NUL: the head is not a C string */
  for (int i = 0; i < d; i++)
    p[16 + i] = digits[d - 1 - i];
  p[16 + d] = '\r';
  p[17 + d] = '\n';
  return 18 + d;
}

/* A constant line of the head at p (HEAD_ROOM holds all of them together);
 * returns its length. */
#define head_put(p, line) (memcpy((p), (line), sizeof(line) - 1), \
                           (int)(sizeof(line) - 1))

/* The head's two berth-made parts: a = status line and Date, b = framing
 * lines and the empty line. `length` < 0: chunked (or, for HTTP/1.0, to
 * the close). */
static void res_head(struct hres *r, int64_t length, char *a, size_t *an,
                     char *b, size_t *bn) {
  res_decide(r);
  *an = http_status_line(r->status, 1, a, HEAD_ROOM);
  if (r->date && !r->has_date)
    *an += (size_t)snprintf(a + *an, HEAD_ROOM - *an, "Date: %s\r\n",
                            http_datenow(r->s->loop));
  int n = 0;
  if (r->status == 101 || (r->status >= 100 && r->status < 200) ||
      r->status == 204) {
    /* no framing at all */
  } else if (length >= 0) {
    n += put_length(b + n, length);
  } else if (r->q->r.minor_version == 1) {
    n += head_put(b + n, "Transfer-Encoding: chunked\r\n");
    r->chunked = 1;
  } else {
    r->close = 1; /* HTTP/1.0: the body ends with the connection */
  }
  if (r->close && !r->said_close && !r->upgraded)
    n += head_put(b + n, "Connection: close\r\n");
  else if (r->ka10 && !r->close && !r->has_conn)
    n += head_put(b + n, "Connection: keep-alive\r\n");
  n += head_put(b + n, "\r\n");
  *bn = (size_t)n;
  r->started = 1;
}

static int res_write_k(lua_State *L, int status, lua_KContext ctx);

/* Send iov (the socket at the Response's side), then wait while above the
 * high watermark. Returns res, or nil, code. A small piece that does not
 * end the response is only queued (sock_queue): the pieces of a response
 * written in one go leave together, with its end (res_end flushes). */
static int res_out(lua_State *L, struct hres *r, struct iovec *iov, int cnt) {
  lua_getiuservalue(L, 1, RES_UV_REQ);
  lua_getiuservalue(L, -1, REQ_UV_SOCK);
  int idx = lua_gettop(L);
  if (r->s->fd < 0)
    return util_fail(L, r->s->why);
  size_t total = 0;
  for (int i = 0; i < cnt; i++)
    total += iov[i].iov_len;
  int rc = !r->done && r->s->wbuf.len + total <= QUEUE_MAX
               ? sock_queue(L, r->s, idx, iov, cnt)
               : sock_put(L, r->s, idx, iov, cnt);
  if (rc != 0)
    return rc;
  if (!r->nowait && sock_overhigh(L, r->s))
    return sock_waitdrain(L, r->s, 0, 0, res_write_k);
  lua_settop(L, 1);
  return 1;
}

static int res_write_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  struct hres *r = res_check(L, 1);
  int rc = sock_afterwait(L, r->s);
  if (rc > 0)
    return rc;
  if (rc < 0)
    return sock_waitdrain(L, r->s, 1, ctx, res_write_k);
  lua_settop(L, 1);
  return 1;
}

/* res:send([body]): the whole response, with Content-Length. */
static int res_send(lua_State *L) {
  struct hres *r = res_check(L, 1);
  size_t n = 0;
  const char *body = luaL_optlstring(L, 2, "", &n);
  if (r->done)
    return luaL_error(L, "http: the response was sent already");
  res_unstarted(L, r);
  char a[HEAD_ROOM], b[HEAD_ROOM];
  size_t an, bn;
  if (r->has_length && (size_t)r->length != n)
    return luaL_argerror(L, 2, "not as long as the Content-Length set");
  res_head(r, res_bodyless(r) && r->status != 304 ? -1 : (int64_t)n, a, &an,
           b, &bn);
  r->chunked = 0;
  r->done = 1;
  struct iovec iov[4] = {{a, an}, {r->hdr, r->hlen}, {b, bn},
                         {(void *)body, n}};
  return res_out(L, r, iov, r->head_only || res_bodyless(r) ? 3 : 4);
}

/* res:write(chunk): stream the body; the head goes out first, chunked
 * unless the handler set a Content-Length (HTTP/1.0: until the close). */
static int res_write(lua_State *L) {
  struct hres *r = res_check(L, 1);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  if (r->done)
    return luaL_error(L, "http: the response was sent already");
  char a[HEAD_ROOM], b[HEAD_ROOM];
  /* cppcheck-suppress variableScope ; iov points into it until res_out */
  char size[24];
  size_t an = 0, bn = 0;
  int head = !r->started;
  if (head)
    res_head(r, r->has_length ? r->length : -1, a, &an, b, &bn);
  int body = n > 0 && !r->head_only && !res_bodyless(r);
  struct iovec iov[6] = {{a, an}, {r->hdr, head ? r->hlen : 0}, {b, bn}};
  int cnt = 3;
  if (body && r->chunked) {
    iov[cnt++] = (struct iovec){size, (size_t)snprintf(size, sizeof size,
                                                       "%zx\r\n", n)};
    iov[cnt++] = (struct iovec){(void *)data, n};
    iov[cnt++] = (struct iovec){(void *)"\r\n", 2};
  } else if (body) {
    iov[cnt++] = (struct iovec){(void *)data, n};
  }
  return res_out(L, r, iov, cnt);
}

/* End the response: one not started is sent as it stands (an empty body,
 * or the body error's status); a chunked one gets its last chunk. */
static int res_end(lua_State *L, struct hres *r) {
  if (r->done)
    return 0;
  r->nowait = 1; /* finish returns its verdict, never the wait's */
  if (!r->started && r->q->body_error) {
    const char *reason = http_reason(r->q->body_error);
    r->status = r->q->body_error;
    r->hlen = 0;
    res_append(L, r, "Content-Type: text/plain\r\n", 26);
    lua_settop(L, 1);
    lua_pushfstring(L, "%s\n", reason);
    return res_send(L);
  }
  if (!r->started) {
    lua_settop(L, 1);
    return res_send(L);
  }
  r->done = 1;
  if (!r->chunked || r->head_only)
    return 0;
  struct iovec iov = {(void *)"0\r\n\r\n", 5};
  return res_out(L, r, &iov, 1);
}

/* res:finish() -> whether the connection may carry another request; when
 * it may, also whether the request's body has been read to its end and the
 * bytes of input already buffered (a pipelined request): berth.http's
 * serve loop asks the three at once. */
static int res_finish(lua_State *L) {
  struct hres *r = res_check(L, 1);
  lua_settop(L, 1);
  int rc = res_end(L, r);
  if (rc > 1 && lua_isnil(L, -rc))
    return rc; /* the failure */
  if (r->close || r->upgraded || r->s->fd < 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushboolean(L, 1);
  lua_pushboolean(L, r->q->b.done);
  lua_pushinteger(L, (lua_Integer)r->s->rbuf.len);
  return 3;
}

/* <close>: a handler that did not finish (it raised, or its task was
 * ended) gets 500 if nothing was sent, and its connection closes. */
static int res__close(lua_State *L) {
  struct hres *r = res_check(L, 1);
  if (r->done)
    return 0;
  r->close = 1;
  if (!r->started && r->s->fd >= 0) {
    lua_getiuservalue(L, 1, RES_UV_REQ);
    lua_getiuservalue(L, -1, REQ_UV_SOCK);
    http_senderror(L, r->s, lua_gettop(L), 500, r->date);
  }
  r->started = r->done = 1;
  return 0;
}

static int res_started(lua_State *L) {
  lua_pushboolean(L, res_check(L, 1)->started);
  return 1;
}

/* ------------------------------------------------------------ helpers */

/* decode(s [, plus]) -> s percent-decoded, or nil when malformed. */
static int http_decode(lua_State *L) {
  size_t n, out;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer B;
  char *d = luaL_buffinitsize(L, &B, n);
  if (http_pct_decode(s, n, d, &out, lua_toboolean(L, 2)) != 0)
    return 0;
  luaL_pushresultsize(&B, out);
  return 1;
}

static const luaL_Reg req_methods[] = {
  {"header", req_header},
  {"complete", req_complete},
  {"_fail", req_fail},
  {NULL, NULL}
};

static const luaL_Reg res_methods[] = {
  {"status", res_status},
  {"header", res_header},
  {"send", res_send},
  {"write", res_write},
  {"finish", res_finish},
  {"started", res_started},
  {NULL, NULL}
};

static const luaL_Reg res_meta[] = {
  {"__close", res__close},
  {NULL, NULL}
};

static const luaL_Reg http_funcs[] = {
  {"config", http_config},
  {"readbody", http_readbody},
  {"body", http_newbody},
  {"decode", http_decode},
  {NULL, NULL}
};

/* The Request's metatable: __index is a C function with the method table
 * as its upvalue 2 (fields are computed on access); the method table is also
 * the metatable's "methods", for Lua to extend, and package.loaded[CLS_HREQ]
 * so that argument errors name the method (util_newclass says why). Every
 * function has the metatable's address as upvalue 1 (util_self). */
static void http_reqclass(lua_State *L) {
  luaL_newmetatable(L, CLS_HREQ);
  lua_newtable(L);
  util_pushmetaaddr(L, CLS_HREQ);
  luaL_setfuncs(L, req_methods, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "methods");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, CLS_HREQ);
  lua_pop(L, 1);
  util_pushmetaaddr(L, CLS_HREQ);
  lua_insert(L, -2);
  lua_pushcclosure(L, req__index, 2);
  lua_setfield(L, -2, "__index");
  util_pushmetaaddr(L, CLS_HREQ);
  lua_pushcclosure(L, req__tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

/* The classes, once per state. */
void http_open(lua_State *L) {
  luaL_newmetatable(L, CLS_HCONF);
  luaL_newmetatable(L, CLS_HBODY);
  luaL_newmetatable(L, "berth.http.Headers");
  lua_pushcfunction(L, headers__index);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 3);
  http_reqclass(L);
  util_newclass(L, CLS_HRES, res_meta, res_methods);
  lua_pop(L, 1);
}

/* The core.http table, with the classes' method tables as Request and
 * Response. [-0, +1, m] */
void http_push(lua_State *L) {
  luaL_newlib(L, http_funcs);
  luaL_getmetatable(L, CLS_HREQ);
  luaL_getmetatable(L, CLS_HRES);
  lua_pushcclosure(L, http_readrequest, 2);
  lua_setfield(L, -2, "readrequest");
  luaL_getmetatable(L, CLS_HREQ);
  lua_getfield(L, -1, "methods");
  lua_setfield(L, -3, "Request");
  luaL_getmetatable(L, CLS_HRES);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -4, "Response");
  lua_pop(L, 2);
}
