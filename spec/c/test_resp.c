/*
 * test_resp.c -- unit tests for src/resp.c: multibulk and inline parsing,
 * the length syntax and limits, incremental feeding (which must give the
 * whole-input result and must not re-read what it already parsed: guarded
 * with PROT_NONE pages), argv growth, counting (resp_count_command finds
 * what storing finds), error texts and reply headers.
 * Prints one line per case and ends with "N passed, N failed".
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "resp.h"

#define MAXARGS 64

/* One parse with a fresh command and a roomy argv. */
struct res {
  int rc;
  size_t argc;
  struct resp_arg argv[MAXARGS];
};

static struct res parse_lim(const char *s, size_t n,
                            const struct resp_limits *lim) {
  struct res r;
  memset(&r, 0, sizeof r);
  struct resp_cmd cmd = RESP_CMD_INIT(r.argv, MAXARGS);
  r.rc = resp_parse_command(s, n, &cmd, lim);
  r.argc = cmd.argc;
  return r;
}

static struct res parse(const char *s) {
  return parse_lim(s, strlen(s), NULL);
}

static int arg_is(const char *s, const struct res *r, size_t i,
                  const char *want) {
  return i < r->argc && r->argv[i].len == strlen(want) &&
         memcmp(s + r->argv[i].off, want, r->argv[i].len) == 0;
}

/* Feed s[0..n) growing by `step` bytes with one resumed cmd and an argv
 * that starts empty and doubles on RESP_ENEEDSPACE, as a server would. */
static struct res feed(const char *s, size_t n, size_t step,
                       const struct resp_limits *lim) {
  struct res r;
  memset(&r, 0, sizeof r);
  struct resp_arg *argv = NULL;
  struct resp_cmd cmd = RESP_CMD_INIT(NULL, 0);
  size_t have = 0;
  for (;;) {
    r.rc = resp_parse_command(s, have, &cmd, lim);
    if (r.rc == RESP_ENEEDSPACE) {
      size_t cap = cmd.cap ? cmd.cap * 2 : 1;
      argv = realloc(argv, cap * sizeof *argv);
      if (argv == NULL)
        abort();
      cmd.argv = argv;
      cmd.cap = cap;
      continue;
    }
    if (r.rc != RESP_INCOMPLETE || have == n)
      break;
    have = n - have < step ? n : have + step;
  }
  r.argc = cmd.argc;
  if (r.rc > 0 && r.argc > 0)
    memcpy(r.argv, argv, (r.argc < MAXARGS ? r.argc : MAXARGS) *
                             sizeof *argv);
  free(argv);
  return r;
}

static int same(const struct res *a, const struct res *b) {
  if (a->rc != b->rc)
    return 0;
  if (a->rc <= 0)
    return 1;
  if (a->argc != b->argc)
    return 0;
  size_t k = a->argc < MAXARGS ? a->argc : MAXARGS;
  return k == 0 || memcmp(a->argv, b->argv, k * sizeof a->argv[0]) == 0;
}

static void test_multibulk(void) {
  const char *s = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
  struct res r = parse(s);
  CHECK(r.rc == (int)strlen(s));
  CHECK(r.argc == 2 && arg_is(s, &r, 0, "GET") && arg_is(s, &r, 1, "k"));
  CHECK(r.argv[0].off == 8 && r.argv[1].off == 17);
  /* Binary data: CRLF and NUL inside a bulk are data. */
  const char b[] = "*1\r\n$6\r\na\r\nb\0c\r\n";
  r = parse_lim(b, sizeof b - 1, NULL);
  CHECK(r.rc == (int)sizeof b - 1 && r.argc == 1 && r.argv[0].len == 6);
  CHECK(memcmp(b + r.argv[0].off, "a\r\nb\0c", 6) == 0);
  /* An empty bulk. */
  r = parse("*2\r\n$0\r\n\r\n$1\r\nx\r\n");
  CHECK(r.rc == 17 && r.argc == 2 && r.argv[0].len == 0);
}

static void test_pipelined(void) {
  const char *s = "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\nPING\r\n";
  size_t n = strlen(s), at = 0;
  int count = 0;
  while (at < n) {
    struct res r = parse_lim(s + at, n - at, NULL);
    CHECK(r.rc > 0 && r.argc == 1 && arg_is(s + at, &r, 0, "PING"));
    if (r.rc <= 0)
      break;
    at += (size_t)r.rc;
    count++;
  }
  CHECK(count == 3 && at == n);
  /* A command followed by part of the next one ends where it ends. */
  struct res r = parse("*1\r\n$1\r\na\r\n*2\r\n$1");
  CHECK(r.rc == 11 && r.argc == 1);
}

static void test_incomplete_prefixes(void) {
  const char *s = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva\r\nl\r\n";
  size_t n = strlen(s);
  int bad = 0;
  for (size_t k = 0; k < n; k++) {
    struct res r = parse_lim(s, k, NULL);
    bad += r.rc != RESP_INCOMPLETE;
  }
  CHECK(bad == 0);
  struct res r = parse(s);
  CHECK(r.rc == (int)n && arg_is(s, &r, 2, "va\r\nl"));
}

static void test_length_syntax(void) {
  /* string2ll's rules: digits only, no leading zero, no sign but '-'. */
  const char *mbad[] = {"*01\r\n", "*+1\r\n", "* 1\r\n", "*1e0\r\n",
                        "*0x1\r\n", "*-0\r\n", "*\r\n", "*1\n",
                        "*1\rX", "*abc\r\n", "*1 \r\n", "*--1\r\n",
                        "*9223372036854775808\r\n",
                        "*-9223372036854775809\r\n"};
  for (size_t i = 0; i < sizeof mbad / sizeof *mbad; i++) {
    struct res r = parse(mbad[i]);
    CHECK(r.rc == RESP_EMBULK_LEN);
    if (r.rc != RESP_EMBULK_LEN)
      printf("  input %zu: %d\n", i, r.rc);
  }
  const char *bbad[] = {"*1\r\n$01\r\n", "*1\r\n$-1\r\n", "*1\r\n$+1\r\n",
                        "*1\r\n$ 1\r\n", "*1\r\n$abc\r\n", "*1\r\n$-0\r\n",
                        "*1\r\n$1\n", "*1\r\n$\r\n", "*1\r\n$-5\r\n"};
  for (size_t i = 0; i < sizeof bbad / sizeof *bbad; i++)
    CHECK(parse(bbad[i]).rc == RESP_EBULK_LEN);
  /* Overflow is seen while the digits arrive: no need to wait. */
  CHECK(parse("*99999999999999999999").rc == RESP_EMBULK_LEN);
  CHECK(parse("*1\r\n$99999999999999999999").rc == RESP_EBULK_LEN);
  /* The largest counts are valid syntax (and then too many). */
  CHECK(parse("*9223372036854775807\r\n").rc == RESP_ETOO_MANY_ARGS);
  CHECK(parse("*1\r\n$9223372036854775807\r\n").rc == RESP_EBULK_TOO_LARGE);
  /* A valid prefix of a length line is incomplete, not an error. */
  CHECK(parse("*").rc == RESP_INCOMPLETE);
  CHECK(parse("*-").rc == RESP_INCOMPLETE);
  CHECK(parse("*12\r").rc == RESP_INCOMPLETE);
  CHECK(parse("*1\r\n$").rc == RESP_INCOMPLETE);
  CHECK(parse("*1\r\n$0").rc == RESP_INCOMPLETE);
}

static void test_empty_commands(void) {
  struct res r = parse("*0\r\n");
  CHECK(r.rc == 4 && r.argc == 0);
  r = parse("*-1\r\n");
  CHECK(r.rc == 5 && r.argc == 0);
  r = parse("*-5\r\nPING\r\n"); /* any negative count, as redis-server */
  CHECK(r.rc == 5 && r.argc == 0);
  r = parse("*-9223372036854775808\r\n");
  CHECK(r.rc == 23 && r.argc == 0);
}

static void test_expected_dollar(void) {
  CHECK(parse("*1\r\nfoo\r\n").rc == RESP_EDOLLAR);
  CHECK(parse("*1\r\n:1\r\n").rc == RESP_EDOLLAR);
  CHECK(parse("*2\r\n$1\r\na\r\n*1\r\n").rc == RESP_EDOLLAR);
  CHECK(parse("*1\r\nf").rc == RESP_EDOLLAR); /* known from one byte */
}

static void test_bulk_crlf(void) {
  CHECK(parse("*1\r\n$3\r\nabcX\r\n").rc == RESP_EPROTOCOL);
  CHECK(parse("*1\r\n$3\r\nabc\rX").rc == RESP_EPROTOCOL);
  CHECK(parse("*1\r\n$3\r\nabc\n\r").rc == RESP_EPROTOCOL);
  CHECK(parse("*1\r\n$3\r\nabcd").rc == RESP_EPROTOCOL); /* no wait */
  CHECK(parse("*1\r\n$3\r\nab").rc == RESP_INCOMPLETE);
  CHECK(parse("*1\r\n$3\r\nabc").rc == RESP_INCOMPLETE);
  CHECK(parse("*1\r\n$3\r\nabc\r").rc == RESP_INCOMPLETE);
}

static void test_limits(void) {
  struct resp_limits lim = RESP_LIMITS_DEFAULT;
  lim.max_bulk = 10;
  const char *ok = "*1\r\n$10\r\n0123456789\r\n";
  CHECK(parse_lim(ok, strlen(ok), &lim).rc == (int)strlen(ok));
  /* Over max_bulk: refused from the header, before any data. */
  CHECK(parse_lim("*1\r\n$11\r\n", 9, &lim).rc == RESP_EBULK_TOO_LARGE);
  CHECK(parse("*1\r\n$536870912\r\n").rc == RESP_INCOMPLETE);
  CHECK(parse("*1\r\n$536870913\r\n").rc == RESP_EBULK_TOO_LARGE);

  lim = (struct resp_limits)RESP_LIMITS_DEFAULT;
  lim.max_args = 3;
  CHECK(parse_lim("*3\r\n", 4, &lim).rc == RESP_INCOMPLETE);
  CHECK(parse_lim("*4\r\n", 4, &lim).rc == RESP_ETOO_MANY_ARGS);
  CHECK(parse_lim("a b c\n", 6, &lim).rc == 6);
  CHECK(parse_lim("a b c d\n", 8, &lim).rc == RESP_ETOO_MANY_ARGS);
  CHECK(parse("*1048576\r\n").rc == RESP_INCOMPLETE);
  CHECK(parse("*1048577\r\n").rc == RESP_ETOO_MANY_ARGS);
}

/* max_command is checked against the declared lengths, so a command that
 * cannot fit fails before its bytes arrive. */
static void test_max_command(void) {
  struct resp_limits lim = RESP_LIMITS_DEFAULT;
  lim.max_command = 100;
  CHECK(parse_lim("*1\r\n$200\r\n", 10, &lim).rc == RESP_ECOMMAND_TOO_LARGE);
  /* 5 + 16 * 6 = 101 bytes at the least: refused at the header. */
  CHECK(parse_lim("*16\r\n", 5, &lim).rc == RESP_ECOMMAND_TOO_LARGE);
  CHECK(parse_lim("*15\r\n", 5, &lim).rc == RESP_INCOMPLETE);
  /* A first bulk that leaves too little room for the second. */
  CHECK(parse_lim("*2\r\n$84\r\n", 9, &lim).rc == RESP_ECOMMAND_TOO_LARGE);
  CHECK(parse_lim("*2\r\n$83\r\n", 9, &lim).rc == RESP_INCOMPLETE);
  /* Exactly 100 bytes is fine, 101 is not: "*1\r\n$N\r\n" + N + 2. */
  char buf[128];
  memcpy(buf, "*1\r\n$90\r\n", 9);
  memset(buf + 9, 'x', 90);
  memcpy(buf + 99, "\r\n", 2);
  CHECK(parse_lim(buf, 101, &lim).rc == RESP_ECOMMAND_TOO_LARGE);
  memcpy(buf, "*1\r\n$89\r\n", 9);
  memcpy(buf + 98, "\r\n", 2);
  CHECK(parse_lim(buf, 100, &lim).rc == 100);
  /* Empty commands and inline lines obey it too. */
  lim.max_command = 3;
  CHECK(parse_lim("*0\r\n", 4, &lim).rc == RESP_ECOMMAND_TOO_LARGE);
  CHECK(parse_lim("ab\n", 3, &lim).rc == 3);
  CHECK(parse_lim("abc\n", 4, &lim).rc == RESP_ECOMMAND_TOO_LARGE);
  CHECK(parse_lim("abc", 3, &lim).rc == RESP_ECOMMAND_TOO_LARGE);
  CHECK(parse_lim("ab", 2, &lim).rc == RESP_INCOMPLETE);
  lim.max_command = 0;
  CHECK(parse_lim("\n", 1, &lim).rc == RESP_ECOMMAND_TOO_LARGE);
}

static void test_inline(void) {
  const char *s = "PING\r\n";
  struct res r = parse(s);
  CHECK(r.rc == 6 && r.argc == 1 && arg_is(s, &r, 0, "PING"));
  r = parse("PING\n");
  CHECK(r.rc == 5 && r.argc == 1 && r.argv[0].len == 4);
  s = "  set   spaced \t value  \r\nget";
  r = parse(s);
  CHECK(r.rc == 26 && r.argc == 3 && arg_is(s, &r, 0, "set") &&
        arg_is(s, &r, 1, "spaced") && arg_is(s, &r, 2, "value"));
  /* Blank lines are empty commands. */
  r = parse("\r\n");
  CHECK(r.rc == 2 && r.argc == 0);
  r = parse(" \t \n");
  CHECK(r.rc == 4 && r.argc == 0);
  /* No quoting: quotes are bytes of the words. */
  s = "SET \"a b\" 'c'\n";
  r = parse(s);
  CHECK(r.rc == 14 && r.argc == 4 && arg_is(s, &r, 1, "\"a") &&
        arg_is(s, &r, 2, "b\"") && arg_is(s, &r, 3, "'c'"));
  /* A lone CR inside the line separates words; a CR only ends it before
   * the LF; "$" does not start a multibulk. */
  s = "a\rb\r\r\n";
  r = parse(s);
  CHECK(r.rc == 6 && r.argc == 2 && arg_is(s, &r, 1, "b"));
  s = "$3\r\n";
  r = parse(s);
  CHECK(r.rc == 4 && r.argc == 1 && arg_is(s, &r, 0, "$3"));
  CHECK(parse("PING").rc == RESP_INCOMPLETE);
  CHECK(parse("PING\r").rc == RESP_INCOMPLETE);
}

static void test_inline_limit(void) {
  struct resp_limits lim = RESP_LIMITS_DEFAULT;
  lim.max_inline = 10;
  CHECK(parse_lim("0123456789\n", 11, &lim).rc == 11);
  CHECK(parse_lim("01234567890\n", 12, &lim).rc == RESP_EINLINE_TOO_LARGE);
  CHECK(parse_lim("0123456789", 10, &lim).rc == RESP_INCOMPLETE);
  CHECK(parse_lim("01234567890", 11, &lim).rc == RESP_EINLINE_TOO_LARGE);
  /* The CR before the LF counts: the limit is on the bytes before "\n". */
  CHECK(parse_lim("012345678\r\n", 11, &lim).rc == 11);
  CHECK(parse_lim("0123456789\r\n", 12, &lim).rc == RESP_EINLINE_TOO_LARGE);
  /* The default is 64 KiB. */
  size_t n = 64 * 1024;
  char *big = malloc(n + 2);
  if (big == NULL)
    abort();
  memset(big, 'a', n + 1);
  big[n] = '\n';
  CHECK(parse_lim(big, n + 1, NULL).rc == (int)n + 1);
  big[n] = 'a';
  big[n + 1] = '\n';
  CHECK(parse_lim(big, n + 2, NULL).rc == RESP_EINLINE_TOO_LARGE);
  CHECK(parse_lim(big, n, NULL).rc == RESP_INCOMPLETE);
  free(big);
}

static void test_needspace(void) {
  const char *s = "*3\r\n$1\r\na\r\n$2\r\nbb\r\n$3\r\nccc\r\n";
  size_t n = strlen(s);
  struct resp_arg argv[3];
  /* cap 0: the count is known right after the header. */
  struct resp_cmd cmd = RESP_CMD_INIT(argv, 0);
  CHECK(resp_parse_command(s, 4, &cmd, NULL) == RESP_ENEEDSPACE);
  CHECK(cmd.argc == 3);
  /* Room for one: the first argument is kept across the next call. */
  cmd.cap = 1;
  CHECK(resp_parse_command(s, n, &cmd, NULL) == RESP_ENEEDSPACE);
  CHECK(cmd.argc == 3 && argv[0].off == 8 && argv[0].len == 1);
  cmd.cap = 3;
  CHECK(resp_parse_command(s, n, &cmd, NULL) == (int)n);
  CHECK(cmd.argc == 3 && argv[1].len == 2 && argv[2].off == 23 &&
        argv[2].len == 3);
  /* Inline: the whole word count. */
  struct resp_cmd in = RESP_CMD_INIT(argv, 1);
  CHECK(resp_parse_command("a b c d\n", 8, &in, NULL) == RESP_ENEEDSPACE);
  CHECK(in.argc == 4);
  in.cap = 3;
  CHECK(resp_parse_command("a b c\n", 6, &in, NULL) == 6 && in.argc == 3);
  /* The feeding helper grows from nothing and finds the same result. */
  struct res whole = parse(s);
  struct res fed = feed(s, n, 1, NULL);
  CHECK(same(&whole, &fed));
}

/* Inputs whose whole-input result the split feedings must reproduce. */
static const char *const split_cases[] = {
    "*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$4\r\nv\0\r\n\r\n",
    "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n",
    "*0\r\n", "*-1\r\n", "  SET a  b \r\nx", "\n", "PING",
    "*2\r\n$3\r\nabc\r\n$1\r\nxY", "*2\r\n$3\r\nabc\r\n:1\r\n",
    "*1\r\n$-1\r\n", "*01\r\n", "*1\r\n$3\r\nabcd\r\n",
    "*5\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n$1\r\ne\r\n",
    "*1\r\n$9999999999\r\n", "*1\r\n$3\r\nab", "*3",
};

static void test_split_feeding(void) {
  struct resp_limits small = RESP_LIMITS_DEFAULT;
  small.max_command = 30;
  small.max_inline = 6;
  small.max_args = 4;
  const struct resp_limits *lims[] = {NULL, &small};
  for (size_t l = 0; l < 2; l++) {
    for (size_t i = 0; i < sizeof split_cases / sizeof *split_cases; i++) {
      const char *s = split_cases[i];
      size_t n = strlen(s);
      if (i == 0)
        n = 32; /* the NUL inside */
      struct res whole = feed(s, n, n ? n : 1, lims[l]);
      if (i == 0 && l == 0)
        CHECK(whole.rc == 32 && whole.argc == 3);
      for (size_t step = 1; step <= 4; step++) {
        struct res part = feed(s, n, step, lims[l]);
        CHECK(same(&whole, &part));
        if (!same(&whole, &part))
          printf("  case %zu limits %zu step %zu: %d vs %d\n", i, l, step,
                 whole.rc, part.rc);
      }
    }
  }
}

/* Feed s[0..n) in `step`-byte pieces to one cmd, storing (argv of
 * MAXARGS) while fewer than `store_below` bytes are given and counting
 * after: the result and argc, as a server that loses its argument array
 * half-way would get them; then, after a success, the storing parse the
 * server does once the command is complete. */
static struct res feed_counting(const char *s, size_t n, size_t step,
                                size_t store_below,
                                const struct resp_limits *lim,
                                struct res *stored) {
  struct res r;
  memset(&r, 0, sizeof r);
  struct resp_cmd cmd = RESP_CMD_INIT(r.argv, MAXARGS);
  size_t have = 0;
  for (;;) {
    r.rc = have < store_below ? resp_parse_command(s, have, &cmd, lim)
                              : resp_count_command(s, have, &cmd, lim);
    if (r.rc != RESP_INCOMPLETE || have == n)
      break;
    have = n - have < step ? n : have + step;
  }
  r.argc = cmd.argc;
  *stored = r.rc > 0 ? parse_lim(s, (size_t)r.rc, lim) : r;
  return r;
}

/* Counting finds what storing finds, however the bytes arrive and whenever
 * it takes over; its progress is never resumed by storing. */
static void test_count_mode(void) {
  struct resp_limits small = RESP_LIMITS_DEFAULT;
  small.max_command = 30;
  small.max_inline = 6;
  small.max_args = 4;
  const struct resp_limits *lims[] = {NULL, &small};
  size_t bad = 0;
  for (size_t l = 0; l < 2; l++) {
    for (size_t i = 0; i < sizeof split_cases / sizeof *split_cases; i++) {
      const char *s = split_cases[i];
      size_t n = i == 0 ? 32 : strlen(s);
      struct res whole = feed(s, n, n ? n : 1, lims[l]);
      for (size_t step = 1; step <= 4; step++) {
        for (size_t from = 0; from <= n; from += 5) {
          struct res again;
          struct res r = feed_counting(s, n, step, from, lims[l], &again);
          int ok = r.rc == whole.rc && (r.rc <= 0 || r.argc == whole.argc);
          ok = ok && same(&whole, &again);
          bad += !ok;
          if (!ok)
            printf("  case %zu limits %zu step %zu from %zu: %d vs %d\n", i,
                   l, step, from, r.rc, whole.rc);
        }
      }
    }
  }
  CHECK(bad == 0);
  /* No argument array needed, whatever the count: never ENEEDSPACE. */
  struct resp_cmd cmd = RESP_CMD_INIT(NULL, 0);
  const char *a = "*1000000\r\n$1\r\nx\r\n$0\r\n";
  CHECK(resp_count_command(a, strlen(a), &cmd, NULL) == RESP_INCOMPLETE);
  CHECK(cmd.at.done == 1 && cmd.at.counted);
  CHECK(resp_count_command("x y z\n", 6, &cmd, NULL) == 6 && cmd.argc == 3);
  /* Counted progress is dropped by a storing call, which starts over. */
  struct resp_arg argv[4];
  struct resp_cmd c2 = RESP_CMD_INIT(argv, 4);
  const char *b = "*2\r\n$1\r\na\r\n$2\r\nbc\r\n";
  CHECK(resp_count_command(b, 15, &c2, NULL) == RESP_INCOMPLETE);
  CHECK(c2.at.done == 1);
  CHECK(resp_parse_command(b, strlen(b), &c2, NULL) == (int)strlen(b));
  CHECK(c2.argc == 2 && argv[0].off == 8 && argv[1].off == 15);
  CHECK(!c2.at.counted && c2.at.kind == 0);
}

/* Progress that does not fit the bytes given is dropped, not trusted. */
static void test_misuse_recovers(void) {
  struct resp_arg argv[4];
  struct resp_cmd cmd = RESP_CMD_INIT(argv, 4);
  const char *a = "*2\r\n$1\r\na\r\n$1\r\n";
  CHECK(resp_parse_command(a, strlen(a), &cmd, NULL) == RESP_INCOMPLETE);
  /* Different (shorter) bytes: parsed from scratch. */
  CHECK(resp_parse_command("PING\n", 5, &cmd, NULL) == 5 && cmd.argc == 1);
  CHECK(resp_parse_command(a, strlen(a), &cmd, NULL) == RESP_INCOMPLETE);
  resp_cmd_reset(&cmd);
  CHECK(resp_parse_command("*1\r\n$1\r\nz\r\n", 11, &cmd, NULL) == 11);
  CHECK(cmd.argc == 1 && argv[0].off == 8);
}

/*
 * A 100 MiB bulk arriving in 64 KiB pieces: the body pages are PROT_NONE,
 * so reading any body byte kills the test. Only the header and the CRLF
 * after the body may be touched.
 */
static void test_big_bulk_not_scanned(void) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  size_t body = (size_t)100 << 20; /* a multiple of the page size */
  size_t span = pg + body + pg;
  char *m = mmap(NULL, span, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  CHECK(m != MAP_FAILED);
  if (m == MAP_FAILED)
    return;
  const char *hdr = "*2\r\n$104857600\r\n";
  size_t hl = strlen(hdr);
  char *p = m + pg - hl;
  memcpy(p, hdr, hl);
  memcpy(m + pg + body, "\r\n$1\r\nx\r\n", 9);
  CHECK(mprotect(m + pg, body, PROT_NONE) == 0);
  size_t total = hl + body + 9;
  struct resp_arg argv[2];
  struct resp_cmd cmd = RESP_CMD_INIT(argv, 2);
  int rc = RESP_INCOMPLETE;
  size_t calls = 0;
  for (size_t n = hl; rc == RESP_INCOMPLETE && n <= total; n += 65536) {
    rc = resp_parse_command(p, n, &cmd, NULL);
    calls++;
  }
  if (rc == RESP_INCOMPLETE)
    rc = resp_parse_command(p, total, &cmd, NULL);
  CHECK(calls > 1600);
  CHECK(rc == (int)total && cmd.argc == 2);
  CHECK(argv[0].off == hl && argv[0].len == body && argv[1].len == 1);
  munmap(m, span);
}

/*
 * 200k small arguments fed a few bytes at a time: every page the parser
 * has finished with (per cmd.at.pos) is made PROT_NONE as it goes, so an
 * implementation that re-parsed the earlier arguments would fault, and the
 * time bound catches a quadratic one.
 */
static void many_args_resumed(int counting) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  size_t nargs = 200000, each = 8; /* "$2\r\nab\r\n" */
  size_t hl = 9;                   /* "*200000\r\n" */
  size_t total = hl + nargs * each;
  size_t span = (total + 2 * pg) / pg * pg;
  char *m = mmap(NULL, span, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  struct resp_arg *argv = calloc(nargs, sizeof *argv);
  CHECK(m != MAP_FAILED && argv != NULL);
  if (m == MAP_FAILED || argv == NULL)
    return;
  memcpy(m, "*200000\r\n", hl);
  for (size_t i = 0; i < nargs; i++)
    memcpy(m + hl + i * each, "$2\r\nab\r\n", each);
  struct resp_cmd cmd = RESP_CMD_INIT(argv, nargs);
  struct resp_limits lim = RESP_LIMITS_DEFAULT;
  clock_t t0 = clock();
  int rc = RESP_INCOMPLETE;
  size_t guarded = pg; /* page 0 stays: p[0] is read on every call */
  for (size_t n = 1; rc == RESP_INCOMPLETE && n <= total; n += 3) {
    rc = counting ? resp_count_command(m, n, &cmd, &lim)
                  : resp_parse_command(m, n, &cmd, &lim);
    size_t done = cmd.at.pos / pg * pg;
    if (rc == RESP_INCOMPLETE && done > guarded) {
      CHECK(mprotect(m + guarded, done - guarded, PROT_NONE) == 0);
      guarded = done;
    }
  }
  if (rc == RESP_INCOMPLETE)
    rc = counting ? resp_count_command(m, total, &cmd, &lim)
                  : resp_parse_command(m, total, &cmd, &lim);
  double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
  CHECK(rc == (int)total && cmd.argc == nargs);
  if (!counting)
    CHECK(argv[nargs - 1].off == total - 4 && argv[nargs - 1].len == 2);
  else
    CHECK(argv[nargs - 1].len == 0); /* nothing stored */
  CHECK(secs < 2.0);
  munmap(m, span);
  free(argv);
}

static void test_many_args_resumed(void) { many_args_resumed(0); }

/* Counting resumes too: no earlier byte is read again. */
static void test_many_args_counted(void) { many_args_resumed(1); }

/* 100k pipelined commands, each parsed once from its own start. */
static void test_pipeline_one_pass(void) {
  size_t count = 100000;
  const char *one = "*1\r\n$4\r\nPING\r\nPING\r\n";
  size_t ol = strlen(one), n = ol * count;
  char *buf = malloc(n);
  if (buf == NULL)
    abort();
  for (size_t i = 0; i < count; i++)
    memcpy(buf + i * ol, one, ol);
  struct resp_arg argv[4];
  struct resp_cmd cmd = RESP_CMD_INIT(argv, 4);
  size_t at = 0, cmds = 0, bytes_ok = 1;
  while (at < n) {
    int rc = resp_parse_command(buf + at, n - at, &cmd, NULL);
    if (rc <= 0 || cmd.argc != 1 || argv[0].len != 4)
      break;
    bytes_ok &= rc == 14 || rc == 6;
    at += (size_t)rc;
    cmds++;
  }
  CHECK(at == n && cmds == 2 * count && bytes_ok);
  free(buf);
}

static void test_strerror(void) {
  CHECK(strcmp(resp_strerror(RESP_EMBULK_LEN),
               "Protocol error: invalid multibulk length") == 0);
  CHECK(strcmp(resp_strerror(RESP_EBULK_LEN),
               "Protocol error: invalid bulk length") == 0);
  CHECK(strcmp(resp_strerror(RESP_EINLINE_TOO_LARGE),
               "Protocol error: too big inline request") == 0);
  int codes[] = {RESP_EMBULK_LEN, RESP_EBULK_LEN, RESP_EDOLLAR,
                 RESP_EPROTOCOL, RESP_EBULK_TOO_LARGE, RESP_ETOO_MANY_ARGS,
                 RESP_ECOMMAND_TOO_LARGE, RESP_EINLINE_TOO_LARGE,
                 RESP_ENEEDSPACE, -1000};
  for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
    const char *t = resp_strerror(codes[i]);
    CHECK(t != NULL && *t != '\0' && strpbrk(t, "\r\n") == NULL);
  }
  CHECK(strstr(resp_strerror(RESP_EPROTOCOL), "\\r\\n") != NULL);
}

static void test_fmt(void) {
  char out[32];
  CHECK(resp_fmt_bulk_header(0, out) == 4 && strcmp(out, "$0\r\n") == 0);
  CHECK(resp_fmt_bulk_header(1234, out) == 7 &&
        strcmp(out, "$1234\r\n") == 0);
  CHECK(resp_fmt_bulk_header(SIZE_MAX, out) == 23 &&
        strcmp(out, "$18446744073709551615\r\n") == 0);
  CHECK(resp_fmt_int(0, out) == 4 && strcmp(out, ":0\r\n") == 0);
  CHECK(resp_fmt_int(-1, out) == 5 && strcmp(out, ":-1\r\n") == 0);
  CHECK(resp_fmt_int(LLONG_MAX, out) == 22 &&
        strcmp(out, ":9223372036854775807\r\n") == 0);
  CHECK(resp_fmt_int(LLONG_MIN, out) == 23 &&
        strcmp(out, ":-9223372036854775808\r\n") == 0);
  CHECK(resp_fmt_array_header(-1, out) == 5 && strcmp(out, "*-1\r\n") == 0);
  CHECK(resp_fmt_array_header(3, out) == 4 && strcmp(out, "*3\r\n") == 0);
  /* What the formatters write, the parser reads back. */
  char cmd[64];
  size_t k = resp_fmt_array_header(1, cmd);
  k += resp_fmt_bulk_header(2, cmd + k);
  memcpy(cmd + k, "hi\r\n", 4);
  struct res r = parse_lim(cmd, k + 4, NULL);
  CHECK(r.rc == (int)k + 4 && r.argc == 1 && arg_is(cmd, &r, 0, "hi"));
}

int main(void) {
  RUN(test_multibulk);
  RUN(test_pipelined);
  RUN(test_incomplete_prefixes);
  RUN(test_length_syntax);
  RUN(test_empty_commands);
  RUN(test_expected_dollar);
  RUN(test_bulk_crlf);
  RUN(test_limits);
  RUN(test_max_command);
  RUN(test_inline);
  RUN(test_inline_limit);
  RUN(test_needspace);
  RUN(test_split_feeding);
  RUN(test_misuse_recovers);
  RUN(test_big_bulk_not_scanned);
  RUN(test_many_args_resumed);
  RUN(test_many_args_counted);
  RUN(test_count_mode);
  RUN(test_pipeline_one_pass);
  RUN(test_strerror);
  RUN(test_fmt);
  return CHECK_DONE();
}
