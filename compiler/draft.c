/* draft.c: `surg suggest` (surg_suggest): a recipe drafted from two abstract
 * states. The pairs of draft_match.c become statements: transposes first
 * (on the old names), then stacks and unstacks, then renames; pairs whose
 * names differ only in numbers that move together are one statement with a
 * `*` for each number, and such families that differ in one word are one
 * with `{a,b,...}`. Each generalized statement is checked to match exactly
 * its own tensors and to name each as its pair, or it is written one
 * tensor at a time. The draft goes through the parser and the formatter,
 * and is compiled against the old state and checked against the new. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/draft.h"
#include "compiler/glob.h"
#include "grammar/print.h"
#include "support/buf.h"
#include "support/diag.h"
#include "support/natural.h"
#include "support/utf8.h"

/* Names scanned, in all, to prove that generalized patterns match exactly
 * their tensors; past it, statements are written one tensor at a time. */
#define CHECK_BUDGET ((uint64_t)1 << 24)
/* Bytes of the keys that find the words families differ in, in all. */
#define KEY_BUDGET ((size_t)64 << 20)
enum { MAX_WORDS = 16, MAX_PLACES = 4, MAX_WORD = 64, MAX_KEYED = 4096 };

typedef struct dpair {
    size_t o, n;         /* old and new tensor */
    const char *expr;    /* map: the expression; rename: NULL */
    const char *stack;   /* stack, unstack: " axis N"; else NULL */
    bool unstack;        /* the new name's index is \5, written $i */
    const char *ko, *kn; /* the names with their shared numbers as \1 and \2 */
    uint32_t n_slots;
    uint32_t *at, *len;  /* in the old name: each shared number */
    size_t fam;
} dpair;

typedef struct stmt {
    const char *first; /* the first old name: the order of the draft */
    char *text;
} stmt;

typedef struct dctx {
    arena ar;
    dr_side O, N;
    const char *tmp;        /* the prefix renames go through when staged; NULL */
    const char **uni;       /* names a pattern could meet, sorted */
    size_t n_uni;
    uint64_t budget;
    size_t key_bytes;       /* left of KEY_BUDGET */
    gl_scratch scratch;
    bool literal;           /* write every statement one tensor at a time */
    bool nomem;
    stmt *st;
    size_t n_st, cap_st;
} dctx;

static const char *oname(const dctx *D, size_t i) { return D->O.t[i].info->name; }
static const char *nname(const dctx *D, size_t i) { return D->N.t[i].info->name; }

static bool has_marker_bytes(const char *s)
{
    for (; *s; s++)
        if (*s >= 1 && *s <= 5)
            return true;
    return false;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alnum(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* ---- writing names --------------------------------------------------------- */

static void put_capture(buf *b, uint32_t k)
{
    if (k < 10)
        buf_printf(b, "$%u", k);
    else
        buf_printf(b, "${%u}", k);
}

/* A name in a comment: quoted as a string, and a byte that is not UTF-8 as
 * \xHH, so the comment is one line of UTF-8 whatever the name holds. */
static void put_comment_name(buf *b, const char *name, size_t len, bool utf8)
{
    if (utf8) {
        pr_string(b, name);
        return;
    }
    buf_putc(b, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c >= 0x7F || c == '"' || c == '\\')
            buf_printf(b, "\\x%02x", c);
        else
            buf_putc(b, (char)c);
    }
    buf_putc(b, '"');
}

static void put_type(buf *b, const surg_tensor_info *t)
{
    buf_printf(b, "%s[", surg_dtype_recipe_name(t->dtype));
    for (uint32_t i = 0; i < t->rank; i++)
        buf_printf(b, "%s%llu", i ? ", " : "", (unsigned long long)t->shape[i]);
    buf_putc(b, ']');
}

/* The prefix every name a staged draft makes starts with, as template text. */
static void put_staging(const dctx *D, buf *t)
{
    if (!D->tmp)
        return;
    for (const char *c = D->tmp; *c; c++)
        gl_put_char(t, *c, true);
    buf_putc(t, '/');
}

static void add_stmt(dctx *D, const char *first, buf *text)
{
    if (text->failed) {
        D->nomem = true;
        return;
    }
    if (D->n_st == D->cap_st) {
        size_t cap = D->cap_st ? 2 * D->cap_st : 64;
        stmt *s = realloc(D->st, cap * sizeof *s);
        if (!s) {
            D->nomem = true;
            buf_free(text);
            return;
        }
        D->st = s;
        D->cap_st = cap;
    }
    D->st[D->n_st++] = (stmt){first, buf_take(text)};
}

/* ---- proving a pattern ----------------------------------------------------- */

/* Does `pattern` match exactly the old names of `members` (the names a
 * pattern could meet: D->uni), and does `tmpl` (NULL: none) make each
 * member's new name from its match? */
static bool exact(dctx *D, const char *pattern, const char *tmpl, const dpair *const *members,
                  size_t n, const char *const *targets)
{
    if (D->literal)
        return false;
    char err[128];
    gl_pattern p;
    gl_template t;
    if (!gl_compile(&D->ar, pattern, &p, err, sizeof err) ||
        (tmpl && !gl_template_compile(&D->ar, tmpl, true, &t, err, sizeof err)))
        return false;
    gl_span caps[GL_MAX_CAPTURES + 1];
    for (size_t k = 0; k < n; k++) {
        const char *name = oname(D, members[k]->o);
        if (gl_match(&p, name, (uint32_t)strlen(name), caps, &D->scratch) != 1)
            return false;
        if (tmpl) {
            char *made = gl_expand(&D->ar, &t, name, caps, 0);
            if (!made || strcmp(made, targets[k]) != 0)
                return false;
        }
    }
    /* every name under the pattern's literal prefix, within the budget */
    const char *pre = p.prefix_len ? p.toks[0].text : "";
    size_t lo = 0, hi = D->n_uni;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strncmp(D->uni[mid], pre, p.prefix_len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t hits = 0;
    for (size_t i = lo; i < D->n_uni && strncmp(D->uni[i], pre, p.prefix_len) == 0; i++) {
        const char *u = D->uni[i];
        size_t len = strlen(u);
        uint64_t cost = 1 + (uint64_t)len * (p.n_toks + 1) / 8; /* as matching costs */
        if (D->budget < cost)
            return false;
        D->budget -= cost;
        int m = gl_match(&p, u, (uint32_t)len, caps, &D->scratch);
        if (m < 0)
            return false;
        if (m == 1 && ++hits > n)
            return false;
    }
    return hits == n;
}

/* ---- keys: a name with its moving numbers taken out ------------------------ */

/* The digit runs of old and new that are the same number in the same order
 * become \1 (old) and \2 (new). */
static bool keys_of(dctx *D, dpair *p, const char *o, const char *n)
{
    size_t lo = strlen(o), ln = strlen(n);
    char *ko = ar_alloc(&D->ar, lo + 1), *kn = ar_alloc(&D->ar, ln + 1);
    uint32_t *at = ar_array(&D->ar, lo / 2 + 1, sizeof *at);
    uint32_t *len = ar_array(&D->ar, lo / 2 + 1, sizeof *len);
    if (!ko || !kn || !at || !len)
        return false;
    size_t a = 0, b = 0, x = 0, y = 0, nb = 0;
    uint32_t k = 0;
    while (a < lo) {
        if (!is_digit(o[a]) || (a > 0 && is_digit(o[a - 1]))) {
            ko[x++] = o[a++];
            continue;
        }
        size_t e = a;
        while (e < lo && is_digit(o[e]))
            e++;
        /* the next run of n, after the last one used, with the same text */
        size_t f = nb, g = 0;
        bool found = false;
        while (f < ln && !found) {
            if (is_digit(n[f]) && (f == 0 || !is_digit(n[f - 1]))) {
                g = f;
                while (g < ln && is_digit(n[g]))
                    g++;
                if (g - f == e - a && memcmp(n + f, o + a, e - a) == 0)
                    found = true;
                else
                    f = g;
            } else {
                f++;
            }
        }
        if (!found) {
            while (a < e)
                ko[x++] = o[a++];
            continue;
        }
        while (b < f)
            kn[y++] = n[b++];
        kn[y++] = '\2';
        b = g;
        nb = g;
        ko[x++] = '\1';
        at[k] = (uint32_t)a;
        len[k++] = (uint32_t)(e - a);
        a = e;
    }
    while (b < ln)
        kn[y++] = n[b++];
    ko[x] = kn[y] = 0;
    p->ko = ko, p->kn = kn, p->at = at, p->len = len, p->n_slots = k;
    return true;
}

static int cmp_str0(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

static int by_family(const void *x, const void *y)
{
    const dpair *a = x, *b = y;
    int c = cmp_str0(a->expr, b->expr);
    if (!c)
        c = cmp_str0(a->stack, b->stack);
    if (!c)
        c = (int)a->unstack - (int)b->unstack;
    if (!c)
        c = strcmp(a->ko, b->ko);
    if (!c)
        c = strcmp(a->kn, b->kn);
    return c ? c : strcmp(a->ko, b->ko);
}

/* ---- writing a group of pairs as one statement ----------------------------- */

typedef struct group {
    const dpair **m; /* members */
    size_t n;
    const char *ko, *kn; /* with \3 where the word goes, when there is one */
    const char **words;  /* per family in the group's order */
    size_t n_words;
} group;

static bool slot_constant(const dctx *D, const group *g, uint32_t s)
{
    const dpair *f = g->m[0];
    for (size_t k = 1; k < g->n; k++) {
        const dpair *p = g->m[k];
        if (p->len[s] != f->len[s] ||
            memcmp(oname(D, p->o) + p->at[s], oname(D, f->o) + f->at[s], f->len[s]) != 0)
            return false;
    }
    return true;
}

static void start_statement(buf *b, const dpair *p)
{
    buf_puts(b, p->expr ? "map " : p->unstack ? "unstack " : p->stack ? "stack " : "rename ");
}

static void finish_target(dctx *D, buf *t, buf *b, const dpair *p)
{
    if (p->expr) {
        buf_printf(b, " = %s\n", p->expr);
        return;
    }
    buf_printf(b, "%s -> ", p->stack ? p->stack : "");
    buf tt;
    buf_init(&tt);
    put_staging(D, &tt);
    buf_puts(&tt, t->data ? t->data : "");
    pr_string(b, tt.data ? tt.data : "");
    if (tt.failed)
        D->nomem = true;
    buf_free(&tt);
    buf_putc(b, '\n');
}

/* The statement of a group; false when its pattern would not be exact. */
static bool write_group(dctx *D, const group *g)
{
    const dpair *f = g->m[0];
    uint32_t cap = 0, slot_cap[GL_MAX_CAPTURES + 1], word_cap = 0;
    bool constant[GL_MAX_CAPTURES + 1];
    if (f->n_slots > GL_MAX_CAPTURES - 1)
        return false;
    buf pat, tmpl;
    buf_init(&pat);
    buf_init(&tmpl);
    uint32_t s = 0;
    for (const char *c = g->ko; *c; c++) {
        if (*c == '\1') {
            constant[s] = slot_constant(D, g, s);
            if (constant[s]) {
                buf_append(&pat, oname(D, f->o) + f->at[s], f->len[s]);
            } else {
                buf_putc(&pat, '*');
                slot_cap[s] = ++cap;
            }
            s++;
        } else if (*c == '\3') {
            buf_putc(&pat, '{');
            for (size_t w = 0; w < g->n_words; w++)
                buf_printf(&pat, "%s%s", w ? "," : "", g->words[w]);
            buf_putc(&pat, '}');
            word_cap = ++cap;
        } else {
            gl_put_char(&pat, *c, false);
        }
    }
    s = 0;
    for (const char *c = g->kn; *c && !f->expr; c++) {
        if (*c == '\2') {
            if (constant[s])
                buf_append(&tmpl, oname(D, f->o) + f->at[s], f->len[s]);
            else
                put_capture(&tmpl, slot_cap[s]);
            s++;
        } else if (*c == '\3') {
            put_capture(&tmpl, word_cap);
        } else if (*c == '\5') {
            buf_puts(&tmpl, "$i");
        } else {
            gl_put_char(&tmpl, *c, true);
        }
    }
    bool ok = !pat.failed && !tmpl.failed;
    const char **targets = ok && !f->expr ? malloc(g->n * sizeof *targets) : NULL;
    buf full;
    buf_init(&full);
    for (size_t k = 0; targets && k < g->n; k++) {
        buf_puts(&full, "");
        full.len = 0;
        if (D->tmp)
            buf_printf(&full, "%s/", D->tmp);
        buf_puts(&full, nname(D, g->m[k]->n));
        targets[k] = full.failed ? NULL : ar_strdup(&D->ar, full.data);
        ok = ok && targets[k];
    }
    buf_free(&full);
    if (ok && !f->expr && !targets)
        D->nomem = true, ok = false;
    /* the template as the statement would hold it, to expand */
    buf tt;
    buf_init(&tt);
    put_staging(D, &tt);
    buf_puts(&tt, tmpl.data ? tmpl.data : "");
    ok = ok && !tt.failed &&
         (g->n == 1 || exact(D, pat.data, f->expr ? NULL : tt.data, g->m, g->n, targets));
    buf_free(&tt);
    free(targets);
    if (ok) {
        buf b;
        buf_init(&b);
        start_statement(&b, f);
        pr_string(&b, pat.data);
        finish_target(D, &tmpl, &b, f);
        add_stmt(D, oname(D, f->o), &b);
    }
    buf_free(&pat);
    buf_free(&tmpl);
    return ok;
}

/* One tensor: its names as they are. */
static void write_literal(dctx *D, const dpair *p)
{
    buf pat, tmpl, b;
    buf_init(&pat);
    buf_init(&tmpl);
    buf_init(&b);
    for (const char *c = oname(D, p->o); *c; c++)
        gl_put_char(&pat, *c, false);
    for (const char *c = nname(D, p->n); *c && !p->expr; c++)
        gl_put_char(&tmpl, *c, true);
    start_statement(&b, p);
    pr_string(&b, pat.data ? pat.data : "");
    finish_target(D, &tmpl, &b, p);
    if (pat.failed || tmpl.failed)
        D->nomem = true;
    add_stmt(D, oname(D, p->o), &b);
    buf_free(&pat);
    buf_free(&tmpl);
}

static void write_unstack(dctx *D, size_t u);

/* A member of a stack: the stacked tensor, its place, the old tensor. */
typedef struct member {
    size_t one, index, t;
} member;

static int by_member(const void *x, const void *y)
{
    const member *a = x, *b = y;
    if (a->one != b->one)
        return a->one < b->one ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

static void write_stack(dctx *D, const member *m, size_t k);
static void stack_members(dctx *D, const group *g);

static void write_members(dctx *D, const group *g)
{
    if (write_group(D, g))
        return;
    if (g->m[0]->stack && !g->m[0]->unstack) {
        stack_members(D, g); /* one stack: one statement */
        return;
    }
    if (g->m[0]->unstack) { /* each unstack by itself: exact as it is */
        for (size_t k = 0; k < g->n; k++)
            write_group(D, &(group){&g->m[k], 1, g->m[k]->ko, g->m[k]->kn, NULL, 0});
        return;
    }
    for (size_t k = 0; k < g->n; k++)
        write_literal(D, g->m[k]);
}

/* ---- words that vary across families --------------------------------------- */

typedef struct wkey {
    const char *key; /* expr \4 ko-with-\3 \4 kn-with-\3 */
    const char *word;
    size_t fam;
} wkey;

static int by_wkey(const void *x, const void *y)
{
    const wkey *a = x, *b = y;
    int c = strcmp(a->key, b->key);
    return c ? c : (a->fam < b->fam ? -1 : a->fam > b->fam);
}

typedef struct run {
    size_t start, n;
} run;

static int by_run_size(const void *x, const void *y)
{
    const run *a = x, *b = y;
    if (a->n != b->n)
        return a->n > b->n ? -1 : 1;
    return a->start < b->start ? -1 : a->start > b->start;
}

/* Keys of family f: each word of one of its keys, and each place that word
 * has in the other, taken out of both. */
static size_t word_keys(dctx *D, const dpair *f, size_t fam, wkey *out)
{
    size_t n = 0, cost = 2 * MAX_WORDS * MAX_PLACES * (strlen(f->ko) + strlen(f->kn) + 8);
    if (strlen(f->ko) > MAX_KEYED || strlen(f->kn) > MAX_KEYED || cost > D->key_bytes)
        return 0;
    D->key_bytes -= cost;
    for (int side = 0; side < (f->expr ? 1 : 2); side++) {
        const char *from = side ? f->kn : f->ko, *in = f->expr || side ? f->ko : f->kn;
        size_t lf = strlen(from);
        unsigned words = 0;
        for (size_t a = 0; a < lf && words < MAX_WORDS; a++) {
            if (!is_alnum(from[a]) || (a > 0 && is_alnum(from[a - 1])))
                continue;
            size_t e = a;
            while (e < lf && is_alnum(from[e]))
                e++;
            words++;
            if (e - a > MAX_WORD)
                continue;
            unsigned places = 0;
            for (const char *q = in; *q && places < MAX_PLACES; q++) {
                if (strncmp(q, from + a, e - a) != 0)
                    continue;
                places++;
                /* old first, then new, each with \3 for the word */
                const char *o = side ? in : from, *nw = side ? from : in;
                size_t oa = side ? (size_t)(q - in) : a, na = side ? a : (size_t)(q - in);
                buf k;
                buf_init(&k);
                buf_printf(&k, "%s%s%s\4", f->expr ? f->expr : "", f->stack ? f->stack : "",
                           f->unstack ? "u" : "");
                buf_append(&k, o, oa);
                buf_putc(&k, '\3');
                buf_puts(&k, o + oa + (e - a));
                buf_putc(&k, '\4');
                buf_append(&k, nw, na);
                buf_putc(&k, '\3');
                buf_puts(&k, nw + na + (e - a));
                const char *key = k.failed ? NULL : ar_strdup(&D->ar, k.data);
                buf_free(&k);
                const char *w = ar_strndup(&D->ar, from + a, e - a);
                if (!key || !w) {
                    D->nomem = true;
                    return n;
                }
                out[n++] = (wkey){key, w, fam};
            }
        }
    }
    return n;
}

/* Families (pairs sorted by key, runs of equal keys) gathered into groups,
 * largest first, and written. */
static void write_families(dctx *D, dpair *p, size_t n)
{
    if (!n)
        return;
    qsort(p, n, sizeof *p, by_family);
    size_t n_fam = 0;
    size_t *fam_start = malloc((n + 1) * sizeof *fam_start);
    if (!fam_start) {
        D->nomem = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || by_family(&p[i - 1], &p[i]) != 0)
            fam_start[n_fam++] = i;
        p[i].fam = n_fam - 1;
    }
    fam_start[n_fam] = n;
    wkey *wk = NULL, one[2 * MAX_WORDS * MAX_PLACES];
    bool *taken = calloc(n_fam + 1, sizeof *taken);
    run *runs = NULL;
    const dpair **m = malloc((n + 1) * sizeof *m);
    const char **words = malloc((n_fam + 1) * sizeof *words);
    if (!taken || !m || !words) {
        D->nomem = true;
        goto out;
    }
    size_t n_wk = 0, cap_wk = 0;
    for (size_t f = 0; f < n_fam && !D->literal && !D->nomem; f++) {
        size_t k = word_keys(D, &p[fam_start[f]], f, one);
        if (!k)
            continue;
        if (n_wk + k > cap_wk) {
            size_t cap = 2 * (n_wk + k);
            wkey *w = realloc(wk, cap * sizeof *w);
            if (!w) {
                D->nomem = true;
                break;
            }
            wk = w, cap_wk = cap;
        }
        memcpy(wk + n_wk, one, k * sizeof *one);
        n_wk += k;
    }
    runs = malloc((n_wk + 1) * sizeof *runs);
    if (D->nomem || !runs) {
        D->nomem = true;
        goto out;
    }
    if (n_wk)
        qsort(wk, n_wk, sizeof *wk, by_wkey);
    size_t n_runs = 0;
    for (size_t i = 0; i < n_wk;) {
        size_t j = i + 1;
        while (j < n_wk && strcmp(wk[j].key, wk[i].key) == 0)
            j++;
        if (j - i >= 2)
            runs[n_runs++] = (run){i, j - i};
        i = j;
    }
    qsort(runs, n_runs, sizeof *runs, by_run_size);
    size_t *fams = malloc((n_fam + 1) * sizeof *fams);
    if (!fams) {
        D->nomem = true;
        goto out;
    }
    for (size_t r = 0; r < n_runs && !D->nomem; r++) {
        size_t nm = 0, nw = 0;
        for (size_t k = runs[r].start; k < runs[r].start + runs[r].n; k++) {
            size_t f = wk[k].fam;
            if (taken[f] || (nw && fams[nw - 1] == f))
                continue;
            fams[nw] = f;
            words[nw++] = wk[k].word;
            for (size_t i = fam_start[f]; i < fam_start[f + 1]; i++)
                m[nm++] = &p[i];
        }
        if (nw < 2)
            continue;
        const char *key = wk[runs[r].start].key, *k1 = strchr(key, '\4') + 1,
                   *k2 = strchr(k1, '\4') + 1;
        group g = {m, nm, ar_strndup(&D->ar, k1, (size_t)(k2 - 1 - k1)), k2, words, nw};
        if (!g.ko) {
            D->nomem = true;
            break;
        }
        if (!write_group(D, &g))
            continue;
        for (size_t k = 0; k < nw; k++)
            taken[fams[k]] = 1;
    }
    free(fams);
    for (size_t f = 0; f < n_fam && !D->nomem; f++) {
        if (taken[f])
            continue;
        size_t nm = 0;
        for (size_t i = fam_start[f]; i < fam_start[f + 1]; i++)
            m[nm++] = &p[i];
        group g = {m, nm, p[fam_start[f]].ko, p[fam_start[f]].kn, NULL, 0};
        write_members(D, &g);
    }
out:
    free(fam_start);
    free(wk);
    free(taken);
    free(runs);
    free(m);
    free(words);
}

/* ---- the pairs ----------------------------------------------------------- */

static bool is_reversal(const uint32_t *perm, uint32_t r)
{
    for (uint32_t i = 0; i < r; i++)
        if (perm[i] != r - 1 - i)
            return false;
    return true;
}

/* The expression that turns o's layout into n's, or NULL: none needed. */
static const char *layout_expr(dctx *D, size_t o, size_t n)
{
    const dr_t *a = &D->O.t[o], *b = &D->N.t[n];
    uint32_t perm[SURG_MAX_RANK], r = a->info->rank;
    dr_perm(a, b, perm);
    bool identity = true;
    for (uint32_t i = 0; i < r; i++)
        identity &= perm[i] == i;
    if (identity)
        return NULL;
    buf e;
    buf_init(&e);
    if (is_reversal(perm, r)) {
        buf_puts(&e, "transpose(x)");
    } else {
        buf_puts(&e, "transpose(x");
        for (uint32_t i = 0; i < r; i++)
            buf_printf(&e, ", %u", perm[i]);
        buf_putc(&e, ')');
    }
    const char *s = e.failed ? NULL : ar_strdup(&D->ar, e.data);
    buf_free(&e);
    if (!s)
        D->nomem = true;
    return s;
}

static int by_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The names a pattern may meet: the old names, and with `created` every
 * name a statement of the draft makes. */
static bool set_universe(dctx *D, bool created)
{
    free(D->uni);
    size_t cap = D->O.n + (created ? 2 * D->N.n : 0);
    D->uni = malloc((cap + 1) * sizeof *D->uni);
    if (!D->uni)
        return false;
    D->n_uni = 0;
    for (size_t i = 0; i < D->O.n; i++)
        D->uni[D->n_uni++] = oname(D, i);
    for (size_t j = 0; created && j < D->N.n; j++) {
        D->uni[D->n_uni++] = nname(D, j);
        if (D->tmp && D->N.t[j].how != DR_UNMAPPED && D->N.t[j].how != DR_SAME) {
            buf b;
            buf_init(&b);
            buf_printf(&b, "%s/%s", D->tmp, nname(D, j));
            const char *s = b.failed ? NULL : ar_strdup(&D->ar, b.data);
            buf_free(&b);
            if (!s)
                return false;
            D->uni[D->n_uni++] = s;
        }
    }
    qsort(D->uni, D->n_uni, sizeof *D->uni, by_str);
    return true;
}

/* The transposes (maps on the old names) and renames of the moved pairs. */
static void write_moves(dctx *D, bool maps)
{
    dpair *p = calloc(D->O.n + 1, sizeof *p);
    if (!p) {
        D->nomem = true;
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < D->O.n && !D->nomem; i++) {
        const dr_t *t = &D->O.t[i];
        if (t->how != DR_MOVE)
            continue;
        const char *expr = layout_expr(D, i, t->other);
        if (maps ? !expr : strcmp(oname(D, i), nname(D, t->other)) == 0)
            continue;
        dpair *q = &p[n++];
        *q = (dpair){.o = i, .n = t->other, .expr = maps ? expr : NULL};
        const char *target = maps ? oname(D, i) : nname(D, t->other);
        if (has_marker_bytes(oname(D, i)) || has_marker_bytes(target)) {
            /* a family of its own: its name as it is */
            q->ko = oname(D, i), q->kn = "", q->n_slots = 0;
            write_literal(D, q);
            n--;
        } else if (!keys_of(D, q, oname(D, i), target)) {
            D->nomem = true;
        }
    }
    if (!D->nomem)
        write_families(D, p, n);
    free(p);
}

static void put_target(dctx *D, buf *b, const char *name, size_t at, size_t len,
                       const char *index)
{
    buf t;
    buf_init(&t);
    put_staging(D, &t);
    for (size_t i = 0; name[i]; i++) {
        if (index && i == at) {
            buf_puts(&t, index);
            i += len - 1;
            continue;
        }
        gl_put_char(&t, name[i], true);
    }
    if (t.failed)
        D->nomem = true;
    else
        pr_string(b, t.data);
    buf_free(&t);
}

/* The stack of the old tensors `m` (sorted by index) into new tensor u. */
static void write_stack(dctx *D, const member *m, size_t k)
{
    const dr_t *f = &D->O.t[m[0].t];
    const char *name = f->info->name;
    buf pat;
    buf_init(&pat);
    dpair *ps = calloc(k, sizeof *ps);
    const dpair **pp = calloc(k, sizeof *pp);
    bool star = false;
    if (!ps || !pp)
        D->nomem = true;
    for (int pass = 0; pass < 2 && !star && ps && pp; pass++) {
        pat.len = 0;
        buf_puts(&pat, "");
        for (size_t i = 0; i < f->len; i++) {
            if (i != f->run_at) {
                gl_put_char(&pat, name[i], false);
                continue;
            }
            if (pass == 0) {
                buf_putc(&pat, '*');
            } else {
                buf_putc(&pat, '{');
                for (size_t j = 0; j < k; j++)
                    buf_printf(&pat, "%s%zu", j ? "," : "", j);
                buf_putc(&pat, '}');
            }
            i += f->run_len - 1;
        }
        for (size_t j = 0; j < k; j++)
            ps[j] = (dpair){.o = m[j].t}, pp[j] = &ps[j];
        star = pass == 0 && !pat.failed && exact(D, pat.data, NULL, pp, k, NULL);
        if (pass == 0 && star)
            break;
    }
    free(ps);
    free(pp);
    buf b;
    buf_init(&b);
    buf_puts(&b, "stack ");
    pr_string(&b, pat.data ? pat.data : "");
    buf_printf(&b, " axis %u -> ", f->axis);
    put_target(D, &b, nname(D, m[0].one), 0, 0, NULL);
    buf_putc(&b, '\n');
    if (pat.failed)
        D->nomem = true;
    buf_free(&pat);
    add_stmt(D, name, &b);
}

/* The members of one stack (a family: one target) as write_stack takes them. */
static void stack_members(dctx *D, const group *g)
{
    member *m = malloc((g->n + 1) * sizeof *m);
    if (!m) {
        D->nomem = true;
        return;
    }
    for (size_t k = 0; k < g->n; k++)
        m[k] = (member){g->m[k]->n, D->O.t[g->m[k]->o].index, g->m[k]->o};
    qsort(m, g->n, sizeof *m, by_member);
    write_stack(D, m, g->n);
    free(m);
}

/* A stack member's keys: its name with the index as \1, the target as it is. */
static bool stack_keys(dctx *D, dpair *q)
{
    const dr_t *t = &D->O.t[q->o];
    buf b;
    buf_init(&b);
    buf_printf(&b, " axis %u", t->axis);
    q->stack = b.failed ? NULL : ar_strdup(&D->ar, b.data);
    b.len = 0;
    buf_append(&b, t->info->name, t->run_at);
    buf_putc(&b, '\1');
    buf_puts(&b, t->info->name + t->run_at + t->run_len);
    q->ko = b.failed ? NULL : ar_strdup(&D->ar, b.data);
    buf_free(&b);
    q->kn = nname(D, q->n);
    q->at = ar_alloc(&D->ar, sizeof *q->at);
    q->len = ar_alloc(&D->ar, sizeof *q->len);
    if (!q->stack || !q->ko || !q->at || !q->len)
        return false;
    q->n_slots = 1;
    q->at[0] = (uint32_t)t->run_at;
    q->len[0] = (uint32_t)t->run_len;
    return true;
}

static void write_stacks(dctx *D)
{
    member *m = malloc((D->O.n + D->N.n + 1) * sizeof *m);
    dpair *p = calloc(D->O.n + 1, sizeof *p);
    if (!m || !p) {
        free(m);
        free(p);
        D->nomem = true;
        return;
    }
    size_t n = 0, np = 0;
    for (size_t i = 0; i < D->O.n; i++)
        if (D->O.t[i].how == DR_STACKED)
            m[n++] = (member){D->O.t[i].other, D->O.t[i].index, i};
    qsort(m, n, sizeof *m, by_member);
    for (size_t i = 0; i < n && !D->nomem;) {
        size_t j = i;
        bool plain = true;
        while (j < n && m[j].one == m[i].one)
            plain &= !has_marker_bytes(oname(D, m[j].t)), j++;
        plain &= !has_marker_bytes(nname(D, m[i].one));
        for (size_t k = i; k < j && plain; k++) {
            p[np] = (dpair){.o = m[k].t, .n = m[k].one};
            if (!stack_keys(D, &p[np++]))
                D->nomem = true;
        }
        if (!plain)
            write_stack(D, m + i, j - i);
        i = j;
    }
    if (!D->nomem)
        write_families(D, p, np);
    /* unstacks: the old tensor by its name, the pieces with $i for the index */
    np = 0;
    for (size_t u = 0; u < D->O.n && !D->nomem; u++) {
        const dr_t *t = &D->O.t[u];
        if (t->how != DR_UNSTACKED)
            continue;
        const dr_t *piece = &D->N.t[t->other];
        if (has_marker_bytes(t->info->name) || has_marker_bytes(piece->info->name)) {
            write_unstack(D, u);
            continue;
        }
        buf b;
        buf_init(&b);
        buf_append(&b, piece->info->name, piece->run_at);
        buf_putc(&b, '\5');
        buf_puts(&b, piece->info->name + piece->run_at + piece->run_len);
        const char *kn = b.failed ? NULL : ar_strdup(&D->ar, b.data);
        b.len = 0;
        buf_printf(&b, " axis %u", piece->axis);
        const char *axis = b.failed ? NULL : ar_strdup(&D->ar, b.data);
        buf_free(&b);
        if (!kn || !axis)
            D->nomem = true;
        p[np++] = (dpair){.o = u, .n = t->other, .stack = axis, .unstack = true,
                          .ko = t->info->name, .kn = kn};
    }
    if (!D->nomem)
        write_families(D, p, np);
    free(p);
    free(m);
}

/* One unstack, its names as they are (they hold bytes the keys use). */
static void write_unstack(dctx *D, size_t u)
{
    const dr_t *t = &D->O.t[u], *piece = &D->N.t[t->other];
    buf b, pat;
    buf_init(&b);
    buf_init(&pat);
    for (const char *c = t->info->name; *c; c++)
        gl_put_char(&pat, *c, false);
    buf_puts(&b, "unstack ");
    pr_string(&b, pat.data ? pat.data : "");
    buf_printf(&b, " axis %u -> ", piece->axis);
    put_target(D, &b, piece->info->name, piece->run_at, piece->run_len, "$i");
    buf_putc(&b, '\n');
    if (pat.failed)
        D->nomem = true;
    buf_free(&pat);
    add_stmt(D, t->info->name, &b);
}

/* ---- what is left ---------------------------------------------------------- */

static void put_unmapped(const dctx *D, buf *b, const dr_side *S, const dr_side *other, size_t i,
                         const char *side, const char *other_side)
{
    const dr_t *t = &S->t[i];
    buf_printf(b, "# %s ", side);
    put_comment_name(b, t->info->name, t->len, t->writable);
    buf_putc(b, ' ');
    put_type(b, t->info);
    if (!t->writable) {
        buf_puts(b, ": a name no recipe can write (empty, or not UTF-8)\n");
    } else if (t->blocked != DR_NONE) {
        const dr_t *c = &other->t[t->blocked];
        buf_puts(b, S == &D->O ? ": would become " : ": would come from ");
        put_comment_name(b, c->info->name, c->len, c->writable);
        buf_puts(b, ", but the old ");
        const dr_t *held = S == &D->O ? c : t;
        put_comment_name(b, held->info->name, held->len, held->writable);
        buf_puts(b, " stays\n");
    } else if (t->n_cand) {
        buf_puts(b, ": could be");
        for (size_t k = 0; k < t->n_cand; k++) {
            buf_puts(b, k == 0 ? " " : k + 1 == t->n_cand && !t->more_cand ? " or " : ", ");
            const dr_t *c = &other->t[t->cand[k]];
            put_comment_name(b, c->info->name, c->len, c->writable);
        }
        if (t->more_cand)
            buf_printf(b, " or %zu more", t->more_cand);
        buf_putc(b, '\n');
    } else if (t->crowded) {
        buf_printf(b, ": one of %zu tensors of this type in the %s state, too many to tell "
                      "apart\n", t->more_cand, other_side);
    } else {
        buf_printf(b, ": nothing of this type is left in the %s state\n", other_side);
    }
}

static size_t count_how(const dr_side *S, dr_how how)
{
    size_t n = 0;
    for (size_t i = 0; i < S->n; i++)
        n += S->t[i].how == how;
    return n;
}

static void write_unmapped(dctx *D, buf *b)
{
    size_t uo = count_how(&D->O, DR_UNMAPPED), un = count_how(&D->N, DR_UNMAPPED);
    if (!uo && !un)
        return;
    buf_printf(b, "\n# Not mapped: %zu of the old state, %zu of the new (no line above "
                  "moves them).\n", uo, un);
    for (size_t i = 0; i < D->O.n; i++)
        if (D->O.t[i].how == DR_UNMAPPED)
            put_unmapped(D, b, &D->O, &D->N, i, "old", "new");
    for (size_t j = 0; j < D->N.n; j++)
        if (D->N.t[j].how == DR_UNMAPPED)
            put_unmapped(D, b, &D->N, &D->O, j, "new", "old");
}

/* ---- the draft ------------------------------------------------------------- */

static bool old_has(const dctx *D, const char *name)
{
    size_t lo = 0, hi = D->O.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(oname(D, mid), name);
        if (!c)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static bool starts_any(const dr_side *S, const char *prefix)
{
    size_t len = strlen(prefix), lo = 0, hi = S->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strncmp(S->t[mid].info->name, prefix, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < S->n && strncmp(S->t[lo].info->name, prefix, len) == 0;
}

/* Stacks and unstacks taken back by plan_names: by the new tensor a stack
 * makes, by the old tensor an unstack takes apart. Their members are
 * unpaired in one pass at the end, so that many of them cost linear time. */
typedef struct unpaired {
    bool *stack;   /* [N.n] */
    bool *unstack; /* [O.n] */
} unpaired;

/* Old tensor i as plan_names sees it: unmapped when its pair was taken back. */
static bool old_unmapped(const dctx *D, const unpaired *u, size_t i)
{
    const dr_t *t = &D->O.t[i];
    return t->how == DR_UNMAPPED || (t->how == DR_STACKED && u->stack[t->other]) ||
           (t->how == DR_UNSTACKED && u->unstack[i]);
}

static bool new_unmapped(const dctx *D, const unpaired *u, size_t j)
{
    const dr_t *t = &D->N.t[j];
    return t->how == DR_UNMAPPED || (t->how == DR_UNSTACK && u->unstack[t->other]);
}

static void unpair_new(dctx *D, unpaired *u, size_t j)
{
    dr_t *n = &D->N.t[j];
    if (n->how == DR_MOVE) {
        D->O.t[n->other].how = DR_UNMAPPED;
        D->O.t[n->other].blocked = j;
        n->blocked = n->other;
        D->O.t[n->other].other = DR_NONE;
    } else if (n->how == DR_STACK) {
        u->stack[j] = true;
    } else if (n->how == DR_UNSTACK) {
        u->unstack[n->other] = true;
    }
    if (n->how != DR_SAME && n->how != DR_UNSTACK) { /* an unstack's pieces: at the end */
        n->how = DR_UNMAPPED;
        n->other = DR_NONE;
    }
}

/* A name the draft makes that an old tensor holds: when that tensor stays,
 * the pair cannot be written; when it moves away too, every name is made
 * under a prefix no name has, then moved out of it. */
static bool plan_names(dctx *D)
{
    bool staged = false;
    unpaired u = {calloc(D->N.n ? D->N.n : 1, 1), calloc(D->O.n ? D->O.n : 1, 1)};
    if (!u.stack || !u.unstack) {
        free(u.stack);
        free(u.unstack);
        return false;
    }
    for (size_t j = 0; j < D->N.n; j++) {
        const dr_t *n = &D->N.t[j];
        if (new_unmapped(D, &u, j) || n->how == DR_SAME || !old_has(D, nname(D, j)))
            continue;
        if (n->how == DR_MOVE && strcmp(oname(D, n->other), nname(D, j)) == 0)
            continue; /* transposed in place */
        size_t lo = 0, hi = D->O.n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (strcmp(oname(D, mid), nname(D, j)) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (old_unmapped(D, &u, lo) || D->O.t[lo].how == DR_SAME)
            unpair_new(D, &u, j);
        else
            staged = true;
    }
    for (size_t i = 0; i < D->O.n; i++)
        if (old_unmapped(D, &u, i))
            D->O.t[i].how = DR_UNMAPPED, D->O.t[i].other = DR_NONE;
    for (size_t k = 0; k < D->N.n; k++)
        if (new_unmapped(D, &u, k))
            D->N.t[k].how = DR_UNMAPPED, D->N.t[k].other = DR_NONE;
    free(u.stack);
    free(u.unstack);
    if (!staged)
        return true;
    char tmp[32];
    for (unsigned k = 0;; k++) {
        snprintf(tmp, sizeof tmp, k ? "surg-draft-%u" : "surg-draft", k);
        if (!starts_any(&D->O, tmp) && !starts_any(&D->N, tmp))
            break;
    }
    D->tmp = ar_strdup(&D->ar, tmp);
    return D->tmp != NULL;
}

static int by_first(const void *x, const void *y)
{
    const stmt *a = x, *b = y;
    int c = natural_cmp(a->first, b->first);
    return c ? c : strcmp(a->text, b->text);
}

static void section(dctx *D, buf *b, size_t from)
{
    if (D->n_st > from)
        qsort(D->st + from, D->n_st - from, sizeof *D->st, by_first);
    for (size_t i = from; i < D->n_st; i++)
        buf_puts(b, D->st[i].text);
}

static bool any_rotary(const dctx *D)
{
    for (size_t i = 0; i < D->O.n; i++) {
        const dr_t *o = &D->O.t[i];
        /* the same word under its two spellings: q_proj and wq */
        if (o->how == DR_MOVE && o->rotary && D->N.t[o->other].rotary &&
            (strstr(oname(D, i), "_proj") != NULL) !=
                (strstr(nname(D, o->other), "_proj") != NULL))
            return true;
    }
    return false;
}

static void put_path(buf *b, const char *path)
{
    size_t len = strlen(path);
    put_comment_name(b, path, len, utf8_valid((const unsigned char *)path, len, NULL));
}

static char *draft_text(dctx *D, const char *from_path, const char *to_path)
{
    buf b;
    buf_init(&b);
    buf_puts(&b, "# Drafted by surg suggest\n#   from ");
    put_path(&b, from_path);
    buf_puts(&b, "\n#   to ");
    put_path(&b, to_path);
    buf_puts(&b, "\n# Pairs found from names and shapes: review them before use.\n");
    if (any_rotary(D))
        buf_puts(&b, "# Hugging Face's q_proj and k_proj rows are permuted for its rotary "
                     "embedding (transformers'\n# convert_llama_weights_to_hf.py), Meta's wq "
                     "and wk are not: this draft only renames them.\n");
    buf_putc(&b, '\n');
    for (size_t i = 0; i < D->n_st; i++)
        free(D->st[i].text);
    D->n_st = 0;
    D->budget = CHECK_BUDGET;
    D->key_bytes = KEY_BUDGET;
    if (!set_universe(D, false))
        D->nomem = true;
    size_t at = D->n_st;
    write_moves(D, true);
    section(D, &b, at);
    if (!set_universe(D, true))
        D->nomem = true;
    at = D->n_st;
    write_stacks(D);
    section(D, &b, at);
    at = D->n_st;
    write_moves(D, false);
    section(D, &b, at);
    if (D->tmp) {
        buf t;
        buf_init(&t);
        for (const char *c = D->tmp; *c; c++)
            gl_put_char(&t, *c, false);
        buf_puts(&t, "/**");
        buf_puts(&b, "rename ");
        pr_string(&b, t.data ? t.data : "");
        buf_puts(&b, " -> \"$1\"\n");
        if (t.failed)
            D->nomem = true;
        buf_free(&t);
    }
    write_unmapped(D, &b);
    if (D->nomem)
        b.failed = true;
    return buf_take(&b);
}

/* ---- surg_suggest ------------------------------------------------------------ */

static bool load_side(arena *ar, const surg_ckpt *ck, dr_side *s)
{
    s->n = surg_ckpt_count(ck);
    s->t = ar_array(ar, s->n ? s->n : 1, sizeof *s->t);
    if (!s->t)
        return false;
    for (size_t i = 0; i < s->n; i++)
        s->t[i].info = surg_ckpt_tensor(ck, i);
    return true;
}

/* The draft through the parser, the compiler against `from` and, when it
 * maps everything, the check against `to`; its canonical layout in *out
 * (NULL: out of memory). false when it does not pass. */
static bool passes(const char *text, surg_ckpt *from, const surg_ckpt *to, bool complete,
                   char **out)
{
    surg_sink quiet = {0};
    surg_recipe *r = NULL;
    surg_program *p = NULL;
    *out = NULL;
    if (surg_recipe_parse("<draft>", text, strlen(text), &quiet, &r) != SURG_OK)
        return false;
    bool ok = surg_compile(r, from, &quiet, &p) == SURG_OK &&
              (!complete || surg_program_check_target(p, to, &quiet) == SURG_OK);
    *out = surg_recipe_format(r);
    surg_program_free(p);
    surg_recipe_free(r);
    return ok;
}

static void count(const dctx *D, surg_suggest_stats *s)
{
    *s = (surg_suggest_stats){.old_tensors = D->O.n, .new_tensors = D->N.n};
    for (size_t i = 0; i < D->O.n; i++) {
        const dr_t *t = &D->O.t[i];
        s->same += t->how == DR_SAME;
        s->stacked += t->how == DR_STACKED;
        s->unstacked += t->how == DR_UNSTACKED;
        s->unmapped_old += t->how == DR_UNMAPPED;
        if (t->how != DR_MOVE)
            continue;
        uint32_t perm[SURG_MAX_RANK];
        dr_perm(t, &D->N.t[t->other], perm);
        bool moved = false;
        for (uint32_t k = 0; k < t->info->rank; k++)
            moved |= perm[k] != k;
        s->transposed += moved;
        s->renamed += strcmp(t->info->name, D->N.t[t->other].info->name) != 0;
    }
    s->unmapped_new = count_how(&D->N, DR_UNMAPPED);
}

surg_status surg_suggest(surg_ckpt *from, surg_ckpt *to, surg_sink *sink, char **out,
                         surg_suggest_stats *stats)
{
    *out = NULL;
    dctx D = {0};
    ar_init(&D.ar);
    surg_suggest_stats st;
    char *text = NULL, *formatted = NULL;
    bool ok = load_side(&D.ar, from, &D.O) && load_side(&D.ar, to, &D.N) &&
              dr_match(&D.ar, &D.O, &D.N) && set_universe(&D, false) && plan_names(&D);
    if (ok) {
        count(&D, &st);
        bool complete = !st.unmapped_old && !st.unmapped_new;
        text = draft_text(&D, surg_ckpt_path(from), surg_ckpt_path(to));
        bool good = text && passes(text, from, to, complete, &formatted);
        if (text && !good) {
            /* one tensor at a time: what a generalization got wrong, this
             * does not */
            free(text);
            free(formatted);
            D.literal = true;
            text = draft_text(&D, surg_ckpt_path(from), surg_ckpt_path(to));
            good = text && passes(text, from, to, complete, &formatted);
            if (text && !good)
                dg_file(sink, SURG_WARNING, "suggest-unchecked", surg_ckpt_path(to),
                        "the draft does not pass surg check against these states (a bug "
                        "in surg suggest: please report it)");
        }
        st.checked = good && complete;
        ok = text != NULL;
    }
    surg_status rc = SURG_OK;
    if (!ok) {
        rc = dg_nomem(sink, surg_ckpt_path(to));
    } else {
        *out = formatted ? formatted : text;
        if (formatted)
            formatted = NULL;
        else
            text = NULL;
        if (stats)
            *stats = st;
    }
    free(text);
    free(formatted);
    for (size_t i = 0; i < D.n_st; i++)
        free(D.st[i].text);
    free(D.st);
    free(D.uni);
    gl_scratch_free(&D.scratch);
    ar_free(&D.ar);
    return rc;
}
