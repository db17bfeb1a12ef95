/* plan_digest.c: a plan's digest (surg_plan_digest), what the files of one
 * sharded output share and the parts of an MPI run compare. It covers what
 * decides the output's bytes, and nothing that differs between machines
 * running the same plan: no path, pointer, thread count or source place. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/checkpoint.h"
#include "runtime/outpath.h"
#include "runtime/plan.h"

/* Two 64-bit lanes, each a multiply-xor over the words fed in, mixed at
 * the end: a check that two plans are one, not a defence against forgery. */
typedef struct digest {
    uint64_t a, b;
} digest;

static void feed(digest *d, uint64_t w)
{
    d->a = (d->a ^ w) * 0x100000001b3ull;
    d->a ^= d->a >> 29;
    d->b = (d->b ^ (w + 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
    d->b ^= d->b >> 32;
}

static void feed_f64(digest *d, double v)
{
    uint64_t w;
    memcpy(&w, &v, sizeof w);
    feed(d, w);
}

/* Its length first, so "ab"+"c" and "a"+"bc" differ. */
static void feed_str(digest *d, const char *s)
{
    size_t n = s ? strlen(s) : SIZE_MAX;
    feed(d, n);
    for (size_t i = 0; s && i < n; i += 8) {
        uint64_t w = 0;
        memcpy(&w, s + i, n - i < 8 ? n - i : 8);
        feed(d, w);
    }
}

static void feed_shape(digest *d, uint32_t rank, const uint64_t *shape)
{
    feed(d, rank);
    for (uint32_t i = 0; i < rank; i++)
        feed(d, shape[i]);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* An input tensor by what it is, not where. */
static void feed_input(digest *d, const surg_ckpt *ck, size_t i)
{
    const surg_tensor_info *t = &ck->tensors[i];
    feed_str(d, t->name);
    feed(d, t->dtype);
    feed_shape(d, t->rank, t->shape);
}

/* What a node does beyond its op, dtype and shape: its attributes. Every
 * op is listed, so a new one does not compile until it says what it has. */
static void feed_attrs(digest *d, const surg_plan *pl, const cg_node *n)
{
    switch (n->op) {
    case OP_INPUT: feed_input(d, pl->input, n->a.input); break;
    case OP_CONST: feed_f64(d, n->a.value); break;
    case OP_INIT:
        feed(d, n->a.init->kind);
        feed_f64(d, n->a.init->p[0]);
        feed_f64(d, n->a.init->p[1]);
        feed(d, n->a.init->seed);
        feed_str(d, n->a.init->key);
        feed(d, n->a.init->fan_in);
        feed(d, n->a.init->fan_out);
        break;
    case OP_TRANSPOSE:
        for (uint32_t i = 0; i < n->rank; i++)
            feed(d, n->a.perm[i]);
        break;
    case OP_CONCAT:
    case OP_STACK: feed(d, n->a.axis); break;
    case OP_REPEAT:
        feed(d, n->a.repeat.axis);
        feed(d, n->a.repeat.n);
        break;
    case OP_PAD:
        feed(d, n->a.pad.axis);
        feed(d, n->a.pad.before);
        feed(d, n->a.pad.after);
        break;
    case OP_BERNOULLI:
        feed_f64(d, n->a.bern.p);
        feed(d, n->a.bern.seed);
        feed_str(d, n->a.bern.key);
        feed(d, n->a.bern.index);
        break;
    case OP_TOPK:
        feed_f64(d, n->a.topk.fraction);
        feed(d, n->a.topk.k);
        break;
    case OP_SLICE:
        feed(d, n->a.slice.axis);
        feed(d, n->a.slice.start);
        feed(d, n->a.slice.len);
        feed(d, n->a.slice.squeeze);
        break;
    case OP_NORM:
    case OP_MEAN:
    case OP_STD:
    case OP_MIN:
    case OP_MAX:
    case OP_SUM:
        feed(d, n->a.reduce.over);
        feed(d, n->a.reduce.keepdims);
        feed(d, n->a.reduce.axis);
        feed(d, n->a.reduce.outer);
        feed(d, n->a.reduce.len);
        feed(d, n->a.reduce.inner);
        break;
    case OP_MATMUL:
        feed(d, n->a.matmul.m);
        feed(d, n->a.matmul.k);
        feed(d, n->a.matmul.n);
        feed(d, n->a.matmul.vec_left);
        feed(d, n->a.matmul.vec_right);
        break;
    case OP_NEG: case OP_ABS: case OP_SQRT: case OP_EXP: case OP_LOG: case OP_TANH:
    case OP_SIGN: case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_CLIP:
    case OP_SIN: case OP_COS: case OP_ACOS: case OP_POW: case OP_MINIMUM: case OP_MAXIMUM:
    case OP_LT: case OP_LE: case OP_GT: case OP_GE: case OP_EQ: case OP_NE: case OP_WHERE:
    case OP_CAST: case OP_FULL_LIKE: case OP_RESHAPE: case OP_BROADCAST:
    case OP_COUNT:
        break;
    }
}

/* Each node the output uses, in id order (operands come first), as the
 * digest of what it does and of its operands' digests: a node shared by
 * many tensors is gone over once. */
static digest *node_digests(const surg_plan *pl)
{
    uint32_t n = pl->n_nodes;
    uint8_t *live = calloc(n ? n : 1, 1);
    digest *h = calloc(n ? n : 1, sizeof *h);
    if (!live || !h) {
        free(live);
        free(h);
        return NULL;
    }
    for (size_t t = 0; t < pl->n; t++)
        if (pl->t[t].kind != PL_COPY)
            live[pl->t[t].node] = 1;
    for (uint32_t id = n; id-- > 0;)
        for (uint32_t i = 0; live[id] && i < pl->nodes[id].n_in; i++)
            live[pl->nodes[id].in[i]] = 1;
    for (uint32_t id = 0; id < n; id++) {
        const cg_node *x = &pl->nodes[id];
        if (!live[id])
            continue;
        digest d = {0x6a09e667f3bcc908ull, 0xbb67ae8584caa73bull};
        feed(&d, x->op);
        feed(&d, x->dtype);
        feed_shape(&d, x->rank, x->shape);
        feed_attrs(&d, pl, x);
        feed(&d, x->n_in);
        for (uint32_t i = 0; i < x->n_in; i++) {
            feed(&d, h[x->in[i]].a);
            feed(&d, h[x->in[i]].b);
        }
        h[id] = d;
    }
    free(live);
    return h;
}

surg_status surg_plan_digest(const surg_plan *pl, uint64_t max_shard_size,
                             char out[SURG_DIGEST_CHARS + 1])
{
    digest *nodes = node_digests(pl);
    if (!nodes)
        return SURG_ENOMEM;
    digest d = {0x3c6ef372fe94f82bull, 0xa54ff53a5f1d36f1ull};
    feed_str(&d, "surg plan 1");
    feed(&d, max_shard_size);
    feed(&d, pl->n);
    for (size_t t = 0; t < pl->n; t++) {
        const pl_tensor *x = &pl->t[t];
        feed_str(&d, x->name);
        feed(&d, x->dtype);
        feed_shape(&d, x->rank, x->shape);
        feed(&d, x->kind);
        if (x->kind != PL_COPY) {
            feed(&d, nodes[x->node].a);
            feed(&d, nodes[x->node].b);
            continue;
        }
        feed(&d, x->n_segs);
        for (size_t s = 0; s < x->n_segs; s++) {
            feed_input(&d, pl->input, x->segs[s].input);
            feed(&d, x->segs[s].offset);
            feed(&d, x->segs[s].len);
        }
    }
    free(nodes);
    /* The metadata as written (the marks of sharded files are the writer's). */
    feed(&d, pl_drops_format(&pl->rec));
    for (size_t i = 0; i < pl->n_meta; i++) {
        if (strcmp(pl->meta[i].key, OUTP_MARK_KEY) == 0 ||
            strcmp(pl->meta[i].key, OUTP_PLAN_KEY) == 0)
            continue;
        feed_str(&d, pl->meta[i].key);
        feed_str(&d, pl->meta[i].value);
    }
    snprintf(out, SURG_DIGEST_CHARS + 1, "%016llx%016llx", (unsigned long long)mix(d.a),
             (unsigned long long)mix(d.b ^ d.a));
    return SURG_OK;
}
