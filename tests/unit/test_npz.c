/* test_npz.c: the zip reader (zip.c) and the .npy header (npy.c): archives
 * built byte by byte here — stored and deflated entries, ZIP64 records, a
 * comment that hides a fake end record — read back entry by entry; every
 * refusal with its own code; the .npy dict parsed strictly (never
 * evaluated) and written as NumPy writes it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <zlib.h>

#include "testutil.h"

#include "runtime/npy.h"
#include "runtime/zip.h"

/* ---- building archives ------------------------------------------------- */

typedef struct zent {
    const char *name;
    const unsigned char *data; /* as stored (deflated already when method 8) */
    size_t len;
    uint64_t usize;
    uint32_t crc;
    uint16_t method, flags;
    bool zip64;          /* sizes and offset through a ZIP64 extra field */
    uint64_t offset_fix; /* nonzero: the directory's offset instead of the true one */
    const char *local_name; /* NULL: the name */
} zent;

typedef struct zopts {
    bool zip64_end;
    const char *comment;
    uint64_t cd_at_fix; /* nonzero: the end record's directory offset */
    uint16_t count_fix;
} zopts;

static void put(unsigned char **p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        *(*p)++ = (unsigned char)(v >> (8 * i));
}

static unsigned char *build(const zent *e, size_t n, const zopts *o, size_t *len)
{
    unsigned char *b = calloc(1, 1 << 20), *p = b;
    uint64_t at[16];
    for (size_t i = 0; i < n; i++) {
        const char *ln = e[i].local_name ? e[i].local_name : e[i].name;
        at[i] = (uint64_t)(p - b);
        put(&p, 0x04034b50, 4);
        put(&p, 20, 2);
        put(&p, e[i].flags, 2);
        put(&p, e[i].method, 2);
        put(&p, 0, 4);
        put(&p, e[i].crc, 4);
        put(&p, e[i].len, 4);
        put(&p, e[i].usize, 4);
        put(&p, strlen(ln), 2);
        put(&p, 0, 2);
        memcpy(p, ln, strlen(ln));
        p += strlen(ln);
        memcpy(p, e[i].data, e[i].len);
        p += e[i].len;
    }
    uint64_t cd = (uint64_t)(p - b);
    for (size_t i = 0; i < n; i++) {
        uint64_t off = e[i].offset_fix ? e[i].offset_fix : at[i];
        put(&p, 0x02014b50, 4);
        put(&p, 20, 2);
        put(&p, 20, 2);
        put(&p, e[i].flags, 2);
        put(&p, e[i].method, 2);
        put(&p, 0, 4);
        put(&p, e[i].crc, 4);
        put(&p, e[i].zip64 ? 0xFFFFFFFFu : e[i].len, 4);
        put(&p, e[i].zip64 ? 0xFFFFFFFFu : e[i].usize, 4);
        put(&p, strlen(e[i].name), 2);
        put(&p, e[i].zip64 ? 28 : 0, 2);
        put(&p, 0, 2);
        put(&p, 0, 2);
        put(&p, 0, 2);
        put(&p, 0, 4);
        put(&p, e[i].zip64 ? 0xFFFFFFFFu : off, 4);
        memcpy(p, e[i].name, strlen(e[i].name));
        p += strlen(e[i].name);
        if (e[i].zip64) {
            put(&p, 1, 2);
            put(&p, 24, 2);
            put(&p, e[i].usize, 8);
            put(&p, e[i].len, 8);
            put(&p, off, 8);
        }
    }
    uint64_t cd_size = (uint64_t)(p - b) - cd;
    uint64_t cd_at = o && o->cd_at_fix ? o->cd_at_fix : cd;
    uint64_t count = o && o->count_fix ? o->count_fix : n;
    if (o && o->zip64_end) {
        uint64_t z = (uint64_t)(p - b);
        put(&p, 0x06064b50, 4);
        put(&p, 44, 8);
        put(&p, 45, 2);
        put(&p, 45, 2);
        put(&p, 0, 8);
        put(&p, count, 8);
        put(&p, count, 8);
        put(&p, cd_size, 8);
        put(&p, cd_at, 8);
        put(&p, 0x07064b50, 4);
        put(&p, 0, 4);
        put(&p, z, 8);
        put(&p, 1, 4);
    }
    const char *comment = o && o->comment ? o->comment : "";
    put(&p, 0x06054b50, 4);
    put(&p, 0, 4);
    put(&p, o && o->zip64_end ? 0xFFFF : count, 2);
    put(&p, o && o->zip64_end ? 0xFFFF : count, 2);
    put(&p, o && o->zip64_end ? 0xFFFFFFFFu : cd_size, 4);
    put(&p, o && o->zip64_end ? 0xFFFFFFFFu : cd_at, 4);
    put(&p, strlen(comment), 2);
    memcpy(p, comment, strlen(comment));
    p += strlen(comment);
    *len = (size_t)(p - b);
    return b;
}

static zent stored(const char *name, const char *text)
{
    size_t n = strlen(text);
    return (zent){name, (const unsigned char *)text, n, n,
                  (uint32_t)crc32(0, (const unsigned char *)text, (uInt)n), 0, 0, false, 0, NULL};
}

/* Raw deflate of `len` bytes into a static buffer per slot. */
static zent deflated(const char *name, const void *data, size_t len, int slot)
{
    static unsigned char out[4][1 << 16];
    z_stream zs = {0};
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (unsigned char *)data;
    zs.avail_in = (uInt)len;
    zs.next_out = out[slot];
    zs.avail_out = sizeof out[slot];
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t n = zs.total_out;
    deflateEnd(&zs);
    return (zent){name, out[slot], n, len, (uint32_t)crc32(0, data, (uInt)len), 8, 0, false, 0,
                  NULL};
}

typedef struct opened {
    arena ar;
    int fd;
    zip_archive z;
    recorder r;
    surg_status st;
} opened;

static void open_bytes(opened *o, const char *name, const unsigned char *b, size_t len)
{
    const char *path = tmp_path(name);
    write_file(path, b, len);
    ar_init(&o->ar);
    rec_init(&o->r);
    o->fd = open(path, O_RDONLY);
    assert_true(o->fd >= 0);
    o->st = zip_open(&o->ar, &o->r.sink, path, o->fd, len, &o->z);
}

static void close_opened(opened *o)
{
    close(o->fd);
    ar_free(&o->ar);
}

static void open_built(opened *o, const char *name, const zent *e, size_t n, const zopts *opt)
{
    size_t len;
    unsigned char *b = build(e, n, opt, &len);
    open_bytes(o, name, b, len);
    free(b);
}

/* Read a whole entry; the status of the read. */
static surg_status slurp(opened *o, const char *name, char *out, size_t cap, size_t *len)
{
    const zip_entry *e = zip_find(&o->z, name);
    assert_non_null(e);
    zip_stream s;
    surg_status st = zip_stream_open(&s, &o->z, e, &o->r.sink);
    *len = 0;
    for (size_t got = 1; !st && got;) {
        st = zip_stream_read(&s, &o->r.sink, out + *len, cap - *len < 7 ? cap - *len : 7, &got);
        *len += got;
    }
    zip_stream_close(&s);
    return st;
}

static void expect_refused(const char *name, const zent *e, size_t n, const zopts *opt,
                           const char *code)
{
    opened o;
    open_built(&o, name, e, n, opt);
    if (o.st != SURG_EINVALID || !rec_has_code(&o.r, code))
        fail_msg("%s: wanted %s, got status %d, codes [%s] messages [%s]", name, code, o.st,
                 o.r.codes, o.r.messages);
    assert_int_equal(o.r.sink.errors, 1);
    close_opened(&o);
}

/* ---- the zip reader ---------------------------------------------------- */

static void test_zip_read(void **state)
{
    (void)state;
    char big[3000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 7);
    zent e[3] = {stored("a.txt", "hello"), stored("dir/b", ""), deflated("c", big, sizeof big, 0)};
    opened o;
    open_built(&o, "ok.zip", e, 3, NULL);
    assert_int_equal(o.st, SURG_OK);
    assert_int_equal(o.z.n, 3);
    assert_null(zip_find(&o.z, "nope"));
    assert_string_equal(zip_find(&o.z, "dir/b")->name, "dir/b");
    char out[4096];
    size_t len;
    assert_int_equal(slurp(&o, "a.txt", out, sizeof out, &len), SURG_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "hello", 5);
    assert_int_equal(slurp(&o, "dir/b", out, sizeof out, &len), SURG_OK);
    assert_int_equal(len, 0);
    assert_int_equal(slurp(&o, "c", out, sizeof out, &len), SURG_OK);
    assert_int_equal(len, sizeof big);
    assert_memory_equal(out, big, sizeof big);
    assert_int_equal(o.r.sink.errors, 0);
    close_opened(&o);
}

static void test_zip64(void **state)
{
    (void)state;
    zent e[2] = {stored("x", "0123456789"), stored("y", "abc")};
    e[1].zip64 = true;
    zopts opt = {.zip64_end = true};
    opened o;
    open_built(&o, "z64.zip", e, 2, &opt);
    assert_int_equal(o.st, SURG_OK);
    assert_int_equal(o.z.n, 2);
    const zip_entry *y = zip_find(&o.z, "y");
    assert_int_equal(y->usize, 3);
    assert_int_equal(y->csize, 3);
    char out[16];
    size_t len;
    assert_int_equal(slurp(&o, "y", out, sizeof out, &len), SURG_OK);
    assert_memory_equal(out, "abc", 3);
    close_opened(&o);
}

/* A comment holding a fake end record: only the one whose comment ends the
 * file counts. */
static void test_zip_comment(void **state)
{
    (void)state;
    char comment[40] = "PK\x05\x06 fake end record in a comment";
    zent e[1] = {stored("x", "1")};
    zopts opt = {.comment = comment};
    opened o;
    open_built(&o, "comment.zip", e, 1, &opt);
    assert_int_equal(o.st, SURG_OK);
    assert_int_equal(o.z.n, 1);
    close_opened(&o);
}

static void test_zip_refused(void **state)
{
    (void)state;
    zent one[1] = {stored("x", "1234")};
    size_t len;
    unsigned char *b = build(one, 1, NULL, &len);
    opened o;
    open_bytes(&o, "cut.zip", b, len - 3); /* the end record cut short */
    assert_int_equal(o.st, SURG_EINVALID);
    assert_true(rec_has_code(&o.r, "zip-no-end"));
    close_opened(&o);
    open_bytes(&o, "tiny.zip", b, 5);
    assert_true(rec_has_code(&o.r, "zip-no-end"));
    close_opened(&o);
    free(b);

    zopts far = {.cd_at_fix = 100000};
    expect_refused("cd-far.zip", one, 1, &far, "zip-bad-directory");
    zopts many = {.count_fix = 9};
    expect_refused("count.zip", one, 1, &many, "zip-bad-directory");

    zent off[1] = {stored("x", "1234")};
    off[0].offset_fix = 90000;
    expect_refused("offset.zip", off, 1, NULL, "zip-bad-offset");
    zent dup[2] = {stored("x", "1"), stored("x", "2")};
    expect_refused("dup.zip", dup, 2, NULL, "zip-duplicate");
    zent enc[1] = {stored("x", "1")};
    enc[0].flags = 1;
    expect_refused("enc.zip", enc, 1, NULL, "zip-encrypted");
    zent bz[1] = {stored("x", "1")};
    bz[0].method = 12;
    expect_refused("bzip2.zip", bz, 1, NULL, "zip-method");
    zent sizes[1] = {stored("x", "1234")};
    sizes[0].usize = 9;
    expect_refused("sizes.zip", sizes, 1, NULL, "zip-bad-directory");
    zent local[1] = {stored("x", "1")};
    local[0].local_name = "y";
    expect_refused("local.zip", local, 1, NULL, "zip-bad-local");
    zent over[2] = {stored("x", "12345678"), stored("y", "1")};
    over[1].offset_fix = 1; /* inside x's bytes: the next entry's offset is refused */
    expect_refused("overlap.zip", over, 2, NULL, "zip-bad-offset");
    zent empty[1] = {stored("", "1")};
    expect_refused("noname.zip", empty, 1, NULL, "zip-bad-name");
    /* A million bytes claimed from a few: more than deflate can give. */
    zent ratio[1] = {deflated("x", "aaaa", 4, 0)};
    ratio[0].usize = 1000000;
    expect_refused("ratio.zip", ratio, 1, NULL, "zip-bomb");
}

/* An entry whose local header lies inside another entry's data: the
 * overlap every "better zip bomb" is made of. */
static void test_zip_overlap(void **state)
{
    (void)state;
    unsigned char inner[64], *p = inner;
    put(&p, 0x04034b50, 4);
    put(&p, 20, 2);
    put(&p, 0, 2);
    put(&p, 0, 2);
    put(&p, 0, 4);
    put(&p, crc32(0, (const unsigned char *)"abc", 3), 4);
    put(&p, 3, 4);
    put(&p, 3, 4);
    put(&p, 1, 2);
    put(&p, 0, 2);
    memcpy(p, "yabc", 4);
    p += 4;
    size_t n = (size_t)(p - inner);
    zent e[2] = {{"x", inner, n, n, (uint32_t)crc32(0, inner, (uInt)n), 0, 0, false, 0, NULL},
                 stored("y", "abc")};
    e[1].offset_fix = 30 + 1; /* x's data */
    expect_refused("overlap2.zip", e, 2, NULL, "zip-overlap");
}

static void test_zip_stream_errors(void **state)
{
    (void)state;
    char out[1 << 16];
    size_t len;
    opened o;

    zent crc[1] = {stored("x", "1234")};
    crc[0].crc ^= 1;
    open_built(&o, "crc.zip", crc, 1, NULL);
    assert_int_equal(o.st, SURG_OK);
    assert_int_equal(slurp(&o, "x", out, sizeof out, &len), SURG_EINVALID);
    assert_true(rec_has_code(&o.r, "zip-crc"));
    close_opened(&o);

    /* A zip bomb: 60,000 bytes inflated from an entry that claims 100. */
    static char zeros[60000];
    zent bomb[1] = {deflated("x", zeros, sizeof zeros, 1)};
    bomb[0].usize = 100;
    open_built(&o, "bomb.zip", bomb, 1, NULL);
    assert_int_equal(o.st, SURG_OK);
    assert_int_equal(slurp(&o, "x", out, sizeof out, &len), SURG_EINVALID);
    assert_true(rec_has_code(&o.r, "zip-bomb"));
    assert_true(len <= 100);
    close_opened(&o);

    zent shy[1] = {deflated("x", "abcdef", 6, 2)};
    shy[0].usize = 60;
    open_built(&o, "short.zip", shy, 1, NULL);
    assert_int_equal(slurp(&o, "x", out, sizeof out, &len), SURG_EINVALID);
    assert_true(rec_has_code(&o.r, "zip-truncated"));
    close_opened(&o);

    zent junk[1] = {stored("x", "\xff\xff\xff\xff")};
    junk[0].method = 8;
    junk[0].usize = 10;
    open_built(&o, "junk.zip", junk, 1, NULL);
    assert_int_equal(slurp(&o, "x", out, sizeof out, &len), SURG_EINVALID);
    assert_true(rec_has_code(&o.r, "zip-corrupt") || rec_has_code(&o.r, "zip-truncated"));
    close_opened(&o);
}

/* ---- the .npy header --------------------------------------------------- */

static bool parse(const char *dict, npy_header *h, npy_error *err)
{
    memset(h, 0, sizeof *h);
    return npy_parse_dict(dict, strlen(dict), h, err);
}

static void test_npy_dicts(void **state)
{
    (void)state;
    npy_header h;
    npy_error err;
    assert_true(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }"
                      "                    \n", &h, &err));
    assert_int_equal(h.dtype, SURG_F32);
    assert_int_equal(h.rank, 2);
    assert_int_equal(h.shape[1], 4);
    assert_int_equal(h.nbytes, 48);
    assert_false(h.fortran);
    assert_int_equal(h.swap, 0);
    assert_true(parse("{\"shape\": (5,), \"fortran_order\": True, \"descr\": \">f8\"}", &h, &err));
    assert_int_equal(h.dtype, SURG_F64);
    assert_int_equal(h.swap, 8);
    assert_true(h.fortran);
    assert_true(parse("{'descr':'>c8','fortran_order':False,'shape':()}", &h, &err));
    assert_int_equal(h.dtype, SURG_C64);
    assert_int_equal(h.swap, 4);
    assert_int_equal(h.rank, 0);
    assert_int_equal(h.nelems, 1);
    assert_true(parse("{'descr': '|b1', 'fortran_order': False, 'shape': (2L, 0L), }", &h, &err));
    assert_int_equal(h.dtype, SURG_BOOL);
    assert_int_equal(h.nbytes, 0);
    assert_true(parse("{'descr': '>u1', 'fortran_order': False, 'shape': (7,)}", &h, &err));
    assert_int_equal(h.dtype, SURG_U8);
    assert_int_equal(h.swap, 0);
    static const struct {
        const char *descr;
        surg_dtype dt;
    } all[] = {{"|i1", SURG_I8}, {"<i2", SURG_I16}, {"<u2", SURG_U16}, {"<i4", SURG_I32},
               {"<u4", SURG_U32}, {"<i8", SURG_I64}, {"<u8", SURG_U64}, {"<f2", SURG_F16}};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        char d[128];
        snprintf(d, sizeof d, "{'descr': '%s', 'fortran_order': False, 'shape': (1,), }",
                 all[i].descr);
        assert_true(parse(d, &h, &err));
        assert_int_equal(h.dtype, all[i].dt);
        assert_string_equal(npy_descr(all[i].dt), all[i].descr);
    }
    assert_null(npy_descr(SURG_BF16));
}

static void expect_dict_error(const char *dict, const char *code, const char *text)
{
    npy_header h;
    npy_error err = {0};
    if (parse(dict, &h, &err) || strcmp(err.code, code) != 0 || !strstr(err.msg, text))
        fail_msg("%s: wanted %s mentioning '%s', got %s: %s", dict, code, text,
                 err.code ? err.code : "success", err.msg);
}

static void test_npy_refused(void **state)
{
    (void)state;
    expect_dict_error("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", "npy-object",
                      "Python objects");
    expect_dict_error("{'descr': '<U5', 'fortran_order': False, 'shape': (2,), }", "npy-dtype",
                      "'<U5'");
    expect_dict_error("{'descr': '<c16', 'fortran_order': False, 'shape': (2,), }", "npy-dtype",
                      "'<c16'");
    expect_dict_error("{'descr': '|f4', 'fortran_order': False, 'shape': (2,), }", "npy-dtype",
                      "byte order");
    expect_dict_error("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
                      "npy-dtype", "structured");
    expect_dict_error("{'descr': '<f4', 'shape': (2,), }", "npy-header", "fortran_order");
    expect_dict_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",
                      "npy-header", "'x'");
    expect_dict_error("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
                      "npy-header", "twice");
    expect_dict_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", "npy-shape",
                      "tuple");
    expect_dict_error("{'descr': '<f4', 'fortran_order': False, 'shape': (02,)}", "npy-shape",
                      "decimal");
    expect_dict_error("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", "npy-shape",
                      "non-negative");
    expect_dict_error("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", "npy-header",
                      "True or False");
    expect_dict_error("{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2,)}", "npy-header",
                      "True or False");
    expect_dict_error("{'descr': __import__('os').system('x'), 'fortran_order': False, "
                      "'shape': (2,)}",
                      "npy-header", "quoted string");
    expect_dict_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", "npy-header",
                      "after its dict");
    expect_dict_error("{'descr': '<f4\\x00', 'fortran_order': False, 'shape': (2,)}",
                      "npy-header", "escape");
    expect_dict_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", "npy-header",
                      "expected '}'");
    expect_dict_error("{'descr': '<f8', 'fortran_order': False, 'shape': "
                      "(4294967296, 4294967296,)}",
                      "npy-overflow", "overflows");
    expect_dict_error("{'descr': '<f8', 'fortran_order': False, 'shape': "
                      "(99999999999999999999999,)}",
                      "npy-shape", "too large");
    char many[1024] = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
    for (int i = 0; i < 65; i++)
        strcat(many, "1, ");
    strcat(many, ")}");
    expect_dict_error(many, "npy-shape", "64 dimensions");
}

static void test_npy_preamble(void **state)
{
    (void)state;
    npy_header h;
    npy_error err = {0};
    assert_true(npy_preamble((const unsigned char *)"\x93NUMPY\x01\x00\x76\x00", 10, &h, &err));
    assert_int_equal(h.data_at, 128);
    assert_true(npy_preamble((const unsigned char *)"\x93NUMPY\x02\x00\x74\x00\x00\x00", 12, &h,
                             &err));
    assert_int_equal(h.data_at, 128);
    assert_true(npy_preamble((const unsigned char *)"\x93NUMPY\x03\x00\x74\x00\x00\x00", 12, &h,
                             &err));
    assert_false(npy_preamble((const unsigned char *)"\x93NUMPZ\x01\x00\x76\x00", 10, &h, &err));
    assert_string_equal(err.code, "npy-magic");
    assert_false(npy_preamble((const unsigned char *)"\x93NUMPY\x04\x00\x76\x00", 10, &h, &err));
    assert_string_equal(err.code, "npy-version");
    assert_false(npy_preamble((const unsigned char *)"\x93NUMPY\x02\x00\xff\xff\xff\x7f", 12, &h,
                              &err));
    assert_string_equal(err.code, "npy-header");
}

/* The header NumPy 1.24 writes for np.zeros((3, 4), np.float32), byte for
 * byte, and for a scalar and a 1-tuple; each parses back. */
static void test_npy_write(void **state)
{
    (void)state;
    buf b;
    buf_init(&b);
    uint64_t shape[2] = {3, 4};
    assert_true(npy_write_header(&b, SURG_F32, 2, shape));
    const char *want = "\x93NUMPY\x01\x00\x76\x00"
                       "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
    assert_int_equal(b.len, 128);
    assert_memory_equal(b.data, want, strlen(want) + 4);
    assert_int_equal(b.data[127], '\n');
    npy_header h;
    npy_error err;
    assert_true(npy_preamble((unsigned char *)b.data, b.len, &h, &err));
    assert_true(npy_parse_dict(b.data + 10, b.len - 10, &h, &err));
    assert_int_equal(h.nbytes, 48);
    buf_free(&b);

    buf_init(&b);
    assert_true(npy_write_header(&b, SURG_BOOL, 0, NULL));
    assert_int_equal(b.len % 64, 0);
    assert_non_null(strstr(b.data + 10, "'descr': '|b1'"));
    assert_non_null(strstr(b.data + 10, "'shape': ()"));
    buf_free(&b);

    buf_init(&b);
    uint64_t one[1] = {5};
    assert_true(npy_write_header(&b, SURG_C64, 1, one));
    assert_non_null(strstr(b.data + 10, "'shape': (5,), }"));
    assert_false(npy_write_header(&b, SURG_BF16, 1, one));
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zip_read),        cmocka_unit_test(test_zip64),
        cmocka_unit_test(test_zip_comment),     cmocka_unit_test(test_zip_refused),
        cmocka_unit_test(test_zip_overlap),     cmocka_unit_test(test_zip_stream_errors),
        cmocka_unit_test(test_npy_dicts),       cmocka_unit_test(test_npy_refused),
        cmocka_unit_test(test_npy_preamble),    cmocka_unit_test(test_npy_write),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tmp_cleanup();
    return rc;
}
