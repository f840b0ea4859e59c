/*
 * test_units.c -- C unit tests for src/units.c: the host's size, time and
 * count syntax, strict parsing and formatting back.
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "units.h"

static uint64_t size_of(const char *s) {
  uint64_t v = 12345;
  int rc = units_parse_size(s, &v);
  return rc == 0 ? v : (uint64_t)-1;
}

static int size_rc(const char *s) {
  uint64_t v = 777;
  int rc = units_parse_size(s, &v);
  CHECK(rc == 0 || v == 777); /* untouched on failure */
  return rc;
}

static double time_of(const char *s) {
  double v = -1;
  return units_parse_time(s, &v) == 0 ? v : -1;
}

static int time_rc(const char *s) {
  double v = -7;
  int rc = units_parse_time(s, &v);
  CHECK(rc == 0 || v == -7);
  return rc;
}

static void test_sizes(void) {
  CHECK(size_of("0") == 0);
  CHECK(size_of("1000") == 1000);
  CHECK(size_of("64k") == 65536);
  CHECK(size_of("64K") == 65536);
  CHECK(size_of("8M") == 8u << 20);
  CHECK(size_of("8m") == 8u << 20);
  CHECK(size_of("1G") == 1u << 30);
  CHECK(size_of("1.5k") == 1536);
  CHECK(size_of("0.5M") == 512 * 1024);
  CHECK(size_of("1.0") == 1);
  CHECK(size_of("007") == 7);
}

static void test_sizes_rejected(void) {
  static const char *const bad[] = {
    "", "k", "-1", "+1", " 1", "1 ", "1kk", "1kb", "1T", "0x10", "1e3",
    "inf", "nan", "1.", ".5", "1.k", "abc", "12abc", "1,5k", "1s", NULL
  };
  for (int i = 0; bad[i]; i++) {
    int rc = size_rc(bad[i]);
    CHECK(rc == -EINVAL);
    if (rc != -EINVAL)
      printf("  accepted size '%s'\n", bad[i]);
  }
  CHECK(size_rc("0.1k") == -ERANGE);  /* 102.4 bytes */
  CHECK(size_rc("1.5") == -ERANGE);   /* half a byte */
  CHECK(size_rc("9223372036854775807") == 0);
  CHECK(size_rc("9223372036854775808") == -ERANGE);
  CHECK(size_rc("99999999999G") == -ERANGE);
  CHECK(size_rc("8589934592G") == -ERANGE); /* 2^63 */
  CHECK(size_rc("8589934591G") == 0);
  CHECK(size_rc("1234567890123456789012") == -ERANGE);
}

static void test_times(void) {
  CHECK(time_of("0") == 0);
  CHECK(time_of("60") == 60);
  CHECK(time_of("60s") == 60);
  CHECK(time_of("1m") == 60);
  CHECK(time_of("1.5m") == 90);
  CHECK(time_of("2h") == 7200);
  CHECK(time_of("500ms") == 0.5);
  CHECK(time_of("1ms") == 0.001);
  CHECK(time_of("0.25") == 0.25);
  CHECK(time_of("0.1s") == 0.1);
}

static void test_times_rejected(void) {
  static const char *const bad[] = {
    "", "abc", "off", "soon", "x", "-1", "+1", "1 s", " 1", "1sec", "1mm",
    "1S", "1M", "1H", "1d", "inf", "nan", "1e3", "0x1", "1.", ".5", "1..5",
    "1.5.5", "5ss", NULL
  };
  for (int i = 0; bad[i]; i++) {
    int rc = time_rc(bad[i]);
    CHECK(rc == -EINVAL);
    if (rc != -EINVAL)
      printf("  accepted time '%s'\n", bad[i]);
  }
  CHECK(time_rc("1234567890123456789012") == -ERANGE);
  CHECK(time_rc("1.12345678901234567890") == -ERANGE);
  /* Malformed wins over too long (fuzz_units:
   * spec/fuzz/repro/units_time_long_fraction_bad_unit). */
  CHECK(time_rc("0.59223372036854775807k") == -EINVAL);
  CHECK(size_rc("1.12345678901234567890x") == -EINVAL);
}

static void test_counts(void) {
  uint64_t v = 9;
  CHECK(units_parse_count("4", 100, &v) == 0 && v == 4);
  CHECK(units_parse_count("0", 100, &v) == 0 && v == 0);
  CHECK(units_parse_count("100", 100, &v) == 0 && v == 100);
  v = 9;
  CHECK(units_parse_count("101", 100, &v) == -ERANGE && v == 9);
  CHECK(units_parse_count("2x", 100, &v) == -EINVAL);
  CHECK(units_parse_count("1.0", 100, &v) == -EINVAL);
  CHECK(units_parse_count("1k", 100, &v) == -EINVAL);
  CHECK(units_parse_count("", 100, &v) == -EINVAL);
  CHECK(units_parse_count("-2", 100, &v) == -EINVAL);
  CHECK(units_parse_count("auto", 100, &v) == -EINVAL && v == 9);
  /* fuzz_units found this one: a fraction too long to scan was -ERANGE
   * (spec/fuzz/repro/units_count_long_fraction). */
  CHECK(units_parse_count("00.22222222222222222222", 100, &v) == -EINVAL);
}

static void test_format(void) {
  char out[32];
  CHECK(units_format_size(65536, out, sizeof out) == 0 && !strcmp(out, "64k"));
  CHECK(units_format_size(8u << 20, out, sizeof out) == 0 && !strcmp(out, "8M"));
  CHECK(units_format_size(1u << 30, out, sizeof out) == 0 && !strcmp(out, "1G"));
  CHECK(units_format_size(1536, out, sizeof out) == 0 && !strcmp(out, "1536"));
  CHECK(units_format_size(0, out, sizeof out) == 0 && !strcmp(out, "0"));
  CHECK(units_format_time(60, out, sizeof out) == 0 && !strcmp(out, "60s"));
  CHECK(units_format_time(0.5, out, sizeof out) == 0 && !strcmp(out, "500ms"));
  CHECK(units_format_time(1.5, out, sizeof out) == 0 && !strcmp(out, "1.5s"));
  CHECK(units_format_size(65536, out, 3) == -ENOSPC);
  CHECK(units_format_time(60, out, 3) == -ENOSPC);
  /* What the formatter writes, the parser reads back. */
  static const uint64_t sizes[] = {1, 1023, 1024, 3u << 20, 5ull << 30, 123456789};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    uint64_t back = 0;
    CHECK(units_format_size(sizes[i], out, sizeof out) == 0);
    CHECK(units_parse_size(out, &back) == 0 && back == sizes[i]);
  }
}

int main(void) {
  RUN(test_sizes);
  RUN(test_sizes_rejected);
  RUN(test_times);
  RUN(test_times_rejected);
  RUN(test_counts);
  RUN(test_format);
  return CHECK_DONE();
}
