/*
 * fuzz_units.c -- libFuzzer target for src/units.c (the host's size, time
 * and count syntax).
 *
 * The input (up to its first NUL) is given to each parser. A naive
 * reference recognizer decides what must be accepted:
 *   number  = digits [ "." digits ]
 *   size    = number [ k|K|m|M|g|G ]
 *   time    = number [ ms|s|m|h ]
 *   count   = digits
 * and the parsers must agree with it, except that a well-formed text may
 * be refused with -ERANGE (too many digits, too large, or a size that is
 * not a whole number of bytes). On success:
 *   - a size is <= UNITS_SIZE_MAX, units_format_size of it parses back to
 *     the same value, and a whole number with a suffix is exactly
 *     number * unit;
 *   - a time is finite and >= 0, and a whole number below 2^53 with a
 *     suffix is number * unit (number / 1000 for ms);
 *   - a count is the decimal value of the digits, and <= the maximum.
 * A parser that fails leaves its output untouched.
 *
 * spec/fuzz/repro/units_count_long_fraction ("00.2222...", 20 fraction
 * digits) is the input that found units_parse_count reporting a fraction
 * too long to scan as -ERANGE instead of malformed, and
 * units_time_long_fraction_bad_unit ("0.5922...k") the same in the time
 * parser: the unit must be checked before the digit count.
 *
 * fuzz-sources: src/units.c
 *
 * Built by scripts/fuzz with clang -fsanitize=fuzzer,address,undefined and
 * linked against src/units.c directly. Pure C, no Lua.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "units.h"

#define INPUT_MAX 64

static void fail(const char *what, const char *s) {
  fprintf(stderr, "fuzz_units: %s for input \"%s\"\n", what, s);
  abort();
}

/* Length of the number at s (0 if none); *whole = its whole part when it
 * has no fraction and fits, else UINT64_MAX. */
static size_t ref_number(const char *s, uint64_t *whole) {
  size_t i = 0;
  *whole = 0;
  while (s[i] >= '0' && s[i] <= '9') {
    unsigned d = (unsigned)(s[i] - '0');
    *whole = *whole > (UINT64_MAX - d) / 10 ? UINT64_MAX : *whole * 10 + d;
    i++;
  }
  if (i == 0)
    return 0;
  if (s[i] == '.') {
    size_t j = i + 1;
    while (s[j] >= '0' && s[j] <= '9')
      j++;
    if (j == i + 1)
      return 0;
    *whole = UINT64_MAX;
    i = j;
  }
  return i;
}

static uint64_t ref_size_unit(const char *u) {
  if (!strcmp(u, ""))
    return 1;
  if (!strcmp(u, "k") || !strcmp(u, "K"))
    return 1024;
  if (!strcmp(u, "m") || !strcmp(u, "M"))
    return 1024 * 1024;
  if (!strcmp(u, "g") || !strcmp(u, "G"))
    return 1024 * 1024 * 1024;
  return 0;
}

static double ref_time_unit(const char *u, int *ms) {
  *ms = !strcmp(u, "ms");
  if (*ms || !strcmp(u, "") || !strcmp(u, "s"))
    return 1;
  if (!strcmp(u, "m"))
    return 60;
  if (!strcmp(u, "h"))
    return 3600;
  return 0;
}

static void check_size(const char *s) {
  uint64_t whole, v = 42;
  size_t n = ref_number(s, &whole);
  uint64_t unit = n ? ref_size_unit(s + n) : 0;
  int rc = units_parse_size(s, &v);
  if (unit == 0 && rc != -EINVAL)
    fail("size: malformed text not refused with -EINVAL", s);
  if (unit != 0 && rc == -EINVAL)
    fail("size: well-formed text refused as malformed", s);
  if (rc != 0) {
    if (v != 42)
      fail("size: output changed on failure", s);
    return;
  }
  if (v > UNITS_SIZE_MAX)
    fail("size: above UNITS_SIZE_MAX", s);
  if (whole != UINT64_MAX && whole <= UNITS_SIZE_MAX / unit &&
      v != whole * unit)
    fail("size: whole number times unit differs", s);
  char out[32];
  uint64_t back = 0;
  if (units_format_size(v, out, sizeof out) != 0 ||
      units_parse_size(out, &back) != 0 || back != v)
    fail("size: format does not parse back", s);
}

static void check_time(const char *s) {
  uint64_t whole;
  int ms;
  double v = -42;
  size_t n = ref_number(s, &whole);
  double unit = n ? ref_time_unit(s + n, &ms) : 0;
  int rc = units_parse_time(s, &v);
  if (unit == 0 && rc != -EINVAL)
    fail("time: malformed text not refused with -EINVAL", s);
  if (unit != 0 && rc == -EINVAL)
    fail("time: well-formed text refused as malformed", s);
  if (rc != 0) {
    if (v != -42)
      fail("time: output changed on failure", s);
    return;
  }
  if (!isfinite(v) || v < 0)
    fail("time: not a finite non-negative number", s);
  if (whole < ((uint64_t)1 << 53)) {
    double want = ms ? (double)whole / 1000 : (double)whole * unit;
    if (v != want)
      fail("time: whole number times unit differs", s);
  }
}

static void check_count(const char *s) {
  uint64_t whole, v = 42;
  size_t n = ref_number(s, &whole);
  int digits_only = n > 0 && s[n] == '\0' && strchr(s, '.') == NULL;
  const uint64_t max = 1000000;
  int rc = units_parse_count(s, max, &v);
  if (!digits_only && rc != -EINVAL)
    fail("count: malformed text not refused with -EINVAL", s);
  if (rc == 0 && (v != whole || v > max))
    fail("count: wrong value", s);
  if (digits_only && whole <= max && rc != 0)
    fail("count: a small count refused", s);
  if (digits_only && whole > max && rc != -ERANGE)
    fail("count: a large count not refused with -ERANGE", s);
  if (rc != 0 && v != 42)
    fail("count: output changed on failure", s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char s[INPUT_MAX + 1];
  size_t n = size < INPUT_MAX ? size : INPUT_MAX;
  memcpy(s, data, n);
  s[n] = '\0'; /* an embedded NUL just ends the text early */
  check_size(s);
  check_time(s);
  check_count(s);
  return 0;
}
