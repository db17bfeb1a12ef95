/* test_threads.c: what threads share while they read one checkpoint.
 *
 * surg_ckpt_data from several threads at once, on an .npz whose arrays are
 * big-endian (each decoded into the checkpoint's one scratch file on first
 * use): every thread must see every array's values, which are built here
 * byte by byte as NumPy's format documents them (a stored zip entry per
 * NAME.npy, a version 1.0 header, '>i4' elements). And a directory
 * key-value store's gets from several threads at once: each thread's value
 * names its own key's file, and a message about it does not touch that
 * path. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "runtime/kvstore.h"
#include "testutil.h"

enum { N_ARRAYS = 16, N_ELEMS = 3000, N_THREADS = 8, ROUNDS = 12 };

/* ---- an .npz of big-endian int32 arrays, built by hand ------------------- */

static void put(unsigned char **p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        *(*p)++ = (unsigned char)(v >> (8 * i));
}

static int32_t value_of(int a, int k) { return a * 100000 + k * 7 - 5000; }

/* NAME.npy's bytes: magic, version 1.0, header length, the dict padded with
 * spaces and ended by a newline so the data starts at a multiple of 64. */
static unsigned char *npy(int a, size_t *len)
{
    char dict[128];
    int n = snprintf(dict, sizeof dict,
                     "{'descr': '>i4', 'fortran_order': False, 'shape': (%d,), }", N_ELEMS);
    size_t head = 10 + (size_t)n + 1;
    size_t pad = (64 - head % 64) % 64;
    size_t hlen = (size_t)n + pad + 1;
    *len = 10 + hlen + 4 * (size_t)N_ELEMS;
    unsigned char *b = malloc(*len), *p = b;
    assert_non_null(b);
    memcpy(p, "\x93NUMPY\x01\x00", 8);
    p += 8;
    put(&p, hlen, 2);
    memcpy(p, dict, (size_t)n);
    p += n;
    memset(p, ' ', pad);
    p += pad;
    *p++ = '\n';
    for (int k = 0; k < N_ELEMS; k++) {
        uint32_t v = (uint32_t)value_of(a, k);
        *p++ = (unsigned char)(v >> 24);
        *p++ = (unsigned char)(v >> 16);
        *p++ = (unsigned char)(v >> 8);
        *p++ = (unsigned char)v;
    }
    return b;
}

/* A zip of stored entries a00.npy ... (local headers, central directory,
 * end record), as APPNOTE.TXT lays them out. */
static void write_npz(const char *path)
{
    size_t cap = 1 << 20, at = 0;
    unsigned char *z = malloc(cap), *cd = malloc(1 << 16), *c = cd;
    assert_non_null(z);
    assert_non_null(cd);
    for (int a = 0; a < N_ARRAYS; a++) {
        char name[16];
        snprintf(name, sizeof name, "a%02d.npy", a);
        size_t nl = strlen(name), len;
        unsigned char *data = npy(a, &len);
        uint32_t crc = (uint32_t)crc32(0, data, (uInt)len);
        assert_true(at + 30 + nl + len < cap);
        unsigned char *p = z + at;
        put(&p, 0x04034b50, 4);
        put(&p, 20, 2);
        put(&p, 0, 2);
        put(&p, 0, 2); /* stored */
        put(&p, 0, 4); /* time, date */
        put(&p, crc, 4);
        put(&p, len, 4);
        put(&p, len, 4);
        put(&p, nl, 2);
        put(&p, 0, 2);
        memcpy(p, name, nl);
        p += nl;
        memcpy(p, data, len);
        p += len;
        put(&c, 0x02014b50, 4);
        put(&c, 20, 2);
        put(&c, 20, 2);
        put(&c, 0, 2);
        put(&c, 0, 2);
        put(&c, 0, 4);
        put(&c, crc, 4);
        put(&c, len, 4);
        put(&c, len, 4);
        put(&c, nl, 2);
        put(&c, 0, 2);
        put(&c, 0, 2);
        put(&c, 0, 2);
        put(&c, 0, 2);
        put(&c, 0, 4);
        put(&c, at, 4);
        memcpy(c, name, nl);
        c += nl;
        at = (size_t)(p - z);
        free(data);
    }
    size_t cd_len = (size_t)(c - cd);
    memcpy(z + at, cd, cd_len);
    unsigned char *p = z + at + cd_len;
    put(&p, 0x06054b50, 4);
    put(&p, 0, 4);
    put(&p, N_ARRAYS, 2);
    put(&p, N_ARRAYS, 2);
    put(&p, cd_len, 4);
    put(&p, at, 4);
    put(&p, 0, 2);
    write_file(path, z, (size_t)(p - z));
    free(z);
    free(cd);
}

typedef struct reader {
    surg_ckpt *ck;
    pthread_barrier_t *start;
    int first; /* the array this thread reads first; then all of them */
    int wrong; /* arrays whose values were not as built */
    int failed;
} reader;

static void *read_arrays(void *arg)
{
    reader *r = arg;
    pthread_barrier_wait(r->start);
    for (int j = 0; j < N_ARRAYS; j++) {
        int a = (r->first + j) % N_ARRAYS;
        char name[16];
        snprintf(name, sizeof name, "a%02d", a);
        size_t i = surg_ckpt_find(r->ck, name);
        const void *data = NULL;
        if (i == (size_t)-1 || surg_ckpt_data(r->ck, i, NULL, &data) != SURG_OK || !data) {
            r->failed++;
            continue;
        }
        int32_t v[N_ELEMS];
        memcpy(v, data, sizeof v); /* little-endian now */
        for (int k = 0; k < N_ELEMS; k++)
            if (v[k] != value_of(a, k)) {
                r->wrong++;
                break;
            }
    }
    return NULL;
}

/* Threads that ask for decoded arrays of one checkpoint at once all get
 * their values: one scratch file, each array decoded once. */
static void test_ckpt_data_threads(void **state)
{
    (void)state;
    const char *path = tmp_path("be.npz");
    write_npz(path);
    for (int round = 0; round < ROUNDS; round++) {
        surg_ckpt *ck = NULL;
        assert_int_equal(surg_ckpt_open(path, NULL, &ck), SURG_OK);
        assert_int_equal(surg_ckpt_count(ck), N_ARRAYS);
        assert_true(surg_ckpt_decoded(ck, 0));
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, N_THREADS);
        pthread_t tid[N_THREADS];
        reader r[N_THREADS];
        for (int t = 0; t < N_THREADS; t++) {
            /* Pairs of threads start on the same array. */
            r[t] = (reader){.ck = ck, .start = &start, .first = (t / 2) * 3 % N_ARRAYS};
            assert_int_equal(pthread_create(&tid[t], NULL, read_arrays, &r[t]), 0);
        }
        int wrong = 0, failed = 0;
        for (int t = 0; t < N_THREADS; t++) {
            pthread_join(tid[t], NULL);
            wrong += r[t].wrong;
            failed += r[t].failed;
        }
        pthread_barrier_destroy(&start);
        surg_ckpt_close(ck);
        assert_int_equal(failed, 0);
        assert_int_equal(wrong, 0);
    }
    tmp_cleanup();
}

/* ---- a directory store's gets from several threads ------------------------- */

enum { N_KEYS = 24, GETS = 4000 };

typedef struct getter {
    kv_store *kv;
    pthread_barrier_t *start;
    int first;
    int wrong;
} getter;

static void *get_keys(void *arg)
{
    getter *g = arg;
    pthread_barrier_wait(g->start);
    for (int j = 0; j < GETS; j++) {
        int k = (g->first + j) % N_KEYS;
        char key[32], want[4096];
        snprintf(key, sizeof key, "arr%d/%d.0", k % 3, k);
        snprintf(want, sizeof want, "%s/%s", g->kv->root, key);
        kv_value v;
        bool found = false;
        if (kv_get(g->kv, key, NULL, &v, &found) != SURG_OK || !found || !v.file ||
            strcmp(v.file, want) != 0 || v.length != (uint64_t)k + 1) {
            g->wrong++;
            continue;
        }
        /* The value read through the path the get gave: its own bytes. */
        unsigned char b[64];
        kv_reader rd;
        kv_reader_init(&rd, g->kv, &v, key);
        surg_status st = kv_reader_read(&rd, 0, b, (size_t)v.length, NULL);
        kv_reader_close(&rd);
        if (st != SURG_OK || b[0] != (unsigned char)k)
            g->wrong++;
    }
    return NULL;
}

static void test_dir_store_threads(void **state)
{
    (void)state;
    char dir[1024], file[1200];
    snprintf(dir, sizeof dir, "%s", tmp_path("store"));
    assert_int_equal(mkdir(dir, 0700), 0);
    for (int s = 0; s < 3; s++) {
        snprintf(file, sizeof file, "%s/arr%d", dir, s);
        assert_int_equal(mkdir(file, 0700), 0);
    }
    for (int k = 0; k < N_KEYS; k++) {
        unsigned char b[64];
        memset(b, k, sizeof b);
        snprintf(file, sizeof file, "%s/arr%d/%d.0", dir, k % 3, k);
        write_file(file, b, (size_t)k + 1);
    }
    kv_store *kv = NULL;
    assert_int_equal(kv_open_dir(dir, NULL, &kv), SURG_OK);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N_THREADS);
    pthread_t tid[N_THREADS];
    getter g[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        g[t] = (getter){.kv = kv, .start = &start, .first = t * 5};
        assert_int_equal(pthread_create(&tid[t], NULL, get_keys, &g[t]), 0);
    }
    int wrong = 0;
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(tid[t], NULL);
        wrong += g[t].wrong;
    }
    pthread_barrier_destroy(&start);
    kv_close(kv);
    assert_int_equal(wrong, 0);
    tmp_cleanup();
}

typedef struct said {
    char code[32], file[1200];
} said;

static void say(const surg_diag *d, void *user)
{
    said *s = user;
    snprintf(s->code, sizeof s->code, "%s", d->code);
    snprintf(s->file, sizeof s->file, "%s", d->file ? d->file : "");
}

/* A value's file turned into a link between the get and the read: the
 * message names the key's path, made apart from the path the get gave
 * (which the opening is reading from). */
static void test_dir_store_link_message(void **state)
{
    (void)state;
    char dir[1024], file[1200], other[1200];
    snprintf(dir, sizeof dir, "%s", tmp_path("store"));
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(file, sizeof file, "%s/sub", dir);
    assert_int_equal(mkdir(file, 0700), 0);
    snprintf(file, sizeof file, "%s/sub/0.0", dir);
    snprintf(other, sizeof other, "%s/sub/1.0", dir);
    write_file(file, "abcd", 4);
    write_file(other, "wxyz", 4);
    kv_store *kv = NULL;
    assert_int_equal(kv_open_dir(dir, NULL, &kv), SURG_OK);
    kv_value v;
    bool found = false;
    assert_int_equal(kv_get(kv, "sub/0.0", NULL, &v, &found), SURG_OK);
    assert_true(found);
    assert_string_equal(v.file, file);
    assert_int_equal(unlink(file), 0);
    assert_int_equal(symlink("1.0", file), 0);
    said s = {{0}, {0}};
    surg_sink sink = {.fn = say, .user = &s};
    unsigned char b[4];
    kv_reader rd;
    kv_reader_init(&rd, kv, &v, "sub/0.0");
    assert_int_equal(kv_reader_read(&rd, 0, b, 4, &sink), SURG_EINVALID);
    kv_reader_close(&rd);
    assert_string_equal(s.code, "kv-link");
    assert_string_equal(s.file, file);
    assert_string_equal(v.file, file);
    kv_close(kv);
    tmp_cleanup();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ckpt_data_threads),
        cmocka_unit_test(test_dir_store_threads),
        cmocka_unit_test(test_dir_store_link_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
