/*
 * forks.h -- child processes for the multi-process C tests (test_shm.c,
 * test_shdict.c, test_bus.c, test_shmetrics.c).
 *
 * A child runs one function and exits with its result (0: pass). It
 * cannot use CHECK (its counters die with it), so it reports through the
 * exit status, and the parent CHECKs that. Every child gets an alarm so a
 * bug that would hang it kills it instead, and every child is reaped by
 * its pid: forks_wait() or forks_kill().
 */
#ifndef BERTH_FORKS_H
#define BERTH_FORKS_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define FORKS_ALARM 30 /* seconds a child may live */

/* Fail a child: say where, exit non-zero. */
#define CHILD_CHECK(cond)                                                 \
  do {                                                                    \
    if (!(cond)) {                                                        \
      fprintf(stderr, "child %d FAIL %s:%d: %s\n", (int)getpid(),         \
              __FILE__, __LINE__, #cond);                                 \
      _exit(1);                                                           \
    }                                                                     \
  } while (0)

typedef int forks_fn(void *arg);

/* Run fn(arg) in a child; its pid (or -1). */
static inline pid_t forks_run(forks_fn *fn, void *arg) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(FORKS_ALARM);
    _exit(fn(arg));
  }
  return pid;
}

/* Reap `pid`: its exit code, or 128 + signal. */
static inline int forks_wait(pid_t pid) {
  int status;
  if (pid <= 0 || waitpid(pid, &status, 0) != pid)
    return -1;
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

static inline int forks_kill(pid_t pid) {
  if (pid > 0)
    kill(pid, SIGKILL);
  return forks_wait(pid);
}

#endif
