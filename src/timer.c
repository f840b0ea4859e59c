/*
 * timer.c -- time, signals and files: berth.sleep, berth.timer (class
 * berth.Timer), berth.signal (class berth.Signal) and core.watch (class
 * berth.FileWatch, inotify: one event per complete save of a file).
 *
 * A sleeping task holds its Timer on its own stack, so sleep needs no
 * anchor. A timer or signal with a callback is anchored while armed: C
 * holds it and no task does. Each firing runs the callback in a new task,
 * so callbacks may block like any handler. Signal watchers are unref'd:
 * they never keep berth.run() going by themselves.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "core.h"

#define TIMER_UV_FN 2 /* the callback of a Timer or Signal (1 is the loop) */

struct timer {
  struct loop *loop;
  ev_timer w;
  lua_State *sleeper;  /* berth.sleep: the task to resume */
  int anchored;
};

struct sigw {
  struct loop *loop;
  ev_signal w;
  int anchored;
};

static void timer_disarm(lua_State *L, struct timer *t) {
  if (t->loop->ev != NULL)
    ev_timer_stop(t->loop->ev, &t->w);
  if (t->anchored) {
    loop_unanchor(L, t->loop, t);
    t->anchored = 0;
  }
}

/* Start a task running the object's callback with (arg). [-0, +0, m] */
static void timer_spawn(lua_State *L, struct loop *lp, int idx, int argidx) {
  lua_getiuservalue(L, idx, TIMER_UV_FN);
  lua_pushvalue(L, argidx);
  lua_State *co = sched_new(L, lp, 0, 1);
  lua_pop(L, 1);
  sched_resume(lp, co);
}

static int timer_fire(lua_State *L) {
  struct timer *t = lua_touserdata(L, 1);
  struct loop *lp = t->loop;
  loop_pushanchored(L, lp, t); /* kept on the stack while Lua runs (L4) */
  if (t->w.repeat <= 0)
    timer_disarm(L, t); /* one-shot: collectable once the task lets go */
  timer_spawn(L, lp, 2, 2);
  return 0;
}

static void timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)ev; (void)revents;
  struct timer *t = w->data;
  lua_State *co = t->sleeper;
  if (co != NULL) {
    t->sleeper = NULL;
    sched_resume(t->loop, co);
  } else if (t->anchored) {
    loop_pcall(t->loop, timer_fire, t);
  }
}

static struct timer *timer_push(lua_State *L, struct loop *lp) {
  struct timer *t = loop_newobject(L, lp, sizeof *t, 2);
  memset(t, 0, sizeof *t);
  t->loop = lp;
  ev_init(&t->w, timer_cb);
  t->w.data = t;
  luaL_setmetatable(L, CLS_TIMER);
  return t;
}

static int timer_sleep_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  lua_pushboolean(L, 1);
  return 1;
}

/* berth.sleep(seconds): 0 just lets every other ready task run first. */
int timer_sleep(lua_State *L) {
  struct loop *lp = loop_check(L, lua_upvalueindex(1));
  double secs = luaL_checknumber(L, 1);
  sched_checktask(L, lp, "sleep");
  if (secs <= 0) {
    sched_queue(L, lp, L);
    return sched_park(L, 0, timer_sleep_k);
  }
  ev_now_update(lp->ev); /* Lua may have run long: count from the real now */
  struct timer *t = timer_push(L, lp); /* stays on this task's stack */
  t->sleeper = L;
  ev_timer_set(&t->w, secs, 0);
  ev_timer_start(lp->ev, &t->w);
  return sched_park(L, 0, timer_sleep_k);
}

/* berth.timer(after, repeat, fn) -> Timer */
int timer_new(lua_State *L) {
  struct loop *lp = loop_check(L, lua_upvalueindex(1));
  double after = luaL_checknumber(L, 1);
  double rep = luaL_optnumber(L, 2, 0);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  struct timer *t = timer_push(L, lp);
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, -2, TIMER_UV_FN);
  ev_now_update(lp->ev);
  ev_timer_set(&t->w, after > 0 ? after : 0, rep > 0 ? rep : 0);
  ev_timer_start(lp->ev, &t->w);
  loop_anchor(L, lp, t, -1);
  t->anchored = 1;
  return 1;
}

static int timer_cancel(lua_State *L) {
  struct timer *t = luaL_checkudata(L, 1, CLS_TIMER);
  timer_disarm(L, t);
  lua_pushboolean(L, 1);
  return 1;
}

static int timer__gc(lua_State *L) {
  struct timer *t = luaL_checkudata(L, 1, CLS_TIMER);
  t->sleeper = NULL;
  if (t->loop->ev != NULL)
    ev_timer_stop(t->loop->ev, &t->w);
  return 0;
}

static int timer__tostring(lua_State *L) {
  struct timer *t = luaL_checkudata(L, 1, CLS_TIMER);
  lua_pushfstring(L, "Timer (%s)", ev_is_active(&t->w) ? "armed" : "idle");
  return 1;
}

/* --------------------------------------------------------------- signals */

static const struct { const char *name; int signo; } signames[] = {
  {"INT", SIGINT}, {"TERM", SIGTERM}, {"HUP", SIGHUP}, {"QUIT", SIGQUIT},
  {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"CHLD", SIGCHLD},
  {"WINCH", SIGWINCH}, {"ALRM", SIGALRM}, {"PIPE", SIGPIPE}, {NULL, 0}
};

static int signal_number(const char *name) {
  if (strncmp(name, "SIG", 3) == 0)
    name += 3;
  for (int i = 0; signames[i].name; i++)
    if (strcmp(signames[i].name, name) == 0)
      return signames[i].signo;
  return 0;
}

static int signal_fire(lua_State *L) {
  struct sigw *g = lua_touserdata(L, 1);
  loop_pushanchored(L, g->loop, g);
  for (int i = 0; signames[i].name; i++)
    if (signames[i].signo == g->w.signum)
      lua_pushstring(L, signames[i].name);
  timer_spawn(L, g->loop, 2, 3);
  return 0;
}

static void signal_cb(struct ev_loop *ev, ev_signal *w, int revents) {
  (void)ev; (void)revents;
  struct sigw *g = w->data;
  loop_pcall(g->loop, signal_fire, g);
}

static void signal_disarm(lua_State *L, struct sigw *g) {
  if (!g->anchored)
    return;
  if (g->loop->ev != NULL) {
    ev_ref(g->loop->ev);
    ev_signal_stop(g->loop->ev, &g->w);
  }
  loop_unanchor(L, g->loop, g);
  g->anchored = 0;
}

/* berth.signal(name, fn) -> Signal */
int timer_signal(lua_State *L) {
  struct loop *lp = loop_check(L, lua_upvalueindex(1));
  const char *name = luaL_checkstring(L, 1);
  int signo = signal_number(name);
  luaL_argcheck(L, signo != 0, 1, "unknown signal name");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  struct sigw *g = loop_newobject(L, lp, sizeof *g, 2);
  memset(g, 0, sizeof *g);
  g->loop = lp;
  luaL_setmetatable(L, CLS_SIGNAL);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, TIMER_UV_FN);
  ev_signal_init(&g->w, signal_cb, signo);
  g->w.data = g;
  ev_signal_start(lp->ev, &g->w);
  ev_unref(lp->ev);
  loop_anchor(L, lp, g, -1);
  g->anchored = 1;
  return 1;
}

static int signal_cancel(lua_State *L) {
  signal_disarm(L, luaL_checkudata(L, 1, CLS_SIGNAL));
  lua_pushboolean(L, 1);
  return 1;
}

static int signal__gc(lua_State *L) {
  struct sigw *g = luaL_checkudata(L, 1, CLS_SIGNAL);
  if (g->loop->ev != NULL && ev_is_active(&g->w)) {
    ev_ref(g->loop->ev);
    ev_signal_stop(g->loop->ev, &g->w);
  }
  return 0;
}

/* ----------------------------------------------------------- file watch */

/* A watch is on the file's directory, for the file's name: inotify then
 * reports IN_CLOSE_WRITE when a writer closes the file (written in place,
 * or deleted and created again) and IN_MOVED_TO when a finished file is
 * renamed over it -- one event per complete save, whatever the editor
 * does. (libev's ev_stat compares whole-second times and misses a save of
 * the same size within the same second.) One inotify descriptor per loop,
 * read by one ev_io, serves every watch; watches are on the loop's list. */
struct fwatch {
  struct loop *loop;
  int wd;                  /* inotify watch of the directory */
  int anchored;
  struct fwatch *next;
  const char *name;        /* the file's name within the directory */
  char path[];
};

static int fwatch_fire(lua_State *L) {
  struct fwatch *f = lua_touserdata(L, 1);
  loop_pushanchored(L, f->loop, f);
  lua_pushstring(L, f->path);
  timer_spawn(L, f->loop, 2, 3);
  return 0;
}

static void fwatch_dispatch(struct loop *lp, const struct inotify_event *e) {
  for (struct fwatch *f = lp->fwatches; f != NULL; f = f->next)
    if (f->wd == e->wd && e->len > 0 && strcmp(f->name, e->name) == 0)
      loop_pcall(lp, fwatch_fire, f);
}

static void fwatch_io_cb(struct ev_loop *ev, ev_io *w, int revents) {
  (void)ev; (void)revents;
  struct loop *lp = w->data;
  char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  ssize_t n;
  while ((n = read(lp->inotify, buf, sizeof buf)) > 0) {
    for (char *p = buf; p < buf + n;) {
      const struct inotify_event *e = (const struct inotify_event *)p;
      fwatch_dispatch(lp, e);
      p += sizeof *e + e->len;
    }
  }
}

static int fwatch_init(struct loop *lp) {
  if (lp->inotify >= 0)
    return 0;
  lp->inotify = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (lp->inotify < 0)
    return -errno;
  ev_io_init(&lp->inotify_io, fwatch_io_cb, lp->inotify, EV_READ);
  lp->inotify_io.data = lp;
  ev_io_start(lp->ev, &lp->inotify_io);
  ev_unref(lp->ev); /* watches alone do not keep run() going */
  return 0;
}

/* core.watch(path, fn) -> FileWatch: fn(path) runs in a new task each
 * time a complete new version of the file is there. */
int timer_watch(lua_State *L) {
  struct loop *lp = loop_check(L, lua_upvalueindex(1));
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int rc = fwatch_init(lp);
  if (rc < 0)
    return util_failerr(L, -rc);
  /* path[] holds "dir/name" and, after it, the directory alone */
  struct fwatch *f = loop_newobject(L, lp, sizeof *f + 2 * (len + 1) + 2, 2);
  memset(f, 0, sizeof *f);
  f->loop = lp;
  memcpy(f->path, path, len + 1);
  char *dir = f->path + len + 1;
  const char *slash = strrchr(f->path, '/');
  if (slash == NULL) {
    memcpy(dir, ".", 2);
    f->name = f->path;
  } else {
    size_t dlen = slash == f->path ? 1 : (size_t)(slash - f->path);
    memcpy(dir, f->path, dlen);
    dir[dlen] = '\0';
    f->name = slash + 1;
  }
  f->wd = inotify_add_watch(lp->inotify, dir, IN_CLOSE_WRITE | IN_MOVED_TO);
  if (f->wd < 0)
    return util_failerr(L, errno);
  luaL_setmetatable(L, CLS_FWATCH);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, TIMER_UV_FN);
  f->next = lp->fwatches;
  lp->fwatches = f;
  loop_anchor(L, lp, f, -1);
  f->anchored = 1;
  return 1;
}

/* Off the loop's list; the directory watch goes when no watch uses it. */
static void fwatch_stop(struct fwatch *f) {
  struct loop *lp = f->loop;
  int shared = 0;
  for (struct fwatch **p = &lp->fwatches; *p != NULL;) {
    if (*p == f)
      *p = f->next;
    else {
      shared |= (*p)->wd == f->wd;
      p = &(*p)->next;
    }
  }
  if (!shared && lp->inotify >= 0)
    inotify_rm_watch(lp->inotify, f->wd);
  f->wd = -1;
}

static int fwatch_cancel(lua_State *L) {
  struct fwatch *f = luaL_checkudata(L, 1, CLS_FWATCH);
  if (!f->anchored)
    return 0;
  fwatch_stop(f);
  loop_unanchor(L, f->loop, f);
  f->anchored = 0;
  return 0;
}

static int fwatch__gc(lua_State *L) {
  struct fwatch *f = luaL_checkudata(L, 1, CLS_FWATCH);
  if (f->wd >= 0)
    fwatch_stop(f);
  return 0;
}

static const luaL_Reg fwatch_meta[] = {
  {"__gc", fwatch__gc}, {"__close", fwatch_cancel}, {NULL, NULL}
};
static const luaL_Reg fwatch_methods[] = {
  {"cancel", fwatch_cancel}, {NULL, NULL}
};

static const luaL_Reg timer_meta[] = {
  {"__gc", timer__gc}, {"__close", timer_cancel},
  {"__tostring", timer__tostring}, {NULL, NULL}
};
static const luaL_Reg timer_methods[] = {
  {"cancel", timer_cancel}, {NULL, NULL}
};
static const luaL_Reg signal_meta[] = {
  {"__gc", signal__gc}, {"__close", signal_cancel}, {NULL, NULL}
};
static const luaL_Reg signal_methods[] = {
  {"cancel", signal_cancel}, {NULL, NULL}
};

/* Registers both classes; leaves nothing on the stack. [-0, +0, m] */
void timer_open(lua_State *L) {
  util_newclass(L, CLS_TIMER, timer_meta, timer_methods);
  util_newclass(L, CLS_SIGNAL, signal_meta, signal_methods);
  util_newclass(L, CLS_FWATCH, fwatch_meta, fwatch_methods);
  lua_pop(L, 3);
}
