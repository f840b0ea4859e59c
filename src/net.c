/*
 * net.c -- socket syscalls and addresses. See net.h. No lua.h here.
 */
#define _GNU_SOURCE /* accept4, SOCK_CLOEXEC, recvmmsg, sendmmsg, ip_mreqn */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int set_port_v4(struct net_addr *a, const char *host, int port) {
  struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;
  memset(a, 0, sizeof *a);
  in->sin_family = AF_INET;
  in->sin_port = htons((unsigned short)port);
  a->len = sizeof *in;
  if (host == NULL) {
    in->sin_addr.s_addr = htonl(INADDR_ANY);
    return 0;
  }
  return inet_pton(AF_INET, host, &in->sin_addr) == 1 ? 0 : -EINVAL;
}

static int set_port_v6(struct net_addr *a, const char *host, size_t n,
                       int port) {
  char text[INET6_ADDRSTRLEN];
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
  if (n >= sizeof text)
    return -EINVAL;
  memcpy(text, host, n);
  text[n] = '\0';
  memset(a, 0, sizeof *a);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons((unsigned short)port);
  a->len = sizeof *in6;
  return inet_pton(AF_INET6, text, &in6->sin6_addr) == 1 ? 0 : -EINVAL;
}

int net_parse_ip(const char *host, int port, struct net_addr *a) {
  if (port < 0 || port > 65535)
    return -EINVAL;
  if (strcmp(host, "*") == 0)
    return set_port_v4(a, NULL, port);
  if (strcmp(host, "localhost") == 0)
    return set_port_v4(a, "127.0.0.1", port);
  size_t n = strlen(host);
  if (n > 2 && host[0] == '[' && host[n - 1] == ']')
    return set_port_v6(a, host + 1, n - 2, port);
  if (strchr(host, ':') != NULL)
    return set_port_v6(a, host, n, port);
  return set_port_v4(a, host, port);
}

int net_parse_unix(const char *path, struct net_addr *a) {
  struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof un->sun_path)
    return -ENAMETOOLONG;
  memset(a, 0, sizeof *a);
  un->sun_family = AF_UNIX;
  memcpy(un->sun_path, path, n + 1);
  a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  return 0;
}

int net_format_addr(const struct net_addr *a, char *host, size_t hostlen,
                    int *port) {
  const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
  *port = 0;
  switch (sa->sa_family) {
  case AF_INET: {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    *port = ntohs(in->sin_port);
    return inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)hostlen)
               ? 0 : -errno;
  }
  case AF_INET6: {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    *port = ntohs(in6->sin6_port);
    return inet_ntop(AF_INET6, &in6->sin6_addr, host, (socklen_t)hostlen)
               ? 0 : -errno;
  }
  case AF_UNIX: {
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    size_t max = a->len > offsetof(struct sockaddr_un, sun_path)
                     ? a->len - offsetof(struct sockaddr_un, sun_path) : 0;
    size_t n = strnlen(un->sun_path, max < sizeof un->sun_path
                                         ? max : sizeof un->sun_path);
    if (n >= hostlen)
      return -ENAMETOOLONG;
    memcpy(host, un->sun_path, n);
    host[n] = '\0';
    return 0;
  }
  default:
    return -EAFNOSUPPORT;
  }
}

static int new_socket(int family) {
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  // cppcheck-suppress resourceLeak ; fd < 0 is no descriptor to leak
  return fd < 0 ? -errno : fd;
}

/* A unix socket file nobody accepts on (or, for datagrams, nobody has
 * bound) is left over from a dead process; one that answers belongs to a
 * live server and must not be taken. `type` is the kind of socket that
 * will bind it: a probe of the other kind would fail with EPROTOTYPE. */
static int remove_stale_unix(const struct net_addr *a, int type) {
  const struct sockaddr_un *un = (const struct sockaddr_un *)&a->ss;
  struct stat st;
  if (lstat(un->sun_path, &st) != 0)
    return 0;
  if (!S_ISSOCK(st.st_mode))
    return -EADDRINUSE;
  int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int alive = connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0 ||
              errno != ECONNREFUSED;
  close(fd);
  if (alive)
    return -EADDRINUSE;
  return unlink(un->sun_path) == 0 || errno == ENOENT ? 0 : -errno;
}

int net_listen(const struct net_addr *a, int backlog, int flags) {
  int family = ((const struct sockaddr *)&a->ss)->sa_family;
  int rc = family == AF_UNIX ? remove_stale_unix(a, SOCK_STREAM) : 0;
  if (rc < 0)
    return rc;
  int fd = new_socket(family);
  if (fd < 0)
    return fd;
  if (family != AF_UNIX) {
    if ((flags & NET_REUSEADDR) &&
        (rc = net_set_bool(fd, SOL_SOCKET, SO_REUSEADDR, 1)) < 0)
      goto fail;
    if ((flags & NET_REUSEPORT) &&
        (rc = net_set_bool(fd, SOL_SOCKET, SO_REUSEPORT, 1)) < 0)
      goto fail;
  }
  if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0 ||
      listen(fd, backlog) != 0) {
    rc = -errno;
    goto fail;
  }
  return fd;
fail:
  close(fd);
  return rc;
}

int net_check_listening(int fd) {
  int on = 0;
  socklen_t len = sizeof on;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) != 0)
    return -errno;
  if (!on)
    return -EINVAL;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
      fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
    return -errno;
  return 0;
}

int net_accept(int lfd, struct net_addr *peer) {
  for (;;) {
    struct sockaddr *sa = peer ? (struct sockaddr *)&peer->ss : NULL;
    socklen_t *len = peer ? &peer->len : NULL;
    if (peer)
      peer->len = sizeof peer->ss;
    int fd = accept4(lfd, sa, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0)
      return fd;
    /* A connection reset while queued is the client's business, not ours. */
    if (errno != EINTR && errno != ECONNABORTED)
      return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

int net_connect(const struct net_addr *a, int *pending) {
  int fd = new_socket(((const struct sockaddr *)&a->ss)->sa_family);
  if (fd < 0)
    return fd;
  *pending = 0;
  if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0)
    return fd;
  if (errno == EINPROGRESS || errno == EAGAIN) {
    *pending = 1;
    return fd;
  }
  int err = errno;
  close(fd);
  return -err;
}

int net_connect_result(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
    return -errno;
  return -err;
}

int net_local_addr(int fd, struct net_addr *a) {
  a->len = sizeof a->ss;
  return getsockname(fd, (struct sockaddr *)&a->ss, &a->len) == 0 ? 0 : -errno;
}

int net_peer_addr(int fd, struct net_addr *a) {
  a->len = sizeof a->ss;
  return getpeername(fd, (struct sockaddr *)&a->ss, &a->len) == 0 ? 0 : -errno;
}

long net_recv(int fd, void *p, size_t n) {
  for (;;) {
    ssize_t got = recv(fd, p, n, 0);
    if (got >= 0)
      return (long)got;
    if (errno != EINTR)
      return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

long net_writev(int fd, const struct iovec *iov, int iovcnt) {
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = (struct iovec *)iov;
  msg.msg_iovlen = (size_t)iovcnt;
  for (;;) {
    ssize_t sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (sent >= 0)
      return (long)sent;
    if (errno != EINTR)
      return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

int net_set_bool(int fd, int level, int opt, int on) {
  return setsockopt(fd, level, opt, &on, sizeof on) == 0 ? 0 : -errno;
}

int net_set_int(int fd, int level, int opt, int value) {
  return setsockopt(fd, level, opt, &value, sizeof value) == 0 ? 0 : -errno;
}

int net_get_int(int fd, int level, int opt, int *value) {
  socklen_t len = sizeof *value;
  return getsockopt(fd, level, opt, value, &len) == 0 ? 0 : -errno;
}

/* ------------------------------------------------------------ datagrams */

int net_addr_family(const struct net_addr *a) {
  return ((const struct sockaddr *)&a->ss)->sa_family;
}

static int udp_options(int fd, int family, int flags) {
  int rc = 0;
  if (family != AF_UNIX && (flags & NET_REUSEADDR))
    rc = net_set_bool(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  if (rc == 0 && family != AF_UNIX && (flags & NET_REUSEPORT))
    rc = net_set_bool(fd, SOL_SOCKET, SO_REUSEPORT, 1);
  if (rc == 0 && (flags & NET_BROADCAST))
    rc = net_set_bool(fd, SOL_SOCKET, SO_BROADCAST, 1);
  return rc;
}

int net_udp_open(const struct net_addr *a, int flags) {
  int family = net_addr_family(a);
  int rc = family == AF_UNIX ? remove_stale_unix(a, SOCK_DGRAM) : 0;
  if (rc < 0)
    return rc;
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  rc = udp_options(fd, family, flags);
  if (rc == 0 && bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0)
    rc = -errno;
  if (rc < 0) {
    close(fd);
    return rc;
  }
  return fd;
}

int net_check_dgram(int fd) {
  int type = 0;
  struct net_addr a;
  int rc = net_get_int(fd, SOL_SOCKET, SO_TYPE, &type);
  if (rc < 0)
    return rc;
  if (type != SOCK_DGRAM)
    return -EPROTOTYPE;
  if ((rc = net_local_addr(fd, &a)) < 0)
    return rc;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
      fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
    return -errno;
  return net_addr_family(&a);
}

int net_udp_connect(int fd, const struct net_addr *a) {
  for (;;) {
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0)
      return 0;
    if (errno != EINTR)
      return -errno;
  }
}

int net_recvmmsg(int fd, struct mmsghdr *v, unsigned n) {
  for (;;) {
    int got = recvmmsg(fd, v, n, MSG_DONTWAIT | MSG_TRUNC, NULL);
    if (got >= 0)
      return got;
    if (errno != EINTR)
      return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

int net_sendmmsg(int fd, struct mmsghdr *v, unsigned n) {
  for (;;) {
    int sent = sendmmsg(fd, v, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent >= 0)
      return sent;
    if (errno != EINTR)
      return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

long net_sendto(int fd, const void *p, size_t n, const struct net_addr *to) {
  const struct sockaddr *sa = to ? (const struct sockaddr *)&to->ss : NULL;
  socklen_t len = to ? to->len : 0;
  for (;;) {
    ssize_t sent = sendto(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL, sa, len);
    if (sent >= 0)
      return (long)sent;
    if (errno != EINTR)
      return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

/* An interface given by name or by index number (a digit string). */
static unsigned iface_index(const char *iface) {
  char *end;
  unsigned long n = strtoul(iface, &end, 10);
  if (*iface != '\0' && *end == '\0' && n <= 0xffffffffUL)
    return (unsigned)n;
  return if_nametoindex(iface);
}

static int multicast_v4(int fd, const struct net_addr *group,
                        const char *iface, int join) {
  struct ip_mreqn mr;
  memset(&mr, 0, sizeof mr);
  mr.imr_multiaddr = ((const struct sockaddr_in *)&group->ss)->sin_addr;
  if (iface != NULL && inet_pton(AF_INET, iface, &mr.imr_address) != 1 &&
      (mr.imr_ifindex = (int)iface_index(iface)) == 0)
    return -ENODEV;
  int opt = join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP;
  if (setsockopt(fd, IPPROTO_IP, opt, &mr, sizeof mr) != 0)
    return -errno;
  if (join && iface != NULL &&
      setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &mr, sizeof mr) != 0)
    return -errno;
  return 0;
}

static int multicast_v6(int fd, const struct net_addr *group,
                        const char *iface, int join) {
  struct ipv6_mreq mr;
  memset(&mr, 0, sizeof mr);
  mr.ipv6mr_multiaddr = ((const struct sockaddr_in6 *)&group->ss)->sin6_addr;
  if (iface != NULL && (mr.ipv6mr_interface = iface_index(iface)) == 0)
    return -ENODEV;
  int opt = join ? IPV6_JOIN_GROUP : IPV6_LEAVE_GROUP;
  if (setsockopt(fd, IPPROTO_IPV6, opt, &mr, sizeof mr) != 0)
    return -errno;
  int idx = (int)mr.ipv6mr_interface;
  if (join && iface != NULL &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &idx, sizeof idx) != 0)
    return -errno;
  return 0;
}

int net_multicast(int fd, const struct net_addr *group, const char *iface,
                  int join) {
  switch (net_addr_family(group)) {
  case AF_INET: return multicast_v4(fd, group, iface, join);
  case AF_INET6: return multicast_v6(fd, group, iface, join);
  default: return -EAFNOSUPPORT;
  }
}

void net_addr_unmap(struct net_addr *a) {
  const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
  if (net_addr_family(a) != AF_INET6 || a->len < sizeof *in6 ||
      !IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
    return;
  struct sockaddr_in in;
  memset(&in, 0, sizeof in);
  in.sin_family = AF_INET;
  in.sin_port = in6->sin6_port;
  memcpy(&in.sin_addr, &in6->sin6_addr.s6_addr[12], 4);
  memset(&a->ss, 0, sizeof a->ss);
  memcpy(&a->ss, &in, sizeof in);
  a->len = sizeof in;
}

int net_addr_tofamily(struct net_addr *a, int family) {
  int have = net_addr_family(a);
  if (have == family)
    return 0;
  if (have != AF_INET || family != AF_INET6)
    return -EAFNOSUPPORT;
  struct sockaddr_in in;
  memcpy(&in, &a->ss, sizeof in);
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
  memset(a, 0, sizeof *a);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = in.sin_port;
  in6->sin6_addr.s6_addr[10] = 0xff;
  in6->sin6_addr.s6_addr[11] = 0xff;
  memcpy(&in6->sin6_addr.s6_addr[12], &in.sin_addr, 4);
  a->len = sizeof *in6;
  return 0;
}

const char *net_errcode(int err) {
  switch (err) {
  case ECONNRESET: case EPIPE: case ECONNABORTED:
    return "reset";
  case ECONNREFUSED:
    return "refused";
  case ETIMEDOUT:
    return "timeout";
  case ENETUNREACH: case EHOSTUNREACH: case ENETDOWN: case EHOSTDOWN:
    return "unreachable";
  case EADDRINUSE:
    return "addrinuse";
  case EADDRNOTAVAIL:
    return "addrnotavail";
  case EACCES: case EPERM:
    return "permission";
  case EMFILE: case ENFILE:
    return "nofile";
  case ENOMEM: case ENOBUFS:
    return "nomem";
  case ENOENT: case ENOTDIR: /* a unix socket path (or its directory) */
    return "notfound";
  case EINVAL: case EAFNOSUPPORT: case ENOTSOCK: case ENAMETOOLONG:
    return "invalid";
  case EPROTONOSUPPORT:
    return "unsupported";
  case EAGAIN:
    return "wouldblock";
  case EMSGSIZE:
    return "toolarge";
  default:
    return "error";
  }
}
