/*
 * unit.c -- C unit tests for the pure layers (buffer.c, net.c addresses).
 * Prints one line per failure and ends with "N passed, N failed"; exits
 * non-zero on any failure.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buffer.h"
#include "net.h"
#include "check.h"

static void test_append_consume(void) {
  struct buf b = BUF_INIT;
  CHECK(buf_append(&b, "hello ", 6) == 0);
  CHECK(buf_append(&b, "world", 5) == 0);
  CHECK(b.len == 11 && memcmp(buf_begin(&b), "hello world", 11) == 0);
  buf_consume(&b, 6);
  CHECK(b.len == 5 && memcmp(buf_begin(&b), "world", 5) == 0);
  buf_consume(&b, 100);
  CHECK(b.len == 0 && b.off == 0);
  buf_free(&b);
  CHECK(b.data == NULL && b.cap == 0);
}

static void test_growth_keeps_bytes(void) {
  struct buf b = BUF_INIT;
  char chunk[1000];
  for (int i = 0; i < 1000; i++) {
    memset(chunk, 'a' + i % 26, sizeof chunk);
    CHECK(buf_append(&b, chunk, sizeof chunk) == 0);
    if (i % 3 == 0)
      buf_consume(&b, 500);
  }
  size_t expect = 1000 * 1000 - 334 * 500;
  CHECK(b.len == expect);
  /* After consuming, the first byte is from the chunk that starts there. */
  size_t consumed = 334 * 500;
  CHECK(buf_begin(&b)[0] == 'a' + (int)(consumed / 1000) % 26);
  buf_free(&b);
}

static void test_reserve_commit(void) {
  struct buf b = BUF_INIT;
  char *tail = buf_reserve(&b, 100);
  CHECK(tail != NULL && buf_room(&b) >= 100);
  memcpy(tail, "abc", 3);
  buf_commit(&b, 3);
  CHECK(b.len == 3 && memcmp(buf_begin(&b), "abc", 3) == 0);
  buf_consume(&b, 2);
  /* Sliding reuses the front instead of growing. */
  size_t cap = b.cap;
  CHECK(buf_reserve(&b, cap - 1) != NULL && b.cap == cap && b.off == 0);
  CHECK(buf_begin(&b)[0] == 'c');
  buf_free(&b);
}

static void test_find_line(void) {
  size_t len, total;
  CHECK(buf_find_line("abc\r\ndef", 8, 0, &len, &total) == 0);
  CHECK(len == 3 && total == 5);
  CHECK(buf_find_line("abc\ndef", 7, 0, &len, &total) == 0);
  CHECK(len == 3 && total == 4);
  CHECK(buf_find_line("\n", 1, 0, &len, &total) == 0 && len == 0 && total == 1);
  CHECK(buf_find_line("\r\n", 2, 0, &len, &total) == 0 && len == 0 && total == 2);
  CHECK(buf_find_line("abc", 3, 0, &len, &total) == -1);
  CHECK(buf_find_line("abc\r", 4, 0, &len, &total) == -1);
  CHECK(buf_find_line("a\nb\n", 4, 2, &len, &total) == 0 && total == 4 && len == 3);
  CHECK(buf_find_line("abc", 3, 5, &len, &total) == -1);
}

static void test_find_delim(void) {
  const char *s = "GET / HTTP/1.1\r\nHost: x\r\n\r\nbody";
  size_t n = strlen(s);
  CHECK(buf_find(s, n, 0, "\r\n\r\n", 4) == 23);
  CHECK(buf_find(s, n, 24, "\r\n\r\n", 4) == -1);
  CHECK(buf_find(s, n, 0, "zz", 2) == -1);
  CHECK(buf_find("ab", 2, 0, "abc", 3) == -1);
  CHECK(buf_find("xxab", 4, 0, "ab", 2) == 2);
  CHECK(buf_find("ab", 2, 0, "", 0) == -1);
  CHECK(buf_find("a\0b", 3, 0, "\0b", 2) == 1); /* binary safe */
}

static void roundtrip(const char *host, int port, const char *want) {
  struct net_addr a;
  char text[NET_ADDRSTRLEN];
  int got = -1;
  CHECK(net_parse_ip(host, port, &a) == 0);
  CHECK(net_format_addr(&a, text, sizeof text, &got) == 0);
  CHECK(strcmp(text, want) == 0 && got == port);
}

static void test_addresses(void) {
  struct net_addr a;
  roundtrip("127.0.0.1", 80, "127.0.0.1");
  roundtrip("::1", 8080, "::1");
  roundtrip("[::1]", 1, "::1");
  roundtrip("*", 0, "0.0.0.0");
  roundtrip("localhost", 65535, "127.0.0.1");
  roundtrip("2001:db8::1", 443, "2001:db8::1");
  CHECK(net_parse_ip("example.com", 80, &a) == -EINVAL);
  CHECK(net_parse_ip("256.1.1.1", 80, &a) == -EINVAL);
  CHECK(net_parse_ip("127.0.0.1", 65536, &a) == -EINVAL);
  CHECK(net_parse_ip("127.0.0.1", -1, &a) == -EINVAL);
  CHECK(net_parse_ip("[::1", 80, &a) == -EINVAL);
  char text[NET_ADDRSTRLEN];
  int port;
  CHECK(net_parse_unix("/tmp/x.sock", &a) == 0);
  CHECK(net_format_addr(&a, text, sizeof text, &port) == 0);
  CHECK(strcmp(text, "/tmp/x.sock") == 0 && port == 0);
  char longpath[200];
  memset(longpath, 'a', sizeof longpath - 1);
  longpath[sizeof longpath - 1] = '\0';
  CHECK(net_parse_unix(longpath, &a) == -ENAMETOOLONG);
  CHECK(net_parse_unix("", &a) == -ENAMETOOLONG);
}

static void test_listen_errors(void) {
  struct net_addr a;
  CHECK(net_parse_ip("127.0.0.1", 0, &a) == 0);
  int fd = net_listen(&a, 16, NET_REUSEADDR);
  CHECK(fd >= 0);
  struct net_addr bound;
  CHECK(net_local_addr(fd, &bound) == 0);
  char text[NET_ADDRSTRLEN];
  int port = 0;
  CHECK(net_format_addr(&bound, text, sizeof text, &port) == 0 && port > 0);
  CHECK(net_parse_ip("127.0.0.1", port, &a) == 0);
  CHECK(net_listen(&a, 16, 0) == -EADDRINUSE);
  CHECK(net_check_listening(fd) == 0);
  CHECK(net_accept(fd, NULL) == -EAGAIN);
  CHECK(strcmp(net_errcode(EADDRINUSE), "addrinuse") == 0);
  CHECK(strcmp(net_errcode(ECONNRESET), "reset") == 0);
  CHECK(strcmp(net_errcode(ECONNREFUSED), "refused") == 0);
  CHECK(strcmp(net_errcode(ENOENT), "notfound") == 0); /* a unix path */
  CHECK(strcmp(net_errcode(ENOTDIR), "notfound") == 0);
  CHECK(strcmp(net_errcode(ENOTSOCK), "invalid") == 0);
  CHECK(strcmp(net_errcode(EPROTONOSUPPORT), "unsupported") == 0);
  CHECK(strcmp(net_errcode(EAFNOSUPPORT), "invalid") == 0); /* another family */
  CHECK(strcmp(net_errcode(EIO), "error") == 0);
  close(fd);
}

int main(void) {
  RUN(test_append_consume);
  RUN(test_growth_keeps_bytes);
  RUN(test_reserve_commit);
  RUN(test_find_line);
  RUN(test_find_delim);
  RUN(test_addresses);
  RUN(test_listen_errors);
  return CHECK_DONE();
}
