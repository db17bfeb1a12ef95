/* test_safetensors.c: reading real files written by the reference Python
 * library (single and sharded), schema files, opening by name, and the
 * promise that opening reads headers only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/checkpoint.h"
#include "testutil.h"

#define REF SURG_FIXTURES "/safetensors-reference"

static surg_ckpt *open_ok(const char *path)
{
    recorder r;
    rec_init(&r);
    surg_ckpt *ck = NULL;
    surg_status st = surg_ckpt_open(path, &r.sink, &ck);
    if (st)
        fail_msg("%s: %s", path, r.messages);
    return ck;
}

/* IEEE half to double, written out so the test does not trust the library. */
static double half(uint16_t h)
{
    int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
    return (h & 0x8000) ? -v : v;
}

static double element(const void *data, surg_dtype dt, size_t i)
{
    switch (dt) {
    case SURG_BOOL: case SURG_U8: return ((const uint8_t *)data)[i];
    case SURG_I8: return ((const int8_t *)data)[i];
    case SURG_I16: return ((const int16_t *)data)[i];
    case SURG_I32: return ((const int32_t *)data)[i];
    case SURG_I64: return (double)((const int64_t *)data)[i];
    case SURG_F16: return half(((const uint16_t *)data)[i]);
    case SURG_F32: return ((const float *)data)[i];
    case SURG_F64: return ((const double *)data)[i];
    default: fail_msg("unexpected dtype"); return 0;
    }
}

/* model.numpy.safetensors: `<dtype>_<shape digits>`, each arange(n) in its
 * dtype (bool: arange % 2). */
static void test_reference_numpy(void **state)
{
    (void)state;
    surg_ckpt *ck = open_ok(REF "/model.numpy.safetensors");
    assert_int_equal(surg_ckpt_kind_of(ck), SURG_CKPT_SAFETENSORS);
    assert_int_equal(surg_ckpt_count(ck), 27);
    static const struct {
        const char *prefix;
        surg_dtype dt;
    } kinds[] = {{"float16", SURG_F16}, {"float32", SURG_F32}, {"float64", SURG_F64},
                 {"bool", SURG_BOOL},   {"uint8", SURG_U8},    {"int8", SURG_I8},
                 {"int16", SURG_I16},   {"int32", SURG_I32},   {"int64", SURG_I64}};
    static const char *shapes[] = {"3", "35", "357"};
    size_t seen = 0;
    for (size_t k = 0; k < 9; k++)
        for (size_t s = 0; s < 3; s++) {
            char name[64];
            snprintf(name, sizeof name, "%s_%s", kinds[k].prefix, shapes[s]);
            size_t i = surg_ckpt_find(ck, name);
            assert_int_not_equal(i, (size_t)-1);
            const surg_tensor_info *t = surg_ckpt_tensor(ck, i);
            assert_string_equal(t->name, name);
            assert_int_equal(t->dtype, kinds[k].dt);
            assert_int_equal(t->rank, s + 1);
            uint64_t n = 1;
            for (size_t d = 0; d <= s; d++) {
                assert_int_equal(t->shape[d], shapes[s][d] - '0');
                n *= t->shape[d];
            }
            assert_int_equal(t->nelems, n);
            assert_int_equal(t->nbytes, n * surg_dtype_bits(t->dtype) / 8);
            const void *data;
            assert_int_equal(surg_ckpt_data(ck, i, NULL, &data), SURG_OK);
            for (size_t e = 0; e < n; e++) {
                double want = kinds[k].dt == SURG_BOOL ? (double)(e % 2) : (double)e;
                if (element(data, t->dtype, e) != want)
                    fail_msg("%s[%zu] = %g, want %g", name, e,
                             element(data, t->dtype, e), want);
            }
            seen++;
        }
    assert_int_equal(seen, 27);
    surg_ckpt_close(ck);
}

static void check_sharded(surg_ckpt *ck)
{
    assert_int_equal(surg_ckpt_kind_of(ck), SURG_CKPT_SHARDED);
    assert_int_equal(surg_ckpt_count(ck), 36);
    uint64_t total = 0;
    for (size_t i = 0; i < 36; i++) {
        const surg_tensor_info *t = surg_ckpt_tensor(ck, i);
        total += t->nbytes;
        if (i)
            assert_true(strcmp(surg_ckpt_tensor(ck, i - 1)->name, t->name) < 0);
    }
    assert_int_equal(total, 4305); /* the index's metadata.total_size */
    const surg_tensor_info *t = surg_ckpt_tensor(ck, surg_ckpt_find(ck, "bfloat16_357"));
    assert_int_equal(t->dtype, SURG_BF16);
    assert_int_equal(t->nbytes, 3 * 5 * 7 * 2);
    t = surg_ckpt_tensor(ck, surg_ckpt_find(ck, "float8_e4m3fn_35"));
    assert_non_null(t);
    assert_int_equal(t->dtype, SURG_F8_E4M3);
    assert_int_equal(surg_ckpt_meta_count(ck), 1);
    assert_string_equal(surg_ckpt_meta(ck, 0)->key, "format");
    assert_string_equal(surg_ckpt_meta(ck, 0)->value, "pt");
}

static void test_reference_sharded(void **state)
{
    (void)state;
    surg_ckpt *ck = open_ok(REF "/sharded");
    check_sharded(ck);
    surg_ckpt_close(ck);
    ck = open_ok(REF "/sharded/model.safetensors.index.json");
    check_sharded(ck);
    /* Each tensor's bytes are where its shard's header puts them. */
    for (size_t i = 0; i < surg_ckpt_count(ck); i++) {
        const void *data;
        assert_int_equal(surg_ckpt_data(ck, i, NULL, &data), SURG_OK);
        const st_file *f = ck_file_of(ck, i);
        size_t len;
        unsigned char *whole = read_all(f->path, &len);
        assert_true(ck->offset[i] + ck->tensors[i].nbytes <= len);
        assert_memory_equal(whole + ck->offset[i], data, ck->tensors[i].nbytes);
        free(whole);
    }
    surg_ckpt_close(ck);
}

static void test_headers_only(void **state)
{
    (void)state;
    surg_ckpt *ck = open_ok(REF "/sharded");
    for (size_t f = 0; f < ck->n_files; f++)
        assert_null(ck->files[f].map); /* no data mapped, so none read */
    const void *data;
    assert_int_equal(surg_ckpt_data(ck, 0, NULL, &data), SURG_OK);
    assert_non_null(ck->files[ck->file_of[0]].map);
    surg_ckpt_close(ck);
}

static void test_schema_file(void **state)
{
    (void)state;
    const char *p = tmp_path("model.json");
    const char *json = "{\n  \"__metadata__\": {\"format\": \"flax\"},\n"
                       "  \"params/Dense_0/kernel\": {\"dtype\": \"F32\", \"shape\": [3136, 256]},\n"
                       "  \"params/Dense_0/bias\": {\"dtype\": \"BF16\", \"shape\": [256],"
                       " \"data_offsets\": [7, 9]},\n"
                       "  \"step\": {\"dtype\": \"I64\", \"shape\": []}\n}\n";
    write_file(p, json, strlen(json));
    surg_ckpt *ck = open_ok(p);
    assert_int_equal(surg_ckpt_kind_of(ck), SURG_CKPT_SCHEMA);
    assert_int_equal(surg_ckpt_count(ck), 3);
    const surg_tensor_info *t = surg_ckpt_tensor(ck, 0);
    assert_string_equal(t->name, "params/Dense_0/bias");
    assert_int_equal(t->dtype, SURG_BF16);
    t = surg_ckpt_tensor(ck, 1);
    assert_string_equal(t->name, "params/Dense_0/kernel");
    assert_int_equal(t->shape[0], 3136);
    assert_int_equal(t->nbytes, 3136ull * 256 * 4);
    assert_int_equal(surg_ckpt_tensor(ck, 2)->rank, 0);
    assert_string_equal(surg_ckpt_meta(ck, 0)->value, "flax");
    recorder r;
    rec_init(&r);
    const void *data;
    assert_int_equal(surg_ckpt_data(ck, 0, &r.sink, &data), SURG_EUSAGE);
    assert_true(rec_has_code(&r, "ck-no-data"));
    /* The schema of a schema is itself. */
    char *text;
    assert_int_equal(surg_ckpt_schema_json(ck, &text), SURG_OK);
    const char *want = "{\n  \"__metadata__\": {\"format\": \"flax\"},\n"
                       "  \"params/Dense_0/bias\": {\"dtype\": \"BF16\", \"shape\": [256]},\n"
                       "  \"params/Dense_0/kernel\": {\"dtype\": \"F32\", \"shape\": [3136, 256]},\n"
                       "  \"step\": {\"dtype\": \"I64\", \"shape\": []}\n}\n";
    assert_string_equal(text, want);
    free(text);
    surg_ckpt_close(ck);

    const char *bad = tmp_path("bad.json");
    write_file(bad, "{\"w\": {\"dtype\": \"F32\"}}", 23);
    rec_init(&r);
    assert_int_equal(surg_ckpt_open(bad, &r.sink, &ck), SURG_EINVALID);
    assert_true(rec_has_code(&r, "st-entry"));
}

/* A schema whose "surg.ties" metadata is `ties`, opened; its diagnostics in r. */
static surg_ckpt *open_with_ties(recorder *r, const char *ties)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"__metadata__\": {\"surg.ties\": \"%s\"},"
             " \"b\": {\"dtype\": \"F32\", \"shape\": [2]}}",
             ties);
    const char *p = tmp_path("tied.json");
    write_file(p, json, strlen(json));
    rec_init(r);
    surg_ckpt *ck = NULL;
    assert_int_equal(surg_ckpt_open(p, &r->sink, &ck), SURG_OK);
    return ck;
}

static void test_recorded_ties(void **state)
{
    (void)state;
    recorder r;
    surg_ckpt *ck = open_with_ties(&r, "{\\\"z\\\": \\\"b\\\", \\\"a\\\\u00e9\\\": \\\"b\\\"}");
    assert_int_equal(surg_ckpt_tie_count(ck), 2);
    assert_string_equal(surg_ckpt_tie(ck, 0)->key, "a\xc3\xa9"); /* sorted, unescaped */
    assert_string_equal(surg_ckpt_tie(ck, 0)->value, "b");
    assert_string_equal(surg_ckpt_tie(ck, 1)->key, "z");
    assert_null(surg_ckpt_tie(ck, 2));
    assert_int_equal(r.sink.warnings, 0);
    surg_ckpt_close(ck);
    /* A record that is no object of names is ignored, with a warning. */
    const char *bad[] = {"[]", "{\\\"a\\\": 1}", "{\\\"a\\\": \\\"b\\\"} x", "{\\\"a\\\""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck = open_with_ties(&r, bad[i]);
        assert_int_equal(surg_ckpt_tie_count(ck), 0);
        assert_true(rec_has_code(&r, "ck-ties"));
        surg_ckpt_close(ck);
    }
}

static void test_open_by_name(void **state)
{
    (void)state;
    recorder r;
    rec_init(&r);
    surg_ckpt *ck;
    assert_int_equal(surg_ckpt_open(tmp_path("missing.safetensors"), &r.sink, &ck),
                     SURG_EIO);
    assert_true(rec_has_text(&r, "No such file"));
    const char *odd = tmp_path("weights.xyz");
    write_file(odd, "x", 1);
    rec_init(&r);
    assert_int_equal(surg_ckpt_open(odd, &r.sink, &ck), SURG_EUSAGE);
    assert_true(rec_has_code(&r, "ck-format"));
    rec_init(&r);
    assert_int_equal(surg_ckpt_open(tmp_dir(), &r.sink, &ck), SURG_EIO);
    assert_true(rec_has_code(&r, "ck-empty-dir"));
}

/* Index problems: a path in a shard name, a tensor the shard lacks, a
 * tensor the index does not list. */
static void test_bad_index(void **state)
{
    (void)state;
    static const struct {
        const char *index, *code;
    } cases[] = {
        {"{\"weight_map\": {\"a\": \"../etc/model.safetensors\"}}", "shard-name"},
        {"{\"weight_map\": {\"a\": \"..\"}}", "shard-name"},
        {"{\"weight_map\": {\"a\": \"\"}}", "shard-name"},
        {"{\"weight_map\": {\"a\": \"s.safetensors\", \"b\": \"s.safetensors\"}}",
         "shard-missing-tensor"},
        {"{\"weight_map\": {\"a\": \"t.safetensors\"}}", "shard-unlisted-tensor"},
        {"{\"metadata\": {}}", "shard-index"},
        {"{\"weight_map\": {\"a\": 1}}", "shard-index"},
        {"{\"weight_map\": {\"a\": \"s.safetensors\", \"a\": \"s.safetensors\"}}",
         "shard-index"},
    };
    const char *shard = tmp_path("s.safetensors");
    const char *hdr = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
    unsigned char b[128] = {(unsigned char)strlen(hdr)};
    memcpy(b + 8, hdr, strlen(hdr));
    write_file(shard, b, 8 + strlen(hdr) + 1);
    const char *two = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                      "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}";
    memset(b, 0, sizeof b);
    b[0] = (unsigned char)strlen(two);
    memcpy(b + 8, two, strlen(two));
    write_file(tmp_path("t.safetensors"), b, 8 + strlen(two) + 2);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *p = tmp_path("x.safetensors.index.json");
        write_file(p, cases[i].index, strlen(cases[i].index));
        recorder r;
        rec_init(&r);
        surg_ckpt *ck;
        surg_status st = surg_ckpt_open(p, &r.sink, &ck);
        if (st != SURG_EINVALID || !rec_has_code(&r, cases[i].code))
            fail_msg("case %zu: wanted %s, got status %d, %s (%s)", i,
                     cases[i].code, st, r.codes, r.messages);
    }
}

/* Named inputs: each mounted under "NAME/", the parts in the order given,
 * the whole's metadata the first's, its tensors' bytes each part's. */
static void test_named_inputs(void **state)
{
    (void)state;
    surg_ckpt *one = open_ok(REF "/model.numpy.safetensors");
    surg_ckpt *sharded = open_ok(REF "/sharded");
    surg_input in[] = {{"shards", REF "/sharded", NULL},
                       {"np-1_x", REF "/model.numpy.safetensors", "safetensors"}};
    recorder r;
    rec_init(&r);
    surg_ckpt *ck = NULL;
    assert_int_equal(surg_ckpt_open_inputs(in, 2, &r.sink, &ck), SURG_OK);
    size_t n1 = surg_ckpt_count(one), n2 = surg_ckpt_count(sharded);
    assert_int_equal(surg_ckpt_count(ck), n1 + n2);
    /* In name order: "np-1_x/..." before "shards/...". */
    for (size_t i = 0; i < n1 + n2; i++) {
        const surg_tensor_info *t = surg_ckpt_tensor(ck, i);
        const surg_ckpt *from = i < n1 ? one : sharded;
        const surg_tensor_info *u = surg_ckpt_tensor(from, i < n1 ? i : i - n1);
        char want[512];
        snprintf(want, sizeof want, "%s/%s", i < n1 ? "np-1_x" : "shards", u->name);
        assert_string_equal(t->name, want);
        assert_int_equal(t->nbytes, u->nbytes);
        const void *a, *b;
        assert_int_equal(surg_ckpt_data(ck, i, NULL, &a), SURG_OK);
        assert_int_equal(surg_ckpt_data((surg_ckpt *)from, i < n1 ? i : i - n1, NULL, &b),
                         SURG_OK);
        assert_memory_equal(a, b, t->nbytes);
    }
    const char *prefix;
    assert_non_null(surg_ckpt_part_at(ck, 0, &prefix));
    assert_string_equal(prefix, "shards/");
    assert_non_null(surg_ckpt_part_at(ck, 1, &prefix));
    assert_string_equal(prefix, "np-1_x/");
    assert_null(surg_ckpt_part_at(ck, 2, &prefix));
    const surg_ckpt *first = surg_ckpt_mounted(ck, "shards/");
    assert_int_equal(surg_ckpt_meta_count(ck), surg_ckpt_meta_count(first));
    for (size_t i = 0; i < surg_ckpt_meta_count(ck); i++)
        assert_string_equal(surg_ckpt_meta(ck, i)->key, surg_ckpt_meta(first, i)->key);
    surg_ckpt_close(ck);
    surg_ckpt_close(one);
    surg_ckpt_close(sharded);

    /* Names: one segment of letters, digits, '_' and '-'. */
    assert_true(surg_input_name_ok("a") && surg_input_name_ok("A_1-b"));
    static const char *const bad[] = {"", "-a", "a/b", "a.b", "a*", "a b", "\xc3\xbc",
                                      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_false(surg_input_name_ok(bad[i]));
        surg_input x = {bad[i], REF "/model.numpy.safetensors", NULL};
        rec_init(&r);
        assert_int_equal(surg_ckpt_open_inputs(&x, 1, &r.sink, &ck), SURG_EUSAGE);
        assert_null(ck);
        assert_true(rec_has_code(&r, "input-name"));
    }
    surg_input twice[] = {{"a", REF "/model.numpy.safetensors", NULL},
                          {"b", REF "/model.numpy.safetensors", NULL},
                          {"a", REF "/sharded", NULL}};
    rec_init(&r);
    assert_int_equal(surg_ckpt_open_inputs(twice, 3, &r.sink, &ck), SURG_EUSAGE);
    assert_true(rec_has_code(&r, "input-twice"));
    assert_true(rec_has_text(&r, "the input name \"a\" is given twice (for " REF
                                 "/model.numpy.safetensors and " REF "/sharded)"));
    rec_init(&r);
    assert_int_equal(surg_ckpt_open_inputs(twice, 0, &r.sink, &ck), SURG_EUSAGE);
    assert_true(rec_has_code(&r, "input-none"));
    /* Every input is opened, so every missing one is named. */
    surg_input missing[] = {{"a", "/nonexistent/a.safetensors", NULL},
                            {"b", "/nonexistent/b.safetensors", NULL}};
    rec_init(&r);
    assert_int_equal(surg_ckpt_open_inputs(missing, 2, &r.sink, &ck), SURG_EIO);
    assert_true(rec_has_text(&r, "cannot open"));
    assert_int_equal(r.sink.errors, 2);
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
        cmocka_unit_test(test_reference_numpy), cmocka_unit_test(test_reference_sharded),
        cmocka_unit_test(test_headers_only),    cmocka_unit_test(test_schema_file),
        cmocka_unit_test(test_recorded_ties),   cmocka_unit_test(test_open_by_name),
        cmocka_unit_test(test_bad_index),       cmocka_unit_test(test_named_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
