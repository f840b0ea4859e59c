/*
 * tls.h -- TLS for berth's sockets, over OpenSSL 3: contexts made from
 * options, a connection wrapped around a socket's descriptor, a
 * non-blocking handshake, record reads and writes, close_notify, and what
 * a connection negotiated.
 *
 * Contract: no lua.h here, and tls.c is the only file of berth that
 * includes OpenSSL headers. Functions return 0 / a count on success and a
 * negative code on failure: -errno, or one of the TLS_E* codes below.
 *
 * Transport (the design choice, README "TLS"): a connection reads its
 * records straight from the descriptor (one recv per record burst, like
 * SSL_set_fd), but every byte it writes goes through the socket's own
 * write buffer: sent at once when the buffer is empty, queued otherwise.
 * So OpenSSL never sees a blocked write (no SSL_write retry with "the same
 * arguments", no WANT_WRITE anywhere), the socket's high/low watermarks,
 * max_output, pending() and the write watcher work on TLS exactly as on
 * plain TCP, and full duplex needs nothing special.
 *
 * Lifetime: a struct tls_ctx is reference-counted; a connection holds a
 * reference until tls_free, so replacing a server's context (reload) never
 * frees what an established or handshaking connection uses.
 */
#ifndef BERTH_TLS_H
#define BERTH_TLS_H

#include <stddef.h>

#include "buffer.h"

/* Failures besides -errno. (Below every errno, so they never collide.) */
#define TLS_ETRUNCATED (-1001) /* EOF without close_notify */
#define TLS_EPROTO     (-1002) /* protocol, alert or verification failure;
                                  tls_why() says which */
#define TLS_ENOHELLO   (-1003) /* closed before sending a ClientHello */
#define TLS_ISERR(e) ((e) <= TLS_ETRUNCATED && (e) >= TLS_ENOHELLO)

/* A session ticket key: 16 bytes of name, 32 of HMAC-SHA256 key, 32 of
 * AES-256 key. A key file holds 1 to TLS_TICKET_KEYS_MAX of them back to
 * back; the first encrypts new tickets, every one decrypts. */
#define TLS_TICKET_KEY_SIZE 80
#define TLS_TICKET_KEYS_MAX 8

enum tls_verify { TLS_VERIFY_NONE, TLS_VERIFY_OPTIONAL, TLS_VERIFY_REQUIRED };

/* One certificate chosen by the name a client asks for (SNI): an exact
 * name, or "*.example.com" for any single label in front of it. */
struct tls_sni {
  const char *name, *cert, *key;
};

struct tls_keys; /* a set of ticket keys, reference-counted */

struct tls_opts {
  int server;                /* a server context, else a client one */
  const char *cert, *key;    /* PEM files: the chain, the private key */
  const char *ca;            /* PEM file or hashed directory of trusted CAs;
                                NULL: the system store (clients) */
  enum tls_verify verify;    /* check the peer's certificate */
  const unsigned char *alpn; /* protocols in ALPN wire format, or NULL */
  size_t alpnlen;
  const char *ciphers;       /* TLS 1.2 cipher list, NULL: the default */
  const char *ciphersuites;  /* TLS 1.3 suites, NULL: the default */
  int min_version;           /* 0x0301..0x0304; 0: TLS 1.2 */
  const struct tls_sni *sni; /* extra certificates by name (servers) */
  size_t nsni;
  const char *ticket_keys;   /* a ticket key file (servers), or NULL */
  struct tls_keys *keys;     /* ticket keys when there is no file, or
                                NULL: OpenSSL's own random ones */
};

struct tls_ctx;

/* A context for the options: NULL with a message in err (which file, and
 * OpenSSL's reason) when a file is missing or broken, a key does not match
 * its certificate, or an option is refused. */
struct tls_ctx *tls_ctx_new(const struct tls_opts *o, char *err,
                            size_t errlen);
void tls_ctx_ref(struct tls_ctx *c);
void tls_ctx_unref(struct tls_ctx *c);
int tls_ctx_isserver(const struct tls_ctx *c);
/* Whether it checks the peer's certificate. */
int tls_ctx_verifies(const struct tls_ctx *c);

/* Ticket keys from `len` bytes (a multiple of TLS_TICKET_KEY_SIZE, at most
 * TLS_TICKET_KEYS_MAX keys); NULL if the length is wrong or out of
 * memory. The new set has one reference. */
struct tls_keys *tls_keys_new(const unsigned char *bytes, size_t len);
void tls_keys_unref(struct tls_keys *k);
/* `len` bytes from OpenSSL's CSPRNG: 0 or -EIO. */
int tls_random(unsigned char *out, size_t len);

struct tls;

/* Wrap the connected, non-blocking descriptor fd. `out` is the socket's
 * write buffer: what the kernel does not take is appended there, and the
 * caller drains it. A client context sends `servername` (SNI, unless it is
 * an IP literal) and, when it verifies, checks the certificate against it.
 * The OpenSSL connection itself is made when the peer first sends a byte
 * (servers) or at the first step (clients), so a server connection that
 * never speaks costs no TLS state. NULL: out of memory. */
struct tls *tls_new(struct tls_ctx *c, int fd, struct buf *out,
                    const char *servername);
/* Bytes of the stream received before the wrap (STARTTLS: read along with
 * the command); they are read first. 0 or -ENOMEM. */
int tls_preload(struct tls *t, const char *p, size_t n);
void tls_free(struct tls *t);

/* Advance the handshake: 0 when complete, -EAGAIN to wait until the
 * descriptor is readable (writes never wait: see the top), or a failure. */
int tls_handshake(struct tls *t);
int tls_established(const struct tls *t);
/* Up to n bytes of plaintext: the count, 0 after the peer's close_notify,
 * -EAGAIN, -errno (the connection failed), TLS_ETRUNCATED or TLS_EPROTO. */
long tls_recv(struct tls *t, void *p, size_t n);
/* Encrypt all n bytes (sent now, or queued in `out`; with `cork`, queued
 * only): n, or -errno / TLS_EPROTO. */
long tls_send(struct tls *t, const void *p, size_t n, int cork);
/* Whether a read may find bytes without waiting for readiness: OpenSSL
 * holds some, or the last recv filled what it asked for. */
int tls_readable(const struct tls *t);
/* Send close_notify (once; only after a handshake that completed, and not
 * after a failure). */
void tls_close(struct tls *t);

/* Bytes received and sent on the wire since the last call, and the
 * -errno of a send that failed meanwhile (0 if none). */
int tls_take(struct tls *t, size_t *in, size_t *out);
/* Why the last failure happened, as text ("certificate verify failed:
 * hostname mismatch", "wrong version number"...). */
void tls_why(const struct tls *t, char *buf, size_t len);
/* A short stable name for a TLS_E* code ("truncated", "tls"). */
const char *tls_errcode(int err);

struct tls_info {
  const char *version;       /* "TLSv1.3" */
  const char *cipher;        /* "TLS_AES_128_GCM_SHA256" */
  const unsigned char *alpn; /* negotiated protocol, not NUL-terminated */
  unsigned alpnlen;          /* 0: none */
  const char *sni;           /* the name the client asked for, or NULL */
  int resumed;               /* an abbreviated (resumed) handshake */
  int verified;              /* the peer sent a certificate that verified */
  char subject[256];         /* its subject ("CN=...", RFC 2253), or "" */
};

/* What the connection negotiated; -EAGAIN before the handshake is done.
 * The pointers live as long as the connection. */
int tls_info(const struct tls *t, struct tls_info *i);

/* Does `pattern` (a name, or "*." and a name) match host name `name`?
 * Case-insensitive; a wildcard stands for exactly one non-empty label. */
int tls_name_match(const char *pattern, const char *name);

#endif
