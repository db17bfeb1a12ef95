/* mirror.c: slot trees that follow their parameter tree. The statements call
 * in here with what they did to a parameter; the slots get the same, in the
 * same change. A final check catches slots a recipe changed by hand. */
#include "compiler/mirror.h"

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

const char *mr_slot_name(lw *L, const lw_mirror *mi, size_t k, const char *param)
{
    const char *rest = param + mi->plen;
    size_t a = strlen(mi->slots[k]), b = strlen(rest);
    char *s = ar_alloc(L->ar, a + b + 1);
    if (!s) {
        L->nomem = true;
        return "";
    }
    memcpy(s, mi->slots[k], a);
    memcpy(s + a, rest, b + 1);
    return s;
}

/* prefix + rest, looked up without leaving a copy in the arena: a lookup
 * is made for every match of every statement. */
static size_t find_joined(lw *L, const char *prefix, const char *rest)
{
    size_t a = strlen(prefix), b = strlen(rest);
    char *s = malloc(a + b + 1);
    if (!s) {
        L->nomem = true;
        return STATE_NONE;
    }
    memcpy(s, prefix, a);
    memcpy(s + a, rest, b + 1);
    size_t e = state_find(&L->st, s);
    free(s);
    return e;
}

size_t mr_slot_entry(lw *L, const lw_mirror *mi, size_t k, const char *param)
{
    return find_joined(L, mi->slots[k], param + mi->plen);
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
    const cg_node *p = cg_get(&L->g, node);
    for (size_t k = 0; k < mi->n_slots; k++) {
        surg_dtype dt = mi->slot_dtype[k] < SURG_DTYPE_COUNT ? mi->slot_dtype[k] : p->dtype;
        /* p may move as nodes are added: read what is needed first */
        uint32_t rank = p->rank;
        const uint64_t *shape = p->shape;
        cg_id z = mr_zeros(L, dt, rank, shape, at);
        p = cg_get(&L->g, node);
        out[(*n)++] = (named){mr_slot_name(L, mi, k, param), param, at, z, NULL};
    }
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
        const cg_node *p = cg_get(&L->g, node);
        surg_dtype dt = mi->slot_dtype[k] < SURG_DTYPE_COUNT ? mi->slot_dtype[k] : p->dtype;
        uint32_t rank = p->rank; /* p may move as nodes are added */
        out[(*n)++] = (named){name, to, at, mr_zeros(L, dt, rank, p->shape, at), NULL};
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
    const cg_node *p = cg_get(&L->g, m->node);
    surg_dtype dt = mi->slot_dtype[k] < SURG_DTYPE_COUNT ? mi->slot_dtype[k] : p->dtype;
    *from = m->name;
    return mr_zeros(L, dt, p->rank, p->shape, at); /* the shape is the arena's: stays put */
}

/* ---- checking the trees ----------------------------------------------- */

static bool same_shape(const cg_node *a, const cg_node *b)
{
    return a->rank == b->rank && memcmp(a->shape, b->shape, a->rank * sizeof *a->shape) == 0;
}

/* Every parameter has each slot, of its shape; every slot has its
 * parameter. One error per mismatch, up to a limit; past it the others are
 * counted, and a slot tree that holds nothing is not searched. Names are
 * looked up without copies in the arena. */
static void check_trees(lw *L, const lw_mirror *mi)
{
    size_t reported = 0, more = 0, lo, hi;
    bool *empty = calloc(mi->n_slots ? mi->n_slots : 1, sizeof *empty);
    if (!empty) {
        L->nomem = true;
        return;
    }
    for (size_t k = 0; k < mi->n_slots; k++) {
        state_prefix_range(&L->st, mi->slots[k], strlen(mi->slots[k]), &lo, &hi);
        empty[k] = lo == hi;
    }
    state_prefix_range(&L->st, mi->params, mi->plen, &lo, &hi);
    for (size_t i = lo; i < hi && !L->nomem; i++) {
        const char *p = L->st.e[i].name;
        if (L->st.e[i].tied)
            continue; /* its stored tensor's slots are its own */
        const cg_node *pn = cg_get(&L->g, L->st.e[i].node);
        for (size_t k = 0; k < mi->n_slots; k++) {
            size_t e = empty[k] ? STATE_NONE : mr_slot_entry(L, mi, k, p);
            if (e != STATE_NONE && same_shape(pn, cg_get(&L->g, state_node(&L->st, e))))
                continue;
            if (reported++ >= MR_MAX_REPORTS) {
                more++;
                continue;
            }
            if (e == STATE_NONE)
                lw_error(L, mi->at, "mirror-missing", NULL, 0,
                         "\"%s\" has no optimizer slot \"%s%s\"", p, mi->slots[k], p + mi->plen);
            else
                lw_error(L, mi->at, "mirror-shape", NULL, 0,
                         "slot \"%s\" is %s, but its parameter \"%s\" is %s", L->st.e[e].name,
                         lw_type(cg_get(&L->g, state_node(&L->st, e)), 0), p, lw_type(pn, 1));
        }
    }
    free(empty);
    for (size_t k = 0; k < mi->n_slots && !L->nomem; k++) {
        size_t plen = strlen(mi->slots[k]);
        state_prefix_range(&L->st, mi->slots[k], plen, &lo, &hi);
        for (size_t i = lo; i < hi; i++) {
            const char *rest = L->st.e[i].name + plen;
            if (find_joined(L, mi->params, rest) != STATE_NONE || L->nomem)
                continue;
            if (reported++ >= MR_MAX_REPORTS) {
                more++;
                continue;
            }
            lw_error(L, mi->at, "mirror-extra", NULL, 0,
                     "slot \"%s\" has no parameter \"%s%s\"", L->st.e[i].name, mi->params, rest);
        }
    }
    if (more)
        lw_error(L, mi->at, "mirror-missing", NULL, 0, "and %zu more mismatched slots", more);
}

void mr_check_all(lw *L)
{
    for (size_t i = 0; i < L->n_mirrors; i++)
        check_trees(L, &L->mirrors[i]);
}

/* ---- the statement ---------------------------------------------------- */

static bool overlaps(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    return strncmp(a, b, la < lb ? la : lb) == 0;
}

static bool clashes_with_earlier(const lw *L, const char *prefix)
{
    for (size_t i = 0; i < L->n_mirrors; i++) {
        const lw_mirror *mi = &L->mirrors[i];
        if (overlaps(prefix, mi->params))
            return true;
        for (size_t k = 0; k < mi->n_slots; k++)
            if (overlaps(prefix, mi->slots[k]))
                return true;
    }
    return false;
}

/* No prefix may hold another, in this statement or an earlier one. */
static bool prefixes_ok(lw *L, const ast_stmt *s)
{
    size_t n = 1;
    for (const ast_string *t = s->targets; t; t = t->next)
        n++;
    const ast_string **all = ar_array(L->ar, n, sizeof *all);
    if (!all)
        return L->nomem = true, false;
    n = 0;
    all[n++] = s->patterns;
    for (const ast_string *t = s->targets; t; t = t->next)
        all[n++] = t;
    size_t earlier = 0;
    for (size_t i = 0; i < L->n_mirrors; i++)
        earlier += 1 + L->mirrors[i].n_slots;
    for (size_t i = 0; i < n; i++) {
        if (earlier + i >= MR_MAX_PREFIXES) {
            lw_error(L, all[i]->span, "mirror-prefix", NULL, 0,
                     "more than %d mirror prefixes: a recipe's mirror statements declare at "
                     "most %d trees in all",
                     MR_MAX_PREFIXES, MR_MAX_PREFIXES);
            return false;
        }
        if (strlen(all[i]->text) > MR_MAX_PREFIX_LEN) {
            lw_error(L, all[i]->span, "mirror-prefix", NULL, 0,
                     "a mirror prefix may be at most %d bytes, not %zu", MR_MAX_PREFIX_LEN,
                     strlen(all[i]->text));
            return false;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!all[i]->text[0]) {
            lw_error(L, all[i]->span, "mirror-prefix", NULL, 0, "a mirror prefix may not be empty");
            return false;
        }
        for (size_t j = 0; j < i; j++)
            if (overlaps(all[i]->text, all[j]->text)) {
                lw_error(L, all[i]->span, "mirror-prefix", NULL, 0,
                         "prefixes \"%s\" and \"%s\" overlap: one tree would hold the other",
                         all[j]->text, all[i]->text);
                return false;
            }
        if (clashes_with_earlier(L, all[i]->text)) {
            lw_error(L, all[i]->span, "mirror-prefix", NULL, 0,
                     "\"%s\" overlaps a tree an earlier mirror declared", all[i]->text);
            return false;
        }
    }
    return true;
}

/* The dtype the slots under a prefix share (new slots are made of it), or
 * none when they differ. */
static surg_dtype common_dtype(lw *L, const char *prefix)
{
    size_t lo, hi;
    state_prefix_range(&L->st, prefix, strlen(prefix), &lo, &hi);
    surg_dtype dt = SURG_DTYPE_COUNT;
    for (size_t i = lo; i < hi; i++) {
        surg_dtype d = cg_get(&L->g, state_node(&L->st, i))->dtype;
        if (dt != SURG_DTYPE_COUNT && d != dt)
            return SURG_DTYPE_COUNT;
        dt = d;
    }
    return dt;
}

void mr_declare(lw *L, const ast_stmt *s)
{
    if (!prefixes_ok(L, s))
        return;
    size_t lo, hi, n = 0;
    state_prefix_range(&L->st, s->patterns->text, strlen(s->patterns->text), &lo, &hi);
    if (lo == hi) {
        lw_error(L, s->patterns->span, "mirror-empty", NULL, 0,
                 "no tensor is under \"%s\": there are no parameters to mirror",
                 s->patterns->text);
        return;
    }
    for (const ast_string *t = s->targets; t; t = t->next)
        n++;
    lw_mirror *all = ar_array(L->ar, L->n_mirrors + 1, sizeof *all);
    const char **slots = ar_array(L->ar, n, sizeof *slots);
    surg_dtype *dts = ar_array(L->ar, n, sizeof *dts);
    if (!all || !slots || !dts) {
        L->nomem = true;
        return;
    }
    size_t k = 0;
    for (const ast_string *t = s->targets; t; t = t->next, k++) {
        slots[k] = ar_strdup(L->ar, t->text); /* the program outlives the recipe */
        dts[k] = common_dtype(L, t->text);
        L->nomem |= !slots[k];
    }
    if (L->n_mirrors)
        memcpy(all, L->mirrors, L->n_mirrors * sizeof *all);
    all[L->n_mirrors] = (lw_mirror){ar_strdup(L->ar, s->patterns->text), strlen(s->patterns->text),
                                    slots, dts, n, s->span};
    L->mirrors = all;
    unsigned before = L->errors;
    check_trees(L, &all[L->n_mirrors]);
    if (L->errors == before)
        L->n_mirrors++; /* a mirror that does not hold is not kept */
}
