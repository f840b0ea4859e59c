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
 *
 * A binary upgrade (SIGUSR2) starts the executable on disk with the
 * listening descriptors the way systemd's socket activation passes them
 * (LISTEN_FDS from fd 3, LISTEN_PID, LISTEN_FDNAMES) plus a socket to
 * report ready on; inherited() reads what a process was given, either way.
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
#include <unistd.h>

#include "check.h"
#include "core.h"
#include "monotime.h"

#define PROC_CHANNEL_FD 3  /* where a worker finds its channel */
#define PROC_MSG_MAX 4096
#define PROC_HANDOVER_MAX 256  /* descriptors passed to a new process */

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
  /* Replaced on disk since it started (an upgrade is being prepared): the
   * workers stay on the master's own binary, through the link. */
  if (len > 10 && strcmp(exe + len - 10, " (deleted)") == 0)
    strcpy(exe, "/proc/self/exe");
  pid_t pid = fork();
  if (pid < 0)
    return util_failerr(L, errno);
  if (pid == 0)
    proc_exec(exe, argv, channel, quiet);
  lua_pushinteger(L, pid);
  return 1;
}

/* reap([pid]) -> pid, "exit"|"signal", code; or nil when no child (or
 * not that one) has ended. */
static int proc_reap(lua_State *L) {
  int status;
  pid_t pid = waitpid((pid_t)luaL_optinteger(L, 1, -1), &status, WNOHANG);
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
  static const char *const names[] = {"TERM", "INT", "KILL", "HUP", "QUIT",
                                      "USR2", NULL};
  static const int signos[] = {SIGTERM, SIGINT, SIGKILL, SIGHUP, SIGQUIT,
                               SIGUSR2};
  lua_Integer id = luaL_checkinteger(L, 1);
  /* 0 and negative ids name process groups (-1: every process we may
   * signal): never what a master or an upgrade means. */
  luaL_argcheck(L, id > 0 && id <= INT_MAX, 1, "not a process id");
  pid_t pid = (pid_t)id;
  int sig = signos[luaL_checkoption(L, 2, "TERM", names)];
  if (kill(pid, sig) != 0)
    return util_failerr(L, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* ----------------------------------------------------- bounded waiting */

/* poll()'s timeout for an absolute deadline (< 0: none), rounded up. */
static int proc_pollms(double deadline) {
  if (deadline < 0)
    return -1;
  double ms = ceil((deadline - monotime_now()) * 1000);
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
    if (deadline >= 0 && monotime_now() >= deadline)
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
  return t == HUGE_VAL ? -1 : monotime_now() + t;
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

/* ------------------------------------------------ inherited sockets */

/* The descriptors handed to this process at start (systemd's socket
 * activation, or berth's own binary upgrade): LISTEN_FDS of them from fd
 * 3, for this process only if LISTEN_PID is its pid, named by
 * LISTEN_FDNAMES (colon-separated); BERTH_UPGRADE_FD is the socket to
 * report "ready" on after an upgrade. Each is made close-on-exec and the
 * variables are removed, so workers and children see none of it.
 * inherited() -> {fds = {{fd =, name =}, ...}, notify = fd|nil}; only the
 * first call finds anything. */
static int proc_inherited(lua_State *L) {
  const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
  const char *names = getenv("LISTEN_FDNAMES");
  const char *notify = getenv("BERTH_UPGRADE_FD");
  char *end = NULL;
  long n = nfds ? strtol(nfds, &end, 10) : 0;
  int mine = pid != NULL && strtol(pid, NULL, 10) == (long)getpid();
  if (!mine || end == NULL || *end != '\0' || n < 0 || n > 4096)
    n = 0;
  lua_createtable(L, 0, 2);
  lua_createtable(L, (int)n, 0);
  for (long i = 0; i < n; i++) {
    int fd = 3 + (int)i;
    size_t len = names ? strcspn(names, ":") : 0;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, fd);
    lua_setfield(L, -2, "fd");
    lua_pushlstring(L, names ? names : "", len);
    lua_setfield(L, -2, "name");
    lua_rawseti(L, -2, i + 1);
    if (names != NULL)
      names = names[len] == ':' ? names + len + 1 : NULL;
  }
  lua_setfield(L, -2, "fds");
  long nfd = mine && notify ? strtol(notify, &end, 10) : -1;
  if (nfd >= 3 && *end == '\0' && fcntl((int)nfd, F_SETFD, FD_CLOEXEC) == 0) {
    lua_pushinteger(L, nfd);
    lua_setfield(L, -2, "notify");
  }
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  unsetenv("BERTH_UPGRADE_FD");
  return 1;
}

/* sockinfo(fd) -> {type = "stream"|"dgram"|"seqpacket"|"other",
 * listening = bool, host =, port =} (host: the address, or the unix
 * path); nil, code, errno if fd is not a socket. */
static int proc_sockinfo(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int type = 0, acc = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    return util_failerr(L, errno);
  len = sizeof acc;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) != 0)
    acc = 0;
  lua_createtable(L, 0, 4);
  lua_pushstring(L, type == SOCK_STREAM ? "stream"
                    : type == SOCK_DGRAM ? "dgram"
                    : type == SOCK_SEQPACKET ? "seqpacket" : "other");
  lua_setfield(L, -2, "type");
  lua_pushboolean(L, acc);
  lua_setfield(L, -2, "listening");
  struct net_addr a;
  if (net_local_addr(fd, &a) == 0 && util_pushaddr(L, &a) == 2) {
    lua_setfield(L, -3, "port");
    lua_setfield(L, -2, "host");
  } else {
    lua_settop(L, 2); /* the table: an unbound or unnamed socket */
  }
  return 1;
}

/* The environment of a handed-over process: this one's without the
 * inheritance variables, then `extra` (NULL-terminated). A userdata on
 * the stack owns the array. [-0, +1, m] */
static char **proc_handoverenv(lua_State *L, char *const extra[]) {
  size_t n = 0, k = 0;
  while (environ[n] != NULL)
    n++;
  while (extra[k] != NULL)
    k++;
  char **env = lua_newuserdatauv(L, sizeof(char *) * (n + k + 1), 0);
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    const char *e = environ[i];
    if (strncmp(e, "LISTEN_", 7) == 0 || strncmp(e, "BERTH_UPGRADE_FD=", 17) == 0)
      continue;
    env[j++] = environ[i];
  }
  for (size_t i = 0; i < k; i++)
    env[j++] = extra[i];
  env[j] = NULL;
  return env;
}

/* In the child, between fork and exec (async-signal-safe calls only):
 * fds[0..n) become 3..3+n, `notify` 3+n, LISTEN_PID our pid. */
static void proc_handoverexec(const char *exe, char **argv, char **env,
                              const int *fds, int n, int notify,
                              char *pidvar) {
  int tmp[PROC_HANDOVER_MAX + 1];
  for (int i = 0; i <= n; i++) { /* out of the way of 3..3+n first */
    tmp[i] = fcntl(i < n ? fds[i] : notify, F_DUPFD_CLOEXEC, 3 + n + 1);
    if (tmp[i] < 0)
      _exit(127);
  }
  for (int i = 0; i <= n; i++) /* dup2 clears close-on-exec */
    if (dup2(tmp[i], 3 + i) < 0)
      _exit(127);
  char digits[24];
  int d = 0;
  for (pid_t pid = getpid(); pid > 0 && d < 23; pid /= 10)
    digits[d++] = (char)('0' + pid % 10);
  char *p = pidvar + strlen("LISTEN_PID=");
  while (d > 0)
    *p++ = digits[--d];
  *p = '\0';
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execve(exe, argv, env);
  _exit(127);
}

/* A NULL-terminated copy of the strings of the table at idx, in a
 * userdata left on the stack. [-0, +1, m] */
static char **proc_strings(lua_State *L, int idx, int *count) {
  int n = (int)luaL_len(L, idx);
  char **v = lua_newuserdatauv(L, sizeof(char *) * ((size_t)n + 1), 0);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    v[i] = (char *)luaL_checkstring(L, -1);
    lua_pop(L, 1); /* the table keeps the string alive */
  }
  v[n] = NULL;
  *count = n;
  return v;
}

/* handover(exe, argv, fds, names, notify) -> pid: start `exe` with argv
 * (argv[1] is its argv[0]) and the descriptors fds (a list) as systemd's
 * LISTEN_FDS from fd 3, named by `names` (a list of strings without
 * ':'), and `notify` as BERTH_UPGRADE_FD. Unlike a worker it does not die
 * with this process: it is to replace it. */
static int proc_handover(lua_State *L) {
  const char *exe = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  int notify = (int)luaL_checkinteger(L, 5);
  int argc, nnames;
  char **argv = proc_strings(L, 2, &argc);
  luaL_argcheck(L, argc >= 1, 2, "argv must not be empty");
  int n = (int)luaL_len(L, 3);
  luaL_argcheck(L, n <= PROC_HANDOVER_MAX, 3, "too many descriptors");
  int fds[PROC_HANDOVER_MAX];
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 3, i + 1);
    fds[i] = (int)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
  }
  char **names = proc_strings(L, 4, &nnames);
  luaL_argcheck(L, nnames == n, 4, "one name per descriptor");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "LISTEN_FDNAMES=");
  for (int i = 0; i < n; i++) {
    luaL_argcheck(L, strchr(names[i], ':') == NULL, 4, "a name with ':'");
    if (i > 0)
      luaL_addchar(&b, ':');
    luaL_addstring(&b, names[i]);
  }
  luaL_pushresult(&b);
  char *extra[5];
  extra[0] = (char *)lua_tostring(L, -1);
  extra[1] = (char *)lua_pushfstring(L, "LISTEN_FDS=%d", n);
  extra[2] = (char *)lua_pushfstring(L, "BERTH_UPGRADE_FD=%d", 3 + n);
  /* Written by the child: room for its pid's digits. */
  static const char pidvar[] = "LISTEN_PID=0000000000000000000000";
  extra[3] = lua_newuserdatauv(L, sizeof pidvar, 0);
  memcpy(extra[3], pidvar, sizeof pidvar);
  extra[4] = NULL;
  char **env = proc_handoverenv(L, extra);
  pid_t pid = fork();
  if (pid < 0)
    return util_failerr(L, errno);
  if (pid == 0)
    proc_handoverexec(exe, argv, env, fds, n, notify, extra[3]);
  lua_pushinteger(L, pid);
  return 1;
}

static const luaL_Reg proc_funcs[] = {
  {"socketpair", proc_socketpair},
  {"spawn", proc_spawn},
  {"handover", proc_handover},
  {"inherited", proc_inherited},
  {"sockinfo", proc_sockinfo},
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
