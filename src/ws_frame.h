/*
 * ws_frame.h -- the WebSocket wire format (RFC 6455): frame headers,
 * masking, UTF-8 validation of text, close codes and the handshake key.
 *
 * Contract: no lua.h, no allocation, no global state. These are the pieces
 * of a WebSocket endpoint that run per byte; message assembly (continuation
 * frames following a first data frame, control frames interleaved, closing
 * handshake) is the caller's, on top of the per-frame checks here.
 * Payload bytes are never copied: ws_mask works in place.
 */
#ifndef BERTH_WS_FRAME_H
#define BERTH_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* Opcodes (RFC 6455 §5.2). */
enum {
  WS_OP_CONT = 0x0,
  WS_OP_TEXT = 0x1,
  WS_OP_BINARY = 0x2,
  WS_OP_CLOSE = 0x8,
  WS_OP_PING = 0x9,
  WS_OP_PONG = 0xA
};

/* The rsv field's bits, as in the first header byte shifted down by 4. */
#define WS_RSV1 4 /* permessage-deflate's "compressed" bit (RFC 7692) */
#define WS_RSV2 2
#define WS_RSV3 1

/* ws_parse_header errors; ws_error_close_code() gives the close code. */
enum {
  WS_EOPCODE = -1,        /* reserved opcode                      1002 */
  WS_ERSV = -2,           /* rsv bit not negotiated, or on a
                             control/continuation frame           1002 */
  WS_ECONTROL_LEN = -3,   /* control frame longer than 125        1002 */
  WS_ECONTROL_FRAG = -4,  /* control frame without FIN            1002 */
  WS_ELEN64 = -5,         /* 64-bit length with the top bit set   1002 */
  WS_EMASK_REQUIRED = -6, /* unmasked frame from a client         1002 */
  WS_EMASK_FORBIDDEN = -7, /* masked frame from a server          1002 */
  WS_ETOO_BIG = -8        /* payload over max_frame               1009 */
};

struct ws_frame {
  unsigned fin;     /* 0 or 1 */
  unsigned rsv;     /* WS_RSV* bits */
  unsigned opcode;  /* WS_OP_* */
  int masked;
  uint64_t len;     /* payload length */
  uint8_t mask[4];  /* when masked */
  size_t header_len;
};

struct ws_rules {
  unsigned allowed_rsv; /* WS_RSV* bits an extension negotiated, else 0 */
  int require_mask;     /* a server reading a client's frames */
  int forbid_mask;      /* a client reading a server's frames */
  uint64_t max_frame;   /* payload limit (1009); 0 = no limit */
};

/*
 * Parse the frame header at p[0..n): returns its length (2..14) and fills
 * `f`, 0 when more bytes are needed, or a negative WS_E*. Errors that the
 * first two bytes show are reported as soon as they are there. A length not
 * in its shortest encoding is accepted. `r` NULL: no rsv bits, masking not
 * checked, no size limit. RSV bits are allowed (per r->allowed_rsv) only on
 * the first frame of a data message (opcode text or binary).
 */
int ws_parse_header(const uint8_t *p, size_t n, struct ws_frame *f,
                    const struct ws_rules *r);

/* The close code for a WS_E* error: 1009 for WS_ETOO_BIG, else 1002. */
int ws_error_close_code(int err);

/*
 * XOR data[0..len) with the mask in place (masking and unmasking are the
 * same), as bytes offset .. offset + len of a payload: a payload that
 * arrives in pieces is unmasked piece by piece with the running offset.
 */
void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], size_t offset);

/*
 * Write a frame header for a payload of `len` bytes into out: returns its
 * length (2..14). The shortest length encoding is used; with a mask its 4
 * bytes follow (the payload is masked by the caller, with ws_mask).
 */
size_t ws_build_header(uint8_t out[14], int fin, int rsv1, int opcode,
                       uint64_t len, const uint8_t *mask_or_null);

/*
 * Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF) of a text message fed in any pieces. Start from
 * {0}. ws_utf8_feed returns -1 as soon as the bytes cannot be the start of
 * valid UTF-8 (and keeps returning -1), else 0. ws_utf8_done returns 0 when
 * the bytes so far end on a character boundary, -1 in the middle of a
 * sequence (or after a failure): call it at the end of the message.
 */
struct ws_utf8 {
  uint32_t state;
};

int ws_utf8_feed(struct ws_utf8 *u, const uint8_t *p, size_t n);
int ws_utf8_done(const struct ws_utf8 *u);

/* RFC 6455 §7.4: 1 when `code` may be sent in a close frame (1000-1003,
 * 1007-1011, 3000-4999), 0 for reserved and unassigned codes. */
int ws_close_code_valid(unsigned code);

/* Sec-WebSocket-Key is 16 bytes in base64: 24 characters ending "==". */
int ws_key_valid(const char *key, size_t n);

/* Sec-WebSocket-Accept for `key`: base64(SHA-1(key GUID)), 28 characters
 * and a NUL. */
void ws_accept_key(const char *key, size_t keylen, char out[29]);

#endif
