/*
 * units.h -- the host's value syntax: sizes "N[k|M|G]", times
 * "N[ms|s|m|h]" and counts "N", parsed strictly, and formatted back.
 *
 * Contract: no lua.h here (unit-tested and fuzzed alone). N is decimal
 * digits with an optional fraction ("1.5k"); no sign, exponent, blanks,
 * hex, "inf" or "nan", and nothing after the unit. Parsers return 0 and
 * set *out, or -EINVAL for a malformed text and -ERANGE for one too large
 * (or, for sizes, not a whole number of bytes); *out is untouched then.
 * Suffixes: k/K = 1024, m/M = 1024^2, g/G = 1024^3 bytes; ms, s (also no
 * suffix), m (minutes) and h (hours) for times.
 */
#ifndef BERTH_UNITS_H
#define BERTH_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* The largest size a parse returns: what a Lua integer holds. */
#define UNITS_SIZE_MAX ((uint64_t)INT64_MAX)

int units_parse_size(const char *s, uint64_t *out);
int units_parse_time(const char *s, double *out);
/* A plain decimal integer 0..max (no fraction, no suffix). */
int units_parse_count(const char *s, uint64_t max, uint64_t *out);

/* "64k", "8M", "1G", "1000": the largest unit that divides exactly, so
 * that units_parse_size reads the same number back. 0, or -ENOSPC. */
int units_format_size(uint64_t bytes, char *out, size_t len);
/* "60s", "500ms", "1.5s": for help texts (%g precision). */
int units_format_time(double secs, char *out, size_t len);

#endif
