/*
 * core.h -- berth's private header: the structs the C files share, class
 * names, user-value slots and cross-file prototypes.
 *
 * Layers (each calls only downward; scripts/lint checks it):
 *
 *   host.c                      the executable
 *   api.c                       the public C API (berth.h)
 *   module.c                    luaopen_berth_core: the core table
 *   shutdown.c                  graceful stop: closes the objects below
 *   server.c socket*.c timer.c  the classes (one file each; they may use
 *   signal.c fwatch.c proc.c    each other: a server makes sockets)
 *   resolve.c dgram*.c tls.c    (tls.c: the TLS engine, no lua.h)
 *   shared.c bus_lua.c          shared.c: the group's region and dicts;
 *   metrics.c                   bus_lua.c: messages, inboxes, sock:id();
 *                               metrics.c: metrics and their scrape
 *   sched.c                     tasks: spawn, park, wake, resume; the
 *                               CPU budget (watchdog.c: its thread)
 *   loop.c util.c check.c       the loop object; Lua helpers; validators,
 *   options.c limits.c          option tables and limits (defined once)
 *   buffer.c net.c (+ pure C)   no lua.h at all
 *
 * Ownership: the loop (struct loop, a userdata of class berth.Loop) owns
 * the ev_loop, the anchor table and the scratch buffer; every other
 * per-loop state belongs to one file, which creates it, frees it through a
 * loop cleanup, and is the only file that touches its fields. Every object
 * keeps its loop alive through user value 1, and the loop got its metatable
 * before any of them, so it is finalized last: an invariant, asserted in
 * the finalizers that touch the ev_loop, not a case they handle.
 *
 * A task (sched.c) is anchored from spawn until it ends, so C may hold it
 * exactly that long (L7). An object is anchored in the loop's anchor table
 * only while C holds it with no task in between -- callbacks registered, a
 * listener in handler mode, an armed timer or signal, a write buffer still
 * draining -- so the GC cannot free it under a callback (L1); an idle object
 * Lua dropped is collected and closed by __gc. The anchor table is a user
 * value of the loop, so a loop Lua dropped is collected with everything it
 * anchored.
 */
#ifndef BERTH_CORE_H
#define BERTH_CORE_H

#include <assert.h>
#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/uio.h>

#include "buffer.h"
#include "list.h"
#include "net.h"

#include "berth_version.h"
#define BERTH_VERSION BERTH_VERSION_STRING /* from project(VERSION) */

#define CLS_LOOP   "berth.Loop"
#define CLS_TASK   "berth.Task"
#define CLS_SOCKET "berth.Socket"
#define CLS_SERVER "berth.ServerSocket"
#define CLS_TIMER  "berth.Timer"
#define CLS_SIGNAL "berth.Signal"
#define CLS_FWATCH "berth.FileWatch"
#define CLS_DGRAM  "berth.Datagram"
#define CLS_TLSCTX "berth.TLSContext"
#define CLS_SHDICT "berth.SharedDict"
#define CLS_INBOX  "berth.Inbox"
#define CLS_BUFFER "berth.Buffer"

/* Invariants (E7): compiled in unless NDEBUG, i.e. in debug and sanitizer
 * builds; the message says what broke. */
#define BERTH_ASSERT(msg, cond) assert(((void)(msg), (cond)))

/* Limits and defaults (documented in README "API reference"). */
#define BERTH_SCRATCH    (64 * 1024) /* shared receive buffer */
#define BERTH_MAXLINE    (64 * 1024)
#define BERTH_HIWAT      (64 * 1024)
#define BERTH_LOWAT      (16 * 1024)
#define BERTH_BACKLOG    511
#define BERTH_ACCEPT_MAX 64          /* accepts per readiness event (R9) */
#define BERTH_GRACE      10.0
#define BERTH_BUDGET     64          /* buffered reads per resume (fairness) */
#define BERTH_YOUNG_SECONDS 1.0      /* a new connection's first request */

/* Per-connection safety limits (README "Limits and safety"): struct
 * limits, LIMITS_DEFAULT and LIMITS_NONE, all from one list. */
#include "berth_limits.h"

/* ------------------------------------------------------------------ loop */

struct sched;     /* sched.c */
struct sockset;   /* socket.c: open sockets and the byte counters */
struct srvset;    /* server.c: open servers */
struct resolver;  /* http.c: berth.core.http (berth.http's hot path) */
void http_open(lua_State *L);  /* the classes, once per state */
void http_push(lua_State *L);  /* [-0, +1, m] the core.http table */

/* ws.c: berth.core.ws (berth.websocket's hot path) */
void ws_open(lua_State *L);    /* the class, once per state */
void ws_push(lua_State *L);    /* [-0, +1, m] the core.ws table */

/* resp_lua.c: berth.core.resp (RESP commands read in C, replies queued) */
void resp_push(lua_State *L);  /* [-1, +1, m] the core.resp table; pops
                                  the loop, its functions' upvalue */

/* resolve.c */
struct fwatchset; /* fwatch.c: the inotify descriptor and the watches */
struct dgramset;  /* dgram.c: open Datagrams, the receive batch area */
struct drain;     /* shutdown.c: the grace timer */
struct tlsstate;  /* socket_tls.c: the default session ticket keys */
struct mstate;    /* metrics.c: the sampler and the scrape threads */
struct relayset;  /* relay.c: spare pipes for splice(2) */
struct respstate; /* resp_lua.c: the RESP parser's argument array */
struct spxdefaults; /* socket_proxy.c: PROXY protocol listen defaults */
struct cleanup;   /* loop.c */

struct loop {
  struct ev_loop *ev;
  lua_State *L;          /* thread inside run()/step(), NULL otherwise (L7) */
  long nanchors;
  int logger;            /* registry ref: log function, or LUA_NOREF */
  int draining;          /* a graceful shutdown is under way */
  char *scratch;         /* BERTH_SCRATCH bytes shared by all receives */
  struct buf spare;      /* memory of a Buffer that parked empty, lent to
                            the next read into an empty Buffer (socket_io.c) */
  ev_timer wakeup;       /* ends a blocking step(timeout): never on a C
                            stack, which a Lua error could leave (9.1) */
  struct cleanup *cleanups; /* run by __gc, newest first */
  struct limits limits;  /* defaults for new servers (berth.limits) */
  /* Each pointer below is created, used and freed by the file named. */
  struct sched *sched;
  struct sockset *socks;
  struct srvset *servers;
  struct resolver *resolver;
  struct fwatchset *fwatch;
  struct dgramset *dgrams; /* made by the first berth.udp */
  struct drain *drain;
  struct tlsstate *tls;
  struct mstate *metrics;
  struct relayset *relays; /* made by the first relay that splices */
  struct respstate *resp;  /* made by the first resp.read */
  struct spxdefaults *proxy;
};

/* [-0, +1, m] the new loop userdata */
struct loop *loop_new(lua_State *L);
struct loop *loop_check(lua_State *L, int idx);
/* Run fn(lp, ud) from the loop's __gc, before ev_loop_destroy (newest
 * first): a file's per-loop state is freed by the file itself. [-0,+0,m] */
void loop_atclose(lua_State *L, struct loop *lp,
                  void (*fn)(struct loop *, void *), void *ud);
/* A new object of `lp` with `nuv` user values, UV_LOOP set. [-0,+1,m] */
void *loop_newobject(lua_State *L, struct loop *lp, size_t size, int nuv);
/* The same for an object made by the loop object at idx (per request,
 * say): its UV_LOOP is copied, not looked up. [-0,+1,m] */
void *loop_newobjectby(lua_State *L, int idx, size_t size, int nuv);
/* Anchor the value at idx under `key` while *flag says C holds it; the
 * one way to anchor an object (L1). want=0 drops the anchor. [-0,+0,m] */
void loop_keep(lua_State *L, struct loop *lp, const void *key, int idx,
               unsigned char *flag, int want);
/* Push anchors[key]; returns its type (LUA_TNIL if none). [-0,+1,-] */
int loop_pushanchored(lua_State *L, struct loop *lp, const void *key);
/* Every anchored value, pushed as a new array. [-0, +1, m] */
void loop_pushanchorlist(lua_State *L, struct loop *lp);
int loop_run(lua_State *L, struct loop *lp, int mode);
/* One iteration, blocking at most `timeout` (0: not at all, < 0: until
 * something happens). */
int loop_step(lua_State *L, struct loop *lp, double timeout);
void loop_log(struct loop *lp, const char *level, const char *fmt, ...);
/* Run f(ud) protected on the running thread (R2). */
int loop_pcall(struct loop *lp, lua_CFunction f, void *ud);
/* Absolute deadline `timeout` seconds from the real now; -1 for none. */
ev_tstamp loop_deadline(struct loop *lp, double timeout);

/* ----------------------------------------------------------------- sched */

/* A task waiting on something: a socket's reader or writer, a server's
 * acceptor, a sleep, a lookup. The task and the waiter point at each
 * other while the wait lasts; whichever ends first unlinks both, so
 * neither can be left pointing at freed memory (9.3). */
struct task;
struct waiter {
  struct task *task;   /* NULL: nobody waits */
  ev_tstamp deadline;  /* absolute ev_now time, -1 = none */
  int timedout;
};

#define WAITER_INIT {NULL, -1, 0}

/* What a spawned task starts with (sched_spawn). */
struct taskopts {
  int owned;           /* stack index of an object the task owns, or 0 */
  int onerror;         /* stack index of its error handler, or 0 */
  /* Called when the task ends, with the owned object on the stack top
   * (protected; it may raise). NULL: nothing. */
  void (*done)(lua_State *L, int ok);
};

void sched_init(lua_State *L, struct loop *lp);
/* Create a task running fn(args) (stack: fn, args[nargs]); pushes the
 * task's thread. It runs once sched_start or sched_queue says so.
 * [-(nargs+1), +1, m] */
struct task *sched_spawn(lua_State *L, struct loop *lp, int nargs,
                         const struct taskopts *o);
/* Start or continue t now, from a loop callback (top level, R7). */
void sched_resume(struct loop *lp, struct task *t);
/* Resume t at the top of the next iteration (from Lua: R7). [-0,+0,m] */
void sched_queue(lua_State *L, struct loop *lp, struct task *t);
/* Raise unless L is the running task and can yield now (R5, 9.2): every
 * blocking call checks before it registers anything. */
void sched_checkwait(lua_State *L, struct loop *lp, const char *what);
/* Whether L could wait now (the running task, yieldable). */
int sched_canwait(lua_State *L, struct loop *lp);
/* Register the running task on w (when the watchers and timers the caller
 * arms next must see it), then park. Nothing between the two may raise. */
void sched_register(struct loop *lp, struct waiter *w);
/* Also register the running task on a second waiter (no deadline of its
 * own): whichever is woken first takes the task off both. A relay waits
 * for its source and would end if its destination closed meanwhile. */
void sched_registeralso(struct loop *lp, struct waiter *w);
/* Register the running task on w (unless NULL: registered already) and
 * yield; k retries on resume (R4). The caller has checked with
 * sched_checkwait, so the yield cannot fail with the task registered. */
int sched_park(lua_State *L, struct loop *lp, struct waiter *w,
               lua_KContext ctx, lua_KFunction k);
/* Queue the running task and yield: every other ready task runs first;
 * the `n` values on the stack top are returned on resume. */
int sched_pass(lua_State *L, struct loop *lp, int n);
/* The same, continuing in k (with ctx) instead: a long C operation lets
 * the other ready tasks run, then carries on. */
int sched_passk(lua_State *L, struct loop *lp, lua_KContext ctx,
                lua_KFunction k);
/* Fairness (R9): count one buffered read; past the budget the task yields
 * with its `n` results. */
int sched_spend(lua_State *L, struct loop *lp, int n);
/* Take w's task: unlinks both, returns the task or NULL. */
struct task *waiter_take(struct waiter *w);
/* Drop w's link to its task (the waited-on object is going away and
 * nothing may run: __gc). */
void waiter_drop(struct waiter *w);
/* Resume w's task now (from a loop callback), or queue it (from Lua). */
void waiter_resume(struct loop *lp, struct waiter *w);
void waiter_wake(lua_State *L, struct loop *lp, struct waiter *w);
void sched_drain(struct loop *lp);
/* lua_pcall of a callback (not a task): an error goes to the handler at
 * `onerror` (stack index, or 0 for the loop's) with the object at
 * `ownidx` (or nil). Returns the status. */
int sched_pcall(lua_State *L, struct loop *lp, int nargs, int onerror,
                int ownidx);
/* Set the loop's default error handler (the function at idx, or nil);
 * pushes the previous one. [-0, +1, m] */
void sched_setonerror(lua_State *L, struct loop *lp, int idx);
/* The loop's CPU budget (0 off). The first one starts the loop's
 * watchdog (freed with the loop) and wraps coroutine.resume and
 * coroutine.wrap (once per state). [-0, +0, e] */
void sched_setcpubudget(lua_State *L, struct loop *lp, double seconds);
double sched_cpubudget(struct loop *lp);
long sched_ntasks(struct loop *lp);
/* Errors reported to error handlers so far (tasks and callbacks). */
long sched_nerrors(struct loop *lp);
/* Called (protected) when the last task ends; shutdown.c uses it. */
void sched_onidle(struct loop *lp, lua_CFunction fn);
/* End every task still alive: its waits are cancelled and its <close>
 * variables run (shutdown's last step). */
void sched_killall(lua_State *L, struct loop *lp);
/* Push the running task's handle (berth.Task), or nil. [-0,+1,-] */
void sched_pushcurrent(lua_State *L, struct loop *lp);
/* Push what this thread is handling now, for log records: the object the
 * running task owns (a handler's connection), or the object whose
 * callback is running (if anchored); nil otherwise, and for another
 * state's. Any loop. [-0, +1, -] */
void sched_pushowner(lua_State *L);
/* core.suspend / core.wake: park until woken with values. */
int sched_suspend(lua_State *L, struct loop *lp);
int sched_wake(lua_State *L, struct loop *lp, int taskidx, int nvals);

/* --------------------------------------------------------------- objects */

/* User value 1 of every object is its loop, which it keeps alive. */
#define UV_LOOP 1

/* A Socket's user values: the first ones are its own (16 bytes each, on
 * every connection); the ones after SOCK_NUV, which few sockets use, are
 * kept in the table at SOCK_UV_MORE, made on first use. Reach them all
 * through sock_getuv and sock_setuv. SOCK_UV_ONDATA is on("data")'s
 * function, or onreadable's (the two modes exclude each other). */
enum sock_uv { SOCK_UV_SERVER = 2, SOCK_UV_ONERROR, SOCK_UV_ONDATA,
               SOCK_UV_MORE, SOCK_NUV = SOCK_UV_MORE,
               SOCK_UV_ONCLOSE, SOCK_UV_ONDRAIN, SOCK_UV_INBOX,
               SOCK_UV_PROXY /* its PROXY header (socket_proxy.c) */ };

/* The peer address, kept so peer() answers after close too (11). */
struct tls;       /* tls.h */
struct tls_ctx;

union sock_peer {
  struct sockaddr sa;
  struct sockaddr_in in;
  struct sockaddr_in6 in6;
};
_Static_assert(sizeof(union sock_peer) <= 255, "sock.peerlen is a byte");

/* What a framing (below) keeps for a socket whose message it has begun but
 * not finished, so that the next bytes resume it (resp_lua.c: where a
 * command stopped): one block from malloc starting with this header, at
 * s->fstate. Its framing frees
 * it when the message completes or fails; sock_destroy frees what is left.
 * A block is only good for the read that made it (a new read starts with
 * rscan 0), so a framing that finds another's block may free it. An idle
 * socket has none. */
struct sock_fstate {
  const struct sock_framing *fr; /* the framing that made it */
};

struct sock {
  const void *tag;       /* util_tagged: sock_check */
  struct loop *loop;
  struct server *srv;    /* accepting server, kept alive by SOCK_UV_SERVER */
  int fd;
  unsigned readable : 1; /* the kernel may have bytes (like nginx's ready) */
  unsigned eof : 1;      /* peer sent FIN */
  unsigned callback : 1; /* on("data") mode */
  unsigned shut_wr : 1;  /* shutdown("w") once the write buffer drains */
  unsigned drain_cb : 1; /* a write had to buffer: fire "drain" when empty */
  unsigned events : 1;   /* on("close"|"drain") registered */
  unsigned connecting : 1;
  unsigned owned : 1;    /* a handler task owns it, and anchors it for us */
  unsigned parked : 1;   /* onreadable(fn): a task starts when readable */
  unsigned char anchored;
  unsigned char peerlen; /* of peer; 0: not known yet (a byte, so that
                            fstate costs struct sock no room) */
  int rerr, werr;        /* sticky -errno of the read/write side */
  ev_io rio, wio;
  ev_timer timer;        /* one per socket: the nearest waiter deadline */
  struct buf rbuf, wbuf;
  size_t rscan;          /* bytes of rbuf already searched in vain */
  const struct limits *lim; /* its server's (which it keeps alive), or
                            sock_nolimits; setoption changes only these: */
  size_t maxline;
  float idle_timeout, send_timeout; /* seconds, 0: none */
  double rtimeout, wtimeout; /* per-socket defaults, < 0 = none */
  const char *why;       /* why it was closed: what waiters are told */
  ev_tstamp last_active; /* last byte in or out (idle timeout) */
  ev_tstamp last_drain;  /* last progress of queued output (send timeout) */
  ev_tstamp msg_start;   /* first byte of the unread input (message timeout) */
  struct waiter reader, writer;
  uint64_t bytes_in, bytes_out;
  ev_tstamp created;
  ev_tstamp timer_at;    /* when the armed timer fires */
  union sock_peer peer;
  uint32_t hiwat, lowat; /* write watermarks: setoption caps them */
  uint32_t wtarget;      /* the waiting writer's: lowat, or 0 for flush */
  struct sock_fstate *fstate; /* a framing's unfinished message, or NULL */
  struct link link;      /* on the loop's open sockets, for shutdown */
  struct tls *tls;       /* TLS on this connection, or NULL (tls.h) */
  struct inbox *inbox;   /* bus_lua.c, made by sock:id(); SOCK_UV_INBOX
                            keeps it alive as long as the socket */
};

enum srv_uv { SRV_UV_HANDLER = 2, SRV_UV_ONERROR, SRV_UV_SPARE, SRV_UV_PATH,
              SRV_UV_TLS, SRV_UV_PROXY, SRV_NUV = SRV_UV_PROXY };

struct server {
  struct loop *loop;
  int fd;
  ev_io lio;
  ev_timer timer;        /* accept deadline, or the EMFILE back-off */
  unsigned handler : 1;  /* on("connection") set: C runs the accept loop */
  unsigned paused : 1;
  unsigned backoff : 1;  /* accepting suspended after EMFILE/ENFILE */
  unsigned tcp : 1;      /* set TCP_NODELAY on accepted sockets */
  unsigned char anchored;
  struct waiter acceptor;
  const char *unlink_path; /* unix socket file we created (SRV_UV_PATH) */
  struct limits lim;     /* given to every accepted socket */
  long accepted, active, rejected;
  ev_tstamp lastwarn;    /* rate limit for the EMFILE warning */
  struct link link;      /* on the loop's open servers, for shutdown */
  struct tls_ctx *tls;   /* its TLSContext's (SRV_UV_TLS), or NULL */
  long tls_ok, tls_failed; /* handshakes */
  struct spx *proxy;     /* PROXY protocol settings and counters
                            (socket_proxy.c, SRV_UV_PROXY), or NULL */
};

/* buffer_lua.c: the Buffer class (bytes that pass through, held in C) */
void lbuf_open(lua_State *L);               /* the class, once per state */
int lbuf_new(lua_State *L);                 /* berth.buffer(...) */
struct buf *lbuf_test(lua_State *L, int idx);  /* NULL: not a Buffer */
struct buf *lbuf_check(lua_State *L, int idx); /* raises: not a Buffer */

/* socket.c */
void sock_init(lua_State *L, struct loop *lp);
/* A new closed Socket, to be given its fd by sock_attach: the userdata
 * exists before the descriptor, so a failure leaks nothing (9.14). */
struct sock *sock_new(lua_State *L, struct loop *lp);    /* [-0,+1,m] */
void sock_attach(struct sock *s, int fd);
/* Take the limits at lim, which outlive s (a server's). */
void sock_uselimits(struct sock *s, const struct limits *lim);
/* Push user value n of the socket at idx (nil if unset); its type. */
int sock_getuv(lua_State *L, int idx, int n);              /* [-0,+1,m] */
/* Set user value n of the socket at idx to the value on top (popped). */
void sock_setuv(lua_State *L, int idx, int n);             /* [-1,+0,m] */
/* Remember the peer's address (from accept or connect). */
void sock_setpeer(struct sock *s, const struct net_addr *a);
/* The peer as text for log records ("1.2.3.4:5", "[::1]:5", a unix path;
 * "" if unknown). */
void sock_peertext(struct sock *s, char *out, size_t len);
struct sock *sock_check(lua_State *L, int idx);
/* Argument 1 of a Socket method. */
static inline struct sock *sock_self(lua_State *L) {
  return sock_check(L, 1);
}
/* Close s; `idx` is its stack index or 0; `why` is the code passed to
 * on("close"), or NULL from __gc (no callbacks, no wake-ups: L5). */
void sock_destroy(lua_State *L, struct sock *s, int idx, const char *why);
void sock_closeall(lua_State *L, struct loop *lp);
/* Shutdown: close the served connections that wait for a new message with
 * nothing buffered either way (9.7); returns how many it spared because
 * they are young (sock_isyoung). */
int sock_closeidle(lua_State *L, struct loop *lp);
int sock_isyoung(const struct sock *s);
/* A handler task ended (stack top: its socket). */
void sock_handlerdone(lua_State *L, int ok);
void sock_open(lua_State *L);
int sock_connect(lua_State *L);
int sock_adopt(lua_State *L);
void sock_hold(lua_State *L, struct sock *s, int idx);
void sock_release(lua_State *L, struct sock *s);
void sock_timer_arm(struct sock *s);
/* Send what the write buffer holds now, without waiting. */
void sock_flushnow(lua_State *L, struct sock *s);
void sock_countin(struct sock *s, size_t n);
void sock_countout(struct sock *s, size_t n);
/* One receive into p, through TLS when the socket has it: bytes, 0 at
 * EOF, -EAGAIN, or -errno / a TLS_E* code. Counts the bytes and keeps
 * `readable` up to date. `idx`: the socket's stack index. */
long sock_recv(lua_State *L, struct sock *s, int idx, char *p, size_t n);
/* After a TLS call: count its wire bytes, note a failed send, and start
 * draining what it queued (unless idx is 0). [-0, +0, m] */
void sock_tlsio(lua_State *L, struct sock *s, int idx);
/* The code for a read or write failure (-errno or TLS_E*), and the
 * nil, code, extra of it. */
const char *sock_errcode(int err);
int sock_failerr(lua_State *L, int err);
/* Start the write watcher if output is queued (and anchor). [-0,+0,m] */
void sock_armwrite(lua_State *L, struct sock *s, int idx);
void sock_stats(lua_State *L, struct loop *lp); /* adds fields to the table */
/* socket_io.c: the read and write methods */
extern const luaL_Reg sock_io_methods[];
/* relay.c: Socket:relay (splice(2), or a copy through C for TLS) */
extern const luaL_Reg relay_methods[];
void relay_open(lua_State *L); /* its internal class, once per state */

/* A framing (http.c, ws.c): a read whose message boundaries a protocol
 * decides, served from the socket's buffer and the scratch buffer like
 * read(). match() sees the unread bytes p[0..n) -- writable, to unmask in
 * place -- with the method's arguments on the stack (1: the socket). It
 * returns the number of results it pushed once a message is complete, or 0
 * when more bytes are needed; either way *take is how many bytes it used,
 * and s->rscan is its own to remember how far it looked (and s->fstate,
 * for more: struct sock_fstate). It may close the socket (the socket stays
 * on the stack). */
struct sock_framing {
  int (*match)(lua_State *L, struct sock *s, char *p, size_t n,
               size_t *take);
  /* At EOF or a read error (s->eof, s->rerr), with the unused bytes in
   * s->rbuf: push the results (NULL: nil, code, the bytes, as read()). */
  int (*end)(lua_State *L, struct sock *s);
  int timeout_arg;       /* stack index of the optional timeout */
};
/* The read method of a framing on s, the socket at stack index 1 (checked
 * by the caller): results, or nil, code, extra as read() (the continuation
 * checks it again and retries match). */
int sock_readframe(lua_State *L, struct sock *s,
                   const struct sock_framing *fr);
/* Send iov now and buffer what the kernel does not take, as write() does,
 * never waiting; `idx` is the socket's stack index. Returns 0, or the count
 * of a failure pushed (nil, code[, errno]); "toolarge" closes the socket. */
int sock_put(lua_State *L, struct sock *s, int idx, struct iovec *iov,
             int cnt);
/* As sock_put, but only buffered: it leaves with the next sock_put or
 * sock_flushnow, or when the write watcher (armed here) finds the socket
 * writable -- at the latest once the task yields. Several small writes
 * of one response thus go out in one writev. */
int sock_queue(lua_State *L, struct sock *s, int idx, struct iovec *iov,
               int cnt);
/* After sock_put: whether the writer should wait for the buffer to drain
 * (above the high watermark, and L is a task that can wait). */
int sock_overhigh(lua_State *L, const struct sock *s);
/* Park the running task until the write buffer drains to the low
 * watermark (or the write timeout); k continues with ctx, and first calls
 * sock_afterwait: 0 done, -1 wait again (sock_waitdrain with retry 1), or
 * the count of a failure it pushed. */
int sock_waitdrain(lua_State *L, struct sock *s, int retry, lua_KContext ctx,
                   lua_KFunction k);
int sock_afterwait(lua_State *L, struct sock *s);

/* server.c */
void srv_init(lua_State *L, struct loop *lp);
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
void srv_stats(lua_State *L, struct loop *lp); /* adds fields to the table */
/* A connection the server accepted has closed (socket.c). */
void srv_connclosed(struct server *sv);
/* A handler task running fn(sock) for the socket at `sock`, fn on the
 * stack top (popped), owning it as an accepted connection's handler does;
 * the caller starts it (sched_resume). [-1, +0, m] */
struct task *srv_spawnconn(lua_State *L, struct loop *lp, int sock);

/* socket_tls.c: TLS on sockets, over tls.c */
/* The TLSContext class; starttls, handshake, tlsinfo on Socket; settls on
 * ServerSocket (once per state, after sock_open and srv_open). */
void stls_classes(lua_State *L);
/* The core.tls table for the loop at the top, popped. [-1, +1, m] */
void stls_open(lua_State *L);
/* listen{tls = options or TLSContext} at idx: a server context pushed,
 * or nil, "tls", message pushed (a file is missing or broken). The
 * options are checked (wrong ones raise). [-0, +1, m] */
int stls_servercontext(lua_State *L, struct loop *lp, int idx);
/* Give server sv (at svidx) the context at the top, popped. */
void stls_setserver(lua_State *L, struct server *sv, int svidx);
/* A handler task's first step on a TLS server's connection (the socket
 * at index 1): the handshake. Returns true, or false when it failed (the
 * socket is closed, the failure counted and logged at debug level). */
int stls_handshake(lua_State *L);
void stls_srvstats(lua_State *L, const struct server *sv);

/* socket_proxy.c: the PROXY protocol on served connections (inbound) and
 * the header of a connection berth opens (outbound) */
struct spx;
/* listen{proxy_protocol=, proxy_trusted=} of the options at optidx for
 * the server at svidx (before its descriptor exists: a bad range raises). */
void sproxy_listen(lua_State *L, int optidx, struct server *sv, int svidx);
/* Whether the server may serve a connection from `peer` (0: a required
 * header's sender outside proxy_trusted; counted). */
int sproxy_admit(struct server *sv, const struct net_addr *peer);
/* A handler task's first step (the socket at index 1): read the PROXY
 * header. Returns true, or false when the connection was closed (a
 * missing, late, broken or untrusted header: counted, logged at debug). */
int sproxy_header(lua_State *L);
void sproxy_srvstats(lua_State *L, const struct server *sv);
void sproxy_open(lua_State *L);  /* sock:proxied(), after sock_open */
/* The core.proxy table for the loop at the top, popped. [-1, +1, m] */
void sproxy_push(lua_State *L);

/* timer.c, signal.c, fwatch.c */
void timer_open(lua_State *L);
int timer_sleep(lua_State *L);
int timer_new(lua_State *L);
void signal_open(lua_State *L);
int signal_new(lua_State *L);
void fwatch_open(lua_State *L);
int fwatch_new(lua_State *L);

/* proc.c: process primitives for the master/worker model (core.proc) */
void proc_open(lua_State *L); /* [-0, +1, m] the core.proc table */

/* http.c: berth.core.http (berth.http's hot path) */
void http_open(lua_State *L);  /* the classes, once per state */
void http_push(lua_State *L);  /* [-0, +1, m] the core.http table */

/* ws.c: berth.core.ws (berth.websocket's hot path) */
void ws_open(lua_State *L);    /* the class, once per state */
void ws_push(lua_State *L);    /* [-0, +1, m] the core.ws table */

/* resolve.c */
int resolve_lookup(lua_State *L);

/* dgram.c: the Datagram class (UDP and unix datagram sockets) */
void dgram_open(lua_State *L);   /* [-0, +1, m] the method table */
int dgram_new(lua_State *L);     /* berth.udp{...} */
/* Shutdown starts: unconnected Datagrams stop receiving (what they read
 * already is still handed out); sends go on. */
void dgram_quiesce(lua_State *L, struct loop *lp);
void dgram_closeall(lua_State *L, struct loop *lp);
void dgram_stats(lua_State *L, struct loop *lp); /* adds fields */
/* shared.c: the region this process shares with its group (created
 * lazily by a single process, attached from the master's descriptor by a
 * worker), its member slot, and berth.shared (class berth.SharedDict) */
void shared_open(lua_State *L); /* [-0, +1, m] the core.shared table */
/* The region, made now if this process has none yet; raises when it
 * cannot have one. [-0, +0, v] */
struct shm *shared_region(lua_State *L);
int shared_slot(void);          /* this process's member slot, or -1 */
/* A connection id unique in the group (shm.h), or raises. */
uint64_t shared_connid(lua_State *L);

/* bus_lua.c: berth.bus (publish, subscribe, send_to) and the inboxes
 * behind sock:id() and sock:inbox() */
void busl_open(lua_State *L);   /* [-0, +1, m] the core.bus table */
/* Socket s closed (not by __gc): its inbox wakes a waiting reader. */
void inbox_sockclosed(lua_State *L, struct sock *s);

/* metrics.c: berth.metrics' store, sampler and scrape */
void metrics_open(lua_State *L); /* [-0, +1, m] the core.metrics table */

/* shutdown.c */
/* Graceful stop: draining() says so for `delay` seconds (0: none), then
 * listeners close, idle connections close, tasks get `grace` seconds; then
 * everything left is closed. */
void shutdown_start(lua_State *L, struct loop *lp, double grace,
                    double delay);
/* Close everything now, end every task (the host's last step). */
void shutdown_finish(lua_State *L, struct loop *lp);

/* util.c */
void util_newclass(lua_State *L, const char *name, const luaL_Reg *meta,
                   const luaL_Reg *methods);
/* Whether the value at idx has the metatable whose address (lua_topointer)
 * is mt: a class check by identity, for a caller that holds the address in
 * an upvalue; the metatable lives in the registry, so the address stays
 * valid. [-0,+0,-] */
static inline int util_hasmeta(lua_State *L, int idx, const void *mt) {
  if (mt == NULL || !lua_getmetatable(L, idx))
    return 0;
  int same = lua_topointer(L, -1) == mt;
  lua_pop(L, 1);
  return same;
}
/* The class check of the objects used once or more per message (Socket,
 * Buffer, berth.http's Request and Response): each struct begins with a
 * tag, set at creation to the address of a static of its file. A full
 * userdata of at least the struct's size that begins with the tag is one:
 * only C writes a userdata's bytes, and no other C holds the tag. Two API
 * calls, where comparing metatables (util_hasmeta) takes five; NULL when
 * it is not, and the caller's luaL_checkudata names the error. [-0,+0,-] */
static inline void *util_tagged(lua_State *L, int idx, size_t size,
                                const void *tag) {
  void *p = lua_touserdata(L, idx);
  if (p != NULL && lua_rawlen(L, idx) >= size &&
      *(const void *const *)p == tag)
    return p;
  return NULL;
}
/* util_tagged, else luaL_checkudata(L, idx, name): the usual error. */
static inline void *util_checktagged(lua_State *L, int idx, size_t size,
                                     const void *tag, const char *name) {
  void *p = util_tagged(L, idx, size, tag);
  return p != NULL ? p : luaL_checkudata(L, idx, name);
}
/* luaL_checkudata(L, idx, name) for a function of class `name` (its
 * upvalue 1 is the metatable's address: util_newclass), without the
 * registry lookup; elsewhere it is only slower. [-0,+0,v] */
void *util_self(lua_State *L, int idx, const char *name);
/* Push the address of class `name`'s metatable as a light userdata (NULL
 * when the class does not exist yet), for util_hasmeta. [-0,+1,-] */
void util_pushmetaaddr(lua_State *L, const char *name);
int util_fail(lua_State *L, const char *code);             /* [-0,+2,m] */
int util_failerr(lua_State *L, int err);                    /* [-0,+3,m] */
int util_pushaddr(lua_State *L, const struct net_addr *a); /* [-0,+2,m] */
/* A message handler keeping the error and its traceback: pushes
 * {err, traceback}. */
int util_msgh(lua_State *L);
/* The handler module named at idx becomes its reloadable handler
 * (berth.reload's `loader`: "handler" or "packet_handler"). [-0,+0,e] */
void util_handlermodule(lua_State *L, int idx, const char *loader);

#endif
