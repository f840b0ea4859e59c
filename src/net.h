/*
 * net.h -- socket syscalls and addresses for berth.
 *
 * Contract: no lua.h here. Every function returns >= 0 on success and
 * -errno on failure (never touches errno of the caller's later calls).
 * Every descriptor made here is non-blocking and close-on-exec. Datagram
 * calls use struct mmsghdr, which needs _GNU_SOURCE where it is filled.
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
int net_set_int(int fd, int level, int opt, int value);
int net_get_int(int fd, int level, int opt, int *value);

/* ------------------------------------------------------------ datagrams */

struct mmsghdr;

#define NET_BROADCAST 4

/* A bound, non-blocking datagram socket (UDP, or unix SOCK_DGRAM): the fd
 * or -errno. Flags: NET_REUSEADDR, NET_REUSEPORT, NET_BROADCAST. A unix
 * socket file left by a dead process (nothing bound to it) is removed
 * first; one a live process has bound gives -EADDRINUSE. */
int net_udp_open(const struct net_addr *a, int flags);
/* -ENOTSOCK/-EPROTOTYPE unless `fd` is a datagram socket; then makes it
 * non-blocking and close-on-exec and returns its address family. */
int net_check_dgram(int fd);
/* connect(2) a datagram socket to `a`: the kernel then takes datagrams
 * from that peer only and reports its ICMP errors. */
int net_udp_connect(int fd, const struct net_addr *a);
/* recvmmsg up to `n` datagrams without waiting: how many, or -errno
 * (-EAGAIN: none). With MSG_TRUNC, msg_len is a datagram's real size even
 * when it was cut to its iovec (and msg_flags has MSG_TRUNC). */
int net_recvmmsg(int fd, struct mmsghdr *v, unsigned n);
/* sendmmsg without waiting or SIGPIPE: how many went out, or -errno for
 * the first one (-EAGAIN: the send buffer is full). */
int net_sendmmsg(int fd, struct mmsghdr *v, unsigned n);
/* One datagram to `to` (NULL: the connected peer): bytes sent or -errno. */
long net_sendto(int fd, const void *p, size_t n, const struct net_addr *to);
/* Join (join=1) or leave a multicast group on the interface named by
 * `iface`: NULL (the kernel's choice), a numeric IPv4 address, or an
 * interface name or index. For IPv4 the interface also becomes the one
 * multicast datagrams are sent from. */
int net_multicast(int fd, const struct net_addr *group, const char *iface,
                  int join);

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) becomes plain IPv4, so a
 * dual-stack socket reports IPv4 peers the way an IPv4 socket does. */
void net_addr_unmap(struct net_addr *a);
/* Make `a` fit a socket of `family`: an IPv4 address for an IPv6 socket
 * becomes IPv4-mapped. 0, or -EAFNOSUPPORT when it cannot fit. */
int net_addr_tofamily(struct net_addr *a, int family);
int net_addr_family(const struct net_addr *a);

/* The stable error code berth reports for an errno ("reset", "refused"...);
 * README's table of codes lists every one (spec/errors_spec.lua checks). */
const char *net_errcode(int err);

#endif
