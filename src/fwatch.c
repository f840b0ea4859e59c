/*
 * fwatch.c -- core.watch (class berth.FileWatch): run a callback in a new
 * task each time a complete new version of a file is there. Owns struct
 * fwatchset: the loop's inotify descriptor, its watcher and the watches.
 *
 * A watch is on the file's directory, for the file's name: inotify then
 * reports IN_CLOSE_WRITE when a writer closes the file (written in place,
 * or deleted and created again) and IN_MOVED_TO when a finished file is
 * renamed over it -- one event per complete save, whatever the editor
 * does. (libev's ev_stat compares whole-second times and misses a save of
 * the same size within the same second.) One inotify descriptor per loop,
 * made on first use, read by one ev_io, serves every watch. A FileWatch is
 * anchored until cancelled.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "core.h"

#define FWATCH_UV_FN 2 /* the callback (1 is the loop) */

struct fwatch {
  struct loop *loop;
  int wd;                  /* inotify watch of the directory, -1 when off */
  unsigned char anchored;
  struct fwatch *next;
  const char *name;        /* the file's name within the directory */
  char path[];
};

struct fwatchset {
  int fd;                  /* the inotify descriptor */
  ev_io io;
  struct fwatch *list;
};

/* Queued, not started: no Lua runs while the watch list is walked. */
static int fwatch_fire(lua_State *L) {
  struct fwatch *f = lua_touserdata(L, 1);
  loop_pushanchored(L, f->loop, f);
  lua_getiuservalue(L, 2, FWATCH_UV_FN);
  lua_pushstring(L, f->path);
  sched_queue(L, f->loop, sched_spawn(L, f->loop, 1, NULL));
  return 0;
}

static void fwatch_dispatch(struct loop *lp, const struct inotify_event *e) {
  for (struct fwatch *f = lp->fwatch->list; f != NULL; f = f->next)
    if (f->wd == e->wd && e->len > 0 && strcmp(f->name, e->name) == 0)
      loop_pcall(lp, fwatch_fire, f);
}

static void fwatch_io_cb(struct ev_loop *ev, ev_io *w, int revents) {
  (void)ev; (void)revents;
  struct loop *lp = w->data;
  char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  ssize_t n;
  while ((n = read(lp->fwatch->fd, buf, sizeof buf)) > 0) {
    for (char *p = buf; p < buf + n;) {
      const struct inotify_event *e = (const struct inotify_event *)p;
      fwatch_dispatch(lp, e);
      p += sizeof *e + e->len;
    }
  }
}

static void fwatchset_free(struct loop *lp, void *ud) {
  struct fwatchset *set = ud;
  ev_ref(lp->ev);
  ev_io_stop(lp->ev, &set->io);
  close(set->fd);
  free(set);
  lp->fwatch = NULL;
}

/* The loop's inotify descriptor, made on first use: 0 or -errno. */
static int fwatch_init(lua_State *L, struct loop *lp) {
  if (lp->fwatch != NULL)
    return 0;
  struct fwatchset *set = calloc(1, sizeof *set);
  if (set == NULL)
    return -ENOMEM;
  set->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (set->fd < 0) {
    int err = errno;
    free(set);
    return -err;
  }
  ev_io_init(&set->io, fwatch_io_cb, set->fd, EV_READ);
  set->io.data = lp;
  ev_io_start(lp->ev, &set->io);
  ev_unref(lp->ev); /* watches alone do not keep run() going */
  lp->fwatch = set;
  loop_atclose(L, lp, fwatchset_free, set);
  return 0;
}

/* Split the path: "dir/name" is kept, then the directory alone. */
static const char *fwatch_dir(struct fwatch *f, size_t len) {
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
  return dir;
}

/* core.watch(path, fn) -> FileWatch: fn(path) runs in a new task each
 * time a complete new version of the file is there. */
int fwatch_new(lua_State *L) {
  struct loop *lp = loop_check(L, lua_upvalueindex(1));
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int rc = fwatch_init(L, lp);
  if (rc < 0)
    return util_failerr(L, -rc);
  struct fwatch *f = loop_newobject(L, lp, sizeof *f + 2 * (len + 1) + 2, 2);
  memset(f, 0, sizeof *f);
  f->loop = lp;
  f->wd = -1;
  luaL_setmetatable(L, CLS_FWATCH);
  memcpy(f->path, path, len + 1);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, FWATCH_UV_FN);
  loop_keep(L, lp, f, -1, &f->anchored, 1);
  f->wd = inotify_add_watch(lp->fwatch->fd, fwatch_dir(f, len),
                            IN_CLOSE_WRITE | IN_MOVED_TO);
  if (f->wd < 0) {
    int err = errno;
    loop_keep(L, lp, f, 0, &f->anchored, 0);
    return util_failerr(L, err);
  }
  f->next = lp->fwatch->list;
  lp->fwatch->list = f;
  return 1;
}

/* Off the loop's list; the directory watch goes when no watch uses it. */
static void fwatch_stop(struct fwatch *f) {
  struct fwatchset *set = f->loop->fwatch;
  if (f->wd < 0 || set == NULL)
    return;
  int shared = 0;
  for (struct fwatch **p = &set->list; *p != NULL;) {
    if (*p == f) {
      *p = f->next;
    } else {
      shared |= (*p)->wd == f->wd;
      p = &(*p)->next;
    }
  }
  if (!shared)
    inotify_rm_watch(set->fd, f->wd);
  f->wd = -1;
}

static int fwatch_cancel(lua_State *L) {
  struct fwatch *f = luaL_checkudata(L, 1, CLS_FWATCH);
  fwatch_stop(f);
  loop_keep(L, f->loop, f, 0, &f->anchored, 0);
  return 0;
}

static int fwatch__gc(lua_State *L) {
  fwatch_stop(luaL_checkudata(L, 1, CLS_FWATCH));
  return 0;
}

static const luaL_Reg fwatch_meta[] = {
  {"__gc", fwatch__gc}, {"__close", fwatch_cancel}, {NULL, NULL}
};
static const luaL_Reg fwatch_methods[] = {
  {"cancel", fwatch_cancel}, {NULL, NULL}
};

/* [-0, +0, m] */
void fwatch_open(lua_State *L) {
  util_newclass(L, CLS_FWATCH, fwatch_meta, fwatch_methods);
  lua_pop(L, 1);
}
