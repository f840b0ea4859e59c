/*
 * test_watchdog.c -- C unit tests for src/watchdog.c: a stretch of work
 * that outlasts the budget is interrupted on its own thread; stretches
 * that end, or a budget of 0, are never interrupted; a SIGURG that is not
 * the watchdog's reaches the handler that was there before; a forked
 * child frees its copy without waiting for a helper it does not have.
 */
#include <signal.h>
#include <string.h>

#include "check.h"
#include "forks.h"
#include "monotime.h"
#include "watchdog.h"

static volatile sig_atomic_t fired;
static pthread_t fired_on;
static volatile sig_atomic_t foreign;

static void on_fire(void *ud) {
  (void)ud;
  fired_on = pthread_self();
  fired = 1;
}

static void on_foreign(int signo) {
  (void)signo;
  foreign = 1;
}

/* Spin until fired or `limit` seconds; returns the seconds spun. */
static double spin(double limit) {
  double t0 = monotime_now();
  while (!fired && monotime_now() - t0 < limit) {
  }
  return monotime_now() - t0;
}

static void test_long_stretch_fires_on_its_thread(void) {
  fired = 0;
  struct watchdog *wd = watchdog_new(on_fire, NULL);
  CHECK(wd != NULL);
  watchdog_setbudget(wd, 0.05);
  watchdog_begin(wd);
  double spun = spin(10);
  watchdog_end(wd);
  CHECK(fired);
  CHECK(pthread_equal(fired_on, pthread_self()));
  CHECK(spun >= 0.05);                     /* never before the budget */
  CHECK(watchdog_started(wd) <= monotime_now() - 0.05);
  watchdog_free(wd);
}

/* A watchdog made in the middle of a stretch sees the next one right. */
static void test_made_mid_stretch(void) {
  fired = 0;
  struct watchdog *wd = watchdog_new(on_fire, NULL);
  watchdog_setbudget(wd, 0.05);
  watchdog_end(wd); /* the stretch it was made in */
  watchdog_begin(wd);
  spin(10);
  watchdog_end(wd);
  CHECK(fired);
  watchdog_free(wd);
}

static void test_ended_stretches_never_fire(void) {
  fired = 0;
  struct watchdog *wd = watchdog_new(on_fire, NULL);
  watchdog_setbudget(wd, 0.5);
  double t0 = monotime_now();
  while (monotime_now() - t0 < 0.3) { /* many short stretches, idle between */
    watchdog_begin(wd);
    watchdog_end(wd);
  }
  watchdog_begin(wd); /* then a long stretch with the budget off */
  watchdog_setbudget(wd, 0);
  t0 = monotime_now();
  while (monotime_now() - t0 < 0.2) {
  }
  watchdog_end(wd);
  CHECK(!fired);
  watchdog_free(wd);
}

static void test_foreign_sigurg_goes_to_the_previous_handler(void) {
  /* The watchdog's handler is installed by the first watchdog_new; one
   * installed before it is kept and called for signals not its own. */
  foreign = 0;
  fired = 0;
  struct watchdog *wd = watchdog_new(on_fire, NULL);
  watchdog_setbudget(wd, 0.05);
  raise(SIGURG);
  CHECK(foreign);
  CHECK(!fired);
  watchdog_free(wd);
}

static int child_frees(void *arg) {
  watchdog_free(arg); /* joining the parent's helper would hang */
  return 0;
}

static void test_forked_child_frees_without_the_helper(void) {
  struct watchdog *wd = watchdog_new(on_fire, NULL);
  watchdog_setbudget(wd, 0.05);
  CHECK(forks_wait(forks_run(child_frees, wd)) == 0);
  watchdog_free(wd);
}

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_foreign;
  sigaction(SIGURG, &sa, NULL);
  RUN(test_long_stretch_fires_on_its_thread);
  RUN(test_made_mid_stretch);
  RUN(test_ended_stretches_never_fire);
  RUN(test_foreign_sigurg_goes_to_the_previous_handler);
  RUN(test_forked_child_frees_without_the_helper);
  return CHECK_DONE();
}
