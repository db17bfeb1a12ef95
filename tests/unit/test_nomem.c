/* test_nomem.c: allocation failure injected at every allocation site that
 * parsing, compiling and planning reach, one site at a time: the N-th call
 * to malloc, calloc, realloc or an anonymous mmap fails, for N = 1, 2, …
 * until the whole pipeline succeeds. Each failure must come back as
 * SURG_ENOMEM with an "out of memory" diagnostic — never a crash, never a
 * wrong result — and must leak nothing (the sanitizer build's leak checker
 * runs at exit). The allocators are wrapped at link time (--wrap). */
#include <errno.h>
#include <execinfo.h>
#include <stdbool.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "testutil.h"

#ifndef SURG_EXAMPLES
#define SURG_EXAMPLES "examples"
#endif

/* -1: never fail; else the number of allocations left before one fails. */
static long countdown = -1;
static bool failed;
static void *where[16]; /* the failed allocation's call stack, for the report */
static int depth;

static bool fail_now(void)
{
    if (countdown < 0)
        return false;
    if (countdown-- == 0) {
        failed = true;
        long saved = countdown;
        countdown = -1; /* backtrace may allocate */
        depth = backtrace(where, 16);
        countdown = saved;
        return true;
    }
    return false;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return fail_now() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if ((flags & MAP_ANONYMOUS) && fail_now()) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return __real_mmap(addr, len, prot, flags, fd, off);
}

/* Parse, open, compile, plan, and print; every object freed before
 * returning. */
static surg_status pipeline(const char *recipe, const char *from, recorder *r)
{
    surg_recipe *rc = NULL;
    surg_ckpt *ck = NULL;
    surg_program *p = NULL;
    surg_plan *pl = NULL;
    surg_status st = surg_recipe_load(recipe, &r->sink, &rc);
    if (!st)
        st = surg_ckpt_open(from, &r->sink, &ck);
    if (!st)
        st = surg_compile(rc, ck, &r->sink, &p);
    if (!st)
        st = surg_plan_build(p, 2, &pl);
    /* The texts made from them: each NULL when out of memory. */
    char *(*texts[])(const surg_plan *) = {surg_plan_text, surg_plan_json};
    for (size_t i = 0; !st && i < sizeof texts / sizeof *texts; i++) {
        char *text = texts[i](pl);
        st = text ? SURG_OK : SURG_ENOMEM;
        free(text);
    }
    if (!st) {
        char *dump = surg_program_dump(p);
        st = dump ? SURG_OK : SURG_ENOMEM;
        free(dump);
    }
    surg_plan_free(pl);
    surg_program_free(p);
    surg_ckpt_close(ck);
    surg_recipe_free(rc);
    return st;
}

static void every_site(const char *recipe, const char *from)
{
    recorder r;
    long n;
    for (n = 0; n < 100000; n++) {
        rec_init(&r);
        failed = false;
        countdown = n;
        surg_status st = pipeline(recipe, from, &r);
        countdown = -1;
        if (!failed) {
            assert_int_equal(st, SURG_OK); /* nothing failed: it all works */
            break;
        }
        if (st != SURG_ENOMEM) {
            backtrace_symbols_fd(where, depth, STDERR_FILENO);
            fail_msg("%s: allocation %ld failed, but the result was status %d (%s)", recipe,
                     n + 1, (int)st, r.messages);
        }
    }
    assert_true(n > 10); /* the sites were really reached */
}

static void test_mlp_port_lora(void **state)
{
    (void)state;
    every_site(SURG_EXAMPLES "/mlp_port_lora.surg", SURG_EXAMPLES "/mlp/two_layer_mlp.json");
}

static void test_cnn_normalize(void **state)
{
    (void)state;
    every_site(SURG_EXAMPLES "/cnn_normalize.surg", SURG_GOLDEN "/check/cnn.json");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_port_lora),
        cmocka_unit_test(test_cnn_normalize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
