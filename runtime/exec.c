/* exec.c: running a plan. The outputs are laid out first (exec_out.c: every
 * file's header and every tensor's offset known), the temporary files are
 * created at their final size and their headers written; then jobs fill them
 * in on a pool of threads (jobs.c), in any order, each writing its own bytes
 * at its own offset:
 *   copy     a byte range of an input (copy_file_range, or pread/pwrite);
 *   chunk    a chunk of a computed, generated or moved tensor;
 *   reduce   a chunk of a reduction's operand (phases before the chunks,
 *            innermost reductions first; partial results combine in chunk
 *            order, so nothing depends on the number of threads).
 * Inputs whose bytes are not in place (NumPy arrays deflated, big-endian or in
 * Fortran order; strided PyTorch views) are decoded first, a job per tensor,
 * into scratch files beside the output (decode.c); an .npz output takes each
 * tensor's CRC-32, computed by the jobs piece by piece and combined in order.
 * The files are synced and renamed into place only when every job is done. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "runtime/checkpoint.h"
#include "support/diag.h"
#include "runtime/exec_out.h"
#include "runtime/jobs.h"
#include "runtime/numeric.h"
#include "runtime/select.h"

enum {
    COPY_PIECE = 64 << 20,       /* bytes per copy job */
    SHARE_PIECE = 1 << 30,       /* per shared range's job (block-aligned: a reflink each) */
    THREAD_BUDGET = 8 << 20,     /* scratch memory per thread for kernels */
    MIN_CHUNK = 1024,
};

/* What runs before the output's chunks: a reduction to a scalar (partial
 * results per chunk), a reduction over an axis (its result held), a
 * matmul's right operand (held), or a topk_mask's cut (run_select). */
typedef enum held_kind { HK_SCALAR, HK_AXIS, HK_RIGHT, HK_MASK } held_kind;

typedef struct reduction {
    cg_id node;
    held_kind kind;
    uint32_t depth;   /* reductions nested in its operand */
    size_t chunk;
    size_t n_chunks;  /* jobs */
    kx_partial *parts;
} reduction;

typedef struct run {
    const surg_plan *pl;
    const surg_run_opts *opts;
    surg_sink *sink;
    outp_reads reads; /* every file the run reads: no output may replace one */
    xo_set out;
    kx_ctx kx;
    size_t *chunk;    /* per plan tensor: elements per job */
    bool needs_map;   /* some tensor reads scattered input elements */
    reduction *red;
    size_t n_red;
    sx_sel *sel;      /* the topk_mask being selected, while its passes run */
    jb_list jobs;
    jb_pool pool;
    uint64_t total;   /* bytes the jobs make, for progress */
    surg_chunk_fn give; /* surg_run_stream: the consumer, instead of files */
    void *give_user;
} run;

/* Does this run make plan tensor t (a part makes only its own shards')? */
static bool mine(const run *r, size_t t)
{
    return r->give || !r->opts->part.count || xo_mine(&r->out, t);
}

/* ---- sizing ------------------------------------------------------------ */

/* Distinct nodes a chunk of `id` evaluates (not inside reductions, which
 * are computed by then, nor a matmul's right operand, which is held); a
 * matmul counts twice (its rows and their order), and *matmuls counts them. */
static size_t count_nodes(const cg_node *nodes, cg_id id, uint32_t *stamp, uint32_t mark,
                          size_t *matmuls)
{
    if (stamp[id] == mark)
        return 0;
    stamp[id] = mark;
    const cg_node *n = &nodes[id];
    size_t k = 1;
    if (n->op == OP_MATMUL) {
        ++*matmuls;
        return 2 + count_nodes(nodes, n->in[0], stamp, mark, matmuls);
    }
    if (cg_op_class(n->op) != CG_REDUCTION || n->op == OP_TOPK) /* a mask needs its operand */
        for (uint32_t i = 0; i < n->n_in; i++)
            k += count_nodes(nodes, n->in[i], stamp, mark, matmuls);
    return k;
}

/* The weight of a subgraph for chunk_for: a matmul evaluates its left
 * operand, in blocks as long as the chunk, while the chunk's values stay:
 * each one nests another such block. */
static size_t weight(const cg_node *nodes, cg_id id, uint32_t *stamp, uint32_t mark)
{
    size_t matmuls = 0;
    size_t n = count_nodes(nodes, id, stamp, mark, &matmuls);
    return n * (1 + matmuls);
}

/* Elements per chunk for a subgraph of `nodes` nodes: as many as fit the
 * thread's budget, up to the plan's chunk. Each node may need its values,
 * an index list and the bookkeeping of concat (48 bytes an element). */
static size_t chunk_for(size_t nodes, size_t *scratch)
{
    size_t per = nodes * 48 + 32;
    size_t n = THREAD_BUDGET / per;
    n = n < MIN_CHUNK ? MIN_CHUNK : n > PL_CHUNK_ELEMS ? PL_CHUNK_ELEMS : n;
    size_t need = n * per + (64 << 10);
    if (need > *scratch)
        *scratch = need;
    return n;
}

/* ---- doing one job ------------------------------------------------------ */

/* The CRC of what a copy wrote, read back (the bytes never passed through
 * memory on their way). */
static surg_status crc_written(run *r, jb_worker *w, size_t t, uint64_t at, uint64_t len,
                               uint32_t *crc)
{
    size_t cap = r->pool.max_chunk * 8;
    uLong c = crc32_z(0, NULL, 0);
    while (len) {
        size_t want = len < cap ? (size_t)len : cap;
        ssize_t n = pread(of_fd(r->out.dest[t]), w->bytes, want, (off_t)at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return dg_errno(&r->pool.locked, r->pl->t[t].name, "cannot read back the output",
                            n ? errno : EIO);
        c = crc32_z(c, w->bytes, (size_t)n);
        at += (uint64_t)n;
        len -= (uint64_t)n;
    }
    *crc = (uint32_t)c;
    return SURG_OK;
}

/* A copy handed to the consumer: read into the worker's buffer, a piece
 * at a time. */
static surg_status give_copy(run *r, jb_worker *w, size_t t, const st_file *in, uint64_t src,
                             uint64_t len, uint64_t at)
{
    size_t cap = r->pool.max_chunk * 8; /* whole elements: pieces are element-aligned */
    while (len) {
        size_t want = len < cap ? (size_t)len : cap, got = 0;
        while (got < want) {
            ssize_t n = pread(in->fd, w->bytes + got, want - got, (off_t)(src + got));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return dg_errno(&r->pool.locked, in->path, "cannot read tensor data",
                                n ? errno : EIO);
            got += (size_t)n;
        }
        surg_status st = r->give(r->give_user, t, at, w->bytes, want);
        if (st)
            return st;
        src += want;
        at += want;
        len -= want;
    }
    return SURG_OK;
}

static surg_status do_copy(run *r, jb_worker *w, jb_job *j)
{
    size_t t = j->item;
    const pl_segment *s = &r->pl->t[t].segs[j->seg];
    const st_file *in = ck_file_of(r->kx.ck, s->input);
    uint64_t src = r->kx.ck->offset[s->input] + s->offset + j->start;
    if (r->give)
        return give_copy(r, w, t, in, src, j->n, j->out);
    uint64_t at = r->out.dest_off[t] + j->out;
    surg_status st = of_copy_at(r->out.dest[t], &r->pool.locked, in->fd, src, j->n, at);
    if (!st && xo_wants_crc(&r->out, t))
        st = crc_written(r, w, t, at, j->n, &j->crc);
    return st;
}

/* A shared range, block-aligned on both sides: copy_file_range makes the
 * output's blocks the input's where the file system can (a reflink), and
 * copies them where it cannot. */
static surg_status do_share(run *r, jb_job *j)
{
    const xo_share *s = &r->out.share[j->item];
    return of_copy_at(s->dest, &r->pool.locked, s->fd, s->src + j->start, j->n,
                      s->dst + j->start);
}

static surg_status do_sync(run *r, jb_job *j)
{
    const stw_file *f = &r->out.lay[j->item].files[j->seg];
    if (fsync(of_fd(f->of)) != 0)
        return dg_errno(&r->pool.locked, f->path, "cannot sync", errno);
    return SURG_OK;
}

static surg_status do_chunk(run *r, jb_worker *w, jb_job *j)
{
    size_t t = j->item;
    const pl_tensor *x = &r->pl->t[t];
    const cg_node *nodes = r->pl->nodes;
    size_t esize = surg_dtype_bits(x->dtype) / 8;
    kx_index ix = {.start = j->start, .n = j->n};
    /* A cast to a float dtype at the root rounds exactly as storing does:
     * storing alone is enough (but for 64-bit integers, which the cast
     * reads its own way). */
    cg_id root = x->node;
    const cg_node *rn = &nodes[root];
    if (x->kind == PL_COMPUTE && rn->op == OP_CAST && rn->dtype == x->dtype &&
        surg_dtype_kind_of(x->dtype) == SURG_KIND_FLOAT &&
        surg_dtype_bits(nodes[rn->in[0]].dtype) < 64)
        root = rn->in[0];
    surg_status st = x->kind == PL_GATHER
                         ? kx_gather(&r->kx, &w->scratch, root, ix, w->bytes, &r->pool.locked)
                         : kx_eval(&r->kx, &w->scratch, root, ix, w->vals, &r->pool.locked);
    if (st)
        return st;
    if (x->kind != PL_GATHER)
        nm_encode(x->dtype, w->vals, j->n, w->bytes, NM_ROUND);
    if (r->give)
        return r->give(r->give_user, t, j->start * esize, w->bytes, j->n * esize);
    if (xo_wants_crc(&r->out, t))
        j->crc = (uint32_t)crc32_z(0, w->bytes, j->n * esize);
    return of_pwrite(r->out.dest[t], &r->pool.locked, w->bytes, j->n * esize,
                     r->out.dest_off[t] + j->start * esize);
}

static surg_status do_job(void *user, jb_worker *w, jb_job *j)
{
    run *r = user;
    switch (j->kind) {
    case JB_COPY: return do_copy(r, w, j);
    case JB_CHUNK: return do_chunk(r, w, j);
    case JB_DECODE: return ck_decode(r->kx.ck, j->item, &r->pool.locked);
    case JB_SHARE: return do_share(r, j);
    case JB_SYNC: return do_sync(r, j);
    case JB_REDUCE: {
        reduction *red = &r->red[j->item];
        if (red->kind == HK_MASK)
            return sx_chunk(r->sel, &r->kx, &w->scratch, j->start, (size_t)j->n, &r->pool.locked);
        if (red->kind == HK_AXIS)
            return kx_axis_job(&r->kx, &w->scratch, red->node, j->start, red->chunk,
                               &r->pool.locked);
        if (red->kind == HK_RIGHT)
            return kx_hold_chunk(&r->kx, &w->scratch, red->node, j->start, j->n,
                                 &r->pool.locked);
        return kx_reduce_chunk(&r->kx, &w->scratch, red->node, j->start, j->n,
                               &red->parts[j->start / red->chunk], &r->pool.locked);
    }
    }
    return SURG_EUSAGE;
}

static uint64_t job_bytes(void *user, const jb_job *j)
{
    const run *r = user;
    if (j->kind == JB_COPY || j->kind == JB_SHARE)
        return j->n;
    if (j->kind == JB_REDUCE || j->kind == JB_SYNC)
        return 0;
    if (j->kind == JB_DECODE)
        return r->kx.ck->tensors[j->item].nbytes;
    return j->n * surg_dtype_bits(r->pl->t[j->item].dtype) / 8;
}

/* While the jobs run: progress, and the output's pages on their way to disk. */
static void tick(void *user, uint64_t done)
{
    run *r = user;
    if (r->opts->progress)
        r->opts->progress(r->opts->progress_user, done, r->total);
    xo_writeback(&r->out);
}

/* ---- reductions, innermost first -------------------------------------- */

static void collect_reductions(const cg_node *nodes, cg_id id, uint8_t *seen, reduction *out,
                               size_t *n, uint32_t *memo)
{
    if (seen[id])
        return;
    seen[id] = 1;
    const cg_node *x = &nodes[id];
    for (uint32_t k = 0; k < x->n_in; k++)
        collect_reductions(nodes, x->in[k], seen, out, n, memo);
    if (cg_op_class(x->op) == CG_REDUCTION)
        out[(*n)++] = (reduction){.node = id,
                                  .kind = x->op == OP_TOPK       ? HK_MASK
                                          : x->a.reduce.over ? HK_AXIS
                                                             : HK_SCALAR,
                                  .depth = kx_levels(nodes, x->in[0], memo)};
    else if (x->op == OP_MATMUL)
        out[(*n)++] = (reduction){.node = id, .kind = HK_RIGHT,
                                  .depth = kx_levels(nodes, x->in[1], memo)};
}

/* The operand a pass before the kernels reads. */
static cg_id operand_of(const cg_node *nodes, const reduction *red)
{
    const cg_node *x = &nodes[red->node];
    return red->kind == HK_RIGHT ? x->in[1] : x->in[0];
}

/* Memory for a held value, and the jobs that fill it. */
static bool prepare_held(run *r, reduction *red)
{
    const cg_node *x = &r->pl->nodes[red->node];
    uint64_t elems = red->kind == HK_RIGHT ? r->pl->nodes[x->in[1]].nelems : x->nelems;
    size_t elem = red->kind == HK_RIGHT ? kx_hold_elem(x) : sizeof(double);
    if (red->kind == HK_AXIS)
        red->n_chunks = (size_t)kx_axis_jobs(x, red->chunk);
    r->kx.held[red->node] = malloc(elems ? (size_t)elems * elem : 1);
    return r->kx.held[red->node] != NULL;
}

static surg_status prepare_reductions(run *r, uint32_t *stamp)
{
    const cg_node *nodes = r->pl->nodes;
    uint32_t n_nodes = r->pl->n_nodes;
    uint8_t *seen = calloc(n_nodes ? n_nodes : 1, 1);
    uint32_t *memo = calloc(n_nodes ? n_nodes : 1, sizeof *memo);
    r->red = calloc(n_nodes ? n_nodes : 1, sizeof *r->red);
    r->kx.held = calloc(n_nodes ? n_nodes : 1, sizeof *r->kx.held);
    if (!seen || !memo || !r->red || !r->kx.held) {
        free(seen);
        free(memo);
        return dg_nomem(r->sink, "surg");
    }
    for (size_t t = 0; t < r->pl->n; t++)
        if (r->pl->t[t].kind == PL_COMPUTE && mine(r, t))
            collect_reductions(nodes, r->pl->t[t].node, seen, r->red, &r->n_red, memo);
    surg_status st = SURG_OK;
    for (size_t i = 0; i < r->n_red && !st && !r->kx.cuts; i++)
        if (r->red[i].kind == HK_MASK &&
            !(r->kx.cuts = calloc(n_nodes, sizeof *r->kx.cuts)))
            st = dg_nomem(r->sink, "surg");
    for (size_t i = 0; i < r->n_red && !st; i++) {
        reduction *red = &r->red[i];
        cg_id operand = operand_of(nodes, red);
        red->chunk = chunk_for(weight(nodes, operand, stamp, (uint32_t)(r->pl->n + i + 1)),
                               &r->pool.scratch);
        red->n_chunks = (size_t)((nodes[operand].nelems + red->chunk - 1) / red->chunk);
        bool ok = true;
        if (red->kind == HK_AXIS || red->kind == HK_RIGHT)
            ok = prepare_held(r, red);
        else if (red->kind == HK_SCALAR) /* a mask's passes keep their own counts */
            ok = (red->parts = calloc(red->n_chunks ? red->n_chunks : 1, sizeof *red->parts)) != NULL;
        if (!ok)
            st = dg_nomem(r->sink, "surg");
        if (red->chunk > r->pool.max_chunk)
            r->pool.max_chunk = red->chunk;
    }
    free(seen);
    free(memo);
    return st;
}

/* A topk_mask's cut: its passes, one after another (select.c), each a job
 * per chunk of its operand. */
static surg_status run_select(run *r, size_t i)
{
    reduction *red = &r->red[i];
    sx_sel sel;
    surg_status st = sx_begin(&sel, &r->kx, red->node, red->chunk, r->sink);
    r->sel = &sel;
    while (!st && sel.phase != SX_DONE) {
        r->jobs.n = 0;
        uint64_t n = sel.elems;
        for (size_t k = sel.first; k < sel.end && !st; k++) {
            uint64_t at = (uint64_t)k * red->chunk;
            if (!jb_add(&r->jobs, (jb_job){JB_REDUCE, (uint32_t)i, 0, at,
                                           n - at < red->chunk ? n - at : red->chunk, 0, 0}))
                st = dg_nomem(r->sink, "surg");
        }
        if (!st)
            st = jb_run(&r->pool, &r->jobs);
        if (!st)
            st = sx_next(&sel, r->sink);
    }
    r->sel = NULL;
    if (!st)
        r->kx.cuts[red->node] = sel.cut;
    sx_free(&sel);
    return st;
}

/* One phase per depth: the reductions of that depth, chunk by chunk; then
 * each one's chunks combined, in order, into its value; then the cuts of
 * the topk_masks of that depth, one at a time. */
static surg_status run_reductions(run *r)
{
    const cg_node *nodes = r->pl->nodes;
    uint32_t max_depth = 0;
    for (size_t i = 0; i < r->n_red; i++)
        max_depth = r->red[i].depth > max_depth ? r->red[i].depth : max_depth;
    surg_status st = SURG_OK;
    for (uint32_t d = 0; r->n_red && d <= max_depth && !st; d++) {
        r->jobs.n = 0;
        for (size_t i = 0; i < r->n_red; i++) {
            reduction *red = &r->red[i];
            if (red->kind == HK_MASK) /* its passes are run_select's */
                continue;
            if (red->kind == HK_AXIS) {
                for (uint64_t k = 0; red->depth == d && k < red->n_chunks; k++)
                    if (!jb_add(&r->jobs, (jb_job){JB_REDUCE, (uint32_t)i, 0, k, 0, 0, 0}))
                        return dg_nomem(r->sink, "surg");
                continue;
            }
            uint64_t n = nodes[operand_of(nodes, red)].nelems;
            for (uint64_t k = 0; red->depth == d && k < n; k += red->chunk)
                if (!jb_add(&r->jobs, (jb_job){JB_REDUCE, (uint32_t)i, 0, k,
                                               n - k < red->chunk ? n - k : red->chunk, 0, 0}))
                    return dg_nomem(r->sink, "surg");
        }
        st = r->jobs.n ? jb_run(&r->pool, &r->jobs) : SURG_OK;
        for (size_t i = 0; !st && i < r->n_red; i++)
            if (r->red[i].depth == d && r->red[i].kind == HK_SCALAR)
                r->kx.scalars[r->red[i].node] =
                    kx_reduce_finish(&r->kx, r->red[i].node, r->red[i].parts, r->red[i].n_chunks);
        for (size_t i = 0; !st && i < r->n_red; i++)
            if (r->red[i].depth == d && r->red[i].kind == HK_MASK)
                st = run_select(r, i);
    }
    return st;
}

/* ---- setting up ------------------------------------------------------- */

/* The files the run reads: the input's (its index, shards, parts), and
 * those the caller names (the recipe, a target). */
static surg_status collect_reads(run *r)
{
    const surg_run_opts *o = r->opts;
    surg_status st = outp_reads_add_ckpt(&r->reads, r->sink, r->kx.ck);
    for (size_t i = 0; !st && i < o->n_also_read; i++)
        st = outp_reads_add(&r->reads, r->sink, o->also_read[i]);
    for (size_t i = 0; !st && i < r->pl->rec.n_files; i++) /* JSON files of meta statements */
        st = outp_reads_add(&r->reads, r->sink, r->pl->rec.files[i]);
    for (size_t i = 0; !st && i < o->n_also_opened; i++)
        st = outp_reads_add_ckpt(&r->reads, r->sink, o->also_opened[i]);
    return st;
}

/* Each tensor's chunk and each thread's scratch, the reductions to compute
 * first, and the values they will have (NaN until computed). */
static surg_status prepare(run *r)
{
    const surg_plan *pl = r->pl;
    uint32_t n_nodes = pl->n_nodes;
    uint32_t *stamp = calloc(n_nodes ? n_nodes : 1, sizeof *stamp);
    r->chunk = calloc(pl->n ? pl->n : 1, sizeof *r->chunk);
    r->kx.scalars = malloc((n_nodes ? n_nodes : 1) * sizeof *r->kx.scalars);
    if (!stamp || !r->chunk || !r->kx.scalars) {
        free(stamp);
        return dg_nomem(r->sink, "surg");
    }
    for (cg_id i = 0; i < n_nodes; i++)
        r->kx.scalars[i] = NAN;
    r->needs_map = false;
    r->pool.max_chunk = MIN_CHUNK;
    for (size_t t = 0; t < pl->n; t++) {
        const pl_tensor *x = &pl->t[t];
        r->total += mine(r, t) ? x->nbytes : 0;
        if (x->kind == PL_COPY)
            continue;
        if (surg_dtype_bits(x->dtype) % 8) {
            dg_file(r->sink, SURG_ERROR, "run-subbyte", "surg",
                    "\"%s\" is %s, whose elements are not whole bytes: it can be copied, not "
                    "rearranged or computed",
                    x->name, surg_dtype_recipe_name(x->dtype));
            free(stamp);
            return SURG_EINVALID;
        }
        r->needs_map = true;
        r->chunk[t] = chunk_for(weight(pl->nodes, x->node, stamp, (uint32_t)t + 1),
                                &r->pool.scratch);
        if (r->chunk[t] > r->pool.max_chunk)
            r->pool.max_chunk = r->chunk[t];
    }
    surg_status st = prepare_reductions(r, stamp);
    free(stamp);
    return st;
}

/* Scattered reads come from the mapped files: map them before the threads
 * start (mapping touches no data). */
static surg_status map_inputs(run *r)
{
    surg_status st = SURG_OK;
    for (size_t i = 0; !st && r->needs_map && i < r->kx.ck->n_files; i++)
        st = st_map(&r->kx.ck->files[i], r->sink);
    return st;
}

/* need[i]: does a tensor this run makes read input tensor i? Node ids
 * count up from the leaves, so one sweep down marks every operand. */
static bool inputs_needed(const run *r, uint8_t *need)
{
    const surg_plan *pl = r->pl;
    uint8_t *live = calloc(pl->n_nodes ? pl->n_nodes : 1, 1);
    if (!live)
        return false;
    for (size_t t = 0; t < pl->n; t++) {
        if (!mine(r, t))
            continue;
        if (pl->t[t].kind == PL_COPY)
            for (size_t s = 0; s < pl->t[t].n_segs; s++)
                need[pl->t[t].segs[s].input] = 1;
        else
            live[pl->t[t].node] = 1;
    }
    for (size_t id = pl->n_nodes; id-- > 0;) {
        const cg_node *n = &pl->nodes[id];
        if (!live[id])
            continue;
        if (n->op == OP_INPUT)
            need[n->a.input] = 1;
        for (uint32_t i = 0; i < n->n_in; i++)
            live[n->in[i]] = 1;
    }
    free(live);
    return true;
}

/* The inputs the plan reads whose bytes are not in place (the plan lists
 * them) are decoded first, a job per tensor, into scratch files in the
 * output's directory (which has room for the output anyway; /tmp may be a
 * small tmpfs). An earlier run of the same plan may have decoded some. */
static surg_status decode_inputs(run *r, const char *out_path)
{
    surg_ckpt *ck = r->kx.ck;
    if (!ck->dec)
        return SURG_OK;
    /* A stream (no output path): $TMPDIR, surg_ckpt_data's place. */
    size_t n = out_path ? strlen(out_path) : 0;
    while (n > 1 && out_path[n - 1] == '/')
        n--; /* "out/" (a directory output) is "out", in "." */
    const char *slash = NULL;
    for (size_t i = 0; i < n; i++)
        slash = out_path[i] == '/' ? out_path + i : slash;
    if (out_path) {
        ck->scratch_dir = slash ? ar_strndup(&ck->ar, out_path, (size_t)(slash - out_path) + 1)
                                : ".";
        if (!ck->scratch_dir)
            return dg_nomem(r->sink, "surg");
    }
    /* A part decodes only what its own tensors read. */
    uint8_t *need = r->opts->part.count ? calloc(ck->n ? ck->n : 1, 1) : NULL;
    if (r->opts->part.count && (!need || !inputs_needed(r, need))) {
        free(need);
        return dg_nomem(r->sink, "surg");
    }
    surg_status st = SURG_OK;
    r->jobs.n = 0;
    for (size_t k = 0; k < r->pl->n_decode && !st; k++) {
        size_t i = r->pl->decode[k];
        if (!ck_needs_decode(ck, i) || (need && !need[i]))
            continue;
        st = ck_scratch_open(ck, i, r->sink);
        r->total += ck->tensors[i].nbytes;
        if (!st && !jb_add(&r->jobs, (jb_job){.kind = JB_DECODE, .item = (uint32_t)i}))
            st = dg_nomem(r->sink, "surg");
    }
    free(need);
    return st || !r->jobs.n ? st : jb_run(&r->pool, &r->jobs);
}

/* ---- the output's jobs ------------------------------------------------- */

/* A copy of `len` bytes from `off` in segment s of tensor t to `at` in the
 * tensor, but for what a share fills (its head and tail outside it). */
static bool copy_job(run *r, size_t t, size_t s, uint64_t off, uint64_t len, uint64_t at)
{
    uint64_t base = r->give ? 0 : r->out.dest_off[t];
    uint64_t lo = r->give ? 0 : r->out.share_lo[t], hi = r->give ? 0 : r->out.share_hi[t];
    uint64_t from = base + at, to = from + len; /* in the file */
    uint64_t cut_lo = lo > from ? lo : from, cut_hi = hi < to ? hi : to;
    if (cut_lo >= cut_hi)
        return jb_add(&r->jobs, (jb_job){JB_COPY, (uint32_t)t, (uint32_t)s, off, len, at, 0});
    if (cut_lo > from && !jb_add(&r->jobs, (jb_job){JB_COPY, (uint32_t)t, (uint32_t)s, off,
                                                    cut_lo - from, at, 0}))
        return false;
    uint64_t skip = cut_hi - from;
    return cut_hi == to || jb_add(&r->jobs, (jb_job){JB_COPY, (uint32_t)t, (uint32_t)s,
                                                     off + skip, len - skip, at + skip, 0});
}

static bool tensor_jobs(run *r, size_t t)
{
    const pl_tensor *x = &r->pl->t[t];
    if (x->kind == PL_COPY) {
        uint64_t at = 0;
        for (size_t s = 0; s < x->n_segs; s++) {
            for (uint64_t off = 0; off < x->segs[s].len; off += COPY_PIECE) {
                uint64_t len = x->segs[s].len - off < COPY_PIECE ? x->segs[s].len - off
                                                                 : COPY_PIECE;
                if (!copy_job(r, t, s, off, len, at + off))
                    return false;
            }
            at += x->segs[s].len;
        }
        return true;
    }
    uint64_t n = r->pl->nodes[x->node].nelems;
    for (uint64_t i = 0; i < n; i += r->chunk[t])
        if (!jb_add(&r->jobs, (jb_job){JB_CHUNK, (uint32_t)t, 0, i,
                                       n - i < r->chunk[t] ? n - i : r->chunk[t], 0, 0}))
            return false;
    return true;
}

/* The jobs of one output file, front to back, as the disk likes: its
 * shared ranges (the next of o->share, from *next on), then its tensors. */
static bool file_jobs(run *r, const stw_layout *lay, size_t k, size_t f, size_t *next)
{
    const xo_set *o = &r->out;
    for (; *next < o->n_share && o->share[*next].dest == lay->files[f].of; ++*next)
        for (uint64_t off = 0; off < o->share[*next].len; off += SHARE_PIECE) {
            uint64_t left = o->share[*next].len - off;
            if (!jb_add(&r->jobs, (jb_job){JB_SHARE, (uint32_t)*next, 0, off,
                                           left < SHARE_PIECE ? left : SHARE_PIECE, 0, 0}))
                return false;
        }
    /* another part's file (partition.h): laid out, never made here */
    for (size_t i = 0; !lay->files[f].elsewhere && i < lay->files[f].n; i++) {
        size_t t = o->plan_of[k][lay->files[f].idx[i]];
        if (t != SIZE_MAX && !tensor_jobs(r, t))
            return false;
    }
    return true;
}

/* Several writers: the files' jobs dealt in turn round the first `w` files
 * not yet dealt out (each file still front to back), so the threads write
 * that many files at once. ends[f]: where file f's jobs end. */
static bool deal(jb_list *l, const size_t *ends, size_t n_files, unsigned w)
{
    jb_job *v = malloc((l->n ? l->n : 1) * sizeof *v);
    size_t *at = malloc((w ? w : 1) * sizeof *at), *end = malloc((w ? w : 1) * sizeof *end);
    if (!v || !at || !end) {
        free(v);
        free(at);
        free(end);
        return false;
    }
    size_t n = 0, next_file = 0, live = 0;
    for (; live < w && next_file < n_files; live++, next_file++) {
        at[live] = next_file ? ends[next_file - 1] : 0;
        end[live] = ends[next_file];
    }
    while (live) {
        for (size_t i = 0; i < live;) {
            if (at[i] < end[i]) {
                v[n++] = l->v[at[i]++];
                i++;
            } else if (next_file < n_files) { /* the next file takes its turn */
                at[i] = ends[next_file - 1];
                end[i] = ends[next_file++];
            } else {
                at[i] = at[--live];
                end[i] = end[live];
            }
        }
    }
    free(l->v);
    l->v = v;
    l->cap = l->n;
    free(at);
    free(end);
    return true;
}

static surg_status output_jobs(run *r)
{
    const xo_set *o = &r->out;
    r->jobs.n = 0;
    for (size_t t = 0; r->give && t < r->pl->n; t++) /* a stream: in name order */
        if (!tensor_jobs(r, t))
            return dg_nomem(r->sink, "surg");
    size_t n_files = 0, next = 0;
    bool crcs = false; /* give_crcs wants each tensor's jobs together */
    for (size_t k = 0; k < o->n; k++) {
        n_files += o->lay[k].n_files;
        crcs |= stw_layout_wants_crc(&o->lay[k]);
    }
    size_t *ends = malloc((n_files ? n_files : 1) * sizeof *ends);
    bool ok = ends != NULL;
    for (size_t k = 0, i = 0; ok && k < o->n; k++)
        for (size_t f = 0; ok && f < o->lay[k].n_files; f++) {
            ok = file_jobs(r, &o->lay[k], k, f, &next);
            ends[i++] = r->jobs.n;
        }
    if (ok && r->opts->writers > 1 && n_files > 1 && !crcs)
        ok = deal(&r->jobs, ends, n_files, r->opts->writers);
    free(ends);
    return ok ? SURG_OK : dg_nomem(r->sink, "surg");
}

/* Several writers: the safetensors files synced that many at once (the
 * commit's own sync then finds nothing left to write). */
static surg_status sync_files(run *r)
{
    unsigned writers = r->opts->writers;
    r->jobs.n = 0;
    for (size_t k = 0; writers > 1 && k < r->out.n; k++)
        for (size_t f = 0; !r->out.lay[k].writer && !r->out.lay[k].dir &&
                           f < r->out.lay[k].n_files; f++)
            if (!r->out.lay[k].files[f].elsewhere && /* another part's: not here */
                !jb_add(&r->jobs, (jb_job){.kind = JB_SYNC, .item = (uint32_t)k,
                                           .seg = (uint32_t)f}))
                return dg_nomem(r->sink, "surg");
    if (r->jobs.n < 2)
        return SURG_OK;
    unsigned threads = r->pool.threads;
    r->pool.threads = writers;
    surg_status st = jb_run(&r->pool, &r->jobs);
    r->pool.threads = threads;
    return st;
}

/* Each tensor's CRC, from its jobs' in order (they cover it front to back). */
static void give_crcs(run *r)
{
    uint32_t crc = 0;
    uint64_t len = 0;
    for (size_t i = 0; i < r->jobs.n; i++) {
        const jb_job *j = &r->jobs.v[i];
        if (!xo_wants_crc(&r->out, j->item))
            continue;
        uint64_t n = job_bytes(r, j);
        crc = (uint32_t)crc32_combine(crc, j->crc, (z_off_t)n);
        len += n;
        if (len == r->pl->t[j->item].nbytes) {
            xo_set_crc(&r->out, j->item, crc);
            crc = 0;
            len = 0;
        }
    }
}

/* Every output synced before any is renamed into place, and none if an
 * input changed while it was read (its bytes may be half old, half new). */
static surg_status commit(run *r)
{
    surg_status st = SURG_OK;
    for (size_t i = 0; i < r->kx.ck->n_files && !st; i++)
        st = st_unchanged(&r->kx.ck->files[i], r->sink);
    return st ? st : xo_commit(&r->out, &r->reads, r->sink);
}

static surg_status execute(run *r, const char *out_path)
{
    if (surg_ckpt_kind_of(r->kx.ck) == SURG_CKPT_SCHEMA) {
        dg_file(r->sink, SURG_ERROR, "run-schema", surg_ckpt_path(r->kx.ck),
                "a schema holds no tensor data to run on");
        return SURG_EUSAGE;
    }
    /* Every output path checked before any data is read. */
    surg_status st = collect_reads(r);
    if (!st)
        st = xo_layout(&r->out, r->pl, r->opts, out_path, &r->reads, r->sink);
    if (!st)
        st = prepare(r);
    if (!st)
        st = decode_inputs(r, r->opts->n_outputs ? r->opts->outputs[0].path : out_path);
    if (!st)
        st = map_inputs(r);
    if (!st)
        st = xo_open(&r->out, r->sink);
    if (!st)
        st = run_reductions(r);
    if (!st)
        st = output_jobs(r);
    if (!st)
        st = jb_run(&r->pool, &r->jobs);
    if (!st)
        give_crcs(r); /* before the sync's jobs replace these */
    if (!st)
        st = sync_files(r);
    if (st)
        return st;
    if (r->opts->progress)
        r->opts->progress(r->opts->progress_user, r->total, r->total);
    return commit(r);
}

/* A stream: the same jobs, handed to the consumer; no file is made. */
static surg_status execute_stream(run *r)
{
    if (surg_ckpt_kind_of(r->kx.ck) == SURG_CKPT_SCHEMA) {
        dg_file(r->sink, SURG_ERROR, "run-schema", surg_ckpt_path(r->kx.ck),
                "a schema holds no tensor data to run on");
        return SURG_EUSAGE;
    }
    surg_status st = prepare(r);
    if (!st)
        st = decode_inputs(r, NULL);
    if (!st)
        st = map_inputs(r);
    if (!st)
        st = run_reductions(r);
    if (!st)
        st = output_jobs(r);
    if (!st)
        st = jb_run(&r->pool, &r->jobs);
    for (size_t i = 0; i < r->kx.ck->n_files && !st; i++)
        st = st_unchanged(&r->kx.ck->files[i], r->sink);
    if (!st && r->opts->progress)
        r->opts->progress(r->opts->progress_user, r->total, r->total);
    return st;
}

static surg_status run_plan(const surg_plan *pl, const char *out_path, const surg_run_opts *opts,
                            surg_chunk_fn give, void *give_user, surg_sink *sink)
{
    surg_run_opts defaults = {.threads = 1};
    run r = {.pl = pl, .sink = sink, .opts = opts ? opts : &defaults, .give = give,
             .give_user = give_user};
    r.kx = (kx_ctx){.nodes = pl->nodes, .n_nodes = pl->n_nodes, .ck = pl->input};
    jb_pool_init(&r.pool, sink);
    r.pool.threads = r.opts->threads;
    r.pool.run = do_job;
    r.pool.bytes = job_bytes;
    r.pool.tick = tick;
    r.pool.user = &r;
    surg_status st = give ? execute_stream(&r) : execute(&r, out_path);
    xo_free(&r.out);
    for (size_t i = 0; i < r.n_red; i++) {
        free(r.red[i].parts);
        if (r.kx.held)
            free(r.kx.held[r.red[i].node]);
    }
    free(r.red);
    free(r.kx.held);
    free(r.jobs.v);
    free(r.chunk);
    free(r.kx.scalars);
    free(r.kx.cuts);
    outp_reads_free(&r.reads);
    jb_pool_destroy(&r.pool);
    return st;
}

surg_status surg_run(const surg_plan *pl, const char *out_path, const surg_run_opts *opts,
                     surg_sink *sink)
{
    return run_plan(pl, out_path, opts, NULL, NULL, sink);
}

surg_status surg_run_stream(const surg_plan *pl, const surg_run_opts *opts, surg_chunk_fn fn,
                            void *user, surg_sink *sink)
{
    if (!fn) {
        dg_file(sink, SURG_ERROR, "run-stream", "surg", "a stream needs a consumer");
        return SURG_EUSAGE;
    }
    return run_plan(pl, NULL, opts, fn, user, sink);
}
