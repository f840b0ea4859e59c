/*
 * net.h -- socket syscalls and addresses for berth.
 *
 * Contract: no lua.h here. Every function returns >= 0 on success and
 * -errno on failure (never touches errno of the caller's later calls).
 * Every descriptor made here is non-blocking and close-on-exec.
 */
#ifndef BERTH_NET_H
#define BERTH_NET_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* Longest text net_format_addr writes: an IPv6 literal or a unix path. */
#define NET_ADDRSTRLEN 110

struct net_addr {
  struct sockaddr_storage ss;
  socklen_t len;
};

/* Parse a numeric host ("1.2.3.4", "::1", "[::1]", "*", "localhost")
 * and port into `a`. "*" is the IPv4 wildcard; -EINVAL when `host`
 * needs a name lookup. */
int net_parse_ip(const char *host, int port, struct net_addr *a);
int net_parse_unix(const char *path, struct net_addr *a);

/* Text form of `a`: host (or unix path) into `host`, port into *port
 * (0 for unix sockets). */
int net_format_addr(const struct net_addr *a, char *host, size_t hostlen,
                    int *port);

#define NET_REUSEADDR 1
#define NET_REUSEPORT 2

/* Bind and listen; returns the listening fd. For a unix address a stale
 * socket file (nothing accepts on it) is removed first. */
int net_listen(const struct net_addr *a, int backlog, int flags);
/* -ENOTSOCK/-EINVAL unless `fd` is a listening stream socket. */
int net_check_listening(int fd);
/* accept4 a connection: fd, or -EAGAIN when none is waiting. The peer's
 * address goes to *peer unless it is NULL. */
int net_accept(int lfd, struct net_addr *peer);
/* Start a non-blocking connect: fd (connected or -EINPROGRESS pending via
 * *pending = 1), or -errno. */
int net_connect(const struct net_addr *a, int *pending);
/* The outcome of a pending connect (SO_ERROR): 0 or -errno. */
int net_connect_result(int fd);

int net_local_addr(int fd, struct net_addr *a);
int net_peer_addr(int fd, struct net_addr *a);

/* recv into p; bytes read (0 at EOF) or -errno. */
long net_recv(int fd, void *p, size_t n);
/* Gathered send without SIGPIPE: bytes sent or -errno. */
long net_writev(int fd, const struct iovec *iov, int iovcnt);

int net_set_bool(int fd, int level, int opt, int on);

/* The stable error code berth reports for an errno ("reset", "refused"...);
 * README's table of codes lists every one (spec/errors_spec.lua checks). */
const char *net_errcode(int err);

#endif
