/* fuzz_util.h: what the file-based harnesses share — a private temporary
 * directory per process (removed at exit, or by a later process when the
 * first one died without exiting), writing files, the checkpoint invariants
 * every harness asserts, and a diagnostics sink that reads every field it is
 * given (so a dangling message or note is found where it is made).
 * Header-only, since each harness is built from its one .c file (and
 * replay.c). */
#ifndef SURG_FUZZ_UTIL_H
#define SURG_FUZZ_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "surg/surg.h"

#define FZ_PATH 4096

static char fz_dir[FZ_PATH];

/* dir/name into out, which must hold it. */
static inline void fz_join(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size) {
        fprintf(stderr, "fuzz: path too long: %s/%s\n", dir, name);
        abort();
    }
}

/* Remove everything in `dir`, leaving it empty. */
static inline void fz_empty_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[FZ_PATH];
        fz_join(p, sizeof p, dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            fz_empty_dir(p);
            rmdir(p);
        } else {
            unlink(p);
        }
    }
    closedir(d);
}

static inline void fz_cleanup(void)
{
    if (fz_dir[0]) {
        fz_empty_dir(fz_dir);
        rmdir(fz_dir);
    }
}

/* libFuzzer ends with _Exit, and a crash with abort, so the directories of
 * earlier processes are removed here instead: surg-fuzz-PID-* whose process
 * is gone. */
static inline void fz_remove_stale(const char *base)
{
    DIR *d = opendir(base);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));) {
        char *end;
        if (strncmp(e->d_name, "surg-fuzz-", 10) != 0)
            continue;
        long pid = strtol(e->d_name + 10, &end, 10);
        if (end == e->d_name + 10 || *end != '-' || pid <= 0 ||
            kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char p[FZ_PATH];
        fz_join(p, sizeof p, base, e->d_name);
        fz_empty_dir(p);
        rmdir(p);
    }
    closedir(d);
}

/* The process's temporary directory, made on first use. */
static inline const char *fz_tmpdir(void)
{
    if (!fz_dir[0]) {
        const char *base = getenv("TMPDIR");
        base = base && *base ? base : "/tmp";
        fz_remove_stale(base);
        char name[64];
        snprintf(name, sizeof name, "surg-fuzz-%ld-XXXXXX", (long)getpid());
        fz_join(fz_dir, sizeof fz_dir, base, name);
        if (!mkdtemp(fz_dir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(fz_cleanup);
    }
    return fz_dir;
}

/* fz_tmpdir()/name, in a static buffer per slot. */
static inline const char *fz_path(int slot, const char *name)
{
    static char paths[8][FZ_PATH];
    fz_join(paths[slot], sizeof paths[slot], fz_tmpdir(), name);
    return paths[slot];
}

static inline void fz_write(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

/* Every field of a diagnostic is read, as a printer would. */
static inline void fz_diag(const surg_diag *d, void *user)
{
    size_t *total = user;
    *total += strlen(d->code) + strlen(d->message);
    if (d->file)
        *total += strlen(d->file);
    if (d->source_line)
        *total += strlen(d->source_line);
    for (size_t i = 0; i < d->n_notes; i++)
        *total += strlen(d->notes[i]);
}

static inline surg_sink fz_sink(size_t *total)
{
    return (surg_sink){.fn = fz_diag, .user = total};
}

static inline void fz_fail(const char *what, const char *name)
{
    fprintf(stderr, "fuzz invariant broken: %s%s%s\n", what, name ? ": " : "",
            name ? name : "");
    abort();
}

/* The whole of a file the harness wrote, to compare outputs byte for byte;
 * the caller frees. */
static inline uint8_t *fz_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fz_fail("cannot read back", path);
    size_t cap = 1 << 12, n = 0;
    uint8_t *b = malloc(cap);
    for (size_t got; b && (got = fread(b + n, 1, cap - n, f)) > 0;)
        if ((n += got) == cap)
            b = realloc(b, cap *= 2);
    fclose(f);
    if (!b)
        abort();
    *len = n;
    return b;
}

static inline int fz_same_shape(const surg_tensor_info *a, const surg_tensor_info *b)
{
    if (a->rank != b->rank || a->dtype != b->dtype || a->nelems != b->nelems ||
        a->nbytes != b->nbytes)
        return 0;
    for (uint32_t d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    return 1;
}

/* The table invariants every open checkpoint keeps: names strictly
 * increasing and found by surg_ckpt_find, metadata keys strictly increasing. */
static inline void fz_check_tables(const surg_ckpt *ck)
{
    size_t n = surg_ckpt_count(ck);
    for (size_t i = 0; i < n; i++) {
        const surg_tensor_info *t = surg_ckpt_tensor(ck, i);
        if (!t || !t->name || (t->rank && !t->shape) || t->rank > SURG_MAX_RANK ||
            (unsigned)t->dtype >= SURG_DTYPE_COUNT)
            fz_fail("a malformed tensor entry", t ? t->name : NULL);
        if (i && strcmp(surg_ckpt_tensor(ck, i - 1)->name, t->name) >= 0)
            fz_fail("tensor names not strictly increasing", t->name);
        if (surg_ckpt_find(ck, t->name) != i)
            fz_fail("surg_ckpt_find does not find the tensor", t->name);
    }
    if (surg_ckpt_tensor(ck, n) != NULL)
        fz_fail("surg_ckpt_tensor past the end is not NULL", NULL);
    size_t m = surg_ckpt_meta_count(ck);
    for (size_t i = 0; i < m; i++) {
        const surg_meta_entry *e = surg_ckpt_meta(ck, i);
        if (!e || !e->key || !e->value)
            fz_fail("a malformed metadata entry", NULL);
        if (i && strcmp(surg_ckpt_meta(ck, i - 1)->key, e->key) >= 0)
            fz_fail("metadata keys not strictly increasing", e->key);
    }
    if (surg_ckpt_meta(ck, m) != NULL)
        fz_fail("surg_ckpt_meta past the end is not NULL", NULL);
}

/* Same names, dtypes and shapes. */
static inline void fz_same_tensors(const surg_ckpt *a, const surg_ckpt *b)
{
    if (surg_ckpt_count(a) != surg_ckpt_count(b))
        fz_fail("the tensor count changed", NULL);
    for (size_t i = 0; i < surg_ckpt_count(a); i++) {
        const surg_tensor_info *x = surg_ckpt_tensor(a, i), *y = surg_ckpt_tensor(b, i);
        if (strcmp(x->name, y->name) != 0)
            fz_fail("a tensor name changed", x->name);
        if (!fz_same_shape(x, y))
            fz_fail("a tensor's dtype or shape changed", x->name);
    }
}

/* The value of metadata `key` in ck, or NULL. */
/* Read every tensor's bytes (decoding what is not in place), or return 0
 * when one could not be read, which must come with an error. */
static inline int fz_read_all(surg_ckpt *ck, surg_sink *sink)
{
    static volatile unsigned sum; /* so the reads are not optimized away */
    for (size_t i = 0; i < surg_ckpt_count(ck); i++) {
        const surg_tensor_info *t = surg_ckpt_tensor(ck, i);
        const uint8_t *p = NULL;
        unsigned errors = sink->errors;
        if (surg_ckpt_data(ck, i, sink, (const void **)&p) != SURG_OK) {
            if (sink->errors == errors)
                fz_fail("a tensor's bytes failed without an error", t->name);
            return 0;
        }
        unsigned s = 0;
        for (uint64_t k = 0; k < t->nbytes; k++)
            s += p[k];
        sum += s;
    }
    (void)sum;
    return 1;
}

/* A checkpoint just written, opened again (it must open). */
static inline surg_ckpt *fz_reopen(const char *path, surg_sink *sink)
{
    surg_ckpt *ck = NULL;
    if (surg_ckpt_open(path, sink, &ck) != SURG_OK || !ck)
        fz_fail("the written checkpoint does not open", path);
    fz_check_tables(ck);
    return ck;
}

/* Same tensors with the same bytes. */
static inline void fz_same_data(surg_ckpt *a, surg_ckpt *b, surg_sink *sink)
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

/* Two files with the same bytes, or `what` fails. */
static inline void fz_same_files(const char *a, const char *b, const char *what)
{
    size_t n1, n2;
    uint8_t *b1 = fz_slurp(a, &n1), *b2 = fz_slurp(b, &n2);
    if (n1 != n2 || memcmp(b1, b2, n1) != 0)
        fz_fail(what, NULL);
    free(b1);
    free(b2);
}

static inline const char *fz_meta(const surg_ckpt *ck, const char *key)
{
    for (size_t i = 0; i < surg_ckpt_meta_count(ck); i++)
        if (strcmp(surg_ckpt_meta(ck, i)->key, key) == 0)
            return surg_ckpt_meta(ck, i)->value;
    return NULL;
}

#endif
