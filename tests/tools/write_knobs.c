/* write_knobs.c: write a checkpoint through the writer with the knobs real
 * outputs never turn, so the tests can check on small files what only large
 * ones need: --zip64, an .npz with ZIP64 records everywhere (sizes,
 * offsets, the end of the central directory), which real outputs need only
 * past 4 GiB or 65,535 arrays; --chunk-bytes N, a .msgpack whose arrays over
 * N bytes are chunked as Flax chunks those over 2^30, or (with --format
 * orbax) an Orbax directory whose arrays over N bytes are cut into chunks
 * as those over 2 GiB are.
 * usage: write_knobs IN OUT [--zip64] [--chunk-bytes N] [--format NAME] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/checkpoint.h"
#include "runtime/st_write.h"

static void print(const surg_diag *d, void *user)
{
    (void)user;
    fprintf(stderr, "%s: %s [%s]\n", d->file ? d->file : "?", d->message, d->code);
}

static surg_status copy_tensor(void *ctx, size_t i, of_file *out, surg_sink *sink)
{
    surg_ckpt *ck = ctx;
    surg_status st = ck_ready(ck, i, sink);
    return st ? st : of_copy(out, sink, ck_file_of(ck, i)->fd, ck->offset[i],
                             ck->tensors[i].nbytes);
}

int main(int argc, char **argv)
{
    bool zip64 = false;
    unsigned long long chunk = 0;
    const char *format = NULL;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--zip64") == 0)
            zip64 = true;
        else if (strcmp(argv[i], "--chunk-bytes") == 0 && i + 1 < argc)
            chunk = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc)
            format = argv[++i];
        else
            argc = 0;
    }
    if (argc < 3) {
        fputs("usage: write_knobs IN OUT [--zip64] [--chunk-bytes N] [--format NAME]\n", stderr);
        return 2;
    }
    surg_sink sink = {.fn = print};
    surg_ckpt *ck;
    surg_status st = surg_ckpt_open(argv[1], &sink, &ck);
    if (st)
        return surg_exit_code(st);
    stw_output out = {.tensors = ck->tensors, .n = ck->n, .emit = copy_tensor, .ctx = ck,
                      /* with --format, the input's metadata too (its msgpack leaves) */
                      .meta = format ? ck->meta : NULL, .n_meta = format ? ck->n_meta : 0,
                      .force_zip64 = zip64, .chunk_bytes = chunk, .format = format};
    st = stw_write(&sink, argv[2], &out);
    surg_ckpt_close(ck);
    return surg_exit_code(st);
}
