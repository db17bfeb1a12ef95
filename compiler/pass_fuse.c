/* pass_fuse.c: an output that is computed is one fused kernel: every
 * elementwise operation between its inputs and its result happens in one
 * pass over the data, a chunk at a time, with no tensor in between (map x*2
 * then map x+1 reads and writes once). A reduction (norm, mean, ...) needs
 * the whole of its operand before anything that uses it can run, so each
 * level of reductions is one pass before the kernel's: x / norm(x) costs
 * exactly two. Reductions of one level share their pass. */
#include <stdlib.h>
#include <string.h>

#include "plan.h"

typedef struct fuse {
    const surg_program *p;
    uint32_t *level;   /* per node: reduction levels below it, +1 (0: not yet) */
    uint8_t *counted;  /* per node: its buffer is counted in `nodes` */
    uint32_t *seen;    /* per node: the passes that have read it, as bits */
    uint64_t nodes;    /* distinct nodes the kernel evaluates */
    uint64_t *read;    /* per pass: input bytes it reads */
    uint32_t max_pass;
} fuse;

static uint64_t bytes(const cg_node *n)
{
    return n->nelems * surg_dtype_bits(n->dtype) / 8;
}

/* How many levels of reductions are nested below a node. */
static uint32_t levels(fuse *f, cg_id id)
{
    if (f->level[id])
        return f->level[id] - 1;
    const cg_node *n = cg_get(&f->p->g, id);
    uint32_t l = 0;
    for (uint32_t k = 0; k < n->n_in; k++) {
        uint32_t c = levels(f, n->in[k]) + (cg_op_class(n->op) == CG_REDUCTION);
        l = c > l ? c : l;
    }
    f->level[id] = l + 1;
    return l;
}

/* What the pass that evaluates `id` reads: inputs (through any layout moves
 * on them) count their bytes; a reduction is read in the pass before. */
static void reads(fuse *f, cg_id id, uint32_t pass)
{
    const cg_node *n = cg_get(&f->p->g, id);
    uint32_t bit = pass < 32 ? 1u << pass : 0;
    if (f->seen[id] & bit)
        return; /* x * x reads x once */
    f->seen[id] |= bit;
    if (!f->counted[id]) {
        f->counted[id] = 1;
        f->nodes++;
    }
    if (n->op == OP_INPUT || (cg_op_class(n->op) == CG_LAYOUT && n->op != OP_CONCAT &&
                              n->op != OP_STACK && cg_get(&f->p->g, n->in[0])->op == OP_INPUT)) {
        f->read[pass] += bytes(n); /* the elements this view touches */
        return;
    }
    bool reduce = cg_op_class(n->op) == CG_REDUCTION;
    uint32_t below = reduce ? pass + 1 : pass;
    if (below > f->max_pass)
        f->max_pass = below;
    for (uint32_t k = 0; k < n->n_in; k++)
        reads(f, n->in[k], below);
}

bool pl_fuse(const surg_program *p, arena *ar, pl_tensor *t)
{
    uint32_t esize = (surg_dtype_bits(t->dtype) + 7) / 8;
    if (t->kind == PL_GATHER) {
        t->read = t->nbytes; /* each element moved once, out of the mapped input */
        t->work = (uint64_t)PL_CHUNK_ELEMS * esize;
        return (t->how = pl_describe(p, ar, t->node)) != NULL;
    }
    if (t->kind == PL_GENERATE) {
        t->work = (uint64_t)PL_CHUNK_ELEMS * (8 + esize);
        return (t->how = pl_describe(p, ar, t->node)) != NULL;
    }
    fuse f = {.p = p};
    f.level = calloc(p->g.n ? p->g.n : 1, sizeof *f.level);
    f.counted = calloc(p->g.n ? p->g.n : 1, 1);
    f.seen = calloc(p->g.n ? p->g.n : 1, sizeof *f.seen);
    uint32_t depth = f.level ? levels(&f, t->node) : 0;
    f.read = calloc(depth + 2, sizeof *f.read);
    bool ok = f.level && f.counted && f.seen && f.read;
    if (ok) {
        reads(&f, t->node, 0);
        t->passes = f.max_pass + 1;
        for (uint32_t i = 0; i <= f.max_pass; i++)
            t->read += f.read[i];
        /* A chunk of doubles per node evaluated, and the encoded result. */
        t->work = (uint64_t)PL_CHUNK_ELEMS * (8 * f.nodes + esize);
    }
    free(f.level);
    free(f.counted);
    free(f.seen);
    free(f.read);
    t->how = pl_describe(p, ar, t->node);
    return ok && t->how;
}
