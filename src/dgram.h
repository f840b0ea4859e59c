/*
 * dgram.h -- private to dgram.c and dgram_io.c: struct dgram (the
 * Datagram userdata), struct dgramset (the loop's Datagram state) and the
 * functions the two files share. Nothing else includes it; the rest of
 * berth sees only what core.h declares.
 */
#ifndef BERTH_DGRAM_H
#define BERTH_DGRAM_H

#include <sys/socket.h>

#include "core.h"
#include "dgq.h"

#define DGRAM_BATCH 64            /* datagrams per recvmmsg or sendmmsg */
#define DGRAM_ROUNDS 4            /* recvmmsg calls per readiness event (R9) */
#define DGRAM_AREA (4u << 20)     /* the receive area, unless one slot is more */
#define DGRAM_SENDQ_BYTES (1u << 20) /* the send queue: this, DGRAM_BATCH */
#define DGRAM_MAXSIZE (64 * 1024) /* max_datagram "none": the UDP maximum */

enum dgram_uv { DGRAM_UV_PACKET = 2, DGRAM_UV_HANDLER, DGRAM_UV_ONERROR,
                DGRAM_UV_TRUNC, DGRAM_UV_PATH, DGRAM_NUV = DGRAM_UV_PATH };

enum dgram_mode { DM_TASK, DM_CALLBACK, DM_HANDLER };

struct dgram {
  struct loop *loop;
  int fd;
  int family;             /* AF_INET, AF_INET6 or AF_UNIX */
  ev_io rio, wio;
  ev_timer timer;         /* the nearest waiter deadline */
  unsigned mode : 2;      /* enum dgram_mode */
  unsigned connected : 1;
  unsigned readable : 1;  /* the kernel may have datagrams (optimistic) */
  unsigned batching : 1;  /* inside a dispatch: sends wait for one sendmmsg */
  unsigned paused : 1;
  unsigned quiet : 1;     /* shutdown: takes nothing more from the kernel */
  unsigned deferred : 1;  /* a burst waits in sq for the flusher (dirty) */
  unsigned char anchored;
  unsigned send_epoch;    /* 1 + the flusher pass of the last send */
  int serr;               /* a connected socket's pending send error */
  size_t max_datagram;    /* bigger ones are cut and reported */
  size_t max_queue;       /* read ahead + running handlers (SIZE_MAX: none) */
  long active;            /* handler tasks running */
  struct dgq rq;          /* read ahead, not handed out yet */
  struct dgq sq;          /* to send: the kernel was full, or a batch */
  struct net_addr reply_to; /* the sender of the datagram being handled */
  struct waiter reader, writer;
  double timeout;         /* settimeout: default wait bound, -1 none */
  ev_tstamp lastwarn;     /* rate limit of the truncation warning */
  const char *unlink_path; /* unix socket file we bound (DGRAM_UV_PATH) */
  const char *last_error; /* the code of the last failure nobody saw */
  uint64_t received, sent, truncated, dropped;
  uint64_t bytes_in, bytes_out, recv_calls, send_calls;
  struct link link;       /* on the loop's open Datagrams, for shutdown */
  struct link dirty;      /* on the loop's list for the flusher */
};

/* The loop's Datagram state. The receive area is shared by every
 * Datagram of the loop: one recvmmsg fills it and its contents are copied
 * into that socket's read-ahead queue before any Lua runs, so it is never
 * in use across a call into Lua. */
struct dgramset {
  struct link open;
  long nopen;
  /* The flusher: Datagrams with a burst of sends queued (dirty) are sent
   * by a prepare and a check watcher of the lowest priority, that is at
   * the end of each round of callbacks, before the loop waits again; an
   * idle watcher runs while the list is not empty, so the loop cannot
   * block before a flush (say the burst came from a task resumed in the
   * prepare phase in which the flusher itself was started). */
  struct link dirty;
  unsigned epoch;         /* flusher passes */
  ev_prepare flush_prepare;
  ev_check flush_check;
  ev_idle flush_idle;
  char *area;
  size_t areasize;
  struct mmsghdr msgs[DGRAM_BATCH];
  struct iovec iov[DGRAM_BATCH];
  struct sockaddr_storage addrs[DGRAM_BATCH];
};

/* dgram.c */
struct dgram *dgram_check(lua_State *L, int idx);
void dgram_keep(lua_State *L, struct dgram *d, int idx);  /* [-0,+0,m] */
void dgram_sync(struct dgram *d);
void dgram_destroy(lua_State *L, struct dgram *d, int wake);
void dgram_pushaddr(lua_State *L, const void *addr, size_t alen); /* +2 */
/* 0 and *a, or the number of failure values pushed. */
int dgram_checkaddr(lua_State *L, struct dgram *d, int hidx,
                    struct net_addr *a, const char *what);

/* dgram_io.c */
void dgram_initwatchers(struct dgram *d);
void dgram_startflusher(struct loop *lp, struct dgramset *set);
void dgram_stopflusher(struct loop *lp, struct dgramset *set);
/* How many more datagrams may be taken from the kernel now. */
size_t dgram_room(const struct dgram *d);
/* One non-blocking attempt to send the queue (close, __gc: no Lua). */
void dgram_flushnow(struct dgram *d);
extern const luaL_Reg dgram_io_methods[];

#endif
