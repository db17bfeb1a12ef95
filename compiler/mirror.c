/* mirror.c: slot trees that follow their parameter tree. The statements call
 * in here with what they did to a parameter; the slots get the same, in the
 * same change. A final check catches slots a recipe changed by hand. */
#include "compiler/mirror.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    MR_MAX_REPORTS = 50,
    /* Every prefix is compared with every other when declared, and every
     * name with every params prefix: bounded by these. */
    MR_MAX_PREFIXES = 256, /* all mirror statements together */
    MR_MAX_PREFIX_LEN = 4096,
};

static bool under(const char *name, const char *prefix, size_t n)
{
    return strncmp(name, prefix, n) == 0;
}

const lw_mirror *mr_find(const lw *L, const char *name)
{
    for (size_t i = 0; i < L->n_mirrors; i++)
        if (under(name, L->mirrors[i].params, L->mirrors[i].plen))
            return &L->mirrors[i];
    return NULL;
}

size_t mr_max_slots(const lw *L)
{
    size_t m = 0;
    for (size_t i = 0; i < L->n_mirrors; i++)
        m = L->mirrors[i].n_slots > m ? L->mirrors[i].n_slots : m;
    return m;
}

/* prefix + middle (n bytes) + suffix, malloc'd or in the arena. */
static char *joined(lw *L, bool in_arena, const char *prefix, size_t a, const char *mid, size_t b,
                    const char *suffix, size_t c)
{
    char *s = in_arena ? ar_alloc(L->ar, a + b + c + 1) : malloc(a + b + c + 1);
    if (!s) {
        L->nomem = true;
        return NULL;
    }
    memcpy(s, prefix, a);
    memcpy(s + a, mid, b);
    memcpy(s + a + b, suffix, c);
    s[a + b + c] = '\0';
    return s;
}

const char *mr_slot_name(lw *L, const lw_mirror *mi, size_t k, const char *param)
{
    const mr_slot *t = &mi->slots[k];
    const char *rest = param + mi->plen;
    const char *s = joined(L, true, t->prefix, t->plen, rest, strlen(rest), t->suffix, t->slen);
    return s ? s : "";
}

/* prefix + rest + suffix, looked up without leaving a copy in the arena: a
 * lookup is made for every match of every statement. */
static size_t find_joined(lw *L, const char *prefix, size_t a, const char *rest, size_t b,
                          const char *suffix, size_t c)
{
    char *s = joined(L, false, prefix, a, rest, b, suffix, c);
    if (!s)
        return STATE_NONE;
    size_t e = state_find(&L->st, s);
    free(s);
    return e;
}

size_t mr_slot_entry(lw *L, const lw_mirror *mi, size_t k, const char *param)
{
    const mr_slot *t = &mi->slots[k];
    const char *rest = param + mi->plen;
    return find_joined(L, t->prefix, t->plen, rest, strlen(rest), t->suffix, t->slen);
}

/* Is `name` in slot k's tree? Its rest, if so. */
static bool in_tree(const mr_slot *t, const char *name, const char **rest, size_t *n)
{
    size_t len = strlen(name);
    if (len < t->plen + t->slen || strncmp(name, t->prefix, t->plen) != 0 ||
        memcmp(name + len - t->slen, t->suffix, t->slen) != 0)
        return false;
    *rest = name + t->plen;
    *n = len - t->plen - t->slen;
    return true;
}

cg_id mr_zeros(lw *L, surg_dtype dt, uint32_t rank, const uint64_t *shape, src_span at)
{
    cg_init *init = ar_alloc(L->ar, sizeof *init);
    if (!init)
        return L->nomem = true, CG_NONE;
    init->kind = INIT_VALUE; /* zeros, as a fresh optimizer state holds */
    cg_node n = {.op = OP_INIT, .dtype = dt, .rank = rank, .origin = at};
    n.a.init = init;
    return lw_node(L, n, shape);
}

/* ---- what statements report ------------------------------------------- */

void mr_moved(lw *L, change *c, named *out, size_t *n, const char *from, const char *to,
              src_span at)
{
    const lw_mirror *mi = mr_find(L, from);
    if (!mi)
        return;
    if (mr_find(L, to) != mi) {
        lw_error(L, at, "mirror-move", NULL, 0,
                 "\"%s\" would leave the mirrored tree \"%s\" as \"%s\", orphaning its "
                 "optimizer slots",
                 from, mi->params, to);
        return;
    }
    for (size_t k = 0; k < mi->n_slots; k++) {
        size_t e = mr_slot_entry(L, mi, k, from);
        if (e == STATE_NONE || c->touched[e])
            continue; /* missing (the final check says so), or moved by the statement */
        change_remove(c, e);
        const state_entry *x = &L->st.e[e];
        out[(*n)++] = (named){mr_slot_name(L, mi, k, to), x->name, at, x->node, x->tied};
    }
}

void mr_dropped(lw *L, change *c, const char *param)
{
    const lw_mirror *mi = mr_find(L, param);
    for (size_t k = 0; mi && k < mi->n_slots; k++) {
        size_t e = mr_slot_entry(L, mi, k, param);
        if (e != STATE_NONE && !c->touched[e])
            change_remove(c, e);
    }
}

void mr_zeroed(lw *L, change *c, const char *param, src_span at)
{
    const lw_mirror *mi = mr_find(L, param);
    for (size_t k = 0; mi && k < mi->n_slots; k++) {
        size_t e = mr_slot_entry(L, mi, k, param);
        if (e == STATE_NONE || c->touched[e] || L->st.e[e].tied)
            continue;
        const cg_node *slot = cg_get(&L->g, L->st.e[e].node);
        change_update(L, c, e, mr_zeros(L, slot->dtype, slot->rank, slot->shape, at));
    }
}

void mr_created(lw *L, named *out, size_t *n, const char *param, cg_id node, src_span at)
{
    const lw_mirror *mi = mr_find(L, param);
    if (!mi || node == CG_NONE)
        return;
    for (size_t k = 0; k < mi->n_slots; k++)
        out[(*n)++] = (named){mr_slot_name(L, mi, k, param), param, at,
                              mr_new_slot(L, mi, k, node, at), NULL};
}

void mr_copied(lw *L, named *out, size_t *n, const char *from, const char *to, cg_id node,
               src_span at)
{
    const lw_mirror *mi = mr_find(L, to);
    if (!mi || node == CG_NONE)
        return;
    if (mr_find(L, from) != mi) {
        mr_created(L, out, n, to, node, at);
        return;
    }
    for (size_t k = 0; k < mi->n_slots; k++) {
        const char *name = mr_slot_name(L, mi, k, to);
        size_t e = mr_slot_entry(L, mi, k, from);
        if (state_find(&L->st, name) != STATE_NONE)
            continue; /* it has that slot already */
        if (e != STATE_NONE) {
            out[(*n)++] = (named){name, L->st.e[e].name, at, state_node(&L->st, e), NULL};
            continue;
        }
        out[(*n)++] = (named){name, to, at, mr_new_slot(L, mi, k, node, at), NULL};
    }
}

cg_id mr_take_slot(lw *L, change *c, const lw_mirror *mi, size_t k, const lw_match *m,
                   const char **from, src_span at)
{
    if (!m->tied) {
        size_t e = mr_slot_entry(L, mi, k, m->name);
        if (e == STATE_NONE || c->touched[e])
            return CG_NONE;
        change_remove(c, e);
        *from = L->st.e[e].name;
        return state_node(&L->st, e);
    }
    size_t e = mr_find(L, m->tied) == mi ? mr_slot_entry(L, mi, k, m->tied) : STATE_NONE;
    if (e != STATE_NONE) {
        *from = L->st.e[e].name; /* read, not taken: it stays the stored tensor's */
        return state_node(&L->st, e);
    }
    *from = m->name;
    return mr_new_slot(L, mi, k, m->node, at);
}

/* ---- checking the trees ----------------------------------------------- */

/* One mismatch reported, up to a limit; past it they are counted. */
typedef struct reports {
    size_t n, more;
} reports;

static bool report(reports *r)
{
    if (r->n++ < MR_MAX_REPORTS)
        return true;
    r->more++;
    return false;
}

static const char *form_why(const lw_mirror *mi, size_t k, mr_form f, const cg_node *p)
{
    uint32_t d1, d0;
    static char why[128];
    switch (f) {
    case MR_FULL: return "the parameter's shape";
    case MR_PLACEHOLDER:
        return mi->slots[k].role == MR_V ? "a [1] placeholder: the parameter is factored"
               : mi->slots[k].role == MR_SLOT ? "a [1] placeholder, as the others"
                                               : "a [1] placeholder: the parameter is not factored";
    case MR_FACTOR: break;
    }
    mr_factored_dims(mi, p->rank, p->shape, &d1, &d0);
    bool row = mi->slots[k].role == MR_ROW;
    snprintf(why, sizeof why, "the parameter without axis %u, its %s", row ? d0 : d1,
             row ? "longest" : "second longest");
    return why;
}

/* Parameter p (entry i) against each of its slots. */
static void check_param(lw *L, const lw_mirror *mi, size_t i, const bool *empty, reports *r)
{
    const char *p = L->st.e[i].name;
    const cg_node *pn = cg_get(&L->g, L->st.e[i].node);
    for (size_t k = 0; k < mi->n_slots && !L->nomem; k++) {
        uint64_t want[SURG_MAX_RANK];
        uint32_t rank;
        mr_form f = mr_slot_shape(mi, k, pn->rank, pn->shape, &rank, want);
        size_t e = empty[k] ? STATE_NONE : mr_slot_entry(L, mi, k, p);
        const cg_node *sn = e == STATE_NONE ? NULL : cg_get(&L->g, state_node(&L->st, e));
        if (sn && sn->rank == rank && memcmp(sn->shape, want, rank * sizeof *want) == 0)
            continue;
        if (!report(r))
            continue;
        if (!sn) {
            lw_error(L, mi->at, "mirror-missing", NULL, 0, "\"%s\" has no optimizer slot \"%s\"",
                     p, mr_slot_name(L, mi, k, p));
            continue;
        }
        if (f == MR_FULL && !mi->factored) {
            lw_error(L, mi->at, "mirror-shape", NULL, 0,
                     "slot \"%s\" is %s, but its parameter \"%s\" is %s", L->st.e[e].name,
                     lw_type(sn, 0), p, lw_type(pn, 1));
            continue;
        }
        buf b;
        buf_init(&b);
        lw_type_text(&b, sn->dtype, rank, want);
        lw_error(L, mi->at, "mirror-shape", NULL, 0,
                 "slot \"%s\" is %s, but its parameter \"%s\" is %s, so it should be %s (%s)",
                 L->st.e[e].name, lw_type(sn, 0), p, lw_type(pn, 1),
                 b.failed || !b.data ? "?" : b.data, form_why(mi, k, f, pn));
        buf_free(&b);
    }
}

/* Does `name` fall in a tree of mi's slots? */
static bool in_some_tree(const lw_mirror *mi, const char *name)
{
    const char *rest;
    size_t n;
    for (size_t k = 0; k < mi->n_slots; k++)
        if (in_tree(&mi->slots[k], name, &rest, &n))
            return true;
    return false;
}

/* The parameter whose slots `name` sits among (under a suffix slot's
 * prefix, one of the parameter's name and more: "s/P/q" for "t/P"), if
 * any, in `param`; STATE_NONE otherwise. */
static size_t beside(lw *L, const lw_mirror *mi, const mr_slot *t, const char *name)
{
    for (const char *c = strchr(name + t->plen, '/'); c && !L->nomem; c = strchr(c + 1, '/')) {
        size_t e = find_joined(L, mi->params, mi->plen, name + t->plen,
                               (size_t)(c - name) - t->plen, "", 0);
        if (e != STATE_NONE)
            return e;
    }
    return STATE_NONE;
}

/* Slots without a parameter; beside a parameter's slots kept under a
 * prefix with a suffix (t5x's state/param_states/P/m), names the mirror
 * does not declare. */
static void check_slots(lw *L, const lw_mirror *mi, size_t k, reports *r)
{
    const mr_slot *t = &mi->slots[k];
    size_t lo, hi;
    bool stray = t->slen != 0;
    for (size_t j = 0; stray && j < k; j++)
        stray = !(mi->slots[j].slen && strcmp(mi->slots[j].prefix, t->prefix) == 0);
    state_prefix_range(&L->st, t->prefix, t->plen, &lo, &hi);
    for (size_t i = lo; i < hi && !L->nomem; i++) {
        const char *name = L->st.e[i].name, *rest;
        size_t n;
        if (!in_tree(t, name, &rest, &n)) {
            size_t p = stray && !in_some_tree(mi, name) ? beside(L, mi, t, name) : STATE_NONE;
            if (p != STATE_NONE && report(r))
                lw_error(L, mi->at, "mirror-stray", NULL, 0,
                         "\"%s\" sits among the slots of \"%s\" but is none the mirror "
                         "declares: declare it, or drop it",
                         name, L->st.e[p].name);
            continue;
        }
        if (find_joined(L, mi->params, mi->plen, rest, n, "", 0) != STATE_NONE || L->nomem)
            continue;
        if (report(r))
            lw_error(L, mi->at, "mirror-extra", NULL, 0, "slot \"%s\" has no parameter \"%s%.*s\"",
                     name, mi->params, (int)n, rest);
    }
}

/* Every parameter has each slot, of the shape it must have; every slot has
 * its parameter. One error per mismatch, up to a limit; a slot tree that
 * holds nothing is not searched. Names are looked up without copies in the
 * arena. */
static void check_trees(lw *L, const lw_mirror *mi)
{
    reports r = {0, 0};
    size_t lo, hi;
    bool *empty = calloc(mi->n_slots ? mi->n_slots : 1, sizeof *empty);
    if (!empty) {
        L->nomem = true;
        return;
    }
    for (size_t k = 0; k < mi->n_slots; k++) {
        state_prefix_range(&L->st, mi->slots[k].prefix, mi->slots[k].plen, &lo, &hi);
        empty[k] = lo == hi;
    }
    state_prefix_range(&L->st, mi->params, mi->plen, &lo, &hi);
    for (size_t i = lo; i < hi && !L->nomem; i++)
        if (!L->st.e[i].tied) /* its stored tensor's slots are its own */
            check_param(L, mi, i, empty, &r);
    free(empty);
    for (size_t k = 0; k < mi->n_slots && !L->nomem; k++)
        check_slots(L, mi, k, &r);
    if (r.more)
        lw_error(L, mi->at, "mirror-missing", NULL, 0, "and %zu more mismatched slots", r.more);
}

void mr_check_all(lw *L)
{
    for (size_t i = 0; i < L->n_mirrors; i++)
        check_trees(L, &L->mirrors[i]);
}

/* ---- the statement ---------------------------------------------------- */

/* A tree: the names that begin with prefix and end with suffix (the params
 * tree has none). Two trees overlap when some name could be in both. */
typedef struct tree {
    const char *prefix, *suffix, *text;
    src_span span;
} tree;

static bool related(const char *a, size_t la, const char *b, size_t lb, bool at_end)
{
    size_t n = la < lb ? la : lb;
    return at_end ? memcmp(a + la - n, b + lb - n, n) == 0 : memcmp(a, b, n) == 0;
}

static bool overlaps(const char *p1, const char *s1, const char *p2, const char *s2)
{
    return related(p1, strlen(p1), p2, strlen(p2), false) &&
           related(s1, strlen(s1), s2, strlen(s2), true);
}

static bool clashes_with_earlier(const lw *L, const tree *t)
{
    for (size_t i = 0; i < L->n_mirrors; i++) {
        const lw_mirror *mi = &L->mirrors[i];
        if (overlaps(t->prefix, t->suffix, mi->params, ""))
            return true;
        for (size_t k = 0; k < mi->n_slots; k++)
            if (overlaps(t->prefix, t->suffix, mi->slots[k].prefix, mi->slots[k].suffix))
                return true;
    }
    return false;
}

/* No tree may hold another's names, in this statement or an earlier one. */
static bool trees_ok(lw *L, const tree *all, size_t n)
{
    size_t earlier = 0;
    for (size_t i = 0; i < L->n_mirrors; i++)
        earlier += 1 + L->mirrors[i].n_slots;
    for (size_t i = 0; i < n; i++) {
        if (earlier + i >= MR_MAX_PREFIXES) {
            lw_error(L, all[i].span, "mirror-prefix", NULL, 0,
                     "more than %d mirror prefixes: a recipe's mirror statements declare at "
                     "most %d trees in all",
                     MR_MAX_PREFIXES, MR_MAX_PREFIXES);
            return false;
        }
        if (strlen(all[i].text) > MR_MAX_PREFIX_LEN) {
            lw_error(L, all[i].span, "mirror-prefix", NULL, 0,
                     "a mirror prefix may be at most %d bytes, not %zu", MR_MAX_PREFIX_LEN,
                     strlen(all[i].text));
            return false;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!all[i].prefix[0]) {
            lw_error(L, all[i].span, "mirror-prefix", NULL, 0, "a mirror prefix may not be empty");
            return false;
        }
        for (size_t j = 0; j < i; j++)
            if (overlaps(all[i].prefix, all[i].suffix, all[j].prefix, all[j].suffix)) {
                lw_error(L, all[i].span, "mirror-prefix", NULL, 0,
                         "prefixes \"%s\" and \"%s\" overlap: one tree would hold the other",
                         all[j].text, all[i].text);
                return false;
            }
        if (clashes_with_earlier(L, &all[i])) {
            lw_error(L, all[i].span, "mirror-prefix", NULL, 0,
                     "\"%s\" overlaps a tree an earlier mirror declared", all[i].text);
            return false;
        }
    }
    return true;
}

/* A slot as written: a prefix ("opt/mu/"), or with $1 where the rest of
 * the parameter's name goes ("state/param_states/$1/m"). */
static bool slot_of(lw *L, const ast_string *a, mr_role role, mr_slot *t)
{
    const char *text = a->text, *d = strchr(text, '$');
    *t = (mr_slot){.text = ar_strdup(L->ar, text), .role = role, .dtype = SURG_DTYPE_COUNT};
    if (d && (d[1] != '1' || strchr(d + 2, '$'))) {
        lw_error(L, a->span, "mirror-slot", NULL, 0,
                 "a slot is a prefix (\"opt/mu/\") or holds $1 once, where the parameter's "
                 "name under the params prefix goes (\"state/$1/m\"): \"%s\"",
                 text);
        return false;
    }
    size_t n = d ? (size_t)(d - text) : strlen(text);
    t->prefix = ar_strndup(L->ar, text, n);
    t->suffix = ar_strdup(L->ar, d ? d + 2 : "");
    if (!t->text || !t->prefix || !t->suffix)
        return L->nomem = true, false;
    t->plen = n;
    t->slen = strlen(t->suffix);
    return true;
}

/* What new slots are made of: the dtype the tree's slots share (those not
 * [1] in a factored mirror, whose [1] placeholders have their own), or
 * none when they differ. A factored mirror's plain slot is a placeholder
 * tree when every slot in it is [1] and some parameter is not. */
static void tree_types(lw *L, lw_mirror *mi, mr_slot *t, bool some_param_not_one)
{
    size_t lo, hi, n_one = 0, n_other = 0;
    surg_dtype dt[2] = {SURG_DTYPE_COUNT, SURG_DTYPE_COUNT};
    bool mixed[2] = {false, false};
    state_prefix_range(&L->st, t->prefix, t->plen, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        const char *rest;
        size_t n;
        if (!in_tree(t, L->st.e[i].name, &rest, &n))
            continue;
        const cg_node *x = cg_get(&L->g, state_node(&L->st, i));
        int one = mi->factored && x->rank == 1 && x->shape[0] == 1;
        *(one ? &n_one : &n_other) += 1;
        mixed[one] |= dt[one] != SURG_DTYPE_COUNT && dt[one] != x->dtype;
        dt[one] = x->dtype;
    }
    t->dtype = mixed[0] ? SURG_DTYPE_COUNT : dt[0];
    t->ph_dtype = mixed[1] || dt[1] == SURG_DTYPE_COUNT ? SURG_F32 : dt[1];
    if (t->dtype == SURG_DTYPE_COUNT && !n_other && !mixed[1])
        t->dtype = dt[1];
    t->placeholder = t->role == MR_SLOT && mi->factored && n_one && !n_other &&
                     some_param_not_one;
}

/* The clauses: `factored "V", "ROW", "COL"` once, `min N` once after it. */
static bool clauses_of(lw *L, const ast_stmt *s, const ast_string **factored, uint64_t *min_dim)
{
    const ast_clause *min = NULL;
    *factored = NULL;
    *min_dim = 128; /* t5x's and Optax's min_dim_size_to_factor */
    for (const ast_clause *c = s->clauses; c; c = c->next) {
        if ((c->kind == CL_FACTORED && *factored) || (c->kind == CL_MIN && min)) {
            lw_error(L, c->span, "mirror-clause", NULL, 0, "'%s' is given twice", c->name);
            return false;
        }
        if (c->kind == CL_MIN)
            min = c;
        else
            *factored = c->names;
    }
    size_t n = 0;
    for (const ast_string *t = *factored; t; t = t->next)
        n++;
    if (*factored && n != 3) {
        lw_error(L, s->clauses->span, "mirror-clause", NULL, 0,
                 "factored takes three slots: the second moment and its row and column "
                 "factors (t5x's v, v_row, v_col), not %zu",
                 n);
        return false;
    }
    if (min && !*factored) {
        lw_error(L, min->span, "mirror-clause", NULL, 0,
                 "'min' is the shortest axis that is factored: it needs 'factored'");
        return false;
    }
    int64_t v;
    if (min && !lw_integer(L, min->number, "the shortest factored axis", 0, INT64_MAX, &v))
        return false;
    if (min)
        *min_dim = (uint64_t)v;
    return true;
}

static bool some_param_not_one(lw *L, const char *prefix)
{
    size_t lo, hi;
    state_prefix_range(&L->st, prefix, strlen(prefix), &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        const cg_node *x = cg_get(&L->g, state_node(&L->st, i));
        if (x->rank != 1 || x->shape[0] != 1)
            return true;
    }
    return false;
}

void mr_declare(lw *L, const ast_stmt *s)
{
    const ast_string *factored;
    lw_mirror mi = {.params = s->patterns->text, .plen = strlen(s->patterns->text), .at = s->span};
    if (!clauses_of(L, s, &factored, &mi.min_dim))
        return;
    mi.factored = factored != NULL;
    for (const ast_string *t = s->targets; t; t = t->next)
        mi.n_slots++;
    mi.n_slots += mi.factored ? 3 : 0;
    mi.slots = ar_array(L->ar, mi.n_slots, sizeof *mi.slots);
    tree *trees = ar_array(L->ar, mi.n_slots + 1, sizeof *trees);
    if (!mi.slots || !trees) {
        L->nomem = true;
        return;
    }
    size_t k = 0;
    for (const ast_string *t = s->targets; t; t = t->next)
        if (!slot_of(L, t, MR_SLOT, &mi.slots[k++]))
            return;
    static const mr_role roles[] = {MR_V, MR_ROW, MR_COL};
    for (const ast_string *t = factored; t; t = t->next, k++)
        if (!slot_of(L, t, roles[k - (mi.n_slots - 3)], &mi.slots[k]))
            return;
    trees[0] = (tree){mi.params, "", mi.params, s->patterns->span};
    const ast_string *a = s->targets ? s->targets : factored;
    for (k = 0; k < mi.n_slots; k++, a = a->next ? a->next : factored)
        trees[k + 1] = (tree){mi.slots[k].prefix, mi.slots[k].suffix, mi.slots[k].text, a->span};
    if (!trees_ok(L, trees, mi.n_slots + 1))
        return;
    size_t lo, hi;
    state_prefix_range(&L->st, mi.params, mi.plen, &lo, &hi);
    if (lo == hi) {
        lw_error(L, s->patterns->span, "mirror-empty", NULL, 0,
                 "no tensor is under \"%s\": there are no parameters to mirror",
                 s->patterns->text);
        return;
    }
    mi.params = ar_strdup(L->ar, mi.params); /* the program outlives the recipe */
    L->nomem |= !mi.params;
    bool not_one = some_param_not_one(L, s->patterns->text);
    for (k = 0; k < mi.n_slots && !L->nomem; k++)
        tree_types(L, &mi, &mi.slots[k], not_one);
    lw_mirror *all = ar_array(L->ar, L->n_mirrors + 1, sizeof *all);
    if (!all || L->nomem) {
        L->nomem = true;
        return;
    }
    if (L->n_mirrors)
        memcpy(all, L->mirrors, L->n_mirrors * sizeof *all);
    all[L->n_mirrors] = mi;
    L->mirrors = all;
    unsigned before = L->errors;
    check_trees(L, &all[L->n_mirrors]);
    if (L->errors == before)
        L->n_mirrors++; /* a mirror that does not hold is not kept */
}
