/* zarrcat.c: one zarr array of a directory store, for the tests: its
 * dtype and shape, or its bytes decoded into a file; the store's keys and
 * values as listed and looked up. Diagnostics go to stderr as
 * "FILE: MESSAGE [CODE]".
 * usage: zarrcat DIR NAME [--info] [--out FILE [--at N]] [--strict] [--format 2|3] [--tmp DIR]
 *        zarrcat DIR --list PREFIX
 *        zarrcat DIR --get KEY */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/kvstore.h"
#include "runtime/zarr.h"

static void print(const surg_diag *d, void *user)
{
    (void)user;
    fprintf(stderr, "%s: %s [%s]\n", d->file ? d->file : "?", d->message, d->code);
}

static int each(void *ctx, const char *key, size_t n, const kv_value *v)
{
    (void)ctx;
    printf("%.*s %llu\n", (int)n, key, (unsigned long long)v->length);
    return 0;
}

static int usage(void)
{
    fputs("usage: zarrcat DIR NAME [--info] [--out FILE [--at N]] [--strict] [--format 2|3] "
          "[--tmp DIR]\n       zarrcat DIR --list PREFIX\n       zarrcat DIR --get KEY\n",
          stderr);
    return 2;
}

static int keys(kv_store *s, surg_sink *sink, const char *op, const char *arg)
{
    surg_status st;
    if (strcmp(op, "--list") == 0) {
        int stopped;
        st = s->ops->list(s, arg, sink, each, NULL, &stopped);
    } else {
        kv_value v;
        bool found;
        st = kv_get(s, arg, sink, &v, &found);
        if (!st && !found)
            puts("not found");
        if (!st && found) {
            char *b = malloc(v.length + 1);
            st = b ? kv_read(&v, 0, b, (size_t)v.length, arg, sink) : SURG_ENOMEM;
            if (!st)
                printf("%llu bytes\n", (unsigned long long)v.length);
            free(b);
        }
    }
    return surg_exit_code(st);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage();
    surg_sink sink = {.fn = print};
    kv_store *s;
    surg_status st = kv_open_dir(argv[1], &sink, &s);
    if (st)
        return surg_exit_code(st);
    if (argv[2][0] == '-') {
        int r = argc == 4 ? keys(s, &sink, argv[2], argv[3]) : usage();
        kv_close(s);
        return r;
    }
    bool info = false, strict = false;
    const char *out = NULL, *tmp = NULL;
    unsigned long long at = 0;
    int format = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--info") == 0)
            info = true;
        else if (strcmp(argv[i], "--strict") == 0)
            strict = true;
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out = argv[++i];
        else if (strcmp(argv[i], "--at") == 0 && i + 1 < argc)
            at = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--tmp") == 0 && i + 1 < argc)
            tmp = argv[++i];
        else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc)
            format = atoi(argv[++i]);
        else {
            kv_close(s);
            return usage();
        }
    }
    arena ar;
    ar_init(&ar);
    zarr_array *a = NULL;
    st = zarr_open(&ar, s, argv[2], format, &sink, &a);
    if (!st && !a) {
        fprintf(stderr, "%s: no array \"%s\"\n", argv[1], argv[2]);
        st = SURG_EINVALID;
    }
    if (!st && info) {
        printf("%s [", surg_dtype_st_name(a->dtype));
        for (uint32_t d = 0; d < a->rank; d++)
            printf("%s%llu", d ? ", " : "", (unsigned long long)a->shape[d]);
        printf("] %llu\n", (unsigned long long)a->nbytes);
    }
    if (!st && out) {
        int fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            perror(out);
            st = SURG_EIO;
        } else {
            dc_source src;
            st = zarr_source(&ar, a, s, !strict, argv[2], &src, &sink);
            if (!st)
                st = dc_decode(&src, fd, at, tmp, &sink);
            close(fd);
        }
    }
    ar_free(&ar);
    kv_close(s);
    return surg_exit_code(st);
}
