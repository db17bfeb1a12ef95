/* fuzz_npz.c: libFuzzer harness for the NumPy readers and the .npz writer.
 * The input is written twice, as an .npz and as a .npy. Each must be refused
 * with an error diagnostic, or open into tables that keep their invariants.
 * Then every tensor's bytes are read (decoding deflated, big-endian and
 * Fortran-order arrays; a corrupt stream may fail then, with an error, never
 * a crash); when all were readable the checkpoint is written out as an .npz
 * and as safetensors, and both copies must reopen with the same tensors and
 * bytes, the .npz copy rewriting to the very same bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "surg/surg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(const char *in, surg_ckpt_kind kind, surg_sink *sink)
{
    const char *npz = fz_path(1, "out.npz");
    const char *again = fz_path(2, "again.npz");
    const char *st = fz_path(3, "out.safetensors");
    surg_ckpt *ck = NULL;
    unsigned errors = sink->errors;
    if (surg_ckpt_open(in, sink, &ck) != SURG_OK) {
        if (ck || sink->errors == errors)
            fz_fail("a refused file gave a checkpoint or no error", in);
        return;
    }
    if (surg_ckpt_kind_of(ck) != kind)
        fz_fail("the file opened as another kind", in);
    fz_check_tables(ck);
    if (kind == SURG_CKPT_NPY && surg_ckpt_count(ck) != 1)
        fz_fail("a .npy did not give one tensor", in);
    if (!fz_read_all(ck, sink)) {
        surg_ckpt_close(ck);
        return;
    }
    if (surg_ckpt_write(ck, npz, NULL, sink) != SURG_OK)
        fz_fail("writing an .npz of a readable checkpoint failed", npz);
    surg_ckpt *copy = fz_reopen(npz, sink);
    fz_same_data(ck, copy, sink);
    if (surg_ckpt_write(copy, again, NULL, sink) != SURG_OK)
        fz_fail("writing an .npz of its own output failed", again);
    fz_same_files(npz, again, "rewriting the .npz output changed its bytes");
    surg_ckpt_close(copy);
    if (surg_ckpt_write(ck, st, NULL, sink) != SURG_OK)
        fz_fail("writing safetensors of a readable checkpoint failed", st);
    surg_ckpt *sc = fz_reopen(st, sink);
    fz_same_data(ck, sc, sink);
    surg_ckpt_close(sc);
    surg_ckpt_close(ck);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t total = 0;
    surg_sink sink = fz_sink(&total);
    const char *npz = fz_path(0, "in.npz");
    fz_write(npz, data, size);
    one(npz, SURG_CKPT_NPZ, &sink);
    const char *npy = fz_path(4, "in.npy");
    fz_write(npy, data, size);
    one(npy, SURG_CKPT_NPY, &sink);
    return 0;
}
