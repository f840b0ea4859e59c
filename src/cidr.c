/*
 * cidr.c -- address ranges for trusted PROXY protocol senders. See cidr.h.
 * No lua.h here.
 */
#include "cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define V4_OFFSET 96 /* IPv4 bits start here in ::ffff:a.b.c.d */

static void map_v4(uint8_t out[16], const void *v4) {
  memset(out, 0, 10);
  out[10] = out[11] = 0xff;
  memcpy(out + 12, v4, 4);
}

/* "/<bits>": digits without leading zeros, at most `max`. */
static int parse_bits(const char *s, unsigned max, unsigned *bits) {
  unsigned v = 0;
  if (*s == '\0' || (s[0] == '0' && s[1] != '\0'))
    return -EINVAL;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return -EINVAL;
    v = v * 10 + (unsigned)(*s - '0');
    if (v > 1000) /* stop before overflow; still out of range */
      return -ERANGE;
  }
  if (v > max)
    return -ERANGE;
  *bits = v;
  return 0;
}

/* Byte i of the mask of a `bits`-long prefix. */
static uint8_t mask_byte(unsigned bits, unsigned i) {
  if (bits >= (i + 1) * 8)
    return 0xff;
  if (bits <= i * 8)
    return 0;
  return (uint8_t)(0xff << (8 - (bits - i * 8)));
}

/* Do a and b agree on the first `bits` bits? */
static int same_prefix(const uint8_t a[16], const uint8_t b[16],
                       unsigned bits) {
  for (unsigned i = 0; i < 16; i++)
    if ((a[i] ^ b[i]) & mask_byte(bits, i))
      return 0;
  return 1;
}

/* Is every bit of `a` past the first `bits` zero? */
static int host_bits_clear(const uint8_t a[16], unsigned bits) {
  for (unsigned i = 0; i < 16; i++)
    if (a[i] & (uint8_t)~mask_byte(bits, i))
      return 0;
  return 1;
}

int cidr_parse(const char *text, struct cidr *c) {
  char host[INET6_ADDRSTRLEN];
  uint8_t v4[4];
  memset(c, 0, sizeof *c);
  if (strcmp(text, "unix") == 0) {
    c->family = AF_UNIX;
    return 0;
  }
  const char *slash = strchr(text, '/');
  size_t hl = slash ? (size_t)(slash - text) : strlen(text);
  if (hl == 0 || hl >= sizeof host)
    return -EINVAL;
  memcpy(host, text, hl);
  host[hl] = '\0';
  c->family = AF_INET6;
  unsigned max = 128, bits = 128;
  if (inet_pton(AF_INET, host, v4) == 1) {
    map_v4(c->addr, v4);
    c->v4 = 1;
    max = 32;
  } else if (inet_pton(AF_INET6, host, c->addr) != 1) {
    return -EINVAL;
  }
  int rc = slash ? parse_bits(slash + 1, max, &bits) : 0;
  if (rc < 0)
    return rc;
  if (!slash)
    bits = max;
  c->bits = c->v4 ? bits + V4_OFFSET : bits;
  return host_bits_clear(c->addr, c->bits) ? 0 : -EDOM;
}

/* The peer's address in the 128-bit space; 0 when it has none. */
static int peer_bits(const struct net_addr *a, uint8_t out[16]) {
  const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
  if (sa->sa_family == AF_INET && a->len >= sizeof(struct sockaddr_in)) {
    map_v4(out, &((const struct sockaddr_in *)sa)->sin_addr);
    return 1;
  }
  if (sa->sa_family == AF_INET6 && a->len >= sizeof(struct sockaddr_in6)) {
    memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    return 1;
  }
  return 0;
}

int cidr_match(const struct cidr *c, const struct net_addr *a) {
  const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
  uint8_t ip[16];
  if (c->family == AF_UNIX)
    return a->len >= sizeof(sa_family_t) && sa->sa_family == AF_UNIX;
  if (c->family != AF_INET6 || !peer_bits(a, ip))
    return 0;
  return same_prefix(ip, c->addr, c->bits);
}

int cidr_match_any(const struct cidr *list, size_t n,
                   const struct net_addr *a) {
  for (size_t i = 0; i < n; i++)
    if (cidr_match(&list[i], a))
      return 1;
  return 0;
}

int cidr_format(const struct cidr *c, char *out, size_t cap) {
  int k;
  if (c->family == AF_UNIX) {
    k = snprintf(out, cap, "unix");
  } else {
    char host[INET6_ADDRSTRLEN];
    int v4 = c->v4 && c->bits >= V4_OFFSET;
    if (inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? c->addr + 12 : c->addr, host,
                  sizeof host) == NULL)
      return -errno;
    k = snprintf(out, cap, "%s/%u", host, v4 ? c->bits - V4_OFFSET : c->bits);
  }
  if (k < 0)
    return -EINVAL;
  return (size_t)k < cap ? k : -ENOSPC;
}
