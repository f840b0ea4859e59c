/*
 * http_parse.c -- see http_parse.h for the contract. No lua.h here.
 *
 * The head parser is a plain recursive-descent pass over the bytes: request
 * line, then field lines until the empty line, deriving the framing facts
 * as each field goes by. Two rules keep it consistent when a head arrives in
 * pieces without the parser keeping any state between calls:
 *   - the end of the head is the first empty line after the request line,
 *     and only that end (plus the two size limits) is looked for in bytes
 *     that arrive after an incomplete call;
 *   - syntax errors count only once that end is present, and the size limits
 *     (which can be judged from a prefix) come before them.
 * So every answer is a function of the bytes alone, whatever their split.
 */
#include "http_parse.h"

#include <limits.h>
#include <string.h>

/* Character classes of the ASCII half (bytes >= 0x80 are in none). */
#define C_TCHAR 1  /* token (RFC 9110 §5.6.2) */
#define C_HOST 2   /* uri-host [":" port]: unreserved, sub-delims, ":[]%" */
#define C_HEX 4
#define C_SCHEME 8 /* ALPHA DIGIT "+" "-" "." */

static const unsigned char cls[256] = {
   0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 00 */
   0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 10 */
   0,  3,  0,  1,  3,  3,  3,  3,  2,  2,  3, 11,  2, 11, 11,  0,  /* 20 */
  15, 15, 15, 15, 15, 15, 15, 15, 15, 15,  2,  2,  0,  2,  0,  0,  /* 30 */
   0, 15, 15, 15, 15, 15, 15, 11, 11, 11, 11, 11, 11, 11, 11, 11,  /* 40 */
  11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11,  2,  0,  2,  1,  3,  /* 50 */
   1, 15, 15, 15, 15, 15, 15, 11, 11, 11, 11, 11, 11, 11, 11, 11,  /* 60 */
  11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11,  0,  1,  0,  3,  0,  /* 70 */
};

static int is(char c, int class) {
  return (cls[(unsigned char)c] & class) != 0;
}

static int is_ows(char c) {
  return c == ' ' || c == '\t';
}

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

static int hex_value(char c) {
  if (is_digit(c))
    return c - '0';
  return (c | 0x20) - 'a' + 10; /* only called on C_HEX bytes */
}

/* A field-vchar, SP or HTAB: what a field value may hold. */
static int is_value_char(unsigned char c) {
  return (c >= 0x20 && c != 0x7f) || c == '\t';
}

/* s[0..n) equals the lower-case ASCII `lower`, ignoring case. Exact for
 * token bytes: `c | 0x20` only folds 'A'..'Z' onto a letter or '-'. */
static int name_is(const char *s, const char *lower, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (((unsigned char)s[i] | 0x20) != (unsigned char)lower[i])
      return 0;
  return 1;
}

/* --- word-at-a-time scans ---------------------------------------------
 * Eight bytes are loaded with memcpy (no alignment or aliasing UB) and
 * tested at once; the classic "has a byte less than n" test is exact about
 * whether such a byte exists, which is all the fast path needs. */

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static int has_less(uint64_t x, unsigned n) {
  return ((x - ONES * n) & ~x & HIGHS) != 0;
}

static int has_byte(uint64_t x, unsigned b) {
  uint64_t y = x ^ (ONES * b);
  return ((y - ONES) & ~y & HIGHS) != 0;
}

/* Past the token bytes at p: four table lookups per step, tested at
 * once, then byte by byte where a non-token byte is near. */
static const char *skip_token(const char *p, const char *end) {
  const unsigned char *u = (const unsigned char *)p;
  while (end - (const char *)u >= 4 &&
         (cls[u[0]] & cls[u[1]] & cls[u[2]] & cls[u[3]] & C_TCHAR))
    u += 4;
  while ((const char *)u < end && (cls[*u] & C_TCHAR))
    u++;
  return (const char *)u;
}

/* The first byte at or after p that may not appear in a field value (a
 * control other than HTAB, or DEL: CR and LF end the value), or end. A
 * word that holds a suspect byte (HTAB is one) is looked at byte by byte,
 * once, and the scan goes on after it. */
static const char *scan_value(const char *p, const char *end) {
  for (; end - p >= 8; p += 8) {
    uint64_t x;
    memcpy(&x, p, 8);
    if (has_less(x, 0x20) || has_byte(x, 0x7f))
      for (int j = 0; j < 8; j++)
        if (!is_value_char((unsigned char)p[j]))
          return p + j;
  }
  for (; p < end; p++)
    if (!is_value_char((unsigned char)*p))
      return p;
  return p;
}

static int is_target_char(unsigned char c) {
  return c > 0x20 && c != 0x7f;
}

/* The first byte at or after p that may not appear in a request-target
 * (a control, SP or DEL), or end. Bytes >= 0x80 are let through. */
static const char *scan_target(const char *p, const char *end) {
  for (; end - p >= 8; p += 8) {
    uint64_t x;
    memcpy(&x, p, 8);
    if (has_less(x, 0x21) || has_byte(x, 0x7f))
      for (int j = 0; j < 8; j++)
        if (!is_target_char((unsigned char)p[j]))
          return p + j;
  }
  for (; p < end; p++)
    if (!is_target_char((unsigned char)*p))
      return p;
  return p;
}

/* --- where the head ends, and the size limits ------------------------- */

/* Past at most HTTP_MAX_EMPTY_LINES empty lines at the start. */
static size_t skip_empty_lines(const char *buf, size_t len) {
  size_t i = 0;
  for (int k = 0; k < HTTP_MAX_EMPTY_LINES; k++) {
    if (i < len && buf[i] == '\n')
      i += 1;
    else if (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n')
      i += 2;
    else
      break;
  }
  return i;
}

/* The head's length: the end of the first empty line that follows a line
 * ending at or after `from` (from >= the request line's start), or 0. */
static size_t find_end(const char *buf, size_t len, size_t from) {
  const char *p = buf + from, *end = buf + len;
  for (;;) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL)
      return 0;
    p = nl + 1;
    if (p < end && *p == '\n')
      return (size_t)(p + 1 - buf);
    if (p + 1 < end && p[0] == '\r' && p[1] == '\n')
      return (size_t)(p + 2 - buf);
  }
}

/* The request line at s is longer than max (its first max + 2 bytes are
 * there: enough to hold max bytes and a CRLF). */
static int line_too_long(const char *buf, size_t s, size_t max) {
  const char *p = buf + s;
  const char *nl = memchr(p, '\n', max + 2);
  if (nl == NULL)
    return 1;
  size_t n = (size_t)(nl - p);
  if (n > 0 && nl[-1] == '\r')
    n--;
  return n > max;
}

/*
 * The size limit that buf[0..h) already breaks, or 0. h is the head's end
 * when known, else all the bytes. Each limit is decided at a fixed offset
 * (the request line at s + max_line + 2, the head at max_header_bytes + 1);
 * when both are broken the one decided first wins, so the answer does not
 * depend on how many bytes a call sees. The request line is examined only
 * if its deciding offset is past `seen` (an earlier call passed it).
 */
static int limit_error(const char *buf, size_t h, size_t s, size_t seen,
                       const struct http_limits *lim) {
  size_t t414 = lim->max_line < SIZE_MAX - 2 - s ? s + lim->max_line + 2
                                                 : SIZE_MAX;
  size_t t431 = lim->max_header_bytes + 1; /* capped below SIZE_MAX */
  int e414 = t414 <= h && t414 > seen && line_too_long(buf, s, lim->max_line);
  int e431 = t431 <= h;
  if (e414 && (!e431 || t414 <= t431))
    return HTTP_EURI_TOO_LONG;
  return e431 ? HTTP_EHEADERS_TOO_LARGE : 0;
}

/* --- the request line ---------------------------------------------------
 * Internal results: 0 done, MORE (ran out of bytes), or a negative error.
 * MORE is returned only with every byte up to `end` accepted, so a parse
 * that runs out means the head has no end yet. */

#define MORE 1
#define END 2 /* parse_field_line: the empty line */

struct head {
  const char *p, *end;
  struct http_request *req;
  size_t max_headers;
  int host_optional;
  /* facts gathered across field lines, judged at the end */
  int cl_seen, te_seen, te_chunked, te_last_chunked, te_other;
};

/* The line ending at p: sets *next past it, or MORE / an error. */
static int line_end(const char *p, const char *end, const char **next,
                    int other) {
  if (p == end)
    return MORE;
  if (*p == '\n') {
    *next = p + 1;
    return 0;
  }
  if (*p != '\r')
    return other;
  if (p + 1 == end)
    return MORE;
  if (p[1] != '\n')
    return HTTP_EBARE_CR;
  *next = p + 2;
  return 0;
}

/* Why a request line has no method: an empty line beyond those skipped,
 * a bare CR, or a byte that cannot start a token. */
static int no_method(const char *p, const char *end) {
  const char *next;
  int r = line_end(p, end, &next, HTTP_EBAD_METHOD);
  return r == 0 ? HTTP_EEMPTY_LINES : r;
}

static int parse_method(struct head *h) {
  const char *p = skip_token(h->p, h->end), *end = h->end;
  if (p == end)
    return MORE;
  if (p == h->p)
    return no_method(p, end);
  if (*p != ' ')
    return *p == '\r' || *p == '\n' ? HTTP_EBAD_LINE : HTTP_EBAD_METHOD;
  h->req->method = h->p;
  h->req->method_len = (size_t)(p - h->p);
  h->p = p + 1;
  return 0;
}

static int parse_target(struct head *h) {
  const char *t = h->p, *end = h->end;
  const char *p = scan_target(t, end);
  if (p == end)
    return MORE;
  if (*p != ' ')
    return p == t || *p == '\r' || *p == '\n' ? HTTP_EBAD_LINE
                                              : HTTP_EBAD_TARGET;
  if (p == t)
    return HTTP_EBAD_LINE; /* two spaces */
  h->req->target = t;
  h->req->target_len = (size_t)(p - t);
  h->p = p + 1;
  return 0;
}

/* "HTTP/" DIGIT "." DIGIT and the line end; other versions are 505, but
 * only once the line is known to be well formed. */
static int parse_version(struct head *h) {
  static const char shape[] = "HTTP/0.0";
  const char *p = h->p, *end = h->end;
  for (int i = 0; i < 8; i++, p++) {
    if (p == end)
      return MORE;
    int ok = shape[i] == '0' ? is_digit(*p) : *p == shape[i];
    if (!ok)
      return HTTP_EBAD_VERSION;
  }
  int r = line_end(p, end, &h->p, HTTP_EBAD_VERSION);
  if (r != 0)
    return r;
  int major = p[-3] - '0', minor = p[-1] - '0';
  if (major != 1 || minor > 1)
    return HTTP_EVERSION;
  h->req->minor_version = minor;
  return 0;
}

/* --- request-target forms (RFC 9112 §3.2) ------------------------------ */

static int all(const char *s, size_t n, int class) {
  for (size_t i = 0; i < n; i++)
    if (!is(s[i], class))
      return 0;
  return 1;
}

static int method_is(const struct http_request *req, const char *m) {
  size_t n = strlen(m);
  return req->method_len == n && memcmp(req->method, m, n) == 0;
}

/* scheme "://" authority [path]: sets authority and path (path len 0 at
 * the query's start when there is none). pend is where the query starts. */
static int absolute_form(struct http_request *req, const char *pend) {
  const char *s = req->target;
  while (s < pend && is(*s, C_SCHEME))
    s++;
  /* Past "://". Even when s is at pend this stays inside the buffer: the
   * target is followed there by at least " HTTP/x.y". */
  const char *a = s + 3;
  if (a > pend || memcmp(s, "://", 3) != 0)
    return HTTP_EBAD_TARGET;
  const char *slash = memchr(a, '/', (size_t)(pend - a));
  const char *aend = slash ? slash : pend;
  if (aend == a || !all(a, (size_t)(aend - a), C_HOST))
    return HTTP_EBAD_TARGET;
  req->form = HTTP_FORM_ABSOLUTE;
  req->authority = a;
  req->authority_len = (size_t)(aend - a);
  req->path = aend;
  req->path_len = (size_t)(pend - aend);
  return 0;
}

/* CONNECT host:port. No query there: a '?' is simply invalid. */
static int authority_form(struct http_request *req) {
  const char *t = req->target;
  size_t n = req->target_len;
  if (!all(t, n, C_HOST) || memchr(t, ':', n) == NULL)
    return HTTP_EBAD_TARGET;
  req->form = HTTP_FORM_AUTHORITY;
  req->authority = t;
  req->authority_len = n;
  req->path = t;
  req->path_len = 0;
  req->query = t + n;
  req->query_len = 0;
  return 0;
}

static int classify_target(struct http_request *req) {
  const char *t = req->target, *end = t + req->target_len;
  if (method_is(req, "CONNECT"))
    return authority_form(req);
  const char *q = memchr(t, '?', req->target_len);
  const char *pend = q ? q : end;
  req->query = q ? q + 1 : end;
  req->query_len = q ? (size_t)(end - q - 1) : 0;
  req->authority = t;
  req->authority_len = 0;
  req->path = t;
  req->path_len = (size_t)(pend - t);
  if (*t == '/') {
    req->form = HTTP_FORM_ORIGIN;
    return 0;
  }
  if (req->target_len == 1 && *t == '*') {
    req->form = HTTP_FORM_ASTERISK;
    return method_is(req, "OPTIONS") ? 0 : HTTP_EBAD_TARGET;
  }
  if (((unsigned char)*t | 0x20) >= 'a' && ((unsigned char)*t | 0x20) <= 'z')
    return absolute_form(req, pend);
  return HTTP_EBAD_TARGET;
}

static int parse_request_line(struct head *h) {
  int r = parse_method(h);
  if (r == 0)
    r = parse_target(h);
  if (r == 0)
    r = parse_version(h);
  if (r == 0)
    r = classify_target(h->req);
  return r;
}

/* --- framing facts from field values ---------------------------------- */

/* Next element of a comma-separated list in [*p, end), OWS trimmed; empty
 * elements are skipped (RFC 9110 §5.6.1.2). Returns 0 at the end. */
static int list_next(const char **p, const char *end, const char **e,
                     size_t *elen) {
  const char *s = *p;
  while (s < end && (*s == ',' || is_ows(*s)))
    s++;
  if (s == end) {
    *p = s;
    return 0;
  }
  const char *c = memchr(s, ',', (size_t)(end - s));
  const char *t = c ? c : end;
  *p = t;
  while (t > s && is_ows(t[-1]))
    t--;
  *e = s;
  *elen = (size_t)(t - s);
  return 1;
}

/* 1*DIGIT, at most INT64_MAX: the value, or -1. */
static int64_t parse_digits(const char **p, const char *end) {
  const char *s = *p;
  int64_t x = 0;
  for (; s < end && is_digit(*s); s++) {
    int d = *s - '0';
    if (x > (INT64_MAX - d) / 10)
      return -1;
    x = x * 10 + d;
  }
  if (s == *p)
    return -1;
  *p = s;
  return x;
}

/* Content-Length: 1*DIGIT, or a list of identical ones ("5, 5", RFC 9110
 * §8.6); every value, on every line, must agree. No empty elements. */
static int on_content_length(struct head *h, const char *v, size_t n) {
  const char *p = v, *end = v + n;
  struct http_request *req = h->req;
  for (;;) {
    int64_t x = parse_digits(&p, end);
    if (x < 0)
      return HTTP_EBAD_CONTENT_LENGTH;
    if (req->content_length >= 0 && req->content_length != x)
      return HTTP_EDUP_CONTENT_LENGTH;
    req->content_length = x;
    while (p < end && is_ows(*p))
      p++;
    if (p == end)
      break;
    if (*p++ != ',')
      return HTTP_EBAD_CONTENT_LENGTH;
    while (p < end && is_ows(*p))
      p++;
  }
  h->cl_seen = 1;
  return 0;
}

/* One transfer-coding: token *( OWS ";" ... ). chunked takes no
 * parameters; other codings are only noted (501 if chunked ends the list,
 * else the list is 400). Parameters are not looked into. */
static int te_element(struct head *h, const char *e, size_t n) {
  size_t t = 0;
  while (t < n && is(e[t], C_TCHAR))
    t++;
  size_t rest = t;
  while (rest < n && is_ows(e[rest]))
    rest++;
  if (t == 0 || (rest < n && e[rest] != ';'))
    return HTTP_EBAD_TE;
  int chunked = t == 7 && name_is(e, "chunked", 7);
  if (chunked && rest < n)
    return HTTP_EBAD_TE;
  if (chunked)
    h->te_chunked++;
  else
    h->te_other = 1;
  h->te_last_chunked = chunked;
  return 0;
}

static int on_transfer_encoding(struct head *h, const char *v, size_t n) {
  const char *p = v, *e;
  size_t elen;
  int any = 0;
  while (list_next(&p, v + n, &e, &elen)) {
    int r = te_element(h, e, elen);
    if (r != 0)
      return r;
    any = 1;
  }
  h->te_seen = 1;
  return any ? 0 : HTTP_EBAD_TE;
}

static void on_connection(struct http_request *req, const char *v, size_t n) {
  const char *p = v, *e;
  size_t elen;
  while (list_next(&p, v + n, &e, &elen)) {
    if (elen == 5 && name_is(e, "close", 5))
      req->conn_close = 1;
    else if (elen == 10 && name_is(e, "keep-alive", 10))
      req->conn_keepalive = 1;
    else if (elen == 7 && name_is(e, "upgrade", 7))
      req->conn_upgrade = 1;
  }
}

/* RFC 9110 §10.1.1: an HTTP/1.0 client's 100-continue is ignored (it
 * would not understand a 100 response). */
static void on_expect(struct http_request *req, const char *v, size_t n) {
  const char *p = v, *e;
  size_t elen;
  if (req->minor_version == 0)
    return;
  while (list_next(&p, v + n, &e, &elen))
    if (elen == 12 && name_is(e, "100-continue", 12))
      req->expect_continue = 1;
}

/* RFC 9112 §3.2: one Host, holding uri-host [":" port] (possibly empty). */
static int on_host(struct http_request *req, const char *v, size_t n) {
  if (req->has_host)
    return HTTP_EDUP_HOST;
  if (!all(v, n, C_HOST))
    return HTTP_EBAD_HOST;
  req->has_host = 1;
  req->host = v;
  req->host_len = n;
  return 0;
}

/* Dispatch on the few names that carry framing; others are just stored. */
static int on_field(struct head *h, const char *name, size_t nlen,
                    const char *v, size_t vlen) {
  struct http_request *req = h->req;
  switch (nlen) {
  case 4:
    return name_is(name, "host", 4) ? on_host(req, v, vlen) : 0;
  case 6:
    if (name_is(name, "expect", 6))
      on_expect(req, v, vlen);
    return 0;
  case 7:
    if (name_is(name, "upgrade", 7))
      req->has_upgrade = 1;
    return 0;
  case 10:
    if (name_is(name, "connection", 10))
      on_connection(req, v, vlen);
    return 0;
  case 14:
    return name_is(name, "content-length", 14)
               ? on_content_length(h, v, vlen) : 0;
  case 17:
    return name_is(name, "transfer-encoding", 17)
               ? on_transfer_encoding(h, v, vlen) : 0;
  default:
    return 0;
  }
}

/* --- field lines ------------------------------------------------------ */

/* A name that stopped at something other than ':'. */
static int name_error(const char *p, const char *end) {
  if (is_ows(*p))
    return HTTP_EHEADER_SPACE;
  if (*p == '\r' && p + 1 < end && p[1] != '\n')
    return HTTP_EBARE_CR;
  return HTTP_EBAD_HEADER_NAME;
}

static int store_field(struct head *h, const char *name, size_t nlen,
                       const char *v, size_t vlen) {
  struct http_request *req = h->req;
  if (req->nheaders >= h->max_headers)
    return HTTP_ETOO_MANY_HEADERS;
  struct http_header *f = &req->headers[req->nheaders++];
  f->name = name;
  f->name_len = nlen;
  f->value = v;
  f->value_len = vlen;
  return on_field(h, name, nlen, v, vlen);
}

/* One field line: 0 stored, END at the empty line, MORE, or an error. */
static int parse_field_line(struct head *h) {
  const char *p = h->p, *end = h->end, *next = NULL;
  int r = line_end(p, end, &next, 0); /* 0 and no next: not empty */
  if (r != 0)
    return r;
  if (next != NULL) {
    h->p = next;
    return END;
  }
  if (is_ows(*p))
    return HTTP_EOBS_FOLD;
  const char *name = p;
  p = skip_token(p, end);
  if (p == end)
    return MORE;
  if (p == name || *p != ':')
    return p > name ? name_error(p, end) : HTTP_EBAD_HEADER_NAME;
  size_t nlen = (size_t)(p - name);
  for (p++; p < end && is_ows(*p); p++)
    ;
  const char *v = p;
  p = scan_value(p, end);
  const char *vend = p;
  next = NULL;
  r = line_end(p, end, &next, HTTP_EBAD_VALUE);
  if (r != 0)
    return r;
  while (vend > v && is_ows(vend[-1]))
    vend--;
  h->p = next;
  return store_field(h, name, nlen, v, (size_t)(vend - v));
}

/* Judgements that need every field line (RFC 9112 §3.2, §6.1, §6.3). */
static int finish(struct head *h) {
  struct http_request *req = h->req;
  if (req->minor_version == 1 && !req->has_host && !h->host_optional)
    return HTTP_ENO_HOST;
  if (!h->te_seen)
    return 0;
  if (req->minor_version == 0)
    return HTTP_EBAD_TE;
  if (h->cl_seen)
    return HTTP_ECL_AND_TE;
  if (h->te_chunked != 1 || !h->te_last_chunked)
    return HTTP_ECHUNKED_NOT_LAST;
  if (h->te_other)
    return HTTP_ETE_UNSUPPORTED;
  req->chunked = 1;
  return 0;
}

static void reset_request(struct http_request *req, const char *buf) {
  req->nheaders = 0;
  req->host = buf;
  req->host_len = 0;
  req->content_length = -1;
  req->chunked = req->conn_close = req->conn_keepalive = 0;
  req->conn_upgrade = req->expect_continue = 0;
  req->has_upgrade = req->has_host = 0;
}

/* The head from s: its length, 0 when the bytes run out, or an error (the
 * first in byte order). */
static int parse_head(const char *buf, size_t len, size_t s,
                      struct http_request *req, size_t max_headers,
                      int host_optional) {
  struct head h = {buf + s, buf + len, req, max_headers, host_optional,
                   0, 0, 0, 0, 0};
  reset_request(req, buf);
  int r = parse_request_line(&h);
  while (r == 0)
    r = parse_field_line(&h);
  if (r == END)
    r = finish(&h);
  if (r == MORE)
    return 0;
  return r < 0 ? r : (int)(h.p - buf);
}

/* The whole verdict on buf[0..len): limits first, then syntax, and a
 * syntax error only counts once the head's end is there. */
static int parse_full(const char *buf, size_t len, size_t s,
                      struct http_request *req,
                      const struct http_limits *lim) {
  size_t max = lim->max_headers < req->max_headers ? lim->max_headers
                                                   : req->max_headers;
  int r = parse_head(buf, len, s, req, max, lim->host_optional);
  size_t e = r > 0 ? (size_t)r : r < 0 ? find_end(buf, len, s) : 0;
  int err = limit_error(buf, e ? e : len, s, 0, lim);
  if (err != 0)
    return err;
  return e ? r : HTTP_INCOMPLETE;
}

static const struct http_limits default_limits = HTTP_LIMITS_DEFAULT;

int http_parse_request(const char *buf, size_t len, size_t last_len,
                       struct http_request *req,
                       const struct http_limits *lim) {
  struct http_limits l = lim ? *lim : default_limits;
  /* The result is an int: a head longer than INT_MAX - 1 is too large
   * whatever the limit, and bytes past INT_MAX cannot change that. */
  if (l.max_header_bytes > (size_t)INT_MAX - 1)
    l.max_header_bytes = (size_t)INT_MAX - 1;
  if (len > (size_t)INT_MAX)
    len = (size_t)INT_MAX;
  if (last_len > len) /* not an earlier prefix: start over */
    last_len = 0;
  size_t s = skip_empty_lines(buf, len);
  if (last_len > 0) {
    /* An end the earlier call did not see lies past last_len - 3. */
    size_t e = find_end(buf, len, last_len > s + 3 ? last_len - 3 : s);
    int err = limit_error(buf, e ? e : len, s, last_len, &l);
    if (err != 0 || e == 0)
      return err;
  }
  return parse_full(buf, len, s, req, &l);
}

/* --- error codes ------------------------------------------------------ */

int http_error_status(int code) {
  switch (code) {
  case HTTP_EURI_TOO_LONG:
    return 414;
  case HTTP_EHEADERS_TOO_LARGE:
  case HTTP_ETOO_MANY_HEADERS:
    return 431;
  case HTTP_ETE_UNSUPPORTED:
    return 501;
  case HTTP_EVERSION:
    return 505;
  default:
    return 400;
  }
}

static const char *const error_text[] = {
  "no error",
  "bad method",
  "bad request-target",
  "bad HTTP version",
  "malformed request line",
  "too many empty lines before the request line",
  "bad header name",
  "whitespace between header name and colon",
  "obsolete line folding",
  "control character in header value",
  "CR not followed by LF",
  "bad Content-Length",
  "conflicting Content-Length values",
  "both Content-Length and Transfer-Encoding",
  "chunked is not the final transfer coding",
  "bad Transfer-Encoding",
  "HTTP/1.1 request without Host",
  "more than one Host",
  "bad Host",
  "request line too long",
  "request head too large",
  "too many header fields",
  "transfer coding not implemented",
  "HTTP version not supported",
  "bad chunk size",
  "chunk size too large",
  "chunk framing not ended by CRLF",
  "bad chunk extension",
  "chunk size line too long",
  "bad trailer field",
  "trailer fields too large",
};

const char *http_strerror(int code) {
  size_t n = sizeof error_text / sizeof error_text[0];
  if (code > 0 || (size_t)-(long)code >= n)
    return "unknown error";
  return error_text[-code];
}

/* --- chunked bodies ----------------------------------------------------
 * A byte-at-a-time state machine for the framing (a few bytes per chunk);
 * data is reported as one span, never looked at. */

enum {
  CS_SIZE,      /* hex digits (state 0: a zeroed decoder starts here) */
  CS_SIZE_WS,   /* BWS after the size: only before a ';' */
  CS_EXT,       /* chunk extensions, skipped up to CR */
  CS_SIZE_LF,
  CS_DATA,
  CS_DATA_CR,
  CS_DATA_LF,
  CS_TR_START,  /* start of a trailer line, or of the final empty line */
  CS_TR_NAME,
  CS_TR_VALUE,
  CS_TR_LF,
  CS_TR_END_LF,
  CS_DONE,
  CS_ERROR
};

static int chunk_size_digit(struct http_chunked *c, unsigned char b,
                            int first) {
  if (is((char)b, C_HEX)) {
    int d = hex_value((char)b);
    if (c->remaining > ((uint64_t)INT64_MAX - (uint64_t)d) / 16)
      return HTTP_ECHUNK_OVERFLOW;
    c->remaining = c->remaining * 16 + (uint64_t)d;
    return 0;
  }
  if (first) /* no digits */
    return HTTP_ECHUNK_SIZE;
  if (b == ';')
    c->state = CS_EXT;
  else if (is_ows((char)b))
    c->state = CS_SIZE_WS;
  else if (b == '\r')
    c->state = CS_SIZE_LF;
  else
    return b == '\n' ? HTTP_ECHUNK_CRLF : HTTP_ECHUNK_SIZE;
  return 0;
}

/* The size line: digits, [BWS ";" extensions], CRLF. Its bytes before the
 * CR count against max_chunk_line. */
static int chunk_size_line(struct http_chunked *c, unsigned char b) {
  size_t max = c->max_chunk_line ? c->max_chunk_line
                                 : HTTP_CHUNK_LINE_DEFAULT;
  size_t before = c->line; /* in CS_SIZE: the digits so far */
  if (b != '\r' && ++c->line > max)
    return HTTP_ECHUNK_LINE_TOO_LONG;
  switch (c->state) {
  case CS_SIZE:
    return chunk_size_digit(c, b, before == 0);
  case CS_SIZE_WS:
    if (b == ';')
      c->state = CS_EXT;
    else if (!is_ows((char)b))
      return HTTP_ECHUNK_SIZE;
    return 0;
  default: /* CS_EXT */
    if (b == '\r')
      c->state = CS_SIZE_LF;
    else if (!is_value_char(b))
      return b == '\n' ? HTTP_ECHUNK_CRLF : HTTP_ECHUNK_EXT;
    return 0;
  }
}

/* Trailer field lines: name ":" value CRLF, checked and dropped; their
 * bytes count against max_trailer_bytes. */
static int chunk_trailer(struct http_chunked *c, unsigned char b) {
  size_t max = c->max_trailer_bytes ? c->max_trailer_bytes
                                    : HTTP_TRAILER_BYTES_DEFAULT;
  if (c->state == CS_TR_START && b == '\r') {
    c->state = CS_TR_END_LF;
    return 0;
  }
  if (++c->line > max)
    return HTTP_ETRAILER_TOO_LARGE;
  if (b == '\n')
    return c->state == CS_TR_LF ? (c->state = CS_TR_START, 0)
                                : HTTP_ECHUNK_CRLF;
  switch (c->state) {
  case CS_TR_START:
  case CS_TR_NAME:
    if (b == ':' && c->state == CS_TR_NAME)
      c->state = CS_TR_VALUE;
    else if (is((char)b, C_TCHAR))
      c->state = CS_TR_NAME;
    else
      return HTTP_EBAD_TRAILER;
    return 0;
  case CS_TR_VALUE:
    if (b == '\r')
      c->state = CS_TR_LF;
    else if (!is_value_char(b))
      return HTTP_EBAD_TRAILER;
    return 0;
  default: /* CS_TR_LF without its LF */
    return HTTP_ECHUNK_CRLF;
  }
}

static int chunk_step(struct http_chunked *c, unsigned char b) {
  switch (c->state) {
  case CS_SIZE:
  case CS_SIZE_WS:
  case CS_EXT:
    return chunk_size_line(c, b);
  case CS_SIZE_LF:
    if (b != '\n')
      return HTTP_ECHUNK_CRLF;
    c->state = c->remaining ? CS_DATA : CS_TR_START;
    c->line = 0;
    return 0;
  case CS_DATA_CR:
    c->state = CS_DATA_LF;
    return b == '\r' ? 0 : HTTP_ECHUNK_CRLF;
  case CS_DATA_LF:
    c->state = CS_SIZE;
    return b == '\n' ? 0 : HTTP_ECHUNK_CRLF;
  case CS_TR_END_LF:
    c->state = CS_DONE;
    return b == '\n' ? 0 : HTTP_ECHUNK_CRLF;
  default:
    return chunk_trailer(c, b);
  }
}

/* Report data from p[i..n) in CS_DATA: one span, as much as is there. */
static int chunk_data(struct http_chunked *c, size_t i, size_t n,
                      size_t *consumed, size_t *data_off, size_t *data_len) {
  size_t take = n - i;
  if ((uint64_t)take > c->remaining)
    take = (size_t)c->remaining;
  c->remaining -= take;
  if (c->remaining == 0)
    c->state = CS_DATA_CR;
  *data_off = i;
  *data_len = take;
  *consumed = i + take;
  return HTTP_CHUNK_DATA;
}

int http_chunked_next(struct http_chunked *c, const char *p, size_t n,
                      size_t *consumed, size_t *data_off, size_t *data_len) {
  *data_off = *data_len = 0;
  if (c->state == CS_ERROR) {
    *consumed = 0;
    return c->error;
  }
  size_t i = 0;
  for (; i < n && c->state != CS_DONE; i++) {
    if (c->state == CS_DATA)
      return chunk_data(c, i, n, consumed, data_off, data_len);
    int r = chunk_step(c, (unsigned char)p[i]);
    if (r < 0) {
      c->state = CS_ERROR;
      c->error = r;
      *consumed = i;
      return r;
    }
  }
  *consumed = i;
  return c->state == CS_DONE ? HTTP_CHUNK_DONE : HTTP_CHUNK_MORE;
}

/* --- building responses ----------------------------------------------- */

const char *http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 103: return "Early Hints";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 203: return "Non-Authoritative Information";
  case 204: return "No Content";
  case 205: return "Reset Content";
  case 206: return "Partial Content";
  case 300: return "Multiple Choices";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 305: return "Use Proxy";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 402: return "Payment Required";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 407: return "Proxy Authentication Required";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 417: return "Expectation Failed";
  case 421: return "Misdirected Request";
  case 422: return "Unprocessable Content";
  case 426: return "Upgrade Required";
  case 428: return "Precondition Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 451: return "Unavailable For Legal Reasons";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  case 511: return "Network Authentication Required";
  default: return "";
  }
}

/* memcpy of part of a string: a function of its own so that clang-tidy's
 * not-null-terminated-result check does not take it for a strcpy. */
static char *put(char *out, const char *s, size_t n) {
  memcpy(out, s, n);
  return out + n;
}

size_t http_status_line(int status, int minor, char *out, size_t cap) {
  if (status < 100 || status > 999 || (minor != 0 && minor != 1))
    return 0;
  const char *reason = http_reason(status);
  size_t rlen = strlen(reason);
  size_t n = 13 + rlen + 2; /* "HTTP/1.1 200 " reason CRLF */
  if (cap < n)
    return 0;
  put(out, "HTTP/1.", 7);
  out[7] = (char)('0' + minor);
  out[8] = ' ';
  out[9] = (char)('0' + status / 100);
  out[10] = (char)('0' + status / 10 % 10);
  out[11] = (char)('0' + status % 10);
  out[12] = ' ';
  put(put(out + 13, reason, rlen), "\r\n", 2);
  return n;
}

static char *put2(char *p, int v) {
  p[0] = (char)('0' + v / 10);
  p[1] = (char)('0' + v % 10);
  return p + 2;
}

/* Formatted by hand: strftime would follow the locale's day names. */
size_t http_date(time_t t, char out[30]) {
  static const char days[] = "SunMonTueWedThuFriSat";
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL || tm.tm_year < -1900 ||
      tm.tm_year > 9999 - 1900)
    return 0;
  int year = tm.tm_year + 1900;
  char *p = out;
  p = put(put(p, days + 3 * tm.tm_wday, 3), ", ", 2);
  p = put2(p, tm.tm_mday);
  *p++ = ' ';
  p = put(p, months + 3 * tm.tm_mon, 3);
  *p++ = ' ';
  p = put2(put2(p, year / 100), year % 100);
  *p++ = ' ';
  p = put2(p, tm.tm_hour);
  *p++ = ':';
  p = put2(p, tm.tm_min);
  *p++ = ':';
  p = put2(p, tm.tm_sec);
  memcpy(p, " GMT", 5); /* with the NUL */
  return 29;
}

int http_token_valid(const char *s, size_t n) {
  return n > 0 && all(s, n, C_TCHAR);
}

int http_value_valid(const char *s, size_t n) {
  if (n > 0 && (is_ows(s[0]) || is_ows(s[n - 1])))
    return 0;
  return scan_value(s, s + n) == s + n;
}

int http_pct_decode(const char *in, size_t n, char *out, size_t *outlen,
                    int plus_as_space) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = in[i];
    if (c == '%') {
      if (n - i < 3 || !is(in[i + 1], C_HEX) || !is(in[i + 2], C_HEX))
        return -1;
      c = (char)(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2]));
      i += 2;
    } else if (c == '+' && plus_as_space) {
      c = ' ';
    }
    out[o++] = c;
  }
  *outlen = o;
  return 0;
}
