/* statements.c: what each statement does to the abstract state (SPEC §3.3),
 * one function per kind behind the dispatch table at the end; the simple
 * statements live here, the structural moves in structural.c and init-lora
 * in lora.c. A statement either applies whole or, after an error, not at
 * all, so one mistake does not cascade into others. */
#include <stdlib.h>
#include <string.h>

#include "compiler/mirror.h"
#include "compiler/statements.h"

/* ---- the opening ------------------------------------------------------ */

bool lw_stmt_open(lw *L, const ast_stmt *s, const ast_string *templates, size_t n_templates,
                  bool index, lw_stmt *o)
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

void lw_stmt_close(lw *L, lw_stmt *o)
{
    change_done(L, &o->c, o->before);
    lw_matches_free(&o->ms);
}

/* ---- rename, drop, keep, tie, untie ----------------------------------- */

static void lower_rename(lw *L, const ast_stmt *s)
{
    lw_stmt o;
    L->values_match = true;
    bool open = lw_stmt_open(L, s, s->targets, 1, false, &o);
    L->values_match = false;
    if (!open)
        return;
    size_t count = o.ms.n;
    named *n = calloc(o.ms.n * (1 + mr_max_slots(L)) + 1, sizeof *n);
    L->nomem |= !n;
    for (size_t i = 0; n && i < o.ms.n; i++) {
        const lw_match *m = &o.ms.m[i];
        n[i] = (named){lw_expand(L, &o.t[0], s->targets->span, m, 0), m->name,
                       s->targets->span, m->tied ? CG_NONE : m->node, m->tied};
        change_remove(&o.c, m->entry);
    }
    if (L->errors != o.before || L->nomem) { /* a name not made */
        free(n);
        n = NULL;
    }
    /* Once every match is marked; a tied name has no slots of its own. */
    for (size_t i = 0; n && i < o.ms.n; i++)
        if (!o.ms.m[i].tied)
            mr_moved(L, &o.c, n, &count, n[i].source, n[i].name, s->targets->span);
    if (n)
        change_add_names(L, &o.c, n, count, "rename");
    for (size_t i = 0; n && i < count; i++) /* tied names and records follow */
        change_move(L, &o.c, n[i].source, n[i].name);
    if (n && L->errors == o.before) /* and the recorded values it matches */
        lw_paths_rename(L, &o.ms.pat, &o.t[0], s->targets->span);
    free(n);
    lw_stmt_close(L, &o);
}

static void lower_drop(lw *L, const ast_stmt *s)
{
    lw_stmt o;
    L->values_match = true;
    bool open = lw_stmt_open(L, s, NULL, 0, false, &o);
    L->values_match = false;
    if (!open)
        return;
    for (size_t i = 0; i < o.ms.n; i++)
        change_remove(&o.c, o.ms.m[i].entry);
    for (size_t i = 0; i < o.ms.n; i++)
        mr_dropped(L, &o.c, o.ms.m[i].name);
    if (L->errors == o.before)
        lw_paths_drop(L, &o.ms.pat);
    lw_stmt_close(L, &o);
}

static void lower_keep(lw *L, const ast_stmt *s)
{
    unsigned before = L->errors;
    change c;
    if (!change_init(L, &c))
        return;
    uint8_t *kept = calloc(L->st.n ? L->st.n : 1, 1);
    uint8_t *values = calloc(L->n_paths ? L->n_paths : 1, 1);
    L->values_match = true;
    for (const ast_string *p = s->patterns; kept && p; p = p->next) {
        lw_matches ms;
        if (lw_match_pattern(L, p, &ms)) {
            for (size_t i = 0; i < ms.n; i++)
                kept[ms.m[i].entry] = 1;
            lw_paths_mark(L, &ms.pat, values);
        }
        lw_matches_free(&ms);
    }
    L->values_match = false;
    /* A kept parameter keeps its slots. */
    for (size_t i = 0; kept && i < L->st.n; i++) {
        const lw_mirror *mi = kept[i] ? mr_find(L, L->st.e[i].name) : NULL;
        for (size_t k = 0; mi && k < mi->n_slots; k++) {
            size_t e = mr_slot_entry(L, mi, k, L->st.e[i].name);
            if (e != STATE_NONE)
                kept[e] = 1;
        }
    }
    for (size_t i = 0; kept && i < L->st.n; i++)
        if (!kept[i])
            change_remove(&c, i);
    L->nomem |= !kept || !values;
    if (L->errors == before && values) /* the recorded values no pattern matches go too */
        lw_paths_keep(L, values);
    free(kept);
    free(values);
    change_done(L, &c, before);
}

/* The stored name `b` names: itself, or the one it is tied to. */
static size_t stored_entry(lw *L, const char *b)
{
    size_t i = b ? state_find(&L->st, b) : STATE_NONE;
    return i != STATE_NONE && L->st.e[i].tied ? state_find(&L->st, L->st.e[i].tied) : i;
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
        const char *b = lw_expand(L, &o.t[0], s->targets->span, m, 0);
        if (!b)
            break;
        size_t bi = targets[i] = stored_entry(L, b); /* a tied name: its stored tensor */
        if (bi == STATE_NONE) {
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
        change_add_names(L, &o.c, slots, n_slots, "untie");
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
        size_t t = m->tied ? state_find(&L->st, m->tied) : STATE_NONE;
        if (!m->tied || (t != STATE_NONE && c->touched[t]))
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
    if (t->form != TYPE_DIMS) {
        lw_error(L, t->span, "type-any", NULL, 0,
                 "a new tensor needs its shape, as %s[4, 4]: %s is for expect only", t->dtype,
                 t->form == TYPE_ANY_RANK ? "'[...]'" : "a dtype alone");
        return false;
    }
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
    if (change_taken(L, NULL, literal)) {
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
        change_add_names(L, &c, n, count, "fill");
    }
    L->nomem |= !n;
    free(n);
    change_done(L, &c, before);
}

/* Each match's map (`each[i]`: its own statement, or NULL to leave it),
 * then the slots: a layout change (transpose, reshape, slice, pad, repeat,
 * concat) happens to them too. */
static void map_matches(lw *L, const ast_stmt *s, lw_stmt *o, const ast_stmt *const *each)
{
    cg_id *results = calloc(o->ms.n ? o->ms.n : 1, sizeof *results);
    /* The first match that fails reports; the rest would only repeat it. */
    for (size_t i = 0; results && i < o->ms.n && L->errors == o->before; i++) {
        if (o->ms.m[i].tied || !each[i])
            continue;
        results[i] = lw_map_expr(L, each[i], &o->ms.m[i], &o->ms);
        change_update(L, &o->c, o->ms.m[i].entry, results[i]);
    }
    if (results && L->errors == o->before)
        check_tied_values(L, s, &o->ms, &o->c);
    for (size_t i = 0; results && i < o->ms.n && L->errors == o->before; i++)
        if (each[i])
            mr_mapped(L, &o->c, each[i], &o->ms.m[i], &o->ms, results[i]);
    L->nomem |= !results;
    free(results);
}

static void lower_map(lw *L, const ast_stmt *s)
{
    lw_stmt o;
    if (!lw_stmt_open(L, s, NULL, 0, false, &o))
        return;
    const ast_stmt **each = calloc(o.ms.n ? o.ms.n : 1, sizeof *each);
    for (size_t i = 0; each && i < o.ms.n; i++)
        each[i] = s;
    if (each)
        map_matches(L, s, &o, each);
    L->nomem |= !each;
    free(each);
    lw_stmt_close(L, &o);
}

/* resize P axis A to S [multiple M]: for each match with n places along A,
 * the map x when S = n, slice(x, A, 0, S) when S < n, and when S > n
 * concat(x, repeat(mean(x, axis=A, keepdims=true), S - n, A), A): new
 * places hold the mean of the old ones, as Hugging Face's
 * resize_token_embeddings with mean_resizing copies it where it does not
 * sample around it. Written as that map (resize.c), the slots follow it. */
static void lower_resize(lw *L, const ast_stmt *s)
{
    int64_t size, multiple = 1;
    if (!lw_integer(L, s->size, "the new size", 0, INT32_MAX, &size) ||
        (s->multiple && !lw_integer(L, s->multiple, "the multiple", 1, INT32_MAX, &multiple)))
        return;
    size += size % multiple ? multiple - size % multiple : 0; /* below 2^32 */
    if (size > INT32_MAX) {
        lw_error(L, s->multiple->span, "integer", NULL, 0,
                 "the new size rounded up to a multiple of %lld is %lld, past %d",
                 (long long)multiple, (long long)size, INT32_MAX);
        return;
    }
    lw_stmt o;
    if (!lw_stmt_open(L, s, NULL, 0, false, &o))
        return;
    const ast_stmt **each = calloc(o.ms.n ? o.ms.n : 1, sizeof *each);
    for (size_t i = 0; each && i < o.ms.n && L->errors == o.before; i++)
        if (!o.ms.m[i].tied)
            each[i] = lw_resize_map(L, s, &o.ms.m[i], (uint64_t)size);
    if (each && L->errors == o.before && !L->nomem)
        map_matches(L, s, &o, each);
    L->nomem |= !each;
    free(each);
    lw_stmt_close(L, &o);
}

/* ---- expect, seed, layout, mirror ------------------------------------- */

/* An expected type: each dimension a size, or -1 for `*`; any rank for
 * `f32[...]` and `f32`. */
typedef struct expected {
    surg_dtype dtype;
    bool any_rank;
    uint32_t rank;
    int64_t dims[SURG_MAX_RANK];
} expected;

static bool expected_type(lw *L, const ast_type *t, expected *e)
{
    e->dtype = surg_dtype_from_recipe_name(t->dtype);
    e->rank = 0;
    e->any_rank = t->form != TYPE_DIMS;
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
    if (x->dtype != e->dtype || (!e->any_rank && x->rank != e->rank))
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

/* ---- dispatch --------------------------------------------------------- */

void lw_statements(lw *L, const ast_recipe *r)
{
    static void (*const lower[])(lw *, const ast_stmt *) = {
        [STMT_RENAME] = lower_rename,       [STMT_DROP] = lower_drop,
        [STMT_KEEP] = lower_keep,           [STMT_FILL] = lower_fill,
        [STMT_FILL_NEW] = lower_fill_new,   [STMT_MAP] = lower_map,
        [STMT_TIE] = lower_tie,             [STMT_UNTIE] = lower_untie,
        [STMT_INIT_LORA] = lw_init_lora,
        [STMT_SPLIT] = lw_split,            [STMT_CONCAT] = lw_concat,
        [STMT_STACK] = lw_stack,            [STMT_UNSTACK] = lw_unstack,
        [STMT_EXPECT] = lower_expect,       [STMT_SEED] = lower_seed,
        [STMT_LAYOUT] = lower_layout,       [STMT_MIRROR] = lower_mirror,
        [STMT_META] = lw_meta_set,          [STMT_META_DROP] = lw_meta_drop,
        [STMT_META_KEEP] = lw_meta_keep,   [STMT_MERGE_LORA] = lw_merge_lora,
        [STMT_LET] = lw_let_define,
        [STMT_RESIZE] = lower_resize,
    };
    for (const ast_stmt *s = r->stmts; s && !L->nomem; s = s->next) {
        L->at = s->span;
        L->stmt = s;
        size_t n = L->st.n, tied = L->st.n_tied;
        lower[s->kind](L, s);
        if (L->after)
            L->after(L->after_user, L, s, n, tied);
    }
}
