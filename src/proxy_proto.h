/*
 * proxy_proto.h -- the HAProxy PROXY protocol, versions 1 (a text line) and
 * 2 (binary, with TLVs): parsing the header a load balancer puts before a
 * connection's data, and building one for a connection berth opens.
 *
 * Contract: no lua.h here (unit-tested and fuzzed alone). Nothing is
 * allocated; TLVs are reported as offsets into the caller's bytes. Negative
 * PP_E* codes are errors: the spec says the connection must then be
 * dropped. Whether a peer may send the header at all is the caller's
 * business (see cidr.h): accepting it from anyone lets anyone spoof their
 * address.
 *
 * Parsing rules (strict, as the spec asks):
 *   - v1: "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n", single spaces,
 *     at most 107 bytes with the CRLF. IPv4 is a dotted quad without leading
 *     zeros; IPv6 is what inet_pton accepts (1-4 hex digits per group, one
 *     "::", an IPv4 tail such as "::ffff:1.2.3.4"; no zone); ports are
 *     0-65535 without leading zeros. "PROXY UNKNOWN" is followed by CRLF or
 *     by a space and anything up to the CRLF (ignored): family AF_UNSPEC.
 *     A lone CR or LF does not end the line.
 *   - v2: the 12-byte signature, version 2, command LOCAL or PROXY, then a
 *     family/transport byte among 0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32,
 *     a length covering at least the addresses, the addresses, then TLVs
 *     that must tile the rest exactly. LOCAL (a balancer's health check):
 *     everything after byte 16 is skipped unread, as the spec says, so the
 *     caller keeps the real peer. PROXY with family UNSPEC: no addresses,
 *     the block is TLVs (that is how senders lay it out).
 *   - TLVs: a known type (ALPN, AUTHORITY, CRC32C, UNIQUE_ID, SSL, NETNS)
 *     twice is malformed; CRC32C must be 4 bytes and must match (computed
 *     over the whole header with its value zeroed); UNIQUE_ID is at most
 *     128 bytes; SSL must parse with pp_ssl_parse; NOOP is skipped and not
 *     listed; other types are listed as they are. More than PP_MAX_TLVS
 *     listed TLVs is an error rather than a silent truncation.
 *
 * Incremental use: pp_parse returns 0 only while the bytes so far can still
 * grow into a valid header (a wrong first byte fails at once; a v1 line is
 * checked field by field as it arrives; a v2 header's fixed 16 bytes are
 * checked as they arrive and its variable part once its declared length is
 * there). A caller should not read more than it needs ahead of the header:
 * the result says where the application's bytes start.
 */
#ifndef BERTH_PROXY_PROTO_H
#define BERTH_PROXY_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "net.h"

#define PP_V1_MAX 107           /* longest v1 line, CRLF included */
#define PP_V2_HDR 16            /* v2 fixed part */
#define PP_V2_MAX (16 + 65535)  /* longest v2 header */
#define PP_MAX_TLVS 16

#define PP_CMD_LOCAL 0
#define PP_CMD_PROXY 1

#define PP_TLV_ALPN 0x01
#define PP_TLV_AUTHORITY 0x02
#define PP_TLV_CRC32C 0x03
#define PP_TLV_NOOP 0x04
#define PP_TLV_UNIQUE_ID 0x05
#define PP_TLV_SSL 0x20
#define PP_TLV_NETNS 0x30

/* Sub-TLVs of PP_TLV_SSL, and its client bits. */
#define PP_SSL_VERSION 0x21
#define PP_SSL_CN 0x22
#define PP_SSL_CIPHER 0x23
#define PP_SSL_SIG_ALG 0x24
#define PP_SSL_KEY_ALG 0x25
#define PP_CLIENT_SSL 0x01
#define PP_CLIENT_CERT_CONN 0x02
#define PP_CLIENT_CERT_SESS 0x04

#define PP_ESIGNATURE (-1) /* neither "PROXY " nor the v2 signature */
#define PP_EV1 (-2)        /* a malformed v1 line */
#define PP_ETOOLONG (-3)   /* no CRLF within the first 107 bytes */
#define PP_EVERSION (-4)   /* v2 version other than 2 */
#define PP_ECOMMAND (-5)   /* v2 command other than LOCAL/PROXY */
#define PP_EFAMILY (-6)    /* v2 family/transport not in the spec */
#define PP_ELENGTH (-7)    /* v2 length shorter than the addresses */
#define PP_ETLV (-8)       /* a malformed TLV */
#define PP_ETOOMANY (-9)   /* more than PP_MAX_TLVS TLVs */
#define PP_ECRC (-10)      /* the CRC32C TLV does not match */

struct pp_tlv {
  uint8_t type;
  uint16_t len;
  size_t off; /* the value is p[off .. off+len) of pp_parse's input */
};

struct pp_header {
  int version;   /* 1 or 2 */
  int command;   /* PP_CMD_PROXY, or PP_CMD_LOCAL (v2 only) */
  int family;    /* AF_UNSPEC, AF_INET, AF_INET6 or AF_UNIX */
  int transport; /* 0 (unspecified), SOCK_STREAM or SOCK_DGRAM */
  /* Set for AF_INET/AF_INET6 (address and port) and AF_UNIX (the path;
   * an all-zero field is an unnamed socket, len = sizeof(sa_family_t); an
   * abstract name loses trailing NULs); otherwise zero with len 0. */
  struct net_addr src, dst;
  size_t ntlv;
  struct pp_tlv tlv[PP_MAX_TLVS];
};

/* Should src/dst replace the connection's own addresses? Not for LOCAL
 * (health checks) nor for an unknown family (v1 UNKNOWN, v2 UNSPEC). */
static inline int pp_has_addresses(const struct pp_header *h) {
  return h->command == PP_CMD_PROXY && h->family != AF_UNSPEC;
}

/*
 * Parse the header at the start of p[0..n): its length (> 0), 0 when more
 * bytes are needed, or a negative PP_E* code. *h is filled on success (and
 * cleared first in every case).
 */
int pp_parse(const uint8_t *p, size_t n, struct pp_header *h);

/* Index of the first TLV of `type` in h->tlv, or -1. */
int pp_tlv_find(const struct pp_header *h, uint8_t type);

/* A sub-TLV value of the SSL TLV: p == NULL when absent. */
struct pp_bytes {
  const uint8_t *p;
  size_t len;
};

struct pp_ssl {
  uint8_t client;  /* PP_CLIENT_* bits */
  uint32_t verify; /* 0: the client certificate verified */
  struct pp_bytes version, cn, cipher, sig_alg, key_alg;
};

/* Decode the value of a PP_TLV_SSL TLV (tlv[0..len), e.g. p + h->tlv[i].off):
 * 0, or PP_ETLV when the sub-TLVs do not tile it exactly or a known
 * subtype repeats. Unknown subtypes are skipped. */
int pp_ssl_parse(const uint8_t *tlv, size_t len, struct pp_ssl *out);

/* A TLV to send. A PP_TLV_CRC32C entry's value is ignored: pp_build_v2
 * computes it (at most one such entry). */
struct pp_tlv_in {
  uint8_t type;
  const void *value;
  size_t len;
};

/*
 * Build a header for a connection from `src` to `dst`; returns its length,
 * -ENOSPC when `cap` is too small, or -EINVAL.
 *   - Two IPv4 addresses give TCP4 (v1) / 0x11 (v2); two IPv6, or one of
 *     each (the IPv4 one is sent as ::ffff:a.b.c.d, nothing is lost), give
 *     TCP6 / 0x21. An IPv4-mapped IPv6 peer is sent as IPv6 as it is.
 *   - v2: two AF_UNIX addresses give 0x31; any other mix, or a family the
 *     protocol has no place for, gives PROXY with family UNSPEC. v1 has no
 *     such families: it sends "PROXY UNKNOWN\r\n".
 *   - src and dst both NULL: v2 sends LOCAL (a health check), v1 UNKNOWN.
 *     Only one of them NULL, or an address whose len is too short for its
 *     family, is -EINVAL; so is a TLV over 65535 bytes, a NULL value with
 *     a length, a second CRC32C, or a header over PP_V2_MAX.
 * The v1 line is not NUL-terminated.
 */
int pp_build_v1(char *out, size_t cap, const struct net_addr *src,
                const struct net_addr *dst);
int pp_build_v2(uint8_t *out, size_t cap, const struct net_addr *src,
                const struct net_addr *dst, const struct pp_tlv_in *tlvs,
                size_t ntlvs);

/* CRC32C (Castagnoli, as RFC 4960 appendix B): start with crc 0, pass the
 * previous result to continue. pp_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t pp_crc32c(uint32_t crc, const void *p, size_t n);

const char *pp_strerror(int code);

#endif
