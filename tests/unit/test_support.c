/* test_support.c: arena, strings, UTF-8, dtypes and sizes. */
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "buf.h"
#include "testutil.h"
#include "utf8.h"

static void test_arena(void **state)
{
    (void)state;
    arena a;
    ar_init(&a);
    char *s = ar_strdup(&a, "kernel");
    assert_string_equal(s, "kernel");
    void *big = ar_alloc(&a, 1 << 20); /* larger than a block */
    assert_non_null(big);
    assert_null(ar_array(&a, SIZE_MAX / 4, 8)); /* overflow is refused */
    long *z = ar_array(&a, 100, sizeof *z);
    for (int i = 0; i < 100; i++)
        assert_int_equal(z[i], 0);
    ar_free(&a);
}

static void test_json_strings(void **state)
{
    (void)state;
    buf b;
    buf_init(&b);
    buf_json_string(&b, "a\"b\\c\n\t\x01/é");
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001/é\"");
    buf_free(&b);
    buf_json_ascii(&b, "é€😀x");
    assert_string_equal(b.data, "\"\\u00e9\\u20ac\\ud83d\\ude00x\"");
    char *s = buf_take(&b);
    assert_string_equal(s, "\"\\u00e9\\u20ac\\ud83d\\ude00x\"");
    free(s);
    s = buf_take(&b); /* an empty buffer still gives a string */
    assert_string_equal(s, "");
    free(s);
}

static void test_utf8(void **state)
{
    (void)state;
    size_t bad;
    const char *ok = "plain é € 😀";
    assert_true(utf8_valid((const unsigned char *)ok, strlen(ok), &bad));
    static const struct {
        const char *s;
        size_t len, bad;
    } cases[] = {
        {"ab\xC0\x80", 4, 2},         /* overlong NUL */
        {"\xE0\x80\xAF", 3, 0},       /* overlong '/' */
        {"x\xED\xA0\x80", 4, 1},      /* surrogate */
        {"\xF4\x90\x80\x80", 4, 0},   /* past U+10FFFF */
        {"ok\xE2\x82", 4, 2},         /* truncated */
        {"\xFF", 1, 0},
        {"a\x80", 2, 1},              /* stray continuation */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_false(utf8_valid((const unsigned char *)cases[i].s, cases[i].len, &bad));
        assert_int_equal(bad, cases[i].bad);
    }
}

static void test_dtypes(void **state)
{
    (void)state;
    static const char *st[] = {"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64",
                               "I64", "F16", "BF16", "F32", "F64", "C64", "F8_E4M3",
                               "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
                               "F4", "F6_E2M3", "F6_E3M2"};
    assert_int_equal(SURG_DTYPE_COUNT, 22);
    for (size_t i = 0; i < sizeof st / sizeof *st; i++) {
        surg_dtype d = surg_dtype_from_st_name(st[i]);
        assert_int_not_equal(d, SURG_DTYPE_COUNT);
        assert_string_equal(surg_dtype_st_name(d), st[i]);
        assert_int_equal(surg_dtype_from_recipe_name(surg_dtype_recipe_name(d)), d);
    }
    assert_int_equal(surg_dtype_from_st_name("f32"), SURG_DTYPE_COUNT);
    assert_int_equal(surg_dtype_from_recipe_name("F32"), SURG_DTYPE_COUNT);
    assert_int_equal(surg_dtype_bits(SURG_BF16), 16);
    assert_int_equal(surg_dtype_bits(SURG_F4), 4);
    assert_int_equal(surg_dtype_bits(SURG_C64), 64);
    assert_int_equal(surg_dtype_kind_of(SURG_F8_E8M0), SURG_KIND_OPAQUE);
    assert_int_equal(surg_dtype_kind_of(SURG_F8_E4M3), SURG_KIND_FLOAT);
    /* The reference's alignment order, smallest first. */
    assert_true(SURG_BOOL < SURG_F4 && SURG_F6_E3M2 < SURG_U8 && SURG_I8 < SURG_F8_E5M2 &&
                SURG_F8_E5M2FNUZ < SURG_I16 && SURG_BF16 < SURG_I32 &&
                SURG_F32 < SURG_C64 && SURG_C64 < SURG_F64 && SURG_I64 < SURG_U64);
}

static void test_sizes(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(surg_parse_size("1000", &v), SURG_OK);
    assert_int_equal(v, 1000);
    assert_int_equal(surg_parse_size("5GB", &v), SURG_OK);
    assert_int_equal(v, 5000000000ull);
    assert_int_equal(surg_parse_size("2GiB", &v), SURG_OK);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(surg_parse_size("500mb", &v), SURG_OK);
    assert_int_equal(v, 500000000ull);
    assert_int_equal(surg_parse_size("10KiB", &v), SURG_OK);
    assert_int_equal(v, 10240);
    assert_int_not_equal(surg_parse_size("", &v), SURG_OK);
    assert_int_not_equal(surg_parse_size("0", &v), SURG_OK);
    assert_int_not_equal(surg_parse_size("-5GB", &v), SURG_OK);
    assert_int_not_equal(surg_parse_size("5XB", &v), SURG_OK);
    assert_int_not_equal(surg_parse_size("99999999999999999999TB", &v), SURG_OK);
    assert_int_not_equal(surg_parse_size("20000000TB", &v), SURG_OK);

    char b[32];
    static const struct {
        uint64_t n;
        const char *s;
    } shown[] = {{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {9856000, "9.4 MiB"},
                 {3ull << 40, "3.0 TiB"}, {UINT64_MAX, "16.0 EiB"}};
    for (size_t i = 0; i < sizeof shown / sizeof *shown; i++) {
        surg_format_size(shown[i].n, b, sizeof b);
        assert_string_equal(b, shown[i].s);
    }
}

static void test_exit_codes(void **state)
{
    (void)state;
    assert_int_equal(surg_exit_code(SURG_OK), 0);
    assert_int_equal(surg_exit_code(SURG_EINVALID), 1);
    assert_int_equal(surg_exit_code(SURG_EIO), 2);
    assert_int_equal(surg_exit_code(SURG_EUSAGE), 2);
    assert_int_equal(surg_exit_code(SURG_ENOMEM), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena),      cmocka_unit_test(test_json_strings),
        cmocka_unit_test(test_utf8),       cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_sizes),      cmocka_unit_test(test_exit_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
