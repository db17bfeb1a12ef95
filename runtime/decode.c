/* decode.c: making plain bytes (see decode.h). C-order arrays stream
 * straight through: read a buffer, swap its units, write it. Fortran-order
 * ones are gathered from a mapping of their plain bytes — the archive
 * itself when the entry is stored little-endian, else a staging file the
 * stream is first written to — in C order, a buffer of output at a time;
 * strided views the same way, by their own strides, swapped as they are
 * gathered. */
#define _GNU_SOURCE
#include "runtime/decode.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "support/diag.h"

enum { BUF = 1 << 20 };

surg_status dc_temp_file(const char *dir, const char *what, surg_sink *sink, int *fd)
{
    if (!dir || !*dir) {
        dir = getenv("TMPDIR");
        dir = dir && *dir ? dir : "/tmp";
    }
#ifdef O_TMPFILE
    *fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (*fd >= 0)
        return SURG_OK;
#endif
    size_t n = strlen(dir) + 32;
    char *path = malloc(n);
    if (!path)
        return dg_nomem(sink, what);
    snprintf(path, n, "%s/.surg-scratch-XXXXXX", dir);
    *fd = mkostemp(path, O_CLOEXEC);
    int err = errno;
    if (*fd >= 0)
        unlink(path);
    free(path);
    if (*fd < 0) {
        dg_file(sink, SURG_ERROR, "io", what, "cannot create a scratch file in %s: %s", dir,
                strerror(err));
        return SURG_EIO;
    }
    return SURG_OK;
}

static surg_status write_at(surg_sink *sink, const char *what, int fd, const void *data,
                            size_t len, uint64_t off)
{
    const char *p = data;
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return dg_errno(sink, what, "cannot write the scratch file", errno);
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return SURG_OK;
}

static void swap_units(unsigned char *b, size_t len, unsigned unit)
{
    for (size_t i = 0; i + unit <= len; i += unit)
        for (unsigned a = 0, z = unit - 1; a < z; a++, z--) {
            unsigned char t = b[i + a];
            b[i + a] = b[i + z];
            b[i + z] = t;
        }
}

/* The array's bytes, swapped to little-endian, written in order to
 * dst_fd at dst_off; the stream must then end (its CRC checked). */
static surg_status stream_plain(const dc_source *s, int dst_fd, uint64_t dst_off,
                                unsigned char *b, surg_sink *sink)
{
    zip_stream z;
    surg_status st = zip_stream_open(&z, s->arc, &s->entry, sink);
    for (uint64_t left = s->skip; !st && left;) {
        size_t n = left < BUF ? (size_t)left : BUF;
        st = zip_stream_read_exact(&z, sink, b, n);
        left -= n;
    }
    size_t chunk = BUF - BUF % (s->esize ? s->esize : 1);
    for (uint64_t done = 0; !st && done < s->nbytes;) {
        size_t n = s->nbytes - done < chunk ? (size_t)(s->nbytes - done) : chunk;
        st = zip_stream_read_exact(&z, sink, b, n);
        if (!st && s->swap)
            swap_units(b, n, s->swap);
        if (!st)
            st = write_at(sink, s->arc->path, dst_fd, b, n, dst_off + done);
        done += n;
    }
    size_t got = 0;
    if (!st)
        st = zip_stream_read(&z, sink, b, 1, &got); /* the end: checks the CRC */
    if (!st && got) {
        dg_file(sink, SURG_ERROR, "npz-size", s->arc->path,
                "array \"%s\": the entry holds more bytes than its shape needs", s->name);
        st = SURG_EINVALID;
    }
    zip_stream_close(&z);
    return st;
}

/* Element strides of a Fortran-order array, in elements. */
static void fortran_strides(const dc_source *s, uint64_t *stride)
{
    uint64_t k = 1;
    for (uint32_t d = 0; d < s->rank; d++) {
        stride[d] = k;
        k *= s->shape[d];
    }
}

/* C order out of a mapping of strided elements (Fortran order, or a
 * view's own strides): an odometer over the output's indices, the last axis
 * innermost; each full buffer swapped by `swap` bytes (0: not) and written. */
static surg_status gather(const dc_source *s, const unsigned char *src, unsigned swap,
                          int dst_fd, uint64_t dst_off, unsigned char *b, surg_sink *sink)
{
    uint64_t stride[SURG_MAX_RANK], idx[SURG_MAX_RANK] = {0};
    if (s->stride)
        memcpy(stride, s->stride, s->rank * sizeof *stride);
    else
        fortran_strides(s, stride);
    unsigned es = s->esize;
    if (!s->rank) { /* one element */
        memcpy(b, src, es);
        if (swap)
            swap_units(b, es, swap);
        return write_at(sink, s->arc->path, dst_fd, b, es, dst_off);
    }
    uint32_t last = s->rank - 1;
    uint64_t inner = s->shape[last], step = stride[last] * es, at = 0, done = 0;
    size_t fill = 0, cap = BUF - BUF % es;
    surg_status st = SURG_OK;
    while (!st && done < s->nbytes) {
        uint64_t off = at; /* an offset, not a pointer: it steps past the last */
        for (uint64_t i = 0; i < inner; i++, off += step) {
            memcpy(b + fill, src + off, es);
            if ((fill += es) == cap) {
                if (swap)
                    swap_units(b, fill, swap);
                st = write_at(sink, s->arc->path, dst_fd, b, fill, dst_off + done);
                done += fill;
                fill = 0;
                if (st)
                    return st;
            }
        }
        /* Next index of the outer axes; `at` is the source offset of idx. */
        uint32_t d = last;
        while (d-- > 0) {
            at += stride[d] * es;
            if (++idx[d] < s->shape[d])
                break;
            at -= stride[d] * es * idx[d];
            idx[d] = 0;
        }
        if (fill && (d == UINT32_MAX || done + fill == s->nbytes)) {
            if (swap)
                swap_units(b, fill, swap);
            st = write_at(sink, s->arc->path, dst_fd, b, fill, dst_off + done);
            done += fill;
            fill = 0;
        }
        if (d == UINT32_MAX)
            break;
    }
    return st;
}

static surg_status map_and_gather(const dc_source *s, int src_fd, uint64_t src_off,
                                  unsigned swap, int dst_fd, uint64_t dst_off, unsigned char *b,
                                  surg_sink *sink)
{
    long page = sysconf(_SC_PAGESIZE);
    uint64_t base = src_off - src_off % (uint64_t)(page > 0 ? page : 4096);
    size_t len = (size_t)(src_off - base + (s->stride ? s->span : s->nbytes));
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, src_fd, (off_t)base);
    if (m == MAP_FAILED)
        return dg_errno(sink, s->arc->path, "cannot map an array to reorder it", errno);
    madvise(m, len, MADV_WILLNEED);
    surg_status st = gather(s, (const unsigned char *)m + (src_off - base), swap, dst_fd,
                            dst_off, b, sink);
    munmap(m, len);
    return st;
}

/* Pieces of the file, one after another. */
static surg_status join_pieces(const dc_source *s, int dst_fd, uint64_t dst_off,
                               unsigned char *b, surg_sink *sink)
{
    surg_status st = SURG_OK;
    for (size_t i = 0; !st && i < s->n_pieces; i++)
        for (uint64_t done = 0; !st && done < s->piece_len[i];) {
            uint64_t left = s->piece_len[i] - done;
            size_t n = left < BUF ? (size_t)left : BUF;
            ssize_t got = pread(s->arc->fd, b, n, (off_t)(s->piece_at[i] + done));
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0)
                return dg_errno(sink, s->arc->path, "cannot read", got ? errno : EIO);
            st = write_at(sink, s->arc->path, dst_fd, b, (size_t)got, dst_off);
            dst_off += (uint64_t)got;
            done += (uint64_t)got;
        }
    return st;
}

surg_status dc_decode(const dc_source *s, int dst_fd, uint64_t dst_off, const char *tmp_dir,
                      surg_sink *sink)
{
    if (!s->nbytes)
        return SURG_OK;
    if (s->decode)
        return s->decode(s, dst_fd, dst_off, tmp_dir, sink);
    unsigned char *b = malloc(BUF);
    if (!b)
        return dg_nomem(sink, s->arc->path);
    surg_status st;
    if (s->n_pieces) {
        st = join_pieces(s, dst_fd, dst_off, b, sink);
    } else if (s->stride) { /* a stored entry, checked when opened */
        st = map_and_gather(s, s->arc->fd, s->entry.data_at + s->skip, s->swap, dst_fd,
                            dst_off, b, sink);
    } else if (!s->fortran) {
        st = stream_plain(s, dst_fd, dst_off, b, sink);
    } else if (s->entry.method == ZIP_STORED && !s->swap) {
        st = map_and_gather(s, s->arc->fd, s->entry.data_at + s->skip, 0, dst_fd, dst_off, b,
                            sink);
    } else {
        int stage = -1;
        st = dc_temp_file(tmp_dir, s->arc->path, sink, &stage);
        if (!st)
            st = stream_plain(s, stage, 0, b, sink);
        if (!st)
            st = map_and_gather(s, stage, 0, 0, dst_fd, dst_off, b, sink);
        if (stage >= 0)
            close(stage);
    }
    free(b);
    return st;
}
