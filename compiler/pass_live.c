/* pass_live.c: the nodes some output needs. The rest are dead: an input
 * that no output needs is never read, and a value overwritten or dropped
 * before the end (a fill that a later fill replaces, an adapter that is
 * dropped) is never allocated, generated or computed. */
#include <stdlib.h>

#include "compiler/passes.h"

/* Marks, per node, 1 when an output needs it. Iterative: a chain of a
 * million maps must not exhaust the C stack. Returns NULL when out of
 * memory; the caller frees. */
uint8_t *pl_live(const cg_graph *g, const cg_output *out, size_t n_out)
{
    uint8_t *live = calloc(g->n ? g->n : 1, 1);
    cg_id *stack = malloc((g->n ? g->n : 1) * sizeof *stack);
    if (!live || !stack) {
        free(live);
        free(stack);
        return NULL;
    }
    size_t top = 0;
    for (size_t i = 0; i < n_out; i++)
        if (!live[out[i].node]) {
            live[out[i].node] = 1;
            stack[top++] = out[i].node;
        }
    while (top) {
        const cg_node *n = cg_get(g, stack[--top]);
        for (uint32_t k = 0; k < n->n_in; k++)
            if (!live[n->in[k]]) {
                live[n->in[k]] = 1;
                stack[top++] = n->in[k];
            }
    }
    free(stack);
    return live;
}
