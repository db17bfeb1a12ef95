/* fuzz_msgpack.c: libFuzzer harness for the Flax msgpack reader and writer.
 * The input is written as a .msgpack, and must be refused with an error
 * diagnostic or open into tables that keep their invariants. Then every
 * tensor's bytes are read (joining chunked arrays); when all were readable
 * the checkpoint is written out as a .msgpack and as safetensors, and both
 * copies must reopen with the same tensors and bytes, the .msgpack copy
 * rewriting to the very same bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "surg/surg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static surg_ckpt *reopen(const char *path, surg_sink *sink)
{
    surg_ckpt *ck = NULL;
    if (surg_ckpt_open(path, sink, &ck) != SURG_OK || !ck)
        fz_fail("the written checkpoint does not open", path);
    fz_check_tables(ck);
    return ck;
}

static void same_data(surg_ckpt *a, surg_ckpt *b, surg_sink *sink)
{
    fz_same_tensors(a, b);
    for (size_t i = 0; i < surg_ckpt_count(a); i++) {
        const void *x = NULL, *y = NULL;
        if (surg_ckpt_data(a, i, sink, &x) != SURG_OK || surg_ckpt_data(b, i, sink, &y) != SURG_OK)
            fz_fail("a readable tensor became unreadable", surg_ckpt_tensor(a, i)->name);
        if (memcmp(x, y, surg_ckpt_tensor(a, i)->nbytes) != 0)
            fz_fail("a tensor's bytes changed", surg_ckpt_tensor(a, i)->name);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t total = 0;
    surg_sink sink = fz_sink(&total);
    const char *in = fz_path(0, "in.msgpack");
    const char *mp = fz_path(1, "out.msgpack");
    const char *again = fz_path(2, "again.msgpack");
    const char *st = fz_path(3, "out.safetensors");
    fz_write(in, data, size);
    surg_ckpt *ck = NULL;
    unsigned errors = sink.errors;
    if (surg_ckpt_open(in, &sink, &ck) != SURG_OK) {
        if (ck || sink.errors == errors)
            fz_fail("a refused file gave a checkpoint or no error", in);
        return 0;
    }
    if (surg_ckpt_kind_of(ck) != SURG_CKPT_MSGPACK)
        fz_fail("the file opened as another kind", in);
    fz_check_tables(ck);
    if (!fz_read_all(ck, &sink)) {
        surg_ckpt_close(ck);
        return 0;
    }
    if (surg_ckpt_write(ck, mp, NULL, &sink) != SURG_OK)
        fz_fail("writing a .msgpack of a readable checkpoint failed", mp);
    surg_ckpt *copy = reopen(mp, &sink);
    same_data(ck, copy, &sink);
    if (surg_ckpt_write(copy, again, NULL, &sink) != SURG_OK)
        fz_fail("writing a .msgpack of its own output failed", again);
    size_t n1, n2;
    uint8_t *b1 = fz_slurp(mp, &n1), *b2 = fz_slurp(again, &n2);
    if (n1 != n2 || memcmp(b1, b2, n1) != 0)
        fz_fail("rewriting the .msgpack output changed its bytes", NULL);
    free(b1);
    free(b2);
    surg_ckpt_close(copy);
    if (surg_ckpt_write(ck, st, NULL, &sink) != SURG_OK)
        fz_fail("writing safetensors of a readable checkpoint failed", st);
    surg_ckpt *sc = reopen(st, &sink);
    same_data(ck, sc, &sink);
    surg_ckpt_close(sc);
    surg_ckpt_close(ck);
    return 0;
}
