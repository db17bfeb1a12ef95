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
    surg_ckpt *copy = fz_reopen(mp, &sink);
    fz_same_data(ck, copy, &sink);
    if (surg_ckpt_write(copy, again, NULL, &sink) != SURG_OK)
        fz_fail("writing a .msgpack of its own output failed", again);
    fz_same_files(mp, again, "rewriting the .msgpack output changed its bytes");
    surg_ckpt_close(copy);
    if (surg_ckpt_write(ck, st, NULL, &sink) != SURG_OK)
        fz_fail("writing safetensors of a readable checkpoint failed", st);
    surg_ckpt *sc = fz_reopen(st, &sink);
    fz_same_data(ck, sc, &sink);
    surg_ckpt_close(sc);
    surg_ckpt_close(ck);
    return 0;
}
