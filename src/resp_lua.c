/*
 * resp_lua.c -- berth.core.resp: Redis-protocol (RESP2) commands read in
 * C from a socket's buffer, and replies queued so that the answers to one
 * pipelined batch leave in one write.
 *
 *   resp.read(sock [, timeout]) -> { arg1, arg2, ... } (an empty table for
 *       an empty command: no reply is due) | nil, "protocol", text (Redis's
 *       error text: the caller replies "-ERR <text>\r\n" and closes) |
 *       nil, code, unread bytes (as sock:read: "closed", "timeout", ...)
 *   resp.send(sock, s...) -> sock | nil, code: the strings queued on the
 *       socket; they leave with the next read that has to wait (or once
 *       16 KiB are queued, or the task yields), and a full buffer waits for
 *       the peer like sock:write.
 *   resp.stats() -> { parsed = n }: bytes the parser went through on this
 *       loop (a resumed command counts from where it resumed).
 *
 * The command is parsed by resp.c (strict lengths, Redis's error texts) in
 * the read machinery's framing (sock_readframe), so a pipelined batch costs
 * one recv and one Lua call per command, with no Lua string but the
 * arguments. Limits: the socket's max_input is the cap on one command's
 * bytes and on one bulk argument (Redis's 512 MiB when max_input is
 * larger), so a command over it gets Redis's "invalid bulk length" or
 * "command too large" error as soon as its header shows it, never a
 * silent close. At most RESP_MAX_ARGS arguments.
 *
 * Owns struct respstate (per loop, made by the first read): the argument
 * array the parser fills, shared by every socket, and struct resp_saved
 * (per socket, at s->fstate, only while its command is unfinished): where
 * that command stopped, so that its next piece resumes there instead of
 * parsing from the start again (no O(n^2) for a big command dribbling in,
 * whatever other sockets do meanwhile). The argument array is claimed by
 * each parse that stores into it (rs->gen counts them); a socket whose
 * arguments are still there (its saved gen is rs->gen) resumes storing,
 * any other one goes on counting (resp_count_command: its block stays a
 * few words, whatever the command's size) and, once the command is
 * complete, parses it once more to store the arguments: O(n) once.
 * A block is good only while the socket's rscan still holds the byte count
 * the parse stopped at (rscan is reset whenever bytes are consumed or a new
 * read starts). Nothing here points at a socket, so a closed one leaves
 * nothing behind (sock_destroy frees its block).
 */
#include <limits.h>
#include <stdlib.h>

#include "core.h"
#include "resp.h"

#define RESP_MAX_ARGS (1024 * 1024) /* Redis's multibulk count cap */
#define RESP_MAX_BULK ((size_t)512 * 1024 * 1024) /* proto-max-bulk-len */
#define RESP_ARGV0 64                /* first size of the argument array */
#define RESP_QUEUE_MAX (16 * 1024)   /* queued replies sent at once past it */
#define RESP_SEND_IOV 16

/* A socket's unfinished command (its s->fstate). */
struct resp_saved {
  struct sock_fstate hdr;  /* hdr.fr is &resp_framing */
  struct resp_progress at; /* where the parse stopped */
  size_t atscan;           /* good while the socket's rscan is this */
  uint64_t gen;            /* the arguments parsed so far are in the loop's
                              argv while its gen is this (0: counted) */
};

struct respstate {
  struct resp_arg *argv;   /* the arguments of the last storing parse */
  size_t cap;
  uint64_t gen;            /* that parse's number (the first is 1) */
  struct resp_saved *spare; /* a block for the next unfinished command */
  uint64_t parsed;         /* bytes given to the parser past where it
                              resumed (stats(): the work it did) */
};

static const struct sock_framing resp_framing;

static void resps_free(struct loop *lp, void *ud) {
  struct respstate *rs = ud;
  (void)lp;
  free(rs->spare);
  free(rs->argv);
  free(rs);
}

static struct respstate *resps_get(lua_State *L, struct loop *lp) {
  if (lp->resp == NULL) {
    struct respstate *rs = calloc(1, sizeof *rs);
    struct resp_arg *argv = malloc(RESP_ARGV0 * sizeof *argv);
    if (rs == NULL || argv == NULL) {
      free(rs);
      free(argv);
      luaL_error(L, "not enough memory");
    }
    rs->argv = argv;
    rs->cap = RESP_ARGV0;
    lp->resp = rs;
    loop_atclose(L, lp, resps_free, rs);
  }
  return lp->resp;
}

/* Room for `want` arguments in argv, keeping those parsed (cmd's argv is
 * the loop's: RESP_ENEEDSPACE). */
static void resps_grow(lua_State *L, struct respstate *rs,
                       struct resp_cmd *cmd, size_t want) {
  size_t cap = rs->cap;
  while (cap < want)
    cap *= 2;
  struct resp_arg *argv = realloc(rs->argv, cap * sizeof *argv);
  if (argv == NULL)
    luaL_error(L, "not enough memory");
  rs->argv = cmd->argv = argv;
  rs->cap = cmd->cap = cap;
}

/* Drop s's block: kept as the loop's spare if it has none. */
static void resps_drop(struct respstate *rs, struct sock *s) {
  struct sock_fstate *fs = s->fstate;
  s->fstate = NULL;
  if (fs != NULL && fs->fr == &resp_framing && rs->spare == NULL)
    rs->spare = (struct resp_saved *)fs;
  else
    free(fs);
}

/* s's unfinished command, or NULL; a block this read cannot resume (its
 * bytes moved on, or another framing made it) is dropped. */
static struct resp_saved *resps_saved(struct respstate *rs, struct sock *s) {
  struct resp_saved *sv = (struct resp_saved *)s->fstate;
  if (sv == NULL)
    return NULL;
  if (sv->hdr.fr == &resp_framing && s->rscan != 0 && sv->atscan == s->rscan)
    return sv;
  resps_drop(rs, s);
  return NULL;
}

/* Keep `at` as s's unfinished command, stopped at n bytes; `gen`: whose
 * arguments argv holds (0: counted). */
static void resps_keep(lua_State *L, struct respstate *rs, struct sock *s,
                       const struct resp_progress *at, size_t n,
                       uint64_t gen) {
  struct resp_saved *sv = (struct resp_saved *)s->fstate;
  if (sv == NULL) { /* resps_saved dropped any block not ours */
    sv = rs->spare != NULL ? rs->spare : malloc(sizeof *sv);
    if (sv == NULL)
      luaL_error(L, "not enough memory");
    rs->spare = NULL;
    sv->hdr.fr = &resp_framing;
    s->fstate = &sv->hdr;
  }
  sv->at = *at;
  sv->atscan = n;
  sv->gen = gen;
}

/* The parser's limits for s: its max_input bounds everything. */
static struct resp_limits resp_limitsof(const struct sock *s) {
  size_t in = s->lim->max_input;
  struct resp_limits lim = RESP_LIMITS_DEFAULT;
  lim.max_bulk = in < RESP_MAX_BULK ? in : RESP_MAX_BULK;
  lim.max_args = RESP_MAX_ARGS;
  if (in < lim.max_command)
    lim.max_command = in;
  return lim;
}

/* Parse into the loop's argv, growing it as arguments arrive. */
static int resps_store(lua_State *L, struct respstate *rs,
                       struct resp_cmd *cmd, const char *p, size_t n,
                       const struct resp_limits *lim) {
  for (;;) {
    int rc = resp_parse_command(p, n, cmd, lim);
    if (rc != RESP_ENEEDSPACE)
      return rc;
    /* argc is the declared count: grow by steps, as arguments arrive */
    size_t want = cmd->argc < rs->cap * 2 ? cmd->argc : rs->cap * 2;
    resps_grow(L, rs, cmd, want);
  }
}

/* A command counted to its end (rc bytes): parse it again, storing. */
static int resps_restore(lua_State *L, struct respstate *rs,
                         struct resp_cmd *cmd, const char *p, int rc,
                         const struct resp_limits *lim) {
  size_t argc = cmd->argc;
  *cmd = (struct resp_cmd)RESP_CMD_INIT(rs->argv, rs->cap);
  rs->gen++;
  rs->parsed += (size_t)rc;
  int again = resps_store(L, rs, cmd, p, (size_t)rc, lim);
  BERTH_ASSERT("resp: storing and counting disagree",
               again == rc && cmd->argc == argc);
  (void)argc;
  return again;
}

/* Parse p[0..n) for s, resuming its own unfinished command; on success
 * cmd->argc arguments are in the loop's argv. */
static int resp_parse(lua_State *L, struct respstate *rs, struct sock *s,
                      const char *p, size_t n, struct resp_cmd *cmd) {
  struct resp_limits lim = resp_limitsof(s);
  struct resp_saved *sv = resps_saved(rs, s);
  *cmd = (struct resp_cmd)RESP_CMD_INIT(rs->argv, rs->cap);
  int store = sv == NULL || sv->gen == rs->gen;
  if (sv != NULL)
    cmd->at = sv->at;
  else
    rs->gen++; /* a new command claims argv */
  size_t from = cmd->at.pos;
  int rc = store ? resps_store(L, rs, cmd, p, n, &lim)
                 : resp_count_command(p, n, cmd, &lim);
  rs->parsed += (rc > 0 ? (size_t)rc : n) - from;
  if (rc == RESP_INCOMPLETE && cmd->at.kind != 0) {
    resps_keep(L, rs, s, &cmd->at, n, store ? rs->gen : 0);
    return rc;
  }
  resps_drop(rs, s); /* done, failed, or a header cut short (<= 23 bytes) */
  if (rc > 0 && !store)
    rc = resps_restore(L, rs, cmd, p, rc, &lim);
  return rc;
}

static int resp_match(lua_State *L, struct sock *s, char *p, size_t n,
                      size_t *take) {
  struct respstate *rs = resps_get(L, s->loop);
  struct resp_cmd c;
  int rc = resp_parse(L, rs, s, p, n, &c);
  if (rc == RESP_INCOMPLETE) {
    s->rscan = n; /* s's block, if any, is good for these bytes */
    return 0;
  }
  if (rc < 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "protocol");
    lua_pushstring(L, resp_strerror(rc));
    return 3;
  }
  lua_createtable(L, c.argc > (size_t)INT_MAX ? INT_MAX : (int)c.argc, 0);
  for (size_t i = 0; i < c.argc; i++) {
    lua_pushlstring(L, p + c.argv[i].off, c.argv[i].len);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  *take = (size_t)rc;
  return 1;
}

static const struct sock_framing resp_framing = {resp_match, NULL, 2};

/* read(sock [, timeout]) -> args | nil, code, extra */
static int resp_read(lua_State *L) {
  struct sock *s = sock_check(L, 1);
  lua_settop(L, 2);
  return sock_readframe(L, s, &resp_framing);
}

static int resp_send_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  struct sock *s = sock_check(L, 1);
  int rc = sock_afterwait(L, s);
  if (rc > 0)
    return rc;
  if (rc < 0)
    return sock_waitdrain(L, s, 1, ctx, resp_send_k);
  lua_settop(L, 1);
  return 1;
}

/* send(sock, s...) -> sock | nil, code */
static int resp_send(lua_State *L) {
  struct sock *s = sock_check(L, 1);
  int top = lua_gettop(L);
  luaL_argcheck(L, top - 1 <= RESP_SEND_IOV, RESP_SEND_IOV + 2,
                "too many strings");
  struct iovec iov[RESP_SEND_IOV];
  size_t total = 0;
  for (int i = 2; i <= top; i++) {
    size_t len;
    iov[i - 2].iov_base = (void *)luaL_checklstring(L, i, &len);
    iov[i - 2].iov_len = len;
    total += len;
  }
  if (s->fd < 0)
    return util_fail(L, s->why);
  int rc = s->wbuf.len + total <= RESP_QUEUE_MAX
               ? sock_queue(L, s, 1, iov, top - 1)
               : sock_put(L, s, 1, iov, top - 1);
  if (rc != 0)
    return rc;
  if (sock_overhigh(L, s))
    return sock_waitdrain(L, s, 0, 0, resp_send_k);
  lua_settop(L, 1);
  return 1;
}

/* stats() -> { parsed = bytes }: the parser's work on this loop (a
 * command resumed after a piece counts only the bytes past the point it
 * resumed from), for tests that bound it. */
static int resp_stats(lua_State *L) {
  struct loop *lp = lua_touserdata(L, lua_upvalueindex(1));
  const struct respstate *rs = lp->resp;
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, rs ? (lua_Integer)rs->parsed : 0);
  lua_setfield(L, -2, "parsed");
  return 1;
}

static const luaL_Reg resp_funcs[] = {
  {"read", resp_read},
  {"send", resp_send},
  {"stats", resp_stats},
  {NULL, NULL}
};

/* The core.resp table, its functions sharing the loop on the stack top as
 * an upvalue. [-1, +1, m] */
void resp_push(lua_State *L) {
  luaL_newlibtable(L, resp_funcs);
  lua_insert(L, -2);
  luaL_setfuncs(L, resp_funcs, 1);
}
