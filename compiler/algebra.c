/* algebra.c: the types of map's linear algebra: NumPy broadcasting of two
 * shapes, matmul's operands and result, and a reduction over one axis.
 * Shapes only (expr.c makes the nodes); every error names both shapes. */
#include <stdio.h>
#include <string.h>

#include "compiler/lower.h"

bool lw_broadcast_shape(lw *L, src_span at, const cg_node *a, const cg_node *b, uint32_t *rank,
                        uint64_t *shape)
{
    uint32_t r = a->rank > b->rank ? a->rank : b->rank;
    for (uint32_t i = 0; i < r; i++) { /* i counts from the last axis */
        uint64_t x = i < a->rank ? a->shape[a->rank - 1 - i] : 1;
        uint64_t y = i < b->rank ? b->shape[b->rank - 1 - i] : 1;
        if (x != y && x != 1 && y != 1) {
            lw_error(L, at, "shape", NULL, 0,
                     "shapes %s and %s do not broadcast: axis %u of the first is %llu, axis %u "
                     "of the second is %llu (from the last axis, sizes must be equal or 1)",
                     lw_type(a, 0), lw_type(b, 1), a->rank - 1 - i, (unsigned long long)x,
                     b->rank - 1 - i, (unsigned long long)y);
            return false;
        }
        shape[r - 1 - i] = x == 1 ? y : x;
    }
    *rank = r;
    return true;
}

/* The batch axes of a matmul operand: all but its last two (none for 1-D). */
static uint32_t batch_rank(const cg_node *x) { return x->rank >= 2 ? x->rank - 2 : 0; }

bool lw_matmul_type(lw *L, src_span at, const cg_node *a, const cg_node *b, cg_node *out,
                    uint64_t *shape)
{
    if (a->rank == 0 || b->rank == 0) {
        lw_error(L, at, "matmul", NULL, 0,
                 "matmul of %s and %s: both operands need at least one axis (a scalar "
                 "multiplies with '*')",
                 lw_type(a, 0), lw_type(b, 1));
        return false;
    }
    bool vl = a->rank == 1, vr = b->rank == 1;
    uint64_t k_a = a->shape[a->rank - 1], k_b = b->shape[vr ? 0 : b->rank - 2];
    if (k_a != k_b) {
        lw_error(L, at, "matmul", NULL, 0,
                 "matmul of %s and %s: axis %u of the first is %llu but axis %u of the second "
                 "is %llu (they must be equal)",
                 lw_type(a, 0), lw_type(b, 1), a->rank - 1, (unsigned long long)k_a,
                 vr ? 0 : b->rank - 2, (unsigned long long)k_b);
        return false;
    }
    uint32_t ba = batch_rank(a), bb = batch_rank(b), r = ba > bb ? ba : bb;
    for (uint32_t i = 0; i < r; i++) {
        uint64_t x = i < ba ? a->shape[ba - 1 - i] : 1, y = i < bb ? b->shape[bb - 1 - i] : 1;
        if (x != y && x != 1 && y != 1) {
            lw_error(L, at, "matmul", NULL, 0,
                     "matmul of %s and %s: the batch axes do not broadcast: axis %u of the "
                     "first is %llu and axis %u of the second is %llu",
                     lw_type(a, 0), lw_type(b, 1), ba - 1 - i, (unsigned long long)x,
                     bb - 1 - i, (unsigned long long)y);
            return false;
        }
        shape[r - 1 - i] = x == 1 ? y : x;
    }
    out->a.matmul.m = vl ? 1 : a->shape[a->rank - 2];
    out->a.matmul.k = k_a;
    out->a.matmul.n = vr ? 1 : b->shape[b->rank - 1];
    out->a.matmul.vec_left = vl;
    out->a.matmul.vec_right = vr;
    if (!vl)
        shape[r++] = out->a.matmul.m;
    if (!vr)
        shape[r++] = out->a.matmul.n;
    out->rank = r;
    return true;
}

/* n * elem in decimal, or "more than 2^64". */
static const char *too_many(uint64_t n, uint64_t elem)
{
    static char text[32];
    uint64_t b;
    if (__builtin_mul_overflow(n, elem, &b))
        return "more than 2^64";
    snprintf(text, sizeof text, "%llu", (unsigned long long)b);
    return text;
}

bool lw_held_fits(lw *L, src_span at, const cg_node *x, uint64_t elem, const char *what)
{
    uint64_t bytes;
    if (__builtin_mul_overflow(x->nelems, elem, &bytes) || bytes > LW_HOLD_MAX) {
        lw_error(L, at, "hold-size", NULL, 0,
                 "%s, %s, would be held in memory whole: %s bytes, over the bound of 1 GiB",
                 what, lw_type(x, 0), too_many(x->nelems, elem));
        return false;
    }
    return true;
}

bool lw_reduce_type(lw *L, src_span at, const cg_node *x, int64_t axis, bool keepdims,
                    cg_node *out, uint64_t *shape)
{
    if (axis < -(int64_t)x->rank || axis >= (int64_t)x->rank) {
        if (x->rank)
            lw_error(L, at, "axis", NULL, 0,
                     "axis %lld is out of range for %s: its axes are 0 to %u, or -%u to -1",
                     (long long)axis, lw_type(x, 0), x->rank - 1, x->rank);
        else
            lw_error(L, at, "axis", NULL, 0, "axis %lld is out of range for %s, which has no axes",
                     (long long)axis, lw_type(x, 0));
        return false;
    }
    uint32_t a = (uint32_t)(axis < 0 ? axis + (int64_t)x->rank : axis), r = 0;
    uint64_t outer = 1, inner = 1;
    for (uint32_t d = 0; d < x->rank; d++) {
        if (d < a)
            outer *= x->shape[d];
        else if (d > a)
            inner *= x->shape[d];
        if (d != a || keepdims)
            shape[r++] = d == a ? 1 : x->shape[d];
    }
    out->rank = r;
    out->a.reduce.over = true;
    out->a.reduce.keepdims = keepdims;
    out->a.reduce.axis = a;
    out->a.reduce.outer = outer;
    out->a.reduce.len = x->shape[a];
    out->a.reduce.inner = inner;
    return true;
}
