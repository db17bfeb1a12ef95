/* ops.h: the operations a plan is made of, shared by the compiler, which
 * builds them, and the runtime, which evaluates them: the op and initializer
 * tables and the node, one tensor value with its dtype and shape. */
#ifndef SURG_OPS_H
#define SURG_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "support/source.h"
#include "surg/surg.h"

typedef uint32_t cg_id;
#define CG_NONE UINT32_MAX

/* How deep a value may be: the longest chain of operations from it down to
 * an input, counted in nodes. The compiler refuses a statement that would go
 * deeper, so every walk of the graph (planning, describing, the runtime's
 * kernels, which recurse on worker threads) recurses at most this deep.
 * Generous: a real recipe chains a few maps on a tensor, and one expression
 * nests at most AST_MAX_DEPTH. */
#define CG_MAX_DEPTH 1024

/* X(ENUM, name, inputs (-1: any), class) */
#define CG_OPS(X)                               \
    X(INPUT, "input", 0, CG_LEAF)               \
    X(CONST, "const", 0, CG_LEAF)               \
    X(INIT, "init", 0, CG_LEAF)                 \
    X(NEG, "neg", 1, CG_ELEMENTWISE)            \
    X(ABS, "abs", 1, CG_ELEMENTWISE)            \
    X(SQRT, "sqrt", 1, CG_ELEMENTWISE)          \
    X(EXP, "exp", 1, CG_ELEMENTWISE)            \
    X(LOG, "log", 1, CG_ELEMENTWISE)            \
    X(TANH, "tanh", 1, CG_ELEMENTWISE)          \
    X(SIGN, "sign", 1, CG_ELEMENTWISE)          \
    X(ADD, "add", 2, CG_ELEMENTWISE)            \
    X(SUB, "sub", 2, CG_ELEMENTWISE)            \
    X(MUL, "mul", 2, CG_ELEMENTWISE)            \
    X(DIV, "div", 2, CG_ELEMENTWISE)            \
    X(CLIP, "clip", 3, CG_ELEMENTWISE)          \
    X(SIN, "sin", 1, CG_ELEMENTWISE)            \
    X(COS, "cos", 1, CG_ELEMENTWISE)            \
    X(ACOS, "acos", 1, CG_ELEMENTWISE)          \
    X(POW, "pow", 2, CG_ELEMENTWISE)            \
    X(MINIMUM, "minimum", 2, CG_ELEMENTWISE)    \
    X(MAXIMUM, "maximum", 2, CG_ELEMENTWISE)    \
    X(LT, "lt", 2, CG_ELEMENTWISE)              \
    X(LE, "le", 2, CG_ELEMENTWISE)              \
    X(GT, "gt", 2, CG_ELEMENTWISE)              \
    X(GE, "ge", 2, CG_ELEMENTWISE)              \
    X(EQ, "eq", 2, CG_ELEMENTWISE)              \
    X(NE, "ne", 2, CG_ELEMENTWISE)              \
    X(WHERE, "where", 3, CG_ELEMENTWISE)        \
    X(PAD, "pad", 2, CG_ELEMENTWISE)            \
    X(BERNOULLI, "bernoulli", 0, CG_LEAF)       \
    X(CAST, "cast", 1, CG_ELEMENTWISE)          \
    X(FULL_LIKE, "full_like", 2, CG_ELEMENTWISE) \
    X(NORM, "norm", 1, CG_REDUCTION)            \
    X(MEAN, "mean", 1, CG_REDUCTION)            \
    X(STD, "std", 1, CG_REDUCTION)              \
    X(MIN, "min", 1, CG_REDUCTION)              \
    X(MAX, "max", 1, CG_REDUCTION)              \
    X(SUM, "sum", 1, CG_REDUCTION)              \
    X(TOPK, "topk_mask", 1, CG_REDUCTION)       \
    X(TRANSPOSE, "transpose", 1, CG_LAYOUT)     \
    X(RESHAPE, "reshape", 1, CG_LAYOUT)         \
    X(SLICE, "slice", 1, CG_LAYOUT)             \
    X(CONCAT, "concat", -1, CG_LAYOUT)          \
    X(STACK, "stack", -1, CG_LAYOUT)            \
    X(REPEAT, "repeat", 1, CG_LAYOUT)           \
    X(BROADCAST, "broadcast", 1, CG_LAYOUT)     \
    X(MATMUL, "matmul", 2, CG_MATMUL)

/* CG_MATMUL: its right operand is computed whole and held in memory before
 * the kernel runs (a pass, as a reduction's operand is); its left operand
 * streams, rows at a time. */
typedef enum cg_class { CG_LEAF, CG_ELEMENTWISE, CG_REDUCTION, CG_LAYOUT, CG_MATMUL } cg_class;

typedef enum cg_op {
#define X(e, name, n, cls) OP_##e,
    CG_OPS(X)
#undef X
    OP_COUNT
} cg_op;

const char *cg_op_name(cg_op op);
cg_class cg_op_class(cg_op op);
/* An elementwise operation (not cast or full_like) on scalar operands v, or
 * a reduction over the single value v[0], in double: what the runtime does
 * element by element, and what the compiler folds numbers with. */
double cg_scalar(cg_op op, const double *v);

/* X(ENUM, name, random, fan-based, from) — the initializers of SPEC §3.2.
 * Their parameters are in cg_init.p, as the compiler binds them. */
#define CG_INITS(X)                                                       \
    X(ZEROS, "zeros", false, false, "")                                   \
    X(ONES, "ones", false, false, "")                                     \
    X(VALUE, "value", false, false, "")                                   \
    X(NORMAL, "normal", true, false, "jax.nn.initializers.normal")        \
    X(UNIFORM, "uniform", true, false, "jax.nn.initializers.uniform")     \
    X(TRUNCATED_NORMAL, "truncated_normal", true, false,                 \
      "jax.nn.initializers.truncated_normal")                             \
    X(HE_UNIFORM, "he_uniform", true, true, "jax.nn.initializers.he_uniform") \
    X(HE_NORMAL, "he_normal", true, true, "jax.nn.initializers.he_normal") \
    X(LECUN_NORMAL, "lecun_normal", true, true, "jax.nn.initializers.lecun_normal") \
    X(LECUN_UNIFORM, "lecun_uniform", true, true, "jax.nn.initializers.lecun_uniform") \
    X(XAVIER_UNIFORM, "xavier_uniform", true, true, "jax.nn.initializers.xavier_uniform") \
    X(XAVIER_NORMAL, "xavier_normal", true, true, "jax.nn.initializers.xavier_normal") \
    X(KAIMING_UNIFORM, "kaiming_uniform", true, true, "torch.nn.init.kaiming_uniform_") \
    X(KAIMING_NORMAL, "kaiming_normal", true, true, "torch.nn.init.kaiming_normal_")

/* JAX's other names of the same initializers: X(name, ENUM). */
#define CG_INIT_ALIASES(X)                                                \
    X("glorot_uniform", XAVIER_UNIFORM)                                   \
    X("glorot_normal", XAVIER_NORMAL)

typedef enum cg_init_kind {
#define X(e, name, random, fan, from) INIT_##e,
    CG_INITS(X)
#undef X
    INIT_COUNT
} cg_init_kind;

const char *cg_init_name(cg_init_kind k);
bool cg_init_random(cg_init_kind k);
bool cg_init_fan_based(cg_init_kind k);
/* The initializer a name (or an alias of CG_INIT_ALIASES) spells, or
 * INIT_COUNT. */
cg_init_kind cg_init_lookup(const char *name);

typedef struct cg_init {
    cg_init_kind kind;
    double p[2];      /* value; mean, std; lo, hi; std; a */
    uint64_t seed;
    const char *key;  /* the name the tensor had when generated: its stream */
    uint64_t fan_in, fan_out;
} cg_init;

typedef struct cg_node {
    cg_op op;
    surg_dtype dtype; /* SURG_DTYPE_COUNT for a weak scalar constant */
    uint32_t rank;
    const uint64_t *shape;
    uint64_t nelems;
    const cg_id *in;  /* ids of nodes made before this one */
    uint32_t n_in;
    uint32_t depth; /* nodes on the longest path down to a leaf */
    union {
        size_t input; /* OP_INPUT: index in the input checkpoint */
        double value; /* OP_CONST */
        const cg_init *init; /* OP_INIT */
        const uint32_t *perm; /* OP_TRANSPOSE */
        uint32_t axis; /* OP_CONCAT, OP_STACK */
        struct {
            uint32_t axis;
            uint64_t n;
        } repeat; /* OP_REPEAT: each element n times along axis (np.repeat) */
        struct {
            uint32_t axis;
            uint64_t before, after;
        } pad; /* OP_PAD: in[1], a scalar, fills the new places */
        struct {
            double p;
            uint64_t seed;
            const char *key;   /* the output's name: its stream */
            uint32_t index;    /* which bernoulli() of the statement, from 0 */
        } bern; /* OP_BERNOULLI */
        struct {
            double fraction;
            uint64_t k;        /* floor(fraction * elements): how many are true */
        } topk; /* OP_TOPK */
        struct {
            uint32_t axis;
            uint64_t start, len;
            bool squeeze; /* unstack: the axis goes away */
        } slice;
        /* A reduction over one axis (`over` set; else over every element,
         * to a scalar): the operand seen as [outer, len, inner], len the
         * axis; the result, [outer, inner] in C order, is held in memory. */
        struct {
            bool over;
            bool keepdims;
            uint32_t axis;
            uint64_t outer, len, inner;
        } reduce;
        /* OP_MATMUL: [..., m, k] @ [..., k, n], batch axes broadcast; a
         * 1-D left operand is [1, k] and a 1-D right one [k, 1], that axis
         * then left out of the result (NumPy's rule). */
        struct {
            uint64_t m, k, n;
            bool vec_left, vec_right;
        } matmul;
    } a;
    src_span origin; /* the statement that made it */
} cg_node;

/* Whether a node reduces over one axis, its result held (a.reduce.over): a
 * topk_mask is classed with the reductions (its operand is read whole
 * before it) but has its own attributes, and no such axis. */
bool cg_reduces_axis(const cg_node *n);

#endif
