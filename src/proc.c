/*
 * proc.c -- process primitives for berth's master/worker model, exposed as
 * core.proc: start a worker (fork + exec of the berth executable itself,
 * with its channel on fd 3), reap children, signal them, and pass
 * listening descriptors over a SOCK_SEQPACKET channel (SCM_RIGHTS).
 *
 * Nothing here runs unless called: a library user who never starts
 * workers gets no fork, no signal disposition change, no extra fd.
 */
#define _GNU_SOURCE /* SOCK_CLOEXEC, pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* send(fd, msg [, passfd]) -> true: one message, optionally with a
 * descriptor attached. Blocking; channel messages are tiny. */
static int proc_send(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  size_t len;
  const char *msg = luaL_checklstring(L, 2, &len);
  int pass = (int)luaL_optinteger(L, 3, -1);
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
  ssize_t n;
  do
    n = sendmsg(fd, &mh, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return util_failerr(L, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* recv(fd [, nowait]) -> msg, passed_fd|nil; "" at EOF; nil, "timeout"
 * when nowait and nothing is there. A passed descriptor is close-on-exec. */
static int proc_recv(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int flags = MSG_CMSG_CLOEXEC | (lua_toboolean(L, 2) ? MSG_DONTWAIT : 0);
  char buf[PROC_MSG_MAX];
  struct iovec iov = {buf, sizeof buf};
  struct msghdr mh;
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl.buf;
  mh.msg_controllen = sizeof ctl.buf;
  ssize_t n;
  do
    n = recvmsg(fd, &mh, flags);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return errno == EAGAIN ? util_fail(L, "timeout") : util_failerr(L, errno);
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
