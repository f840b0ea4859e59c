/*
 * core.h -- berth's private header: the structs the C files share, class
 * names, user-value slots and cross-file prototypes.
 *
 * Ownership: the loop (struct loop, a userdata) owns the ev_loop, the
 * anchor table, the pending queue and the scratch buffer; every object
 * keeps its loop alive through user value 1. Socket, ServerSocket, Timer,
 * Signal and FileWatch are owned by Lua. A task (a coroutine the scheduler
 * started) is anchored from spawn until it ends, so C may keep its
 * lua_State* exactly that long (L7); a task waiting on an object holds it
 * on its own stack. An object is anchored in the loop's anchor table only
 * while C holds it with no task in between -- callbacks registered, a
 * listener in handler mode, an armed timer or signal, a write buffer still
 * draining -- so the GC cannot free it under a callback (L1), and an idle
 * object Lua dropped is collected and closed by __gc.
 *
 * Layers: host.c -> api.c -> module.c -> server.c/socket*.c/timer.c/proc.c/
 * resolve.c -> sched.c/loop.c -> buffer.c/net.c (which never include lua.h).
 */
#ifndef BERTH_CORE_H
#define BERTH_CORE_H

#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>

#include "buffer.h"
#include "net.h"

#include "berth_version.h"
#define BERTH_VERSION BERTH_VERSION_STRING /* from project(VERSION) */

#define CLS_LOOP   "berth.Loop"
#define CLS_SOCKET "berth.Socket"
#define CLS_SERVER "berth.ServerSocket"
#define CLS_TIMER  "berth.Timer"
#define CLS_SIGNAL "berth.Signal"
#define CLS_FWATCH "berth.FileWatch"

/* Limits and defaults (documented in README "API reference"). */
#define BERTH_SCRATCH    (64 * 1024) /* shared receive buffer */
#define BERTH_MAXLINE    (64 * 1024)
#define BERTH_HIWAT      (64 * 1024)
#define BERTH_LOWAT      (16 * 1024)
#define BERTH_BACKLOG    511
#define BERTH_ACCEPT_MAX 64          /* accepts per readiness event (R9) */
#define BERTH_GRACE      10.0
#define BERTH_BUDGET     64          /* buffered reads per resume (fairness) */

/* Per-connection safety limits (README "Limits and safety"): struct
 * limits, LIMITS_DEFAULT and LIMITS_NONE, all from one list. */
#include "berth_limits.h"

/* ------------------------------------------------------------------ loop */

struct resolver; /* resolve.c */
struct fwatch;   /* timer.c */

struct loop {
  struct ev_loop *ev;
  lua_State *L;          /* thread inside run()/step(), NULL otherwise (L7) */
  lua_State *current;    /* task being resumed now, NULL at top level */
  int anchors;           /* registry ref: anchor table, lightuserdata -> obj */
  int onerror;           /* registry ref: default task error handler */
  int logger;            /* registry ref: log function, or LUA_NOREF */
  ev_prepare prepare;    /* drains the pending queue each iteration */
  ev_idle idle;          /* keeps the poll from blocking while it is not empty */
  lua_State **queue;     /* pending resumes (tasks, anchored) */
  size_t qhead, qlen, qcap;
  char *scratch;         /* BERTH_SCRATCH bytes shared by all receives */
  struct server *servers;/* open servers, for shutdown */
  struct sock *sockets;  /* open sockets, for shutdown */
  struct limits limits;  /* defaults for new servers (berth.limits) */
  int budget;            /* buffered reads left in this resume */
  double cpu_budget;     /* seconds a task may run without yielding, 0 off */
  double resumed_at;     /* monotonic time of the current resume */
  int overrun;           /* the hook stopped the current task */
  struct resolver *resolver;
  int inotify;           /* core.watch's inotify descriptor, -1 until used */
  ev_io inotify_io;
  struct fwatch *fwatches; /* the loop's file watches */
  ev_timer grace;        /* shutdown deadline */
  int draining;          /* shutdown() called: finish when tasks reach 0 */
  /* counters reported by berth.stats() */
  long nsockets, nservers, ntasks, nanchors;
  long active, total;
  uint64_t bytes_in, bytes_out;
};

struct loop *loop_new(lua_State *L);                       /* [-0,+1,m] */
struct loop *loop_check(lua_State *L, int idx);
/* A new object of `lp` with `nuv` user values, UV_LOOP set. [-0,+1,m] */
void *loop_newobject(lua_State *L, struct loop *lp, size_t size, int nuv);
void loop_anchor(lua_State *L, struct loop *lp, const void *key, int idx);
void loop_unanchor(lua_State *L, struct loop *lp, const void *key);
int loop_pushanchored(lua_State *L, struct loop *lp, const void *key);
int loop_run(lua_State *L, struct loop *lp, int mode);
void loop_shutdown(lua_State *L, struct loop *lp, double grace);
void loop_log(struct loop *lp, const char *level, const char *fmt, ...);
int loop_pcall(struct loop *lp, lua_CFunction f, void *ud);
void loop_stats(lua_State *L, struct loop *lp);           /* [-0,+1,m] */
void loop_taskended(struct loop *lp);
/* Absolute deadline `timeout` seconds from the real now; -1 when < 0. */
ev_tstamp loop_deadline(struct loop *lp, double timeout);

/* ----------------------------------------------------------------- sched */

/* Create a task from `fn, args` (nargs) at the top of L; pushes the thread.
 * `owned` (stack index or 0) is closed when the task ends. */
lua_State *sched_new(lua_State *L, struct loop *lp, int owned, int nargs);
void sched_queue(lua_State *L, struct loop *lp, lua_State *co);
/* Resume a parked task from a loop callback (top level only, R7). */
void sched_resume(struct loop *lp, lua_State *co);
/* Arm the runaway-handler hook on tasks created from now on. */
void sched_setcpubudget(lua_State *L, struct loop *lp, double seconds);
/* Raise unless L is the running berth task (R5). */
void sched_checktask(lua_State *L, struct loop *lp, const char *what);
/* Yield the running task with the sentinel; k retries on resume (R4). */
int sched_park(lua_State *L, lua_KContext ctx, lua_KFunction k);
void sched_drain(struct loop *lp);
/* Report a task error; stack: err, traceback, owned (popped). */
void sched_report(lua_State *L, struct loop *lp);
/* lua_pcall for user callbacks: an error goes to sched_report with the
 * object at `ownidx` (or nil when 0). Returns the status. */
int sched_pcall(lua_State *L, struct loop *lp, int nargs, int ownidx);

/* --------------------------------------------------------------- objects */

/* A task waiting on an object: one reader, one writer, one acceptor. */
struct waiter {
  lua_State *co;       /* anchored task, or NULL */
  ev_tstamp deadline;  /* absolute ev_now time, 0 = none */
  int timedout;
};

/* User value 1 of every object is its loop, which it keeps alive. */
#define UV_LOOP 1

enum sock_uv { SOCK_UV_SERVER = 2, SOCK_UV_TASK, SOCK_UV_ONDATA,
               SOCK_UV_ONCLOSE, SOCK_UV_ONDRAIN, SOCK_NUV = SOCK_UV_ONDRAIN };

struct sock {
  struct loop *loop;
  struct server *srv;    /* accepting server, kept alive by SOCK_UV_SERVER */
  int fd;
  unsigned readable : 1; /* the kernel may have bytes (like nginx's ready) */
  unsigned eof : 1;      /* peer sent FIN */
  unsigned callback : 1; /* on("data") mode */
  unsigned shut_wr : 1;  /* shutdown("w") once the write buffer drains */
  unsigned drain_cb : 1; /* a write had to buffer: fire "drain" when empty */
  unsigned anchored : 1;
  unsigned events : 1;   /* on("close"|"drain") registered */
  unsigned connecting : 1;
  unsigned owned : 1;    /* a handler task owns it, and anchors it for us */
  int rerr, werr;        /* sticky -errno of the read/write side */
  ev_io rio, wio;
  ev_timer timer;        /* one per socket: the nearest waiter deadline */
  struct buf rbuf, wbuf;
  size_t rscan;          /* bytes of rbuf already searched in vain */
  struct limits lim;
  size_t hiwat, lowat, wtarget;
  double rtimeout, wtimeout; /* per-socket defaults, < 0 = none */
  const char *why;       /* why it was closed: what waiters are told */
  ev_tstamp last_active; /* last byte in or out (idle timeout) */
  ev_tstamp last_drain;  /* last progress of queued output (send timeout) */
  ev_tstamp msg_start;   /* first byte of the unread input (message timeout) */
  struct waiter reader, writer;
  uint64_t bytes_in, bytes_out;
  ev_tstamp created;
  ev_tstamp timer_at;    /* when the armed timer fires */
  struct sock *next, **pprev; /* the loop's open sockets, for shutdown */
};

enum srv_uv { SRV_UV_HANDLER = 2, SRV_UV_ONERROR, SRV_NUV = SRV_UV_ONERROR };

struct server {
  struct loop *loop;
  int fd;
  ev_io lio;
  ev_timer timer;        /* accept deadline, or the EMFILE back-off */
  unsigned handler : 1;  /* on("connection") set: C runs the accept loop */
  unsigned paused : 1;
  unsigned backoff : 1;  /* accepting suspended after EMFILE/ENFILE */
  unsigned tcp : 1;      /* set TCP_NODELAY on accepted sockets */
  unsigned anchored : 1;
  struct waiter acceptor;
  char *unlink_path;     /* unix socket file we created */
  struct limits lim;     /* given to every accepted socket */
  long accepted, active, rejected;
  ev_tstamp lastwarn;    /* rate limit for the EMFILE warning */
  struct server *next, **pprev;
};

/* socket.c */
struct sock *sock_new(lua_State *L, struct loop *lp, int fd);   /* [-0,+1,m] */
struct sock *sock_check(lua_State *L, int idx);
/* Close s; `idx` is its stack index or 0; `why` is the code passed to
 * on("close"), or NULL from __gc (no callbacks, no wake-ups: L5). */
void sock_destroy(lua_State *L, struct sock *s, int idx, const char *why);
void sock_closeall(lua_State *L, struct loop *lp);
void sock_open(lua_State *L);
int sock_connect(lua_State *L);
int sock_adopt(lua_State *L);
void sock_hold(lua_State *L, struct sock *s, int idx);
void sock_release(lua_State *L, struct sock *s);
void sock_timer_arm(struct sock *s);
void sock_wio_cb(struct ev_loop *ev, ev_io *w, int revents);
/* Send what the write buffer holds now, without waiting. */
void sock_flushnow(lua_State *L, struct sock *s);
/* socket_io.c: the read and write methods */
extern const luaL_Reg sock_io_methods[];

/* server.c */
void srv_open(lua_State *L);
int srv_listen(lua_State *L);
/* limits.c: the limits of `scopes` (LIMITS_SCOPE_SERVER, LIMITS_ALL) read
 * from the table at idx over *lim, messages naming `api` ("listen:
 * maxline must be ..."), or pushed as a table (false for none). */
void limits_read(lua_State *L, int idx, struct limits *lim, int scopes,
                 const char *api);                          /* [-0,+0,v] */
void limits_push(lua_State *L, const struct limits *lim, int scopes);
                                                            /* [-0,+1,m] */
void srv_closeall(lua_State *L, struct loop *lp);

/* timer.c */
void timer_open(lua_State *L);
int timer_sleep(lua_State *L);
int timer_new(lua_State *L);
int timer_signal(lua_State *L);
int timer_watch(lua_State *L);

/* proc.c: process primitives for the master/worker model (core.proc) */
void proc_open(lua_State *L); /* [-0, +1, m] the core.proc table */

/* resolve.c */
int resolve_lookup(lua_State *L);
void resolve_free(struct resolver *r);

/* util.c */
void util_newclass(lua_State *L, const char *name, const luaL_Reg *meta,
                   const luaL_Reg *methods);
int util_fail(lua_State *L, const char *code);             /* [-0,+2,m] */
int util_failerr(lua_State *L, int err);                    /* [-0,+3,m] */
int util_pushaddr(lua_State *L, const struct net_addr *a); /* [-0,+2,m] */
double util_opttimeout(lua_State *L, int idx, double def);

#endif
