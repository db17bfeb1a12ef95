/* st_rewrite.c: read a checkpoint and write it back out through the library
 * (the identity surgery), so Python tests can check the writer against NumPy.
 * usage: st_rewrite IN OUT [MAX_SHARD_SIZE] */
#include <stdio.h>

#include "surg/surg.h"

static void print(const surg_diag *d, void *user)
{
    (void)user;
    fprintf(stderr, "%s: %s: %s [%s]\n", d->file ? d->file : "?",
            d->severity == SURG_ERROR ? "error" : "warning", d->message,
            d->code ? d->code : "");
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fputs("usage: st_rewrite IN OUT [MAX_SHARD_SIZE]\n", stderr);
        return 2;
    }
    surg_write_opts opts = {0};
    if (argc == 4 && surg_parse_size(argv[3], &opts.max_shard_size)) {
        fprintf(stderr, "bad size '%s'\n", argv[3]);
        return 2;
    }
    surg_sink sink = {.fn = print};
    surg_ckpt *ck;
    surg_status st = surg_ckpt_open(argv[1], &sink, &ck);
    if (!st) {
        st = surg_ckpt_write(ck, argv[2], &opts, &sink);
        surg_ckpt_close(ck);
    }
    return surg_exit_code(st);
}
