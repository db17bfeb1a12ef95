/* pass_copy.c: outputs whose bytes are inputs' bytes. A renamed, tied or
 * untouched tensor, a no-op cast, a reshape, a slice or a concatenation that
 * keeps whole runs of bytes together: all are byte ranges of inputs, copied
 * as they are and never decoded. Layout moves that scatter bytes (a real
 * transpose) are strided copies: data moved, no arithmetic. */
#include <stdlib.h>
#include <string.h>

#include "compiler/passes.h"

/* Past these, a tensor is too scattered for ranges (a strided copy does
 * it): segments in its list, and steps (ranges of a node, runs extracted)
 * spent finding them, so a shared node or a long run of blocks costs a
 * bounded time. */
enum { MAX_SEGMENTS = 4096, MAX_DEPTH = 64, MAX_STEPS = 1 << 20 };

typedef struct segs {
    pl_segment *v;
    size_t n, cap;
    bool *nomem;     /* shared by every list of one pl_copy: set when out of memory */
    uint32_t *steps; /* shared too: the steps taken so far */
} segs;

static void segs_free(segs *s)
{
    free(s->v);
    *s = (segs){.nomem = s->nomem, .steps = s->steps};
}

static bool step(const segs *s)
{
    return ++*s->steps <= MAX_STEPS;
}

static bool push(segs *s, uint32_t input, uint64_t offset, uint64_t len)
{
    if (!len)
        return true;
    pl_segment *last = s->n ? &s->v[s->n - 1] : NULL;
    if (last && last->input == input && last->offset + last->len == offset) {
        last->len += len; /* adjacent: one range */
        return true;
    }
    if (s->n == MAX_SEGMENTS)
        return false; /* too scattered for ranges: a strided copy does it */
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4;
        pl_segment *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return *s->nomem = true, false;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (pl_segment){input, offset, len};
    return true;
}

/* Append the bytes [from, from + len) of the ranges `src` (in order). */
static bool extract(const segs *src, uint64_t from, uint64_t len, segs *out)
{
    if (!step(out))
        return false;
    uint64_t at = 0;
    for (size_t i = 0; i < src->n && len; i++) {
        const pl_segment *s = &src->v[i];
        if (from < at + s->len) {
            uint64_t skip = from - at, take = s->len - skip < len ? s->len - skip : len;
            if (!push(out, s->input, s->offset + skip, take))
                return false;
            from += take;
            len -= take;
        }
        at += s->len;
    }
    return len == 0;
}

static uint64_t bytes(const cg_node *n) { return n->nelems * surg_dtype_bits(n->dtype) / 8; }

/* Elements before `axis` (the outer blocks) and after it, in bits. */
static bool blocks(const cg_node *n, uint32_t axis, uint64_t *outer, uint64_t *inner_bits)
{
    *outer = 1;
    uint64_t inner = 1;
    for (uint32_t i = 0; i < axis; i++)
        *outer *= n->shape[i];
    for (uint32_t i = axis + 1; i < n->rank; i++)
        inner *= n->shape[i];
    *inner_bits = inner * surg_dtype_bits(n->dtype);
    return *inner_bits % 8 == 0; /* sub-byte elements: only whole bytes move */
}

static bool ranges(const surg_program *p, cg_id id, segs *out, int depth);

/* A slice keeps, of each outer block, one run of `len` rows. */
static bool slice_ranges(const surg_program *p, const cg_node *n, segs *out, int depth)
{
    const cg_node *in = cg_get(&p->g, n->in[0]);
    uint64_t outer, inner_bits;
    segs src = {.nomem = out->nomem, .steps = out->steps};
    bool ok = blocks(in, n->a.slice.axis, &outer, &inner_bits) && ranges(p, n->in[0], &src, depth);
    uint64_t row = inner_bits / 8, block = in->shape[n->a.slice.axis] * row;
    for (uint64_t o = 0; ok && o < outer; o++)
        ok = extract(&src, o * block + n->a.slice.start * row, n->a.slice.len * row, out);
    segs_free(&src);
    return ok;
}

/* A concat or stack takes, for each outer block, each part's block. */
static bool join_ranges(const surg_program *p, const cg_node *n, segs *out, int depth)
{
    uint64_t outer = 1;
    for (uint32_t i = 0; i < n->a.axis; i++)
        outer *= n->shape[i];
    segs *parts = calloc(n->n_in, sizeof *parts);
    bool ok = parts != NULL;
    *out->nomem |= !ok;
    for (uint32_t k = 0; ok && k < n->n_in; k++) {
        parts[k].nomem = out->nomem;
        parts[k].steps = out->steps;
        ok = ranges(p, n->in[k], &parts[k], depth);
    }
    for (uint64_t o = 0; ok && o < outer; o++)
        for (uint32_t k = 0; ok && k < n->n_in; k++) {
            uint64_t block = bytes(cg_get(&p->g, n->in[k])) / (outer ? outer : 1);
            ok = (bytes(cg_get(&p->g, n->in[k])) % (outer ? outer : 1)) == 0 &&
                 extract(&parts[k], o * block, block, out);
        }
    for (uint32_t k = 0; parts && k < n->n_in; k++)
        segs_free(&parts[k]);
    free(parts);
    return ok;
}

static bool identity_perm(const cg_node *n)
{
    /* Axes of size 1 can move without moving any byte. */
    uint32_t last = 0;
    bool first = true;
    for (uint32_t i = 0; i < n->rank; i++) {
        if (n->shape[i] == 1)
            continue;
        if (!first && n->a.perm[i] < last)
            return false;
        last = n->a.perm[i];
        first = false;
    }
    return true;
}

/* The byte ranges of inputs a node's bytes are, if they are. */
static bool ranges(const surg_program *p, cg_id id, segs *out, int depth)
{
    const cg_node *n = cg_get(&p->g, id);
    if (depth > MAX_DEPTH || !step(out))
        return false;
    switch (n->op) {
    case OP_INPUT: return push(out, (uint32_t)n->a.input, 0, bytes(n));
    case OP_CAST:
        return n->dtype == cg_get(&p->g, n->in[0])->dtype && ranges(p, n->in[0], out, depth + 1);
    case OP_RESHAPE: return ranges(p, n->in[0], out, depth + 1); /* C order is kept */
    case OP_TRANSPOSE: return identity_perm(n) && ranges(p, n->in[0], out, depth + 1);
    case OP_SLICE: return slice_ranges(p, n, out, depth + 1);
    case OP_CONCAT:
    case OP_STACK: return join_ranges(p, n, out, depth + 1);
    default: return false;
    }
}

static bool moves_bytes(const surg_program *p, const cg_node *n)
{
    if (n->op == OP_CAST)
        return n->dtype == cg_get(&p->g, n->in[0])->dtype;
    return n->op == OP_INPUT || cg_op_class(n->op) == CG_LAYOUT;
}

/* Only layout moves of inputs, with no arithmetic and no change of dtype?
 * Each node reached is looked at once, however many paths reach it. */
static bool layout_only(const surg_program *p, cg_id root, pl_scratch *s)
{
    uint32_t n = 0;
    bool ok = true;
    s->seen[root] = 1;
    s->order[n++] = root;
    for (uint32_t i = 0; ok && i < n; i++) {
        const cg_node *x = cg_get(&p->g, s->order[i]);
        ok = moves_bytes(p, x);
        for (uint32_t k = 0; ok && k < x->n_in; k++)
            if (!s->seen[x->in[k]]) {
                s->seen[x->in[k]] = 1;
                s->order[n++] = x->in[k];
            }
    }
    for (uint32_t i = 0; i < n; i++)
        s->seen[s->order[i]] = 0;
    return ok;
}

int pl_copy(const surg_program *p, arena *ar, pl_tensor *t, pl_scratch *scratch)
{
    bool nomem = false;
    uint32_t steps = 0;
    segs s = {.nomem = &nomem, .steps = &steps};
    if (ranges(p, t->node, &s, 0)) {
        t->kind = PL_COPY;
        t->segs = ar_array(ar, s.n ? s.n : 1, sizeof *t->segs);
        if (t->segs && s.n)
            memcpy(t->segs, s.v, s.n * sizeof *s.v);
        t->n_segs = s.n;
        segs_free(&s);
        return t->segs ? 1 : -1;
    }
    segs_free(&s);
    if (nomem) /* not "no ranges": the answer is unknown */
        return -1;
    if (layout_only(p, t->node, scratch)) {
        t->kind = PL_GATHER;
        return 1;
    }
    return 0;
}
