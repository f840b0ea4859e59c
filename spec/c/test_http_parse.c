/*
 * test_http_parse.c -- unit tests for src/http_parse.c: request heads
 * (syntax, framing facts, every smuggling vector the parser closes, limits
 * at and one past their bounds, heads fed in pieces), the chunked decoder,
 * and the response helpers. Each head is copied into an exact-size heap
 * block, so a sanitizer build catches any read past it.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "http_parse.h"

#define NHDR 128

static struct http_header hdrs[NHDR];
static struct http_request req;
static char *heap; /* the last parsed copy; req's pointers point into it */

static int parse_lim(const char *s, size_t n, const struct http_limits *lim) {
  free(heap);
  heap = malloc(n ? n : 1);
  if (heap == NULL)
    abort();
  memcpy(heap, s, n);
  memset(&req, 0xa5, sizeof req); /* outputs must all be set */
  req.headers = hdrs;
  req.max_headers = NHDR;
  return http_parse_request(heap, n, 0, &req, lim);
}

static int parse(const char *s) {
  return parse_lim(s, strlen(s), NULL);
}

/* A request with one extra header line (or several, "\r\n"-joined). */
static int parse_with(const char *lines) {
  char buf[4096];
  snprintf(buf, sizeof buf, "POST /x HTTP/1.1\r\nHost: h\r\n%s\r\n\r\n",
           lines);
  return parse(buf);
}

static int eq(const char *p, size_t n, const char *s) {
  return n == strlen(s) && memcmp(p, s, n) == 0;
}

static int inside(const char *p, size_t n, int head) {
  return p >= heap && p + n <= heap + head;
}

/* --- request line and fields -------------------------------------------- */

static void test_simple_get(void) {
  const char *s = "GET /index.html?x=1&y=2 HTTP/1.1\r\n"
                  "Host: example.com\r\n"
                  "User-Agent: t/1.0\r\n"
                  "\r\n";
  int n = parse(s);
  CHECK(n == (int)strlen(s));
  CHECK(eq(req.method, req.method_len, "GET"));
  CHECK(eq(req.target, req.target_len, "/index.html?x=1&y=2"));
  CHECK(eq(req.path, req.path_len, "/index.html"));
  CHECK(eq(req.query, req.query_len, "x=1&y=2"));
  CHECK(req.form == HTTP_FORM_ORIGIN && req.authority_len == 0);
  CHECK(req.minor_version == 1);
  CHECK(req.nheaders == 2);
  CHECK(eq(hdrs[0].name, hdrs[0].name_len, "Host"));
  CHECK(eq(hdrs[0].value, hdrs[0].value_len, "example.com"));
  CHECK(eq(hdrs[1].name, hdrs[1].name_len, "User-Agent"));
  CHECK(eq(hdrs[1].value, hdrs[1].value_len, "t/1.0"));
  CHECK(req.has_host && eq(req.host, req.host_len, "example.com"));
  CHECK(req.content_length == -1 && !req.chunked);
  CHECK(!req.conn_close && !req.conn_keepalive && !req.conn_upgrade);
  CHECK(!req.expect_continue && !req.has_upgrade);
  CHECK(inside(req.method, req.method_len, n));
  CHECK(inside(req.query, req.query_len, n));
}

static void test_no_query(void) {
  CHECK(parse("GET /a/b HTTP/1.0\r\n\r\n") > 0);
  CHECK(eq(req.path, req.path_len, "/a/b") && req.query_len == 0);
  CHECK(req.query == req.target + req.target_len);
  CHECK(req.minor_version == 0 && !req.has_host && req.nheaders == 0);
  CHECK(parse("GET /a? HTTP/1.0\r\n\r\n") > 0);
  CHECK(eq(req.path, req.path_len, "/a") && req.query_len == 0);
  CHECK(parse("GET /?a?b HTTP/1.0\r\n\r\n") > 0);
  CHECK(eq(req.path, req.path_len, "/") &&
        eq(req.query, req.query_len, "a?b"));
}

static void test_bare_lf(void) {
  const char *s = "GET / HTTP/1.1\nHost: a\nX: y\n\n";
  CHECK(parse(s) == (int)strlen(s));
  CHECK(req.nheaders == 2 && eq(hdrs[1].value, hdrs[1].value_len, "y"));
  s = "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\n";
  CHECK(parse(s) == (int)strlen(s));
  s = "GET / HTTP/1.1\nHost: a\n\r\n";
  CHECK(parse(s) == (int)strlen(s));
}

static void test_leading_empty_lines(void) {
  const char *s = "\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
  CHECK(parse(s) == (int)strlen(s));
  CHECK(eq(req.method, req.method_len, "GET"));
  char buf[256] = "";
  for (int i = 0; i < HTTP_MAX_EMPTY_LINES; i++)
    strcat(buf, "\r\n");
  strcat(buf, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK(parse(buf) == (int)strlen(buf));
  memmove(buf + 2, buf, strlen(buf) + 1); /* one more empty line */
  memcpy(buf, "\r\n", 2);
  CHECK(parse(buf) == HTTP_EEMPTY_LINES);
  CHECK(parse("\r\n\r\n\r\n\r\n\r\n\r\n") == HTTP_EEMPTY_LINES);
}

static void test_value_trimming(void) {
  CHECK(parse_with("X:  a b \t") > 0);
  CHECK(eq(hdrs[1].value, hdrs[1].value_len, "a b"));
  CHECK(parse_with("X:\ta\tb") > 0);
  CHECK(eq(hdrs[1].value, hdrs[1].value_len, "a\tb"));
  CHECK(parse_with("X:") > 0 && hdrs[1].value_len == 0);
  CHECK(parse_with("X: \t ") > 0 && hdrs[1].value_len == 0);
  CHECK(parse_with("X: caf\xc3\xa9 \x80\xff") > 0); /* obs-text */
  CHECK(eq(hdrs[1].value, hdrs[1].value_len, "caf\xc3\xa9 \x80\xff"));
  CHECK(parse_with("X: a:b: c") > 0);
  CHECK(eq(hdrs[1].value, hdrs[1].value_len, "a:b: c"));
  /* A long value takes the word-at-a-time path; a tab in the middle of it
   * drops to bytes and back. */
  char line[300];
  memset(line, 'v', sizeof line);
  memcpy(line, "X: ", 3);
  line[150] = '\t';
  line[sizeof line - 1] = '\0';
  CHECK(parse_with(line) > 0 && hdrs[1].value_len == sizeof line - 4);
  line[200] = '\x01';
  CHECK(parse_with(line) == HTTP_EBAD_VALUE);
}

static void test_pipelined(void) {
  const char *s = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
                  "POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
                  "abc"
                  "GET /three HTTP/1.0\r\n\r\n";
  size_t len = strlen(s);
  int n1 = parse_lim(s, len, NULL);
  CHECK(n1 == 30 && eq(req.path, req.path_len, "/one"));
  int n2 = parse_lim(s + n1, len - (size_t)n1, NULL);
  CHECK(n2 > 0 && eq(req.path, req.path_len, "/two"));
  CHECK(req.content_length == 3);
  size_t off = (size_t)n1 + (size_t)n2;
  CHECK(memcmp(s + off, "abc", 3) == 0);
  int n3 = parse_lim(s + off + 3, len - off - 3, NULL);
  CHECK(n3 == (int)(len - off - 3) && eq(req.path, req.path_len, "/three"));
}

static void test_header_names_case(void) {
  CHECK(parse_with("CONTENT-LENGTH: 7") > 0 && req.content_length == 7);
  CHECK(parse_with("content-length: 8") > 0 && req.content_length == 8);
  CHECK(parse_with("CoNnEcTiOn: CLOSE") > 0 && req.conn_close);
  CHECK(parse("GET / HTTP/1.1\r\nHOST: x\r\n\r\n") > 0 && req.has_host);
  /* Lookalikes are not the framing fields. */
  CHECK(parse_with("Content-Lengthx: 7") > 0 && req.content_length == -1);
  CHECK(parse_with("Content_Length: 7") > 0 && req.content_length == -1);
}

static void test_connection_and_friends(void) {
  CHECK(parse_with("Connection: keep-alive, Upgrade") > 0);
  CHECK(req.conn_keepalive && req.conn_upgrade && !req.conn_close);
  CHECK(parse_with("Connection: close") > 0 && req.conn_close);
  CHECK(parse_with("Connection: foo\r\nConnection: ,, Keep-Alive ,") > 0);
  CHECK(req.conn_keepalive && !req.conn_close);
  CHECK(parse_with("Connection: closed, keep-alive2") > 0);
  CHECK(!req.conn_close && !req.conn_keepalive);
  CHECK(parse_with("Upgrade: websocket") > 0 && req.has_upgrade);
  CHECK(parse_with("Expect: 100-continue") > 0 && req.expect_continue);
  CHECK(parse_with("Expect: 100-Continue") > 0 && req.expect_continue);
  CHECK(parse_with("Expect: 200-ok") > 0 && !req.expect_continue);
  CHECK(parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n") > 0);
  CHECK(!req.expect_continue);
}

static void test_content_length(void) {
  CHECK(parse_with("Content-Length: 0") > 0 && req.content_length == 0);
  CHECK(parse_with("Content-Length: 005") > 0 && req.content_length == 5);
  CHECK(parse_with("Content-Length: 9223372036854775807") > 0);
  CHECK(req.content_length == INT64_MAX);
  CHECK(parse_with("Content-Length: 9223372036854775808") ==
        HTTP_EBAD_CONTENT_LENGTH);
  CHECK(parse_with("Content-Length: 99999999999999999999") ==
        HTTP_EBAD_CONTENT_LENGTH);
  CHECK(parse_with("Content-Length:") == HTTP_EBAD_CONTENT_LENGTH);
  CHECK(parse_with("Content-Length: +5") == HTTP_EBAD_CONTENT_LENGTH);
  CHECK(parse_with("Content-Length: -1") == HTTP_EBAD_CONTENT_LENGTH);
  CHECK(parse_with("Content-Length: 0x5") == HTTP_EBAD_CONTENT_LENGTH);
  CHECK(parse_with("Content-Length: 5 5") == HTTP_EBAD_CONTENT_LENGTH);
  CHECK(parse_with("Content-Length: 5;") == HTTP_EBAD_CONTENT_LENGTH);
  CHECK(parse_with("Content-Length: 5,") == HTTP_EBAD_CONTENT_LENGTH);
  CHECK(parse_with("Content-Length: 5,,5") == HTTP_EBAD_CONTENT_LENGTH);
  CHECK(parse_with("Content-Length: ,5") == HTTP_EBAD_CONTENT_LENGTH);
  CHECK(parse_with("Content-Length: \xd9\xa5") == HTTP_EBAD_CONTENT_LENGTH);
}

/* --- request smuggling ------------------------------------------------- */

static void test_duplicate_content_length(void) {
  CHECK(parse_with("Content-Length: 5\r\nContent-Length: 6") ==
        HTTP_EDUP_CONTENT_LENGTH);
  CHECK(parse_with("Content-Length: 5, 6") == HTTP_EDUP_CONTENT_LENGTH);
  CHECK(parse_with("Content-Length: 6\r\nContent-Length: 6, 5") ==
        HTTP_EDUP_CONTENT_LENGTH);
  /* Identical values are one value (RFC 9110 §8.6). */
  CHECK(parse_with("Content-Length: 5\r\nContent-Length: 5") > 0);
  CHECK(req.content_length == 5 && req.nheaders == 3);
  CHECK(parse_with("Content-Length: 5, 5") > 0 && req.content_length == 5);
  CHECK(parse_with("Content-Length: 5 ,5 , 05") > 0);
  CHECK(req.content_length == 5);
}

static void test_cl_and_te(void) {
  CHECK(parse_with("Content-Length: 5\r\nTransfer-Encoding: chunked") ==
        HTTP_ECL_AND_TE);
  CHECK(parse_with("Transfer-Encoding: chunked\r\nContent-Length: 5") ==
        HTTP_ECL_AND_TE);
  CHECK(parse_with("Transfer-Encoding: chunked\r\nContent-Length: 0") ==
        HTTP_ECL_AND_TE);
}

static void test_transfer_encoding(void) {
  CHECK(parse_with("Transfer-Encoding: chunked") > 0 && req.chunked);
  CHECK(req.content_length == -1);
  CHECK(parse_with("Transfer-Encoding: CHUNKED") > 0 && req.chunked);
  CHECK(parse_with("Transfer-Encoding: , chunked ,") > 0 && req.chunked);
  /* chunked must be the final coding, and only once (400). */
  CHECK(parse_with("Transfer-Encoding: chunked, gzip") ==
        HTTP_ECHUNKED_NOT_LAST);
  CHECK(parse_with("Transfer-Encoding: gzip") == HTTP_ECHUNKED_NOT_LAST);
  CHECK(parse_with("Transfer-Encoding: chunked, chunked") ==
        HTTP_ECHUNKED_NOT_LAST);
  CHECK(parse_with("Transfer-Encoding: chunked\r\n"
                   "Transfer-Encoding: chunked") == HTTP_ECHUNKED_NOT_LAST);
  CHECK(parse_with("Transfer-Encoding: chunked\r\n"
                   "Transfer-Encoding: identity") == HTTP_ECHUNKED_NOT_LAST);
  /* Another coding before chunked, known or not: 501. */
  CHECK(parse_with("Transfer-Encoding: gzip, chunked") ==
        HTTP_ETE_UNSUPPORTED);
  CHECK(parse_with("Transfer-Encoding: gzip\r\n"
                   "Transfer-Encoding: chunked") == HTTP_ETE_UNSUPPORTED);
  CHECK(parse_with("Transfer-Encoding: foo;q=1, chunked") ==
        HTTP_ETE_UNSUPPORTED);
  /* Malformed lists. */
  CHECK(parse_with("Transfer-Encoding:") == HTTP_EBAD_TE);
  CHECK(parse_with("Transfer-Encoding: ,") == HTTP_EBAD_TE);
  CHECK(parse_with("Transfer-Encoding: chunked;x=y") == HTTP_EBAD_TE);
  CHECK(parse_with("Transfer-Encoding: \"chunked\"") == HTTP_EBAD_TE);
  CHECK(parse_with("Transfer-Encoding: chun ked") == HTTP_EBAD_TE);
  CHECK(parse_with("Transfer-Encoding: chunked\x0b") == HTTP_EBAD_VALUE);
  /* HTTP/1.0 has no Transfer-Encoding (RFC 9112 §6.1). */
  CHECK(parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") ==
        HTTP_EBAD_TE);
}

static void test_space_before_colon(void) {
  CHECK(parse_with("Content-Length : 5") == HTTP_EHEADER_SPACE);
  CHECK(parse_with("Transfer-Encoding\t: chunked") == HTTP_EHEADER_SPACE);
  CHECK(parse_with("X Y: z") == HTTP_EHEADER_SPACE);
}

static void test_obs_fold(void) {
  CHECK(parse_with("X: a\r\n b") == HTTP_EOBS_FOLD);
  CHECK(parse_with("X: a\r\n\tb") == HTTP_EOBS_FOLD);
  CHECK(parse("GET / HTTP/1.1\r\n Host: a\r\n\r\n") == HTTP_EOBS_FOLD);
  CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\n \r\n\r\n") == HTTP_EOBS_FOLD);
}

static void test_bad_tokens(void) {
  CHECK(parse("G(ET / HTTP/1.1\r\nHost: a\r\n\r\n") == HTTP_EBAD_METHOD);
  CHECK(parse("GE\x80T / HTTP/1.1\r\nHost: a\r\n\r\n") == HTTP_EBAD_METHOD);
  CHECK(parse(" GET / HTTP/1.1\r\nHost: a\r\n\r\n") == HTTP_EBAD_METHOD);
  CHECK(parse("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n") == HTTP_EBAD_METHOD);
  CHECK(parse("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n") == HTTP_EBAD_TARGET);
  CHECK(parse("PATCH! /x HTTP/1.1\r\nHost: a\r\n\r\n") > 0);
  CHECK(parse_with("X@Y: a") == HTTP_EBAD_HEADER_NAME);
  CHECK(parse_with("X\"Y: a") == HTTP_EBAD_HEADER_NAME);
  CHECK(parse_with("X\x80: a") == HTTP_EBAD_HEADER_NAME);
  CHECK(parse_with(": a") == HTTP_EBAD_HEADER_NAME);
  CHECK(parse_with("NoColon") == HTTP_EBAD_HEADER_NAME);
  CHECK(parse_with("X\x01Y: a") == HTTP_EBAD_HEADER_NAME);
  CHECK(parse_with("X-Y_z.1~!#$%&'*+^`|: ok") > 0);
}

static void test_control_chars(void) {
  CHECK(parse_with("X: a\x01" "b") == HTTP_EBAD_VALUE);
  CHECK(parse_with("X: a\x7f" "b") == HTTP_EBAD_VALUE);
  CHECK(parse_with("X: a\x1f") == HTTP_EBAD_VALUE);
  /* Inside a long value, where whole words are tested at once. */
  CHECK(parse_with("X: abcdefghijklmnop\x7fqrstuvwxyz0123456789") ==
        HTTP_EBAD_VALUE);
  CHECK(parse_with("X: abcdefghijklmnop\x0bqrstuvwxyz0123456789") ==
        HTTP_EBAD_VALUE);
  CHECK(parse("GET /abcdefghijklmnop\x7fqrstuvwxyz HTTP/1.1\r\n"
              "Host: a\r\n\r\n") == HTTP_EBAD_TARGET);
  static const char nul[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
  CHECK(parse_lim(nul, sizeof nul - 1, NULL) == HTTP_EBAD_VALUE);
  CHECK(parse_with("X: a\tb") > 0);
  CHECK(parse("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n") == HTTP_EBAD_TARGET);
  CHECK(parse("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n") == HTTP_EBAD_TARGET);
  CHECK(parse("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n") == HTTP_EBAD_TARGET);
}

static void test_bare_cr(void) {
  CHECK(parse_with("X: a\rb") == HTTP_EBARE_CR);
  CHECK(parse_with("X: a\r") == HTTP_EBARE_CR); /* "\r\r\n" */
  CHECK(parse_with("X\rY: a") == HTTP_EBARE_CR);
  CHECK(parse("GET / HTTP/1.1\rHost: a\r\n\r\n") == HTTP_EBARE_CR);
  CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n\r\n") == HTTP_EBARE_CR);
  CHECK(parse("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n") == HTTP_EBARE_CR);
}

static void test_host(void) {
  CHECK(parse("GET / HTTP/1.1\r\n\r\n") == HTTP_ENO_HOST);
  CHECK(parse("GET / HTTP/1.1\r\nX: a\r\n\r\n") == HTTP_ENO_HOST);
  CHECK(parse("GET / HTTP/1.0\r\n\r\n") > 0 && !req.has_host);
  CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n") ==
        HTTP_EDUP_HOST);
  CHECK(parse("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n") ==
        HTTP_EDUP_HOST);
  CHECK(parse("GET / HTTP/1.1\r\nHost:\r\n\r\n") > 0);
  CHECK(req.has_host && req.host_len == 0);
  CHECK(parse("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n") > 0);
  CHECK(eq(req.host, req.host_len, "[::1]:8080"));
  CHECK(parse("GET / HTTP/1.1\r\nHost: a b\r\n\r\n") == HTTP_EBAD_HOST);
  CHECK(parse("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n") == HTTP_EBAD_HOST);
  CHECK(parse("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n") == HTTP_EBAD_HOST);
  /* A lenient server accepts HTTP/1.1 without Host; one Host is still
   * checked, and two are still an error. */
  struct http_limits lax = HTTP_LIMITS_DEFAULT;
  lax.host_optional = 1;
  const char *nohost = "GET / HTTP/1.1\r\nX: a\r\n\r\n";
  CHECK(parse_lim(nohost, strlen(nohost), &lax) == (int)strlen(nohost));
  CHECK(!req.has_host && req.nheaders == 1);
  const char *two = "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n";
  CHECK(parse_lim(two, strlen(two), &lax) == HTTP_EDUP_HOST);
  const char *bad = "GET / HTTP/1.1\r\nHost: a b\r\n\r\n";
  CHECK(parse_lim(bad, strlen(bad), &lax) == HTTP_EBAD_HOST);
}

static void test_version(void) {
  CHECK(parse("GET / HTTP/1.2\r\nHost: a\r\n\r\n") == HTTP_EVERSION);
  CHECK(parse("GET / HTTP/2.0\r\nHost: a\r\n\r\n") == HTTP_EVERSION);
  CHECK(parse("GET / HTTP/0.9\r\nHost: a\r\n\r\n") == HTTP_EVERSION);
  CHECK(parse("GET / HTTP/1.1 \r\nHost: a\r\n\r\n") == HTTP_EBAD_VERSION);
  CHECK(parse("GET / http/1.1\r\nHost: a\r\n\r\n") == HTTP_EBAD_VERSION);
  CHECK(parse("GET / HTTP/1\r\nHost: a\r\n\r\n") == HTTP_EBAD_VERSION);
  CHECK(parse("GET / HTTP/11.1\r\nHost: a\r\n\r\n") == HTTP_EBAD_VERSION);
  CHECK(parse("GET / HTTP/1.1x\r\nHost: a\r\n\r\n") == HTTP_EBAD_VERSION);
  CHECK(parse("GET / HTTP/1.10\r\nHost: a\r\n\r\n") == HTTP_EBAD_VERSION);
  /* A short broken version with the head ended must not wait for bytes
   * (the parser may only run out at the very end of the input). */
  CHECK(parse("GET / HTTP\n\n") == HTTP_EBAD_VERSION);
  CHECK(parse("GET / HTTP/1.\r\n\r\n") == HTTP_EBAD_VERSION);
}

static void test_request_line_shape(void) {
  CHECK(parse("GET  / HTTP/1.1\r\nHost: a\r\n\r\n") == HTTP_EBAD_LINE);
  CHECK(parse("GET /  HTTP/1.1\r\nHost: a\r\n\r\n") == HTTP_EBAD_VERSION);
  CHECK(parse("GET /\r\nHost: a\r\n\r\n") == HTTP_EBAD_LINE);
  CHECK(parse("GET\r\nHost: a\r\n\r\n") == HTTP_EBAD_LINE);
  CHECK(parse("GET / HTTP/1.1 x\r\nHost: a\r\n\r\n") == HTTP_EBAD_VERSION);
  CHECK(parse("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n") > 0);
}

static void test_target_forms(void) {
  CHECK(parse("GET http://example.com:80/a/b?q=1 HTTP/1.1\r\n"
              "Host: example.com\r\n\r\n") > 0);
  CHECK(req.form == HTTP_FORM_ABSOLUTE);
  CHECK(eq(req.authority, req.authority_len, "example.com:80"));
  CHECK(eq(req.path, req.path_len, "/a/b"));
  CHECK(eq(req.query, req.query_len, "q=1"));
  CHECK(parse("GET https://h HTTP/1.1\r\nHost: h\r\n\r\n") > 0);
  CHECK(eq(req.authority, req.authority_len, "h") && req.path_len == 0);
  CHECK(parse("GET http://h?x/y HTTP/1.1\r\nHost: h\r\n\r\n") > 0);
  CHECK(eq(req.authority, req.authority_len, "h") && req.path_len == 0);
  CHECK(eq(req.query, req.query_len, "x/y"));
  CHECK(parse("GET http:// HTTP/1.1\r\nHost: h\r\n\r\n") == HTTP_EBAD_TARGET);
  CHECK(parse("GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n") ==
        HTTP_EBAD_TARGET);
  CHECK(parse("GET urn:x HTTP/1.1\r\nHost: h\r\n\r\n") == HTTP_EBAD_TARGET);
  CHECK(parse("GET x HTTP/1.1\r\nHost: h\r\n\r\n") == HTTP_EBAD_TARGET);
  CHECK(parse("GET 1http://h/ HTTP/1.1\r\nHost: h\r\n\r\n") ==
        HTTP_EBAD_TARGET);
  CHECK(parse("CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n") > 0);
  CHECK(req.form == HTTP_FORM_AUTHORITY);
  CHECK(eq(req.authority, req.authority_len, "example.com:443"));
  CHECK(req.path_len == 0 && req.query_len == 0);
  CHECK(parse("CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n") == HTTP_EBAD_TARGET);
  CHECK(parse("CONNECT h HTTP/1.1\r\nHost: x\r\n\r\n") == HTTP_EBAD_TARGET);
  CHECK(parse("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n") > 0);
  CHECK(req.form == HTTP_FORM_ASTERISK && eq(req.path, req.path_len, "*"));
  CHECK(parse("GET * HTTP/1.1\r\nHost: x\r\n\r\n") == HTTP_EBAD_TARGET);
  CHECK(parse("OPTIONS *x HTTP/1.1\r\nHost: x\r\n\r\n") == HTTP_EBAD_TARGET);
}

/* --- incomplete heads and pieces --------------------------------------- */

static void test_every_prefix_incomplete(void) {
  const char *s = "\r\nPOST /p?q HTTP/1.1\r\nHost: h\r\n"
                  "Content-Length: 3\r\nX:\t y \r\n\r\n";
  size_t len = strlen(s);
  for (size_t i = 0; i < len; i++)
    CHECK(parse_lim(s, i, NULL) == HTTP_INCOMPLETE);
  CHECK(parse_lim(s, len, NULL) == (int)len);
}

/* Syntax is judged once the head is complete; before that only limits. */
static void test_errors_wait_for_the_end(void) {
  CHECK(parse("G(ET / HTTP/1.1\r\nHost: a\r\n") == HTTP_INCOMPLETE);
  CHECK(parse("G(ET / HTTP/1.1\r\nHost: a\r\n\r\n") == HTTP_EBAD_METHOD);
  CHECK(parse_lim("\x16\x03\x01\x02\x00\x01\x00\x01", 8, NULL) ==
        HTTP_INCOMPLETE);
}

/* Feed `s` one byte at a time with last_len; the first non-INCOMPLETE
 * answer must equal the answer for all the bytes at once, at the same
 * length. Returns that answer. */
static int feed_bytewise(const char *s, size_t len,
                         const struct http_limits *lim, size_t *at) {
  char *buf = malloc(len ? len : 1);
  if (buf == NULL)
    abort();
  memcpy(buf, s, len);
  struct http_header h2[NHDR];
  struct http_request r2 = {.headers = h2, .max_headers = NHDR};
  int r = HTTP_INCOMPLETE;
  size_t last = 0;
  for (size_t n = 1; n <= len && r == HTTP_INCOMPLETE; n++) {
    r = http_parse_request(buf, n, last, &r2, lim);
    last = n;
  }
  *at = last;
  free(buf);
  return r;
}

static void check_same_bytewise(const char *s, const struct http_limits *lim) {
  size_t len = strlen(s), at = 0;
  int piecewise = feed_bytewise(s, len, lim, &at);
  int whole = parse_lim(s, at, lim);
  CHECK(piecewise == whole);
  if (piecewise != whole)
    printf("  pieces %d, whole %d: %s\n", piecewise, whole, s);
  /* A final answer does not change with more bytes after it. */
  if (piecewise != HTTP_INCOMPLETE)
    CHECK(parse_lim(s, len, lim) == piecewise);
}

static void test_bytewise_same_result(void) {
  static const char *const heads[] = {
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "\r\n\nGET /x?y HTTP/1.0\nA: b\n\n",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nZ",
    "G(ET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
    "GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nHost: a\r\n\r\n",
    "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n"
    "X: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n\r\n", /* 431 if small */
    "G(T /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n",
    "\n\n\n\n\n\n\n",
    "GET / HTTP\n\n",
  };
  const struct http_limits small = {32, 64, 4, 0};
  for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
    check_same_bytewise(heads[i], NULL);
    check_same_bytewise(heads[i], &small);
  }
  /* And the successful parse's fields are the same. */
  size_t at;
  const char *s = "GET /a?b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  CHECK(feed_bytewise(s, strlen(s), NULL, &at) == (int)strlen(s));
}

/* last_len means the old bytes are not searched again for the end of the
 * head: plant a fake end in them after an INCOMPLETE answer (a contract
 * violation, on purpose) and the parser must not see it. */
static void test_last_len_skips_old_bytes(void) {
  char buf[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Long-Header: 0123456789";
  size_t len = strlen(buf);
  struct http_request r = {.headers = hdrs, .max_headers = NHDR};
  CHECK(http_parse_request(buf, len, 0, &r, NULL) == HTTP_INCOMPLETE);
  memcpy(buf + 24, "\n\r\n", 3); /* "Host: a\r\n\r\n" now ends a head */
  CHECK(http_parse_request(buf, len, len, &r, NULL) == HTTP_INCOMPLETE);
  CHECK(http_parse_request(buf, len, 0, &r, NULL) == 27);
}

/* --- limits ------------------------------------------------------------ */

/* "GET /aaa...a HTTP/1.1": a request line of exactly n bytes. */
static char *request_line(size_t n, const char *rest) {
  size_t rlen = strlen(rest);
  char *s = malloc(n + 2 + rlen + 1);
  if (s == NULL)
    abort();
  memcpy(s, "GET /", 5);
  memset(s + 5, 'a', n - 14);
  memcpy(s + n - 9, " HTTP/1.1\r\n", 11);
  memcpy(s + n + 2, rest, rlen + 1);
  return s;
}

static void test_max_line(void) {
  const struct http_limits lim = {64, 65536, 100, 0};
  char *s = request_line(64, "Host: a\r\n\r\n");
  CHECK(parse_lim(s, strlen(s), &lim) == (int)strlen(s));
  free(s);
  s = request_line(65, "Host: a\r\n\r\n");
  CHECK(parse_lim(s, strlen(s), &lim) == HTTP_EURI_TOO_LONG);
  /* Decided without the end of the head: 66 bytes of line are enough. */
  CHECK(parse_lim(s, 65, &lim) == HTTP_INCOMPLETE);
  CHECK(parse_lim(s, 66, &lim) == HTTP_EURI_TOO_LONG);
  free(s);
  s = request_line(64, "Host: a\r\n"); /* fine line, head goes on */
  CHECK(parse_lim(s, strlen(s), &lim) == HTTP_INCOMPLETE);
  free(s);
  /* Bare LF: 64 bytes then LF is fine, 65 is not. */
  s = request_line(64, "Host: a\n\n");
  memcpy(s + 64, "\n", 1);
  memmove(s + 65, s + 66, strlen(s + 66) + 1);
  CHECK(parse_lim(s, strlen(s), &lim) == (int)strlen(s));
  free(s);
  /* A limit comes before syntax: a bad method on a long line is 414. */
  s = request_line(65, "Host: a\r\n\r\n");
  s[0] = '(';
  CHECK(parse_lim(s, strlen(s), &lim) == HTTP_EURI_TOO_LONG);
  free(s);
}

/* A head of exactly `total` bytes: request line, Host, X: vvv, CRLF. */
static char *head_of(size_t total) {
  static const char pre[] = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
  size_t plen = sizeof pre - 1;
  char *s = malloc(total + 1);
  if (s == NULL)
    abort();
  memcpy(s, pre, plen);
  memset(s + plen, 'v', total - plen - 4);
  memcpy(s + total - 4, "\r\n\r\n", 5);
  return s;
}

static void test_max_header_bytes(void) {
  const struct http_limits lim = {8192, 200, 100, 0};
  char *s = head_of(200);
  CHECK(parse_lim(s, 200, &lim) == 200);
  free(s);
  s = head_of(201);
  CHECK(parse_lim(s, 201, &lim) == HTTP_EHEADERS_TOO_LARGE);
  CHECK(parse_lim(s, 200, &lim) == HTTP_INCOMPLETE);
  free(s);
  /* Without an end in sight, 201 bytes decide it. */
  s = head_of(1000);
  CHECK(parse_lim(s, 200, &lim) == HTTP_INCOMPLETE);
  CHECK(parse_lim(s, 201, &lim) == HTTP_EHEADERS_TOO_LARGE);
  /* And before syntax. */
  s[0] = '(';
  CHECK(parse_lim(s, 1000, &lim) == HTTP_EHEADERS_TOO_LARGE);
  free(s);
  /* Leading empty lines count: they are part of what is consumed. */
  s = head_of(200);
  char *t = malloc(203);
  if (t == NULL)
    abort();
  memcpy(t, "\r\n", 2);
  memcpy(t + 2, s, 201);
  CHECK(parse_lim(t, 202, &lim) == HTTP_EHEADERS_TOO_LARGE);
  free(t);
  free(s);
}

static void test_max_headers(void) {
  const struct http_limits lim = {8192, 65536, 3, 0};
  const char *s = "GET / HTTP/1.1\r\nHost: a\r\nB: b\r\nC: c\r\n\r\n";
  CHECK(parse_lim(s, strlen(s), &lim) == (int)strlen(s));
  CHECK(req.nheaders == 3);
  s = "GET / HTTP/1.1\r\nHost: a\r\nB: b\r\nC: c\r\nD: d\r\n\r\n";
  CHECK(parse_lim(s, strlen(s), &lim) == HTTP_ETOO_MANY_HEADERS);
  /* The caller's array is a limit too. */
  s = "GET / HTTP/1.1\r\nHost: a\r\nB: b\r\n\r\n";
  struct http_header two[2];
  struct http_request r = {.headers = two, .max_headers = 2};
  CHECK(http_parse_request(s, strlen(s), 0, &r, NULL) == (int)strlen(s));
  r.max_headers = 1;
  CHECK(http_parse_request(s, strlen(s), 0, &r, NULL) ==
        HTTP_ETOO_MANY_HEADERS);
}

static void test_default_limits(void) {
  const struct http_limits d = HTTP_LIMITS_DEFAULT;
  CHECK(d.max_line == 8192 && d.max_header_bytes == 65536);
  CHECK(d.max_headers == 100);
  char *s = request_line(8193, "Host: a\r\n\r\n");
  CHECK(parse_lim(s, strlen(s), NULL) == HTTP_EURI_TOO_LONG);
  free(s);
  s = request_line(8192, "Host: a\r\n\r\n");
  CHECK(parse_lim(s, strlen(s), NULL) == (int)strlen(s));
  free(s);
}

/* A head of exactly the default 64 KiB, fed a byte at a time with
 * last_len: complete at its last byte, not a byte earlier. */
static void test_slow_feed_64k(void) {
  char *s = head_of(65536);
  struct http_request r = {.headers = hdrs, .max_headers = NHDR};
  int res = HTTP_INCOMPLETE;
  size_t n = 0;
  while (res == HTTP_INCOMPLETE && n < 65536) {
    n++;
    res = http_parse_request(s, n, n - 1, &r, NULL);
  }
  CHECK(res == 65536 && n == 65536);
  free(s);
}

/* --- errors ---------------------------------------------------------- */

static void test_error_codes(void) {
  for (int code = -1; code >= HTTP_ETRAILER_TOO_LARGE; code--) {
    int st = http_error_status(code);
    const char *msg = http_strerror(code);
    CHECK(strcmp(msg, "unknown error") != 0);
    for (int other = -1; other > code; other--)
      CHECK(strcmp(msg, http_strerror(other)) != 0);
    switch (code) {
    case HTTP_EURI_TOO_LONG: CHECK(st == 414); break;
    case HTTP_EHEADERS_TOO_LARGE:
    case HTTP_ETOO_MANY_HEADERS: CHECK(st == 431); break;
    case HTTP_ETE_UNSUPPORTED: CHECK(st == 501); break;
    case HTTP_EVERSION: CHECK(st == 505); break;
    default: CHECK(st == 400);
    }
  }
  CHECK(strcmp(http_strerror(HTTP_ETRAILER_TOO_LARGE - 1), "unknown error") ==
        0);
  CHECK(strcmp(http_strerror(5), "unknown error") == 0);
}

/* --- chunked bodies ---------------------------------------------------- */

/* Decode s[0..n) in pieces of `step` bytes (0: all at once) into out;
 * returns the final result and sets *used to the bytes consumed. */
static int dechunk(const char *s, size_t n, size_t step, struct http_chunked *c,
                   char *out, size_t *outlen, size_t *used) {
  size_t pos = 0, o = 0, limit = step ? 0 : n;
  int r = HTTP_CHUNK_MORE;
  *used = 0;
  for (;;) {
    if (step && limit < n)
      limit = limit + step < n ? limit + step : n;
    size_t consumed, off, dl;
    r = http_chunked_next(c, s + pos, limit - pos, &consumed, &off, &dl);
    if (r == HTTP_CHUNK_DATA) {
      memcpy(out + o, s + pos + off, dl);
      o += dl;
      CHECK(off + dl == consumed && dl > 0);
    }
    pos += consumed; /* on an error: the offending byte */
    if (r < 0 || r == HTTP_CHUNK_DONE || (r == HTTP_CHUNK_MORE && limit == n))
      break;
  }
  *outlen = o;
  *used = pos;
  return r;
}

static void test_chunked_basic(void) {
  const char *s = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /next";
  size_t n = strlen(s), outlen, used;
  char out[64];
  struct http_chunked c = {0};
  CHECK(dechunk(s, n, 0, &c, out, &outlen, &used) == HTTP_CHUNK_DONE);
  CHECK(outlen == 11 && memcmp(out, "hello world", 11) == 0);
  CHECK(used == n - 9); /* stops before the next message */
  /* DONE is sticky and consumes nothing. */
  size_t consumed = 99, off, dl;
  CHECK(http_chunked_next(&c, "x", 1, &consumed, &off, &dl) ==
        HTTP_CHUNK_DONE);
  CHECK(consumed == 0 && dl == 0);
}

static void test_chunked_pieces_same(void) {
  const char *s = "1a;ext=\"v\"\r\nabcdefghijklmnopqrstuvwxyz\r\n"
                  "A \t; a ; b=c\r\n0123456789\r\n"
                  "0003\r\nxyz\r\n0;last\r\nTrailer-A: 1\r\nB:\r\n\r\n";
  size_t n = strlen(s);
  char whole[128], piece[128];
  size_t wl, pl, wu, pu;
  struct http_chunked c = {0};
  CHECK(dechunk(s, n, 0, &c, whole, &wl, &wu) == HTTP_CHUNK_DONE);
  CHECK(wl == 39 && wu == n);
  CHECK(memcmp(whole, "abcdefghijklmnopqrstuvwxyz0123456789xyz", 39) == 0);
  for (size_t step = 1; step <= 17; step++) {
    struct http_chunked d = {0};
    CHECK(dechunk(s, n, step, &d, piece, &pl, &pu) == HTTP_CHUNK_DONE);
    CHECK(pl == wl && pu == n && memcmp(piece, whole, wl) == 0);
  }
}

static int chunked_result(const char *s, size_t max_line, size_t max_trailer,
                          size_t *at) {
  struct http_chunked c = {0};
  c.max_chunk_line = max_line;
  c.max_trailer_bytes = max_trailer;
  char out[256];
  size_t outlen, used;
  int r = dechunk(s, strlen(s), 0, &c, out, &outlen, &used);
  if (r < 0) { /* the error repeats, consuming nothing */
    size_t consumed = 99, off, dl;
    CHECK(http_chunked_next(&c, "0\r\n\r\n", 5, &consumed, &off, &dl) == r);
    CHECK(consumed == 0);
    /* dechunk stops at the error: the offset is within that call. */
    *at = used;
  }
  return r;
}

static int chunked(const char *s) {
  size_t at;
  return chunked_result(s, 0, 0, &at);
}

static void test_chunked_sizes(void) {
  CHECK(chunked("A\r\n0123456789\r\n0\r\n\r\n") == HTTP_CHUNK_DONE);
  CHECK(chunked("a\r\n0123456789\r\n0\r\n\r\n") == HTTP_CHUNK_DONE);
  CHECK(chunked("000a\r\n0123456789\r\n0000\r\n\r\n") == HTTP_CHUNK_DONE);
  CHECK(chunked("\r\n") == HTTP_ECHUNK_SIZE);
  CHECK(chunked(";a\r\n") == HTTP_ECHUNK_SIZE);
  CHECK(chunked(" \r\n") == HTTP_ECHUNK_SIZE);
  CHECK(chunked("g\r\n") == HTTP_ECHUNK_SIZE);
  CHECK(chunked("-1\r\n") == HTTP_ECHUNK_SIZE);
  CHECK(chunked("+1\r\n") == HTTP_ECHUNK_SIZE);
  CHECK(chunked("0x5\r\n") == HTTP_ECHUNK_SIZE);
  CHECK(chunked(" 5\r\n") == HTTP_ECHUNK_SIZE);
  CHECK(chunked("5 \r\nhello\r\n") == HTTP_ECHUNK_SIZE);
  CHECK(chunked("5 x\r\n") == HTTP_ECHUNK_SIZE);
  CHECK(chunked("7fffffffffffffff\r\nabc") == HTTP_CHUNK_MORE);
  CHECK(chunked("8000000000000000\r\n") == HTTP_ECHUNK_OVERFLOW);
  CHECK(chunked("ffffffffffffffffff\r\n") == HTTP_ECHUNK_OVERFLOW);
  CHECK(chunked("00000000000000000000000001\r\nx\r\n0\r\n\r\n") ==
        HTTP_CHUNK_DONE);
}

static void test_chunked_crlf(void) {
  size_t at = 0;
  CHECK(chunked("5\nhello\r\n0\r\n\r\n") == HTTP_ECHUNK_CRLF);
  CHECK(chunked("5\rhello\r\n0\r\n\r\n") == HTTP_ECHUNK_CRLF);
  CHECK(chunked_result("5\r\nhelloX\r\n0\r\n\r\n", 0, 0, &at) ==
        HTTP_ECHUNK_CRLF);
  CHECK(at == 8); /* the offending byte, after the data span */
  CHECK(chunked("5\r\nhello\n0\r\n\r\n") == HTTP_ECHUNK_CRLF);
  CHECK(chunked("5\r\nhello\r0\r\n\r\n") == HTTP_ECHUNK_CRLF);
  CHECK(chunked("0\r\n\n") == HTTP_ECHUNK_CRLF);
  CHECK(chunked("0\r\n\rX") == HTTP_ECHUNK_CRLF);
  CHECK(chunked("0\n\r\n") == HTTP_ECHUNK_CRLF);
}

static void test_chunked_extensions(void) {
  CHECK(chunked("5;a=b\r\nhello\r\n0\r\n\r\n") == HTTP_CHUNK_DONE);
  CHECK(chunked("5 ;a\r\nhello\r\n0\r\n\r\n") == HTTP_CHUNK_DONE);
  CHECK(chunked("5;a=\"x y\"\r\nhello\r\n0;z\r\n\r\n") == HTTP_CHUNK_DONE);
  CHECK(chunked("5;a\x01\r\nhello\r\n0\r\n\r\n") == HTTP_ECHUNK_EXT);
  CHECK(chunked("5;a\x7f\r\nhello\r\n0\r\n\r\n") == HTTP_ECHUNK_EXT);
  CHECK(chunked("5;a\nhello\r\n0\r\n\r\n") == HTTP_ECHUNK_CRLF);
  CHECK(chunked("5;a\rhello\r\n0\r\n\r\n") == HTTP_ECHUNK_CRLF);
}

static void test_chunked_line_limit(void) {
  size_t at;
  /* 8 bytes before the CR: at the bound, then one past it. */
  CHECK(chunked_result("5;123456\r\nhello\r\n0\r\n\r\n", 8, 0, &at) ==
        HTTP_CHUNK_DONE);
  CHECK(chunked_result("5;1234567\r\nhello\r\n0\r\n\r\n", 8, 0, &at) ==
        HTTP_ECHUNK_LINE_TOO_LONG);
  CHECK(chunked_result("000000005\r\nhello\r\n0\r\n\r\n", 8, 0, &at) ==
        HTTP_ECHUNK_LINE_TOO_LONG);
  CHECK(chunked_result("00000005\r\nhello\r\n0\r\n\r\n", 8, 0, &at) ==
        HTTP_CHUNK_DONE);
  /* The default bound. */
  char big[HTTP_CHUNK_LINE_DEFAULT + 16];
  memset(big, ' ', sizeof big);
  memcpy(big, "1;", 2);
  memcpy(big + HTTP_CHUNK_LINE_DEFAULT, "\r\nx\r\n0\r\n\r\n", 11);
  CHECK(chunked(big) == HTTP_CHUNK_DONE);
  memcpy(big + HTTP_CHUNK_LINE_DEFAULT, " \r\nx\r\n0\r\n\r\n", 12);
  CHECK(chunked(big) == HTTP_ECHUNK_LINE_TOO_LONG);
}

static void test_chunked_trailers(void) {
  size_t at;
  CHECK(chunked("0\r\nA: 1\r\nBb-c:\tx y\r\n\r\n") == HTTP_CHUNK_DONE);
  CHECK(chunked("0\r\n A: 1\r\n\r\n") == HTTP_EBAD_TRAILER);
  CHECK(chunked("0\r\nA 1\r\n\r\n") == HTTP_EBAD_TRAILER);
  CHECK(chunked("0\r\n: 1\r\n\r\n") == HTTP_EBAD_TRAILER);
  CHECK(chunked("0\r\nA : 1\r\n\r\n") == HTTP_EBAD_TRAILER);
  CHECK(chunked("0\r\nA: \x01\r\n\r\n") == HTTP_EBAD_TRAILER);
  CHECK(chunked("0\r\nA: 1\n\r\n") == HTTP_ECHUNK_CRLF);
  CHECK(chunked("0\r\nA\r\n\r\n") == HTTP_EBAD_TRAILER);
  /* "A: 1\r\n" is 6 bytes: at a 6-byte bound, and one past it. */
  CHECK(chunked_result("0\r\nA: 1\r\n\r\n", 0, 6, &at) == HTTP_CHUNK_DONE);
  CHECK(chunked_result("0\r\nA: 12\r\n\r\n", 0, 6, &at) ==
        HTTP_ETRAILER_TOO_LARGE);
  CHECK(chunked_result("0\r\n\r\n", 0, 1, &at) == HTTP_CHUNK_DONE);
}

static void test_chunked_empty_input(void) {
  struct http_chunked c = {0};
  size_t consumed = 9, off = 9, dl = 9;
  CHECK(http_chunked_next(&c, "", 0, &consumed, &off, &dl) ==
        HTTP_CHUNK_MORE);
  CHECK(consumed == 0 && dl == 0);
  CHECK(http_chunked_next(&c, "3\r\n", 3, &consumed, &off, &dl) ==
        HTTP_CHUNK_MORE);
  CHECK(consumed == 3);
  CHECK(http_chunked_next(&c, "", 0, &consumed, &off, &dl) ==
        HTTP_CHUNK_MORE);
  CHECK(http_chunked_next(&c, "ab", 2, &consumed, &off, &dl) ==
        HTTP_CHUNK_DATA);
  CHECK(off == 0 && dl == 2 && consumed == 2);
  CHECK(http_chunked_next(&c, "c\r\n0\r\n\r\n", 8, &consumed, &off, &dl) ==
        HTTP_CHUNK_DATA);
  CHECK(off == 0 && dl == 1 && consumed == 1);
  CHECK(http_chunked_next(&c, "\r\n0\r\n\r\n", 7, &consumed, &off, &dl) ==
        HTTP_CHUNK_DONE);
  CHECK(consumed == 7);
}

/* --- response helpers -------------------------------------------------- */

static void test_status_line(void) {
  char out[64];
  size_t n = http_status_line(200, 1, out, sizeof out);
  CHECK(eq(out, n, "HTTP/1.1 200 OK\r\n"));
  n = http_status_line(404, 0, out, sizeof out);
  CHECK(eq(out, n, "HTTP/1.0 404 Not Found\r\n"));
  n = http_status_line(431, 1, out, sizeof out);
  CHECK(eq(out, n, "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
  n = http_status_line(599, 1, out, sizeof out);
  CHECK(eq(out, n, "HTTP/1.1 599 \r\n"));
  CHECK(http_status_line(99, 1, out, sizeof out) == 0);
  CHECK(http_status_line(1000, 1, out, sizeof out) == 0);
  CHECK(http_status_line(200, 2, out, sizeof out) == 0);
  CHECK(http_status_line(200, 1, out, 17) == 17);
  CHECK(http_status_line(200, 1, out, 16) == 0);
  CHECK(strcmp(http_reason(101), "Switching Protocols") == 0);
  CHECK(strcmp(http_reason(413), "Content Too Large") == 0);
  CHECK(strcmp(http_reason(299), "") == 0);
}

static void test_date(void) {
  char out[30];
  CHECK(http_date(784111777, out) == 29);
  CHECK(strcmp(out, "Sun, 06 Nov 1994 08:49:37 GMT") == 0);
  CHECK(http_date(0, out) == 29);
  CHECK(strcmp(out, "Thu, 01 Jan 1970 00:00:00 GMT") == 0);
  CHECK(http_date(946684800, out) == 29);
  CHECK(strcmp(out, "Sat, 01 Jan 2000 00:00:00 GMT") == 0);
  CHECK(http_date(951782400, out) == 29);
  CHECK(strcmp(out, "Tue, 29 Feb 2000 00:00:00 GMT") == 0);
  CHECK(http_date(253402300799, out) == 29);
  CHECK(strcmp(out, "Fri, 31 Dec 9999 23:59:59 GMT") == 0);
  CHECK(http_date(253402300800, out) == 0); /* year 10000 */
}

static void test_token_value_valid(void) {
  CHECK(http_token_valid("Content-Type", 12));
  CHECK(http_token_valid("x!#$%&'*+-.^_`|~9", 17));
  CHECK(!http_token_valid("", 0));
  CHECK(!http_token_valid("a b", 3));
  CHECK(!http_token_valid("a:b", 3));
  CHECK(!http_token_valid("a\r\nb", 4));
  CHECK(!http_token_valid("caf\xc3\xa9", 5));
  CHECK(http_value_valid("", 0));
  CHECK(http_value_valid("text/html; charset=utf-8", 24));
  CHECK(http_value_valid("a\tb \xc3\xa9", 6));
  CHECK(!http_value_valid("a\r\nSet-Cookie: x", 16));
  CHECK(!http_value_valid("a\nb", 3));
  CHECK(!http_value_valid("a\rb", 3));
  CHECK(!http_value_valid("a\0b", 3));
  CHECK(!http_value_valid("a\x7f", 2));
  CHECK(!http_value_valid(" a", 2));
  CHECK(!http_value_valid("a\t", 2));
  CHECK(!http_value_valid("0123456789abcdef0123456789\n", 27));
}

static void test_pct_decode(void) {
  char out[64];
  size_t n;
  CHECK(http_pct_decode("a%20b+c", 7, out, &n, 0) == 0);
  CHECK(eq(out, n, "a b+c"));
  CHECK(http_pct_decode("a%20b+c", 7, out, &n, 1) == 0);
  CHECK(eq(out, n, "a b c"));
  CHECK(http_pct_decode("%41%6a%4A", 9, out, &n, 0) == 0 && eq(out, n, "AjJ"));
  CHECK(http_pct_decode("%00", 3, out, &n, 0) == 0 && n == 1 && out[0] == 0);
  CHECK(http_pct_decode("%zz", 3, out, &n, 0) == -1);
  CHECK(http_pct_decode("%2", 2, out, &n, 0) == -1);
  CHECK(http_pct_decode("%", 1, out, &n, 0) == -1);
  CHECK(http_pct_decode("ab%2", 4, out, &n, 0) == -1);
  CHECK(http_pct_decode("", 0, out, &n, 0) == 0 && n == 0);
  char inplace[] = "x%2Fy%2f+";
  CHECK(http_pct_decode(inplace, 9, inplace, &n, 1) == 0);
  CHECK(eq(inplace, n, "x/y/ "));
}

int main(void) {
  RUN(test_simple_get);
  RUN(test_no_query);
  RUN(test_bare_lf);
  RUN(test_leading_empty_lines);
  RUN(test_value_trimming);
  RUN(test_pipelined);
  RUN(test_header_names_case);
  RUN(test_connection_and_friends);
  RUN(test_content_length);
  RUN(test_duplicate_content_length);
  RUN(test_cl_and_te);
  RUN(test_transfer_encoding);
  RUN(test_space_before_colon);
  RUN(test_obs_fold);
  RUN(test_bad_tokens);
  RUN(test_control_chars);
  RUN(test_bare_cr);
  RUN(test_host);
  RUN(test_version);
  RUN(test_request_line_shape);
  RUN(test_target_forms);
  RUN(test_every_prefix_incomplete);
  RUN(test_errors_wait_for_the_end);
  RUN(test_bytewise_same_result);
  RUN(test_last_len_skips_old_bytes);
  RUN(test_max_line);
  RUN(test_max_header_bytes);
  RUN(test_max_headers);
  RUN(test_default_limits);
  RUN(test_slow_feed_64k);
  RUN(test_error_codes);
  RUN(test_chunked_basic);
  RUN(test_chunked_pieces_same);
  RUN(test_chunked_sizes);
  RUN(test_chunked_crlf);
  RUN(test_chunked_extensions);
  RUN(test_chunked_line_limit);
  RUN(test_chunked_trailers);
  RUN(test_chunked_empty_input);
  RUN(test_status_line);
  RUN(test_date);
  RUN(test_token_value_valid);
  RUN(test_pct_decode);
  free(heap);
  return CHECK_DONE();
}
