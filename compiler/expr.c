/* expr.c: the EXPR of map, typed into nodes. x is the matched tensor; a
 * number is a weak scalar that takes the type of what it meets; shapes
 * broadcast as NumPy's do (algebra.c); arithmetic on a dtype promotes as JAX
 * does (the wider float wins, two floats of one width meet in the next wider
 * one). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/lower.h"
#include "runtime/numeric.h"
#include "support/suggest.h"

typedef struct ex {
    lw *L;
    const ast_stmt *stmt;
    const lw_match *m;
    const lw_matches *ms;
    uint32_t n_bernoulli; /* bernoulli() calls lowered so far: each its own stream */
    uint32_t scope;       /* the names visible: a map's all, a let's value those before it */
    uint64_t stamp;       /* this lowering, for the names' values (let.c) */
    uint32_t use_line, use_col; /* where the map uses the name being lowered */
    const struct places *sub; /* following a map with a slot: values replaced */
} ex;

#define WEAK SURG_DTYPE_COUNT

static cg_id lower(ex *E, const ast_expr *e);

static const cg_node *node(ex *E, cg_id id) { return cg_get(&E->L->g, id); }

static cg_id constant(ex *E, double v);

static bool is_number(ex *E, cg_id id)
{
    return node(E, id)->op == OP_CONST && node(E, id)->dtype == WEAK;
}

/* A number in a float type, its value rounded to it. */
static cg_id typed_constant(ex *E, surg_dtype dt, double v)
{
    cg_node n = {.op = OP_CONST, .dtype = dt, .origin = E->stmt->span};
    n.a.value = nm_round(dt, v, NM_ROUND);
    return lw_node(E->L, n, NULL);
}

/* Numbers are weak: arithmetic on numbers alone is done here, in double,
 * and stays a number; a number that meets a float is rounded to the type
 * the arithmetic runs in (SPEC §3.2: f32, or f64 for f64), so x * 0.1
 * multiplies by f32(0.1) as NumPy and JAX do for an f32 x, and by the same
 * f32(0.1) for an f16 x, as PyTorch computes half precision. With an integer
 * tensor a number keeps its value (x * 0.5 halves, then rounds when stored). */
static cg_id make(ex *E, cg_op op, surg_dtype dt, uint32_t rank, const uint64_t *shape,
                  const cg_id *operands, uint32_t n_in)
{
    cg_class cls = cg_op_class(op);
    bool arithmetic = (cls == CG_ELEMENTWISE && op != OP_CAST && op != OP_FULL_LIKE) ||
                      cls == CG_REDUCTION;
    cg_id in[3];
    bool numbers = arithmetic && n_in > 0 && n_in <= 3;
    for (uint32_t k = 0; numbers && k < n_in; k++)
        numbers = is_number(E, operands[k]);
    if (numbers) {
        double v[3];
        for (uint32_t k = 0; k < n_in; k++)
            v[k] = node(E, operands[k])->a.value;
        return constant(E, cg_scalar(op, v));
    }
    if (arithmetic && cls == CG_ELEMENTWISE && n_in <= 3 && dt != WEAK &&
        surg_dtype_kind_of(dt) == SURG_KIND_FLOAT) {
        for (uint32_t k = 0; k < n_in; k++) {
            in[k] = operands[k];
            surg_dtype math = dt == SURG_F64 ? SURG_F64 : SURG_F32;
            if (is_number(E, in[k]) &&
                (in[k] = typed_constant(E, math, node(E, operands[k])->a.value)) == CG_NONE)
                return CG_NONE;
        }
        operands = in;
    }
    cg_id *ins = NULL;
    if (n_in) {
        ins = ar_array(E->L->ar, n_in, sizeof *ins);
        if (!ins)
            return E->L->nomem = true, CG_NONE;
        memcpy(ins, operands, n_in * sizeof *operands);
    }
    cg_node n = {.op = op, .dtype = dt, .rank = rank, .in = ins, .n_in = n_in,
                 .origin = E->stmt->span};
    return lw_node(E->L, n, shape);
}

static cg_id constant(ex *E, double v)
{
    cg_node n = {.op = OP_CONST, .dtype = WEAK, .origin = E->stmt->span};
    n.a.value = v;
    return lw_node(E->L, n, NULL);
}

/* ---- types ------------------------------------------------------------ */

static int float_width(surg_dtype d) { return (int)surg_dtype_bits(d); }

static surg_dtype float_of_width(int bits)
{
    return bits <= 8 ? SURG_F16 : bits <= 16 ? SURG_F32 : SURG_F64;
}

static surg_dtype promote(surg_dtype a, surg_dtype b)
{
    if (a == WEAK || a == b)
        return b;
    if (b == WEAK)
        return a;
    bool fa = surg_dtype_kind_of(a) == SURG_KIND_FLOAT, fb = surg_dtype_kind_of(b) == SURG_KIND_FLOAT;
    if (fa && fb) {
        if (float_width(a) != float_width(b))
            return float_width(a) > float_width(b) ? a : b;
        return float_of_width(float_width(a)); /* f16 and bf16 meet in f32 */
    }
    if (fa || fb)
        return fa ? a : b;
    bool unsigned_both = surg_dtype_kind_of(a) == SURG_KIND_UINT &&
                         surg_dtype_kind_of(b) == SURG_KIND_UINT;
    return unsigned_both ? SURG_U64 : SURG_I64;
}

/* Can arithmetic run on this operand? */
static bool computable(ex *E, const ast_expr *e, cg_id id, const char *what)
{
    surg_dtype dt = node(E, id)->dtype;
    if (dt == WEAK)
        return true;
    surg_dtype_kind k = surg_dtype_kind_of(dt);
    if (k == SURG_KIND_OPAQUE || k == SURG_KIND_BOOL) {
        lw_error(E->L, e->span, "dtype-compute", NULL, 0,
                 k == SURG_KIND_BOOL ? "cannot use %s on a bool tensor (cast it first)"
                                     : "cannot use %s on %s: surg carries such tensors but "
                                       "cannot compute on them",
                 what, surg_dtype_recipe_name(dt));
        return false;
    }
    return true;
}

/* NumPy's broadcasting (algebra.c): the result's shape. */
static bool broadcast(ex *E, const ast_expr *e, cg_id a, cg_id b, uint32_t *rank, uint64_t *shape)
{
    return lw_broadcast_shape(E->L, e->span, node(E, a), node(E, b), rank, shape);
}

/* An operand stretched to the result's shape; a scalar stays one (the
 * kernels repeat it). */
static cg_id expand(ex *E, cg_id id, uint32_t rank, const uint64_t *shape)
{
    const cg_node *x = node(E, id);
    if (x->rank == 0 || (x->rank == rank && memcmp(x->shape, shape, rank * sizeof *shape) == 0))
        return id;
    return make(E, OP_BROADCAST, x->dtype, rank, shape, &id, 1);
}

/* ---- arguments -------------------------------------------------------- */

static int count_args(const ast_expr *call)
{
    int n = 0;
    for (const ast_arg *a = call->u.call.args; a; a = a->next)
        n++;
    return n;
}

static bool arity(ex *E, const ast_expr *call, int lo, int hi)
{
    int n = count_args(call);
    for (const ast_arg *a = call->u.call.args; a; a = a->next)
        if (a->name) {
            lw_error(E->L, a->name_span, "call-args", NULL, 0,
                     "%s takes no named arguments", call->u.call.name);
            return false;
        }
    if (n >= lo && n <= hi)
        return true;
    if (lo == hi)
        lw_error(E->L, call->span, "call-args", NULL, 0, "%s takes %d argument%s, not %d",
                 call->u.call.name, lo, lo == 1 ? "" : "s", n);
    else
        lw_error(E->L, call->span, "call-args", NULL, 0, "%s takes %d to %d arguments, not %d",
                 call->u.call.name, lo, hi, n);
    return false;
}

/* An argument written as a whole number, possibly negative. */
static bool int_arg(ex *E, const ast_expr *e, int64_t *out)
{
    bool neg = e->kind == EX_NEG;
    const ast_expr *n = neg ? e->u.operand : e;
    int64_t v;
    if (n->kind != EX_NUMBER) {
        lw_error(E->L, e->span, "call-args", NULL, 0, "expected a whole number here");
        return false;
    }
    ast_number num = {.text = n->u.number.text, .value = n->u.number.value, .span = n->span};
    if (!lw_integer(E->L, &num, "this argument", 0, INT32_MAX, &v))
        return false;
    *out = neg ? -v : v;
    return true;
}

/* ---- calls ------------------------------------------------------------ */

/* The call's first argument, lowered once the number of arguments is
 * checked; CG_NONE after an error. */
static cg_id first_arg(ex *E, const ast_expr *call, int lo, int hi)
{
    if (!arity(E, call, lo, hi))
        return CG_NONE;
    return lower(E, call->u.call.args->value);
}

static cg_id unary(ex *E, const ast_expr *call, cg_op op)
{
    cg_id a = first_arg(E, call, 1, 1);
    if (a == CG_NONE || !computable(E, call, a, call->u.call.name))
        return CG_NONE;
    const cg_node *x = node(E, a);
    return make(E, op, x->dtype, x->rank, x->shape, &a, 1);
}

/* ---- algebra: reductions over an axis, matmul ------------------------- */

/* keepdims=true or false. */
static bool bool_arg(ex *E, const ast_expr *e, bool *out)
{
    if (e->kind == EX_IDENT && (strcmp(e->u.ident, "true") == 0 || strcmp(e->u.ident, "false") == 0)) {
        *out = e->u.ident[0] == 't';
        return true;
    }
    lw_error(E->L, e->span, "call-args", NULL, 0, "keepdims is true or false");
    return false;
}

/* The arguments of a reduction: (x), (x, axis), (x, axis, keepdims), the
 * last two also by name (axis=0, keepdims=true). */
static bool reduction_args(ex *E, const ast_expr *call, const ast_expr **arg)
{
    static const char *const names[] = {NULL, "axis", "keepdims"};
    const char *f = call->u.call.name;
    int pos = 0;
    bool named = false;
    for (const ast_arg *a = call->u.call.args; a; a = a->next) {
        int slot = 0;
        if (!a->name) {
            if (named || pos > 2) {
                lw_error(E->L, a->value->span, "call-args", NULL, 0,
                         named ? "%s: a named argument is followed by one without a name"
                               : "%s takes at most 3 arguments: the tensor, axis and keepdims",
                         f);
                return false;
            }
            slot = pos++;
        } else {
            named = true;
            while (++slot < 3 && strcmp(names[slot], a->name) != 0)
                ;
            if (slot == 3) {
                lw_error(E->L, a->name_span, "call-args", NULL, 0,
                         "%s takes axis= and keepdims=, not %s=", f, a->name);
                return false;
            }
        }
        if (arg[slot]) {
            lw_error(E->L, a->name ? a->name_span : a->value->span, "call-args", NULL, 0,
                     "%s: %s is given twice", f, names[slot] ? names[slot] : "the tensor");
            return false;
        }
        arg[slot] = a->value;
    }
    if (!arg[0])
        lw_error(E->L, call->span, "call-args", NULL, 0,
                 "%s takes a tensor: %s(x), or over one axis %s(x, axis=0, keepdims=true)", f, f,
                 f);
    return arg[0] != NULL;
}

/* norm(x), sum(x, axis=1), mean(x, axis=-1, keepdims=true): over every
 * element (a scalar, or ones on every axis with keepdims), or over one axis,
 * whose result is held in memory while the output is made. */
static cg_id reduction(ex *E, const ast_expr *call, cg_op op)
{
    const ast_expr *arg[3] = {0};
    int64_t axis = 0;
    bool keep = false;
    if (!reduction_args(E, call, arg) || (arg[1] && !int_arg(E, arg[1], &axis)) ||
        (arg[2] && !bool_arg(E, arg[2], &keep)))
        return CG_NONE;
    cg_id a = lower(E, arg[0]);
    if (a == CG_NONE || !computable(E, call, a, call->u.call.name))
        return CG_NONE;
    const cg_node *x = node(E, a);
    cg_node n = {.rank = 0};
    uint64_t shape[SURG_MAX_RANK];
    n.a.reduce.keepdims = keep;
    if (!arg[1]) {
        n.rank = keep ? x->rank : 0;
        for (uint32_t d = 0; d < n.rank; d++)
            shape[d] = 1;
    } else if (x->dtype == WEAK) {
        lw_error(E->L, arg[1]->span, "axis", NULL, 0, "a number has no axes");
        return CG_NONE;
    } else if (!lw_reduce_type(E->L, arg[1]->span, x, axis, keep, &n, shape)) {
        return CG_NONE;
    }
    if (n.a.reduce.over && n.a.reduce.outer * n.a.reduce.inner == 1)
        n.a.reduce.over = false; /* one value: a reduction over everything */
    cg_id id = make(E, op, x->dtype, n.rank, shape, &a, 1);
    if (id == CG_NONE || node(E, id)->op != op)
        return id; /* folded: a number */
    if (n.a.reduce.over && !lw_held_fits(E->L, call->span, node(E, id), 8, "the result of this reduction"))
        return CG_NONE;
    E->L->g.nodes[id].a.reduce = n.a.reduce;
    return id;
}

/* a @ b, matmul(a, b): the right operand is held whole (at the precision
 * the product is computed in), the left streams through in rows. */
static cg_id matmul(ex *E, const ast_expr *e, cg_id a, cg_id b)
{
    if (!computable(E, e, a, "matmul") || !computable(E, e, b, "matmul"))
        return CG_NONE;
    cg_node n = {.op = OP_MATMUL};
    uint64_t shape[SURG_MAX_RANK];
    if (!lw_matmul_type(E->L, e->span, node(E, a), node(E, b), &n, shape))
        return CG_NONE;
    surg_dtype dt = promote(node(E, a)->dtype, node(E, b)->dtype);
    uint64_t elem = dt == SURG_F64 || surg_dtype_kind_of(dt) != SURG_KIND_FLOAT ? 8 : 4;
    if (!lw_held_fits(E->L, e->span, node(E, b), elem, "the right operand of matmul"))
        return CG_NONE;
    cg_id in[2] = {a, b};
    cg_id id = make(E, OP_MATMUL, dt, n.rank, shape, in, 2);
    if (id != CG_NONE)
        E->L->g.nodes[id].a.matmul = n.a.matmul;
    return id;
}

static cg_id matmul_call(ex *E, const ast_expr *call)
{
    if (!arity(E, call, 2, 2))
        return CG_NONE;
    cg_id a = lower(E, call->u.call.args->value), b = CG_NONE;
    if (a == CG_NONE || (b = lower(E, call->u.call.args->next->value)) == CG_NONE)
        return CG_NONE;
    return matmul(E, call, a, b);
}

/* The shape three operands broadcast to (clip, where): the first two's,
 * then the third's against it; `dt` is the pair's type, for the message. */
static bool broadcast3(ex *E, const ast_expr *e, const cg_id *in, surg_dtype dt, uint32_t *rank,
                       uint64_t *shape)
{
    uint32_t r01;
    uint64_t s01[SURG_MAX_RANK];
    if (!broadcast(E, e, in[0], in[1], &r01, s01))
        return false;
    cg_node first = {.dtype = dt, .rank = r01, .shape = s01};
    return lw_broadcast_shape(E->L, e->span, &first, node(E, in[2]), rank, shape);
}

static cg_id clip(ex *E, const ast_expr *call)
{
    if (!arity(E, call, 3, 3))
        return CG_NONE;
    cg_id in[3];
    const ast_arg *a = call->u.call.args;
    for (int i = 0; i < 3; i++, a = a->next)
        if ((in[i] = lower(E, a->value)) == CG_NONE || !computable(E, a->value, in[i], "clip"))
            return CG_NONE;
    uint32_t r;
    uint64_t shape[SURG_MAX_RANK];
    surg_dtype dt = promote(node(E, in[0])->dtype, node(E, in[1])->dtype);
    if (!broadcast3(E, call, in, dt, &r, shape))
        return CG_NONE;
    dt = promote(dt, node(E, in[2])->dtype);
    for (int i = 0; i < 3; i++)
        if ((in[i] = expand(E, in[i], r, shape)) == CG_NONE)
            return CG_NONE;
    return make(E, OP_CLIP, dt, r, shape, in, 3);
}

static cg_id cast(ex *E, const ast_expr *call)
{
    if (!arity(E, call, 2, 2))
        return CG_NONE;
    const ast_expr *d = call->u.call.args->next->value;
    surg_dtype dt = d->kind == EX_IDENT ? surg_dtype_from_recipe_name(d->u.ident) : WEAK;
    if (dt == WEAK) {
        const char *names[SURG_DTYPE_COUNT];
        for (int i = 0; i < SURG_DTYPE_COUNT; i++)
            names[i] = surg_dtype_recipe_name((surg_dtype)i);
        const char *best = d->kind == EX_IDENT ? sg_closest(d->u.ident, names, SURG_DTYPE_COUNT) : NULL;
        char note[64];
        snprintf(note, sizeof note, "did you mean '%s'?", best ? best : "");
        const char *notes[] = {note};
        lw_error(E->L, d->span, "cast-dtype", notes, best ? 1 : 0,
                 "the second argument of cast is a dtype, as cast(x, bf16)");
        return CG_NONE;
    }
    if (surg_dtype_kind_of(dt) == SURG_KIND_OPAQUE) {
        lw_error(E->L, d->span, "dtype-compute", NULL, 0,
                 "cannot cast to %s: surg carries such tensors but cannot compute them",
                 d->u.ident);
        return CG_NONE;
    }
    cg_id a = lower(E, call->u.call.args->value);
    if (a == CG_NONE)
        return CG_NONE;
    if (node(E, a)->dtype != WEAK && surg_dtype_kind_of(node(E, a)->dtype) == SURG_KIND_OPAQUE) {
        lw_error(E->L, call->span, "dtype-compute", NULL, 0,
                 "cannot cast from %s: surg carries such tensors but cannot compute on them",
                 surg_dtype_recipe_name(node(E, a)->dtype));
        return CG_NONE;
    }
    const cg_node *x = node(E, a);
    return make(E, OP_CAST, dt, x->rank, x->shape, &a, 1);
}

static cg_id full_like(ex *E, const ast_expr *call, bool zeros)
{
    if (!arity(E, call, zeros ? 1 : 2, zeros ? 1 : 2))
        return CG_NONE;
    cg_id in[2] = {lower(E, call->u.call.args->value), CG_NONE};
    if (in[0] == CG_NONE)
        return CG_NONE;
    in[1] = zeros ? constant(E, 0) : lower(E, call->u.call.args->next->value);
    if (in[1] == CG_NONE)
        return CG_NONE;
    const cg_node *x = node(E, in[0]);
    if (x->dtype == WEAK || surg_dtype_kind_of(x->dtype) == SURG_KIND_OPAQUE) {
        lw_error(E->L, call->span, "full-like", NULL, 0, "%s needs a tensor it can fill",
                 call->u.call.name);
        return CG_NONE;
    }
    if (node(E, in[1])->rank != 0) {
        lw_error(E->L, call->span, "full-like", NULL, 0,
                 "the value of full_like is a scalar, not %s", lw_type(node(E, in[1]), 0));
        return CG_NONE;
    }
    return make(E, OP_FULL_LIKE, x->dtype, x->rank, x->shape, in, 2);
}

static cg_id transpose(ex *E, const ast_expr *call)
{
    cg_id a = first_arg(E, call, 1, 1 + SURG_MAX_RANK);
    if (a == CG_NONE)
        return CG_NONE;
    const cg_node *x = node(E, a);
    uint32_t *perm = ar_array(E->L->ar, x->rank ? x->rank : 1, sizeof *perm);
    if (!perm)
        return E->L->nomem = true, CG_NONE;
    int n = count_args(call) - 1;
    if (n && (uint32_t)n != x->rank) {
        lw_error(E->L, call->span, "transpose", NULL, 0,
                 "transpose of %s needs %u axes, not %d", lw_type(x, 0), x->rank, n);
        return CG_NONE;
    }
    uint64_t seen = 0, shape[SURG_MAX_RANK];
    const ast_arg *arg = call->u.call.args->next;
    for (uint32_t i = 0; i < x->rank; i++, arg = arg ? arg->next : NULL) {
        int64_t v = (int64_t)(x->rank - 1 - i);
        if (n && !int_arg(E, arg->value, &v))
            return CG_NONE;
        if (v < 0 || (uint64_t)v >= x->rank || (seen >> v) & 1) {
            lw_error(E->L, call->span, "transpose", NULL, 0,
                     "the axes of transpose must be a permutation of 0..%u", x->rank - 1);
            return CG_NONE;
        }
        seen |= 1ull << v;
        perm[i] = (uint32_t)v;
        shape[i] = x->shape[v];
    }
    cg_id id = make(E, OP_TRANSPOSE, x->dtype, x->rank, shape, &a, 1);
    if (id != CG_NONE)
        E->L->g.nodes[id].a.perm = perm;
    return id;
}

static cg_id reshape(ex *E, const ast_expr *call)
{
    cg_id a = first_arg(E, call, 1, 1 + SURG_MAX_RANK);
    if (a == CG_NONE)
        return CG_NONE;
    const cg_node *x = node(E, a);
    uint64_t shape[SURG_MAX_RANK], known = 1;
    int infer = -1, r = 0;
    for (const ast_arg *arg = call->u.call.args->next; arg; arg = arg->next, r++) {
        int64_t v;
        if (!int_arg(E, arg->value, &v))
            return CG_NONE;
        if (v < -1 || (v == -1 && infer >= 0)) {
            lw_error(E->L, arg->value->span, "reshape", NULL, 0,
                     "a dimension of reshape is a size, or -1 once for the one to infer");
            return CG_NONE;
        }
        if (v == -1)
            infer = r;
        else if (__builtin_mul_overflow(known, (uint64_t)v, &known))
            known = UINT64_MAX;
        shape[r] = v < 0 ? 0 : (uint64_t)v;
    }
    if (infer >= 0 && known && x->nelems % known == 0)
        shape[infer] = x->nelems / known, known = x->nelems;
    if (known != x->nelems || (infer >= 0 && known == 0)) {
        buf b;
        buf_init(&b);
        for (int i = 0; i < r; i++)
            buf_printf(&b, "%s%lld", i ? ", " : "",
                       i == infer ? -1LL : (long long)shape[i]);
        lw_error(E->L, call->span, "reshape", NULL, 0,
                 "cannot reshape %s (%llu elements) to [%s]", lw_type(x, 0),
                 (unsigned long long)x->nelems, b.failed ? "?" : b.data ? b.data : "");
        buf_free(&b);
        return CG_NONE;
    }
    return make(E, OP_RESHAPE, x->dtype, (uint32_t)r, shape, &a, 1);
}

/* tensor("TEMPLATE"): another tensor of the state before this statement,
 * named with the match's captures, of any shape (broadcasting and matmul
 * check it where it is used). */
static cg_id tensor(ex *E, const ast_expr *call)
{
    if (!arity(E, call, 1, 1))
        return CG_NONE;
    const ast_expr *arg = call->u.call.args->value;
    if (arg->kind != EX_STRING) {
        lw_error(E->L, arg->span, "tensor", NULL, 0, "tensor() takes a name in quotes");
        return CG_NONE;
    }
    ast_string text = {.text = arg->u.string, .span = arg->span};
    gl_template t;
    if (!lw_template(E->L, &text, &E->ms->pat, false, &t))
        return CG_NONE;
    const char *name = lw_expand(E->L, &t, arg->span, E->m, 0);
    if (!name)
        return CG_NONE;
    size_t i = state_find(&E->L->st, name);
    if (i == STATE_NONE) {
        lw_error(E->L, arg->span, "tensor", NULL, 0, "tensor(\"%s\") names \"%s\", which does not exist",
                 arg->u.string, name ? name : "");
        return CG_NONE;
    }
    return state_node(&E->L->st, i); /* a tied name: its stored tensor's */
}


/* ---- comparisons, selection, and the layout of merges -------------------- */

/* A number argument (any arithmetic on numbers) in [lo, hi]. */
static bool number_arg(ex *E, const ast_expr *call, const ast_expr *e, const char *what,
                       double lo, double hi, double *out)
{
    cg_id id = lower(E, e);
    if (id == CG_NONE)
        return false;
    if (!is_number(E, id) || !(node(E, id)->a.value >= lo && node(E, id)->a.value <= hi)) {
        lw_error(E->L, e->span, "call-args", NULL, 0, "%s of %s is a number from %g to %g",
                 what, call->u.call.name, lo, hi);
        return false;
    }
    *out = node(E, id)->a.value;
    return true;
}

/* The operand in the type `dt` an operation runs in: a number rounded to it
 * when it is a float (as make() does for arithmetic), an integer tensor cast
 * to it (so an i64 meets an f32 as JAX's promotion says). */
static cg_id as_type(ex *E, cg_id id, surg_dtype dt)
{
    const cg_node *x = node(E, id);
    if (dt == WEAK || surg_dtype_kind_of(dt) != SURG_KIND_FLOAT || x->dtype == dt)
        return id;
    if (x->dtype == WEAK)
        return typed_constant(E, dt == SURG_F64 ? SURG_F64 : SURG_F32, x->a.value);
    if (surg_dtype_kind_of(x->dtype) == SURG_KIND_FLOAT)
        return id; /* a narrower float: exact in the wider one */
    return make(E, OP_CAST, dt, x->rank, x->shape, &id, 1);
}

/* a < b and the others: bool, computed in the type the operands promote to. */
static cg_id compare(ex *E, const ast_expr *e, cg_op op, cg_id *in)
{
    char what[16];
    snprintf(what, sizeof what, "'%s'", ast_op_text(e->u.binary.op));
    uint32_t rank;
    uint64_t shape[SURG_MAX_RANK];
    if (!computable(E, e, in[0], what) || !computable(E, e, in[1], what) ||
        !broadcast(E, e, in[0], in[1], &rank, shape))
        return CG_NONE;
    surg_dtype dt = promote(node(E, in[0])->dtype, node(E, in[1])->dtype);
    for (int k = 0; k < 2; k++)
        if ((in[k] = as_type(E, in[k], dt)) == CG_NONE ||
            (in[k] = expand(E, in[k], rank, shape)) == CG_NONE)
            return CG_NONE;
    return make(E, op, dt == WEAK ? WEAK : SURG_BOOL, rank, shape, in, 2);
}

/* pow, minimum, maximum: elementwise on two operands, as + is. */
static cg_id binary_call(ex *E, const ast_expr *call, cg_op op)
{
    if (!arity(E, call, 2, 2))
        return CG_NONE;
    cg_id in[2];
    const ast_arg *a = call->u.call.args;
    for (int i = 0; i < 2; i++, a = a->next)
        if ((in[i] = lower(E, a->value)) == CG_NONE ||
            !computable(E, a->value, in[i], call->u.call.name))
            return CG_NONE;
    uint32_t rank;
    uint64_t shape[SURG_MAX_RANK];
    if (!broadcast(E, call, in[0], in[1], &rank, shape))
        return CG_NONE;
    surg_dtype dt = promote(node(E, in[0])->dtype, node(E, in[1])->dtype);
    for (int k = 0; k < 2; k++)
        if ((in[k] = as_type(E, in[k], dt)) == CG_NONE ||
            (in[k] = expand(E, in[k], rank, shape)) == CG_NONE)
            return CG_NONE;
    return make(E, op, dt, rank, shape, in, 2);
}

/* where(cond, a, b): cond a bool tensor; a and b numbers or tensors that
 * promote as arithmetic does (or two bool tensors, giving bool). */
static cg_id where(ex *E, const ast_expr *call)
{
    if (!arity(E, call, 3, 3))
        return CG_NONE;
    cg_id in[3];
    const ast_arg *a = call->u.call.args;
    for (int i = 0; i < 3; i++, a = a->next)
        if ((in[i] = lower(E, a->value)) == CG_NONE)
            return CG_NONE;
    const ast_expr *cond = call->u.call.args->value;
    if (node(E, in[0])->dtype != SURG_BOOL) {
        const char *notes[] = {"compare to make one: where(x > 0, x, 0)"};
        lw_error(E->L, cond->span, "where-cond", notes, 1,
                 "the condition of where is a bool tensor, not %s",
                 node(E, in[0])->dtype == WEAK ? "a number" : lw_type(node(E, in[0]), 0));
        return CG_NONE;
    }
    bool bools = node(E, in[1])->dtype == SURG_BOOL && node(E, in[2])->dtype == SURG_BOOL;
    a = call->u.call.args->next;
    for (int i = 1; i < 3 && !bools; i++, a = a->next)
        if (!computable(E, a->value, in[i], "where"))
            return CG_NONE;
    uint32_t rank;
    uint64_t shape[SURG_MAX_RANK];
    if (!broadcast3(E, call, in, node(E, in[1])->dtype, &rank, shape))
        return CG_NONE;
    surg_dtype dt = bools ? SURG_BOOL : promote(node(E, in[1])->dtype, node(E, in[2])->dtype);
    if (dt == WEAK) {
        const char *notes[] = {"for 0 and 1, cast the condition: cast(x > 0, f32)"};
        lw_error(E->L, call->span, "where-type", notes, 1,
                 "where between two numbers has no dtype: one branch must be a tensor");
        return CG_NONE;
    }
    for (int k = 0; k < 3; k++)
        if ((k && (in[k] = as_type(E, in[k], dt)) == CG_NONE) ||
            (in[k] = expand(E, in[k], rank, shape)) == CG_NONE)
            return CG_NONE;
    return make(E, OP_WHERE, dt, rank, shape, in, 3);
}

/* The tensor a layout function works on: not a number. */
static cg_id tensor_arg(ex *E, const ast_expr *call, const ast_expr *e)
{
    cg_id id = lower(E, e);
    if (id != CG_NONE && node(E, id)->rank == 0) {
        lw_error(E->L, e->span, "call-args", NULL, 0, "%s needs a tensor of one dimension or more "
                 "here, not %s", call->u.call.name,
                 node(E, id)->dtype == WEAK ? "a number" : lw_type(node(E, id), 0));
        return CG_NONE;
    }
    return id;
}

static bool axis_arg(ex *E, const ast_expr *call, const ast_expr *e, const cg_node *x,
                     uint32_t *axis)
{
    int64_t v;
    if (!int_arg(E, e, &v))
        return false;
    if (v < 0 || (uint64_t)v >= x->rank) {
        lw_error(E->L, e->span, "axis", NULL, 0, "%s of %s has no axis %lld (axes count from 0 to %u)",
                 call->u.call.name, lw_type(x, 0), (long long)v, x->rank - 1);
        return false;
    }
    *axis = (uint32_t)v;
    return true;
}

/* slice(x, axis, start[, end]): x[..., start:end, ...]; a negative start or
 * end counts from the end, as in Python; the range must lie inside. */
static cg_id slice(ex *E, const ast_expr *call)
{
    if (!arity(E, call, 3, 4))
        return CG_NONE;
    const ast_arg *a = call->u.call.args;
    cg_id in = tensor_arg(E, call, a->value);
    uint32_t axis;
    if (in == CG_NONE || !axis_arg(E, call, a->next->value, node(E, in), &axis))
        return CG_NONE;
    const cg_node *x = node(E, in);
    int64_t dim = (int64_t)x->shape[axis], v[2] = {0, dim};
    const ast_arg *b = a->next->next;
    for (int i = 0; i < 2 && b; i++, b = b->next) {
        if (!int_arg(E, b->value, &v[i]))
            return CG_NONE;
        v[i] += v[i] < 0 ? dim : 0;
    }
    if (v[0] < 0 || v[0] > v[1] || v[1] > dim) {
        lw_error(E->L, call->span, "slice", NULL, 0,
                 "slice of %s along axis %u needs 0 <= start <= end <= %lld, not %lld:%lld",
                 lw_type(x, 0), axis, (long long)dim, (long long)v[0], (long long)v[1]);
        return CG_NONE;
    }
    uint64_t shape[SURG_MAX_RANK];
    memcpy(shape, x->shape, x->rank * sizeof *shape);
    shape[axis] = (uint64_t)(v[1] - v[0]);
    cg_id id = make(E, OP_SLICE, x->dtype, x->rank, shape, &in, 1);
    if (id != CG_NONE)
        E->L->g.nodes[id].a.slice.axis = axis, E->L->g.nodes[id].a.slice.start = (uint64_t)v[0],
        E->L->g.nodes[id].a.slice.len = shape[axis];
    return id;
}

/* pad(x, axis, before, after[, value]): `before` places in front of x and
 * `after` behind it along axis, holding value (a scalar, 0 by default) in
 * x's dtype. */
static cg_id pad(ex *E, const ast_expr *call)
{
    if (!arity(E, call, 4, 5))
        return CG_NONE;
    const ast_arg *a = call->u.call.args;
    cg_id in[2] = {tensor_arg(E, call, a->value), CG_NONE};
    uint32_t axis;
    int64_t before, after;
    if (in[0] == CG_NONE || !axis_arg(E, call, a->next->value, node(E, in[0]), &axis) ||
        !int_arg(E, a->next->next->value, &before) ||
        !int_arg(E, a->next->next->next->value, &after))
        return CG_NONE;
    const cg_node *x = node(E, in[0]);
    if (surg_dtype_kind_of(x->dtype) == SURG_KIND_OPAQUE) {
        lw_error(E->L, call->span, "dtype-compute", NULL, 0,
                 "cannot pad %s: surg carries such tensors but cannot compute on them",
                 surg_dtype_recipe_name(x->dtype));
        return CG_NONE;
    }
    if (before < 0 || after < 0) {
        lw_error(E->L, call->span, "pad", NULL, 0, "pad adds places: before and after are 0 or more");
        return CG_NONE;
    }
    const ast_arg *v = a->next->next->next->next;
    in[1] = v ? lower(E, v->value) : constant(E, 0);
    if (in[1] == CG_NONE)
        return CG_NONE;
    const cg_node *y = node(E, in[1]);
    if (y->rank != 0) {
        lw_error(E->L, v->value->span, "pad", NULL, 0, "the value of pad is a scalar, not %s",
                 lw_type(y, 0));
        return CG_NONE;
    }
    surg_dtype dt = x->dtype;
    if (y->dtype == WEAK) {
        cg_node n = {.op = OP_CONST, .dtype = dt, .origin = E->stmt->span};
        n.a.value = nm_round(dt, y->a.value, NM_ROUND);
        in[1] = lw_node(E->L, n, NULL);
    } else if (y->dtype != dt) {
        in[1] = make(E, OP_CAST, dt, 0, NULL, &in[1], 1);
    }
    if (in[1] == CG_NONE)
        return CG_NONE;
    x = node(E, in[0]);
    uint64_t shape[SURG_MAX_RANK];
    memcpy(shape, x->shape, x->rank * sizeof *shape);
    shape[axis] += (uint64_t)before + (uint64_t)after;
    cg_id id = make(E, OP_PAD, dt, x->rank, shape, in, 2);
    if (id != CG_NONE)
        E->L->g.nodes[id].a.pad.axis = axis, E->L->g.nodes[id].a.pad.before = (uint64_t)before,
        E->L->g.nodes[id].a.pad.after = (uint64_t)after;
    return id;
}

/* repeat(x, n, axis): NumPy's np.repeat(x, n, axis): each element n times
 * in a row along axis (as torch.repeat_interleave, and as Hugging Face's
 * repeat_kv repeats key/value heads). */
static cg_id repeat(ex *E, const ast_expr *call)
{
    if (!arity(E, call, 3, 3))
        return CG_NONE;
    const ast_arg *a = call->u.call.args;
    cg_id in = tensor_arg(E, call, a->value);
    int64_t n;
    uint32_t axis;
    if (in == CG_NONE || !int_arg(E, a->next->value, &n) ||
        !axis_arg(E, call, a->next->next->value, node(E, in), &axis))
        return CG_NONE;
    if (n < 1) {
        lw_error(E->L, a->next->value->span, "repeat", NULL, 0, "repeat needs a count of 1 or more");
        return CG_NONE;
    }
    const cg_node *x = node(E, in);
    uint64_t shape[SURG_MAX_RANK];
    memcpy(shape, x->shape, x->rank * sizeof *shape);
    if (__builtin_mul_overflow(shape[axis], (uint64_t)n, &shape[axis])) {
        lw_error(E->L, call->span, "type-size", NULL, 0,
                 "the result would be too large (more than 64 dimensions or 2^64 bytes)");
        return CG_NONE;
    }
    cg_id id = make(E, OP_REPEAT, x->dtype, x->rank, shape, &in, 1);
    if (id != CG_NONE)
        E->L->g.nodes[id].a.repeat.axis = axis, E->L->g.nodes[id].a.repeat.n = (uint64_t)n;
    return id;
}

/* concat(a, b, ..., axis): the tensors joined along axis, as the concat
 * statement joins its matches; the last argument is the axis. They agree in
 * every other axis; dtypes that differ promote as arithmetic does. */
static cg_id concat(ex *E, const ast_expr *call)
{
    int n = count_args(call) - 1;
    if (n < 2) {
        lw_error(E->L, call->span, "call-args", NULL, 0,
                 "concat takes two tensors or more and then the axis, as concat(a, b, 0)");
        return CG_NONE;
    }
    if (!arity(E, call, 3, INT32_MAX))
        return CG_NONE;
    cg_id *in = ar_array(E->L->ar, (size_t)n, sizeof *in);
    if (!in)
        return E->L->nomem = true, CG_NONE;
    const ast_arg *a = call->u.call.args;
    surg_dtype dt = WEAK;
    bool same = true;
    for (int i = 0; i < n; i++, a = a->next) {
        if ((in[i] = tensor_arg(E, call, a->value)) == CG_NONE)
            return CG_NONE;
        surg_dtype d = node(E, in[i])->dtype;
        same &= i == 0 || d == node(E, in[0])->dtype;
        if (!same && !computable(E, a->value, in[i], "concat of mixed dtypes"))
            return CG_NONE;
        dt = promote(dt, d);
    }
    if (same)
        dt = node(E, in[0])->dtype;
    else if (!computable(E, call->u.call.args->value, in[0], "concat of mixed dtypes"))
        return CG_NONE;
    uint32_t axis;
    if (!axis_arg(E, call, a->value, node(E, in[0]), &axis))
        return CG_NONE;
    uint64_t shape[SURG_MAX_RANK];
    const cg_node *x = node(E, in[0]);
    memcpy(shape, x->shape, x->rank * sizeof *shape);
    for (int i = 1; i < n; i++) {
        const cg_node *y = node(E, in[i]);
        bool fits = y->rank == x->rank;
        for (uint32_t d = 0; fits && d < x->rank; d++)
            fits = d == axis || y->shape[d] == x->shape[d];
        if (!fits) {
            lw_error(E->L, call->span, "concat", NULL, 0,
                     "concat along axis %u cannot join %s and %s: the other axes must agree",
                     axis, lw_type(x, 0), lw_type(y, 1));
            return CG_NONE;
        }
        if (__builtin_add_overflow(shape[axis], y->shape[axis], &shape[axis]))
            shape[axis] = UINT64_MAX;
    }
    for (int i = 0; i < n && !same; i++)
        if ((in[i] = as_type(E, in[i], dt)) == CG_NONE)
            return CG_NONE;
    cg_id id = make(E, OP_CONCAT, dt, x->rank, shape, in, (uint32_t)n);
    if (id != CG_NONE)
        E->L->g.nodes[id].a.axis = axis;
    return id;
}

/* bernoulli(p[, like]): a bool tensor of x's shape (or like's), each value
 * true with probability p, drawn from a stream keyed by the seed in force,
 * the output's name and which bernoulli() of the statement it is. */
static cg_id bernoulli(ex *E, const ast_expr *call)
{
    if (!arity(E, call, 1, 2))
        return CG_NONE;
    double p;
    if (!number_arg(E, call, call->u.call.args->value, "the probability", 0, 1, &p))
        return CG_NONE;
    cg_id like = E->m->node;
    if (call->u.call.args->next &&
        (like = tensor_arg(E, call, call->u.call.args->next->value)) == CG_NONE)
        return CG_NONE;
    const cg_node *x = node(E, like);
    cg_node n = {.op = OP_BERNOULLI, .dtype = SURG_BOOL, .rank = x->rank,
                 .origin = E->stmt->span};
    n.a.bern.p = p;
    n.a.bern.seed = E->L->seed;
    n.a.bern.key = E->m->name;
    n.a.bern.index = E->n_bernoulli++;
    return lw_node(E->L, n, x->shape);
}

/* topk_mask(e, fraction): true at the floor(fraction * n) elements of e
 * largest in magnitude; ties in magnitude go to the lower index (C order);
 * NaN counts as larger than infinity. */
static cg_id topk_mask(ex *E, const ast_expr *call)
{
    if (!arity(E, call, 2, 2))
        return CG_NONE;
    cg_id in = tensor_arg(E, call, call->u.call.args->value);
    double f;
    if (in == CG_NONE || !computable(E, call->u.call.args->value, in, "topk_mask") ||
        !number_arg(E, call, call->u.call.args->next->value, "the fraction", 0, 1, &f))
        return CG_NONE;
    const cg_node *x = node(E, in);
    double k = floor(f * (double)x->nelems);
    cg_id id = make(E, OP_TOPK, SURG_BOOL, x->rank, x->shape, &in, 1);
    if (id != CG_NONE) {
        E->L->g.nodes[id].a.topk.fraction = f;
        E->L->g.nodes[id].a.topk.k = k >= (double)x->nelems ? x->nelems : (uint64_t)k;
    }
    return id;
}

static const struct {
    const char *name;
    cg_op op;
    enum { F_UNARY, F_REDUCE, F_CLIP, F_CAST, F_FULL, F_ZEROS, F_TRANSPOSE, F_RESHAPE, F_TENSOR,
           F_MATMUL, F_BINARY, F_WHERE, F_SLICE, F_PAD, F_REPEAT, F_CONCAT, F_BERNOULLI,
           F_TOPK } how;
} functions[] = {
#define X(name, op, how) {#name, OP_##op, F_##how},
    AST_FUNCTIONS(X)
#undef X
};
#define N_FUNCTIONS (sizeof functions / sizeof *functions)

static void unknown(ex *E, const ast_expr *e, const char *name, bool call)
{
    const char *names[N_FUNCTIONS + 1];
    for (size_t i = 0; i < N_FUNCTIONS; i++)
        names[i] = functions[i].name;
    names[N_FUNCTIONS] = "x";
    const char *best = sg_closest(name, names, N_FUNCTIONS + (call ? 0 : 1));
    char note[96];
    const char *notes[] = {note};
    size_t n_notes = 1;
    const lw_let *later = call ? NULL : lw_let_defined(E->L, name);
    if (later && later->seq == E->scope) {
        snprintf(note, sizeof note, "the value of '%.20s' cannot use '%.20s' itself", name, name);
    } else if (later) {
        uint32_t line, col;
        src_position(E->L->src, later->at.start, &line, &col);
        snprintf(note, sizeof note, "'%.20s' is defined at %u:%u, after this: a value sees the names before it",
                 name, line, col);
    } else if (cg_init_lookup(name) != INIT_COUNT)
        snprintf(note, sizeof note, "%s is an initializer: use it with fill", name);
    else if (best)
        snprintf(note, sizeof note, "did you mean '%s'?", best);
    else
        n_notes = 0;
    if (call) {
        buf list;
        buf_init(&list);
        buf_puts(&list, "the functions:");
        for (size_t i = 0; i < N_FUNCTIONS; i++)
            buf_printf(&list, "%s %s", i ? "," : "", functions[i].name);
        const char *with[] = {note, list.data};
        if (list.failed)
            E->L->nomem = true;
        else
            lw_error(E->L, e->span, "unknown-function", n_notes ? with : with + 1, n_notes + 1,
                     "unknown function '%s'", name);
        buf_free(&list);
    } else {
        lw_error(E->L, e->span, "unknown-name", notes, n_notes,
                 "unknown name '%s' (the matched tensor is x)", name);
    }
}

static cg_id call(ex *E, const ast_expr *e)
{
    for (size_t i = 0; i < N_FUNCTIONS; i++) {
        if (strcmp(functions[i].name, e->u.call.name) != 0)
            continue;
        switch (functions[i].how) {
        case F_UNARY: return unary(E, e, functions[i].op);
        case F_REDUCE: return reduction(E, e, functions[i].op);
        case F_CLIP: return clip(E, e);
        case F_CAST: return cast(E, e);
        case F_FULL: return full_like(E, e, false);
        case F_ZEROS: return full_like(E, e, true);
        case F_TRANSPOSE: return transpose(E, e);
        case F_RESHAPE: return reshape(E, e);
        case F_TENSOR: return tensor(E, e);
        case F_MATMUL: return matmul_call(E, e);
        case F_BINARY: return binary_call(E, e, functions[i].op);
        case F_WHERE: return where(E, e);
        case F_SLICE: return slice(E, e);
        case F_PAD: return pad(E, e);
        case F_REPEAT: return repeat(E, e);
        case F_CONCAT: return concat(E, e);
        case F_BERNOULLI: return bernoulli(E, e);
        case F_TOPK: return topk_mask(E, e);
        }
    }
    unknown(E, e, e->u.call.name, true);
    return CG_NONE;
}

static cg_id binary(ex *E, const ast_expr *e)
{
    static const char ops[] = {'+', '-', '*', '/', '<', '>', AST_LE, AST_GE, AST_EQ, AST_NE, 0};
    static const cg_op codes[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_LT,
                                  OP_GT,  OP_LE,  OP_GE,  OP_EQ,  OP_NE};
    cg_id in[2] = {lower(E, e->u.binary.lhs), CG_NONE};
    if (in[0] == CG_NONE || (in[1] = lower(E, e->u.binary.rhs)) == CG_NONE)
        return CG_NONE;
    if (e->u.binary.op == '@')
        return matmul(E, e, in[0], in[1]);
    if (ast_op_compares(e->u.binary.op))
        return compare(E, e, codes[strchr(ops, e->u.binary.op) - ops], in);
    char what[16];
    snprintf(what, sizeof what, "'%c'", e->u.binary.op);
    uint32_t rank;
    uint64_t shape[SURG_MAX_RANK];
    if (!computable(E, e, in[0], what) || !computable(E, e, in[1], what) ||
        !broadcast(E, e, in[0], in[1], &rank, shape))
        return CG_NONE;
    cg_op op = codes[strchr(ops, e->u.binary.op) - ops];
    surg_dtype dt = promote(node(E, in[0])->dtype, node(E, in[1])->dtype);
    for (int i = 0; i < 2; i++)
        if ((in[i] = expand(E, in[i], rank, shape)) == CG_NONE)
            return CG_NONE;
    return make(E, op, dt, rank, shape, in, 2);
}

/* A name's value: lowered at its first use in this lowering, with the
 * names before it in sight; every later use is the same node. An error in
 * it is reported once, at the let, with a note of the name and of where
 * the map uses it (through other names, maybe). */
static cg_id named(ex *E, const ast_expr *use, lw_let *v)
{
    if (v->stamp == E->stamp)
        return v->node;
    uint32_t scope = E->scope;
    const char *note = E->L->let_note;
    if (!note) /* the use in the map itself: where every note points */
        src_position(E->L->src, use->span.start, &E->use_line, &E->use_col);
    char text[128];
    snprintf(text, sizeof text, "in the value of '%.40s', which the map at %u:%u uses", v->name,
             E->use_line, E->use_col);
    E->L->let_note = text;
    E->scope = v->seq;
    cg_id id = lower(E, v->expr);
    E->scope = scope;
    E->L->let_note = note;
    v->stamp = E->stamp;
    v->node = id;
    return id;
}
static cg_id substituted(const struct places *p, const ast_expr *e);

static cg_id lower(ex *E, const ast_expr *e)
{
    cg_id sub = E->sub ? substituted(E->sub, e) : CG_NONE;
    if (sub != CG_NONE)
        return sub;
    switch (e->kind) {
    case EX_NUMBER:
        if (!isfinite(e->u.number.value)) {
            lw_error(E->L, e->span, "number", NULL, 0, "this number is too large for a double");
            return CG_NONE;
        }
        return constant(E, e->u.number.value);
    case EX_IDENT: {
        if (strcmp(e->u.ident, "x") == 0)
            return E->m->node;
        lw_let *v = lw_let_find(E->L, e->u.ident, E->scope);
        if (v)
            return named(E, e, v);
        unknown(E, e, e->u.ident, false);
        return CG_NONE;
    }
    case EX_STRING:
        lw_error(E->L, e->span, "string", NULL, 0, "a string can only name a tensor, in tensor(\"...\")");
        return CG_NONE;
    case EX_NEG: {
        cg_id a = lower(E, e->u.operand);
        if (a == CG_NONE || !computable(E, e, a, "'-'"))
            return CG_NONE;
        const cg_node *x = node(E, a);
        return make(E, OP_NEG, x->dtype, x->rank, x->shape, &a, 1);
    }
    case EX_BINARY: return binary(E, e);
    case EX_CALL: return call(E, e);
    }
    return CG_NONE;
}

cg_id lw_map_expr(lw *L, const ast_stmt *s, const lw_match *m, const lw_matches *ms)
{
    ex E = {L, s, m, ms, 0, UINT32_MAX, ++L->let_stamp, 0, 0, NULL};
    if (L->lets && lw_let_depth(L, s->expr, UINT32_MAX) > AST_MAX_DEPTH) {
        lw_error(L, s->expr->span, "let-depth", NULL, 0,
                 "this expression nests more than %d levels deep with the names it uses",
                 AST_MAX_DEPTH);
        return CG_NONE;
    }
    cg_id id = lower(&E, s->expr);
    if (id != CG_NONE && cg_get(&L->g, id)->dtype == WEAK) {
        lw_error(L, s->expr->span, "map-constant", NULL, 0,
                 "the result is a plain number, not a tensor: to set every value of \"%s\" write "
                 "fill \"%s\" = ...",
                 m->name, m->name);
        return CG_NONE;
    }
    return id;
}

/* ---- optimizer slots of a mapped parameter ---------------------------- */

/* The calls that move values to other places (mirror.h: "positions"): a
 * map made of them around values moves the slots alike. */
static bool is_position_call(const ast_expr *e)
{
    static const char *const names[] = {"transpose", "reshape", "slice", "pad", "repeat", "concat"};
    if (e->kind != EX_CALL || !e->u.call.args)
        return false;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(e->u.call.name, names[i]) == 0)
            return true;
    return false;
}

/* Whether a position call is in e, the values of the names it uses
 * included. */
static bool has_position(const lw *L, const ast_expr *e, uint32_t scope)
{
    switch (e->kind) {
    case EX_CALL:
        if (is_position_call(e))
            return true;
        for (const ast_arg *a = e->u.call.args; a; a = a->next)
            if (has_position(L, a->value, scope))
                return true;
        return false;
    case EX_NEG: return has_position(L, e->u.operand, scope);
    case EX_BINARY:
        return has_position(L, e->u.binary.lhs, scope) || has_position(L, e->u.binary.rhs, scope);
    case EX_IDENT: {
        lw_let *v = lw_let_find(L, e->u.ident, scope);
        if (v && !v->moves)
            v->moves = has_position(L, v->expr, v->seq) ? 2 : 1;
        return v && v->moves == 2;
    }
    default: return false;
    }
}

/* Does e read the values of x? Not through tensor(), nor the tensor whose
 * type alone zeros_like, full_like and bernoulli take. */
static bool uses_x(const lw *L, const ast_expr *e, uint32_t scope)
{
    switch (e->kind) {
    case EX_IDENT: {
        if (strcmp(e->u.ident, "x") == 0)
            return true;
        lw_let *v = lw_let_find(L, e->u.ident, scope);
        if (v && !v->reads_x)
            v->reads_x = uses_x(L, v->expr, v->seq) ? 2 : 1;
        return v && v->reads_x == 2;
    }
    case EX_NEG: return uses_x(L, e->u.operand, scope);
    case EX_BINARY: return uses_x(L, e->u.binary.lhs, scope) || uses_x(L, e->u.binary.rhs, scope);
    case EX_CALL: {
        const char *f = e->u.call.name;
        const ast_arg *a = e->u.call.args;
        if (strcmp(f, "tensor") == 0 || strcmp(f, "zeros_like") == 0 ||
            strcmp(f, "bernoulli") == 0)
            return false;
        if (strcmp(f, "full_like") == 0 && a)
            a = a->next;
        for (; a; a = a->next)
            if (uses_x(L, a->value, scope))
                return true;
        return false;
    }
    default: return false;
    }
}

/* The values the position calls of a map wrap, each with what stands for
 * it when the map is applied to a slot: the slot itself (a value of x's
 * shape made from x: its places are x's), or zeros (new places); pad's
 * value is 0 too. Sorted by address for the lookup. */
typedef struct places {
    struct place {
        const ast_expr *e;
        cg_id id;
    } *v;
    size_t n, cap;
} places;

static bool add_place(lw *L, places *p, const ast_expr *e, cg_id id)
{
    if (id == CG_NONE)
        return false;
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 8;
        struct place *v = realloc(p->v, cap * sizeof *v);
        if (!v)
            return L->nomem = true, false;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = (struct place){e, id};
    return true;
}

static int place_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const struct place *)a)->e, y = (uintptr_t)((const struct place *)b)->e;
    return (x > y) - (x < y);
}

static cg_id substituted(const places *p, const ast_expr *e)
{
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->v[mid].e == e)
            return p->v[mid].id;
        if ((uintptr_t)p->v[mid].e < (uintptr_t)e)
            lo = mid + 1;
        else
            hi = mid;
    }
    return CG_NONE;
}

static void wraps_error(ex *X)
{
    lw_error(X->L, X->stmt->expr->span, "mirror-map", NULL, 0,
             "the optimizer slots of \"%s\" can follow a layout call (transpose, reshape, slice, "
             "pad, repeat, concat) only when it wraps the whole value expression, as "
             "transpose(x * 2)",
             X->m->name);
}

/* Walk the position calls from e down (every tensor operand of concat,
 * the first of the others) and note each value they wrap, typed on x: a
 * value made from x of x's shape holds x's places; any other (another
 * shape, as the mean of the rows; no x in it, as tensor("T")) new ones.
 * A value made from x that moves places itself (transpose(x) * 2) is an
 * error: where its values come from is not followed. */
static bool collect(ex *X, const ast_expr *e, cg_id slot, places *p)
{
    if (is_position_call(e)) {
        bool cat = strcmp(e->u.call.name, "concat") == 0;
        int n = count_args(e), i = 0;
        const ast_arg *a = e->u.call.args;
        for (; i < (cat ? n - 1 : 1); i++, a = a->next)
            if (!collect(X, a->value, slot, p))
                return false;
        if (strcmp(e->u.call.name, "pad") == 0 && n == 5)
            return add_place(X->L, p, a->next->next->next->value, constant(X, 0));
        return true;
    }
    cg_id v = lower(X, e); /* its type: it was lowered before, without error */
    if (v == CG_NONE)
        return false;
    const cg_node *val = node(X, v), *x = node(X, X->m->node);
    bool same = val->rank == x->rank && memcmp(val->shape, x->shape, x->rank * sizeof *x->shape) == 0;
    bool from_x = uses_x(X->L, e, UINT32_MAX);
    if (from_x && has_position(X->L, e, UINT32_MAX))
        return wraps_error(X), false; /* x's places moved inside a value: unknown */
    if (same && from_x)
        return add_place(X->L, p, e, slot);
    cg_init *init = ar_alloc(X->L->ar, sizeof *init);
    if (!init)
        return X->L->nomem = true, false;
    init->kind = INIT_VALUE; /* zeros: new places have no history */
    cg_node z = {.op = OP_INIT, .dtype = node(X, slot)->dtype, .rank = val->rank, .origin = X->stmt->span};
    z.a.init = init;
    return add_place(X->L, p, e, lw_node(X->L, z, val->shape));
}

cg_id lw_map_layout(lw *L, const ast_stmt *s, const lw_match *m, const lw_matches *ms,
                    cg_id result, cg_id slot)
{
    const cg_node *r = cg_get(&L->g, result), *x = cg_get(&L->g, m->node);
    bool same = r->rank == x->rank && memcmp(r->shape, x->shape, r->rank * sizeof *r->shape) == 0;
    ex X = {L, s, m, ms, 0, UINT32_MAX, ++L->let_stamp, 0, 0, NULL};
    if (!has_position(L, s->expr, UINT32_MAX)) {
        if (same)
            return slot; /* a value change: the moments stay as they are */
        lw_error(L, s->expr->span, "mirror-map", NULL, 0,
                 "this %s makes \"%s\" %s without transpose or reshape (or slice, pad, repeat, "
                 "concat), so its optimizer slots cannot follow",
                 ast_stmt_keyword(s->kind), m->name, lw_type(r, 0));
        return CG_NONE;
    }
    if (!is_position_call(s->expr))
        return wraps_error(&X), CG_NONE;
    places p = {0};
    cg_id id = CG_NONE;
    if (collect(&X, s->expr, slot, &p)) {
        qsort(p.v, p.n, sizeof *p.v, place_cmp);
        lw_match on_slot = *m;
        on_slot.node = slot;
        ex S = {L, s, &on_slot, ms, 0, UINT32_MAX, ++L->let_stamp, 0, 0, &p};
        id = lower(&S, s->expr);
    }
    free(p.v);
    return id;
}
