/* fuzz_pt.c: libFuzzer harness for the PyTorch reader (the zip archive,
 * the pickle interpreter, views and ties). The input is read twice: as a
 * .pt file, and as the data.pkl of an archive the harness makes around it
 * (beside four storages, "0" f32[6], "1" f16[4], "2" i64[1] and "3" of 8
 * bytes; big-endian when the input's length is odd), so that mutations
 * reach the pickle without breaking the archive's CRC. Each must be refused
 * with an error diagnostic, or open into tables that keep their invariants,
 * with every recorded tie naming a tensor that is there under a name that is
 * not. Then every tensor's bytes are read (gathering strided and big-endian
 * views); when all were readable the checkpoint is written out as
 * safetensors, which must reopen with the same tensors, bytes and ties. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "surg/surg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* "surg.ties" is a flat JSON object of names made by the reader: each key
 * (the tied name) is no tensor, each value is one. Names here hold no
 * quote or backslash only when the reader escaped none, so the check reads
 * the simple cases and skips names with escapes. */
static void check_ties(const surg_ckpt *ck)
{
    const char *v = fz_meta(ck, "surg.ties");
    if (!v)
        return;
    if (v[0] != '{')
        fz_fail("surg.ties is not an object", v);
    const char *p = v + 1;
    char name[2][512];
    while (*p == '"') {
        for (int k = 0; k < 2; k++) {
            const char *end = strchr(p + 1, '"');
            if (!end || memchr(p + 1, '\\', (size_t)(end - p - 1)))
                return;
            size_t n = (size_t)(end - p - 1);
            if (n >= sizeof name[k])
                return;
            memcpy(name[k], p + 1, n);
            name[k][n] = '\0';
            p = end + 1;
            if (k == 0 && *p++ != ':')
                fz_fail("surg.ties is malformed", v);
        }
        if (surg_ckpt_find(ck, name[0]) != (size_t)-1)
            fz_fail("a tied name is also a tensor", name[0]);
        if (surg_ckpt_find(ck, name[1]) == (size_t)-1)
            fz_fail("a tie names a tensor that is not there", name[1]);
        if (*p == ',')
            p++;
    }
    if (*p != '}')
        fz_fail("surg.ties is malformed", v);
}

static void same_data(surg_ckpt *a, surg_ckpt *b, surg_sink *sink)
{
    fz_same_data(a, b, sink);
    const char *ta = fz_meta(a, "surg.ties"), *tb = fz_meta(b, "surg.ties");
    if ((ta || tb) && (!ta || !tb || strcmp(ta, tb) != 0))
        fz_fail("the ties changed", ta ? ta : tb);
}

/* ---- an archive around a pickle ---------------------------------------- */

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c >> 1 ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

typedef struct zbuf {
    uint8_t *p;
    size_t n, cap;
} zbuf;

static void put(zbuf *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_le(zbuf *b, uint32_t v, int n)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, (size_t)n);
}

typedef struct zfile {
    const char *name;
    const uint8_t *data;
    size_t len;
} zfile;

/* One header of a stored entry: local (sig 0x04034b50) or central. */
static void header(zbuf *b, const zfile *f, uint32_t at, bool central)
{
    put_le(b, central ? 0x02014b50u : 0x04034b50u, 4);
    if (central)
        put_le(b, 20, 2);
    put_le(b, 20, 2);
    put_le(b, 0, 2); /* flags */
    put_le(b, 0, 2); /* stored */
    put_le(b, 0, 4); /* time, date */
    put_le(b, crc32_of(f->data, f->len), 4);
    put_le(b, (uint32_t)f->len, 4);
    put_le(b, (uint32_t)f->len, 4);
    put_le(b, (uint32_t)strlen(f->name), 2);
    put_le(b, 0, 2);
    if (central) {
        put_le(b, 0, 4); /* comment length, disk */
        put_le(b, 0, 4); /* attributes */
        put_le(b, 0, 4);
        put_le(b, at, 4);
    }
    put(b, f->name, strlen(f->name));
}

static void write_archive(const char *path, const uint8_t *pkl, size_t n)
{
    static const uint8_t f32[24], f16[8], i64[8], raw[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    zfile files[] = {{"archive/data.pkl", pkl, n},   {"archive/data/0", f32, sizeof f32},
                     {"archive/data/1", f16, sizeof f16}, {"archive/data/2", i64, sizeof i64},
                     {"archive/data/3", raw, sizeof raw}, {"archive/byteorder", (const uint8_t *)"big", 3}};
    size_t count = n % 2 ? 6 : 5;
    uint32_t at[6];
    zbuf b = {0};
    for (size_t i = 0; i < count; i++) {
        at[i] = (uint32_t)b.n;
        header(&b, &files[i], 0, false);
        put(&b, files[i].data, files[i].len);
    }
    uint32_t dir = (uint32_t)b.n;
    for (size_t i = 0; i < count; i++)
        header(&b, &files[i], at[i], true);
    uint32_t dir_size = (uint32_t)b.n - dir;
    put_le(&b, 0x06054b50u, 4);
    put_le(&b, 0, 4);
    put_le(&b, (uint32_t)count, 2);
    put_le(&b, (uint32_t)count, 2);
    put_le(&b, dir_size, 4);
    put_le(&b, dir, 4);
    put_le(&b, 0, 2);
    fz_write(path, b.p, b.n);
    free(b.p);
}

/* ---- one file ------------------------------------------------------------ */

static void one(const char *in, surg_sink sink)
{
    const char *st = fz_path(1, "out.safetensors");
    surg_ckpt *ck = NULL;
    if (surg_ckpt_open(in, &sink, &ck) != SURG_OK) {
        if (ck || sink.errors == 0)
            fz_fail("a refused file gave a checkpoint or no error", in);
        return;
    }
    if (surg_ckpt_kind_of(ck) != SURG_CKPT_TORCH)
        fz_fail("the file opened as another kind", in);
    fz_check_tables(ck);
    check_ties(ck);
    if (fz_read_all(ck, &sink)) {
        if (surg_ckpt_write(ck, st, NULL, &sink) != SURG_OK)
            fz_fail("writing safetensors of a readable checkpoint failed", st);
        surg_ckpt *copy = fz_reopen(st, &sink);
        same_data(ck, copy, &sink);
        surg_ckpt_close(copy);
    }
    surg_ckpt_close(ck);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t total = 0;
    surg_sink sink = fz_sink(&total);
    const char *in = fz_path(0, "in.pt");
    fz_write(in, data, size);
    one(in, sink);
    const char *wrapped = fz_path(2, "wrapped.pt");
    write_archive(wrapped, data, size);
    one(wrapped, sink);
    return 0;
}
