/*
 * resolve.c -- host name lookups that never block the loop.
 *
 * Numeric addresses (and "localhost") are answered at once. Any other name
 * is looked up with getaddrinfo on a short-lived detached thread -- the
 * system resolver, so /etc/hosts and nsswitch apply exactly as for every
 * other program -- and the answer comes back through an ev_async. Threads
 * touch nothing but their job and the resolver's locked `done` list.
 *
 * Lifetime: the resolver is shared by the loop and its running threads and
 * freed by whichever lets go last (`refs`); once the loop is gone (`dead`)
 * finishing threads just free their job.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define RESOLVE_MAX 16 /* addresses kept per answer */

struct rjob {
  struct rjob *next;
  struct resolver *r;
  struct waiter w;    /* the waiting task */
  int err;            /* EAI_* from getaddrinfo, 0 on success */
  int naddrs;
  char addrs[RESOLVE_MAX][NET_ADDRSTRLEN];
  char host[];
};

struct resolver {
  pthread_mutex_t mu;
  struct rjob *done;  /* finished jobs, newest first */
  int refs;           /* the loop + running threads */
  int dead;           /* the loop is gone */
  struct loop *loop;
  ev_async async;
};

static void resolver_unref(struct resolver *r) {
  int last;
  pthread_mutex_lock(&r->mu);
  last = --r->refs == 0;
  pthread_mutex_unlock(&r->mu);
  if (last) {
    pthread_mutex_destroy(&r->mu);
    free(r);
  }
}

static void resolve_run(struct rjob *j) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  j->err = getaddrinfo(j->host, NULL, &hints, &res);
  for (struct addrinfo *ai = res; ai && j->naddrs < RESOLVE_MAX; ai = ai->ai_next) {
    const void *src = ai->ai_family == AF_INET
        ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
        : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
    if (inet_ntop(ai->ai_family, src, j->addrs[j->naddrs], NET_ADDRSTRLEN))
      j->naddrs++;
  }
  if (res)
    freeaddrinfo(res);
}

static void *resolve_thread(void *arg) {
  struct rjob *j = arg;
  struct resolver *r = j->r;
  resolve_run(j);
  pthread_mutex_lock(&r->mu);
  if (r->dead) {
    free(j);
  } else {
    j->next = r->done;
    r->done = j;
    ev_async_send(r->loop->ev, &r->async);
  }
  pthread_mutex_unlock(&r->mu);
  resolver_unref(r);
  return NULL;
}

/* On the loop thread: resume each task whose answer arrived. */
static void resolve_async_cb(struct ev_loop *ev, ev_async *w, int revents) {
  (void)revents;
  struct resolver *r = w->data;
  pthread_mutex_lock(&r->mu);
  struct rjob *j = r->done;
  r->done = NULL;
  pthread_mutex_unlock(&r->mu);
  while (j != NULL) {
    struct rjob *next = j->next;
    ev_unref(ev); /* this lookup no longer keeps the loop running */
    struct task *t = waiter_take(&j->w);
    if (t != NULL)
      sched_resume(r->loop, t); /* its continuation frees the job */
    else
      free(j); /* the task ended meanwhile (shutdown) */
    j = next;
  }
}

static void resolve_free(struct loop *lp, void *ud);

static struct resolver *resolver_get(lua_State *L, struct loop *lp) {
  if (lp->resolver)
    return lp->resolver;
  struct resolver *r = calloc(1, sizeof *r);
  if (r == NULL || pthread_mutex_init(&r->mu, NULL) != 0) {
    free(r);
    luaL_error(L, "not enough memory");
  }
  r->refs = 1;
  r->loop = lp;
  ev_async_init(&r->async, resolve_async_cb);
  r->async.data = r;
  ev_async_start(lp->ev, &r->async);
  ev_unref(lp->ev); /* only outstanding lookups keep the loop alive */
  lp->resolver = r;
  loop_atclose(L, lp, resolve_free, r);
  return r;
}

/* A loop cleanup: runs from its __gc, before ev_loop_destroy. */
static void resolve_free(struct loop *lp, void *ud) {
  struct resolver *r = ud;
  lp->resolver = NULL;
  ev_ref(r->loop->ev);
  ev_async_stop(r->loop->ev, &r->async);
  pthread_mutex_lock(&r->mu);
  r->dead = 1;
  struct rjob *j = r->done;
  r->done = NULL;
  pthread_mutex_unlock(&r->mu);
  while (j != NULL) {
    struct rjob *next = j->next;
    free(j);
    j = next;
  }
  resolver_unref(r);
}

static void resolve_pushlist(lua_State *L, char (*addrs)[NET_ADDRSTRLEN], int n) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, addrs[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* The answer of job j, which is then freed: {address...} or nil,
 * "notfound", message. */
static int resolve_answer(lua_State *L, struct rjob *j) {
  int n = 1;
  if (j->err != 0 || j->naddrs == 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "notfound");
    lua_pushstring(L, j->err ? gai_strerror(j->err) : "no address");
    n = 3;
  } else {
    resolve_pushlist(L, j->addrs, j->naddrs);
  }
  free(j);
  return n;
}

static int resolve_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return resolve_answer(L, (struct rjob *)ctx);
}

/* resolve(host [, what]) -> {address...} | nil, "notfound", message.
 * Numeric addresses and "localhost" are answered at once. A name is
 * looked up on a thread while the calling task waits; when the loop is
 * not running at all (a script's main chunk, a library between steps)
 * nothing else could run meanwhile, so the lookup is made right here.
 * Elsewhere (a callback) it raises, naming `what` (default "resolve"). */
int resolve_lookup(lua_State *L) {
  struct loop *lp = loop_check(L, lua_upvalueindex(1));
  size_t len;
  const char *host = luaL_checklstring(L, 1, &len);
  const char *what = luaL_optstring(L, 2, "resolve");
  struct net_addr a;
  char text[NET_ADDRSTRLEN];
  int port;
  if (net_parse_ip(host, 0, &a) == 0 &&
      net_format_addr(&a, text, sizeof text, &port) == 0) {
    resolve_pushlist(L, &text, 1);
    return 1;
  }
  if (lp->L != NULL && !sched_canwait(L, lp))
    return luaL_error(L, "%s: the name \"%s\" needs a lookup, which cannot "
                         "wait here (a callback, or a task inside a C call): "
                         "give a numeric address, or call %s from a task or "
                         "the main chunk", what, host, what);
  struct rjob *j = calloc(1, sizeof *j + len + 1);
  if (j == NULL)
    return luaL_error(L, "not enough memory");
  memcpy(j->host, host, len + 1);
  if (lp->L == NULL) { /* the loop is not running: nothing else can run */
    resolve_run(j);
    return resolve_answer(L, j);
  }
  struct resolver *r = resolver_get(L, lp);
  j->r = r;
  j->w = (struct waiter)WAITER_INIT;
  pthread_attr_t attr;
  pthread_t tid;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_mutex_lock(&r->mu);
  r->refs++;
  pthread_mutex_unlock(&r->mu);
  int rc = pthread_create(&tid, &attr, resolve_thread, j);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    resolver_unref(r);
    free(j);
    return util_failerr(L, rc);
  }
  ev_ref(lp->ev); /* an outstanding lookup keeps run() going */
  return sched_park(L, lp, &j->w, (lua_KContext)j, resolve_k);
}
