/* kernel.h: fused kernels. The elements of a node are evaluated for a set
 * of indices (a range, or a list when a layout move scatters them) straight
 * from the inputs, through every elementwise operation at once, a chunk at a
 * time; reductions are evaluated beforehand, in chunks whose partial results
 * combine in a fixed order, so no result depends on the number of threads. */
#ifndef SURG_KERNEL_H
#define SURG_KERNEL_H

#include "runtime/ops.h"

/* Elements [start, start + n), or idx[0..n) when idx is not NULL. */
typedef struct kx_index {
    uint64_t start;
    const uint64_t *idx;
    size_t n;
} kx_index;

/* The cut a topk_mask makes (select.h): an element is taken when its key
 * is above `key`, or equal to it at an index up to `last`; none when
 * `none`. */
typedef struct kx_cut {
    uint64_t key, last;
    bool none;
} kx_cut;

/* What the kernels of one run share: the plan's nodes, its input (files
 * mapped before the threads start), the values of the reductions computed
 * so far (by node; NaN until computed), the values held whole (by node: a
 * reduction over an axis, its result as doubles; a matmul, its right
 * operand as floats or doubles, kx_f32; NULL until computed), and the cuts
 * of the topk_masks. */
typedef struct kx_ctx {
    const cg_node *nodes;
    uint32_t n_nodes;
    surg_ckpt *ck;
    double *scalars;
    void **held;
    kx_cut *cuts;   /* by node, for topk_mask nodes; NULL when there are none */
} kx_ctx;

/* Values already computed for the current chunk: a node reached along
 * several paths with the same index set (`x + x`, a shared subexpression)
 * is evaluated once, not once per path. Every value is kept, however many
 * (a bounded memo would let a long chain of `x + x` double its work at each
 * level past the bound); they are found through their node. */
typedef struct kx_memo {
    cg_id node;
    uint32_t next; /* the node's previous value, +1 (0: none) */
    uint64_t start;
    const uint64_t *idx;
    size_t n;
    const double *vals;
} kx_memo;

/* A thread's scratch memory, reused chunk after chunk. */
typedef struct kx_scratch {
    char *mem;
    size_t size, used;
    kx_memo *memo;   /* the chunk's values, grown as needed */
    size_t n_memo, memo_cap;
    uint32_t *last;  /* per node of the graph: its newest value, +1 */
    uint32_t *hist;  /* topk_mask's counts of one chunk (select.c), zero between chunks */
} kx_scratch;

void kx_scratch_free(kx_scratch *s);
/* `bytes` of the scratch (16-byte aligned), NULL when it is used up. */
void *kx_take(kx_scratch *s, size_t bytes);
/* A point in the scratch to come back to: every value computed and every
 * byte taken after it are forgotten (a matmul's rows of its left operand,
 * one block after another). */
typedef struct kx_mark {
    size_t used, n_memo;
} kx_mark;
kx_mark kx_mark_of(const kx_scratch *s);
void kx_release(kx_scratch *s, kx_mark m);
/* Forget the chunk's values and memory, for the next chunk. */
void kx_scratch_reset(kx_scratch *s);

/* Values of `node` at `ix`, in `out` (ix.n doubles), each already rounded as
 * the node's dtype stores it. */
surg_status kx_eval(const kx_ctx *c, kx_scratch *s, cg_id node, kx_index ix, double *out,
                    surg_sink *sink);

/* The raw element bytes of a layout move of inputs, at `ix`. */
surg_status kx_gather(const kx_ctx *c, kx_scratch *s, cg_id node, kx_index ix, void *out,
                      surg_sink *sink);

/* Partial results of a reduction over one chunk of its operand. */
typedef struct kx_partial {
    uint64_t n;
    double sum, sumsq, min, max, mean, m2;
    bool nan;
} kx_partial;

surg_status kx_reduce_chunk(const kx_ctx *c, kx_scratch *s, cg_id node, uint64_t start,
                            size_t n, kx_partial *out, surg_sink *sink);
/* Combine the chunks in order into the reduction's value. */
double kx_reduce_finish(const kx_ctx *c, cg_id node, const kx_partial *parts, size_t n_parts);

/* Reduction levels below a node, so levels can be computed deepest first
 * (a matmul's right operand is a level below it, as a reduction's operand). */
uint32_t kx_levels(const cg_node *nodes, cg_id node, uint32_t *memo);

/* Whether a node computes in f32 (else f64: f64 and integer results). */
bool kx_f32(const cg_node *n);

/* ---- matmul.c ---------------------------------------------------------- */

/* A matmul's values at `ix`: the left operand's rows evaluated a block at a
 * time, each element a sum over k in order, in double, rounded once. */
surg_status kx_matmul(const kx_ctx *c, kx_scratch *s, cg_id node, kx_index ix, double *out,
                      surg_sink *sink);
/* Bytes of one held value of a matmul's right operand. */
size_t kx_hold_elem(const cg_node *matmul);
/* Elements [start, start + n) of a matmul's right operand, into held[node]. */
surg_status kx_hold_chunk(const kx_ctx *c, kx_scratch *s, cg_id node, uint64_t start, size_t n,
                          surg_sink *sink);

/* ---- reduce_axis.c ---------------------------------------------------- */

/* The jobs a reduction over an axis is cut into, each reading at most
 * `chunk` elements of its operand at a time. */
uint64_t kx_axis_jobs(const cg_node *node, size_t chunk);
/* Job `job`: its results, each accumulated over the axis in order, into
 * held[node] (so no result depends on the jobs or the threads). */
surg_status kx_axis_job(const kx_ctx *c, kx_scratch *s, cg_id node, uint64_t job, size_t chunk,
                        surg_sink *sink);

#endif
