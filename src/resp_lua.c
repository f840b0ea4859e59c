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
 * array the parser fills, and where the last unfinished command stopped.
 * A command arriving in pieces resumes there instead of being parsed from
 * its start again (no O(n^2) for a large command dribbling in): the state
 * belongs to the socket it names only while that socket's rscan still
 * holds the byte count the parse stopped at (rscan is reset whenever bytes
 * are consumed or a new read starts); any other socket parses afresh.
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

struct respstate {
  struct resp_arg *argv;
  size_t cap;
  struct resp_cmd cmd;    /* cmd.argv is argv */
  const struct sock *at;  /* the socket cmd's progress belongs to */
  size_t atscan;          /* ... while its rscan is this */
  uint64_t parsed;        /* bytes given to the parser past where it
                             resumed (stats(): the work it did) */
};

static void resps_free(struct loop *lp, void *ud) {
  struct respstate *rs = ud;
  (void)lp;
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
    rs->cmd = (struct resp_cmd)RESP_CMD_INIT(argv, RESP_ARGV0);
    lp->resp = rs;
    loop_atclose(L, lp, resps_free, rs);
  }
  return lp->resp;
}

/* Room for `want` arguments, keeping those parsed (RESP_ENEEDSPACE). */
static void resps_grow(lua_State *L, struct respstate *rs, size_t want) {
  size_t cap = rs->cap;
  while (cap < want)
    cap *= 2;
  struct resp_arg *argv = realloc(rs->argv, cap * sizeof *argv);
  if (argv == NULL)
    luaL_error(L, "not enough memory");
  rs->argv = rs->cmd.argv = argv;
  rs->cap = rs->cmd.cap = cap;
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

/* Parse p[0..n) for s, resuming its own unfinished command. */
static int resp_parse(lua_State *L, struct respstate *rs, struct sock *s,
                      const char *p, size_t n) {
  struct resp_limits lim = resp_limitsof(s);
  if (rs->at != s || s->rscan == 0 || rs->atscan != s->rscan)
    resp_cmd_reset(&rs->cmd);
  rs->at = NULL;
  size_t from = rs->cmd.at.pos;
  for (;;) {
    int rc = resp_parse_command(p, n, &rs->cmd, &lim);
    if (rc != RESP_ENEEDSPACE) {
      rs->parsed += (rc > 0 ? (size_t)rc : n) - from;
      return rc;
    }
    /* argc is the declared count: grow by steps, as arguments arrive */
    size_t want = rs->cmd.argc < rs->cap * 2 ? rs->cmd.argc : rs->cap * 2;
    resps_grow(L, rs, want);
  }
}

static int resp_match(lua_State *L, struct sock *s, char *p, size_t n,
                      size_t *take) {
  struct respstate *rs = resps_get(L, s->loop);
  int rc = resp_parse(L, rs, s, p, n);
  if (rc == RESP_INCOMPLETE) {
    s->rscan = n; /* the progress is kept for these bytes */
    rs->at = n > 0 ? s : NULL;
    rs->atscan = n;
    return 0;
  }
  if (rc < 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "protocol");
    lua_pushstring(L, resp_strerror(rc));
    return 3;
  }
  const struct resp_cmd *c = &rs->cmd;
  lua_createtable(L, c->argc > (size_t)INT_MAX ? INT_MAX : (int)c->argc, 0);
  for (size_t i = 0; i < c->argc; i++) {
    lua_pushlstring(L, p + c->argv[i].off, c->argv[i].len);
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
