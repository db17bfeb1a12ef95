/* ast.h: the syntax tree of a recipe, exactly as written: no names resolved,
 * no types, no checks beyond the shape of the text. Every node lives in the
 * recipe's arena and carries the byte span it came from. */
#ifndef SURG_AST_H
#define SURG_AST_H

#include <stdbool.h>
#include <stddef.h>

#include "support/arena.h"
#include "support/source.h"

typedef struct ast_expr ast_expr;

/* How deep an expression may nest: each operator, sign, call and pair of
 * parentheses is a level. The parser rejects a deeper one where it goes past
 * the bound, so every later walk of an expression (printing, lowering) is
 * recursive with bounded depth. Generous: real expressions nest a handful. */
enum { AST_MAX_DEPTH = 256 };

typedef struct ast_arg {
    const char *name; /* NULL for a positional argument */
    src_span name_span;
    ast_expr *value;
    struct ast_arg *next;
    struct ast_arg *last; /* in a list's first node, while parsing: its last */
} ast_arg;

/* The binary operators written with two characters, by a character of
 * their own; '+', '-', '*', '/', '@', '<', '>' stand for themselves. */
enum { AST_LE = 'l', AST_GE = 'g', AST_EQ = 'e', AST_NE = 'n' };

/* A binary operator as written: "+", "<=", ... */
static inline const char *ast_op_text(char op)
{
    switch (op) {
    case '+': return "+";
    case '-': return "-";
    case '*': return "*";
    case '/': return "/";
    case '@': return "@";
    case '<': return "<";
    case '>': return ">";
    case AST_LE: return "<=";
    case AST_GE: return ">=";
    case AST_EQ: return "==";
    default: return "!=";
    }
}

/* Comparisons bind looser than + and -, and do not chain (a < b < c is a
 * syntax error). */
static inline bool ast_op_compares(char op)
{
    return op == '<' || op == '>' || op == AST_LE || op == AST_GE || op == AST_EQ ||
           op == AST_NE;
}

typedef enum ast_expr_kind {
    EX_NUMBER, /* 0.5, 1e-3 */
    EX_IDENT,  /* x, zeros, he_uniform, bf16 */
    EX_STRING, /* "ft/$1", as tensor()'s argument */
    EX_NEG,    /* -e */
    EX_BINARY, /* e + e, e - e, e * e, e / e, comparisons (e < e, e <= e, ...) */
    EX_CALL,   /* name(args) */
} ast_expr_kind;

struct ast_expr {
    ast_expr_kind kind;
    src_span span;
    unsigned depth; /* levels, this one included (parentheses counted) */
    union {
        struct {
            const char *text; /* as written, so nothing is lost in printing */
            double value;
        } number;
        const char *ident;
        const char *string;
        ast_expr *operand;
        struct {
            char op; /* the operator's character; AST_LE etc. for two */
            ast_expr *lhs, *rhs;
        } binary;
        struct {
            const char *name;
            src_span name_span;
            ast_arg *args;
        } call;
    } u;
};

/* A quoted string: a pattern, a template or a name. */
typedef struct ast_string {
    const char *text; /* escapes decoded */
    src_span span;
    bool optional;    /* `optional` before a pattern */
    struct ast_string *next;
    struct ast_string *last; /* in a list's first node, while parsing: its last */
} ast_string;

typedef struct ast_number {
    const char *text;
    double value;
    src_span span;
    struct ast_number *next;
    struct ast_number *last; /* in a list's first node, while parsing: its last */
} ast_number;

/* dtype[dims]; a dimension without a number is `*`. */
typedef struct ast_dim {
    ast_number *size;
    src_span span;
    struct ast_dim *next;
    struct ast_dim *last; /* in a list's first node, while parsing: its last */
} ast_dim;

/* A type's shape as written: `f32[4, *]`, `f32[...]` (any rank, in expect
 * only) or `f32` alone (the same). */
typedef enum ast_type_form { TYPE_DIMS, TYPE_ANY_RANK, TYPE_DTYPE_ONLY } ast_type_form;

typedef struct ast_type {
    const char *dtype;
    ast_type_form form;
    src_span dtype_span;
    ast_dim *dims;
    src_span span;
} ast_type;

/* A clause of init-lora: `rank 4`, `alpha 8`, `style peft`, `a = INIT`,
 * `as "A", "B"`, `rslora`, `fan_in_fan_out`, `dropout 0.05`; of mirror:
 * `factored "V", "ROW", "COL"`, `min 128`; of merge-lora: `into "base/"`,
 * `config "adapter_config.json"`. */
typedef enum ast_clause_kind {
    CL_RANK,
    CL_ALPHA,
    CL_STYLE,
    CL_INIT, /* a = ..., b = ... (name says which) */
    CL_AS,
    CL_FACTORED, /* names: the three factored slots */
    CL_MIN,      /* number: the smallest dimension that is factored */
    CL_RSLORA,         /* init-lora's options: `rslora`, */
    CL_FAN_IN_FAN_OUT, /* `fan_in_fan_out`, */
    CL_DROPOUT,        /* `dropout P` (number) */
    CL_INTO,     /* merge-lora: names, the base's prefix */
    CL_CONFIG,   /* merge-lora: names, the adapter's config file */
} ast_clause_kind;

typedef struct ast_clause {
    ast_clause_kind kind;
    src_span span;
    const char *name;    /* CL_STYLE: the style word; CL_INIT: "a" or "b" */
    src_span name_span;
    ast_number *number;  /* CL_RANK, CL_ALPHA, CL_MIN, CL_DROPOUT */
    ast_expr *init;      /* CL_INIT */
    ast_string *names;   /* CL_AS: two templates; CL_FACTORED: three slots */
    struct ast_clause *next;
    struct ast_clause *last; /* in a list's first node, while parsing: its last */
} ast_clause;

#define AST_STATEMENTS(X)                                                   \
    X(RENAME, "rename") X(DROP, "drop") X(KEEP, "keep") X(FILL, "fill")     \
    X(FILL_NEW, "fill") X(MAP, "map") X(TIE, "tie") X(UNTIE, "untie")       \
    X(INIT_LORA, "init-lora") X(SPLIT, "split") X(CONCAT, "concat")         \
    X(STACK, "stack") X(UNSTACK, "unstack") X(EXPECT, "expect")             \
    X(SEED, "seed") X(LAYOUT, "layout") X(MIRROR, "mirror")                 \
    X(META, "meta") X(META_DROP, "meta") X(META_KEEP, "meta")             \
    X(MERGE_LORA, "merge-lora") X(LET, "let") X(RESIZE, "resize")

/* The functions of map's expressions, X(name, OP, HOW): the grammar knows
 * their names (a function written as a statement is pointed at map), the
 * compiler what each computes (OP_ of runtime/ops.h, and how its
 * arguments are read, expr.c). */
#define AST_FUNCTIONS(X)                                                      \
    X(abs, ABS, UNARY) X(sqrt, SQRT, UNARY) X(exp, EXP, UNARY) X(log, LOG, UNARY) \
    X(tanh, TANH, UNARY) X(sign, SIGN, UNARY) X(clip, CLIP, CLIP)               \
    X(norm, NORM, REDUCE) X(mean, MEAN, REDUCE) X(std, STD, REDUCE)             \
    X(min, MIN, REDUCE) X(max, MAX, REDUCE) X(sum, SUM, REDUCE)                 \
    X(cast, CAST, CAST) X(full_like, FULL_LIKE, FULL)                           \
    X(zeros_like, FULL_LIKE, ZEROS) X(transpose, TRANSPOSE, TRANSPOSE)          \
    X(reshape, RESHAPE, RESHAPE) X(tensor, INPUT, TENSOR)                       \
    X(matmul, MATMUL, MATMUL) X(sin, SIN, UNARY) X(cos, COS, UNARY)             \
    X(acos, ACOS, UNARY) X(pow, POW, BINARY) X(minimum, MINIMUM, BINARY)        \
    X(maximum, MAXIMUM, BINARY) X(where, WHERE, WHERE) X(slice, SLICE, SLICE)   \
    X(pad, PAD, PAD) X(repeat, REPEAT, REPEAT) X(concat, CONCAT, CONCAT)        \
    X(bernoulli, BERNOULLI, BERNOULLI) X(topk_mask, TOPK, TOPK)

typedef enum ast_stmt_kind {
#define X(e, kw) STMT_##e,
    AST_STATEMENTS(X)
#undef X
} ast_stmt_kind;

/* One statement. Which fields are set depends on the kind:
 *   rename P -> T           patterns, targets
 *   drop P / keep P, P...   patterns
 *   fill P = INIT           patterns, expr
 *   fill "N" : TYPE = INIT  patterns (the name), type, expr
 *   map P = EXPR            patterns, expr
 *   tie P = T               patterns, targets
 *   untie P                 patterns
 *   init-lora P clauses     patterns, clauses
 *   split P axis N [sizes N, ...] -> T, T...   patterns, axis, sizes, targets
 *   concat|stack|unstack P axis N -> T         patterns, axis, targets
 *   expect P : TYPE         patterns, type
 *   seed N                  number
 *   layout WORD             word
 *   mirror "P" -> "S", ... [factored "V", "R", "C" [min N]]
 *                           patterns (the params prefix), targets (slots,
 *                           may be none), clauses (factored, min)
 *   meta "K" = VALUE        patterns (the key), expr (the value: a string
 *                           or a call, read by the compiler)
 *   meta drop P, ...        patterns (globs over metadata keys)
 *   meta keep P, ...        patterns
 *   merge-lora "A" into "B" [config "F"]
 *                           patterns (the adapter's prefix), clauses
 *   let NAME = EXPR         word (the name), expr
 *   resize P axis N to N [multiple N]   patterns, axis, size, multiple */
typedef struct ast_stmt {
    ast_stmt_kind kind;
    src_span span, keyword_span;
    ast_string *patterns;
    ast_string *targets;
    ast_expr *expr;
    ast_type type;
    ast_clause *clauses;
    ast_number *number; /* seed */
    ast_number *axis;
    ast_number *sizes;
    ast_number *size, *multiple; /* resize */
    const char *word; /* layout; let: the name */
    src_span word_span;
    struct ast_stmt *next;
} ast_stmt;

/* A comment, kept so that `surg fmt` can put it back. */
typedef struct ast_comment {
    const char *text; /* from '#' to the end of the line */
    src_span span;
    struct ast_comment *next;
} ast_comment;

/* A statement left out for a syntax error, in recipe order. */
typedef struct ast_broken {
    src_span at;
    struct ast_broken *next;
} ast_broken;

typedef struct ast_recipe {
    src_file src;
    ast_stmt *stmts; /* after syntax errors, those without one */
    ast_comment *comments;
    ast_broken *broken;
    size_t n_broken;
} ast_recipe;

const char *ast_stmt_keyword(ast_stmt_kind kind);

#endif
