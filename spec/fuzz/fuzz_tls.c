/*
 * fuzz_tls.c -- libFuzzer target for src/tls.c: the TLS record path as
 * berth drives it, over a real non-blocking socketpair.
 *
 * The first input byte picks a mode; the rest drives it.
 *   0  raw bytes to a server connection: the input is split into chunks
 *      (each chunk's length is its first byte), the first chunk optionally
 *      preloaded as STARTTLS does, the others written to the peer end,
 *      with a handshake or read step after each. Whatever arrives, the
 *      engine must answer -EAGAIN or a failure (never success: the input
 *      cannot know the keys), stay failed once failed, and queue nothing
 *      unbounded.
 *   1  a real handshake (client and server engines, ALPN and SNI on), then
 *      application data in fuzzer-chosen sizes both ways, corked or not,
 *      each checked byte for byte on the other side; then the rest of the
 *      input is injected raw into the server's stream: its next read must
 *      fail (a record that does not authenticate) or wait, never return
 *      forged plaintext, and close_notify must not crash after it.
 *   2  tls_name_match against a plain reference (exact, case-insensitive;
 *      "*." then one non-empty label).
 *
 * Certificates: scripts/mkcerts, once per process, in a temporary
 * directory (the `openssl` command; run from the repository root).
 *
 * fuzz-sources: src/tls.c src/buffer.c src/net.c
 * fuzz-libs: -lssl -lcrypto
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "tls.h"

static struct tls_ctx *server_ctx, *client_ctx;

static void die(const char *what) {
  fprintf(stderr, "fuzz_tls: %s\n", what);
  abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  static char dir[] = "/tmp/berth-fuzz-tls-XXXXXX";
  char cmd[256], err[256], p[8][200];
  if (mkdtemp(dir) == NULL)
    die("mkdtemp");
  snprintf(cmd, sizeof cmd, "scripts/mkcerts %s >/dev/null", dir);
  if (system(cmd) != 0)
    die("scripts/mkcerts failed (run from the repository root)");
  const char *names[] = {"server.crt", "server.key", "ca.crt", "sni.crt",
                         "sni.key"};
  for (int i = 0; i < 5; i++)
    snprintf(p[i], sizeof p[i], "%s/%s", dir, names[i]);
  static const unsigned char alpn[] = "\x02h2\x08http/1.1";
  struct tls_sni sni = {"sni.test", p[3], p[4]};
  struct tls_opts so = {0};
  so.server = 1;
  so.cert = p[0];
  so.key = p[1];
  so.alpn = alpn;
  so.alpnlen = sizeof alpn - 1;
  so.sni = &sni;
  so.nsni = 1;
  unsigned char keybytes[TLS_TICKET_KEY_SIZE] = {1, 2, 3};
  so.keys = tls_keys_new(keybytes, sizeof keybytes);
  server_ctx = tls_ctx_new(&so, err, sizeof err);
  tls_keys_unref(so.keys);
  struct tls_opts co = {0};
  co.ca = p[2];
  co.verify = TLS_VERIFY_REQUIRED;
  co.alpn = alpn + 3;
  co.alpnlen = sizeof alpn - 4;
  client_ctx = tls_ctx_new(&co, err, sizeof err);
  if (server_ctx == NULL || client_ctx == NULL)
    die(err);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "fuzz_tls: could not remove %s\n", dir);
  return 0;
}

struct end {
  int fd;
  struct buf out;
  struct tls *t;
};

static void pair(struct end *s, struct end *c) {
  int sv[2];
  memset(s, 0, sizeof *s);
  memset(c, 0, sizeof *c);
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
    die("socketpair");
  s->fd = sv[0];
  c->fd = sv[1];
}

static void unpair(struct end *s, struct end *c) {
  tls_free(s->t);
  tls_free(c->t);
  buf_free(&s->out);
  buf_free(&c->out);
  close(s->fd);
  close(c->fd);
}

static void flush(struct end *e) {
  while (e->out.len > 0) {
    struct iovec iov = {(void *)buf_begin(&e->out), e->out.len};
    long n = net_writev(e->fd, &iov, 1);
    if (n <= 0)
      return;
    buf_consume(&e->out, (size_t)n);
  }
}

static void put(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    struct iovec iov = {(void *)p, n};
    long w = net_writev(fd, &iov, 1);
    if (w <= 0)
      return; /* the peer's buffer is full: the rest is dropped */
    p += w;
    n -= (size_t)w;
  }
}

/* Mode 0: raw input against a server connection. */
static void raw_server(const uint8_t *p, size_t n) {
  struct end s, c;
  pair(&s, &c);
  s.t = tls_new(server_ctx, s.fd, &s.out, NULL);
  int first = 1, failed = 0;
  char sink[4096];
  while (n > 0) {
    size_t len = p[0] + 1u;
    p++, n--;
    if (len > n)
      len = n;
    if (first && len > 0 && (len & 1))
      tls_preload(s.t, (const char *)p, len);
    else
      put(c.fd, p, len);
    first = 0;
    p += len;
    n -= len;
    int rc = tls_established(s.t) ? (int)tls_recv(s.t, sink, sizeof sink)
                                   : tls_handshake(s.t);
    if (tls_established(s.t))
      die("a handshake completed from raw bytes");
    if (failed && rc == -EAGAIN)
      die("a failed connection came back to life");
    failed |= rc != -EAGAIN;
    if (s.out.len > (1u << 20))
      die("unbounded output");
  }
  tls_close(s.t);
  unpair(&s, &c);
}

static int handshake(struct end *s, struct end *c) {
  int rs = -EAGAIN, rc = -EAGAIN;
  for (int i = 0; i < 20 && (rs == -EAGAIN || rc == -EAGAIN); i++) {
    if (rc == -EAGAIN)
      rc = tls_handshake(c->t);
    flush(c);
    if (rs == -EAGAIN)
      rs = tls_handshake(s->t);
    flush(s);
  }
  return rs == 0 && rc == 0 ? 0 : -1;
}

/* Send `len` bytes from a to b and check them on arrival. */
static void transfer(struct end *a, struct end *b, size_t len, int cork,
                     uint8_t seed) {
  static char data[1 << 16], got[1 << 16];
  for (size_t i = 0; i < len; i++)
    data[i] = (char)(seed + i * 31);
  if (tls_send(a->t, data, len, cork) != (long)len)
    die("tls_send");
  size_t have = 0;
  for (int i = 0; i < 1000 && have < len; i++) {
    flush(a);
    long r = tls_recv(b->t, got + have, len - have);
    if (r > 0)
      have += (size_t)r;
    else if (r != -EAGAIN)
      die("tls_recv failed on good data");
  }
  if (have != len || memcmp(data, got, len) != 0)
    die("data did not arrive intact");
}

/* Mode 1: a real session, then tampering. */
static void session(const uint8_t *p, size_t n) {
  struct end s, c;
  pair(&s, &c);
  s.t = tls_new(server_ctx, s.fd, &s.out, NULL);
  c.t = tls_new(client_ctx, c.fd, &c.out, n > 0 && (p[0] & 1) ? "sni.test"
                                                                : "localhost");
  if (handshake(&s, &c) != 0)
    die("the real handshake failed");
  struct tls_info i;
  if (tls_info(s.t, &i) != 0 || i.alpnlen != 8)
    die("no ALPN");
  int steps = 0;
  while (n >= 3 && steps++ < 8) {
    size_t len = ((size_t)p[0] << 8 | p[1]) % (1 << 15);
    if (p[2] & 1)
      transfer(&c, &s, len, p[2] & 2, p[2]);
    else
      transfer(&s, &c, len, p[2] & 2, p[2]);
    p += 3;
    n -= 3;
  }
  put(c.fd, p, n);
  char sink[4096];
  for (int k = 0; k < 4; k++) {
    long r = tls_recv(s.t, sink, sizeof sink);
    if (r > 0)
      die("forged plaintext accepted");
    if (r == 0 && n == 0)
      die("close_notify from nothing");
  }
  tls_close(s.t);
  tls_close(c.t);
  unpair(&s, &c);
}

static int ref_match(const char *pat, const char *name) {
  if (!(pat[0] == '*' && pat[1] == '.'))
    return strcasecmp(pat, name) == 0;
  const char *dot = strchr(name, '.');
  return pat[2] && dot && dot > name && strcasecmp(dot + 1, pat + 2) == 0;
}

static void names(const uint8_t *p, size_t n) {
  char a[64], b[64];
  size_t split = n > 0 ? p[0] % (n + 1) : 0;
  if (n > 0) {
    p++;
    n--;
  }
  if (split > n)
    split = n;
  size_t la = split < 63 ? split : 63, lb = n - split < 63 ? n - split : 63;
  memcpy(a, p, la);
  memcpy(b, p + split, lb);
  a[la] = b[lb] = '\0';
  if (tls_name_match(a, b) != ref_match(a, b))
    die("tls_name_match differs from the reference");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  switch (data[0] % 3) {
  case 0: raw_server(data + 1, size - 1); break;
  case 1: session(data + 1, size - 1); break;
  default: names(data + 1, size - 1); break;
  }
  return 0;
}
