/*
 * test_net_dgram.c -- unit tests for the datagram calls of src/net.c over
 * real sockets on 127.0.0.1, ::1 and a unix path: bind and read back,
 * recvmmsg batches and MSG_TRUNC sizes, sendmmsg, sendto, connected
 * sockets and ICMP "refused", adopting a descriptor, v4-mapped addresses,
 * stale unix socket files, multicast on the loopback interface, and the
 * error codes berth reports.
 */
#define _GNU_SOURCE /* struct mmsghdr */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "net.h"

/* A bound UDP socket on host:0 and its address read back. */
static int bound(const char *host, struct net_addr *a) {
  struct net_addr want;
  if (net_parse_ip(host, 0, &want) < 0)
    return -1;
  int fd = net_udp_open(&want, 0);
  if (fd >= 0 && net_local_addr(fd, a) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void wait_readable(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  poll(&p, 1, 2000);
}

static void test_bind_and_readback(void) {
  struct net_addr a;
  int fd = bound("127.0.0.1", &a);
  CHECK(fd >= 0);
  char host[NET_ADDRSTRLEN];
  int port = 0;
  CHECK(net_format_addr(&a, host, sizeof host, &port) == 0);
  CHECK(strcmp(host, "127.0.0.1") == 0 && port > 0);
  CHECK(net_check_dgram(fd) == AF_INET);
  /* A second bind of the same address fails without reuseaddr. */
  CHECK(net_udp_open(&a, 0) == -EADDRINUSE);
  close(fd);
}

static void test_recvmmsg_batch_and_trunc(void) {
  struct net_addr ra, sa;
  int r = bound("127.0.0.1", &ra), s = bound("127.0.0.1", &sa);
  CHECK(r >= 0 && s >= 0);
  char big[300];
  memset(big, 'z', sizeof big);
  CHECK(net_sendto(s, "one", 3, &ra) == 3);
  CHECK(net_sendto(s, "", 0, &ra) == 0);
  CHECK(net_sendto(s, big, sizeof big, &ra) == (long)sizeof big);
  wait_readable(r);
  char bufs[4][100];
  struct iovec iov[4];
  struct sockaddr_storage from[4];
  struct mmsghdr m[4];
  memset(m, 0, sizeof m);
  for (int i = 0; i < 4; i++) {
    iov[i].iov_base = bufs[i];
    iov[i].iov_len = sizeof bufs[i];
    m[i].msg_hdr.msg_iov = &iov[i];
    m[i].msg_hdr.msg_iovlen = 1;
    m[i].msg_hdr.msg_name = &from[i];
    m[i].msg_hdr.msg_namelen = sizeof from[i];
  }
  int n = net_recvmmsg(r, m, 4);
  CHECK(n == 3);
  CHECK(m[0].msg_len == 3 && memcmp(bufs[0], "one", 3) == 0);
  CHECK(m[1].msg_len == 0 && !(m[1].msg_hdr.msg_flags & MSG_TRUNC));
  /* The cut datagram says so, and gives its real size. */
  CHECK(m[2].msg_len == 300 && (m[2].msg_hdr.msg_flags & MSG_TRUNC));
  struct net_addr who;
  memcpy(&who.ss, &from[0], sizeof who.ss);
  who.len = m[0].msg_hdr.msg_namelen;
  char host[NET_ADDRSTRLEN];
  int port;
  CHECK(net_format_addr(&who, host, sizeof host, &port) == 0);
  CHECK(port == ntohs(((struct sockaddr_in *)&sa.ss)->sin_port));
  CHECK(net_recvmmsg(r, m, 4) == -EAGAIN);
  close(r);
  close(s);
}

static void test_sendmmsg(void) {
  struct net_addr ra, sa;
  int r = bound("::1", &ra), s = bound("::1", &sa);
  CHECK(r >= 0 && s >= 0);
  CHECK(net_check_dgram(r) == AF_INET6);
  const char *words[3] = {"alpha", "be", "gamma!"};
  struct iovec iov[3];
  struct mmsghdr m[3];
  memset(m, 0, sizeof m);
  for (int i = 0; i < 3; i++) {
    iov[i].iov_base = (void *)words[i];
    iov[i].iov_len = strlen(words[i]);
    m[i].msg_hdr.msg_iov = &iov[i];
    m[i].msg_hdr.msg_iovlen = 1;
    m[i].msg_hdr.msg_name = &ra.ss;
    m[i].msg_hdr.msg_namelen = ra.len;
  }
  CHECK(net_sendmmsg(s, m, 3) == 3);
  char buf[16];
  for (int i = 0; i < 3; i++) {
    wait_readable(r);
    ssize_t got = recv(r, buf, sizeof buf, MSG_DONTWAIT);
    CHECK(got == (ssize_t)strlen(words[i]) && memcmp(buf, words[i], (size_t)got) == 0);
  }
  close(r);
  close(s);
}

/* A connected socket learns of the ICMP port unreachable its datagram
 * caused: the next receive fails with ECONNREFUSED ("refused"). */
static void test_connected_refused(void) {
  struct net_addr gone, ca;
  int g = bound("127.0.0.1", &gone);
  close(g); /* nothing listens there any more */
  int c = bound("127.0.0.1", &ca);
  CHECK(net_udp_connect(c, &gone) == 0);
  CHECK(net_sendto(c, "ping", 4, NULL) == 4);
  wait_readable(c);
  char buf[8];
  struct iovec iov = {buf, sizeof buf};
  struct mmsghdr m;
  memset(&m, 0, sizeof m);
  m.msg_hdr.msg_iov = &iov;
  m.msg_hdr.msg_iovlen = 1;
  int rc = net_recvmmsg(c, &m, 1);
  CHECK(rc == -ECONNREFUSED);
  CHECK(strcmp(net_errcode(-rc), "refused") == 0);
  close(c);
}

static void test_unix_dgram_and_stale_file(void) {
  char dir[] = "/tmp/berth-dgram-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[128];
  snprintf(path, sizeof path, "%s/s", dir);
  struct net_addr a;
  CHECK(net_parse_unix(path, &a) == 0);
  int fd = net_udp_open(&a, 0);
  CHECK(fd >= 0);
  CHECK(net_check_dgram(fd) == AF_UNIX);
  /* Bound by a live socket: not taken. */
  CHECK(net_udp_open(&a, 0) == -EADDRINUSE);
  close(fd);
  /* The file of a closed socket is stale: removed and bound again. */
  fd = net_udp_open(&a, 0);
  CHECK(fd >= 0);
  int c = socket(AF_UNIX, SOCK_DGRAM, 0);
  CHECK(net_sendto(c, "hi", 2, &a) == 2);
  char buf[4];
  CHECK(recv(fd, buf, sizeof buf, 0) == 2);
  close(c);
  close(fd);
  unlink(path);
  rmdir(dir);
}

static void test_check_dgram_rejects_streams(void) {
  int sfd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(net_check_dgram(sfd) == -EPROTOTYPE);
  close(sfd);
  CHECK(net_check_dgram(-1) == -EBADF);
}

static void test_v4_mapped(void) {
  struct net_addr a;
  CHECK(net_parse_ip("127.0.0.1", 53, &a) == 0);
  CHECK(net_addr_tofamily(&a, AF_INET) == 0 && net_addr_family(&a) == AF_INET);
  CHECK(net_addr_tofamily(&a, AF_INET6) == 0);
  char host[NET_ADDRSTRLEN];
  int port;
  CHECK(net_format_addr(&a, host, sizeof host, &port) == 0);
  CHECK(strcmp(host, "::ffff:127.0.0.1") == 0 && port == 53);
  net_addr_unmap(&a);
  CHECK(net_format_addr(&a, host, sizeof host, &port) == 0);
  CHECK(strcmp(host, "127.0.0.1") == 0 && port == 53);
  CHECK(a.len == sizeof(struct sockaddr_in));
  /* A real IPv6 address stays; it cannot go to an IPv4 socket. */
  CHECK(net_parse_ip("::1", 9, &a) == 0);
  net_addr_unmap(&a);
  CHECK(net_addr_family(&a) == AF_INET6);
  CHECK(net_addr_tofamily(&a, AF_INET) == -EAFNOSUPPORT);
  CHECK(net_addr_tofamily(&a, AF_UNIX) == -EAFNOSUPPORT);
}

/* A dual-stack socket bound to :: reaches an IPv4 peer through a mapped
 * address, and the peer's reply shows up as a mapped address. */
static void test_dual_stack(void) {
  struct net_addr any, v4, peer;
  CHECK(net_parse_ip("::", 0, &any) == 0);
  int d = net_udp_open(&any, 0);
  int r = bound("127.0.0.1", &v4);
  if (d < 0) { /* no IPv6 on this machine: nothing to check */
    close(r);
    return;
  }
  peer = v4;
  CHECK(net_addr_tofamily(&peer, AF_INET6) == 0);
  CHECK(net_sendto(d, "dual", 4, &peer) == 4);
  char buf[8];
  struct sockaddr_storage from;
  socklen_t flen = sizeof from;
  wait_readable(r);
  CHECK(recvfrom(r, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen) == 4);
  close(r);
  close(d);
}

static void test_multicast_loopback(void) {
  struct net_addr any, group, dst;
  CHECK(net_parse_ip("*", 0, &any) == 0);
  int r = net_udp_open(&any, NET_REUSEADDR);
  CHECK(r >= 0);
  struct net_addr ra;
  CHECK(net_local_addr(r, &ra) == 0);
  int port = ntohs(((struct sockaddr_in *)&ra.ss)->sin_port);
  CHECK(net_parse_ip("239.255.42.1", 0, &group) == 0);
  CHECK(net_multicast(r, &group, "127.0.0.1", 1) == 0);
  CHECK(net_multicast(r, &group, "no-such-interface0", 1) == -ENODEV);
  int s = net_udp_open(&any, 0);
  CHECK(net_multicast(s, &group, "127.0.0.1", 1) == 0); /* sets the IF */
  CHECK(net_parse_ip("239.255.42.1", port, &dst) == 0);
  CHECK(net_sendto(s, "mc", 2, &dst) == 2);
  wait_readable(r);
  char buf[4];
  CHECK(recv(r, buf, sizeof buf, MSG_DONTWAIT) == 2);
  CHECK(net_multicast(r, &group, "127.0.0.1", 0) == 0);
  CHECK(net_multicast(r, &group, "127.0.0.1", 0) == -EADDRNOTAVAIL);
  close(r);
  close(s);
}

static void test_errcodes(void) {
  CHECK(strcmp(net_errcode(EAGAIN), "wouldblock") == 0);
  CHECK(strcmp(net_errcode(EMSGSIZE), "toolarge") == 0);
  CHECK(strcmp(net_errcode(ECONNREFUSED), "refused") == 0);
  CHECK(strcmp(net_errcode(EAFNOSUPPORT), "invalid") == 0);
  CHECK(strcmp(net_errcode(EACCES), "permission") == 0);
}

/* Broadcast needs SO_BROADCAST: 127.255.255.255 is the loopback network's
 * broadcast address, so nothing leaves the machine. */
static void test_broadcast_flag(void) {
  struct net_addr any, dst;
  CHECK(net_parse_ip("*", 0, &any) == 0);
  int r = net_udp_open(&any, 0);
  struct net_addr ra;
  CHECK(net_local_addr(r, &ra) == 0);
  int port = ntohs(((struct sockaddr_in *)&ra.ss)->sin_port);
  CHECK(net_parse_ip("127.255.255.255", port, &dst) == 0);
  int plain = net_udp_open(&any, 0);
  CHECK(net_sendto(plain, "b", 1, &dst) == -EACCES);
  int bc = net_udp_open(&any, NET_BROADCAST);
  CHECK(net_sendto(bc, "b", 1, &dst) == 1);
  int on = 0;
  CHECK(net_get_int(bc, SOL_SOCKET, SO_BROADCAST, &on) == 0 && on);
  wait_readable(r);
  char buf[2];
  CHECK(recv(r, buf, sizeof buf, MSG_DONTWAIT) == 1);
  close(r);
  close(plain);
  close(bc);
}

int main(void) {
  RUN(test_bind_and_readback);
  RUN(test_recvmmsg_batch_and_trunc);
  RUN(test_sendmmsg);
  RUN(test_connected_refused);
  RUN(test_unix_dgram_and_stale_file);
  RUN(test_check_dgram_rejects_streams);
  RUN(test_v4_mapped);
  RUN(test_dual_stack);
  RUN(test_multicast_loopback);
  RUN(test_errcodes);
  RUN(test_broadcast_flag);
  return CHECK_DONE();
}
