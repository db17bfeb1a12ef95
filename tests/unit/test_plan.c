/* test_plan.c: the optimizer's passes, through the figures of the plan they
 * make: dead inputs are never read, dead values never made, elementwise
 * chains fuse into one pass, a reduction adds exactly one, unchanged bytes
 * are copied as byte ranges, and a tie stores one copy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/passes.h"
#include "testutil.h"

/* 4 tensors of known sizes: a f32[4, 6] (96 B), b f32[4, 6] (96 B),
 * c bf16[8] (16 B), d i32[10] (40 B); 248 bytes in all. */
static const char *schema_json =
    "{\"a\": {\"dtype\": \"F32\", \"shape\": [4, 6]},"
    " \"b\": {\"dtype\": \"F32\", \"shape\": [4, 6]},"
    " \"c\": {\"dtype\": \"BF16\", \"shape\": [8]},"
    " \"d\": {\"dtype\": \"I32\", \"shape\": [10]}}";
#define TOTAL 248

static surg_ckpt *schema;

typedef struct planned {
    surg_recipe *rec;
    surg_program *prog;
    surg_plan *plan;
} planned;

static planned plan_of(const char *text)
{
    planned p = {0};
    recorder r;
    rec_init(&r);
    if (surg_recipe_parse("t.surg", text, strlen(text), &r.sink, &p.rec) ||
        surg_compile(p.rec, schema, &r.sink, &p.prog) ||
        surg_plan_build(p.prog, 1, &p.plan))
        fail_msg("%s: %s", text, r.messages);
    return p;
}

static void done(planned *p)
{
    surg_plan_free(p->plan);
    surg_program_free(p->prog);
    surg_recipe_free(p->rec);
}

static const pl_tensor *out(const planned *p, const char *name)
{
    for (size_t i = 0; i < p->plan->n; i++)
        if (strcmp(p->plan->t[i].name, name) == 0)
            return &p->plan->t[i];
    fail_msg("no output %s", name);
    return NULL;
}

static void test_copies(void **state)
{
    (void)state;
    /* A rename-only recipe reads and computes nothing beyond the copies. */
    planned p = plan_of("rename \"{a,b}\" -> \"new_$1\"\n");
    const pl_totals *t = &p.plan->plan;
    assert_int_equal(t->read, 0);
    assert_int_equal(t->computed, 0);
    assert_int_equal(t->generated, 0);
    assert_int_equal(t->gathered, 0);
    assert_int_equal(t->copied, TOTAL);
    assert_int_equal(t->written, TOTAL + p.plan->header_bytes);
    const pl_tensor *x = out(&p, "new_a");
    assert_int_equal(x->kind, PL_COPY);
    assert_int_equal(x->n_segs, 1);
    assert_int_equal(x->segs[0].offset, 0);
    assert_int_equal(x->segs[0].len, 96);
    /* The naive way loads and holds everything. */
    assert_int_equal(p.plan->naive.read, TOTAL);
    assert_int_equal(p.plan->naive.peak, TOTAL);
    done(&p);

    /* No-op cast, reshape, a slice of whole rows, a concat along axis 0:
     * still byte ranges. */
    p = plan_of("map \"a\" = reshape(cast(x, f32), 6, 4)\n"
                "split \"b\" axis 0 sizes 1, 3 -> \"b1\", \"b3\"\n"
                "concat \"{b3,b1}\" axis 0 -> \"b31\"\n");
    assert_int_equal(out(&p, "a")->kind, PL_COPY);
    x = out(&p, "b31");
    assert_int_equal(x->kind, PL_COPY);
    assert_int_equal(x->n_segs, 2); /* rows 1..3, then row 0 */
    assert_int_equal(x->segs[0].offset, 24);
    assert_int_equal(x->segs[0].len, 72);
    assert_int_equal(x->segs[1].offset, 0);
    assert_int_equal(x->segs[1].len, 24);
    assert_int_equal(p.plan->plan.read, 0);
    done(&p);
}

static void test_column_split_and_transpose(void **state)
{
    (void)state;
    /* Columns of a row-major matrix: one range per row. */
    planned p = plan_of("split \"a\" axis 1 sizes 2, 4 -> \"a2\", \"a4\"\n"
                        "map \"b\" = transpose(x)\n");
    const pl_tensor *x = out(&p, "a2");
    assert_int_equal(x->kind, PL_COPY);
    assert_int_equal(x->n_segs, 4);
    assert_int_equal(x->segs[1].offset, 24); /* row 1 starts 6 floats in */
    assert_int_equal(x->segs[1].len, 8);
    /* A real transpose moves elements one by one: no arithmetic. */
    x = out(&p, "b");
    assert_int_equal(x->kind, PL_GATHER);
    assert_int_equal(p.plan->plan.gathered, 96);
    assert_int_equal(p.plan->plan.computed, 0);
    done(&p);
}

static void test_dead(void **state)
{
    (void)state;
    /* A dropped input is never read. */
    planned p = plan_of("drop \"a\"\nmap \"b\" = x * 2\n");
    assert_int_equal(p.plan->dead_inputs, 1);
    assert_int_equal(p.plan->dead_input_bytes, 96);
    assert_int_equal(p.plan->plan.read, 96); /* b, once */
    done(&p);
    /* Fill then overwrite: only the final values are generated; nothing
     * random is made. */
    p = plan_of("fill \"a\" = normal(0, 1)\nfill \"a\" = 0\n");
    assert_int_equal(p.plan->plan.generated, 96);
    assert_int_equal(p.plan->dead_values, 1);
    assert_int_equal(p.plan->dead_value_bytes, 96);
    const pl_tensor *x = out(&p, "a");
    assert_int_equal(x->kind, PL_GENERATE);
    assert_non_null(strstr(x->how, "fill 0"));
    assert_int_equal(p.plan->dead_inputs, 1); /* a's old values are not read either */
    assert_int_equal(p.plan->naive.generated, 192); /* the naive way makes both */
    done(&p);
    /* init-lora then drop of the adapter allocates nothing. */
    p = plan_of("init-lora \"a\" rank 2 style flax\ndrop \"lora/*\"\n");
    assert_int_equal(p.plan->plan.generated, 0);
    assert_int_equal(p.plan->dead_values, 2);
    assert_int_equal(p.plan->naive.generated, 4 * 2 * 4 + 2 * 6 * 4);
    done(&p);
}

static void test_fusion(void **state)
{
    (void)state;
    /* Two maps, one pass: read once, written once. */
    planned p = plan_of("map \"a\" = x * 2\nmap \"a\" = x + 1\n");
    const pl_tensor *x = out(&p, "a");
    assert_int_equal(x->kind, PL_COMPUTE);
    assert_int_equal(x->passes, 1);
    assert_int_equal(x->read, 96);
    assert_int_equal(p.plan->plan.computed, 96);
    assert_int_equal(p.plan->naive.computed, 192); /* an array per statement */
    done(&p);
    /* A reduction used by a map: exactly two passes. */
    p = plan_of("map \"a\" = x / norm(x)\n");
    x = out(&p, "a");
    assert_int_equal(x->passes, 2);
    assert_int_equal(x->read, 192);
    done(&p);
    /* Reductions of one level share their pass; a nested one adds a pass. */
    p = plan_of("map \"a\" = (x - mean(x)) / std(x)\nmap \"b\" = x / norm(x - mean(x))\n");
    assert_int_equal(out(&p, "a")->passes, 2);
    assert_int_equal(out(&p, "b")->passes, 3);
    done(&p);
    /* An input used twice in one pass is read once. */
    p = plan_of("map \"a\" = x * x + tensor(\"b\")\n");
    assert_int_equal(out(&p, "a")->read, 192);
    done(&p);
}

static void test_ties(void **state)
{
    (void)state;
    /* A tie keeps one copy: the tied name is metadata, not data. */
    planned p = plan_of("tie \"b\" = \"a\"\n");
    assert_int_equal(p.plan->n, 3);
    assert_int_equal(p.plan->plan.copied, TOTAL - 96);
    bool found = false;
    for (size_t i = 0; i < p.plan->n_meta; i++)
        if (strcmp(p.plan->meta[i].key, "surg.ties") == 0) {
            assert_string_equal(p.plan->meta[i].value, "{\"b\":\"a\"}");
            found = true;
        }
    assert_true(found);
    done(&p);
}

static void test_texts(void **state)
{
    (void)state;
    planned p = plan_of("map \"a\" = x / norm(x)\nfill \"c\" = normal(0, 0.02)\ntie \"b\" = \"a\"\n");
    char *text = surg_plan_text(p.plan);
    assert_non_null(strstr(text, "  a  f32[4, 6]  compute   2 passes: (a / norm(a))\n"));
    assert_non_null(strstr(text, "  c  bf16[8]    generate  normal(0, 0.02) seed 0\n"));
    assert_non_null(strstr(text, "tied: \"b\" is stored as \"a\""));
    free(text);
    char *json = surg_plan_json(p.plan);
    assert_non_null(strstr(json, "{\"name\":\"a\",\"dtype\":\"F32\",\"shape\":[4,6],\"bytes\":96,"
                                 "\"source\":\"compute\",\"passes\":2,\"read\":192,"));
    assert_non_null(strstr(json, "\"ties\":{\"b\":\"a\"}"));
    assert_non_null(strstr(json, "\"naive\":{\"read\":248,"));
    free(json);
    done(&p);
}

/* pl_live on its own: what the outputs need, through every input. */
static void test_live(void **state)
{
    (void)state;
    planned p = plan_of("map \"a\" = x + tensor(\"b\")\ndrop \"b\"\n");
    uint8_t *live = pl_live(&p.prog->g, p.prog->out, p.prog->n_out);
    size_t n = 0;
    for (cg_id i = 0; i < p.prog->g.n; i++)
        n += live[i];
    /* a, b (read by a's map), the add, c, d: b stays live though dropped. */
    assert_int_equal(n, 5);
    free(live);
    done(&p);
}

static int setup(void **state)
{
    (void)state;
    const char *path = tmp_path("plan.json");
    write_file(path, schema_json, strlen(schema_json));
    recorder r;
    rec_init(&r);
    return surg_ckpt_open(path, &r.sink, &schema) == SURG_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    surg_ckpt_close(schema);
    tmp_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copies), cmocka_unit_test(test_column_split_and_transpose),
        cmocka_unit_test(test_dead),   cmocka_unit_test(test_fusion),
        cmocka_unit_test(test_ties),   cmocka_unit_test(test_texts),
        cmocka_unit_test(test_live),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
