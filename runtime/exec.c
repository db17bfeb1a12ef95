/* exec.c: running a plan. The output is laid out first (every file's header
 * and every tensor's offset are known), the temporary files are created at
 * their final size and their headers written; then jobs fill them in, in
 * parallel and in any order, each writing its own bytes at its own offset:
 *   copy     a byte range of an input (copy_file_range, or pread/pwrite);
 *   chunk    a chunk of a computed, generated or moved tensor;
 *   reduce   a chunk of a reduction's operand (phases before the chunks,
 *            innermost reductions first; partial results combine in chunk
 *            order, so nothing depends on the number of threads).
 * Inputs whose bytes are not in place (NumPy arrays deflated, big-endian or in
 * Fortran order; strided PyTorch views) are decoded first, a job per tensor,
 * into scratch files beside the output (decode.c); an .npz output takes each tensor's CRC-32,
 * computed by the jobs piece by piece and combined in order.
 * The files are synced and renamed into place only when every job is done. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "checkpoint.h"
#include "diag.h"
#include "kernel.h"
#include "numeric.h"
#include "npz_write.h"
#include "plan.h"
#include "strsort.h"

enum {
    COPY_PIECE = 64 << 20,       /* bytes per copy job */
    THREAD_BUDGET = 8 << 20,     /* scratch memory per thread for kernels */
    /* Kernels recurse once per level of the op graph (at most CG_MAX_DEPTH):
     * a worker's stack is at least this, whatever the platform's default. */
    WORKER_STACK = 8 << 20,
    MIN_CHUNK = 1024,
};

typedef enum job_kind { JOB_COPY, JOB_CHUNK, JOB_REDUCE, JOB_DECODE } job_kind;

typedef struct job {
    job_kind kind;
    uint32_t item;   /* plan tensor, or reduction */
    uint32_t seg;    /* JOB_COPY: the segment */
    uint64_t start;  /* elements (bytes for a copy) */
    uint64_t n;
    uint64_t out;    /* JOB_COPY: where in the tensor the piece goes */
    uint32_t crc;    /* of the bytes written, when the output wants CRCs */
} job;

typedef struct reduction {
    cg_id node;
    uint32_t depth;   /* reductions nested in its operand */
    size_t chunk;
    size_t n_chunks;
    kx_partial *parts;
} reduction;

typedef struct run {
    const surg_plan *pl;
    const surg_program *p;
    kx_ctx kx;
    arena ar;
    stw_layout *lay;   /* one per output file set */
    stw_output *out;
    size_t n_lay;
    size_t **plan_of;  /* per output: its tensors' plan indices (SIZE_MAX: a
                          repeated array the writer copies) */
    uint32_t *lay_of;  /* per plan tensor: its output */
    size_t *idx_of;    /* and its index among that output's tensors */
    of_file **dest;    /* per plan tensor: the file it is written to */
    uint64_t *dest_off; /* and where its data starts there */
    size_t *chunk;     /* per plan tensor: elements per job */
    size_t scratch;    /* bytes of scratch a thread needs */
    size_t max_chunk;  /* elements */
    bool needs_map;    /* some tensor reads scattered input elements */
    reduction *red;
    size_t n_red;
    job *jobs;
    size_t n_jobs;
    atomic_size_t next;
    atomic_bool failed;
    atomic_int fail_status; /* the first failure's */
    atomic_uint_fast64_t done;
    uint64_t total;
    pthread_mutex_t lock; /* the sink is called from every thread */
    pthread_mutex_t idle_lock;
    pthread_cond_t idle; /* signalled as each worker stops */
    unsigned running;    /* workers not yet stopped (under idle_lock) */
    surg_sink *sink;
    surg_sink locked;
    const surg_run_opts *opts;
    outp_reads reads; /* every file the run reads: no output may replace one */
} run;

static void locked_report(const surg_diag *d, void *user)
{
    run *r = user;
    pthread_mutex_lock(&r->lock);
    dg_emit(r->sink, d);
    pthread_mutex_unlock(&r->lock);
}

/* ---- sizing ------------------------------------------------------------ */

/* Distinct nodes a chunk of `id` evaluates (not inside reductions, which
 * are scalars by then). */
static size_t count_nodes(const cg_graph *g, cg_id id, uint32_t *stamp, uint32_t mark)
{
    if (stamp[id] == mark)
        return 0;
    stamp[id] = mark;
    const cg_node *n = cg_get(g, id);
    size_t k = 1;
    if (cg_op_class(n->op) != CG_REDUCTION)
        for (uint32_t i = 0; i < n->n_in; i++)
            k += count_nodes(g, n->in[i], stamp, mark);
    return k;
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

/* ---- jobs -------------------------------------------------------------- */

static bool add_job(run *r, size_t *cap, job j)
{
    if (r->n_jobs == *cap) {
        size_t grown = *cap ? *cap * 2 : 1024;
        job *v = realloc(r->jobs, grown * sizeof *v);
        if (!v)
            return false;
        r->jobs = v;
        *cap = grown;
    }
    r->jobs[r->n_jobs++] = j;
    return true;
}

static bool tensor_jobs(run *r, size_t *cap, size_t t)
{
    const pl_tensor *x = &r->pl->t[t];
    if (x->kind == PL_COPY) {
        uint64_t at = 0;
        for (size_t s = 0; s < x->n_segs; s++) {
            for (uint64_t off = 0; off < x->segs[s].len; off += COPY_PIECE) {
                uint64_t len = x->segs[s].len - off < COPY_PIECE ? x->segs[s].len - off
                                                                 : COPY_PIECE;
                if (!add_job(r, cap, (job){JOB_COPY, (uint32_t)t, (uint32_t)s, off, len, at + off, 0}))
                    return false;
            }
            at += x->segs[s].len;
        }
        return true;
    }
    uint64_t n = cg_get(&r->p->g, x->node)->nelems;
    for (uint64_t i = 0; i < n; i += r->chunk[t])
        if (!add_job(r, cap, (job){JOB_CHUNK, (uint32_t)t, 0, i,
                                   n - i < r->chunk[t] ? n - i : r->chunk[t], 0, 0}))
            return false;
    return true;
}

/* ---- doing one job ------------------------------------------------------ */

typedef struct worker {
    run *r;
    kx_scratch scratch;
    double *vals;
    unsigned char *bytes;
} worker;

static bool wants_crc(const run *r, size_t t)
{
    return stw_layout_wants_crc(&r->lay[r->lay_of[t]]);
}

/* The CRC of what a copy wrote, read back (the bytes never passed through
 * memory on their way). */
static surg_status crc_written(worker *w, size_t t, uint64_t at, uint64_t len, uint32_t *crc)
{
    run *r = w->r;
    size_t cap = r->max_chunk * 8;
    uLong c = crc32_z(0, NULL, 0);
    while (len) {
        size_t want = len < cap ? (size_t)len : cap;
        ssize_t n = pread(of_fd(r->dest[t]), w->bytes, want, (off_t)at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return dg_errno(&r->locked, r->pl->t[t].name, "cannot read back the output",
                            n ? errno : EIO);
        c = crc32_z(c, w->bytes, (size_t)n);
        at += (uint64_t)n;
        len -= (uint64_t)n;
    }
    *crc = (uint32_t)c;
    return SURG_OK;
}

static surg_status do_copy(worker *w, job *j)
{
    run *r = w->r;
    const pl_tensor *x = &r->pl->t[j->item];
    const pl_segment *s = &x->segs[j->seg];
    size_t t = (size_t)(x - r->pl->t);
    const st_file *in = ck_file_of(r->kx.ck, s->input);
    uint64_t src = r->kx.ck->offset[s->input] + s->offset + j->start;
    surg_status st = of_copy_at(r->dest[t], &r->locked, in->fd, src, j->n, r->dest_off[t] + j->out);
    if (!st && wants_crc(r, t))
        st = crc_written(w, t, r->dest_off[t] + j->out, j->n, &j->crc);
    return st;
}

static surg_status do_chunk(worker *w, job *j)
{
    run *r = w->r;
    size_t t = j->item;
    const pl_tensor *x = &r->pl->t[t];
    size_t esize = surg_dtype_bits(x->dtype) / 8;
    kx_index ix = {.start = j->start, .n = j->n};
    /* A cast to a float dtype at the root rounds exactly as storing does:
     * storing alone is enough (but for 64-bit integers, which the cast
     * reads its own way). */
    cg_id root = x->node;
    const cg_node *rn = cg_get(&r->p->g, root);
    if (x->kind == PL_COMPUTE && rn->op == OP_CAST && rn->dtype == x->dtype &&
        surg_dtype_kind_of(x->dtype) == SURG_KIND_FLOAT &&
        surg_dtype_bits(cg_get(&r->p->g, rn->in[0])->dtype) < 64)
        root = rn->in[0];
    surg_status st = x->kind == PL_GATHER
                         ? kx_gather(&r->kx, &w->scratch, root, ix, w->bytes, &r->locked)
                         : kx_eval(&r->kx, &w->scratch, root, ix, w->vals, &r->locked);
    if (st)
        return st;
    if (x->kind != PL_GATHER)
        nm_encode(x->dtype, w->vals, j->n, w->bytes, NM_ROUND);
    if (wants_crc(r, t))
        j->crc = (uint32_t)crc32_z(0, w->bytes, j->n * esize);
    return of_pwrite(r->dest[t], &r->locked, w->bytes, j->n * esize,
                     r->dest_off[t] + j->start * esize);
}

static surg_status do_job(worker *w, job *j)
{
    kx_scratch_reset(&w->scratch);
    switch (j->kind) {
    case JOB_COPY: return do_copy(w, j);
    case JOB_CHUNK: return do_chunk(w, j);
    case JOB_DECODE: return ck_decode(w->r->kx.ck, j->item, &w->r->locked);
    case JOB_REDUCE: {
        reduction *red = &w->r->red[j->item];
        return kx_reduce_chunk(&w->r->kx, &w->scratch, red->node, j->start, j->n,
                               &red->parts[j->start / red->chunk], &w->r->locked);
    }
    }
    return SURG_EUSAGE;
}

static uint64_t job_bytes(const run *r, const job *j)
{
    if (j->kind == JOB_COPY)
        return j->n;
    if (j->kind == JOB_REDUCE)
        return 0;
    if (j->kind == JOB_DECODE)
        return r->kx.ck->tensors[j->item].nbytes;
    return j->n * surg_dtype_bits(r->pl->t[j->item].dtype) / 8;
}

static void *work(void *arg)
{
    worker *w = arg;
    run *r = w->r;
    for (;;) {
        size_t i = atomic_fetch_add(&r->next, 1);
        if (i >= r->n_jobs || atomic_load(&r->failed))
            break;
        surg_status st = do_job(w, &r->jobs[i]);
        if (st != SURG_OK) {
            int none = SURG_OK;
            atomic_compare_exchange_strong(&r->fail_status, &none, (int)st);
            atomic_store(&r->failed, true);
            break;
        }
        atomic_fetch_add(&r->done, job_bytes(r, &r->jobs[i]));
    }
    pthread_mutex_lock(&r->idle_lock);
    r->running--;
    pthread_cond_signal(&r->idle);
    pthread_mutex_unlock(&r->idle_lock);
    return NULL;
}

static bool start_worker(run *r, pthread_t *tid, worker *w)
{
    pthread_attr_t attr;
    size_t stack;
    if (pthread_attr_init(&attr) != 0)
        return false;
    if (pthread_attr_getstacksize(&attr, &stack) == 0 && stack < WORKER_STACK)
        pthread_attr_setstacksize(&attr, WORKER_STACK);
    pthread_mutex_lock(&r->idle_lock);
    r->running++;
    pthread_mutex_unlock(&r->idle_lock);
    bool ok = pthread_create(tid, &attr, work, w) == 0;
    if (!ok) {
        pthread_mutex_lock(&r->idle_lock);
        r->running--;
        pthread_mutex_unlock(&r->idle_lock);
    }
    pthread_attr_destroy(&attr);
    return ok;
}

/* Until every worker has stopped: the last one wakes the wait at once. In
 * between, every 100 ms, the progress callback and the write-back hint. */
static void wait_workers(run *r)
{
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&r->idle_lock);
    while (r->running) {
        next.tv_nsec += 100 * 1000 * 1000;
        if (next.tv_nsec >= 1000 * 1000 * 1000) {
            next.tv_sec++;
            next.tv_nsec -= 1000 * 1000 * 1000;
        }
        int rc = 0;
        while (r->running && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&r->idle, &r->idle_lock, &next);
        if (!r->running)
            break;
        pthread_mutex_unlock(&r->idle_lock);
        if (r->opts->progress)
            r->opts->progress(r->opts->progress_user, atomic_load(&r->done), r->total);
        for (size_t k = 0; k < r->n_lay; k++)
            for (size_t f = 0; f < r->lay[k].n_files; f++)
                of_start_writeback(r->lay[k].files[f].of);
        clock_gettime(CLOCK_MONOTONIC, &next);
        pthread_mutex_lock(&r->idle_lock);
    }
    pthread_mutex_unlock(&r->idle_lock);
}

/* Run the job list on the threads; the calling thread reports progress. */
static surg_status run_jobs(run *r)
{
    unsigned threads = r->opts->threads ? r->opts->threads : 1;
    worker *w = calloc(threads, sizeof *w);
    pthread_t *tid = calloc(threads, sizeof *tid);
    unsigned started = 0;
    bool ok = w && tid;
    for (unsigned i = 0; ok && i < threads; i++) {
        w[i].r = r;
        w[i].scratch.mem = malloc(r->scratch);
        w[i].scratch.size = r->scratch;
        w[i].vals = malloc(r->max_chunk * sizeof *w[i].vals);
        w[i].bytes = malloc(r->max_chunk * 8);
        ok = w[i].scratch.mem && w[i].vals && w[i].bytes;
    }
    atomic_store(&r->next, 0);
    for (unsigned i = 0; ok && i < threads; i++)
        if (start_worker(r, &tid[started], &w[i]))
            started++;
    ok = ok && started > 0;
    wait_workers(r);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    for (unsigned i = 0; w && i < threads; i++) {
        kx_scratch_free(&w[i].scratch);
        free(w[i].vals);
        free(w[i].bytes);
    }
    free(w);
    free(tid);
    if (!ok) {
        dg_nomem(r->sink, "surg");
        return SURG_ENOMEM;
    }
    surg_status failure = (surg_status)atomic_load(&r->fail_status);
    return atomic_load(&r->failed) ? (failure ? failure : SURG_EIO) : SURG_OK;
}

/* ---- reductions, innermost first -------------------------------------- */

static void collect_reductions(const cg_graph *g, cg_id id, uint8_t *seen, reduction *out,
                               size_t *n, uint32_t *memo)
{
    if (seen[id])
        return;
    seen[id] = 1;
    const cg_node *x = cg_get(g, id);
    for (uint32_t k = 0; k < x->n_in; k++)
        collect_reductions(g, x->in[k], seen, out, n, memo);
    if (cg_op_class(x->op) == CG_REDUCTION)
        out[(*n)++] = (reduction){.node = id, .depth = kx_levels(g, x->in[0], memo)};
}

static surg_status prepare_reductions(run *r, uint32_t *stamp)
{
    const cg_graph *g = &r->p->g;
    uint8_t *seen = calloc(g->n ? g->n : 1, 1);
    uint32_t *memo = calloc(g->n ? g->n : 1, sizeof *memo);
    r->red = calloc(g->n ? g->n : 1, sizeof *r->red);
    if (!seen || !memo || !r->red) {
        free(seen);
        free(memo);
        return dg_nomem(r->sink, "surg");
    }
    for (size_t t = 0; t < r->pl->n; t++)
        if (r->pl->t[t].kind == PL_COMPUTE)
            collect_reductions(g, r->pl->t[t].node, seen, r->red, &r->n_red, memo);
    surg_status st = SURG_OK;
    for (size_t i = 0; i < r->n_red && !st; i++) {
        reduction *red = &r->red[i];
        const cg_node *operand = cg_get(g, cg_get(g, red->node)->in[0]);
        red->chunk = chunk_for(count_nodes(g, cg_get(g, red->node)->in[0], stamp,
                                           (uint32_t)(r->pl->n + i + 1)),
                               &r->scratch);
        red->n_chunks = (size_t)((operand->nelems + red->chunk - 1) / red->chunk);
        red->parts = calloc(red->n_chunks ? red->n_chunks : 1, sizeof *red->parts);
        if (!red->parts)
            st = dg_nomem(r->sink, "surg");
        r->max_chunk = red->chunk > r->max_chunk ? red->chunk : r->max_chunk;
    }
    free(seen);
    free(memo);
    return st;
}

/* One phase per depth: the reductions of that depth, chunk by chunk; then
 * each one's chunks combined, in order, into its value. */
static surg_status run_reductions(run *r)
{
    uint32_t max_depth = 0;
    for (size_t i = 0; i < r->n_red; i++)
        max_depth = r->red[i].depth > max_depth ? r->red[i].depth : max_depth;
    surg_status st = SURG_OK;
    for (uint32_t d = 0; r->n_red && d <= max_depth && !st; d++) {
        size_t cap = 0;
        r->n_jobs = 0;
        for (size_t i = 0; i < r->n_red; i++) {
            reduction *red = &r->red[i];
            uint64_t n = cg_get(&r->p->g, cg_get(&r->p->g, red->node)->in[0])->nelems;
            for (uint64_t k = 0; red->depth == d && k < n; k += red->chunk)
                if (!add_job(r, &cap, (job){JOB_REDUCE, (uint32_t)i, 0, k,
                                            n - k < red->chunk ? n - k : red->chunk, 0, 0}))
                    return dg_nomem(r->sink, "surg");
        }
        st = run_jobs(r);
        for (size_t i = 0; !st && i < r->n_red; i++)
            if (r->red[i].depth == d)
                r->kx.scalars[r->red[i].node] =
                    kx_reduce_finish(&r->kx, r->red[i].node, r->red[i].parts, r->red[i].n_chunks);
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
    for (size_t i = 0; !st && i < o->n_also_opened; i++)
        st = outp_reads_add_ckpt(&r->reads, r->sink, o->also_opened[i]);
    return st;
}

static surg_status prepare(run *r)
{
    const surg_plan *pl = r->pl;
    uint32_t *stamp = calloc(r->p->g.n ? r->p->g.n : 1, sizeof *stamp);
    r->chunk = calloc(pl->n ? pl->n : 1, sizeof *r->chunk);
    r->kx.scalars = malloc((r->p->g.n ? r->p->g.n : 1) * sizeof *r->kx.scalars);
    if (!stamp || !r->chunk || !r->kx.scalars) {
        free(stamp);
        return dg_nomem(r->sink, "surg");
    }
    for (cg_id i = 0; i < r->p->g.n; i++)
        r->kx.scalars[i] = NAN;
    r->needs_map = false;
    r->max_chunk = MIN_CHUNK;
    for (size_t t = 0; t < pl->n; t++) {
        const pl_tensor *x = &pl->t[t];
        r->total += x->nbytes;
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
        r->chunk[t] = chunk_for(count_nodes(&r->p->g, x->node, stamp, (uint32_t)t + 1),
                                &r->scratch);
        r->max_chunk = r->chunk[t] > r->max_chunk ? r->chunk[t] : r->max_chunk;
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

/* The inputs the plan reads whose bytes are not in place are decoded
 * first, a job per tensor, into scratch files in the output's directory
 * (which has room for the output anyway; /tmp may be a small tmpfs). */
static surg_status decode_inputs(run *r, const char *out_path)
{
    surg_ckpt *ck = r->kx.ck;
    if (!ck->dec)
        return SURG_OK;
    const cg_graph *g = &r->p->g;
    uint8_t *live = pl_live(g, r->p->out, r->p->n_out);
    bool *want = calloc(ck->n ? ck->n : 1, sizeof *want);
    const char *slash = strrchr(out_path, '/');
    ck->scratch_dir = slash ? ar_strndup(&ck->ar, out_path, (size_t)(slash - out_path) + 1) : ".";
    if (!live || !want || !ck->scratch_dir) {
        free(live);
        free(want);
        return dg_nomem(r->sink, "surg");
    }
    for (cg_id id = 0; id < g->n; id++) {
        const cg_node *n = cg_get(g, id);
        if (live[id] && n->op == OP_INPUT && ck_needs_decode(ck, n->a.input))
            want[n->a.input] = true;
    }
    free(live);
    size_t cap = 0;
    surg_status st = SURG_OK;
    r->n_jobs = 0;
    for (size_t i = 0; i < ck->n && !st; i++) {
        if (!want[i])
            continue;
        st = ck_scratch_open(ck, i, r->sink);
        r->total += ck->tensors[i].nbytes;
        if (!st && !add_job(r, &cap, (job){.kind = JOB_DECODE, .item = (uint32_t)i}))
            st = dg_nomem(r->sink, "surg");
    }
    free(want);
    return st || !r->n_jobs ? st : run_jobs(r);
}

/* One output's layout: the plan's tensors under its prefix, named without
 * it, with their own metadata. `taken` marks the tensors placed so far. */
/* An .npz keeps no metadata, so its tied names are arrays of their own,
 * copies of the tensor they are tied to (the writer makes them). */
static surg_status add_repeats(run *r, size_t k, const surg_ckpt_part *o, surg_tensor_info *info,
                               size_t *m)
{
    const surg_program *p = r->p;
    size_t plen = strlen(o->prefix);
    size_t *same = malloc((*m + p->n_alias ? *m + p->n_alias : 1) * sizeof *same);
    if (!same)
        return dg_nomem(r->sink, o->path);
    for (size_t j = 0; j < *m; j++)
        same[j] = SIZE_MAX;
    for (size_t a = 0; a < p->n_alias; a++) {
        size_t t = ss_find(r->pl->t, r->pl->n, sizeof *r->pl->t, p->alias[a].value);
        if (strncmp(p->alias[a].key, o->prefix, plen) != 0 || t == (size_t)-1 ||
            r->lay_of[t] != k)
            continue;
        info[*m] = info[r->idx_of[t]];
        info[*m].name = p->alias[a].key + plen;
        same[*m] = r->idx_of[t];
        r->plan_of[k][(*m)++] = SIZE_MAX;
    }
    r->out[k].same_as = same;
    r->out[k].n = *m;
    return SURG_OK;
}

static surg_status layout_one(run *r, size_t k, const surg_ckpt_part *o, bool *taken)
{
    const surg_plan *pl = r->pl;
    size_t plen = strlen(o->prefix), m = 0, room = pl->n + r->p->n_alias;
    surg_tensor_info *info = calloc(room ? room : 1, sizeof *info);
    r->plan_of[k] = calloc(room ? room : 1, sizeof *r->plan_of[k]);
    if (!info || !r->plan_of[k]) {
        free(info);
        return dg_nomem(r->sink, o->path);
    }
    for (size_t t = 0; t < pl->n; t++)
        if (!taken[t] && strncmp(pl->t[t].name, o->prefix, plen) == 0) {
            taken[t] = true;
            info[m] = (surg_tensor_info){pl->t[t].name + plen, pl->t[t].dtype, pl->t[t].rank,
                                         pl->t[t].shape, 0, pl->t[t].nbytes};
            r->lay_of[t] = (uint32_t)k;
            r->idx_of[t] = m;
            r->plan_of[k][m++] = t;
        }
    r->out[k] = (stw_output){.tensors = info, .n = m, .meta = pl->meta, .n_meta = pl->n_meta,
                             .max_shard_size = r->opts->max_shard_size, .reads = &r->reads};
    if (nzw_wanted(o->path) && add_repeats(r, k, o, info, &m) != SURG_OK)
        return SURG_ENOMEM;
    if (plen && pl_metadata(r->p, o->prefix, &r->ar, (surg_meta_entry **)&r->out[k].meta,
                            &r->out[k].n_meta) != SURG_OK)
        return dg_nomem(r->sink, o->path);
    return stw_layout_make(r->sink, o->path, &r->out[k], &r->lay[k]);
}

static surg_status layout(run *r, const char *out_path)
{
    const surg_plan *pl = r->pl;
    surg_ckpt_part single = {"", out_path};
    const surg_ckpt_part *outs = r->opts->n_outputs ? r->opts->outputs : &single;
    size_t n = r->opts->n_outputs ? r->opts->n_outputs : 1;
    bool *taken = calloc(pl->n ? pl->n : 1, sizeof *taken);
    r->lay = calloc(n, sizeof *r->lay);
    r->out = calloc(n, sizeof *r->out);
    r->plan_of = calloc(n, sizeof *r->plan_of);
    r->dest = calloc(pl->n ? pl->n : 1, sizeof *r->dest);
    r->dest_off = calloc(pl->n ? pl->n : 1, sizeof *r->dest_off);
    r->lay_of = calloc(pl->n ? pl->n : 1, sizeof *r->lay_of);
    r->idx_of = calloc(pl->n ? pl->n : 1, sizeof *r->idx_of);
    if (!taken || !r->lay || !r->out || !r->plan_of || !r->dest || !r->dest_off || !r->lay_of ||
        !r->idx_of) {
        free(taken);
        return dg_nomem(r->sink, "surg");
    }
    surg_status st = SURG_OK;
    for (size_t k = 0; k < n && !st; k++) {
        r->n_lay = k + 1;
        st = layout_one(r, k, &outs[k], taken);
    }
    for (size_t t = 0; t < pl->n && !st; t++)
        if (!taken[t]) {
            dg_file(r->sink, SURG_ERROR, "run-parts", "surg",
                    "\"%s\" is under none of the outputs' prefixes", pl->t[t].name);
            st = SURG_EUSAGE;
        }
    free(taken);
    if (!st && n > 1) {
        stw_layout **lays = malloc(n * sizeof *lays);
        const char **paths = malloc(n * sizeof *paths);
        for (size_t k = 0; lays && paths && k < n; k++) {
            lays[k] = &r->lay[k];
            paths[k] = outs[k].path;
        }
        st = lays && paths ? outp_check_apart(r->sink, lays, paths, n) : dg_nomem(r->sink, "surg");
        free(lays);
        free(paths);
    }
    return st;
}

/* The output files created (temporaries), each tensor's place in them. */
static surg_status open_outputs(run *r)
{
    surg_status st = SURG_OK;
    for (size_t k = 0; k < r->n_lay && !st; k++) {
        st = stw_layout_open(&r->lay[k], r->sink);
        for (size_t j = 0; !st && j < r->out[k].n; j++) {
            size_t t = r->plan_of[k][j];
            if (t == SIZE_MAX)
                continue;
            r->dest[t] = r->lay[k].files[r->lay[k].file_of[j]].of;
            r->dest_off[t] = r->lay[k].offset[j];
        }
    }
    return st;
}

static surg_status output_jobs(run *r)
{
    size_t cap = 0;
    r->n_jobs = 0;
    /* In file order: each file is filled front to back, as the disk likes. */
    for (size_t k = 0; k < r->n_lay; k++)
        for (size_t f = 0; f < r->lay[k].n_files; f++)
            for (size_t i = 0; i < r->lay[k].files[f].n; i++) {
                size_t t = r->plan_of[k][r->lay[k].files[f].idx[i]];
                if (t != SIZE_MAX && !tensor_jobs(r, &cap, t))
                    return dg_nomem(r->sink, "surg");
            }
    return SURG_OK;
}

/* Each tensor's CRC, from its jobs' in order (they cover it front to back). */
static void give_crcs(run *r)
{
    uint32_t crc = 0;
    uint64_t len = 0;
    for (size_t i = 0; i < r->n_jobs; i++) {
        const job *j = &r->jobs[i];
        if (!wants_crc(r, j->item))
            continue;
        uint64_t n = job_bytes(r, j);
        crc = (uint32_t)crc32_combine(crc, j->crc, (z_off_t)n);
        len += n;
        if (len == r->pl->t[j->item].nbytes) {
            stw_layout_set_crc(&r->lay[r->lay_of[j->item]], r->idx_of[j->item], crc);
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
    for (size_t k = 0; k < r->n_lay && !st; k++)
        st = stw_layout_sync(&r->lay[k], r->sink);
    for (size_t k = 0; k < r->n_lay && !st; k++)
        st = stw_layout_commit(&r->lay[k], r->sink);
    /* Every output in place: now the stale files of earlier ones go. */
    surg_status stale = SURG_OK;
    for (size_t k = 0; k < r->n_lay && !st; k++) {
        surg_status s = outp_remove_stale(&r->lay[k], r->sink, &r->reads);
        stale = s > stale ? s : stale;
    }
    return st ? st : stale;
}

surg_status surg_run(const surg_plan *pl, const char *out_path, const surg_run_opts *opts,
                     surg_sink *sink)
{
    surg_run_opts defaults = {.threads = 1};
    run r = {.pl = pl, .p = pl->prog, .sink = sink, .opts = opts ? opts : &defaults};
    r.kx = (kx_ctx){.p = pl->prog, .ck = pl->prog->input};
    r.locked = (surg_sink){.fn = locked_report, .user = &r};
    ar_init(&r.ar);
    pthread_mutex_init(&r.lock, NULL);
    pthread_mutex_init(&r.idle_lock, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&r.idle, &monotonic);
    pthread_condattr_destroy(&monotonic);
    surg_status st = surg_ckpt_kind_of(r.kx.ck) == SURG_CKPT_SCHEMA ? SURG_EUSAGE : SURG_OK;
    if (st)
        dg_file(sink, SURG_ERROR, "run-schema", surg_ckpt_path(r.kx.ck),
                "a schema holds no tensor data to run on");
    /* Every output path checked before any data is read. */
    if (!st)
        st = collect_reads(&r);
    if (!st)
        st = layout(&r, out_path);
    if (!st)
        st = prepare(&r);
    if (!st)
        st = decode_inputs(&r, r.opts->n_outputs ? r.opts->outputs[0].path : out_path);
    if (!st)
        st = map_inputs(&r);
    if (!st)
        st = open_outputs(&r);
    if (!st)
        st = run_reductions(&r);
    if (!st)
        st = output_jobs(&r);
    if (!st)
        st = run_jobs(&r);
    if (!st)
        give_crcs(&r);
    if (!st && r.opts->progress)
        r.opts->progress(r.opts->progress_user, r.total, r.total);
    if (!st)
        st = commit(&r);
    for (size_t k = 0; k < r.n_lay; k++) {
        stw_layout_free(&r.lay[k]);
        free((void *)r.out[k].tensors);
        free((void *)r.out[k].same_as);
        free(r.plan_of[k]);
    }
    free(r.lay);
    free(r.out);
    free(r.plan_of);
    free(r.dest);
    free(r.dest_off);
    free(r.lay_of);
    free(r.idx_of);
    ar_free(&r.ar);
    for (size_t i = 0; i < r.n_red; i++)
        free(r.red[i].parts);
    free(r.red);
    free(r.jobs);
    free(r.chunk);
    free(r.kx.scalars);
    outp_reads_free(&r.reads);
    pthread_mutex_destroy(&r.lock);
    pthread_mutex_destroy(&r.idle_lock);
    pthread_cond_destroy(&r.idle);
    return st;
}
