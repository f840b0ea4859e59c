/*
 * sha1.c -- see sha1.h for the contract. No lua.h here.
 *
 * A straightforward reading of FIPS 180-4 §6.1: 64-byte blocks, an
 * 80-word schedule computed in a 16-word ring, big-endian loads and stores
 * done byte by byte (no alignment or endianness assumptions).
 */
#include "sha1.h"

#include <string.h>

static uint32_t rol(uint32_t x, int n) {
  return (x << n) | (x >> (32 - n));
}

static uint32_t load_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

static void store_be32(uint8_t *p, uint32_t x) {
  p[0] = (uint8_t)(x >> 24);
  p[1] = (uint8_t)(x >> 16);
  p[2] = (uint8_t)(x >> 8);
  p[3] = (uint8_t)x;
}

/* f_t(b, c, d) + K_t for round t (FIPS 180-4 §4.1.1, §4.2.1). */
static uint32_t round_fk(int t, uint32_t b, uint32_t c, uint32_t d) {
  if (t < 20)
    return ((b & c) | (~b & d)) + 0x5a827999u;
  if (t < 40)
    return (b ^ c ^ d) + 0x6ed9eba1u;
  if (t < 60)
    return ((b & c) | (b & d) | (c & d)) + 0x8f1bbcdcu;
  return (b ^ c ^ d) + 0xca62c1d6u;
}

static void compress(uint32_t h[5], const uint8_t block[64]) {
  uint32_t w[16];
  for (int i = 0; i < 16; i++)
    w[i] = load_be32(block + 4 * i);
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int t = 0; t < 80; t++) {
    if (t >= 16) /* W_t, kept in a ring of the last 16 words */
      w[t & 15] = rol(w[(t - 3) & 15] ^ w[(t - 8) & 15] ^
                      w[(t - 14) & 15] ^ w[t & 15], 1);
    uint32_t tmp = rol(a, 5) + round_fk(t, b, c, d) + e + w[t & 15];
    e = d;
    d = c;
    c = rol(b, 30);
    b = a;
    a = tmp;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

void sha1_init(struct sha1 *s) {
  static const uint32_t iv[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu,
                                 0x10325476u, 0xc3d2e1f0u};
  memcpy(s->h, iv, sizeof iv);
  s->bytes = 0;
  s->fill = 0;
}

void sha1_update(struct sha1 *s, const void *p, size_t n) {
  const uint8_t *in = p;
  s->bytes += n;
  while (n > 0) {
    size_t take = 64 - s->fill < n ? 64 - s->fill : n;
    if (s->fill == 0 && n >= 64) { /* whole blocks straight from input */
      compress(s->h, in);
      take = 64;
    } else {
      memcpy(s->block + s->fill, in, take);
      s->fill += take;
      if (s->fill == 64) {
        compress(s->h, s->block);
        s->fill = 0;
      }
    }
    in += take;
    n -= take;
  }
}

/* Padding: 0x80, zeros, then the bit length as 64 bits big-endian. */
void sha1_final(struct sha1 *s, uint8_t out[SHA1_DIGEST_LEN]) {
  uint64_t bits = s->bytes * 8;
  s->block[s->fill++] = 0x80;
  if (s->fill > 56) {
    memset(s->block + s->fill, 0, 64 - s->fill);
    compress(s->h, s->block);
    s->fill = 0;
  }
  memset(s->block + s->fill, 0, 56 - s->fill);
  store_be32(s->block + 56, (uint32_t)(bits >> 32));
  store_be32(s->block + 60, (uint32_t)bits);
  compress(s->h, s->block);
  for (int i = 0; i < 5; i++)
    store_be32(out + 4 * i, s->h[i]);
}
