/* ck_scratch.c: a tensor's bytes: in place in its file, or decoded on
 * demand into the scratch file beside it (sparse and unlinked, made when
 * the first of its tensors is needed). */
#include <errno.h>
#include <unistd.h>

#include "runtime/checkpoint.h"
#include "support/diag.h"

surg_status ck_scratch_open(surg_ckpt *ck, size_t i, surg_sink *sink)
{
    st_file *f = &ck->files[ck->file_of[i]];
    if (f->fd >= 0)
        return SURG_OK;
    surg_status st = dc_temp_file(ck->scratch_dir, f->path, sink, &f->fd);
    /* Sparse: only the decoded tensors take room. */
    if (!st && ftruncate(f->fd, (off_t)f->size) != 0) {
        st = dg_errno(sink, f->path, "cannot size the scratch file", errno);
        close(f->fd);
        f->fd = -1;
    }
    return st;
}

surg_status ck_decode(surg_ckpt *ck, size_t i, surg_sink *sink)
{
    dc_source *s = ck->dec[i];
    surg_status st = dc_decode(s, ck->files[ck->file_of[i]].fd, ck->offset[i], ck->scratch_dir,
                               sink);
    s->done = !st;
    return st;
}

surg_status ck_ready(surg_ckpt *ck, size_t i, surg_sink *sink)
{
    if (!ck_needs_decode(ck, i))
        return SURG_OK;
    surg_status st = ck_scratch_open(ck, i, sink);
    return st ? st : ck_decode(ck, i, sink);
}

surg_status surg_ckpt_data(surg_ckpt *ck, size_t i, surg_sink *sink,
                           const void **data)
{
    *data = NULL;
    if (ck->kind == SURG_CKPT_SCHEMA || i >= ck->n) {
        dg_file(sink, SURG_ERROR, "ck-no-data", ck->path,
                ck->kind == SURG_CKPT_SCHEMA
                    ? "a schema holds no tensor data"
                    : "no such tensor");
        return SURG_EUSAGE;
    }
    st_file *f = &ck->files[ck->file_of[i]];
    /* Threads asking at once: one makes the scratch file, decodes the
     * tensor and maps the file; the others wait and find them made. */
    pthread_mutex_lock(&ck->lock);
    surg_status st = ck_ready(ck, i, sink);
    if (!st)
        st = st_map(f, sink);
    const void *map = f->map;
    pthread_mutex_unlock(&ck->lock);
    if (st)
        return st;
    static const char empty[1];
    *data = map ? (const char *)map + ck->offset[i] : empty;
    return SURG_OK;
}

surg_status surg_ckpt_read(surg_ckpt *ck, size_t i, uint64_t offset, void *buf, size_t len,
                           surg_sink *sink)
{
    if (ck->kind == SURG_CKPT_SCHEMA || i >= ck->n || offset > ck->tensors[i].nbytes ||
        len > ck->tensors[i].nbytes - offset) {
        dg_file(sink, SURG_ERROR, "ck-no-data", ck->path,
                ck->kind == SURG_CKPT_SCHEMA ? "a schema holds no tensor data"
                : i >= ck->n                 ? "no such tensor"
                                             : "a read past the end of a tensor");
        return SURG_EUSAGE;
    }
    pthread_mutex_lock(&ck->lock);
    surg_status st = ck_ready(ck, i, sink);
    pthread_mutex_unlock(&ck->lock);
    const st_file *f = &ck->files[ck->file_of[i]];
    uint64_t at = ck->offset[i] + offset;
    while (!st && len) {
        ssize_t n = pread(f->fd, buf, len, (off_t)at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) /* the file shrank since it was opened */
            return dg_errno(sink, f->path, "cannot read tensor data", n ? errno : EIO);
        buf = (char *)buf + n;
        at += (uint64_t)n;
        len -= (size_t)n;
    }
    return st;
}
