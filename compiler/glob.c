/* glob.c: compiling and matching patterns, expanding templates. Matching is
 * a search over (token, position) states with every failed state remembered,
 * so no name costs more than tokens × length × length steps however the
 * wildcards are arranged; literal prefixes and suffixes reject most names
 * before the search starts. */
#define _GNU_SOURCE /* memmem */
#include "compiler/glob.h"

#include "grammar/print.h"
#include "support/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- compiling patterns ------------------------------------------------ */

typedef struct builder {
    arena *ar;
    gl_tok *toks;
    uint32_t n, cap;
    char *err;
    size_t err_size;
} builder;

static gl_tok *push(builder *b, gl_kind kind)
{
    if (b->n == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : 8;
        gl_tok *t = ar_array(b->ar, cap, sizeof *t);
        if (!t)
            return NULL;
        if (b->n)
            memcpy(t, b->toks, b->n * sizeof *t);
        b->toks = t;
        b->cap = cap;
    }
    gl_tok *t = &b->toks[b->n++];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    return t;
}

static bool fail(builder *b, const char *msg)
{
    snprintf(b->err, b->err_size, "%s", msg);
    return false;
}

/* Literal text, with \x taking x literally; merged into the previous
 * literal token when there is one. */
static bool literal(builder *b, const char *s, uint32_t len)
{
    gl_tok *last = b->n ? &b->toks[b->n - 1] : NULL;
    if (last && last->kind == GL_LIT) {
        char *t = ar_alloc(b->ar, last->len + len + 1);
        if (!t)
            return fail(b, "out of memory");
        memcpy(t, last->text, last->len);
        memcpy(t + last->len, s, len);
        last->text = t;
        last->len += len;
        return true;
    }
    gl_tok *t = push(b, GL_LIT);
    if (!t || !(t->text = ar_strndup(b->ar, s, len)))
        return fail(b, "out of memory");
    t->len = len;
    return true;
}

/* [abc], [a-z], [!0-9]: ASCII only. Returns the index after ']'. */
static bool char_class(builder *b, const char *p, size_t *i)
{
    size_t k = *i + 1;
    bool negate = p[k] == '!';
    k += negate;
    uint8_t set[32] = {0};
    bool first = true;
    for (; p[k] && (p[k] != ']' || first); first = false) {
        unsigned char lo = (unsigned char)p[k], hi = lo;
        if (lo >= 0x80)
            return fail(b, "a character class holds ASCII characters only");
        if (p[k + 1] == '-' && p[k + 2] && p[k + 2] != ']') {
            hi = (unsigned char)p[k + 2];
            if (hi >= 0x80 || hi < lo)
                return fail(b, "a range in a character class must go up, in ASCII");
            k += 3;
        } else {
            k++;
        }
        for (unsigned c = lo; c <= hi; c++)
            set[c / 8] |= (uint8_t)(1u << (c % 8));
    }
    if (p[k] != ']')
        return fail(b, "'[' is not closed by ']'");
    gl_tok *t = push(b, GL_CLASS);
    if (!t)
        return fail(b, "out of memory");
    for (int c = 0; c < 256; c++) {
        bool in = (set[c / 8] >> (c % 8)) & 1;
        /* A negated class matches any character but its own and the
         * separators, as ? does; non-ASCII bytes stand for whole characters. */
        if (negate)
            in = !in && !gl_is_sep((char)c);
        if (in)
            t->set[c / 8] |= (uint8_t)(1u << (c % 8));
    }
    *i = k + 1;
    return true;
}

/* {a,b,c}: plain alternatives. Returns the index after '}'. */
static bool alternatives(builder *b, const char *p, size_t *i)
{
    size_t start = *i + 1, k = start;
    uint32_t n = 1;
    for (; p[k] && p[k] != '}'; k++) {
        if (strchr("*?[{", p[k]))
            return fail(b, "alternatives in '{}' are plain text: no wildcards inside");
        n += p[k] == ',';
    }
    if (p[k] != '}')
        return fail(b, "'{' is not closed by '}'");
    gl_tok *t = push(b, GL_ALT);
    if (!t || !(t->alts = ar_array(b->ar, n, sizeof *t->alts)) ||
        !(t->alt_lens = ar_array(b->ar, n, sizeof *t->alt_lens)))
        return fail(b, "out of memory");
    size_t from = start;
    for (size_t j = start; j <= k; j++)
        if (j == k || p[j] == ',') {
            t->alts[t->n_alts] = ar_strndup(b->ar, p + from, j - from);
            t->alt_lens[t->n_alts++] = (uint32_t)(j - from);
            if (!t->alts[t->n_alts - 1])
                return fail(b, "out of memory");
            from = j + 1;
        }
    *i = k + 1;
    return true;
}

static bool tokenize(builder *b, const char *p)
{
    for (size_t i = 0; p[i];) {
        if (p[i] == '*' && p[i + 1] == '*') {
            bool seg = gl_is_sep(p[i + 2]);
            gl_tok *t = push(b, seg ? GL_DSTAR_SEG : GL_DSTAR);
            if (!t)
                return fail(b, "out of memory");
            if (seg) {
                t->text = p[i + 2] == '/' ? "/" : ".";
                t->len = 1;
            }
            i += seg ? 3 : 2;
            while (p[i] == '*')
                i++; /* *** is ** */
        } else if (p[i] == '*' || p[i] == '?') {
            if (!push(b, p[i] == '*' ? GL_STAR : GL_QMARK))
                return fail(b, "out of memory");
            i++;
        } else if (p[i] == '[') {
            if (!char_class(b, p, &i))
                return false;
        } else if (p[i] == '{') {
            if (!alternatives(b, p, &i))
                return false;
        } else if (p[i] == '}' || p[i] == ']') {
            return fail(b, p[i] == '}' ? "'}' without '{'" : "']' without '['");
        } else if (p[i] == '\\' && p[i + 1]) {
            if (!literal(b, p + i + 1, 1))
                return false;
            i += 2;
        } else {
            size_t j = i;
            while (p[j] && !strchr("*?[]{}\\", p[j]))
                j++;
            if (j == i)
                j++; /* a lone trailing backslash is literal */
            if (!literal(b, p + i, (uint32_t)(j - i)))
                return false;
            i = j;
        }
    }
    return true;
}

bool gl_compile(arena *ar, const char *pattern, gl_pattern *out, char *err,
                size_t err_size)
{
    builder b = {.ar = ar, .err = err, .err_size = err_size};
    memset(out, 0, sizeof *out);
    out->source = pattern;
    if (!tokenize(&b, pattern))
        return false;
    out->toks = b.toks;
    out->n_toks = b.n;
    for (uint32_t i = 0; i < b.n; i++)
        if (b.toks[i].kind != GL_LIT)
            b.toks[i].capture = ++out->n_captures;
    if (out->n_captures > GL_MAX_CAPTURES)
        return fail(&b, "a pattern may have at most 64 wildcards");
    out->literal = out->n_captures == 0;
    if (b.n && b.toks[0].kind == GL_LIT)
        out->prefix_len = b.toks[0].len;
    if (b.n && b.toks[b.n - 1].kind == GL_LIT) {
        out->suffix = b.toks[b.n - 1].text;
        out->suffix_len = b.toks[b.n - 1].len;
    }
    for (uint32_t i = 1; i + 1 < b.n; i++)
        if (b.toks[i].kind == GL_LIT && b.toks[i].len > out->must_len) {
            out->must = b.toks[i].text;
            out->must_len = b.toks[i].len;
        }
    return true;
}

/* ---- matching --------------------------------------------------------- */

typedef struct search {
    const gl_pattern *p;
    const char *s;
    uint32_t n;
    gl_span *caps;
    gl_scratch *scratch;
} search;

static uint32_t char_len(const char *s, uint32_t at, uint32_t n)
{
    uint32_t k = 1;
    while (at + k < n && ((unsigned char)s[at + k] & 0xC0) == 0x80)
        k++;
    return k;
}

static bool is_boundary(const char *s, uint32_t at, uint32_t n)
{
    return at == n || ((unsigned char)s[at] & 0xC0) != 0x80;
}

static bool step(search *m, uint32_t ti, uint32_t si);

/* Try the rest of the pattern at `si`; on success record this token's span. */
static bool then(search *m, uint32_t ti, uint32_t from, uint32_t to, uint32_t si)
{
    if (!step(m, ti + 1, si))
        return false;
    uint32_t c = m->p->toks[ti].capture;
    if (c)
        m->caps[c] = (gl_span){from, to};
    return true;
}

static bool step_token(search *m, uint32_t ti, uint32_t si)
{
    const gl_tok *t = &m->p->toks[ti];
    const char *s = m->s;
    uint32_t n = m->n;
    switch (t->kind) {
    case GL_LIT:
        return n - si >= t->len && memcmp(s + si, t->text, t->len) == 0 &&
               step(m, ti + 1, si + t->len);
    case GL_STAR: {
        uint32_t end = si;
        while (end < n && !gl_is_sep(s[end]))
            end++;
        for (uint32_t e = end + 1; e-- > si;) /* longest first */
            if (is_boundary(s, e, n) && then(m, ti, si, e, e))
                return true;
        return false;
    }
    case GL_DSTAR:
        for (uint32_t e = n + 1; e-- > si;)
            if (is_boundary(s, e, n) && then(m, ti, si, e, e))
                return true;
        return false;
    case GL_DSTAR_SEG:
        for (uint32_t e = n; e > si; e--)
            if (s[e - 1] == t->text[0] && then(m, ti, si, e - 1, e))
                return true;
        return then(m, ti, si, si, si);
    case GL_QMARK:
        return si < n && !gl_is_sep(s[si]) &&
               then(m, ti, si, si + char_len(s, si, n), si + char_len(s, si, n));
    case GL_CLASS: {
        if (si >= n)
            return false;
        unsigned char c = (unsigned char)s[si];
        return ((t->set[c / 8] >> (c % 8)) & 1) &&
               then(m, ti, si, si + char_len(s, si, n), si + char_len(s, si, n));
    }
    case GL_ALT:
        for (uint32_t a = 0; a < t->n_alts; a++)
            if (n - si >= t->alt_lens[a] &&
                memcmp(s + si, t->alts[a], t->alt_lens[a]) == 0 &&
                then(m, ti, si, si + t->alt_lens[a], si + t->alt_lens[a]))
                return true;
        return false;
    }
    return false;
}

static bool step(search *m, uint32_t ti, uint32_t si)
{
    if (ti == m->p->n_toks)
        return si == m->n;
    size_t cell = (size_t)ti * (m->n + 1) + si;
    uint8_t *byte = &m->scratch->failed[cell / 8], bit = (uint8_t)(1u << (cell % 8));
    if (*byte & bit)
        return false; /* this state failed before */
    if (step_token(m, ti, si))
        return true;
    *byte |= bit;
    return false;
}

/* Room for `bytes` bits' bytes, cleared. */
static bool reserve(gl_scratch *sc, size_t bytes)
{
    if (bytes > sc->cap) {
        uint8_t *p = realloc(sc->failed, bytes);
        if (!p)
            return false;
        sc->failed = p;
        sc->cap = bytes;
    }
    memset(sc->failed, 0, bytes);
    return true;
}

void gl_scratch_free(gl_scratch *s)
{
    free(s->failed);
    *s = (gl_scratch){0};
}

int gl_match(const gl_pattern *p, const char *name, uint32_t len, gl_span *caps,
             gl_scratch *scratch)
{
    if (p->literal) {
        const char *text = p->n_toks ? p->toks[0].text : "";
        if (len != strlen(text) || memcmp(name, text, len) != 0)
            return 0;
        caps[0] = (gl_span){0, len};
        return 1;
    }
    if (len < p->prefix_len + p->suffix_len ||
        (p->prefix_len && memcmp(name, p->toks[0].text, p->prefix_len) != 0) ||
        (p->suffix_len && memcmp(name + len - p->suffix_len, p->suffix, p->suffix_len) != 0) ||
        (p->must_len && !memmem(name + p->prefix_len, len - p->prefix_len - p->suffix_len,
                                p->must, p->must_len)))
        return 0;
    if (!reserve(scratch, ((size_t)(p->n_toks + 1) * (len + 1) + 7) / 8))
        return -1;
    search m = {p, name, len, caps, scratch};
    if (!step(&m, 0, 0))
        return 0;
    caps[0] = (gl_span){0, len};
    return 1;
}

/* ---- templates -------------------------------------------------------- */

typedef struct gl_part {
    const char *text; /* literal, or NULL for a reference */
    uint32_t len;
    int ref;          /* capture number; -1 for $i */
} gl_part;

bool gl_template_compile(arena *ar, const char *text, bool allow_index,
                         gl_template *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    out->source = text;
    size_t n = strlen(text);
    gl_part *parts = ar_array(ar, n + 1, sizeof *parts);
    if (!parts)
        return snprintf(err, err_size, "out of memory"), false;
    uint32_t k = 0;
    for (size_t i = 0; i < n;) {
        if (text[i] != '$') {
            size_t j = i;
            while (j < n && text[j] != '$')
                j++;
            parts[k++] = (gl_part){text + i, (uint32_t)(j - i), 0};
            i = j;
            continue;
        }
        char c = text[i + 1];
        if (c == '$') {
            parts[k++] = (gl_part){"$", 1, 0};
            i += 2;
        } else if (c >= '0' && c <= '9') {
            parts[k++] = (gl_part){NULL, 0, c - '0'};
            i += 2;
        } else if (c == '{' && text[i + 2] >= '0' && text[i + 2] <= '9') {
            size_t j = i + 2;
            int v = 0;
            while (text[j] >= '0' && text[j] <= '9' && v < 100000)
                v = v * 10 + (text[j++] - '0');
            if (text[j] != '}')
                return snprintf(err, err_size, "'${' must hold a number and end with '}'"), false;
            parts[k++] = (gl_part){NULL, 0, v};
            i = j + 1;
        } else if (c == 'i' && allow_index) {
            parts[k++] = (gl_part){NULL, 0, -1};
            out->uses_index = true;
            i += 2;
        } else {
            return snprintf(err, err_size,
                            "'$' must be followed by a capture number (as $1 or ${10})%s, "
                            "or by '$' for a '$'",
                            allow_index ? ", by i for the index" : ""),
                   false;
        }
        gl_part *last = &parts[k - 1];
        if (!last->text && last->ref >= 0) {
            if ((uint32_t)last->ref > out->max_capture)
                out->max_capture = (uint32_t)last->ref;
            if (last->ref < 64)
                out->used |= 1ull << last->ref;
        }
    }
    out->parts = parts;
    out->n_parts = k;
    return true;
}

/* $i's text: the index in decimal, into num (20 digits at most). */
static int index_text(uint64_t index, char *num)
{
    char rev[20];
    int n = 0;
    do
        rev[n++] = (char)('0' + index % 10);
    while ((index /= 10) != 0);
    for (int i = 0; i < n; i++)
        num[i] = rev[n - 1 - i];
    return n;
}

static uint64_t expand_len(const gl_template *t, const gl_span *caps, int num_len)
{
    uint64_t len = 0;
    for (uint32_t i = 0; i < t->n_parts; i++) {
        const gl_part *p = &t->parts[i];
        len += p->text ? p->len : p->ref < 0 ? (uint64_t)num_len
                                             : caps[p->ref].end - caps[p->ref].start;
    }
    return len;
}

uint64_t gl_expand_len(const gl_template *t, const gl_span *caps, uint64_t index)
{
    char num[20];
    return expand_len(t, caps, index_text(index, num));
}

char *gl_expand(arena *ar, const gl_template *t, const char *name,
                const gl_span *caps, uint64_t index)
{
    char num[20];
    int num_len = index_text(index, num);
    uint64_t len = expand_len(t, caps, num_len);
    if (len >= SIZE_MAX)
        return NULL;
    char *out = ar_alloc(ar, len + 1), *at = out;
    if (!out)
        return NULL;
    for (uint32_t i = 0; i < t->n_parts; i++) {
        const gl_part *p = &t->parts[i];
        if (p->text) {
            memcpy(at, p->text, p->len);
            at += p->len;
        } else if (p->ref < 0) {
            memcpy(at, num, (size_t)num_len);
            at += num_len;
        } else {
            uint32_t l = caps[p->ref].end - caps[p->ref].start;
            memcpy(at, name + caps[p->ref].start, l);
            at += l;
        }
    }
    *at = '\0';
    return out;
}

void gl_put_char(buf *b, char c, bool template)
{
    if (c && strchr(template ? "$" : "*?[]{}\\", c))
        buf_putc(b, template ? '$' : '\\');
    buf_putc(b, c);
}

void gl_put_literal(buf *b, const char *name, bool template)
{
    buf g;
    buf_init(&g);
    for (const char *p = name; *p; p++)
        gl_put_char(&g, *p, template);
    if (g.failed)
        b->failed = true;
    else
        pr_string(b, g.data ? g.data : "");
    buf_free(&g);
}
