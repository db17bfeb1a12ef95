/* test_codec.c: CRC-32C against its published check value and a value
 * TensorStore wrote; zstd, zlib and gzip streams made by the libraries'
 * own compressors (and a zstd frame as TensorStore writes it, without its
 * content size), decoded to exactly the expected bytes, and every way a
 * stream can be wrong. */
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "runtime/codec.h"
#include "support/crc32c.h"
#include "testutil.h"

static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
    assert_int_equal(crc32c(0, "", 0), 0);
    /* The shard index of Orbax's v1 fixture (offset 0, 41 bytes) and the
     * CRC TensorStore stored after it. */
    unsigned char index[16] = {0, 0, 0, 0, 0, 0, 0, 0, 41, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(crc32c(0, index, 16), 0x4477868eu);
}

/* int32 0..7 as TensorStore's zstd writes it: no content size, one raw
 * block (the OCDBT value "a/0" of Orbax's v0 fixtures). */
static const unsigned char ts_frame[41] = {
    0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0x01, 0x01, 0x00, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0,
    3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0, 0};

static void test_zstd_without_size(void **state)
{
    (void)state;
    recorder r;
    rec_init(&r);
    int32_t v[8];
    assert_int_equal(codec_decode_mem(CODEC_ZSTD, ts_frame, sizeof ts_frame, v, sizeof v, "a/0",
                                      &r.sink),
                     SURG_OK);
    for (int i = 0; i < 8; i++)
        assert_int_equal(v[i], i);
    /* Expecting fewer or more bytes than the frame holds. */
    int32_t big[9];
    assert_int_not_equal(codec_decode_mem(CODEC_ZSTD, ts_frame, sizeof ts_frame, v, 28, "a/0",
                                          &r.sink),
                         SURG_OK);
    assert_true(rec_has_text(&r, "holds more than the 28 bytes expected"));
    assert_int_not_equal(codec_decode_mem(CODEC_ZSTD, ts_frame, sizeof ts_frame, big,
                                          sizeof big, "a/0", &r.sink),
                         SURG_OK);
    assert_true(rec_has_text(&r, "ends after 32 of the 36 bytes expected"));
    /* Cut short, and followed by bytes. */
    assert_int_not_equal(codec_decode_mem(CODEC_ZSTD, ts_frame, 30, v, sizeof v, "a/0", &r.sink),
                         SURG_OK);
    assert_true(rec_has_text(&r, "cut short"));
    unsigned char more[sizeof ts_frame + 3];
    memcpy(more, ts_frame, sizeof ts_frame);
    memset(more + sizeof ts_frame, 0x55, 3);
    assert_int_not_equal(codec_decode_mem(CODEC_ZSTD, more, sizeof more, v, sizeof v, "a/0",
                                          &r.sink),
                         SURG_OK);
    assert_true(rec_has_text(&r, "3 bytes follow the end of the zstd stream"));
    /* Not zstd at all. */
    assert_int_not_equal(codec_decode_mem(CODEC_ZSTD, "garbage!", 8, v, sizeof v, "a/0", &r.sink),
                         SURG_OK);
    assert_true(rec_has_code(&r, "codec-corrupt"));
}

static void test_zstd_library_frames(void **state)
{
    (void)state;
    recorder r;
    rec_init(&r);
    enum { N = 300000 };
    static unsigned char plain[N], back[N], packed[N + 1024];
    for (size_t i = 0; i < N; i++)
        plain[i] = (unsigned char)(i * 7 / 13);
    size_t n = ZSTD_compress(packed, sizeof packed, plain, N, 3);
    assert_false(ZSTD_isError(n));
    assert_int_equal(codec_decode_mem(CODEC_ZSTD, packed, n, back, N, "x", &r.sink), SURG_OK);
    assert_memory_equal(plain, back, N);
}

static void test_zlib_and_gzip(void **state)
{
    (void)state;
    recorder r;
    rec_init(&r);
    enum { N = 100000 };
    static unsigned char plain[N], back[N], packed[N + 1024];
    for (size_t i = 0; i < N; i++)
        plain[i] = (unsigned char)(i % 251);
    for (int gzip = 0; gzip <= 1; gzip++) {
        z_stream z = {0};
        assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, gzip ? 16 + MAX_WBITS : MAX_WBITS, 8,
                                      Z_DEFAULT_STRATEGY),
                         Z_OK);
        z.next_in = plain;
        z.avail_in = N;
        z.next_out = packed;
        z.avail_out = sizeof packed;
        assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
        size_t n = sizeof packed - z.avail_out;
        deflateEnd(&z);
        codec_kind k = gzip ? CODEC_GZIP : CODEC_ZLIB;
        memset(back, 0, N);
        assert_int_equal(codec_decode_mem(k, packed, n, back, N, "x", &r.sink), SURG_OK);
        assert_memory_equal(plain, back, N);
        /* The other wrapper is refused, a truncated stream too. */
        assert_int_not_equal(codec_decode_mem(gzip ? CODEC_ZLIB : CODEC_GZIP, packed, n, back, N,
                                              "x", &r.sink),
                             SURG_OK);
        assert_int_not_equal(codec_decode_mem(k, packed, n / 2, back, N, "x", &r.sink), SURG_OK);
    }
    assert_true(rec_has_text(&r, "cut short"));
}

static void test_none(void **state)
{
    (void)state;
    recorder r;
    rec_init(&r);
    char out[4];
    assert_int_equal(codec_decode_mem(CODEC_NONE, "abcd", 4, out, 4, "x", &r.sink), SURG_OK);
    assert_memory_equal(out, "abcd", 4);
    assert_int_not_equal(codec_decode_mem(CODEC_NONE, "abcde", 5, out, 4, "x", &r.sink),
                         SURG_OK);
    assert_int_not_equal(codec_decode_mem(CODEC_NONE, "abc", 3, out, 4, "x", &r.sink), SURG_OK);
    assert_true(rec_has_text(&r, "ends after 3 of the 4 bytes expected"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_zstd_without_size),
        cmocka_unit_test(test_zstd_library_frames),
        cmocka_unit_test(test_zlib_and_gzip),
        cmocka_unit_test(test_none),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
