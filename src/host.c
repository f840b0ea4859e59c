/*
 * host.c -- the `berth` executable: options, the Lua state, script loading
 * and the shutdown order.
 *
 * The executable opts in to the process-wide effects a library must not
 * have: it ignores SIGPIPE, turns SIGINT/SIGTERM into a graceful shutdown
 * (a second one exits at once), and logs at "info" to stderr.
 * Shutdown order (L6): berth.shutdown closes listeners, waits for tasks up
 * to the grace period, closes what is left and stops the loop; then
 * lua_close finalizes every object, the loop (and its ev_loop) last.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "berth.h"

void berth_preload(lua_State *L); /* generated: the embedded lua/berth */

struct options {
  const char *script;     /* NULL: none; "-": stdin */
  int script_index;       /* argv index of the script */
  const char **exprs;     /* -e chunks, in order */
  int nexprs;
  double grace;
  const char *level;
};

static const char usage[] =
  "usage: berth [options] [script.lua [args...]]\n"
  "Runs a berth server script, then its event loop until there is nothing\n"
  "left to do, or until SIGINT/SIGTERM start a graceful shutdown.\n"
  "\n"
  "options:\n"
  "  -e CODE          run CODE before the script (may be repeated)\n"
  "  -v, --version    print the version and exit\n"
  "  -h, --help       print this help and exit\n"
  "  --grace SECONDS  how long in-flight handlers may run after SIGINT or\n"
  "                   SIGTERM before their sockets are closed (default 10)\n"
  "  --log-level L    error | warn | info | debug | off (default info)\n"
  "  --               stop handling options\n"
  "  -                run the script from stdin\n";

/* Runs as the script's first task-free prologue: signals and logging. */
static const char prelude[] =
  "local berth, grace, level = ...\n"
  "berth.log.level(level)\n"
  "local stopping = false\n"
  "local function onsignal(name)\n"
  "  if stopping then\n"
  "    berth.log.warn('second SIG%s: exiting now', name)\n"
  "    os.exit(1)\n"
  "  end\n"
  "  stopping = true\n"
  "  berth.log.info('SIG%s: shutting down (grace %gs)', name, grace)\n"
  "  berth.shutdown(grace)\n"
  "end\n"
  "berth.signal('INT', onsignal)\n"
  "berth.signal('TERM', onsignal)\n";

static int parse_args(int argc, char **argv, struct options *o) {
  o->grace = 10;
  o->level = "info";
  o->exprs = calloc((size_t)argc, sizeof *o->exprs);
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    } else if (strcmp(a, "-e") == 0 && i + 1 < argc) {
      o->exprs[o->nexprs++] = argv[++i];
    } else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
      printf("berth %s (%s)\n", BERTH_VERSION_STRING, LUA_RELEASE);
      exit(0);
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(usage, stdout);
      exit(0);
    } else if (strcmp(a, "--grace") == 0 && i + 1 < argc) {
      o->grace = atof(argv[++i]);
    } else if (strcmp(a, "--log-level") == 0 && i + 1 < argc) {
      o->level = argv[++i];
    } else if (a[0] == '-' && a[1] != '\0') {
      fprintf(stderr, "berth: unknown or incomplete option '%s'\n%s", a, usage);
      return -1;
    } else {
      break;
    }
  }
  if (i < argc) {
    o->script = argv[i];
    o->script_index = i;
  } else if (o->nexprs == 0) {
    fputs(usage, stderr);
    return -1;
  }
  return 0;
}

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* `arg` as the stock lua sets it: script at 0, its args from 1, the
 * interpreter and options at negative indices. */
static void create_arg(lua_State *L, int argc, char **argv, int script) {
  if (script == 0)
    script = argc;
  lua_createtable(L, argc - script, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  struct options *o = lua_touserdata(L, 3);
  luaL_openlibs(L);
  luaL_requiref(L, "berth.core", luaopen_berth_core, 0);
  berth_preload(L);
  create_arg(L, argc, argv, o->script_index);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "berth");
  lua_call(L, 1, 1);                     /* stack: ..., berth */
  int berth = lua_gettop(L);
  luaL_loadbuffer(L, prelude, sizeof prelude - 1, "=prelude");
  lua_pushvalue(L, berth);
  lua_pushnumber(L, o->grace);
  lua_pushstring(L, o->level);
  lua_call(L, 3, 0);
  for (int i = 0; i < o->nexprs; i++) {
    if (luaL_loadbuffer(L, o->exprs[i], strlen(o->exprs[i]), "=(command line)"))
      return lua_error(L);
    lua_call(L, 0, 0);
  }
  if (o->script != NULL) {
    const char *file = strcmp(o->script, "-") == 0 ? NULL : o->script;
    if (luaL_loadfilex(L, file, "t")) /* text only: no binary chunks */
      return lua_error(L);
    int nargs = argc - o->script_index - 1;
    luaL_checkstack(L, nargs, "too many arguments to script");
    for (int i = 1; i <= nargs; i++)
      lua_pushstring(L, argv[o->script_index + i]);
    lua_call(L, nargs, 0);
  }
  lua_getfield(L, berth, "run");
  lua_call(L, 0, 0);
  return 0;
}

int main(int argc, char **argv) {
  struct options o;
  memset(&o, 0, sizeof o);
  if (parse_args(argc, argv, &o) < 0)
    return 2;
  signal(SIGPIPE, SIG_IGN); /* the executable's choice; sends use MSG_NOSIGNAL */
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fputs("berth: cannot create the Lua state\n", stderr);
    return 1;
  }
  lua_pushcfunction(L, msghandler);
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  lua_pushlightuserdata(L, &o);
  int status = lua_pcall(L, 3, 0, 1);
  if (status != LUA_OK) {
    fprintf(stderr, "berth: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_close(L);
  free(o.exprs);
  return status == LUA_OK ? 0 : 1;
}
