/*
 * logfmt.c -- see logfmt.h for the contract. No lua.h here.
 *
 * Formatting goes through a sink that counts every byte but stores only
 * what fits, so one pass gives both the line and the length it needs.
 * The settings are three process-wide values; stderr is process-wide too.
 */
#include "logfmt.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOGFMT_STACK 2048   /* records up to this size need no malloc */
#define LOGFMT_WAIT_MS 100  /* how long a non-blocking stderr may stall us */
#define LOGFMT_TIME_MAX 253402300799.0 /* 9999-12-31T23:59:59Z */

static enum logfmt_format log_format = LOGFMT_TEXT;
static int log_worker, log_master;

/* ---------------------------------------------------------------- sink */

struct sink {
  char *p;
  size_t cap; /* bytes it may store (the NUL's byte not included) */
  size_t len; /* bytes produced, stored or not */
};

static void put(struct sink *s, const char *q, size_t n) {
  if (s->len < s->cap) {
    size_t room = s->cap - s->len;
    memcpy(s->p + s->len, q, n < room ? n : room);
  }
  s->len += n;
}

static void put_str(struct sink *s, const char *q) {
  put(s, q, strlen(q));
}

/* A short field of the text format (level, peer): control characters
 * become '?', so the field cannot break the line. */
static void put_field(struct sink *s, const char *q) {
  for (; *q; q++) {
    unsigned char u = (unsigned char)*q;
    put(s, u < 0x20 || u == 0x7f ? "?" : q, 1);
  }
}

/* YYYY-MM-DDTHH:MM:SS.mmmZ; a time out of range (or NaN) prints as the
 * epoch rather than as garbage. */
static void put_time(struct sink *s, double t) {
  if (!(t >= 0 && t <= LOGFMT_TIME_MAX))
    t = 0;
  long long ms = (long long)(t * 1000.0);
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;
  char b[40];
  if (gmtime_r(&secs, &tm) == NULL)
    memset(&tm, 0, sizeof tm);
  int n = snprintf(b, sizeof b, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                   tm.tm_min, tm.tm_sec, (int)(ms % 1000));
  put(s, b, n > 0 ? (size_t)n : 0);
}

/* A message without its trailing line breaks: a record ends once. */
static size_t trimmed(const char *msg, size_t n) {
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
    n--;
  return n;
}

/* ---------------------------------------------------------------- text */

/* The message; each line after the first is indented by a tab, so no
 * message can start a line that looks like a record of its own. */
static void put_text_msg(struct sink *s, const char *msg, size_t n) {
  size_t start = 0;
  for (size_t i = 0; i < n; i++) {
    if (msg[i] != '\n')
      continue;
    put(s, msg + start, i + 1 - start);
    put(s, "\t", 1);
    start = i + 1;
  }
  put(s, msg + start, n - start);
}

static void put_who(struct sink *s, const struct logfmt_record *r) {
  char b[48];
  int n;
  if (r->worker > 0)
    n = snprintf(b, sizeof b, "%ld/w%d", r->pid, r->worker);
  else if (r->master)
    n = snprintf(b, sizeof b, "%ld/master", r->pid);
  else
    n = snprintf(b, sizeof b, "%ld", r->pid);
  put(s, b, n > 0 ? (size_t)n : 0);
}

static void format_text(struct sink *s, const struct logfmt_record *r) {
  put_time(s, r->time);
  put(s, " ", 1);
  put_who(s, r);
  put(s, " [", 2);
  put_field(s, r->level ? r->level : "?");
  put(s, "] ", 2);
  if (r->peer && *r->peer) {
    put_field(s, r->peer);
    put(s, ": ", 2);
  }
  put_text_msg(s, r->msg ? r->msg : "", trimmed(r->msg ? r->msg : "", r->msglen));
  put(s, "\n", 1);
}

/* ---------------------------------------------------------------- json */

/* Length of the well-formed UTF-8 sequence starting p[0] (>= 0x80) within
 * n bytes; 0 if it is not one (a stray continuation byte, a truncated
 * sequence, an overlong form, a surrogate, or past U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  unsigned c = p[0];
  size_t len = c >= 0xc2 && c <= 0xdf ? 2
             : c >= 0xe0 && c <= 0xef ? 3
             : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (len == 0 || n < len)
    return 0;
  for (size_t i = 1; i < len; i++)
    if ((p[i] & 0xc0) != 0x80)
      return 0;
  /* The second byte's range rules out what the lead byte alone cannot. */
  if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) ||
      (c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f))
    return 0;
  return len;
}

/* The escape for byte c, which is not copied as it is. */
static void put_escape(struct sink *s, unsigned char c) {
  char b[8];
  const char *e = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
                : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\b' ? "\\b"
                : c == '\f' ? "\\f" : NULL;
  if (e == NULL && c < 0x20) {
    snprintf(b, sizeof b, "\\u%04x", c);
    e = b;
  } else if (e == NULL) {
    e = "\\ufffd"; /* a byte that is not UTF-8 */
  }
  put_str(s, e);
}

/* A JSON string: runs of bytes that need no escape are copied at once. */
static void put_json(struct sink *s, const char *q, size_t n) {
  const unsigned char *u = (const unsigned char *)q;
  size_t i = 0, run = 0;
  put(s, "\"", 1);
  while (i < n) {
    unsigned char c = u[i];
    size_t len = c >= 0x80 ? utf8_seq(u + i, n - i) : 0;
    if (len > 0 || (c >= 0x20 && c < 0x80 && c != '"' && c != '\\')) {
      i += len > 0 ? len : 1;
      continue;
    }
    put(s, q + run, i - run);
    put_escape(s, c);
    run = ++i;
  }
  put(s, q + run, n - run);
  put(s, "\"", 1);
}

static void format_json(struct sink *s, const struct logfmt_record *r) {
  char b[48];
  put_str(s, "{\"time\":\"");
  put_time(s, r->time);
  put_str(s, "\",\"level\":");
  const char *level = r->level ? r->level : "?";
  put_json(s, level, strlen(level));
  int n = snprintf(b, sizeof b, ",\"pid\":%ld", r->pid);
  put(s, b, n > 0 ? (size_t)n : 0);
  if (r->worker > 0) {
    n = snprintf(b, sizeof b, ",\"worker\":%d", r->worker);
    put(s, b, n > 0 ? (size_t)n : 0);
  } else if (r->master) {
    put_str(s, ",\"master\":true");
  }
  if (r->peer && *r->peer) {
    put_str(s, ",\"peer\":");
    put_json(s, r->peer, strlen(r->peer));
  }
  put_str(s, ",\"message\":");
  const char *msg = r->msg ? r->msg : "";
  put_json(s, msg, trimmed(msg, r->msglen));
  put_str(s, "}\n");
}

/* -------------------------------------------------------------- public */

size_t logfmt_format(char *out, size_t cap, enum logfmt_format f,
                     const struct logfmt_record *r) {
  struct sink s = {out, cap > 0 ? cap - 1 : 0, 0};
  if (f == LOGFMT_JSON)
    format_json(&s, r);
  else
    format_text(&s, r);
  if (cap > 0)
    out[s.len < s.cap ? s.len : s.cap] = '\0';
  return s.len;
}

int logfmt_parse(const char *name) {
  if (name != NULL && strcmp(name, "text") == 0)
    return LOGFMT_TEXT;
  if (name != NULL && strcmp(name, "json") == 0)
    return LOGFMT_JSON;
  return -EINVAL;
}

const char *logfmt_name(enum logfmt_format f) {
  return f == LOGFMT_JSON ? "json" : "text";
}

int logfmt_write(int fd, const char *p, size_t n) {
  int waited = 0;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w > 0) { /* only a record over PIPE_BUF can be taken in parts */
      p += w;
      n -= (size_t)w;
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
               !waited) {
      /* Someone made our stderr non-blocking: wait a little, once. */
      struct pollfd pfd = {fd, POLLOUT, 0};
      waited = 1;
      if (poll(&pfd, 1, LOGFMT_WAIT_MS) < 0 && errno != EINTR)
        return -errno;
    } else {
      return w < 0 ? -errno : -EIO;
    }
  }
  return 0;
}

void logfmt_setup(enum logfmt_format f, int worker, int master) {
  log_format = f;
  log_worker = worker > 0 ? worker : 0;
  log_master = master != 0;
}

enum logfmt_format logfmt_current(void) {
  return log_format;
}

int logfmt_worker(void) {
  return log_worker;
}

int logfmt_master(void) {
  return log_master;
}

/* errno is kept: callers log between a failing call and their report. */
int logfmt_emit(const char *level, const char *peer, const char *msg,
                size_t msglen) {
  int saved = errno;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct logfmt_record r = {
    (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9, level, (long)getpid(),
    log_worker, log_master, peer, msg, msglen};
  char stack[LOGFMT_STACK];
  char *p = stack;
  size_t need = logfmt_format(stack, sizeof stack, log_format, &r);
  if (need >= sizeof stack) {
    p = malloc(need + 1);
    if (p == NULL) {
      errno = saved;
      return -ENOMEM;
    }
    logfmt_format(p, need + 1, log_format, &r);
  }
  int rc = logfmt_write(STDERR_FILENO, p, need);
  if (p != stack)
    free(p);
  errno = saved;
  return rc;
}
