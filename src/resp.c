/*
 * resp.c -- RESP2 request parsing and reply headers. See resp.h for the
 * contract and the accepted syntax. No lua.h here.
 *
 * Invariants: nothing is read at or past p[n]; every stored argument lies
 * inside p[0..returned length); a command's result does not depend on how
 * its bytes were split across calls (the progress in struct resp_cmd only
 * saves work, it never changes a decision).
 */
#include "resp.h"

#include <limits.h>
#include <string.h>

enum { KIND_NONE, KIND_MULTIBULK, KIND_INLINE };

/* The smallest argument, "$0\r\n\r\n": a lower bound on what the arguments
 * not seen yet will add to a command. */
#define MIN_ARG_BYTES 6

/* Longest "<marker><digits>\r\n" line string2ll can accept: a sign, 19
 * digits and CRLF after the marker. */
#define MAX_LEN_LINE 23

static const struct resp_limits resp_defaults = RESP_LIMITS_DEFAULT;

void resp_cmd_reset(struct resp_cmd *cmd) {
  memset(&cmd->at, 0, sizeof cmd->at);
}

static size_t sat_add(size_t a, size_t b) {
  return a > (size_t)-1 - b ? (size_t)-1 : a + b;
}

static size_t sat_mul(size_t a, size_t b) {
  return b != 0 && a > (size_t)-1 / b ? (size_t)-1 : a * b;
}

/* The result is an int, so no command may be longer than INT_MAX. */
static size_t max_command(const struct resp_limits *lim) {
  return lim->max_command < (size_t)INT_MAX ? lim->max_command
                                            : (size_t)INT_MAX;
}

/*
 * A length line q[0..m): a marker byte, then Redis's string2ll syntax, then
 * "\r\n". Returns 1 with *v and *used (bytes including CRLF), 0 when the
 * bytes so far are a valid prefix, -1 when no continuation can make the line
 * valid. Overflow is found while the digits arrive, so at most
 * MAX_LEN_LINE bytes are ever looked at.
 */
static int parse_len(const char *q, size_t m, long long *v, size_t *used) {
  size_t i = 1;
  int neg = 0;
  unsigned long long u = 0;
  /* LLONG_MIN's magnitude is one more than LLONG_MAX's. */
  const unsigned long long lim = (unsigned long long)LLONG_MAX;
  if (i < m && q[i] == '-') {
    neg = 1;
    i++;
  }
  if (i >= m)
    return 0;
  if (q[i] == '0') {
    if (neg) /* "-0" and "-01": string2ll refuses both */
      return -1;
    i++;
  } else if (q[i] >= '1' && q[i] <= '9') {
    for (; i < m && q[i] >= '0' && q[i] <= '9'; i++) {
      unsigned d = (unsigned)(q[i] - '0');
      if (u > (lim + (unsigned)neg - d) / 10)
        return -1;
      u = u * 10 + d;
    }
  } else {
    return -1;
  }
  if (i >= m)
    return 0;
  if (q[i] != '\r')
    return -1;
  if (i + 1 >= m)
    return 0;
  if (q[i + 1] != '\n')
    return -1;
  *used = i + 2;
  /* -(u - 1) - 1 reaches LLONG_MIN without overflowing. */
  *v = neg ? -(long long)(u - 1) - 1 : (long long)u;
  return 1;
}

/* --- multibulk ---------------------------------------------------------- */

/* mb_header's result when arguments follow. */
#define MB_ARGS_FOLLOW INT_MIN

/* The "*<argc>\r\n" line: RESP_INCOMPLETE or an error, the length of an
 * empty command, or MB_ARGS_FOLLOW with cmd->at set up for the arguments. */
static int mb_header(const char *p, size_t n, struct resp_cmd *cmd,
                     const struct resp_limits *lim) {
  long long v = 0;
  size_t used = 0;
  int ok = parse_len(p, n, &v, &used);
  if (ok <= 0)
    return ok == 0 ? RESP_INCOMPLETE : RESP_EMBULK_LEN;
  if (v <= 0) { /* "*0" and "*-1": nothing to run, as redis-server */
    cmd->argc = 0;
    return used > max_command(lim) ? RESP_ECOMMAND_TOO_LARGE : (int)used;
  }
  if ((unsigned long long)v > lim->max_args)
    return RESP_ETOO_MANY_ARGS;
  size_t least = sat_add(used, sat_mul((size_t)v, MIN_ARG_BYTES));
  if (least > max_command(lim))
    return RESP_ECOMMAND_TOO_LARGE;
  cmd->at.kind = KIND_MULTIBULK;
  cmd->at.pos = used;
  cmd->at.want = (size_t)v;
  cmd->at.done = 0;
  return MB_ARGS_FOLLOW;
}

/*
 * One "$<len>\r\n<data>\r\n" at p[s..n). Returns its size (> 0) with *arg
 * set, RESP_INCOMPLETE, or an error. `left` is how many arguments follow
 * this one, for the early max_command check.
 */
static int mb_bulk(const char *p, size_t n, size_t s, size_t left,
                   const struct resp_limits *lim, struct resp_arg *arg) {
  if (s >= n)
    return RESP_INCOMPLETE;
  if (p[s] != '$')
    return RESP_EDOLLAR;
  long long v = 0;
  size_t used = 0;
  int ok = parse_len(p + s, n - s, &v, &used);
  if (ok <= 0)
    return ok == 0 ? RESP_INCOMPLETE : RESP_EBULK_LEN;
  if (v < 0)
    return RESP_EBULK_LEN;
  if ((unsigned long long)v > lim->max_bulk)
    return RESP_EBULK_TOO_LARGE;
  size_t len = (size_t)v;
  size_t body = s + used;
  size_t end = sat_add(sat_add(body, len), 2);
  if (sat_add(end, sat_mul(left, MIN_ARG_BYTES)) > max_command(lim))
    return RESP_ECOMMAND_TOO_LARGE;
  /* Here end <= INT_MAX, so body + len + 2 cannot wrap. The CR is checked
   * as soon as it is there, so a wrong length fails without waiting. */
  if (n - body <= len)
    return RESP_INCOMPLETE;
  if (p[body + len] != '\r')
    return RESP_EPROTOCOL;
  if (n - body == len + 1)
    return RESP_INCOMPLETE;
  if (p[body + len + 1] != '\n')
    return RESP_EPROTOCOL;
  arg->off = body;
  arg->len = len;
  return (int)(end - s);
}

/* `store`: keep the arguments in argv (else only count them). */
static int mb_parse(const char *p, size_t n, struct resp_cmd *cmd,
                    const struct resp_limits *lim, int store) {
  struct resp_progress *at = &cmd->at;
  int rc;
  if (at->kind != KIND_MULTIBULK &&
      (rc = mb_header(p, n, cmd, lim)) != MB_ARGS_FOLLOW)
    return rc;
  if (!store)
    at->counted = 1;
  while (at->done < at->want) {
    if (store && at->done >= cmd->cap) {
      cmd->argc = at->want;
      return RESP_ENEEDSPACE; /* progress kept: the caller grows argv */
    }
    struct resp_arg arg;
    rc = mb_bulk(p, n, at->pos, at->want - at->done - 1, lim, &arg);
    if (rc <= 0) {
      if (rc < 0)
        resp_cmd_reset(cmd);
      return rc;
    }
    if (store)
      cmd->argv[at->done] = arg;
    at->done++;
    at->pos += (size_t)rc;
  }
  size_t total = at->pos;
  cmd->argc = at->want;
  resp_cmd_reset(cmd);
  return (int)total;
}

/* --- inline ------------------------------------------------------------- */

static int is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* The longest inline line (bytes before its "\n") and the error for one
 * longer: max_inline, or max_command when that is the tighter bound, so
 * that whichever limit a growing line crosses first is the one reported. */
static size_t inline_limit(const struct resp_limits *lim, int *err) {
  size_t cmdmax = max_command(lim);
  if (cmdmax > lim->max_inline) {
    *err = RESP_EINLINE_TOO_LARGE;
    return lim->max_inline;
  }
  *err = RESP_ECOMMAND_TOO_LARGE;
  return cmdmax - 1; /* a line of L bytes needs L + 1; cmdmax > 0 here */
}

/* Split p[0..len) into words; stores up to cap of them (none unless
 * `store`) and returns how many there are. */
static size_t inline_words(const char *p, size_t len, struct resp_cmd *cmd,
                           int store) {
  size_t argc = 0, i = 0;
  while (i < len) {
    while (i < len && is_blank(p[i]))
      i++;
    if (i == len)
      break;
    size_t start = i;
    while (i < len && !is_blank(p[i]))
      i++;
    if (store && argc < cmd->cap) {
      cmd->argv[argc].off = start;
      cmd->argv[argc].len = i - start;
    }
    argc++;
  }
  return argc;
}

static int inline_parse(const char *p, size_t n, struct resp_cmd *cmd,
                        const struct resp_limits *lim, int store) {
  struct resp_progress *at = &cmd->at;
  int err = 0;
  size_t limit = inline_limit(lim, &err);
  /* The "\n" may be at most at index `limit`; search no further. */
  size_t end = n <= limit ? n : limit + 1;
  size_t from = at->kind == KIND_INLINE ? at->pos : 0;
  const char *nl = from < end ? memchr(p + from, '\n', end - from) : NULL;
  if (nl == NULL) {
    if (n > limit) {
      resp_cmd_reset(cmd);
      return err;
    }
    at->kind = KIND_INLINE; /* resume the search where it stopped */
    at->pos = n;
    return RESP_INCOMPLETE;
  }
  size_t eol = (size_t)(nl - p);
  size_t len = eol > 0 && p[eol - 1] == '\r' ? eol - 1 : eol;
  size_t argc = inline_words(p, len, cmd, store);
  resp_cmd_reset(cmd);
  if (argc > lim->max_args)
    return RESP_ETOO_MANY_ARGS;
  cmd->argc = argc;
  if (store && argc > cmd->cap)
    return RESP_ENEEDSPACE; /* the line is re-split next time: <= 64 KiB */
  return (int)(eol + 1);
}

/* --- entry points ------------------------------------------------------- */

/* Progress that cannot belong to these bytes (the caller broke the rule in
 * resp.h), or whose arguments a storing call would lack, is dropped rather
 * than trusted: parsing from the start is always correct, only slower. */
static void check_progress(const char *p, size_t n, struct resp_cmd *cmd,
                           int store) {
  const struct resp_progress *at = &cmd->at;
  if (at->kind == KIND_NONE)
    return;
  int star = n > 0 && p[0] == '*';
  if (at->pos > n || star != (at->kind == KIND_MULTIBULK) ||
      at->done > at->want ||
      (store && (at->counted || at->done > cmd->cap)))
    resp_cmd_reset(cmd);
}

static int parse(const char *p, size_t n, struct resp_cmd *cmd,
                 const struct resp_limits *lim, int store) {
  if (lim == NULL)
    lim = &resp_defaults;
  check_progress(p, n, cmd, store);
  if (n == 0)
    return RESP_INCOMPLETE;
  if (max_command(lim) == 0) /* not even "\n" fits */
    return RESP_ECOMMAND_TOO_LARGE;
  if (p[0] == '*')
    return mb_parse(p, n, cmd, lim, store);
  return inline_parse(p, n, cmd, lim, store);
}

int resp_parse_command(const char *p, size_t n, struct resp_cmd *cmd,
                       const struct resp_limits *lim) {
  return parse(p, n, cmd, lim, 1);
}

int resp_count_command(const char *p, size_t n, struct resp_cmd *cmd,
                       const struct resp_limits *lim) {
  return parse(p, n, cmd, lim, 0);
}

const char *resp_strerror(int code) {
  switch (code) {
  case RESP_INCOMPLETE: return "incomplete command";
  /* Redis's own replies for the same conditions. */
  case RESP_EMBULK_LEN:
  case RESP_ETOO_MANY_ARGS: return "Protocol error: invalid multibulk length";
  case RESP_EBULK_LEN:
  case RESP_EBULK_TOO_LARGE: return "Protocol error: invalid bulk length";
  case RESP_EINLINE_TOO_LARGE: return "Protocol error: too big inline request";
  /* Conditions Redis does not check, or answers by closing silently. */
  case RESP_EDOLLAR: return "Protocol error: expected '$'";
  case RESP_EPROTOCOL: return "Protocol error: expected '\\r\\n' after bulk data";
  case RESP_ECOMMAND_TOO_LARGE: return "Protocol error: command too large";
  case RESP_ENEEDSPACE: return "argument array too small";
  default: return "unknown RESP error";
  }
}

/* --- reply headers ------------------------------------------------------ */

/* marker, the digits of u (with a '-' first when neg), CRLF, NUL. */
static size_t fmt_line(char marker, int neg, unsigned long long u,
                       char out[32]) {
  char digits[20];
  size_t nd = 0, k = 0;
  do {
    digits[nd++] = (char)('0' + u % 10);
    u /= 10;
  } while (u != 0);
  out[k++] = marker;
  if (neg)
    out[k++] = '-';
  while (nd > 0)
    out[k++] = digits[--nd];
  out[k++] = '\r';
  out[k++] = '\n';
  out[k] = '\0';
  return k;
}

/* The magnitude of v, LLONG_MIN included, without signed overflow. */
static unsigned long long magnitude(long long v) {
  return v < 0 ? (unsigned long long)(-(v + 1)) + 1 : (unsigned long long)v;
}

size_t resp_fmt_bulk_header(size_t len, char out[32]) {
  return fmt_line('$', 0, len, out);
}

size_t resp_fmt_int(long long v, char out[32]) {
  return fmt_line(':', v < 0, magnitude(v), out);
}

size_t resp_fmt_array_header(long long n, char out[32]) {
  return fmt_line('*', n < 0, magnitude(n), out);
}
