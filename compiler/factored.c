/* factored.c: the shapes a mirror's slots must have, Adafactor's factored
 * second moments above all (t5x's v, v_row, v_col; Optax's FactoredState),
 * and how they follow a parameter whose axes a map permutes. */
#include <string.h>

#include "compiler/mirror.h"

bool mr_factored_dims(const lw_mirror *mi, uint32_t rank, const uint64_t *shape, uint32_t *d1,
                      uint32_t *d0)
{
    if (!mi->factored || rank < 2)
        return false;
    /* The last two of the axes sorted by length, stably (NumPy's argsort of
     * a short shape): the longest, and on equal lengths the later axis. */
    uint32_t a = 0, b = 1; /* a sorts before b */
    if (shape[1] < shape[0])
        a = 1, b = 0;
    for (uint32_t i = 2; i < rank; i++) {
        if (shape[i] >= shape[b])
            a = b, b = i;
        else if (shape[i] >= shape[a])
            a = i;
    }
    *d1 = a;
    *d0 = b;
    return shape[a] >= mi->min_dim;
}

static void without(uint32_t rank, const uint64_t *shape, uint32_t axis, uint64_t *out)
{
    for (uint32_t i = 0, j = 0; i < rank; i++)
        if (i != axis)
            out[j++] = shape[i];
}

mr_form mr_slot_shape(const lw_mirror *mi, size_t k, uint32_t rank, const uint64_t *shape,
                      uint32_t *out_rank, uint64_t *out)
{
    const mr_slot *t = &mi->slots[k];
    uint32_t d1 = 0, d0 = 0;
    bool f = t->role != MR_SLOT && mr_factored_dims(mi, rank, shape, &d1, &d0);
    bool full = t->role == MR_SLOT ? !t->placeholder : t->role == MR_V ? !f : false;
    if (full) {
        *out_rank = rank;
        memcpy(out, shape, rank * sizeof *out);
        return MR_FULL;
    }
    if (t->role == MR_SLOT || t->role == MR_V || !f) {
        *out_rank = 1;
        out[0] = 1;
        return MR_PLACEHOLDER;
    }
    *out_rank = rank - 1;
    without(rank, shape, t->role == MR_ROW ? d0 : d1, out);
    return MR_FACTOR;
}

cg_id mr_new_slot(lw *L, const lw_mirror *mi, size_t k, cg_id param, src_span at)
{
    const cg_node *p = cg_get(&L->g, param);
    uint64_t shape[SURG_MAX_RANK];
    uint32_t rank;
    mr_form f = mr_slot_shape(mi, k, p->rank, p->shape, &rank, shape);
    const mr_slot *t = &mi->slots[k];
    surg_dtype dt = f == MR_PLACEHOLDER             ? t->ph_dtype
                    : t->dtype < SURG_DTYPE_COUNT ? t->dtype
                                                  : p->dtype;
    return mr_zeros(L, dt, rank, shape, at);
}

/* ---- following a map ---------------------------------------------------- */

/* The permutation a map's layout calls make of the parameter's axes:
 * axis i of the result is axis perm[i] of the parameter. False when they
 * do more than permute, with *stop the op that does (a reshape that
 * changes the shape, a slice, pad, repeat or concat; OP_INIT: a value not
 * x's). */
static bool layout_perm(lw *L, const ast_stmt *s, const lw_match *m, const lw_matches *ms,
                        cg_id result, uint32_t *perm, bool *failed, cg_op *stop)
{
    cg_id id = lw_map_layout(L, s, m, ms, result, m->node); /* the layout alone, on x */
    if (id == CG_NONE)
        return *failed = true, false;
    const cg_node *n = cg_get(&L->g, id);
    for (uint32_t i = 0; i < n->rank; i++)
        perm[i] = i;
    while (id != m->node) {
        n = cg_get(&L->g, id);
        *stop = n->op;
        if (!n->n_in)
            return false;
        const cg_node *in = cg_get(&L->g, n->in[0]);
        bool same = n->rank == in->rank &&
                    memcmp(n->shape, in->shape, n->rank * sizeof *n->shape) == 0;
        if (n->op == OP_TRANSPOSE)
            for (uint32_t i = 0; i < n->rank; i++)
                perm[i] = n->a.perm[perm[i]];
        else if (n->op != OP_RESHAPE || !same)
            return false;
        id = n->in[0];
    }
    return true;
}

/* The factor `stat`, which averages the parameter's axis `a` away, for the
 * permuted parameter where that axis is `d`: its other axes permuted alike. */
static cg_id permute_factor(lw *L, cg_id stat, const uint32_t *perm, uint32_t rank, uint32_t a,
                            uint32_t d, src_span at)
{
    uint32_t *sp = ar_array(L->ar, rank, sizeof *sp);
    if (!sp)
        return L->nomem = true, CG_NONE;
    const cg_node *x = cg_get(&L->g, stat);
    uint64_t shape[SURG_MAX_RANK];
    bool identity = true;
    for (uint32_t i = 0, j = 0; i < rank; i++) {
        if (i == d)
            continue;
        sp[j] = perm[i] - (perm[i] > a);
        shape[j] = x->shape[sp[j]];
        identity &= sp[j] == j;
        j++;
    }
    if (identity)
        return stat;
    cg_id *in = ar_alloc(L->ar, sizeof *in);
    if (!in)
        return L->nomem = true, CG_NONE;
    *in = stat;
    cg_node n = {.op = OP_TRANSPOSE, .dtype = x->dtype, .rank = rank - 1, .in = in, .n_in = 1,
                 .origin = at};
    n.a.perm = sp;
    return lw_node(L, n, shape);
}

static size_t role_slot(const lw_mirror *mi, mr_role role)
{
    for (size_t k = 0; k < mi->n_slots; k++)
        if (mi->slots[k].role == role)
            return k;
    return 0; /* not reached: a factored mirror has each role */
}

/* A factored parameter whose axes the map permuted: v_row becomes the
 * factor that averages over the new longest axis, v_col the one over the
 * next, each from the old factor that averaged over that same axis. */
static void permute_factors(lw *L, change *c, const ast_stmt *s, const lw_mirror *mi,
                            const lw_match *m, const uint32_t *perm, uint32_t rank,
                            const uint64_t *old_shape, const uint64_t *new_shape)
{
    uint32_t o1, o0, n1, n0;
    mr_factored_dims(mi, rank, old_shape, &o1, &o0);
    mr_factored_dims(mi, rank, new_shape, &n1, &n0);
    size_t e[2] = {mr_slot_entry(L, mi, role_slot(mi, MR_ROW), m->name),
                   mr_slot_entry(L, mi, role_slot(mi, MR_COL), m->name)};
    uint32_t old_axis[2] = {o0, o1}, new_axis[2] = {n0, n1};
    cg_id old[2], now[2];
    for (int r = 0; r < 2; r++) {
        if (e[r] == STATE_NONE || c->touched[e[r]] || L->st.e[e[r]].tied)
            return; /* missing (the final check says so), or the statement's own */
        old[r] = L->st.e[e[r]].node;
    }
    for (int r = 0; r < 2; r++) {
        uint32_t a = perm[new_axis[r]]; /* the parameter's axis it must average over */
        int from = a == old_axis[0] ? 0 : a == old_axis[1] ? 1 : -1;
        if (from < 0) {
            lw_error(L, s->expr->span, "mirror-factored", NULL, 0,
                     "after this map \"%s\" is factored over its axes %u and %u, which were "
                     "axes %u and %u, but its second moments were averaged over axes %u and "
                     "%u: they cannot follow",
                     m->name, n1, n0, perm[n1], perm[n0], o1, o0);
            return;
        }
        now[r] = permute_factor(L, old[from], perm, rank, a, new_axis[r], s->span);
        if (now[r] == CG_NONE)
            return;
    }
    for (int r = 0; r < 2; r++)
        if (now[r] != old[r])
            change_update(L, c, e[r], now[r]);
}

/* Factored second moments follow a permutation of the axes only: each
 * factor averages over a whole axis, and a slice, pad, repeat or concat
 * changes the places it averaged over (what new rows' zero history does
 * to a mean over rows, or what a mean over the rows a slice keeps was, the
 * factors do not hold). */
static void factored_error(lw *L, const ast_stmt *s, const lw_match *m, cg_id result, cg_op stop)
{
    const char *type = lw_type(cg_get(&L->g, result), 0);
    if (stop == OP_RESHAPE) {
        lw_error(L, s->expr->span, "mirror-factored", NULL, 0,
                 "this %s makes \"%s\" %s: its factored second moments can follow a "
                 "transpose, not a reshape",
                 ast_stmt_keyword(s->kind), m->name, type);
        return;
    }
    const char *notes[] = {"v_row and v_col average over whole axes: drop them before this "
                           "statement and fill them anew after it (zeros of the shapes the new "
                           "shape gives them)"};
    if (stop == OP_INIT) {
        lw_error(L, s->expr->span, "mirror-factored", notes, 1,
                 "this %s makes \"%s\" %s from a value that is not x's: its factored second "
                 "moments can follow a transpose of x only",
                 ast_stmt_keyword(s->kind), m->name, type);
        return;
    }
    lw_error(L, s->expr->span, "mirror-factored", notes, 1,
             "this %s makes \"%s\" %s by %s: its factored second moments can follow a "
             "transpose only, not a change of the places along an axis",
             ast_stmt_keyword(s->kind), m->name, type, cg_op_name(stop));
}

void mr_mapped(lw *L, change *c, const ast_stmt *s, const lw_match *m, const lw_matches *ms,
               cg_id result)
{
    const lw_mirror *mi = m->tied ? NULL : mr_find(L, m->name);
    if (!mi)
        return;
    unsigned before = L->errors;
    const cg_node *x = cg_get(&L->g, m->node), *r = cg_get(&L->g, result);
    uint64_t old_shape[SURG_MAX_RANK], new_shape[SURG_MAX_RANK], tmp[SURG_MAX_RANK];
    uint32_t old_rank = x->rank, new_rank = r->rank, d1, d0, t;
    memcpy(old_shape, x->shape, old_rank * sizeof *old_shape);
    memcpy(new_shape, r->shape, new_rank * sizeof *new_shape);
    bool was = mr_factored_dims(mi, old_rank, old_shape, &d1, &d0);
    bool is = mr_factored_dims(mi, new_rank, new_shape, &d1, &d0);
    /* Slots of the parameter's shape follow the layout calls; placeholders stay. */
    for (size_t k = 0; k < mi->n_slots && L->errors == before; k++) {
        size_t e = mr_slot_entry(L, mi, k, m->name);
        if (e == STATE_NONE || c->touched[e] || L->st.e[e].tied ||
            mr_slot_shape(mi, k, old_rank, old_shape, &t, tmp) != MR_FULL ||
            mr_slot_shape(mi, k, new_rank, new_shape, &t, tmp) != MR_FULL)
            continue;
        cg_id v = lw_map_layout(L, s, m, ms, result, L->st.e[e].node);
        if (v != CG_NONE && v != L->st.e[e].node)
            change_update(L, c, e, v);
    }
    if (L->errors != before || (!was && !is))
        return;
    size_t row = mr_slot_entry(L, mi, role_slot(mi, MR_ROW), m->name),
           col = mr_slot_entry(L, mi, role_slot(mi, MR_COL), m->name);
    if ((row == STATE_NONE || c->touched[row]) && (col == STATE_NONE || c->touched[col]))
        return; /* dropped before (to be made anew), or the statement's own */
    uint32_t perm[SURG_MAX_RANK];
    bool failed = false;
    cg_op stop = OP_RESHAPE;
    if (!layout_perm(L, s, m, ms, result, perm, &failed, &stop) || was != is) {
        if (!failed)
            factored_error(L, s, m, result, stop);
        return;
    }
    permute_factors(L, c, s, mi, m, perm, new_rank, old_shape, new_shape);
}

mr_form mr_form_of(lw *L, const lw_mirror *mi, size_t k, cg_id param)
{
    const cg_node *p = cg_get(&L->g, param);
    uint64_t shape[SURG_MAX_RANK];
    uint32_t rank;
    return mr_slot_shape(mi, k, p->rank, p->shape, &rank, shape);
}
