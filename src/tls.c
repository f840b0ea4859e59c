/*
 * tls.c -- berth's TLS engine over OpenSSL 3 (see tls.h for the contract).
 * The only file that includes OpenSSL headers; no lua.h here.
 *
 * I/O goes through one BIO method of our own, set as both the read and the
 * write BIO of every connection:
 *   - read: the bytes preloaded by STARTTLS first, then recv() straight
 *     from the descriptor (no copy through a memory BIO); EAGAIN becomes
 *     OpenSSL's "retry read".
 *   - write: send() at once while the socket's write buffer is empty and
 *     not corked, and append whatever the kernel did not take to that
 *     buffer. It always accepts everything, so SSL_write and the handshake
 *     never block on writing: there is no WANT_WRITE, no retry with the
 *     same arguments, and the socket layer drains encrypted bytes exactly
 *     like plain ones. A failed send is remembered (tls_take) and later
 *     writes are dropped, as a plain socket's write side fails.
 *
 * Settings every context gets: TLS 1.2 at least (unless min_version says
 * otherwise), renegotiation off (SSL_OP_NO_RENEGOTIATION: a client cannot
 * make the server redo the expensive half of a handshake at will),
 * SSL_MODE_RELEASE_BUFFERS (an idle connection holds no record buffers),
 * read-ahead (one recv takes as many records as fit, instead of a header
 * and a body per record), ACCEPT_MOVING_WRITE_BUFFER (harmless, since
 * writes never need a retry). Servers: no session cache (resumption is by
 * stateless tickets, so memory does not grow with past clients), tickets
 * encrypted with the keys given (shared between workers and machines),
 * server cipher preference, SNI and ALPN callbacks.
 *
 * OpenSSL's error queue is per thread and must be empty before each call
 * whose outcome SSL_get_error interprets: every entry point clears it
 * first, and a failure records what it needs and clears it again.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net.h"
#include "tls.h"

#define TLS_SID_CTX "berth"
/* TLS 1.3 suites, AES-128 first: as strong as needed, a smaller key
 * schedule per connection and direction, and faster than AES-256. */
#define TLS_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:" \
                   "TLS_CHACHA20_POLY1305_SHA256"
#define TLS_TICKET_NAME 16

struct tls_keys {
  int refs;
  size_t n;                  /* keys */
  unsigned char bytes[];     /* n * TLS_TICKET_KEY_SIZE */
};

struct tls_named {           /* an SNI certificate */
  char *name;
  SSL_CTX *ssl;
};

struct tls_ctx {
  int refs;
  int server;
  int verify;                /* enum tls_verify */
  SSL_CTX *ssl;              /* the default certificate's */
  struct tls_named *sni;
  size_t nsni;
  unsigned char *alpn;       /* the server's preference, wire format */
  size_t alpnlen;
  struct tls_keys *keys;     /* ticket keys, or NULL */
};

struct tls {
  struct tls_ctx *ctx;       /* a reference */
  SSL *ssl;                  /* NULL until the first step */
  int fd;
  struct buf *out;           /* the socket's write buffer */
  struct buf pre;            /* preloaded input, read first */
  char *servername;          /* clients: SNI and the name to verify */
  size_t nin, nout;          /* wire bytes since tls_take */
  int rerr, werr;            /* -errno of a failed recv / send */
  int failcode;              /* the failure every later call returns */
  unsigned long err;         /* OpenSSL's error code of that failure */
  long verify;               /* the certificate check's result then */
  unsigned cork : 1;         /* queue writes, do not send now */
  unsigned more : 1;         /* the last recv filled what it asked for */
  unsigned eof : 1;          /* recv saw EOF */
  unsigned done : 1;         /* handshake complete */
  unsigned closed : 1;       /* close_notify sent */
  unsigned nomem : 1;        /* the write buffer could not grow */
};

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static BIO_METHOD *tls_method; /* process-wide, never freed */
static int tls_exidx = -1;     /* SSL_CTX ex_data: its struct tls_ctx */

/* -------------------------------------------------------------- the BIO */

static int tls_bio_read(BIO *b, char *p, int len) {
  struct tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (len <= 0)
    return 0;
  if (t->pre.len > 0) {
    size_t n = t->pre.len < (size_t)len ? t->pre.len : (size_t)len;
    memcpy(p, buf_begin(&t->pre), n);
    buf_consume(&t->pre, n);
    if (t->pre.len == 0)
      buf_free(&t->pre);
    t->more = 1;
    return (int)n;
  }
  long n = net_recv(t->fd, p, (size_t)len);
  t->more = n == len;
  if (n > 0) {
    t->nin += (size_t)n;
    return (int)n;
  }
  if (n == 0)
    t->eof = 1;
  else if (n == -EAGAIN)
    BIO_set_retry_read(b);
  else
    t->rerr = (int)n;
  return n == 0 ? 0 : -1;
}

static int tls_bio_write(BIO *b, const char *p, int len) {
  struct tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (len <= 0 || t->werr)
    return len > 0 ? len : 0; /* the write side failed: drop, as TCP does */
  size_t sent = 0;
  if (t->out->len == 0 && !t->cork) {
    struct iovec iov = {(void *)p, (size_t)len};
    long n = net_writev(t->fd, &iov, 1);
    if (n < 0 && n != -EAGAIN) {
      t->werr = (int)n;
      return len;
    }
    sent = n > 0 ? (size_t)n : 0;
    t->nout += sent;
  }
  if (sent < (size_t)len &&
      buf_append(t->out, p + sent, (size_t)len - sent) < 0) {
    t->nomem = 1;
    return -1;
  }
  return len;
}

static long tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)b; (void)num; (void)ptr;
  return cmd == BIO_CTRL_FLUSH; /* nothing is held back: flushed */
}

static void tls_setup(void) {
  tls_exidx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                               "berth socket");
  if (m == NULL || !BIO_meth_set_read(m, tls_bio_read) ||
      !BIO_meth_set_write(m, tls_bio_write) ||
      !BIO_meth_set_ctrl(m, tls_bio_ctrl)) {
    BIO_meth_free(m);
    return;
  }
  tls_method = m;
}

/* ------------------------------------------------------------ ticket keys */

struct tls_keys *tls_keys_new(const unsigned char *bytes, size_t len) {
  if (len == 0 || len % TLS_TICKET_KEY_SIZE != 0 ||
      len / TLS_TICKET_KEY_SIZE > TLS_TICKET_KEYS_MAX)
    return NULL;
  struct tls_keys *k = malloc(sizeof *k + len);
  if (k == NULL)
    return NULL;
  k->refs = 1;
  k->n = len / TLS_TICKET_KEY_SIZE;
  memcpy(k->bytes, bytes, len);
  return k;
}

void tls_keys_unref(struct tls_keys *k) {
  if (k != NULL && --k->refs == 0) {
    OPENSSL_cleanse(k->bytes, k->n * TLS_TICKET_KEY_SIZE);
    free(k);
  }
}

int tls_random(unsigned char *out, size_t len) {
  return len > INT32_MAX || RAND_bytes(out, (int)len) != 1 ? -EIO : 0;
}

/* Encrypt a new ticket with the first key, or find the key a ticket names:
 * 1 (decrypted with the current key), 2 (renew: an older key, or TLS 1.3,
 * where a resumption without it would send the client no new ticket and
 * its next connection would do a full handshake), 0 (unknown key: a full
 * handshake), -1 (failure). */
static int tls_ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv,
                         EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc) {
  const struct tls_ctx *c =
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tls_exidx);
  const struct tls_keys *k = c ? c->keys : NULL;
  if (k == NULL)
    return enc ? -1 : 0;
  size_t i = 0;
  if (enc) {
    memcpy(name, k->bytes, TLS_TICKET_NAME);
    if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1)
      return -1;
  } else {
    while (i < k->n &&
           memcmp(name, k->bytes + i * TLS_TICKET_KEY_SIZE, TLS_TICKET_NAME)
               != 0)
      i++;
    if (i == k->n)
      return 0;
  }
  const unsigned char *key = k->bytes + i * TLS_TICKET_KEY_SIZE;
  OSSL_PARAM params[3];
  params[0] = OSSL_PARAM_construct_octet_string(
      OSSL_MAC_PARAM_KEY, (void *)(key + TLS_TICKET_NAME), 32);
  params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                               (char *)"SHA256", 0);
  params[2] = OSSL_PARAM_construct_end();
  const unsigned char *aes = key + TLS_TICKET_NAME + 32;
  if (!EVP_MAC_CTX_set_params(hctx, params) ||
      !(enc ? EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, aes, iv)
            : EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, aes, iv)))
    return -1;
  return enc || (i == 0 && SSL_version(ssl) < TLS1_3_VERSION) ? 1 : 2;
}

/* ------------------------------------------------------------- contexts */

int tls_name_match(const char *pattern, const char *name) {
  if (pattern[0] != '*' || pattern[1] != '.')
    return strcasecmp(pattern, name) == 0;
  const char *dot = strchr(name, '.');
  return pattern[2] != '\0' && dot != NULL && dot != name &&
         strcasecmp(dot + 1, pattern + 2) == 0;
}

/* Exact names first, then wildcards; NULL: the default certificate. */
static SSL_CTX *tls_sni_find(const struct tls_ctx *c, const char *name) {
  for (int wild = 0; wild < 2; wild++)
    for (size_t i = 0; i < c->nsni; i++)
      if ((c->sni[i].name[0] == '*') == wild &&
          tls_name_match(c->sni[i].name, name))
        return c->sni[i].ssl;
  return NULL;
}

static int tls_sni_cb(SSL *ssl, int *alert, void *arg) {
  (void)alert;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  SSL_CTX *x = name ? tls_sni_find(arg, name) : NULL;
  if (x != NULL && SSL_set_SSL_CTX(ssl, x) == NULL)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  return SSL_TLSEXT_ERR_OK;
}

/* The server's first protocol the client offers. None in common is fatal
 * (RFC 7301: no_application_protocol) rather than a silent fallback. */
static int tls_alpn_cb(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  (void)ssl;
  const struct tls_ctx *c = arg;
  unsigned char *sel;
  if (SSL_select_next_proto(&sel, outlen, c->alpn, (unsigned)c->alpnlen, in,
                            inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

/* "WHAT FILE: reason" from OpenSSL's queue, which is then cleared. */
static int tls_fail(char *err, size_t len, const char *what,
                    const char *file) {
  unsigned long e = ERR_peek_last_error();
  const char *why = e ? ERR_reason_error_string(e) : NULL;
  snprintf(err, len, "%s%s%s: %s", what, file ? " " : "", file ? file : "",
           why ? why : "failed");
  ERR_clear_error();
  return -1;
}

static int tls_isdir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Trust anchors: a file or a hashed directory, or the system's. A server
 * that asks for client certificates also names the CAs it accepts. */
static int tls_loadca(SSL_CTX *x, const struct tls_opts *o, char *err,
                      size_t len) {
  if (o->ca == NULL)
    return SSL_CTX_set_default_verify_paths(x) == 1
               ? 0 : tls_fail(err, len, "the system CA store", NULL);
  int dir = tls_isdir(o->ca);
  if (SSL_CTX_load_verify_locations(x, dir ? NULL : o->ca,
                                    dir ? o->ca : NULL) != 1)
    return tls_fail(err, len, "cannot load ca", o->ca);
  if (o->server && !dir) {
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca);
    if (names == NULL)
      return tls_fail(err, len, "cannot load ca", o->ca);
    SSL_CTX_set_client_CA_list(x, names);
  }
  return 0;
}

static int tls_setverify(SSL_CTX *x, const struct tls_opts *o, char *err,
                         size_t len) {
  int mode = SSL_VERIFY_NONE;
  if (o->verify != TLS_VERIFY_NONE)
    mode = SSL_VERIFY_PEER;
  if (o->server && o->verify != TLS_VERIFY_NONE)
    mode |= SSL_VERIFY_CLIENT_ONCE;
  if (o->server && o->verify == TLS_VERIFY_REQUIRED)
    mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(x, mode, NULL);
  if (o->verify == TLS_VERIFY_NONE)
    return 0;
  if (o->server && o->ca == NULL) {
    snprintf(err, len, "verifying client certificates needs ca");
    return -1;
  }
  return tls_loadca(x, o, err, len);
}

static int tls_loadcert(SSL_CTX *x, const char *cert, const char *key,
                        char *err, size_t len) {
  if (cert == NULL)
    return 0;
  if (key == NULL)
    key = cert; /* one PEM file with both */
  if (SSL_CTX_use_certificate_chain_file(x, cert) != 1)
    return tls_fail(err, len, "cannot load cert", cert);
  if (SSL_CTX_use_PrivateKey_file(x, key, SSL_FILETYPE_PEM) != 1)
    return tls_fail(err, len, "cannot load key", key);
  if (SSL_CTX_check_private_key(x) != 1)
    return tls_fail(err, len, "key does not match cert", cert);
  return 0;
}

/* Everything but the certificate, the same for every SSL_CTX of a
 * context, so a switch by SNI changes nothing else. */
static int tls_settings(struct tls_ctx *c, SSL_CTX *x,
                        const struct tls_opts *o, char *err, size_t len) {
  uint64_t opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION;
  if (o->server)
    opts |= SSL_OP_CIPHER_SERVER_PREFERENCE;
  SSL_CTX_set_options(x, opts);
  SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_read_ahead(x, 1);
  if (!SSL_CTX_set_ex_data(x, tls_exidx, c))
    return tls_fail(err, len, "out of memory", NULL);
  if (SSL_CTX_set_min_proto_version(
          x, o->min_version ? o->min_version : TLS1_2_VERSION) != 1)
    return tls_fail(err, len, "min_version", NULL);
  if (o->ciphers && SSL_CTX_set_cipher_list(x, o->ciphers) != 1)
    return tls_fail(err, len, "ciphers", o->ciphers);
  const char *suites = o->ciphersuites ? o->ciphersuites : TLS_SUITES;
  if (SSL_CTX_set_ciphersuites(x, suites) != 1)
    return tls_fail(err, len, "ciphersuites", suites);
  if (tls_setverify(x, o, err, len) < 0)
    return -1;
  if (!o->server)
    return o->alpn && SSL_CTX_set_alpn_protos(x, o->alpn,
                                              (unsigned)o->alpnlen) != 0
               ? tls_fail(err, len, "alpn", NULL) : 0;
  SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_session_id_context(x, (const unsigned char *)TLS_SID_CTX,
                                 sizeof TLS_SID_CTX - 1);
  if (c->keys)
    SSL_CTX_set_tlsext_ticket_key_evp_cb(x, tls_ticket_cb);
  if (c->alpn)
    SSL_CTX_set_alpn_select_cb(x, tls_alpn_cb, c);
  return 0;
}

static SSL_CTX *tls_newssl(struct tls_ctx *c, const struct tls_opts *o,
                           const char *cert, const char *key, char *err,
                           size_t len) {
  SSL_CTX *x = SSL_CTX_new(o->server ? TLS_server_method()
                                     : TLS_client_method());
  if (x == NULL) {
    tls_fail(err, len, "cannot make a context", NULL);
    return NULL;
  }
  if (tls_settings(c, x, o, err, len) < 0 ||
      tls_loadcert(x, cert, key, err, len) < 0) {
    SSL_CTX_free(x);
    return NULL;
  }
  return x;
}

/* The ticket keys: from the file named, else the set given. */
static int tls_ctx_keys(struct tls_ctx *c, const struct tls_opts *o,
                        char *err, size_t len) {
  if (o->ticket_keys == NULL) {
    if ((c->keys = o->keys) != NULL)
      c->keys->refs++;
    return 0;
  }
  unsigned char bytes[TLS_TICKET_KEY_SIZE * TLS_TICKET_KEYS_MAX + 1];
  FILE *f = fopen(o->ticket_keys, "rb");
  if (f == NULL) {
    snprintf(err, len, "cannot read ticket_keys %s: %s", o->ticket_keys,
             strerror(errno));
    return -1;
  }
  size_t n = fread(bytes, 1, sizeof bytes, f);
  fclose(f);
  c->keys = tls_keys_new(bytes, n);
  OPENSSL_cleanse(bytes, sizeof bytes);
  if (c->keys == NULL) {
    snprintf(err, len, "ticket_keys %s: must hold 1 to %d keys of %d random "
             "bytes (openssl rand %d > FILE)", o->ticket_keys,
             TLS_TICKET_KEYS_MAX, TLS_TICKET_KEY_SIZE, TLS_TICKET_KEY_SIZE);
    return -1;
  }
  return 0;
}

static int tls_ctx_sni(struct tls_ctx *c, const struct tls_opts *o,
                       char *err, size_t len) {
  if (o->nsni == 0)
    return 0;
  if ((c->sni = calloc(o->nsni, sizeof *c->sni)) == NULL)
    return tls_fail(err, len, "out of memory", NULL);
  for (size_t i = 0; i < o->nsni; i++, c->nsni++) {
    const struct tls_sni *s = &o->sni[i];
    if ((c->sni[i].name = strdup(s->name)) == NULL)
      return tls_fail(err, len, "out of memory", NULL);
    c->sni[i].ssl = tls_newssl(c, o, s->cert, s->key, err, len);
    if (c->sni[i].ssl == NULL)
      return -1;
  }
  SSL_CTX_set_tlsext_servername_callback(c->ssl, tls_sni_cb);
  SSL_CTX_set_tlsext_servername_arg(c->ssl, c);
  return 0;
}

struct tls_ctx *tls_ctx_new(const struct tls_opts *o, char *err,
                            size_t len) {
  pthread_once(&tls_once, tls_setup);
  ERR_clear_error();
  if (tls_method == NULL || tls_exidx < 0) {
    snprintf(err, len, "OpenSSL could not be set up");
    return NULL;
  }
  if (o->server && o->cert == NULL) {
    snprintf(err, len, "a server needs cert (and key)");
    return NULL;
  }
  struct tls_ctx *c = calloc(1, sizeof *c);
  if (c == NULL || (o->alpn && (c->alpn = malloc(o->alpnlen)) == NULL)) {
    free(c);
    snprintf(err, len, "out of memory");
    return NULL;
  }
  c->refs = 1;
  c->server = o->server;
  c->verify = o->verify;
  if (o->alpn) {
    memcpy(c->alpn, o->alpn, o->alpnlen);
    c->alpnlen = o->alpnlen;
  }
  if (tls_ctx_keys(c, o, err, len) < 0 ||
      (c->ssl = tls_newssl(c, o, o->cert, o->key, err, len)) == NULL ||
      tls_ctx_sni(c, o, err, len) < 0) {
    tls_ctx_unref(c);
    return NULL;
  }
  return c;
}

void tls_ctx_ref(struct tls_ctx *c) {
  c->refs++;
}

void tls_ctx_unref(struct tls_ctx *c) {
  if (c == NULL || --c->refs > 0)
    return;
  for (size_t i = 0; i < c->nsni; i++) {
    free(c->sni[i].name);
    SSL_CTX_free(c->sni[i].ssl);
  }
  free(c->sni);
  SSL_CTX_free(c->ssl);
  tls_keys_unref(c->keys);
  free(c->alpn);
  free(c);
}

int tls_ctx_isserver(const struct tls_ctx *c) {
  return c->server;
}

int tls_ctx_verifies(const struct tls_ctx *c) {
  return c->verify != TLS_VERIFY_NONE;
}

/* ---------------------------------------------------------- connections */

struct tls *tls_new(struct tls_ctx *c, int fd, struct buf *out,
                    const char *servername) {
  struct tls *t = calloc(1, sizeof *t);
  if (t == NULL)
    return NULL;
  if (servername && !c->server &&
      (t->servername = strdup(servername)) == NULL) {
    free(t);
    return NULL;
  }
  t->ctx = c;
  tls_ctx_ref(c);
  t->fd = fd;
  t->out = out;
  t->more = 1;
  t->verify = X509_V_OK;
  return t;
}

int tls_preload(struct tls *t, const char *p, size_t n) {
  return buf_append(&t->pre, p, n);
}

void tls_free(struct tls *t) {
  if (t == NULL)
    return;
  SSL_free(t->ssl); /* and the BIO */
  ERR_clear_error();
  buf_free(&t->pre);
  free(t->servername);
  tls_ctx_unref(t->ctx);
  free(t);
}

/* SNI and the name the certificate must carry; an IP literal is checked
 * against the certificate's IP addresses and sent as no SNI (RFC 6066). */
static int tls_setpeername(struct tls *t) {
  SSL *ssl = t->ssl;
  const char *name = t->servername;
  unsigned char ip[16];
  int isip = inet_pton(AF_INET, name, ip) == 1 ||
             inet_pton(AF_INET6, name, ip) == 1;
  int verify = SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER;
  if (isip)
    return !verify || X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
                                                    name) == 1 ? 0 : -ENOMEM;
  if (SSL_set_tlsext_host_name(ssl, name) != 1)
    return -EINVAL;
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  return !verify || SSL_set1_host(ssl, name) == 1 ? 0 : -ENOMEM;
}

static int tls_start(struct tls *t) {
  SSL *ssl = SSL_new(t->ctx->ssl);
  BIO *b = ssl ? BIO_new(tls_method) : NULL;
  if (b == NULL) {
    SSL_free(ssl);
    ERR_clear_error();
    return -ENOMEM;
  }
  BIO_set_data(b, t);
  BIO_set_init(b, 1);
  SSL_set_bio(ssl, b, b); /* one reference, owned by ssl from here */
  t->ssl = ssl;
  if (t->ctx->server) {
    SSL_set_accept_state(ssl);
    return 0;
  }
  SSL_set_connect_state(ssl);
  int rc = t->servername ? tls_setpeername(t) : 0;
  ERR_clear_error();
  return rc;
}

/* A server connection starts when its peer has sent a byte (peeked). */
static int tls_peek(struct tls *t) {
  char c;
  if (t->pre.len > 0)
    return 0;
  for (;;) {
    ssize_t n = recv(t->fd, &c, 1, MSG_PEEK);
    if (n > 0)
      return 0;
    if (n == 0)
      return TLS_ENOHELLO;
    if (errno != EINTR)
      return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

/* What a failed call means; fatal failures are remembered. */
static int tls_error(struct tls *t, int ret) {
  int code;
  switch (SSL_get_error(t->ssl, ret)) {
  case SSL_ERROR_WANT_READ:
  case SSL_ERROR_WANT_WRITE: /* only a read can block (see the top) */
    t->more = 0;
    return -EAGAIN;
  case SSL_ERROR_ZERO_RETURN:
    t->more = 0;
    return 0;
  case SSL_ERROR_SYSCALL:
    code = t->nomem ? -ENOMEM : t->rerr ? t->rerr
         : t->eof ? TLS_ETRUNCATED : TLS_EPROTO;
    break;
  default:
    t->err = ERR_peek_last_error();
    code = ERR_GET_REASON(t->err) == SSL_R_UNEXPECTED_EOF_WHILE_READING
               ? (t->rerr ? t->rerr : TLS_ETRUNCATED) : TLS_EPROTO;
    t->verify = SSL_get_verify_result(t->ssl);
    break;
  }
  ERR_clear_error();
  t->failcode = code;
  t->more = 0;
  return code;
}

int tls_handshake(struct tls *t) {
  if (t->done || t->failcode)
    return t->failcode;
  if (t->ssl == NULL) {
    int rc = t->ctx->server ? tls_peek(t) : 0;
    if (rc == 0)
      rc = tls_start(t);
    if (rc != 0 && rc != -EAGAIN)
      t->failcode = rc;
    if (rc != 0)
      return rc;
  }
  ERR_clear_error();
  int r = SSL_do_handshake(t->ssl);
  if (r == 1) {
    t->done = 1;
    return 0;
  }
  int rc = tls_error(t, r);
  if (rc == 0) /* close_notify before the handshake was done */
    rc = t->failcode = TLS_ETRUNCATED;
  return rc;
}

int tls_established(const struct tls *t) {
  return t->done;
}

long tls_recv(struct tls *t, void *p, size_t n) {
  if (!t->done || t->failcode) {
    int rc = tls_handshake(t);
    if (rc != 0)
      return rc;
  }
  size_t got;
  ERR_clear_error();
  if (SSL_read_ex(t->ssl, p, n, &got) == 1)
    return (long)got;
  return tls_error(t, 0);
}

long tls_send(struct tls *t, const void *p, size_t n, int cork) {
  if (t->failcode)
    return t->failcode;
  if (!t->done)
    return -EAGAIN; /* the socket layer writes only after the handshake */
  if (t->werr)
    return t->werr;
  size_t put;
  t->cork = cork != 0;
  ERR_clear_error();
  int r = SSL_write_ex(t->ssl, p, n, &put);
  t->cork = 0;
  if (r == 1)
    return t->werr ? t->werr : (long)put;
  return tls_error(t, 0);
}

int tls_readable(const struct tls *t) {
  return t->ssl != NULL && (t->more || SSL_has_pending(t->ssl));
}

void tls_close(struct tls *t) {
  if (t->ssl == NULL || !t->done || t->failcode || t->closed || t->werr)
    return;
  t->closed = 1;
  ERR_clear_error();
  SSL_shutdown(t->ssl); /* sends close_notify; never waits for the peer's */
  ERR_clear_error();
}

int tls_take(struct tls *t, size_t *in, size_t *out) {
  *in = t->nin;
  *out = t->nout;
  t->nin = t->nout = 0;
  return t->werr;
}

void tls_why(const struct tls *t, char *buf, size_t len) {
  const char *why = NULL;
  if (t->verify != X509_V_OK) {
    snprintf(buf, len, "certificate verify failed: %s",
             X509_verify_cert_error_string(t->verify));
    return;
  }
  if (t->err)
    why = ERR_reason_error_string(t->err);
  if (why == NULL && t->failcode == TLS_ETRUNCATED)
    why = "closed without close_notify";
  if (why == NULL && t->failcode == TLS_ENOHELLO)
    why = "closed before sending a ClientHello";
  if (why == NULL && t->failcode < 0 && !TLS_ISERR(t->failcode))
    why = strerror(-t->failcode);
  snprintf(buf, len, "%s", why ? why : "TLS failure");
}

const char *tls_errcode(int err) {
  switch (err) {
  case TLS_ETRUNCATED: return "truncated";
  case TLS_ENOHELLO: return "closed";
  default: return "tls";
  }
}

/* ----------------------------------------------------------------- info */

static void tls_subject(X509 *peer, char *buf, size_t len) {
  BIO *m = BIO_new(BIO_s_mem());
  buf[0] = '\0';
  if (m == NULL)
    return;
  X509_NAME_print_ex(m, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
  int n = BIO_read(m, buf, (int)len - 1);
  buf[n > 0 ? n : 0] = '\0';
  BIO_free(m);
}

int tls_info(const struct tls *t, struct tls_info *i) {
  if (t->ssl == NULL || !t->done)
    return -EAGAIN;
  SSL *ssl = t->ssl;
  memset(i, 0, sizeof *i);
  i->version = SSL_get_version(ssl);
  i->cipher = SSL_get_cipher_name(ssl);
  SSL_get0_alpn_selected(ssl, &i->alpn, &i->alpnlen);
  i->sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  i->resumed = SSL_session_reused(ssl);
  X509 *peer = SSL_get0_peer_certificate(ssl);
  if (peer && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) &&
      SSL_get_verify_result(ssl) == X509_V_OK) {
    i->verified = 1;
    tls_subject(peer, i->subject, sizeof i->subject);
  }
  ERR_clear_error();
  return 0;
}
