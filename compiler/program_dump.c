/* program_dump.c: the op graph as text, for tests and debugging: the nodes
 * the outputs need, numbered in order, each with its type; then the outputs
 * and the tied names. */
#include <stdlib.h>
#include <string.h>

#include "support/buf.h"
#include "compiler/lower.h"
#include "compiler/program.h"

void pg_value_text(buf *b, const cg_node *n)
{
    bool single = n->dtype < SURG_DTYPE_COUNT && surg_dtype_bits(n->dtype) <= 32 &&
                  surg_dtype_kind_of(n->dtype) == SURG_KIND_FLOAT;
    if (single)
        buf_float(b, (float)n->a.value);
    else
        buf_double(b, n->a.value);
}

static void mark(const cg_graph *g, cg_id id, uint32_t *num)
{
    if (num[id])
        return;
    num[id] = 1;
    const cg_node *n = cg_get(g, id);
    for (uint32_t i = 0; i < n->n_in; i++)
        mark(g, n->in[i], num);
}

static void attrs(buf *b, const surg_program *p, const cg_node *n)
{
    switch (n->op) {
    case OP_INPUT:
        buf_printf(b, " \"%s\"", surg_ckpt_tensor(p->input, n->a.input)->name);
        break;
    case OP_CONST:
        buf_putc(b, ' ');
        pg_value_text(b, n);
        break;
    case OP_INIT: {
        const cg_init *i = n->a.init;
        buf_printf(b, " %s", cg_init_name(i->kind));
        if (i->kind == INIT_VALUE) {
            buf_putc(b, ' ');
            buf_double(b, i->p[0]);
        }
        else if (cg_init_random(i->kind)) {
            int np = lw_init_n_params(i->kind);
            buf_puts(b, "(");
            for (int k = 0; k < np; k++) {
                buf_puts(b, k ? ", " : "");
                buf_double(b, i->p[k]);
            }
            buf_printf(b, ") seed=%llu key=\"%s\"", (unsigned long long)i->seed, i->key);
        }
        if (cg_init_fan_based(i->kind))
            buf_printf(b, " fan_in=%llu fan_out=%llu", (unsigned long long)i->fan_in,
                       (unsigned long long)i->fan_out);
        break;
    }
    case OP_TRANSPOSE:
        buf_puts(b, " perm=");
        for (uint32_t i = 0; i < n->rank; i++)
            buf_printf(b, "%s%u", i ? "," : "", n->a.perm[i]);
        break;
    case OP_SLICE:
        buf_printf(b, " axis=%u start=%llu len=%llu%s", n->a.slice.axis,
                   (unsigned long long)n->a.slice.start, (unsigned long long)n->a.slice.len,
                   n->a.slice.squeeze ? " squeeze" : "");
        break;
    case OP_CONCAT:
    case OP_STACK: buf_printf(b, " axis=%u", n->a.axis); break;
    case OP_REPEAT:
        buf_printf(b, " axis=%u n=%llu", n->a.repeat.axis, (unsigned long long)n->a.repeat.n);
        break;
    case OP_PAD:
        buf_printf(b, " axis=%u before=%llu after=%llu", n->a.pad.axis,
                   (unsigned long long)n->a.pad.before, (unsigned long long)n->a.pad.after);
        break;
    case OP_TOPK:
        buf_puts(b, " fraction=");
        buf_double(b, n->a.topk.fraction);
        buf_printf(b, " k=%llu", (unsigned long long)n->a.topk.k);
        break;
    case OP_BERNOULLI:
        buf_puts(b, " p=");
        buf_double(b, n->a.bern.p);
        buf_printf(b, " seed=%llu key=\"%s\" index=%u", (unsigned long long)n->a.bern.seed,
                   n->a.bern.key, n->a.bern.index);
        break;
    case OP_MATMUL:
        buf_printf(b, " m=%llu k=%llu n=%llu", (unsigned long long)n->a.matmul.m,
                   (unsigned long long)n->a.matmul.k, (unsigned long long)n->a.matmul.n);
        break;
    default:
        if (cg_reduces_axis(n))
            buf_printf(b, " axis=%u%s", n->a.reduce.axis, n->a.reduce.keepdims ? " keepdims" : "");
        break;
    }
}

char *surg_program_dump(const surg_program *p)
{
    const cg_graph *g = &p->g;
    uint32_t *num = calloc(g->n ? g->n : 1, sizeof *num);
    if (!num)
        return NULL;
    for (size_t i = 0; i < p->n_out; i++)
        mark(g, p->out[i].node, num);
    buf b;
    buf_init(&b);
    uint32_t k = 0;
    for (uint32_t id = 0; id < g->n; id++) {
        if (!num[id])
            continue;
        num[id] = ++k; /* inputs always come before their users */
        const cg_node *n = cg_get(g, id);
        buf_printf(&b, "%%%u = %s", k, cg_op_name(n->op));
        attrs(&b, p, n);
        for (uint32_t i = 0; i < n->n_in; i++)
            buf_printf(&b, "%s%%%u", i ? ", " : " ", num[n->in[i]]);
        buf_puts(&b, " : ");
        lw_type_text(&b, n->dtype, n->rank, n->shape);
        buf_putc(&b, '\n');
    }
    for (size_t i = 0; i < p->n_out; i++)
        buf_printf(&b, "\"%s\" = %%%u\n", p->out[i].name, num[p->out[i].node]);
    for (size_t i = 0; i < p->n_alias; i++)
        buf_printf(&b, "\"%s\" -> \"%s\"\n", p->alias[i].key, p->alias[i].value);
    arena tmp;
    ar_init(&tmp);
    char *lora = NULL;
    pl_records rec = pg_records(p);
    if (!pl_records_json(&rec, "", false, &tmp, &lora))
        b.failed = true;
    if (lora)
        buf_printf(&b, "lora %s\n", lora);
    ar_free(&tmp);
    free(num);
    return buf_take(&b);
}
