/* fuzz_index.c: libFuzzer harness for sharded checkpoints. The input is a
 * model.safetensors.index.json beside four small valid shards made once at
 * start-up:
 *
 *   a.safetensors  x U8[2] = {7, 9}, y F32[1] = {1.5}; metadata origin=a
 *   b.safetensors  z I16[3] = {1, 2, 3};               metadata origin=b
 *   c.safetensors  no tensors;                         metadata only=c
 *   d.safetensors  x U8[2] = {7, 9} again, w BOOL[0]   (no metadata)
 *   e.safetensors  a directory, f.safetensors a FIFO   (refused, never waited on)
 *
 * The index must be refused with an error diagnostic, or open into tables
 * that keep their invariants, holding only those tensors with exactly their
 * types and bytes; the set is then written as one file, which must reopen
 * with the same tensors and bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "surg/surg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned fz_sum;

/* A safetensors file: the header padded with spaces to a multiple of 8. */
static void make_shard(const char *name, const char *header, const void *bytes, size_t n)
{
    size_t hlen = strlen(header), padded = (hlen + 7) / 8 * 8;
    uint8_t file[512];
    if (8 + padded + n > sizeof file)
        abort();
    for (int i = 0; i < 8; i++)
        file[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(file + 8, header, hlen);
    memset(file + 8 + hlen, ' ', padded - hlen);
    if (n)
        memcpy(file + 8 + padded, bytes, n);
    fz_write(fz_path(5, name), file, 8 + padded + n);
}

static void make_shards(void)
{
    static int made;
    if (made++)
        return;
    static const uint8_t a[] = {0x00, 0x00, 0xC0, 0x3F, 7, 9};
    make_shard("a.safetensors",
               "{\"__metadata__\":{\"format\":\"pt\",\"origin\":\"a\"},"
               "\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]}}",
               a, sizeof a);
    static const uint8_t b[] = {1, 0, 2, 0, 3, 0};
    make_shard("b.safetensors",
               "{\"__metadata__\":{\"format\":\"pt\",\"origin\":\"b\"},"
               "\"z\":{\"dtype\":\"I16\",\"shape\":[3],\"data_offsets\":[0,6]}}",
               b, sizeof b);
    make_shard("c.safetensors", "{\"__metadata__\":{\"only\":\"c\"}}", NULL, 0);
    static const uint8_t d[] = {7, 9};
    make_shard("d.safetensors",
               "{\"x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
               "\"w\":{\"dtype\":\"BOOL\",\"shape\":[0],\"data_offsets\":[2,2]}}",
               d, sizeof d);
    if (mkdir(fz_path(5, "e.safetensors"), 0700) != 0 ||
        mkfifo(fz_path(5, "f.safetensors"), 0600) != 0) {
        perror("fuzz_index: special shards");
        abort();
    }
}

/* What each tensor must be, wherever the index found it. */
static void check_known(const surg_tensor_info *t, const uint8_t *p)
{
    static const struct {
        const char *name;
        surg_dtype dtype;
        uint64_t dim;
        const char *bytes;
        size_t n;
    } known[] = {
        {"w", SURG_BOOL, 0, "", 0},
        {"x", SURG_U8, 2, "\x07\x09", 2},
        {"y", SURG_F32, 1, "\x00\x00\xC0\x3F", 4},
        {"z", SURG_I16, 3, "\x01\x00\x02\x00\x03\x00", 6},
    };
    for (size_t k = 0; k < sizeof known / sizeof *known; k++)
        if (strcmp(t->name, known[k].name) == 0) {
            if (t->dtype != known[k].dtype || t->rank != 1 || t->shape[0] != known[k].dim ||
                t->nbytes != known[k].n || memcmp(p, known[k].bytes, known[k].n) != 0)
                fz_fail("a tensor is not what its shard holds", t->name);
            return;
        }
    fz_fail("a tensor no shard holds", t->name);
}

static const uint8_t *tensor_bytes(surg_ckpt *ck, size_t i, surg_sink *sink)
{
    const void *p = NULL;
    if (surg_ckpt_data(ck, i, sink, &p) != SURG_OK || !p)
        fz_fail("surg_ckpt_data failed on an open checkpoint",
                surg_ckpt_tensor(ck, i)->name);
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    make_shards();
    const char *index = fz_path(0, "model.safetensors.index.json");
    const char *out = fz_path(1, "out.safetensors");
    fz_write(index, data, size);

    size_t total = 0;
    surg_sink sink = fz_sink(&total);
    surg_ckpt *ck = NULL;
    if (surg_ckpt_open(index, &sink, &ck) != SURG_OK) {
        if (ck || sink.errors == 0)
            fz_fail("a refused index gave a checkpoint or no error", NULL);
        return 0;
    }
    if (surg_ckpt_kind_of(ck) != SURG_CKPT_SHARDED)
        fz_fail("an index opened as another kind", NULL);
    fz_check_tables(ck);
    for (size_t i = 0; i < surg_ckpt_count(ck); i++) {
        const surg_tensor_info *t = surg_ckpt_tensor(ck, i);
        const uint8_t *p = tensor_bytes(ck, i, &sink);
        unsigned s = 0;
        for (uint64_t k = 0; k < t->nbytes; k++)
            s += p[k];
        fz_sum += s;
        check_known(t, p);
    }
    for (size_t i = 0; i < surg_ckpt_meta_count(ck); i++) {
        const surg_meta_entry *m = surg_ckpt_meta(ck, i);
        if (strcmp(m->key, "format") != 0 && strcmp(m->key, "origin") != 0 &&
            strcmp(m->key, "only") != 0)
            fz_fail("metadata no shard holds", m->key);
    }

    char *schema = NULL;
    if (surg_ckpt_schema_json(ck, &schema) != SURG_OK || !schema)
        fz_fail("surg_ckpt_schema_json failed", NULL);
    free(schema);

    if (surg_ckpt_write(ck, out, NULL, &sink) != SURG_OK)
        fz_fail("surg_ckpt_write failed on an open checkpoint", out);
    surg_ckpt *copy = NULL;
    if (surg_ckpt_open(out, &sink, &copy) != SURG_OK)
        fz_fail("the written checkpoint does not open", out);
    fz_same_tensors(ck, copy);
    for (size_t i = 0; i < surg_ckpt_count(copy); i++)
        check_known(surg_ckpt_tensor(copy, i), tensor_bytes(copy, i, &sink));
    surg_ckpt_close(copy);
    surg_ckpt_close(ck);
    return 0;
}
