/*
 * test_dgq.c -- unit tests for src/dgq.c, the datagram FIFO: order, exact
 * bytes and addresses, truncation sizes, alignment, partial pops, growth
 * with interleaved pops, argument checks, and reuse after free.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dgq.h"

static int item_is(const struct dgq_item *it, const char *addr, size_t alen,
                   const char *data, size_t len, size_t size) {
  return it->alen == alen && it->len == len && it->size == size &&
         (alen == 0 ? it->addr == NULL : memcmp(it->addr, addr, alen) == 0) &&
         memcmp(it->data, data, len) == 0;
}

static void test_fifo_order(void) {
  struct dgq q = DGQ_INIT;
  struct dgq_item it;
  CHECK(dgq_front(&q, &it) == -1);
  CHECK(dgq_push(&q, "A1", 2, "first", 5, 5) == 0);
  CHECK(dgq_push(&q, "addr-two", 8, "", 0, 0) == 0);
  CHECK(dgq_push(&q, NULL, 0, "third", 5, 5) == 0);
  CHECK(q.count == 3 && q.bytes == 10);
  CHECK(dgq_front(&q, &it) == 0 && item_is(&it, "A1", 2, "first", 5, 5));
  dgq_pop(&q, 1);
  CHECK(dgq_front(&q, &it) == 0 && item_is(&it, "addr-two", 8, "", 0, 0));
  dgq_pop(&q, 1);
  CHECK(dgq_front(&q, &it) == 0 && item_is(&it, NULL, 0, "third", 5, 5));
  CHECK(q.count == 1 && q.bytes == 5);
  dgq_pop(&q, 1);
  CHECK(q.count == 0 && q.bytes == 0 && dgq_front(&q, &it) == -1);
  dgq_free(&q);
}

static void test_truncated_size(void) {
  struct dgq q = DGQ_INIT;
  struct dgq_item it;
  CHECK(dgq_push(&q, "x", 1, "cut", 3, 70000) == 0);
  CHECK(dgq_front(&q, &it) == 0 && it.len == 3 && it.size == 70000);
  CHECK(dgq_push(&q, "x", 1, "bad", 3, 2) == -22); /* size < len: -EINVAL */
  CHECK(dgq_push(&q, "x", 1, "", 0, (size_t)UINT32_MAX + 1) == -22);
  CHECK(q.count == 1);
  dgq_free(&q);
}

static void test_address_limits_and_alignment(void) {
  struct dgq q = DGQ_INIT;
  char addr[DGQ_ADDRMAX + 1];
  memset(addr, 'a', sizeof addr);
  CHECK(dgq_push(&q, addr, DGQ_ADDRMAX + 1, "x", 1, 1) == -22);
  CHECK(q.count == 0 && q.b.len == 0);
  /* Odd lengths everywhere: every address must still come out 8-aligned. */
  for (size_t i = 0; i < 40; i++)
    CHECK(dgq_push(&q, addr, 1 + i % DGQ_ADDRMAX, addr, i * 3 % 17,
                   i * 3 % 17) == 0);
  struct dgq_item items[40];
  CHECK(dgq_gather(&q, items, 40) == 40);
  for (size_t i = 0; i < 40; i++) {
    CHECK(((uintptr_t)items[i].addr & 7) == 0);
    CHECK(items[i].alen == 1 + i % DGQ_ADDRMAX);
  }
  dgq_pop(&q, 7);
  CHECK(dgq_gather(&q, items, 1) == 1 && ((uintptr_t)items[0].addr & 7) == 0);
  CHECK(items[0].alen == 8);
  dgq_free(&q);
}

static void test_gather_and_partial_pop(void) {
  struct dgq q = DGQ_INIT;
  char data[32];
  for (int i = 0; i < 10; i++) {
    int n = snprintf(data, sizeof data, "datagram %d", i);
    CHECK(dgq_push(&q, &i, sizeof i, data, (size_t)n, (size_t)n) == 0);
  }
  struct dgq_item items[16];
  CHECK(dgq_gather(&q, items, 4) == 4);
  CHECK(dgq_gather(&q, items, 16) == 10);
  for (int i = 0; i < 10; i++) {
    int a;
    memcpy(&a, items[i].addr, sizeof a);
    CHECK(a == i);
  }
  dgq_pop(&q, 3);
  CHECK(q.count == 7 && dgq_gather(&q, items, 16) == 7);
  CHECK(memcmp(items[0].data, "datagram 3", 10) == 0);
  CHECK(q.bytes == 7 * 10);
  dgq_pop(&q, 100);
  CHECK(q.count == 0 && q.bytes == 0 && q.b.len == 0);
  dgq_free(&q);
}

/* Many pushes with pops in between: the bytes of every datagram survive
 * the buffer's slides and reallocations. */
static void test_growth_keeps_records(void) {
  struct dgq q = DGQ_INIT;
  size_t next_in = 0, next_out = 0;
  char *data = malloc(70000);
  CHECK(data != NULL);
  for (size_t round = 0; round < 300; round++) {
    size_t len = (round * 7919) % 70000;
    memset(data, (int)('a' + round % 26), len);
    CHECK(dgq_push(&q, &next_in, sizeof next_in, data, len, len) == 0);
    next_in++;
    while (q.count > 0 && (round % 3 == 0 || q.count > 5)) {
      struct dgq_item it;
      CHECK(dgq_front(&q, &it) == 0);
      size_t tag;
      memcpy(&tag, it.addr, sizeof tag);
      size_t want = (next_out * 7919) % 70000;
      CHECK(tag == next_out && it.len == want);
      CHECK(it.len == 0 || (it.data[0] == (char)('a' + next_out % 26) &&
                            it.data[it.len - 1] == it.data[0]));
      dgq_pop(&q, 1);
      next_out++;
    }
  }
  CHECK(next_in - next_out == q.count);
  free(data);
  dgq_free(&q);
}

static void test_free_then_reuse(void) {
  struct dgq q = DGQ_INIT;
  CHECK(dgq_push(&q, "a", 1, "one", 3, 3) == 0);
  dgq_free(&q);
  CHECK(q.count == 0 && q.bytes == 0 && q.b.data == NULL);
  CHECK(dgq_push(&q, "b", 1, "two", 3, 3) == 0);
  struct dgq_item it;
  CHECK(dgq_front(&q, &it) == 0 && item_is(&it, "b", 1, "two", 3, 3));
  dgq_free(&q);
  dgq_free(&q); /* twice is harmless */
}

int main(void) {
  RUN(test_fifo_order);
  RUN(test_truncated_size);
  RUN(test_address_limits_and_alignment);
  RUN(test_gather_and_partial_pop);
  RUN(test_growth_keeps_records);
  RUN(test_free_then_reuse);
  return CHECK_DONE();
}
