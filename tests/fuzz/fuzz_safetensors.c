/* fuzz_safetensors.c: libFuzzer harness for the safetensors reader and
 * writer. The input is a .safetensors file. It must be refused with an error
 * diagnostic, or open into tables that keep their invariants; then every
 * tensor's bytes are read, the schema is printed, and the checkpoint is
 * written back out — as one file and as shards — and both copies must reopen
 * with the same tensors, bytes and metadata. Rewriting the copy must give the
 * very same bytes (the writer is deterministic and its layout canonical). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "surg/surg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned fz_sum;

static const uint8_t *tensor_bytes(surg_ckpt *ck, size_t i, surg_sink *sink)
{
    const void *p = NULL;
    if (surg_ckpt_data(ck, i, sink, &p) != SURG_OK || !p)
        fz_fail("surg_ckpt_data failed on an open checkpoint",
                surg_ckpt_tensor(ck, i)->name);
    return p;
}

/* Same tensors with the same bytes. */
static void same_data(surg_ckpt *a, surg_ckpt *b, surg_sink *sink)
{
    fz_same_tensors(a, b);
    for (size_t i = 0; i < surg_ckpt_count(a); i++) {
        const uint8_t *x = tensor_bytes(a, i, sink), *y = tensor_bytes(b, i, sink);
        if (memcmp(x, y, surg_ckpt_tensor(a, i)->nbytes) != 0)
            fz_fail("a tensor's bytes changed", surg_ckpt_tensor(a, i)->name);
    }
}

/* The copy keeps every metadata entry but "surg.output", adds "format":
 * "pt" unless there, and, when sharded, "surg.output": "sharded" (the mark
 * of a sharded output's files, which no other output carries). */
static void same_meta(const surg_ckpt *in, const surg_ckpt *out, bool sharded)
{
    size_t kept = 0;
    for (size_t i = 0; i < surg_ckpt_meta_count(in); i++) {
        const surg_meta_entry *e = surg_ckpt_meta(in, i);
        if (strcmp(e->key, "surg.output") == 0)
            continue;
        const char *v = fz_meta(out, e->key);
        if (!v || strcmp(v, e->value) != 0)
            fz_fail("a metadata entry was lost or changed", e->key);
        kept++;
    }
    const char *format = fz_meta(out, "format"), *mark = fz_meta(out, "surg.output");
    size_t want = kept + (fz_meta(in, "format") ? 0u : 1u) + (sharded ? 1u : 0u);
    if (surg_ckpt_meta_count(out) != want || !format ||
        (!fz_meta(in, "format") && strcmp(format, "pt") != 0))
        fz_fail("the copy's metadata is not the input's plus \"format\"", NULL);
    if (sharded ? !mark || strcmp(mark, "sharded") != 0 : mark != NULL)
        fz_fail("the mark of a sharded output is missing or misplaced", NULL);
}

static surg_ckpt *reopen(const char *path, surg_sink *sink)
{
    surg_ckpt *ck = NULL;
    if (surg_ckpt_open(path, sink, &ck) != SURG_OK || !ck)
        fz_fail("the written checkpoint does not open", path);
    fz_check_tables(ck);
    return ck;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = fz_path(0, "in.safetensors");
    const char *out = fz_path(1, "out.safetensors");
    const char *again = fz_path(2, "again.safetensors");
    const char *shards = fz_path(3, "sharded");
    fz_write(in, data, size);

    size_t total = 0;
    surg_sink sink = fz_sink(&total);
    surg_ckpt *ck = NULL;
    if (surg_ckpt_open(in, &sink, &ck) != SURG_OK) {
        if (ck || sink.errors == 0)
            fz_fail("a refused file gave a checkpoint or no error", NULL);
        return 0;
    }
    if (surg_ckpt_kind_of(ck) != SURG_CKPT_SAFETENSORS)
        fz_fail("a .safetensors file opened as another kind", NULL);
    fz_check_tables(ck);

    uint64_t bytes = 0;
    for (size_t i = 0; i < surg_ckpt_count(ck); i++) {
        const surg_tensor_info *t = surg_ckpt_tensor(ck, i);
        const uint8_t *p = tensor_bytes(ck, i, &sink);
        unsigned s = 0;
        for (uint64_t k = 0; k < t->nbytes; k++)
            s += p[k];
        fz_sum += s;
        bytes += t->nbytes;
    }
    if (bytes > size)
        fz_fail("the tensors hold more bytes than the file", NULL);

    char *schema = NULL;
    if (surg_ckpt_schema_json(ck, &schema) != SURG_OK || !schema)
        fz_fail("surg_ckpt_schema_json failed", NULL);
    fz_sum += (unsigned)strlen(schema);
    free(schema);

    /* One file, reopened; then written again, which must not change a byte. */
    if (surg_ckpt_write(ck, out, NULL, &sink) != SURG_OK)
        fz_fail("surg_ckpt_write failed on an open checkpoint", out);
    surg_ckpt *copy = reopen(out, &sink);
    same_data(ck, copy, &sink);
    same_meta(ck, copy, false);
    if (surg_ckpt_write(copy, again, NULL, &sink) != SURG_OK)
        fz_fail("surg_ckpt_write failed on its own output", again);
    size_t n1, n2;
    uint8_t *b1 = fz_slurp(out, &n1), *b2 = fz_slurp(again, &n2);
    if (n1 != n2 || memcmp(b1, b2, n1) != 0)
        fz_fail("rewriting the output changed its bytes", NULL);
    free(b1);
    free(b2);
    surg_ckpt_close(copy);

    /* Shards of about a third of the data each (one file when it fits). */
    fz_empty_dir(shards);
    surg_write_opts opts = {.max_shard_size = bytes / 3 + 1};
    if (surg_ckpt_write(ck, shards, &opts, &sink) != SURG_OK)
        fz_fail("the sharded surg_ckpt_write failed", shards);
    surg_ckpt *sharded = reopen(shards, &sink);
    same_data(ck, sharded, &sink);
    same_meta(ck, sharded, true);
    surg_ckpt_close(sharded);

    surg_ckpt_close(ck);
    return 0;
}
