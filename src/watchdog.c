/*
 * watchdog.c -- the helper thread and the SIGURG handler of watchdog.h.
 *
 * The handler is installed once per process and kept: SIGURG is only
 * ever sent by a watchdog to its own watched thread, with sigqueue data
 * naming the watchdog. A SIGURG that is not ours (out-of-band data on a
 * socket someone owns) goes to whatever handler was there before.
 */
#define _GNU_SOURCE /* pthread_sigqueue */
#include "watchdog.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "monotime.h"

#define MIN_SAMPLE_NS 1000000LL /* 1 ms: finer budgets are sampled coarser */

static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static int handler_err;             /* errno of a failed sigaction */
static struct sigaction previous;   /* SIGURG's handler before ours */

static void on_sigurg(int signo, siginfo_t *si, void *uc) {
  int saved = errno;
  if (si != NULL && si->si_code == SI_QUEUE && si->si_pid == getpid()) {
    struct watchdog *wd = si->si_value.sival_ptr;
    unsigned long s = atomic_load_explicit(&wd->stretch, memory_order_relaxed);
    if (s == atomic_load_explicit(&wd->fired, memory_order_relaxed))
      wd->fire(wd->ud); /* that stretch is still running */
  } else if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction != NULL)
      previous.sa_sigaction(signo, si, uc);
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(signo);
  }
  errno = saved;
}

static void install_handler(void) {
  struct sigaction sa = {0};
  sa.sa_sigaction = on_sigurg;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&sa.sa_mask);
  if (sigaction(SIGURG, &sa, &previous) != 0)
    handler_err = errno;
}

static void after(struct timespec *ts, long long ns) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ns += ts->tv_nsec;
  ts->tv_sec += (time_t)(ns / 1000000000LL);
  ts->tv_nsec = (long)(ns % 1000000000LL);
}

/* The helper: sample the stretch mark; the same odd mark seen for a whole
 * budget is a stretch over budget, signalled once. */
static void *watch(void *arg) {
  struct watchdog *wd = arg;
  unsigned long seen = 0;
  double seen_at = 0;
  pthread_mutex_lock(&wd->mu);
  while (!wd->stop) {
    long long budget = atomic_load(&wd->budget_ns);
    if (budget == 0) {
      seen = 0;
      pthread_cond_wait(&wd->wake, &wd->mu);
      continue;
    }
    long long sample = budget / WATCHDOG_SAMPLES;
    struct timespec until;
    after(&until, sample < MIN_SAMPLE_NS ? MIN_SAMPLE_NS : sample);
    pthread_cond_timedwait(&wd->wake, &wd->mu, &until);
    unsigned long s = atomic_load_explicit(&wd->stretch, memory_order_relaxed);
    double now = monotime_now();
    if (!(s & 1) || s != seen) {
      seen = s;
      seen_at = now;
    } else if ((now - seen_at) * 1e9 >= (double)budget &&
               atomic_load(&wd->fired) != s) {
      atomic_store(&wd->started_ns, (long long)(seen_at * 1e9));
      atomic_store(&wd->fired, s);
      pthread_sigqueue(wd->watched, SIGURG, (union sigval){.sival_ptr = wd});
    }
  }
  pthread_mutex_unlock(&wd->mu);
  return NULL;
}

struct watchdog *watchdog_new(void (*fire)(void *ud), void *ud) {
  pthread_once(&handler_once, install_handler);
  if (handler_err != 0) {
    errno = handler_err;
    return NULL;
  }
  struct watchdog *wd = calloc(1, sizeof *wd);
  if (wd == NULL)
    return NULL;
  wd->fire = fire;
  wd->ud = ud;
  wd->watched = pthread_self();
  wd->pid = getpid();
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&wd->mu, NULL);
  pthread_cond_init(&wd->wake, &ca);
  pthread_condattr_destroy(&ca);
  /* The helper takes no signals: they stay the process's threads' own. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&wd->helper, NULL, watch, wd);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    pthread_cond_destroy(&wd->wake);
    pthread_mutex_destroy(&wd->mu);
    free(wd);
    errno = rc;
    return NULL;
  }
  return wd;
}

void watchdog_free(struct watchdog *wd) {
  if (wd == NULL)
    return;
  if (wd->pid != getpid()) { /* a forked child: the helper stayed behind */
    free(wd);
    return;
  }
  pthread_mutex_lock(&wd->mu);
  wd->stop = 1;
  pthread_cond_signal(&wd->wake);
  pthread_mutex_unlock(&wd->mu);
  pthread_join(wd->helper, NULL);
  pthread_cond_destroy(&wd->wake);
  pthread_mutex_destroy(&wd->mu);
  free(wd);
}

void watchdog_setbudget(struct watchdog *wd, double seconds) {
  pthread_mutex_lock(&wd->mu);
  atomic_store(&wd->budget_ns, seconds > 0 ? (long long)(seconds * 1e9) : 0);
  pthread_cond_signal(&wd->wake);
  pthread_mutex_unlock(&wd->mu);
}

double watchdog_started(struct watchdog *wd) {
  return (double)atomic_load(&wd->started_ns) * 1e-9;
}
