/* target.c: `--to`: the result against the new model's abstract state. A
 * tied name, of the result or of the target, counts as a name with the
 * type of the tensor it is stored as. A name the result lacks and one the
 * target lacks, of one dtype and the same dimensions, are paired as one
 * problem ("renamed?"), found by sorting both sides on their types, never
 * by comparing every pair; a problem that one statement caused is reported
 * at that statement. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/buf.h"
#include "support/diag.h"
#include "support/natural.h"
#include "compiler/glob.h"
#include "compiler/lower.h"
#include "compiler/program.h"
#include "support/strsort.h"

static void type_text(buf *b, const surg_tensor_info *t)
{
    buf_printf(b, "%s[", surg_dtype_recipe_name(t->dtype));
    for (uint32_t i = 0; i < t->rank; i++)
        buf_printf(b, "%s%llu", i ? ", " : "", (unsigned long long)t->shape[i]);
    buf_putc(b, ']');
}

static bool same_type(const surg_tensor_info *a, const surg_tensor_info *b)
{
    return a->dtype == b->dtype && a->rank == b->rank &&
           memcmp(a->shape, b->shape, a->rank * sizeof *a->shape) == 0;
}

/* A name of one side, stored or tied, with the type of what it is stored as. */
typedef struct side_name {
    const char *name; /* first: the key ss_sort sorts by */
    const surg_tensor_info *t;
    bool tied;
    src_span at; /* the result's: the statement that gave the name */
    cg_id node;  /* the result's: its value */
} side_name;

/* The stored tensors and the tied names (NULL after running out of memory;
 * a tied name whose tensor is missing is left out). */
static side_name *result_names(const surg_program *p, size_t *n)
{
    side_name *v = malloc((p->n_out + p->n_alias + 1) * sizeof *v);
    if (!v)
        return NULL;
    *n = 0;
    for (size_t i = 0; i < p->n_out; i++)
        v[(*n)++] = (side_name){p->out_info[i].name, &p->out_info[i], false, p->out_at[i],
                                p->out[i].node};
    for (size_t i = 0; i < p->n_alias; i++) {
        size_t lo = 0, hi = p->n_out; /* the outputs are in name order */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (strcmp(p->out_info[mid].name, p->alias[i].value) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < p->n_out && strcmp(p->out_info[lo].name, p->alias[i].value) == 0)
            v[(*n)++] = (side_name){p->alias[i].key, &p->out_info[lo], true, p->alias_at[i],
                                    p->out[lo].node};
    }
    if (ss_sort(v, *n, sizeof *v) != 0) {
        free(v);
        return NULL;
    }
    return v;
}

static side_name *target_names(const surg_ckpt *t, size_t *n)
{
    size_t count = surg_ckpt_count(t), ties = surg_ckpt_tie_count(t);
    side_name *v = malloc((count + ties + 1) * sizeof *v);
    if (!v)
        return NULL;
    *n = 0;
    for (size_t i = 0; i < count; i++)
        v[(*n)++] = (side_name){surg_ckpt_tensor(t, i)->name, surg_ckpt_tensor(t, i), false,
                                {0, 0}, CG_NONE};
    for (size_t i = 0; i < ties; i++) {
        const surg_meta_entry *e = surg_ckpt_tie(t, i);
        size_t k = surg_ckpt_find(t, e->value);
        if (k != (size_t)-1 && surg_ckpt_find(t, e->key) == (size_t)-1)
            v[(*n)++] = (side_name){e->key, surg_ckpt_tensor(t, k), true, {0, 0}, CG_NONE};
    }
    if (ss_sort(v, *n, sizeof *v) != 0) {
        free(v);
        return NULL;
    }
    return v;
}

/* ---- pairing the missing with the unexpected ---------------------------- */

/* One name only one side has: its dimensions sorted, so that a tensor and
 * its transpose sort together. */
typedef struct lone {
    const side_name *s;
    size_t index;        /* in its side's list */
    const uint64_t *dims; /* s->t->rank of them, ascending */
    size_t len;          /* of the name */
    bool have;           /* the result's (unexpected), else the target's (missing) */
    bool paired;
} lone;

/* Runs of digits in a name, compared by value (leading zeros aside): two
 * names of one layer ("h.3.attn", "layers.3.self_attn") agree. */
static int digits_cmp(const char *a, const char *b)
{
    for (;;) {
        while (*a && (*a < '0' || *a > '9'))
            a++;
        while (*b && (*b < '0' || *b > '9'))
            b++;
        if (!*a || !*b)
            return (*a != 0) - (*b != 0);
        while (*a == '0' && a[1] >= '0' && a[1] <= '9')
            a++;
        while (*b == '0' && b[1] >= '0' && b[1] <= '9')
            b++;
        size_t la = 0, lb = 0;
        while (a[la] >= '0' && a[la] <= '9')
            la++;
        while (b[lb] >= '0' && b[lb] <= '9')
            lb++;
        if (la != lb)
            return la < lb ? -1 : 1;
        int c = memcmp(a, b, la);
        if (c)
            return c;
        a += la;
        b += lb;
    }
}

static int type_cmp(const lone *x, const lone *y)
{
    const surg_tensor_info *a = x->s->t, *b = y->s->t;
    if (a->dtype != b->dtype)
        return a->dtype < b->dtype ? -1 : 1;
    if (a->rank != b->rank)
        return a->rank < b->rank ? -1 : 1;
    for (uint32_t i = 0; i < a->rank; i++)
        if (x->dims[i] != y->dims[i])
            return x->dims[i] < y->dims[i] ? -1 : 1;
    return 0;
}

static int by_type_digits(const void *p, const void *q)
{
    const lone *x = p, *y = q;
    int c = type_cmp(x, y);
    if (!c)
        c = digits_cmp(x->s->name, y->s->name);
    return c ? c : natural_cmp(x->s->name, y->s->name);
}

static int by_type(const void *p, const void *q)
{
    const lone *x = p, *y = q;
    int c = type_cmp(x, y);
    return c ? c : natural_cmp(x->s->name, y->s->name);
}

/* How alike two names look: the bytes they share at the start and end,
 * up to LIKENESS_MOST of each, so comparing huge names costs what short
 * ones do. */
#define LIKENESS_MOST 4096
static size_t likeness(const lone *x, const lone *y)
{
    const char *a = x->s->name, *b = y->s->name;
    size_t la = x->len, lb = y->len, pre = 0, suf = 0;
    while (pre < la && pre < lb && pre < LIKENESS_MOST && a[pre] == b[pre])
        pre++;
    while (suf < la - pre && suf < lb - pre && suf < LIKENESS_MOST &&
           a[la - 1 - suf] == b[lb - 1 - suf])
        suf++;
    return pre + suf;
}

/* A group small enough to look at every pair of. */
#define PAIR_SMALL 64

/* Pair the group g[0..n): in a small group each missing name takes the
 * unexpected one most like it (of its own dimensions' order first); in a
 * large one, with as many of each, in natural order, when `in_order`. */
static void pair_group(lone *g, size_t n, bool in_order, size_t *pair_of_have)
{
    size_t n_miss = 0, n_have = 0;
    for (size_t i = 0; i < n; i++)
        if (!g[i].paired)
            *(g[i].have ? &n_have : &n_miss) += 1;
    if (!n_miss || !n_have)
        return;
    if (n_miss * n_have <= PAIR_SMALL) {
        for (size_t i = 0; i < n; i++) {
            if (g[i].have || g[i].paired)
                continue;
            size_t best = n, best_score = 0;
            for (size_t j = 0; j < n; j++) {
                if (!g[j].have || g[j].paired)
                    continue;
                size_t score = 1 + likeness(&g[i], &g[j]) +
                               (same_type(g[i].s->t, g[j].s->t) ? (size_t)1 << 40 : 0);
                if (score > best_score)
                    best = j, best_score = score;
            }
            if (best < n) {
                g[i].paired = g[best].paired = true;
                pair_of_have[g[best].index] = g[i].index;
            }
        }
        return;
    }
    if (!in_order || n_miss != n_have)
        return;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (g[i].have || g[i].paired)
            continue;
        while (j < n && (!g[j].have || g[j].paired))
            j++;
        g[i].paired = g[j].paired = true;
        pair_of_have[g[j].index] = g[i].index;
    }
}

/* Sort the lone names not yet paired and pair each group of one type. */
static void pair_pass(lone *v, size_t n, bool digits, size_t *pair_of_have)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!v[i].paired)
            v[m++] = v[i];
    qsort(v, m, sizeof *v, digits ? by_type_digits : by_type);
    for (size_t i = 0; i < m;) {
        size_t j = i + 1;
        while (j < m && type_cmp(&v[i], &v[j]) == 0 &&
               (!digits || digits_cmp(v[i].s->name, v[j].s->name) == 0))
            j++;
        pair_group(v + i, j - i, digits, pair_of_have);
        i = j;
    }
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* pair_of_have[k] for each unexpected name k: the missing name it pairs
 * with, or SIZE_MAX. False when out of memory. */
static bool pair_lone(const side_name *want, const size_t *missing, size_t n_missing,
                      const side_name *have, const size_t *extra, size_t n_extra,
                      size_t *pair_of_have)
{
    size_t n = n_missing + n_extra, n_dims = 0;
    for (size_t i = 0; i < n_missing; i++)
        n_dims += want[missing[i]].t->rank;
    for (size_t i = 0; i < n_extra; i++)
        n_dims += have[extra[i]].t->rank;
    lone *v = malloc((n + 1) * sizeof *v);
    uint64_t *dims = malloc((n_dims + 1) * sizeof *dims);
    if (!v || !dims) {
        free(v);
        free(dims);
        return false;
    }
    uint64_t *d = dims;
    for (size_t i = 0; i < n; i++) {
        bool is_have = i >= n_missing;
        size_t k = is_have ? extra[i - n_missing] : missing[i];
        const side_name *s = is_have ? &have[k] : &want[k];
        if (s->t->rank) {
            memcpy(d, s->t->shape, s->t->rank * sizeof *d);
            qsort(d, s->t->rank, sizeof *d, u64_cmp);
        }
        v[i] = (lone){s, k, d, strlen(s->name), is_have, false};
        d += s->t->rank;
    }
    pair_pass(v, n, true, pair_of_have);  /* of one layer first */
    pair_pass(v, n, false, pair_of_have); /* then any, in small groups */
    free(v);
    free(dims);
    return true;
}

/* ---- transposes --------------------------------------------------------- */

/* The axes p of `from` that give `to` (to[i] = from[p[i]], as transpose(x,
 * p...) does): reversed when that fits, else each axis of `to` takes the
 * first unused one of its size. False when `to` is no permutation of it,
 * or the same shape. *reversed: p is the reversal. */
static bool permutation(const surg_tensor_info *from, const surg_tensor_info *to, uint32_t *p,
                        bool *reversed)
{
    uint32_t r = from->rank;
    if (to->rank != r || r < 2 || memcmp(from->shape, to->shape, r * sizeof *to->shape) == 0)
        return false;
    *reversed = true;
    for (uint32_t i = 0; i < r; i++)
        *reversed &= to->shape[i] == from->shape[r - 1 - i];
    if (*reversed) {
        for (uint32_t i = 0; i < r; i++)
            p[i] = r - 1 - i;
        return true;
    }
    bool used[SURG_MAX_RANK] = {false};
    for (uint32_t i = 0; i < r; i++) {
        uint32_t k = 0;
        while (k < r && (used[k] || from->shape[k] != to->shape[i]))
            k++;
        if (k == r)
            return false;
        used[k] = true;
        p[i] = k;
    }
    return true;
}

/* transpose(x) or transpose(x, 0, 2, 1), or x when no permutation; in a
 * cast when the dtypes differ. */
static void fix_expr(buf *b, const surg_tensor_info *have, const surg_tensor_info *want,
                     const uint32_t *p, bool permuted, bool reversed)
{
    bool cast = have->dtype != want->dtype;
    if (cast)
        buf_puts(b, "cast(");
    if (!permuted) {
        buf_putc(b, 'x');
    } else if (reversed) {
        buf_puts(b, "transpose(x)");
    } else {
        buf_puts(b, "transpose(x");
        for (uint32_t i = 0; i < want->rank; i++)
            buf_printf(b, ", %u", p[i]);
        buf_putc(b, ')');
    }
    if (cast)
        buf_printf(b, ", %s)", surg_dtype_recipe_name(want->dtype));
}

static void axes_text(buf *b, const uint32_t *p, uint32_t rank, bool reversed)
{
    if (reversed) {
        buf_puts(b, " (axes reversed)");
        return;
    }
    buf_puts(b, " (axes in the order");
    for (uint32_t i = 0; i < rank; i++)
        buf_printf(b, "%s %u", i ? "," : "", p[i]);
    buf_putc(b, ')');
}

/* ---- reporting ---------------------------------------------------------- */

typedef struct checker {
    const surg_program *p;
    const src_file *src;
    const char *file;
    surg_sink *sink;
    uint64_t walk; /* steps left for type_origin, over the whole check */
    unsigned errors;
    bool nomem;
} checker;

/* The steps every type_origin of a check may take in all. */
#define WALK_BUDGET ((uint64_t)1 << 24)

/* The statement that gave a value its dtype and shape: down through the
 * operands of the same type to the node that made the type ({0, 0} when
 * it is the input's). */
static src_span type_origin(checker *C, cg_id id)
{
    const cg_node *n = cg_get(&C->p->g, id);
    for (;;) {
        if (n->op == OP_INPUT)
            return (src_span){0, 0};
        const cg_node *same = NULL;
        for (uint32_t k = 0; k < n->n_in && !same; k++) {
            const cg_node *o = cg_get(&C->p->g, n->in[k]);
            if (o->dtype == n->dtype && o->rank == n->rank &&
                (!n->rank || memcmp(o->shape, n->shape, n->rank * sizeof *n->shape) == 0))
                same = o;
        }
        if (!same || !C->walk)
            return n->origin;
        C->walk--;
        n = same;
    }
}

static bool has_place(src_span at) { return at.end != 0; }

/* One error, at `at` in the recipe when there is such a place, else at
 * the target's file. */
static void report(checker *C, src_span at, const char *code, buf *msg, buf *notes,
                   size_t n_notes)
{
    const char *texts[3];
    bool failed = msg->failed;
    for (size_t i = 0; i < n_notes; i++) {
        texts[i] = notes[i].data;
        failed |= notes[i].failed;
    }
    C->errors++;
    if (failed) {
        C->nomem = true;
        return;
    }
    if (C->src && has_place(at))
        src_report(C->src, C->sink, SURG_ERROR, code, at, texts, n_notes, "%s", msg->data);
    else
        dg_file_notes(C->sink, SURG_ERROR, code, C->file, texts, n_notes, "%s", msg->data);
}

static void report_missing(checker *C, const side_name *want)
{
    buf msg, note;
    buf_init(&msg);
    buf_init(&note);
    buf_printf(&msg, "the result lacks \"%s\" (", want->name);
    type_text(&msg, want->t);
    buf_printf(&msg, " in the target%s)", want->tied ? ", tied" : "");
    const state_gone *g = lw_gone_find(C->p->gone, C->p->n_gone, want->name);
    if (g && C->src)
        lw_gone_text(&note, C->src, g);
    report(C, g ? g->at : (src_span){0, 0}, "target-missing", &msg, &note, g && C->src);
    buf_free(&msg);
    buf_free(&note);
}

static void report_extra(checker *C, const side_name *have)
{
    buf msg;
    buf_init(&msg);
    buf_printf(&msg, "the result has %s\"%s\" (", have->tied ? "the tied name " : "",
               have->name);
    type_text(&msg, have->t);
    buf_puts(&msg, "), which the target does not");
    report(C, have->at, "target-unexpected", &msg, NULL, 0);
    buf_free(&msg);
}

static void report_mismatch(checker *C, const side_name *want, const side_name *have)
{
    buf msg, note;
    buf_init(&msg);
    buf_init(&note);
    buf_printf(&msg, "the result's %s\"%s\" is ", have->tied ? "tied " : "", have->name);
    type_text(&msg, have->t);
    buf_puts(&msg, ", but the target has ");
    type_text(&msg, want->t);
    uint32_t p[SURG_MAX_RANK];
    bool reversed = false, permuted = permutation(have->t, want->t, p, &reversed);
    if (permuted) {
        buf_puts(&msg, ": transposed?");
        axes_text(&msg, p, want->t->rank, reversed);
    }
    bool fixable = permuted || (have->t->rank == want->t->rank &&
                                (!want->t->rank ||
                                 memcmp(have->t->shape, want->t->shape,
                                        want->t->rank * sizeof *want->t->shape) == 0));
    if (fixable && !have->tied) {
        buf_puts(&note, "to match the target: map ");
        gl_put_literal(&note, have->name, false);
        buf_puts(&note, " = ");
        fix_expr(&note, have->t, want->t, p, permuted, reversed);
    }
    src_span at = type_origin(C, have->node);
    report(C, has_place(at) ? at : have->at, "target-mismatch", &msg, &note,
           fixable && !have->tied);
    buf_free(&msg);
    buf_free(&note);
}

static void report_pair(checker *C, const side_name *want, const side_name *have)
{
    buf msg, notes[2];
    buf_init(&msg);
    buf_init(&notes[0]);
    buf_init(&notes[1]);
    uint32_t p[SURG_MAX_RANK];
    bool reversed = false, permuted = permutation(have->t, want->t, p, &reversed);
    buf_printf(&msg, "the result has %s\"%s\" ", have->tied ? "the tied name " : "",
               have->name);
    if (permuted) {
        buf_putc(&msg, '(');
        type_text(&msg, have->t);
        buf_puts(&msg, ") ");
    }
    buf_printf(&msg, "where the target has \"%s\" (", want->name);
    type_text(&msg, want->t);
    buf_printf(&msg, "): renamed%s?", permuted ? " and transposed" : "");
    if (permuted)
        axes_text(&msg, p, want->t->rank, reversed);
    buf_puts(&notes[0], "to match the target: rename ");
    gl_put_literal(&notes[0], have->name, false);
    buf_puts(&notes[0], " -> ");
    gl_put_literal(&notes[0], want->name, true);
    if (permuted) {
        buf_puts(&notes[1], "then: map ");
        gl_put_literal(&notes[1], want->name, false);
        buf_puts(&notes[1], " = ");
        fix_expr(&notes[1], have->t, want->t, p, true, reversed);
    }
    /* The recipe itself renamed the target's name away: say so first. */
    const state_gone *g = lw_gone_find(C->p->gone, C->p->n_gone, want->name);
    buf *n = notes, said, all[3];
    buf_init(&said);
    if (g && C->src) {
        lw_gone_text(&said, C->src, g);
        all[0] = said, all[1] = notes[0], all[2] = notes[1];
        n = all;
    }
    src_span at = has_place(have->at) ? have->at : g ? g->at : (src_span){0, 0};
    report(C, at, "target-renamed", &msg, n, (size_t)(permuted ? 2 : 1) + (n != notes));
    buf_free(&msg);
    buf_free(&said);
    buf_free(&notes[0]);
    buf_free(&notes[1]);
}

/* ---- the check ---------------------------------------------------------- */

enum { F_MISSING, F_EXTRA, F_MISMATCH, F_PAIR };

/* One problem, in the order of its name (the target's, where it has one). */
typedef struct finding {
    const char *key; /* first: the key ss_sort sorts by */
    int kind;
    size_t want, have;
} finding;

surg_status pg_check_target(const surg_program *p, const src_file *src, const surg_ckpt *target,
                            surg_sink *sink)
{
    const char *file = surg_ckpt_path(target);
    size_t n_want = 0, n_have = 0;
    side_name *want_v = target_names(target, &n_want), *have_v = result_names(p, &n_have);
    size_t *missing = malloc((n_want + 1) * sizeof *missing);
    size_t *extra = malloc((n_have + 1) * sizeof *extra);
    size_t *pair_of = malloc((n_have + 1) * sizeof *pair_of);
    finding *f = malloc((n_want + n_have + 1) * sizeof *f);
    bool ok = want_v && have_v && missing && extra && pair_of && f;
    size_t n_missing = 0, n_extra = 0, n_f = 0;
    /* Both lists are in name order: walk them together. */
    for (size_t i = 0, j = 0; ok && (i < n_want || j < n_have);) {
        int c = i == n_want ? 1 : j == n_have ? -1 : strcmp(want_v[i].name, have_v[j].name);
        if (c < 0) {
            missing[n_missing++] = i++;
        } else if (c > 0) {
            pair_of[j] = SIZE_MAX;
            extra[n_extra++] = j++;
        } else {
            if (!same_type(want_v[i].t, have_v[j].t))
                f[n_f++] = (finding){want_v[i].name, F_MISMATCH, i, j};
            i++;
            j++;
        }
    }
    ok = ok && pair_lone(want_v, missing, n_missing, have_v, extra, n_extra, pair_of);
    if (ok) {
        uint8_t *taken = calloc(n_want + 1, 1);
        ok = taken != NULL;
        for (size_t k = 0; ok && k < n_extra; k++) {
            size_t h = extra[k];
            if (pair_of[h] == SIZE_MAX) {
                f[n_f++] = (finding){have_v[h].name, F_EXTRA, 0, h};
            } else {
                taken[pair_of[h]] = 1;
                f[n_f++] = (finding){want_v[pair_of[h]].name, F_PAIR, pair_of[h], h};
            }
        }
        for (size_t k = 0; ok && k < n_missing; k++)
            if (!taken[missing[k]])
                f[n_f++] = (finding){want_v[missing[k]].name, F_MISSING, missing[k], 0};
        free(taken);
    }
    ok = ok && ss_sort(f, n_f, sizeof *f) == 0;
    checker C = {.p = p, .src = src, .file = file, .sink = sink, .walk = WALK_BUDGET};
    for (size_t k = 0; ok && k < n_f && !C.nomem; k++) {
        switch (f[k].kind) {
        case F_MISSING: report_missing(&C, &want_v[f[k].want]); break;
        case F_EXTRA: report_extra(&C, &have_v[f[k].have]); break;
        case F_MISMATCH: report_mismatch(&C, &want_v[f[k].want], &have_v[f[k].have]); break;
        case F_PAIR: report_pair(&C, &want_v[f[k].want], &have_v[f[k].have]); break;
        }
    }
    free(want_v);
    free(have_v);
    free(missing);
    free(extra);
    free(pair_of);
    free(f);
    if (!ok || C.nomem)
        return dg_nomem(sink, file);
    return C.errors ? SURG_EINVALID : SURG_OK;
}

surg_status surg_program_check_target(const surg_program *p, const surg_ckpt *target,
                                      surg_sink *sink)
{
    return pg_check_target(p, NULL, target, sink);
}
