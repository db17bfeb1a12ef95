/* test_writer.c: the safetensors writer: exact header bytes in the reference
 * layout, alignment, determinism, sharding, and atomic output (nothing at the
 * destination, no temporary left, on any failure). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/outfile.h"
#include "runtime/outpath.h"
#include "runtime/st_write.h"
#include "testutil.h"

/* Write `8-byte length | header | data` to a fresh file. */
static const char *craft(const char *name, const char *json, const void *data,
                         size_t data_len)
{
    const char *path = tmp_path(name);
    size_t hlen = strlen(json);
    unsigned char *b = calloc(1, 8 + hlen + data_len);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, json, hlen);
    memcpy(b + 8 + hlen, data, data_len);
    write_file(path, b, 8 + hlen + data_len);
    free(b);
    return path;
}

static surg_status rewrite(const char *in, const char *out, uint64_t shard,
                           recorder *r)
{
    rec_init(r);
    surg_ckpt *ck;
    surg_status st = surg_ckpt_open(in, &r->sink, &ck);
    if (st)
        return st;
    surg_write_opts opts = {.max_shard_size = shard};
    st = surg_ckpt_write(ck, out, &opts, &r->sink);
    surg_ckpt_close(ck);
    return st;
}

static size_t count_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, "surg-tmp") != NULL;
    closedir(d);
    return n;
}

/* Three tensors in the "wrong" order: the output puts F64 first, then F32,
 * then U8, sorts the metadata and adds "format": "pt". */
static void test_reference_layout(void **state)
{
    (void)state;
    const unsigned char data[] = {1, 2, 3,                         /* b: U8[3] at 0 */
                                  0, 0, 128, 63, 0, 0, 0, 64,      /* a: F32[2] */
                                  0, 0, 0, 0, 0, 0, 8, 64};        /* c: F64[] */
    const char *in = craft(
        "in.safetensors",
        "{\"__metadata__\":{\"z\":\"1\",\"a\":\"2\"},"
        "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]},"
        "\"c\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[11,19]}}",
        data, sizeof data);
    const char *out = tmp_path("out.safetensors");
    recorder r;
    assert_int_equal(rewrite(in, out, 0, &r), SURG_OK);
    size_t len;
    unsigned char *got = read_all(out, &len);
    const char *json =
        "{\"__metadata__\":{\"a\":\"2\",\"format\":\"pt\",\"z\":\"1\"},"
        "\"c\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
        "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[16,19]}}";
    size_t jlen = strlen(json), padded = (jlen + 7) / 8 * 8;
    assert_int_equal(len, 8 + padded + 19);
    assert_int_equal(got[0] | got[1] << 8, padded);
    assert_memory_equal(got + 8, json, jlen);
    for (size_t i = jlen; i < padded; i++)
        assert_int_equal(got[8 + i], ' ');
    const unsigned char want_data[] = {0, 0, 0, 0, 0, 0, 8, 64, 0, 0, 128, 63,
                                       0, 0, 0, 64, 1, 2, 3};
    assert_memory_equal(got + 8 + padded, want_data, 19);
    free(got);

    /* The same input written again gives the same bytes. */
    const char *again = tmp_path("again.safetensors");
    assert_int_equal(rewrite(in, again, 0, &r), SURG_OK);
    size_t len2;
    unsigned char *a = read_all(out, &len), *b = read_all(again, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(a, b, len);
    free(a);
    free(b);
    assert_int_equal(count_temporaries(tmp_dir()), 0);
}

static void test_format_kept(void **state)
{
    (void)state;
    const char *in = craft("np.safetensors",
                           "{\"__metadata__\":{\"format\":\"np\"},"
                           "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                           "\x07", 1);
    const char *out = tmp_path("np-out.safetensors");
    recorder r;
    assert_int_equal(rewrite(in, out, 0, &r), SURG_OK);
    size_t len;
    char *got = (char *)read_all(out, &len);
    assert_non_null(strstr(got + 8, "{\"__metadata__\":{\"format\":\"np\"},\"x\""));
    free(got);
}

/* Every tensor of every dtype lands on a multiple of its element size. */
static void test_alignment(void **state)
{
    (void)state;
    surg_ckpt *ck;
    recorder r;
    rec_init(&r);
    assert_int_equal(surg_ckpt_open(SURG_FIXTURES "/safetensors-reference/sharded",
                                    &r.sink, &ck),
                     SURG_OK);
    const char *out = tmp_path("aligned.safetensors");
    assert_int_equal(surg_ckpt_write(ck, out, NULL, &r.sink), SURG_OK);
    surg_ckpt *back;
    assert_int_equal(surg_ckpt_open(out, &r.sink, &back), SURG_OK);
    assert_int_equal(surg_ckpt_count(back), surg_ckpt_count(ck));
    for (size_t i = 0; i < surg_ckpt_count(back); i++) {
        const void *p, *q;
        assert_int_equal(surg_ckpt_data(back, i, NULL, &p), SURG_OK);
        assert_int_equal(surg_ckpt_data(ck, i, NULL, &q), SURG_OK);
        const surg_tensor_info *t = surg_ckpt_tensor(back, i);
        size_t size = surg_dtype_bits(t->dtype) / 8;
        assert_int_equal((uintptr_t)p % size, 0); /* the map is page aligned */
        assert_string_equal(t->name, surg_ckpt_tensor(ck, i)->name);
        assert_memory_equal(p, q, t->nbytes);
    }
    surg_ckpt_close(back);
    surg_ckpt_close(ck);
}

static void test_sharded_output(void **state)
{
    (void)state;
    const char *dir = tmp_path("shards");
    recorder r;
    assert_int_equal(rewrite(SURG_FIXTURES "/safetensors-reference/model.numpy.safetensors",
                             dir, 1000, &r),
                     SURG_OK);
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    surg_ckpt *ck;
    rec_init(&r);
    assert_int_equal(surg_ckpt_open(p, &r.sink, &ck), SURG_OK);
    assert_int_equal(surg_ckpt_count(ck), 27);
    snprintf(p, sizeof p, "%s/model-00001-of-00005.safetensors", dir);
    assert_int_equal(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/model-00005-of-00005.safetensors", dir);
    assert_int_equal(access(p, F_OK), 0);
    surg_ckpt_close(ck);
    assert_int_equal(count_temporaries(dir), 0);

    /* Everything fits in one shard: one model.safetensors, no index. */
    const char *one = tmp_path("one-shard");
    assert_int_equal(rewrite(SURG_FIXTURES "/safetensors-reference/model.numpy.safetensors",
                             one, 1000000, &r),
                     SURG_OK);
    snprintf(p, sizeof p, "%s/model.safetensors", one);
    assert_int_equal(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", one);
    assert_int_not_equal(access(p, F_OK), 0);
}

static void test_no_partial_output(void **state)
{
    (void)state;
    const char *ref = SURG_FIXTURES "/safetensors-reference/model.numpy.safetensors";
    recorder r;
    /* An output directory that does not exist. */
    assert_int_equal(rewrite(ref, tmp_path("nodir/out.safetensors"), 0, &r), SURG_EIO);
    assert_true(rec_has_text(&r, "cannot create the output"));

    /* The input shrinks between reading its header and copying its data. */
    size_t len;
    unsigned char *whole = read_all(ref, &len);
    const char *in = tmp_path("shrinking.safetensors");
    write_file(in, whole, len);
    surg_ckpt *ck;
    rec_init(&r);
    assert_int_equal(surg_ckpt_open(in, &r.sink, &ck), SURG_OK);
    assert_int_equal(truncate(in, (off_t)len - 100), 0);
    const char *out = tmp_path("never.safetensors");
    assert_int_not_equal(surg_ckpt_write(ck, out, NULL, &r.sink), SURG_OK);
    if (!rec_has_text(&r, "truncated"))
        fail_msg("%s", r.messages);
    surg_ckpt_close(ck);
    assert_int_not_equal(access(out, F_OK), 0);
    assert_int_equal(count_temporaries(tmp_dir()), 0);

    /* A sharded output that fails leaves no shard and removes the directory
     * it made. */
    write_file(in, whole, len);
    rec_init(&r);
    assert_int_equal(surg_ckpt_open(in, &r.sink, &ck), SURG_OK);
    assert_int_equal(truncate(in, (off_t)len - 100), 0);
    const char *dir = tmp_path("failed-shards");
    assert_int_not_equal(surg_ckpt_write(ck, dir, &(surg_write_opts){.max_shard_size = 100}, &r.sink),
                         SURG_OK);
    surg_ckpt_close(ck);
    assert_int_not_equal(access(dir, F_OK), 0);
    free(whole);

    /* A schema has no data to write. */
    const char *schema = tmp_path("s.json");
    write_file(schema, "{}", 2);
    rec_init(&r);
    assert_int_equal(surg_ckpt_open(schema, &r.sink, &ck), SURG_OK);
    assert_int_equal(surg_ckpt_write(ck, tmp_path("s.safetensors"), NULL, &r.sink),
                     SURG_EUSAGE);
    surg_ckpt_close(ck);
}

static void test_temporaries(void **state)
{
    (void)state;
    recorder r;
    rec_init(&r);
    of_file *a, *b;
    const char *final = tmp_path("pending.safetensors");
    assert_int_equal(of_create(&r.sink, final, &a), SURG_OK);
    assert_int_equal(of_create(&r.sink, final, &b), SURG_OK);
    assert_int_equal(of_write(a, &r.sink, "abc", 3), SURG_OK);
    /* Unnamed (O_TMPFILE) where the file system offers it: nothing to see,
     * nothing a SIGKILL could leave; else two named temporaries. */
    int visible = count_temporaries(tmp_dir());
    assert_true(visible == 0 || visible == 2);
    surg_remove_temporaries(); /* what the signal handler does */
    assert_int_equal(count_temporaries(tmp_dir()), 0);
    assert_int_not_equal(access(final, F_OK), 0);
    of_abort(a);
    of_abort(b);

    assert_int_equal(of_create(&r.sink, final, &a), SURG_OK);
    assert_int_equal(of_write(a, &r.sink, "xyz", 3), SURG_OK);
    assert_int_equal(of_finish(a, &r.sink), SURG_OK);
    assert_int_not_equal(access(final, F_OK), 0); /* not there before commit */
    assert_int_equal(of_commit(a, &r.sink), SURG_OK);
    size_t len;
    unsigned char *got = read_all(final, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(got, "xyz", 3);
    free(got);
    assert_int_equal(count_temporaries(tmp_dir()), 0);
}

static surg_status emit_four(void *ctx, size_t item, of_file *out, surg_sink *sink)
{
    (void)ctx;
    (void)item;
    return of_write(out, sink, "\1\2\3\4", 4);
}

/* Write one U8[4] tensor named `name` to `out`. */
static surg_status write_named(const char *name, const char *out, recorder *r)
{
    static const uint64_t shape[1] = {4};
    surg_tensor_info t = {name, SURG_U8, 1, shape, 4, 4};
    stw_output o = {.tensors = &t, .n = 1, .emit = emit_four};
    rec_init(r);
    return stw_write(&r->sink, out, &o);
}

/* The writers refuse a name their readers would refuse, whatever asked for
 * it (the compiler refuses them first): nothing is written, the status is
 * an error. A name the format holds is written and reads back. */
static void test_names_refused(void **state)
{
    (void)state;
    char *longest = malloc(65533);
    memset(longest, 'n', 65532);
    longest[65532] = '\0';
    recorder r;
    const char *bad[][2] = {{"", "e.safetensors"},          {"__metadata__", "m.safetensors"},
                            {"", "e.npz"},                  {"__metadata__", "m.npz"},
                            {"\xff\xfe", "u.safetensors"}, {longest, "long.npz"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *out = tmp_path(bad[i][1]);
        assert_int_equal(write_named(bad[i][0], out, &r), SURG_EINVALID);
        assert_true(rec_has_code(&r, "out-name"));
        assert_int_not_equal(access(out, F_OK), 0);
    }
    assert_true(rec_has_text(&r, "(a name of 65532 bytes) cannot be written here: an .npz "
                                 "holds names of at most 65,531 bytes"));
    assert_int_equal(count_temporaries(tmp_dir()), 0);

    /* The same name fits safetensors, and one byte less fits an .npz. */
    const char *fits[] = {"long.safetensors", "shorter.npz"};
    for (size_t i = 0; i < 2; i++) {
        if (i == 1)
            longest[65531] = '\0';
        const char *out = tmp_path(fits[i]);
        assert_int_equal(write_named(longest, out, &r), SURG_OK);
        surg_ckpt *ck;
        assert_int_equal(surg_ckpt_open(out, &r.sink, &ck), SURG_OK);
        assert_int_equal(surg_ckpt_count(ck), 1);
        assert_string_equal(surg_ckpt_tensor(ck, 0)->name, longest);
        const void *data;
        assert_int_equal(surg_ckpt_data(ck, 0, &r.sink, &data), SURG_OK);
        assert_memory_equal(data, "\1\2\3\4", 4);
        surg_ckpt_close(ck);
    }
    free(longest);
}

/* The names a sharded output owns: its one file, its index, its shards with
 * five digits or more; nothing else. */
static void test_owned_names(void **state)
{
    (void)state;
    assert_true(outp_owns("model", "model.safetensors"));
    assert_true(outp_owns("model", "model.safetensors.index.json"));
    assert_true(outp_owns("model", "model-00001-of-00003.safetensors"));
    assert_true(outp_owns("model", "model-123456-of-123456.safetensors"));
    assert_true(outp_owns("a", "a-00002-of-00002.safetensors"));
    assert_false(outp_owns("model", "model-1-of-3.safetensors"));
    assert_false(outp_owns("model", "model-00001-of-00003.safetensors.bak"));
    assert_false(outp_owns("model", "model-00001-00003.safetensors"));
    assert_false(outp_owns("model", "model-0000a-of-00003.safetensors"));
    assert_false(outp_owns("model", "other-00001-of-00003.safetensors"));
    assert_false(outp_owns("model", "model.bin"));
    assert_false(outp_owns("model", "config.json"));
    assert_false(outp_owns("a", "ab.safetensors"));
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* surg_ckpt_write checks its output as surg_run does: never over a file of
 * its input, never over a FIFO, never an unknown extension; the input
 * unchanged. */
static void test_output_preflight(void **state)
{
    (void)state;
    const char *ref = SURG_FIXTURES "/safetensors-reference/model.numpy.safetensors";
    const char *dir = tmp_path("pre-shards");
    recorder r;
    assert_int_equal(rewrite(ref, dir, 1000, &r), SURG_OK);
    char idx[600], shard[600];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    snprintf(shard, sizeof shard, "%s/model-00002-of-00005.safetensors", dir);
    size_t idx_len, shard_len;
    unsigned char *idx_before = read_all(idx, &idx_len), *shard_before = read_all(shard, &shard_len);

    /* Into its own directory, its own index, one of its own shards. */
    assert_int_equal(rewrite(idx, dir, 1000, &r), SURG_EUSAGE);
    assert_true(rec_has_code(&r, "run-overwrite"));
    assert_int_equal(rewrite(idx, idx, 1000, &r), SURG_EUSAGE);
    assert_true(rec_has_code(&r, "run-overwrite"));
    assert_int_equal(rewrite(idx, shard, 0, &r), SURG_EUSAGE);
    assert_true(rec_has_text(&r, "which this run reads"));
    size_t len;
    unsigned char *after = read_all(idx, &len);
    assert_int_equal(len, idx_len);
    assert_memory_equal(after, idx_before, len);
    free(after);
    after = read_all(shard, &len);
    assert_int_equal(len, shard_len);
    assert_memory_equal(after, shard_before, len);
    free(after);
    free(idx_before);
    free(shard_before);
    assert_int_equal(count_entries(dir), 6);

    /* A FIFO stays a FIFO. */
    const char *fifo = tmp_path("fifo.safetensors");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(rewrite(ref, fifo, 0, &r), SURG_EUSAGE);
    assert_true(rec_has_code(&r, "out-special"));
    struct stat sb;
    assert_int_equal(lstat(fifo, &sb), 0);
    assert_true(S_ISFIFO(sb.st_mode));

    /* Names that surg does not write, or not so. */
    assert_int_equal(rewrite(ref, tmp_path("o.h5"), 0, &r), SURG_EUSAGE);
    assert_true(rec_has_code(&r, "out-name"));
    assert_int_equal(rewrite(ref, tmp_path("o.safetensors"), 1000, &r), SURG_EUSAGE);
    assert_int_equal(rewrite(ref, tmp_path("o.safetensors.index.json"), 0, &r), SURG_EUSAGE);
    assert_int_equal(rewrite(ref, "-", 0, &r), SURG_EUSAGE);
    assert_int_equal(access(tmp_path("o.h5"), F_OK), -1);
    assert_int_equal(access(tmp_path("o.safetensors"), F_OK), -1);
    assert_int_equal(access("-", F_OK), -1);
}

/* A re-run owns its names: stale shards and index of surg's earlier output
 * go once the new one is in place; a file surg did not write is refused. */
static void test_stale_outputs(void **state)
{
    (void)state;
    const char *ref = SURG_FIXTURES "/safetensors-reference/model.numpy.safetensors";
    const char *dir = tmp_path("rerun");
    recorder r;
    assert_int_equal(rewrite(ref, dir, 1000, &r), SURG_OK);
    assert_int_equal(count_entries(dir), 6); /* five shards and the index */
    char p[600];
    snprintf(p, sizeof p, "%s/model-00003-of-00005.safetensors", dir);
    assert_true(outp_is_ours(p));
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    assert_true(outp_is_ours(p));
    assert_false(outp_is_ours(ref));

    assert_int_equal(rewrite(ref, dir, 1000000, &r), SURG_OK);
    assert_int_equal(count_entries(dir), 1);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(access(p, F_OK), 0);
    assert_true(outp_is_ours(p));

    /* Back to shards, with a file of another writer under a stale name. */
    assert_int_equal(rewrite(ref, dir, 1000, &r), SURG_OK);
    assert_int_equal(count_entries(dir), 6);
    size_t len;
    unsigned char *whole = read_all(ref, &len);
    snprintf(p, sizeof p, "%s/model-00009-of-00009.safetensors", dir);
    write_file(p, whole, len);
    free(whole);
    assert_int_equal(rewrite(ref, dir, 1000000, &r), SURG_EUSAGE);
    assert_true(rec_has_code(&r, "out-stale"));
    assert_int_equal(count_entries(dir), 7); /* nothing written, nothing removed */
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_not_equal(access(p, F_OK), 0);
}

/* The mark is the writer's: kept off one file whatever the input says, put
 * on every file of a sharded output. */
static void test_mark(void **state)
{
    (void)state;
    const char *in = craft("marked.safetensors",
                           "{\"__metadata__\":{\"surg.output\":\"x\",\"z\":\"1\"},"
                           "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                           "\x07", 1);
    recorder r;
    const char *one = tmp_path("unmarked.safetensors");
    assert_int_equal(rewrite(in, one, 0, &r), SURG_OK);
    size_t len;
    char *got = (char *)read_all(one, &len);
    assert_non_null(strstr(got + 8, "{\"__metadata__\":{\"format\":\"pt\",\"z\":\"1\"},\"x\""));
    free(got);
    const char *dir = tmp_path("marked-dir");
    assert_int_equal(rewrite(in, dir, 1000, &r), SURG_OK);
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    got = (char *)read_all(p, &len);
    assert_non_null(strstr(got + 8, "{\"__metadata__\":{\"format\":\"pt\",\"surg.output\":"
                                    "\"sharded\",\"z\":\"1\"},\"x\""));
    free(got);
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
        cmocka_unit_test(test_reference_layout), cmocka_unit_test(test_format_kept),
        cmocka_unit_test(test_alignment),        cmocka_unit_test(test_sharded_output),
        cmocka_unit_test(test_no_partial_output), cmocka_unit_test(test_temporaries),
        cmocka_unit_test(test_names_refused),
        cmocka_unit_test(test_owned_names),      cmocka_unit_test(test_output_preflight),
        cmocka_unit_test(test_stale_outputs),    cmocka_unit_test(test_mark),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
