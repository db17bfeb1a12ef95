/* buf.c: growable byte strings. */
#include "support/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/utf8.h"

void buf_init(buf *b) { *b = (buf){0}; }

void buf_free(buf *b)
{
    free(b->data);
    *b = (buf){0};
}

static bool reserve(buf *b, size_t extra)
{
    if (b->failed)
        return false;
    if (extra < b->cap - b->len)
        return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len <= extra) {
        if (cap > (size_t)-1 / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void buf_append(buf *b, const void *data, size_t len)
{
    if (!reserve(b, len))
        return;
    if (len) /* data may be NULL then (an empty, failed buffer's) */
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void buf_puts(buf *b, const char *s) { buf_append(b, s, strlen(s)); }

void buf_putc(buf *b, char c) { buf_append(b, &c, 1); }

void buf_vprintf(buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if (!reserve(b, (size_t)n))
        return;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void buf_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

static void put_codepoint_escaped(buf *b, uint32_t cp)
{
    if (cp >= 0x10000) {
        cp -= 0x10000;
        buf_printf(b, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
    } else {
        buf_printf(b, "\\u%04x", cp);
    }
}

/* The code point of the well-formed sequence of k bytes at p. */
static uint32_t decode(const unsigned char *p, size_t k)
{
    uint32_t cp = k == 1 ? p[0] : p[0] & (0x3F >> (k - 1));
    for (size_t i = 1; i < k; i++)
        cp = cp << 6 | (p[i] & 0x3F);
    return cp;
}

/* One rule for every JSON surg writes (headers, indexes, schemas, plans,
 * diagnostics). '"' and '\\' are escaped, and every control character —
 * C0, DEL and C1 (U+0080-U+009F) — is \b, \f, \n, \r, \t or \u00XX, so
 * no raw control byte reaches a strict parser or a terminal; so are the line
 * and paragraph separators U+2028 and U+2029, which split lines for some
 * readers of JSON lines (Python's str.splitlines, JavaScript). A byte that
 * does not begin well-formed UTF-8 (a file name from the command line, an
 * entry name of a damaged archive) is \ufffd, the replacement character,
 * as a decoder with errors="replace" shows it: JSON holds text, not bytes.
 * In ascii mode every other non-ASCII character is \uXXXX too (a surrogate
 * pair past U+FFFF), as Python's json.dumps writes by default. */
static void json_string(buf *b, const char *s, bool ascii)
{
    buf_putc(b, '"');
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    while (left) {
        /* A run that needs no escaping goes in at once. */
        const unsigned char *q = p;
        while (q < p + left && *q >= 0x20 && *q < 0x7F && *q != '"' && *q != '\\')
            q++;
        if (q > p) {
            buf_append(b, p, (size_t)(q - p));
            left -= (size_t)(q - p);
            p = q;
            continue;
        }
        size_t k = utf8_seq_len(p, left);
        switch (k ? *p : 0x100) {
        case '"': buf_puts(b, "\\\""); break;
        case '\\': buf_puts(b, "\\\\"); break;
        case '\b': buf_puts(b, "\\b"); break;
        case '\f': buf_puts(b, "\\f"); break;
        case '\n': buf_puts(b, "\\n"); break;
        case '\r': buf_puts(b, "\\r"); break;
        case '\t': buf_puts(b, "\\t"); break;
        case 0x100: buf_puts(b, "\\ufffd"); k = 1; break;
        default: {
            uint32_t cp = decode(p, k);
            if (ascii || cp < 0xA0 || cp == 0x2028 || cp == 0x2029)
                put_codepoint_escaped(b, cp);
            else
                buf_append(b, p, k);
        }
        }
        p += k;
        left -= k;
    }
    buf_putc(b, '"');
}

/* The fewest significant digits that read back as v (as a float when
 * `single`): 0.1, not 0.10000000000000001 or 0.100000001. */
static void shortest(buf *b, double v, bool single)
{
    char text[32];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(text, sizeof text, "%.*g", precision, v);
        if (v != v || (single ? (double)strtof(text, NULL) == v : strtod(text, NULL) == v))
            break;
    }
    buf_puts(b, text);
}

void buf_double(buf *b, double v) { shortest(b, v, false); }
void buf_float(buf *b, float v) { shortest(b, v, true); }

void buf_json_string(buf *b, const char *s) { json_string(b, s, false); }
void buf_json_ascii(buf *b, const char *s) { json_string(b, s, true); }

char *buf_take(buf *b)
{
    if (!b->data)
        reserve(b, 0); /* an empty string is still a string */
    if (b->data && !b->failed && b->len == 0)
        b->data[0] = '\0';
    char *s = b->failed ? NULL : b->data;
    if (!s)
        free(b->data);
    *b = (buf){0};
    return s;
}
