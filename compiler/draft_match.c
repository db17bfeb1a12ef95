/* draft_match.c: `surg suggest`'s pairing of two abstract states. Tensors of
 * one name on both sides pair first; then Flax nn.scan stacks (the members'
 * names are the stacked tensor's with an index in them); then, among the
 * tensors of one type (dtype and dimensions, in any order), the pairs whose
 * names share the most tokens, each the other's strict best. Every step is
 * bounded: comparisons happen only inside a type, and a type with too many
 * tensors to compare is split by the numbers in the names, or left alone. */
#include <stdlib.h>
#include <string.h>

#include "compiler/draft.h"
#include "support/utf8.h"

/* Pairs of tensors compared within one group, and in all. */
#define GROUP_PAIRS ((uint64_t)1 << 18)
#define TOTAL_PAIRS ((uint64_t)1 << 23)
enum { ROUNDS = 8, MAX_TOKENS = 64, MAX_RUNS = 8 };

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

#define FNV0 0xcbf29ce484222325ull

/* The words that name one thing in Hugging Face, Meta and Flax code: a
 * segment (or a word inside one) that is a variant reads as its canonical
 * word. Matching stays by shape: these only add evidence. */
static const struct synonym {
    const char *canonical, *variant;
} synonyms[] = {
    {"weight", "kernel"},
    {"weight", "scale"},
    {"weight", "embedding"},
    {"weight", "gamma"},
    {"bias", "beta"},
    {"mean", "running_mean"},
    {"var", "running_var"},
    {"attention", "self_attn"},
    {"attention", "attn"},
    {"attention", "self_attention"},
    {"feed_forward", "mlp"},
    {"feed_forward", "ffn"},
    {"wq", "q_proj"},
    {"wk", "k_proj"},
    {"wv", "v_proj"},
    {"wo", "o_proj"},
    {"w1", "gate_proj"},
    {"w2", "down_proj"},
    {"w3", "up_proj"},
    {"attention_norm", "input_layernorm"},
    {"ffn_norm", "post_attention_layernorm"},
    {"tok_embeddings", "embed_tokens"},
    {"output", "lm_head"},
};

static bool is_sep(char c) { return c == '/' || c == '.'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

/* The canonical word of s[0..n) (compared without case), or NULL. */
static const char *canonical(const char *s, size_t n)
{
    for (size_t i = 0; i < sizeof synonyms / sizeof *synonyms; i++) {
        const char *w[2] = {synonyms[i].canonical, synonyms[i].variant};
        for (int k = 0; k < 2; k++) {
            size_t j = 0;
            while (j < n && w[k][j] && lower(s[j]) == w[k][j])
                j++;
            if (j == n && !w[k][j])
                return synonyms[i].canonical;
        }
    }
    return NULL;
}

static uint64_t word_hash(const char *s, size_t n)
{
    const char *c = canonical(s, n);
    if (c)
        return fnv(FNV0, c, strlen(c));
    uint64_t h = FNV0;
    for (size_t i = 0; i < n; i++) {
        char l = lower(s[i]);
        h = fnv(h, &l, 1);
    }
    return h;
}

static int by_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Split a name into tokens: a segment that is a known word is one token;
 * any other is its words and numbers, a number tagged by how many came
 * before it, so layer 3 matches layer 3 and not a w3. */
static bool tokenize(arena *ar, dr_t *t)
{
    const char *s = t->info->name;
    uint64_t tok[MAX_TOKENS];
    uint32_t n = 0, runs = 0;
    uint64_t digits = FNV0;
    for (size_t i = 0; i < t->len && n < MAX_TOKENS;) {
        size_t e = i;
        while (e < t->len && !is_sep(s[e]))
            e++;
        if (e > i && canonical(s + i, e - i)) {
            tok[n++] = word_hash(s + i, e - i);
        } else {
            for (size_t j = i; j < e && n < MAX_TOKENS;) {
                size_t k = j;
                if (is_digit(s[j])) {
                    while (k < e && is_digit(s[k]))
                        k++;
                    uint64_t h = fnv(FNV0, &runs, sizeof runs);
                    tok[n++] = fnv(h, s + j, k - j);
                    digits = fnv(fnv(digits, s + j, k - j), "#", 1);
                    runs++;
                } else if (is_alpha(s[j])) {
                    while (k < e && is_alpha(s[k]))
                        k++;
                    tok[n++] = word_hash(s + j, k - j);
                } else {
                    k = j + 1;
                }
                j = k;
            }
        }
        i = e + 1;
    }
    qsort(tok, n, sizeof *tok, by_u64);
    t->tok = ar_array(ar, n ? n : 1, sizeof *t->tok);
    if (!t->tok)
        return false;
    memcpy(t->tok, tok, n * sizeof *tok);
    t->n_tok = n;
    t->digits = digits;
    t->canon = fnv(FNV0, tok, n * sizeof *tok);
    return true;
}

/* Does a segment of the name say q_proj, k_proj, wq or wk? */
static bool names_rotary(const dr_t *t)
{
    const char *s = t->info->name;
    for (size_t i = 0; i < t->len;) {
        size_t e = i;
        while (e < t->len && !is_sep(s[e]))
            e++;
        const char *c = canonical(s + i, e - i);
        if (c && (strcmp(c, "wq") == 0 || strcmp(c, "wk") == 0))
            return true;
        i = e + 1;
    }
    return false;
}

static int by_dim(const void *a, const void *b) { return by_u64(a, b); }

static bool prepare(arena *ar, dr_side *s)
{
    for (size_t i = 0; i < s->n; i++) {
        dr_t *t = &s->t[i];
        t->len = strlen(t->info->name);
        t->writable = t->len > 0 && utf8_valid((const unsigned char *)t->info->name, t->len,
                                               NULL);
        t->other = t->blocked = DR_NONE;
        if (!tokenize(ar, t))
            return false;
        t->rotary = names_rotary(t);
        uint64_t dims[SURG_MAX_RANK];
        uint32_t r = t->info->rank;
        memcpy(dims, t->info->shape, r * sizeof *dims);
        qsort(dims, r, sizeof *dims, by_dim);
        uint64_t h = fnv(FNV0, &t->info->dtype, sizeof t->info->dtype);
        h = fnv(h, &r, sizeof r);
        t->bucket = fnv(h, dims, r * sizeof *dims);
    }
    return true;
}

/* ---- shapes -------------------------------------------------------------- */

static const char *last_segment(const dr_t *t)
{
    const char *s = t->info->name, *l = s;
    for (size_t i = 0; i < t->len; i++)
        if (is_sep(s[i]))
            l = s + i + 1;
    return l;
}

static bool fits(const dr_t *o, const dr_t *n, const uint32_t *perm)
{
    for (uint32_t i = 0; i < n->info->rank; i++)
        if (n->info->shape[i] != o->info->shape[perm[i]])
            return false;
    return true;
}

/* A PyTorch weight [out, in, spatial...] as a Flax kernel [spatial..., in,
 * out]; `back`: the other way. */
static void torch_to_flax(uint32_t r, bool back, uint32_t *perm)
{
    uint32_t p[SURG_MAX_RANK];
    for (uint32_t i = 0; i + 2 < r; i++)
        p[i] = i + 2;
    p[r - 2] = 1;
    p[r - 1] = 0;
    for (uint32_t i = 0; i < r; i++) {
        if (back)
            perm[p[i]] = i;
        else
            perm[i] = p[i];
    }
}

static bool perm_of(const dr_t *o, const dr_t *n, uint32_t *perm)
{
    uint32_t r = o->info->rank;
    if (r != n->info->rank || o->info->dtype != n->info->dtype)
        return false;
    const char *lo = last_segment(o), *ln = last_segment(n);
    bool w = strcmp(lo, "weight") == 0, k = strcmp(lo, "kernel") == 0;
    if (r >= 2 && ((w && strcmp(ln, "kernel") == 0) || (k && strcmp(ln, "weight") == 0))) {
        torch_to_flax(r, k, perm);
        if (fits(o, n, perm))
            return true;
    }
    bool used[SURG_MAX_RANK] = {false};
    for (uint32_t i = 0; i < r; i++) {
        uint32_t j = 0;
        /* the same axis when it fits, else the first unused that does */
        if (!used[i] && o->info->shape[i] == n->info->shape[i]) {
            j = i;
        } else {
            while (j < r && (used[j] || o->info->shape[j] != n->info->shape[i]))
                j++;
            if (j == r)
                return false;
        }
        used[j] = true;
        perm[i] = j;
    }
    return true;
}

void dr_perm(const dr_t *o, const dr_t *n, uint32_t *perm)
{
    if (!perm_of(o, n, perm))
        for (uint32_t i = 0; i < o->info->rank; i++)
            perm[i] = i;
}

static bool compatible(const dr_t *o, const dr_t *n)
{
    uint32_t perm[SURG_MAX_RANK];
    return o->bucket == n->bucket && o->info->nelems == n->info->nelems && perm_of(o, n, perm);
}

static void pair(dr_t *o, size_t oi, dr_t *n, size_t ni, dr_how how)
{
    o->how = n->how = how;
    o->other = ni;
    n->other = oi;
}

/* ---- the same name ------------------------------------------------------- */

static void same_names(dr_side *O, dr_side *N)
{
    for (size_t i = 0, j = 0; i < O->n && j < N->n;) {
        dr_t *o = &O->t[i], *n = &N->t[j];
        int c = strcmp(o->info->name, n->info->name);
        if (c == 0) {
            if (compatible(o, n)) {
                bool eq = o->info->rank == n->info->rank &&
                          memcmp(o->info->shape, n->info->shape,
                                 o->info->rank * sizeof *o->info->shape) == 0;
                if (eq || o->writable) /* a transpose names it */
                    pair(o, i, n, j, eq ? DR_SAME : DR_MOVE);
            }
            i++, j++;
        } else if (c < 0) {
            i++;
        } else {
            j++;
        }
    }
}

/* ---- stacks --------------------------------------------------------------- */

/* A name with one of its digit runs taken out, as nn.scan's stacked tensor
 * is named: "layers_3/kernel" -> "layers/kernel", "h.3.w" -> "h.w". */
/* A tensor under a key, in order of key, then sub-key, then tensor. */
typedef struct ent {
    uint64_t key, sub;
    size_t t;
} ent;

static int by_ent(const void *a, const void *b)
{
    const ent *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->sub != y->sub)
        return x->sub < y->sub ? -1 : 1;
    return x->t < y->t ? -1 : x->t > y->t;
}

/* key: the name without the run; sub: the run's value */
typedef struct rm_key {
    ent e;
    size_t at, len; /* the run */
} rm_key;

static void removed(const char *s, size_t len, size_t a, size_t e, size_t *cut0, size_t *cut1)
{
    bool seg = (a == 0 || is_sep(s[a - 1])) && (e == len || is_sep(s[e]));
    if (a > 0 && (s[a - 1] == '_' || s[a - 1] == '-' || (seg && is_sep(s[a - 1])))) {
        *cut0 = a - 1, *cut1 = e;
    } else if (seg && e < len) {
        *cut0 = a, *cut1 = e + 1;
    } else {
        *cut0 = a, *cut1 = e;
    }
}

static uint64_t key_hash(const char *s, size_t len, size_t c0, size_t c1)
{
    return fnv(fnv(FNV0, s, c0), s + c1, len - c1);
}

static int by_key(const void *a, const void *b)
{
    return by_ent(&((const rm_key *)a)->e, &((const rm_key *)b)->e);
}

static bool key_is(const dr_t *m, const rm_key *k, const dr_t *u)
{
    size_t c0, c1;
    const char *s = m->info->name;
    removed(s, m->len, k->at, k->at + k->len, &c0, &c1);
    return c0 + (m->len - c1) == u->len && memcmp(s, u->info->name, c0) == 0 &&
           memcmp(s + c1, u->info->name + c0, m->len - c1) == 0;
}

/* The axis at which `one` is the members' shape with k inserted; prefer 0. */
static bool stack_axis(const dr_t *m, const dr_t *one, uint64_t k, uint32_t *axis)
{
    uint32_t r = m->info->rank;
    if (one->info->rank != r + 1 || one->info->dtype != m->info->dtype)
        return false;
    for (uint32_t x = 0; x <= r; x++) {
        if (one->info->shape[x] != k)
            continue;
        bool ok = true;
        for (uint32_t i = 0; i < r && ok; i++)
            ok = m->info->shape[i] == one->info->shape[i < x ? i : i + 1];
        if (ok) {
            *axis = x;
            return true;
        }
    }
    return false;
}

static void take_group(dr_side *many, const rm_key *g, size_t k, dr_side *one, size_t u,
                       bool old_many, uint32_t axis)
{
    for (size_t j = 0; j < k; j++) {
        dr_t *m = &many->t[g[j].e.t];
        m->how = old_many ? DR_STACKED : DR_UNSTACK;
        m->other = u;
        m->index = g[j].e.sub;
        m->run_at = g[j].at;
        m->run_len = g[j].len;
        m->axis = axis;
    }
    one->t[u].how = old_many ? DR_STACK : DR_UNSTACKED;
    one->t[u].other = g[0].e.t;
    one->t[u].axis = axis;
    one->t[u].index = k;
}

/* The members of a group found under u's name, if they make u. */
static bool stack_group(dr_side *many, rm_key *g, size_t k, dr_side *one, size_t u,
                        bool old_many)
{
    if (k < 2)
        return false;
    const dr_t *first = &many->t[g[0].e.t];
    for (size_t j = 0; j < k; j++) {
        const dr_t *m = &many->t[g[j].e.t];
        /* one template: the index where the first has it */
        size_t tail = m->len - g[j].at - g[j].len;
        if (g[j].e.sub != j || m->how != DR_UNMAPPED || !key_is(m, &g[j], &one->t[u]) ||
            g[j].at != g[0].at || tail != first->len - g[0].at - g[0].len ||
            memcmp(m->info->name, first->info->name, g[0].at) != 0 ||
            memcmp(m->info->name + g[j].at + g[j].len,
                   first->info->name + g[0].at + g[0].len, tail) != 0 ||
            m->info->rank != many->t[g[0].e.t].info->rank ||
            memcmp(m->info->shape, many->t[g[0].e.t].info->shape,
                   m->info->rank * sizeof *m->info->shape) != 0)
            return false;
    }
    uint32_t axis;
    if (!stack_axis(&many->t[g[0].e.t], &one->t[u], k, &axis))
        return false;
    take_group(many, g, k, one, u, old_many, axis);
    return true;
}

static bool find_stacks(dr_side *many, dr_side *one, bool old_many)
{
    size_t cap = 0, n = 0;
    for (size_t i = 0; i < many->n; i++)
        cap += many->t[i].how == DR_UNMAPPED && many->t[i].writable ? MAX_RUNS : 0;
    rm_key *keys = malloc((cap ? cap : 1) * sizeof *keys);
    if (!keys)
        return false;
    for (size_t i = 0; i < many->n; i++) {
        const dr_t *m = &many->t[i];
        if (m->how != DR_UNMAPPED || !m->writable)
            continue;
        const char *s = m->info->name;
        unsigned runs = 0;
        for (size_t a = 0; a < m->len && runs < MAX_RUNS; a++) {
            if (!is_digit(s[a]) || (a > 0 && is_digit(s[a - 1])))
                continue;
            size_t e = a;
            while (e < m->len && is_digit(s[e]))
                e++;
            runs++;
            if (e - a > 18 || (e - a > 1 && s[a] == '0'))
                continue;
            uint64_t v = 0;
            for (size_t c = a; c < e; c++)
                v = v * 10 + (uint64_t)(s[c] - '0');
            size_t c0, c1;
            removed(s, m->len, a, e, &c0, &c1);
            keys[n++] = (rm_key){{key_hash(s, m->len, c0, c1), v, i}, a, e - a};
        }
    }
    qsort(keys, n, sizeof *keys, by_key);
    for (size_t u = 0; u < one->n; u++) {
        dr_t *t = &one->t[u];
        if (t->how != DR_UNMAPPED || !t->writable || t->info->rank == 0)
            continue;
        uint64_t h = fnv(FNV0, t->info->name, t->len);
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (keys[mid].e.key < h)
                lo = mid + 1;
            else
                hi = mid;
        }
        size_t e = lo;
        while (e < n && keys[e].e.key == h)
            e++;
        stack_group(many, keys + lo, e - lo, one, u, old_many);
    }
    free(keys);
    return true;
}

/* ---- by type and tokens --------------------------------------------------- */

static int32_t score(const dr_t *o, const dr_t *n)
{
    /* one type: the bucket's hash, and what is cheap to compare */
    if (o->bucket != n->bucket || o->info->dtype != n->info->dtype ||
        o->info->rank != n->info->rank || o->info->nelems != n->info->nelems)
        return -1;
    int32_t s = 0;
    for (uint32_t i = 0, j = 0; i < o->n_tok && j < n->n_tok;) {
        if (o->tok[i] == n->tok[j])
            s++, i++, j++;
        else if (o->tok[i] < n->tok[j])
            i++;
        else
            j++;
    }
    return s;
}

typedef struct grp {
    dr_side *O, *N;
    size_t *oi, *ni, a, b;
    uint64_t *budget;
} grp;

/* The best of a row or column of scores among those still open: its index,
 * or DR_NONE when tied or none. */
static size_t best_of(const int32_t *sc, size_t step, size_t count, const bool *open)
{
    size_t at = DR_NONE;
    int32_t best = -1;
    bool tie = false;
    for (size_t k = 0; k < count; k++) {
        if (!open[k])
            continue;
        int32_t s = sc[k * step];
        if (s > best)
            best = s, at = k, tie = false;
        else if (s == best)
            tie = true;
    }
    return tie || best < 0 ? DR_NONE : at;
}

/* The likeliest candidates of an unpaired tensor, for its comment. */
static void note_cands(dr_t *t, const int32_t *sc, size_t step, size_t count, const bool *open,
                       const size_t *idx)
{
    int32_t best = -1;
    for (size_t k = 0; k < count; k++)
        if (open[k] && sc[k * step] > best)
            best = sc[k * step];
    t->n_cand = t->more_cand = 0;
    for (size_t k = 0; k < count && best >= 0; k++) {
        if (!open[k] || sc[k * step] != best)
            continue;
        if (t->n_cand < DR_CANDS)
            t->cand[t->n_cand++] = idx[k];
        else
            t->more_cand++;
    }
}

/* Pair within a group small enough to compare every pair: 1 done, 0 too
 * large, -1 out of memory. */
static int match_small(grp *G)
{
    size_t a = G->a, b = G->b;
    if (!a || !b)
        return 1;
    uint64_t pairs = (uint64_t)a * b;
    if (pairs > GROUP_PAIRS || pairs > *G->budget)
        return 0;
    *G->budget -= pairs;
    int32_t *sc = malloc(pairs * sizeof *sc);
    bool *oo = malloc(a), *no = malloc(b);
    size_t *ob = malloc(a * sizeof *ob), *nb = malloc(b * sizeof *nb);
    if (!sc || !oo || !no || !ob || !nb) {
        free(sc), free(oo), free(no), free(ob), free(nb);
        return -1;
    }
    for (size_t i = 0; i < a; i++)
        for (size_t j = 0; j < b; j++)
            sc[i * b + j] = score(&G->O->t[G->oi[i]], &G->N->t[G->ni[j]]);
    memset(oo, 1, a);
    memset(no, 1, b);
    for (int round = 0; round < ROUNDS; round++) {
        for (size_t i = 0; i < a; i++)
            ob[i] = oo[i] ? best_of(sc + i * b, 1, b, no) : DR_NONE;
        for (size_t j = 0; j < b; j++)
            nb[j] = no[j] ? best_of(sc + j, b, a, oo) : DR_NONE;
        bool any = false;
        for (size_t i = 0; i < a; i++) {
            size_t j = ob[i];
            if (j == DR_NONE || nb[j] != i)
                continue;
            pair(&G->O->t[G->oi[i]], G->oi[i], &G->N->t[G->ni[j]], G->ni[j], DR_MOVE);
            oo[i] = no[j] = false;
            any = true;
        }
        if (!any)
            break;
    }
    for (size_t i = 0; i < a; i++)
        if (oo[i])
            note_cands(&G->O->t[G->oi[i]], sc + i * b, 1, b, no, G->ni);
    for (size_t j = 0; j < b; j++)
        if (no[j])
            note_cands(&G->N->t[G->ni[j]], sc + j, b, a, oo, G->oi);
    free(sc), free(oo), free(no), free(ob), free(nb);
    return 1;
}

/* Pairs of equal tokens, one on each side, among the open tensors of a
 * crowded type. */
static bool match_exact(grp *G)
{
    ent *e = malloc((G->a + G->b + 1) * sizeof *e);
    if (!e)
        return false;
    size_t n = 0;
    for (size_t i = 0; i < G->a; i++)
        if (G->O->t[G->oi[i]].how == DR_UNMAPPED)
            e[n++] = (ent){G->O->t[G->oi[i]].canon, 0, G->oi[i]};
    for (size_t j = 0; j < G->b; j++)
        if (G->N->t[G->ni[j]].how == DR_UNMAPPED)
            e[n++] = (ent){G->N->t[G->ni[j]].canon, 1, G->ni[j]};
    qsort(e, n, sizeof *e, by_ent);
    for (size_t i = 0; i + 1 < n;) {
        size_t j = i + 1;
        while (j < n && e[j].key == e[i].key)
            j++;
        if (j - i == 2 && e[i].sub == 0 && e[i + 1].sub == 1 &&
            compatible(&G->O->t[e[i].t], &G->N->t[e[i + 1].t]))
            pair(&G->O->t[e[i].t], e[i].t, &G->N->t[e[i + 1].t], e[i + 1].t, DR_MOVE);
        i = j;
    }
    free(e);
    return true;
}

/* A type with too many tensors: compared within each set of equal numbers
 * (the same layer), then by equal tokens; the rest is crowded. */
static bool match_crowded(grp *G)
{
    for (size_t i = 0, j = 0; i < G->a || j < G->b;) {
        uint64_t d = i < G->a ? G->O->t[G->oi[i]].digits : UINT64_MAX;
        if (j < G->b && G->N->t[G->ni[j]].digits < d)
            d = G->N->t[G->ni[j]].digits;
        size_t i1 = i, j1 = j;
        while (i1 < G->a && G->O->t[G->oi[i1]].digits == d)
            i1++;
        while (j1 < G->b && G->N->t[G->ni[j1]].digits == d)
            j1++;
        grp s = {G->O, G->N, G->oi + i, G->ni + j, i1 - i, j1 - j, G->budget};
        if (match_small(&s) < 0)
            return false;
        i = i1, j = j1;
    }
    if (!match_exact(G))
        return false;
    size_t open_o = 0, open_n = 0;
    for (size_t i = 0; i < G->a; i++)
        open_o += G->O->t[G->oi[i]].how == DR_UNMAPPED;
    for (size_t j = 0; j < G->b; j++)
        open_n += G->N->t[G->ni[j]].how == DR_UNMAPPED;
    for (size_t i = 0; i < G->a; i++)
        if (G->O->t[G->oi[i]].how == DR_UNMAPPED && !G->O->t[G->oi[i]].n_cand && open_n)
            G->O->t[G->oi[i]].crowded = true, G->O->t[G->oi[i]].more_cand = open_n;
    for (size_t j = 0; j < G->b; j++)
        if (G->N->t[G->ni[j]].how == DR_UNMAPPED && !G->N->t[G->ni[j]].n_cand && open_o)
            G->N->t[G->ni[j]].crowded = true, G->N->t[G->ni[j]].more_cand = open_o;
    return true;
}

static size_t open_entries(const dr_side *s, ent *e)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->t[i].how == DR_UNMAPPED && s->t[i].writable)
            e[n++] = (ent){s->t[i].bucket, s->t[i].digits, i};
    qsort(e, n, sizeof *e, by_ent);
    return n;
}

static bool by_type(dr_side *O, dr_side *N)
{
    ent *eo = malloc((O->n + 1) * sizeof *eo), *en = malloc((N->n + 1) * sizeof *en);
    size_t *oi = malloc((O->n + 1) * sizeof *oi), *ni = malloc((N->n + 1) * sizeof *ni);
    bool ok = eo && en && oi && ni;
    size_t a = ok ? open_entries(O, eo) : 0, b = ok ? open_entries(N, en) : 0;
    uint64_t budget = TOTAL_PAIRS;
    for (size_t i = 0, j = 0; ok && i < a && j < b;) {
        if (eo[i].key != en[j].key) {
            if (eo[i].key < en[j].key)
                i++;
            else
                j++;
            continue;
        }
        size_t i1 = i, j1 = j;
        while (i1 < a && eo[i1].key == eo[i].key)
            oi[i1 - i] = eo[i1].t, i1++;
        while (j1 < b && en[j1].key == en[j].key)
            ni[j1 - j] = en[j1].t, j1++;
        grp G = {O, N, oi, ni, i1 - i, j1 - j, &budget};
        int small = match_small(&G);
        ok = small > 0 || (small == 0 && match_crowded(&G));
        i = i1, j = j1;
    }
    free(eo), free(en), free(oi), free(ni);
    return ok;
}

bool dr_match(arena *ar, dr_side *O, dr_side *N)
{
    if (!prepare(ar, O) || !prepare(ar, N))
        return false;
    same_names(O, N);
    return find_stacks(O, N, true) && find_stacks(N, O, false) && by_type(O, N);
}
