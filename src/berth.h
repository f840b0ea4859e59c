/*
 * berth.h -- berth's public C API.
 *
 * luaopen_berth_core opens the core into a lua_State: it creates the
 * state's default loop and returns the module table that `require
 * "berth.core"` returns. The Lua-side library (`require "berth"`) is built
 * on top of it. Nothing here exposes libev.
 */
#ifndef BERTH_H
#define BERTH_H

#include <lua.h>

#define BERTH_VERSION_STRING "0.1.0"

/* [-0, +1, m] the berth.core module table */
int luaopen_berth_core(lua_State *L);

#endif
