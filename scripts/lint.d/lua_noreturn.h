/*
 * lua_noreturn.h -- force-included by scripts/lint into every clang-tidy
 * translation unit (never into a build).
 *
 * lua.h/lauxlib.h declare the raising functions as returning int, because
 * `return luaL_error(L, ...)` is the Lua idiom; they never return (they
 * longjmp). Without this the static analyzer follows the impossible path
 * after them and reports null dereferences, use-after-free and garbage
 * values there. Redeclaring them noreturn here states the truth once
 * instead of a NOLINT at every call site.
 *
 * It comes before a file's own first line, so it also defines _GNU_SOURCE
 * the way the files that need it do (empty: the same definition twice is
 * no redefinition); otherwise lua.h would pull in the libc headers without
 * it, and recvmmsg's struct mmsghdr or accept4 would be missing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <lua.h>
#include <lauxlib.h>

__attribute__((noreturn)) int lua_error(lua_State *L);
__attribute__((noreturn)) int luaL_error(lua_State *L, const char *fmt, ...);
__attribute__((noreturn)) int luaL_argerror(lua_State *L, int arg,
                                            const char *extramsg);
__attribute__((noreturn)) int luaL_typeerror(lua_State *L, int arg,
                                             const char *tname);
