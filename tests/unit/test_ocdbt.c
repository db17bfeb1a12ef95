/* test_ocdbt.c: the OCDBT reader (runtime/ocdbt.c) on the databases Orbax
 * itself wrote (../shared/fixtures/orbax: every directory holding a
 * manifest.ocdbt, the root databases of v0 and v1 items, direct and inside
 * composite `state/` items, and the per-process databases with several
 * versions), checked against the bytes decoded by hand in
 * docs/design/flax-orbax-formats.md §3.8 and §4; and the damaged fixtures,
 * which must fail naming the missing file. Databases built from the
 * format's documentation, hostile ones among them, are in
 * tests/py/test_ocdbt.py. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/kvstore.h"
#include "support/arena.h"
#include "support/crc32c.h"
#include "support/json.h"
#include "testutil.h"

#define ORBAX SURG_FIXTURES "/orbax"

/* Diagnostics as "FILE: MESSAGE [CODE]" lines. */
typedef struct log {
    surg_sink sink;
    char text[8192];
} log_t;

static void log_diag(const surg_diag *d, void *user)
{
    log_t *l = user;
    size_t n = strlen(l->text);
    snprintf(l->text + n, sizeof l->text - n, "%s: %s [%s]\n", d->file ? d->file : "?",
             d->message, d->code);
}

static void log_init(log_t *l)
{
    memset(l, 0, sizeof *l);
    l->sink.fn = log_diag;
    l->sink.user = l;
}

/* Every directory under the fixtures that holds a manifest.ocdbt. */
static char *dirs[512];
static size_t ndirs;

static int found(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    if (flag == FTW_F && strcmp(path + ftw->base, "manifest.ocdbt") == 0 && ndirs < 512)
        dirs[ndirs++] = strndup(path, (size_t)ftw->base - 1);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    ndirs = 0;
    assert_int_equal(nftw(ORBAX, found, 16, FTW_PHYS), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < ndirs; i++)
        free(dirs[i]);
    return 0;
}

typedef struct listing {
    char keys[8][32];
    kv_value vals[8];
    size_t n;
} listing;

static int collect(void *ctx, const char *key, size_t key_len, const kv_value *v)
{
    listing *l = ctx;
    assert_true(l->n < 8);
    assert_true(key_len < 32);
    assert_int_equal(strlen(key), key_len);
    memcpy(l->keys[l->n], key, key_len + 1);
    l->vals[l->n++] = *v;
    return 0;
}

static uint32_t u32_at(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t u64_at(const unsigned char *p)
{
    return u32_at(p) | (uint64_t)u32_at(p + 4) << 32;
}

/* A zarr metadata value: inline, strict JSON, of the expected format and
 * shape. */
static void check_json(const kv_value *v, const char *format, const char *shape)
{
    assert_non_null(v->bytes);
    char *text = strndup((const char *)v->bytes, v->length);
    assert_non_null(text);
    arena ar;
    ar_init(&ar);
    json_reader j;
    json_init(&j, text, v->length, &ar);
    assert_true(json_skip(&j) && json_end(&j));
    assert_non_null(strstr(text, format));
    assert_non_null(strstr(text, shape));
    ar_free(&ar);
    free(text);
}

/* A chunk holding int32 `first`, `first`+1, ... (`n` of them) at byte 9:
 * a zstd frame of one raw block, as TensorStore wrote it. */
static void check_chunk(const kv_value *v, int32_t first, int n)
{
    assert_non_null(v->bytes);
    assert_true(v->length >= 9 + 4 * (uint64_t)n);
    assert_int_equal(u32_at(v->bytes), 0xFD2FB528u);
    for (int i = 0; i < n; i++)
        assert_int_equal((int32_t)u32_at(v->bytes + 9 + 4 * i), first + i);
}

/* A zarr3 shard of one chunk of `frame` bytes: the index (offset 0,
 * length) and its CRC-32C follow the chunk. */
static void check_shard(const kv_value *v, uint64_t frame)
{
    assert_int_equal(v->length, frame + 20);
    assert_int_equal(u64_at(v->bytes + frame), 0);
    assert_int_equal(u64_at(v->bytes + frame + 8), frame);
    assert_int_equal(u32_at(v->bytes + frame + 16), crc32c(0, v->bytes + frame, 16));
}

static void check_v0(const listing *l)
{
    static const char *keys[] = {"a/.zarray", "a/0", "b.c/.zarray", "b.c/0"};
    assert_int_equal(l->n, 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(l->keys[i], keys[i]);
    check_json(&l->vals[0], "\"zarr_format\":2", "\"shape\":[8]");
    assert_int_equal(l->vals[0].length, 164);
    assert_int_equal(l->vals[1].length, 41);
    check_chunk(&l->vals[1], 0, 8);
    check_json(&l->vals[2], "\"dtype\":\"<i4\"", "\"shape\":[3]");
    assert_int_equal(l->vals[3].length, 21);
    check_chunk(&l->vals[3], 1, 3);
}

static void check_v1(const listing *l)
{
    static const char *keys[] = {"a/c/0", "a/zarr.json", "b.c/c/0", "b.c/zarr.json"};
    assert_int_equal(l->n, 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(l->keys[i], keys[i]);
    check_chunk(&l->vals[0], 0, 8);
    check_shard(&l->vals[0], 41);
    check_json(&l->vals[1], "\"zarr_format\":3", "\"shape\":[8]");
    check_chunk(&l->vals[2], 1, 3);
    check_shard(&l->vals[2], 21);
    check_json(&l->vals[3], "\"data_type\":\"int32\"", "\"shape\":[3]");
}

/* The data file the damaged fixtures' root manifests name, now deleted. */
static const char *missing_data_file(const char *dir)
{
    if (!strstr(dir, "missing_pytree_data_dir_d") || strstr(dir, "ocdbt.process_"))
        return NULL;
    if (strstr(dir, "v1_checkpoints"))
        return "/d/03194ed32ea90f3aa6819c079076d768";
    if (strstr(dir, "composite_checkpoint"))
        return "/d/811c01a2316f66930ad790f0a6c22023";
    return "/d/c2e8aef5dda5292fc58008b2a33c48c2";
}

static void test_fixtures(void **state)
{
    (void)state;
    size_t opened = 0, refused = 0, process = 0;
    assert_true(ndirs >= 60);
    for (size_t i = 0; i < ndirs; i++) {
        log_t lg;
        log_init(&lg);
        kv_store *s = NULL;
        surg_status st = kv_open_ocdbt(dirs[i], &lg.sink, &s);
        const char *missing = missing_data_file(dirs[i]);
        if (missing) {
            char want[1024];
            snprintf(want, sizeof want, "%s%s: cannot open: No such file or directory [io]\n",
                     dirs[i], missing);
            assert_int_equal(st, SURG_EIO);
            assert_null(s);
            assert_string_equal(lg.text, want);
            refused++;
            continue;
        }
        if (st != SURG_OK)
            fail_msg("%s: %s", dirs[i], lg.text);
        assert_int_equal(lg.sink.errors, 0);
        listing l = {0};
        int stopped = 1;
        assert_int_equal(s->ops->list(s, "", &lg.sink, collect, &l, &stopped), SURG_OK);
        assert_int_equal(stopped, 0);
        if (strstr(dirs[i], "v0_checkpoints"))
            check_v0(&l);
        else
            check_v1(&l);
        process += strstr(dirs[i], "ocdbt.process_") != NULL;
        /* Each key is found by get, with the same value; a prefix lists
         * its keys only; other keys are not there. */
        for (size_t k = 0; k < l.n; k++) {
            kv_value v;
            bool got = false;
            assert_int_equal(kv_get(s, l.keys[k], &lg.sink, &v, &got), SURG_OK);
            assert_true(got);
            assert_ptr_equal(v.bytes, l.vals[k].bytes);
            assert_int_equal(v.length, l.vals[k].length);
        }
        listing b = {0};
        assert_int_equal(s->ops->list(s, "b.c/", &lg.sink, collect, &b, &stopped), SURG_OK);
        assert_int_equal(b.n, 2);
        assert_string_equal(b.keys[0], l.keys[2]);
        assert_string_equal(b.keys[1], l.keys[3]);
        for (const char *const *k = (const char *const[]){"a", "a/", "b.c/0x", "", "z", NULL}; *k;
             k++) {
            kv_value v;
            bool got = true;
            assert_int_equal(kv_get(s, *k, &lg.sink, &v, &got), SURG_OK);
            assert_false(got);
        }
        kv_close(s);
        opened++;
    }
    assert_int_equal(refused, 3);
    assert_true(process >= 30);
    assert_int_equal(opened + refused, ndirs);
}

/* Orbax reads only the root manifest: with it deleted the item does not
 * open, though ocdbt.process_0/manifest.ocdbt is still there. */
static void test_missing_manifest(void **state)
{
    (void)state;
    static const char *items[] = {
        ORBAX "/v0_checkpoints/direct_checkpoint/critical_metadata_alterations/"
              "missing_pytree_data_file_manifest.ocdbt",
        ORBAX "/v0_checkpoints/composite_checkpoint/critical_metadata_alterations/"
              "missing_pytree_data_file_manifest.ocdbt/state",
        ORBAX "/v1_checkpoints/composite_checkpoint/critical_metadata_alterations/"
              "missing_pytree_data_file_manifest.ocdbt/state",
    };
    for (size_t i = 0; i < 3; i++) {
        log_t lg;
        log_init(&lg);
        kv_store *s = NULL;
        char want[1024];
        snprintf(want, sizeof want,
                 "%s/manifest.ocdbt: cannot open: No such file or directory [io]\n", items[i]);
        assert_int_equal(kv_open_ocdbt(items[i], &lg.sink, &s), SURG_EIO);
        assert_null(s);
        assert_string_equal(lg.text, want);
    }
}

/* list stops where the callback says, and says so. */
static int stop_at_second(void *ctx, const char *key, size_t key_len, const kv_value *v)
{
    (void)key;
    (void)key_len;
    (void)v;
    return ++*(int *)ctx == 2 ? 7 : 0;
}

static void test_list_stops(void **state)
{
    (void)state;
    log_t lg;
    log_init(&lg);
    kv_store *s = NULL;
    assert_int_equal(kv_open_ocdbt(ORBAX "/v0_checkpoints/direct_checkpoint/"
                                         "checkpoint_metadata_present/"
                                         "pytree_checkpointable_has_metadata/",
                                   &lg.sink, &s),
                     SURG_OK);
    int calls = 0, stopped = 0;
    assert_int_equal(s->ops->list(s, "", &lg.sink, stop_at_second, &calls, &stopped), SURG_OK);
    assert_int_equal(calls, 2);
    assert_int_equal(stopped, 7);
    kv_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_missing_manifest),
        cmocka_unit_test(test_list_stops),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
