/*
 * ws_frame.c -- see ws_frame.h for the contract. No lua.h here.
 *
 * The per-byte loops (masking, UTF-8) work a 64-bit word at a time where
 * they can; words are moved with memcpy, which compilers turn into plain
 * loads and stores, so there is no unaligned access or aliasing UB.
 */
#include "ws_frame.h"

#include <string.h>

#include "sha1.h"

/* --- frame headers ---------------------------------------------------- */

/* Checks the first two bytes allow: opcode, rsv, control frame rules,
 * masking. */
static int check_first(unsigned b0, unsigned b1, const struct ws_rules *r) {
  unsigned op = b0 & 15, rsv = (b0 >> 4) & 7, masked = b1 >> 7;
  int control = (op & 8) != 0;
  if ((op > WS_OP_BINARY && op < WS_OP_CLOSE) || op > WS_OP_PONG)
    return WS_EOPCODE;
  /* Extensions (permessage-deflate) flag the first frame of a message; a
   * control or continuation frame never carries a bit. */
  unsigned allowed = r && (op == WS_OP_TEXT || op == WS_OP_BINARY)
                         ? r->allowed_rsv : 0;
  if (rsv & ~allowed)
    return WS_ERSV;
  if (control && !(b0 >> 7))
    return WS_ECONTROL_FRAG;
  if (control && (b1 & 127) > 125)
    return WS_ECONTROL_LEN;
  if (r && r->require_mask && !masked)
    return WS_EMASK_REQUIRED;
  if (r && r->forbid_mask && masked)
    return WS_EMASK_FORBIDDEN;
  return 0;
}

int ws_parse_header(const uint8_t *p, size_t n, struct ws_frame *f,
                    const struct ws_rules *r) {
  if (n < 2)
    return 0;
  int err = check_first(p[0], p[1], r);
  if (err != 0)
    return err;
  unsigned len7 = p[1] & 127;
  size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
  int masked = p[1] >> 7;
  size_t hlen = 2 + ext + (masked ? 4 : 0);
  if (n < hlen)
    return 0;
  uint64_t len = len7;
  if (ext > 0) {
    len = 0;
    for (size_t i = 0; i < ext; i++)
      len = len << 8 | p[2 + i];
  }
  if (len >> 63)
    return WS_ELEN64;
  if (r && r->max_frame && len > r->max_frame)
    return WS_ETOO_BIG;
  f->fin = p[0] >> 7;
  f->rsv = (p[0] >> 4) & 7;
  f->opcode = p[0] & 15;
  f->masked = masked;
  f->len = len;
  memset(f->mask, 0, 4);
  if (masked)
    memcpy(f->mask, p + 2 + ext, 4);
  f->header_len = hlen;
  return (int)hlen;
}

int ws_error_close_code(int err) {
  return err == WS_ETOO_BIG ? 1009 : 1002;
}

size_t ws_build_header(uint8_t out[14], int fin, int rsv1, int opcode,
                       uint64_t len, const uint8_t *mask_or_null) {
  size_t n = 2;
  out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 15));
  uint8_t maskbit = mask_or_null ? 0x80 : 0;
  if (len < 126) {
    out[1] = (uint8_t)(maskbit | len);
  } else if (len <= 0xffff) {
    out[1] = maskbit | 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    n = 4;
  } else {
    out[1] = maskbit | 127;
    for (int i = 0; i < 8; i++)
      out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    n = 10;
  }
  if (mask_or_null) {
    memcpy(out + n, mask_or_null, 4);
    n += 4;
  }
  return n;
}

/* --- masking ---------------------------------------------------------- */

void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4],
             size_t offset) {
  size_t i = 0, k = offset & 3;
  /* Bytes up to an 8-byte boundary, so the word loop's stores are aligned
   * (memcpy makes them correct either way; alignment makes them fast). */
  size_t head = (8 - ((uintptr_t)data & 7)) & 7;
  if (head > len)
    head = len;
  for (; i < head; i++) {
    data[i] ^= mask[k];
    k = (k + 1) & 3;
  }
  if (len - head >= 8) {
    uint8_t key[8];
    uint64_t kw;
    for (int j = 0; j < 8; j++)
      key[j] = mask[(k + (size_t)j) & 3];
    memcpy(&kw, key, 8);
    for (; len - i >= 8; i += 8) { /* 8 bytes keep k where it is */
      uint64_t w;
      memcpy(&w, data + i, 8);
      w ^= kw;
      memcpy(data + i, &w, 8);
    }
  }
  for (; i < len; i++) {
    data[i] ^= mask[k];
    k = (k + 1) & 3;
  }
}

/* --- UTF-8 -------------------------------------------------------------
 * The state packs what the next bytes must be: the count of continuation
 * bytes still due (bits 0-7), and the range the next one must fall in
 * (low bound bits 8-15, high bound bits 16-23), which is narrower than
 * 80..BF right after E0, ED, F0 and F4: that is where overlongs,
 * surrogates and code points past U+10FFFF are refused. 0 is "between
 * characters"; UTF8_REJECT is sticky. */

#define UTF8_REJECT 0xffffffffu

static uint32_t pack(unsigned need, unsigned lo, unsigned hi) {
  return need | lo << 8 | hi << 16;
}

/* The state after a lead byte c (c >= 0x80), or UTF8_REJECT. */
static uint32_t lead(unsigned c) {
  if (c < 0xc2) /* a continuation byte, or C0/C1 (always overlong) */
    return UTF8_REJECT;
  if (c < 0xe0)
    return pack(1, 0x80, 0xbf);
  if (c < 0xf0)
    return pack(2, c == 0xe0 ? 0xa0 : 0x80, c == 0xed ? 0x9f : 0xbf);
  if (c < 0xf5)
    return pack(3, c == 0xf0 ? 0x90 : 0x80, c == 0xf4 ? 0x8f : 0xbf);
  return UTF8_REJECT;
}

static uint32_t next_state(uint32_t st, unsigned c) {
  if (st == 0)
    return c < 0x80 ? 0 : lead(c);
  unsigned lo = (st >> 8) & 0xff, hi = (st >> 16) & 0xff;
  if (c < lo || c > hi)
    return UTF8_REJECT;
  unsigned need = (st & 0xff) - 1;
  return need ? pack(need, 0x80, 0xbf) : 0;
}

int ws_utf8_feed(struct ws_utf8 *u, const uint8_t *p, size_t n) {
  uint32_t st = u->state;
  size_t i = 0;
  while (i < n && st != UTF8_REJECT) {
    if (st == 0 && n - i >= 8) { /* ASCII runs, a word at a time */
      uint64_t w;
      memcpy(&w, p + i, 8);
      if ((w & 0x8080808080808080ULL) == 0) {
        i += 8;
        continue;
      }
    }
    st = next_state(st, p[i++]);
  }
  u->state = st;
  return st == UTF8_REJECT ? -1 : 0;
}

int ws_utf8_done(const struct ws_utf8 *u) {
  return u->state == 0 ? 0 : -1;
}

/* --- close codes and the handshake ------------------------------------- */

int ws_close_code_valid(unsigned code) {
  if (code >= 3000 && code <= 4999)
    return 1;
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011);
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int ws_key_valid(const char *key, size_t n) {
  if (n != 24 || key[22] != '=' || key[23] != '=')
    return 0;
  for (size_t i = 0; i < 22; i++)
    if (key[i] == '\0' || strchr(b64, key[i]) == NULL)
      return 0;
  return 1;
}

/* Standard base64 with padding of in[0..n) into out (4 * ceil(n / 3)
 * characters, then a NUL). */
static void base64(const uint8_t *in, size_t n, char *out) {
  size_t i = 0;
  for (; n - i >= 3; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    for (int j = 0; j < 4; j++)
      *out++ = b64[(v >> (18 - 6 * j)) & 63];
  }
  if (n - i > 0) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (n - i == 2)
      v |= (uint32_t)in[i + 1] << 8;
    out[0] = b64[v >> 18];
    out[1] = b64[(v >> 12) & 63];
    out[2] = '=';
    if (n - i == 2)
      out[2] = b64[(v >> 6) & 63];
    out[3] = '=';
    out += 4;
  }
  *out = '\0';
}

void ws_accept_key(const char *key, size_t keylen, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  uint8_t digest[SHA1_DIGEST_LEN];
  struct sha1 s;
  sha1_init(&s);
  sha1_update(&s, key, keylen);
  sha1_update(&s, guid, sizeof guid - 1);
  sha1_final(&s, digest);
  base64(digest, sizeof digest, out);
}
