/* reduce_axis.c: reductions over one axis (sum(x, axis=0), norm(x, axis=1,
 * keepdims=true)). The operand is seen as [outer, len, inner], len the
 * axis; a job owns some results and reads their operand elements in
 * contiguous ranges, at most a chunk at a time, folding the axis in order
 * into each result, in double. The results are held (double) for the
 * kernels that use them. */
#include <math.h>

#include "runtime/kernel.h"
#include "support/diag.h"

/* How the jobs cut the operand: whole slabs [len, inner] of several outer
 * indices; one outer index, rows of inner at a time; or a stretch of inner
 * of one outer index, row by row. */
typedef struct cut {
    uint64_t slabs; /* outer indices per job, in the first way */
    uint64_t span;  /* inner elements per job, in the third way (0: not) */
    uint64_t rows;  /* rows of the axis per read, in the second way */
} cut;

static cut cut_of(const cg_node *n, size_t chunk)
{
    uint64_t len = n->a.reduce.len, inner = n->a.reduce.inner, slab = len * inner;
    if (slab <= chunk)
        return (cut){.slabs = slab ? chunk / slab : chunk};
    if (inner <= chunk)
        return (cut){.rows = chunk / inner};
    return (cut){.span = chunk, .rows = 1};
}

uint64_t kx_axis_jobs(const cg_node *n, size_t chunk)
{
    cut k = cut_of(n, chunk);
    uint64_t outer = n->a.reduce.outer, inner = n->a.reduce.inner;
    if (k.slabs)
        return (outer + k.slabs - 1) / k.slabs;
    if (!k.span)
        return outer;
    return outer * ((inner + k.span - 1) / k.span);
}

/* The running value of one result: a sum, a sum of squares, the least or
 * the greatest (NaN wins), or Welford's mean and M2. */
typedef struct acc {
    double a, m2;
} acc;

static acc start(cg_op op)
{
    return (acc){op == OP_MIN ? INFINITY : op == OP_MAX ? -INFINITY : 0, 0};
}

/* Rows [r0, r0 + rows) of the axis (row r0 is number r0 + 1 for Welford),
 * `count` results, each row `stride` values apart. */
static void fold(cg_op op, acc *x, const double *v, uint64_t r0, uint64_t rows, size_t count,
                 size_t stride)
{
    for (uint64_t r = 0; r < rows; r++, v += stride) {
        double t = (double)(r0 + r + 1);
        for (size_t i = 0; i < count; i++) {
            double y = v[i];
            switch (op) {
            case OP_NORM: x[i].a += y * y; break;
            case OP_MIN: if (x[i].a == x[i].a && !(y >= x[i].a)) x[i].a = y; break;
            case OP_MAX: if (x[i].a == x[i].a && !(y <= x[i].a)) x[i].a = y; break;
            case OP_STD: {
                double d = y - x[i].a;
                x[i].a += d / t;
                x[i].m2 += d * (y - x[i].a);
                break;
            }
            default: x[i].a += y; break; /* sum, mean */
            }
        }
    }
}

static double finish(const cg_node *n, acc x)
{
    double len = (double)n->a.reduce.len, v;
    switch (n->op) {
    case OP_NORM: v = sqrt(x.a); break;
    case OP_MEAN: v = x.a / len; break;
    case OP_STD: v = len > 0 ? sqrt(x.m2 / len) : NAN; break;
    case OP_MIN:
    case OP_MAX: v = len > 0 ? x.a : NAN; break;
    default: v = x.a; break;
    }
    return kx_f32(n) ? (double)(float)v : v;
}

static surg_status nomem(surg_sink *sink)
{
    dg_file(sink, SURG_ERROR, "nomem", "surg", "out of scratch memory while computing");
    return SURG_ENOMEM;
}

surg_status kx_axis_job(const kx_ctx *c, kx_scratch *s, cg_id node, uint64_t job, size_t chunk,
                        surg_sink *sink)
{
    const cg_node *n = &c->nodes[node];
    uint64_t len = n->a.reduce.len, inner = n->a.reduce.inner, outer = n->a.reduce.outer;
    uint64_t slab = len * inner;
    cut k = cut_of(n, chunk);
    uint64_t o0 = job, o1 = job + 1, i0 = 0, count = inner;
    if (k.slabs) {
        o0 = job * k.slabs;
        o1 = outer - o0 < k.slabs ? outer : o0 + k.slabs;
    } else if (k.span) {
        uint64_t per = (inner + k.span - 1) / k.span;
        o0 = job / per;
        o1 = o0 + 1;
        i0 = (job % per) * k.span;
        count = inner - i0 < k.span ? inner - i0 : k.span;
    }
    size_t results = (size_t)((o1 - o0) * count);
    acc *x = kx_take(s, (results ? results : 1) * sizeof *x);
    double *v = kx_take(s, chunk * sizeof *v);
    if (!x || !v)
        return nomem(sink);
    for (size_t i = 0; i < results; i++)
        x[i] = start(n->op);
    surg_status st = SURG_OK;
    if (k.slabs) { /* one read of whole slabs */
        size_t m = (size_t)((o1 - o0) * slab);
        st = kx_eval(c, s, n->in[0], (kx_index){.start = o0 * slab, .n = m}, v, sink);
        for (uint64_t o = o0; !st && o < o1; o++)
            fold(n->op, x + (o - o0) * inner, v + (o - o0) * slab, 0, len, inner, inner);
    } else {
        for (uint64_t r = 0; r < len && !st; r += k.rows) {
            uint64_t rows = len - r < k.rows ? len - r : k.rows;
            kx_mark mark = kx_mark_of(s);
            kx_index ix = {.start = o0 * slab + r * inner + i0, .n = (size_t)(rows * count)};
            st = kx_eval(c, s, n->in[0], ix, v, sink);
            if (!st)
                fold(n->op, x, v, r, rows, count, count);
            kx_release(s, mark);
        }
    }
    double *held = c->held[node];
    for (size_t i = 0; !st && i < results; i++) {
        uint64_t o = o0 + i / count, q = o * inner + i0 + i % count;
        held[q] = finish(n, x[i]);
    }
    return st;
}
