/* safetensors.c: opening a safetensors file, and the safetensors reader
 * (format.h). The header is read with pread into memory of its own, after
 * its length has been checked against the limit and the file's size; the
 * data is mapped lazily. */
#include "runtime/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/diag.h"
#include "runtime/format.h"
#include "support/readfile.h"

static uint64_t le64(const unsigned char b[8])
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

static surg_status read_header(arena *ar, surg_sink *sink, st_file *f,
                               st_header *h)
{
    if (f->size < 8) {
        dg_file(sink, SURG_ERROR, "st-too-small", f->path,
                "the file has %llu bytes, too few for the 8-byte header "
                "length of a safetensors file",
                (unsigned long long)f->size);
        return SURG_EINVALID;
    }
    unsigned char lenbuf[8];
    surg_status st = rf_read_exact(sink, f->path, f->fd, lenbuf, 8, 0);
    if (st)
        return st;
    f->bytes_read += 8;
    uint64_t n = le64(lenbuf);
    if (n > ST_MAX_HEADER) {
        dg_file(sink, SURG_ERROR, "st-header-too-large", f->path,
                "the header claims %llu bytes, more than the %u a safetensors "
                "header may have",
                (unsigned long long)n, ST_MAX_HEADER);
        return SURG_EINVALID;
    }
    if (n > f->size - 8) {
        dg_file(sink, SURG_ERROR, "st-header-past-eof", f->path,
                "the header claims %llu bytes, but only %llu follow the "
                "length field",
                (unsigned long long)n, (unsigned long long)(f->size - 8));
        return SURG_EINVALID;
    }
    char *json = ar_alloc(ar, n ? n : 1); /* kept: the names are decoded in it */
    if (!json)
        return dg_nomem(sink, f->path);
    st = rf_read_exact(sink, f->path, f->fd, json, n, 8);
    f->bytes_read += n;
    f->data_start = 8 + n;
    if (!st)
        st = st_parse_header(ar, sink, f->path, json, n, f->size - f->data_start,
                             ST_SAFETENSORS, h);
    return st;
}

surg_status st_file_open(surg_sink *sink, const char *path, st_file *f)
{
    *f = (st_file){.path = path, .fd = -1};
    surg_status st = rf_open_regular(sink, path, &f->fd, &f->size);
    struct stat sb;
    if (!st && fstat(f->fd, &sb) == 0)
        f->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    return st;
}

surg_status st_open(arena *ar, surg_sink *sink, const char *path, st_file *f,
                    st_header *h)
{
    surg_status st = st_file_open(sink, path, f);
    if (!st)
        st = read_header(ar, sink, f, h);
    if (st)
        st_close(f);
    return st;
}

surg_status st_unchanged(const st_file *f, surg_sink *sink)
{
    struct stat sb;
    if (f->fd < 0 || f->scratch || fstat(f->fd, &sb) != 0)
        return SURG_OK; /* nothing to compare with */
    int64_t mtime = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    if ((uint64_t)sb.st_size == f->size && mtime == f->mtime_ns)
        return SURG_OK;
    const char *how = (uint64_t)sb.st_size < f->size   ? "it was truncated"
                      : (uint64_t)sb.st_size > f->size ? "it grew"
                                                       : "it was modified";
    dg_file(sink, SURG_ERROR, "input-changed", f->path,
            "the file changed while it was being read (%s); nothing was written", how);
    return SURG_EIO;
}

void st_close(st_file *f)
{
    if (f->map)
        munmap(f->map, f->size);
    if (f->fd >= 0)
        close(f->fd);
    f->map = NULL;
    f->fd = -1;
}

surg_status st_map(st_file *f, surg_sink *sink)
{
    if (f->map || f->size == 0 || f->fd < 0)
        return SURG_OK; /* an empty file, or a scratch file not made yet */
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, f->fd, 0);
    if (m == MAP_FAILED)
        return dg_errno(sink, f->path, "cannot map", errno);
    f->map = m;
    return SURG_OK;
}

/* Every tensor is in place: the header is the table. */
static surg_status read_table(arena *keep, surg_sink *sink, const char *path, fmt_table *out)
{
    return st_open(keep, sink, path, &out->file, &out->h[0]);
}

static const char *const suffixes[] = {".safetensors", NULL};

const fmt_reader fmt_safetensors = {
    .id = "safetensors",
    .suffixes = suffixes,
    .open = read_table,
    .called = "a .safetensors file",
    .dir_file = "model.safetensors",
    .shards = true,
    .writes = true,
    .names = TN_SAFETENSORS,
};
