/*
 * check.c -- the validators of check.h, and core.check, their Lua face.
 *
 * Every message has one shape, "WHAT must be DESCRIPTION (got VALUE)", so
 * that a user who typed `port = 70000` or `idle_timeout = -1` reads which
 * key, what it takes and what it got. VALUE is shown without calling any
 * metamethod (a validator must not run user code).
 */
#include "check.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define CHECK_GOT_MAX 40 /* longest string shown in "(got ...)" */

/* A string as "(got ...)" shows it: quoted, cut at CHECK_GOT_MAX bytes,
 * control bytes as \ddd (a zero byte would end the message). [-0,+1,m] */
static const char *check_gotstring(lua_State *L, int idx) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '"');
  for (size_t i = 0; i < len && i < CHECK_GOT_MAX; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 32 || c == 127) {
      char esc[8];
      snprintf(esc, sizeof esc, "\\%u", c);
      luaL_addstring(&b, esc);
    } else {
      luaL_addchar(&b, (char)c);
    }
  }
  luaL_addstring(&b, len > CHECK_GOT_MAX ? "...\"" : "\"");
  luaL_pushresult(&b);
  return lua_tostring(L, -1);
}

/* A short, safe description of the value at idx. [-0, +1, m] */
static const char *check_got(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TNONE:
  case LUA_TNIL:
    return lua_pushliteral(L, "nil");
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      return lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, idx));
    if (isnan(lua_tonumber(L, idx)))
      return lua_pushliteral(L, "NaN");
    return lua_pushfstring(L, "%f", (LUAI_UACNUMBER)lua_tonumber(L, idx));
  case LUA_TSTRING:
    return check_gotstring(L, idx);
  case LUA_TBOOLEAN:
    return lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
  default:
    return lua_pushstring(L, luaL_typename(L, idx));
  }
}

int check_fail(lua_State *L, int idx, const char *what, const char *must) {
  idx = lua_absindex(L, idx);
  const char *got = check_got(L, idx);
  return luaL_error(L, "%s must be %s (got %s)", what, must, got);
}

lua_Integer check_integer(lua_State *L, int idx, const char *what,
                          lua_Integer def, lua_Integer min, lua_Integer max) {
  idx = lua_absindex(L, idx); /* messages push before they read it */
  if (lua_isnoneornil(L, idx))
    return def;
  int isint = 0;
  lua_Integer n = 0;
  if (lua_type(L, idx) == LUA_TNUMBER)
    n = lua_tointegerx(L, idx, &isint); /* floats with an integer value */
  if (isint && n >= min && n <= max)
    return n;
  const char *must =
    max == LUA_MAXINTEGER
      ? lua_pushfstring(L, "an integer >= %I", (LUAI_UACINT)min)
      : lua_pushfstring(L, "an integer %I..%I", (LUAI_UACINT)min,
                        (LUAI_UACINT)max);
  return check_fail(L, idx, what, must);
}

lua_Integer check_port(lua_State *L, int idx, const char *what,
                       lua_Integer def) {
  return check_integer(L, idx, what, def, 0, 65535);
}

double check_time(lua_State *L, int idx, const char *what, double def) {
  idx = lua_absindex(L, idx); /* messages push before they read it */
  switch (lua_type(L, idx)) {
  case LUA_TNONE:
  case LUA_TNIL:
    return def;
  case LUA_TBOOLEAN:
    if (!lua_toboolean(L, idx))
      return HUGE_VAL;
    break;
  case LUA_TNUMBER: {
    double t = lua_tonumber(L, idx);
    if (t >= 0) /* false for NaN */
      return t; /* +inf stays HUGE_VAL: never */
    break;
  }
  default:
    break;
  }
  check_fail(L, idx, what, "a number of seconds >= 0, or false");
  return 0; /* not reached */
}

double check_timeout(lua_State *L, int idx, const char *what, double def) {
  double t = check_time(L, idx, what, def);
  return isinf(t) ? -1 : t;
}

size_t check_size(lua_State *L, int idx, const char *what, size_t def) {
  idx = lua_absindex(L, idx); /* messages push before they read it */
  if (lua_isnoneornil(L, idx))
    return def;
  if (lua_type(L, idx) == LUA_TBOOLEAN && !lua_toboolean(L, idx))
    return (size_t)-1;
  int isint = 0;
  lua_Integer n = 0;
  if (lua_type(L, idx) == LUA_TNUMBER)
    n = lua_tointegerx(L, idx, &isint);
  /* (size_t)-1 means "none", so the largest real limit is one less. */
  if (isint && n > 0 && (unsigned long long)n < (size_t)-1)
    return (size_t)n;
  check_fail(L, idx, what, "a positive integer, or false for no limit");
  return 0; /* not reached */
}

int check_boolean(lua_State *L, int idx, const char *what, int def) {
  idx = lua_absindex(L, idx); /* messages push before they read it */
  if (lua_isnoneornil(L, idx))
    return def;
  if (lua_type(L, idx) != LUA_TBOOLEAN)
    check_fail(L, idx, what, "a boolean");
  return lua_toboolean(L, idx);
}

const char *check_string(lua_State *L, int idx, const char *what,
                         const char *def) {
  idx = lua_absindex(L, idx); /* messages push before they read it */
  if (lua_isnoneornil(L, idx))
    return def;
  if (lua_type(L, idx) != LUA_TSTRING)
    check_fail(L, idx, what, "a string");
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (strlen(s) != len)
    check_fail(L, idx, what, "a string without zero bytes");
  return s;
}

/* '"a", "b" or "c"' [-0, +1, m] */
static const char *check_names(lua_State *L, const char *const names[]) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "one of ");
  for (int i = 0; names[i]; i++) {
    if (i > 0)
      luaL_addstring(&b, names[i + 1] ? ", " : " or ");
    luaL_addchar(&b, '"');
    luaL_addstring(&b, names[i]);
    luaL_addchar(&b, '"');
  }
  luaL_pushresult(&b);
  return lua_tostring(L, -1);
}

int check_enum(lua_State *L, int idx, const char *what, const char *def,
               const char *const names[]) {
  idx = lua_absindex(L, idx);
  const char *s = lua_isnoneornil(L, idx) ? def : NULL;
  if (s == NULL && lua_type(L, idx) == LUA_TSTRING)
    s = lua_tostring(L, idx);
  for (int i = 0; s && names[i]; i++)
    if (strcmp(names[i], s) == 0)
      return i;
  return check_fail(L, idx, what, check_names(L, names));
}

int check_function(lua_State *L, int idx, const char *what) {
  idx = lua_absindex(L, idx); /* messages push before they read it */
  if (lua_isnoneornil(L, idx))
    return 0;
  if (lua_type(L, idx) != LUA_TFUNCTION)
    check_fail(L, idx, what, "a function");
  return 1;
}

/* ------------------------------------------------------------ core.check */

/* Each lc_KIND(value, what, ...) returns the checked value (nil stays
 * nil). They run under check_call's pcall. */

static int lc_nil(lua_State *L) {
  lua_pushnil(L);
  return 1;
}

static int lc_port(lua_State *L) {
  const char *what = luaL_checkstring(L, 2);
  if (lua_isnil(L, 1))
    return lc_nil(L);
  lua_pushinteger(L, check_port(L, 1, what, 0));
  return 1;
}

static int lc_time(lua_State *L) {
  const char *what = luaL_checkstring(L, 2);
  if (lua_isnil(L, 1))
    return lc_nil(L);
  lua_pushnumber(L, check_time(L, 1, what, 0)); /* false -> math.huge */
  return 1;
}

static int lc_size(lua_State *L) {
  const char *what = luaL_checkstring(L, 2);
  if (lua_isnil(L, 1))
    return lc_nil(L);
  size_t n = check_size(L, 1, what, 0);
  if (n == (size_t)-1)
    lua_pushboolean(L, 0);
  else
    lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int lc_integer(lua_State *L) {
  const char *what = luaL_checkstring(L, 2);
  lua_Integer min = luaL_optinteger(L, 3, LUA_MININTEGER);
  lua_Integer max = luaL_optinteger(L, 4, LUA_MAXINTEGER);
  if (lua_isnil(L, 1))
    return lc_nil(L);
  lua_pushinteger(L, check_integer(L, 1, what, 0, min, max));
  return 1;
}

static int lc_boolean(lua_State *L) {
  const char *what = luaL_checkstring(L, 2);
  if (lua_isnil(L, 1))
    return lc_nil(L);
  lua_pushboolean(L, check_boolean(L, 1, what, 0));
  return 1;
}

static int lc_string(lua_State *L) {
  const char *what = luaL_checkstring(L, 2);
  if (lua_isnil(L, 1))
    return lc_nil(L);
  check_string(L, 1, what, NULL);
  lua_settop(L, 1);
  return 1;
}

/* enum(value, what, {names...}) */
static int lc_enum(lua_State *L) {
  const char *what = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  int n = (int)luaL_len(L, 3);
  const char **names = lua_newuserdatauv(L, sizeof *names * ((size_t)n + 1), 0);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 3, i + 1);
    names[i] = luaL_checkstring(L, -1);
    lua_pop(L, 1); /* the table keeps the string */
  }
  names[n] = NULL;
  if (lua_isnil(L, 1))
    return lc_nil(L);
  check_enum(L, 1, what, NULL, names);
  lua_settop(L, 1);
  return 1;
}

static int lc_function(lua_State *L) {
  const char *what = luaL_checkstring(L, 2);
  check_function(L, 1, what);
  lua_settop(L, 1);
  return 1;
}

/* The Lua face of a validator: upvalue 1 is the lc_ function, upvalue 2
 * the position of the optional `level`. The check runs protected (raised
 * from there, the message has no position: its caller is this C
 * function); a failure is raised again at `level` (1: where core.check.x
 * was called), which is how a Lua wrapper such as berth.serve reports the
 * user's line, not its own. */
static int check_call(lua_State *L) {
  int at = (int)lua_tointeger(L, lua_upvalueindex(2));
  int level = (int)luaL_optinteger(L, at, 1);
  lua_settop(L, at - 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  if (lua_pcall(L, at - 1, 1, 0) == LUA_OK)
    return 1;
  if (level > 0 && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, level);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

void check_pushleveled(lua_State *L, lua_CFunction fn, int level_at) {
  lua_pushcfunction(L, fn);
  lua_pushinteger(L, level_at);
  lua_pushcclosure(L, check_call, 2);
}

void check_open(lua_State *L) {
  static const struct {
    const char *name;
    lua_CFunction fn;
    int level_at;
  } fns[] = {
    {"port", lc_port, 3},       {"time", lc_time, 3},
    {"size", lc_size, 3},       {"integer", lc_integer, 5},
    {"boolean", lc_boolean, 3}, {"string", lc_string, 3},
    {"enum", lc_enum, 4},       {"function", lc_function, 3},
  };
  size_t n = sizeof fns / sizeof fns[0];
  lua_createtable(L, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    check_pushleveled(L, fns[i].fn, fns[i].level_at);
    lua_setfield(L, -2, fns[i].name);
  }
}
