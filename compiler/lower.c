/* lower.c: the helpers every statement's lowering uses: errors at a span,
 * templates checked against their pattern, whole numbers, type texts, and
 * nodes with owned shapes. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/lower.h"
#include "support/tensor_name.h"

static void report(lw *L, surg_severity sev, src_span at, const char *code,
                   const char *const *notes, size_t n_notes, const char *fmt, va_list ap)
{
    buf msg;
    buf_init(&msg);
    buf_vprintf(&msg, fmt, ap);
    const char *with[16];
    if (L->let_note && n_notes < 16) { /* an error in a let's value: where it is used */
        for (size_t i = 0; i < n_notes; i++)
            with[i] = notes[i];
        with[n_notes++] = L->let_note;
        notes = with;
    }
    src_report(L->src, L->sink, sev, code, at, notes, n_notes, "%s",
               msg.failed ? "(out of memory)" : msg.data);
    buf_free(&msg);
}

void lw_error(lw *L, src_span at, const char *code, const char *const *notes,
              size_t n_notes, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    L->errors++;
    report(L, SURG_ERROR, at, code, notes, n_notes, fmt, ap);
    va_end(ap);
}

void lw_warning(lw *L, src_span at, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(L, SURG_WARNING, at, code, NULL, 0, fmt, ap);
    va_end(ap);
}

bool lw_template(lw *L, const ast_string *text, const gl_pattern *pat, bool allow_index,
                 gl_template *out)
{
    char err[256];
    if (!gl_template_compile(L->ar, text->text, allow_index, out, err, sizeof err)) {
        lw_error(L, text->span, "template", NULL, 0, "bad template \"%s\": %s", text->text, err);
        return false;
    }
    uint32_t have = pat ? pat->n_captures : 0;
    if (out->max_capture > have) {
        lw_error(L, text->span, "template-capture", NULL, 0,
                 "template \"%s\" uses $%u, but the pattern has %u capture%s", text->text,
                 out->max_capture, have, have == 1 ? "" : "s");
        return false;
    }
    return true;
}

void lw_name_budget(lw *L)
{
    uint64_t input = 0;
    for (size_t i = 0; i < L->st.n; i++)
        input += L->st.e[i].len;
    L->names_budget = LW_NAME_BUDGET + LW_NAME_BUDGET_SCALE * input;
}

const char *lw_expand(lw *L, const gl_template *t, src_span at, const lw_match *m,
                      uint64_t index)
{
    if (L->names_said) { /* said once: every later name would say it again */
        L->errors++;
        return NULL;
    }
    /* What it costs to make, known before anything is made. */
    uint64_t len = gl_expand_len(t, m->caps, index), cost = len + t->n_parts + 1;
    if (len <= LW_MAX_NAME && cost <= L->names_budget - L->names_made) {
        L->names_made += cost;
        const char *name = gl_expand(L->ar, t, m->name, m->caps, index);
        L->nomem |= !name;
        return name;
    }
    L->names_said = true;
    char tshown[80], nshown[80];
    tn_short(t->source, tshown, 64);
    tn_short(m->name, nshown, 64);
    if (len > LW_MAX_NAME) {
        const char *notes[] = {"no output holds a longer name: a safetensors header is at most "
                               "100000000 bytes, an .npz entry's name at most 65,535"};
        lw_error(L, at, "name-budget", notes, 1,
                 "template \"%s\" makes a name of %llu bytes from \"%s\": a name may be at "
                 "most %u bytes",
                 tshown, (unsigned long long)len, nshown, LW_MAX_NAME);
    } else {
        const char *notes[] = {"each $0 or capture in a template copies part of the matched "
                               "name, so a long template, or one that repeats them, makes long "
                               "names from every match"};
        lw_error(L, at, "name-budget", notes, 1,
                 "template \"%s\" makes more names than a recipe may: at \"%s\", the names "
                 "its templates make go past %llu bytes (%llu MiB, and %u for each byte of the "
                 "input's names)",
                 tshown, nshown, (unsigned long long)L->names_budget,
                 (unsigned long long)(LW_NAME_BUDGET >> 20), LW_NAME_BUDGET_SCALE);
    }
    return NULL;
}

bool lw_integer(lw *L, const ast_number *n, const char *what, int64_t lo, int64_t hi,
                int64_t *out)
{
    const char *t = n->text;
    bool digits = *t && strspn(t, "0123456789") == strlen(t);
    errno = 0;
    unsigned long long v = digits ? strtoull(t, NULL, 10) : 0;
    if (!digits || errno == ERANGE || v > (unsigned long long)INT64_MAX ||
        (int64_t)v < lo || (int64_t)v > hi) {
        lw_error(L, n->span, "integer", NULL, 0, "%s must be a whole number from %lld to %lld, not %s",
                 what, (long long)lo, (long long)hi, t);
        return false;
    }
    *out = (int64_t)v;
    return true;
}

void lw_type_text(buf *b, surg_dtype dt, uint32_t rank, const uint64_t *shape)
{
    buf_printf(b, "%s[", dt < SURG_DTYPE_COUNT ? surg_dtype_recipe_name(dt) : "number");
    for (uint32_t i = 0; i < rank; i++)
        buf_printf(b, "%s%llu", i ? ", " : "", (unsigned long long)shape[i]);
    buf_putc(b, ']');
}

const char *lw_type(const cg_node *n, int slot)
{
    static char text[2][512];
    buf b;
    buf_init(&b);
    lw_type_text(&b, n->dtype, n->rank, n->shape);
    snprintf(text[slot], sizeof text[slot], "%s", b.failed ? "?" : b.data);
    buf_free(&b);
    return text[slot];
}

/* A value deeper than CG_MAX_DEPTH is refused at the statement that makes
 * it; said once: a chain of statements past the bound would repeat it. */
static bool too_deep(lw *L, const cg_node *n)
{
    if (cg_depth_of(&L->g, n->in, n->n_in) <= CG_MAX_DEPTH)
        return false;
    if (L->too_deep) {
        L->errors++;
        return true;
    }
    L->too_deep = true;
    const char *notes[] = {"each operation a statement applies to a tensor adds to the ones "
                           "it already has; run the rest of the recipe on this run's output"};
    lw_error(L, n->origin, "graph-depth", notes, 1,
             "this statement makes a value more than %d operations deep", CG_MAX_DEPTH);
    return true;
}

cg_id lw_node(lw *L, cg_node n, const uint64_t *shape)
{
    if (!n.origin.end)
        n.origin = L->at; /* made by the statement being lowered */
    if (too_deep(L, &n))
        return CG_NONE;
    uint64_t *copy = ar_array(L->ar, n.rank ? n.rank : 1, sizeof *copy);
    if (!copy) {
        L->nomem = true;
        return CG_NONE;
    }
    n.nelems = 1;
    bool overflow = n.rank > SURG_MAX_RANK;
    for (uint32_t i = 0; i < n.rank && !overflow; i++) {
        copy[i] = shape[i];
        overflow |= __builtin_mul_overflow(n.nelems, shape[i], &n.nelems);
    }
    uint64_t bits;
    overflow |= n.dtype < SURG_DTYPE_COUNT &&
                __builtin_mul_overflow(n.nelems, (uint64_t)surg_dtype_bits(n.dtype), &bits);
    if (overflow) {
        lw_error(L, n.origin, "type-size", NULL, 0,
                 "the result would be too large (more than 64 dimensions or 2^64 bytes)");
        return CG_NONE;
    }
    n.shape = copy;
    cg_id id = cg_add(&L->g, &n);
    L->nomem |= id == CG_NONE;
    return id;
}
