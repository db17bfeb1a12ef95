/* match.c: matching a statement's pattern against the state, and, when it
 * matches nothing, finding the names the user probably meant: an edit
 * distance between the pattern (wildcards cost nothing) and each name,
 * abandoned as soon as it exceeds what a typo could be. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lower.h"

/* The pattern as atoms for the fuzzy distance: one per literal character,
 * one per wildcard. */
typedef struct atom {
    char c;          /* literal character, or 0 for a wildcard */
    bool any_length; /* *, **, {..}: any run; ?, [..]: one character */
    bool in_segment; /* * and ?: never a separator */
} atom;

static atom *atoms_of(const gl_pattern *p, size_t *n, size_t *literal_chars)
{
    size_t count = 0;
    for (uint32_t i = 0; i < p->n_toks; i++)
        count += p->toks[i].kind == GL_LIT ? p->toks[i].len : 1;
    atom *a = malloc((count ? count : 1) * sizeof *a);
    if (!a)
        return NULL;
    size_t k = 0;
    *literal_chars = 0;
    for (uint32_t i = 0; i < p->n_toks; i++) {
        const gl_tok *t = &p->toks[i];
        if (t->kind == GL_LIT) {
            for (uint32_t j = 0; j < t->len; j++)
                a[k++] = (atom){t->text[j], false, false};
            *literal_chars += t->len;
        } else {
            bool one = t->kind == GL_QMARK || t->kind == GL_CLASS;
            a[k++] = (atom){0, !one, t->kind == GL_STAR || t->kind == GL_QMARK};
        }
    }
    *n = count;
    return a;
}

/* Edit distance of a name from the atoms, or limit + 1 once certain to be
 * more. `row` and `prev` hold len + 1 cells each. */
static size_t fuzzy_cost(const atom *a, size_t n_atoms, const char *s, size_t len,
                         size_t limit, size_t *prev, size_t *row)
{
    for (size_t j = 0; j <= len; j++)
        prev[j] = j; /* inserting name characters */
    for (size_t i = 1; i <= n_atoms; i++) {
        const atom *t = &a[i - 1];
        row[0] = t->any_length ? prev[0] : prev[0] + 1;
        size_t best = row[0];
        for (size_t j = 1; j <= len; j++) {
            char c = s[j - 1];
            size_t v;
            if (t->any_length) {
                v = prev[j];
                if (row[j - 1] < v && !(t->in_segment && gl_is_sep(c)))
                    v = row[j - 1];
            } else {
                bool fits = t->c ? t->c == c : !(t->in_segment && gl_is_sep(c));
                v = prev[j - 1] + !fits;
                if (prev[j] + 1 < v)
                    v = prev[j] + 1;
                if (row[j - 1] + 1 < v)
                    v = row[j - 1] + 1;
            }
            row[j] = v;
            best = v < best ? v : best;
        }
        if (best > limit)
            return limit + 1;
        size_t *t2 = prev;
        prev = row;
        row = t2;
    }
    return prev[len];
}

typedef struct guess {
    size_t cost;
    const char *name;
} guess;

/* Up to three names closest to the pattern, as notes. */
static size_t closest_names(lw *L, const gl_pattern *p, char notes[3][256])
{
    size_t n_atoms = 0, lit = 0;
    atom *a = atoms_of(p, &n_atoms, &lit);
    size_t limit = lit / 3 < 1 ? 1 : lit / 3 > 4 ? 4 : lit / 3;
    size_t maxlen = 0;
    for (size_t i = 0; i < L->st.n; i++) {
        size_t l = strlen(L->st.e[i].name);
        maxlen = l > maxlen ? l : maxlen;
    }
    size_t *cells = malloc(2 * (maxlen + 1) * sizeof *cells);
    guess best[3] = {{SIZE_MAX, NULL}, {SIZE_MAX, NULL}, {SIZE_MAX, NULL}};
    for (size_t i = 0; a && cells && i < L->st.n; i++) {
        const char *name = L->st.e[i].name;
        size_t cost = fuzzy_cost(a, n_atoms, name, strlen(name),
                                 best[2].cost - 1 < limit ? best[2].cost - 1 : limit, cells,
                                 cells + maxlen + 1);
        if (cost > limit || cost >= best[2].cost)
            continue;
        int k = 2;
        while (k > 0 && best[k - 1].cost > cost)
            best[k] = best[k - 1], k--;
        best[k] = (guess){cost, name};
    }
    free(a);
    free(cells);
    size_t n = 0; /* only the closest: a farther guess is noise */
    for (; n < 3 && best[n].name && best[n].cost == best[0].cost; n++)
        snprintf(notes[n], sizeof notes[n], "did you mean \"%s\"?", best[n].name);
    return n;
}

static void no_match(lw *L, const ast_string *pattern, const gl_pattern *p)
{
    char notes[3][256];
    size_t n = closest_names(L, p, notes);
    const char *ptrs[3] = {notes[0], notes[1], notes[2]};
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
    if (out->n == 0 && !pattern->optional) {
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
