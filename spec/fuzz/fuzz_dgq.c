/*
 * fuzz_dgq.c -- libFuzzer target for src/dgq.c (the datagram FIFO) and the
 * address mapping of src/net.c that the Datagram socket uses on every
 * datagram.
 *
 * The input is a program: each step takes an opcode byte and its operands
 * and applies one operation both to a struct dgq and to a reference model
 * (an array of records, each its own malloc'ed copy). After every step:
 *   - count and bytes equal the model's;
 *   - dgq_gather of everything gives the model's records in order, each
 *     address and data byte-exact, sizes as pushed, every address pointer
 *     8-aligned and every item inside the queue's buffer;
 *   - dgq_front is the first record (or -1 when empty);
 *   - a push the contract rejects (address over DGQ_ADDRMAX, size < len,
 *     size past 4 GiB) returns -EINVAL and changes nothing.
 * Address steps build an IPv4 or IPv6 struct net_addr from the input and
 * check: IPv4 -> IPv4-mapped IPv6 -> unmap gives the same address back;
 * unmapping is idempotent and leaves non-mapped IPv6 as it is; mapping to
 * AF_INET or AF_UNIX fails unless the address already is that family.
 *
 * fuzz-sources: src/dgq.c src/buffer.c src/net.c
 *
 * Built by scripts/fuzz with clang -fsanitize=fuzzer,address,undefined.
 * Pure C, no Lua.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dgq.h"
#include "net.h"

#define MODEL_MAX 512           /* records */
#define BYTES_MAX (1u << 20)    /* data bytes in the model */

#define FUZZ_NAME "fuzz_dgq"
#include "fuzz.h"

struct rec {
  uint8_t *addr, *data;
  size_t alen, len, size;
};

struct model {
  struct rec r[MODEL_MAX];
  size_t head, count, bytes;
};

static struct rec *model_at(struct model *m, size_t i) {
  return &m->r[(m->head + i) % MODEL_MAX];
}

static void rec_free(struct rec *r) {
  free(r->addr);
  free(r->data);
  memset(r, 0, sizeof *r);
}

static void model_pop(struct model *m, size_t n) {
  for (size_t i = 0; i < n && m->count > 0; i++) {
    m->bytes -= model_at(m, 0)->len;
    rec_free(model_at(m, 0));
    m->head = (m->head + 1) % MODEL_MAX;
    m->count--;
  }
}

/* Bytes from the input, or a recognisable fill once it runs out. */
static uint8_t *take(struct in *in, size_t n) {
  uint8_t *p = malloc(n ? n : 1);
  if (p == NULL)
    abort();
  for (size_t i = 0; i < n; i++)
    p[i] = in->n ? in_u8(in) : (uint8_t)(i * 131 + 17);
  return p;
}

static void check(const struct dgq *q, struct model *m, const char *op) {
  if (q->count != m->count || q->bytes != m->bytes)
    FAIL("%s: count %zu bytes %zu, model %zu %zu", op, q->count, q->bytes,
         m->count, m->bytes);
  struct dgq_item first;
  if ((dgq_front(q, &first) == 0) != (m->count > 0))
    FAIL("%s: front disagrees about emptiness", op);
  struct dgq_item *items = malloc((m->count + 1) * sizeof *items);
  if (items == NULL)
    abort();
  size_t n = dgq_gather(q, items, m->count + 1);
  if (n != m->count)
    FAIL("%s: gather %zu of %zu", op, n, m->count);
  const char *lo = buf_begin(&q->b), *hi = lo + q->b.len;
  for (size_t i = 0; i < n; i++) {
    const struct rec *r = model_at(m, i);
    const struct dgq_item *it = &items[i];
    if (it->alen != r->alen || it->len != r->len || it->size != r->size)
      FAIL("%s: item %zu lengths differ", op, i);
    if ((r->alen == 0) != (it->addr == NULL))
      FAIL("%s: item %zu address presence", op, i);
    if (r->alen && ((uintptr_t)it->addr & 7) != 0)
      FAIL("%s: item %zu address not 8-aligned", op, i);
    if (r->alen && ((const char *)it->addr < lo ||
                    (const char *)it->addr + r->alen > hi))
      FAIL("%s: item %zu address outside the buffer", op, i);
    if (it->data < lo || it->data + it->len > hi)
      FAIL("%s: item %zu data outside the buffer", op, i);
    if (r->alen && memcmp(it->addr, r->addr, r->alen) != 0)
      FAIL("%s: item %zu address bytes", op, i);
    if (r->len && memcmp(it->data, r->data, r->len) != 0)
      FAIL("%s: item %zu data bytes", op, i);
  }
  if (n > 0 && (first.data != items[0].data || first.len != items[0].len))
    FAIL("%s: front is not the first item", op);
  free(items);
}

static void op_push(struct dgq *q, struct model *m, struct in *in) {
  uint8_t sel = in_u8(in);
  size_t alen = sel & 1 ? in_u8(in) % (DGQ_ADDRMAX + 8) : (size_t)(sel >> 1) % 29;
  size_t len = (sel & 6) == 6 ? in_u16(in) : in_u8(in);
  size_t size = len;
  switch (in_u8(in) & 7) {
  case 0: size = len + 1 + in_u16(in); break;     /* truncated */
  case 1: size = len ? len - 1 : 0; break;        /* size < len when len > 0 */
  case 2: size = (size_t)UINT32_MAX + 1; break;   /* too big */
  default: break;
  }
  uint8_t *addr = take(in, alen), *data = take(in, len);
  int bad = alen > DGQ_ADDRMAX || size < len || size > UINT32_MAX;
  int full = m->count == MODEL_MAX || m->bytes + len > BYTES_MAX;
  if (full && !bad) {
    free(addr);
    free(data);
    return;
  }
  struct buf before = q->b;
  size_t count = q->count;
  int rc = dgq_push(q, addr, alen, data, len, size);
  if (bad) {
    if (rc != -EINVAL)
      FAIL("push(alen %zu, len %zu, size %zu) = %d, want -EINVAL", alen, len,
           size, rc);
    if (memcmp(&before, &q->b, sizeof before) != 0 || q->count != count)
      FAIL("a rejected push changed the queue");
    free(addr);
    free(data);
    return;
  }
  if (rc != 0)
    FAIL("push(alen %zu, len %zu, size %zu) = %d", alen, len, size, rc);
  struct rec *r = model_at(m, m->count);
  *r = (struct rec){addr, data, alen, len, size};
  m->count++;
  m->bytes += len;
}

/* ---------------------------------------------------- address mapping */

static void check_addresses(struct in *in) {
  struct net_addr a, b;
  memset(&a, 0, sizeof a);
  uint8_t sel = in_u8(in);
  int port = (int)in_u16(in);
  if (sel & 1) {
    struct sockaddr_in *v4 = (struct sockaddr_in *)&a.ss;
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    for (int i = 0; i < 4; i++)
      ((uint8_t *)&v4->sin_addr)[i] = in_u8(in);
    a.len = sizeof *v4;
    b = a;
    if (net_addr_tofamily(&b, AF_INET6) != 0 || net_addr_family(&b) != AF_INET6)
      FAIL("v4 -> v6 failed");
    if (b.len != sizeof(struct sockaddr_in6))
      FAIL("v4 -> v6 length %u", (unsigned)b.len);
    net_addr_unmap(&b);
    if (b.len != a.len || memcmp(&a.ss, &b.ss, a.len) != 0)
      FAIL("v4 -> v6 -> unmap is not the same address");
  } else {
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a.ss;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    for (int i = 0; i < 16; i++)
      v6->sin6_addr.s6_addr[i] = in_u8(in);
    if (sel & 2) { /* often make it v4-mapped */
      memset(v6->sin6_addr.s6_addr, 0, 10);
      v6->sin6_addr.s6_addr[10] = v6->sin6_addr.s6_addr[11] = 0xff;
    }
    a.len = sizeof *v6;
    b = a;
    net_addr_unmap(&b);
    int mapped = IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr);
    if (!mapped && (b.len != a.len || memcmp(&a.ss, &b.ss, a.len) != 0))
      FAIL("unmap changed a plain IPv6 address");
    if (mapped) {
      if (net_addr_family(&b) != AF_INET)
        FAIL("unmap left a mapped address");
      struct net_addr c = b;
      net_addr_unmap(&c);
      if (memcmp(&c, &b, sizeof c) != 0)
        FAIL("unmap is not idempotent");
      if (net_addr_tofamily(&c, AF_INET6) != 0 ||
          memcmp(&((struct sockaddr_in6 *)&c.ss)->sin6_addr, &v6->sin6_addr,
                 16) != 0 ||
          ((struct sockaddr_in6 *)&c.ss)->sin6_port != v6->sin6_port)
        FAIL("unmap -> v6 is not the mapped address");
    }
  }
  b = a;
  int fam = net_addr_family(&a);
  if (net_addr_tofamily(&b, AF_UNIX) != -EAFNOSUPPORT)
    FAIL("an IP address mapped to AF_UNIX");
  if (fam == AF_INET6 && net_addr_tofamily(&b, AF_INET) != -EAFNOSUPPORT)
    FAIL("an IPv6 address mapped to AF_INET");
  if (net_addr_tofamily(&b, fam) != 0 || memcmp(&a, &b, sizeof a) != 0)
    FAIL("mapping to its own family changed it");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct in in = {data, size};
  struct dgq q = DGQ_INIT;
  static struct model m;
  memset(&m, 0, sizeof m);
  check(&q, &m, "init");
  while (in.n > 0) {
    uint8_t op = in_u8(&in);
    switch (op % 8) {
    case 0: case 1: case 2:
      op_push(&q, &m, &in);
      check(&q, &m, "push");
      break;
    case 3: {
      size_t n = op & 0x80 ? in_u16(&in) : (size_t)(op >> 3) % 5;
      dgq_pop(&q, n);
      model_pop(&m, n);
      check(&q, &m, "pop");
      break;
    }
    case 4: {
      struct dgq_item items[8];
      size_t k = (size_t)(op >> 3) % 9;
      size_t got = dgq_gather(&q, items, k);
      if (got != (k < m.count ? k : m.count))
        FAIL("gather(%zu) = %zu with %zu queued", k, got, m.count);
      break;
    }
    case 5:
      dgq_free(&q);
      model_pop(&m, m.count);
      check(&q, &m, "free");
      break;
    default:
      check_addresses(&in);
    }
  }
  dgq_free(&q);
  model_pop(&m, m.count);
  return 0;
}
