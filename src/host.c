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
#define _DEFAULT_SOURCE /* setgroups */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "berth.h"

/* Options that become berth.limits{} defaults: NAME VALUE pairs. */
static const char *const limit_options[] = {
  "--max-connections", "max_connections", "--max-line", "maxline",
  "--max-input", "max_input", "--max-output", "max_output",
  "--idle-timeout", "idle_timeout", "--message-timeout", "message_timeout",
  "--send-timeout", "send_timeout", "--handshake-timeout", "handshake_timeout",
  "--cpu-budget", "cpu_budget", NULL
};

struct options {
  const char *script;     /* NULL: none; "-": stdin */
  int script_index;       /* argv index of the script */
  const char **exprs;     /* -e chunks, in order */
  int nexprs;
  const char **limits;    /* limit name, value pairs for berth.limits */
  int nlimits;
  double grace;
  const char *level;
  size_t max_memory;      /* 0: no cap */
  const char *user, *group;
  long workers;           /* > 1: run as the master of that many workers */
  const char *mode;       /* "single", "master", "worker" or "check" */
  int watch;              /* --watch: reload handler modules on change */
};

/* The Lua allocator with a cap (--max-memory): past it an allocation
 * fails, Lua raises "not enough memory" in the task that asked, and the
 * process goes on. */
struct memcap {
  size_t used, cap;
};

/* What malloc really takes for n bytes (glibc: a size word, 16-byte
 * alignment, 32 at least), so that the cap bounds RSS, not just Lua's
 * own count. */
static size_t chunk(size_t n) {
  return n == 0 ? 0 : n < 24 ? 32 : (n + 8 + 15) & ~(size_t)15;
}

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  struct memcap *m = ud;
  size_t old = ptr ? chunk(osize) : 0, new = chunk(nsize);
  if (nsize == 0) {
    free(ptr);
    m->used -= old;
    return NULL;
  }
  if (new > old && m->used - old + new > m->cap)
    return NULL;
  void *p = realloc(ptr, nsize);
  if (p != NULL)
    m->used = m->used - old + new;
  return p;
}

/* "64M", "512k", "1G", "1000" -> bytes; 0 on a malformed size. */
static size_t parse_size(const char *s) {
  char *end;
  double v = strtod(s, &end);
  switch (*end) {
  case 'k': case 'K': v *= 1024; end++; break;
  case 'm': case 'M': v *= 1024 * 1024; end++; break;
  case 'g': case 'G': v *= 1024.0 * 1024 * 1024; end++; break;
  }
  return *end == '\0' && v > 0 ? (size_t)v : 0;
}

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
  "  --max-memory N   cap the Lua heap at N bytes (k/M/G suffixes); a task\n"
  "                   that goes past it fails with \"not enough memory\"\n"
  "  --cpu-budget S   end a task that runs S seconds without yielding\n"
  "                   (default 5; 0 turns the check off)\n"
  "  --user U, --group G\n"
  "                   drop to user U / group G once the script has bound\n"
  "                   its listeners (before the loop starts)\n"
  "  --watch          reload handler modules when their files change\n"
  "                   (SIGHUP always reloads them)\n"
  "  --workers N      run N worker processes sharing the listeners, under a\n"
  "                   master that restarts them and, on SIGHUP, replaces\n"
  "                   them one by one; \"auto\" = number of cores (default 1)\n"
  "  --check          load the script and its handler modules without\n"
  "                   serving (listeners go to ephemeral loopback ports);\n"
  "                   exit non-zero with the error if anything fails\n"
  "\n"
  "limits for every server the script starts (README \"Limits and safety\"):\n"
  "  --max-connections N  open connections per server (default: no cap)\n"
  "  --max-line N         longest line or delimited read (default 64k)\n"
  "  --max-input N        largest read(n) / read(\"a\") (default 8M)\n"
  "  --max-output N       write buffer per connection (default 1M)\n"
  "  --idle-timeout S     close a connection idle S seconds (default 60)\n"
  "  --message-timeout S  a started line must arrive within S (default 30)\n"
  "  --send-timeout S     close when output makes no progress (default 60)\n"
  "  --handshake-timeout S  close a TLS connection whose handshake is not\n"
  "                       done S seconds after the accept (default 10)\n"
  "  (0 turns a timeout off)\n"
  "\n"
  "  --               stop handling options\n"
  "  -                run the script from stdin\n";

/* Runs before the script: logging, limits, and per mode the signals. */
static const char prelude[] =
  "local berth, grace, level, limits, drop, mode, watch = ...\n"
  "berth.log.level(level)\n"
  "berth.limits(limits)\n"
  "if mode == 'master' then return end -- it handles its own signals\n"
  "if drop then berth.spawn(drop) end -- first thing the loop runs\n"
  "if mode == 'check' then -- bind nothing real: ephemeral loopback only\n"
  "  local listen = berth.listen\n"
  "  function berth.listen(o)\n"
  "    local t = {}\n"
  "    for k, v in pairs(o) do t[k] = v end\n"
  "    t.fd = nil\n"
  "    if t.path then t.path = os.tmpname(); os.remove(t.path)\n"
  "    else t.host, t.port = '127.0.0.1', 0 end\n"
  "    return listen(t)\n"
  "  end\n"
  "  return\n"
  "end\n"
  "if watch then berth.reload.watch() end\n"
  "if mode == 'worker' then\n"
  "  local channel = require('berth.core').proc.channel()\n"
  "  if not channel then error('--worker: no channel from a master') end\n"
  "  require('berth.worker').start(berth, channel)\n"
  "end\n"
  "berth.signal('HUP', function()\n"
  "  berth.reload.all()\n"
  "  berth.tls.reload() -- new certificates for new handshakes\n"
  "end)\n"
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

static int limit_option(struct options *o, const char *a, const char *value) {
  for (int k = 0; limit_options[k]; k += 2) {
    if (strcmp(a, limit_options[k]) == 0) {
      o->limits[o->nlimits++] = limit_options[k + 1];
      o->limits[o->nlimits++] = value;
      return 1;
    }
  }
  return 0;
}

static int parse_args(int argc, char **argv, struct options *o) {
  o->grace = 10;
  o->level = "info";
  o->mode = "single";
  o->exprs = calloc((size_t)argc, sizeof *o->exprs);
  o->limits = calloc((size_t)argc + 2, sizeof *o->limits);
  if (o->exprs == NULL || o->limits == NULL) {
    fputs("berth: out of memory\n", stderr);
    return -1;
  }
  int i = 1;
  for (; i < argc && argv[i] != NULL; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (next && limit_option(o, a, next)) {
      i++;
    } else if (strcmp(a, "--max-memory") == 0 && next) {
      i++;
      if ((o->max_memory = parse_size(next)) == 0) {
        fprintf(stderr, "berth: bad --max-memory '%s'\n", next);
        return -1;
      }
    } else if (strcmp(a, "--workers") == 0 && next) {
      const char *n = next;
      i++;
      o->workers = strcmp(n, "auto") == 0 ? sysconf(_SC_NPROCESSORS_ONLN)
                                           : strtol(n, NULL, 10);
      if (o->workers < 1) {
        fprintf(stderr, "berth: bad --workers '%s'\n", n);
        return -1;
      }
    } else if (strcmp(a, "--worker") == 0) {
      o->mode = "worker";
    } else if (strcmp(a, "--watch") == 0) {
      o->watch = 1;
    } else if (strcmp(a, "--check") == 0) {
      o->mode = "check";
    } else if (strcmp(a, "--user") == 0 && next) {
      o->user = next;
      i++;
    } else if (strcmp(a, "--group") == 0 && next) {
      o->group = next;
      i++;
    } else if (strcmp(a, "--") == 0) {
      i++;
      break;
    } else if (strcmp(a, "-e") == 0 && next) {
      o->exprs[o->nexprs++] = next;
      i++;
    } else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
      printf("berth %s (%s)\n", BERTH_VERSION_STRING, LUA_RELEASE);
      exit(0);
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(usage, stdout);
      exit(0);
    } else if (strcmp(a, "--grace") == 0 && next) {
      o->grace = atof(next);
      i++;
    } else if (strcmp(a, "--log-level") == 0 && next) {
      o->level = next;
      i++;
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
  if (o->workers > 1 && strcmp(o->mode, "single") == 0)
    o->mode = "master";
  return 0;
}

/* --user/--group: group first (while still allowed), supplementary groups
 * cleared, then the user; then check that root cannot be regained. */
static int drop_privileges(lua_State *L) {
  const struct options *o = lua_touserdata(L, lua_upvalueindex(1));
  struct passwd *pw = NULL;
  gid_t gid = getgid();
  /* Once, in the first task, before any resolver thread can exist. */
  // cppcheck-suppress getpwnamCalled
  if (o->user && (pw = getpwnam(o->user)) == NULL)
    return luaL_error(L, "--user: no user '%s'", o->user);
  if (o->group) {
    // cppcheck-suppress getgrnamCalled ; see getpwnam above
    struct group *gr = getgrnam(o->group);
    if (gr == NULL)
      return luaL_error(L, "--group: no group '%s'", o->group);
    gid = gr->gr_gid;
  } else if (pw) {
    gid = pw->pw_gid;
  }
  if (setgroups(0, NULL) != 0 || setgid(gid) != 0 ||
      (pw && setuid(pw->pw_uid) != 0))
    return luaL_error(L, "dropping privileges: %s", strerror(errno));
  if (getgid() != gid || getegid() != gid ||
      (pw && (getuid() != pw->pw_uid || geteuid() != pw->pw_uid ||
              (pw->pw_uid != 0 && setuid(0) == 0))))
    return luaL_error(L, "dropping privileges: could not verify");
  return 0;
}

/* The task that drops privileges: a failure ends the process. */
static int drop_task(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, drop_privileges, 1);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    fprintf(stderr, "berth: %s\n", lua_tostring(L, -1));
    exit(1);
  }
  return 0;
}

static void push_limits(lua_State *L, const struct options *o) {
  lua_createtable(L, 0, o->nlimits / 2);
  for (int i = 0; i < o->nlimits; i += 2) {
    const char *name = o->limits[i], *value = o->limits[i + 1];
    if (strstr(name, "timeout") || strcmp(name, "cpu_budget") == 0) {
      lua_pushnumber(L, atof(value)); /* seconds; 0 turns it off */
    } else {
      size_t n = parse_size(value);
      if (n == 0)
        luaL_error(L, "bad size '%s' for %s", value, name);
      lua_pushinteger(L, (lua_Integer)n);
    }
    lua_setfield(L, -2, name);
  }
  if (lua_getfield(L, -1, "cpu_budget") == LUA_TNIL) {
    lua_pushnumber(L, 5); /* the host's generous default */
    lua_setfield(L, -3, "cpu_budget");
  }
  lua_pop(L, 1);
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

/* The master: the same command line for every worker, with --worker in
 * front and --workers taken out; then supervise them (berth.master). */
static int run_master(lua_State *L, int berth, int argc, char **argv,
                      const struct options *o) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "berth.master");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "run");
  lua_pushvalue(L, berth);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, o->workers);
  lua_setfield(L, -2, "workers");
  lua_pushnumber(L, o->grace);
  lua_setfield(L, -2, "grace");
  lua_createtable(L, argc + 1, 0);
  int n = 0;
  lua_pushstring(L, argv[0]);
  lua_rawseti(L, -2, ++n);
  lua_pushliteral(L, "--worker");
  lua_rawseti(L, -2, ++n);
  for (int i = 1; i < argc; i++) {
    if ((o->script_index == 0 || i < o->script_index) &&
        strcmp(argv[i], "--workers") == 0) {
      i++; /* and its value */
      continue;
    }
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, ++n);
  }
  lua_setfield(L, -2, "argv");
  lua_call(L, 2, 0);
  lua_getfield(L, berth, "run");
  lua_call(L, 0, 0);
  return 0;
}

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  struct options *o = lua_touserdata(L, 3);
  luaL_openlibs(L);
  create_arg(L, argc, argv, o->script_index);
  if (berth_open(L) != LUA_OK)           /* stack: ..., berth */
    return lua_error(L);
  int berth = lua_gettop(L);
  luaL_loadbuffer(L, prelude, sizeof prelude - 1, "=prelude");
  lua_pushvalue(L, berth);
  lua_pushnumber(L, o->grace);
  lua_pushstring(L, o->level);
  push_limits(L, o);
  if (o->user || o->group) {
    lua_pushlightuserdata(L, o);
    lua_pushcclosure(L, drop_task, 1);
  } else {
    lua_pushnil(L);
  }
  lua_pushstring(L, o->mode);
  lua_pushboolean(L, o->watch);
  lua_call(L, 7, 0);
  if (strcmp(o->mode, "master") == 0)
    return run_master(L, berth, argc, argv, o);
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
  if (strcmp(o->mode, "check") == 0) {
    lua_getfield(L, berth, "shutdown"); /* close what the script opened */
    lua_pushnumber(L, 0);
    lua_call(L, 1, 0);
  }
  lua_getfield(L, berth, "run");
  lua_call(L, 0, 0);
  if (strcmp(o->mode, "check") == 0)
    fprintf(stderr, "berth --check: %s: ok\n", o->script ? o->script : "-e");
  return 0;
}

static int options_free(struct options *o, int status) {
  free(o->exprs);
  free(o->limits);
  return status;
}

int main(int argc, char **argv) {
  struct options o;
  memset(&o, 0, sizeof o);
  if (parse_args(argc, argv, &o) < 0)
    return options_free(&o, 2);
  signal(SIGPIPE, SIG_IGN); /* the executable's choice; sends use MSG_NOSIGNAL */
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fputs("berth: cannot create the Lua state\n", stderr);
    return options_free(&o, 1);
  }
  struct memcap memcap = {0, o.max_memory};
  if (o.max_memory > 0) /* same malloc family as luaL_newstate's: swappable */
    lua_setallocf(L, capped_alloc, &memcap);
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
  return options_free(&o, status == LUA_OK ? 0 : 1);
}
