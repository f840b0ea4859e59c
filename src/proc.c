/*
 * proc.c -- process primitives for berth's master/worker model, exposed as
 * core.proc: start a worker (fork + exec of the berth executable itself,
 * with its channel on fd 3), reap children, signal them, and pass
 * listening descriptors over a SOCK_SEQPACKET channel (SCM_RIGHTS).
 *
 * Nothing here runs unless called: a library user who never starts
 * workers gets no fork, no signal disposition change, no extra fd.
 *
 * send and recv block the calling process (a worker asks for a listener
 * from its script's main chunk, where there is no loop to wait in), so
 * each waits with a deadline, in poll(); and since the process's signal
 * handlers only record a signal for the loop, which is not running, a
 * SIGTERM or SIGINT that arrives meanwhile ends the wait ("canceled") and
 * is raised again for the handler, so it is not lost and the process can
 * stop instead of waiting on.
 */
#define _GNU_SOURCE /* SOCK_CLOEXEC, pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "core.h"

#define PROC_CHANNEL_FD 3  /* where a worker finds its channel */
#define PROC_MSG_MAX 4096

static int proc_socketpair(lua_State *L) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return util_failerr(L, errno);
  lua_pushinteger(L, sv[0]);
  lua_pushinteger(L, sv[1]);
  return 2;
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void proc_exec(const char *exe, char **argv, int channel, int quiet) {
  if (channel >= 0 && dup2(channel, PROC_CHANNEL_FD) < 0) /* clears CLOEXEC */
    _exit(127);
  if (quiet) {
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0)
      dup2(null, STDOUT_FILENO);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  prctl(PR_SET_PDEATHSIG, SIGTERM); /* an orphaned worker drains and exits */
  execv(exe, argv);
  _exit(127);
}

/* spawn(argv, channel_fd|nil, quiet) -> pid: run the berth executable
 * again with argv (argv[1] is argv[0]); the channel becomes fd 3, and
 * `quiet` sends its stdout to /dev/null. */
static int proc_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int channel = (int)luaL_optinteger(L, 2, -1);
  int quiet = lua_toboolean(L, 3);
  int n = (int)luaL_len(L, 1);
  luaL_argcheck(L, n >= 1, 1, "argv must not be empty");
  char **argv = lua_newuserdatauv(L, sizeof(char *) * ((size_t)n + 1), 0);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    argv[i] = (char *)luaL_checkstring(L, -1);
    lua_pop(L, 1); /* the table keeps the string alive */
  }
  argv[n] = NULL;
  /* The real path, not the /proc/self/exe link: ps shows the name of what
   * was executed, and it must say berth. */
  char exe[4096];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len <= 0)
    return util_failerr(L, errno);
  exe[len] = '\0';
  pid_t pid = fork();
  if (pid < 0)
    return util_failerr(L, errno);
  if (pid == 0)
    proc_exec(exe, argv, channel, quiet);
  lua_pushinteger(L, pid);
  return 1;
}

/* reap() -> pid, "exit"|"signal", code; or nil when no child has ended. */
static int proc_reap(lua_State *L) {
  int status;
  pid_t pid = waitpid(-1, &status, WNOHANG);
  if (pid <= 0)
    return 0;
  lua_pushinteger(L, pid);
  if (WIFSIGNALED(status)) {
    lua_pushliteral(L, "signal");
    lua_pushinteger(L, WTERMSIG(status));
  } else {
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, WEXITSTATUS(status));
  }
  return 3;
}

static int proc_kill(lua_State *L) {
  static const char *const names[] = {"TERM", "INT", "KILL", "HUP", NULL};
  static const int signos[] = {SIGTERM, SIGINT, SIGKILL, SIGHUP};
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int sig = signos[luaL_checkoption(L, 2, "TERM", names)];
  if (kill(pid, sig) != 0)
    return util_failerr(L, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* ----------------------------------------------------- bounded waiting */

static double proc_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* poll()'s timeout for an absolute deadline (< 0: none), rounded up. */
static int proc_pollms(double deadline) {
  if (deadline < 0)
    return -1;
  double ms = ceil((deadline - proc_now()) * 1000);
  return ms <= 0 ? 0 : ms >= INT_MAX ? INT_MAX : (int)ms;
}

/* poll fd for `events` and sfd (a signalfd) until the deadline. */
static int proc_poll(int fd, short events, int sfd, double deadline,
                     int *signo) {
  struct pollfd p[2] = {{fd, events, 0}, {sfd, POLLIN, 0}};
  for (;;) {
    int n = poll(p, 2, proc_pollms(deadline));
    if (n < 0 && errno != EINTR)
      return -errno;
    struct signalfd_siginfo si;
    if (n > 0 && (p[1].revents & POLLIN) &&
        read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
      *signo = (int)si.ssi_signo;
      return -ECANCELED;
    }
    if (n > 0 && p[0].revents != 0)
      return 0; /* POLLHUP/POLLERR too: the call says what happened */
    if (deadline >= 0 && proc_now() >= deadline)
      return -ETIMEDOUT;
  }
}

/* Wait until fd is ready for `events` or the deadline (< 0: none): 0,
 * -ETIMEDOUT, -ECANCELED when SIGTERM or SIGINT arrived meanwhile, or
 * -errno. The two are blocked and read from a signalfd while it waits:
 * the handler the loop installed would only have noted the signal. One
 * that arrived is raised again once they are unblocked, so the handler
 * still gets it (or, with none, the default action ends the process). */
static int proc_wait(int fd, short events, double deadline) {
  sigset_t stop, old;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  int rc = pthread_sigmask(SIG_BLOCK, &stop, &old);
  if (rc != 0)
    return -rc;
  int signo = 0;
  int sfd = signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK);
  rc = sfd < 0 ? -errno : proc_poll(fd, events, sfd, deadline, &signo);
  if (sfd >= 0)
    close(sfd);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (signo != 0)
    raise(signo);
  return rc;
}

/* The optional timeout argument: an absolute deadline, -1 for none (nil,
 * false, math.huge), or 0 for "do not wait" (a timeout of 0). */
static double proc_deadline(lua_State *L, int idx, const char *what,
                            int *nowait) {
  double t = check_time(L, idx, what, HUGE_VAL);
  *nowait = t == 0;
  return t == HUGE_VAL ? -1 : proc_now() + t;
}

/* nil, "timeout" | nil, "canceled" | nil, code, errno */
static int proc_failwait(lua_State *L, int rc) {
  if (rc == -ETIMEDOUT || rc == -EAGAIN)
    return util_fail(L, "timeout");
  if (rc == -ECANCELED)
    return util_fail(L, "canceled");
  return util_failerr(L, -rc);
}

/* ------------------------------------------------------------ messages */

/* One sendmsg/recvmsg attempt that never blocks: bytes, or -errno. */
static ssize_t proc_trymsg(int fd, struct msghdr *mh, int sending) {
  ssize_t n;
  do
    n = sending ? sendmsg(fd, mh, MSG_NOSIGNAL | MSG_DONTWAIT)
                : recvmsg(fd, mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

/* The attempt, waiting for readiness in between until the deadline. */
static ssize_t proc_msg(int fd, struct msghdr *mh, int sending,
                        double deadline, int nowait) {
  for (;;) {
    ssize_t n = proc_trymsg(fd, mh, sending);
    if (n != -EAGAIN || nowait)
      return n;
    int rc = proc_wait(fd, sending ? POLLOUT : POLLIN, deadline);
    if (rc < 0)
      return rc;
  }
}

/* send(fd, msg [, passfd [, timeout]]) -> true: one message, optionally
 * with a descriptor attached. Waits at most `timeout` seconds (default:
 * as long as it takes) for room in the channel; 0 does not wait. */
static int proc_send(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  size_t len;
  const char *msg = luaL_checklstring(L, 2, &len);
  int pass = (int)luaL_optinteger(L, 3, -1);
  int nowait;
  double deadline = proc_deadline(L, 4, "proc.send: timeout", &nowait);
  struct iovec iov = {(void *)msg, len};
  struct msghdr mh;
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (pass >= 0) {
    memset(&ctl, 0, sizeof ctl);
    mh.msg_control = ctl.buf;
    mh.msg_controllen = sizeof ctl.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass, sizeof(int));
  }
  ssize_t n = proc_msg(fd, &mh, 1, deadline, nowait);
  if (n < 0)
    return proc_failwait(L, (int)n);
  lua_pushboolean(L, 1);
  return 1;
}

/* recv(fd [, timeout]) -> msg, passed_fd|nil; "" at EOF; nil, "timeout"
 * when nothing came within `timeout` seconds (default: no limit; 0: do
 * not wait); nil, "canceled" when SIGTERM/SIGINT came first (see
 * proc_wait). A passed descriptor is close-on-exec. */
static int proc_recv(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int nowait;
  double deadline = proc_deadline(L, 2, "proc.recv: timeout", &nowait);
  char buf[PROC_MSG_MAX];
  struct iovec iov = {buf, sizeof buf};
  struct msghdr mh;
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl.buf;
  mh.msg_controllen = sizeof ctl.buf;
  ssize_t n = proc_msg(fd, &mh, 0, deadline, nowait);
  if (n < 0)
    return proc_failwait(L, (int)n);
  lua_pushlstring(L, buf, (size_t)n);
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
    int passed;
    memcpy(&passed, CMSG_DATA(c), sizeof(int));
    lua_pushinteger(L, passed);
    return 2;
  }
  return 1;
}

static int proc_close(lua_State *L) {
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

static int proc_getpid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

/* The channel a worker was started with (fd 3 is a SEQPACKET socket), or
 * nil. Only the host started with --worker asks. */
static int proc_channel(lua_State *L) {
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(PROC_CHANNEL_FD, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
      type != SOCK_SEQPACKET)
    return 0;
  fcntl(PROC_CHANNEL_FD, F_SETFD, FD_CLOEXEC);
  lua_pushinteger(L, PROC_CHANNEL_FD);
  return 1;
}

static const luaL_Reg proc_funcs[] = {
  {"socketpair", proc_socketpair},
  {"spawn", proc_spawn},
  {"reap", proc_reap},
  {"kill", proc_kill},
  {"send", proc_send},
  {"recv", proc_recv},
  {"close", proc_close},
  {"getpid", proc_getpid},
  {"channel", proc_channel},
  {NULL, NULL}
};

void proc_open(lua_State *L) {
  luaL_newlib(L, proc_funcs);
}
