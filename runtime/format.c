/* format.c: the table of formats (format.h), and the one place that tells
 * a format from a path's name or a file's first bytes, for inputs, shards
 * and outputs alike. */
#include "runtime/format.h"

#include "support/diag.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/diag.h"

#define FMT_X_READER(id, kind, reader) &reader,
const fmt_reader *const fmt_readers[FMT_COUNT] = {SURG_FORMATS(FMT_X_READER)};
#undef FMT_X_READER

#define FMT_X_KIND(id, kind, reader) kind,
const surg_ckpt_kind fmt_kinds[FMT_COUNT] = {SURG_FORMATS(FMT_X_KIND)};
#undef FMT_X_KIND

static bool answers_to(const fmt_reader *r, const char *path)
{
    size_t n = strlen(path);
    for (const char *const *s = r->suffixes; s && *s; s++) {
        size_t k = strlen(*s);
        if (n >= k && strcmp(path + n - k, *s) == 0)
            return true;
    }
    return false;
}

fmt_id fmt_by_id(const char *id)
{
    for (int f = 0; f < FMT_COUNT; f++)
        if (strcmp(fmt_readers[f]->id, id) == 0)
            return (fmt_id)f;
    return FMT_NONE;
}

bool fmt_paths_meta(const char *key)
{
    for (int f = 0; f < FMT_COUNT; f++)
        if (fmt_readers[f]->paths_meta && strcmp(fmt_readers[f]->paths_meta, key) == 0)
            return true;
    return false;
}

fmt_id fmt_by_name(const char *path)
{
    for (int f = 0; f < FMT_COUNT; f++)
        if (answers_to(fmt_readers[f], path))
            return (fmt_id)f;
    return FMT_NONE;
}

/* Up to FMT_HEAD_BYTES of a regular file, without blocking; 0 when it
 * cannot be read. */
static size_t read_head(const char *path, unsigned char *head)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    struct stat sb;
    ssize_t got = 0;
    if (fd < 0)
        return 0;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode))
        got = pread(fd, head, FMT_HEAD_BYTES, 0);
    close(fd);
    return got > 0 ? (size_t)got : 0;
}

fmt_id fmt_by_content(const char *path)
{
    unsigned char head[FMT_HEAD_BYTES];
    size_t n = 0;
    bool read = false;
    for (int f = 0; f < FMT_COUNT; f++) {
        if (!fmt_readers[f]->sniff)
            continue;
        if (!read) {
            n = read_head(path, head);
            read = true;
        }
        if (n && fmt_readers[f]->sniff(head, n))
            return (fmt_id)f;
    }
    return FMT_NONE;
}

fmt_id fmt_by_dir(const char *dir)
{
    for (int f = 0; f < FMT_COUNT; f++)
        if (fmt_readers[f]->sniff_dir && fmt_readers[f]->sniff_dir(dir))
            return (fmt_id)f;
    return FMT_NONE;
}

fmt_id fmt_of_shard(const char *name)
{
    for (int f = 0; f < FMT_COUNT; f++)
        if (fmt_readers[f]->shards && answers_to(fmt_readers[f], name))
            return (fmt_id)f;
    return (fmt_id)0;
}

fmt_id fmt_output(const char *path)
{
    fmt_id f = fmt_by_name(path);
    return f != FMT_NONE && fmt_readers[f]->writes ? f : (fmt_id)0;
}

fmt_id fmt_output_as(const char *path, fmt_id forced)
{
    return forced != FMT_NONE ? forced : fmt_output(path);
}

/* git-lfs's pointer file (its specification, docs/spec.md: at most 1024
 * bytes, a first line naming the spec, then "oid sha256:..." and "size N"):
 * what a clone without `git lfs pull` leaves in place of the file. */
static const char lfs_version[] = "version https://git-lfs.github.com/spec/v1\n";

surg_status fmt_check_lfs(surg_sink *sink, const char *path)
{
    char text[1025];
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    struct stat sb;
    ssize_t got = 0;
    if (fd < 0)
        return SURG_OK; /* the reader says why */
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size <= 1024)
        got = pread(fd, text, sizeof text - 1, 0);
    close(fd);
    size_t k = sizeof lfs_version - 1;
    if (got < (ssize_t)k || memcmp(text, lfs_version, k) != 0)
        return SURG_OK;
    text[got] = '\0';
    const char *size = strstr(text, "\nsize ");
    unsigned long long n = 0;
    int digits = 0;
    for (const char *d = size ? size + 6 : ""; *d >= '0' && *d <= '9' && digits < 19; d++, digits++)
        n = n * 10 + (unsigned long long)(*d - '0');
    if (digits)
        dg_file(sink, SURG_ERROR, "ck-lfs-pointer", path,
                "a git-lfs pointer, not the file itself (which has %llu bytes): run "
                "`git lfs pull` in its repository",
                n);
    else
        dg_file(sink, SURG_ERROR, "ck-lfs-pointer", path,
                "a git-lfs pointer, not the file itself: run `git lfs pull` in its repository");
    return SURG_EINVALID;
}

surg_status fmt_open(fmt_id f, arena *keep, surg_sink *sink, const char *path, fmt_table *out)
{
    *out = (fmt_table){.file = {.path = path, .fd = -1}};
    surg_status lfs = fmt_check_lfs(sink, path);
    if (lfs)
        return lfs;
    if (!fmt_readers[f]->open) {
        dg_file(sink, SURG_ERROR, "ck-format", path,
                "--format %s opens a directory, and this is not one: give the directory",
                fmt_readers[f]->id);
        return SURG_EUSAGE;
    }
    return fmt_readers[f]->open(keep, sink, path, out);
}

surg_status fmt_open_dir(fmt_id f, arena *keep, surg_sink *sink, const char *dir,
                         fmt_table **tables, size_t *n)
{
    *tables = NULL;
    *n = 0;
    return fmt_readers[f]->open_dir(keep, sink, dir, tables, n);
}

void fmt_tables_free(fmt_table *tables, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fmt_table_free(&tables[i]);
    free(tables);
}

st_entry *fmt_add_entry(fmt_table *t, int which, size_t cap[2])
{
    st_header *h = &t->h[which];
    if (h->n == cap[which]) {
        size_t more = cap[which] ? cap[which] * 2 : 16;
        st_entry *v = realloc(h->entries, more * sizeof *v);
        if (v)
            h->entries = v;
        dc_source **s = which && v ? realloc(t->src, more * sizeof *s) : NULL;
        if (s)
            t->src = s;
        if (!v || (which && !s))
            return NULL;
        cap[which] = more;
    }
    return &h->entries[h->n++];
}

void fmt_table_free(fmt_table *t)
{
    st_close(&t->file);
    if (t->close)
        t->close(t->close_ctx);
    t->close = NULL;
    if (t->own_entries) {
        free(t->h[0].entries);
        free(t->h[1].entries);
    }
    free(t->src);
    st_header_free(&t->h[0]);
    st_header_free(&t->h[1]);
}
