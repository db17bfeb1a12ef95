/* plan.c: a compiled program made into a plan (runtime/plan.h): the passes
 * run over it, the inputs to decode first, the records for the outputs'
 * metadata, and the plan's totals beside the naive way's. */
#include <stdlib.h>
#include <string.h>

#include "support/buf.h"
#include "compiler/passes.h"
#include "runtime/st_write.h"

/* The output header's size, in *n; false when out of memory. */
static bool header_bytes(const surg_program *p, const surg_meta_entry *meta, size_t n_meta,
                         bool no_format, uint64_t *n)
{
    stw_output o = {.tensors = p->out_info, .n = p->n_out, .meta = meta, .n_meta = n_meta,
                    .no_format = no_format};
    size_t *idx = malloc((p->n_out ? p->n_out : 1) * sizeof *idx);
    buf hdr;
    buf_init(&hdr);
    for (size_t i = 0; idx && i < p->n_out; i++)
        idx[i] = i;
    bool ok = idx && stw_header(&o, idx, p->n_out, &hdr) == SURG_OK;
    *n = ok ? hdr.len : 0;
    buf_free(&hdr);
    free(idx);
    return ok;
}

static uint64_t bytes(const cg_node *n) { return n->nelems * surg_dtype_bits(n->dtype) / 8; }

/* Inputs nobody reads and values nobody makes, for the report; the inputs
 * read whose bytes are not in place, for the executor to decode first. */
/* A mounted input's prefix and its place in the order given, to sort. */
typedef struct keyed {
    const char *prefix;
    size_t i;
} keyed;

static int by_prefix(const void *a, const void *b)
{
    return strcmp(((const keyed *)a)->prefix, ((const keyed *)b)->prefix);
}

/* Each input, with its tensors and those read (read[i] for tensor i of
 * the program's input). The inputs' tensors are runs of the whole table,
 * in order of their prefixes (runtime/ck_parts.c). */
static bool list_inputs(surg_plan *pl, const surg_program *p, const uint8_t *read)
{
    const char *prefix;
    const surg_ckpt *part;
    size_t n = 0;
    while (surg_ckpt_part_at(p->input, n, &prefix))
        n++;
    pl->inputs = ar_array(&pl->ar, n ? n : 1, sizeof *pl->inputs);
    keyed *k = malloc((n ? n : 1) * sizeof *k);
    if (!pl->inputs || !k) {
        free(k);
        return false;
    }
    for (size_t i = 0; (part = surg_ckpt_part_at(p->input, i, &prefix)) != NULL; i++) {
        pl->inputs[i] = (pl_input){.prefix = prefix, .path = surg_ckpt_path(part),
                                   .kind = surg_ckpt_kind_of(part), .n = surg_ckpt_count(part)};
        k[i] = (keyed){prefix, i};
    }
    pl->n_inputs = n;
    qsort(k, n, sizeof *k, by_prefix);
    size_t t = 0, total = surg_ckpt_count(p->input);
    for (size_t q = 0; q < n; q++) {
        pl_input *x = &pl->inputs[k[q].i];
        for (size_t j = 0; j < x->n && t < total; j++, t++) {
            uint64_t b = surg_ckpt_tensor(p->input, t)->nbytes;
            x->bytes += b;
            x->used += read[t];
            x->used_bytes += read[t] ? b : 0;
        }
    }
    free(k);
    return true;
}

static bool survey(surg_plan *pl, const surg_program *p, const uint8_t *live)
{
    const cg_graph *g = &p->g;
    size_t n_in = surg_ckpt_count(p->input);
    uint8_t *decode = calloc(n_in ? n_in : 1, 1), *read = calloc(n_in ? n_in : 1, 1);
    if (!decode || !read) {
        free(decode);
        free(read);
        return false;
    }
    for (cg_id id = 0; id < g->n; id++) {
        const cg_node *n = cg_get(g, id);
        if (live[id] && n->op == OP_INPUT)
            read[n->a.input] = 1;
        if (live[id] && n->op == OP_INPUT && surg_ckpt_decoded(p->input, n->a.input)) {
            pl->decoded_inputs++;
            pl->decoded_bytes += bytes(n);
            pl->n_decode += !decode[n->a.input];
            decode[n->a.input] = 1;
        }
        if (live[id] || n->op == OP_CONST)
            continue;
        if (n->op == OP_INPUT) {
            pl->dead_inputs++;
            pl->dead_input_bytes += bytes(n);
        } else {
            pl->dead_values++;
            pl->dead_value_bytes += bytes(n);
        }
    }
    pl->decode = ar_array(&pl->ar, pl->n_decode + 1, sizeof *pl->decode);
    for (size_t i = 0, k = 0; pl->decode && i < n_in; i++)
        if (decode[i])
            pl->decode[k++] = i;
    free(decode);
    bool ok = list_inputs(pl, p, read);
    free(read);
    return ok && pl->decode != NULL;
}

static void add_up(surg_plan *pl, const surg_program *p)
{
    pl_totals *t = &pl->plan;
    uint64_t work = 0, held = 0;
    for (size_t i = 0; i < pl->n; i++) {
        const pl_tensor *x = &pl->t[i];
        held = held + x->held < held ? UINT64_MAX : held + x->held;
        t->read += x->read;
        t->written += x->nbytes;
        switch (x->kind) {
        case PL_COPY: t->copied += x->nbytes; break;
        case PL_GATHER: t->gathered += x->nbytes; break;
        case PL_GENERATE: t->generated += x->nbytes; break;
        case PL_COMPUTE: t->computed += x->nbytes; break;
        }
        work = x->work > work ? x->work : work;
    }
    t->read += pl->decoded_bytes; /* decoding reads each such array once, whole */
    t->written += pl->header_bytes;
    /* Held values are all made before the output's chunks, and kept. */
    t->peak = pl->header_bytes + pl->threads * work;
    t->peak = t->peak + held < t->peak ? UINT64_MAX : t->peak + held;
    pl->naive = (pl_totals){
        .read = p->naive.read,
        .generated = p->naive.generated,
        .computed = p->naive.computed,
        .written = t->written,
        .peak = p->naive.peak,
    };
}

bool pl_scratch_init(pl_scratch *s, uint32_t n_nodes)
{
    size_t m = n_nodes ? n_nodes : 1;
    *s = (pl_scratch){.lo = malloc(m * sizeof *s->lo), .hi = malloc(m * sizeof *s->hi),
                      .above = calloc(m, sizeof *s->above), .seen = calloc(m, 1),
                      .order = malloc(m * sizeof *s->order)};
    if (s->lo && s->hi && s->above && s->seen && s->order)
        return true;
    pl_scratch_free(s);
    return false;
}

void pl_scratch_free(pl_scratch *s)
{
    free(s->lo);
    free(s->hi);
    free(s->above);
    free(s->seen);
    free(s->order);
    *s = (pl_scratch){0};
}

static surg_status build(surg_plan *pl, const surg_program *p)
{
    uint8_t *live = pl_live(&p->g, p->out, p->n_out);
    pl->t = ar_array(&pl->ar, p->n_out ? p->n_out : 1, sizeof *pl->t);
    bool ok = live && pl->t && survey(pl, p, live);
    free(live);
    if (!ok)
        return SURG_ENOMEM;
    pl->n = p->n_out;
    pl_scratch scratch;
    if (!pl_scratch_init(&scratch, p->g.n))
        return SURG_ENOMEM;
    surg_status st = SURG_OK;
    for (size_t i = 0; i < p->n_out && !st; i++) {
        const surg_tensor_info *o = &p->out_info[i];
        pl_tensor *t = &pl->t[i];
        *t = (pl_tensor){.name = o->name, .node = p->out[i].node, .dtype = o->dtype,
                         .rank = o->rank, .shape = o->shape, .nbytes = o->nbytes};
        int copy = pl_copy(p, &pl->ar, t, &scratch);
        if (copy < 0) {
            st = SURG_ENOMEM;
        } else if (copy && t->kind == PL_COPY) {
            t->work = PL_COPY_BUFFER;
            if (!(t->how = pl_describe(p, &pl->ar, t->node)))
                st = SURG_ENOMEM;
        } else {
            if (!copy)
                t->kind = cg_get(&p->g, t->node)->op == OP_INIT ? PL_GENERATE : PL_COMPUTE;
            if (!pl_fuse(p, &pl->ar, t, &scratch))
                st = SURG_ENOMEM;
        }
    }
    pl_scratch_free(&scratch);
    if (st)
        return st;
    surg_meta_entry *meta;
    size_t n_meta;
    st = pl_metadata(pl, "", &pl->ar, &meta, &n_meta);
    if (st)
        return st;
    pl->meta = meta;
    pl->n_meta = n_meta;
    if (!header_bytes(p, meta, n_meta, pl_drops_format(&pl->rec), &pl->header_bytes))
        return SURG_ENOMEM;
    add_up(pl, p);
    return SURG_OK;
}

surg_status surg_plan_build(const surg_program *p, unsigned threads, surg_plan **out)
{
    *out = NULL;
    surg_plan *pl = calloc(1, sizeof *pl);
    if (!pl)
        return SURG_ENOMEM;
    ar_init(&pl->ar);
    pl->input = p->input;
    pl->nodes = p->g.nodes;
    pl->n_nodes = p->g.n;
    pl->rec = pg_records(p);
    pl->threads = threads ? threads : 1;
    surg_status st = build(pl, p);
    if (st) {
        surg_plan_free(pl);
        return st;
    }
    *out = pl;
    return SURG_OK;
}

void surg_plan_free(surg_plan *pl)
{
    if (!pl)
        return;
    ar_free(&pl->ar);
    free(pl);
}
