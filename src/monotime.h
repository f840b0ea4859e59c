/*
 * monotime.h -- the monotonic clock in seconds, for the parts that time
 * something outside the loop's own clock (ev_now): CPU budgets, the
 * watchdog, bounded waits on child processes, shared-dictionary expiry
 * (CLOCK_MONOTONIC is the same clock in every process on Linux, so a
 * time written by one worker means the same in another), the time a
 * metrics scrape takes to format. Pure C.
 */
#ifndef BERTH_MONOTIME_H
#define BERTH_MONOTIME_H

#include <time.h>

static inline double monotime_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
