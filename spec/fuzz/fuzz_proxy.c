/*
 * fuzz_proxy.c -- libFuzzer target for src/proxy_proto.c and src/cidr.c.
 *
 * The first input byte picks a mode, the rest is its operand:
 *   parse:  pp_parse on the bytes (an exact-size heap copy). On success the
 *           length is within the input (<= 107 for v1, ending in CRLF),
 *           every TLV lies inside the header after the fixed part, the
 *           addresses have the length their family needs, and an SSL TLV
 *           decodes. A v1 TCP line rebuilt by pp_build_v1 parses to the
 *           same addresses; a v2 TCP/IPv4 or TCP/IPv6 header without NOOPs
 *           rebuilt by pp_build_v2 from its addresses and TLVs is the same
 *           bytes (its CRC32C included). Fed at fuzzer-chosen cut points
 *           (each prefix a fresh exact-size copy), every prefix gives 0 or
 *           the whole input's result, and prefixes shorter than a header
 *           give 0.
 *   addr:   an address token in a v1 line ("PROXY TCP4 <tok> ..." or TCP6)
 *           is accepted exactly when inet_pton accepts it, with the same
 *           bytes; when it is accepted, every prefix of the line is 0 (our
 *           "can still become an address" never refuses a real one).
 *   build:  random endpoints (IPv4, IPv6, unix path, unnamed or abstract
 *           unix, an unsupported family, NULL) and TLVs go through
 *           pp_build_v1/pp_build_v2 into exact-size buffers (one byte less
 *           is -ENOSPC) and parse back to the same command, family,
 *           addresses (IPv4 mapped when mixed with IPv6) and TLVs.
 *   cidr:   cidr_parse on the text; a rule formats and re-parses to itself,
 *           and cidr_match agrees with a bit-by-bit comparison for a
 *           fuzzer-chosen IPv4 or IPv6 peer.
 *
 * fuzz-sources: src/proxy_proto.c src/cidr.c src/net.c
 *
 * Built by scripts/fuzz with clang -fsanitize=fuzzer,address,undefined and
 * linked against those files directly. Pure C, no Lua.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "cidr.h"
#include "net.h"
#include "proxy_proto.h"

#define FUZZ_NAME "fuzz_proxy"
#include "fuzz.h"

#define MAX_CUTS 24

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL)
    abort();
  return p;
}

static int parse_copy(const uint8_t *s, size_t n, struct pp_header *h) {
  uint8_t *c = xmalloc(n);
  if (n)
    memcpy(c, s, n);
  int rc = pp_parse(c, n, h);
  free(c);
  return rc;
}

static int same_addr(const struct net_addr *a, const struct net_addr *b) {
  return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* --- parse mode ----------------------------------------------------------- */

static void check_addr_len(const struct pp_header *h) {
  socklen_t want = 0;
  if (h->family == AF_INET)
    want = sizeof(struct sockaddr_in);
  else if (h->family == AF_INET6)
    want = sizeof(struct sockaddr_in6);
  if (h->family == AF_UNIX) {
    if (h->src.len < sizeof(sa_family_t) ||
        h->src.len > offsetof(struct sockaddr_un, sun_path) + 108 ||
        h->src.ss.ss_family != AF_UNIX || h->dst.ss.ss_family != AF_UNIX)
      FAIL("bad unix address (len %u)", (unsigned)h->src.len);
  } else if (h->src.len != want || h->dst.len != want ||
             (want && (h->src.ss.ss_family != h->family ||
                       h->dst.ss.ss_family != h->family))) {
    FAIL("family %d with address lengths %u/%u", h->family,
         (unsigned)h->src.len, (unsigned)h->dst.len);
  }
}

static void check_tlvs(const uint8_t *p, size_t rc, const struct pp_header *h) {
  if (h->ntlv > PP_MAX_TLVS || (h->version == 1 && h->ntlv))
    FAIL("ntlv %zu", h->ntlv);
  for (size_t i = 0; i < h->ntlv; i++) {
    const struct pp_tlv *t = &h->tlv[i];
    if (t->off < PP_V2_HDR + 3 || t->off > rc || t->len > rc - t->off)
      FAIL("TLV %zu at %zu+%u outside the %zu-byte header", i, t->off,
           (unsigned)t->len, rc);
    if (p[t->off - 3] != t->type || (p[t->off - 2] << 8 | p[t->off - 1]) !=
                                        t->len)
      FAIL("TLV %zu does not match its bytes", i);
    if (t->type == PP_TLV_NOOP)
      FAIL("NOOP listed");
    struct pp_ssl ssl;
    if (t->type == PP_TLV_SSL && pp_ssl_parse(p + t->off, t->len, &ssl) != 0)
      FAIL("an accepted SSL TLV does not decode");
    if (pp_tlv_find(h, t->type) > (int)i)
      FAIL("pp_tlv_find missed TLV %zu", i);
  }
}

/* Rebuild what was parsed and compare. */
static void check_rebuild(const uint8_t *p, size_t rc,
                          const struct pp_header *h) {
  if (h->version == 1 && (h->family == AF_INET || h->family == AF_INET6)) {
    char line[PP_V1_MAX];
    struct pp_header again;
    int n = pp_build_v1(line, sizeof line, &h->src, &h->dst);
    if (n <= 0 || parse_copy((uint8_t *)line, (size_t)n, &again) != n ||
        !same_addr(&again.src, &h->src) || !same_addr(&again.dst, &h->dst))
      FAIL("v1 line does not rebuild (%d)", n);
  }
  if (h->version != 2 || h->transport != SOCK_STREAM ||
      (h->family != AF_INET && h->family != AF_INET6))
    return;
  struct pp_tlv_in in[PP_MAX_TLVS];
  size_t listed = 0;
  for (size_t i = 0; i < h->ntlv; i++) {
    in[i].type = h->tlv[i].type;
    in[i].value = p + h->tlv[i].off;
    in[i].len = h->tlv[i].len;
    listed += 3 + h->tlv[i].len;
  }
  size_t alen = h->family == AF_INET ? 12 : 36;
  if (PP_V2_HDR + alen + listed != rc) /* NOOPs were dropped */
    return;
  uint8_t *out = xmalloc(rc);
  int n = pp_build_v2(out, rc, &h->src, &h->dst, in, h->ntlv);
  if (n != (int)rc || memcmp(out, p, rc) != 0)
    FAIL("v2 header does not rebuild to the same bytes (%d)", n);
  free(out);
}

static void check_success(const uint8_t *p, size_t n, int rc,
                          const struct pp_header *h) {
  size_t len = (size_t)rc;
  if (len > n)
    FAIL("used %zu of %zu bytes", len, n);
  if (h->version == 1) {
    if (len > PP_V1_MAX || p[len - 2] != '\r' || p[len - 1] != '\n' ||
        memchr(p, '\n', len - 1) != NULL)
      FAIL("v1 line of %zu bytes", len);
    if (h->command != PP_CMD_PROXY)
      FAIL("v1 command %d", h->command);
  } else if (h->version != 2 || len < PP_V2_HDR) {
    FAIL("version %d, length %zu", h->version, len);
  }
  if (h->command == PP_CMD_LOCAL && (h->family || h->ntlv || h->src.len))
    FAIL("LOCAL with family %d", h->family);
  check_addr_len(h);
  check_tlvs(p, len, h);
  check_rebuild(p, len, h);
}

static void check_prefixes(const uint8_t *p, size_t n, int whole,
                           const struct pp_header *hw, const uint8_t *sel,
                           size_t nsel) {
  size_t at = 0;
  for (size_t i = 0; i < nsel && i < MAX_CUTS && at < n; i++) {
    at += 1 + sel[i] % 16;
    if (at > n)
      at = n;
    struct pp_header h;
    int rc = parse_copy(p, at, &h);
    if (whole > 0 && at < (size_t)whole && rc != 0)
      FAIL("prefix %zu of a %d-byte header gave %d", at, whole, rc);
    if (rc != 0 && rc != whole)
      FAIL("prefix %zu gave %d, the whole input %d", at, rc, whole);
    if (rc > 0 && memcmp(&h, hw, sizeof h) != 0)
      FAIL("prefix %zu parsed to another header", at);
  }
}

static void mode_parse(const uint8_t *d, size_t n) {
  struct pp_header h;
  int rc = parse_copy(d, n, &h);
  if (rc > 0)
    check_success(d, n, rc, &h);
  else if (rc == 0 && n >= PP_V2_MAX)
    FAIL("still incomplete after %zu bytes", n);
  if (pp_strerror(rc) == NULL)
    FAIL("no text for %d", rc);
  size_t nsel = n < MAX_CUTS ? n : MAX_CUTS;
  check_prefixes(d, n, rc, &h, d + n - nsel, nsel);
}

/* --- addr mode ------------------------------------------------------------ */

static void mode_addr(const uint8_t *d, size_t n) {
  if (n < 1)
    return;
  int v6 = d[0] & 1;
  size_t tl = n - 1 > 60 ? 60 : n - 1;
  const uint8_t *tok = d + 1;
  if (memchr(tok, 0, tl) || memchr(tok, ' ', tl) || memchr(tok, '\r', tl) ||
      memchr(tok, '\n', tl))
    return; /* inet_pton needs a C string; spaces end a v1 field */
  char text[64], line[128];
  memcpy(text, tok, tl);
  text[tl] = '\0';
  uint8_t want[16];
  int ok = inet_pton(v6 ? AF_INET6 : AF_INET, text, want) == 1;
  const char *pre = v6 ? "PROXY TCP6 " : "PROXY TCP4 ";
  const char *other = v6 ? " ::1 1 2\r\n" : " 1.1.1.1 1 2\r\n";
  int k = snprintf(line, sizeof line, "%s%s%s", pre, text, other);
  struct pp_header h;
  int rc = parse_copy((uint8_t *)line, (size_t)k, &h);
  if ((rc > 0) != ok)
    FAIL("'%s' (%s): parser %d, inet_pton %d", text, v6 ? "v6" : "v4", rc,
         ok);
  if (!ok)
    return;
  const void *got = v6 ? (const void *)&((struct sockaddr_in6 *)&h.src.ss)
                             ->sin6_addr
                       : (const void *)&((struct sockaddr_in *)&h.src.ss)
                             ->sin_addr;
  if (memcmp(got, want, v6 ? 16 : 4) != 0)
    FAIL("'%s' parsed to other bytes than inet_pton's", text);
  for (size_t i = 11; i < 11 + tl; i++)
    if (parse_copy((uint8_t *)line, i, &h) != 0)
      FAIL("'%s': the prefix of %zu bytes was refused", text, i - 11);
}

/* --- build mode ----------------------------------------------------------- */

static void in_bytes(struct in *in, void *out, size_t n) {
  uint8_t *o = out;
  for (size_t i = 0; i < n; i++)
    o[i] = in_u8(in);
}

/* An endpoint: NULL, IPv4, IPv6, unix path/unnamed/abstract, or AF_APPLETALK
 * (a family the protocol has no place for). Canonical: zeroed padding. */
static const struct net_addr *make_addr(struct in *in, struct net_addr *a) {
  uint8_t sel = in_u8(in);
  memset(a, 0, sizeof *a);
  switch (sel % 7) {
  case 0: return NULL;
  case 1: {
    struct sockaddr_in *s = (struct sockaddr_in *)&a->ss;
    s->sin_family = AF_INET;
    in_bytes(in, &s->sin_addr, 4);
    in_bytes(in, &s->sin_port, 2);
    a->len = sizeof *s;
    return a;
  }
  case 2: {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&a->ss;
    s->sin6_family = AF_INET6;
    in_bytes(in, &s->sin6_addr, 16);
    in_bytes(in, &s->sin6_port, 2);
    a->len = sizeof *s;
    return a;
  }
  case 3: { /* a path: non-NUL bytes, NUL-terminated unless 108 long */
    struct sockaddr_un *s = (struct sockaddr_un *)&a->ss;
    size_t len = 1 + in_u8(in) % 108;
    s->sun_family = AF_UNIX;
    for (size_t i = 0; i < len; i++)
      s->sun_path[i] = (char)(in_u8(in) | 1);
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                         (len < 108));
    return a;
  }
  case 4: /* unnamed */
    a->ss.ss_family = AF_UNIX;
    a->len = sizeof(sa_family_t);
    return a;
  case 5: { /* abstract: NUL, then a name not ending in NUL */
    struct sockaddr_un *s = (struct sockaddr_un *)&a->ss;
    size_t len = 1 + in_u8(in) % 107;
    s->sun_family = AF_UNIX;
    in_bytes(in, s->sun_path + 1, len);
    s->sun_path[len] |= 1;
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
    return a;
  }
  default:
    a->ss.ss_family = AF_APPLETALK;
    a->len = sizeof a->ss;
    return a;
  }
}

/* The address a parser gives back for `a` when the pair was mixed
 * IPv4/IPv6: IPv4 as ::ffff:a.b.c.d. */
static struct net_addr mapped(const struct net_addr *a) {
  const struct sockaddr_in *s = (const struct sockaddr_in *)&a->ss;
  if (s->sin_family != AF_INET)
    return *a;
  struct net_addr m;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&m.ss;
  memset(&m, 0, sizeof m);
  s6->sin6_family = AF_INET6;
  s6->sin6_port = s->sin_port;
  s6->sin6_addr.s6_addr[10] = s6->sin6_addr.s6_addr[11] = 0xff;
  memcpy(&s6->sin6_addr.s6_addr[12], &s->sin_addr, 4);
  m.len = sizeof *s6;
  return m;
}

/* TLVs the parser must accept: safe types, at most one CRC32C/NETNS. */
static size_t make_tlvs(struct in *in, struct pp_tlv_in *t, uint8_t *store) {
  static const uint8_t types[] = {PP_TLV_ALPN, PP_TLV_NOOP, 0xE0, 0xE7,
                                  0xEF, 0xF3, PP_TLV_CRC32C, PP_TLV_NETNS};
  size_t nt = in_u8(in) % 7, used = 0, k = 0;
  int once = 0;
  for (size_t i = 0; i < nt; i++) {
    uint8_t ty = types[in_u8(in) % sizeof types];
    if (ty == PP_TLV_CRC32C || ty == PP_TLV_NETNS || ty == PP_TLV_ALPN) {
      int bit = ty == PP_TLV_CRC32C ? 1 : ty == PP_TLV_NETNS ? 2 : 4;
      if (once & bit)
        continue;
      once |= bit;
    }
    size_t len = in_u8(in) % 40;
    in_bytes(in, store + used, len);
    t[k].type = ty;
    t[k].value = len ? store + used : NULL;
    t[k].len = len;
    used += len;
    k++;
  }
  return k;
}

static int expect_family(const struct net_addr *s, const struct net_addr *d) {
  int fs = s->ss.ss_family, fd = d->ss.ss_family;
  int ips = fs == AF_INET || fs == AF_INET6, ipd = fd == AF_INET ||
                                                   fd == AF_INET6;
  if (ips && ipd)
    return fs == fd ? fs : AF_INET6;
  return fs == AF_UNIX && fd == AF_UNIX ? AF_UNIX : AF_UNSPEC;
}

/* s and d may be NULL when fam is AF_UNSPEC. */
static void check_addrs(const struct pp_header *h, const struct net_addr *s,
                        const struct net_addr *d, int fam, const char *what) {
  if (h->family != fam)
    FAIL("%s: family %d, want %d", what, h->family, fam);
  if (fam == AF_UNSPEC) {
    if (h->src.len || h->dst.len)
      FAIL("%s: addresses with family UNSPEC", what);
    return;
  }
  struct net_addr ws = fam == AF_INET6 ? mapped(s) : *s;
  struct net_addr wd = fam == AF_INET6 ? mapped(d) : *d;
  if (!same_addr(&h->src, &ws) || !same_addr(&h->dst, &wd))
    FAIL("%s: addresses differ after the round trip", what);
}

static void build_v1(const struct net_addr *s, const struct net_addr *d) {
  char line[PP_V1_MAX];
  struct pp_header h;
  int n = pp_build_v1(line, sizeof line, s, d);
  if ((s == NULL) != (d == NULL)) {
    if (n != -EINVAL)
      FAIL("v1 with one NULL endpoint: %d", n);
    return;
  }
  if (n <= 0)
    FAIL("pp_build_v1: %d", n);
  char *exact = xmalloc((size_t)n - 1);
  if (pp_build_v1(exact, (size_t)n - 1, s, d) != -ENOSPC)
    FAIL("v1 into %d bytes did not fail", n - 1);
  free(exact);
  if (parse_copy((uint8_t *)line, (size_t)n, &h) != n)
    FAIL("built v1 line does not parse: %.*s", n, line);
  int fam = s ? expect_family(s, d) : AF_UNSPEC;
  check_addrs(&h, s, d, fam == AF_UNIX ? AF_UNSPEC : fam, "v1");
}

static void check_v2_tlvs(const uint8_t *out, const struct pp_header *h,
                          const struct pp_tlv_in *t, size_t nt) {
  size_t j = 0;
  for (size_t i = 0; i < nt; i++) {
    if (t[i].type == PP_TLV_NOOP)
      continue;
    if (j >= h->ntlv || h->tlv[j].type != t[i].type)
      FAIL("TLV %zu lost in the round trip", i);
    size_t len = t[i].type == PP_TLV_CRC32C ? 4 : t[i].len;
    if (h->tlv[j].len != len ||
        (t[i].type != PP_TLV_CRC32C && len &&
         memcmp(out + h->tlv[j].off, t[i].value, len) != 0))
      FAIL("TLV %zu value differs", i);
    j++;
  }
  if (j != h->ntlv)
    FAIL("%zu TLVs parsed, %zu sent", h->ntlv, j);
}

static void build_v2(const struct net_addr *s, const struct net_addr *d,
                     const struct pp_tlv_in *t, size_t nt) {
  uint8_t big[1024];
  struct pp_header h;
  int n = pp_build_v2(big, sizeof big, s, d, t, nt);
  if ((s == NULL) != (d == NULL)) {
    if (n != -EINVAL)
      FAIL("v2 with one NULL endpoint: %d", n);
    return;
  }
  if (n <= 0)
    FAIL("pp_build_v2: %d", n);
  uint8_t *exact = xmalloc((size_t)n);
  if (pp_build_v2(exact, (size_t)n - 1, s, d, t, nt) != -ENOSPC ||
      pp_build_v2(exact, (size_t)n, s, d, t, nt) != n ||
      memcmp(exact, big, (size_t)n) != 0)
    FAIL("v2 into an exact buffer differs");
  if (parse_copy(exact, (size_t)n, &h) != n)
    FAIL("built v2 header does not parse");
  if (s == NULL) {
    if (h.command != PP_CMD_LOCAL)
      FAIL("no endpoints but not LOCAL");
  } else {
    check_addrs(&h, s, d, expect_family(s, d), "v2");
    check_v2_tlvs(exact, &h, t, nt);
  }
  free(exact);
}

static void mode_build(const uint8_t *d, size_t n) {
  struct in in = {d, n};
  struct net_addr sa, da;
  const struct net_addr *s = make_addr(&in, &sa);
  const struct net_addr *dd = make_addr(&in, &da);
  struct pp_tlv_in t[8];
  uint8_t store[8 * 40];
  size_t nt = make_tlvs(&in, t, store);
  build_v1(s, dd);
  build_v2(s, dd, t, nt);
}

/* --- cidr mode ------------------------------------------------------------ */

static int bit(const uint8_t *a, unsigned i) {
  return a[i / 8] >> (7 - i % 8) & 1;
}

static void mode_cidr(const uint8_t *d, size_t n) {
  if (n < 17)
    return;
  size_t tl = n - 17 > 60 ? 60 : n - 17;
  char text[64];
  memcpy(text, d + 17, tl);
  text[tl] = '\0';
  struct cidr c, again;
  int rc = cidr_parse(text, &c);
  if (rc != 0 && rc != -EINVAL && rc != -ERANGE && rc != -EDOM)
    FAIL("cidr_parse('%s') = %d", text, rc);
  if (rc != 0)
    return;
  char out[CIDR_STRLEN];
  int k = cidr_format(&c, out, sizeof out);
  if (k <= 0 || cidr_parse(out, &again) != 0 ||
      memcmp(&again, &c, sizeof c) != 0)
    FAIL("'%s' formats as '%s', which does not read back", text, out);
  /* A peer: IPv4 (compared as ::ffff:a.b.c.d) or IPv6. */
  struct net_addr a;
  uint8_t bits128[16];
  memset(&a, 0, sizeof a);
  if (d[0] & 1) {
    struct sockaddr_in *s = (struct sockaddr_in *)&a.ss;
    s->sin_family = AF_INET;
    memcpy(&s->sin_addr, d + 1, 4);
    a.len = sizeof *s;
    memset(bits128, 0, 10);
    bits128[10] = bits128[11] = 0xff;
    memcpy(bits128 + 12, d + 1, 4);
  } else {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&a.ss;
    s->sin6_family = AF_INET6;
    memcpy(&s->sin6_addr, d + 1, 16);
    a.len = sizeof *s;
    memcpy(bits128, d + 1, 16);
  }
  int want = c.family == AF_INET6;
  for (unsigned i = 0; want && i < c.bits; i++)
    want = bit(bits128, i) == bit(c.addr, i);
  if (cidr_match(&c, &a) != want)
    FAIL("cidr_match('%s') = %d, bitwise %d", text, !want, want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  const uint8_t *d = data + 1;
  size_t n = size - 1;
  switch (data[0] % 4) {
  case 0: mode_parse(d, n); break;
  case 1: mode_addr(d, n); break;
  case 2: mode_build(d, n); break;
  default: mode_cidr(d, n); break;
  }
  return 0;
}
