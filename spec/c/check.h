/*
 * check.h -- the tiny test harness shared by the C unit tests in spec/c/:
 * CHECK marks the running case failed and goes on, RUN runs one case and
 * prints "ok NAME" / "not ok NAME", CHECK_DONE prints the closing
 * "N passed, N failed" line scripts/test adds up, and is main's result.
 */
#ifndef BERTH_CHECK_H
#define BERTH_CHECK_H

#include <stdio.h>

static int check_passed, check_failed, check_errors;

#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) {                                                       \
      check_errors++;                                                    \
      printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);             \
    }                                                                    \
  } while (0)

#define RUN(test)                                                        \
  do {                                                                   \
    check_errors = 0;                                                    \
    test();                                                              \
    if (check_errors) check_failed++; else check_passed++;               \
    printf("%s %s\n", check_errors ? "not ok" : "ok", #test);            \
  } while (0)

#define CHECK_DONE()                                                     \
  (printf("%d passed, %d failed\n", check_passed, check_failed),         \
   check_failed ? 1 : 0)

#endif
