/*
 * host.c -- the `berth` executable: options, the Lua state, script loading
 * and the shutdown order.
 *
 * The executable opts in to the process-wide effects a library must not
 * have: it ignores SIGPIPE, turns SIGINT/SIGTERM into a graceful shutdown
 * (a second one exits at once), and logs at "info" to stderr. Once the
 * command line is parsed, every message is a log record (logfmt.h: one
 * write each, the process id and the worker number in it, --log-format);
 * an error the script raises is one record, with its traceback unless the
 * script could not even be loaded. What runs in
 * Lua before the script is lua/berth/host.lua; the limit options and their
 * --help lines come from LIMITS_LIST (berth_limits.h), and every value is
 * parsed strictly at start-up (units.h): a bad one is an error there.
 * Shutdown order (L6): berth.shutdown closes listeners, waits for tasks up
 * to the grace period, closes what is left and stops the loop; then
 * lua_close finalizes every object, the loop (and its ev_loop) last.
 */
#define _DEFAULT_SOURCE /* setgroups */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "berth.h"
#include "berth_limits.h"
#include "logfmt.h"
#include "cidr.h"
#include "units.h"

/* The limits the host sets from its options, one row per LIMITS_LIST row
 * (berth_limits.h): --max-line and the rest are not written here. */
struct host_limit {
  const char *option, *name, *help;
  enum limits_kind kind;
  double def;    /* the host's default, bytes or seconds; <= 0: none */
  double libdef; /* the library's: the host passes its own when they differ */
};

#define HOST_LIMIT_(name, kind, scope, server, connected, host, option,    \
                    help)                                                   \
  {option, #name, help, LIMITS_KIND_##kind, (double)(host), (double)(server)},
static const struct host_limit host_limits[LIMITS_N] = {
  LIMITS_LIST(HOST_LIMIT_)
};
#undef HOST_LIMIT_

/* A limit given on the command line, parsed. */
struct host_value {
  int set;
  uint64_t n;  /* sizes and counts; 0 turns the limit off */
  double secs; /* times; 0 turns the limit off */
};

struct options {
  const char *script;     /* NULL: none; "-": stdin */
  int script_index;       /* argv index of the script */
  const char **exprs;     /* -e chunks, in order */
  int nexprs;
  struct host_value limits[LIMITS_N];
  double grace;
  const char *level;
  enum logfmt_format log_format;
  int worker;             /* --worker N: this is worker N of a master */
  int strict;             /* --strict: an unhandled task error fails */
  int status;             /* the exit status berth.host asks for */
  size_t max_memory;      /* 0: no cap */
  const char *user, *group;
  long workers;           /* > 1: run as the master of that many workers */
  const char *mode;       /* "single", "master", "worker" or "check" */
  int watch;              /* --watch: reload handler modules on change */
  const char *proxy;      /* --proxy-protocol: "on", "optional", "off" */
  const char *trusted;    /* --proxy-trusted: ranges, comma-separated */
  char exe[PATH_MAX];     /* the executable's path, for SIGUSR2 */
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

static const char usage_head[] =
  "usage: berth [options] [script.lua [args...]]\n"
  "Runs a berth server script, then its event loop until there is nothing\n"
  "left to do, or until SIGINT/SIGTERM start a graceful shutdown.\n"
  "Sizes are N[k|M|G] (bytes), times N[ms|s|m|h] (plain N: seconds).\n"
  "\n"
  "options:\n"
  "  -e CODE          run CODE before the script (may be repeated)\n"
  "  -v, --version    print the version and exit\n"
  "  -h, --help       print this help and exit\n"
  "  --grace T        how long in-flight handlers may run after SIGINT or\n"
  "                   SIGTERM before their sockets are closed (default 10s)\n"
  "  --log-level L    error | warn | info | debug | off (default info)\n"
  "  --log-format F   text | json: one record per line on stderr, with\n"
  "                   time, level, process id and the connection's peer\n"
  "                   (default text)\n"
  "  --max-memory N   cap the Lua heap at N bytes; a task that goes past it\n"
  "                   fails with \"not enough memory\" (default 0: no cap)\n"
  "  --user U, --group G\n"
  "                   drop to user U / group G once the script has bound\n"
  "                   its listeners (before the loop starts)\n"
  "  --watch          reload handler modules, and the modules of the\n"
  "                   script's directory they require, when their files\n"
  "                   change (SIGHUP reloads them all, changed or not)\n"
  "  --workers N      run N worker processes sharing the listeners, under a\n"
  "                   master that restarts them and, on SIGHUP, replaces\n"
  "                   them one by one; \"auto\" = number of cores (default 1)\n"
  "  --strict         an error in a task that no on(\"error\") handler or\n"
  "                   berth.onerror of the script takes ends the process:\n"
  "                   graceful shutdown, then exit status 1\n"
  "  --check          load the script and its handler modules without\n"
  "                   serving (listeners go to ephemeral loopback ports);\n"
  "                   exit non-zero with the error if anything fails\n"
  "  --proxy-protocol on|optional|off\n"
  "                   the default of every listener: read a PROXY protocol\n"
  "                   header (v1 or v2) before the handler (default off)\n"
  "  --proxy-trusted R,R...\n"
  "                   only these ranges (\"10.0.0.0/8\", \"::1\", \"unix\")\n"
  "                   may send a PROXY header (default: every peer)\n"
  "\n"
  "signals: SIGINT/SIGTERM stop gracefully (--drain-delay, then --grace),\n"
  "SIGQUIT the same without the drain delay, SIGHUP reloads (with\n"
  "--workers: replaces the workers one by one), SIGUSR2 starts the\n"
  "executable on disk with the listeners and hands over to it once it is\n"
  "ready. With systemd's LISTEN_FDS the listeners are adopted\n"
  "(listen{name=} picks one by its FileDescriptorName).\n"
  "\n"
  "limits (README \"Limits and safety\"; 0 turns one off); --cpu-budget\n"
  "applies to every task, the datagram limits to every UDP socket, the\n"
  "others to every server the script starts:\n";

static const char usage_tail[] =
  "\n"
  "  --               stop handling options\n"
  "  -                run the script from stdin\n";

/* The host's default of a limit, as --help shows it. */
static void host_formatdef(const struct host_limit *l, char *out, size_t len) {
  int rc = 0;
  if (l->def <= 0)
    snprintf(out, len, "%s", l->kind == LIMITS_KIND_TIME ? "off" : "none");
  else if (l->kind == LIMITS_KIND_SIZE)
    rc = units_format_size((uint64_t)l->def, out, len);
  else if (l->kind == LIMITS_KIND_TIME)
    rc = units_format_time(l->def, out, len);
  else
    snprintf(out, len, "%.0f", l->def);
  if (rc < 0)
    snprintf(out, len, "?");
}

/* "--max-line N": an option and its value's letter. */
static void host_flag(const struct host_limit *l, char *out, size_t len) {
  snprintf(out, len, "%s %s", l->option,
           l->kind == LIMITS_KIND_TIME ? "T" : "N");
}

/* One line per limit: the flags in a column as wide as the longest one
 * (at least 20), the help, and its default on the next line when the
 * line would pass 79 columns. */
static void print_limits(FILE *f) {
  char flag[64], def[32];
  int width = 20;
  for (int i = 0; i < LIMITS_N; i++) {
    host_flag(&host_limits[i], flag, sizeof flag);
    if ((int)strlen(flag) + 1 > width)
      width = (int)strlen(flag) + 1;
  }
  for (int i = 0; i < LIMITS_N; i++) {
    const struct host_limit *l = &host_limits[i];
    host_flag(l, flag, sizeof flag);
    host_formatdef(l, def, sizeof def);
    size_t len = 3 + (size_t)width + strlen(l->help) + 11 + strlen(def);
    if (len > 79)
      fprintf(f, "  %-*s %s\n  %-*s (default %s)\n", width, flag, l->help,
              width, "", def);
    else
      fprintf(f, "  %-*s %s (default %s)\n", width, flag, l->help, def);
  }
}

static void print_usage(FILE *f) {
  fputs(usage_head, f);
  print_limits(f);
  fputs(usage_tail, f);
}

/* What each kind of value looks like, for messages: the syntax, and what
 * -ERANGE means for it. */
struct host_syntax {
  const char *want, *range;
};
static const struct host_syntax syntax_size = {
  "a size like 1000, 64k, 8M or 1G", "too large or not a whole number of bytes"};
static const struct host_syntax syntax_time = {
  "a time like 30, 500ms, 2m or 1h", "too large or too precise"};
static const struct host_syntax syntax_count = {
  "a whole number", "too large"};

/* "berth: --idle-timeout: expected a time like 30, 500ms, 2m or 1h (got
 * 'abc')" on stderr; returns -1. */
static int bad_value(const char *option, const char *text,
                     const struct host_syntax *syntax, int rc) {
  if (rc == -ERANGE)
    fprintf(stderr, "berth: %s: '%s' is %s\n", option, text, syntax->range);
  else
    fprintf(stderr, "berth: %s: expected %s (got '%s')\n", option,
            syntax->want, text);
  return -1;
}

static int parse_time(const char *option, const char *text, double *secs) {
  int rc = units_parse_time(text, secs);
  return rc < 0 ? bad_value(option, text, &syntax_time, rc) : 0;
}

static int parse_size(const char *option, const char *text, uint64_t *n) {
  int rc = units_parse_size(text, n);
  return rc < 0 ? bad_value(option, text, &syntax_size, rc) : 0;
}

/* A limit option: 1 if `a` is one (its value parsed into o), 0 if not,
 * -1 for a bad value. */
static int limit_option(struct options *o, const char *a, const char *value) {
  for (int i = 0; i < LIMITS_N; i++) {
    const struct host_limit *l = &host_limits[i];
    struct host_value *v = &o->limits[i];
    if (strcmp(a, l->option) != 0)
      continue;
    int rc = 0;
    if (l->kind == LIMITS_KIND_TIME) {
      rc = parse_time(a, value, &v->secs);
    } else if (l->kind == LIMITS_KIND_SIZE) {
      rc = parse_size(a, value, &v->n);
    } else if ((rc = units_parse_count(value, UNITS_SIZE_MAX, &v->n)) < 0) {
      rc = bad_value(a, value, &syntax_count, rc);
    }
    v->set = rc == 0;
    return rc < 0 ? -1 : 1;
  }
  return 0;
}

/* --workers N (a positive integer) or "auto"; -1 after a message. */
static int parse_workers(const char *text, long *workers) {
  static const struct host_syntax syntax = {
    "a positive integer or \"auto\"", "too large"};
  uint64_t n = 0;
  int rc = 0;
  if (strcmp(text, "auto") == 0)
    n = (uint64_t)sysconf(_SC_NPROCESSORS_ONLN);
  else
    rc = units_parse_count(text, INT_MAX, &n);
  if (rc == 0 && n == 0)
    rc = -EINVAL;
  if (rc < 0)
    return bad_value("--workers", text, &syntax, rc);
  *workers = (long)n;
  return 0;
}

/* --log-format text|json; -1 after a message. */
static int parse_log_format(const char *text, enum logfmt_format *f) {
  static const struct host_syntax syntax = {"\"text\" or \"json\"", ""};
  int rc = logfmt_parse(text);
  if (rc < 0)
    return bad_value("--log-format", text, &syntax, rc);
  *f = (enum logfmt_format)rc;
  return 0;
}

/* --worker N (internal: the master gives each worker its number). */
static int parse_worker(const char *text, int *worker) {
  static const struct host_syntax syntax = {"a worker number", "too large"};
  uint64_t n = 0;
  int rc = units_parse_count(text, INT_MAX, &n);
  if (rc == 0 && n == 0)
    rc = -EINVAL;
  if (rc < 0)
    return bad_value("--worker", text, &syntax, rc);
  *worker = (int)n;
  return 0;
}

/* --proxy-protocol on|optional|off; -1 after a message. */
static int parse_proxy(const char *text) {
  static const struct host_syntax syntax = {"on, optional or off", ""};
  if (strcmp(text, "on") == 0 || strcmp(text, "optional") == 0 ||
      strcmp(text, "off") == 0)
    return 0;
  return bad_value("--proxy-protocol", text, &syntax, -EINVAL);
}

/* --proxy-trusted: ranges separated by commas, each one cidr_parse
 * reads; -1 after a message naming the bad one. */
static int parse_trusted(const char *text) {
  static const struct host_syntax syntax = {
    "ranges like 10.0.0.0/8,::1,unix (comma-separated)", ""};
  char one[CIDR_STRLEN + 16];
  struct cidr c;
  for (const char *p = text;; p++) {
    size_t n = strcspn(p, ",");
    if (n == 0 || n >= sizeof one)
      return bad_value("--proxy-trusted", text, &syntax, -EINVAL);
    memcpy(one, p, n);
    one[n] = '\0';
    if (cidr_parse(one, &c) < 0)
      return bad_value("--proxy-trusted", one, &syntax, -EINVAL);
    p += n;
    if (*p == '\0')
      return 0;
  }
}

/* An option that takes a value: 1 if `a` is one (and `value` is good), 0
 * if not, -1 after a message. */
static int value_option(struct options *o, const char *a, const char *value) {
  int rc = limit_option(o, a, value);
  if (rc != 0)
    return rc;
  if (strcmp(a, "--max-memory") == 0) {
    uint64_t n = 0;
    rc = parse_size(a, value, &n);
    o->max_memory = (size_t)n;
  } else if (strcmp(a, "--workers") == 0) {
    rc = parse_workers(value, &o->workers);
  } else if (strcmp(a, "--grace") == 0) {
    rc = parse_time(a, value, &o->grace);
  } else if (strcmp(a, "-e") == 0) {
    o->exprs[o->nexprs++] = value;
  } else if (strcmp(a, "--log-level") == 0) {
    o->level = value;
  } else if (strcmp(a, "--log-format") == 0) {
    rc = parse_log_format(value, &o->log_format);
  } else if (strcmp(a, "--worker") == 0) {
    rc = parse_worker(value, &o->worker);
    o->mode = "worker";
  } else if (strcmp(a, "--user") == 0) {
    o->user = value;
  } else if (strcmp(a, "--group") == 0) {
    o->group = value;
  } else if (strcmp(a, "--proxy-protocol") == 0) {
    rc = parse_proxy(value);
    o->proxy = value;
  } else if (strcmp(a, "--proxy-trusted") == 0) {
    rc = parse_trusted(value);
    o->trusted = value;
  } else {
    return 0;
  }
  return rc < 0 ? -1 : 1;
}

/* An option without a value: 1 if `a` is one, 0 if not. */
static int flag_option(struct options *o, const char *a) {
  if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
    printf("berth %s (%s)\n", BERTH_VERSION_STRING, LUA_RELEASE);
    exit(0);
  } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
    print_usage(stdout);
    exit(0);
  } else if (strcmp(a, "--strict") == 0) {
    o->strict = 1;
  } else if (strcmp(a, "--watch") == 0) {
    o->watch = 1;
  } else if (strcmp(a, "--check") == 0) {
    o->mode = "check";
  } else {
    return 0;
  }
  return 1;
}

/* The options up to the script (or "--"); then the script's index. */
static int parse_args(int argc, char **argv, struct options *o) {
  o->grace = 10;
  o->level = "info";
  o->mode = "single";
  o->exprs = calloc((size_t)argc, sizeof *o->exprs);
  if (o->exprs == NULL) {
    fputs("berth: out of memory\n", stderr);
    return -1;
  }
  int i = 1;
  for (; i < argc && argv[i] != NULL; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    int rc = next ? value_option(o, a, next) : 0;
    if (rc < 0)
      return -1;
    if (rc > 0) {
      i++;
    } else if (strcmp(a, "--") == 0) {
      i++;
      break;
    } else if (!flag_option(o, a)) {
      if (a[0] != '-' || a[1] == '\0')
        break; /* the script, or "-" for stdin */
      fprintf(stderr, "berth: unknown or incomplete option '%s'\n", a);
      print_usage(stderr);
      return -1;
    }
  }
  if (i < argc) {
    o->script = argv[i];
    o->script_index = i;
  } else if (o->nexprs == 0) {
    print_usage(stderr);
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

/* One record of the host's own on stderr (logfmt.h), whatever the level:
 * the value at idx, through __tostring if it has one. [-0, +0, m] */
static void host_log(lua_State *L, const char *level, int idx) {
  size_t len;
  const char *msg = luaL_tolstring(L, idx, &len);
  logfmt_emit(level, NULL, msg, len);
  lua_pop(L, 1);
}

/* The task that drops privileges: a failure ends the process. */
static int drop_task(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, drop_privileges, 1);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    host_log(L, "error", -1);
    exit(1);
  }
  return 0;
}

/* A limit's value for berth.limits: an integer, seconds, or false (off). */
static void push_limit(lua_State *L, const struct host_limit *l,
                       const struct host_value *v) {
  if (l->kind == LIMITS_KIND_TIME) {
    double secs = v->set ? v->secs : l->def;
    if (secs > 0)
      lua_pushnumber(L, secs);
    else
      lua_pushboolean(L, 0);
  } else if (v->set ? v->n > 0 : l->def > 0) {
    lua_pushinteger(L, v->set ? (lua_Integer)v->n : (lua_Integer)l->def);
  } else {
    lua_pushboolean(L, 0);
  }
}

/* The table for berth.limits: what the command line set, and the host's
 * defaults where they are not the library's (cpu_budget). [-0, +1, m] */
static void push_limits(lua_State *L, const struct options *o) {
  lua_createtable(L, 0, LIMITS_N);
  for (int i = 0; i < LIMITS_N; i++) {
    const struct host_limit *l = &host_limits[i];
    int own = (l->def > 0 || l->libdef > 0) && l->def != l->libdef;
    if (o->limits[i].set || own) {
      push_limit(L, l, &o->limits[i]);
      lua_setfield(L, -2, l->name);
    }
  }
}

/* registry[&plain_key] = true: the error being raised is already the
 * whole message (a script that cannot be loaded), no traceback to add. */
static char plain_key;

/* Raise the error on the stack top as a plain message. */
static int raise_plain(lua_State *L) {
  lua_pushboolean(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &plain_key);
  return lua_error(L);
}

/* The error with a traceback; an error object that is not a string reads
 * through its __tostring, as error() callers expect. */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL && luaL_callmeta(L, 1, "__tostring") &&
      lua_type(L, -1) == LUA_TSTRING)
    msg = lua_tostring(L, -1);
  else if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &plain_key) == LUA_TBOOLEAN) {
    lua_pushstring(L, msg);
    return 1;
  }
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

/* A worker's command line: the master's, with --worker in front and
 * --workers taken out. [-0, +1, m] */
static void push_worker_argv(lua_State *L, int argc, char **argv,
                             const struct options *o) {
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
}

/* {protocol = true|"optional"|false, trusted = {...}} for
 * berth.proxy.defaults, from --proxy-protocol and --proxy-trusted.
 * [-0, +1, m] */
static void push_proxy(lua_State *L, const struct options *o) {
  lua_createtable(L, 0, 2);
  if (o->proxy == NULL || strcmp(o->proxy, "off") == 0)
    lua_pushboolean(L, 0);
  else if (strcmp(o->proxy, "optional") == 0)
    lua_pushliteral(L, "optional");
  else
    lua_pushboolean(L, 1);
  lua_setfield(L, -2, "protocol");
  if (o->trusted == NULL)
    return;
  lua_newtable(L);
  int n = 0;
  for (const char *p = o->trusted; *p != '\0';) {
    size_t len = strcspn(p, ",");
    lua_pushlstring(L, p, len);
    lua_rawseti(L, -2, ++n);
    p += len + (p[len] == ',');
  }
  lua_setfield(L, -2, "trusted");
}

/* The options table of berth.host.start. [-0, +1, m] */
static void push_start_options(lua_State *L, int argc, char **argv,
                               struct options *o) {
  lua_createtable(L, 0, 8);
  lua_pushstring(L, o->mode);
  lua_setfield(L, -2, "mode");
  lua_pushstring(L, o->level);
  lua_setfield(L, -2, "level");
  lua_pushnumber(L, o->grace);
  lua_setfield(L, -2, "grace");
  lua_pushboolean(L, o->watch);
  lua_setfield(L, -2, "watch");
  lua_pushboolean(L, o->strict);
  lua_setfield(L, -2, "strict");
  if (o->script != NULL && strcmp(o->script, "-") != 0) {
    lua_pushstring(L, o->script);
    lua_setfield(L, -2, "script");
  }
  push_limits(L, o);
  lua_setfield(L, -2, "limits");
  if (o->user || o->group) {
    lua_pushlightuserdata(L, o);
    lua_pushcclosure(L, drop_task, 1);
    lua_setfield(L, -2, "drop");
  }
  if (strcmp(o->mode, "master") == 0) {
    lua_pushinteger(L, o->workers);
    lua_setfield(L, -2, "workers");
    push_worker_argv(L, argc, argv, o);
    lua_setfield(L, -2, "argv");
  }
  push_proxy(L, o);
  lua_setfield(L, -2, "proxy");
  lua_createtable(L, argc, 0);          /* the command line, for SIGUSR2 */
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "command");
  if (o->exe[0] != '\0') {
    lua_pushstring(L, o->exe);
    lua_setfield(L, -2, "exe");
  }
}

/* The -e chunks, then the script with its arguments. A chunk that does
 * not load says why without a traceback, as lua.c does: nothing ran. */
static void run_script(lua_State *L, int argc, char **argv,
                       const struct options *o) {
  for (int i = 0; i < o->nexprs; i++) {
    if (luaL_loadbuffer(L, o->exprs[i], strlen(o->exprs[i]), "=(command line)"))
      raise_plain(L);
    lua_call(L, 0, 0);
  }
  if (o->script != NULL) {
    const char *file = strcmp(o->script, "-") == 0 ? NULL : o->script;
    if (luaL_loadfilex(L, file, "t")) /* text only: no binary chunks */
      raise_plain(L);
    int nargs = argc - o->script_index - 1;
    luaL_checkstack(L, nargs, "too many arguments to script");
    for (int i = 1; i <= nargs; i++)
      lua_pushstring(L, argv[o->script_index + i]);
    lua_call(L, nargs, 0);
  }
}

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  struct options *o = lua_touserdata(L, 3);
  int check = strcmp(o->mode, "check") == 0;
  luaL_openlibs(L);
  create_arg(L, argc, argv, o->script_index);
  if (berth_open(L) != LUA_OK)           /* stack: ..., berth */
    return lua_error(L);
  int berth = lua_gettop(L);
  lua_getglobal(L, "require");           /* berth.host.start(berth, opts) */
  lua_pushliteral(L, "berth.host");
  lua_call(L, 1, 1);
  int host = lua_gettop(L);
  lua_getfield(L, -1, "start");
  lua_pushvalue(L, berth);
  push_start_options(L, argc, argv, o);
  lua_call(L, 2, 0);
  if (strcmp(o->mode, "master") != 0)    /* the master runs no script */
    run_script(L, argc, argv, o);
  if (check) {
    lua_getfield(L, berth, "shutdown");  /* close what the script opened */
    lua_pushnumber(L, 0);
    lua_call(L, 1, 0);
  }
  lua_getfield(L, berth, "run");
  lua_call(L, 0, 0);
  lua_getfield(L, host, "status");       /* 1 after --strict saw an error */
  lua_call(L, 0, 1);
  o->status = (int)lua_tointeger(L, -1);
  if (check) {
    lua_pushfstring(L, "berth --check: %s: ok", o->script ? o->script : "-e");
    host_log(L, "info", -1);
  }
  return 0;
}

static int options_free(struct options *o, int status) {
  free(o->exprs);
  return status;
}

/* Where the executable is now: a binary upgrade (SIGUSR2) starts what is
 * at this path then, which may be a newer file than the one running. */
static void find_exe(struct options *o) {
  ssize_t len = readlink("/proc/self/exe", o->exe, sizeof o->exe - 1);
  o->exe[len > 0 ? len : 0] = '\0';
}

int main(int argc, char **argv) {
  struct options o;
  memset(&o, 0, sizeof o);
  if (parse_args(argc, argv, &o) < 0)
    return options_free(&o, 2);
  find_exe(&o);
  signal(SIGPIPE, SIG_IGN); /* the executable's choice; sends use MSG_NOSIGNAL */
  /* From here on every message is a log record (logfmt.h); the command
   * line's own errors above are plain "berth: ..." lines. */
  logfmt_setup(o.log_format, o.worker, strcmp(o.mode, "master") == 0);
  /* glibc gives the free top of the heap back to the kernel once more than
   * 128 KiB are free there (and maps blocks over 128 KiB on their own): a
   * server whose messages become Lua strings of tens of KiB frees that much
   * every GC cycle, and each trim is a brk and a TLB flush -- a quarter of
   * the CPU of the 16 KiB WebSocket echo, half its rate. Keep 16 MiB; map
   * only blocks from 4 MiB. The executable's choice, like SIGPIPE: the
   * library leaves malloc alone. */
  mallopt(M_TRIM_THRESHOLD, 16 << 20);
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
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
  if (status != LUA_OK) { /* msghandler made it a string */
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    logfmt_emit("error", NULL, msg ? msg : "?", msg ? len : 1);
  }
  lua_close(L);
  return options_free(&o, status != LUA_OK ? 1 : o.status);
}
