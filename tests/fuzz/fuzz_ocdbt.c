/* fuzz_ocdbt.c: libFuzzer harness for the OCDBT reader (runtime/ocdbt.c).
 * The input is a database in pieces: split at each "\n--ocdbt--\n" into
 * manifest.ocdbt, then d/0 and d/1 (the data files a seed's tables name),
 * written into an empty directory. So that mutations reach past the
 * CRC-32C of each object, an input of even length has its objects'
 * checksums made right first (each piece read as objects one after
 * another from its start, the manifest's length set to its piece's); odd
 * ones keep theirs, so wrong checksums are fuzzed too. It must be refused with an error
 * diagnostic, or open into a store whose keys are strictly increasing,
 * each found by get with the same value, each listed under its own prefix,
 * with inline bytes readable and file ranges inside their files. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "runtime/kvstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SEP "\n--ocdbt--\n"

typedef struct walk {
    kv_store *s;
    surg_sink *sink;
    char *prev;
    size_t prev_len, n;
    int first;
} walk;

static int same_value(const kv_value *a, const kv_value *b)
{
    if (a->length != b->length || !a->bytes != !b->bytes)
        return 0;
    if (a->bytes)
        return a->bytes == b->bytes;
    return strcmp(a->file, b->file) == 0 && a->offset == b->offset;
}

static int count_one(void *ctx, const char *key, size_t key_len, const kv_value *v)
{
    (void)key;
    (void)key_len;
    (void)v;
    (*(size_t *)ctx)++;
    return 0;
}

static int check_entry(void *ctx, const char *key, size_t key_len, const kv_value *v)
{
    walk *w = ctx;
    static volatile unsigned sum;
    if (!w->first) {
        size_t m = w->prev_len < key_len ? w->prev_len : key_len;
        int c = memcmp(w->prev, key, m);
        if (c > 0 || (c == 0 && w->prev_len >= key_len))
            fz_fail("keys not strictly increasing", NULL);
    }
    w->first = 0;
    free(w->prev);
    w->prev = malloc(key_len + 1);
    if (!w->prev)
        abort();
    memcpy(w->prev, key, key_len);
    w->prev_len = key_len;
    w->n++;
    if (key[key_len] != 0)
        fz_fail("a key is not NUL-terminated", NULL);
    if (v->bytes) {
        unsigned s = 0;
        for (uint64_t i = 0; i < v->length; i++)
            s += v->bytes[i];
        sum += s;
        (void)sum;
    } else {
        struct stat sb;
        if (!v->file || stat(v->file, &sb) != 0 || v->offset + v->length < v->offset ||
            v->offset + v->length > (uint64_t)sb.st_size)
            fz_fail("a value's file range is not inside its file", v->file);
    }
    /* Keys without a NUL inside are found by get, with the same value, and
     * listed under themselves as a prefix. */
    if (strlen(key) == key_len) {
        kv_value g;
        bool found = false;
        if (kv_get(w->s, key, w->sink, &g, &found) != SURG_OK || !found || !same_value(&g, v))
            fz_fail("get does not give a listed key's value", key);
        size_t under = 0;
        int stopped;
        if (w->s->ops->list(w->s, key, w->sink, count_one, &under, &stopped) != SURG_OK ||
            under < 1)
            fz_fail("a key is not listed under its own prefix", key);
    }
    return 0;
}

static uint32_t crc32c_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

/* Make the checksums of the objects laid end to end from p's start right
 * (and the manifest's length its piece's). */
static void fix_objects(uint8_t *p, size_t n, int is_manifest)
{
    while (n >= 18) {
        uint32_t magic = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (magic != 0x0cdb3a2au && magic != 0x0cdb20deu && magic != 0x0cdb1234u)
            return;
        uint64_t len = 0;
        if (is_manifest)
            for (int i = 0; i < 8; i++)
                p[4 + i] = (uint8_t)((uint64_t)n >> (8 * i));
        for (int i = 7; i >= 0; i--)
            len = len << 8 | p[4 + i];
        if (len < 18 || len > n)
            return;
        uint32_t c = crc32c_of(p, (size_t)len - 4);
        for (int i = 0; i < 4; i++)
            p[len - 4 + i] = (uint8_t)(c >> (8 * i));
        p += len;
        n -= (size_t)len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t total = 0;
    surg_sink sink = fz_sink(&total);
    const char *dir = fz_tmpdir();
    fz_empty_dir(dir);
    const char *ddir = fz_path(0, "d");
    if (mkdir(ddir, 0700) != 0)
        fz_fail("cannot make the data directory", ddir);
    const char *names[3] = {fz_path(1, "manifest.ocdbt"), fz_path(2, "d/0"), fz_path(3, "d/1")};
    const uint8_t *p = data, *end = data + size;
    for (int part = 0; part < 3; part++) {
        const uint8_t *cut = NULL;
        for (const uint8_t *q = p; part < 2 && q + sizeof SEP - 1 <= end; q++)
            if (memcmp(q, SEP, sizeof SEP - 1) == 0) {
                cut = q;
                break;
            }
        const uint8_t *stop = cut ? cut : end;
        if (part == 0 || p < end || cut) {
            size_t n = (size_t)(stop - p);
            uint8_t *piece = malloc(n ? n : 1);
            if (!piece)
                abort();
            memcpy(piece, p, n);
            if (size % 2 == 0)
                fix_objects(piece, n, part == 0);
            fz_write(names[part], piece, n);
            free(piece);
        }
        if (!cut)
            break;
        p = cut + sizeof SEP - 1;
    }
    kv_store *s = NULL;
    unsigned errors = sink.errors;
    if (kv_open_ocdbt(dir, &sink, &s) != SURG_OK) {
        if (s || sink.errors == errors)
            fz_fail("a refused database gave a store or no error", dir);
        return 0;
    }
    if (sink.errors != errors)
        fz_fail("an opened database reported an error", dir);
    walk w = {.s = s, .sink = &sink, .first = 1};
    int stopped = 0;
    if (s->ops->list(s, "", &sink, check_entry, &w, &stopped) != SURG_OK || stopped)
        fz_fail("listing an open database failed", dir);
    /* The empty key is looked up like any other (it may be there). */
    kv_value v;
    bool found = true;
    if (kv_get(s, "", &sink, &v, &found) != SURG_OK)
        fz_fail("get of the empty key failed", dir);
    free(w.prev);
    kv_close(s);
    return 0;
}
