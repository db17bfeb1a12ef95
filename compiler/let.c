/* let.c: the names `let NAME = EXPR` gives to expressions. A name stands
 * for its expression in the maps after it, lowered there with that map's x
 * and captures, once per match: every use of a name in one map is one value
 * (one bernoulli mask, one reduction), so a merge writes a task vector or a
 * dot product once and uses it where it needs it. Names are found through a
 * hash table; a value may use only the names defined before it, so no name
 * refers to itself and every walk through names is bounded by the depth
 * checked here. */
#include <stdio.h>
#include <string.h>

#include "compiler/lower.h"

struct lw_lets {
    lw_let **slot; /* open addressing, a power of two; NULL: empty */
    size_t cap, n;
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static lw_let **place(struct lw_lets *t, const char *name)
{
    size_t i = (size_t)hash(name) & (t->cap - 1);
    while (t->slot[i] && strcmp(t->slot[i]->name, name) != 0)
        i = (i + 1) & (t->cap - 1);
    return &t->slot[i];
}

static bool grow(lw *L)
{
    struct lw_lets *t = L->lets;
    if (!t && !(t = L->lets = ar_alloc(L->ar, sizeof *t)))
        return false;
    if (t->n + 1 <= t->cap / 2)
        return true;
    size_t cap = t->cap ? t->cap * 2 : 64;
    lw_let **old = t->slot, **slot = ar_array(L->ar, cap, sizeof *slot);
    if (!slot)
        return false;
    memset(slot, 0, cap * sizeof *slot);
    size_t had = t->cap;
    t->slot = slot;
    t->cap = cap;
    for (size_t i = 0; i < had; i++)
        if (old[i])
            *place(t, old[i]->name) = old[i];
    return true;
}

const lw_let *lw_let_defined(const lw *L, const char *name)
{
    if (!L->lets || !L->lets->n)
        return NULL;
    return *place(L->lets, name);
}

lw_let *lw_let_find(const lw *L, const char *name, uint32_t scope)
{
    lw_let *v = (lw_let *)lw_let_defined(L, name);
    return v && v->seq < scope ? v : NULL;
}

unsigned lw_let_depth(const lw *L, const ast_expr *e, uint32_t scope)
{
    unsigned d = 0;
    switch (e->kind) {
    case EX_NUMBER:
    case EX_STRING: return 1;
    case EX_IDENT: {
        const lw_let *v = lw_let_find(L, e->u.ident, scope);
        return v ? v->depth : 1;
    }
    case EX_NEG: return 1 + lw_let_depth(L, e->u.operand, scope);
    case EX_BINARY:
        d = lw_let_depth(L, e->u.binary.lhs, scope);
        unsigned r = lw_let_depth(L, e->u.binary.rhs, scope);
        return 1 + (r > d ? r : d);
    case EX_CALL:
        for (const ast_arg *a = e->u.call.args; a; a = a->next) {
            unsigned k = lw_let_depth(L, a->value, scope);
            d = k > d ? k : d;
        }
        return 1 + d;
    }
    return 1;
}

void lw_let_define(lw *L, const ast_stmt *s)
{
    const char *name = s->word;
    if (strcmp(name, "x") == 0 || strcmp(name, "true") == 0 || strcmp(name, "false") == 0) {
        lw_error(L, s->word_span, "let-name", NULL, 0,
                 strcmp(name, "x") == 0 ? "'x' is the matched tensor; a let cannot name it"
                                        : "'%s' is a truth value; a let cannot name it",
                 name);
        return;
    }
    const lw_let *had = lw_let_defined(L, name);
    if (had) {
        uint32_t line, col;
        src_position(L->src, had->at.start, &line, &col);
        char note[64];
        snprintf(note, sizeof note, "it was defined at %u:%u", line, col);
        const char *notes[] = {note};
        lw_error(L, s->word_span, "let-twice", notes, 1,
                 "'%s' is already defined; a name is given once", name);
        return;
    }
    uint32_t seq = L->lets ? (uint32_t)L->lets->n + 1 : 1;
    unsigned depth = lw_let_depth(L, s->expr, seq);
    if (depth > AST_MAX_DEPTH) {
        lw_error(L, s->expr->span, "let-depth", NULL, 0,
                 "this expression nests more than %d levels deep with the names it uses",
                 AST_MAX_DEPTH);
        return;
    }
    lw_let *v = ar_alloc(L->ar, sizeof *v);
    if (!v || !grow(L)) {
        L->nomem = true;
        return;
    }
    *v = (lw_let){.name = name, .expr = s->expr, .at = s->word_span, .seq = seq,
                  .depth = depth, .node = CG_NONE};
    *place(L->lets, name) = v;
    L->lets->n++;
}
