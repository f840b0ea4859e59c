/*
 * test_tls.c -- unit tests for src/tls.c over real descriptors: each case
 * wraps the two ends of a non-blocking socketpair, one as server and one
 * as client, and steps them in turn (flushing what each queued) until both
 * are done or one fails. Covers name matching, context errors (missing,
 * garbage and mismatched files, bad ticket key files), handshakes with
 * verification (hostname, IP, expired, self-signed), SNI exact and
 * wildcard choice, ALPN (agreed and refused), client certificates
 * (required, optional, missing), data both ways larger than the socket
 * buffers, close_notify versus truncation, STARTTLS preloading, garbage
 * instead of a ClientHello, and the lazy start of a server connection.
 *
 * Certificates come from scripts/mkcerts (the `openssl` command) in a
 * temporary directory; run from the repository root, as scripts/test does.
 * Prints one line per case and ends with "N passed, N failed".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "net.h"
#include "tls.h"

static char dir[64];
static char path_buf[16][256];
static int path_next;

/* DIR/name, from a small ring of buffers. */
static const char *P(const char *name) {
  char *p = path_buf[path_next++ % 16];
  snprintf(p, 256, "%s/%s", dir, name);
  return p;
}

/* One side of a connection under test. */
struct end {
  int fd;
  struct buf out;
  struct tls *t;
  int rc;                 /* last handshake result */
};

static struct tls_ctx *server_ctx(struct tls_opts *o) {
  char err[256];
  o->server = 1;
  if (o->cert == NULL) {
    o->cert = P("server.crt");
    o->key = P("server.key");
  }
  struct tls_ctx *c = tls_ctx_new(o, err, sizeof err);
  if (c == NULL)
    printf("# server_ctx: %s\n", err);
  return c;
}

static struct tls_ctx *client_ctx(struct tls_opts *o) {
  char err[256];
  struct tls_ctx *c = tls_ctx_new(o, err, sizeof err);
  if (c == NULL)
    printf("# client_ctx: %s\n", err);
  return c;
}

static struct tls_ctx *verifying_client(void) {
  struct tls_opts o = {0};
  o.ca = P("ca.crt");
  o.verify = TLS_VERIFY_REQUIRED;
  return client_ctx(&o);
}

/* Write what `e` queued; returns 0 or -errno (EAGAIN: the peer is full). */
static long flush(struct end *e) {
  while (e->out.len > 0) {
    struct iovec iov = {(void *)buf_begin(&e->out), e->out.len};
    long n = net_writev(e->fd, &iov, 1);
    if (n < 0)
      return n;
    buf_consume(&e->out, (size_t)n);
  }
  buf_free(&e->out);
  return 0;
}

static void pair(struct end *s, struct end *c, struct tls_ctx *sc,
                 struct tls_ctx *cc, const char *name) {
  int sv[2];
  memset(s, 0, sizeof *s);
  memset(c, 0, sizeof *c);
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
    abort();
  s->fd = sv[0];
  c->fd = sv[1];
  s->t = sc ? tls_new(sc, s->fd, &s->out, NULL) : NULL;
  c->t = cc ? tls_new(cc, c->fd, &c->out, name) : NULL;
  s->rc = c->rc = -EAGAIN;
}

static void unpair(struct end *s, struct end *c) {
  tls_free(s->t);
  tls_free(c->t);
  buf_free(&s->out);
  buf_free(&c->out);
  if (s->fd >= 0)
    close(s->fd);
  if (c->fd >= 0)
    close(c->fd);
}

/* Step both handshakes until neither is waiting (bounded). */
static void handshake(struct end *s, struct end *c) {
  for (int i = 0; i < 50 && (s->rc == -EAGAIN || c->rc == -EAGAIN); i++) {
    if (c->rc == -EAGAIN)
      c->rc = tls_handshake(c->t);
    flush(c);
    if (s->rc == -EAGAIN)
      s->rc = tls_handshake(s->t);
    flush(s);
  }
}

static void why_has(struct tls *t, const char *text) {
  char why[256];
  tls_why(t, why, sizeof why);
  CHECK(strstr(why, text) != NULL);
  if (strstr(why, text) == NULL)
    printf("# why: \"%s\", wanted \"%s\"\n", why, text);
}

/* Read until `want` bytes, flushing what the peer queued; stops when
 * nothing more can come (bounded). */
static size_t recv_all(struct end *e, struct end *peer, char *p,
                       size_t want) {
  size_t got = 0;
  for (int i = 0; i < 100000 && got < want; i++) {
    long n = tls_recv(e->t, p + got, want - got);
    if (n > 0) {
      got += (size_t)n;
      continue;
    }
    size_t queued = peer->out.len;
    if (n != -EAGAIN || queued == 0)
      break;
    flush(peer);
  }
  return got;
}

/* --------------------------------------------------------------- cases */

static void test_name_match(void) {
  CHECK(tls_name_match("example.test", "example.test"));
  CHECK(tls_name_match("Example.TEST", "example.test"));
  CHECK(!tls_name_match("example.test", "a.example.test"));
  CHECK(tls_name_match("*.example.test", "a.example.test"));
  CHECK(tls_name_match("*.example.test", "A.Example.Test"));
  CHECK(!tls_name_match("*.example.test", "example.test"));
  CHECK(!tls_name_match("*.example.test", "a.b.example.test"));
  CHECK(!tls_name_match("*.example.test", ".example.test"));
  CHECK(!tls_name_match("*.", "a."));
  CHECK(!tls_name_match("*.example.test", "aexample.test"));
  CHECK(!tls_name_match("a*.example.test", "ab.example.test"));
}

static void test_ctx_errors(void) {
  char err[256];
  struct tls_opts o = {0};
  o.server = 1;
  CHECK(tls_ctx_new(&o, err, sizeof err) == NULL);
  CHECK(strstr(err, "needs cert") != NULL);
  o.cert = P("nonexistent.crt");
  o.key = P("server.key");
  CHECK(tls_ctx_new(&o, err, sizeof err) == NULL);
  CHECK(strstr(err, "nonexistent.crt") != NULL);
  o.cert = P("garbage.pem");
  CHECK(tls_ctx_new(&o, err, sizeof err) == NULL);
  CHECK(strstr(err, "cannot load cert") != NULL);
  o.cert = P("server.crt");
  o.key = P("sni.key");
  CHECK(tls_ctx_new(&o, err, sizeof err) == NULL);
  CHECK(strstr(err, "mismatch") != NULL);
  if (strstr(err, "mismatch") == NULL)
    printf("# %s\n", err);
  o.key = P("server.key");
  o.ticket_keys = P("garbage.pem");
  CHECK(tls_ctx_new(&o, err, sizeof err) == NULL);
  CHECK(strstr(err, "ticket_keys") != NULL);
  o.ticket_keys = NULL;
  o.verify = TLS_VERIFY_REQUIRED;
  CHECK(tls_ctx_new(&o, err, sizeof err) == NULL);
  CHECK(strstr(err, "needs ca") != NULL);
  o.verify = TLS_VERIFY_NONE;
  o.ciphers = "NO-SUCH-CIPHER";
  CHECK(tls_ctx_new(&o, err, sizeof err) == NULL);
  o.ciphers = NULL;
  struct tls_ctx *c = tls_ctx_new(&o, err, sizeof err);
  CHECK(c != NULL && tls_ctx_isserver(c));
  tls_ctx_unref(c);
  unsigned char bad[TLS_TICKET_KEY_SIZE + 1] = {0};
  CHECK(tls_keys_new(bad, sizeof bad) == NULL);
  CHECK(tls_keys_new(bad, 0) == NULL);
  struct tls_keys *k = tls_keys_new(bad, TLS_TICKET_KEY_SIZE);
  CHECK(k != NULL);
  tls_keys_unref(k);
}

static void test_handshake_and_data(void) {
  struct tls_opts so = {0};
  static const unsigned char alpn[] = "\x02h2\x08http/1.1";
  so.alpn = alpn;
  so.alpnlen = sizeof alpn - 1;
  struct tls_ctx *sc = server_ctx(&so);
  struct tls_opts co = {0};
  static const unsigned char calpn[] = "\x08http/1.1";
  co.ca = P("ca.crt");
  co.verify = TLS_VERIFY_REQUIRED;
  co.alpn = calpn;
  co.alpnlen = sizeof calpn - 1;
  struct tls_ctx *cc = client_ctx(&co);
  struct end s, c;
  pair(&s, &c, sc, cc, "localhost");
  CHECK(!tls_established(s.t));
  handshake(&s, &c);
  CHECK(s.rc == 0 && c.rc == 0);
  CHECK(tls_established(s.t) && tls_established(c.t));
  struct tls_info i;
  CHECK(tls_info(s.t, &i) == 0);
  CHECK(strcmp(i.version, "TLSv1.3") == 0);
  CHECK(i.alpnlen == 8 && memcmp(i.alpn, "http/1.1", 8) == 0);
  CHECK(i.sni && strcmp(i.sni, "localhost") == 0);
  CHECK(!i.verified && i.subject[0] == '\0'); /* no client certificate */
  CHECK(tls_info(c.t, &i) == 0);
  CHECK(i.verified && strcmp(i.subject, "CN=localhost") == 0);
  CHECK(tls_send(c.t, "hello", 5, 0) == 5);
  char got[16];
  CHECK(recv_all(&s, &c, got, 5) == 5 && memcmp(got, "hello", 5) == 0);
  CHECK(tls_recv(s.t, got, sizeof got) == -EAGAIN);
  CHECK(!tls_readable(s.t));
  size_t in, out;
  CHECK(tls_take(s.t, &in, &out) == 0 && in > 5 && out > 0);
  CHECK(tls_take(s.t, &in, &out) == 0 && in == 0 && out == 0);
  unpair(&s, &c);
  tls_ctx_unref(sc);
  tls_ctx_unref(cc);
}

/* 1 MiB each way: more than the socket buffers hold, so writes queue in
 * `out` and reads come in many records. */
static void test_bulk(void) {
  struct tls_opts so = {0};
  struct tls_ctx *sc = server_ctx(&so);
  struct tls_ctx *cc = verifying_client();
  struct end s, c;
  pair(&s, &c, sc, cc, "127.0.0.1");
  handshake(&s, &c);
  CHECK(s.rc == 0 && c.rc == 0);
  size_t n = 1u << 20;
  char *data = malloc(n), *got = malloc(n);
  for (size_t i = 0; i < n; i++)
    data[i] = (char)(i * 7 + (i >> 9));
  CHECK(tls_send(c.t, data, n, 0) == (long)n);
  CHECK(c.out.len > 0); /* the kernel did not take it all */
  size_t have = recv_all(&s, &c, got, n);
  CHECK(have == n && memcmp(data, got, n) == 0);
  /* corked: everything queues, nothing is sent */
  size_t before = s.out.len;
  CHECK(tls_send(s.t, "abc", 3, 1) == 3 && s.out.len > before);
  flush(&s);
  CHECK(recv_all(&c, &s, got, 3) == 3 && memcmp(got, "abc", 3) == 0);
  free(data);
  free(got);
  unpair(&s, &c);
  tls_ctx_unref(sc);
  tls_ctx_unref(cc);
}

static void test_verify_failures(void) {
  struct tls_opts so = {0};
  struct tls_ctx *sc = server_ctx(&so);
  struct tls_ctx *cc = verifying_client();
  struct end s, c;
  pair(&s, &c, sc, cc, "wrong.test");
  handshake(&s, &c);
  CHECK(c.rc == TLS_EPROTO && s.rc != 0);
  why_has(c.t, "ostname mismatch");
  CHECK(strcmp(tls_errcode(c.rc), "tls") == 0);
  unpair(&s, &c);
  pair(&s, &c, sc, cc, "10.9.8.7"); /* an IP the certificate lacks */
  handshake(&s, &c);
  CHECK(c.rc == TLS_EPROTO);
  why_has(c.t, "IP address mismatch");
  unpair(&s, &c);
  tls_ctx_unref(sc);
  so.cert = P("expired.crt");
  so.key = P("expired.key");
  sc = server_ctx(&so);
  pair(&s, &c, sc, cc, "localhost");
  handshake(&s, &c);
  CHECK(c.rc == TLS_EPROTO);
  why_has(c.t, "expired");
  unpair(&s, &c);
  tls_ctx_unref(sc);
  so.cert = P("selfsigned.crt");
  so.key = P("selfsigned.key");
  sc = server_ctx(&so);
  pair(&s, &c, sc, cc, "localhost");
  handshake(&s, &c);
  CHECK(c.rc == TLS_EPROTO);
  why_has(c.t, "self-signed");
  unpair(&s, &c);
  /* without verification the same connection succeeds */
  struct tls_opts none = {0};
  struct tls_ctx *lax = client_ctx(&none);
  pair(&s, &c, sc, lax, "localhost");
  handshake(&s, &c);
  CHECK(s.rc == 0 && c.rc == 0);
  struct tls_info i;
  CHECK(tls_info(c.t, &i) == 0 && !i.verified);
  unpair(&s, &c);
  tls_ctx_unref(lax);
  tls_ctx_unref(sc);
  tls_ctx_unref(cc);
}

static void check_sni(struct tls_ctx *sc, struct tls_ctx *cc,
                      const char *name, const char *subject) {
  struct end s, c;
  struct tls_info i;
  pair(&s, &c, sc, cc, name);
  handshake(&s, &c);
  CHECK(s.rc == 0 && c.rc == 0);
  CHECK(tls_info(c.t, &i) == 0 && strcmp(i.subject, subject) == 0);
  if (tls_info(c.t, &i) == 0 && strcmp(i.subject, subject) != 0)
    printf("# %s: got %s, wanted %s\n", name, i.subject, subject);
  unpair(&s, &c);
}

static void test_sni(void) {
  struct tls_sni names[] = {
    {"*.example.test", P("wildcard.crt"), P("wildcard.key")},
    {"sni.test", P("sni.crt"), P("sni.key")},
    {"www.sni.test", P("sni.crt"), P("sni.key")},
  };
  struct tls_opts so = {0};
  so.sni = names;
  so.nsni = 3;
  struct tls_ctx *sc = server_ctx(&so);
  struct tls_ctx *cc = verifying_client();
  CHECK(sc != NULL);
  check_sni(sc, cc, "sni.test", "CN=sni.test");
  check_sni(sc, cc, "WWW.SNI.TEST", "CN=sni.test");
  check_sni(sc, cc, "a.example.test", "CN=*.example.test");
  check_sni(sc, cc, "localhost", "CN=localhost");   /* the default */
  /* a name nothing matches gets the default, which then fails to verify */
  struct end s, c;
  pair(&s, &c, sc, cc, "b.a.example.test");
  handshake(&s, &c);
  CHECK(c.rc == TLS_EPROTO);
  why_has(c.t, "ostname mismatch");
  unpair(&s, &c);
  tls_ctx_unref(sc);
  tls_ctx_unref(cc);
}

static void test_alpn_refused(void) {
  struct tls_opts so = {0};
  static const unsigned char alpn[] = "\x02h2";
  so.alpn = alpn;
  so.alpnlen = 3;
  struct tls_ctx *sc = server_ctx(&so);
  struct tls_opts co = {0};
  static const unsigned char calpn[] = "\x06spdy/3";
  co.alpn = calpn;
  co.alpnlen = 7;
  struct tls_ctx *cc = client_ctx(&co);
  struct end s, c;
  pair(&s, &c, sc, cc, "localhost");
  handshake(&s, &c);
  CHECK(s.rc == TLS_EPROTO && c.rc == TLS_EPROTO);
  why_has(s.t, "application protocol");
  unpair(&s, &c);
  tls_ctx_unref(sc);
  tls_ctx_unref(cc);
}

static void test_client_certs(void) {
  struct tls_opts so = {0};
  so.ca = P("ca.crt");
  so.verify = TLS_VERIFY_REQUIRED;
  struct tls_ctx *required = server_ctx(&so);
  so.cert = NULL;
  so.verify = TLS_VERIFY_OPTIONAL;
  struct tls_ctx *optional = server_ctx(&so);
  struct tls_ctx *anon = verifying_client();
  struct tls_opts co = {0};
  co.ca = P("ca.crt");
  co.verify = TLS_VERIFY_REQUIRED;
  co.cert = P("client.crt");
  co.key = P("client.key");
  struct tls_ctx *withcert = client_ctx(&co);
  struct end s, c;
  struct tls_info i;
  pair(&s, &c, required, anon, "localhost");
  handshake(&s, &c);
  CHECK(s.rc == TLS_EPROTO);
  why_has(s.t, "certificate");
  unpair(&s, &c);
  pair(&s, &c, required, withcert, "localhost");
  handshake(&s, &c);
  CHECK(s.rc == 0 && c.rc == 0);
  CHECK(tls_info(s.t, &i) == 0 && i.verified &&
        strcmp(i.subject, "CN=berth-test-client") == 0);
  unpair(&s, &c);
  pair(&s, &c, optional, anon, "localhost");
  handshake(&s, &c);
  CHECK(s.rc == 0 && c.rc == 0);
  CHECK(tls_info(s.t, &i) == 0 && !i.verified);
  unpair(&s, &c);
  tls_ctx_unref(required);
  tls_ctx_unref(optional);
  tls_ctx_unref(anon);
  tls_ctx_unref(withcert);
}

static void test_close_and_truncation(void) {
  struct tls_opts so = {0};
  struct tls_ctx *sc = server_ctx(&so);
  struct tls_ctx *cc = verifying_client();
  struct end s, c;
  char got[64];
  pair(&s, &c, sc, cc, "localhost");
  handshake(&s, &c);
  CHECK(tls_send(c.t, "bye", 3, 0) == 3);
  tls_close(c.t);
  tls_close(c.t); /* once */
  flush(&c);
  CHECK(recv_all(&s, &c, got, 3) == 3);
  CHECK(tls_recv(s.t, got, sizeof got) == 0);
  CHECK(tls_recv(s.t, got, sizeof got) == 0);
  unpair(&s, &c);
  pair(&s, &c, sc, cc, "localhost");
  handshake(&s, &c);
  CHECK(tls_send(c.t, "cut", 3, 0) == 3);
  /* the client reads the server's session tickets first: closing with
   * unread bytes would send a reset, not a FIN */
  CHECK(tls_recv(c.t, got, sizeof got) == -EAGAIN);
  close(c.fd); /* no close_notify */
  c.fd = -1;
  CHECK(recv_all(&s, &c, got, 3) == 3);
  long rc = tls_recv(s.t, got, sizeof got);
  CHECK(rc == TLS_ETRUNCATED);
  if (rc != TLS_ETRUNCATED)
    printf("# rc %ld\n", rc);
  CHECK(strcmp(tls_errcode((int)rc), "truncated") == 0);
  tls_close(s.t); /* after a failure: nothing is sent, nothing breaks */
  unpair(&s, &c);
  tls_ctx_unref(sc);
  tls_ctx_unref(cc);
}

/* STARTTLS: the ClientHello arrived with the command and was read as
 * plain bytes; preloaded, it is read before the descriptor. */
static void test_preload(void) {
  struct tls_opts so = {0};
  struct tls_ctx *sc = server_ctx(&so);
  struct tls_ctx *cc = verifying_client();
  struct end s, c;
  pair(&s, &c, NULL, cc, "localhost");
  CHECK(tls_handshake(c.t) == -EAGAIN);
  flush(&c);
  char hello[4096];
  long n = net_recv(s.fd, hello, sizeof hello);
  CHECK(n > 5 && hello[0] == 0x16); /* a handshake record */
  s.t = tls_new(sc, s.fd, &s.out, NULL);
  CHECK(tls_preload(s.t, hello, (size_t)n) == 0);
  handshake(&s, &c);
  CHECK(s.rc == 0 && c.rc == 0);
  unpair(&s, &c);
  tls_ctx_unref(sc);
  tls_ctx_unref(cc);
}

static void test_garbage_and_silence(void) {
  struct tls_opts so = {0};
  struct tls_ctx *sc = server_ctx(&so);
  struct end s, c;
  pair(&s, &c, sc, NULL, NULL);
  CHECK(tls_handshake(s.t) == -EAGAIN); /* nothing sent yet: no SSL made */
  CHECK(!tls_readable(s.t));
  static const char get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(write(c.fd, get, sizeof get - 1) == (ssize_t)(sizeof get - 1));
  CHECK(tls_handshake(s.t) == TLS_EPROTO);
  CHECK(tls_handshake(s.t) == TLS_EPROTO); /* stays failed */
  why_has(s.t, "http request");
  unpair(&s, &c);
  pair(&s, &c, sc, NULL, NULL);
  close(c.fd); /* connects and goes: a port scanner */
  c.fd = -1;
  CHECK(tls_handshake(s.t) == TLS_ENOHELLO);
  CHECK(strcmp(tls_errcode(TLS_ENOHELLO), "closed") == 0);
  why_has(s.t, "ClientHello");
  unpair(&s, &c);
  tls_ctx_unref(sc);
}

static void test_ticket_key_file(void) {
  char err[256];
  struct tls_opts so = {0};
  so.ticket_keys = P("ticket.key");
  struct tls_ctx *sc = server_ctx(&so);
  CHECK(sc != NULL);
  tls_ctx_unref(sc);
  so.ticket_keys = P("missing.key");
  so.server = 1;
  CHECK(tls_ctx_new(&so, err, sizeof err) == NULL);
  CHECK(strstr(err, "missing.key") != NULL);
}

static int setup(void) {
  strcpy(dir, "/tmp/berth-tls-XXXXXX");
  if (mkdtemp(dir) == NULL)
    return -1;
  char cmd[256];
  snprintf(cmd, sizeof cmd, "scripts/mkcerts %s >/dev/null && "
           "echo garbage > %s/garbage.pem && "
           "openssl rand 160 > %s/ticket.key", dir, dir, dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0)
    printf("# could not remove %s\n", dir);
}

int main(void) {
  if (setup() < 0) {
    printf("not ok setup (scripts/mkcerts, from the repository root)\n");
    printf("0 passed, 1 failed\n");
    return 1;
  }
  RUN(test_name_match);
  RUN(test_ctx_errors);
  RUN(test_handshake_and_data);
  RUN(test_bulk);
  RUN(test_verify_failures);
  RUN(test_sni);
  RUN(test_alpn_refused);
  RUN(test_client_certs);
  RUN(test_close_and_truncation);
  RUN(test_preload);
  RUN(test_garbage_and_silence);
  RUN(test_ticket_key_file);
  teardown();
  return CHECK_DONE();
}
