/* init.c: the INIT of fill and init-lora: a number, zeros or ones, or a
 * random initializer with its parameters checked and its fan-in and fan-out
 * read from the shape under the layout (flax: kernel [..., in, out]; torch:
 * weight [out, in, ...]). The formulas themselves are the runtime's. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "compiler/lower.h"
#include "support/suggest.h"

/* The named parameters of each initializer, in positional order; a NaN
 * default means required. */
typedef struct init_params {
    const char *names[2];
    double defaults[2];
    int n;
} init_params;

static init_params params_of(cg_init_kind k)
{
    switch (k) {
    case INIT_NORMAL: return (init_params){{"mean", "std"}, {0, NAN}, 2};
    case INIT_UNIFORM: return (init_params){{"lo", "hi"}, {NAN, NAN}, 2};
    case INIT_TRUNCATED_NORMAL: return (init_params){{"std"}, {NAN}, 1};
    case INIT_KAIMING_UNIFORM:
    case INIT_KAIMING_NORMAL: return (init_params){{"a"}, {0}, 1};
    default: return (init_params){{NULL}, {0}, 0};
    }
}

/* A number, or minus a number (finite: 1e999 is not a number surg takes). */
static bool constant(const ast_expr *e, double *v)
{
    if (e->kind == EX_NUMBER) {
        *v = e->u.number.value;
        return isfinite(*v);
    }
    if (e->kind == EX_NEG && constant(e->u.operand, v)) {
        *v = -*v;
        return true;
    }
    return false;
}

int lw_init_n_params(cg_init_kind k) { return params_of(k).n; }

static bool bind_args(lw *L, const ast_expr *e, cg_init_kind k, double *p)
{
    init_params ip = params_of(k);
    const char *name = cg_init_name(k);
    for (int i = 0; i < ip.n; i++)
        p[i] = ip.defaults[i];
    int pos = 0;
    const ast_arg *args = e->kind == EX_CALL ? e->u.call.args : NULL;
    for (const ast_arg *a = args; a; a = a->next) {
        int slot = pos;
        if (a->name) {
            for (slot = 0; slot < ip.n && strcmp(ip.names[slot], a->name) != 0; slot++)
                ;
            if (slot == ip.n) {
                lw_error(L, a->name_span, "init-args", NULL, 0, "%s has no parameter '%s'", name,
                         a->name);
                return false;
            }
        } else if (pos++ >= ip.n) {
            lw_error(L, a->value->span, "init-args", NULL, 0, "%s takes %d argument%s", name,
                     ip.n, ip.n == 1 ? "" : "s");
            return false;
        }
        if (!constant(a->value, &p[slot])) {
            lw_error(L, a->value->span, "init-args", NULL, 0,
                     "the arguments of %s are finite numbers", name);
            return false;
        }
    }
    for (int i = 0; i < ip.n; i++)
        if (isnan(p[i])) {
            lw_error(L, e->span, "init-args", NULL, 0, "%s needs %s (as %s(%s=...))", name,
                     ip.names[i], name, ip.names[i]);
            return false;
        }
    if ((k == INIT_NORMAL && p[1] < 0) || (k == INIT_TRUNCATED_NORMAL && p[0] < 0)) {
        lw_error(L, e->span, "init-args", NULL, 0, "std must not be negative");
        return false;
    }
    if (k == INIT_UNIFORM && !(p[0] < p[1])) {
        lw_error(L, e->span, "init-args", NULL, 0, "uniform(lo, hi) needs lo < hi");
        return false;
    }
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Fan-in and fan-out as jax.nn.initializers (flax) and torch.nn.init
 * (torch) compute them. */
static bool fans(lw *L, const ast_expr *e, cg_init *init, uint32_t rank, const uint64_t *shape,
                 lw_layout layout)
{
    const char *name = cg_init_name(init->kind);
    if (layout == LAYOUT_BY_NAME)
        layout = ends_with(init->key, "kernel")   ? LAYOUT_FLAX
                 : ends_with(init->key, "weight") ? LAYOUT_TORCH
                                                  : LAYOUT_BY_NAME;
    if (layout == LAYOUT_BY_NAME) {
        lw_error(L, e->span, "init-layout", NULL, 0,
                 "%s needs fan-in and fan-out, but \"%s\" ends in neither \"kernel\" (flax) "
                 "nor \"weight\" (torch): say which with `layout flax` or `layout torch`",
                 name, init->key);
        return false;
    }
    if (rank < 2) {
        lw_error(L, e->span, "init-rank", NULL, 0,
                 "%s needs a tensor of at least 2 dimensions for its fans; \"%s\" has %u", name,
                 init->key, rank);
        return false;
    }
    uint64_t receptive = 1;
    bool flax = layout == LAYOUT_FLAX;
    for (uint32_t i = flax ? 0 : 2; i < (flax ? rank - 2 : rank); i++)
        receptive *= shape[i];
    init->fan_in = (flax ? shape[rank - 2] : shape[1]) * receptive;
    init->fan_out = (flax ? shape[rank - 1] : shape[0]) * receptive;
    return true;
}

/* Numbers are doubles, whole numbers exact up to 2^53: a whole number
 * written for an integer tensor that the double does not hold exactly
 * (9007199254740993 would become ...992) is refused, not rounded. */
static bool written_exactly(lw *L, const ast_expr *e, double v)
{
    const ast_expr *num = e->kind == EX_NEG ? e->u.operand : e;
    if (num->kind != EX_NUMBER || fabs(v) < 9007199254740992.0)
        return true;
    const char *t = num->u.number.text;
    if (strspn(t, "0123456789") != strlen(t))
        return true; /* 1e20: written as a double, meant as one */
    char held[32];
    snprintf(held, sizeof held, "%.0f", fabs(v));
    if (strcmp(held, t + strspn(t, "0") - (t[strspn(t, "0")] == '\0')) == 0)
        return true;
    lw_error(L, e->span, "init-value", NULL, 0,
             "%s%s cannot be held exactly: surg's numbers are doubles, whose whole numbers "
             "are exact up to 2^53 (it would be %s%s)", e->kind == EX_NEG ? "-" : "", t,
             e->kind == EX_NEG ? "-" : "", held);
    return false;
}

static bool value_fits(lw *L, const ast_expr *e, surg_dtype dt, double v)
{
    surg_dtype_kind k = surg_dtype_kind_of(dt);
    if (k == SURG_KIND_FLOAT)
        return true;
    if (!written_exactly(L, e, v))
        return false;
    bool ok = v == floor(v);
    if (k == SURG_KIND_BOOL)
        ok = v == 0 || v == 1;
    else if (k == SURG_KIND_UINT)
        ok = ok && v >= 0 && v < ldexp(1, (int)surg_dtype_bits(dt));
    else
        ok = ok && v >= -ldexp(1, (int)surg_dtype_bits(dt) - 1) &&
             v < ldexp(1, (int)surg_dtype_bits(dt) - 1);
    if (!ok)
        lw_error(L, e->span, "init-value", NULL, 0, "%.17g is not a value of %s", v,
                 surg_dtype_recipe_name(dt));
    return ok;
}

/* jax.nn.initializers.variance_scaling(scale, mode, distribution) for
 * the six initializers it names, each the same thing by its own name. */
static const struct {
    double scale;
    const char *mode, *distribution;
    cg_init_kind kind;
} scalings[] = {
    {1, "fan_in", "truncated_normal", INIT_LECUN_NORMAL},
    {1, "fan_in", "uniform", INIT_LECUN_UNIFORM},
    {2, "fan_in", "truncated_normal", INIT_HE_NORMAL},
    {2, "fan_in", "uniform", INIT_HE_UNIFORM},
    {1, "fan_avg", "truncated_normal", INIT_XAVIER_NORMAL},
    {1, "fan_avg", "uniform", INIT_XAVIER_UNIFORM},
};
#define N_SCALINGS (sizeof scalings / sizeof *scalings)

/* A word argument: "fan_in" or fan_in. */
static const char *word_arg(const ast_expr *e)
{
    return e->kind == EX_STRING ? e->u.string : e->kind == EX_IDENT ? e->u.ident : NULL;
}

static cg_init_kind variance_scaling(lw *L, const ast_expr *e)
{
    const ast_arg *a = e->kind == EX_CALL ? e->u.call.args : NULL;
    const ast_arg *b = a ? a->next : NULL, *c = b ? b->next : NULL;
    double scale;
    const char *mode = b ? word_arg(b->value) : NULL, *dist = c ? word_arg(c->value) : NULL;
    bool shaped = a && c && !c->next && !a->name && !b->name && !c->name &&
                  constant(a->value, &scale) && mode && dist;
    for (size_t i = 0; shaped && i < N_SCALINGS; i++)
        if (scale == scalings[i].scale && strcmp(mode, scalings[i].mode) == 0 &&
            strcmp(dist, scalings[i].distribution) == 0)
            return scalings[i].kind;
    char notes[N_SCALINGS][96];
    const char *ptrs[N_SCALINGS];
    for (size_t i = 0; i < N_SCALINGS; i++) {
        snprintf(notes[i], sizeof notes[i], "variance_scaling(%g, \"%s\", \"%s\") is %s",
                 scalings[i].scale, scalings[i].mode, scalings[i].distribution,
                 cg_init_name(scalings[i].kind));
        ptrs[i] = notes[i];
    }
    if (shaped)
        lw_error(L, e->span, "init", ptrs, N_SCALINGS,
                 "surg has no variance_scaling(%g, \"%s\", \"%s\"): only the six that "
                 "jax.nn.initializers names", scale, mode, dist);
    else
        lw_error(L, e->span, "init", ptrs, N_SCALINGS,
                 "variance_scaling takes (scale, mode, distribution), as "
                 "variance_scaling(2.0, \"fan_in\", \"uniform\")");
    return INIT_COUNT;
}

/* Initializers of JAX and PyTorch that surg has no counterpart of, and
 * what to write instead. */
static const char *instead(const char *name)
{
    static const struct {
        const char *name, *note;
    } other[] = {
        {"constant", "write the value itself: fill P = 0.5"},
        {"orthogonal", "surg has no orthogonal initializer"},
        {"delta_orthogonal", "surg has no orthogonal initializer"},
        {"eye", "surg has no identity initializer"},
        {"identity", "surg has no identity initializer"},
    };
    for (size_t i = 0; i < sizeof other / sizeof *other; i++)
        if (strcmp(other[i].name, name) == 0)
            return other[i].note;
    return NULL;
}

/* The initializers, listed for a note. */
static void init_list(buf *b)
{
    buf_puts(b, "the initializers: a number, zeros, ones");
    for (int i = 0; i < INIT_COUNT; i++)
        if (i != INIT_VALUE && i != INIT_ZEROS && i != INIT_ONES)
            buf_printf(b, ", %s", cg_init_name((cg_init_kind)i));
#define X(name, e) buf_printf(b, ", %s", name);
    CG_INIT_ALIASES(X)
#undef X
    buf_puts(b, ", variance_scaling");
}

/* *bound: the parameters are already read (variance_scaling). */
static cg_init_kind init_kind(lw *L, const ast_expr *e, double *value, bool *bound)
{
    *bound = false;
    if (constant(e, value))
        return INIT_VALUE;
    if (e->kind == EX_NUMBER || (e->kind == EX_NEG && e->u.operand->kind == EX_NUMBER)) {
        lw_error(L, e->span, "number", NULL, 0, "this number is too large for a double");
        return INIT_COUNT;
    }
    const char *name = e->kind == EX_IDENT ? e->u.ident : e->kind == EX_CALL ? e->u.call.name : NULL;
    cg_init_kind k = name ? cg_init_lookup(name) : INIT_COUNT;
    if (k != INIT_COUNT)
        return k;
    if (name && strcmp(name, "variance_scaling") == 0) {
        *bound = true;
        return variance_scaling(L, e);
    }
    const char *names[INIT_COUNT + 8];
    int n = 0;
    for (int i = 0; i < INIT_COUNT; i++)
        if (i != INIT_VALUE)
            names[n++] = cg_init_name((cg_init_kind)i);
#define X(alias, e) names[n++] = alias;
    CG_INIT_ALIASES(X)
#undef X
    names[n++] = "variance_scaling";
    const char *best = name ? sg_closest(name, names, (size_t)n) : NULL;
    const char *other = name ? instead(name) : NULL;
    buf note, list;
    buf_init(&note);
    buf_init(&list);
    if (other)
        buf_puts(&note, other);
    else if (best)
        buf_printf(&note, "did you mean '%s'?", best);
    init_list(&list);
    const char *notes[] = {note.data, list.data};
    size_t n_notes = other || best ? 2 : 1;
    if (note.failed || list.failed)
        L->nomem = true;
    else
        lw_error(L, e->span, "init", n_notes == 2 ? notes : notes + 1, n_notes,
                 name ? "unknown initializer '%s'" : "%s",
                 name ? name : "an initializer is a number, zeros, ones, or a call like "
                               "normal(0, 0.02)");
    buf_free(&note);
    buf_free(&list);
    return INIT_COUNT;
}

cg_id lw_init(lw *L, const ast_expr *e, surg_dtype dt, uint32_t rank, const uint64_t *shape,
              const char *key, lw_layout layout, src_span origin)
{
    cg_node n = {.op = OP_INIT, .dtype = dt, .rank = rank, .origin = origin};
    cg_init *init = ar_alloc(L->ar, sizeof *init);
    if (!init)
        return L->nomem = true, CG_NONE;
    n.a.init = init;
    init->key = key;
    init->seed = L->seed;
    bool bound;
    init->kind = init_kind(L, e, &init->p[0], &bound);
    if (init->kind == INIT_COUNT)
        return CG_NONE;
    surg_dtype_kind kind = surg_dtype_kind_of(dt);
    const char *name = init->kind == INIT_VALUE ? "a number" : cg_init_name(init->kind);
    if (kind == SURG_KIND_OPAQUE) {
        lw_error(L, e->span, "dtype-compute", NULL, 0,
                 "cannot fill \"%s\": surg carries %s tensors but cannot compute on them", key,
                 surg_dtype_recipe_name(dt));
        return CG_NONE;
    }
    if (cg_init_random(init->kind) && kind != SURG_KIND_FLOAT) {
        lw_error(L, e->span, "init-dtype", NULL, 0,
                 "%s fills floating-point tensors, but \"%s\" is %s", name, key,
                 surg_dtype_recipe_name(dt));
        return CG_NONE;
    }
    if (init->kind != INIT_VALUE && !bound && !bind_args(L, e, init->kind, init->p))
        return CG_NONE;
    if (init->kind == INIT_VALUE && !value_fits(L, e, dt, init->p[0]))
        return CG_NONE;
    if (init->kind == INIT_ZEROS || init->kind == INIT_ONES) {
        init->p[0] = init->kind == INIT_ONES;
        init->kind = INIT_VALUE; /* zeros and ones are plain values */
    }
    if (cg_init_fan_based(init->kind) && !fans(L, e, init, rank, shape, layout))
        return CG_NONE;
    return lw_node(L, n, shape);
}
