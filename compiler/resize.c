/* resize.c: the `resize` statement written as the map it stands for, one
 * for each match (the count of new places depends on the match's shape):
 * slice(x, A, 0, S) to truncate, concat(x, repeat(mean(x, axis=A,
 * keepdims=true), S - n, A), A) to grow by the mean. A map it is, so its
 * types, its tied names and its optimizer slots are the map's. */
#include <stdio.h>
#include <string.h>

#include "compiler/statements.h"

typedef struct sugar {
    lw *L;
    src_span at; /* every node made points at the statement */
} sugar;

static ast_expr *node(sugar *g, ast_expr_kind kind)
{
    ast_expr *e = ar_alloc(g->L->ar, sizeof *e);
    if (!e)
        return g->L->nomem = true, NULL;
    *e = (ast_expr){.kind = kind, .span = g->at, .depth = 1};
    return e;
}

static ast_expr *ident(sugar *g, const char *name)
{
    ast_expr *e = node(g, EX_IDENT);
    if (e)
        e->u.ident = name;
    return e;
}

static ast_expr *whole(sugar *g, uint64_t v)
{
    char text[24];
    snprintf(text, sizeof text, "%llu", (unsigned long long)v);
    ast_expr *e = node(g, EX_NUMBER);
    if (e && !(e->u.number.text = ar_strdup(g->L->ar, text)))
        return g->L->nomem = true, NULL;
    if (e)
        e->u.number.value = (double)v;
    return e;
}

/* name(args...), the arguments NULL-terminated; `names` names the last
 * ones (NULL-terminated too, matched from the end): mean(x, axis=A, ...). */
static ast_expr *call(sugar *g, const char *name, ast_expr *const *args, const char *const *names)
{
    size_t n = 0, k = 0;
    while (args[n])
        n++;
    while (names && names[k])
        k++;
    ast_expr *e = node(g, EX_CALL);
    ast_arg *a = ar_array(g->L->ar, n ? n : 1, sizeof *a);
    if (!e || !a)
        return g->L->nomem = true, NULL;
    for (size_t i = 0; i < n; i++) {
        a[i] = (ast_arg){.value = args[i], .next = i + 1 < n ? &a[i + 1] : NULL,
                         .name_span = g->at};
        if (i + k >= n)
            a[i].name = names[i + k - n];
        e->depth = args[i]->depth + 1 > e->depth ? args[i]->depth + 1 : e->depth;
    }
    e->u.call.name = name;
    e->u.call.name_span = g->at;
    e->u.call.args = a;
    return e;
}

const ast_stmt *lw_resize_map(lw *L, const ast_stmt *s, const lw_match *m, uint64_t size)
{
    const cg_node *x = cg_get(&L->g, m->node);
    int64_t axis;
    if (!lw_integer(L, s->axis, "an axis", 0, INT32_MAX, &axis))
        return NULL;
    if ((uint64_t)axis >= x->rank) {
        lw_error(L, s->axis->span, "axis", NULL, 0,
                 x->rank ? "axis %lld is out of range for \"%s\" (%s): the axes here are 0 to %u"
                         : "axis %lld is out of range for \"%s\" (%s), a scalar",
                 (long long)axis, m->name, lw_type(x, 0), x->rank - 1);
        return NULL;
    }
    uint64_t n = x->shape[axis];
    surg_dtype_kind k = surg_dtype_kind_of(x->dtype);
    if (size > n && (k == SURG_KIND_BOOL || k == SURG_KIND_OPAQUE)) {
        const char *notes[] = {"pad(x, A, 0, N) adds places holding zeros, with a map"};
        lw_error(L, s->size->span, "resize-dtype", notes, 1,
                 "resize would grow \"%s\" (%s) by the mean of its places, which %s has not",
                 m->name, lw_type(x, 0), k == SURG_KIND_BOOL ? "a bool tensor" : "a tensor surg cannot compute on");
        return NULL;
    }
    sugar g = {L, s->span};
    ast_expr *e;
    if (size == n) {
        e = ident(&g, "x"); /* the size it has: itself (a tied name matched with it follows) */
    } else if (size < n) {
        ast_expr *args[] = {ident(&g, "x"), whole(&g, (uint64_t)axis), whole(&g, 0),
                            whole(&g, size), NULL};
        e = args[0] && args[1] && args[2] && args[3] ? call(&g, "slice", args, NULL) : NULL;
    } else {
        static const char *const keyword[] = {"axis", "keepdims", NULL};
        ast_expr *margs[] = {ident(&g, "x"), whole(&g, (uint64_t)axis), ident(&g, "true"), NULL};
        ast_expr *mean = margs[0] && margs[1] && margs[2] ? call(&g, "mean", margs, keyword) : NULL;
        ast_expr *rargs[] = {mean, whole(&g, size - n), whole(&g, (uint64_t)axis), NULL};
        ast_expr *rep = mean && rargs[1] && rargs[2] ? call(&g, "repeat", rargs, NULL) : NULL;
        ast_expr *cargs[] = {ident(&g, "x"), rep, whole(&g, (uint64_t)axis), NULL};
        e = cargs[0] && rep && cargs[2] ? call(&g, "concat", cargs, NULL) : NULL;
    }
    ast_stmt *map = e ? ar_alloc(L->ar, sizeof *map) : NULL;
    if (!map)
        return L->nomem = true, NULL;
    *map = *s;
    map->expr = e;
    return map;
}
