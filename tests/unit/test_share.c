/* test_share.c: the zero-copy layout (st_share.c) on made-up sources, each
 * placement worked out by hand: which runs keep their offsets, where the
 * rest goes, what the data's start must be congruent to, and the part of
 * each run whose blocks can be shared. */
#include <stdlib.h>
#include <string.h>

#include "runtime/st_share.h"
#include "testutil.h"

enum { B = 4096 };

typedef struct fixture {
    surg_tensor_info t[8];
    uint64_t shape[8];
    stw_source src[8];
    stw_output out;
    stw_file f;
} fixture;

/* Tensor i: `bytes` of dtype d (rank 1), copied from `off` of file 3 (or
 * made: off UINT64_MAX). */
static void add(fixture *x, size_t i, const char *name, surg_dtype d, uint64_t bytes,
                uint64_t off)
{
    x->shape[i] = bytes / (surg_dtype_bits(d) / 8);
    x->t[i] = (surg_tensor_info){name, d, 1, &x->shape[i], x->shape[i], bytes};
    x->src[i] = off == UINT64_MAX ? (stw_source){.fd = -1} : (stw_source){3, off, 1 << 20};
}

/* Lay out tensors 0..n-1, given in the reference's order. */
static uint64_t lay(fixture *x, size_t n)
{
    x->out = (stw_output){.tensors = x->t, .n = n, .src = x->src, .share_block = B};
    x->f = (stw_file){.idx = malloc(n * sizeof(size_t)), .n = n};
    for (size_t i = 0; i < n; i++)
        x->f.idx[i] = i;
    uint64_t residue = 99;
    assert_int_equal(sh_layout(&x->out, &x->f, &residue), SURG_OK);
    return residue;
}

static void done(fixture *x)
{
    free(x->f.idx);
    free(x->f.runs);
}

/* A rename: everything one run, in input order whatever the names say. */
static void test_one_run(void **state)
{
    (void)state;
    fixture x;
    add(&x, 0, "a", SURG_F32, 8192, 1024 + 12 + 4096); /* input: c, b, a */
    add(&x, 1, "b", SURG_F32, 4096, 1024 + 12);
    add(&x, 2, "c", SURG_F32, 12, 1024);
    assert_int_equal(lay(&x, 3), 1024);
    assert_int_equal(x.f.n_runs, 1);
    assert_int_equal(x.f.idx[0], 2);
    assert_int_equal(x.f.idx[1], 1);
    assert_int_equal(x.f.idx[2], 0);
    stw_run r = x.f.runs[0];
    assert_int_equal(r.src, 1024);
    assert_int_equal(r.dst, 0);
    assert_int_equal(r.len, 12 + 4096 + 8192);
    assert_false(r.to_eof); /* the input goes on */
    done(&x);
}

/* A drop of whole blocks joins two runs into one chain; a drop of 404 bytes
 * leaves the larger side, and the I64 of the rest goes before the chain so
 * that the F32 after it stay aligned. */
static void test_chain_and_rest(void **state)
{
    (void)state;
    fixture x;
    add(&x, 0, "p", SURG_I64, 616, 1512);
    add(&x, 1, "a", SURG_F32, 4, 2128);         /* run 1: [2128, 2132) */
    add(&x, 2, "b", SURG_F32, 8192, 2132 + 404); /* run 2: after 404 dropped bytes */
    add(&x, 3, "c", SURG_F32, 20, 2132 + 404 + 8192);
    uint64_t residue = lay(&x, 4);
    /* runs: p+a (620 bytes, from 1512) and b+c (8212, from 2536); p+a ends at
     * 2132, not at 2536 modulo 4096: the chain is b+c. The rest (p, a: 620
     * bytes) cannot all go first (the chain would start at 620, not a
     * multiple of 8) nor after (8212 is not a multiple of 8, p is I64): p
     * goes first, a after. */
    assert_int_equal(x.f.n_runs, 1);
    assert_int_equal(x.f.idx[0], 0);
    assert_int_equal(x.f.idx[1], 2);
    assert_int_equal(x.f.idx[2], 3);
    assert_int_equal(x.f.idx[3], 1);
    assert_int_equal(x.f.runs[0].dst, 616);
    assert_int_equal(x.f.runs[0].len, 8212);
    assert_int_equal(residue, (2536 - 616) % B);
    assert_false(x.f.runs[0].to_eof);
    done(&x);
}

/* Made tensors and a copy misaligned in its input are the rest. */
static void test_misaligned_is_rest(void **state)
{
    (void)state;
    fixture x;
    add(&x, 0, "m", SURG_F32, 400, UINT64_MAX);
    add(&x, 1, "q", SURG_F32, 8192, 4098); /* not a multiple of 4 */
    assert_int_equal(lay(&x, 2), 0);
    assert_int_equal(x.f.n_runs, 0);
    assert_int_equal(x.f.idx[0], 0);
    assert_int_equal(x.f.idx[1], 1);
    done(&x);
}

static void test_span(void **state)
{
    (void)state;
    uint64_t lo, hi;
    stw_run r = {.dst = 5120, .len = 3 * B};
    assert_true(sh_span(&r, B, &lo, &hi));
    assert_int_equal(lo, 2 * B);
    assert_int_equal(hi, 4 * B);
    r.to_eof = true;
    assert_true(sh_span(&r, B, &lo, &hi));
    assert_int_equal(hi, 5120 + 3 * B);
    r = (stw_run){.dst = 5120, .len = 100};
    assert_false(sh_span(&r, B, &lo, &hi));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_run),
        cmocka_unit_test(test_chain_and_rest),
        cmocka_unit_test(test_misaligned_is_rest),
        cmocka_unit_test(test_span),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
