/* test_glob.c: patterns and templates of SPEC §3.1: every wildcard, anchored
 * matching, separators, captures, templates, malformed patterns, and bounded
 * time on pathological patterns. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "compiler/glob.h"
#include "testutil.h"

static arena ar;
static gl_scratch scratch;

static gl_pattern compile(const char *pattern)
{
    gl_pattern p;
    char err[200];
    if (!gl_compile(&ar, pattern, &p, err, sizeof err))
        fail_msg("%s: %s", pattern, err);
    return p;
}

/* Match and render the captures as "a|b|c" (or NULL for no match). */
static const char *caps_of(const char *pattern, const char *name)
{
    static char out[512];
    gl_pattern p = compile(pattern);
    gl_span caps[GL_MAX_CAPTURES + 1];
    int r = gl_match(&p, name, (uint32_t)strlen(name), caps, &scratch);
    assert_int_not_equal(r, -1);
    if (!r)
        return NULL;
    out[0] = '\0';
    for (uint32_t i = 1; i <= p.n_captures; i++) {
        size_t n = strlen(out);
        snprintf(out + n, sizeof out - n, "%s%.*s", i > 1 ? "|" : "",
                 (int)(caps[i].end - caps[i].start), name + caps[i].start);
    }
    return out;
}

#define MATCHES(pat, name, want) assert_string_equal(caps_of(pat, name), want)
#define NO_MATCH(pat, name) assert_null(caps_of(pat, name))

static void test_wildcards(void **state)
{
    (void)state;
    MATCHES("params/Dense_0/kernel", "params/Dense_0/kernel", "");
    NO_MATCH("kernel", "Dense_0/kernel"); /* anchored: whole names only */
    NO_MATCH("Dense_0", "Dense_0/kernel");
    MATCHES("**/kernel", "Dense_0/kernel", "Dense_0");
    MATCHES("**/kernel", "a/b/c/kernel", "a/b/c");
    MATCHES("**/kernel", "kernel", ""); /* zero segments */
    MATCHES("params/*/kernel", "params/Dense_0/kernel", "Dense_0");
    NO_MATCH("params/*/kernel", "params/a/b/kernel"); /* * stays in a segment */
    NO_MATCH("model.*.weight", "model.a.b.weight");   /* '.' separates too */
    MATCHES("model.**.weight", "model.layers.0.mlp.weight", "layers.0.mlp");
    MATCHES("params/**", "params/a/b", "a/b");
    NO_MATCH("params/**", "params");
    MATCHES("layers_?", "layers_7", "7");
    NO_MATCH("a?b", "a/b");
    MATCHES("layer[0-9]", "layer3", "3");
    NO_MATCH("layer[0-9]", "layerx");
    MATCHES("layer[!0-9]", "layerx", "x");
    NO_MATCH("layer[!0-9]", "layer/");
    MATCHES("x[]]", "x]", "]"); /* ']' first in a class is literal */
    MATCHES("params/linear{1,2}/**", "params/linear2/bias", "2|bias");
    NO_MATCH("params/linear{1,2}/**", "params/linear3/bias");
    MATCHES("{q,k,v}_proj", "k_proj", "k");
    MATCHES("{a,ab}c", "abc", "ab"); /* an alternative that fails moves on */
    MATCHES("*_*", "a_b_c", "a_b|c");  /* the leftmost wildcard is greedy */
    MATCHES("h\\*", "h*", "");         /* a backslash makes the next literal */
    NO_MATCH("h\\*", "hx");
    MATCHES("é*", "éa", "a");
    MATCHES("?", "é", "é");            /* ? is one character, not one byte */
    MATCHES("**", "", "");
}

static void test_prefix_suffix(void **state)
{
    (void)state;
    gl_pattern p = compile("params/*/kernel");
    assert_int_equal(p.prefix_len, 7);
    assert_int_equal(p.suffix_len, 7);
    assert_int_equal(p.n_captures, 1);
    p = compile("**/kernel");
    assert_int_equal(p.prefix_len, 0);
    assert_true(p.literal == false);
    p = compile("exact/name");
    assert_true(p.literal);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {"a[bc", "a{b,c", "a{b*,c}", "x}", "x]", "[é]", "[z-a]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        gl_pattern p;
        char err[200];
        if (gl_compile(&ar, bad[i], &p, err, sizeof err))
            fail_msg("%s compiled", bad[i]);
    }
}

static void test_templates(void **state)
{
    (void)state;
    gl_pattern p = compile("params/linear{1,2}/**");
    gl_span caps[GL_MAX_CAPTURES + 1];
    const char *name = "params/linear1/kernel";
    assert_int_equal(gl_match(&p, name, (uint32_t)strlen(name), caps, &scratch), 1);
    gl_template t;
    char err[200];
    assert_true(gl_template_compile(&ar, "params/layer$1/$2", false, &t, err, sizeof err));
    assert_int_equal(t.max_capture, 2);
    assert_string_equal(gl_expand(&ar, &t, name, caps, 0), "params/layer1/kernel");
    assert_true(gl_template_compile(&ar, "$0.copy $$ ${1}", false, &t, err, sizeof err));
    assert_string_equal(gl_expand(&ar, &t, name, caps, 0), "params/linear1/kernel.copy $ 1");
    assert_true(gl_template_compile(&ar, "layer_$i/w", true, &t, err, sizeof err));
    assert_true(t.uses_index);
    assert_string_equal(gl_expand(&ar, &t, name, caps, 12), "layer_12/w");
    assert_false(gl_template_compile(&ar, "layer_$i", false, &t, err, sizeof err));
    assert_false(gl_template_compile(&ar, "a$", false, &t, err, sizeof err));
    assert_false(gl_template_compile(&ar, "a${1", false, &t, err, sizeof err));
    assert_true(gl_template_compile(&ar, "a${10}", false, &t, err, sizeof err));
    assert_int_equal(t.max_capture, 10);
}

/* Patterns that make a backtracking matcher take exponential time finish
 * quickly against long names. */
static void test_pathological(void **state)
{
    (void)state;
    char name[2001];
    memset(name, 'a', 2000);
    name[2000] = '\0';
    clock_t t0 = clock();
    NO_MATCH("*a*a*a*a*a*a*a*a*a*a*b", name);
    NO_MATCH("**a**a**a**a**a**a**a**b", name);
    NO_MATCH("{a,aa}{a,aa}{a,aa}{a,aa}{a,aa}{a,aa}{a,aa}{a,aa}b", name);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    assert_true(secs < 5.0); /* generous: under sanitizers; bounded, not exponential */
}

static int setup(void **state)
{
    (void)state;
    ar_init(&ar);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ar_free(&ar);
    gl_scratch_free(&scratch);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wildcards),  cmocka_unit_test(test_prefix_suffix),
        cmocka_unit_test(test_malformed),  cmocka_unit_test(test_templates),
        cmocka_unit_test(test_pathological),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
