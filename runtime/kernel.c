/* kernel.c: evaluating a node's elements for an index set. Elementwise
 * operations keep the index set; layout moves (transpose, slice, concat,
 * stack, unstack) turn it into the indices of their inputs; inputs are read
 * with pread when the indices are a range (nothing stays mapped in memory)
 * and from the mapped file when they scatter. Arithmetic runs in doubles
 * rounded to f32 after each operation (f64 for f64 and integer nodes, as
 * SPEC §3.2 says), which gives exactly f32 arithmetic for + - * / and sqrt. */
#include "runtime/kernel.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/checkpoint.h"
#include "support/diag.h"
#include "runtime/generate.h"
#include "runtime/numeric.h"
#include "runtime/select.h"

/* ---- scratch: one block per thread, bumped, reset per chunk ---------- */

void kx_scratch_free(kx_scratch *s)
{
    free(s->mem);
    free(s->memo);
    free(s->last);
    free(s->hist);
    *s = (kx_scratch){0};
}

void kx_scratch_reset(kx_scratch *s)
{
    s->used = 0;
    for (size_t i = 0; i < s->n_memo; i++)
        s->last[s->memo[i].node] = 0;
    s->n_memo = 0;
}

/* Scratch never moves while a chunk is evaluated: the executor sizes it
 * before (chunk_for in exec.c) and resets it after. */
static void *take(kx_scratch *s, size_t bytes)
{
    bytes = (bytes + 15) & ~(size_t)15;
    if (s->size - s->used < bytes)
        return NULL;
    void *p = s->mem + s->used;
    s->used += bytes;
    return p;
}

void *kx_take(kx_scratch *s, size_t bytes) { return take(s, bytes); }

kx_mark kx_mark_of(const kx_scratch *s) { return (kx_mark){s->used, s->n_memo}; }

/* The memo is a stack whose entries link to their node's previous one, so
 * popping restores each node's newest value. */
void kx_release(kx_scratch *s, kx_mark m)
{
    while (s->n_memo > m.n_memo) {
        const kx_memo *e = &s->memo[--s->n_memo];
        s->last[e->node] = e->next;
    }
    s->used = m.used;
}

static surg_status nomem(surg_sink *sink)
{
    dg_file(sink, SURG_ERROR, "nomem", "surg", "out of scratch memory while computing");
    return SURG_ENOMEM;
}

/* ---- shapes and indices -------------------------------------------- */

static const cg_node *node_of(const kx_ctx *c, cg_id id) { return &c->nodes[id]; }

static uint64_t at(kx_index ix, size_t i) { return ix.idx ? ix.idx[i] : ix.start + i; }

/* Coordinates of a flat C-order index. */
static void coords(const cg_node *n, uint64_t flat, uint64_t *c)
{
    for (uint32_t d = n->rank; d-- > 0;) {
        c[d] = n->shape[d] ? flat % n->shape[d] : 0;
        flat = n->shape[d] ? flat / n->shape[d] : 0;
    }
}

static uint64_t flat_of(const cg_node *n, const uint64_t *c)
{
    uint64_t f = 0;
    for (uint32_t d = 0; d < n->rank; d++)
        f = f * n->shape[d] + c[d];
    return f;
}

/* Broadcasting: the input's axes align with the last of the output's; an
 * axis of 1 repeats. */
static bool broadcast_map(kx_scratch *s, const cg_node *n, const cg_node *src, kx_index ix,
                          kx_index *in)
{
    uint64_t *idx = take(s, (ix.n ? ix.n : 1) * sizeof *idx);
    if (!idx)
        return false;
    uint32_t lead = n->rank - src->rank;
    uint64_t co[SURG_MAX_RANK + 1], ci[SURG_MAX_RANK + 1];
    for (size_t i = 0; i < ix.n; i++) {
        coords(n, at(ix, i), co);
        for (uint32_t d = 0; d < src->rank; d++)
            ci[d] = src->shape[d] == 1 ? 0 : co[d + lead];
        idx[i] = flat_of(src, ci);
    }
    *in = (kx_index){.idx = idx, .n = ix.n};
    return true;
}

/* For a layout move with one input: the input index of each output index.
 * Returns the input's index set (a range when it stays one). */
static bool single_input_map(const kx_ctx *c, kx_scratch *s, const cg_node *n, kx_index ix,
                             kx_index *in)
{
    const cg_node *src = node_of(c, n->in[0]);
    if (n->op == OP_RESHAPE || n->op == OP_CAST) {
        *in = ix; /* C order is kept */
        return true;
    }
    if (n->op == OP_BROADCAST)
        return broadcast_map(s, n, src, ix, in);
    uint64_t *idx = take(s, ix.n * sizeof *idx);
    if (!idx)
        return false;
    uint64_t co[SURG_MAX_RANK + 1], ci[SURG_MAX_RANK + 1];
    for (size_t i = 0; i < ix.n; i++) {
        coords(n, at(ix, i), co);
        if (n->op == OP_TRANSPOSE) {
            for (uint32_t k = 0; k < n->rank; k++)
                ci[n->a.perm[k]] = co[k];
        } else if (n->op == OP_REPEAT) {
            memcpy(ci, co, n->rank * sizeof *ci);
            ci[n->a.repeat.axis] /= n->a.repeat.n;
        } else { /* OP_SLICE */
            uint32_t a = n->a.slice.axis, k = 0;
            for (uint32_t d = 0; d < src->rank; d++)
                ci[d] = d == a ? (n->a.slice.squeeze ? 0 : co[k++]) + n->a.slice.start : co[k++];
        }
        idx[i] = flat_of(src, ci);
    }
    *in = (kx_index){.idx = idx, .n = ix.n};
    return true;
}

/* For concat and stack: which part each output index is in, and its index
 * there. */
static bool part_map(const cg_node *n, const kx_ctx *c, kx_index ix, uint32_t *part, uint64_t *in)
{
    uint64_t co[SURG_MAX_RANK + 1], ci[SURG_MAX_RANK + 1];
    uint32_t a = n->a.axis;
    for (size_t i = 0; i < ix.n; i++) {
        coords(n, at(ix, i), co);
        uint32_t p = 0;
        if (n->op == OP_STACK) {
            p = (uint32_t)co[a];
            for (uint32_t d = 0, k = 0; d < n->rank; d++)
                if (d != a)
                    ci[k++] = co[d];
        } else {
            uint64_t x = co[a];
            while (x >= node_of(c, n->in[p])->shape[a])
                x -= node_of(c, n->in[p++])->shape[a];
            memcpy(ci, co, n->rank * sizeof *ci);
            ci[a] = x;
        }
        part[i] = p;
        in[i] = flat_of(node_of(c, n->in[p]), ci);
    }
    return true;
}

/* ---- reading inputs -------------------------------------------------- */

static surg_status read_range(const kx_ctx *c, kx_scratch *s, size_t input, uint64_t start,
                              size_t n, void **bytes, surg_sink *sink)
{
    const st_file *f = ck_file_of(c->ck, input);
    size_t esize = surg_dtype_bits(c->ck->tensors[input].dtype) / 8;
    char *b = take(s, n * esize);
    if (!b)
        return nomem(sink);
    uint64_t off = c->ck->offset[input] + start * esize;
    for (size_t done = 0; done < n * esize;) {
        ssize_t r = pread(f->fd, b + done, n * esize - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            dg_file(sink, SURG_ERROR, "io", f->path, "cannot read tensor \"%s\": %s",
                    c->ck->tensors[input].name,
                    r ? strerror(errno) : "the file ended early (was it truncated?)");
            return SURG_EIO;
        }
        done += (size_t)r;
    }
    *bytes = b;
    return SURG_OK;
}

static const void *mapped(const kx_ctx *c, size_t input)
{
    const st_file *f = ck_file_of(c->ck, input);
    return f->map ? (const char *)f->map + c->ck->offset[input] : NULL;
}

/* An input's values; `odd`: 64-bit integers rounded to odd (nm_decode_odd). */
static surg_status eval_input(const kx_ctx *c, kx_scratch *s, const cg_node *n, kx_index ix,
                              double *out, bool odd, surg_sink *sink)
{
    size_t input = n->a.input;
    surg_dtype dt = c->ck->tensors[input].dtype;
    const void *d;
    if (!ix.idx) {
        void *b;
        surg_status st = read_range(c, s, input, ix.start, ix.n, &b, sink);
        if (!st && odd)
            nm_decode_odd(dt, b, NULL, 0, ix.n, out);
        else if (!st)
            nm_decode(dt, b, 0, ix.n, out);
        return st;
    }
    if (!(d = mapped(c, input))) {
        dg_file(sink, SURG_ERROR, "io", ck_file_of(c->ck, input)->path, "the input is not mapped");
        return SURG_EIO;
    }
    if (odd)
        nm_decode_odd(dt, d, ix.idx, 0, ix.n, out);
    else
        nm_decode_at(dt, d, ix.idx, ix.n, out);
    return SURG_OK;
}

/* A cast of an i64 or u64 input to a float narrower than f64 reads the
 * input rounded to odd, so that the cast rounds once, as from the integer. */
static bool odd_cast(const kx_ctx *c, const cg_node *n)
{
    if (n->op != OP_CAST || n->dtype == SURG_F64 || surg_dtype_kind_of(n->dtype) != SURG_KIND_FLOAT)
        return false;
    const cg_node *x = node_of(c, n->in[0]);
    return x->op == OP_INPUT && (x->dtype == SURG_I64 || x->dtype == SURG_U64);
}

/* ---- elementwise arithmetic ------------------------------------------ */

/* Computed in f64 for f64 and integer results, else in f32. */
static bool in_f32(const cg_node *n)
{
    return n->dtype != SURG_F64 && surg_dtype_kind_of(n->dtype) == SURG_KIND_FLOAT;
}

bool kx_f32(const cg_node *n) { return in_f32(n); }

/* An operand's values for the chunk: its own, or a scalar repeated. */
static surg_status operand(const kx_ctx *c, kx_scratch *s, cg_id id, kx_index ix,
                           const double **vals, size_t *step, surg_sink *sink)
{
    bool scalar = node_of(c, id)->rank == 0;
    kx_index sub = scalar ? (kx_index){.start = 0, .n = 1} : ix;
    double *v = take(s, sub.n * sizeof *v);
    if (!v)
        return nomem(sink);
    *vals = v;
    *step = !scalar;
    return kx_eval(c, s, id, sub, v, sink);
}

/* The common arithmetic, in loops the compiler can vectorize: one per
 * operation, with the rounding to f32 inside. */
#define LOOP(expr)                                                          \
    do {                                                                    \
        if (f32)                                                            \
            for (size_t i = 0; i < n; i++)                                  \
                out[i] = (double)(float)(expr);                             \
        else                                                                \
            for (size_t i = 0; i < n; i++)                                  \
                out[i] = (expr);                                            \
    } while (0)

static bool binary_fast(cg_op op, bool f32, const double **v, const size_t *step, size_t n,
                        double *out)
{
    if (op < OP_ADD || op > OP_DIV)
        return false;
    const double *a = v[0], *b = v[1];
    bool sa = !step[0], sb = !step[1]; /* scalars */
    if (sa && sb)
        return false;
    double x = a[0], y = b[0];
    switch (op) {
    case OP_ADD: if (sb) LOOP(a[i] + y); else if (sa) LOOP(x + b[i]); else LOOP(a[i] + b[i]); break;
    case OP_SUB: if (sb) LOOP(a[i] - y); else if (sa) LOOP(x - b[i]); else LOOP(a[i] - b[i]); break;
    case OP_MUL: if (sb) LOOP(a[i] * y); else if (sa) LOOP(x * b[i]); else LOOP(a[i] * b[i]); break;
    default: if (sb) LOOP(a[i] / y); else if (sa) LOOP(x / b[i]); else LOOP(a[i] / b[i]); break;
    }
    return true;
}

static surg_status eval_elementwise(const kx_ctx *c, kx_scratch *s, const cg_node *n,
                                    kx_index ix, double *out, surg_sink *sink)
{
    const double *v[3] = {0};
    size_t step[3] = {0};
    if (odd_cast(c, n)) { /* not through kx_eval: its memo keeps plain values */
        double *x = take(s, ix.n * sizeof *x);
        surg_status st = x ? eval_input(c, s, node_of(c, n->in[0]), ix, x, true, sink) : nomem(sink);
        if (st)
            return st;
        v[0] = x, step[0] = 1;
    }
    for (uint32_t k = v[0] ? 1 : 0; k < n->n_in; k++) {
        surg_status st = operand(c, s, n->in[k], ix, &v[k], &step[k], sink);
        if (st)
            return st;
    }
    bool f32 = in_f32(n);
    if (binary_fast(n->op, f32, v, step, ix.n, out))
        return SURG_OK;
    for (size_t i = 0; i < ix.n; i++) {
        double a[3], r;
        for (uint32_t k = 0; k < n->n_in; k++)
            a[k] = v[k][i * step[k]];
        if (n->op == OP_CAST)
            r = nm_round(n->dtype, a[0], NM_TRUNCATE);
        else if (n->op == OP_FULL_LIKE)
            r = nm_round(n->dtype, a[1], NM_ROUND);
        else
            r = cg_scalar(n->op, a);
        out[i] = f32 && n->op != OP_CAST ? (double)(float)r : r;
    }
    return SURG_OK;
}

/* ---- layout moves ---------------------------------------------------- */

/* Concat and stack: each part evaluated for its own indices, then put in
 * place. `elem` bytes per value; `eval_part` fills doubles or bytes. */
typedef surg_status (*part_fn)(const kx_ctx *, kx_scratch *, cg_id, kx_index, void *, surg_sink *);

static surg_status eval_parts(const kx_ctx *c, kx_scratch *s, const cg_node *n, kx_index ix,
                              void *out, size_t elem, part_fn fn, surg_sink *sink)
{
    uint32_t *part = take(s, ix.n * sizeof *part);
    uint64_t *in = take(s, ix.n * sizeof *in);
    if (!part || !in || !part_map(n, c, ix, part, in))
        return nomem(sink);
    for (uint32_t p = 0; p < n->n_in; p++) {
        size_t k = 0;
        for (size_t i = 0; i < ix.n; i++)
            k += part[i] == p;
        if (!k)
            continue;
        /* Fresh for each part: the memo of kx_eval keeps pointing at both. */
        uint64_t *mine = take(s, k * sizeof *mine);
        char *vals = take(s, k * elem);
        if (!mine || !vals)
            return nomem(sink);
        k = 0;
        for (size_t i = 0; i < ix.n; i++)
            if (part[i] == p)
                mine[k++] = in[i];
        surg_status st = fn(c, s, n->in[p], (kx_index){.idx = mine, .n = k}, vals, sink);
        if (st)
            return st;
        for (size_t i = 0, j = 0; i < ix.n; i++)
            if (part[i] == p)
                memcpy((char *)out + i * elem, vals + j++ * elem, elem);
    }
    return SURG_OK;
}

static surg_status eval_as_part(const kx_ctx *c, kx_scratch *s, cg_id id, kx_index ix,
                                void *out, surg_sink *sink)
{
    return kx_eval(c, s, id, ix, out, sink);
}

static surg_status eval_node(const kx_ctx *c, kx_scratch *s, cg_id id, kx_index ix,
                             double *out, surg_sink *sink);

/* pad: the places inside are x's, evaluated together; the others the value. */
static surg_status eval_pad(const kx_ctx *c, kx_scratch *s, const cg_node *n, kx_index ix,
                            double *out, surg_sink *sink)
{
    const cg_node *x = node_of(c, n->in[0]);
    uint32_t a = n->a.pad.axis;
    uint64_t *in = take(s, ix.n * sizeof *in);
    double value;
    surg_status st = kx_eval(c, s, n->in[1], (kx_index){.start = 0, .n = 1}, &value, sink);
    if (!in)
        return nomem(sink);
    if (st)
        return st;
    uint64_t co[SURG_MAX_RANK + 1];
    size_t k = 0;
    for (size_t i = 0; i < ix.n; i++) {
        coords(n, at(ix, i), co);
        if (co[a] < n->a.pad.before || co[a] - n->a.pad.before >= x->shape[a])
            continue;
        co[a] -= n->a.pad.before;
        in[k++] = flat_of(x, co);
    }
    double *v = take(s, (k ? k : 1) * sizeof *v);
    if (!v)
        return nomem(sink);
    if (k && (st = kx_eval(c, s, n->in[0], (kx_index){.idx = in, .n = k}, v, sink)))
        return st;
    for (size_t i = 0, j = 0; i < ix.n; i++) {
        coords(n, at(ix, i), co);
        bool inside = co[a] >= n->a.pad.before && co[a] - n->a.pad.before < x->shape[a];
        out[i] = inside ? v[j++] : value;
    }
    return SURG_OK;
}

/* topk_mask: the operand's values against the cut run_select found. */
static surg_status eval_topk(const kx_ctx *c, kx_scratch *s, cg_id id, kx_index ix,
                             double *out, surg_sink *sink)
{
    const cg_node *n = node_of(c, id);
    double *v = take(s, ix.n * sizeof *v);
    if (!v)
        return nomem(sink);
    surg_status st = kx_eval(c, s, n->in[0], ix, v, sink);
    if (st)
        return st;
    const kx_cut *cut = &c->cuts[id];
    unsigned width = sx_width(node_of(c, n->in[0])->dtype);
    for (size_t i = 0; i < ix.n; i++)
        out[i] = sx_taken(cut, sx_key(v[i], width), at(ix, i));
    return SURG_OK;
}

/* Every value computed for a chunk stays in scratch until the chunk ends,
 * so a node met again with the same index set is copied, not recomputed:
 * without this a chain of `y = x + x` doubles its work at every level. */
static bool remember(const kx_ctx *c, kx_scratch *s, cg_id id, kx_index ix, const double *vals)
{
    if (!s->last && !(s->last = calloc(c->n_nodes ? c->n_nodes : 1, sizeof *s->last)))
        return false;
    if (s->n_memo == s->memo_cap) {
        size_t cap = s->memo_cap ? s->memo_cap * 2 : 64;
        kx_memo *m = cap <= UINT32_MAX ? realloc(s->memo, cap * sizeof *m) : NULL;
        if (!m)
            return false;
        s->memo = m;
        s->memo_cap = cap;
    }
    s->memo[s->n_memo++] = (kx_memo){id, s->last[id], ix.start, ix.idx, ix.n, vals};
    s->last[id] = (uint32_t)s->n_memo;
    return true;
}

surg_status kx_eval(const kx_ctx *c, kx_scratch *s, cg_id id, kx_index ix, double *out,
                    surg_sink *sink)
{
    for (uint32_t i = s->last ? s->last[id] : 0; i; i = s->memo[i - 1].next) {
        const kx_memo *m = &s->memo[i - 1];
        if (m->n == ix.n && m->idx == ix.idx && (ix.idx || m->start == ix.start)) {
            memcpy(out, m->vals, ix.n * sizeof *out);
            return SURG_OK;
        }
    }
    surg_status st = eval_node(c, s, id, ix, out, sink);
    if (!st && node_of(c, id)->op != OP_CONST && !remember(c, s, id, ix, out))
        return nomem(sink);
    return st;
}

static surg_status eval_node(const kx_ctx *c, kx_scratch *s, cg_id id, kx_index ix,
                             double *out, surg_sink *sink)
{
    const cg_node *n = node_of(c, id);
    switch (n->op) {
    case OP_INPUT: return eval_input(c, s, n, ix, out, false, sink);
    case OP_CONST:
        for (size_t i = 0; i < ix.n; i++)
            out[i] = n->a.value;
        return SURG_OK;
    case OP_INIT: {
        gn_stream g;
        gn_prepare(&g, n->a.init, n->dtype);
        if (ix.idx)
            gn_fill_at(&g, ix.idx, ix.n, out);
        else
            gn_fill(&g, ix.start, ix.n, out);
        nm_round_n(n->dtype, out, ix.n, NM_ROUND);
        return SURG_OK;
    }
    case OP_RESHAPE:
    case OP_TRANSPOSE:
    case OP_SLICE:
    case OP_REPEAT:
    case OP_BROADCAST: {
        kx_index in;
        if (!single_input_map(c, s, n, ix, &in))
            return nomem(sink);
        return kx_eval(c, s, n->in[0], in, out, sink);
    }
    case OP_PAD: return eval_pad(c, s, n, ix, out, sink);
    case OP_BERNOULLI:
        gn_bernoulli(n->a.bern.p, n->a.bern.seed, n->a.bern.key, n->a.bern.index, ix.idx,
                     ix.start, ix.n, out);
        return SURG_OK;
    case OP_TOPK: return eval_topk(c, s, id, ix, out, sink);
    case OP_CONCAT:
    case OP_STACK: return eval_parts(c, s, n, ix, out, sizeof *out, eval_as_part, sink);
    case OP_MATMUL: return kx_matmul(c, s, id, ix, out, sink);
    default:
        if (cg_reduces_axis(n)) {
            const double *held = c->held[id];
            for (size_t i = 0; i < ix.n; i++)
                out[i] = held[at(ix, i)];
            return SURG_OK;
        }
        if (cg_op_class(n->op) == CG_REDUCTION) {
            for (size_t i = 0; i < ix.n; i++)
                out[i] = c->scalars[id];
            return SURG_OK;
        }
        return eval_elementwise(c, s, n, ix, out, sink);
    }
}

/* ---- strided copies: the same moves, on raw bytes --------------------- */

static surg_status gather_part(const kx_ctx *c, kx_scratch *s, cg_id id, kx_index ix, void *out,
                               surg_sink *sink)
{
    return kx_gather(c, s, id, ix, out, sink);
}

surg_status kx_gather(const kx_ctx *c, kx_scratch *s, cg_id id, kx_index ix, void *out,
                      surg_sink *sink)
{
    const cg_node *n = node_of(c, id);
    size_t esize = surg_dtype_bits(n->dtype) / 8;
    switch (n->op) {
    case OP_INPUT: {
        if (!ix.idx) {
            void *b;
            surg_status st = read_range(c, s, n->a.input, ix.start, ix.n, &b, sink);
            if (!st)
                memcpy(out, b, ix.n * esize);
            return st;
        }
        const char *d = mapped(c, n->a.input);
        if (!d)
            return nomem(sink);
        for (size_t i = 0; i < ix.n; i++)
            memcpy((char *)out + i * esize, d + ix.idx[i] * esize, esize);
        return SURG_OK;
    }
    case OP_CAST: /* the same dtype: a cast that changes nothing */
    case OP_RESHAPE:
    case OP_TRANSPOSE:
    case OP_SLICE:
    case OP_REPEAT:
    case OP_BROADCAST: {
        kx_index in;
        if (!single_input_map(c, s, n, ix, &in))
            return nomem(sink);
        return kx_gather(c, s, n->in[0], in, out, sink);
    }
    case OP_CONCAT:
    case OP_STACK: return eval_parts(c, s, n, ix, out, esize, gather_part, sink);
    default:
        dg_file(sink, SURG_ERROR, "internal", "surg", "a strided copy met %s", cg_op_name(n->op));
        return SURG_EUSAGE;
    }
}

/* ---- reductions ---------------------------------------------------------- */

surg_status kx_reduce_chunk(const kx_ctx *c, kx_scratch *s, cg_id id, uint64_t start, size_t n,
                            kx_partial *out, surg_sink *sink)
{
    const cg_node *r = node_of(c, id);
    double *v = take(s, n * sizeof *v);
    if (!v)
        return nomem(sink);
    surg_status st = kx_eval(c, s, r->in[0], (kx_index){.start = start, .n = n}, v, sink);
    if (st)
        return st;
    kx_partial p = {.n = n, .min = INFINITY, .max = -INFINITY};
    for (size_t i = 0; i < n; i++) {
        p.nan |= isnan(v[i]);
        p.sum += v[i];
        p.sumsq += v[i] * v[i];
        p.min = v[i] < p.min ? v[i] : p.min;
        p.max = v[i] > p.max ? v[i] : p.max;
    }
    p.mean = n ? p.sum / (double)n : 0;
    for (size_t i = 0; i < n; i++)
        p.m2 += (v[i] - p.mean) * (v[i] - p.mean);
    *out = p;
    return SURG_OK;
}

double kx_reduce_finish(const kx_ctx *c, cg_id id, const kx_partial *parts, size_t n_parts)
{
    const cg_node *r = node_of(c, id);
    kx_partial t = {.min = INFINITY, .max = -INFINITY};
    for (size_t i = 0; i < n_parts; i++) { /* in chunk order: the same for any threads */
        const kx_partial *p = &parts[i];
        if (!p->n)
            continue;
        uint64_t n = t.n + p->n;
        double delta = p->mean - t.mean;
        t.m2 += p->m2 + delta * delta * (double)t.n * (double)p->n / (double)n;
        t.mean += delta * (double)p->n / (double)n;
        t.n = n;
        t.sum += p->sum;
        t.sumsq += p->sumsq;
        t.min = p->min < t.min ? p->min : t.min;
        t.max = p->max > t.max ? p->max : t.max;
        t.nan |= p->nan;
    }
    double v;
    switch (r->op) {
    case OP_NORM: v = sqrt(t.sumsq); break;
    case OP_SUM: v = t.sum; break;
    case OP_MEAN: v = t.n ? t.sum / (double)t.n : NAN; break;
    case OP_STD: v = t.n ? sqrt(t.m2 / (double)t.n) : NAN; break;
    case OP_MIN: v = t.n ? t.min : NAN; break;
    default: v = t.n ? t.max : NAN; break;
    }
    if (t.nan)
        v = NAN;
    return in_f32(r) ? (double)(float)v : v;
}

uint32_t kx_levels(const cg_node *nodes, cg_id id, uint32_t *memo)
{
    if (memo[id])
        return memo[id] - 1;
    const cg_node *n = &nodes[id];
    uint32_t l = 0;
    for (uint32_t k = 0; k < n->n_in; k++) {
        bool held = cg_op_class(n->op) == CG_REDUCTION || (n->op == OP_MATMUL && k == 1);
        uint32_t x = kx_levels(nodes, n->in[k], memo) + held;
        l = x > l ? x : l;
    }
    memo[id] = l + 1;
    return l;
}
