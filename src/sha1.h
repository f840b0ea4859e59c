/*
 * sha1.h -- SHA-1 (FIPS 180-4), for the WebSocket handshake only.
 *
 * Contract: no lua.h, no allocation. SHA-1 is broken for collision
 * resistance; RFC 6455 uses it as a fixed transform, not for security, and
 * nothing else in berth may rely on it. Feed bytes with sha1_update in any
 * pieces, then sha1_final writes the 20-byte digest (the context must be
 * re-initialised before reuse).
 */
#ifndef BERTH_SHA1_H
#define BERTH_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define SHA1_DIGEST_LEN 20

struct sha1 {
  uint32_t h[5];
  uint64_t bytes;     /* total fed so far */
  uint8_t block[64];  /* a partial block */
  size_t fill;        /* bytes in block */
};

void sha1_init(struct sha1 *s);
void sha1_update(struct sha1 *s, const void *p, size_t n);
void sha1_final(struct sha1 *s, uint8_t out[SHA1_DIGEST_LEN]);

#endif
