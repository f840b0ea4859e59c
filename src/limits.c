/*
 * limits.c -- the Lua side of berth_limits.h: a table of limits read into
 * a struct limits, and a struct limits pushed as a table. Both are
 * expanded from LIMITS_LIST, so a new limit needs nothing here.
 *
 * In Lua a limit that is off reads as false: sizes and counts are a
 * positive integer or false; times are seconds, and 0, false or math.huge
 * all turn a time limit off (stored as 0).
 */
#include <math.h>

#include "check.h"
#include "core.h"

/* The field `name` of the table at idx, if set, through its validator:
 * messages name it "API: name". */
static void limits_readsize(lua_State *L, int idx, const char *api,
                            const char *name, size_t *v) {
  if (lua_getfield(L, idx, name) != LUA_TNIL) {
    const char *what = lua_pushfstring(L, "%s: %s", api, name);
    *v = check_size(L, -2, what, *v); /* false: (size_t)-1, none */
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static void limits_readtime(lua_State *L, int idx, const char *api,
                            const char *name, double *v) {
  if (lua_getfield(L, idx, name) != LUA_TNIL) {
    const char *what = lua_pushfstring(L, "%s: %s", api, name);
    double t = check_time(L, -2, what, *v);
    *v = t < HUGE_VAL ? t : 0; /* false and math.huge: none */
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

#define LIMITS_READ_SIZE limits_readsize
#define LIMITS_READ_COUNT limits_readsize
#define LIMITS_READ_TIME limits_readtime

void limits_read(lua_State *L, int idx, struct limits *lim, int scopes,
                 const char *api) {
  idx = lua_absindex(L, idx);
#define LIMITS_READ_(name, kind, scope, ...)                                \
  if (scopes & LIMITS_SCOPE_##scope)                                        \
    LIMITS_READ_##kind(L, idx, api, #name, &lim->name);
  LIMITS_LIST(LIMITS_READ_)
#undef LIMITS_READ_
}

static void limits_pushsize(lua_State *L, size_t v) {
  if (v == LIMITS_NONE_SIZE)
    lua_pushboolean(L, 0);
  else
    lua_pushinteger(L, (lua_Integer)v);
}

static void limits_pushtime(lua_State *L, double v) {
  if (v > 0)
    lua_pushnumber(L, v);
  else
    lua_pushboolean(L, 0);
}

#define LIMITS_PUSH_SIZE limits_pushsize
#define LIMITS_PUSH_COUNT limits_pushsize
#define LIMITS_PUSH_TIME limits_pushtime

void limits_push(lua_State *L, const struct limits *lim, int scopes) {
  lua_createtable(L, 0, LIMITS_N);
#define LIMITS_PUSH_(name, kind, scope, ...)                                \
  if (scopes & LIMITS_SCOPE_##scope) {                                      \
    LIMITS_PUSH_##kind(L, lim->name);                                       \
    lua_setfield(L, -2, #name);                                             \
  }
  LIMITS_LIST(LIMITS_PUSH_)
#undef LIMITS_PUSH_
}
