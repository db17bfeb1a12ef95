/* npz_force64.c: write a checkpoint as an .npz with ZIP64 records everywhere
 * (sizes, offsets, the end of the central directory), which real outputs
 * only need past 4 GiB or 65,535 arrays, so NumPy can check those records
 * on small files. usage: npz_force64 IN OUT.npz */
#include <stdio.h>

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
    if (argc != 3) {
        fputs("usage: npz_force64 IN OUT.npz\n", stderr);
        return 2;
    }
    surg_sink sink = {.fn = print};
    surg_ckpt *ck;
    surg_status st = surg_ckpt_open(argv[1], &sink, &ck);
    if (st)
        return surg_exit_code(st);
    stw_output out = {.tensors = ck->tensors, .n = ck->n, .emit = copy_tensor, .ctx = ck,
                      .force_zip64 = true};
    st = stw_write(&sink, argv[2], &out);
    surg_ckpt_close(ck);
    return surg_exit_code(st);
}
