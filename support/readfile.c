/* readfile.c: opening and reading whole files, with every error reported
 * against the file's name. */
#include "readfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diag.h"

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

surg_status rf_open_regular(surg_sink *sink, const char *path, int *fd,
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
        dg_file(sink, SURG_ERROR, "too-large", path,
                "the file has %llu bytes, more than the %zu allowed",
                (unsigned long long)size, limit);
        return SURG_EINVALID;
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
