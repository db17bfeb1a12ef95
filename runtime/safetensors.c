/* safetensors.c: opening a safetensors file. The header is read with pread
 * into memory of its own, after its length has been checked against the
 * limit and the file's size; the data is mapped lazily. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diag.h"

static surg_status read_exact(surg_sink *sink, const char *path, int fd,
                              void *dst, size_t len, uint64_t off)
{
    char *p = dst;
    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return dg_errno(sink, path, "cannot read", errno);
        if (n == 0) {
            dg_file(sink, SURG_ERROR, "io", path,
                    "the file ended while reading it (was it truncated?)");
            return SURG_EIO;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return SURG_OK;
}

static surg_status open_regular(surg_sink *sink, const char *path, int *fd,
                                uint64_t *size)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return dg_errno(sink, path, "cannot open", errno);
    struct stat sb;
    if (fstat(*fd, &sb) != 0) {
        int err = errno;
        close(*fd);
        return dg_errno(sink, path, "cannot stat", err);
    }
    if (!S_ISREG(sb.st_mode)) {
        close(*fd);
        dg_file(sink, SURG_ERROR, "io", path, "not a regular file");
        return SURG_EIO;
    }
    *size = (uint64_t)sb.st_size;
    return SURG_OK;
}

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
    surg_status st = read_exact(sink, f->path, f->fd, lenbuf, 8, 0);
    if (st)
        return st;
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
    char *json = malloc(n ? n : 1);
    if (!json)
        return dg_nomem(sink, f->path);
    st = read_exact(sink, f->path, f->fd, json, n, 8);
    f->data_start = 8 + n;
    if (!st)
        st = st_parse_header(ar, sink, f->path, json, n, f->size - f->data_start,
                             ST_SAFETENSORS, h);
    free(json);
    return st;
}

surg_status st_open(arena *ar, surg_sink *sink, const char *path, st_file *f,
                    st_header *h)
{
    *f = (st_file){.path = path, .fd = -1};
    surg_status st = open_regular(sink, path, &f->fd, &f->size);
    if (!st)
        st = read_header(ar, sink, f, h);
    if (st)
        st_close(f);
    return st;
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
    if (f->map || f->size == 0)
        return SURG_OK;
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, f->fd, 0);
    if (m == MAP_FAILED)
        return dg_errno(sink, f->path, "cannot map", errno);
    f->map = m;
    return SURG_OK;
}

surg_status st_slurp(surg_sink *sink, const char *path, size_t limit,
                     char **data, size_t *len)
{
    int fd;
    uint64_t size;
    surg_status st = open_regular(sink, path, &fd, &size);
    if (st)
        return st;
    if (size > limit) {
        close(fd);
        dg_file(sink, SURG_ERROR, "too-large", path,
                "the file has %llu bytes, more than the %zu allowed",
                (unsigned long long)size, limit);
        return SURG_EINVALID;
    }
    char *p = malloc(size + 1);
    if (!p) {
        close(fd);
        return dg_nomem(sink, path);
    }
    st = read_exact(sink, path, fd, p, size, 0);
    close(fd);
    if (st) {
        free(p);
        return st;
    }
    p[size] = '\0';
    *data = p;
    *len = size;
    return SURG_OK;
}
