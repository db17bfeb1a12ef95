/* test_parser.c: the front end's pieces: the tree the grammar builds (kinds,
 * fields, byte spans), string escapes, positions in characters, recovery
 * that reports every error, and suggestions. */
#include <stdlib.h>
#include <string.h>

#include "grammar/parse.h"
#include "support/suggest.h"
#include "testutil.h"

static ast_recipe *parse(arena *ar, recorder *r, const char *text, surg_status want)
{
    rec_init(r);
    ast_recipe *rec;
    surg_status st = gr_parse(ar, &r->sink, "t.surg", text, (uint32_t)strlen(text), &rec);
    if (st != want)
        fail_msg("status %d, wanted %d: %s", st, want, r->messages);
    return rec;
}

static const char *span_text(const ast_recipe *r, src_span s, char *out)
{
    memcpy(out, r->src.text + s.start, s.end - s.start);
    out[s.end - s.start] = '\0';
    return out;
}

static void test_statement_fields(void **state)
{
    (void)state;
    arena ar;
    ar_init(&ar);
    recorder r;
    ast_recipe *rec = parse(&ar, &r,
                            "rename \"a/{x,y}\" -> \"b/$1\"\n"
                            "keep \"p\", optional \"q\"; seed 7\n"
                            "init-lora \"k\" rank 4 alpha 8 b = normal(std=0.5) as \"A\", \"B\"\n"
                            "split \"w\" axis 1 sizes 2, 3 -> \"u\", \"v\"\n"
                            "fill \"s\" : f32[*, 2] = -1e-3\n",
                            SURG_OK);
    char t[128];
    ast_stmt *s = rec->stmts;
    assert_int_equal(s->kind, STMT_RENAME);
    assert_string_equal(s->patterns->text, "a/{x,y}");
    assert_string_equal(s->targets->text, "b/$1");
    assert_string_equal(span_text(rec, s->span, t), "rename \"a/{x,y}\" -> \"b/$1\"");
    assert_string_equal(span_text(rec, s->patterns->span, t), "\"a/{x,y}\"");
    s = s->next;
    assert_int_equal(s->kind, STMT_KEEP);
    assert_false(s->patterns->optional);
    assert_true(s->patterns->next->optional);
    assert_string_equal(span_text(rec, s->patterns->next->span, t), "optional \"q\"");
    s = s->next;
    assert_int_equal(s->kind, STMT_SEED);
    assert_true(s->number->value == 7);
    s = s->next;
    assert_int_equal(s->kind, STMT_INIT_LORA);
    const ast_clause *c = s->clauses;
    assert_int_equal(c->kind, CL_RANK);
    assert_int_equal(c->next->kind, CL_ALPHA);
    c = c->next->next;
    assert_int_equal(c->kind, CL_INIT);
    assert_string_equal(c->name, "b");
    assert_int_equal(c->init->kind, EX_CALL);
    assert_string_equal(c->init->u.call.args->name, "std");
    assert_true(c->init->u.call.args->value->u.number.value == 0.5);
    assert_string_equal(c->next->names->next->text, "B");
    s = s->next;
    assert_int_equal(s->kind, STMT_SPLIT);
    assert_string_equal(s->axis->text, "1");
    assert_string_equal(s->sizes->next->text, "3");
    assert_string_equal(s->targets->next->text, "v");
    s = s->next;
    assert_int_equal(s->kind, STMT_FILL_NEW);
    assert_string_equal(s->type.dtype, "f32");
    assert_null(s->type.dims->size);
    assert_string_equal(s->type.dims->next->size->text, "2");
    assert_int_equal(s->expr->kind, EX_NEG);
    assert_string_equal(s->expr->u.operand->u.number.text, "1e-3");
    assert_null(s->next);
    ar_free(&ar);
}

static void test_escapes(void **state)
{
    (void)state;
    arena ar;
    ar_init(&ar);
    recorder r;
    ast_recipe *rec = parse(&ar, &r, "drop \"a\\tb\\\"c\\\\d\\u00e9\\U0001F600\\x41\"\n", SURG_OK);
    assert_string_equal(rec->stmts->patterns->text, "a\tb\"c\\dé😀A");
    rec = parse(&ar, &r, "drop \"\\q\" ; drop \"\\uD800\"\n", SURG_EINVALID);
    assert_int_equal(r.sink.errors, 2);
    assert_true(rec_has_text(&r, "unknown escape '\\q'"));
    assert_true(rec_has_text(&r, "names no Unicode character"));
    ar_free(&ar);
}

static void test_positions(void **state)
{
    (void)state;
    arena ar;
    ar_init(&ar);
    src_file f;
    const char *text = "ab\n\tcé d\n";
    assert_int_equal(src_init(&f, &ar, "x", text, (uint32_t)strlen(text)), 0);
    uint32_t line, col;
    src_position(&f, 0, &line, &col);
    assert_int_equal(line, 1);
    assert_int_equal(col, 1);
    src_position(&f, 3, &line, &col); /* the tab */
    assert_int_equal(line, 2);
    assert_int_equal(col, 1);
    src_position(&f, 7, &line, &col); /* after the two bytes of é: the space */
    assert_int_equal(col, 4);
    src_position(&f, 8, &line, &col);
    assert_int_equal(col, 5);
    ar_free(&ar);
}

/* Every broken statement is reported, each once, and the good ones are
 * still in the tree; the broken ones are noted in order. */
static void test_recovery(void **state)
{
    (void)state;
    arena ar;
    ar_init(&ar);
    recorder r;
    ast_recipe *rec = parse(&ar, &r,
                            "drop \"a\"\nmap \"b\" = * 2\ndrop \"c\"\nrenme \"d\" -> \"e\"\n"
                            "expect \"f\" : q8[1]\ndrop \"g\"",
                            SURG_EINVALID);
    assert_int_equal(r.sink.errors, 3);
    assert_true(rec_has_code(&r, "syntax"));
    assert_true(rec_has_code(&r, "syntax-statement"));
    assert_true(rec_has_code(&r, "syntax-dtype"));
    int n = 0;
    for (ast_stmt *s = rec->stmts; s; s = s->next)
        n++;
    /* a, c and g; each statement with an error is left out and noted, so
     * that what parsed can still be compiled */
    assert_int_equal(n, 3);
    assert_int_equal(rec->n_broken, 3);
    uint32_t line, col;
    src_position(&rec->src, rec->broken->next->next->at.start, &line, &col);
    assert_int_equal(line, 5);
    ar_free(&ar);
}

static void test_public_api(void **state)
{
    (void)state;
    surg_recipe *rec;
    const char *text = "seed 0\nmap \"a\"=x*2 # c\n";
    assert_int_equal(surg_recipe_parse("m.surg", text, strlen(text), NULL, &rec), SURG_OK);
    char *f = surg_recipe_format(rec);
    assert_string_equal(f, "seed 0\nmap \"a\" = x * 2  # c\n");
    free(f);
    surg_recipe_free(rec);
    /* Without a sink errors still fail the parse. */
    assert_int_equal(surg_recipe_parse("m.surg", "seed", 4, NULL, &rec), SURG_EINVALID);
    assert_null(rec);
    recorder r;
    rec_init(&r);
    assert_int_equal(surg_recipe_load(tmp_path("none.surg"), &r.sink, &rec), SURG_EIO);
    assert_int_equal(surg_recipe_parse("z.surg", "drop \"a\0\"", 9, &r.sink, &rec),
                     SURG_EINVALID);
    tmp_cleanup();
}

static void test_suggestions(void **state)
{
    (void)state;
    assert_int_equal(sg_distance("rename", "rename", 3), 0);
    assert_int_equal(sg_distance("renmae", "rename", 3), 1); /* a swap */
    assert_int_equal(sg_distance("kernal", "kernel", 3), 1);
    assert_int_equal(sg_distance("", "abc", 5), 3);
    assert_true(sg_distance("abcdefgh", "zzzzzzzz", 2) > 2);
    const char *words[] = {"drop", "keep", "rename", "stack", "unstack"};
    assert_string_equal(sg_closest("unstak", words, 5), "unstack");
    assert_string_equal(sg_closest("drp", words, 5), "drop");
    assert_null(sg_closest("frobnicate", words, 5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_statement_fields), cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_positions),        cmocka_unit_test(test_recovery),
        cmocka_unit_test(test_public_api),       cmocka_unit_test(test_suggestions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
