/*
 * options.c -- the option tables of options.h at run time: checking a Lua
 * table against one, and core.options, their description for Lua.
 *
 * The tables are small (a few dozen keys), so a key is looked up by a
 * linear scan; nothing here runs per connection, only per listen, serve,
 * connect or limits call.
 */
#include <limits.h>
#include <string.h>

#include <lauxlib.h>

#include "check.h"
#include "core.h" /* CLS_SOCKET */
#include "options.h"

enum opt_kind {
  OPT_STRING, OPT_PORT, OPT_UINT, OPT_BOOLEAN, OPT_TIME, OPT_FUNCTION,
  OPT_HANDLER, OPT_SIZE, OPT_COUNT, OPT_TABLE, OPT_TLS, OPT_LIMIT, OPT_PROXY,
  OPT_PPVERSION, OPT_SOCKET
};

/* Lua names of the kinds, in enum order (core.options.*.key.kind). */
static const char *const opt_kindnames[] = {
  "string", "port", "integer", "boolean", "time", "function", "handler",
  "size", "count", "table", "tls", "limit", "proxy", "ppversion", "socket"
};

#define OPT_BIND 1 /* listen: the master binds with it (options.h) */
#define OPT_LOCAL 0

struct opt {
  const char *name;
  enum opt_kind kind;
  int flags;       /* OPT_BIND for table keys; the scope for limits */
};

#define OPT_ENTRY_(name, kind, where) {#name, OPT_##kind, OPT_##where},
#define OPT_TABLE_(id, lname, keys, scopes)                                 \
  static const struct opt opt_##id[] = {keys(OPT_ENTRY_){NULL, 0, 0}};
OPTIONS_TABLES(OPT_TABLE_)
#undef OPT_TABLE_
#undef OPT_ENTRY_

#define OPT_LIMIT_(name, kind, scope, ...)                                  \
  {#name, OPT_##kind, LIMITS_SCOPE_##scope},
static const struct opt opt_limits[] = {LIMITS_LIST(OPT_LIMIT_){NULL, 0, 0}};
#undef OPT_LIMIT_

struct opt_table {
  const char *name;
  const struct opt *keys;
  int scopes; /* the limits it takes, by scope */
};

#define OPT_TABLEINFO_(id, lname, keys, scopes) {lname, opt_##id, scopes},
static const struct opt_table opt_tables[OPT_NTABLES] = {
  OPTIONS_TABLES(OPT_TABLEINFO_)
};
#undef OPT_TABLEINFO_

/* The entry for the key at idx in table t, or NULL. */
static const struct opt *opt_find(lua_State *L, int idx,
                                  const struct opt_table *t) {
  size_t len;
  if (lua_type(L, idx) != LUA_TSTRING)
    return NULL;
  const char *key = lua_tolstring(L, idx, &len); /* a string: no conversion */
  if (strlen(key) != len)
    return NULL;
  for (const struct opt *o = t->keys; o->name; o++)
    if (strcmp(o->name, key) == 0)
      return o;
  for (const struct opt *o = opt_limits; o->name; o++)
    if ((o->flags & t->scopes) && strcmp(o->name, key) == 0)
      return o;
  return NULL;
}

/* The key at idx for a message. [-0, +1, m] (+2 for a number) */
static const char *opt_keyname(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    return lua_pushfstring(L, "\"%s\"", lua_tostring(L, idx));
  case LUA_TNUMBER:
    lua_pushvalue(L, idx); /* lua_tostring converts: never the key itself */
    return lua_pushfstring(L, "[%s]", lua_tostring(L, -1));
  default:
    return lua_pushfstring(L, "with a %s key", luaL_typename(L, idx));
  }
}

/* Raise "listen: unknown option "prot" (valid: host, port, ...)" for the
 * key at idx. */
static int opt_unknown(lua_State *L, int idx, const struct opt_table *t) {
  idx = lua_absindex(L, idx);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const char *sep = "";
  for (const struct opt *o = t->keys; o->name; o++, sep = ", ") {
    luaL_addstring(&b, sep);
    luaL_addstring(&b, o->name);
  }
  for (const struct opt *o = opt_limits; o->name; o++) {
    if (o->flags & t->scopes) {
      luaL_addstring(&b, sep);
      luaL_addstring(&b, o->name);
      sep = ", ";
    }
  }
  luaL_pushresult(&b);
  const char *valid = lua_tostring(L, -1);
  return luaL_error(L, "%s: unknown option %s (valid: %s)", t->name,
                    opt_keyname(L, idx), valid);
}

/* The value at idx against o's kind; `what` is "listen: port". */
static void opt_checkvalue(lua_State *L, int idx, const char *what,
                           const struct opt *o) {
  switch (o->kind) {
  case OPT_STRING: check_string(L, idx, what, NULL); break;
  case OPT_PORT: check_port(L, idx, what, 0); break;
  case OPT_UINT: check_integer(L, idx, what, 0, 0, INT_MAX); break;
  case OPT_BOOLEAN: check_boolean(L, idx, what, 0); break;
  case OPT_TIME: check_time(L, idx, what, 0); break;
  case OPT_FUNCTION: check_function(L, idx, what); break;
  case OPT_SIZE: case OPT_COUNT: check_size(L, idx, what, 0); break;
  case OPT_HANDLER:
    if (lua_type(L, idx) != LUA_TFUNCTION && lua_type(L, idx) != LUA_TSTRING)
      check_fail(L, idx, what, "a function or a handler module's name");
    break;
  case OPT_TABLE:
    if (lua_type(L, idx) != LUA_TTABLE)
      check_fail(L, idx, what, "a table");
    break;
  case OPT_TLS:
    if (lua_type(L, idx) != LUA_TTABLE && lua_type(L, idx) != LUA_TUSERDATA &&
        !(lua_type(L, idx) == LUA_TBOOLEAN && lua_toboolean(L, idx)))
      check_fail(L, idx, what, "a table of TLS options, a TLSContext or true");
    break;
  case OPT_LIMIT: /* a time, or true: the loop's value */
    if (lua_type(L, idx) != LUA_TBOOLEAN &&
        !(lua_type(L, idx) == LUA_TNUMBER && lua_tonumber(L, idx) >= 0))
      check_fail(L, idx, what, "a number of seconds >= 0, false or true");
    break;
  case OPT_PROXY:
    if (lua_type(L, idx) != LUA_TBOOLEAN &&
        !(lua_type(L, idx) == LUA_TSTRING &&
          strcmp(lua_tostring(L, idx), "optional") == 0))
      check_fail(L, idx, what, "true, false or \"optional\"");
    break;
  case OPT_PPVERSION: check_integer(L, idx, what, 0, 1, 2); break;
  case OPT_SOCKET:
    if (luaL_testudata(L, idx, CLS_SOCKET) == NULL)
      check_fail(L, idx, what, "a Socket");
    break;
  }
}

void options_check(lua_State *L, int idx, enum options_table which) {
  const struct opt_table *t = &opt_tables[which];
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE)
    check_fail(L, idx, t->name, "a table of options");
  lua_pushnil(L);
  while (lua_next(L, idx)) { /* stack: key, value */
    const struct opt *o = opt_find(L, -2, t);
    if (o == NULL) {
      opt_unknown(L, -2, t); /* raises */
      return;
    }
    const char *what = lua_pushfstring(L, "%s: %s", t->name, o->name);
    opt_checkvalue(L, -2, what, o);
    lua_pop(L, 2); /* what, value */
  }
}

/* ---------------------------------------------------------- core.options */

static const char *const opt_names[] = {
#define OPT_NAME_(id, lname, ...) lname,
  OPTIONS_TABLES(OPT_NAME_)
#undef OPT_NAME_
  NULL
};

/* check(name, t) -> t; wrapped by check_pushleveled for its `level`. */
static int opt_lcheck(lua_State *L) {
  int which = luaL_checkoption(L, 1, NULL, opt_names);
  options_check(L, 2, (enum options_table)which);
  lua_settop(L, 2);
  return 1;
}

/* { kind = "port", bind = true } [-0, +1, m] */
static void opt_pushkey(lua_State *L, const struct opt *o) {
  lua_createtable(L, 0, 2);
  lua_pushstring(L, opt_kindnames[o->kind]);
  lua_setfield(L, -2, "kind");
  if (o->flags & OPT_BIND) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "bind");
  }
}

/* What a limit is, for limits{} and listen{}: kind, scope, the host's
 * option and its help line, the library default. [-0, +1, m] */
static void opt_pushlimit(lua_State *L, const struct opt *o) {
  static const struct {
    const char *option, *help;
    double def;
  } info[] = {
#define OPT_LIMITINFO_(name, kind, scope, server, connected, host, option, \
                       help)                                              \
  {option, help, (double)(server)},
    LIMITS_LIST(OPT_LIMITINFO_)
#undef OPT_LIMITINFO_
  };
  size_t i = (size_t)(o - opt_limits);
  lua_createtable(L, 0, 5);
  lua_pushstring(L, opt_kindnames[o->kind]);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, o->flags & LIMITS_SCOPE_LOOP       ? "loop"
                   : o->flags & LIMITS_SCOPE_DATAGRAM ? "datagram"
                                                      : "server");
  lua_setfield(L, -2, "scope");
  lua_pushstring(L, info[i].option);
  lua_setfield(L, -2, "option");
  lua_pushstring(L, info[i].help);
  lua_setfield(L, -2, "help");
  if (info[i].def > 0)
    lua_pushnumber(L, info[i].def);
  else
    lua_pushboolean(L, 0);
  lua_setfield(L, -2, "default");
}

static void opt_pushtable(lua_State *L, const struct opt_table *t) {
  lua_newtable(L);
  for (const struct opt *o = t->keys; o->name; o++) {
    opt_pushkey(L, o);
    lua_setfield(L, -2, o->name);
  }
  for (const struct opt *o = opt_limits; o->name; o++) {
    if (o->flags & t->scopes) {
      opt_pushlimit(L, o);
      lua_setfield(L, -2, o->name);
    }
  }
}

void options_open(lua_State *L) {
  lua_createtable(L, 0, OPT_NTABLES + 1);
  for (int i = 0; i < OPT_NTABLES; i++) {
    opt_pushtable(L, &opt_tables[i]);
    lua_setfield(L, -2, opt_tables[i].name);
  }
  check_pushleveled(L, opt_lcheck, 3);
  lua_setfield(L, -2, "check");
}
