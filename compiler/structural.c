/* structural.c: the structural moves: split and unstack cut a tensor into
 * slices, concat and stack join a group of tensors into one; a mirrored
 * parameter's optimizer slots follow it through the move. */
#include <stdlib.h>
#include <string.h>

#include "compiler/mirror.h"
#include "support/natural.h"
#include "compiler/statements.h"

/* A statement makes at most this many tensors (unstack). */
#define MAX_NEW_TENSORS (1u << 24)

/* An axis below `limit` (a tensor's rank; one more for stack). */
static bool axis_of(lw *L, const ast_number *n, uint32_t limit, const char *name, uint32_t *out)
{
    int64_t v;
    if (!lw_integer(L, n, "an axis", 0, INT64_MAX, &v))
        return false;
    if ((uint64_t)v >= limit) {
        lw_error(L, n->span, "axis", NULL, 0,
                 limit ? "axis %lld is out of range for \"%s\": the axes here are 0 to %u"
                       : "axis %lld is out of range for \"%s\", a scalar",
                 (long long)v, name, limit - 1);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

static cg_id slice(lw *L, cg_id src, uint32_t axis, uint64_t start, uint64_t len, bool squeeze,
                   src_span at)
{
    const cg_node *x = cg_get(&L->g, src);
    uint64_t shape[SURG_MAX_RANK];
    uint32_t r = 0;
    for (uint32_t i = 0; i < x->rank; i++)
        if (i != axis)
            shape[r++] = x->shape[i];
        else if (!squeeze)
            shape[r++] = len;
    cg_id *in = ar_alloc(L->ar, sizeof *in);
    if (!in)
        return L->nomem = true, CG_NONE;
    *in = src;
    cg_node n = {.op = OP_SLICE, .dtype = x->dtype, .rank = r, .in = in, .n_in = 1,
                 .origin = at};
    n.a.slice.axis = axis;
    n.a.slice.start = start;
    n.a.slice.len = len;
    n.a.slice.squeeze = squeeze;
    return lw_node(L, n, shape);
}

/* How split and unstack cut a tensor along an axis: part i is len[i] long
 * and starts where the part before it ends; with len NULL each part is one
 * element and the axis goes (unstack). */
typedef struct cut {
    uint32_t axis;
    size_t n;
    const uint64_t *len;
} cut;

/* Part i of `src`, which begins at *start; moves *start past it. */
static cg_id cut_part(lw *L, const ast_stmt *s, cg_id src, const cut *how, size_t i,
                      uint64_t *start)
{
    uint64_t len = how->len ? how->len[i] : 1;
    cg_id v = slice(L, src, how->axis, *start, len, !how->len, s->span);
    *start += len;
    return v;
}

/* Adafactor's row and column factors average over axes a structural move
 * may cut or join: they are not followed. */
static void factored_error(lw *L, const ast_stmt *s, const char *name)
{
    lw_error(L, s->span, "mirror-factored", NULL, 0,
             "the factored second moments of \"%s\" cannot follow %s: they average over "
             "the axes a factored parameter has (drop the parameter and create it anew, "
             "or %s it where it is not factored)",
             name, ast_stmt_keyword(s->kind), ast_stmt_keyword(s->kind));
}

/* The optimizer slots of the match `m`, if it is a mirrored parameter,
 * follow it into `parts` (its parts, as named): each slot (a tied name's:
 * its stored tensor's) is cut the same way, into the parts' slots, added to
 * out[*n_out...]. */
static void cut_slots(lw *L, const ast_stmt *s, change *c, const lw_match *m, const cut *how,
                      const named *parts, named *out, size_t *n_out)
{
    const lw_mirror *mi = mr_find(L, m->name);
    for (size_t q = 0; mi && q < mi->n_slots; q++) {
        const char *from;
        mr_form form = mr_form_of(L, mi, q, m->node);
        for (size_t i = 0; i < how->n && form != MR_FACTOR; i++)
            if (mr_form_of(L, mi, q, parts[i].node) != form)
                form = MR_FACTOR;
        if (form == MR_FACTOR) {
            factored_error(L, s, m->name);
            return;
        }
        cg_id slot = mr_take_slot(L, c, mi, q, m, &from, s->span);
        if (slot == CG_NONE)
            continue;
        uint64_t start = 0;
        for (size_t i = 0; i < how->n; i++) {
            const char *part = parts[i].name;
            if (mr_find(L, part) != mi) {
                lw_error(L, s->targets->span, "mirror-move", NULL, 0,
                         "\"%s\" would leave the mirrored tree \"%s\", orphaning its "
                         "optimizer slots",
                         part, mi->params);
                return; /* said once, not once per slot */
            }
            /* a [1] placeholder is not cut: each part has one alike */
            cg_id v = form == MR_FULL ? cut_part(L, s, slot, how, i, &start) : slot;
            out[(*n_out)++] = (named){mr_slot_name(L, mi, q, part), from, s->targets->span, v,
                                      NULL};
        }
    }
}

void lw_split(lw *L, const ast_stmt *s)
{
    lw_stmt o;
    if (!lw_stmt_open(L, s, NULL, 0, false, &o))
        return;
    size_t k = 0, n_sizes = 0;
    for (const ast_string *t = s->targets; t; t = t->next)
        k++;
    for (const ast_number *z = s->sizes; z; z = z->next)
        n_sizes++;
    gl_template *tt = ar_array(L->ar, k, sizeof *tt);
    named *names = calloc(o.ms.n * k * (1 + mr_max_slots(L)) + 1, sizeof *names);
    uint64_t *lens = ar_array(L->ar, k, sizeof *lens);
    size_t n_named = 0, j = 0;
    for (size_t i = 0; i < o.ms.n; i++)
        change_remove(&o.c, o.ms.m[i].entry);
    for (const ast_string *t = s->targets; tt && t; t = t->next, j++)
        if (!lw_template(L, t, &o.ms.pat, false, &tt[j]))
            break;
    if (n_sizes && n_sizes != k)
        lw_error(L, s->sizes->span, "split-sizes", NULL, 0,
                 "%zu sizes for %zu parts: give one size per part", n_sizes, k);
    for (size_t i = 0; names && tt && lens && i < o.ms.n && L->errors == o.before; i++) {
        const lw_match *m = &o.ms.m[i];
        const cg_node *x = cg_get(&L->g, m->node);
        uint32_t axis;
        if (!axis_of(L, s->axis, x->rank, m->name, &axis))
            break;
        uint64_t dim = x->shape[axis], total = 0;
        j = 0;
        for (const ast_number *z = s->sizes; z; z = z->next, j++) {
            int64_t v;
            if (!lw_integer(L, z, "a size", 0, INT64_MAX, &v))
                break;
            lens[j] = (uint64_t)v;
            if (__builtin_add_overflow(total, (uint64_t)v, &total)) {
                lw_error(L, z->span, "split-sizes", NULL, 0, "the sizes add up past 2^64");
                break;
            }
        }
        if (L->errors != o.before)
            break;
        if (!n_sizes && dim % k) {
            lw_error(L, s->axis->span, "split-parts", NULL, 0,
                     "axis %u of \"%s\" has %llu elements, which do not split into %zu equal parts",
                     axis, m->name, (unsigned long long)dim, k);
            break;
        }
        if (n_sizes && total != dim) {
            lw_error(L, s->sizes->span, "split-sizes", NULL, 0,
                     "the sizes add up to %llu, but axis %u of \"%s\" has %llu elements",
                     (unsigned long long)total, axis, m->name, (unsigned long long)dim);
            break;
        }
        for (j = 0; !n_sizes && j < k; j++)
            lens[j] = dim / k;
        cut how = {axis, k, lens};
        size_t first = n_named;
        uint64_t start = 0;
        const ast_string *t = s->targets;
        for (j = 0; j < k; j++, t = t->next) {
            const char *part = lw_expand(L, &tt[j], t->span, m, 0);
            if (!part)
                break;
            names[n_named++] =
                (named){part, m->name, t->span, cut_part(L, s, m->node, &how, j, &start), NULL};
        }
        if (j < k)
            break; /* a name not made */
        cut_slots(L, s, &o.c, m, &how, names + first, names, &n_named);
    }
    if (L->errors == o.before && names)
        change_add_names(L, &o.c, names, n_named, "split");
    L->nomem |= !names || !tt || !lens;
    free(names);
    lw_stmt_close(L, &o);
}

/* concat and stack: members are grouped by the name the template gives
 * them, and ordered by the captures the template does not use: the order of
 * the alternatives for {..}, natural order otherwise. */
typedef struct order_ctx {
    const gl_pattern *pat;
    uint64_t used;
} order_ctx;

typedef struct member {
    const char *target;
    const lw_match *m;
    const order_ctx *o; /* for the comparison, which qsort gives no context */
} member;

static int alt_index(const gl_tok *t, const char *s, uint32_t len)
{
    for (uint32_t a = 0; a < t->n_alts; a++)
        if (t->alt_lens[a] == len && memcmp(t->alts[a], s, len) == 0)
            return (int)a;
    return -1;
}

static int member_cmp(const void *pa, const void *pb)
{
    const member *x = pa, *y = pb;
    const order_ctx *o = x->o;
    int c = strcmp(x->target, y->target);
    if (c)
        return c;
    for (uint32_t ti = 0; ti < o->pat->n_toks; ti++) {
        const gl_tok *t = &o->pat->toks[ti];
        if (!t->capture || (t->capture < 64 && (o->used >> t->capture) & 1))
            continue;
        gl_span a = x->m->caps[t->capture], b = y->m->caps[t->capture];
        const char *sa = x->m->name + a.start, *sb = y->m->name + b.start;
        if (t->kind == GL_ALT)
            c = alt_index(t, sa, a.end - a.start) - alt_index(t, sb, b.end - b.start);
        else
            c = natural_cmpn(sa, a.end - a.start, sb, b.end - b.start);
        if (c)
            return c;
    }
    return strcmp(x->m->name, y->m->name);
}

/* Members of a group agree in dtype and in every axis but the concat axis
 * (all axes for stack). */
static bool check_members(lw *L, const ast_stmt *s, const member *v, size_t n, uint32_t axis,
                          bool stack)
{
    const cg_node *first = cg_get(&L->g, v[0].m->node);
    for (size_t i = 1; i < n; i++) {
        const cg_node *x = cg_get(&L->g, v[i].m->node);
        bool ok = x->dtype == first->dtype && x->rank == first->rank;
        for (uint32_t d = 0; ok && d < x->rank; d++)
            ok = x->shape[d] == first->shape[d] || (!stack && d == axis);
        if (!ok) {
            lw_error(L, s->span, "group-members", NULL, 0,
                     "%s \"%s\": \"%s\" is %s but \"%s\" is %s (members must agree in dtype and "
                     "in %s)",
                     stack ? "stack" : "concat", v[0].target, v[0].m->name, lw_type(first, 0),
                     v[i].m->name, lw_type(x, 1), stack ? "every axis" : "every other axis");
            return false;
        }
    }
    return true;
}

/* Concatenate or stack the nodes `in` (their shapes already checked). */
static cg_id join(lw *L, const ast_stmt *s, const cg_id *ids, size_t n, uint32_t axis, bool stack)
{
    const cg_node *first = cg_get(&L->g, ids[0]);
    uint64_t shape[SURG_MAX_RANK + 1];
    uint32_t r = 0;
    for (uint32_t d = 0; d <= first->rank; d++) {
        if (stack && d == axis)
            shape[r++] = n;
        if (d < first->rank)
            shape[r++] = first->shape[d];
    }
    if (!stack) {
        shape[axis] = 0;
        for (size_t i = 0; i < n; i++)
            if (__builtin_add_overflow(shape[axis], cg_get(&L->g, ids[i])->shape[axis],
                                       &shape[axis])) {
                lw_error(L, s->span, "type-size", NULL, 0, "the result would be too large");
                return CG_NONE;
            }
    }
    cg_id *in = ar_array(L->ar, n, sizeof *in);
    if (!in)
        return L->nomem = true, CG_NONE;
    memcpy(in, ids, n * sizeof *in);
    cg_node node = {.op = stack ? OP_STACK : OP_CONCAT, .dtype = first->dtype, .rank = r,
                    .in = in, .n_in = (uint32_t)n, .origin = s->span};
    node.a.axis = axis;
    return lw_node(L, node, shape);
}

/* A group of mirrored parameters joins into one: each slot joins the same
 * way, into the result's slot. `ids` is scratch room for n nodes. */
static void join_slots(lw *L, const ast_stmt *s, change *c, const member *v, size_t n,
                       uint32_t axis, bool stack, cg_id result, cg_id *ids, named *out,
                       size_t *n_out)
{
    const lw_mirror *mi = mr_find(L, v[0].m->name);
    bool all = mi != NULL, none = mi == NULL;
    for (size_t i = 1; i < n; i++) {
        bool in = mr_find(L, v[i].m->name) == mi && mi;
        all &= in;
        none &= !mr_find(L, v[i].m->name);
    }
    if (none)
        return;
    if (!all || mr_find(L, v[0].target) != mi) {
        lw_error(L, s->span, "mirror-move", NULL, 0,
                 "%s \"%s\" mixes mirrored parameters with other tensors: their optimizer "
                 "slots could not follow",
                 stack ? "stack" : "concat", v[0].target);
        return;
    }
    for (size_t q = 0; q < mi->n_slots; q++) {
        mr_form form = mr_form_of(L, mi, q, result);
        for (size_t i = 0; i < n && form != MR_FACTOR; i++)
            if (mr_form_of(L, mi, q, v[i].m->node) != form)
                form = MR_FACTOR;
        if (form == MR_FACTOR) {
            factored_error(L, s, v[0].target);
            return;
        }
        size_t i;
        for (i = 0; i < n; i++) {
            const char *from;
            if ((ids[i] = mr_take_slot(L, c, mi, q, v[i].m, &from, s->span)) == CG_NONE)
                break;
        }
        /* [1] placeholders are not joined: the result has one alike */
        if (i == n)
            out[(*n_out)++] = (named){mr_slot_name(L, mi, q, v[0].target),
                                      mr_slot_name(L, mi, q, v[0].m->name), s->targets->span,
                                      form == MR_FULL ? join(L, s, ids, n, axis, stack) : ids[0],
                                      NULL};
    }
}

static void lower_join(lw *L, const ast_stmt *s, bool stack)
{
    lw_stmt o;
    if (!lw_stmt_open(L, s, s->targets, 1, false, &o))
        return;
    member *v = calloc(o.ms.n ? o.ms.n : 1, sizeof *v);
    named *names = calloc(o.ms.n * (1 + mr_max_slots(L)) + 1, sizeof *names);
    cg_id *ids = calloc(o.ms.n ? o.ms.n : 1, sizeof *ids);
    order_ctx ord = {&o.ms.pat, o.t[0].used};
    size_t n_named = 0;
    for (size_t i = 0; v && i < o.ms.n; i++) {
        const lw_match *m = &o.ms.m[i];
        v[i] = (member){lw_expand(L, &o.t[0], s->targets->span, m, 0), m, &ord};
        change_remove(&o.c, m->entry);
    }
    if (v && L->errors == o.before && !L->nomem) /* every name made */
        qsort(v, o.ms.n, sizeof *v, member_cmp);
    for (size_t i = 0; v && names && i < o.ms.n && L->errors == o.before;) {
        size_t j = i;
        while (j < o.ms.n && strcmp(v[j].target, v[i].target) == 0)
            j++;
        const cg_node *first = cg_get(&L->g, v[i].m->node);
        uint32_t axis;
        if (stack && first->rank >= SURG_MAX_RANK) {
            lw_error(L, s->span, "type-rank", NULL, 0,
                     "stack would make more than %d dimensions", SURG_MAX_RANK);
            break;
        }
        if (ids && axis_of(L, s->axis, first->rank + stack, v[i].m->name, &axis) &&
            check_members(L, s, v + i, j - i, axis, stack)) {
            for (size_t q = i; q < j; q++)
                ids[q - i] = v[q].m->node;
            cg_id joined = join(L, s, ids, j - i, axis, stack);
            names[n_named++] = (named){v[i].target, v[i].m->name, s->targets->span, joined, NULL};
            if (joined != CG_NONE)
                join_slots(L, s, &o.c, v + i, j - i, axis, stack, joined, ids, names, &n_named);
        }
        i = j;
    }
    if (L->errors == o.before && names)
        change_add_names(L, &o.c, names, n_named, stack ? "stack" : "concat");
    L->nomem |= !v || !names || !ids;
    free(v);
    free(names);
    free(ids);
    lw_stmt_close(L, &o);
}

void lw_concat(lw *L, const ast_stmt *s) { lower_join(L, s, false); }
void lw_stack(lw *L, const ast_stmt *s) { lower_join(L, s, true); }

void lw_unstack(lw *L, const ast_stmt *s)
{
    lw_stmt o;
    if (!lw_stmt_open(L, s, s->targets, 1, true, &o))
        return;
    if (!o.t[0].uses_index) {
        lw_error(L, s->targets->span, "unstack-index", NULL, 0,
                 "the template of unstack must use $i, the index along the axis");
        lw_stmt_close(L, &o);
        return;
    }
    /* Each unstacked element becomes a tensor: bound how many, before any
     * is made. */
    uint64_t total = 0;
    for (size_t i = 0; i < o.ms.n; i++) {
        const cg_node *x = cg_get(&L->g, o.ms.m[i].node);
        uint32_t axis;
        if (!axis_of(L, s->axis, x->rank, o.ms.m[i].name, &axis))
            break;
        if (__builtin_add_overflow(total, x->shape[axis], &total) || total > MAX_NEW_TENSORS) {
            lw_error(L, s->axis->span, "unstack-size", NULL, 0,
                     "unstack would make more than %u tensors", MAX_NEW_TENSORS);
            break;
        }
    }
    named *names = NULL;
    if (L->errors == o.before) {
        names = calloc(total * (1 + mr_max_slots(L)) + 1, sizeof *names);
        L->nomem |= !names;
    }
    size_t n_named = 0;
    for (size_t i = 0; i < o.ms.n; i++)
        change_remove(&o.c, o.ms.m[i].entry);
    for (size_t i = 0; names && i < o.ms.n && L->errors == o.before; i++) {
        const lw_match *m = &o.ms.m[i];
        const cg_node *x = cg_get(&L->g, m->node);
        uint32_t axis = (uint32_t)strtoul(s->axis->text, NULL, 10);
        uint64_t dim = x->shape[axis];
        cut how = {axis, dim, NULL};
        size_t first = n_named;
        uint64_t start = 0;
        for (uint64_t k = 0; k < dim; k++) {
            const char *part = lw_expand(L, &o.t[0], s->targets->span, m, k);
            if (!part)
                break;
            names[n_named++] = (named){part, m->name, s->targets->span,
                                       cut_part(L, s, m->node, &how, k, &start), NULL};
        }
        if (L->errors != o.before || L->nomem)
            break; /* a name not made */
        cut_slots(L, s, &o.c, m, &how, names + first, names, &n_named);
    }
    if (names)
        change_add_names(L, &o.c, names, n_named, "unstack");
    free(names);
    lw_stmt_close(L, &o);
}

