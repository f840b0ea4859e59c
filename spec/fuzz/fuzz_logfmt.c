/*
 * fuzz_logfmt.c -- libFuzzer target for src/logfmt.c (log records).
 *
 * Input: byte 0 picks the format (bit 0: JSON), a worker (bit 1, number
 * from byte 1), the master (bit 2) and a peer (bit 3: the bytes up to the
 * next NUL, at most 64); bytes 2..5 are the time in seconds; the rest is
 * the message, any bytes. Each record must:
 *   - report the same length whatever the buffer, a short buffer holding a
 *     prefix of the full line;
 *   - be one line: end in "\n"; in text every other "\n" is followed by a
 *     tab; in JSON there is no other line break and no control byte;
 *   - start with the header "YYYY-MM-DDTHH:MM:SS.mmmZ PID[/wN|/master] "
 *     in text;
 *   - in JSON, be valid UTF-8 and parse as one object of strings, numbers
 *     and true, whose "message" decodes to the message with its trailing
 *     line breaks removed and every byte that is not part of well-formed
 *     UTF-8 replaced by U+FFFD -- decided by a reference decoder written
 *     from the definition (lead byte, code point, overlong, surrogate,
 *     U+10FFFF), not from the byte-range table logfmt.c uses;
 *   - in text, give back that trimmed message, byte for byte, once the
 *     tab after each line break is removed.
 *
 * fuzz-sources: src/logfmt.c
 *
 * Built by scripts/fuzz with clang -fsanitize=fuzzer,address,undefined and
 * linked against src/logfmt.c directly. Pure C, no Lua.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "logfmt.h"

#define FAIL() abort()
#define EXPECT(c) do { if (!(c)) FAIL(); } while (0)

/* --------------------------------------------------- reference UTF-8 */

/* Decode one code point at p (n bytes left) the textbook way: 0 if the
 * bytes there are not a well-formed sequence. */
static size_t ref_decode(const unsigned char *p, size_t n, uint32_t *cp) {
  static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
  size_t len = p[0] < 0x80 ? 1 : (p[0] >> 5) == 6 ? 2 : (p[0] >> 4) == 14 ? 3
             : (p[0] >> 3) == 30 ? 4 : 0;
  if (len == 0 || len > n)
    return 0;
  uint32_t v = len == 1 ? p[0] : p[0] & (0x7f >> len);
  for (size_t i = 1; i < len; i++) {
    if ((p[i] >> 6) != 2)
      return 0;
    v = v << 6 | (p[i] & 0x3f);
  }
  if (v < min[len] || (v >= 0xd800 && v <= 0xdfff) || v > 0x10ffff)
    return 0;
  *cp = v;
  return len;
}

static int ref_valid(const unsigned char *p, size_t n) {
  uint32_t cp;
  for (size_t i = 0, len; i < n; i += len)
    if ((len = ref_decode(p + i, n - i, &cp)) == 0)
      return 0;
  return 1;
}

static size_t ref_encode(uint32_t cp, unsigned char *o) {
  if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xc0 | cp >> 6);
    o[1] = (unsigned char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xe0 | cp >> 12);
    o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    o[2] = (unsigned char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (unsigned char)(0xf0 | cp >> 18);
  o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
  o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
  o[3] = (unsigned char)(0x80 | (cp & 0x3f));
  return 4;
}

/* The message as the JSON must give it back. */
static size_t ref_expected(const unsigned char *m, size_t n, unsigned char *o) {
  size_t k = 0;
  uint32_t cp;
  for (size_t i = 0, len; i < n; i += len ? len : 1) {
    len = ref_decode(m + i, n - i, &cp);
    k += ref_encode(len ? cp : 0xfffd, o + k);
  }
  return k;
}

/* ------------------------------------------------------- tiny JSON */

struct json {
  const unsigned char *p, *end;
};

static int hexval(int c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
       : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A string at j->p into o (NULL: skip); its decoded length, or -1. */
static long json_string(struct json *j, unsigned char *o) {
  long k = 0;
  if (j->p >= j->end || *j->p++ != '"')
    return -1;
  while (j->p < j->end && *j->p != '"') {
    unsigned char c = *j->p++, b[4];
    size_t len = 1;
    b[0] = c;
    if (c < 0x20)
      return -1;
    if (c == '\\') {
      if (j->p >= j->end)
        return -1;
      c = *j->p++;
      const char *simple = strchr("\"\\/bfnrt", c);
      if (c != 0 && simple) {
        b[0] = (unsigned char)"\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
      } else if (c == 'u' && j->end - j->p >= 4) {
        uint32_t cp = 0;
        for (int i = 0; i < 4; i++) {
          int h = hexval(*j->p++);
          if (h < 0)
            return -1;
          cp = cp << 4 | (uint32_t)h;
        }
        if (cp >= 0xd800 && cp <= 0xdfff)
          return -1; /* logfmt never writes surrogate escapes */
        len = ref_encode(cp, b);
      } else {
        return -1;
      }
    }
    if (o)
      memcpy(o + k, b, len);
    k += (long)len;
  }
  if (j->p >= j->end)
    return -1;
  j->p++;
  return k;
}

static int json_value(struct json *j) {
  if (j->p < j->end && *j->p == '"')
    return json_string(j, NULL) >= 0;
  if (j->end - j->p >= 4 && memcmp(j->p, "true", 4) == 0) {
    j->p += 4;
    return 1;
  }
  const unsigned char *start = j->p;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
    j->p++;
  return j->p > start && (*start != '0' || j->p - start == 1);
}

/* Parse {"k":v,...}; the decoded "message" into msg (*msglen). */
static int json_object(struct json *j, unsigned char *msg, long *msglen) {
  unsigned char key[16];
  *msglen = -1;
  if (j->p >= j->end || *j->p++ != '{')
    return 0;
  for (;;) {
    const unsigned char *k0 = j->p;
    long klen = json_string(j, NULL);
    if (klen < 0 || klen >= (long)sizeof key || j->p >= j->end ||
        *j->p++ != ':')
      return 0;
    struct json kj = {k0, j->end};
    json_string(&kj, key);
    key[klen] = 0;
    if (strcmp((char *)key, "message") == 0) {
      if ((*msglen = json_string(j, msg)) < 0)
        return 0;
    } else if (!json_value(j)) {
      return 0;
    }
    if (j->p < j->end && *j->p == ',') {
      j->p++;
      continue;
    }
    return j->p < j->end && *j->p++ == '}';
  }
}

/* ---------------------------------------------------------- checks */

static size_t trim(const uint8_t *m, size_t n) {
  while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == '\r'))
    n--;
  return n;
}

static void check_text(const char *line, size_t n, const uint8_t *m,
                       size_t mlen, const struct logfmt_record *r) {
  for (size_t i = 0; i + 1 < n; i++)
    EXPECT(line[i] != '\n' || line[i + 1] == '\t');
  /* header: 24 bytes of time, a space, the pid */
  EXPECT(n > 26 && line[4] == '-' && line[10] == 'T' && line[23] == 'Z' &&
         line[24] == ' ' && line[25] >= '0' && line[25] <= '9');
  const char *body = strstr(line, "] ");
  EXPECT(body != NULL);
  body += 2;
  if (r->peer && *r->peer) {
    EXPECT(strncmp(body, r->peer, strlen(r->peer)) == 0 ||
           strpbrk(r->peer, "\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c"
                   "\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a"
                   "\x1b\x1c\x1d\x1e\x1f\x7f"));
    body += strlen(r->peer) + 2;
  }
  /* the message back: drop the tab after each line break */
  size_t k = 0, want = trim(m, mlen);
  const char *end = line + n - 1;
  for (const char *c = body; c < end; c++) {
    EXPECT(k < want && (unsigned char)*c == m[k]);
    if (*c == '\n')
      c++;
    k++;
  }
  EXPECT(k == want);
}

static void check_json(const char *line, size_t n, const uint8_t *m,
                       size_t mlen) {
  const unsigned char *u = (const unsigned char *)line;
  for (size_t i = 0; i + 1 < n; i++)
    EXPECT(u[i] >= 0x20);
  EXPECT(ref_valid(u, n));
  unsigned char *got = malloc(mlen * 3 + 1), *want = malloc(mlen * 3 + 1);
  EXPECT(got && want);
  long glen;
  struct json j = {u, u + n - 1};
  EXPECT(json_object(&j, got, &glen) && j.p == j.end && glen >= 0);
  size_t wlen = ref_expected(m, trim(m, mlen), want);
  EXPECT((size_t)glen == wlen && memcmp(got, want, wlen) == 0);
  free(got);
  free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 6)
    return 0;
  char peer[65] = {0};
  size_t at = 6;
  int flags = data[0];
  if (flags & 8) {
    size_t k = 0;
    while (at < size && data[at] != 0 && k < sizeof peer - 1)
      peer[k++] = (char)data[at++];
    if (at < size)
      at++;
  }
  uint32_t secs;
  memcpy(&secs, data + 2, sizeof secs);
  struct logfmt_record r = {(double)secs + 0.5, "warn", 12345,
    flags & 2 ? data[1] : 0, flags & 4, flags & 8 ? peer : NULL,
    (const char *)data + at, size - at};
  enum logfmt_format f = flags & 1 ? LOGFMT_JSON : LOGFMT_TEXT;
  size_t need = logfmt_format(NULL, 0, f, &r);
  char *line = malloc(need + 1), small[40];
  EXPECT(line != NULL);
  EXPECT(logfmt_format(line, need + 1, f, &r) == need);
  EXPECT(logfmt_format(small, sizeof small, f, &r) == need);
  EXPECT(strncmp(small, line, sizeof small - 1) == 0);
  EXPECT(need > 0 && line[need - 1] == '\n');
  if (f == LOGFMT_JSON)
    check_json(line, need, data + at, size - at);
  else
    check_text(line, need, data + at, size - at, &r);
  free(line);
  return 0;
}
