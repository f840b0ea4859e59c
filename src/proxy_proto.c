/*
 * proxy_proto.c -- PROXY protocol v1/v2 parsing and building. See
 * proxy_proto.h for the contract and the accepted syntax. No lua.h here.
 *
 * Invariants: nothing is read at or past p[n]; every TLV offset reported
 * lies inside the header; pp_parse's result does not depend on how the
 * bytes were split (0 is only returned for a prefix of something valid, so
 * an error seen early is the error the whole input gives).
 *
 * The address parsers are our own rather than inet_pton because they must
 * also answer "can these bytes still become an address?" for a v1 line
 * that has not all arrived; the fuzz target checks them against inet_pton.
 */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[6] = {'P', 'R', 'O', 'X', 'Y', ' '};

#define UNIX_FIELD 108 /* a v2 AF_UNIX address, as sun_path on Linux */
#define UNIQUE_ID_MAX 128

/* Result of a field parser: the field is valid (final) or can still grow
 * into a valid one (partial), or it cannot. */
#define FIELD_OK 0
#define FIELD_BAD (-1)

/* --- CRC32C --------------------------------------------------------------- */

/* The reflected Castagnoli polynomial 0x82F63B78 applied to each nibble:
 * two lookups per byte, and a table small enough to check by eye (the unit
 * test recomputes it bit by bit). */
static const uint32_t crc_nibble[16] = {
    0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1, 0x417b1dbc, 0x5125dad3,
    0x61c69362, 0x7198540d, 0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9,
    0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75};

uint32_t pp_crc32c(uint32_t crc, const void *p, size_t n) {
  const uint8_t *b = p;
  crc = ~crc;
  for (size_t i = 0; i < n; i++) {
    crc ^= b[i];
    crc = (crc >> 4) ^ crc_nibble[crc & 15];
    crc = (crc >> 4) ^ crc_nibble[crc & 15];
  }
  return ~crc;
}

static uint16_t get16(const uint8_t *p) {
  return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

static void put16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

/* --- v1 fields ------------------------------------------------------------ */

/* A dotted quad s[0..n): 0-255 each, no leading zeros. Partial: can it
 * still become one? Every state this accepts can (add digits and dots). */
static int ip4_parse(const char *s, size_t n, int final, uint8_t out[4]) {
  unsigned v = 0, parts = 0, digits = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c >= '0' && c <= '9') {
      if (digits == 1 && v == 0) /* "01": octal-looking, refused */
        return FIELD_BAD;
      v = v * 10 + (unsigned)(c - '0');
      if (v > 255)
        return FIELD_BAD;
      digits++;
    } else if (c == '.' && digits > 0 && parts < 3) {
      out[parts++] = (uint8_t)v;
      v = digits = 0;
    } else {
      return FIELD_BAD;
    }
  }
  if (!final)
    return FIELD_OK;
  if (parts != 3 || digits == 0)
    return FIELD_BAD;
  out[3] = (uint8_t)v;
  return FIELD_OK;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* IPv6 parse state: groups so far and where "::" stood (-1: none). */
struct ip6 {
  uint16_t g[8];
  int ng, gap;
};

/* The most groups the address may still hold: 8, or 7 when "::" must
 * stand for at least one. */
static int ip6_room(const struct ip6 *a) {
  return a->gap >= 0 ? 7 : 8;
}

static void ip6_fill(const struct ip6 *a, uint8_t out[16]) {
  int at = 0;
  memset(out, 0, 16);
  for (int i = 0; i < a->ng; i++) {
    if (i == a->gap) /* "::" stands for the groups that are missing */
      at += 8 - a->ng;
    out[2 * at] = (uint8_t)(a->g[i] >> 8);
    out[2 * at + 1] = (uint8_t)a->g[i];
    at++;
  }
}

/* The dotted-quad tail of an IPv6 address: the last 32 bits, nothing may
 * follow it, so the group count must already be right. */
static int ip6_v4tail(const char *s, size_t n, int final, struct ip6 *a,
                      uint8_t out[16]) {
  uint8_t q[4];
  if (ip4_parse(s, n, final, q) != FIELD_OK)
    return FIELD_BAD;
  if (a->gap >= 0 ? a->ng + 2 > 7 : a->ng + 2 != 8)
    return FIELD_BAD;
  if (final) {
    a->g[a->ng++] = (uint16_t)(q[0] << 8 | q[1]);
    a->g[a->ng++] = (uint16_t)(q[2] << 8 | q[3]);
    ip6_fill(a, out);
  }
  return FIELD_OK;
}

/* The text ended right after a separator (sep: 0 none, 1 ':', 2 "::"). */
static int ip6_end_at_sep(const struct ip6 *a, int sep, int final,
                          uint8_t out[16]) {
  if (sep == 2) { /* "x::" is complete; it may also grow */
    if (a->ng > 7)
      return FIELD_BAD;
    if (final)
      ip6_fill(a, out);
    return FIELD_OK;
  }
  if (final) /* "" or "x:" */
    return FIELD_BAD;
  return sep == 0 || a->ng + 1 <= ip6_room(a) ? FIELD_OK : FIELD_BAD;
}

/* The text ended inside a group of hex digits worth v. */
static int ip6_end_in_group(struct ip6 *a, unsigned v, int final,
                            uint8_t out[16]) {
  if (a->ng + 1 > ip6_room(a))
    return FIELD_BAD;
  if (!final)
    return FIELD_OK;
  if (a->gap < 0 && a->ng + 1 != 8)
    return FIELD_BAD;
  a->g[a->ng++] = (uint16_t)v;
  ip6_fill(a, out);
  return FIELD_OK;
}

/*
 * An IPv6 literal s[0..n), as inet_pton accepts it. Partial: can it still
 * become one? The end state decides: how many groups there are, whether a
 * "::" was seen, and what the text ended on.
 */
static int ip6_parse(const char *s, size_t n, int final, uint8_t out[16]) {
  struct ip6 a = {{0}, 0, -1};
  size_t i = 0;
  int sep = 0;
  if (n > INET6_ADDRSTRLEN - 1)
    return FIELD_BAD;
  if (n >= 1 && s[0] == ':') {
    if (n >= 2 && s[1] != ':')
      return FIELD_BAD;
    if (n == 1)
      return final ? FIELD_BAD : FIELD_OK;
    a.gap = 0;
    sep = 2;
    i = 2;
  }
  for (;;) {
    size_t start = i;
    unsigned v = 0;
    while (i < n && i - start < 5 && hexval(s[i]) >= 0)
      v = v * 16 + (unsigned)hexval(s[i++]);
    if (i - start > 4)
      return FIELD_BAD;
    if (i < n && s[i] == '.')
      return i > start ? ip6_v4tail(s + start, n - start, final, &a, out)
                       : FIELD_BAD;
    if (i == start)
      return i == n ? ip6_end_at_sep(&a, sep, final, out) : FIELD_BAD;
    if (i == n)
      return ip6_end_in_group(&a, v, final, out);
    if (s[i] != ':' || a.ng == 8)
      return FIELD_BAD;
    a.g[a.ng++] = (uint16_t)v;
    i++;
    sep = 1;
    if (i < n && s[i] == ':') {
      if (a.gap >= 0)
        return FIELD_BAD;
      a.gap = a.ng;
      sep = 2;
      i++;
    }
  }
}

/* A port: 0-65535, no leading zeros. */
static int port_parse(const char *s, size_t n, int final, uint16_t *port) {
  unsigned v = 0;
  if (n == 0)
    return final ? FIELD_BAD : FIELD_OK;
  if (s[0] == '0' && n > 1)
    return FIELD_BAD;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return FIELD_BAD;
    v = v * 10 + (unsigned)(s[i] - '0');
    if (v > 65535)
      return FIELD_BAD;
  }
  *port = (uint16_t)v;
  return FIELD_OK;
}

/* --- v1 line -------------------------------------------------------------- */

enum { V1_PARTIAL, V1_TCP4, V1_TCP6, V1_UNKNOWN };

/* The protocol word s[0..n); `done` when a space or the end followed it. */
static int v1_proto(const char *s, size_t n, int done) {
  static const char *const words[] = {"TCP4", "TCP6", "UNKNOWN"};
  static const int kinds[] = {V1_TCP4, V1_TCP6, V1_UNKNOWN};
  for (int k = 0; k < 3; k++) {
    size_t wl = strlen(words[k]);
    if (done && n == wl && memcmp(s, words[k], n) == 0)
      return kinds[k];
    if (!done && n <= wl && memcmp(s, words[k], n) == 0)
      return V1_PARTIAL;
  }
  return -1;
}

static void set_inet(struct net_addr *a, int family, const uint8_t *ip,
                     uint16_t port) {
  memset(a, 0, sizeof *a);
  if (family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    memcpy(&in->sin_addr, ip, 4);
    a->len = sizeof *in;
  } else {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    memcpy(&in6->sin6_addr, ip, 16);
    a->len = sizeof *in6;
  }
}

/* One of the four fields after the protocol word (k: 0 src, 1 dst, 2 sport,
 * 3 dport), complete or (the last one of a partial line) a prefix. */
static int v1_field(int k, int family, const char *s, size_t n, int final,
                    uint8_t ip[2][16], uint16_t port[2]) {
  if (k >= 2)
    return port_parse(s, n, final, &port[k - 2]);
  if (family == AF_INET)
    return ip4_parse(s, n, final, ip[k]);
  return ip6_parse(s, n, final, ip[k]);
}

/* "<src> <dst> <sport> <dport>" of a TCP4/TCP6 line. */
static int v1_addresses(const char *s, size_t n, int final, int family,
                        struct pp_header *h) {
  uint8_t ip[2][16];
  uint16_t port[2] = {0, 0};
  int k = 0;
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && s[i] != ' ')
      continue;
    int done = i < n || final; /* a space or the end of the line follows */
    if (k == 4 || (done && i == start) ||
        v1_field(k, family, s + start, i - start, done, ip, port) != 0)
      return PP_EV1;
    k++;
    start = i + 1;
  }
  if (!final)
    return 0;
  if (k != 4)
    return PP_EV1;
  h->family = family;
  h->transport = SOCK_STREAM;
  set_inet(&h->src, family, ip[0], port[0]);
  set_inet(&h->dst, family, ip[1], port[1]);
  return 0;
}

/*
 * The line after "PROXY ": s[0..n), the whole line without its CRLF when
 * final, else what has arrived. A partial line ending in CR may be ending:
 * it is a valid prefix only if it is a valid line without the CR (no field
 * can contain a CR, and UNKNOWN lines accept anything).
 */
static int v1_fields(const char *s, size_t n, int final,
                     struct pp_header *h) {
  if (!final && n > 0 && s[n - 1] == '\r')
    return v1_fields(s, n - 1, 1, h);
  const char *sp = memchr(s, ' ', n);
  size_t wl = sp ? (size_t)(sp - s) : n;
  int kind = v1_proto(s, wl, sp != NULL || final);
  if (kind < 0)
    return PP_EV1;
  if (kind == V1_PARTIAL)
    return 0;
  h->version = 1;
  h->command = PP_CMD_PROXY;
  if (kind == V1_UNKNOWN) /* the rest of the line is ignored */
    return 0;
  if (sp == NULL) /* "TCP4" then the end */
    return final ? PP_EV1 : 0;
  return v1_addresses(sp + 1, n - wl - 1, final,
                      kind == V1_TCP4 ? AF_INET : AF_INET6, h);
}

static int v1_parse(const uint8_t *p, size_t n, struct pp_header *h) {
  size_t m = n < sizeof v1_sig ? n : sizeof v1_sig;
  if (memcmp(p, v1_sig, m) != 0)
    return PP_ESIGNATURE;
  if (n < sizeof v1_sig)
    return 0;
  size_t lim = n < PP_V1_MAX ? n : PP_V1_MAX;
  const uint8_t *lf = memchr(p, '\n', lim);
  const char *body = (const char *)p + sizeof v1_sig;
  int rc;
  if (lf != NULL) {
    size_t at = (size_t)(lf - p); /* >= 6: the signature has no LF */
    if (p[at - 1] != '\r') /* a lone LF does not end the line */
      return PP_EV1;
    rc = v1_fields(body, at - 1 - sizeof v1_sig, 1, h);
    return rc < 0 ? rc : (int)(at + 1);
  }
  rc = v1_fields(body, lim - sizeof v1_sig, 0, h);
  if (rc < 0)
    return rc;
  return n >= PP_V1_MAX ? PP_ETOOLONG : 0;
}

/* --- v2 ------------------------------------------------------------------- */

/* Address bytes for a v2 family/transport byte, or -1 if not allowed. */
static int v2_addrlen(uint8_t fam) {
  switch (fam) {
  case 0x00: return 0;
  case 0x11: case 0x12: return 12;
  case 0x21: case 0x22: return 36;
  case 0x31: case 0x32: return 2 * UNIX_FIELD;
  default: return -1;
  }
}

/* A 108-byte v2 unix address field. Only the name is copied: bytes after
 * a path's NUL are not part of the address. */
static void set_unix(struct net_addr *a, const uint8_t *field) {
  struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
  size_t n;
  if (field[0] != 0) { /* a path: NUL-terminated unless it fills 108 */
    n = strnlen((const char *)field, UNIX_FIELD);
    n += n < UNIX_FIELD;
  } else { /* unnamed (all zero), or abstract: trailing NULs are padding */
    for (n = UNIX_FIELD; n > 0 && field[n - 1] == 0; n--)
      ;
  }
  memset(a, 0, sizeof *a);
  un->sun_family = AF_UNIX;
  memcpy(un->sun_path, field, n);
  a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}

static void v2_addresses(const uint8_t *p, uint8_t fam, struct pp_header *h) {
  const uint8_t *a = p + PP_V2_HDR;
  int family = fam >> 4;
  h->transport = (fam & 15) == 1 ? SOCK_STREAM : SOCK_DGRAM;
  if (family == 1) {
    h->family = AF_INET;
    set_inet(&h->src, AF_INET, a, get16(a + 8));
    set_inet(&h->dst, AF_INET, a + 4, get16(a + 10));
  } else if (family == 2) {
    h->family = AF_INET6;
    set_inet(&h->src, AF_INET6, a, get16(a + 32));
    set_inet(&h->dst, AF_INET6, a + 16, get16(a + 34));
  } else {
    h->family = AF_UNIX;
    set_unix(&h->src, a);
    set_unix(&h->dst, a + UNIX_FIELD);
  }
}

/* The known types that may appear once: bit positions for a seen-mask. */
static int known_bit(uint8_t type) {
  switch (type) {
  case PP_TLV_ALPN: return 1;
  case PP_TLV_AUTHORITY: return 2;
  case PP_TLV_CRC32C: return 3;
  case PP_TLV_UNIQUE_ID: return 4;
  case PP_TLV_SSL: return 5;
  case PP_TLV_NETNS: return 6;
  default: return 0;
  }
}

/* Type-specific checks of one TLV value. */
static int tlv_check(uint8_t type, const uint8_t *v, size_t len) {
  struct pp_ssl ssl;
  if (type == PP_TLV_CRC32C && len != 4)
    return PP_ETLV;
  if (type == PP_TLV_UNIQUE_ID && len > UNIQUE_ID_MAX)
    return PP_ETLV;
  if (type == PP_TLV_SSL)
    return pp_ssl_parse(v, len, &ssl);
  return 0;
}

/* CRC32C of p[0..end) with the 4 bytes at `at` taken as zero. */
static uint32_t crc_zeroed(const uint8_t *p, size_t end, size_t at) {
  static const uint8_t zero[4] = {0, 0, 0, 0};
  uint32_t crc = pp_crc32c(0, p, at);
  crc = pp_crc32c(crc, zero, 4);
  return pp_crc32c(crc, p + at + 4, end - at - 4);
}

/* The TLVs in p[o..end); lists them in h and checks the CRC32C. */
static int v2_tlvs(const uint8_t *p, size_t o, size_t end,
                   struct pp_header *h) {
  unsigned seen = 0;
  size_t crc_at = 0;
  while (o < end) {
    if (end - o < 3)
      return PP_ETLV;
    uint8_t type = p[o];
    size_t len = get16(p + o + 1), v = o + 3;
    int bit = known_bit(type);
    if (len > end - v || (bit && (seen & 1u << bit)) ||
        tlv_check(type, p + v, len) != 0)
      return PP_ETLV;
    seen |= bit ? 1u << bit : 0;
    if (type == PP_TLV_CRC32C)
      crc_at = v;
    if (type != PP_TLV_NOOP) {
      if (h->ntlv == PP_MAX_TLVS)
        return PP_ETOOMANY;
      h->tlv[h->ntlv].type = type;
      h->tlv[h->ntlv].len = (uint16_t)len;
      h->tlv[h->ntlv].off = v;
      h->ntlv++;
    }
    o = v + len;
  }
  if (crc_at && crc_zeroed(p, end, crc_at) != get32(p + crc_at))
    return PP_ECRC;
  return 0;
}

static int v2_parse(const uint8_t *p, size_t n, struct pp_header *h) {
  size_t m = n < sizeof v2_sig ? n : sizeof v2_sig;
  if (memcmp(p, v2_sig, m) != 0)
    return PP_ESIGNATURE;
  if (n < 13)
    return 0;
  if (p[12] >> 4 != 2)
    return PP_EVERSION;
  int command = p[12] & 15;
  if (command != PP_CMD_LOCAL && command != PP_CMD_PROXY)
    return PP_ECOMMAND;
  if (n < 14)
    return 0;
  /* LOCAL ignores the family byte, whatever it holds (the spec). */
  int alen = command == PP_CMD_LOCAL ? 0 : v2_addrlen(p[13]);
  if (alen < 0)
    return PP_EFAMILY;
  if (n < PP_V2_HDR)
    return 0;
  size_t total = PP_V2_HDR + get16(p + 14);
  if (total < PP_V2_HDR + (size_t)alen)
    return PP_ELENGTH;
  if (n < total)
    return 0;
  h->version = 2;
  h->command = command;
  if (command == PP_CMD_LOCAL) /* the block is skipped unread */
    return (int)total;
  if (p[13] != 0)
    v2_addresses(p, p[13], h);
  int rc = v2_tlvs(p, PP_V2_HDR + (size_t)alen, total, h);
  return rc < 0 ? rc : (int)total;
}

/* --- parsing entry points ------------------------------------------------- */

int pp_parse(const uint8_t *p, size_t n, struct pp_header *h) {
  memset(h, 0, sizeof *h);
  if (n == 0)
    return 0;
  int rc;
  if (p[0] == 'P')
    rc = v1_parse(p, n, h);
  else if (p[0] == v2_sig[0])
    rc = v2_parse(p, n, h);
  else
    rc = PP_ESIGNATURE;
  if (rc <= 0) /* nothing half-filled is left for a careless caller */
    memset(h, 0, sizeof *h);
  return rc;
}

int pp_tlv_find(const struct pp_header *h, uint8_t type) {
  for (size_t i = 0; i < h->ntlv; i++)
    if (h->tlv[i].type == type)
      return (int)i;
  return -1;
}

static struct pp_bytes *ssl_slot(struct pp_ssl *s, uint8_t type) {
  switch (type) {
  case PP_SSL_VERSION: return &s->version;
  case PP_SSL_CN: return &s->cn;
  case PP_SSL_CIPHER: return &s->cipher;
  case PP_SSL_SIG_ALG: return &s->sig_alg;
  case PP_SSL_KEY_ALG: return &s->key_alg;
  default: return NULL;
  }
}

int pp_ssl_parse(const uint8_t *tlv, size_t len, struct pp_ssl *out) {
  memset(out, 0, sizeof *out);
  if (len < 5)
    return PP_ETLV;
  out->client = tlv[0];
  out->verify = get32(tlv + 1);
  for (size_t o = 5; o < len;) {
    if (len - o < 3)
      return PP_ETLV;
    size_t vlen = get16(tlv + o + 1), v = o + 3;
    if (vlen > len - v)
      return PP_ETLV;
    struct pp_bytes *slot = ssl_slot(out, tlv[o]);
    if (slot != NULL) {
      if (slot->p != NULL) /* two CNs: which one is the client? */
        return PP_ETLV;
      slot->p = tlv + v;
      slot->len = vlen;
    }
    o = v + vlen;
  }
  return 0;
}

/* --- building ------------------------------------------------------------- */

/* An IP endpoint as the builders need it. */
struct endpoint {
  int family; /* AF_INET, AF_INET6, AF_UNIX, or 0: none the protocol has */
  uint8_t ip[16];
  uint16_t port;
  const struct net_addr *addr;
};

/* Classify `a` (not NULL): -EINVAL when its len is too short for its
 * family. */
static int endpoint_of(const struct net_addr *a, struct endpoint *e) {
  const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
  memset(e, 0, sizeof *e);
  e->addr = a;
  if (a->len < sizeof(sa_family_t))
    return -EINVAL;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    if (a->len < sizeof *in)
      return -EINVAL;
    memcpy(e->ip, &in->sin_addr, 4);
    e->port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    if (a->len < sizeof *in6)
      return -EINVAL;
    memcpy(e->ip, &in6->sin6_addr, 16);
    e->port = ntohs(in6->sin6_port);
  } else if (sa->sa_family != AF_UNIX) {
    return 0; /* no place for it: UNKNOWN / UNSPEC */
  }
  e->family = sa->sa_family;
  return 0;
}

/* Make an IPv4 endpoint IPv4-mapped IPv6 (::ffff:a.b.c.d). */
static void map_v6(struct endpoint *e) {
  if (e->family != AF_INET)
    return;
  memmove(e->ip + 12, e->ip, 4);
  memset(e->ip, 0, 10);
  e->ip[10] = e->ip[11] = 0xff;
  e->family = AF_INET6;
}

/* Both endpoints, with the family pair settled: equal IP families, or a
 * v4/v6 mix made all-IPv6. Returns 0, 1 when both are NULL, or -EINVAL. */
static int endpoints(const struct net_addr *src, const struct net_addr *dst,
                     struct endpoint *s, struct endpoint *d) {
  if (src == NULL && dst == NULL)
    return 1;
  if (src == NULL || dst == NULL || endpoint_of(src, s) < 0 ||
      endpoint_of(dst, d) < 0)
    return -EINVAL;
  int ip_s = s->family == AF_INET || s->family == AF_INET6;
  int ip_d = d->family == AF_INET || d->family == AF_INET6;
  if (ip_s && ip_d && s->family != d->family) {
    map_v6(s);
    map_v6(d);
  }
  if (s->family != d->family) /* unix with IP, or no family at all */
    s->family = d->family = 0;
  return 0;
}

/* "PROXY TCP4|TCP6 src dst sport dport\r\n" into line[0..cap): its length
 * or -EINVAL. */
static int v1_line(char *line, size_t cap, const struct endpoint *s,
                   const struct endpoint *d) {
  char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
  int fam = s->family;
  /* Cannot fail: a known family and buffers of the right size. */
  if (inet_ntop(fam, s->ip, a, sizeof a) == NULL ||
      inet_ntop(fam, d->ip, b, sizeof b) == NULL)
    return -EINVAL;
  return snprintf(line, cap, "PROXY TCP%c %s %s %u %u\r\n",
                  fam == AF_INET ? '4' : '6', a, b, (unsigned)s->port,
                  (unsigned)d->port);
}

int pp_build_v1(char *out, size_t cap, const struct net_addr *src,
                const struct net_addr *dst) {
  struct endpoint s, d;
  char line[128]; /* 11 + 2 * 45 + 2 * 6 + 2 at most */
  int rc = endpoints(src, dst, &s, &d);
  if (rc < 0)
    return rc;
  int k = rc == 0 && (s.family == AF_INET || s.family == AF_INET6)
              ? v1_line(line, sizeof line, &s, &d)
              : snprintf(line, sizeof line, "PROXY UNKNOWN\r\n");
  if (k < 0 || (size_t)k >= sizeof line)
    return -EINVAL;
  if ((size_t)k > cap)
    return -ENOSPC;
  memcpy(out, line, (size_t)k);
  return k;
}

/* The TLV bytes pp_build_v2 will write, or -EINVAL. */
static long tlvs_size(const struct pp_tlv_in *t, size_t nt) {
  size_t total = 0;
  int crcs = 0;
  for (size_t i = 0; i < nt; i++) {
    size_t len = t[i].type == PP_TLV_CRC32C ? 4 : t[i].len;
    if (len > 65535 || (t[i].type != PP_TLV_CRC32C && len && !t[i].value))
      return -EINVAL;
    crcs += t[i].type == PP_TLV_CRC32C;
    total += 3 + len;
    if (crcs > 1 || total > 65535)
      return -EINVAL;
  }
  return (long)total;
}

static void put_unix(uint8_t *out, const struct net_addr *a) {
  const struct sockaddr_un *un = (const struct sockaddr_un *)&a->ss;
  size_t n = a->len - offsetof(struct sockaddr_un, sun_path);
  memset(out, 0, UNIX_FIELD);
  memcpy(out, un->sun_path, n < UNIX_FIELD ? n : UNIX_FIELD);
}

/* The address block for the family byte `fam`. */
static void put_addresses(uint8_t *out, uint8_t fam, const struct endpoint *s,
                          const struct endpoint *d) {
  if (fam == 0x11) {
    memcpy(out, s->ip, 4);
    memcpy(out + 4, d->ip, 4);
    put16(out + 8, s->port);
    put16(out + 10, d->port);
  } else if (fam == 0x21) {
    memcpy(out, s->ip, 16);
    memcpy(out + 16, d->ip, 16);
    put16(out + 32, s->port);
    put16(out + 34, d->port);
  } else if (fam == 0x31) {
    put_unix(out, s->addr);
    put_unix(out + UNIX_FIELD, d->addr);
  }
}

/* Write the TLVs at out; returns the offset of the CRC32C value in `out`
 * (0: none). */
static size_t put_tlvs(uint8_t *out, const struct pp_tlv_in *t, size_t nt) {
  size_t k = 0, crc_at = 0;
  for (size_t i = 0; i < nt; i++) {
    int crc = t[i].type == PP_TLV_CRC32C;
    size_t len = crc ? 4 : t[i].len;
    out[k] = t[i].type;
    put16(out + k + 1, (unsigned)len);
    k += 3;
    if (crc) {
      memset(out + k, 0, 4); /* zero while the checksum is computed */
      crc_at = k;
    } else if (len) {
      memcpy(out + k, t[i].value, len);
    }
    k += len;
  }
  return crc_at;
}

int pp_build_v2(uint8_t *out, size_t cap, const struct net_addr *src,
                const struct net_addr *dst, const struct pp_tlv_in *tlvs,
                size_t ntlvs) {
  struct endpoint s, d;
  int rc = endpoints(src, dst, &s, &d);
  long tl = tlvs_size(tlvs, ntlvs);
  if (rc < 0 || tl < 0)
    return -EINVAL;
  uint8_t fam = 0x00;
  if (rc == 0 && s.family == AF_INET)
    fam = 0x11;
  else if (rc == 0 && s.family == AF_INET6)
    fam = 0x21;
  else if (rc == 0 && s.family == AF_UNIX)
    fam = 0x31;
  size_t alen = (size_t)v2_addrlen(fam), body = alen + (size_t)tl;
  if (body > 65535)
    return -EINVAL;
  if (PP_V2_HDR + body > cap)
    return -ENOSPC;
  memcpy(out, v2_sig, sizeof v2_sig);
  out[12] = (uint8_t)(0x20 | (rc == 1 ? PP_CMD_LOCAL : PP_CMD_PROXY));
  out[13] = fam;
  put16(out + 14, (unsigned)body);
  put_addresses(out + PP_V2_HDR, fam, &s, &d);
  size_t crc_at = put_tlvs(out + PP_V2_HDR + alen, tlvs, ntlvs);
  size_t total = PP_V2_HDR + body;
  if (crc_at) {
    uint8_t *c = out + PP_V2_HDR + alen + crc_at;
    uint32_t crc = pp_crc32c(0, out, total);
    put16(c, crc >> 16);
    put16(c + 2, crc & 0xffff);
  }
  return (int)total;
}

const char *pp_strerror(int code) {
  switch (code) {
  case 0: return "incomplete PROXY protocol header";
  case PP_ESIGNATURE: return "not a PROXY protocol header";
  case PP_EV1: return "malformed PROXY v1 line";
  case PP_ETOOLONG: return "PROXY v1 line longer than 107 bytes";
  case PP_EVERSION: return "unsupported PROXY protocol version";
  case PP_ECOMMAND: return "unknown PROXY v2 command";
  case PP_EFAMILY: return "unknown PROXY v2 address family or transport";
  case PP_ELENGTH: return "PROXY v2 length shorter than its addresses";
  case PP_ETLV: return "malformed PROXY v2 TLV";
  case PP_ETOOMANY: return "too many PROXY v2 TLVs";
  case PP_ECRC: return "PROXY v2 CRC32C mismatch";
  default: return "unknown PROXY protocol error";
  }
}
