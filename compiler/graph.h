/* graph.h: building the op graph a recipe compiles to. Each node is one
 * tensor value — an input, a generated value, or a computation over other
 * nodes — with its dtype and shape; the outputs are final names bound to
 * nodes. Renames, drops and ties only change which names are bound to which
 * nodes. */
#ifndef SURG_GRAPH_H
#define SURG_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include "support/arena.h"
#include "support/bigbuf.h"
#include "runtime/ops.h"
#include "runtime/plan.h"

/* The X-macro tables, cg_node and what each op does are the runtime's
 * (ops.h): the plan hands nodes to the executor as they are. So is cg_lora,
 * the init-lora record (plan.h). */

typedef struct cg_output {
    const char *name;
    cg_id node;
} cg_output;

typedef struct cg_graph {
    cg_node *nodes; /* in buf: it grows by doubling */
    uint32_t n, cap;
    bigbuf buf;
} cg_graph;

/* Room for n more nodes without growing. */
bool cg_reserve(cg_graph *g, uint32_t n);
/* The depth a node with these inputs has. */
uint32_t cg_depth_of(const cg_graph *g, const cg_id *in, uint32_t n_in);
/* Add a node (copied, its depth set); returns its id or CG_NONE when out of
 * memory. */
cg_id cg_add(cg_graph *g, const cg_node *n);
void cg_free(cg_graph *g);

static inline const cg_node *cg_get(const cg_graph *g, cg_id id)
{
    return &g->nodes[id];
}

#endif
