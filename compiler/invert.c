/* invert.c: `surg invert` (surg_invert): the recipe that takes a recipe's
 * result back to its input, computed from the compiled program. Every output
 * tensor's value is followed down its graph through the operations that
 * lose nothing (an exact widening cast, a negation, transpose, reshape, the
 * slices of split/unstack, the joins of concat/stack) to the input tensor it
 * came from; the inverse undoes each one, tensor by tensor, with explicit
 * names. What loses information (drop, keep that drops, fill, tie over a
 * tensor, merge-lora, a map through anything else) is an error at its
 * statement, with what would make it invertible. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/diag.h"
#include "compiler/lower.h"
#include "compiler/program.h"
#include "grammar/print.h"
#include "grammar/recipe.h"

/* A statement with no inverse, found while compiling. */
typedef struct iv_err {
    src_span at;
    char *msg; /* owned */
    const char *note;
} iv_err;

typedef struct iv {
    iv_err err[64];
    size_t n_err;
    bool more; /* past the table: said once */
    bool nomem;
    const src_file *src;
} iv;

static void iv_add(iv *I, src_span at, const char *msg, const char *note)
{
    for (size_t i = 0; i < I->n_err; i++)
        if (I->err[i].at.start == at.start)
            return; /* one error per statement */
    if (I->n_err == sizeof I->err / sizeof *I->err) {
        I->more = true;
        return;
    }
    char *m = strdup(msg);
    if (!m) {
        I->nomem = true;
        return;
    }
    I->err[I->n_err++] = (iv_err){at, m, note};
}

static void after(void *user, const lw *L, const ast_stmt *s, size_t n_before,
                  size_t tied_before)
{
    iv *I = user;
    I->src = L->src;
    size_t stored = L->st.n - L->st.n_tied, stored_before = n_before - tied_before;
    switch (s->kind) {
    case STMT_DROP:
        if (L->st.n < n_before)
            iv_add(I, s->span, "drop has no inverse: the dropped tensors are gone",
                   "keep them in the result (rename them aside, or write them to a second "
                   "output with --params/--state) and drop them later");
        break;
    case STMT_KEEP:
        if (L->st.n < n_before)
            iv_add(I, s->span,
                   "keep has no inverse here: it drops the tensors it does not match",
                   "keep every tensor (rename the others aside, or write them to a second "
                   "output with --params/--state)");
        break;
    case STMT_FILL:
        iv_add(I, s->span, "fill has no inverse: it replaces the tensors' values",
               "fill a new name instead (fill \"NAME\" : TYPE = INIT), which the inverse "
               "drops, and keep the old tensor");
        break;
    case STMT_MERGE_LORA:
        iv_add(I, s->span,
               "merge-lora has no inverse: W + s*(B @ A) does not give W, A and B back",
               "keep the adapter and the base as they were (write the merge to a second "
               "output)");
        break;
    case STMT_TIE:
        if (stored < stored_before)
            iv_add(I, s->span,
                   "tie has no inverse here: it discards the tied tensor's own values",
                   "untie gives the stored tensor's values back, which is the tied tensor's "
                   "only when they were equal: tie names that are already tied in the "
                   "input, or keep the tensor");
        break;
    default:
        break;
    }
}

/* The casts whose every value the narrowing cast back gives exactly. */
static bool widening(surg_dtype from, surg_dtype to)
{
    switch (from) {
    case SURG_F8_E4M3:
    case SURG_F8_E5M2:
        return to == SURG_F16 || to == SURG_BF16 || to == SURG_F32 || to == SURG_F64;
    case SURG_F16:
    case SURG_BF16:
        return to == SURG_F32 || to == SURG_F64;
    case SURG_F32:
        return to == SURG_F64;
    case SURG_I8:
        return to == SURG_I16 || to == SURG_I32 || to == SURG_I64 ||
               to == SURG_F16 || to == SURG_BF16 || to == SURG_F32 ||
               to == SURG_F64;
    case SURG_U8:
        return to == SURG_I16 || to == SURG_U16 || to == SURG_I32 ||
               to == SURG_U32 || to == SURG_I64 || to == SURG_U64 ||
               to == SURG_F16 || to == SURG_BF16 || to == SURG_F32 ||
               to == SURG_F64;
    case SURG_I16:
        return to == SURG_I32 || to == SURG_I64 || to == SURG_F32 ||
               to == SURG_F64;
    case SURG_U16:
        return to == SURG_I32 || to == SURG_U32 || to == SURG_I64 ||
               to == SURG_U64 || to == SURG_F32 || to == SURG_F64;
    case SURG_I32:
        return to == SURG_I64 || to == SURG_F64;
    case SURG_U32:
        return to == SURG_I64 || to == SURG_U64 || to == SURG_F64;
    default:
        return false;
    }
}

static const char *dtype_word(surg_dtype d) { return surg_dtype_recipe_name(d); }

static void buf_set(buf *b, const char *s)
{
    if (!b->failed)
        b->len = 0;
    buf_puts(b, s);
}

/* Steps undone in one expression: a longer chain is undone by several
 * maps, so the inverse's expressions stay far inside AST_MAX_DEPTH. */
enum { IV_STEPS = 32 };

/* Follow the unary lossless operations down from n; `ex` gets the
 * expressions (of x, one per line, in the order to apply) that undo them.
 * Returns the node they stop at; *bad the node that loses information, if
 * that is why (CG_NONE with `ex` failed: out of memory). */
static cg_id peel(const cg_graph *g, cg_id n, buf *ex, cg_id *bad)
{
    *bad = CG_NONE;
    buf_set(ex, "x");
    buf done, t;
    buf_init(&done);
    buf_init(&t);
    cg_id res = CG_NONE;
    unsigned steps = 0;
    for (unsigned guard = 0; guard <= CG_MAX_DEPTH && !ex->failed; guard++) {
        const cg_node *o = cg_get(g, n);
        if (o->op == OP_INPUT || o->op == OP_SLICE || o->op == OP_CONCAT ||
            o->op == OP_STACK || o->op == OP_INIT || o->op == OP_CONST ||
            o->op == OP_BERNOULLI) {
            res = n;
            break;
        }
        if (o->n_in < 1) {
            *bad = n;
            break;
        }
        const cg_node *in = cg_get(g, o->in[0]);
        if (o->op == OP_CAST && in->dtype == o->dtype) {
            n = o->in[0];
            continue;
        }
        if (steps == IV_STEPS) {
            buf_puts(&done, ex->data);
            buf_putc(&done, '\n');
            buf_set(ex, "x");
            steps = 0;
        }
        if (t.failed)
            break;
        t.len = 0;
        buf_puts(&t, "");
        switch (o->op) {
        case OP_CAST:
            if (!widening(in->dtype, o->dtype)) {
                *bad = n;
                goto out;
            }
            buf_printf(&t, "cast(%s, %s)", ex->data, dtype_word(in->dtype));
            break;
        case OP_NEG:
            buf_printf(&t, "-(%s)", ex->data);
            break;
        case OP_TRANSPOSE: {
            uint32_t inv[SURG_MAX_RANK];
            for (uint32_t i = 0; i < o->rank; i++)
                inv[o->a.perm[i]] = i;
            buf_printf(&t, "transpose(%s", ex->data);
            for (uint32_t i = 0; i < o->rank; i++)
                buf_printf(&t, ", %u", inv[i]);
            buf_puts(&t, ")");
            break;
        }
        case OP_RESHAPE:
            buf_printf(&t, "reshape(%s", ex->data);
            for (uint32_t i = 0; i < in->rank; i++)
                buf_printf(&t, ", %llu", (unsigned long long)in->shape[i]);
            buf_puts(&t, ")");
            break;
        default:
            *bad = n;
            goto out;
        }
        if (t.failed)
            break;
        buf_set(ex, t.data);
        steps++;
        n = o->in[0];
    }
out:
    if (done.failed || t.failed)
        ex->failed = true;
    if (done.len && !ex->failed) {
        buf_puts(&done, ex->data);
        buf_set(ex, done.failed ? "" : done.data);
        ex->failed = ex->failed || done.failed;
    }
    buf_free(&done);
    buf_free(&t);
    return ex->failed ? CG_NONE : res;
}

/* ---- building the inverse's text ------------------------------------- */

/* One output, followed down. */
typedef struct iv_out {
    const char *name; /* its name in the result */
    cg_id root;       /* where the lossless operations stop */
    char *ex;         /* the expression of x that undoes them */
    const char *cur;  /* its name in the inverse, as it goes */
} iv_out;

typedef struct iv_cand {
    size_t input;     /* the input tensor it recovers */
    const char *name; /* where it is in the inverse */
} iv_cand;

typedef struct ib {
    buf text;
    arena *ar;
    const char *tmp; /* a prefix no name starts with */
    iv_cand *cand;
    size_t n_cand, cap_cand;
    bool nomem;
} ib;

static void put_literal(ib *B, const char *name, bool template)
{
    gl_put_literal(&B->text, name, template);
    B->nomem |= B->text.failed;
}

static void put_pattern(ib *B, const char *name) { put_literal(B, name, false); }

static void put_template(ib *B, const char *name) { put_literal(B, name, true); }

static const char *tmp_name(ib *B, const char *kind, size_t k, long j)
{
    buf b;
    buf_init(&b);
    if (j < 0)
        buf_printf(&b, "%s/%s%zu", B->tmp, kind, k);
    else
        buf_printf(&b, "%s/%s%zu/%ld", B->tmp, kind, k, j);
    char *s = b.failed ? NULL : ar_strdup(B->ar, b.data);
    buf_free(&b);
    if (!s)
        B->nomem = true;
    return s ? s : "";
}

/* One map per line of `ex` (peel's expressions). */
static void put_map(ib *B, const char *name, const char *ex)
{
    while (ex && *ex) {
        size_t len = strcspn(ex, "\n");
        if (!(len == 1 && ex[0] == 'x')) {
            buf_puts(&B->text, "map ");
            put_pattern(B, name);
            buf_puts(&B->text, " = ");
            buf_append(&B->text, ex, len);
            buf_putc(&B->text, '\n');
        }
        ex += len + (ex[len] == '\n');
    }
}

static void put_rename(ib *B, const char *from, const char *to)
{
    if (strcmp(from, to) == 0)
        return;
    buf_puts(&B->text, "rename ");
    put_pattern(B, from);
    buf_puts(&B->text, " -> ");
    put_template(B, to);
    buf_putc(&B->text, '\n');
}

static void add_cand(ib *B, size_t input, const char *name)
{
    if (B->n_cand == B->cap_cand) {
        size_t cap = B->cap_cand ? 2 * B->cap_cand : 16;
        iv_cand *c = realloc(B->cand, cap * sizeof *c);
        if (!c) {
            B->nomem = true;
            return;
        }
        B->cand = c, B->cap_cand = cap;
    }
    B->cand[B->n_cand++] = (iv_cand){input, name};
}

/* A lost value's error, at the statement that made the node. */
static void bad_node(iv *I, const cg_graph *g, cg_id id)
{
    if (id == CG_NONE) { /* peel ran out of memory */
        I->nomem = true;
        return;
    }
    const cg_node *n = cg_get(g, id);
    if (n->op == OP_CAST) {
        const cg_node *in = cg_get(g, n->in[0]);
        buf m;
        buf_init(&m);
        buf_printf(&m, "the cast from %s to %s has no inverse: it does not keep every value",
                   dtype_word(in->dtype), dtype_word(n->dtype));
        if (m.failed)
            I->nomem = true;
        else
            iv_add(I, n->origin, m.data,
                   "only widening casts invert (f16 or bf16 to f32, f32 to f64, i8 to i32, "
                   "...): cast to a wider dtype, or keep the original tensor beside the cast "
                   "one");
        buf_free(&m);
        return;
    }
    buf m;
    buf_init(&m);
    if (n->op == OP_SLICE || n->op == OP_CONCAT || n->op == OP_STACK)
        buf_printf(&m, "this %s has no inverse here: its pieces do not all reach the result "
                       "whole", cg_op_name(n->op));
    else
        buf_printf(&m, "this value has no inverse: %s is not one of the lossless steps "
                       "(widening casts, negation, transpose, reshape)", cg_op_name(n->op));
    if (m.failed)
        I->nomem = true;
    else
        iv_add(I, n->origin, m.data,
           "keep the original tensor beside the result (rename it aside, or write it to a "
           "second output with --params/--state)");
    buf_free(&m);
}

static int by_start(const void *a, const void *b)
{
    const iv_err *x = a, *y = b;
    return x->at.start < y->at.start ? -1 : x->at.start > y->at.start;
}

static int by_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The input tensor named `name`, or SIZE_MAX (the input's names are sorted). */
static size_t input_index(surg_ckpt *in, const char *name)
{
    size_t lo = 0, hi = surg_ckpt_count(in);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(surg_ckpt_tensor(in, mid)->name, name);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SIZE_MAX;
}

typedef struct iv_slice {
    cg_id value;  /* the node sliced */
    cg_id root;   /* the slice */
    const char *name; /* the tensor that holds it in the inverse */
    char *ex;     /* what undoes the steps after the slice (owned) */
    uint32_t axis;
    uint64_t start, len;
    bool squeeze;
} iv_slice;

static int by_value_start(const void *a, const void *b)
{
    const iv_slice *x = a, *y = b;
    if (x->value != y->value)
        return x->value < y->value ? -1 : 1;
    return x->start < y->start ? -1 : x->start > y->start;
}

static void shape_text(buf *b, const cg_node *n)
{
    buf_printf(b, "%s[", dtype_word(n->dtype));
    for (uint32_t i = 0; i < n->rank; i++)
        buf_printf(b, "%s%llu", i ? ", " : "", (unsigned long long)n->shape[i]);
    buf_putc(b, ']');
}

/* A name that blocks "__inverse<k>/" (k = 0: "__inverse/"): k, else -1. */
static long blocks(const char *name)
{
    static const char base[] = "__inverse";
    if (strncmp(name, base, sizeof base - 1) != 0)
        return -1;
    const char *p = name + sizeof base - 1;
    if (*p == '/')
        return 0;
    long k = 0;
    for (int d = 0; d < 9 && *p >= '0' && *p <= '9'; d++, p++)
        k = k * 10 + (*p - '0');
    return *p == '/' && p > name + sizeof base - 1 && name[sizeof base - 1] != '0' ? k : -1;
}

static void block(uint8_t *taken, size_t n, const char *name)
{
    long k = blocks(name);
    if (k >= 0 && (size_t)k < n)
        taken[k] = 1;
}

/* The prefix of the inverse's temporary names: the first "__inverse",
 * "__inverse1", ... under which no name of the input or the result lies (one
 * pass over the names). */
static const char *pick_tmp(arena *ar, const surg_program *p, surg_ckpt *in)
{
    size_t n = p->n_out + p->n_alias + surg_ckpt_count(in) + surg_ckpt_tie_count(in) + 1;
    uint8_t *taken = calloc(n, 1);
    if (!taken)
        return NULL;
    for (size_t i = 0; i < p->n_out; i++)
        block(taken, n, p->out[i].name);
    for (size_t i = 0; i < p->n_alias; i++)
        block(taken, n, p->alias[i].key);
    for (size_t i = 0; i < surg_ckpt_count(in); i++)
        block(taken, n, surg_ckpt_tensor(in, i)->name);
    for (size_t i = 0; i < surg_ckpt_tie_count(in); i++)
        block(taken, n, surg_ckpt_tie(in, i)->key);
    size_t k = 0;
    while (taken[k]) /* n names block at most n - 1 of them */
        k++;
    free(taken);
    char num[32];
    snprintf(num, sizeof num, "%zu", k);
    buf b;
    buf_init(&b);
    buf_printf(&b, "__inverse%s", k ? num : "");
    const char *tmp = b.failed ? NULL : ar_strdup(ar, b.data);
    buf_free(&b);
    return tmp;
}

/* The stored output named `name`. */
static cg_id out_node(const surg_program *p, const char *name)
{
    size_t lo = 0, hi = p->n_out;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(p->out[mid].name, name);
        if (c == 0)
            return p->out[mid].node;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return CG_NONE;
}

static void build(iv *I, ib *B, const surg_program *p, surg_ckpt *in, iv_out *o, size_t n_o,
                  const char *recipe_path);

surg_status surg_invert(const surg_recipe *r, surg_ckpt *from, surg_sink *sink, char **out)
{
    *out = NULL;
    const ast_recipe *ast = gr_recipe_ast(r);
    iv I = {.src = &ast->src};
    surg_program *p = NULL;
    surg_status st = pg_compile_traced(r, from, NULL, sink, after, &I, &p);
    if (st) {
        for (size_t i = 0; i < I.n_err; i++)
            free(I.err[i].msg);
        return st;
    }
    size_t n_o = p->n_out + p->n_alias;
    iv_out *o = calloc(n_o + 1, sizeof *o);
    ib B = {.ar = &p->ar};
    buf_init(&B.text);
    B.tmp = pick_tmp(&p->ar, p, from);
    if (!o || !B.tmp)
        B.nomem = true;
    else
        build(&I, &B, p, from, o, n_o, ast->src.path);
    for (size_t i = 0; o && i < n_o; i++)
        free(o[i].ex);
    free(o);
    free(B.cand);
    st = SURG_OK;
    if (I.nomem || B.nomem) {
        st = dg_nomem(sink, ast->src.path);
    } else if (I.n_err) {
        qsort(I.err, I.n_err, sizeof *I.err, by_start);
        for (size_t i = 0; i < I.n_err; i++) {
            if (I.err[i].at.start == 0 && I.err[i].at.end == 0)
                dg_file_notes(sink, SURG_ERROR, "invert", ast->src.path, &I.err[i].note, 1,
                              "%s", I.err[i].msg);
            else
                src_report(&ast->src, sink, SURG_ERROR, "invert", I.err[i].at,
                           &I.err[i].note, 1, "%s", I.err[i].msg);
        }
        if (I.more)
            dg_file(sink, SURG_ERROR, "invert", ast->src.path,
                    "more statements have no inverse (only the first %zu are listed)",
                    I.n_err);
        st = SURG_EINVALID;
    } else {
        /* Through the parser and the canonical formatter. */
        surg_recipe *inv = NULL;
        st = surg_recipe_parse("<inverse>", B.text.data ? B.text.data : "", B.text.len,
                               sink, &inv);
        if (!st) {
            *out = surg_recipe_format(inv);
            if (!*out)
                st = dg_nomem(sink, ast->src.path);
        }
        surg_recipe_free(inv);
    }
    for (size_t i = 0; i < I.n_err; i++)
        free(I.err[i].msg);
    buf_free(&B.text);
    surg_program_free(p);
    return st;
}

static void lost_input(iv *I, const char *name)
{
    buf m;
    buf_init(&m);
    buf_printf(&m, "the input tensor \"%s\" does not reach the result: the inverse cannot "
                   "give it back", name);
    if (m.failed)
        I->nomem = true;
    else
        iv_add(I, (src_span){0, 0}, m.data,
               "every input tensor must reach the result through lossless steps: was its name "
               "given another tensor's value (map ... = tensor(...))?");
    buf_free(&m);
}

/* The joins that undo split and unstack: the slices of one value, in order
 * along their axis, renamed to the pieces of a temporary name and joined. */
static void join_slices(iv *I, ib *B, const cg_graph *g, iv_slice *sl, size_t n,
                        size_t k)
{
    const cg_node *v = cg_get(g, sl[0].value);
    uint64_t at = 0;
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        ok = sl[i].axis == sl[0].axis && sl[i].squeeze == sl[0].squeeze && sl[i].start == at;
        at += sl[i].len;
    }
    if (!ok || at != v->shape[sl[0].axis]) {
        bad_node(I, g, sl[0].root);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        put_map(B, sl[i].name, sl[i].ex);
        put_rename(B, sl[i].name, tmp_name(B, "join", k, (long)i));
    }
    const char *whole = tmp_name(B, "whole", k, -1);
    buf_puts(&B->text, sl[0].squeeze ? "stack " : "concat ");
    buf g2;
    buf_init(&g2);
    buf_printf(&g2, "%s/join%zu/*", B->tmp, k);
    pr_string(&B->text, g2.failed ? "" : g2.data);
    if (g2.failed)
        B->nomem = true;
    buf_free(&g2);
    buf_printf(&B->text, " axis %u -> ", sl[0].axis);
    put_template(B, whole);
    buf_putc(&B->text, '\n');
    buf ex;
    buf_init(&ex);
    cg_id bad, root = peel(g, sl[0].value, &ex, &bad);
    if (root == CG_NONE || cg_get(g, root)->op != OP_INPUT) {
        bad_node(I, g, root == CG_NONE ? bad : sl[0].value);
    } else {
        put_map(B, whole, ex.data);
        add_cand(B, cg_get(g, root)->a.input, whole);
    }
    if (ex.failed)
        B->nomem = true;
    buf_free(&ex);
}

/* split or unstack of a joined output, its pieces followed to inputs. */
static bool add_slice(ib *B, iv_slice **sl, size_t *n, size_t *cap, const cg_graph *g,
                      cg_id root, const char *name, const char *ex)
{
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        iv_slice *p = realloc(*sl, c * sizeof *p);
        if (!p)
            return B->nomem = true, false;
        *sl = p, *cap = c;
    }
    const cg_node *rt = cg_get(g, root);
    char *e = strdup(ex ? ex : "x");
    if (!e)
        return B->nomem = true, false;
    (*sl)[(*n)++] = (iv_slice){rt->in[0], root, name, e, rt->a.slice.axis,
                               rt->a.slice.start, rt->a.slice.len, rt->a.slice.squeeze};
    return true;
}

static void split_join(iv *I, ib *B, const cg_graph *g, iv_out *x, size_t k, iv_slice **sl,
                       size_t *n_sl, size_t *cap_sl)
{
    const cg_node *c = cg_get(g, x->root);
    put_map(B, x->cur, x->ex);
    buf_puts(&B->text, c->op == OP_STACK ? "unstack " : "split ");
    put_pattern(B, x->cur);
    buf_printf(&B->text, " axis %u", c->a.axis);
    if (c->op == OP_CONCAT) {
        buf_puts(&B->text, " sizes ");
        for (uint32_t j = 0; j < c->n_in; j++)
            buf_printf(&B->text, "%s%llu", j ? ", " : "",
                       (unsigned long long)cg_get(g, c->in[j])->shape[c->a.axis]);
        buf_puts(&B->text, " -> ");
        for (uint32_t j = 0; j < c->n_in; j++) {
            if (j)
                buf_puts(&B->text, ", ");
            put_template(B, tmp_name(B, "piece", k, (long)j));
        }
    } else {
        buf_puts(&B->text, " -> ");
        buf t;
        buf_init(&t);
        buf_printf(&t, "%s/piece%zu/$i", B->tmp, k);
        pr_string(&B->text, t.failed ? "" : t.data);
        if (t.failed)
            B->nomem = true;
        buf_free(&t);
    }
    buf_putc(&B->text, '\n');
    for (uint32_t j = 0; j < c->n_in; j++) {
        const char *piece = tmp_name(B, "piece", k, (long)j);
        buf ex;
        buf_init(&ex);
        cg_id bad, root = peel(g, c->in[j], &ex, &bad);
        if (root != CG_NONE && cg_get(g, root)->op == OP_SLICE) {
            add_slice(B, sl, n_sl, cap_sl, g, root, piece, ex.data);
        } else if (root == CG_NONE || cg_get(g, root)->op != OP_INPUT) {
            bad_node(I, g, root == CG_NONE ? bad : x->root);
        } else {
            put_map(B, piece, ex.data);
            add_cand(B, cg_get(g, root)->a.input, piece);
        }
        if (ex.failed)
            B->nomem = true;
        buf_free(&ex);
    }
}

static bool is_sep(char c) { return c == '/' || c == '.'; }

/* How many bytes of a and b, a separator and what follows it, end both:
 * a = P + S, b = Q + S with P ending in a separator and S not empty; 0 if
 * none. */
static size_t common_tail(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), n = 0;
    while (n < la && n < lb && a[la - 1 - n] == b[lb - 1 - n])
        n++;
    /* the tail starts right after a separator of a */
    while (n > 0 && !(la - n > 0 && is_sep(a[la - n - 1])))
        n--;
    return n < la && n < lb ? n : 0;
}

typedef struct iv_ren {
    const char *from, *to;
    size_t tail; /* common_tail */
} iv_ren;

static int by_move(const void *x, const void *y)
{
    const iv_ren *a = x, *b = y;
    size_t pa = strlen(a->from) - a->tail, pb = strlen(b->from) - b->tail;
    size_t qa = strlen(a->to) - a->tail, qb = strlen(b->to) - b->tail;
    int c = pa != pb ? (pa < pb ? -1 : 1) : strncmp(a->from, b->from, pa);
    if (c == 0)
        c = qa != qb ? (qa < qb ? -1 : 1) : strncmp(a->to, b->to, qa);
    return c ? c : strcmp(a->from, b->from);
}

static bool same_move(const iv_ren *a, const iv_ren *b)
{
    return by_move(a, b) == 0 || (strlen(a->from) - a->tail == strlen(b->from) - b->tail &&
                                  strlen(a->to) - a->tail == strlen(b->to) - b->tail &&
                                  strncmp(a->from, b->from, strlen(a->from) - a->tail) == 0 &&
                                  strncmp(a->to, b->to, strlen(a->to) - a->tail) == 0);
}

/* How many of the sorted names start with prefix[0..len). */
static size_t count_prefix(const char **sorted, size_t n, const char *prefix, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) { /* first name >= prefix */
        size_t mid = lo + (hi - lo) / 2;
        if (strncmp(sorted[mid], prefix, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t k = lo;
    while (k < n && strncmp(sorted[k], prefix, len) == 0)
        k++;
    return k - lo;
}

/* The final renames, when no target is a name the inverse still holds: the
 * moves of a family of names that keep their tails (P + S -> Q + S for every
 * name under P) as one `rename "P**" -> "Q$1"`, the others one by one.
 * `sorted`: the names held (from), sorted. */
static void put_renames(ib *B, const char **from, const char **to, size_t n,
                        const char **sorted)
{
    iv_ren *r = calloc(n + 1, sizeof *r);
    if (!r) {
        B->nomem = true;
        return;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(from[i], to[i]) != 0)
            r[m] = (iv_ren){from[i], to[i], common_tail(from[i], to[i])}, m++;
    if (m)
        qsort(r, m, sizeof *r, by_move);
    for (size_t i = 0; i < m;) {
        size_t j = i + 1;
        while (r[i].tail && j < m && r[j].tail && same_move(&r[i], &r[j]))
            j++;
        size_t plen = strlen(r[i].from) - r[i].tail, qlen = strlen(r[i].to) - r[i].tail;
        if (j - i >= 2 && count_prefix(sorted, n, r[i].from, plen) == j - i) {
            char *p = strndup(r[i].from, plen), *q = strndup(r[i].to, qlen);
            if (!p || !q) {
                B->nomem = true;
            } else {
                buf pat;
                buf_init(&pat);
                for (const char *c = p; *c; c++) {
                    if (strchr("*?[]{}\\", *c))
                        buf_putc(&pat, '\\');
                    buf_putc(&pat, *c);
                }
                buf_puts(&pat, "**");
                buf_puts(&B->text, "rename ");
                pr_string(&B->text, pat.failed ? "" : pat.data);
                B->nomem = B->nomem || pat.failed;
                buf_free(&pat);
                buf_puts(&B->text, " -> ");
                buf t;
                buf_init(&t);
                for (const char *c = q; *c; c++) {
                    if (*c == '$')
                        buf_putc(&t, '$');
                    buf_putc(&t, *c);
                }
                buf_puts(&t, "$1");
                pr_string(&B->text, t.failed ? "" : t.data);
                B->nomem = B->nomem || t.failed;
                buf_free(&t);
                buf_putc(&B->text, '\n');
            }
            free(p);
            free(q);
        } else {
            for (size_t k = i; k < j; k++)
                put_rename(B, r[k].from, r[k].to);
        }
        i = j;
    }
    free(r);
}

static int by_input(const void *a, const void *b)
{
    const iv_cand *x = a, *y = b;
    return x->input < y->input ? -1 : x->input > y->input;
}

static void build(iv *I, ib *B, const surg_program *p, surg_ckpt *in, iv_out *o, size_t n_o,
                  const char *recipe_path)
{
    const cg_graph *g = &p->g;
    buf_printf(&B->text, "# The inverse of %s: run it on the result to get the input back.\n",
               recipe_path);
    /* Tied names of the result become tensors of their own first. */
    for (size_t i = 0; i < p->n_alias; i++) {
        buf_puts(&B->text, "untie ");
        put_pattern(B, p->alias[i].key);
        buf_putc(&B->text, '\n');
    }
    iv_slice *sl = NULL;
    size_t n_sl = 0, cap_sl = 0;
    for (size_t i = 0; i < n_o && !B->nomem; i++) {
        iv_out *x = &o[i];
        cg_id node = i < p->n_out ? p->out[i].node : out_node(p, p->alias[i - p->n_out].value);
        x->name = x->cur = i < p->n_out ? p->out[i].name : p->alias[i - p->n_out].key;
        buf ex;
        buf_init(&ex);
        cg_id bad;
        x->root = node == CG_NONE ? CG_NONE : peel(g, node, &ex, &bad);
        x->ex = buf_take(&ex);
        if (!x->ex) {
            B->nomem = true;
            break;
        }
        if (x->root == CG_NONE) {
            if (node != CG_NONE)
                bad_node(I, g, bad);
            continue;
        }
        const cg_node *rt = cg_get(g, x->root);
        switch (rt->op) {
        case OP_INPUT:
            put_map(B, x->cur, x->ex);
            add_cand(B, rt->a.input, x->cur);
            break;
        case OP_CONCAT:
        case OP_STACK:
            split_join(I, B, g, x, i, &sl, &n_sl, &cap_sl);
            break;
        case OP_SLICE:
            add_slice(B, &sl, &n_sl, &cap_sl, g, x->root, x->cur, x->ex);
            break;
        default: /* made by the recipe: fill "NEW", init-lora */
            buf_puts(&B->text, "drop ");
            put_pattern(B, x->cur);
            buf_putc(&B->text, '\n');
            break;
        }
    }
    if (n_sl)
        qsort(sl, n_sl, sizeof *sl, by_value_start);
    for (size_t i = 0, k = 0; i < n_sl; k++) {
        size_t j = i + 1;
        while (j < n_sl && sl[j].value == sl[i].value)
            j++;
        join_slices(I, B, g, sl + i, j - i, k);
        i = j;
    }
    for (size_t i = 0; i < n_sl; i++)
        free(sl[i].ex);
    free(sl);
    if (I->n_err || B->nomem)
        return;
    /* Which name recovers which input; its tied names after it. */
    if (B->n_cand)
        qsort(B->cand, B->n_cand, sizeof *B->cand, by_input);
    size_t n_in = surg_ckpt_count(in), n_ties = surg_ckpt_tie_count(in);
    const char **from = calloc(B->n_cand + 1, sizeof *from);
    const char **to = calloc(B->n_cand + 1, sizeof *to);
    const char **cur = calloc(B->n_cand + 1, sizeof *cur);
    size_t *tie_of = calloc(n_ties + 1, sizeof *tie_of);
    bool *tie_done = calloc(n_ties + 1, sizeof *tie_done);
    if (!from || !to || !cur || !tie_of || !tie_done) {
        B->nomem = true;
        goto done;
    }
    for (size_t t = 0; t < n_ties; t++)
        tie_of[t] = input_index(in, surg_ckpt_tie(in, t)->value);
    size_t n_ren = 0, c = 0;
    for (size_t i = 0; i < n_in; i++) {
        const char *name = surg_ckpt_tensor(in, i)->name;
        size_t c0 = c;
        while (c < B->n_cand && B->cand[c].input < i)
            c++;
        c0 = c;
        while (c < B->n_cand && B->cand[c].input == i)
            c++;
        if (c == c0) {
            lost_input(I, name);
            continue;
        }
        size_t primary = c0;
        for (size_t k = c0; k < c; k++)
            if (strcmp(B->cand[k].name, name) == 0)
                primary = k;
        from[n_ren] = B->cand[primary].name, to[n_ren++] = name;
        size_t next = c0;
        for (size_t t = 0; t < n_ties; t++) {
            if (tie_of[t] != i)
                continue;
            while (next < c && next == primary)
                next++;
            if (next < c) { /* a copy: it becomes the tied name */
                from[n_ren] = B->cand[next++].name, to[n_ren++] = surg_ckpt_tie(in, t)->key;
                tie_done[t] = true;
            }
        }
        for (; next < c; next++) /* more copies: not needed */
            if (next != primary) {
                buf_puts(&B->text, "drop ");
                put_pattern(B, B->cand[next].name);
                buf_putc(&B->text, '\n');
            }
    }
    if (I->n_err)
        goto done;
    /* Renames straight to the input's names when none is taken, else
     * through temporary names. */
    memcpy(cur, from, n_ren * sizeof *cur);
    qsort(cur, n_ren, sizeof *cur, by_str);
    bool clash = false;
    for (size_t i = 0; i < n_ren && !clash; i++) {
        const char **hit = bsearch(&to[i], cur, n_ren, sizeof *cur, by_str);
        clash = hit && strcmp(from[i], to[i]) != 0;
    }
    for (size_t i = 0; i < n_ren && clash; i++) {
        if (strcmp(from[i], to[i]) == 0)
            continue; /* stays: no other tensor is renamed onto it */
        const char *t = tmp_name(B, "name", i, -1);
        put_rename(B, from[i], t);
        from[i] = t;
    }
    if (clash)
        for (size_t i = 0; i < n_ren; i++)
            put_rename(B, from[i], to[i]);
    else
        put_renames(B, from, to, n_ren, cur);
    for (size_t t = 0; t < n_ties; t++) {
        const surg_meta_entry *e = surg_ckpt_tie(in, t);
        if (tie_of[t] == SIZE_MAX)
            continue;
        if (!tie_done[t]) { /* a name to tie: any value of the type */
            buf ty;
            buf_init(&ty);
            shape_text(&ty, &(cg_node){.dtype = surg_ckpt_tensor(in, tie_of[t])->dtype,
                                       .rank = surg_ckpt_tensor(in, tie_of[t])->rank,
                                       .shape = surg_ckpt_tensor(in, tie_of[t])->shape});
            buf_puts(&B->text, "fill ");
            pr_string(&B->text, e->key);
            buf_printf(&B->text, " : %s = zeros\n", ty.failed ? "" : ty.data);
            if (ty.failed)
                B->nomem = true;
            buf_free(&ty);
        }
        buf_puts(&B->text, "tie ");
        put_pattern(B, e->key);
        buf_puts(&B->text, " = ");
        put_template(B, e->value);
        buf_putc(&B->text, '\n');
    }
    if (B->text.failed)
        B->nomem = true;
done:
    free(from);
    free(to);
    free(cur);
    free(tie_of);
    free(tie_done);
}
