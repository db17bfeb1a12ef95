/* exec_out.c: a run's outputs: which tensors each holds and where they go,
 * the files created before the jobs run, and committed together after. */
#include "runtime/exec_out.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/checkpoint.h"
#include "runtime/st_share.h"
#include "support/diag.h"
#include "support/strsort.h"

/* An .npz or .msgpack keeps no metadata, so the tied names of output k are arrays of
 * their own, copies of the tensor they are tied to (the writer makes them):
 * added after its m tensors, each naming the index it copies. */
static surg_status add_repeats(xo_set *s, const surg_plan *pl, size_t k, const surg_ckpt_part *o,
                               surg_tensor_info *info, size_t *m, surg_sink *sink)
{
    const pl_records *rec = &pl->rec;
    size_t plen = strlen(o->prefix);
    size_t *same = malloc((*m + rec->n_ties ? *m + rec->n_ties : 1) * sizeof *same);
    if (!same)
        return dg_nomem(sink, o->path);
    for (size_t j = 0; j < *m; j++)
        same[j] = SIZE_MAX;
    for (size_t a = 0; a < rec->n_ties; a++) {
        size_t t = ss_find(pl->t, pl->n, sizeof *pl->t, rec->ties[a].value);
        if (strncmp(rec->ties[a].key, o->prefix, plen) != 0 || t == (size_t)-1 ||
            s->lay_of[t] != k)
            continue;
        info[*m] = info[s->idx_of[t]];
        info[*m].name = rec->ties[a].key + plen;
        same[*m] = s->idx_of[t];
        s->plan_of[k][(*m)++] = SIZE_MAX;
    }
    s->out[k].same_as = same;
    s->out[k].n = *m;
    return SURG_OK;
}

/* Where each of output k's m tensors already is, whole (st_share.h): a
 * copy whose pieces follow each other in one input file that is not a
 * scratch file. The blocks are shared only when the file system can
 * (opts->reflink). */
static surg_status add_sources(xo_set *s, const surg_plan *pl, const surg_run_opts *opts,
                               size_t k, const surg_ckpt_part *o, surg_sink *sink)
{
    stw_output *out = &s->out[k];
    stw_source *src = malloc((out->n ? out->n : 1) * sizeof *src);
    if (!src)
        return dg_nomem(sink, o->path);
    int fd = -1;
    const surg_ckpt *ck = pl->input;
    for (size_t j = 0; j < out->n; j++) {
        size_t t = s->plan_of[k][j];
        const pl_tensor *x = t == SIZE_MAX ? NULL : &pl->t[t];
        src[j] = (stw_source){.fd = -1};
        uint64_t len = 0;
        for (size_t g = 0; x && x->kind == PL_COPY && g < x->n_segs; g++) {
            const pl_segment *seg = &x->segs[g];
            const st_file *in = ck_file_of(ck, seg->input);
            uint64_t at = ck->offset[seg->input] + seg->offset;
            bool decoded = in->scratch || (ck->dec && ck->dec[seg->input]);
            if (decoded || (g && (in->fd != src[j].fd || at != src[j].off + len))) {
                src[j] = (stw_source){.fd = -1};
                break;
            }
            if (!g)
                src[j] = (stw_source){in->fd, at, in->size};
            len += seg->len;
        }
        fd = fd < 0 ? src[j].fd : fd;
    }
    out->src = src;
    out->share_block = sh_block_size(o->path, opts->reflink, fd);
    return SURG_OK;
}

surg_tensor_info xo_tensor_info(const pl_tensor *t, size_t plen)
{
    uint64_t nelems = 1; /* the writers that cut arrays count elements */
    for (uint32_t d = 0; d < t->rank; d++)
        nelems *= t->shape[d];
    return (surg_tensor_info){t->name + plen, t->dtype, t->rank, t->shape, nelems, t->nbytes};
}

/* Output k's layout: the plan's tensors under its prefix not placed yet
 * (`taken` marks those placed so far), named without the prefix, with the
 * metadata of that prefix. */
static surg_status layout_one(xo_set *s, const surg_plan *pl, const surg_run_opts *opts,
                              const outp_reads *reads, size_t k, const surg_ckpt_part *o,
                              bool *taken, surg_sink *sink)
{
    size_t plen = strlen(o->prefix), m = 0, room = pl->n + pl->rec.n_ties;
    surg_tensor_info *info = calloc(room ? room : 1, sizeof *info);
    s->plan_of[k] = calloc(room ? room : 1, sizeof *s->plan_of[k]);
    if (!info || !s->plan_of[k]) {
        free(info);
        return dg_nomem(sink, o->path);
    }
    for (size_t t = 0; t < pl->n; t++)
        if (!taken[t] && strncmp(pl->t[t].name, o->prefix, plen) == 0) {
            taken[t] = true;
            info[m] = xo_tensor_info(&pl->t[t], plen);
            s->lay_of[t] = (uint32_t)k;
            s->idx_of[t] = m;
            s->plan_of[k][m++] = t;
        }
    s->out[k] = (stw_output){.tensors = info, .n = m, .meta = pl->meta, .n_meta = pl->n_meta,
                             .no_format = pl_drops_format(&pl->rec),
                             .max_shard_size = opts->max_shard_size, .reads = reads,
                             .format = opts->out_format, .part = opts->part};
    if (opts->max_shard_size) { /* every file of a sharded output names its plan */
        char *digest = ar_alloc(&s->ar, SURG_DIGEST_CHARS + 1);
        if (!digest || surg_plan_digest(pl, opts->max_shard_size, digest) != SURG_OK)
            return dg_nomem(sink, o->path);
        s->out[k].digest = digest;
    }
    if (stw_writer_of(o->path, opts->out_format) && add_repeats(s, pl, k, o, info, &m, sink) != SURG_OK)
        return SURG_ENOMEM;
    if (plen && pl_metadata(pl, o->prefix, &s->ar, (surg_meta_entry **)&s->out[k].meta,
                            &s->out[k].n_meta) != SURG_OK)
        return dg_nomem(sink, o->path);
    if (!stw_writer_of(o->path, opts->out_format) && add_sources(s, pl, opts, k, o, sink))
        return SURG_ENOMEM;
    return stw_layout_make(sink, o->path, &s->out[k], &s->lay[k]);
}

/* Several outputs must not write the same file. */
static surg_status check_apart(xo_set *s, const surg_ckpt_part *outs, surg_sink *sink)
{
    stw_layout **lays = malloc(s->n * sizeof *lays);
    const char **paths = malloc(s->n * sizeof *paths);
    for (size_t k = 0; lays && paths && k < s->n; k++) {
        lays[k] = &s->lay[k];
        paths[k] = outs[k].path;
    }
    surg_status st = lays && paths ? outp_check_apart(sink, lays, paths, s->n)
                                   : dg_nomem(sink, "surg");
    free(lays);
    free(paths);
    return st;
}

surg_status xo_layout(xo_set *s, const surg_plan *pl, const surg_run_opts *opts,
                      const char *out_path, const outp_reads *reads, surg_sink *sink)
{
    surg_ckpt_part single = {"", out_path};
    const surg_ckpt_part *outs = opts->n_outputs ? opts->outputs : &single;
    size_t n = opts->n_outputs ? opts->n_outputs : 1;
    ar_init(&s->ar);
    if (opts->part.count && n > 1) {
        dg_file(sink, SURG_ERROR, "part", outs[0].path,
                "--part writes one part of one sharded output, and this run has %zu outputs", n);
        return SURG_EUSAGE;
    }
    bool *taken = calloc(pl->n ? pl->n : 1, sizeof *taken);
    s->lay = calloc(n, sizeof *s->lay);
    s->out = calloc(n, sizeof *s->out);
    s->plan_of = calloc(n, sizeof *s->plan_of);
    s->dest = calloc(pl->n ? pl->n : 1, sizeof *s->dest);
    s->dest_off = calloc(pl->n ? pl->n : 1, sizeof *s->dest_off);
    s->lay_of = calloc(pl->n ? pl->n : 1, sizeof *s->lay_of);
    s->idx_of = calloc(pl->n ? pl->n : 1, sizeof *s->idx_of);
    s->share_lo = calloc(pl->n ? pl->n : 1, sizeof *s->share_lo);
    s->share_hi = calloc(pl->n ? pl->n : 1, sizeof *s->share_hi);
    if (!taken || !s->lay || !s->out || !s->plan_of || !s->dest || !s->dest_off || !s->lay_of ||
        !s->idx_of || !s->share_lo || !s->share_hi) {
        free(taken);
        return dg_nomem(sink, "surg");
    }
    surg_status st = SURG_OK;
    for (size_t k = 0; k < n && !st; k++) {
        s->n = k + 1;
        st = layout_one(s, pl, opts, reads, k, &outs[k], taken, sink);
    }
    for (size_t t = 0; t < pl->n && !st; t++)
        if (!taken[t]) {
            dg_file(sink, SURG_ERROR, "run-parts", "surg",
                    "\"%s\" is under none of the outputs' prefixes", pl->t[t].name);
            st = SURG_EUSAGE;
        }
    free(taken);
    return !st && n > 1 ? check_apart(s, outs, sink) : st;
}

/* The shared part of each run of output k's files, and of each tensor's
 * place. */
static surg_status add_shares(xo_set *s, size_t k, surg_sink *sink)
{
    const stw_layout *lay = &s->lay[k];
    for (size_t f = 0; f < lay->n_files; f++)
        for (size_t r = 0; !lay->files[f].elsewhere && r < lay->files[f].n_runs; r++) {
            const stw_run *run = &lay->files[f].runs[r];
            uint64_t lo, hi;
            if (!sh_span(run, s->out[k].share_block, &lo, &hi))
                continue;
            if (s->n_share == s->cap_share) {
                size_t cap = s->cap_share ? 2 * s->cap_share : 16;
                xo_share *v = realloc(s->share, cap * sizeof *v);
                if (!v)
                    return dg_nomem(sink, lay->files[f].path);
                s->share = v;
                s->cap_share = cap;
            }
            s->share[s->n_share++] =
                (xo_share){lay->files[f].of, run->fd, run->src + (lo - run->dst), lo, hi - lo};
            for (size_t i = run->first; i < run->first + run->n; i++) {
                size_t t = s->plan_of[k][lay->files[f].idx[i]];
                s->share_lo[t] = lo;
                s->share_hi[t] = hi;
            }
        }
    return SURG_OK;
}

surg_status xo_open(xo_set *s, surg_sink *sink)
{
    surg_status st = SURG_OK;
    for (size_t k = 0; k < s->n && !st; k++) {
        st = stw_layout_open(&s->lay[k], sink);
        for (size_t j = 0; !st && j < s->out[k].n; j++) {
            size_t t = s->plan_of[k][j];
            if (t == SIZE_MAX)
                continue;
            s->dest[t] = s->lay[k].files[s->lay[k].file_of[j]].of;
            s->dest_off[t] = s->lay[k].offset[j];
        }
        if (!st)
            st = add_shares(s, k, sink);
    }
    return st;
}

bool xo_wants_crc(const xo_set *s, size_t t) { return stw_layout_wants_crc(&s->lay[s->lay_of[t]]); }

void xo_set_crc(xo_set *s, size_t t, uint32_t crc)
{
    stw_layout_set_crc(&s->lay[s->lay_of[t]], s->idx_of[t], crc);
}

bool xo_mine(const xo_set *s, size_t t)
{
    const stw_layout *lay = &s->lay[s->lay_of[t]];
    return !lay->files[lay->file_of[s->idx_of[t]]].elsewhere;
}

void xo_writeback(xo_set *s)
{
    for (size_t k = 0; k < s->n; k++)
        for (size_t f = 0; f < s->lay[k].n_files; f++)
            of_start_writeback(s->lay[k].files[f].of);
}

surg_status xo_commit(xo_set *s, const outp_reads *reads, surg_sink *sink)
{
    surg_status st = SURG_OK;
    for (size_t k = 0; k < s->n && !st; k++)
        st = stw_layout_sync(&s->lay[k], sink);
    for (size_t k = 0; k < s->n && !st; k++)
        st = stw_layout_commit(&s->lay[k], sink);
    /* Every output in place: now the stale files of earlier ones go. */
    surg_status stale = SURG_OK;
    for (size_t k = 0; k < s->n && !st; k++) {
        surg_status x = outp_remove_stale(&s->lay[k], sink, reads);
        stale = x > stale ? x : stale;
    }
    return st ? st : stale;
}

void xo_free(xo_set *s)
{
    for (size_t k = 0; k < s->n; k++) {
        stw_layout_free(&s->lay[k]);
        free((void *)s->out[k].tensors);
        free((void *)s->out[k].same_as);
        free((void *)s->out[k].src);
        free(s->plan_of[k]);
    }
    free(s->lay);
    free(s->out);
    free(s->plan_of);
    free(s->dest);
    free(s->dest_off);
    free(s->lay_of);
    free(s->idx_of);
    free(s->share);
    free(s->share_lo);
    free(s->share_hi);
    ar_free(&s->ar);
}
