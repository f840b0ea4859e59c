/*
 * util.c -- small Lua helpers shared by the binding files: class creation,
 * the `nil, code, extra` failure shape (E2), address pushing.
 */
#include <math.h>
#include <string.h>

#include "core.h"

/* Metatable with metamethods, plus a separate method table as __index
 * (liolib's createmeta shape, U1). The metatable stays in the registry under
 * `name`; the method table is left on the stack so Lua code can extend it.
 *
 * The method table is also package.loaded[name] ("berth.Socket"), so that
 * an argument error names the method even where the call site does not
 * (pcall(sock.read, sock, {}), a method kept in a local table): Lua's
 * luaL_argerror then finds the function there and says "bad argument #2
 * to 'berth.Socket.read'" instead of '?'. A method call names itself
 * ("bad argument #1 to 'read'"), as Lua's own file methods do.
 *
 * Every function gets the metatable's address as upvalue 1, for util_self.
 * [-0, +1, m] */
void util_newclass(lua_State *L, const char *name, const luaL_Reg *meta,
                   const luaL_Reg *methods) {
  luaL_newmetatable(L, name);
  util_pushmetaaddr(L, name);
  luaL_setfuncs(L, meta, 1);
  lua_newtable(L);
  util_pushmetaaddr(L, name);
  luaL_setfuncs(L, methods, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__index");  /* stack: mt, methods */
  lua_remove(L, -2);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, name);       /* package.loaded[name] = methods */
  lua_pop(L, 1);
}

void *util_self(lua_State *L, int idx, const char *name) {
  void *p = lua_touserdata(L, idx);
  if (p != NULL && util_hasmeta(L, idx, lua_touserdata(L, lua_upvalueindex(1))))
    return p;
  return luaL_checkudata(L, idx, name); /* decides, and names the error */
}

void util_pushmetaaddr(lua_State *L, const char *name) {
  luaL_getmetatable(L, name);
  const void *mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  lua_pushlightuserdata(L, (void *)mt);
}

/* nil, code [-0, +2, m] */
int util_fail(lua_State *L, const char *code) {
  lua_pushnil(L);
  lua_pushstring(L, code);
  return 2;
}

/* nil, code, errno for a positive errno [-0, +3, m] */
int util_failerr(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushstring(L, net_errcode(err));
  lua_pushinteger(L, err);
  return 3;
}

/* host, port (or path, nil... port 0 for unix) [-0, +2, m] */
int util_pushaddr(lua_State *L, const struct net_addr *a) {
  char host[NET_ADDRSTRLEN];
  int port;
  if (net_format_addr(a, host, sizeof host, &port) < 0)
    return util_fail(L, "invalid");
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  return 2;
}

/* A handler given by module name ("app.echo") at stack index idx becomes
 * require("berth.reload")[loader](name, 2): the reloadable handler of
 * that module (loader "handler" or "packet_handler"). In C, so that the
 * method's own argument errors still name the method, and a missing or
 * broken module is reported at the line that called it. [-0, +0, e] */
void util_handlermodule(lua_State *L, int idx, const char *loader) {
  idx = lua_absindex(L, idx);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "berth.reload");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, loader);
  lua_pushvalue(L, idx);
  lua_pushinteger(L, 2); /* errors point at the method's caller */
  lua_call(L, 2, 1);
  lua_replace(L, idx);
  lua_pop(L, 1); /* the module */
}

/* Message handler keeping both the error and its traceback. */
int util_msgh(lua_State *L) {
  const char *msg = luaL_tolstring(L, 1, NULL);
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  luaL_traceback(L, L, msg, 1);
  lua_rawseti(L, -2, 2);
  return 1;
}
