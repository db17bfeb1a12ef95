/* graph.c: the op and initializer tables, and adding nodes. */
#include "graph.h"

#include <string.h>

static const struct {
    const char *name;
    int n_in;
    cg_class cls;
} ops[] = {
#define X(e, name, n, cls) {name, n, cls},
    CG_OPS(X)
#undef X
};

static const struct {
    const char *name;
    bool random, fan;
    const char *from;
} inits[] = {
#define X(e, name, random, fan, from) {name, random, fan, from},
    CG_INITS(X)
#undef X
};

const char *cg_op_name(cg_op op) { return ops[op].name; }
cg_class cg_op_class(cg_op op) { return ops[op].cls; }
const char *cg_init_name(cg_init_kind k) { return inits[k].name; }
bool cg_init_random(cg_init_kind k) { return inits[k].random; }
bool cg_init_fan_based(cg_init_kind k) { return inits[k].fan; }

cg_init_kind cg_init_lookup(const char *name)
{
    for (int i = 0; i < INIT_COUNT; i++)
        if (i != INIT_VALUE && strcmp(inits[i].name, name) == 0)
            return (cg_init_kind)i;
    return INIT_COUNT;
}

cg_id cg_add(cg_graph *g, const cg_node *n)
{
    if (g->n == g->cap) {
        uint32_t cap = g->cap ? g->cap * 2 : 256;
        cg_node *nodes = ar_array(g->ar, cap, sizeof *nodes);
        if (!nodes)
            return CG_NONE;
        if (g->n)
            memcpy(nodes, g->nodes, g->n * sizeof *nodes);
        g->nodes = nodes;
        g->cap = cap;
    }
    g->nodes[g->n] = *n;
    return g->n++;
}
