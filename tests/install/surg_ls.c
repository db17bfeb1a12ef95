/* surg_ls.c: a program of a library user, built against an installed libsurg
 * through pkg-config (tests/py/test_install.py): it opens a checkpoint and
 * prints each tensor's name, dtype, shape and the sum of its values, then
 * the metadata. Diagnostics go to standard error as JSON lines. */
#include <stdio.h>
#include <stdlib.h>

#include <surg/surg.h>

static void print_diag(const surg_diag *d, void *user)
{
    (void)user;
    char *line = surg_diag_json(d);
    fprintf(stderr, "%s\n", line ? line : "out of memory");
    free(line);
}

/* The sum of a tensor's values in double, a chunk at a time; 0 for dtypes
 * that are not numbers the library converts. */
static surg_status sum_values(surg_ckpt *ck, size_t i, surg_sink *sink, double *sum)
{
    const surg_tensor_info *t = surg_ckpt_tensor(ck, i);
    *sum = 0;
    if (surg_dtype_kind_of(t->dtype) == SURG_KIND_OPAQUE || surg_dtype_bits(t->dtype) % 8)
        return SURG_OK;
    const void *data;
    surg_status st = surg_ckpt_data(ck, i, sink, &data);
    if (st != SURG_OK)
        return st;
    double chunk[256];
    for (uint64_t first = 0; first < t->nelems; first += 256) {
        size_t n = t->nelems - first < 256 ? (size_t)(t->nelems - first) : 256;
        surg_values_f64(t->dtype, data, first, n, chunk);
        for (size_t k = 0; k < n; k++)
            *sum += chunk[k];
    }
    return SURG_OK;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: surg_ls CHECKPOINT\n");
        return 2;
    }
    surg_sink sink = {.fn = print_diag};
    surg_ckpt *ck = NULL;
    surg_status st = surg_ckpt_open(argv[1], &sink, &ck);
    if (st != SURG_OK)
        return surg_exit_code(st);
    for (size_t i = 0; i < surg_ckpt_count(ck) && st == SURG_OK; i++) {
        const surg_tensor_info *t = surg_ckpt_tensor(ck, i);
        double sum;
        st = sum_values(ck, i, &sink, &sum);
        printf("%s %s [", t->name, surg_dtype_st_name(t->dtype));
        for (uint32_t d = 0; d < t->rank; d++)
            printf("%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
        printf("] %.17g\n", sum);
    }
    for (size_t i = 0; i < surg_ckpt_meta_count(ck); i++)
        printf("meta %s=%s\n", surg_ckpt_meta(ck, i)->key, surg_ckpt_meta(ck, i)->value);
    surg_ckpt_close(ck);
    return surg_exit_code(st);
}
