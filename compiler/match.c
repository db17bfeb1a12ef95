/* match.c: matching a statement's pattern against the state, and, when it
 * matches nothing, finding the names the user probably meant: an edit
 * distance between the pattern (wildcards cost nothing) and each name,
 * computed only where it can be small and abandoned as soon as it exceeds
 * what a typo could be, within a bounded amount of work. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/lower.h"


/* The pattern as atoms for the fuzzy distance: one per literal character,
 * one per wildcard. */
typedef struct atom {
    char c;          /* literal character, or 0 for a wildcard */
    bool any_length; /* *, **, {..}: any run; ?, [..]: one character */
    bool in_segment; /* * and ?: never a separator */
} atom;

/* The atoms, with what bounds where a cheap alignment can be: of the first
 * i atoms, pre_one[i] take one character each and pre_any[i] says whether
 * one takes any run; suf_one[i] and suf_any[i] the same of the atoms from
 * i on. */
typedef struct atoms {
    atom *a;
    size_t n, literal_chars;
    size_t *pre_one, *suf_one;
    bool *pre_any, *suf_any;
} atoms;

static void atoms_free(atoms *t)
{
    free(t->a);
    free(t->pre_one);
    free(t->suf_one);
    free(t->pre_any);
    free(t->suf_any);
}

static bool atoms_of(const gl_pattern *p, atoms *t)
{
    *t = (atoms){0};
    size_t count = 0;
    for (uint32_t i = 0; i < p->n_toks; i++)
        count += p->toks[i].kind == GL_LIT ? p->toks[i].len : 1;
    t->a = malloc((count ? count : 1) * sizeof *t->a);
    t->pre_one = malloc((count + 1) * sizeof *t->pre_one);
    t->suf_one = malloc((count + 1) * sizeof *t->suf_one);
    t->pre_any = malloc((count + 1) * sizeof *t->pre_any);
    t->suf_any = malloc((count + 1) * sizeof *t->suf_any);
    if (!t->a || !t->pre_one || !t->suf_one || !t->pre_any || !t->suf_any)
        return false;
    size_t k = 0;
    for (uint32_t i = 0; i < p->n_toks; i++) {
        const gl_tok *tok = &p->toks[i];
        if (tok->kind == GL_LIT) {
            for (uint32_t j = 0; j < tok->len; j++)
                t->a[k++] = (atom){tok->text[j], false, false};
            t->literal_chars += tok->len;
        } else {
            bool one = tok->kind == GL_QMARK || tok->kind == GL_CLASS;
            t->a[k++] = (atom){0, !one, tok->kind == GL_STAR || tok->kind == GL_QMARK};
        }
    }
    t->n = count;
    t->pre_one[0] = 0;
    t->pre_any[0] = false;
    for (size_t i = 0; i < count; i++) {
        t->pre_one[i + 1] = t->pre_one[i] + !t->a[i].any_length;
        t->pre_any[i + 1] = t->pre_any[i] || t->a[i].any_length;
    }
    t->suf_one[count] = 0;
    t->suf_any[count] = false;
    for (size_t i = count; i-- > 0;) {
        t->suf_one[i] = t->suf_one[i + 1] + !t->a[i].any_length;
        t->suf_any[i] = t->suf_any[i + 1] || t->a[i].any_length;
    }
    return true;
}

/* The columns of row i (the first i atoms against the first j characters)
 * where a cell can lie on an alignment of cost at most `limit`: a
 * one-character atom not matched to a character costs 1, as does a
 * character matched to no atom, so the characters before column j and the
 * atoms before row i, and those after (with atom i-1, which takes the
 * characters of moves along the row), may differ in count by at most the
 * limit unless an any-run atom is among them. False when there is none. */
static bool band(const atoms *t, size_t i, size_t len, size_t limit, size_t *lo, size_t *hi)
{
    size_t l = 0, h = len;
    if (t->pre_one[i] > limit)
        l = t->pre_one[i] - limit;
    if (!t->pre_any[i] && t->pre_one[i] + limit < h)
        h = t->pre_one[i] + limit;
    if (t->suf_one[i] > len + limit)
        return false;
    if (len + limit - t->suf_one[i] < h)
        h = len + limit - t->suf_one[i];
    /* A path may go on along row i, which is atom i-1 taking characters. */
    bool any_after = t->suf_any[i ? i - 1 : 0];
    if (!any_after && len > t->suf_one[i] + limit && len - t->suf_one[i] - limit > l)
        l = len - t->suf_one[i] - limit;
    *lo = l;
    *hi = h;
    return l <= h;
}

/* Row i of the table over columns [lo, hi], from row i-1; both may be read
 * at index -1. Returns the row's least cell. */
static size_t fuzzy_row(const atom *a, const char *s, size_t lo, size_t hi, size_t inf,
                        const size_t *prev, size_t *row)
{
    size_t j = lo, best = inf;
    if (j == 0) { /* nothing to the left: only from above */
        row[0] = a->any_length ? prev[0] : prev[0] + 1 < inf ? prev[0] + 1 : inf;
        best = row[0];
        j = 1;
    }
    if (a->any_length) {
        for (; j <= hi; j++) {
            size_t v = prev[j];
            if (row[j - 1] < v && !(a->in_segment && gl_is_sep(s[j - 1])))
                v = row[j - 1];
            row[j] = v;
            best = v < best ? v : best;
        }
        return best;
    }
    for (; j <= hi; j++) {
        char c = s[j - 1];
        bool fits = a->c ? a->c == c : !(a->in_segment && gl_is_sep(c));
        size_t v = prev[j] + 1, diag = prev[j - 1] + !fits, left = row[j - 1] + 1;
        v = diag < v ? diag : v;
        v = left < v ? left : v;
        row[j] = v < inf ? v : inf;
        best = row[j] < best ? row[j] : best;
    }
    return best;
}

/* Edit distance of a name from the atoms, or limit + 1 once certain to be
 * more, or once more than *work cells would be needed (then *work is 0).
 * Only the band of each row is computed; a cell outside it reads as more
 * than the limit. `row` and `prev` hold len + 2 cells each, from index -1.
 * The bands only move right (lo and hi never decrease with i). */
static size_t fuzzy_cost(const atoms *t, const char *s, size_t len, size_t limit,
                         uint64_t *work, size_t *prev, size_t *row)
{
    const size_t inf = limit + 1;
    size_t plo, phi;
    if (!band(t, 0, len, limit, &plo, &phi))
        return inf;
    for (size_t j = plo; j <= phi; j++)
        prev[j] = j < inf ? j : inf; /* inserting name characters */
    for (size_t i = 1; i <= t->n; i++) {
        size_t lo, hi;
        if (!band(t, i, len, limit, &lo, &hi))
            return inf;
        if (hi - lo + 1 > *work) {
            *work = 0;
            return inf;
        }
        *work -= hi - lo + 1;
        prev[(ptrdiff_t)plo - 1] = inf;
        for (size_t j = phi + 1; j <= hi; j++)
            prev[j] = inf;
        row[(ptrdiff_t)lo - 1] = inf;
        if (fuzzy_row(&t->a[i - 1], s, lo, hi, inf, prev, row) > limit)
            return inf;
        size_t *swap = prev;
        prev = row;
        row = swap;
        plo = lo;
        phi = hi;
    }
    return len >= plo && len <= phi ? prev[len] : inf;
}

typedef struct guess {
    size_t cost;
    const char *name;
} guess;

/* Up to three names closest to the pattern, as notes. */
static size_t closest_names(lw *L, const gl_pattern *p, char notes[3][256])
{
    atoms t;
    bool ok = atoms_of(p, &t);
    size_t lit = t.literal_chars;
    size_t limit = lit / 3 < 1 ? 1 : lit / 3 > 4 ? 4 : lit / 3;
    uint64_t left = L->guess_work < LW_GUESS_WORK_TOTAL ? LW_GUESS_WORK_TOTAL - L->guess_work : 0;
    uint64_t work = left < LW_GUESS_WORK_PER_PATTERN ? left : LW_GUESS_WORK_PER_PATTERN;
    uint64_t start = work;
    size_t *cells = NULL, cap = 0;
    guess best[3] = {{SIZE_MAX, NULL}, {SIZE_MAX, NULL}, {SIZE_MAX, NULL}};
    for (size_t i = 0; ok && work && i < L->st.n; i++) {
        const char *name = L->st.e[i].name;
        size_t len = L->st.e[i].len;
        work--;
        size_t lo, hi;
        if (!band(&t, 0, len, limit, &lo, &hi) || !band(&t, t.n, len, limit, &lo, &hi))
            continue; /* too long or too short to be close */
        if (len + 2 > cap) {
            size_t *c = realloc(cells, 2 * (len + 2) * sizeof *c);
            if (!c)
                break;
            cells = c;
            cap = len + 2;
        }
        size_t cost = fuzzy_cost(&t, name, len,
                                 best[2].cost - 1 < limit ? best[2].cost - 1 : limit, &work,
                                 cells + 1, cells + cap + 1);
        if (cost > limit || cost >= best[2].cost)
            continue;
        int k = 2;
        while (k > 0 && best[k - 1].cost > cost)
            best[k] = best[k - 1], k--;
        best[k] = (guess){cost, name};
    }
    L->guess_work += start - work;
    atoms_free(&t);
    free(cells);
    size_t n = 0; /* only the closest: a farther guess is noise */
    for (; n < 3 && best[n].name && best[n].cost == best[0].cost; n++)
        snprintf(notes[n], sizeof notes[n], "did you mean \"%s\"?", best[n].name);
    return n;
}

/* A pattern names whole names, never their ends: when the pattern after
 * "**" and a separator would match, say so. Bounded like the guesses. */
static size_t anywhere(lw *L, const ast_string *pattern, const gl_pattern *p, const char **note)
{
    if (p->n_toks && p->toks[0].kind != GL_LIT)
        return 0; /* it starts with a wildcard already */
    static const char *const how[] = {"**/", "**."};
    for (size_t k = 0; k < 2; k++) {
        buf text;
        buf_init(&text);
        buf_printf(&text, "%s%s", how[k], pattern->text);
        gl_pattern wide;
        char err[64];
        bool found = false;
        if (!text.failed && gl_compile(L->ar, text.data, &wide, err, sizeof err)) {
            gl_span caps[GL_MAX_CAPTURES + 1];
            for (size_t i = 0; i < L->st.n && !found && L->guess_work < LW_GUESS_WORK_TOTAL;
                 i++) {
                L->guess_work += 1 + L->st.e[i].len / 8;
                found = gl_match(&wide, L->st.e[i].name, L->st.e[i].len, caps, &L->scratch) == 1;
            }
        }
        if (found) {
            buf b;
            buf_init(&b);
            buf_printf(&b, "did you mean \"%s\"? a pattern matches whole names", text.data);
            *note = b.failed ? NULL : ar_strdup(L->ar, b.data);
            L->nomem |= !*note;
            buf_free(&b);
        }
        buf_free(&text);
        if (found)
            return *note != NULL;
    }
    return 0;
}

static void no_match(lw *L, const ast_string *pattern, const gl_pattern *p)
{
    char notes[3][256];
    const char *ptrs[3] = {notes[0], notes[1], notes[2]};
    /* A forgotten input prefix first: its names are no typo's distance;
     * then where the names it matched went; then the whole-name rule. */
    size_t n = lw_mount_hints(L, pattern->text, notes, 3);
    if (n == 0)
        n = lw_gone_notes(L, p, ptrs, 3);
    if (n == 0)
        n = anywhere(L, pattern, p, ptrs);
    bool explained = n > 0;
    if (n == 0)
        n = closest_names(L, p, notes);
    /* A statement before this one did not parse: it may have made the name. */
    size_t lo = 0, hi = explained ? 0 : L->n_broken;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (L->broken[mid].start < pattern->span.start)
            lo = mid + 1;
        else
            hi = mid;
    }
    char said[128];
    if (lo > 0 && n < 3) {
        uint32_t line, col;
        src_position(L->src, L->broken[lo - 1].start, &line, &col);
        snprintf(said, sizeof said, "line %u has a syntax error: what it would have done is "
                                    "not known here", line);
        ptrs[n++] = said;
    }
    if (n == 0 && L->st.n == 0)
        lw_error(L, pattern->span, "match-none", NULL, 0,
                 "pattern \"%s\" matches no tensor: the state is empty", pattern->text);
    else
        lw_error(L, pattern->span, "match-none", ptrs, n,
                 "pattern \"%s\" matches no tensor", pattern->text);
}

static bool add_match(lw *L, lw_matches *out, size_t entry, const gl_span *caps)
{
    size_t nc = out->pat.n_captures + 1;
    if (!bb_reserve(&L->matches, (out->n + 1) * sizeof *out->m) ||
        !bb_reserve(&L->caps, (out->n + 1) * nc * sizeof *caps))
        return false;
    out->m = L->matches.p;
    memcpy((gl_span *)L->caps.p + out->n * nc, caps, nc * sizeof *caps);
    /* caps is set once matching is over: the buffer may still move. */
    const state_entry *e = &L->st.e[entry];
    out->m[out->n++] = (lw_match){e->name, state_node(&L->st, entry), e->tied, entry, NULL};
    return true;
}

bool lw_match_pattern(lw *L, const ast_string *pattern, lw_matches *out)
{
    memset(out, 0, sizeof *out);
    char err[256];
    if (!gl_compile(L->ar, pattern->text, &out->pat, err, sizeof err)) {
        lw_error(L, pattern->span, "pattern", NULL, 0, "bad pattern \"%s\": %s", pattern->text,
                 err);
        return false;
    }
    size_t lo, hi;
    /* The decoded literal prefix: the pattern's text may quote with '\\'. */
    state_prefix_range(&L->st, out->pat.prefix_len ? out->pat.toks[0].text : "",
                       out->pat.prefix_len, &lo, &hi);
    gl_span caps[GL_MAX_CAPTURES + 1];
    for (size_t i = lo; i < hi; i++) {
        int r = gl_match(&out->pat, L->st.e[i].name, L->st.e[i].len, caps, &L->scratch);
        if (r < 0 || (r && !add_match(L, out, i, caps))) {
            L->nomem = true;
            return false;
        }
    }
    for (size_t i = 0; i < out->n; i++)
        out->m[i].caps = (gl_span *)L->caps.p + i * (out->pat.n_captures + 1);
    if (out->n == 0 && !pattern->optional && !(L->values_match && lw_paths_match(L, &out->pat))) {
        no_match(L, pattern, &out->pat);
        return false;
    }
    return true;
}

void lw_matches_free(lw_matches *m)
{
    m->m = NULL; /* the buffers are the lowering's, reused */
    m->n = 0;
}
