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
    size_t n = strlen(out_path);
    while (n > 1 && out_path[n - 1] == '/')
        n--; /* "out/", a sharded output's directory not made yet, is in "." */
    const char *slash = NULL;
    for (size_t i = 0; i < n; i++)
        slash = out_path[i] == '/' ? out_path + i : slash;
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

/* A run can start the file's data (whose start is a multiple of 8) or
 * follow another only where every tensor of it is aligned to its element
 * size in the input: it is then in the output too. */
static bool run_aligned(const stw_output *out, const size_t *idx, const placed *c,
                        const stw_run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const placed *p = &c[r->first + i];
        if (p->off % elem_size(out->tensors[idx[p->pos]].dtype))
            return false;
    }
    return true;
}

/* The first place of v in the sorted res[0..n), or n. */
static size_t first_of(const uint64_t *res, size_t n, uint64_t v)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (res[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && res[lo] == v ? lo : n;
}

static int by_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The most bytes of runs that can follow each other, in input order, each
 * congruent to its input: run b may follow run a when b's input starts
 * where a's ends modulo the block (the bytes between were dropped in whole
 * blocks, or there are none), and may come first when it starts at a
 * multiple of 8 modulo the block. A longest chain, by the runs' ends:
 * best_end[v] is the most bytes of a chain ending at residue v (its last
 * run last_of[v]). keep[r] marks the chain. */
static surg_status chain_runs(const stw_output *out, const size_t *idx, const placed *c,
                              const stw_run *runs, size_t n, uint64_t block, bool *keep)
{
    uint64_t *res = malloc((n ? n : 1) * sizeof *res);
    uint64_t *best_end = calloc(n ? n : 1, sizeof *best_end);
    size_t *last_of = malloc((n ? n : 1) * sizeof *last_of);
    size_t *prev = malloc((n ? n : 1) * sizeof *prev);
    if (!res || !best_end || !last_of || !prev) {
        free(res);
        free(best_end);
        free(last_of);
        free(prev);
        return SURG_ENOMEM;
    }
    /* the residues runs end at, sorted: a chain ending there is found by
     * bisection */
    for (size_t r = 0; r < n; r++)
        res[r] = (runs[r].src + runs[r].len) % block;
    qsort(res, n, sizeof *res, by_u64);
    uint64_t top = 0;
    size_t top_run = SIZE_MAX;
    for (size_t r = 0; r < n; r++) {
        keep[r] = false;
        prev[r] = SIZE_MAX;
        if (!run_aligned(out, idx, c, &runs[r]))
            continue;
        size_t v = first_of(res, n, runs[r].src % block);
        size_t w = first_of(res, n, (runs[r].src + runs[r].len) % block); /* always there */
        uint64_t before = v < n ? best_end[v] : 0;
        prev[r] = before ? last_of[v] : SIZE_MAX;
        if (!before && runs[r].src % 8)
            continue; /* can neither follow another nor come first */
        uint64_t total = before + runs[r].len;
        if (total > best_end[w]) {
            best_end[w] = total;
            last_of[w] = r;
        }
        if (total > top) {
            top = total;
            top_run = r;
        }
    }
    for (size_t r = top_run; r != SIZE_MAX; r = prev[r])
        keep[r] = true;
    free(res);
    free(best_end);
    free(last_of);
    free(prev);
    return SURG_OK;
}

enum { MAX_TRIMS = 8 };

/* Where the rest (the tensors not in the chain, in the reference's order)
 * goes: its first *split tensors before the chain, the others after it,
 * so that the chain starts at a multiple of 8 (its tensors are then
 * aligned as in their input) and the rest after it starts aligned to the
 * largest element among it. False: no split does. */
static bool split_rest(const stw_output *out, const size_t *idx, const bool *kept_pos,
                       size_t n, uint64_t chain, uint64_t *align_from, size_t *split,
                       uint64_t *before)
{
    uint64_t align = 1;
    for (size_t i = n; i-- > 0;) { /* align_from[i]: the largest element from i on */
        uint64_t e = kept_pos[i] ? 1 : elem_size(out->tensors[idx[i]].dtype);
        align = e > align ? e : align;
        align_from[i] = align;
    }
    *before = 0;
    *split = 0;
    for (size_t i = 0;; i++) {
        if (i < n && kept_pos[i])
            continue;
        uint64_t after = i < n ? align_from[i] : 1;
        if (*before % 8 == 0 && (*before + chain) % after == 0)
            return true;
        if (i == n)
            return false;
        *before += out->tensors[idx[i]].nbytes;
        ++*split;
    }
}

/* The chain, with runs leaving it from its end (a few at most) until the
 * rest can be split around it. Returns its bytes (0: none). */
static uint64_t trim_chain(const stw_output *out, const size_t *idx, const placed *c,
                           const stw_run *runs, size_t n_runs, bool *keep, bool *kept_pos,
                           size_t n, uint64_t *align_from, size_t *split, uint64_t *before)
{
    uint64_t chain = 0;
    for (size_t r = 0; r < n_runs; r++)
        for (size_t i = 0; keep[r] && i < runs[r].n; i++) {
            kept_pos[c[runs[r].first + i].pos] = true;
            chain += out->tensors[idx[c[runs[r].first + i].pos]].nbytes;
        }
    size_t r = n_runs;
    for (int trims = 0; chain && trims <= MAX_TRIMS; trims++) {
        if (split_rest(out, idx, kept_pos, n, chain, align_from, split, before))
            return chain;
        while (!keep[r - 1])
            r--;
        keep[--r] = false;
        chain -= runs[r].len;
        for (size_t i = 0; i < runs[r].n; i++)
            kept_pos[c[runs[r].first + i].pos] = false;
    }
    return 0;
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
    uint64_t *align_from = malloc(n * sizeof *align_from);
    surg_status st = c && runs && keep && kept_pos && order && align_from ? SURG_OK : SURG_ENOMEM;
    for (size_t i = 0; !st && i < n; i++) {
        const stw_source *s = &out->src[f->idx[i]];
        if (s->fd >= 0 && out->tensors[f->idx[i]].nbytes)
            c[n_c++] = (placed){s->fd, s->off, i};
    }
    size_t n_runs = 0, n_kept = 0, split = 0;
    uint64_t before = 0;
    if (!st && n_c) {
        qsort(c, n_c, sizeof *c, by_source);
        n_runs = find_runs(out, f->idx, c, n_c, runs);
        st = chain_runs(out, f->idx, c, runs, n_runs, block, keep);
    }
    if (!st && n_runs && trim_chain(out, f->idx, c, runs, n_runs, keep, kept_pos, n, align_from,
                                    &split, &before)) {
        size_t at = 0, rest = 0;
        uint64_t dst = before;
        for (size_t i = 0; rest < split; i++)
            if (!kept_pos[i]) {
                order[at++] = f->idx[i];
                rest++;
            }
        for (size_t r = 0; r < n_runs; r++) {
            if (!keep[r])
                continue;
            if (!n_kept)
                *residue = (runs[r].src - dst) % block;
            for (size_t i = 0; i < runs[r].n; i++)
                order[at + i] = f->idx[c[runs[r].first + i].pos];
            runs[n_kept] = runs[r];
            runs[n_kept].first = at;
            runs[n_kept].dst = dst;
            at += runs[r].n;
            dst += runs[r].len;
            n_kept++;
        }
        for (size_t i = 0, k = 0; i < n; i++)
            if (!kept_pos[i] && k++ >= split)
                order[at++] = f->idx[i];
        stw_run *last = &runs[n_kept - 1];
        const stw_source *s = &out->src[order[last->first + last->n - 1]];
        last->to_eof = last->first + last->n == n && last->src + last->len == s->file_size;
        memcpy(f->idx, order, n * sizeof *order);
        f->runs = runs;
        f->n_runs = n_kept;
        runs = NULL;
    }
    free(c);
    free(runs);
    free(keep);
    free(kept_pos);
    free(order);
    free(align_from);
    return st;
}

bool sh_span(const stw_run *r, uint32_t block, uint64_t *lo, uint64_t *hi)
{
    uint64_t end = r->dst + r->len;
    *lo = (r->dst + block - 1) / block * block;
    *hi = r->to_eof ? end : end / block * block;
    return *lo < *hi;
}
