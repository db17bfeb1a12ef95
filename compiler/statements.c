/* statements.c: what each statement does to the abstract state (SPEC §3.3),
 * one function per kind. A statement either applies whole or, after an
 * error, not at all, so one mistake does not cascade into others. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "change.h"
#include "lower.h"
#include "mirror.h"
#include "natural.h"
#include "strsort.h"

/* A statement makes at most this many tensors (unstack, split). */
#define MAX_NEW_TENSORS (1u << 24)

/* ---- rename, drop, keep, tie ------------------------------------------ */

/* What most statements open with: the matches of the pattern, the target
 * templates (the first `n_templates` from `templates` on, which may use the
 * pattern's captures, and $i if `index`), and the change they build. */
typedef struct lw_stmt {
    unsigned before; /* L->errors when the statement began */
    lw_matches ms;
    gl_template t[2];
    change c;
} lw_stmt;

/* False: nothing to do (any error is reported, nothing is left to free). */
static bool lw_stmt_open(lw *L, const ast_stmt *s, const ast_string *templates,
                         size_t n_templates, bool index, lw_stmt *o)
{
    o->before = L->errors;
    bool ok = lw_match_pattern(L, s->patterns, &o->ms);
    for (size_t i = 0; ok && i < n_templates; i++, templates = templates->next)
        ok = lw_template(L, templates, &o->ms.pat, index, &o->t[i]);
    if (ok && change_init(L, &o->c))
        return true;
    lw_matches_free(&o->ms);
    return false;
}

/* Commit the change if the statement reported no error; free. */
static void lw_stmt_close(lw *L, lw_stmt *o)
{
    change_done(L, &o->c, o->before);
    lw_matches_free(&o->ms);
}

static void lower_rename(lw *L, const ast_stmt *s)
{
    lw_stmt o;
    if (!lw_stmt_open(L, s, s->targets, 1, false, &o))
        return;
    size_t count = o.ms.n;
    named *n = calloc(o.ms.n * (1 + mr_max_slots(L)) + 1, sizeof *n);
    L->nomem |= !n;
    for (size_t i = 0; n && i < o.ms.n; i++) {
        const lw_match *m = &o.ms.m[i];
        n[i] = (named){gl_expand(L->ar, &o.t[0], m->name, m->caps, 0), m->name,
                       s->targets->span, m->tied ? CG_NONE : m->node, m->tied};
        change_remove(&o.c, m->entry);
    }
    /* Once every match is marked; a tied name has no slots of its own. */
    for (size_t i = 0; n && i < o.ms.n; i++)
        if (!o.ms.m[i].tied)
            mr_moved(L, &o.c, n, &count, n[i].source, n[i].name, s->targets->span);
    if (n)
        add_new_names(L, &o.c, n, count, "rename");
    for (size_t i = 0; n && i < count; i++) /* tied names and records follow */
        change_move(L, &o.c, n[i].source, n[i].name);
    free(n);
    lw_stmt_close(L, &o);
}

static void lower_drop(lw *L, const ast_stmt *s)
{
    lw_stmt o;
    if (!lw_stmt_open(L, s, NULL, 0, false, &o))
        return;
    for (size_t i = 0; i < o.ms.n; i++)
        change_remove(&o.c, o.ms.m[i].entry);
    for (size_t i = 0; i < o.ms.n; i++)
        mr_dropped(L, &o.c, o.ms.m[i].name);
    lw_stmt_close(L, &o);
}

static void lower_keep(lw *L, const ast_stmt *s)
{
    unsigned before = L->errors;
    change c;
    if (!change_init(L, &c))
        return;
    uint8_t *kept = calloc(L->st.n ? L->st.n : 1, 1);
    for (const ast_string *p = s->patterns; kept && p; p = p->next) {
        lw_matches ms;
        if (lw_match_pattern(L, p, &ms))
            for (size_t i = 0; i < ms.n; i++)
                kept[ms.m[i].entry] = 1;
        lw_matches_free(&ms);
    }
    /* A kept parameter keeps its slots. */
    for (size_t i = 0; kept && i < L->st.n; i++) {
        const lw_mirror *mi = kept[i] ? mr_find(L, L->st.e[i].name) : NULL;
        for (size_t k = 0; mi && k < mi->n_slots; k++) {
            size_t e = mr_slot_entry(L, mi, k, L->st.e[i].name);
            if (e != SV_NONE)
                kept[e] = 1;
        }
    }
    for (size_t i = 0; kept && i < L->st.n; i++)
        if (!kept[i])
            change_remove(&c, i);
    L->nomem |= !kept;
    free(kept);
    change_done(L, &c, before);
}

/* The stored name `b` names: itself, or the one it is tied to. */
static size_t stored_entry(lw *L, const char *b)
{
    size_t i = b ? sv_find(&L->st, b) : SV_NONE;
    return i != SV_NONE && L->st.e[i].tied ? sv_find(&L->st, L->st.e[i].tied) : i;
}

static void lower_tie(lw *L, const ast_stmt *s)
{
    lw_stmt o;
    if (!lw_stmt_open(L, s, s->targets, 1, false, &o))
        return;
    size_t *targets = calloc(o.ms.n ? o.ms.n : 1, sizeof *targets);
    for (size_t i = 0; i < o.ms.n; i++)
        o.c.touched[o.ms.m[i].entry] = 1;
    for (size_t i = 0; targets && i < o.ms.n && L->errors == o.before; i++) {
        const lw_match *m = &o.ms.m[i];
        const char *b = gl_expand(L->ar, &o.t[0], m->name, m->caps, 0);
        size_t bi = targets[i] = stored_entry(L, b); /* a tied name: its stored tensor */
        if (bi == SV_NONE) {
            lw_error(L, s->targets->span, "tie-target", NULL, 0,
                     "cannot tie \"%s\" to \"%s\": no tensor \"%s\" exists", m->name, b, b);
        } else if (bi == m->entry || o.c.touched[bi]) {
            lw_error(L, s->targets->span, "tie-target", NULL, 0, "cannot tie \"%s\" to \"%s\": %s",
                     m->name, b,
                     bi == m->entry ? "a tensor cannot be tied to itself"
                                    : "that tensor is itself tied by this statement");
        } else {
            const cg_node *x = cg_get(&L->g, m->node), *y = cg_get(&L->g, L->st.e[bi].node);
            bool same = x->dtype == y->dtype && x->rank == y->rank &&
                        memcmp(x->shape, y->shape, x->rank * sizeof *x->shape) == 0;
            if (!same)
                lw_error(L, s->span, "tie-type", NULL, 0,
                         "cannot tie \"%s\" (%s) to \"%s\" (%s): shapes and dtypes must be equal",
                         m->name, lw_type(x, 0), b, lw_type(y, 1));
        }
    }
    for (size_t i = 0; i < o.ms.n; i++)
        if (!o.ms.m[i].tied)
            mr_dropped(L, &o.c, o.ms.m[i].name); /* the tied name's slots go */
    for (size_t i = 0; targets && i < o.ms.n && L->errors == o.before; i++)
        change_tie(L, &o.c, o.ms.m[i].entry, L->st.e[targets[i]].name, CG_NONE);
    L->nomem |= !targets;
    free(targets);
    lw_stmt_close(L, &o);
}

/* untie P: each matched tied name becomes a tensor of its own, a copy of
 * its stored tensor's value (with copies of its slots in a mirrored tree). */
static void lower_untie(lw *L, const ast_stmt *s)
{
    lw_stmt o;
    if (!lw_stmt_open(L, s, NULL, 0, false, &o))
        return;
    named *slots = calloc(o.ms.n * mr_max_slots(L) + 1, sizeof *slots);
    size_t n_slots = 0, n_tied = 0;
    for (size_t i = 0; slots && i < o.ms.n; i++) {
        const lw_match *m = &o.ms.m[i];
        if (!m->tied)
            continue;
        n_tied++;
        change_tie(L, &o.c, m->entry, NULL, m->node);
        mr_copied(L, slots, &n_slots, m->tied, m->name, m->node, s->span);
    }
    if (slots && !n_tied && !s->patterns->optional)
        lw_error(L, s->patterns->span, "untie-none", NULL, 0,
                 "pattern \"%s\" matches no tied name, only %zu stored tensor%s",
                 s->patterns->text, o.ms.n, o.ms.n == 1 ? "" : "s");
    if (slots && L->errors == o.before)
        add_new_names(L, &o.c, slots, n_slots, "untie");
    L->nomem |= !slots;
    free(slots);
    lw_stmt_close(L, &o);
}

/* A value statement gives a tied name no value of its own: the name follows
 * its stored tensor when the statement changes that too, and is an error
 * alone. */
static void check_tied_values(lw *L, const ast_stmt *s, const lw_matches *ms, const change *c)
{
    for (size_t i = 0; i < ms->n; i++) {
        const lw_match *m = &ms->m[i];
        size_t t = m->tied ? sv_find(&L->st, m->tied) : SV_NONE;
        if (!m->tied || (t != SV_NONE && c->touched[t]))
            continue;
        lw_error(L, s->patterns->span, "tied-value", NULL, 0,
                 "cannot %s \"%s\": it is tied to \"%s\" (one tensor, stored once); "
                 "untie \"%s\" first to give it a value of its own",
                 ast_stmt_keyword(s->kind), m->name, m->tied, m->name);
        return;
    }
}

/* ---- fill, map -------------------------------------------------------- */

static void lower_fill(lw *L, const ast_stmt *s)
{
    lw_stmt o;
    if (!lw_stmt_open(L, s, NULL, 0, false, &o))
        return;
    for (size_t i = 0; i < o.ms.n && L->errors == o.before; i++) {
        if (o.ms.m[i].tied)
            continue;
        const cg_node *x = cg_get(&L->g, o.ms.m[i].node);
        cg_id v = lw_init(L, s->expr, x->dtype, x->rank, x->shape, o.ms.m[i].name, L->layout,
                          s->span);
        change_update(L, &o.c, o.ms.m[i].entry, v);
    }
    if (L->errors == o.before)
        check_tied_values(L, s, &o.ms, &o.c);
    for (size_t i = 0; i < o.ms.n; i++) /* new values: the moments start over */
        if (!o.ms.m[i].tied)
            mr_zeroed(L, &o.c, o.ms.m[i].name, s->span);
    lw_stmt_close(L, &o);
}

/* fill "NAME" : TYPE = INIT: a new tensor of a fully given type. */
static bool new_shape(lw *L, const ast_type *t, uint32_t *rank, uint64_t **shape)
{
    uint32_t n = 0;
    for (const ast_dim *d = t->dims; d; d = d->next)
        n++;
    if (n > SURG_MAX_RANK) {
        lw_error(L, t->span, "type-rank", NULL, 0, "a tensor has at most %d dimensions",
                 SURG_MAX_RANK);
        return false;
    }
    *shape = ar_array(L->ar, n ? n : 1, sizeof **shape);
    if (!*shape)
        return L->nomem = true, false;
    uint32_t i = 0;
    uint64_t count = 1, bytes = 0;
    for (const ast_dim *d = t->dims; d; d = d->next, i++) {
        int64_t v;
        if (!d->size) {
            lw_error(L, d->span, "type-star", NULL, 0,
                     "a new tensor needs every dimension: '*' is for expect only");
            return false;
        }
        if (!lw_integer(L, d->size, "a dimension", 0, INT64_MAX, &v))
            return false;
        (*shape)[i] = (uint64_t)v;
        if (__builtin_mul_overflow(count, (uint64_t)v, &count)) {
            lw_error(L, t->span, "type-size", NULL, 0, "the tensor would be too large");
            return false;
        }
    }
    surg_dtype dt = surg_dtype_from_recipe_name(t->dtype);
    bool overflow = __builtin_mul_overflow(count, (uint64_t)surg_dtype_bits(dt), &bytes);
    if (overflow || bytes % 8) {
        lw_error(L, t->span, "type-size", NULL, 0,
                 overflow ? "the tensor would be too large"
                          : "the tensor would not fill a whole number of bytes");
        return false;
    }
    *rank = n;
    return true;
}

static void lower_fill_new(lw *L, const ast_stmt *s)
{
    unsigned before = L->errors;
    const ast_string *p = s->patterns;
    gl_pattern pat;
    char err[200];
    if (p->optional || !gl_compile(L->ar, p->text, &pat, err, sizeof err) || !pat.literal) {
        lw_error(L, p->span, "fill-name", NULL, 0,
                 "a new tensor needs a plain name, not a pattern%s",
                 p->optional ? " (and not optional)" : "");
        return;
    }
    /* The name is the pattern's literal text (a backslash quotes the next
     * character), as a pattern matching it would see it. */
    const char *literal = pat.n_toks ? pat.toks[0].text : "";
    if (taken(L, NULL, literal)) {
        lw_error(L, p->span, "name-exists", NULL, 0,
                 "cannot create \"%s\": it already exists (use fill \"%s\" = ... to overwrite it)",
                 literal, p->text);
        return;
    }
    uint32_t rank;
    uint64_t *shape;
    if (!new_shape(L, &s->type, &rank, &shape))
        return;
    surg_dtype dt = surg_dtype_from_recipe_name(s->type.dtype);
    const char *name = ar_strdup(L->ar, literal); /* the program outlives the recipe */
    if (!name) {
        L->nomem = true;
        return;
    }
    cg_id v = lw_init(L, s->expr, dt, rank, shape, name, L->layout, s->span);
    change c;
    if (L->errors != before || !change_init(L, &c))
        return;
    named *n = calloc(1 + mr_max_slots(L), sizeof *n);
    size_t count = 1;
    if (n) {
        n[0] = (named){name, name, p->span, v, NULL};
        mr_created(L, n, &count, name, v, s->span);
        add_new_names(L, &c, n, count, "fill");
    }
    L->nomem |= !n;
    free(n);
    change_done(L, &c, before);
}

static void lower_map(lw *L, const ast_stmt *s)
{
    lw_stmt o;
    if (!lw_stmt_open(L, s, NULL, 0, false, &o))
        return;
    cg_id *results = calloc(o.ms.n ? o.ms.n : 1, sizeof *results);
    /* The first match that fails reports; the rest would only repeat it. */
    for (size_t i = 0; results && i < o.ms.n && L->errors == o.before; i++) {
        if (o.ms.m[i].tied)
            continue;
        results[i] = lw_map_expr(L, s, &o.ms.m[i], &o.ms);
        change_update(L, &o.c, o.ms.m[i].entry, results[i]);
    }
    if (results && L->errors == o.before)
        check_tied_values(L, s, &o.ms, &o.c);
    /* A layout change (transpose, reshape) happens to the slots too. */
    for (size_t i = 0; results && i < o.ms.n && L->errors == o.before; i++) {
        const lw_mirror *mi = o.ms.m[i].tied ? NULL : mr_find(L, o.ms.m[i].name);
        for (size_t k = 0; mi && k < mi->n_slots && L->errors == o.before; k++) {
            size_t e = mr_slot_entry(L, mi, k, o.ms.m[i].name);
            if (e == SV_NONE || o.c.touched[e] || L->st.e[e].tied)
                continue;
            cg_id v = lw_map_layout(L, s, &o.ms.m[i], &o.ms, results[i], L->st.e[e].node);
            if (v != L->st.e[e].node)
                change_update(L, &o.c, e, v);
        }
    }
    L->nomem |= !results;
    free(results);
    lw_stmt_close(L, &o);
}

/* ---- expect, seed, layout, mirror ------------------------------------- */

/* An expected type: each dimension a size, or -1 for `*`. */
typedef struct expected {
    surg_dtype dtype;
    uint32_t rank;
    int64_t dims[SURG_MAX_RANK];
} expected;

static bool expected_type(lw *L, const ast_type *t, expected *e)
{
    e->dtype = surg_dtype_from_recipe_name(t->dtype);
    e->rank = 0;
    for (const ast_dim *d = t->dims; d; d = d->next) {
        if (e->rank == SURG_MAX_RANK) {
            lw_error(L, t->span, "type", NULL, 0, "a type has at most %d dimensions", SURG_MAX_RANK);
            return false;
        }
        e->dims[e->rank] = -1;
        if (d->size && !lw_integer(L, d->size, "a dimension", 0, INT64_MAX, &e->dims[e->rank]))
            return false;
        e->rank++;
    }
    return true;
}

static bool type_matches(const cg_node *x, const expected *e)
{
    if (x->dtype != e->dtype || x->rank != e->rank)
        return false;
    for (uint32_t i = 0; i < e->rank; i++)
        if (e->dims[i] >= 0 && x->shape[i] != (uint64_t)e->dims[i])
            return false;
    return true;
}

static void lower_expect(lw *L, const ast_stmt *s)
{
    lw_matches ms;
    expected want;
    if (!expected_type(L, &s->type, &want) || !lw_match_pattern(L, s->patterns, &ms))
        return;
    const src_file *f = L->src;
    int tlen = (int)(s->type.span.end - s->type.span.start);
    size_t failed = 0;
    for (size_t i = 0; i < ms.n; i++) {
        const cg_node *x = cg_get(&L->g, ms.m[i].node);
        if (type_matches(x, &want))
            continue;
        if (failed++ < 20)
            lw_error(L, s->type.span, "expect", NULL, 0, "\"%s\" is %s, expected %.*s",
                     ms.m[i].name, lw_type(x, 0), tlen, f->text + s->type.span.start);
    }
    if (failed > 20)
        lw_error(L, s->type.span, "expect", NULL, 0, "and %zu more tensors differ",
                 failed - 20);
    lw_matches_free(&ms);
}

static void lower_seed(lw *L, const ast_stmt *s)
{
    int64_t v;
    if (lw_integer(L, s->number, "a seed", 0, INT64_MAX, &v))
        L->seed = (uint64_t)v;
}

static void lower_layout(lw *L, const ast_stmt *s)
{
    L->layout = strcmp(s->word, "torch") == 0 ? LAYOUT_TORCH : LAYOUT_FLAX;
}

static void lower_mirror(lw *L, const ast_stmt *s) { mr_declare(L, s); }

/* ---- the structural moves: split, concat, stack, unstack -------------- */

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

static void lower_split(lw *L, const ast_stmt *s)
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
    const char **parts = ar_array(L->ar, k, sizeof *parts);
    size_t n_named = 0, j = 0;
    for (size_t i = 0; i < o.ms.n; i++)
        change_remove(&o.c, o.ms.m[i].entry);
    for (const ast_string *t = s->targets; tt && t; t = t->next, j++)
        if (!lw_template(L, t, &o.ms.pat, false, &tt[j]))
            break;
    if (n_sizes && n_sizes != k)
        lw_error(L, s->sizes->span, "split-sizes", NULL, 0,
                 "%zu sizes for %zu parts: give one size per part", n_sizes, k);
    for (size_t i = 0; names && i < o.ms.n && L->errors == o.before; i++) {
        const lw_match *m = &o.ms.m[i];
        const cg_node *x = cg_get(&L->g, m->node);
        uint32_t axis;
        if (!axis_of(L, s->axis, x->rank, m->name, &axis))
            break;
        uint64_t dim = x->shape[axis], total = 0;
        uint64_t sizes[k];
        j = 0;
        for (const ast_number *z = s->sizes; z; z = z->next, j++) {
            int64_t v;
            if (!lw_integer(L, z, "a size", 0, INT64_MAX, &v))
                break;
            sizes[j] = (uint64_t)v;
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
        uint64_t start = 0;
        const ast_string *t = s->targets;
        for (j = 0; j < k; j++, t = t->next) {
            uint64_t len = n_sizes ? sizes[j] : dim / k;
            parts[j] = gl_expand(L->ar, &tt[j], m->name, m->caps, 0);
            names[n_named++] = (named){parts[j], m->name, t->span,
                                       slice(L, m->node, axis, start, len, false, s->span), NULL};
            start += len;
        }
        /* Each slot splits the same way, into the parts' slots. */
        const lw_mirror *mi = mr_find(L, m->name);
        for (size_t q = 0; mi && q < mi->n_slots; q++) {
            size_t e = mr_slot_entry(L, mi, q, m->name);
            if (e == SV_NONE || o.c.touched[e])
                continue;
            change_remove(&o.c, e);
            start = 0;
            for (j = 0; j < k; j++) {
                uint64_t len = n_sizes ? sizes[j] : dim / k;
                if (mr_find(L, parts[j]) != mi) {
                    lw_error(L, s->targets->span, "mirror-move", NULL, 0,
                             "\"%s\" would leave the mirrored tree \"%s\", orphaning its "
                             "optimizer slots",
                             parts[j], mi->params);
                    break;
                }
                names[n_named++] = (named){mr_slot_name(L, mi, q, parts[j]), L->st.e[e].name,
                                           s->targets->span,
                                           slice(L, sv_node(&L->st, e), axis, start, len, false,
                                                 s->span), NULL};
                start += len;
            }
        }
    }
    if (L->errors == o.before && names)
        add_new_names(L, &o.c, names, n_named, "split");
    L->nomem |= !names || !tt || !parts;
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
                       uint32_t axis, bool stack, cg_id *ids, named *out, size_t *n_out)
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
        size_t i;
        for (i = 0; i < n; i++) {
            size_t e = mr_slot_entry(L, mi, q, v[i].m->name);
            if (e == SV_NONE || c->touched[e])
                break;
            ids[i] = sv_node(&L->st, e);
            change_remove(c, e);
        }
        if (i == n)
            out[(*n_out)++] = (named){mr_slot_name(L, mi, q, v[0].target),
                                      mr_slot_name(L, mi, q, v[0].m->name), s->targets->span,
                                      join(L, s, ids, n, axis, stack), NULL};
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
        v[i] = (member){gl_expand(L->ar, &o.t[0], m->name, m->caps, 0), m, &ord};
        change_remove(&o.c, m->entry);
    }
    if (v)
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
            names[n_named++] = (named){v[i].target, v[i].m->name, s->targets->span,
                                       join(L, s, ids, j - i, axis, stack), NULL};
            join_slots(L, s, &o.c, v + i, j - i, axis, stack, ids, names, &n_named);
        }
        i = j;
    }
    if (L->errors == o.before && names)
        add_new_names(L, &o.c, names, n_named, stack ? "stack" : "concat");
    L->nomem |= !v || !names || !ids;
    free(v);
    free(names);
    free(ids);
    lw_stmt_close(L, &o);
}

static void lower_concat(lw *L, const ast_stmt *s) { lower_join(L, s, false); }
static void lower_stack(lw *L, const ast_stmt *s) { lower_join(L, s, true); }

static void lower_unstack(lw *L, const ast_stmt *s)
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
        size_t first = n_named;
        for (uint64_t k = 0; k < dim; k++) {
            const char *name = gl_expand(L->ar, &o.t[0], m->name, m->caps, k);
            names[n_named++] = (named){name, m->name, s->targets->span,
                                       slice(L, m->node, axis, k, 1, true, s->span), NULL};
        }
        /* Each slot unstacks the same way, into the parts' slots. */
        const lw_mirror *mi = mr_find(L, m->name);
        for (size_t q = 0; mi && q < mi->n_slots; q++) {
            size_t e = mr_slot_entry(L, mi, q, m->name);
            if (e == SV_NONE || o.c.touched[e])
                continue;
            change_remove(&o.c, e);
            for (uint64_t k = 0; k < dim; k++) {
                const char *part = names[first + k].name;
                if (mr_find(L, part) != mi) {
                    lw_error(L, s->targets->span, "mirror-move", NULL, 0,
                             "\"%s\" would leave the mirrored tree \"%s\", orphaning its "
                             "optimizer slots",
                             part, mi->params);
                    break;
                }
                names[n_named++] = (named){mr_slot_name(L, mi, q, part), L->st.e[e].name,
                                           s->targets->span,
                                           slice(L, sv_node(&L->st, e), axis, k, 1, true, s->span), NULL};
            }
        }
    }
    if (names)
        add_new_names(L, &o.c, names, n_named, "unstack");
    free(names);
    lw_stmt_close(L, &o);
}

/* ---- init-lora -------------------------------------------------------- */

typedef struct lora {
    int64_t rank;
    double alpha;
    const char *style; /* NULL: by name */
    const ast_expr *a, *b;
    const ast_string *as;
} lora;

static bool lora_clauses(lw *L, const ast_stmt *s, lora *o)
{
    *o = (lora){.rank = 0, .alpha = -1};
    unsigned before = L->errors;
    bool seen[CL_AS + 2] = {0}; /* by kind; `b =` after them all */
    for (const ast_clause *c = s->clauses; c; c = c->next) {
        int k = c->kind == CL_INIT && c->name[0] == 'b' ? CL_AS + 1 : (int)c->kind;
        if (seen[k]) {
            lw_error(L, c->span, "lora-clause", NULL, 0, "this init-lora clause is given twice");
            continue;
        }
        seen[k] = true;
        if (c->kind == CL_RANK)
            lw_integer(L, c->number, "rank", 1, 1 << 20, &o->rank);
        else if (c->kind == CL_ALPHA && !isfinite(c->number->value))
            lw_error(L, c->number->span, "number", NULL, 0, "alpha must be a finite number");
        else if (c->kind == CL_ALPHA)
            o->alpha = c->number->value;
        else if (c->kind == CL_STYLE)
            o->style = c->name;
        else if (c->kind == CL_INIT)
            *(c->name[0] == 'a' ? &o->a : &o->b) = c->init;
        else
            o->as = c->names;
    }
    if (!seen[CL_RANK])
        lw_error(L, s->keyword_span, "lora-rank", NULL, 0, "init-lora needs a rank: rank N");
    if (o->alpha < 0)
        o->alpha = (double)o->rank;
    return L->errors == before;
}

static const char *last_sep(const char *name)
{
    const char *p = NULL;
    for (const char *q = name; *q; q++)
        if (gl_is_sep(*q))
            p = q;
    return p;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* <module>/lora/lora_a (flax) or <module>.lora_A.weight (peft), with the
 * separator the name already uses. */
static const char *lora_name(lw *L, const char *name, bool flax, bool is_a)
{
    const char *sep = last_sep(name);
    int prefix = sep ? (int)(sep - name + 1) : 0; /* the module and its separator */
    char s = sep ? *sep : flax ? '/' : '.';
    buf b;
    buf_init(&b);
    if (flax)
        buf_printf(&b, "%.*slora%clora_%c", prefix, name, s, is_a ? 'a' : 'b');
    else
        buf_printf(&b, "%.*slora_%c%cweight", prefix, name, is_a ? 'A' : 'B', s);
    char *out = b.failed ? NULL : ar_strdup(L->ar, b.data);
    buf_free(&b);
    L->nomem |= !out;
    return out;
}

static void lora_record(lw *L, const lora *o, bool flax, const char *target, const char *a,
                        const char *b)
{
    cg_lora *r = ar_alloc(L->ar, sizeof *r);
    if (!r) {
        L->nomem = true;
        return;
    }
    *r = (cg_lora){NULL, o->rank, o->alpha, flax, target, a, b};
    *L->lora_tail = r;
    L->lora_tail = &r->next;
}

/* The default initializers of SPEC §3.3, as if written in the recipe: A is
 * he_uniform (flax, as NNX's LoRA) or kaiming_uniform(a=sqrt(5)) (as PEFT
 * does); B is zeros, so the adapted model computes what the base model did. */
static ast_expr sqrt5 = {.kind = EX_NUMBER, .u.number = {"2.2360679775", 2.2360679775}};
static ast_arg a_sqrt5 = {.name = "a", .value = &sqrt5};
static const ast_expr default_a_flax = {.kind = EX_IDENT, .u.ident = "he_uniform"};
static const ast_expr default_a_peft = {.kind = EX_CALL,
                                        .u.call = {.name = "kaiming_uniform", .args = &a_sqrt5}};
static const ast_expr default_b = {.kind = EX_IDENT, .u.ident = "zeros"};

static void lower_init_lora(lw *L, const ast_stmt *s)
{
    lora opt;
    lw_stmt o;
    if (!lora_clauses(L, s, &opt) || !lw_stmt_open(L, s, opt.as, opt.as ? 2 : 0, false, &o))
        return;
    named *names = calloc(2 * o.ms.n * (1 + mr_max_slots(L)) + 1, sizeof *names);
    size_t n_named = 0;
    for (size_t i = 0; names && i < o.ms.n && L->errors == o.before; i++) {
        const lw_match *m = &o.ms.m[i];
        const cg_node *w = cg_get(&L->g, m->node);
        bool flax = opt.style ? strcmp(opt.style, "flax") == 0 : ends_with(m->name, "kernel");
        if (!opt.style && !flax && !ends_with(m->name, "weight")) {
            lw_error(L, s->patterns->span, "lora-style", NULL, 0,
                     "cannot tell the style of \"%s\": its name ends in neither \"kernel\" nor "
                     "\"weight\"; add style flax or style peft",
                     m->name);
            break;
        }
        if (w->rank != 2) {
            lw_error(L, s->patterns->span, "lora-rank2", NULL, 0,
                     "init-lora needs a 2-D kernel, but \"%s\" is %s", m->name, lw_type(w, 0));
            break;
        }
        uint64_t in = flax ? w->shape[0] : w->shape[1], out = flax ? w->shape[1] : w->shape[0];
        uint64_t r = (uint64_t)opt.rank;
        uint64_t sa[2] = {flax ? in : r, flax ? r : in}, sb[2] = {flax ? r : out, flax ? out : r};
        const char *na = opt.as ? gl_expand(L->ar, &o.t[0], m->name, m->caps, 0)
                                : lora_name(L, m->name, flax, true);
        const char *nb = opt.as ? gl_expand(L->ar, &o.t[1], m->name, m->caps, 0)
                                : lora_name(L, m->name, flax, false);
        if (!na || !nb)
            break;
        const ast_expr *ia = opt.a ? opt.a : flax ? &default_a_flax : &default_a_peft;
        const ast_expr *ib = opt.b ? opt.b : &default_b;
        lw_layout lay = flax ? LAYOUT_FLAX : LAYOUT_TORCH;
        surg_dtype dt = w->dtype; /* w may move as nodes are added */
        cg_id va = lw_init(L, ia, dt, 2, sa, na, lay, s->span);
        cg_id vb = lw_init(L, ib, dt, 2, sb, nb, lay, s->span);
        /* A name's errors point at its `as` template, if written. */
        names[n_named++] = (named){na, m->name, opt.as ? opt.as->span : s->span, va, NULL};
        names[n_named++] = (named){nb, m->name, opt.as ? opt.as->next->span : s->span, vb, NULL};
        mr_created(L, names, &n_named, na, va, s->span); /* new parameters: zero slots */
        mr_created(L, names, &n_named, nb, vb, s->span);
        if (L->errors == o.before)
            lora_record(L, &opt, flax, m->name, na, nb);
    }
    if (L->errors == o.before && names)
        add_new_names(L, &o.c, names, n_named, "init-lora");
    L->nomem |= !names;
    free(names);
    lw_stmt_close(L, &o);
}

/* ---- dispatch --------------------------------------------------------- */

void lw_statements(lw *L, const ast_recipe *r)
{
    static void (*const lower[])(lw *, const ast_stmt *) = {
        [STMT_RENAME] = lower_rename,       [STMT_DROP] = lower_drop,
        [STMT_KEEP] = lower_keep,           [STMT_FILL] = lower_fill,
        [STMT_FILL_NEW] = lower_fill_new,   [STMT_MAP] = lower_map,
        [STMT_TIE] = lower_tie,             [STMT_UNTIE] = lower_untie,
        [STMT_INIT_LORA] = lower_init_lora,
        [STMT_SPLIT] = lower_split,         [STMT_CONCAT] = lower_concat,
        [STMT_STACK] = lower_stack,         [STMT_UNSTACK] = lower_unstack,
        [STMT_EXPECT] = lower_expect,       [STMT_SEED] = lower_seed,
        [STMT_LAYOUT] = lower_layout,       [STMT_MIRROR] = lower_mirror,
    };
    for (const ast_stmt *s = r->stmts; s && !L->nomem; s = s->next) {
        L->at = s->span;
        lower[s->kind](L, s);
    }
}
