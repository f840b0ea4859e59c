/*
 * watchdog.h -- notice a thread that has been busy too long, and interrupt
 * it on its own thread.
 *
 * The watched thread marks the start and the end of each stretch of work
 * (watchdog_begin/watchdog_end: two relaxed stores, no system call). A
 * helper thread samples that mark a few times per budget; when one stretch
 * has lasted the budget, it sends the watched thread SIGURG (as Go's
 * runtime does for preemption: ignored by default, rarely used). The
 * handler runs on the watched thread and calls fire(ud) there, if that
 * stretch is still the one running. fire runs in a signal handler: it may
 * only do what is async-signal-safe (lua_sethook is, by Lua's own design:
 * lua.c stops a script on SIGINT that way).
 *
 * A stretch that started at t is noticed between t + budget and
 * t + budget + 2 * budget / WATCHDOG_SAMPLES.
 *
 * Owner and lifetime: whoever calls watchdog_new owns it and frees it with
 * watchdog_free (which joins the helper thread), from the watched thread.
 * A child forked without exec has no helper (threads do not survive fork):
 * its watchdog never fires, and watchdog_free there only frees.
 * Pure C: no Lua (unit test: spec/c/test_watchdog.c).
 */
#ifndef BERTH_WATCHDOG_H
#define BERTH_WATCHDOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#define WATCHDOG_SAMPLES 20 /* samples per budget */

struct watchdog {
  atomic_ulong stretch;   /* odd while a stretch runs; the watched thread's */
  atomic_ulong fired;     /* the stretch the signal was sent for */
  atomic_llong budget_ns; /* 0: never fire */
  atomic_llong started_ns; /* when the fired stretch was first seen */
  pthread_t watched, helper;
  pid_t pid;              /* the process the helper runs in */
  pthread_mutex_t mu;
  pthread_cond_t wake;
  int stop;
  void (*fire)(void *ud); /* on the watched thread, in a signal handler */
  void *ud;
};

/* A watchdog for the calling thread; NULL with errno set on failure. */
struct watchdog *watchdog_new(void (*fire)(void *ud), void *ud);
/* Stop the helper thread and free; NULL is ignored. */
void watchdog_free(struct watchdog *wd);
/* Budget in seconds; 0 turns it off. */
void watchdog_setbudget(struct watchdog *wd, double seconds);
/* Monotonic time at which the fired stretch was first seen running. */
double watchdog_started(struct watchdog *wd);

/* One writer (the watched thread): relaxed load and store, no locked op.
 * A stretch's mark is a new odd number, its end the even one below it;
 * the watchdog may be made in the middle of a stretch (an end with no
 * begin), so neither step assumes the other came before. */
static inline void watchdog_begin(struct watchdog *wd) {
  if (wd == NULL)
    return;
  unsigned long s = atomic_load_explicit(&wd->stretch, memory_order_relaxed);
  atomic_store_explicit(&wd->stretch, (s + 2) | 1UL, memory_order_relaxed);
}

static inline void watchdog_end(struct watchdog *wd) {
  if (wd == NULL)
    return;
  unsigned long s = atomic_load_explicit(&wd->stretch, memory_order_relaxed);
  atomic_store_explicit(&wd->stretch, s & ~1UL, memory_order_relaxed);
}

#endif
