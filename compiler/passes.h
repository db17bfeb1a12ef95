/* passes.h: the passes over the op graph that decide the plan (runtime/
 * plan.h), one file each:
 *   pass_live.c  which nodes any output needs (dead inputs are never read,
 *                dead values never made);
 *   pass_copy.c  which outputs are byte ranges of inputs (copied, never
 *                decoded), and which are layout moves of them (strided
 *                copies, no arithmetic);
 *   pass_fuse.c  the rest as fused kernels: one pass over the data for any
 *                chain of elementwise operations, plus one before it for
 *                each level of reductions it uses.
 * Tied names are metadata: the data is stored once, under the name tied to. */
#ifndef SURG_PASSES_H
#define SURG_PASSES_H

#include "runtime/plan.h"
#include "compiler/program.h"

/* Per-node arrays the passes reuse from tensor to tensor, so that the work
 * for one tensor is in proportion to the nodes it reaches, not the graph:
 * a pass leaves `seen` and `above` all zero, as it found them. */
typedef struct pl_scratch {
    uint32_t *lo, *hi; /* pass_fuse: the first and last pass that reads a node */
    uint32_t *above;   /* pass_fuse: edges from nodes above not yet settled */
    uint8_t *seen;
    cg_id *order;      /* nodes reached, in the order a pass takes them */
} pl_scratch;

bool pl_scratch_init(pl_scratch *s, uint32_t n_nodes); /* false: out of memory */
void pl_scratch_free(pl_scratch *s);

/* The passes. Each fills in its part of the plan's tensors. */
uint8_t *pl_live(const cg_graph *g, const cg_output *out, size_t n_out);
/* 1: the tensor is a copy of byte ranges or a strided move; 0: it is
 * computed; -1: out of memory. */
int pl_copy(const surg_program *p, arena *ar, pl_tensor *t, pl_scratch *s);
/* The kernel's passes, reads and memory, in time linear in the nodes it
 * reaches. False: out of memory. */
bool pl_fuse(const surg_program *p, arena *ar, pl_tensor *t, pl_scratch *s);

/* A node as text ("div(x, norm(x))" with inputs by name), for people. */
char *pl_describe(const surg_program *p, arena *ar, cg_id node); /* NULL: out of memory */

#endif
