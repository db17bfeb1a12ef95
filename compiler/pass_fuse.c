/* pass_fuse.c: an output that is computed is one fused kernel: every
 * elementwise operation between its inputs and its result happens in one
 * pass over the data, a chunk at a time, with no tensor in between (map x*2
 * then map x+1 reads and writes once). A reduction (norm, mean, ...) needs
 * the whole of its operand before anything that uses it can run, so each
 * level of reductions is one pass before the kernel's: x / norm(x) costs
 * exactly two. Reductions of one level share their pass. A matmul's right
 * operand is made in such a pass too and held in memory, as is the result
 * of a reduction over an axis: the plan says what each tensor holds.
 *
 * The walk is linear in the nodes the kernel reaches: the passes a node is
 * read in are kept as the lowest and highest (the reductions on the paths
 * from the result down to it), each node settled once all the nodes above it
 * are, and an input counts its bytes once per pass in that span. */
#include <stdlib.h>
#include <string.h>

#include "compiler/passes.h"
#include "runtime/select.h"
#include "support/buf.h"

static uint64_t bytes(const cg_node *n)
{
    return n->nelems * surg_dtype_bits(n->dtype) / 8;
}

/* Read straight from the input: an input, or a layout move (not concat or
 * stack) of one. The kernel goes no further down. */
static bool is_read(const cg_graph *g, const cg_node *n)
{
    return n->op == OP_INPUT || (cg_op_class(n->op) == CG_LAYOUT && n->op != OP_CONCAT &&
                                 n->op != OP_STACK && cg_get(g, n->in[0])->op == OP_INPUT);
}

/* Passes over operand k of a node before the node's value is known: one
 * for a reduction and for a matmul's right operand, the radix passes of a
 * topk_mask (select.c; two more when its cut falls among ties, which only
 * the run knows). */
static uint32_t passes_below(const cg_graph *g, const cg_node *n, uint32_t k)
{
    if (n->op == OP_TOPK)
        return sx_width(cg_get(g, n->in[0])->dtype) / SX_DIGIT;
    return cg_op_class(n->op) == CG_REDUCTION || (n->op == OP_MATMUL && k == 1);
}

/* The nodes the kernel of `root` reaches, into s->order (their count is
 * returned); each one's `above` counts the edges into it. */
static uint32_t reach(const cg_graph *g, pl_scratch *s, cg_id root)
{
    uint32_t n = 0;
    s->seen[root] = 1;
    s->order[n++] = root;
    for (uint32_t i = 0; i < n; i++) { /* order doubles as the work list */
        const cg_node *x = cg_get(g, s->order[i]);
        if (is_read(g, x))
            continue;
        for (uint32_t k = 0; k < x->n_in; k++) {
            cg_id in = x->in[k];
            s->above[in]++;
            if (!s->seen[in]) {
                s->seen[in] = 1;
                s->order[n++] = in;
            }
        }
    }
    return n;
}

/* Settle the nodes from the root down, each once every edge into it is
 * (Kahn's order over the reached nodes); fills lo and hi, and returns the
 * deepest pass. */
static uint32_t settle(const cg_graph *g, pl_scratch *s, cg_id root, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        s->lo[s->order[i]] = UINT32_MAX;
        s->hi[s->order[i]] = 0;
    }
    s->lo[root] = 0;
    uint32_t head = 0, tail = 0, max_pass = 0;
    s->order[tail++] = root;
    while (head < tail) {
        cg_id id = s->order[head++];
        const cg_node *x = cg_get(g, id);
        if (is_read(g, x))
            continue;
        /* a mask reads its operand in its own passes and again in the kernel's */
        for (uint32_t k = 0; k < x->n_in; k++) {
            cg_id in = x->in[k];
            uint32_t below = passes_below(g, x, k), lo = x->op == OP_TOPK ? 0 : below;
            max_pass = s->hi[id] + below > max_pass ? s->hi[id] + below : max_pass;
            if (s->lo[id] + lo < s->lo[in])
                s->lo[in] = s->lo[id] + lo;
            if (s->hi[id] + below > s->hi[in])
                s->hi[in] = s->hi[id] + below;
            if (--s->above[in] == 0)
                s->order[tail++] = in;
        }
    }
    return max_pass;
}

/* What a node keeps in memory while the tensor is made: a matmul's right
 * operand (at the precision the product runs in), a reduction's result over
 * an axis (doubles). The biggest is named. */
static void held(const cg_graph *g, cg_id id, pl_tensor *t, cg_id *most, uint64_t *most_bytes)
{
    const cg_node *x = cg_get(g, id);
    uint64_t b = 0;
    if (x->op == OP_MATMUL) {
        bool f32 = x->dtype != SURG_F64 && surg_dtype_kind_of(x->dtype) == SURG_KIND_FLOAT;
        b = cg_get(g, x->in[1])->nelems * (f32 ? 4 : 8);
    } else if (cg_reduces_axis(x)) {
        b = x->nelems * 8;
    } else {
        return;
    }
    t->held = t->held + b < t->held ? UINT64_MAX : t->held + b;
    t->n_held++;
    if (*most == CG_NONE || b > *most_bytes) {
        *most = x->op == OP_MATMUL ? x->in[1] : id;
        *most_bytes = b;
    }
}

/* "256 KiB: f32[16, 4096] A, the right operand of a matmul". */
static bool held_text(const surg_program *p, arena *ar, pl_tensor *t, cg_id most)
{
    const cg_node *x = cg_get(&p->g, most);
    char *how = pl_describe(p, ar, most);
    buf b;
    buf_init(&b);
    buf_printf(&b, "%s[", surg_dtype_recipe_name(x->dtype));
    for (uint32_t i = 0; i < x->rank; i++)
        buf_printf(&b, "%s%llu", i ? ", " : "", (unsigned long long)x->shape[i]);
    buf_printf(&b, "] %s, %s", how ? how : "",
               cg_reduces_axis(x) ? "a reduction over an axis"
                                                  : "the right operand of a matmul");
    t->held_how = how && !b.failed ? ar_strdup(ar, b.data) : NULL;
    buf_free(&b);
    return t->held_how != NULL;
}

bool pl_fuse(const surg_program *p, arena *ar, pl_tensor *t, pl_scratch *s)
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
    const cg_graph *g = &p->g;
    uint32_t n = reach(g, s, t->node);
    uint32_t max_pass = settle(g, s, t->node, n);
    /* Every node is settled once its last edge is: order holds them all. */
    uint64_t read = 0, most_bytes = 0;
    cg_id most = CG_NONE;
    for (uint32_t i = 0; i < n; i++) {
        cg_id id = s->order[i];
        const cg_node *x = cg_get(g, id);
        uint64_t r;
        /* A broadcast input is read once, however often it repeats. */
        const cg_node *src = x->op == OP_BROADCAST ? cg_get(g, x->in[0]) : x;
        if (is_read(g, x) &&
            (__builtin_mul_overflow(bytes(src), (uint64_t)(s->hi[id] - s->lo[id]) + 1, &r) ||
             __builtin_add_overflow(read, r, &read)))
            read = UINT64_MAX;
        s->seen[id] = 0;
        s->above[id] = 0;
        held(g, id, t, &most, &most_bytes);
    }
    t->passes = max_pass + 1;
    t->read = read;
    /* A chunk of doubles per node evaluated, and the encoded result. */
    t->work = (uint64_t)PL_CHUNK_ELEMS * (8 * n + esize);
    t->how = pl_describe(p, ar, t->node);
    return t->how != NULL && (most == CG_NONE || held_text(p, ar, t, most));
}
