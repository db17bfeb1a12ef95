/* readfile.c: opening and reading whole files, with every error reported
 * against the file's name. Only regular files are read by name: a FIFO, a
 * device or a socket is refused before anything could block on it or read
 * it without end; a stream (standard input) is read with its limit enforced
 * while reading. */
#include "support/readfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/diag.h"

surg_status rf_read_exact(surg_sink *sink, const char *path, int fd,
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

const char *rf_kind_of(unsigned mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFIFO: return "a FIFO";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFSOCK: return "a socket";
    default: return "a special file";
    }
}

static surg_status not_regular(surg_sink *sink, const char *path, unsigned mode)
{
    dg_file(sink, SURG_ERROR, "not-regular", path, "is %s, not a regular file",
            rf_kind_of(mode));
    return SURG_EIO;
}

/* The name is looked at first, so that a device or a FIFO is never opened
 * (opening one can block, or do something); the file is then opened
 * without blocking, in case the name was replaced in between, and what
 * fstat says of the open file is what counts. */
surg_status rf_open_regular(surg_sink *sink, const char *path, int *fd,
                                uint64_t *size)
{
    struct stat sb;
    *fd = -1;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return not_regular(sink, path, (unsigned)sb.st_mode);
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (f < 0)
        return dg_errno(sink, path, "cannot open", errno);
    surg_status st = SURG_OK;
    if (fstat(f, &sb) != 0)
        st = dg_errno(sink, path, "cannot stat", errno);
    else if (!S_ISREG(sb.st_mode))
        st = not_regular(sink, path, (unsigned)sb.st_mode);
    else if (fcntl(f, F_SETFL, fcntl(f, F_GETFL) & ~O_NONBLOCK) != 0)
        st = dg_errno(sink, path, "cannot open", errno);
    if (st) {
        close(f);
        return st;
    }
    *fd = f;
    *size = (uint64_t)sb.st_size;
    return SURG_OK;
}

static surg_status too_large(surg_sink *sink, const char *path, uint64_t size, size_t limit)
{
    dg_file(sink, SURG_ERROR, "too-large", path,
            "the file has %llu bytes, more than the %zu allowed",
            (unsigned long long)size, limit);
    return SURG_EINVALID;
}

static surg_status read_whole(arena *ar, surg_sink *sink, const char *path, size_t limit,
                              char **data, size_t *len)
{
    int fd;
    uint64_t size;
    surg_status st = rf_open_regular(sink, path, &fd, &size);
    if (st)
        return st;
    if (size > limit) {
        close(fd);
        return too_large(sink, path, size, limit);
    }
    char *p = ar ? ar_alloc(ar, size + 1) : malloc(size + 1);
    if (!p) {
        close(fd);
        return dg_nomem(sink, path);
    }
    st = rf_read_exact(sink, path, fd, p, size, 0);
    close(fd);
    if (st) {
        if (!ar)
            free(p);
        return st;
    }
    p[size] = '\0';
    *data = p;
    *len = size;
    return SURG_OK;
}

surg_status rf_read_all(surg_sink *sink, const char *path, size_t limit, char **data,
                        size_t *len)
{
    return read_whole(NULL, sink, path, limit, data, len);
}

surg_status rf_read_into(arena *ar, surg_sink *sink, const char *path, size_t limit,
                         char **data, size_t *len)
{
    return read_whole(ar, sink, path, limit, data, len);
}

surg_status rf_read_stream(surg_sink *sink, const char *name, int fd, size_t limit,
                           char **data, size_t *len)
{
    /* The buffer never grows past limit + 1 bytes: one byte past the limit
     * is enough to know the stream is too long. */
    size_t cap = 0, n = 0, most = limit < SIZE_MAX - 1 ? limit + 1 : limit;
    char *p = NULL;
    surg_status st = SURG_OK;
    for (;;) {
        if (n == cap) {
            if (cap == most) {
                dg_file(sink, SURG_ERROR, "too-large", name,
                        "more than the %zu bytes allowed; stopped reading there", limit);
                st = SURG_EINVALID;
                break;
            }
            size_t want = cap ? (cap < most / 2 ? cap * 2 : most) : (most < 65536 ? most : 65536);
            char *q = realloc(p, want + 1);
            if (!q) {
                st = dg_nomem(sink, name);
                break;
            }
            p = q;
            cap = want;
        }
        ssize_t got = read(fd, p + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            st = dg_errno(sink, name, "cannot read", errno);
            break;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    if (st) {
        free(p);
        return st;
    }
    if (!p && !(p = malloc(1)))
        return dg_nomem(sink, name);
    p[n] = '\0';
    *data = p;
    *len = n;
    return SURG_OK;
}
