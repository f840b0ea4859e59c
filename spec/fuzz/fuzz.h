/*
 * fuzz.h -- what the libFuzzer targets share. FAIL prints a message naming
 * the target (FUZZ_NAME, defined before this is included) and aborts, so
 * the fuzzer saves the input that broke an invariant. struct in reads
 * operands from the input and yields zeros once it is exhausted, so every
 * input is a complete program of operations.
 */
#ifndef BERTH_FUZZ_H
#define BERTH_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FAIL(...)                                                          \
  do {                                                                     \
    fprintf(stderr, FUZZ_NAME ": " __VA_ARGS__);                           \
    fputc('\n', stderr);                                                   \
    abort();                                                               \
  } while (0)

struct in {
  const uint8_t *p;
  size_t n;
};

static inline uint8_t in_u8(struct in *in) {
  if (in->n == 0)
    return 0;
  in->n--;
  return *in->p++;
}

static inline size_t in_u16(struct in *in) {
  size_t hi = in_u8(in);
  return hi << 8 | in_u8(in);
}

#endif
