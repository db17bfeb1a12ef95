/* st_share.c: laying a safetensors file out so that its copies can share
 * blocks with their input (st_share.h). */
#define _GNU_SOURCE
#include "runtime/st_share.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

enum { DEFAULT_BLOCK = 4096 };

/* The directory the output's files go in: out_path when it is one (a
 * sharded output's), else the directory named before its last '/'. */
static char *out_dir(const char *out_path)
{
    struct stat sb;
    if (stat(out_path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return strdup(out_path);
    const char *slash = strrchr(out_path, '/');
    if (!slash)
        return strdup(".");
    return strndup(out_path, slash == out_path ? 1 : (size_t)(slash - out_path));
}

uint32_t sh_block_size(const char *out_path, surg_reflink mode, int src_fd)
{
    if (mode == SURG_REFLINK_NEVER || src_fd < 0)
        return 0;
    char *dir = out_dir(out_path);
    int fd = dir ? open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600) : -1;
    free(dir);
    struct statvfs v;
    uint32_t block = fd >= 0 && fstatvfs(fd, &v) == 0 && v.f_bsize >= 512 &&
                             v.f_bsize <= (1u << 20) && !(v.f_bsize & (v.f_bsize - 1))
                         ? (uint32_t)v.f_bsize
                         : DEFAULT_BLOCK;
    bool shares = false;
    struct stat sb;
    if (mode == SURG_REFLINK_AUTO && fd >= 0 && fstat(src_fd, &sb) == 0 && sb.st_size > 0) {
        /* One block (or the whole of a smaller file) into a file nobody
         * sees: the input is only read. */
        struct file_clone_range one = {
            .src_fd = src_fd,
            .src_length = (uint64_t)sb.st_size < block ? (uint64_t)sb.st_size : block};
        shares = ioctl(fd, FICLONERANGE, &one) == 0;
    }
    if (fd >= 0)
        close(fd);
    return mode == SURG_REFLINK_ALWAYS || shares ? block : 0;
}

static uint64_t elem_size(surg_dtype d)
{
    uint64_t b = surg_dtype_bits(d) / 8;
    return b ? b : 1;
}

/* A copy's position in f->idx, for sorting by where it is in its input. */
typedef struct placed {
    int fd;
    uint64_t off;
    size_t pos;
} placed;

static int by_source(const void *a, const void *b)
{
    const placed *x = a, *y = b;
    if (x->fd != y->fd)
        return x->fd < y->fd ? -1 : 1;
    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

typedef struct residue_bytes {
    uint64_t residue, bytes;
} residue_bytes;

static int by_residue(const void *a, const void *b)
{
    const residue_bytes *x = a, *y = b;
    return x->residue < y->residue ? -1 : x->residue > y->residue;
}

/* The residue of the data's start that aligns the most bytes if every run
 * is kept, in input order: a multiple of 8, so the header stays padded to
 * one. UINT64_MAX: none. */
static uint64_t best_residue(const stw_run *runs, size_t n, uint64_t block)
{
    residue_bytes *rb = malloc((n ? n : 1) * sizeof *rb);
    if (!rb)
        return UINT64_MAX;
    uint64_t cur = 0;
    size_t m = 0;
    for (size_t r = 0; r < n; r++) {
        uint64_t e = (runs[r].src - cur) % block;
        if (e % 8 == 0)
            rb[m++] = (residue_bytes){e, runs[r].len};
        cur += runs[r].len;
    }
    qsort(rb, m, sizeof *rb, by_residue);
    uint64_t best = UINT64_MAX, most = 0;
    for (size_t i = 0, j; i < m; i = j) {
        uint64_t sum = 0;
        for (j = i; j < m && rb[j].residue == rb[i].residue; j++)
            sum += rb[j].bytes;
        if (sum > most) {
            most = sum;
            best = rb[i].residue;
        }
    }
    free(rb);
    return best;
}

/* The runs: copies in input order, cut where the next does not start where
 * the last ended. */
static size_t find_runs(const stw_output *out, const size_t *idx, const placed *c, size_t n_c,
                        stw_run *runs)
{
    size_t n = 0;
    for (size_t i = 0; i < n_c; i++) {
        uint64_t len = out->tensors[idx[c[i].pos]].nbytes;
        stw_run *last = n ? &runs[n - 1] : NULL;
        if (last && last->fd == c[i].fd && last->src + last->len == c[i].off) {
            last->len += len;
            last->n++;
            continue;
        }
        runs[n++] = (stw_run){.fd = c[i].fd, .src = c[i].off, .len = len, .first = i, .n = 1};
    }
    return n;
}

/* Keep, in order, the runs congruent to `residue` at the place they get,
 * each tensor aligned to its element size there; then drop kept runs from
 * the end until the rest (after them) starts aligned. Returns the bytes
 * kept; keep[r] says which. */
static uint64_t keep_runs(const stw_output *out, const size_t *idx, const placed *c,
                          const stw_run *runs, size_t n_runs, uint64_t block, uint64_t residue,
                          bool *keep, bool *kept_pos, size_t n)
{
    uint64_t cur = 0;
    for (size_t r = 0; r < n_runs; r++) {
        bool ok = (runs[r].src - cur) % block == residue;
        for (size_t i = 0, at = cur; ok && i < runs[r].n; i++) {
            const surg_tensor_info *t = &out->tensors[idx[c[runs[r].first + i].pos]];
            ok = at % elem_size(t->dtype) == 0;
            at += t->nbytes;
        }
        keep[r] = ok;
        cur += ok ? runs[r].len : 0;
        for (size_t i = 0; ok && i < runs[r].n; i++)
            kept_pos[c[runs[r].first + i].pos] = true;
    }
    uint64_t align = 1;
    for (size_t i = 0; i < n; i++)
        if (!kept_pos[i] && elem_size(out->tensors[idx[i]].dtype) > align)
            align = elem_size(out->tensors[idx[i]].dtype);
    for (size_t r = n_runs; r-- > 0 && cur % align;) {
        if (!keep[r])
            continue;
        keep[r] = false;
        cur -= runs[r].len;
        for (size_t i = 0; i < runs[r].n; i++) {
            const surg_tensor_info *t = &out->tensors[idx[c[runs[r].first + i].pos]];
            kept_pos[c[runs[r].first + i].pos] = false;
            align = elem_size(t->dtype) > align ? elem_size(t->dtype) : align;
        }
    }
    return cur;
}

surg_status sh_layout(const stw_output *out, stw_file *f, uint64_t *residue)
{
    *residue = 0;
    uint64_t block = out->share_block;
    size_t n = f->n, n_c = 0;
    if (!block || !out->src || !n)
        return SURG_OK;
    placed *c = malloc(n * sizeof *c);
    stw_run *runs = malloc(n * sizeof *runs);
    bool *keep = calloc(n, sizeof *keep), *kept_pos = calloc(n, sizeof *kept_pos);
    size_t *order = malloc(n * sizeof *order);
    surg_status st = c && runs && keep && kept_pos && order ? SURG_OK : SURG_ENOMEM;
    for (size_t i = 0; !st && i < n; i++) {
        const stw_source *s = &out->src[f->idx[i]];
        if (s->fd >= 0 && out->tensors[f->idx[i]].nbytes)
            c[n_c++] = (placed){s->fd, s->off, i};
    }
    size_t n_runs = 0, n_kept = 0;
    uint64_t best = UINT64_MAX;
    if (!st && n_c) {
        qsort(c, n_c, sizeof *c, by_source);
        n_runs = find_runs(out, f->idx, c, n_c, runs);
        best = best_residue(runs, n_runs, block);
    }
    if (best != UINT64_MAX) {
        keep_runs(out, f->idx, c, runs, n_runs, block, best, keep, kept_pos, n);
        size_t at = 0;
        uint64_t dst = 0;
        for (size_t r = 0; r < n_runs; r++) {
            if (!keep[r])
                continue;
            for (size_t i = 0; i < runs[r].n; i++)
                order[at + i] = f->idx[c[runs[r].first + i].pos];
            runs[n_kept] = runs[r];
            runs[n_kept].first = at;
            runs[n_kept].dst = dst;
            at += runs[r].n;
            dst += runs[r].len;
            n_kept++;
        }
        for (size_t i = 0; i < n; i++)
            if (!kept_pos[i])
                order[at++] = f->idx[i];
        if (n_kept) {
            stw_run *last = &runs[n_kept - 1];
            const stw_source *s = &out->src[order[last->first + last->n - 1]];
            last->to_eof = last->first + last->n == n && last->src + last->len == s->file_size;
            memcpy(f->idx, order, n * sizeof *order);
            f->runs = runs;
            f->n_runs = n_kept;
            runs = NULL;
            *residue = best;
        }
    }
    free(c);
    free(runs);
    free(keep);
    free(kept_pos);
    free(order);
    return st;
}

bool sh_span(const stw_run *r, uint32_t block, uint64_t *lo, uint64_t *hi)
{
    uint64_t end = r->dst + r->len;
    *lo = (r->dst + block - 1) / block * block;
    *hi = r->to_eof ? end : end / block * block;
    return *lo < *hi;
}
