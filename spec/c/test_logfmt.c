/*
 * test_logfmt.c -- C unit tests for src/logfmt.c: the exact bytes of text
 * and JSON records, escaping, UTF-8 repair, truncation, the one write per
 * record, and records from several processes sharing one pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "logfmt.h"

/* 2026-11-21T07:10:00.123Z */
#define T0 1795245000.1234

static char out[4096];

static const char *fmt(enum logfmt_format f, const struct logfmt_record *r) {
  size_t n = logfmt_format(out, sizeof out, f, r);
  CHECK(n == strlen(out));
  return out;
}

static struct logfmt_record rec(const char *msg) {
  struct logfmt_record r = {T0, "info", 4242, 0, 0, NULL, msg, strlen(msg)};
  return r;
}

static void test_text(void) {
  struct logfmt_record r = rec("hello");
  CHECK(strcmp(fmt(LOGFMT_TEXT, &r),
               "2026-11-21T07:10:00.123Z 4242 [info] hello\n") == 0);
  r.worker = 2;
  r.peer = "127.0.0.1:5000";
  CHECK(strcmp(fmt(LOGFMT_TEXT, &r), "2026-11-21T07:10:00.123Z 4242/w2 "
               "[info] 127.0.0.1:5000: hello\n") == 0);
  r.worker = 0;
  r.master = 1;
  r.peer = "";
  r.level = "error";
  CHECK(strcmp(fmt(LOGFMT_TEXT, &r),
               "2026-11-21T07:10:00.123Z 4242/master [error] hello\n") == 0);
}

static void test_text_lines(void) {
  struct logfmt_record r = rec("boom\nstack traceback:\n\t[C]: in ?\n\n");
  CHECK(strcmp(fmt(LOGFMT_TEXT, &r), "2026-11-21T07:10:00.123Z 4242 [info] "
               "boom\n\tstack traceback:\n\t\t[C]: in ?\n") == 0);
  /* A message cannot forge a record of its own. */
  r = rec("x\n2026-01-01T00:00:00.000Z 1 [error] forged");
  fmt(LOGFMT_TEXT, &r);
  CHECK(strstr(out, "\n2026") == NULL);
  /* Nor can a level or a peer break the line. */
  r = rec("m");
  r.level = "in\nfo";
  r.peer = "a\rb";
  CHECK(strcmp(fmt(LOGFMT_TEXT, &r),
               "2026-11-21T07:10:00.123Z 4242 [in?fo] a?b: m\n") == 0);
}

static void test_json(void) {
  struct logfmt_record r = rec("hello \"you\"\\\n\tthere\x01");
  CHECK(strcmp(fmt(LOGFMT_JSON, &r),
               "{\"time\":\"2026-11-21T07:10:00.123Z\",\"level\":\"info\","
               "\"pid\":4242,\"message\":\"hello \\\"you\\\"\\\\\\n\\tthere"
               "\\u0001\"}\n") == 0);
  r = rec("ok\n");
  r.worker = 3;
  r.peer = "::1:80";
  CHECK(strcmp(fmt(LOGFMT_JSON, &r),
               "{\"time\":\"2026-11-21T07:10:00.123Z\",\"level\":\"info\","
               "\"pid\":4242,\"worker\":3,\"peer\":\"::1:80\","
               "\"message\":\"ok\"}\n") == 0);
  r.worker = 0;
  r.master = 1;
  r.peer = NULL;
  CHECK(strstr(fmt(LOGFMT_JSON, &r), ",\"master\":true,\"message\"") != NULL);
}

static void test_json_utf8(void) {
  static const struct { const char *in, *want; } cases[] = {
    {"caf\xc3\xa9", "caf\xc3\xa9"},                   /* valid: kept */
    {"\xe2\x82\xac \xf0\x9f\x98\x80", "\xe2\x82\xac \xf0\x9f\x98\x80"},
    {"a\xff" "b", "a\\ufffdb"},                       /* never UTF-8 */
    {"\x80", "\\ufffd"},                              /* stray continuation */
    {"\xc3", "\\ufffd"},                              /* truncated */
    {"\xc0\xaf", "\\ufffd\\ufffd"},                   /* overlong '/' */
    {"\xe0\x80\xaf", "\\ufffd\\ufffd\\ufffd"},        /* overlong, 3 bytes */
    {"\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd"},        /* a surrogate */
    {"\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd"}, /* > U+10FFFF */
    {"\x7f", "\x7f"},                                 /* DEL is valid JSON */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct logfmt_record r = rec(cases[i].in);
    char want[256];
    snprintf(want, sizeof want, "\"message\":\"%s\"}\n", cases[i].want);
    fmt(LOGFMT_JSON, &r);
    CHECK(strlen(out) > strlen(want) &&
          strcmp(out + strlen(out) - strlen(want), want) == 0);
  }
  /* Bytes after a NUL are part of the message too. */
  struct logfmt_record r = {T0, "info", 1, 0, 0, NULL, "a\0b", 3};
  CHECK(strstr(fmt(LOGFMT_JSON, &r), "\"a\\u0000b\"") != NULL);
}

static void test_truncation(void) {
  struct logfmt_record r = rec("a fairly long message");
  char full[256], small[16];
  size_t n = logfmt_format(full, sizeof full, LOGFMT_TEXT, &r);
  CHECK(logfmt_format(small, sizeof small, LOGFMT_TEXT, &r) == n);
  CHECK(strlen(small) == sizeof small - 1);
  CHECK(memcmp(small, full, sizeof small - 1) == 0);
  CHECK(logfmt_format(NULL, 0, LOGFMT_JSON, &r) ==
        logfmt_format(full, sizeof full, LOGFMT_JSON, &r));
}

static void test_time(void) {
  struct logfmt_record r = rec("t");
  r.time = 0.9999;
  CHECK(strncmp(fmt(LOGFMT_TEXT, &r), "1970-01-01T00:00:00.999Z ", 25) == 0);
  r.time = -5;
  CHECK(strncmp(fmt(LOGFMT_TEXT, &r), "1970-01-01T00:00:00.000Z ", 25) == 0);
  r.time = 1e300;
  CHECK(strncmp(fmt(LOGFMT_TEXT, &r), "1970-01-01T00:00:00.000Z ", 25) == 0);
  r.time = 951782400.5; /* a leap day */
  CHECK(strncmp(fmt(LOGFMT_TEXT, &r), "2000-02-29T00:00:00.500Z ", 25) == 0);
}

static void test_parse(void) {
  CHECK(logfmt_parse("text") == LOGFMT_TEXT);
  CHECK(logfmt_parse("json") == LOGFMT_JSON);
  CHECK(logfmt_parse("JSON") == -EINVAL);
  CHECK(logfmt_parse("") == -EINVAL);
  CHECK(logfmt_parse(NULL) == -EINVAL);
  CHECK(strcmp(logfmt_name(LOGFMT_JSON), "json") == 0);
  CHECK(strcmp(logfmt_name(LOGFMT_TEXT), "text") == 0);
}

static void test_write(void) {
  int p[2];
  CHECK(pipe(p) == 0);
  CHECK(logfmt_write(p[1], "abc\n", 4) == 0);
  char b[8] = {0};
  CHECK(read(p[0], b, sizeof b) == 4 && strcmp(b, "abc\n") == 0);
  close(p[0]);
  /* No reader: EPIPE (SIGPIPE ignored here), not a hang or a crash. */
  signal(SIGPIPE, SIG_IGN);
  CHECK(logfmt_write(p[1], "x", 1) == -EPIPE);
  close(p[1]);
  CHECK(logfmt_write(-1, "x", 1) == -EBADF);
}

/* The reason for one write per record: 4 processes, 2000 records each of
 * 10..3000 bytes through one pipe; every line read back is whole. */
static void test_processes_share_a_pipe(void) {
  enum { PROCS = 4, RECORDS = 2000 };
  int p[2];
  CHECK(pipe(p) == 0);
  for (int k = 0; k < PROCS; k++) {
    if (fork() == 0) {
      close(p[0]);
      dup2(p[1], STDERR_FILENO);
      logfmt_setup(k % 2 ? LOGFMT_JSON : LOGFMT_TEXT, k + 1, 0);
      char msg[3000];
      for (int i = 0; i < RECORDS; i++) {
        size_t n = 10 + (size_t)(i * 7919 + k * 131) % (sizeof msg - 10);
        memset(msg, 'a' + k, n);
        if (logfmt_emit("info", NULL, msg, n) != 0)
          _exit(1);
      }
      _exit(0);
    }
  }
  close(p[1]);
  FILE *f = fdopen(p[0], "r");
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int lines = 0, bad = 0;
  while ((n = getline(&line, &cap, f)) > 0) {
    lines++;
    /* the worker number says which letter fills the whole message */
    char *w = strstr(line, "/w");
    char *j = strstr(line, "\"worker\":");
    int k = j ? j[9] - '1' : w && line[0] == '2' ? w[2] - '1' : -1;
    char *m = j ? strstr(line, "\"message\":\"") : strstr(line, "] ");
    m = m ? m + (j ? 11 : 2) : NULL;
    char *end = line + n - (j ? 3 : 1); /* "\"}\n" or "\n" */
    int ok = k >= 0 && k < PROCS && m != NULL && m < end;
    for (char *c = m; ok && c < end; c++)
      ok = *c == 'a' + k;
    bad += !ok;
  }
  free(line);
  fclose(f);
  int status, failed = 0;
  while (wait(&status) > 0)
    failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
  CHECK(failed == 0);
  CHECK(lines == PROCS * RECORDS);
  CHECK(bad == 0);
}

int main(void) {
  RUN(test_text);
  RUN(test_text_lines);
  RUN(test_json);
  RUN(test_json_utf8);
  RUN(test_truncation);
  RUN(test_time);
  RUN(test_parse);
  RUN(test_write);
  RUN(test_processes_share_a_pipe);
  return CHECK_DONE();
}
