/* test_support.c: arena, strings, UTF-8, dtypes and sizes; reading files
 * (only regular ones, bounded while reading); edit distances. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "support/arena.h"
#include "support/buf.h"
#include "support/readfile.h"
#include "support/suggest.h"
#include "testutil.h"
#include "support/utf8.h"

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

/* Anything but a regular file is refused by name, before it is read: a FIFO
 * with no writer would otherwise block the open forever. */
static void test_read_only_regular(void **state)
{
    (void)state;
    const char *fifo = tmp_path("f.json");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    static const struct {
        const char *path, *message;
    } cases[] = {
        {"f.json", "is a FIFO, not a regular file"},
        {"/dev/zero", "is a character device, not a regular file"},
        {"/", "is a directory, not a regular file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *path = cases[i].path[0] == '/' ? cases[i].path : tmp_path(cases[i].path);
        recorder r;
        rec_init(&r);
        char *data = NULL;
        size_t len = 0;
        assert_int_equal(rf_read_all(&r.sink, path, 100, &data, &len), SURG_EIO);
        assert_null(data);
        assert_true(rec_has_code(&r, "not-regular"));
        assert_true(rec_has_text(&r, cases[i].message));
        int fd = -2;
        uint64_t size;
        rec_init(&r);
        assert_int_equal(rf_open_regular(&r.sink, path, &fd, &size), SURG_EIO);
        assert_int_equal(fd, -1);
        assert_true(rec_has_text(&r, cases[i].message));
    }
    /* A socket is refused the same way. */
    int sock = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(sock >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const char *sp = tmp_path("s.safetensors");
    assert_true(strlen(sp) < sizeof sa.sun_path);
    strcpy(sa.sun_path, sp);
    assert_int_equal(bind(sock, (struct sockaddr *)&sa, sizeof sa), 0);
    recorder r;
    rec_init(&r);
    char *data = NULL;
    size_t len;
    assert_int_equal(rf_read_all(&r.sink, sp, 100, &data, &len), SURG_EIO);
    assert_true(rec_has_text(&r, "is a socket, not a regular file"));
    close(sock);
    /* A regular file reads whole, up to the limit. */
    write_file(tmp_path("ok.json"), "{\"a\": 1}", 8);
    rec_init(&r);
    assert_int_equal(rf_read_all(&r.sink, tmp_path("ok.json"), 8, &data, &len), SURG_OK);
    assert_int_equal(len, 8);
    assert_string_equal(data, "{\"a\": 1}");
    free(data);
    rec_init(&r);
    assert_int_equal(rf_read_all(&r.sink, tmp_path("ok.json"), 7, &data, &len), SURG_EINVALID);
    assert_true(rec_has_text(&r, "the file has 8 bytes, more than the 7 allowed"));
    tmp_cleanup();
}

/* A stream is read to its end, but never past its limit: the reader stops
 * as soon as one byte more came, whatever is still to come. */
static void test_read_stream_bounded(void **state)
{
    (void)state;
    for (size_t limit = 0; limit < 3; limit++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        assert_int_equal(write(p[1], "ab", 2), 2);
        close(p[1]);
        recorder r;
        rec_init(&r);
        char *data = NULL;
        size_t len = 99;
        surg_status st = rf_read_stream(&r.sink, "<stdin>", p[0], limit, &data, &len);
        close(p[0]);
        if (limit < 2) {
            assert_int_equal(st, SURG_EINVALID);
            assert_null(data);
            assert_true(rec_has_code(&r, "too-large"));
        } else {
            assert_int_equal(st, SURG_OK);
            assert_int_equal(len, 2);
            assert_string_equal(data, "ab");
            free(data);
        }
    }
    /* Endless: /dev/zero, refused at the limit (1 MiB here). */
    int fd = open("/dev/zero", O_RDONLY);
    assert_true(fd >= 0);
    recorder r;
    rec_init(&r);
    char *data = NULL;
    size_t len;
    assert_int_equal(rf_read_stream(&r.sink, "<stdin>", fd, 1 << 20, &data, &len),
                     SURG_EINVALID);
    close(fd);
    assert_true(rec_has_text(&r, "more than the 1048576 bytes allowed; stopped reading there"));
}

/* The plain table of optimal string alignment, for comparison. */
static size_t osa_full(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t d[24][24];
    for (size_t i = 0; i <= la; i++)
        for (size_t j = 0; j <= lb; j++) {
            if (!i || !j) {
                d[i][j] = i + j;
                continue;
            }
            size_t v = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            v = d[i - 1][j] + 1 < v ? d[i - 1][j] + 1 : v;
            v = d[i][j - 1] + 1 < v ? d[i][j - 1] + 1 : v;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

/* The banded distance agrees with the full table wherever it is within the
 * limit, and says "more" exactly when it is not. */
static void test_distance_banded(void **state)
{
    (void)state;
    unsigned seed = 12345;
    for (int round = 0; round < 20000; round++) {
        char a[24], b[24];
        size_t la = (seed = seed * 1103515245u + 12345u) >> 16 & 15;
        size_t lb = (seed = seed * 1103515245u + 12345u) >> 16 & 15;
        for (size_t i = 0; i < la; i++)
            a[i] = "abc"[((seed = seed * 1103515245u + 12345u) >> 16) % 3];
        for (size_t i = 0; i < lb; i++)
            b[i] = "abc"[((seed = seed * 1103515245u + 12345u) >> 16) % 3];
        a[la] = b[lb] = '\0';
        size_t limit = ((seed = seed * 1103515245u + 12345u) >> 16) % 6;
        size_t want = osa_full(a, b), got = sg_distance(a, b, limit);
        if (want <= limit)
            assert_int_equal(got, want);
        else
            assert_true(got > limit);
    }
    /* Long words cost the band, not their product: 1 MB against itself
     * shifted by one, within limit 2. */
    size_t n = 1 << 20;
    char *x = malloc(n + 2), *y = malloc(n + 2);
    assert_non_null(x);
    assert_non_null(y);
    for (size_t i = 0; i < n; i++)
        x[i] = y[i + 1] = (char)('a' + i % 26);
    x[n] = 'q';
    x[n + 1] = '\0';
    y[0] = 'q';
    y[n + 1] = '\0';
    assert_int_equal(sg_distance(x, y, 2), 2);
    free(x);
    free(y);
}

/* surg_json_parse: every kind of value, in order, keys kept; and the
 * refusals, each with its place and reason. */
static void test_json_tree(void **state)
{
    (void)state;
    const char *text = "{\"id\": 12, \"s\": \"a\\u00e9\\n\", \"l\": [true, false, null, -1.5e3, []],"
                       " \"o\": {\"k\": {}}}";
    char err[200];
    surg_json *j = surg_json_parse(text, strlen(text), err, sizeof err);
    assert_non_null(j);
    assert_int_equal(j->kind, SURG_JSON_OBJECT);
    assert_int_equal(j->n, 4);
    assert_string_equal(j->items[0].key, "id");
    assert_string_equal(j->items[0].string, "12");
    assert_true(j->items[0].number == 12);
    assert_string_equal(surg_json_get(j, "s")->string, "a\xc3\xa9\n");
    const surg_json *l = surg_json_get(j, "l");
    assert_int_equal(l->kind, SURG_JSON_ARRAY);
    assert_int_equal(l->n, 5);
    assert_int_equal(l->items[0].kind, SURG_JSON_TRUE);
    assert_int_equal(l->items[1].kind, SURG_JSON_FALSE);
    assert_int_equal(l->items[2].kind, SURG_JSON_NULL);
    assert_true(l->items[3].number == -1500);
    assert_string_equal(l->items[3].string, "-1.5e3");
    assert_null(l->items[3].key);
    assert_int_equal(l->items[4].kind, SURG_JSON_ARRAY);
    assert_int_equal(l->items[4].n, 0);
    const surg_json *k = surg_json_get(surg_json_get(j, "o"), "k");
    assert_int_equal(k->kind, SURG_JSON_OBJECT);
    assert_null(surg_json_get(j, "nope"));
    assert_null(surg_json_get(l, "id"));
    surg_json_free(j);

    static const struct {
        const char *text, *err;
    } bad[] = {
        {"{\"a\": 1, \"a\": 2}", "duplicate"},
        {"[1,]", "at byte 3: a trailing comma before ']'"},
        {"[1] x", "at byte 4: unexpected"},
        {"\"\\ud800\"", "at byte "},
        {"\xff", "at byte 0: not valid UTF-8"},
        {"", "at byte 0: "},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        assert_null(surg_json_parse(bad[i].text, strlen(bad[i].text), err, sizeof err));
        if (!strstr(err, bad[i].err))
            fail_msg("%s: %s", bad[i].text, err);
    }
    /* 2^20 values are read; one more is refused (each costs a node, so a
     * text of small values would take many times its size) */
    size_t n_values = (size_t)1 << 20;
    char *many = malloc(2 * n_values + 1);
    assert_non_null(many);
    many[0] = '[';
    for (size_t i = 0; i < n_values; i++)
        memcpy(many + 1 + 2 * i, "0,", 2);
    many[2 * n_values - 2] = ']'; /* the array and 2^20 - 1 zeros */
    surg_json *big = surg_json_parse(many, 2 * n_values - 1, err, sizeof err);
    assert_non_null(big);
    assert_int_equal(big->n, n_values - 1);
    surg_json_free(big);
    many[2 * n_values - 2] = ',';
    many[2 * n_values] = ']'; /* and one zero more */
    assert_null(surg_json_parse(many, 2 * n_values + 1, err, sizeof err));
    if (!strstr(err, ": more than 1048576 values"))
        fail_msg("%s", err);
    free(many);
    /* 128 levels are read; 129 are refused, without recursion */
    char deep[2 * 129 + 1];
    for (int n = 128; n <= 129; n++) {
        memset(deep, '[', (size_t)n);
        memset(deep + n, ']', (size_t)n);
        j = surg_json_parse(deep, 2 * (size_t)n, err, sizeof err);
        if (n == 128) {
            assert_non_null(j);
            surg_json_free(j);
        } else {
            assert_null(j);
            assert_string_equal(err, "at byte 129: nested more than 128 levels deep");
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena),      cmocka_unit_test(test_json_strings), cmocka_unit_test(test_json_tree),
        cmocka_unit_test(test_utf8),       cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_sizes),      cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_read_only_regular), cmocka_unit_test(test_read_stream_bounded),
        cmocka_unit_test(test_distance_banded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
