/*
 * http_parse.h -- HTTP/1.1 request heads, chunked bodies, and the small
 * helpers a server needs to answer (RFC 9112 message syntax, RFC 9110
 * semantics).
 *
 * Contract: no lua.h, no allocation, no global state, no locale. The head
 * parser makes one pass over the caller's bytes and hands back pointers into
 * them: every (ptr, len) it fills in lies inside buf[0 .. head length) and
 * stays valid for as long as the caller keeps those bytes. Nothing is copied
 * and nothing is NUL-terminated.
 *
 * What a head parse returns depends only on the bytes and the limits, never
 * on how they arrived. While the terminating empty line is missing the only
 * possible errors are the two size limits (414, 431): syntax is judged once
 * the whole head is there. So a head fed in pieces (with last_len) gives the
 * same answer as the same bytes fed at once, and a caller that keeps
 * reading until the answer is not HTTP_INCOMPLETE reads at most
 * max_header_bytes + 1 bytes of head.
 *
 * Request smuggling is closed off rather than tolerated: every ambiguity in
 * framing (two Content-Lengths that disagree, Content-Length with
 * Transfer-Encoding, chunked not last, obs-fold, space before a colon, a bare
 * CR, control characters) is an error, not a guess.
 */
#ifndef BERTH_HTTP_PARSE_H
#define BERTH_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* http_parse_request: more bytes are needed. */
#define HTTP_INCOMPLETE 0

/*
 * Errors, negative. http_error_status() gives the response status each maps
 * to (shown here), http_strerror() a short English text.
 */
enum {
  /* 400 Bad Request: the request line */
  HTTP_EBAD_METHOD = -1,       /* method empty or not a token */
  HTTP_EBAD_TARGET = -2,       /* control/space in the target, or bad form */
  HTTP_EBAD_VERSION = -3,      /* not "HTTP/" DIGIT "." DIGIT then EOL */
  HTTP_EBAD_LINE = -4,         /* not method SP target SP version */
  HTTP_EEMPTY_LINES = -5,      /* too many empty lines before it */
  /* 400: header lines */
  HTTP_EBAD_HEADER_NAME = -6,  /* empty, not a token, or no colon */
  HTTP_EHEADER_SPACE = -7,     /* whitespace between name and colon */
  HTTP_EOBS_FOLD = -8,         /* a line starting with SP or HTAB */
  HTTP_EBAD_VALUE = -9,        /* a control character (not HTAB) */
  HTTP_EBARE_CR = -10,         /* CR not followed by LF */
  /* 400: framing and Host */
  HTTP_EBAD_CONTENT_LENGTH = -11, /* not 1*DIGIT, empty, or > INT64_MAX */
  HTTP_EDUP_CONTENT_LENGTH = -12, /* Content-Length values that differ */
  HTTP_ECL_AND_TE = -13,       /* Content-Length and Transfer-Encoding */
  HTTP_ECHUNKED_NOT_LAST = -14, /* TE whose final coding is not chunked,
                                   or chunked more than once */
  HTTP_EBAD_TE = -15,          /* malformed Transfer-Encoding, or one in
                                   an HTTP/1.0 request */
  HTTP_ENO_HOST = -16,         /* HTTP/1.1 without Host */
  HTTP_EDUP_HOST = -17,        /* more than one Host */
  HTTP_EBAD_HOST = -18,        /* a Host value that is no uri-host[:port] */
  /* 414 URI Too Long */
  HTTP_EURI_TOO_LONG = -19,    /* request line over max_line */
  /* 431 Request Header Fields Too Large */
  HTTP_EHEADERS_TOO_LARGE = -20, /* head over max_header_bytes */
  HTTP_ETOO_MANY_HEADERS = -21,  /* more header lines than allowed */
  /* 501 Not Implemented */
  HTTP_ETE_UNSUPPORTED = -22,  /* a coding other than chunked before it */
  /* 505 HTTP Version Not Supported */
  HTTP_EVERSION = -23,         /* HTTP/x.y other than 1.0 and 1.1 */
  /* 400: chunked bodies (http_chunked_next) */
  HTTP_ECHUNK_SIZE = -24,      /* no hex digits, or junk after them */
  HTTP_ECHUNK_OVERFLOW = -25,  /* chunk size over INT64_MAX */
  HTTP_ECHUNK_CRLF = -26,      /* a framing line not ended by CRLF */
  HTTP_ECHUNK_EXT = -27,       /* control character in a chunk extension */
  HTTP_ECHUNK_LINE_TOO_LONG = -28, /* size line over max_chunk_line */
  HTTP_EBAD_TRAILER = -29,     /* malformed trailer field line */
  HTTP_ETRAILER_TOO_LARGE = -30 /* trailers over max_trailer_bytes */
};

/* Leading empty lines tolerated before a request line (RFC 9112 §2.2 asks
 * for at least one; a client that sends more is broken or hostile). */
#define HTTP_MAX_EMPTY_LINES 4

struct http_limits {
  size_t max_line;         /* request line bytes, line ending excluded */
  size_t max_header_bytes; /* the whole head, final empty line included */
  size_t max_headers;      /* header field lines */
  int host_optional;       /* 1: an HTTP/1.1 request without Host is
                              accepted (a lenient server's choice; RFC
                              9112 §3.2 says 400, the default) */
};

#define HTTP_LIMITS_DEFAULT {8192, 65536, 100, 0}

struct http_header {
  const char *name;
  size_t name_len;
  const char *value; /* OWS around it trimmed */
  size_t value_len;
};

/* The four request-target forms of RFC 9112 §3.2. */
enum {
  HTTP_FORM_ORIGIN,    /* "/path?query" */
  HTTP_FORM_ABSOLUTE,  /* "http://host/path?query" (proxies) */
  HTTP_FORM_AUTHORITY, /* "host:port" (CONNECT only) */
  HTTP_FORM_ASTERISK   /* "*" (OPTIONS only) */
};

struct http_request {
  /* in: where the header fields go */
  struct http_header *headers;
  size_t max_headers;  /* capacity of headers[]; more lines are 431 */
  /* out */
  size_t nheaders;
  const char *method;
  size_t method_len;
  const char *target;  /* the request-target as sent */
  size_t target_len;
  const char *path;    /* origin/absolute form: the path ("" when an
                          absolute target has none); "*" for asterisk;
                          empty for authority form */
  size_t path_len;
  const char *query;   /* after the first '?' (len 0 when none) */
  size_t query_len;
  const char *authority; /* absolute form: host[:port] from the target;
                            authority form: the target; else len 0 */
  size_t authority_len;
  const char *host;    /* the Host header's value (len 0 when none) */
  size_t host_len;
  int form;            /* HTTP_FORM_* */
  int minor_version;   /* 0 or 1 */
  int64_t content_length; /* -1: no Content-Length */
  unsigned char chunked;  /* Transfer-Encoding: chunked (the only coding) */
  unsigned char conn_close;     /* Connection lists "close" */
  unsigned char conn_keepalive; /* Connection lists "keep-alive" */
  unsigned char conn_upgrade;   /* Connection lists "upgrade" */
  unsigned char expect_continue; /* Expect: 100-continue (HTTP/1.1) */
  unsigned char has_upgrade;    /* an Upgrade header is present */
  unsigned char has_host;       /* a Host header is present */
};

/*
 * Parse the request head at the start of buf[0..len). Returns the head's
 * length (request line, header lines and the empty line, plus any leading
 * empty lines skipped) when it is complete, HTTP_INCOMPLETE when more bytes
 * are needed, or a negative HTTP_E* code. `last_len` is the `len` of an
 * earlier call on the same (grown) buffer that returned HTTP_INCOMPLETE, or 0:
 * only the new bytes are searched for the end of the head, so a head that
 * arrives in small pieces costs O(length), not O(length^2). `lim` NULL means
 * HTTP_LIMITS_DEFAULT. On success every output field of `req` is set; on
 * other results its contents are unspecified. Also enforced, all 400: at
 * most one Host, and HTTP/1.1 needs one (RFC 9112 §3.2; unless
 * lim->host_optional); no
 * Transfer-Encoding in HTTP/1.0 (§6.1). Line ends are CRLF or a bare LF.
 * A caller that gets a head length n consumes n bytes and calls again on
 * the rest (with last_len 0) for a pipelined request.
 */
int http_parse_request(const char *buf, size_t len, size_t last_len,
                       struct http_request *req,
                       const struct http_limits *lim);

/* The response status an HTTP_E* code maps to (400 for unknown codes). */
int http_error_status(int code);
/* A short English description of an HTTP_E* code. */
const char *http_strerror(int code);

/* http_chunked_next results (errors are negative HTTP_E* codes). */
#define HTTP_CHUNK_MORE 0 /* all input consumed, more is needed */
#define HTTP_CHUNK_DATA 1 /* a span of body data is reported */
#define HTTP_CHUNK_DONE 2 /* last chunk and trailers consumed */

/*
 * Streaming decoder of a chunked body (RFC 9112 §7.1). Zero-initialise it
 * (limits of 0 mean the defaults below), then feed it bytes. Framing lines
 * must end in CRLF (a bare LF here is an error: chunk framing is where
 * parsers that disagree get smuggled through). Chunk extensions and trailer
 * fields are checked, bounded and skipped, never returned.
 */
#define HTTP_CHUNK_LINE_DEFAULT 4096     /* size line with extensions */
#define HTTP_TRAILER_BYTES_DEFAULT 16384 /* trailer field lines */

struct http_chunked {
  size_t max_chunk_line;    /* in: 0 = HTTP_CHUNK_LINE_DEFAULT */
  size_t max_trailer_bytes; /* in: 0 = HTTP_TRAILER_BYTES_DEFAULT */
  /* private state */
  int state;
  int error;
  uint64_t remaining; /* chunk size being read, then data bytes left */
  size_t line;        /* bytes of the current size line / trailer section */
};

/*
 * Consume p[0..n): sets *consumed to the bytes used. Returns HTTP_CHUNK_DATA
 * with body data at p[*data_off .. *data_off + *data_len) (inside the
 * consumed bytes; at most one span per call, call again with the rest),
 * HTTP_CHUNK_MORE when every byte was framing and more are needed,
 * HTTP_CHUNK_DONE when the body ended (*consumed stops right after it; what
 * follows belongs to the next message; further calls return DONE and consume
 * nothing) or a negative error (repeated by further calls; *consumed is the
 * offset of the offending byte).
 */
int http_chunked_next(struct http_chunked *c, const char *p, size_t n,
                      size_t *consumed, size_t *data_off, size_t *data_len);

/* The standard reason phrase of `status` ("" for unregistered codes). */
const char *http_reason(int status);

/*
 * "HTTP/1.<minor> <status> <reason>\r\n" into out[0..cap) (not
 * NUL-terminated). Returns its length, or 0 when status is not 100..999,
 * minor is not 0 or 1, or cap is too small.
 */
size_t http_status_line(int status, int minor, char *out, size_t cap);

/* IMF-fixdate of `t` (RFC 9110 §5.6.7), e.g. "Sun, 06 Nov 1994 08:49:37
 * GMT", NUL-terminated. Returns 29, or 0 when `t` is out of range (years
 * 0..9999 only). */
size_t http_date(time_t t, char out[30]);

/* 1 when s[0..n) is a non-empty token (a valid header name or method). */
int http_token_valid(const char *s, size_t n);
/* 1 when s[0..n) is a valid field value: no control character but HTAB
 * (so no CR/LF injection), no leading or trailing SP/HTAB; empty is valid. */
int http_value_valid(const char *s, size_t n);

/*
 * Percent-decode in[0..n) into out (room for n bytes; out == in decodes in
 * place), '+' becoming ' ' when plus_as_space. Sets *outlen. Returns 0, or -1
 * on a '%' not followed by two hex digits (out is then unspecified).
 */
int http_pct_decode(const char *in, size_t n, char *out, size_t *outlen,
                    int plus_as_space);

#endif
