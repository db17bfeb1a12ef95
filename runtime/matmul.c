/* matmul.c: the matrix product in a fused kernel. The right operand is
 * computed whole beforehand and held (kx_hold_chunk); the output's elements
 * asked for are grouped by row, and the left operand is evaluated for a
 * block of those rows at a time (a stretch of k when a row alone is too
 * long), its memory given back after each block. Every element is a sum
 * over k in order, in double, rounded once to the node's precision: the
 * same bits for any chunking and any number of threads. */
#include <stdlib.h>
#include <string.h>

#include "runtime/kernel.h"
#include "support/diag.h"

static surg_status nomem(surg_sink *sink)
{
    dg_file(sink, SURG_ERROR, "nomem", "surg", "out of scratch memory while computing");
    return SURG_ENOMEM;
}

size_t kx_hold_elem(const cg_node *matmul) { return kx_f32(matmul) ? 4 : 8; }

surg_status kx_hold_chunk(const kx_ctx *c, kx_scratch *s, cg_id node, uint64_t start, size_t n,
                          surg_sink *sink)
{
    const cg_node *m = &c->nodes[node];
    double *v = kx_take(s, (n ? n : 1) * sizeof *v);
    if (!v)
        return nomem(sink);
    surg_status st = kx_eval(c, s, m->in[1], (kx_index){.start = start, .n = n}, v, sink);
    if (st)
        return st;
    if (kx_f32(m)) { /* values of f32 or narrower: exact as floats */
        float *to = (float *)c->held[node] + start;
        for (size_t i = 0; i < n; i++)
            to[i] = (float)v[i];
    } else {
        memcpy((double *)c->held[node] + start, v, n * sizeof *v);
    }
    return SURG_OK;
}

/* ---- where an output row reads ---------------------------------------- */

/* The output's batch axes and each operand's, to find an output row's rows
 * of the left operand and its block of the right one. */
typedef struct geom {
    const cg_node *out, *l, *r;
    uint64_t m, k, n;
    uint32_t batch;     /* the output's batch axes */
    uint32_t lb, rb;    /* the operands' batch axes */
} geom;

static geom geom_of(const kx_ctx *c, const cg_node *x)
{
    geom g = {.out = x, .l = &c->nodes[x->in[0]], .r = &c->nodes[x->in[1]],
              .m = x->a.matmul.m, .k = x->a.matmul.k, .n = x->a.matmul.n};
    g.batch = x->rank - !x->a.matmul.vec_left - !x->a.matmul.vec_right;
    g.lb = g.l->rank >= 2 ? g.l->rank - 2 : 0;
    g.rb = g.r->rank >= 2 ? g.r->rank - 2 : 0;
    return g;
}

/* The flat index, in an operand of `rank` batch axes, of output batch `b`
 * (broadcast: an axis of 1 repeats). */
static uint64_t batch_in(const geom *g, uint64_t b, const cg_node *op, uint32_t rank)
{
    uint64_t co[SURG_MAX_RANK + 1], f = 0;
    for (uint32_t d = g->batch; d-- > 0;) {
        uint64_t len = g->out->shape[d];
        co[d] = len ? b % len : 0;
        b = len ? b / len : 0;
    }
    for (uint32_t d = 0; d < rank; d++) {
        uint64_t len = op->shape[d];
        f = f * len + (len == 1 ? 0 : co[d + g->batch - rank]);
    }
    return f;
}

/* One output row (a batch and a row of m) and the elements asked of it:
 * items [first, first + count) of the sorted order, or, when the index set
 * is a range, the columns [j0, j0 + count) at output positions from
 * `first` on. */
typedef struct group {
    uint64_t lrow;  /* its row of the left operand */
    uint64_t rbase; /* where its batch of the right operand starts */
    size_t first;
    size_t count;
    uint64_t j0;
} group;

typedef struct item {
    uint64_t key; /* output row */
    uint64_t j;
    size_t pos;   /* in the index set */
} item;

static int by_row(const void *a, const void *b)
{
    const item *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* ---- the sums ----------------------------------------------------------- */

/* Consecutive j at consecutive positions (an index set may repeat one). */
static bool is_run(const item *a, size_t count)
{
    for (size_t t = 1; t < count; t++)
        if (a[t].j != a[0].j + t || a[t].pos != a[0].pos + t)
            return false;
    return true;
}

/* The row loops are also built for AVX2, picked at load time where the
 * processor has it: twice the doubles per instruction, the same sums (no
 * fused multiply-add is formed, so each step rounds as in the plain build). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(SURG_NO_CLONES)
#define SURG_WIDE __attribute__((target_clones("avx2", "default")))
#else
#define SURG_WIDE
#endif

/* Columns a tile of a row holds in registers while k goes by. */
enum { TILE = 16 };

/* o[t] += sum over kk < len of left[kk] * r[kk * n + t], for t < count,
 * each sum taken in order of kk. A tile of o stays in registers over all
 * of k (the loops the compiler vectorizes); the sums are the same as one
 * element at a time. */
#define ROW(T)                                                                         \
    SURG_WIDE static void row_##T(const T *r, const double *left, uint64_t len, uint64_t n,     \
                        double *o, size_t count)                                      \
    {                                                                                 \
        size_t t0 = 0;                                                                \
        for (; count - t0 >= TILE; t0 += TILE) {                                      \
            double acc[TILE];                                                         \
            for (size_t t = 0; t < TILE; t++)                                         \
                acc[t] = o[t0 + t];                                                   \
            const T *rr = r + t0;                                                     \
            for (uint64_t kk = 0; kk < len; kk++, rr += n) {                          \
                double l = left[kk];                                                  \
                for (size_t t = 0; t < TILE; t++)                                     \
                    acc[t] += l * (double)rr[t];                                      \
            }                                                                         \
            for (size_t t = 0; t < TILE; t++)                                         \
                o[t0 + t] = acc[t];                                                   \
        }                                                                             \
        const T *rr = r + t0;                                                         \
        for (uint64_t kk = 0; kk < len; kk++, rr += n) {                              \
            double l = left[kk];                                                      \
            for (size_t t = 0; t < count - t0; t++)                                   \
                o[t0 + t] += l * (double)rr[t];                                       \
        }                                                                             \
    }
ROW(float)
ROW(double)

/* acc[pos] += sum over [k0, k0 + len) of left[kk] * right[kk][j], in order,
 * for the elements of group g. A run of consecutive j at consecutive
 * positions (every group of a range) goes by row_T. */
#define ACCUMULATE(T)                                                                 \
    static void accumulate_##T(const T *right, const group *g, const item *it,       \
                               const double *left, uint64_t k0, uint64_t len,        \
                               uint64_t n, double *acc)                              \
    {                                                                                \
        if (!it) {                                                                   \
            row_##T(right + g->rbase + k0 * n + g->j0, left, len, n, acc + g->first, \
                    g->count);                                                       \
            return;                                                                  \
        }                                                                            \
        const item *a = it + g->first;                                               \
        if (is_run(a, g->count)) {                                                   \
            row_##T(right + g->rbase + k0 * n + a[0].j, left, len, n, acc + a[0].pos,\
                    g->count);                                                       \
            return;                                                                  \
        }                                                                            \
        for (size_t t = 0; t < g->count; t++) {                                      \
            const T *r = right + g->rbase + k0 * n + a[t].j;                         \
            double sum = acc[a[t].pos];                                              \
            for (uint64_t kk = 0; kk < len; kk++)                                    \
                sum += left[kk] * (double)r[kk * n];                                 \
            acc[a[t].pos] = sum;                                                     \
        }                                                                            \
    }
ACCUMULATE(float)
ACCUMULATE(double)

/* The left operand's values for groups [g0, g1) and k in [k0, k0 + len):
 * one range when the rows follow each other and take all of k. */
static surg_status left_block(const kx_ctx *c, kx_scratch *s, const geom *G, cg_id left,
                              const group *g, size_t g0, size_t g1, uint64_t k0, uint64_t len,
                              double *out, surg_sink *sink)
{
    bool consecutive = true;
    for (size_t i = g0 + 1; i < g1 && consecutive; i++)
        consecutive = g[i].lrow == g[i - 1].lrow + 1;
    size_t n = (g1 - g0) * len;
    if (consecutive && (len == G->k || g1 - g0 == 1))
        return kx_eval(c, s, left, (kx_index){.start = g[g0].lrow * G->k + k0, .n = n}, out, sink);
    uint64_t *idx = kx_take(s, n * sizeof *idx);
    if (!idx)
        return nomem(sink);
    for (size_t i = g0, t = 0; i < g1; i++)
        for (uint64_t kk = 0; kk < len; kk++)
            idx[t++] = g[i].lrow * G->k + k0 + kk;
    return kx_eval(c, s, left, (kx_index){.idx = idx, .n = n}, out, sink);
}

static group group_of(const geom *G, uint64_t key, size_t first, size_t count, uint64_t j0)
{
    uint64_t b = key / G->m, row = key % G->m;
    return (group){.lrow = batch_in(G, b, G->l, G->lb) * G->m + row,
                   .rbase = batch_in(G, b, G->r, G->rb) * G->k * G->n,
                   .first = first, .count = count, .j0 = j0};
}

/* A range of the output: a group for each row it touches, in order, with
 * no sorting (*items NULL). */
static surg_status group_range(kx_scratch *s, const geom *G, kx_index ix, group **groups,
                               size_t *n_groups, surg_sink *sink)
{
    size_t most = G->n ? (size_t)(ix.n / G->n) + 2 : 1;
    group *g = kx_take(s, most * sizeof *g);
    if (!g)
        return nomem(sink);
    size_t n = 0;
    for (size_t pos = 0; pos < ix.n;) {
        uint64_t q = ix.start + pos, j0 = q % G->n;
        size_t count = G->n - j0 < ix.n - pos ? (size_t)(G->n - j0) : ix.n - pos;
        g[n++] = group_of(G, q / G->n, pos, count, j0);
        pos += count;
    }
    *groups = g;
    *n_groups = n;
    return SURG_OK;
}

/* Sorts the index set's elements by output row and makes a group of each
 * row; *n_groups of them. */
static surg_status group_rows(kx_scratch *s, const geom *G, kx_index ix, item **items,
                              group **groups, size_t *n_groups, surg_sink *sink)
{
    *items = NULL;
    if (!ix.idx)
        return group_range(s, G, ix, groups, n_groups, sink);
    item *it = kx_take(s, (ix.n ? ix.n : 1) * sizeof *it);
    group *g = kx_take(s, (ix.n ? ix.n : 1) * sizeof *g);
    if (!it || !g)
        return nomem(sink);
    bool sorted = true;
    for (size_t i = 0; i < ix.n; i++) {
        uint64_t q = ix.idx[i];
        it[i] = (item){.key = q / G->n, .j = q % G->n, .pos = i};
        sorted &= !i || it[i].key >= it[i - 1].key;
    }
    if (!sorted)
        qsort(it, ix.n, sizeof *it, by_row);
    size_t n = 0;
    for (size_t i = 0; i < ix.n; i++) {
        if (n && it[i].key == it[g[n - 1].first].key) {
            g[n - 1].count++;
            continue;
        }
        g[n++] = group_of(G, it[i].key, i, 1, 0);
    }
    *items = it;
    *groups = g;
    *n_groups = n;
    return SURG_OK;
}

surg_status kx_matmul(const kx_ctx *c, kx_scratch *s, cg_id node, kx_index ix, double *out,
                      surg_sink *sink)
{
    const cg_node *x = &c->nodes[node];
    geom G = geom_of(c, x);
    item *it;
    group *g;
    size_t n_groups;
    surg_status st = group_rows(s, &G, ix, &it, &g, &n_groups, sink);
    if (st)
        return st;
    for (size_t i = 0; i < ix.n; i++)
        out[i] = 0;
    /* Blocks of the left operand no bigger than the index set (the
     * executor sized the scratch for that), at least 1024 elements. */
    uint64_t budget = ix.n > 1024 ? ix.n : 1024;
    uint64_t seg = G.k < budget ? G.k : budget;
    size_t rows = seg ? (size_t)(budget / seg) : n_groups;
    rows = rows ? rows : 1;
    for (size_t g0 = 0; g0 < n_groups && !st; g0 += rows) {
        size_t g1 = n_groups - g0 < rows ? n_groups : g0 + rows;
        for (uint64_t k0 = 0; k0 < G.k && !st; k0 += seg) {
            uint64_t len = G.k - k0 < seg ? G.k - k0 : seg;
            kx_mark mark = kx_mark_of(s);
            double *left = kx_take(s, (g1 - g0) * len * sizeof *left);
            st = left ? left_block(c, s, &G, x->in[0], g, g0, g1, k0, len, left, sink)
                      : nomem(sink);
            for (size_t i = g0; !st && i < g1; i++) {
                const double *l = left + (i - g0) * len;
                if (kx_f32(x))
                    accumulate_float(c->held[node], &g[i], it, l, k0, len, G.n, out);
                else
                    accumulate_double(c->held[node], &g[i], it, l, k0, len, G.n, out);
            }
            kx_release(s, mark);
        }
    }
    if (!st && kx_f32(x))
        for (size_t i = 0; i < ix.n; i++)
            out[i] = (double)(float)out[i];
    return st;
}
