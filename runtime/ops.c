/* ops.c: the op and initializer tables, and what an elementwise operation
 * does to one value. */
#include "runtime/ops.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    int n_in;
    cg_class cls;
} ops[] = {
#define X(e, name, n, cls) {name, n, cls},
    CG_OPS(X)
#undef X
};

static const struct {
    const char *name;
    bool random, fan;
    const char *from;
} inits[] = {
#define X(e, name, random, fan, from) {name, random, fan, from},
    CG_INITS(X)
#undef X
};

const char *cg_op_name(cg_op op) { return ops[op].name; }
cg_class cg_op_class(cg_op op) { return ops[op].cls; }

bool cg_reduces_axis(const cg_node *n)
{
    return ops[n->op].cls == CG_REDUCTION && n->op != OP_TOPK && n->a.reduce.over;
}

double cg_scalar(cg_op op, const double *v)
{
    double x = v[0];
    switch (op) {
    case OP_NEG: return -x;
    case OP_ABS:
    case OP_NORM: return fabs(x);
    case OP_SQRT: return sqrt(x);
    case OP_EXP: return exp(x);
    case OP_LOG: return log(x);
    case OP_TANH: return tanh(x);
    case OP_SIGN: return isnan(x) ? x : (x > 0) - (x < 0);
    case OP_ADD: return x + v[1];
    case OP_SUB: return x - v[1];
    case OP_MUL: return x * v[1];
    case OP_DIV: return x / v[1];
    case OP_CLIP: return isnan(x) ? x : x < v[1] ? v[1] : x > v[2] ? v[2] : x;
    case OP_STD: return isnan(x) ? x : 0;
    case OP_SIN: return sin(x);
    case OP_COS: return cos(x);
    case OP_ACOS: return acos(x);
    case OP_POW: return pow(x, v[1]);
    /* NaN from either side; on a tie the second operand, as NumPy */
    case OP_MINIMUM: return x < v[1] || isnan(x) ? x : v[1];
    case OP_MAXIMUM: return x > v[1] || isnan(x) ? x : v[1];
    case OP_LT: return x < v[1];
    case OP_LE: return x <= v[1];
    case OP_GT: return x > v[1];
    case OP_GE: return x >= v[1];
    case OP_EQ: return x == v[1];
    case OP_NE: return x != v[1];
    case OP_WHERE: return x != 0 ? v[1] : v[2];
    default: return x; /* sum, mean, min, max of one value */
    }
}

const char *cg_init_name(cg_init_kind k) { return inits[k].name; }
bool cg_init_random(cg_init_kind k) { return inits[k].random; }
bool cg_init_fan_based(cg_init_kind k) { return inits[k].fan; }

cg_init_kind cg_init_lookup(const char *name)
{
    for (int i = 0; i < INIT_COUNT; i++)
        if (i != INIT_VALUE && strcmp(inits[i].name, name) == 0)
            return (cg_init_kind)i;
    static const struct {
        const char *name;
        cg_init_kind kind;
    } aliases[] = {
#define X(name, e) {name, INIT_##e},
        CG_INIT_ALIASES(X)
#undef X
    };
    for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++)
        if (strcmp(aliases[i].name, name) == 0)
            return aliases[i].kind;
    return INIT_COUNT;
}
