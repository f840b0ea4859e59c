/*
 * fuzz_addr.c -- libFuzzer target for the address functions of src/net.c.
 *
 * The first input byte picks a mode, the rest is the operand:
 *   ip:     net_parse_ip(text, port). Whatever parses must be AF_INET or
 *           AF_INET6 with the matching length, must format (net_format_addr)
 *           into NET_ADDRSTRLEN with the same port, and the formatted text
 *           must re-parse to the same bytes and format to the same text.
 *           A refusal must be -EINVAL, and out-of-range ports are refused.
 *   unix:   net_parse_unix(text). Same round trip; the formatted path must be
 *           the input path itself. A refusal must be -ENAMETOOLONG for an
 *           empty or too long path.
 *   raw:    net_format_addr on arbitrary struct net_addr bytes (family, len,
 *           sun_path without a NUL...) into a heap buffer of a fuzzer-chosen
 *           size: it must not crash or write past the buffer, and on success
 *           the text is NUL-terminated inside it.
 * Strings are copied into exact-size heap blocks so ASan sees overreads.
 *
 * fuzz-sources: src/net.c
 *
 * Built by scripts/fuzz with clang -fsanitize=fuzzer,address,undefined and
 * linked against src/net.c directly. Pure C, no Lua.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "net.h"

#define FUZZ_NAME "fuzz_addr"
#include "fuzz.h"

/* A NUL-terminated heap copy of p[0..n), cut at the first NUL. */
static char *cstr(const uint8_t *p, size_t n) {
  const uint8_t *z = memchr(p, 0, n);
  if (z)
    n = (size_t)(z - p);
  char *s = malloc(n + 1);
  if (s == NULL)
    abort();
  memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

static void check_family(const struct net_addr *a, const char *what) {
  int fam = ((const struct sockaddr *)&a->ss)->sa_family;
  if (fam == AF_INET && a->len == sizeof(struct sockaddr_in))
    return;
  if (fam == AF_INET6 && a->len == sizeof(struct sockaddr_in6))
    return;
  FAIL("%s: parsed to family %d len %u", what, fam, (unsigned)a->len);
}

/* Format `a` into an exact NET_ADDRSTRLEN heap block; returns the text. */
static char *format(const struct net_addr *a, int *port, const char *what) {
  char *text = malloc(NET_ADDRSTRLEN);
  if (text == NULL)
    abort();
  int rc = net_format_addr(a, text, NET_ADDRSTRLEN, port);
  if (rc != 0)
    FAIL("%s: parsed but does not format (%d)", what, rc);
  if (memchr(text, 0, NET_ADDRSTRLEN) == NULL)
    FAIL("%s: formatted text not terminated", what);
  return text;
}

static void fuzz_ip(const uint8_t *data, size_t size) {
  if (size < 2)
    return;
  /* Port: mostly valid, sometimes out of range on either side. */
  int port = data[0] << 8 | data[1];
  if (size > 2 && data[2] == 0xff)
    port = data[0] & 1 ? 65536 + data[1] : -1 - data[1];
  char *host = cstr(data + 2, size - 2);
  struct net_addr a, b;
  memset(&a, 0x5a, sizeof a);
  int rc = net_parse_ip(host, port, &a);
  if (rc != 0) {
    if (rc != -EINVAL)
      FAIL("parse_ip(\"%s\", %d) = %d, not -EINVAL", host, port, rc);
    free(host);
    return;
  }
  if (port < 0 || port > 65535)
    FAIL("parse_ip accepted port %d", port);
  check_family(&a, host);
  int port2 = -2;
  char *text = format(&a, &port2, host);
  if (port2 != port)
    FAIL("\"%s\": port %d formats as %d", host, port, port2);
  memset(&b, 0xa5, sizeof b);
  rc = net_parse_ip(text, port2, &b);
  if (rc != 0)
    FAIL("\"%s\" formats as \"%s\", which does not parse (%d)", host, text,
         rc);
  if (a.len != b.len || memcmp(&a.ss, &b.ss, a.len) != 0)
    FAIL("\"%s\" -> \"%s\" re-parses to different bytes", host, text);
  int port3 = -2;
  char *text2 = format(&b, &port3, text);
  if (strcmp(text, text2) != 0 || port3 != port)
    FAIL("\"%s\" formats as \"%s\", then \"%s\"", host, text, text2);
  free(text2);
  free(text);
  free(host);
}

static void fuzz_unix(const uint8_t *data, size_t size) {
  char *path = cstr(data, size);
  size_t n = strlen(path);
  struct net_addr a, b;
  memset(&a, 0x5a, sizeof a);
  int rc = net_parse_unix(path, &a);
  size_t max = sizeof(((struct sockaddr_un *)0)->sun_path);
  if (rc != 0) {
    if (rc != -ENAMETOOLONG || (n > 0 && n < max))
      FAIL("parse_unix(len %zu) = %d", n, rc);
    free(path);
    return;
  }
  if (n == 0 || n >= max)
    FAIL("parse_unix accepted a path of %zu bytes", n);
  if (((struct sockaddr *)&a.ss)->sa_family != AF_UNIX)
    FAIL("parse_unix: family %d", ((struct sockaddr *)&a.ss)->sa_family);
  int port = -2;
  char *text = format(&a, &port, "unix");
  if (port != 0 || strcmp(text, path) != 0)
    FAIL("unix path of %zu bytes formats as %zu bytes, port %d", n,
         strlen(text), port);
  memset(&b, 0xa5, sizeof b);
  if (net_parse_unix(text, &b) != 0)
    FAIL("unix: formatted path does not re-parse");
  if (a.len != b.len || memcmp(&a.ss, &b.ss, a.len) != 0)
    FAIL("unix: re-parse gives different bytes");
  free(text);
  free(path);
}

static void fuzz_raw(const uint8_t *data, size_t size) {
  struct net_addr a;
  memset(&a, 0, sizeof a);
  if (size < 3)
    return;
  size_t hostlen = data[0] % (NET_ADDRSTRLEN + 2);
  static const int fams[4] = {AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC};
  int fam = data[1] & 4 ? data[1] : fams[data[1] & 3];
  data += 2;
  size -= 2;
  size_t n = size < sizeof a.ss ? size : sizeof a.ss;
  memcpy(&a.ss, data, n);
  ((struct sockaddr *)&a.ss)->sa_family = (sa_family_t)fam;
  /* len: what was given, or the size of the whole storage. */
  a.len = (socklen_t)(size > sizeof a.ss ? data[sizeof a.ss] * 2u
                                         : (unsigned)n);
  char *host = malloc(hostlen ? hostlen : 1);
  if (host == NULL)
    abort();
  int port = -2;
  int rc = net_format_addr(&a, host, hostlen, &port);
  if (rc == 0) {
    if (hostlen == 0 || memchr(host, 0, hostlen) == NULL)
      FAIL("format_addr succeeded without a terminated text");
    if (port < 0 || port > 65535)
      FAIL("format_addr port %d", port);
  } else if (rc > 0) {
    FAIL("format_addr returned %d", rc);
  }
  free(host);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  switch (data[0] % 3) {
  case 0: fuzz_ip(data + 1, size - 1); break;
  case 1: fuzz_unix(data + 1, size - 1); break;
  default: fuzz_raw(data + 1, size - 1); break;
  }
  return 0;
}
