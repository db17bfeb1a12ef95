/* fuzz_zarr.c: libFuzzer harness for the zarr reader (runtime/zarr.h) and
 * the directory store (runtime/kv_dir.c). The input is a flags byte (bit 0:
 * zarr v3, else v2; bit 1: missing chunks are errors, else the fill value),
 * the metadata up to the first NUL byte, and after it the bytes of the
 * grid's first chunk (or shard). The harness makes a store of them — a/.zarray
 * or a/zarr.json, and the chunk under the key the metadata gives it — and
 * opens the array: refused metadata must come with an error diagnostic.
 * An accepted array of at most 4 MiB is decoded into a file, which must
 * then hold exactly its bytes; a failed decode must have reported an error.
 * The store is then listed, and every key must have the array's prefix. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "runtime/kvstore.h"
#include "runtime/zarr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The first chunk's key, as zarr.c makes it, made into directories. */
static void write_chunk(const char *store, const zarr_array *a, const uint8_t *b, size_t n)
{
    char key[FZ_PATH], path[FZ_PATH];
    size_t k = (size_t)snprintf(key, sizeof key, "a/%s", a->key_c ? "c" : a->rank ? "" : "0");
    for (uint32_t d = 0; d < a->rank && k + 4 < sizeof key; d++) {
        if (d || a->key_c)
            key[k++] = a->sep;
        key[k++] = '0';
        key[k] = '\0';
    }
    for (char *s = key; (s = strchr(s, '/')); s++) {
        *s = '\0';
        fz_join(path, sizeof path, store, key);
        mkdir(path, 0755);
        *s = '/';
    }
    fz_join(path, sizeof path, store, key);
    struct stat sb;
    if (stat(path, &sb) == 0) /* the key is a directory already ("c" beside "c/...") */
        return;
    fz_write(path, b, n);
}

static int each(void *ctx, const char *key, size_t n, const kv_value *v)
{
    (void)ctx;
    (void)v;
    if (n < 2 || memcmp(key, "a/", 2) != 0)
        fz_fail("a listed key is not under the array's directory", key);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int v3 = data[0] & 1, strict = data[0] & 2;
    const uint8_t *meta = data + 1, *nul = memchr(meta, 0, size - 1);
    size_t meta_n = nul ? (size_t)(nul - meta) : size - 1;
    const uint8_t *chunk = nul ? nul + 1 : NULL;
    size_t chunk_n = nul ? size - 1 - meta_n - 1 : 0;

    size_t total = 0;
    surg_sink sink = fz_sink(&total);
    const char *store = fz_path(0, "store");
    const char *out = fz_path(1, "out.raw");
    char dir[FZ_PATH], path[FZ_PATH];
    fz_empty_dir(store);
    mkdir(store, 0755);
    fz_join(dir, sizeof dir, store, "a");
    mkdir(dir, 0755);
    fz_join(path, sizeof path, dir, v3 ? "zarr.json" : ".zarray");
    fz_write(path, meta, meta_n);

    kv_store *s;
    if (kv_open_dir(store, &sink, &s) != SURG_OK)
        fz_fail("the store did not open", store);
    arena ar;
    ar_init(&ar);
    zarr_array *a = NULL;
    unsigned errors = sink.errors;
    surg_status st = zarr_open(&ar, s, "a", 0, &sink, &a);
    if (st != SURG_OK || !a) {
        if (a || sink.errors == errors)
            fz_fail("refused metadata gave an array or no error", path);
    } else {
        if (a->esize * 8 != surg_dtype_bits(a->dtype) || a->rank > SURG_MAX_RANK)
            fz_fail("the array's dtype or rank is wrong", path);
        if (chunk)
            write_chunk(store, a, chunk, chunk_n);
        if (a->nbytes <= (4u << 20)) {
            int fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (fd < 0)
                fz_fail("cannot make the output", out);
            errors = sink.errors;
            st = zarr_decode(a, s, !strict, fd, 0, fz_tmpdir(), &sink);
            struct stat sb;
            if (st != SURG_OK && sink.errors == errors)
                fz_fail("a failed decode reported no error", path);
            if (st == SURG_OK && (fstat(fd, &sb) != 0 || (uint64_t)sb.st_size != a->nbytes))
                fz_fail("the decoded array is not exactly its size", path);
            close(fd);
        }
    }
    int stopped;
    s->ops->list(s, "", &sink, each, NULL, &stopped);
    ar_free(&ar);
    kv_close(s);
    return 0;
}
