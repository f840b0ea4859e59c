/*
 * fuzz_http.c -- libFuzzer target for src/http_parse.c.
 *
 * The first input byte picks a mode, the next few are parameters, the rest
 * is the subject, copied into an exact-size heap block so ASan sees any
 * read past it.
 *   head:    http_parse_request under limits chosen by the input (some tiny,
 *            to reach the 414/431 bounds). A success must lie inside the
 *            input and end in an empty line, every pointer it fills in must
 *            lie inside the head, every stored name must be a token and
 *            every value a valid trimmed value, and the framing facts must
 *            agree with each other; the head alone (without what follows)
 *            must parse the same. The input is then fed in two and in three
 *            pieces with last_len: where the first call answers
 *            HTTP_INCOMPLETE the later one must equal the whole-input
 *            answer, field for field; where it answers anything else that
 *            answer must already be the whole-input one.
 *   chunked: http_chunked_next on the subject, once whole and once in
 *            pieces whose sizes come from the input; both must give the same
 *            result, the same body bytes and the same bytes consumed, and
 *            both must match a separate, whole-buffer reference decoder.
 *
 * spec/fuzz/repro/http_chunk_ext_without_size (ff 08 01 00 3b 11: a chunk
 * size line starting with ';') is the input that found the decoder taking
 * the byte it had just counted for a digit, and so skipping to the
 * extensions of a chunk with no size. Replay it with
 * build/fuzz/fuzz_http spec/fuzz/repro/http_chunk_ext_without_size.
 *
 * fuzz-sources: src/http_parse.c
 *
 * Built by scripts/fuzz with clang -fsanitize=fuzzer,address,undefined and
 * linked against src/http_parse.c directly. Pure C, no Lua.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

#define FUZZ_NAME "fuzz_http"
#include "fuzz.h"

#define NHDR 24

static char *copy(const uint8_t *p, size_t n) {
  char *s = malloc(n ? n : 1);
  if (s == NULL)
    abort();
  if (n)
    memcpy(s, p, n);
  return s;
}

/* --- heads ------------------------------------------------------------- */

/* Limits from one selector byte: the defaults, or small ones that the
 * fuzzer's short inputs can reach. */
static struct http_limits pick_limits(uint8_t sel) {
  struct http_limits l = HTTP_LIMITS_DEFAULT;
  if (sel & 1) {
    l.max_line = 8 + (sel >> 1 & 31);           /* 8..39 */
    l.max_header_bytes = 16 + (sel >> 3 & 31) * 4; /* 16..140 */
    l.max_headers = sel >> 6;                   /* 0..3 */
  } else {
    l.host_optional = sel >> 1 & 1;
  }
  return l;
}

static void in_head(const char *p, size_t n, const char *head, size_t hl,
                    const char *what) {
  if (p < head || p > head + hl || n > (size_t)(head + hl - p))
    FAIL("%s (%p, %zu) outside the head [%p, +%zu)", what, (const void *)p,
         n, (const void *)head, hl);
}

static void check_success(const char *buf, size_t len, int r,
                          const struct http_request *q,
                          const struct http_limits *lim) {
  size_t hl = (size_t)r;
  if (hl > len || hl > lim->max_header_bytes)
    FAIL("head length %zu, input %zu", hl, len);
  if (!(hl >= 2 && buf[hl - 1] == '\n' &&
        (buf[hl - 2] == '\n' || (hl >= 3 && buf[hl - 2] == '\r' &&
                                 buf[hl - 3] == '\n'))))
    FAIL("head of %d does not end in an empty line", r);
  in_head(q->method, q->method_len, buf, hl, "method");
  in_head(q->target, q->target_len, buf, hl, "target");
  in_head(q->path, q->path_len, q->target, q->target_len, "path");
  in_head(q->query, q->query_len, q->target, q->target_len, "query");
  in_head(q->authority, q->authority_len, q->target, q->target_len,
          "authority");
  in_head(q->host, q->host_len, buf, hl, "host");
  if (!http_token_valid(q->method, q->method_len) || q->target_len == 0)
    FAIL("method or target empty/invalid");
  if (q->nheaders > NHDR || q->nheaders > lim->max_headers)
    FAIL("nheaders %zu", q->nheaders);
  for (size_t i = 0; i < q->nheaders; i++) {
    const struct http_header *h = &q->headers[i];
    in_head(h->name, h->name_len, buf, hl, "name");
    in_head(h->value, h->value_len, buf, hl, "value");
    if (!http_token_valid(h->name, h->name_len))
      FAIL("header %zu name is not a token", i);
    if (!http_value_valid(h->value, h->value_len))
      FAIL("header %zu value is not a valid trimmed value", i);
  }
  if (q->minor_version != 0 && q->minor_version != 1)
    FAIL("minor version %d", q->minor_version);
  if (q->minor_version == 1 && !q->has_host && !lim->host_optional)
    FAIL("HTTP/1.1 without Host accepted");
  if (q->content_length < -1 || (q->chunked && q->content_length != -1))
    FAIL("content_length %lld with chunked %d",
         (long long)q->content_length, q->chunked);
}

/* Two results on the same bytes agree: code, and for a success the
 * fields (same buffer, so the same pointers). */
static void same(int a, const struct http_request *qa, int b,
                 const struct http_request *qb, const char *what) {
  if (a != b)
    FAIL("%s: %d, whole input %d", what, a, b);
  if (a <= 0)
    return;
  if (qa->method != qb->method || qa->target_len != qb->target_len ||
      qa->path != qb->path || qa->path_len != qb->path_len ||
      qa->query != qb->query || qa->nheaders != qb->nheaders ||
      qa->content_length != qb->content_length ||
      qa->chunked != qb->chunked || qa->conn_close != qb->conn_close ||
      qa->conn_keepalive != qb->conn_keepalive ||
      qa->conn_upgrade != qb->conn_upgrade ||
      qa->expect_continue != qb->expect_continue ||
      qa->has_upgrade != qb->has_upgrade || qa->has_host != qb->has_host ||
      qa->minor_version != qb->minor_version || qa->form != qb->form)
    FAIL("%s: same result %d, different fields", what, a);
  for (size_t i = 0; i < qa->nheaders; i++)
    if (memcmp(&qa->headers[i], &qb->headers[i], sizeof qa->headers[i]))
      FAIL("%s: header %zu differs", what, i);
}

struct parse {
  struct http_header h[NHDR];
  struct http_request q;
};

static int run(struct parse *p, const char *buf, size_t len, size_t last,
               const struct http_limits *lim) {
  memset(&p->q, 0, sizeof p->q);
  p->q.headers = p->h;
  p->q.max_headers = NHDR;
  return http_parse_request(buf, len, last, &p->q, lim);
}

/* Feed buf in pieces ending at cuts[0] < cuts[1] < ... < len. */
static void pieces(const char *buf, size_t len, const size_t *cuts, int ncut,
                   int whole, const struct parse *w,
                   const struct http_limits *lim) {
  static struct parse p;
  size_t last = 0;
  for (int i = 0; i <= ncut; i++) {
    size_t upto = i < ncut ? cuts[i] : len;
    int r = run(&p, buf, upto, last, lim);
    if (r != HTTP_INCOMPLETE || i == ncut) {
      same(r, &p.q, whole, &w->q, i < ncut ? "early answer" : "pieces");
      return;
    }
    last = upto;
  }
}

static void fuzz_head(const uint8_t *data, size_t size) {
  if (size < 3)
    return;
  struct http_limits lim = pick_limits(data[0]);
  size_t c1 = data[1], c2 = data[2];
  char *buf = copy(data + 3, size - 3);
  size_t len = size - 3;
  static struct parse w, alone;

  int whole = run(&w, buf, len, 0, &lim);
  if (whole > 0) {
    check_success(buf, len, whole, &w.q, &lim);
    char *head = copy((const uint8_t *)buf, (size_t)whole);
    int r = run(&alone, head, (size_t)whole, 0, &lim);
    if (r != whole)
      FAIL("the head alone gives %d, with what follows %d", r, whole);
    free(head);
  } else if (whole < HTTP_ETRAILER_TOO_LARGE) {
    FAIL("unknown result %d", whole);
  }
  if (len > 0) {
    size_t a = c1 % len, b = a + (len > a ? c2 % (len - a) : 0);
    size_t two[1] = {a};
    pieces(buf, len, two, a > 0 ? 1 : 0, whole, &w, &lim);
    size_t three[2] = {a, b};
    if (a > 0 && b > a)
      pieces(buf, len, three, 2, whole, &w, &lim);
  }
  free(buf);
}

/* --- chunked bodies ---------------------------------------------------- */

/* A separate decoder of the same grammar over the whole buffer, written
 * the plain way (find the line, then look at it). Returns the result and
 * sets the body and the bytes consumed (or the offending byte). */
struct ref {
  const char *p;
  size_t n, i;
  size_t max_line, max_trailer;
  char *out;
  size_t outlen;
};

static int is_tchar(unsigned char c) {
  return c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

static int is_vchar(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* CRLF at r->i: 0 past it, 1 need more, or an error at the bad byte. */
static int ref_crlf(struct ref *r) {
  if (r->i >= r->n) return 1;
  if (r->p[r->i] != '\r') return HTTP_ECHUNK_CRLF;
  if (r->i + 1 >= r->n) return 1;
  r->i++;
  if (r->p[r->i] != '\n') return HTTP_ECHUNK_CRLF;
  r->i++;
  return 0;
}

/* The size line at r->i: digits, then BWS only before a ';', then
 * extension bytes, then CRLF. 0 past it, 1 need more, or an error. */
static int ref_size_line(struct ref *r, uint64_t *size) {
  size_t start = r->i;
  int phase = 0; /* 0 digits, 1 BWS, 2 extensions */
  *size = 0;
  for (;; r->i++) {
    if (r->i >= r->n)
      return 1;
    unsigned char c = (unsigned char)r->p[r->i];
    if (c == '\r')
      break;
    if (r->i - start + 1 > r->max_line)
      return HTTP_ECHUNK_LINE_TOO_LONG;
    int h = hexval(c);
    if (phase == 0 && h >= 0) {
      if (*size > ((uint64_t)INT64_MAX - (uint64_t)h) / 16)
        return HTTP_ECHUNK_OVERFLOW;
      *size = *size * 16 + (uint64_t)h;
    } else if (r->i == start) {
      return HTTP_ECHUNK_SIZE;
    } else if (phase < 2 && c == ';') {
      phase = 2;
    } else if (phase < 2 && (c == ' ' || c == '\t')) {
      phase = 1;
    } else if (phase < 2) {
      return phase == 0 && c == '\n' ? HTTP_ECHUNK_CRLF : HTTP_ECHUNK_SIZE;
    } else if (c == '\n') {
      return HTTP_ECHUNK_CRLF;
    } else if (!is_vchar(c)) {
      return HTTP_ECHUNK_EXT;
    }
  }
  if (r->i == start || phase == 1) /* no digits, or "5 " without ';' */
    return HTTP_ECHUNK_SIZE;
  return ref_crlf(r);
}

/* Trailer field lines (name ":" value CRLF, every byte counted) up to the
 * empty line. */
static int ref_trailers(struct ref *r) {
  size_t count = 0;
  for (;;) {
    if (r->i >= r->n)
      return 1;
    if (r->p[r->i] == '\r') {
      int e = ref_crlf(r);
      return e == 0 ? HTTP_CHUNK_DONE : e;
    }
    size_t start = r->i;
    int phase = 0; /* 0 name, 1 value, 2 after the CR */
    for (;; r->i++) {
      if (r->i >= r->n)
        return 1;
      unsigned char c = (unsigned char)r->p[r->i];
      if (++count > r->max_trailer)
        return HTTP_ETRAILER_TOO_LARGE;
      if (phase == 2) {
        if (c != '\n')
          return HTTP_ECHUNK_CRLF;
        r->i++;
        break;
      }
      if (c == '\n')
        return HTTP_ECHUNK_CRLF;
      if (phase == 0 && c == ':' && r->i > start)
        phase = 1;
      else if (phase == 0 && !is_tchar(c))
        return HTTP_EBAD_TRAILER;
      else if (phase == 1 && c == '\r')
        phase = 2;
      else if (phase == 1 && !is_vchar(c))
        return HTTP_EBAD_TRAILER;
    }
  }
}

static int ref_decode(struct ref *r) {
  for (;;) {
    uint64_t size;
    int e = ref_size_line(r, &size);
    if (e != 0) return e == 1 ? HTTP_CHUNK_MORE : e;
    if (size == 0) {
      e = ref_trailers(r);
      return e == 1 ? HTTP_CHUNK_MORE : e;
    }
    size_t avail = r->n - r->i;
    size_t take = (uint64_t)avail < size ? avail : (size_t)size;
    memcpy(r->out + r->outlen, r->p + r->i, take);
    r->outlen += take;
    r->i += take;
    if (take < size) return HTTP_CHUNK_MORE;
    e = ref_crlf(r);
    if (e != 0) return e == 1 ? HTTP_CHUNK_MORE : e;
  }
}

/* Run the decoder over p[0..n) in pieces from `sizes` (cycled; 0 = all
 * the rest). */
static int decode(const char *p, size_t n, const uint8_t *sizes, size_t ns,
                  struct http_chunked *c, char *out, size_t *outlen,
                  size_t *used) {
  size_t pos = 0, limit = 0, k = 0, o = 0;
  int r = HTTP_CHUNK_MORE;
  for (;;) {
    if (limit < n) {
      size_t step = ns ? sizes[k++ % ns] : 0;
      limit = step == 0 || step > n - limit ? n : limit + step;
    }
    size_t consumed, off, dl;
    r = http_chunked_next(c, p + pos, limit - pos, &consumed, &off, &dl);
    if (consumed > limit - pos || (r == HTTP_CHUNK_DATA &&
        (dl == 0 || off + dl != consumed)))
      FAIL("chunked: consumed %zu of %zu, span %zu+%zu", consumed,
           limit - pos, off, dl);
    if (r == HTTP_CHUNK_DATA) {
      memcpy(out + o, p + pos + off, dl);
      o += dl;
    }
    pos += consumed;
    if (r < 0 || r == HTTP_CHUNK_DONE || (r == HTTP_CHUNK_MORE && limit == n))
      break;
  }
  *outlen = o;
  *used = pos;
  return r;
}

static void fuzz_chunked(const uint8_t *data, size_t size) {
  if (size < 4)
    return;
  size_t max_line = data[0] & 1 ? 0 : 1 + (data[0] >> 1);  /* 0: default */
  size_t max_tr = data[1] & 1 ? 0 : 1 + (data[1] >> 1);
  size_t ns = data[2] % 8;
  const uint8_t *sizes = data + 3;
  if (size < 3 + ns)
    return;
  char *p = copy(data + 3 + ns, size - 3 - ns);
  size_t n = size - 3 - ns;
  char *o1 = malloc(n + 1), *o2 = malloc(n + 1), *o3 = malloc(n + 1);
  if (o1 == NULL || o2 == NULL || o3 == NULL)
    abort();
  struct http_chunked a = {0}, b = {0};
  a.max_chunk_line = b.max_chunk_line = max_line;
  a.max_trailer_bytes = b.max_trailer_bytes = max_tr;
  size_t l1, l2, u1, u2;
  int r1 = decode(p, n, NULL, 0, &a, o1, &l1, &u1);
  int r2 = decode(p, n, sizes, ns, &b, o2, &l2, &u2);
  if (r1 != r2 || l1 != l2 || u1 != u2 || memcmp(o1, o2, l1) != 0)
    FAIL("chunked whole %d (%zu bytes, used %zu), pieces %d (%zu, %zu)",
         r1, l1, u1, r2, l2, u2);
  struct ref ref = {p, n, 0, max_line ? max_line : HTTP_CHUNK_LINE_DEFAULT,
                    max_tr ? max_tr : HTTP_TRAILER_BYTES_DEFAULT, o3, 0};
  int r3 = ref_decode(&ref);
  size_t u3 = r3 == HTTP_CHUNK_MORE ? n : ref.i;
  if (r1 != r3 || l1 != ref.outlen || u1 != u3 || memcmp(o1, o3, l1) != 0)
    FAIL("chunked %d (%zu bytes, used %zu), reference %d (%zu, %zu)", r1,
         l1, u1, r3, ref.outlen, u3);
  free(o1);
  free(o2);
  free(o3);
  free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  if (data[0] & 1)
    fuzz_chunked(data + 1, size - 1);
  else
    fuzz_head(data + 1, size - 1);
  return 0;
}
