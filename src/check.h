/*
 * check.h -- one validator per kind of value, for every C binding and (as
 * core.check.*) for the Lua side of the API.
 *
 * Each check_KIND(L, idx, what, def ...) looks at the value at stack index
 * idx and returns it converted. nil (or none) gives `def`. Any other value
 * that is not of the kind raises a Lua error
 *     "WHAT must be DESCRIPTION (got VALUE)"
 * e.g. "listen: port must be an integer 0..65535 (got 70000)", so `what`
 * names the value for the user: "API: key" for a table field. The error
 * carries the position of the Lua code that called the binding
 * (luaL_where level 1), as luaL_argerror's do. Strings are never coerced
 * to numbers here, nor numbers to strings: a string port is an error.
 * Integers may come as floats with an exact integer value (80.0).
 *
 * No validator keeps anything on the stack. [-0, +0, v]
 */
#ifndef BERTH_CHECK_H
#define BERTH_CHECK_H

#include <lua.h>
#include <stddef.h>

/* A port: an integer 0..65535. */
lua_Integer check_port(lua_State *L, int idx, const char *what,
                       lua_Integer def);

/* Seconds, for timeouts, deadlines and time limits:
 *   a finite number >= 0   that many seconds (0 is "now", or "off" where
 *                          the caller documents it so, as limits do)
 *   math.huge (+inf)       HUGE_VAL: never, no deadline
 *   false                  HUGE_VAL as well: no timeout
 *   NaN, a negative number (-inf included), true, a string or anything
 *   else raises. The caller maps HUGE_VAL to its own "none". */
double check_time(lua_State *L, int idx, const char *what, double def);

/* check_time for a wait's timeout: -1 for never (math.huge, false), else
 * the seconds (0: do not wait). */
double check_timeout(lua_State *L, int idx, const char *what, double def);

/* A size or a count limit: a positive integer, or false for none, which
 * returns (size_t)-1. 0 and negative numbers raise. */
size_t check_size(lua_State *L, int idx, const char *what, size_t def);

/* An integer min..max (both inclusive). */
lua_Integer check_integer(lua_State *L, int idx, const char *what,
                          lua_Integer def, lua_Integer min, lua_Integer max);

/* A boolean (0 or 1); 1, "yes" and the like raise. */
int check_boolean(lua_State *L, int idx, const char *what, int def);

/* A string without zero bytes (it goes to C as a C string). The pointer
 * is valid while the value stays where it is (a table field, an
 * argument). */
const char *check_string(lua_State *L, int idx, const char *what,
                         const char *def);

/* One of `names` (NULL-terminated); returns its index. With def NULL a
 * nil is an error too. */
int check_enum(lua_State *L, int idx, const char *what, const char *def,
               const char *const names[]);

/* A function; returns 0 for nil, 1 for a function. */
int check_function(lua_State *L, int idx, const char *what);

/* Raise "WHAT must be MUST (got VALUE)" for the value at idx. */
int check_fail(lua_State *L, int idx, const char *what, const char *must);

/* Push `fn` wrapped the way core.check's functions are: it runs
 * protected, and its error is raised again at the `level` given as
 * argument number level_at (error()'s counting: 1, the default, is the
 * caller). For Lua wrappers that report their caller's line. [-0, +1, m] */
void check_pushleveled(lua_State *L, lua_CFunction fn, int level_at);

/* core.check: a table with port, time, size, integer, boolean, string,
 * enum and function, each f(value, what [, level]) -> value (nil stays
 * nil), raising at `level` like error() does. [-0, +1, m] */
void check_open(lua_State *L);

#endif
