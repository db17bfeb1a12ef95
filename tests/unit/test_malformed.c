/* test_malformed.c: one crafted file per validation rule of the safetensors
 * reader, each rejected with its own error code, naming the file (and the
 * tensor where there is one); and the unusual files that must be accepted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Write `8-byte length | header | data_len bytes` and return the path. */
static const char *craft(const char *name, const char *header, size_t hlen,
                         size_t data_len)
{
    const char *path = tmp_path(name);
    size_t total = 8 + hlen + data_len;
    unsigned char *b = calloc(1, total);
    assert_non_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, header, hlen);
    write_file(path, b, total);
    free(b);
    return path;
}

static const char *craft_json(const char *name, const char *json, size_t data_len)
{
    return craft(name, json, strlen(json), data_len);
}

/* Open must fail with `code`; every message names the file, and `text`
 * (a tensor name, a number) must appear in the message. */
static void expect_reject(const char *path, surg_status want, const char *code,
                          const char *text)
{
    recorder r;
    rec_init(&r);
    surg_ckpt *ck = (surg_ckpt *)1;
    surg_status st = surg_ckpt_open(path, &r.sink, &ck);
    if (!rec_has_code(&r, code) || (text && !rec_has_text(&r, text)))
        fail_msg("%s: wanted %s mentioning '%s', got codes [%s] messages [%s]",
                 path, code, text ? text : "", r.codes, r.messages);
    assert_int_equal(st, want);
    assert_null(ck);
    assert_int_equal(r.sink.errors, 1);
}

static void expect_invalid(const char *name, const char *json, size_t data_len,
                           const char *code, const char *text)
{
    expect_reject(craft_json(name, json, data_len), SURG_EINVALID, code, text);
}

static void test_lengths(void **state)
{
    (void)state;
    const char *p = tmp_path("tiny.safetensors");
    write_file(p, "\x05\0\0", 3);
    expect_reject(p, SURG_EINVALID, "st-too-small", "3 bytes");

    unsigned char big[16] = {0x01, 0xE1, 0xF5, 0x05}; /* 100,000,001 */
    p = tmp_path("huge-header.safetensors");
    write_file(p, big, sizeof big);
    expect_reject(p, SURG_EINVALID, "st-header-too-large", "100000001");

    unsigned char max[16];
    memset(max, 0xFF, sizeof max); /* 2^64 - 1: no overflow in 8 + N */
    p = tmp_path("max-header.safetensors");
    write_file(p, max, sizeof max);
    expect_reject(p, SURG_EINVALID, "st-header-too-large", NULL);

    p = craft("past-eof.safetensors", "{}", 2, 0);
    unsigned char *b;
    size_t n;
    b = read_all(p, &n);
    b[0] = 200; /* claims 200 bytes; 2 follow */
    write_file(p, b, n);
    free(b);
    expect_reject(p, SURG_EINVALID, "st-header-past-eof", "200");
}

static void test_header_text(void **state)
{
    (void)state;
    expect_reject(craft("utf8.safetensors", "{\"a\xff\":1}", 8, 0), SURG_EINVALID,
                  "st-header-utf8", "offset 3");
    expect_invalid("start.safetensors", " {}", 0, "st-header-start", NULL);
    expect_invalid("array.safetensors", "[1, 2]", 0, "st-header-start", NULL);
    expect_invalid("json.safetensors", "{\"a\": ", 0, "st-header-json", NULL);
    expect_invalid("trailing-json.safetensors", "{} x", 0, "st-header-json", NULL);
    expect_reject(craft("nul.safetensors", "{\"a\0\":1}", 7, 0), SURG_EINVALID,
                  "st-header-json", NULL);
    /* Nesting deeper than the parser's limit is an error, not a crash. */
    size_t depth = 100000;
    char *deep = malloc(depth * 2 + 64);
    strcpy(deep, "{\"__metadata__\":");
    size_t at = strlen(deep);
    memset(deep + at, '[', depth);
    memset(deep + at + depth, ']', depth);
    strcpy(deep + at + 2 * depth, "}");
    expect_invalid("deep.safetensors", deep, 0, "st-header-json", NULL);
    free(deep);
}

static void test_duplicates(void **state)
{
    (void)state;
    expect_invalid("dup-top.safetensors",
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                   "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                   2, "st-duplicate-key", "a");
    expect_invalid("dup-field.safetensors",
                   "{\"a\":{\"dtype\":\"U8\",\"dtype\":\"I8\",\"shape\":[1],"
                   "\"data_offsets\":[0,1]}}",
                   1, "st-duplicate-key", "dtype");
    expect_invalid("dup-meta.safetensors",
                   "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0,
                   "st-duplicate-key", "k");
}

static void test_metadata(void **state)
{
    (void)state;
    expect_invalid("meta-value.safetensors", "{\"__metadata__\":{\"step\":5}}", 0,
                   "st-metadata", "step");
    expect_invalid("meta-array.safetensors", "{\"__metadata__\":[\"a\"]}", 0,
                   "st-metadata", NULL);
    expect_invalid("meta-tensor.safetensors",
                   "{\"__metadata__\":{\"dtype\":\"U8\",\"shape\":[1],"
                   "\"data_offsets\":[0,1]}}",
                   1, "st-metadata-tensor", "__metadata__");
    /* An empty name: no format surg reads or writes holds one. */
    expect_invalid("empty-name.safetensors",
                   "{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                   "st-name", "names a tensor \"\", which cannot be a tensor name: a name may "
                   "not be empty");
}

static void test_entries(void **state)
{
    (void)state;
    expect_invalid("entry.safetensors", "{\"w\":[1]}", 0, "st-entry", "\"w\"");
    expect_invalid("no-dtype.safetensors",
                   "{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "st-entry",
                   "\"w\": \"dtype\" is missing");
    expect_invalid("no-shape.safetensors",
                   "{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1,
                   "st-entry", "\"shape\" is missing");
    expect_invalid("no-offsets.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}",
                   1, "st-entry", "\"data_offsets\" is missing");
    expect_invalid("dtype.safetensors",
                   "{\"w\":{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                   1, "st-dtype", "unknown dtype \"F12\"");
    expect_invalid("dtype-case.safetensors",
                   "{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                   4, "st-dtype", "\"w\"");
    expect_invalid("dtype-type.safetensors",
                   "{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                   "st-dtype", "\"w\"");
    expect_invalid("shape-neg.safetensors",
                   "{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}",
                   1, "st-shape", "\"w\"");
    expect_invalid("shape-real.safetensors",
                   "{\"w\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}",
                   1, "st-shape", "\"w\"");
    expect_invalid("shape-type.safetensors",
                   "{\"w\":{\"dtype\":\"U8\",\"shape\":\"1\",\"data_offsets\":[0,1]}}",
                   1, "st-shape", "\"w\"");
    expect_invalid("shape-huge-int.safetensors",
                   "{\"w\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999],"
                   "\"data_offsets\":[0,1]}}",
                   1, "st-header-json", NULL);
}

static void test_sizes(void **state)
{
    (void)state;
    /* 2^32 * 2^32 elements overflow 64 bits; nothing is allocated for them. */
    expect_invalid("overflow.safetensors",
                   "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                   "\"data_offsets\":[0,4]}}",
                   4, "st-overflow", "\"w\"");
    /* 2^62 elements of 4 bytes overflow in the byte count. */
    expect_invalid("overflow-bytes.safetensors",
                   "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
                   "\"data_offsets\":[0,4]}}",
                   4, "st-overflow", "\"w\"");
    expect_invalid("mismatch.safetensors",
                   "{\"w\":{\"dtype\":\"F32\",\"shape\":[3,5],\"data_offsets\":[0,56]}}",
                   56, "st-size-mismatch", "F32[3, 5] needs 60 bytes");
    expect_invalid("f4-odd.safetensors",
                   "{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2,
                   "st-partial-byte", "\"w\"");
    expect_invalid("offsets-reversed.safetensors",
                   "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4,
                   "st-offsets", "end before they begin");
    expect_invalid("offsets-arity.safetensors",
                   "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}",
                   1, "st-offsets", "\"w\"");
    expect_invalid("offsets-neg.safetensors",
                   "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}",
                   1, "st-offsets", "\"w\"");
}

static void test_tiling(void **state)
{
    (void)state;
    expect_invalid("gap-start.safetensors",
                   "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
                   "st-gap", "must start at 0");
    expect_invalid("gap.safetensors",
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                   "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}",
                   3, "st-gap", "gap of 1 bytes after \"a\"");
    expect_invalid("overlap.safetensors",
                   "{\"a\":{\"dtype\":\"U16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                   "\"b\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[2,4]}}",
                   4, "st-overlap", "overlaps that of \"a\"");
    expect_invalid("same-range.safetensors",
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                   "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                   1, "st-overlap", NULL);
    expect_invalid("past-end.safetensors",
                   "{\"w\":{\"dtype\":\"U32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                   8, "st-data-past-eof", "\"w\"");
    expect_invalid("trailing.safetensors",
                   "{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 5,
                   "st-trailing", "3 bytes follow");
    expect_invalid("empty-trailing.safetensors", "{}", 4, "st-trailing", NULL);
}

static void expect_accept(const char *path, size_t n_tensors)
{
    recorder r;
    rec_init(&r);
    surg_ckpt *ck;
    assert_int_equal(surg_ckpt_open(path, &r.sink, &ck), SURG_OK);
    assert_int_equal(surg_ckpt_count(ck), n_tensors);
    assert_int_equal(r.sink.errors, 0);
    surg_ckpt_close(ck);
}

static void test_accepted(void **state)
{
    (void)state;
    expect_accept(craft_json("empty.safetensors", "{}", 0), 0);
    expect_accept(craft_json("padded.safetensors", "{}      ", 0), 0);
    expect_accept(
        craft_json("odd-but-valid.safetensors",
                   "{\"z\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                   "\" \":{\"dtype\":\"U8\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                   "\"x\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[4,12],"
                   "\"extra\":true}}",
                   12),
        3);
    /* Every dtype of the format, including those surg cannot compute on. */
    static const char *all[] = {"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64",
                                "I64", "F16", "BF16", "F32", "F64", "C64", "F8_E4M3",
                                "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
                                "F4", "F6_E2M3", "F6_E3M2"};
    char json[4096] = "{";
    uint64_t at = 0;
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        surg_dtype d = surg_dtype_from_st_name(all[i]);
        uint64_t n = 4, bytes = n * surg_dtype_bits(d) / 8;
        size_t len = strlen(json);
        snprintf(json + len, sizeof json - len,
                 "%s\"t_%s\":{\"dtype\":\"%s\",\"shape\":[2,2],\"data_offsets\":[%llu,%llu]}",
                 i ? "," : "", all[i], all[i], (unsigned long long)at,
                 (unsigned long long)(at + bytes));
        at += bytes;
    }
    strcat(json, "}");
    const char *p = craft_json("all-dtypes.safetensors", json, at);
    expect_accept(p, 22);
    recorder r;
    rec_init(&r);
    surg_ckpt *ck;
    assert_int_equal(surg_ckpt_open(p, &r.sink, &ck), SURG_OK);
    const surg_tensor_info *t = surg_ckpt_tensor(ck, surg_ckpt_find(ck, "t_F6_E3M2"));
    assert_int_equal(t->dtype, SURG_F6_E3M2);
    assert_int_equal(t->nbytes, 3);
    surg_ckpt_close(ck);
}

static void test_shipped_hostile(void **state)
{
    (void)state;
    expect_reject(SURG_FIXTURES "/hostile/header-length-past-eof.safetensors",
                  SURG_EINVALID, "st-header-past-eof", "1000");
}

static int teardown(void **state)
{
    (void)state;
    tmp_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lengths),     cmocka_unit_test(test_header_text),
        cmocka_unit_test(test_duplicates),  cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_entries),     cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_tiling),      cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_shipped_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
