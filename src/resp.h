/*
 * resp.h -- RESP2 request parsing, as a Redis server reads its clients, and
 * the reply headers a server writes on its hot path.
 *
 * Contract: no lua.h here (unit-tested and fuzzed alone). Nothing is
 * allocated: the caller owns the input bytes and the argument array, and the
 * parser only reports offsets into the input. Error codes are negative
 * RESP_E* values; every error but RESP_ENEEDSPACE is fatal for the
 * connection (a server replies "-ERR <resp_strerror(code)>" and closes, as
 * redis-server does).
 *
 * What is accepted (redis-server's rules, made strict where Redis is loose):
 *   - A command starting with '*' is a multibulk: "*<argc>\r\n", then argc
 *     times "$<len>\r\n<len bytes>\r\n". Lengths follow Redis's string2ll:
 *     an optional '-' then "0" or a digit 1-9 and more digits, nothing else
 *     ("*01", "*+1", "* 1", "*1e0", "*0x1", "*-0" are invalid), within
 *     long long. The length line must end in "\r\n" exactly (Redis only
 *     looks for the '\r'; we also refuse a '\r' not followed by '\n').
 *   - "*0" and any negative count ("*-1") are an empty command: the bytes
 *     are consumed and argc is 0, no reply is due (redis-server skips them).
 *   - A bulk length must be >= 0 and <= max_bulk, and the "\r\n" after the
 *     data is checked (Redis skips those two bytes unchecked).
 *   - Anything else is an inline command: one line ended by "\n" (a '\r'
 *     just before it is dropped), split into words at runs of ' ', '\t',
 *     '\r', '\v', '\f'. No quoting: '"' and '\'' are ordinary bytes, because
 *     arguments are slices of the input and cannot be unescaped in place.
 *     A line of only blanks is an empty command (argc 0).
 * Limits are checked as soon as the declared lengths show them crossed,
 * before the bytes arrive: a multibulk header whose argc cannot fit
 * (argc * 6 bytes, the smallest argument "$0\r\n\r\n") or a bulk header whose
 * end lies past max_command fails at once.
 *
 * Incremental parsing: a struct resp_cmd remembers how far a command that
 * returned RESP_INCOMPLETE (or RESP_ENEEDSPACE) got, so the next call only
 * parses the new bytes: a bulk body is skipped by its length (a 100 MB value
 * arriving in 64 KiB pieces costs one header parse per piece) and the
 * arguments already parsed are not parsed again. The rule: after
 * RESP_INCOMPLETE or RESP_ENEEDSPACE, call again with the same bytes at the
 * start of `p` (the buffer may have moved: offsets are relative), possibly
 * followed by more. Every other result resets the progress. Call
 * resp_cmd_reset() before parsing different bytes with an unfinished cmd.
 *
 * Counting: resp_count_command checks a command exactly as
 * resp_parse_command does (same result, same argc) but stores no argument,
 * so its progress is a few words and needs no argument array: a server
 * with many connections keeps that for each unfinished command, and parses
 * a completed one once more, storing (O(n) once). Progress made by
 * storing may be resumed by counting; progress made by counting is dropped
 * by a storing call (argv lacks those arguments), which then parses from
 * the start.
 */
#ifndef BERTH_RESP_H
#define BERTH_RESP_H

#include <stddef.h>

/* resp_parse_command results: > 0 bytes used, 0 incomplete, < 0 errors. */
#define RESP_INCOMPLETE 0
#define RESP_EMBULK_LEN (-1)         /* bad "*<argc>" line */
#define RESP_EBULK_LEN (-2)          /* bad "$<len>" line, or len < 0 */
#define RESP_EDOLLAR (-3)            /* an argument not starting with '$' */
#define RESP_EPROTOCOL (-4)          /* no "\r\n" after a bulk's data */
#define RESP_EBULK_TOO_LARGE (-5)    /* len > max_bulk */
#define RESP_ETOO_MANY_ARGS (-6)     /* argc > max_args */
#define RESP_ECOMMAND_TOO_LARGE (-7) /* command bytes > max_command */
#define RESP_EINLINE_TOO_LARGE (-8)  /* inline line > max_inline */
#define RESP_ENEEDSPACE (-9)         /* argv full: grow it and call again */

struct resp_limits {
  size_t max_bulk;    /* longest bulk string */
  size_t max_args;    /* most arguments in one command */
  size_t max_command; /* most bytes one command occupies (capped at
                         INT_MAX, as the result is an int) */
  size_t max_inline;  /* most bytes on an inline line before its "\n" */
};

/* Redis's defaults: proto-max-bulk-len (512 MiB), the classic multibulk
 * count cap (1024 * 1024), client-query-buffer-limit (1 GiB) and
 * PROTO_INLINE_MAX_SIZE (64 KiB). A NULL `lim` means these. */
#define RESP_LIMITS_DEFAULT                                                \
  {.max_bulk = (size_t)512 * 1024 * 1024,                                  \
   .max_args = (size_t)1024 * 1024,                                        \
   .max_command = (size_t)1024 * 1024 * 1024,                              \
   .max_inline = (size_t)64 * 1024}

struct resp_arg {
  size_t off, len; /* the argument is p[off .. off+len) */
};

/* Private: where an unfinished command stopped. Zero means "nothing yet". */
struct resp_progress {
  size_t pos;  /* bytes of the input already parsed */
  size_t want; /* multibulk: declared argc */
  size_t done; /* multibulk: arguments parsed */
  int kind;    /* 0 none, 1 multibulk, 2 inline */
  int counted; /* arguments were counted, not stored: argv lacks them */
};

struct resp_cmd {
  size_t argc;           /* arguments (on success and RESP_ENEEDSPACE) */
  struct resp_arg *argv; /* caller's array of `cap` entries */
  size_t cap;
  struct resp_progress at;
};

#define RESP_CMD_INIT(argv, cap) {0, (argv), (cap), {0, 0, 0, 0, 0}}

/*
 * Parse one command at the start of p[0..n). Returns the bytes it occupies
 * (> 0; argv[0..argc) are filled, argc may be 0 for an empty command),
 * RESP_INCOMPLETE when more bytes are needed, or a negative RESP_E* code.
 *
 * RESP_ENEEDSPACE: argv has no slot for the next argument. cmd->argc is the
 * command's argument count; the arguments parsed so far stay in argv (grow
 * it keeping them, e.g. with realloc, then call again with the same bytes).
 * It is returned when the next argument is due, not when the header is
 * read, so a caller growing geometrically only pays for arguments that
 * actually arrive. With cap 0 it comes right after the "*<argc>" line.
 */
int resp_parse_command(const char *p, size_t n, struct resp_cmd *cmd,
                       const struct resp_limits *lim);

/* As resp_parse_command, but the arguments are only counted: argv and cap
 * are not used, RESP_ENEEDSPACE is never the result, and on success argc
 * is the command's argument count. */
int resp_count_command(const char *p, size_t n, struct resp_cmd *cmd,
                       const struct resp_limits *lim);

/* Forget an unfinished command (the next call starts at a new command). */
void resp_cmd_reset(struct resp_cmd *cmd);

/* Redis's error text for a RESP_E* code (no "-ERR ", no CR/LF in it). */
const char *resp_strerror(int code);

/* Reply headers. Each writes its text and a NUL into out and returns the
 * length without the NUL (at most 23). */
size_t resp_fmt_bulk_header(size_t len, char out[32]);    /* "$<len>\r\n" */
size_t resp_fmt_int(long long v, char out[32]);           /* ":<v>\r\n" */
size_t resp_fmt_array_header(long long n, char out[32]);  /* "*<n>\r\n" */

#endif
