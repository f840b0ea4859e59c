/*
 * examples/embed/host.c -- a C program that embeds berth.
 *
 * It opens berth into its own lua_State, registers one C function that
 * handlers call (berth.native.reverse), runs a Lua script that serves
 * lines on an ephemeral port and spawns a client, and then drives the loop
 * from its own main loop with berth_step(). Prints the reply and exits 0
 * when it is right.
 */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "berth.h"

/* The C function the Lua handler calls: the string reversed. */
static int reverse(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, n);
  for (size_t i = 0; i < n; i++)
    p[i] = s[n - 1 - i];
  luaL_pushresultsize(&b, n);
  return 1;
}

static const char script[] =
  "local berth = require 'berth'\n"
  "local server = assert(berth.serve{port = 0, handler = function(sock)\n"
  "  for line in sock:lines() do\n"
  "    sock:write(berth.native.reverse(line), '\\n')\n"
  "  end\n"
  "end})\n"
  "berth.spawn(function()\n"
  "  local c <close> = assert(berth.connect('127.0.0.1', server:port()))\n"
  "  c:write('hello, berth\\n')\n"
  "  reply = c:read('l', 5)\n"
  "  server:close()\n"
  "end)\n";

/* The error on the stack top may be any value: luaL_tolstring gives its
 * __tostring, or a type name, where lua_tostring would give NULL. */
static int fail(lua_State *L, const char *what) {
  fprintf(stderr, "embed: %s: %s\n", what, luaL_tolstring(L, -1, NULL));
  lua_close(L);
  return 1;
}

int main(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (berth_open(L) != LUA_OK)
    return fail(L, "berth_open");
  lua_pop(L, 1); /* the berth table */
  if (berth_register(L, "reverse", reverse) != LUA_OK)
    return fail(L, "berth_register");
  if (berth_dostring(L, script) != LUA_OK)
    return fail(L, "script");

  /* The application's own main loop: berth gets at most 10 ms a turn. */
  int turns = 0, alive;
  while ((alive = berth_step(L, 0.010)) > 0 && turns < 1000)
    turns++;
  if (alive < 0)
    return fail(L, "berth_step");

  lua_getglobal(L, "reply");
  const char *reply = lua_tostring(L, -1);
  int ok = reply != NULL && strcmp(reply, "htreb ,olleh") == 0;
  printf("reply: %s (after %d turns)\n", reply ? reply : "(none)", turns);
  lua_close(L);
  return ok ? 0 : 1;
}
