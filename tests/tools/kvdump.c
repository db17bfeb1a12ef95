/* kvdump.c: what the OCDBT reader (runtime/ocdbt.c) makes of a database,
 * for tests/py/test_ocdbt.py to compare with the database it built: one
 * line per key, "KEY len=N inline|file=PATH@OFFSET crc32=C [hex=H]" (KEY
 * with bytes outside printable ASCII, and '\', as \xNN; PATH relative to
 * DIR; C the zlib CRC-32 of the value's bytes, read back from the file for
 * a value kept there; H the bytes themselves when there are at most 64).
 * --prefix P lists the keys under P; --get K looks keys up one by one
 * ("K: not found"). Diagnostics go to stderr as "FILE: MESSAGE [CODE]",
 * and any failure exits 1.
 * usage: kvdump DIR [--prefix P] [--get K]... */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "runtime/kvstore.h"

static void print_diag(const surg_diag *d, void *user)
{
    (void)user;
    fprintf(stderr, "%s: %s [%s]\n", d->file ? d->file : "?", d->message, d->code);
}

static void put_escaped(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c > 0x20 && c < 0x7f && c != '\\')
            putchar(c);
        else
            printf("\\x%02x", c);
    }
}

typedef struct dump {
    const char *dir;
    int failed;
} dump;

/* The value's bytes, or NULL (with a message) when they cannot be read. */
static unsigned char *value_bytes(const kv_value *v)
{
    unsigned char *b = malloc(v->length ? v->length : 1);
    if (!b)
        return NULL;
    if (v->bytes) {
        memcpy(b, v->bytes, v->length);
        return b;
    }
    int fd = open(v->file, O_RDONLY);
    ssize_t got = fd < 0 ? -1 : pread(fd, b, v->length, (off_t)v->offset);
    if (fd >= 0)
        close(fd);
    if (got != (ssize_t)v->length) {
        fprintf(stderr, "%s: cannot read %llu bytes at %llu\n", v->file,
                (unsigned long long)v->length, (unsigned long long)v->offset);
        free(b);
        return NULL;
    }
    return b;
}

static int print_entry(void *ctx, const char *key, size_t key_len, const kv_value *v)
{
    dump *d = ctx;
    put_escaped(key, key_len);
    printf(" len=%llu ", (unsigned long long)v->length);
    if (v->bytes) {
        fputs("inline", stdout);
    } else {
        size_t n = strlen(d->dir);
        const char *rel = strncmp(v->file, d->dir, n) == 0 && v->file[n] == '/' ? v->file + n + 1
                                                                              : v->file;
        printf("file=%s@%llu", rel, (unsigned long long)v->offset);
    }
    unsigned char *b = value_bytes(v);
    if (!b) {
        d->failed = 1;
        putchar('\n');
        return 0;
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    for (uint64_t at = 0; at < v->length;) {
        uInt step = v->length - at > (1u << 30) ? 1u << 30 : (uInt)(v->length - at);
        crc = crc32(crc, b + at, step);
        at += step;
    }
    printf(" crc32=%08lx", crc);
    if (v->length <= 64) {
        fputs(" hex=", stdout);
        for (uint64_t i = 0; i < v->length; i++)
            printf("%02x", b[i]);
    }
    putchar('\n');
    free(b);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs("usage: kvdump DIR [--prefix P] [--get K]...\n", stderr);
        return 2;
    }
    surg_sink sink = {.fn = print_diag};
    kv_store *s;
    if (kv_open_ocdbt(argv[1], &sink, &s) != SURG_OK)
        return 1;
    dump d = {argv[1], 0};
    const char *prefix = "";
    int gets = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--prefix") == 0) {
            prefix = argv[i + 1];
        } else if (strcmp(argv[i], "--get") == 0) {
            kv_value v;
            bool found;
            gets = 1;
            if (kv_get(s, argv[i + 1], &sink, &v, &found) != SURG_OK)
                d.failed = 1;
            else if (found)
                print_entry(&d, argv[i + 1], strlen(argv[i + 1]), &v);
            else
                printf("%s: not found\n", argv[i + 1]);
        }
    }
    int stopped;
    if (!gets && s->ops->list(s, prefix, &sink, print_entry, &d, &stopped) != SURG_OK)
        d.failed = 1;
    kv_close(s);
    return d.failed ? 1 : 0;
}
