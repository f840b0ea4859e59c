/*
 * fuzz_resp.c -- libFuzzer target for src/resp.c.
 *
 * Input: a 6-byte preamble (limits, argv growth, formatter operand), then
 * the bytes a client sent. The data is parsed whole, with a fresh command,
 * and must satisfy:
 *   - the result is <= n; on success every argument lies inside the bytes
 *     the command used, argc <= max_args, the length <= max_command;
 *   - a multibulk result re-encodes, byte for byte, to the input it came
 *     from (the length syntax is canonical, so the arguments determine the
 *     bytes), and every bulk is <= max_bulk;
 *   - an inline result equals a naive split of the line into words, and the
 *     line is within max_inline;
 *   - every shorter prefix of a successful command is RESP_INCOMPLETE;
 *   - feeding the bytes in fuzzer-chosen pieces to one resumed command,
 *     each call on a fresh exact-size heap copy (so the buffer moves, and
 *     ASan sees any read past n), with argv grown from nothing on
 *     RESP_ENEEDSPACE, ends with the same result and the same arguments;
 *   - counting (resp_count_command) gives the result and argc of storing,
 *     on the whole input and fed in pieces, also when it takes over from
 *     storing half-way (a fuzzer-chosen piece), never RESP_ENEEDSPACE; and
 *     a storing call after counted progress starts over and is right;
 *   - resp_strerror has a text without CR/LF for every result;
 *   - resp_fmt_int/resp_fmt_array_header/resp_fmt_bulk_header of a
 *     fuzzer-chosen value read back (strtoll/strtoull) as that value.
 *
 * fuzz-sources: src/resp.c
 *
 * Built by scripts/fuzz with clang -fsanitize=fuzzer,address,undefined and
 * linked against src/resp.c directly. Pure C, no Lua.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

#define FUZZ_NAME "fuzz_resp"
#include "fuzz.h"

#define PREAMBLE 6
#define MAX_PIECES 48

struct outcome {
  int rc;
  size_t argc;
  struct resp_arg *argv; /* malloc'd, argc entries on success */
};

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL)
    abort();
  return p;
}

/* An exact-size heap copy of s[0..n). */
static char *dup_exact(const char *s, size_t n) {
  char *p = xmalloc(n);
  if (n)
    memcpy(p, s, n);
  return p;
}

#define NEVER ((size_t)-1)

/*
 * Parse with the bytes arriving at the cut points (increasing, ending at
 * n); argv starts with `cap0` slots and grows by `grow` (1 doubles, 0 jumps
 * to argc) on RESP_ENEEDSPACE. From cut index `count_from` on, the
 * arguments are only counted (NEVER: always stored).
 */
static struct outcome run(const char *s, size_t n, const size_t *cuts,
                          size_t ncuts, size_t cap0, int grow,
                          size_t count_from, const struct resp_limits *lim) {
  struct outcome o = {0, 0, NULL};
  struct resp_arg *argv = xmalloc(cap0 * sizeof *argv);
  struct resp_cmd cmd = RESP_CMD_INIT(argv, cap0);
  for (size_t c = 0; c < ncuts; c++) {
    char *copy = dup_exact(s, cuts[c]);
    for (;;) {
      if (c >= count_from) {
        o.rc = resp_count_command(copy, cuts[c], &cmd, lim);
        if (o.rc == RESP_ENEEDSPACE)
          FAIL("counting returned ENEEDSPACE");
        break;
      }
      o.rc = resp_parse_command(copy, cuts[c], &cmd, lim);
      if (o.rc != RESP_ENEEDSPACE)
        break;
      if (cmd.argc <= cmd.cap)
        FAIL("ENEEDSPACE with argc %zu <= cap %zu", cmd.argc, cmd.cap);
      /* No more than n + 1 slots can fill from n bytes: a claimed count of
       * a million does not make every run allocate 16 MB. */
      size_t cap = grow ? (cmd.cap ? cmd.cap * 2 : 1) : n + 1;
      if (cap > cmd.argc)
        cap = cmd.argc;
      if (cap <= cmd.cap)
        FAIL("argv of %zu cannot grow (argc %zu)", cmd.cap, cmd.argc);
      argv = realloc(argv, cap * sizeof *argv);
      if (argv == NULL)
        abort();
      cmd.argv = argv;
      cmd.cap = cap;
    }
    free(copy);
    if (o.rc != RESP_INCOMPLETE)
      break;
  }
  o.argc = cmd.argc;
  o.argv = argv;
  return o;
}

static struct outcome run_whole(const char *s, size_t n, size_t cap0,
                                const struct resp_limits *lim) {
  size_t cut = n;
  return run(s, n, &cut, 1, cap0, 0, NEVER, lim);
}

/* Counting the whole input: the result and argc of storing. */
static void check_count_whole(const char *s, size_t n,
                              const struct outcome *whole,
                              const struct resp_limits *lim) {
  size_t cut = n;
  struct outcome o = run(s, n, &cut, 1, 0, 0, 0, lim);
  if (o.rc != whole->rc || (o.rc > 0 && o.argc != whole->argc))
    FAIL("counting gave %d (argc %zu), storing %d (argc %zu)", o.rc, o.argc,
         whole->rc, whole->argc);
  free(o.argv);
}

/* Counted progress, then a storing call with all the bytes: it must start
 * over and find what a fresh parse finds. */
static void check_count_then_store(const char *s, size_t n, size_t cut,
                                   const struct outcome *whole,
                                   const struct resp_limits *lim) {
  struct resp_cmd cmd = RESP_CMD_INIT(NULL, 0);
  char *copy = dup_exact(s, cut);
  int rc = resp_count_command(copy, cut, &cmd, lim);
  free(copy);
  if (rc != RESP_INCOMPLETE)
    return;
  struct resp_arg *argv = xmalloc((n + 1) * sizeof *argv);
  cmd.argv = argv;
  cmd.cap = n + 1; /* more than n bytes can hold: never ENEEDSPACE */
  rc = resp_parse_command(s, n, &cmd, lim);
  if (rc != whole->rc ||
      (rc > 0 && (cmd.argc != whole->argc ||
                  (cmd.argc && memcmp(argv, whole->argv,
                                      cmd.argc * sizeof *argv) != 0))))
    FAIL("storing after counted progress gave %d, a fresh parse %d", rc,
         whole->rc);
  free(argv);
}

static size_t put_len(char *out, char marker, size_t v) {
  return (size_t)sprintf(out, "%c%zu\r\n", marker, v);
}

/* Multibulk: the canonical encoding of the arguments is the input. */
static void check_multibulk(const char *s, const struct outcome *o,
                            const struct resp_limits *lim) {
  if (o->argc == 0) /* "*0" or a negative count: nothing to compare */
    return;
  size_t rc = (size_t)o->rc, at = 0;
  char hdr[32];
  size_t k = put_len(hdr, '*', o->argc);
  if (k > rc || memcmp(s, hdr, k) != 0)
    FAIL("multibulk header does not re-encode");
  at = k;
  for (size_t i = 0; i < o->argc; i++) {
    const struct resp_arg *a = &o->argv[i];
    if (a->len > lim->max_bulk)
      FAIL("bulk %zu of %zu bytes > max_bulk %zu", i, a->len, lim->max_bulk);
    k = put_len(hdr, '$', a->len);
    if (at + k > rc || memcmp(s + at, hdr, k) != 0 || a->off != at + k)
      FAIL("bulk %zu header does not re-encode", i);
    at += k + a->len;
    if (at + 2 > rc || memcmp(s + at, "\r\n", 2) != 0)
      FAIL("bulk %zu is not followed by CRLF", i);
    at += 2;
  }
  if (at != rc)
    FAIL("multibulk re-encodes to %zu bytes, parser used %zu", at, rc);
}

static int blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Inline: a naive split of the line. */
static void check_inline(const char *s, const struct outcome *o,
                         const struct resp_limits *lim) {
  size_t rc = (size_t)o->rc;
  if (s[rc - 1] != '\n' || memchr(s, '\n', rc - 1) != NULL)
    FAIL("inline command does not end at its first LF");
  size_t len = rc - 1;
  if (len > lim->max_inline)
    FAIL("inline line of %zu bytes > max_inline %zu", len, lim->max_inline);
  if (len > 0 && s[len - 1] == '\r')
    len--;
  size_t argc = 0;
  for (size_t i = 0; i < len;) {
    if (blank(s[i])) {
      i++;
      continue;
    }
    size_t j = i;
    while (j < len && !blank(s[j]))
      j++;
    if (argc >= o->argc || o->argv[argc].off != i ||
        o->argv[argc].len != j - i)
      FAIL("inline word %zu differs from the naive split", argc);
    argc++;
    i = j;
  }
  if (argc != o->argc)
    FAIL("inline: %zu words, parser found %zu", argc, o->argc);
}

static void check_success(const char *s, size_t n, const struct outcome *o,
                          const struct resp_limits *lim) {
  size_t rc = (size_t)o->rc;
  if (rc > n)
    FAIL("used %zu of %zu bytes", rc, n);
  if (rc > lim->max_command)
    FAIL("command of %zu bytes > max_command %zu", rc, lim->max_command);
  if (o->argc > lim->max_args)
    FAIL("argc %zu > max_args %zu", o->argc, lim->max_args);
  for (size_t i = 0; i < o->argc; i++)
    if (o->argv[i].off > rc || o->argv[i].len > rc - o->argv[i].off)
      FAIL("argument %zu outside the command", i);
  if (s[0] == '*')
    check_multibulk(s, o, lim);
  else
    check_inline(s, o, lim);
}

/* Every shorter prefix of a complete command is incomplete: sampled. */
static void check_prefixes(const char *s, size_t rc,
                           const struct resp_limits *lim) {
  size_t step = rc / 64 + 1;
  for (size_t k = 0; k < rc; k += step) {
    struct outcome o = run_whole(s, k, 8, lim);
    free(o.argv);
    if (o.rc != RESP_INCOMPLETE)
      FAIL("prefix %zu of a %zu-byte command gave %d", k, rc, o.rc);
  }
}

/* Cut points from fuzzer bytes: increasing, the last one n. */
static size_t make_cuts(const uint8_t *sel, size_t nsel, size_t n,
                        size_t *cuts) {
  size_t nc = 0, at = 0;
  for (size_t i = 0; i < nsel && nc < MAX_PIECES - 1 && at < n; i++) {
    size_t step = sel[i] % 8 == 0 ? (size_t)sel[i] * 4 : sel[i] % 8;
    at = at + step < n ? at + step : n;
    cuts[nc++] = at;
  }
  if (nc == 0 || cuts[nc - 1] != n)
    cuts[nc++] = n;
  return nc;
}

static void check_split(const char *s, size_t n, const struct outcome *whole,
                        const uint8_t *sel, size_t nsel, int grow,
                        const struct resp_limits *lim) {
  size_t cuts[MAX_PIECES];
  size_t nc = make_cuts(sel, nsel, n, cuts);
  /* Counting takes over at a piece the first selector byte picks. */
  size_t from = nsel > 0 ? sel[0] % (nc + 1) : 0;
  struct outcome c = run(s, n, cuts, nc, 0, grow, from, lim);
  if (c.rc != whole->rc || (c.rc > 0 && c.argc != whole->argc))
    FAIL("counting from piece %zu of %zu gave %d (argc %zu), storing %d "
         "(argc %zu)", from, nc, c.rc, c.argc, whole->rc, whole->argc);
  free(c.argv);
  if (nc > 1)
    check_count_then_store(s, n, cuts[nc / 2], whole, lim);
  struct outcome o = run(s, n, cuts, nc, 0, grow, NEVER, lim);
  if (o.rc != whole->rc)
    FAIL("split feeding gave %d, whole input %d", o.rc, whole->rc);
  if (o.rc > 0 && (o.argc != whole->argc ||
                   (o.argc && memcmp(o.argv, whole->argv,
                                     o.argc * sizeof *o.argv) != 0)))
    FAIL("split feeding found other arguments");
  if (o.rc == RESP_ENEEDSPACE)
    FAIL("ENEEDSPACE escaped the growth loop");
  free(o.argv);
}

static void check_fmt(uint8_t sel, const uint8_t *v8) {
  uint64_t u = 0;
  for (int i = 0; i < 8; i++)
    u = u << 8 | v8[i];
  char out[32];
  size_t k;
  char marker = "$:*"[sel % 3];
  if (marker == '$')
    k = resp_fmt_bulk_header((size_t)u, out);
  else if (marker == ':')
    k = resp_fmt_int((long long)u, out);
  else
    k = resp_fmt_array_header((long long)u, out);
  if (k < 4 || k > 23 || strlen(out) != k || out[0] != marker ||
      memcmp(out + k - 2, "\r\n", 2) != 0)
    FAIL("formatted '%s' (%zu bytes)", out, k);
  char *end = NULL;
  if (marker == '$') {
    if (strtoull(out + 1, &end, 10) != u)
      FAIL("'%s' does not read back as %llu", out, (unsigned long long)u);
  } else if (strtoll(out + 1, &end, 10) != (long long)u) {
    FAIL("'%s' does not read back as %lld", out, (long long)u);
  }
  if (end != out + k - 2)
    FAIL("'%s' has extra bytes", out);
}

static struct resp_limits pick_limits(const uint8_t *pre) {
  struct resp_limits lim = RESP_LIMITS_DEFAULT;
  if (pre[0] & 1) { /* small limits, so every limit is reachable */
    lim.max_bulk = pre[1] % 64;
    lim.max_args = pre[2] % 16;
    lim.max_command = (size_t)pre[3] * 2;
    lim.max_inline = pre[4] % 80;
  }
  return lim;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < PREAMBLE)
    return 0;
  const uint8_t *pre = data;
  struct resp_limits lim = pick_limits(pre);
  size_t fmt_bytes = size >= PREAMBLE + 8 ? 8 : 0;
  if (fmt_bytes)
    check_fmt(pre[5], data + size - 8);
  /* The data is the whole input after the preamble; the cut selectors are
   * read from the same bytes (the tail), which keeps inputs short. */
  size_t n = size - PREAMBLE;
  char *s = dup_exact((const char *)data + PREAMBLE, n);
  struct outcome whole = run_whole(s, n, (pre[0] >> 1) % 4, &lim);
  if (whole.rc == RESP_ENEEDSPACE)
    FAIL("ENEEDSPACE escaped the growth loop");
  if (resp_strerror(whole.rc) == NULL ||
      strpbrk(resp_strerror(whole.rc), "\r\n") != NULL)
    FAIL("strerror(%d) unusable", whole.rc);
  check_count_whole(s, n, &whole, &lim);
  if (whole.rc > 0) {
    check_success(s, n, &whole, &lim);
    check_prefixes(s, (size_t)whole.rc, &lim);
  }
  size_t nsel = n < 32 ? n : 32;
  check_split(s, n, &whole, data + size - nsel, nsel, pre[0] & 8, &lim);
  check_split(s, n, &whole, data + PREAMBLE, nsel, pre[0] & 16, &lim);
  free(whole.argv);
  free(s);
  return 0;
}
