/* describe.c: a node as text for people reading a plan: inputs by name,
 * arithmetic written as arithmetic, the rest as calls; cut short when long. */
#include <stdio.h>
#include <string.h>

#include "support/buf.h"
#include "compiler/lower.h"
#include "compiler/passes.h"

enum { MAX_TEXT = 240 };

static void expr(const surg_program *p, buf *b, cg_id id, int depth);

static void args(const surg_program *p, buf *b, const cg_node *n, int depth)
{
    for (uint32_t k = 0; k < n->n_in; k++) {
        buf_puts(b, k ? ", " : "");
        expr(p, b, n->in[k], depth + 1);
    }
}

static void init_text(buf *b, const cg_init *i)
{
    if (i->kind == INIT_VALUE) {
        buf_puts(b, "fill ");
        buf_double(b, i->p[0]);
        return;
    }
    buf_printf(b, "%s(", cg_init_name(i->kind));
    for (int k = 0; k < lw_init_n_params(i->kind); k++) {
        buf_puts(b, k ? ", " : "");
        buf_double(b, i->p[k]);
    }
    buf_printf(b, ") seed %llu", (unsigned long long)i->seed);
    if (cg_init_fan_based(i->kind))
        buf_printf(b, ", fan_in %llu, fan_out %llu", (unsigned long long)i->fan_in,
                   (unsigned long long)i->fan_out);
}

static void expr(const surg_program *p, buf *b, cg_id id, int depth)
{
    const cg_node *n = cg_get(&p->g, id);
    if (b->len > MAX_TEXT || depth > 32) {
        buf_puts(b, "...");
        return;
    }
    static const char *const infix[] = {[OP_ADD] = "+", [OP_SUB] = "-", [OP_MUL] = "*",
                                        [OP_DIV] = "/", [OP_LT] = "<", [OP_LE] = "<=",
                                        [OP_GT] = ">", [OP_GE] = ">=", [OP_EQ] = "==",
                                        [OP_NE] = "!=", [OP_MATMUL] = "@"};
    switch (n->op) {
    case OP_INPUT: buf_puts(b, surg_ckpt_tensor(p->input, n->a.input)->name); return;
    case OP_CONST: pg_value_text(b, n); return;
    case OP_INIT: init_text(b, n->a.init); return;
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE:
    case OP_EQ:
    case OP_NE:
    case OP_MATMUL:
        buf_putc(b, '(');
        expr(p, b, n->in[0], depth + 1);
        buf_printf(b, " %s ", infix[n->op]);
        expr(p, b, n->in[1], depth + 1);
        buf_putc(b, ')');
        return;
    case OP_NEG:
        buf_putc(b, '-');
        expr(p, b, n->in[0], depth + 1);
        return;
    case OP_BROADCAST: /* as written: the stretching is implicit */
        expr(p, b, n->in[0], depth);
        return;
    case OP_CAST:
        buf_puts(b, "cast(");
        expr(p, b, n->in[0], depth + 1);
        buf_printf(b, ", %s)", surg_dtype_recipe_name(n->dtype));
        return;
    default:
        buf_printf(b, "%s(", cg_op_name(n->op));
        args(p, b, n, depth);
        if (n->op == OP_SLICE)
            buf_printf(b, ", axis %u, %llu:%llu", n->a.slice.axis,
                       (unsigned long long)n->a.slice.start,
                       (unsigned long long)(n->a.slice.start + n->a.slice.len));
        else if (n->op == OP_CONCAT || n->op == OP_STACK)
            buf_printf(b, ", axis %u", n->a.axis);
        else if (n->op == OP_REPEAT)
            buf_printf(b, ", %llu, axis %u", (unsigned long long)n->a.repeat.n, n->a.repeat.axis);
        else if (n->op == OP_PAD)
            buf_printf(b, ", axis %u, %llu before, %llu after", n->a.pad.axis,
                       (unsigned long long)n->a.pad.before, (unsigned long long)n->a.pad.after);
        else if (n->op == OP_TOPK)
            buf_printf(b, ", %llu of %llu", (unsigned long long)n->a.topk.k,
                       (unsigned long long)cg_get(&p->g, n->in[0])->nelems);
        else if (n->op == OP_BERNOULLI) {
            buf_double(b, n->a.bern.p);
            buf_printf(b, ", seed %llu", (unsigned long long)n->a.bern.seed);
        }
        else if (cg_reduces_axis(n))
            buf_printf(b, ", axis=%u%s", n->a.reduce.axis,
                       n->a.reduce.keepdims ? ", keepdims=true" : "");
        buf_putc(b, ')');
    }
}

char *pl_describe(const surg_program *p, arena *ar, cg_id node)
{
    buf b;
    buf_init(&b);
    expr(p, &b, node, 0);
    char *s = b.failed ? NULL : ar_strdup(ar, b.data ? b.data : "");
    buf_free(&b);
    return s;
}
