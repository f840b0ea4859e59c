/*
 * test_proxy_proto.c -- unit tests for src/proxy_proto.c (PROXY protocol
 * v1/v2 parsing and building, CRC32C) and src/cidr.c (trusted ranges).
 * Prints one line per case and ends with "N passed, N failed".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "check.h"
#include "cidr.h"
#include "net.h"
#include "proxy_proto.h"

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static int pp_str(const char *s, struct pp_header *h) {
  return pp_parse((const uint8_t *)s, strlen(s), h);
}

static struct net_addr ip(const char *host, int port) {
  struct net_addr a;
  if (net_parse_ip(host, port, &a) != 0)
    abort();
  return a;
}

/* Does `a` hold host:port? */
static int addr_is(const struct net_addr *a, const char *host, int port) {
  char text[NET_ADDRSTRLEN];
  int p = -1;
  return net_format_addr(a, text, sizeof text, &p) == 0 &&
         strcmp(text, host) == 0 && p == port;
}

/* Every proper prefix of s[0..n) gives 0 (needs more). */
static int prefixes_incomplete(const uint8_t *s, size_t n) {
  struct pp_header h;
  for (size_t k = 0; k < n; k++)
    if (pp_parse(s, k, &h) != 0)
      return 0;
  return 1;
}

/* Every prefix gives 0 or `err`, and at least the whole gives `err`. */
static int prefixes_consistent(const char *s, int err) {
  struct pp_header h;
  size_t n = strlen(s);
  for (size_t k = 0; k <= n; k++) {
    int rc = pp_parse((const uint8_t *)s, k, &h);
    if (rc != 0 && rc != err)
      return 0;
  }
  return pp_parse((const uint8_t *)s, n, &h) == err;
}

/* --- v1 ------------------------------------------------------------------ */

static void test_v1_spec_example(void) {
  const char *s = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
                  "GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n";
  struct pp_header h;
  CHECK(pp_str(s, &h) == 47);
  CHECK(h.version == 1 && h.command == PP_CMD_PROXY);
  CHECK(h.family == AF_INET && h.transport == SOCK_STREAM);
  CHECK(addr_is(&h.src, "192.168.0.1", 56324));
  CHECK(addr_is(&h.dst, "192.168.0.11", 443));
  CHECK(pp_has_addresses(&h) && h.ntlv == 0);
  CHECK(prefixes_incomplete((const uint8_t *)s, 47));
}

/* The spec's longest lines, each accepted, and one byte more is too long. */
static void test_v1_max_lines(void) {
  struct pp_header h;
  const char *v4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
  CHECK(pp_str(v4, &h) == 56 && addr_is(&h.src, "255.255.255.255", 65535));
  const char *v6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  CHECK(pp_str(v6, &h) == 104 && h.family == AF_INET6);
  CHECK(addr_is(&h.dst, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535));
  CHECK(pp_str("PROXY UNKNOWN\r\n", &h) == 15);
  CHECK(h.version == 1 && h.family == AF_UNSPEC && !pp_has_addresses(&h));
  const char *worst = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  CHECK(strlen(worst) == 107 && pp_str(worst, &h) == 107);
  CHECK(h.family == AF_UNSPEC && h.src.len == 0);
  /* 108 bytes: the CRLF is not within the first 107. */
  char longer[128];
  memcpy(longer, "PROXY UNKNOWN ", 14);
  memset(longer + 14, 'x', 92);
  memcpy(longer + 106, "\r\n", 3);
  CHECK(strlen(longer) == 108 && pp_str(longer, &h) == PP_ETOOLONG);
  longer[105] = '\r';
  longer[106] = '\n';
  CHECK(pp_parse((const uint8_t *)longer, 107, &h) == 107);
  /* Waiting stops at 107 bytes even without a CR in sight. */
  memset(longer + 14, 'x', 100);
  CHECK(pp_parse((const uint8_t *)longer, 106, &h) == 0);
  CHECK(pp_parse((const uint8_t *)longer, 107, &h) == PP_ETOOLONG);
}

static void test_v1_ipv6_forms(void) {
  struct pp_header h;
  CHECK(pp_str("PROXY TCP6 ::1 2001:db8::8:800:200c:417a 1 2\r\n", &h) > 0);
  CHECK(addr_is(&h.src, "::1", 1));
  CHECK(addr_is(&h.dst, "2001:db8::8:800:200c:417a", 2));
  CHECK(pp_str("PROXY TCP6 ::ffff:10.1.2.3 FE80::A:b 0 65535\r\n", &h) > 0);
  CHECK(addr_is(&h.src, "::ffff:10.1.2.3", 0));
  CHECK(addr_is(&h.dst, "fe80::a:b", 65535));
  CHECK(pp_str("PROXY TCP6 :: 1:2:3:4:5:6:7:: 5 6\r\n", &h) > 0);
  CHECK(addr_is(&h.src, "::", 5) && addr_is(&h.dst, "1:2:3:4:5:6:7:0", 6));
  const char *bad[] = {
      "PROXY TCP6 1::2::3 ::1 1 2\r\n",     /* two "::" */
      "PROXY TCP6 12345::1 ::1 1 2\r\n",    /* five hex digits */
      "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",
      "PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n", /* seven groups */
      "PROXY TCP6 1:2:3:4:5:6:7:8:: ::1 1 2\r\n",
      "PROXY TCP6 :1 ::1 1 2\r\n",
      "PROXY TCP6 1: ::1 1 2\r\n",
      "PROXY TCP6 ::1%eth0 ::1 1 2\r\n",    /* zone */
      "PROXY TCP6 [::1] ::1 1 2\r\n",
      "PROXY TCP6 ::ffff:01.2.3.4 ::1 1 2\r\n",
      "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",     /* IPv4 in a TCP6 line */
      "PROXY TCP6 ::1.2.3.4.5 ::1 1 2\r\n",
      "PROXY TCP6 1:2:3:4:5:6:7:1.2.3.4 ::1 1 2\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int rc = pp_str(bad[i], &h);
    CHECK(rc == PP_EV1);
    if (rc != PP_EV1)
      printf("  accepted: %s", bad[i]);
  }
}

static void test_v1_strict(void) {
  const char *bad[] = {
      "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",  /* leading zero */
      "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",
      "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
      "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n",  /* leading zero port */
      "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
      "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",   /* two spaces */
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",   /* trailing space */
      "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",      /* missing field */
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",  /* extra field */
      "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",        /* IPv6 in TCP4 */
      "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
      "PROXY TCP4\r\n",
      "PROXY \r\n",
      "PROXY UNKNOWNX\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",      /* lone LF */
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
      "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
  };
  struct pp_header h;
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    CHECK(pp_str(bad[i], &h) == PP_EV1);
    CHECK(prefixes_consistent(bad[i], PP_EV1));
  }
  CHECK(pp_str("PROXY TCP4 0.0.0.0 5.6.7.8 0 2\r\n", &h) > 0);
  CHECK(addr_is(&h.src, "0.0.0.0", 0));
  /* UNKNOWN ignores the rest of its line, whatever it is. */
  CHECK(pp_str("PROXY UNKNOWN what\rever 1\r\n", &h) == 27);
  CHECK(h.family == AF_UNSPEC);
}

/* Errors are found as soon as the bytes so far cannot become a header. */
static void test_v1_early_errors(void) {
  struct pp_header h;
  CHECK(pp_str("X", &h) == PP_ESIGNATURE);
  CHECK(pp_str("PROXZ", &h) == PP_ESIGNATURE);
  CHECK(pp_str("PROXY_", &h) == PP_ESIGNATURE);
  CHECK(pp_str("GET / HTTP/1.1\r\n", &h) == PP_ESIGNATURE);
  CHECK(pp_str("PROX", &h) == 0);
  CHECK(pp_str("PROXY TCP5", &h) == PP_EV1);
  CHECK(pp_str("PROXY TC", &h) == 0);
  CHECK(pp_str("PROXY TCP4 1.2.3.4x", &h) == PP_EV1);
  CHECK(pp_str("PROXY TCP4 1.2.3.", &h) == 0);
  CHECK(pp_str("PROXY TCP4 1.2.3.4 5.6.7.8 99999", &h) == PP_EV1);
  CHECK(pp_str("PROXY TCP4 1.2.3.4 5.6.7.8 9999", &h) == 0);
  CHECK(pp_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", &h) == 0);
  CHECK(pp_str("PROXY TCP4 1.2.3.4 5.6.7.8 1\r", &h) == PP_EV1);
  CHECK(pp_str("PROXY TCP6 1:2:3:4:5:6:7:8:", &h) == PP_EV1);
  CHECK(pp_str("PROXY TCP6 1:2:3:4:5:6:7:", &h) == 0);
  CHECK(pp_str("PROXY TCP6 ::ffff:1.2", &h) == 0);
  CHECK(pp_str("PROXY TCP6 1:2:3:4:5:1.2", &h) == PP_EV1);
  CHECK(pp_str("PROXY UNKNOWN", &h) == 0);
  CHECK(pp_str("PROXY UNKNOWN \x01\x02", &h) == 0);
  CHECK(h.version == 0); /* nothing half-filled on 0 */
}

/* --- v2 ------------------------------------------------------------------ */

/* A v2 header: signature, ver/cmd, fam, then `body` (its length set). */
static size_t v2(uint8_t *out, uint8_t vercmd, uint8_t fam,
                 const void *body, size_t blen) {
  memcpy(out, SIG, 12);
  out[12] = vercmd;
  out[13] = fam;
  out[14] = (uint8_t)(blen >> 8);
  out[15] = (uint8_t)blen;
  if (blen)
    memcpy(out + 16, body, blen);
  return 16 + blen;
}

static const uint8_t TCP4_BODY[12] = {192, 168, 0, 1, 192, 168, 0, 11,
                                      0xdc, 0x04, 0x01, 0xbb};

static void test_v2_families(void) {
  uint8_t buf[600], body[300];
  struct pp_header h;
  size_t n = v2(buf, 0x21, 0x11, TCP4_BODY, 12);
  buf[n] = 'G'; /* application data after the header is not consumed */
  CHECK(pp_parse(buf, n + 1, &h) == 28);
  CHECK(h.version == 2 && h.command == PP_CMD_PROXY && h.family == AF_INET);
  CHECK(h.transport == SOCK_STREAM);
  CHECK(addr_is(&h.src, "192.168.0.1", 56324));
  CHECK(addr_is(&h.dst, "192.168.0.11", 443));
  CHECK(prefixes_incomplete(buf, n));
  /* UDP over IPv4. */
  v2(buf, 0x21, 0x12, TCP4_BODY, 12);
  CHECK(pp_parse(buf, 28, &h) == 28 && h.transport == SOCK_DGRAM);
  /* TCP over IPv6. */
  memset(body, 0, 36);
  body[15] = 1;                      /* ::1 */
  body[16] = 0x20, body[17] = 0x01;  /* 2001:db8::2 */
  body[18] = 0x0d, body[19] = 0xb8, body[31] = 2;
  body[32] = 0x30, body[33] = 0x39;  /* 12345 */
  body[35] = 80;
  n = v2(buf, 0x21, 0x21, body, 36);
  CHECK(pp_parse(buf, n, &h) == 52 && h.family == AF_INET6);
  CHECK(addr_is(&h.src, "::1", 12345) && addr_is(&h.dst, "2001:db8::2", 80));
  v2(buf, 0x21, 0x22, body, 36);
  CHECK(pp_parse(buf, n, &h) == 52 && h.transport == SOCK_DGRAM);
  /* Unix stream: a path, and an unnamed peer (all zero). */
  memset(body, 0, 216);
  memcpy(body, "/run/lb.sock", 12);
  n = v2(buf, 0x21, 0x31, body, 216);
  CHECK(pp_parse(buf, n, &h) == 232 && h.family == AF_UNIX);
  CHECK(addr_is(&h.src, "/run/lb.sock", 0));
  CHECK(h.src.len == offsetof(struct sockaddr_un, sun_path) + 13);
  CHECK(h.dst.len == offsetof(struct sockaddr_un, sun_path));
  v2(buf, 0x21, 0x32, body, 216);
  CHECK(pp_parse(buf, n, &h) == 232 && h.transport == SOCK_DGRAM);
  /* UNSPEC: no addresses; the connection's own are kept. */
  n = v2(buf, 0x21, 0x00, NULL, 0);
  CHECK(pp_parse(buf, n, &h) == 16 && h.family == AF_UNSPEC);
  CHECK(!pp_has_addresses(&h) && h.src.len == 0);
}

static void test_v2_local(void) {
  uint8_t buf[64], junk[20];
  struct pp_header h;
  size_t n = v2(buf, 0x20, 0x00, NULL, 0);
  CHECK(pp_parse(buf, n, &h) == 16 && h.command == PP_CMD_LOCAL);
  CHECK(!pp_has_addresses(&h));
  /* LOCAL skips its block unread: any family byte, any bytes. */
  memset(junk, 0xEE, sizeof junk);
  n = v2(buf, 0x20, 0xFF, junk, sizeof junk);
  CHECK(pp_parse(buf, n, &h) == 36 && h.command == PP_CMD_LOCAL);
  CHECK(h.family == AF_UNSPEC && h.ntlv == 0);
}

static void test_v2_errors(void) {
  uint8_t buf[64];
  struct pp_header h;
  v2(buf, 0x11, 0x11, TCP4_BODY, 12);
  CHECK(pp_parse(buf, 13, &h) == PP_EVERSION);
  v2(buf, 0x22, 0x11, TCP4_BODY, 12);
  CHECK(pp_parse(buf, 13, &h) == PP_ECOMMAND);
  uint8_t fams[] = {0x01, 0x02, 0x10, 0x13, 0x20, 0x30, 0x41, 0xff};
  for (size_t i = 0; i < sizeof fams; i++) {
    v2(buf, 0x21, fams[i], TCP4_BODY, 12);
    CHECK(pp_parse(buf, 14, &h) == PP_EFAMILY);
  }
  /* The length must cover the addresses (known at byte 16). */
  v2(buf, 0x21, 0x11, TCP4_BODY, 11);
  CHECK(pp_parse(buf, 16, &h) == PP_ELENGTH);
  v2(buf, 0x21, 0x21, TCP4_BODY, 12);
  CHECK(pp_parse(buf, 16, &h) == PP_ELENGTH);
  /* Any signature byte wrong fails at that byte. */
  for (size_t k = 1; k < 12; k++) {
    v2(buf, 0x21, 0x11, TCP4_BODY, 12);
    buf[k] ^= 0x40;
    CHECK(pp_parse(buf, k, &h) == 0);
    CHECK(pp_parse(buf, k + 1, &h) == PP_ESIGNATURE);
  }
  CHECK(pp_parse((const uint8_t *)"\r\n\r\n\0\r\nQUIT\n", 12, &h) == 0);
}

/* A TCP4 header followed by the given TLV bytes. */
static size_t v2_tlvs(uint8_t *out, const void *tlvs, size_t tlen) {
  uint8_t body[512];
  memcpy(body, TCP4_BODY, 12);
  memcpy(body + 12, tlvs, tlen);
  return v2(out, 0x21, 0x11, body, 12 + tlen);
}

static void test_v2_tlvs(void) {
  uint8_t buf[600];
  struct pp_header h;
  static const uint8_t t[] = {
      0x01, 0, 2, 'h', '2',                        /* ALPN */
      0x04, 0, 3, 0, 0, 0,                         /* NOOP: not listed */
      0x02, 0, 11, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm',
      0xE0, 0, 0,                                  /* custom, empty */
      0x30, 0, 3, 'n', 's', '1'};                  /* NETNS */
  size_t n = v2_tlvs(buf, t, sizeof t);
  CHECK(pp_parse(buf, n, &h) == (int)n && h.ntlv == 4);
  int a = pp_tlv_find(&h, PP_TLV_ALPN), au = pp_tlv_find(&h, 0x02);
  CHECK(a == 0 && h.tlv[a].len == 2 && h.tlv[a].off == 31);
  CHECK(memcmp(buf + h.tlv[a].off, "h2", 2) == 0);
  CHECK(au == 1 && memcmp(buf + h.tlv[au].off, "example.com", 11) == 0);
  CHECK(pp_tlv_find(&h, PP_TLV_NOOP) == -1);
  CHECK(pp_tlv_find(&h, 0xE0) == 2 && h.tlv[2].len == 0);
  CHECK(pp_tlv_find(&h, PP_TLV_NETNS) == 3 && pp_tlv_find(&h, 0x05) == -1);
  CHECK(prefixes_incomplete(buf, n));
  /* Malformed: a value past the end, a stray byte or two, a repeat. */
  static const uint8_t past[] = {0x01, 0, 3, 'h', '2'};
  CHECK(pp_parse(buf, v2_tlvs(buf, past, sizeof past), &h) == PP_ETLV);
  static const uint8_t stray[] = {0x01, 0, 0, 0xE1, 0};
  CHECK(pp_parse(buf, v2_tlvs(buf, stray, sizeof stray), &h) == PP_ETLV);
  static const uint8_t twice[] = {0x02, 0, 1, 'a', 0x02, 0, 1, 'b'};
  CHECK(pp_parse(buf, v2_tlvs(buf, twice, sizeof twice), &h) == PP_ETLV);
  static const uint8_t custom2[] = {0xE0, 0, 1, 'a', 0xE0, 0, 1, 'b'};
  CHECK(pp_parse(buf, v2_tlvs(buf, custom2, sizeof custom2), &h) > 0);
  CHECK(h.ntlv == 2);
  /* UNIQUE_ID: up to 128 bytes. */
  uint8_t uid[3 + 129];
  uid[0] = 0x05, uid[1] = 0, uid[2] = 128;
  memset(uid + 3, 'u', 129);
  CHECK(pp_parse(buf, v2_tlvs(buf, uid, 3 + 128), &h) > 0);
  uid[2] = 129;
  CHECK(pp_parse(buf, v2_tlvs(buf, uid, 3 + 129), &h) == PP_ETLV);
}

static void test_v2_tlv_count(void) {
  uint8_t tl[3 * (PP_MAX_TLVS + 1) + 3], buf[200];
  struct pp_header h;
  for (size_t i = 0; i <= PP_MAX_TLVS; i++) {
    tl[3 * i] = (uint8_t)(0xE0 + i % 16);
    tl[3 * i + 1] = tl[3 * i + 2] = 0;
  }
  CHECK(pp_parse(buf, v2_tlvs(buf, tl, 3 * PP_MAX_TLVS), &h) > 0);
  CHECK(h.ntlv == PP_MAX_TLVS);
  CHECK(pp_parse(buf, v2_tlvs(buf, tl, 3 * (PP_MAX_TLVS + 1)), &h) ==
        PP_ETOOMANY);
  /* NOOPs do not count. */
  tl[3 * PP_MAX_TLVS] = PP_TLV_NOOP;
  CHECK(pp_parse(buf, v2_tlvs(buf, tl, 3 * (PP_MAX_TLVS + 1)), &h) > 0);
}

/* Bit-by-bit CRC32C, the reference for the table-driven one. */
static uint32_t crc_ref(const uint8_t *p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int b = 0; b < 8; b++)
      c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
  }
  return ~c;
}

static void test_crc32c(void) {
  CHECK(pp_crc32c(0, "123456789", 9) == 0xE3069283u);
  /* RFC 3720 B.4 vectors. */
  uint8_t b[32];
  memset(b, 0, 32);
  CHECK(pp_crc32c(0, b, 32) == 0x8A9136AAu);
  memset(b, 0xFF, 32);
  CHECK(pp_crc32c(0, b, 32) == 0x62A8AB43u);
  for (int i = 0; i < 32; i++)
    b[i] = (uint8_t)i;
  CHECK(pp_crc32c(0, b, 32) == 0x46DD794Eu);
  for (int i = 0; i < 32; i++)
    b[i] = (uint8_t)(31 - i);
  CHECK(pp_crc32c(0, b, 32) == 0x113FDB5Cu);
  /* Continuation equals one pass; the table equals the bitwise loop. */
  CHECK(pp_crc32c(pp_crc32c(0, b, 10), b + 10, 22) == pp_crc32c(0, b, 32));
  uint8_t r[256];
  for (int i = 0; i < 256; i++)
    r[i] = (uint8_t)(i * 37 + 11);
  int same = 1;
  for (size_t n = 0; n <= 256; n++)
    same &= pp_crc32c(0, r, n) == crc_ref(r, n);
  CHECK(same);
  CHECK(pp_crc32c(0, NULL, 0) == 0);
}

/* A header with a CRC32C TLV computed the spec's way, by hand. */
static size_t crc_header(uint8_t *buf) {
  static const uint8_t t[] = {0x01, 0, 2, 'h', '2', 0x03, 0, 4, 0, 0, 0, 0};
  size_t n = v2_tlvs(buf, t, sizeof t);
  uint32_t c = crc_ref(buf, n);
  buf[n - 4] = (uint8_t)(c >> 24), buf[n - 3] = (uint8_t)(c >> 16);
  buf[n - 2] = (uint8_t)(c >> 8), buf[n - 1] = (uint8_t)c;
  return n;
}

static void test_v2_crc(void) {
  uint8_t buf[128];
  struct pp_header h;
  size_t n = crc_header(buf);
  CHECK(pp_parse(buf, n, &h) == (int)n && pp_tlv_find(&h, 0x03) == 1);
  /* A flipped bit anywhere is caught: by the CRC where the structure
   * still parses, by the structure elsewhere. Two bytes turn the header
   * into another valid one the CRC cannot cover: 12 (PROXY becomes LOCAL,
   * whose block is skipped unread) and 33 (the CRC32C type byte: the TLV
   * becomes an AUTHORITY and there is no CRC left to check). */
  int caught = 1;
  for (size_t i = 0; i < n; i++) {
    crc_header(buf);
    buf[i] ^= 0x01;
    int rc = pp_parse(buf, n, &h);
    if (i == 12 || i == 33)
      continue;
    if (i == 14 || i == 15) /* the length: incomplete or refused */
      caught &= rc != (int)n;
    else if (i < 16 || i == 29 || i == 30 || i == 34 || i == 35)
      caught &= rc < 0 && rc != PP_ECRC;
    else /* addresses, TLV values and types, the CRC itself */
      caught &= rc == PP_ECRC;
    if (!caught) {
      printf("  byte %zu: %d\n", i, rc);
      break;
    }
  }
  CHECK(caught);
  /* ...a CRC of the wrong size or a second CRC is malformed. */
  static const uint8_t short_crc[] = {0x03, 0, 3, 0, 0, 0};
  CHECK(pp_parse(buf, v2_tlvs(buf, short_crc, sizeof short_crc), &h) ==
        PP_ETLV);
}

static void test_v2_ssl(void) {
  static const uint8_t ssl[] = {
      0x20, 0, 49,
      PP_CLIENT_SSL | PP_CLIENT_CERT_CONN, 0, 0, 0, 0,   /* verified */
      0x21, 0, 7, 'T', 'L', 'S', 'v', '1', '.', '3',
      0x22, 0, 11, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm',
      0x23, 0, 3, 'A', 'E', 'S',
      0x24, 0, 3, 'R', 'S', 'A',
      0x25, 0, 2, 'E', 'C',
      0x2F, 0, 0};                                       /* unknown: skipped */
  uint8_t buf[200];
  struct pp_header h;
  struct pp_ssl s;
  CHECK(sizeof ssl == 3 + 49);
  size_t n = v2_tlvs(buf, ssl, sizeof ssl);
  CHECK(pp_parse(buf, n, &h) == (int)n);
  int i = pp_tlv_find(&h, PP_TLV_SSL);
  CHECK(i == 0 && h.tlv[0].len == 49);
  if (i != 0)
    return;
  CHECK(pp_ssl_parse(buf + h.tlv[0].off, h.tlv[0].len, &s) == 0);
  CHECK(s.client == 3 && s.verify == 0);
  CHECK(s.version.len == 7 && memcmp(s.version.p, "TLSv1.3", 7) == 0);
  CHECK(s.cn.len == 11 && memcmp(s.cn.p, "example.com", 11) == 0);
  CHECK(s.cipher.len == 3 && s.sig_alg.len == 3 && s.key_alg.len == 2);
  CHECK(memcmp(s.key_alg.p, "EC", 2) == 0);
  /* No sub-TLVs: all absent; verify in network order. */
  static const uint8_t bare[] = {1, 0, 0, 0, 5};
  CHECK(pp_ssl_parse(bare, 5, &s) == 0 && s.verify == 5 && !s.cn.p);
  CHECK(pp_ssl_parse(bare, 4, &s) == PP_ETLV);
  /* A sub-TLV running past the end, or a second CN, is malformed, and
   * pp_parse refuses the header for it. */
  static const uint8_t past[] = {1, 0, 0, 0, 0, 0x22, 0, 5, 'a'};
  CHECK(pp_ssl_parse(past, sizeof past, &s) == PP_ETLV);
  static const uint8_t two[] = {1, 0, 0, 0, 0, 0x22, 0, 1, 'a',
                                0x22, 0, 1, 'b'};
  CHECK(pp_ssl_parse(two, sizeof two, &s) == PP_ETLV);
  uint8_t wrapped[3 + sizeof two];
  wrapped[0] = 0x20, wrapped[1] = 0, wrapped[2] = sizeof two;
  memcpy(wrapped + 3, two, sizeof two);
  CHECK(pp_parse(buf, v2_tlvs(buf, wrapped, sizeof wrapped), &h) == PP_ETLV);
}

/* --- building ------------------------------------------------------------ */

static void test_build_v1(void) {
  char out[PP_V1_MAX];
  struct net_addr s = ip("192.168.0.1", 56324), d = ip("192.168.0.11", 443);
  const char *want = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
  int n = pp_build_v1(out, sizeof out, &s, &d);
  CHECK(n == 47 && memcmp(out, want, 47) == 0);
  CHECK(pp_build_v1(out, 46, &s, &d) == -ENOSPC);
  CHECK(pp_build_v1(out, 47, &s, &d) == 47);
  s = ip("2001:db8::1", 1);
  d = ip("::1", 2);
  n = pp_build_v1(out, sizeof out, &s, &d);
  CHECK(n > 0 && memcmp(out, "PROXY TCP6 2001:db8::1 ::1 1 2\r\n", 32) == 0);
  /* Mixed families: the IPv4 one goes as IPv4-mapped. */
  d = ip("10.0.0.1", 3);
  n = pp_build_v1(out, sizeof out, &s, &d);
  want = "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 3\r\n";
  CHECK(n == (int)strlen(want) && memcmp(out, want, strlen(want)) == 0);
  /* No place for unix sockets in v1; no addresses at all: UNKNOWN. */
  struct net_addr u;
  CHECK(net_parse_unix("/tmp/x.sock", &u) == 0);
  CHECK(pp_build_v1(out, sizeof out, &u, &u) == 15);
  CHECK(memcmp(out, "PROXY UNKNOWN\r\n", 15) == 0);
  CHECK(pp_build_v1(out, sizeof out, &u, &d) == 15);
  CHECK(pp_build_v1(out, sizeof out, NULL, NULL) == 15);
  CHECK(pp_build_v1(out, sizeof out, NULL, &d) == -EINVAL);
  struct net_addr shortv4 = d;
  shortv4.len = 4;
  CHECK(pp_build_v1(out, sizeof out, &shortv4, &d) == -EINVAL);
}

static int same_addr(const struct net_addr *a, const struct net_addr *b) {
  return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* Build v1 and v2 from the pair, parse both back, compare. */
static int roundtrip(const char *sh, int sp, const char *dh, int dp) {
  struct net_addr s = ip(sh, sp), d = ip(dh, dp);
  struct pp_header h;
  char line[PP_V1_MAX];
  uint8_t bin[128];
  int n1 = pp_build_v1(line, sizeof line, &s, &d);
  int ok = n1 > 0 && pp_parse((uint8_t *)line, (size_t)n1, &h) == n1 &&
           same_addr(&h.src, &s) && same_addr(&h.dst, &d);
  int n2 = pp_build_v2(bin, sizeof bin, &s, &d, NULL, 0);
  ok &= n2 > 0 && pp_parse(bin, (size_t)n2, &h) == n2 &&
        same_addr(&h.src, &s) && same_addr(&h.dst, &d) && h.version == 2;
  return ok;
}

static void test_build_roundtrip(void) {
  CHECK(roundtrip("10.1.2.3", 1234, "10.9.8.7", 80));
  CHECK(roundtrip("0.0.0.0", 0, "255.255.255.255", 65535));
  CHECK(roundtrip("::1", 1, "fe80::1:2", 2));
  CHECK(roundtrip("::ffff:1.2.3.4", 5, "::ffff:5.6.7.8", 6));
  CHECK(roundtrip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, "::", 0));
  CHECK(roundtrip("2001:db8::", 7, "1:0:0:1::", 8));
}

static void test_build_v2(void) {
  uint8_t out[600];
  struct pp_header h;
  struct net_addr s = ip("192.168.0.1", 56324), d = ip("192.168.0.11", 443);
  uint8_t want[28];
  v2(want, 0x21, 0x11, TCP4_BODY, 12);
  CHECK(pp_build_v2(out, sizeof out, &s, &d, NULL, 0) == 28);
  CHECK(memcmp(out, want, 28) == 0);
  CHECK(pp_build_v2(out, 27, &s, &d, NULL, 0) == -ENOSPC);
  /* Mixed: both as IPv6. */
  struct net_addr d6 = ip("::1", 9);
  CHECK(pp_build_v2(out, sizeof out, &s, &d6, NULL, 0) == 52);
  CHECK(pp_parse(out, 52, &h) == 52 && h.family == AF_INET6);
  CHECK(addr_is(&h.src, "::ffff:192.168.0.1", 56324));
  /* LOCAL for a health check; UNSPEC for unix with IP. */
  CHECK(pp_build_v2(out, sizeof out, NULL, NULL, NULL, 0) == 16);
  CHECK(out[12] == 0x20 && out[13] == 0x00);
  CHECK(pp_parse(out, 16, &h) == 16 && h.command == PP_CMD_LOCAL);
  struct net_addr u, unnamed;
  CHECK(net_parse_unix("/run/app.sock", &u) == 0);
  CHECK(pp_build_v2(out, sizeof out, &u, &d, NULL, 0) == 16);
  CHECK(out[12] == 0x21 && out[13] == 0x00);
  /* Unix pairs round-trip, unnamed peers included. */
  memset(&unnamed, 0, sizeof unnamed);
  unnamed.ss.ss_family = AF_UNIX;
  unnamed.len = sizeof(sa_family_t);
  CHECK(pp_build_v2(out, sizeof out, &unnamed, &u, NULL, 0) == 232);
  CHECK(pp_parse(out, 232, &h) == 232 && h.family == AF_UNIX);
  CHECK(same_addr(&h.src, &unnamed) && same_addr(&h.dst, &u));
  CHECK(pp_build_v2(out, sizeof out, &s, NULL, NULL, 0) == -EINVAL);
}

static void test_build_v2_tlvs(void) {
  uint8_t out[600];
  struct pp_header h;
  struct pp_ssl ssl;
  struct net_addr s = ip("10.0.0.1", 1), d = ip("10.0.0.2", 2);
  static const uint8_t ssl_v[] = {1, 0, 0, 0, 0, 0x22, 0, 2, 'c', 'n'};
  struct pp_tlv_in t[] = {{PP_TLV_ALPN, "http/1.1", 8},
                          {PP_TLV_CRC32C, NULL, 0},
                          {PP_TLV_SSL, ssl_v, sizeof ssl_v},
                          {0xE5, NULL, 0}};
  int n = pp_build_v2(out, sizeof out, &s, &d, t, 4);
  CHECK(n == 16 + 12 + 11 + 7 + 13 + 3);
  CHECK(pp_parse(out, (size_t)n, &h) == n && h.ntlv == 4);
  int a = pp_tlv_find(&h, PP_TLV_ALPN), c = pp_tlv_find(&h, 0x03);
  CHECK(a == 0 && memcmp(out + h.tlv[a].off, "http/1.1", 8) == 0);
  CHECK(c == 1 && h.tlv[c].len == 4);
  int si = pp_tlv_find(&h, PP_TLV_SSL);
  CHECK(si == 2 && pp_ssl_parse(out + h.tlv[si].off, h.tlv[si].len,
                                &ssl) == 0 && ssl.cn.len == 2);
  /* The checksum really is the spec's: recompute it by hand. */
  uint32_t got = (uint32_t)out[h.tlv[c].off] << 24 |
                 (uint32_t)out[h.tlv[c].off + 1] << 16 |
                 (uint32_t)out[h.tlv[c].off + 2] << 8 | out[h.tlv[c].off + 3];
  memset(out + h.tlv[c].off, 0, 4);
  CHECK(crc_ref(out, (size_t)n) == got);
  /* Refusals. */
  struct pp_tlv_in two_crc[] = {{3, NULL, 0}, {3, NULL, 0}};
  CHECK(pp_build_v2(out, sizeof out, &s, &d, two_crc, 2) == -EINVAL);
  struct pp_tlv_in nul[] = {{0xE0, NULL, 3}};
  CHECK(pp_build_v2(out, sizeof out, &s, &d, nul, 1) == -EINVAL);
  static uint8_t big[70000];
  struct pp_tlv_in huge[] = {{0xE0, big, 65536}};
  CHECK(pp_build_v2(out, sizeof out, &s, &d, huge, 1) == -EINVAL);
  struct pp_tlv_in fits[] = {{0xE0, big, 65535 - 12 - 3}};
  CHECK(pp_build_v2(out, sizeof out, &s, &d, fits, 1) == -ENOSPC);
  uint8_t *max = malloc(PP_V2_MAX);
  if (max == NULL)
    abort();
  CHECK(pp_build_v2(max, PP_V2_MAX, &s, &d, fits, 1) == PP_V2_MAX);
  CHECK(pp_parse(max, PP_V2_MAX, &h) == PP_V2_MAX);
  struct pp_tlv_in over[] = {{0xE0, big, 65535 - 12 - 2}};
  CHECK(pp_build_v2(max, PP_V2_MAX, &s, &d, over, 1) == -EINVAL);
  free(max);
}

static void test_strerror(void) {
  for (int c = 0; c >= -10; c--) {
    const char *t = pp_strerror(c);
    CHECK(t != NULL && *t && strcmp(t, pp_strerror(-99)) != 0);
  }
  CHECK(strcmp(pp_strerror(PP_ECRC), "PROXY v2 CRC32C mismatch") == 0);
}

/* --- cidr ---------------------------------------------------------------- */

static int in(const char *rule, const char *host) {
  struct cidr c;
  if (cidr_parse(rule, &c) != 0)
    return -1;
  struct net_addr a = ip(host, 1);
  return cidr_match(&c, &a);
}

static void test_cidr_match(void) {
  CHECK(in("10.0.0.0/8", "10.1.2.3") == 1);
  CHECK(in("10.0.0.0/8", "11.0.0.1") == 0);
  CHECK(in("10.0.0.0/8", "::ffff:10.1.2.3") == 1); /* dual-stack peer */
  CHECK(in("10.0.0.0/8", "::a01:203") == 0);       /* not mapped */
  CHECK(in("10.0.0.0/9", "10.127.255.255") == 1);
  CHECK(in("10.0.0.0/9", "10.128.0.0") == 0);
  CHECK(in("127.0.0.1", "127.0.0.1") == 1);
  CHECK(in("127.0.0.1", "127.0.0.2") == 0);
  CHECK(in("::1", "::1") == 1);
  CHECK(in("::1", "::2") == 0);
  CHECK(in("fd00::/8", "fd12:3456::1") == 1);
  CHECK(in("fd00::/8", "fe80::1") == 0);
  CHECK(in("::ffff:10.0.0.0/104", "10.200.0.1") == 1);
  CHECK(in("::ffff:10.0.0.0/104", "11.0.0.1") == 0);
  CHECK(in("::/0", "1.2.3.4") == 1);
  CHECK(in("::/0", "2001:db8::1") == 1);
  CHECK(in("0.0.0.0/0", "1.2.3.4") == 1);
  CHECK(in("0.0.0.0/0", "::1") == 0);
  CHECK(in("1.2.3.4/32", "1.2.3.4") == 1);
  CHECK(in("2001:db8::/33", "2001:db8:7fff::1") == 1);
  CHECK(in("2001:db8::/33", "2001:db8:8000::1") == 0);
  struct cidr c;
  struct net_addr u;
  CHECK(cidr_parse("unix", &c) == 0 && net_parse_unix("/tmp/s", &u) == 0);
  CHECK(cidr_match(&c, &u) == 1);
  struct net_addr v4 = ip("127.0.0.1", 1);
  CHECK(cidr_match(&c, &v4) == 0);
  CHECK(cidr_parse("0.0.0.0/0", &c) == 0 && cidr_match(&c, &u) == 0);
  CHECK(cidr_parse("::/0", &c) == 0 && cidr_match(&c, &u) == 0);
}

static void test_cidr_parse_errors(void) {
  struct cidr c;
  CHECK(cidr_parse("10.0.0.0/33", &c) == -ERANGE);
  CHECK(cidr_parse("::/129", &c) == -ERANGE);
  CHECK(cidr_parse("::/99999999999", &c) == -ERANGE);
  CHECK(cidr_parse("10.1.0.0/8", &c) == -EDOM);
  CHECK(cidr_parse("1.2.3.4/0", &c) == -EDOM);
  CHECK(cidr_parse("fd00::1/8", &c) == -EDOM);
  const char *bad[] = {"", "/8", "10.0.0.0/", "10.0.0.0/08", "10.0.0.0/+8",
                       "10.0.0.0/8 ", " 10.0.0.0/8", "10.0.0/8",
                       "010.0.0.0/8", "fe80::1%eth0", "[::1]", "::1/64/1",
                       "10.0.0.0/-1", "localhost", "UNIX", "unix/8",
                       "10.0.0.0/8x"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int rc = cidr_parse(bad[i], &c);
    CHECK(rc == -EINVAL);
    if (rc != -EINVAL)
      printf("  '%s' gave %d\n", bad[i], rc);
  }
  CHECK(cidr_parse("10.0.0.0/0", &c) == -EDOM);
  CHECK(cidr_parse("0.0.0.0/0", &c) == 0 && c.bits == 96);
  CHECK(cidr_parse("::/0", &c) == 0 && c.bits == 0);
}

static void test_cidr_list_and_format(void) {
  const char *rules[] = {"10.0.0.0/8", "fd00::/8", "127.0.0.1", "::1",
                         "::ffff:10.0.0.0/104", "0.0.0.0/0", "::/0", "unix",
                         "192.168.1.128/25"};
  const char *want[] = {"10.0.0.0/8", "fd00::/8", "127.0.0.1/32", "::1/128",
                        "::ffff:10.0.0.0/104", "0.0.0.0/0", "::/0", "unix",
                        "192.168.1.128/25"};
  struct cidr list[9];
  for (size_t i = 0; i < 9; i++) {
    char text[CIDR_STRLEN];
    struct cidr again;
    CHECK(cidr_parse(rules[i], &list[i]) == 0);
    int n = cidr_format(&list[i], text, sizeof text);
    CHECK(n > 0 && strcmp(text, want[i]) == 0);
    CHECK(cidr_parse(text, &again) == 0 &&
          memcmp(&again, &list[i], sizeof again) == 0);
  }
  char tiny[4];
  CHECK(cidr_format(&list[0], tiny, sizeof tiny) == -ENOSPC);
  struct net_addr a = ip("192.168.1.200", 1), b = ip("192.168.1.100", 1);
  CHECK(cidr_match_any(list + 8, 1, &a) == 1);
  CHECK(cidr_match_any(list + 8, 1, &b) == 0);
  CHECK(cidr_match_any(list, 2, &b) == 0);
  CHECK(cidr_match_any(list, 6, &b) == 1); /* 0.0.0.0/0 */
  CHECK(cidr_match_any(list, 0, &b) == 0);
}

int main(void) {
  RUN(test_v1_spec_example);
  RUN(test_v1_max_lines);
  RUN(test_v1_ipv6_forms);
  RUN(test_v1_strict);
  RUN(test_v1_early_errors);
  RUN(test_v2_families);
  RUN(test_v2_local);
  RUN(test_v2_errors);
  RUN(test_v2_tlvs);
  RUN(test_v2_tlv_count);
  RUN(test_crc32c);
  RUN(test_v2_crc);
  RUN(test_v2_ssl);
  RUN(test_build_v1);
  RUN(test_build_roundtrip);
  RUN(test_build_v2);
  RUN(test_build_v2_tlvs);
  RUN(test_strerror);
  RUN(test_cidr_match);
  RUN(test_cidr_parse_errors);
  RUN(test_cidr_list_and_format);
  return CHECK_DONE();
}
