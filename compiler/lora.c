/* lora.c: init-lora: a LoRA pair (A, B) beside each matched kernel, named
 * and initialized as Flax or PEFT would, and its record for the metadata
 * (from which a PEFT adapter's adapter_config.json is written). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/diag.h"

#include "compiler/mirror.h"
#include "compiler/statements.h"

typedef struct lora {
    int64_t rank;
    double alpha;
    const char *style; /* NULL: by name */
    const ast_expr *a, *b;
    const ast_string *as;
    bool rslora, fan_in_fan_out; /* PEFT's LoraConfig options, recorded */
    double dropout;
    const ast_clause *fif;       /* where fan_in_fan_out is written */
} lora;

static bool lora_clauses(lw *L, const ast_stmt *s, lora *o)
{
    *o = (lora){.rank = 0, .alpha = -1};
    unsigned before = L->errors;
    enum { SEEN_B = CL_DROPOUT + 1 };
    bool seen[SEEN_B + 1] = {0}; /* by kind; `b =` after them all */
    for (const ast_clause *c = s->clauses; c; c = c->next) {
        int k = c->kind == CL_INIT && c->name[0] == 'b' ? SEEN_B : (int)c->kind;
        if (seen[k]) {
            lw_error(L, c->span, "lora-clause", NULL, 0, "this init-lora clause is given twice");
            continue;
        }
        seen[k] = true;
        if (c->kind == CL_RANK)
            lw_integer(L, c->number, "rank", 1, 1 << 20, &o->rank);
        else if (c->kind == CL_ALPHA && !isfinite(c->number->value))
            lw_error(L, c->number->span, "number", NULL, 0, "alpha must be a finite number");
        else if (c->kind == CL_ALPHA)
            o->alpha = c->number->value;
        else if (c->kind == CL_STYLE)
            o->style = c->name;
        else if (c->kind == CL_INIT)
            *(c->name[0] == 'a' ? &o->a : &o->b) = c->init;
        else if (c->kind == CL_RSLORA)
            o->rslora = true;
        else if (c->kind == CL_FAN_IN_FAN_OUT)
            o->fan_in_fan_out = true, o->fif = c;
        else if (c->kind == CL_DROPOUT && !(c->number->value >= 0 && c->number->value <= 1))
            lw_error(L, c->number->span, "number", NULL, 0,
                     "dropout is a probability: from 0 to 1");
        else if (c->kind == CL_DROPOUT)
            o->dropout = c->number->value;
        else
            o->as = c->names;
    }
    if (!seen[CL_RANK])
        lw_error(L, s->keyword_span, "lora-rank", NULL, 0, "init-lora needs a rank: rank N");
    if (o->alpha < 0)
        o->alpha = (double)o->rank;
    return L->errors == before;
}

static const char *last_sep(const char *name)
{
    const char *p = NULL;
    for (const char *q = name; *q; q++)
        if (gl_is_sep(*q))
            p = q;
    return p;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* <module>/lora/lora_a (flax), or base_model.model.<module>.lora_A.weight
 * as PEFT's get_peft_model_state_dict names it (the PeftModel's
 * base_model, a LoraModel, holding the model as `model`; the adapter's own
 * name, "default", left out), with the separator the name already uses. */
static const char *lora_name(lw *L, const char *name, bool flax, bool is_a)
{
    const char *sep = last_sep(name);
    int prefix = sep ? (int)(sep - name + 1) : 0; /* the module and its separator */
    char s = sep ? *sep : flax ? '/' : '.';
    buf b;
    buf_init(&b);
    if (flax)
        buf_printf(&b, "%.*slora%clora_%c", prefix, name, s, is_a ? 'a' : 'b');
    else
        buf_printf(&b, "base_model%cmodel%c%.*slora_%c%cweight", s, s, prefix, name,
                   is_a ? 'A' : 'B', s);
    char *out = b.failed ? NULL : ar_strdup(L->ar, b.data);
    buf_free(&b);
    L->nomem |= !out;
    return out;
}

static void lora_record(lw *L, const lora *o, bool flax, const char *target, const char *a,
                        const char *b)
{
    cg_lora *r = ar_alloc(L->ar, sizeof *r);
    if (!r) {
        L->nomem = true;
        return;
    }
    *r = (cg_lora){.rank = o->rank, .alpha = o->alpha, .flax = flax, .target = target,
                   .a = a, .b = b, .rslora = o->rslora, .fan_in_fan_out = o->fan_in_fan_out,
                   .dropout = o->dropout};
    *L->lora_tail = r;
    L->lora_tail = &r->next;
}

/* The default initializers of SPEC §3.3, as if written in the recipe: A is
 * he_uniform (flax, as NNX's LoRA) or kaiming_uniform(a=sqrt(5)) (as PEFT
 * does); B is zeros, so the adapted model computes what the base model did. */
static ast_expr sqrt5 = {.kind = EX_NUMBER, .u.number = {"2.2360679775", 2.2360679775}};
static ast_arg a_sqrt5 = {.name = "a", .value = &sqrt5};
static const ast_expr default_a_flax = {.kind = EX_IDENT, .u.ident = "he_uniform"};
static const ast_expr default_a_peft = {.kind = EX_CALL,
                                        .u.call = {.name = "kaiming_uniform", .args = &a_sqrt5}};
static const ast_expr default_b = {.kind = EX_IDENT, .u.ident = "zeros"};

/* Whether a name is laid out as PyTorch lays out a Linear's weight,
 * [out, in], by what it says: a last segment "weight" (PyTorch's and
 * PEFT's names; Flax names its kernels "kernel"), or `layout torch`. */
static bool torch_named(const lw *L, const char *name)
{
    const char *sep = last_sep(name);
    return L->layout == LAYOUT_TORCH || strcmp(sep ? sep + 1 : name, "weight") == 0;
}

/* style flax reads a 2-D tensor as [in, out]: one that looks like a
 * PyTorch weight, [out, in], would get A and B of each other's sizes,
 * silently. Said once per statement. */
static void torch_as_flax(lw *L, const ast_stmt *s, const lora *opt, const lw_matches *ms)
{
    if (!opt->style || strcmp(opt->style, "flax") != 0)
        return;
    size_t n = 0, first = 0;
    for (size_t i = 0; i < ms->n; i++)
        if (cg_get(&L->g, ms->m[i].node)->rank == 2 && torch_named(L, ms->m[i].name) &&
            n++ == 0)
            first = i;
    if (!n)
        return;
    const cg_node *w = cg_get(&L->g, ms->m[first].node);
    char more[48] = "";
    if (n > 1)
        snprintf(more, sizeof more, " (and %zu more)", n - 1);
    lw_warning(L, s->span, "lora-torch-layout",
               "style flax reads \"%s\"%s as a Flax kernel, [in, out] (in %llu, out %llu), "
               "but %s says PyTorch, whose Linear weight is [out, in]: for PyTorch weights use "
               "style peft, or transpose them first (map ... = transpose(x))",
               ms->m[first].name, more, (unsigned long long)w->shape[0],
               (unsigned long long)w->shape[1],
               L->layout == LAYOUT_TORCH ? "`layout torch`" : "its name");
}

void lw_init_lora(lw *L, const ast_stmt *s)
{
    lora opt;
    lw_stmt o;
    if (!lora_clauses(L, s, &opt) || !lw_stmt_open(L, s, opt.as, opt.as ? 2 : 0, false, &o))
        return;
    named *names = calloc(2 * o.ms.n * (1 + mr_max_slots(L)) + 1, sizeof *names);
    size_t n_named = 0;
    torch_as_flax(L, s, &opt, &o.ms);
    for (size_t i = 0; names && i < o.ms.n && L->errors == o.before; i++) {
        const lw_match *m = &o.ms.m[i];
        const cg_node *w = cg_get(&L->g, m->node);
        bool flax = opt.style ? strcmp(opt.style, "flax") == 0 : ends_with(m->name, "kernel");
        if (!opt.style && !flax && !ends_with(m->name, "weight")) {
            lw_error(L, s->patterns->span, "lora-style", NULL, 0,
                     "cannot tell the style of \"%s\": its name ends in neither \"kernel\" nor "
                     "\"weight\"; add style flax or style peft",
                     m->name);
            break;
        }
        if (flax && opt.fan_in_fan_out) {
            lw_error(L, opt.fif->span, "lora-clause", NULL, 0,
                     "fan_in_fan_out is an option of style peft (a weight stored [in, out], "
                     "as GPT-2's Conv1D); \"%s\" is adapted in style flax",
                     m->name);
            break;
        }
        if (w->rank != 2) {
            lw_error(L, s->patterns->span, "lora-rank2", NULL, 0,
                     "init-lora needs a 2-D kernel, but \"%s\" is %s", m->name, lw_type(w, 0));
            break;
        }
        /* flax and fan_in_fan_out kernels are [in, out]; torch's Linear [out, in] */
        bool in_out = flax || opt.fan_in_fan_out;
        uint64_t in = in_out ? w->shape[0] : w->shape[1], out = in_out ? w->shape[1] : w->shape[0];
        uint64_t r = (uint64_t)opt.rank;
        uint64_t sa[2] = {flax ? in : r, flax ? r : in}, sb[2] = {flax ? r : out, flax ? out : r};
        const char *na = opt.as ? lw_expand(L, &o.t[0], opt.as->span, m, 0)
                                : lora_name(L, m->name, flax, true);
        const char *nb = !na      ? NULL
                         : opt.as ? lw_expand(L, &o.t[1], opt.as->next->span, m, 0)
                                  : lora_name(L, m->name, flax, false);
        if (!na || !nb)
            break;
        const ast_expr *ia = opt.a ? opt.a : flax ? &default_a_flax : &default_a_peft;
        const ast_expr *ib = opt.b ? opt.b : &default_b;
        lw_layout lay = flax ? LAYOUT_FLAX : LAYOUT_TORCH;
        surg_dtype dt = w->dtype; /* w may move as nodes are added */
        cg_id va = lw_init(L, ia, dt, 2, sa, na, lay, s->span);
        cg_id vb = lw_init(L, ib, dt, 2, sb, nb, lay, s->span);
        /* A name's errors point at its `as` template, if written. */
        names[n_named++] = (named){na, m->name, opt.as ? opt.as->span : s->span, va, NULL};
        names[n_named++] = (named){nb, m->name, opt.as ? opt.as->next->span : s->span, vb, NULL};
        mr_created(L, names, &n_named, na, va, s->span); /* new parameters: zero slots */
        mr_created(L, names, &n_named, nb, vb, s->span);
        if (L->errors == o.before)
            lora_record(L, &opt, flax, m->name, na, nb);
    }
    if (L->errors == o.before && names)
        change_add_names(L, &o.c, names, n_named, "init-lora");
    L->nomem |= !names;
    free(names);
    lw_stmt_close(L, &o);
}

/* A PEFT adapter holds the adapter alone, as PeftModel.save_pretrained
 * saves it: every name that is not the A or B of a record of style peft
 * leaves the output (no input byte of it is read), while the records stay
 * whole, naming the kernels they adapt. */
void lw_lora_adapter_only(lw *L, size_t n_outputs)
{
    if (n_outputs > 1) {
        dg_file(L->sink, SURG_ERROR, "peft-outputs", L->src->path,
                "--out-format peft writes one adapter directory, and there are %zu outputs",
                n_outputs);
        L->errors++;
        return;
    }
    bool *kept = calloc(L->st.n + 1, sizeof *kept);
    if (!kept) {
        L->nomem = true;
        return;
    }
    size_t adapters = 0;
    for (const cg_lora *x = L->lora; x; x = x->next) {
        size_t a = x->flax ? STATE_NONE : state_find(&L->st, x->a);
        size_t b = x->flax ? STATE_NONE : state_find(&L->st, x->b);
        if (a == STATE_NONE || b == STATE_NONE)
            continue;
        kept[a] = kept[b] = true;
        adapters++;
    }
    if (!adapters) {
        dg_file(L->sink, SURG_ERROR, "peft-none", L->src->path,
                "--out-format peft writes a PEFT adapter, the A and B of each init-lora of "
                "style peft, and the recipe leaves none");
        L->errors++;
    }
    size_t n = 0;
    for (size_t i = 0; i < L->st.n && !L->errors; i++) {
        const state_entry *e = &L->st.e[i];
        if (kept[i] && e->tied) {
            lw_error(L, e->at, "peft-tie", NULL, 0,
                     "\"%s\" is tied to \"%s\": a PEFT adapter holds its A and B as they are; "
                     "untie it",
                     e->name, e->tied);
            continue;
        }
        if (!kept[i]) {
            L->st.n_tied -= e->tied != NULL;
            continue;
        }
        L->st.e[n++] = *e; /* in order still */
    }
    if (!L->errors)
        L->st.n = n;
    free(kept);
}
