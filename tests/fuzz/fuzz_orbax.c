/* fuzz_orbax.c: libFuzzer harness for the Orbax reader's metadata. The
 * input is written as the _METADATA of two item directories the harness
 * makes at start-up: a per-array one (zarr v2 directories `a/` int32[3]
 * and `b.c/` float32[2], uncompressed, one chunk each) and an aggregate one
 * (its `checkpoint` msgpack holds `x` int8[2] in place, `a` =
 * "PLACEHOLDER://a" read from its zarr directory `a/`, and `n` = nil). Each
 * must be refused with an error diagnostic, or open into tables that keep
 * their invariants; then every tensor's bytes are read (decoding the zarr
 * arrays), and when all were readable the checkpoint is written as
 * safetensors and must reopen with the same tensors and bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "surg/surg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void zarr_dir(const char *item, const char *name, const char *dtype, unsigned n,
                     const void *bytes, size_t len)
{
    char dir[FZ_PATH], p[FZ_PATH], meta[512];
    fz_join(dir, sizeof dir, item, name);
    mkdir(dir, 0700);
    int k = snprintf(meta, sizeof meta,
                     "{\"chunks\":[%u],\"compressor\":null,\"dtype\":\"%s\",\"fill_value\":0,"
                     "\"filters\":null,\"order\":\"C\",\"shape\":[%u],\"zarr_format\":2}",
                     n, dtype, n);
    fz_join(p, sizeof p, dir, ".zarray");
    fz_write(p, meta, (size_t)k);
    fz_join(p, sizeof p, dir, "0");
    fz_write(p, bytes, len);
}

static const char *items[2];

static void make_items(void)
{
    static const int32_t a[3] = {1, 2, 3};
    static const float bc[2] = {0.5f, -2.0f};
    /* {"x": ext1([2], "int8", 07 09), "a": "PLACEHOLDER://a", "n": nil} */
    static const unsigned char aggregate[] = {
        0x83, 0xa1, 'x', 0xc7, 0x0b, 0x01, 0x93, 0x91, 0x02, 0xa4, 'i', 'n', 't', '8',
        0xc4, 0x02, 0x07, 0x09, 0xa1, 'a', 0xaf, 'P', 'L', 'A', 'C', 'E', 'H', 'O', 'L',
        'D', 'E', 'R', ':', '/', '/', 'a', 0xa1, 'n', 0xc0};
    if (items[0])
        return;
    items[0] = strdup(fz_path(4, "item"));
    items[1] = strdup(fz_path(5, "aggregate"));
    mkdir(items[0], 0700);
    mkdir(items[1], 0700);
    zarr_dir(items[0], "a", "<i4", 3, a, sizeof a);
    zarr_dir(items[0], "b.c", "<f4", 2, bc, sizeof bc);
    zarr_dir(items[1], "a", "<i4", 3, a, sizeof a);
    char p[FZ_PATH];
    fz_join(p, sizeof p, items[1], "checkpoint");
    fz_write(p, aggregate, sizeof aggregate);
}

static void one(const char *item, const uint8_t *data, size_t size, int slot)
{
    size_t total = 0;
    surg_sink sink = fz_sink(&total);
    char meta[FZ_PATH];
    fz_join(meta, sizeof meta, item, "_METADATA");
    fz_write(meta, data, size);
    surg_ckpt *ck = NULL;
    unsigned errors = sink.errors;
    if (surg_ckpt_open(item, &sink, &ck) != SURG_OK) {
        if (ck || sink.errors == errors)
            fz_fail("a refused _METADATA gave a checkpoint or no error", meta);
        return;
    }
    if (surg_ckpt_kind_of(ck) != SURG_CKPT_ORBAX)
        fz_fail("the directory opened as another kind", item);
    fz_check_tables(ck);
    if (fz_read_all(ck, &sink)) {
        const char *st = fz_path(slot, slot ? "agg.safetensors" : "item.safetensors");
        if (surg_ckpt_write(ck, st, NULL, &sink) != SURG_OK)
            fz_fail("writing safetensors of a readable checkpoint failed", st);
        surg_ckpt *copy = fz_reopen(st, &sink);
        fz_same_data(ck, copy, &sink);
        surg_ckpt_close(copy);
    }
    surg_ckpt_close(ck);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    make_items();
    one(items[0], data, size, 0);
    one(items[1], data, size, 1);
    return 0;
}
