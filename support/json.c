/* json.c: the strict pull reader. Strings without escapes are copied in one
 * piece; escapes are decoded with surrogate pairs checked. */
#include "support/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void json_init(json_reader *j, const char *s, size_t n, arena *ar)
{
    *j = (json_reader){.s = s, .n = n, .ar = ar};
}

void json_init_in_place(json_reader *j, char *s, size_t n)
{
    *j = (json_reader){.s = s, .w = s, .n = n};
}

bool json_fail(json_reader *j, const char *fmt, ...)
{
    if (j->failed)
        return false;
    j->failed = true;
    j->err_at = j->i;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err, sizeof j->err, fmt, ap);
    va_end(ap);
    return false;
}

static void ws(json_reader *j)
{
    while (j->i < j->n) {
        char c = j->s[j->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return;
        j->i++;
    }
}

int json_peek(json_reader *j)
{
    ws(j);
    return j->i < j->n ? (unsigned char)j->s[j->i] : -1;
}

static const char *describe(json_reader *j)
{
    static _Thread_local char what[32];
    if (j->i >= j->n)
        return "the end";
    unsigned char c = (unsigned char)j->s[j->i];
    if (c >= 0x20 && c < 0x7F)
        snprintf(what, sizeof what, "'%c'", c);
    else
        snprintf(what, sizeof what, "byte 0x%02x", c);
    return what;
}

bool json_expect(json_reader *j, char c)
{
    if (json_peek(j) == (unsigned char)c) {
        j->i++;
        return true;
    }
    return json_fail(j, "expected '%c' but found %s", c, describe(j));
}

bool json_end(json_reader *j)
{
    return json_peek(j) == -1 ||
           json_fail(j, "unexpected %s after the end of the JSON value", describe(j));
}

bool json_open(json_reader *j, char open)
{
    if (!json_expect(j, open))
        return false;
    if (++j->depth > JSON_MAX_DEPTH)
        return json_fail(j, "nested more than %d levels deep", JSON_MAX_DEPTH);
    return true;
}

static int close_or(json_reader *j, char close, bool first)
{
    int c = json_peek(j);
    if (c == close) {
        j->i++;
        j->depth--;
        return 0;
    }
    if (!first) {
        if (c != ',')
            return json_fail(j, "expected ',' or '%c' but found %s", close, describe(j)), -1;
        j->i++;
        if (json_peek(j) == close)
            return json_fail(j, "a trailing comma before '%c'", close), -1;
    }
    return 1;
}

int json_first(json_reader *j, char close) { return j->failed ? -1 : close_or(j, close, true); }
int json_more(json_reader *j, char close) { return j->failed ? -1 : close_or(j, close, false); }

bool json_key(json_reader *j, const char **key)
{
    if (json_peek(j) != '"')
        return json_fail(j, "expected a key in quotes but found %s", describe(j));
    return json_string(j, key) && json_expect(j, ':');
}

static int hex4(const char *p)
{
    int v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static char *put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | cp >> 12);
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | cp >> 18);
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* One escape at s[*i] (just after the backslash) into *o. */
static bool escape(json_reader *j, size_t *i, char **o)
{
    static const char simple[] = "\"\"\\\\//b\bf\fn\nr\rt\t";
    char c = j->s[*i];
    for (const char *p = simple; *p; p += 2)
        if (c == p[0]) {
            *(*o)++ = p[1];
            (*i)++;
            return true;
        }
    if (c != 'u')
        return j->i = *i, json_fail(j, "invalid escape '\\%c' in a string", c);
    int cp = *i + 5 <= j->n ? hex4(j->s + *i + 1) : -1;
    if (cp < 0)
        return j->i = *i, json_fail(j, "'\\u' needs four hexadecimal digits");
    *i += 5;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return j->i = *i, json_fail(j, "a lone trailing surrogate in a '\\u' escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        int lo = *i + 6 <= j->n && j->s[*i] == '\\' && j->s[*i + 1] == 'u' ? hex4(j->s + *i + 2) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return j->i = *i, json_fail(j, "a lone leading surrogate in a '\\u' escape");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        *i += 6;
    }
    if (cp == 0)
        return j->i = *i, json_fail(j, "a string may not contain NUL (\\u0000)");
    *o = put_utf8(*o, (uint32_t)cp);
    return true;
}

bool json_string(json_reader *j, const char **out)
{
    if (!json_expect(j, '"'))
        return false;
    size_t start = j->i, i = start;
    bool escaped = false;
    while (i < j->n && j->s[i] != '"') {
        unsigned char c = (unsigned char)j->s[i];
        if (c < 0x20)
            return j->i = i, json_fail(j, "a control character (0x%02x) inside a string", c);
        if (c == '\\') {
            escaped = true;
            i++;
        }
        i++;
    }
    if (i >= j->n)
        return j->i = start - 1, json_fail(j, "a string is not closed");
    /* Escapes only shrink the text, so its length bounds the result, and
     * decoding over the source never overtakes what is still to be read. */
    char *o = j->w ? j->w + start : ar_alloc(j->ar, i - start + 1), *at = o;
    if (!o)
        return json_fail(j, "out of memory");
    if (!escaped) {
        if (!j->w)
            memcpy(o, j->s + start, i - start);
        at += i - start;
    } else {
        for (size_t k = start; k < i;) {
            if (j->s[k] != '\\') {
                *at++ = j->s[k++];
                continue;
            }
            k++;
            if (!escape(j, &k, &at))
                return false;
        }
    }
    *at = '\0';
    j->i = i + 1;
    *out = o;
    return true;
}

bool json_count(json_reader *j, uint64_t *out)
{
    int c = json_peek(j);
    size_t start = j->i;
    if (c < '0' || c > '9')
        return json_fail(j, "expected a non-negative integer but found %s", describe(j));
    uint64_t v = 0;
    while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9') {
        unsigned d = (unsigned)(j->s[j->i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return j->i = start, json_fail(j, "an integer too large for 64 bits");
        v = v * 10 + d;
        j->i++;
    }
    if (j->s[start] == '0' && j->i - start > 1)
        return j->i = start, json_fail(j, "a number with a leading zero");
    if (j->i < j->n && (j->s[j->i] == '.' || j->s[j->i] == 'e' || j->s[j->i] == 'E'))
        return j->i = start, json_fail(j, "expected a whole number, not a fraction or an exponent");
    *out = v;
    return true;
}

static bool skip_number(json_reader *j)
{
    size_t i = j->i;
    if (i < j->n && j->s[i] == '-')
        i++;
    size_t digits = i;
    while (i < j->n && j->s[i] >= '0' && j->s[i] <= '9')
        i++;
    if (i == digits || (j->s[digits] == '0' && i - digits > 1))
        return json_fail(j, "a malformed number");
    if (i < j->n && j->s[i] == '.') {
        size_t f = ++i;
        while (i < j->n && j->s[i] >= '0' && j->s[i] <= '9')
            i++;
        if (i == f)
            return j->i = i, json_fail(j, "a number with no digits after '.'");
    }
    if (i < j->n && (j->s[i] == 'e' || j->s[i] == 'E')) {
        i++;
        if (i < j->n && (j->s[i] == '+' || j->s[i] == '-'))
            i++;
        size_t e = i;
        while (i < j->n && j->s[i] >= '0' && j->s[i] <= '9')
            i++;
        if (i == e)
            return j->i = i, json_fail(j, "a number with no digits in its exponent");
    }
    j->i = i;
    return true;
}

bool json_number(json_reader *j, double *out)
{
    int c = json_peek(j);
    size_t start = j->i;
    if (c != '-' && (c < '0' || c > '9'))
        return json_fail(j, "expected a number but found %s", describe(j));
    if (!skip_number(j))
        return false;
    char text[64];
    size_t len = j->i - start;
    if (len >= sizeof text)
        return j->i = start, json_fail(j, "a number of %zu characters", len);
    memcpy(text, j->s + start, len);
    text[len] = '\0';
    *out = strtod(text, NULL);
    return true;
}

bool json_truth(json_reader *j, bool *out)
{
    int c = json_peek(j);
    if (c != 't' && c != 'f')
        return json_fail(j, "expected true or false but found %s", describe(j));
    *out = c == 't';
    return json_skip(j);
}

static bool skip_word(json_reader *j, const char *w)
{
    size_t n = strlen(w);
    if (j->n - j->i >= n && memcmp(j->s + j->i, w, n) == 0) {
        j->i += n;
        return true;
    }
    return json_fail(j, "unexpected %s", describe(j));
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

bool json_unique(json_reader *j, const char **keys, size_t n, const char *where)
{
    if (n < 2) /* and keys may be NULL, which qsort must not see */
        return true;
    qsort(keys, n, sizeof *keys, key_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            json_fail(j, "duplicate key \"%s\" in %s", keys[i], where);
            j->duplicate = true;
            return false;
        }
    return true;
}

bool json_keys_add(json_reader *j, json_keys *k, const char *key)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 8;
        const char **v = realloc(k->v, cap * sizeof *v);
        if (!v)
            return json_fail(j, "out of memory");
        k->v = v;
        k->cap = cap;
    }
    k->v[k->n++] = key;
    return true;
}

void json_keys_free(json_keys *k)
{
    free(k->v);
    *k = (json_keys){0};
}

bool json_keys_unique(json_reader *j, json_keys *k, const char *where)
{
    bool ok = !j->failed && json_unique(j, k->v, k->n, where);
    json_keys_free(k);
    return ok;
}

bool json_is_count(json_reader *j)
{
    int c = json_peek(j);
    if (c < '0' || c > '9')
        return false;
    size_t i = j->i;
    while (i < j->n && j->s[i] >= '0' && j->s[i] <= '9')
        i++;
    return i == j->n || (j->s[i] != '.' && j->s[i] != 'e' && j->s[i] != 'E');
}

static bool skip_object(json_reader *j)
{
    json_keys keys = {0};
    int more = json_open(j, '{') ? json_first(j, '}') : -1;
    for (; more > 0; more = json_more(j, '}')) {
        const char *key;
        if (!json_key(j, &key) || !json_keys_add(j, &keys, key) || !json_skip(j))
            break;
    }
    return json_keys_unique(j, &keys, "an object") && more == 0;
}

bool json_skip(json_reader *j)
{
    switch (json_peek(j)) {
    case '{': return skip_object(j);
    case '[': {
        if (!json_open(j, '['))
            return false;
        int more;
        for (more = json_first(j, ']'); more > 0; more = json_more(j, ']'))
            if (!json_skip(j))
                return false;
        return more == 0;
    }
    case '"': {
        const char *s;
        return json_string(j, &s);
    }
    case 't': return skip_word(j, "true");
    case 'f': return skip_word(j, "false");
    case 'n': return skip_word(j, "null");
    case -1: return json_fail(j, "expected a value but the text ended");
    default: return skip_number(j);
    }
}
