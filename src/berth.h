/*
 * berth.h -- berth's public C API, for programs that embed berth in a
 * lua_State of their own. It needs only lua.h: libev stays hidden.
 *
 *   lua_State *L = luaL_newstate();
 *   luaL_openlibs(L);
 *   berth_open(L);                          // berth table on the stack
 *   berth_register(L, "hash", my_hash);     // handlers call berth.native.hash
 *   if (berth_dofile(L, "app.lua") != LUA_OK) ... lua_tostring(L, -1) ...
 *   while (berth_step(L, 0.010) > 0) { ...the application's own work... }
 *   lua_close(L);
 *
 * Opening berth has no process-wide effects: it installs no signal handler
 * (berth.signal does, when a script asks), leaves SIGPIPE alone (sends use
 * MSG_NOSIGNAL), registers no atexit, and writes nothing to stdout; log
 * lines and task errors go to stderr. The `berth` executable opts in to
 * SIGPIPE ignoring and SIGINT/SIGTERM handling itself.
 *
 * Every function runs Lua protected and returns a Lua status (LUA_OK or an
 * error code with the message on the stack top) unless noted.
 */
#ifndef BERTH_H
#define BERTH_H

#include <lua.h>

#include "berth_version.h" /* BERTH_VERSION_STRING, from CMake */

/* The raw core module, as `require "berth.core"` returns it. [-0,+1,m] */
int luaopen_berth_core(lua_State *L);

/* Make `require "berth"` work in L (the core and the Lua side are built
 * into the library) and push the berth module table. */
int berth_open(lua_State *L);

/* Run a Lua file (text only, no precompiled chunks) or a string. */
int berth_dofile(lua_State *L, const char *path);
int berth_dostring(lua_State *L, const char *code);

/* Run the default loop until nothing is left or berth.stop(). */
int berth_run(lua_State *L);

/* One loop iteration, blocking at most `timeout` seconds (0: never).
 * Returns 1 while the loop has work, 0 when nothing is left, -1 on error
 * (message on the stack top). */
int berth_step(lua_State *L, double timeout);

/* Make the running berth_run()/berth.run() return (no status). */
void berth_stop(lua_State *L);

/* The loop's backend descriptor: poll it for readability from a foreign
 * loop and call berth_step(L, 0) when it is readable (and at least as
 * often as the shortest timer needs). -1 if the backend cannot tell.
 * Returns a descriptor, not a status. */
int berth_fd(lua_State *L);

/* Expose a C function to Lua as berth.native[name]. */
int berth_register(lua_State *L, const char *name, lua_CFunction fn);

#endif
