/*
 * cidr.h -- address ranges ("10.0.0.0/8", "fd00::/8", "unix"), to decide
 * which peers are trusted to send a PROXY protocol header.
 *
 * Contract: no lua.h here. 0/-errno results. Matching happens in one
 * 128-bit space: an IPv4 rule a.b.c.d/p is stored as ::ffff:a.b.c.d/(96+p),
 * and an IPv4 peer is looked at as ::ffff:a.b.c.d, so
 *   - an IPv4 rule matches the same address seen as an IPv4-mapped IPv6
 *     peer (a dual-stack listener), and "::ffff:10.0.0.0/104" is the same
 *     rule as "10.0.0.0/8";
 *   - an IPv6 rule whose range covers ::ffff:0:0/96 matches IPv4 peers too:
 *     "::/0" is everyone, "0.0.0.0/0" every IPv4 peer.
 * "unix" matches peers on unix sockets (a local balancer), nothing else.
 *
 * Syntax: an address as inet_pton reads it (no leading zeros in IPv4, no
 * zone, no brackets), optionally "/" and a prefix length without leading
 * zeros. No prefix means the single address (/32, /128). Refused:
 *   -EINVAL  anything that does not read as above;
 *   -ERANGE  a prefix longer than the family has (/33, /129);
 *   -EDOM    address bits set past the prefix ("10.1.0.0/8"): likely a
 *            typo for another range, so it is an error rather than masked.
 */
#ifndef BERTH_CIDR_H
#define BERTH_CIDR_H

#include <stddef.h>
#include <stdint.h>

#include "net.h"

/* Longest text cidr_format writes: an IPv6 literal, "/128", NUL. */
#define CIDR_STRLEN 51

struct cidr {
  int family;       /* AF_INET6 (every IP rule) or AF_UNIX ("unix") */
  uint8_t addr[16]; /* the network; IPv4 rules as ::ffff:a.b.c.d */
  unsigned bits;    /* prefix length in the 128-bit space */
  int v4;           /* written as IPv4: format it that way */
};

int cidr_parse(const char *text, struct cidr *c);

/* 1 when `a` is inside the range, else 0 (other families never match). */
int cidr_match(const struct cidr *c, const struct net_addr *a);

/* 1 when any of list[0..n) matches `a`. */
int cidr_match_any(const struct cidr *list, size_t n,
                   const struct net_addr *a);

/* The rule as text ("10.0.0.0/8", "fd00::/8", "unix"): its length, or
 * -ENOSPC. cidr_parse reads it back to the same rule. */
int cidr_format(const struct cidr *c, char *out, size_t cap);

#endif
