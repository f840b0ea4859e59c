/*
 * buffer_lua.c -- the Buffer userdata (class berth.Buffer): bytes held in
 * C, for data that passes through a server without being looked at.
 * sock:readinto(buf) receives straight into a Buffer and sock:write(buf)
 * sends straight from it (socket_io.c), so a relay or an echo makes no Lua
 * string per message: one copy fewer of every byte, and no garbage.
 *
 * A Buffer is a struct buf (buffer.h) and nothing else: it belongs to no
 * loop and holds no descriptor, so it has no user values and may move
 * between sockets and loops freely. Its memory goes with __gc, or earlier
 * when a read parks with the Buffer empty (socket_io.c): an idle
 * connection keeps no receive memory in its Buffer either.
 */
#include <string.h>

#include "core.h"

struct lbuf {
  const void *tag; /* util_tagged */
  struct buf b;
};

/* Every Buffer begins with this address: sock:write tests each of its
 * arguments, and this spares it a metatable lookup. */
static const char lbuf_tag = 0;

struct buf *lbuf_test(lua_State *L, int idx) {
  struct lbuf *lb = util_tagged(L, idx, sizeof *lb, &lbuf_tag);
  return lb ? &lb->b : NULL;
}

struct buf *lbuf_check(lua_State *L, int idx) {
  struct lbuf *lb = util_checktagged(L, idx, sizeof *lb, &lbuf_tag, CLS_BUFFER);
  return &lb->b;
}

/* The Buffer a method is called on. */
static struct buf *lbuf_self(lua_State *L) {
  return lbuf_check(L, 1);
}

/* Append the strings (or numbers) at idx..top; nothing is appended when
 * one of them is neither. [-0, +0, m] */
static void lbuf_appendargs(lua_State *L, struct buf *b, int idx) {
  int top = lua_gettop(L);
  for (int i = idx; i <= top; i++)
    luaL_checklstring(L, i, NULL);
  for (int i = idx; i <= top; i++) {
    size_t len;
    const char *p = lua_tolstring(L, i, &len);
    if (buf_append(b, p, len) < 0)
      luaL_error(L, "not enough memory");
  }
}

/* buffer([s...]) -> a new Buffer holding the strings given. */
int lbuf_new(lua_State *L) {
  struct lbuf *lb = lua_newuserdatauv(L, sizeof *lb, 0);
  lb->tag = &lbuf_tag;
  lb->b = (struct buf)BUF_INIT;
  luaL_setmetatable(L, CLS_BUFFER);
  lua_insert(L, 1);
  lbuf_appendargs(L, &lb->b, 2);
  lua_settop(L, 1);
  return 1;
}

/* How many bytes of b the optional count at idx asks for (all: none). */
static size_t lbuf_count(lua_State *L, const struct buf *b, int idx) {
  lua_Integer n = luaL_optinteger(L, idx, (lua_Integer)b->len);
  luaL_argcheck(L, n >= 0, idx, "negative count");
  return (size_t)n < b->len ? (size_t)n : b->len;
}

/* take([n]) -> the first n bytes (all by default), removed. */
static int lbuf_take(lua_State *L) {
  struct buf *b = lbuf_self(L);
  size_t n = lbuf_count(L, b, 2);
  lua_pushlstring(L, buf_begin(b), n);
  buf_consume(b, n);
  return 1;
}

/* peek([n]) -> the first n bytes (all by default), left in place. */
static int lbuf_peek(lua_State *L) {
  struct buf *b = lbuf_self(L);
  lua_pushlstring(L, buf_begin(b), lbuf_count(L, b, 2));
  return 1;
}

/* skip(n) -> the buffer, its first n bytes dropped. */
static int lbuf_skip(lua_State *L) {
  struct buf *b = lbuf_self(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "negative count");
  buf_consume(b, (size_t)n);
  lua_settop(L, 1);
  return 1;
}

/* append(s...) -> the buffer */
static int lbuf_append(lua_State *L) {
  lbuf_appendargs(L, lbuf_self(L), 2);
  lua_settop(L, 1);
  return 1;
}

/* find(s [, init]) -> position of s (1-based) at or after init, or nil */
static int lbuf_find(lua_State *L) {
  struct buf *b = lbuf_self(L);
  size_t dlen;
  const char *d = luaL_checklstring(L, 2, &dlen);
  lua_Integer init = luaL_optinteger(L, 3, 1);
  luaL_argcheck(L, dlen > 0, 2, "empty string");
  luaL_argcheck(L, init >= 1, 3, "must be positive");
  long at = buf_find(buf_begin(b), b->len, (size_t)init - 1, d, dlen);
  if (at < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, (lua_Integer)at + 1);
  return 1;
}

/* clear() -> the buffer, empty, its memory released */
static int lbuf_clear(lua_State *L) {
  buf_free(lbuf_self(L));
  lua_settop(L, 1);
  return 1;
}

static int lbuf__len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lbuf_self(L)->len);
  return 1;
}

static int lbuf__tostring(lua_State *L) {
  // cppcheck-suppress invalidLengthModifierError ; lua_pushfstring's %I
  lua_pushfstring(L, "Buffer (%I bytes)", (lua_Integer)lbuf_self(L)->len);
  return 1;
}

static int lbuf__gc(lua_State *L) {
  buf_free(lbuf_self(L));
  return 0;
}

static const luaL_Reg lbuf_meta[] = {
  {"__len", lbuf__len},
  {"__tostring", lbuf__tostring},
  {"__gc", lbuf__gc},
  {"__close", lbuf__gc},
  {NULL, NULL}
};

static const luaL_Reg lbuf_methods[] = {
  {"take", lbuf_take},
  {"peek", lbuf_peek},
  {"skip", lbuf_skip},
  {"append", lbuf_append},
  {"find", lbuf_find},
  {"clear", lbuf_clear},
  {NULL, NULL}
};

/* The class, once per state. [-0, +0, m] */
void lbuf_open(lua_State *L) {
  util_newclass(L, CLS_BUFFER, lbuf_meta, lbuf_methods);
  lua_pop(L, 1);
}
