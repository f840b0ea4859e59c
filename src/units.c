/*
 * units.c -- see units.h for the contract. No lua.h here.
 *
 * A number is scanned into exact integers (whole part, fraction digits and
 * their scale) before any unit is applied, so that "1.5k" is exactly 1536
 * bytes and "0.1k" (102.4 bytes) is refused instead of rounded. No strtod:
 * it accepts far more than the syntax ("0x10", "inf", " 1", "1e3") and
 * depends on the locale.
 */
#include "units.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define UNITS_DIGITS_MAX 19 /* 10^19 < 2^64: no overflow while scanning */

/* value = whole + frac / scale, with frac < scale = 10^(fraction digits) */
struct units_num {
  uint64_t whole, frac, scale;
  const char *end; /* the first byte after the number: the unit */
  int toolong;     /* more digits than UNITS_DIGITS_MAX: -ERANGE, but only
                    * once the unit is known to be valid (else -EINVAL) */
};

/* Digits into *v; returns the position after them. *n counts the digits
 * (leading zeros of a whole part do not count); past UNITS_DIGITS_MAX
 * they are skipped and *toolong is set. */
static const char *units_digits(const char *p, uint64_t *v, int *n,
                                int keep_zeros, int *toolong) {
  for (; *p >= '0' && *p <= '9'; p++) {
    if (*v == 0 && *p == '0' && !keep_zeros)
      continue;
    if (++*n > UNITS_DIGITS_MAX)
      *toolong = 1;
    else
      *v = *v * 10 + (uint64_t)(*p - '0');
  }
  return p;
}

static int units_scan(const char *s, struct units_num *num) {
  int n = 0;
  memset(num, 0, sizeof *num);
  num->scale = 1;
  if (s == NULL || *s < '0' || *s > '9')
    return -EINVAL;
  const char *p = units_digits(s, &num->whole, &n, 0, &num->toolong);
  if (*p == '.') {
    if (p[1] < '0' || p[1] > '9')
      return -EINVAL; /* "5." or "5.k" */
    n = 0;
    p = units_digits(p + 1, &num->frac, &n, 1, &num->toolong);
    for (int i = 0; i < n && i < UNITS_DIGITS_MAX; i++)
      num->scale *= 10;
  }
  num->end = p;
  return 0;
}

static uint64_t units_gcd(uint64_t a, uint64_t b) {
  while (b != 0) {
    uint64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

static uint64_t units_size_unit(const char *u) {
  if (u[0] == '\0')
    return 1;
  if (u[1] != '\0')
    return 0;
  switch (u[0]) {
  case 'k': case 'K': return (uint64_t)1 << 10;
  case 'm': case 'M': return (uint64_t)1 << 20;
  case 'g': case 'G': return (uint64_t)1 << 30;
  default: return 0;
  }
}

int units_parse_size(const char *s, uint64_t *out) {
  struct units_num num;
  int rc = units_scan(s, &num);
  if (rc < 0)
    return rc;
  uint64_t unit = units_size_unit(num.end);
  if (unit == 0)
    return -EINVAL;
  if (num.toolong)
    return -ERANGE;
  /* frac/scale * unit must be whole: reduce by the common factor first,
   * which also keeps the product below `unit` (no overflow). */
  uint64_t g = units_gcd(unit, num.scale);
  uint64_t scale = num.scale / g;
  assert(("units: a divisor of scale >= 1 leaves it >= 1", scale >= 1));
  if (num.frac % scale != 0)
    return -ERANGE;
  uint64_t part = num.frac / scale * (unit / g);
  if (num.whole > (UNITS_SIZE_MAX - part) / unit)
    return -ERANGE;
  *out = num.whole * unit + part;
  return 0;
}

int units_parse_time(const char *s, double *out) {
  struct units_num num;
  int rc = units_scan(s, &num);
  if (rc < 0)
    return rc;
  const char *u = num.end;
  double mul = 1, div = 1; /* a division rounds "1ms" to the nearest */
  if (strcmp(u, "ms") == 0)
    div = 1000;
  else if (strcmp(u, "m") == 0)
    mul = 60;
  else if (strcmp(u, "h") == 0)
    mul = 3600;
  else if (strcmp(u, "") != 0 && strcmp(u, "s") != 0)
    return -EINVAL;
  if (num.toolong)
    return -ERANGE;
  double v = (double)num.whole + (double)num.frac / (double)num.scale;
  *out = v * mul / div;
  return 0;
}

int units_parse_count(const char *s, uint64_t max, uint64_t *out) {
  struct units_num num;
  /* Digits only, checked first: a fraction is malformed, however long. */
  if (s == NULL || *s == '\0' || s[strspn(s, "0123456789")] != '\0')
    return -EINVAL;
  int rc = units_scan(s, &num);
  if (rc < 0)
    return rc;
  if (num.toolong || num.whole > max)
    return -ERANGE;
  *out = num.whole;
  return 0;
}

static int units_print(size_t len, int n) {
  return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

int units_format_size(uint64_t bytes, char *out, size_t len) {
  static const char suffix[] = "GMk";
  for (int i = 0; i < 3; i++) {
    uint64_t unit = (uint64_t)1 << (10 * (3 - i));
    if (bytes != 0 && bytes % unit == 0)
      return units_print(len, snprintf(out, len, "%llu%c",
        (unsigned long long)(bytes / unit), suffix[i]));
  }
  return units_print(len,
                     snprintf(out, len, "%llu", (unsigned long long)bytes));
}

int units_format_time(double secs, char *out, size_t len) {
  double ms = secs * 1000;
  if (secs > 0 && secs < 1 && ms < 1e9 && (double)(long long)ms == ms)
    return units_print(len, snprintf(out, len, "%.0fms", ms));
  return units_print(len, snprintf(out, len, "%gs", secs));
}
