/*
 * api.c -- the public C API of berth.h: a thin layer that drives the Lua
 * side (`require "berth"`) through protected calls, so that an embedding
 * program never sees a Lua error as a longjmp.
 */
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "berth.h"

void berth_preload(lua_State *L); /* generated: the embedded lua/berth */

/* Call berth[fname](args...) protected with `nargs` arguments on the stack
 * and `nres` results. */
static int call_berth(lua_State *L, const char *fname, int nargs, int nres) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "berth");
  int st = lua_pcall(L, 1, 1, 0);
  if (st != LUA_OK) {
    lua_insert(L, -(nargs + 1));
    lua_pop(L, nargs);
    return st;
  }
  lua_getfield(L, -1, fname);
  lua_remove(L, -2);
  lua_insert(L, -(nargs + 1));
  return lua_pcall(L, nargs, nres, 0);
}

static int open_protected(lua_State *L) {
  luaL_requiref(L, "berth.core", luaopen_berth_core, 0);
  lua_pop(L, 1);
  berth_preload(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "berth");
  lua_call(L, 1, 1);
  return 1;
}

int berth_open(lua_State *L) {
  lua_pushcfunction(L, open_protected);
  return lua_pcall(L, 0, 1, 0);
}

int berth_dofile(lua_State *L, const char *path) {
  int st = luaL_loadfilex(L, path, "t");
  return st != LUA_OK ? st : lua_pcall(L, 0, 0, 0);
}

int berth_dostring(lua_State *L, const char *code) {
  int st = luaL_loadbufferx(L, code, strlen(code), "=berth_dostring", "t");
  return st != LUA_OK ? st : lua_pcall(L, 0, 0, 0);
}

int berth_run(lua_State *L) {
  return call_berth(L, "run", 0, 0);
}

int berth_step(lua_State *L, double timeout) {
  lua_pushnumber(L, timeout);
  if (call_berth(L, "step", 1, 1) != LUA_OK)
    return -1;
  int alive = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return alive;
}

void berth_stop(lua_State *L) {
  if (call_berth(L, "stop", 0, 0) != LUA_OK)
    lua_pop(L, 1);
}

int berth_fd(lua_State *L) {
  if (call_berth(L, "fd", 0, 1) != LUA_OK) {
    lua_pop(L, 1);
    return -1;
  }
  int fd = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : -1;
  lua_pop(L, 1);
  return fd;
}

/* berth.native[name] = fn; stack: name (light userdata), fn */
static int register_protected(lua_State *L) {
  const char *name = lua_touserdata(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "berth");
  lua_call(L, 1, 1);
  luaL_getsubtable(L, -1, "native");
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, name);
  return 0;
}

int berth_register(lua_State *L, const char *name, lua_CFunction fn) {
  lua_pushcfunction(L, register_protected);
  lua_pushlightuserdata(L, (void *)name);
  lua_pushcfunction(L, fn);
  return lua_pcall(L, 2, 0, 0);
}
