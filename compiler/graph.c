/* graph.c: adding nodes to the op graph (the op tables are the runtime's:
 * ops.c). */
#include "compiler/graph.h"

#include <stdlib.h>

bool cg_reserve(cg_graph *g, uint32_t n)
{
    if (g->cap - g->n >= n)
        return true;
    uint32_t cap = g->cap ? g->cap : 256;
    while (cap - g->n < n)
        cap *= 2;
    if (!bb_reserve(&g->buf, (size_t)cap * sizeof *g->nodes))
        return false;
    g->nodes = g->buf.p;
    g->cap = cap;
    return true;
}

uint32_t cg_depth_of(const cg_graph *g, const cg_id *in, uint32_t n_in)
{
    uint32_t d = 0;
    for (uint32_t k = 0; k < n_in; k++)
        d = g->nodes[in[k]].depth > d ? g->nodes[in[k]].depth : d;
    return d + 1;
}

cg_id cg_add(cg_graph *g, const cg_node *n)
{
    uint32_t depth = cg_depth_of(g, n->in, n->n_in);
    if (!cg_reserve(g, 1))
        return CG_NONE;
    g->nodes[g->n] = *n;
    g->nodes[g->n].depth = depth;
    return g->n++;
}

void cg_free(cg_graph *g)
{
    bb_free(&g->buf);
    g->nodes = NULL;
    g->n = g->cap = 0;
}
