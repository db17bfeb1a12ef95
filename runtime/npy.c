/* npy.c: the .npy preamble and header dict (see npy.h). The dict is read by
 * a small strict reader of the Python literal subset NumPy writes: strings
 * in single or double quotes without escapes, True and False, a tuple of
 * decimal integers (a trailing L, as Python 2 wrote them, is accepted);
 * anything else is an error, never evaluated. */
#include "runtime/npy.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/st_header.h"

static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* The type strings surg reads and writes: kind letter, item size, dtype,
 * and the string NumPy writes for it (little-endian). */
static const struct {
    char kind;
    unsigned size;
    surg_dtype dt;
    const char *descr;
} types[] = {
    {'b', 1, SURG_BOOL, "|b1"}, {'i', 1, SURG_I8, "|i1"},  {'u', 1, SURG_U8, "|u1"},
    {'i', 2, SURG_I16, "<i2"},  {'u', 2, SURG_U16, "<u2"}, {'i', 4, SURG_I32, "<i4"},
    {'u', 4, SURG_U32, "<u4"},  {'i', 8, SURG_I64, "<i8"}, {'u', 8, SURG_U64, "<u8"},
    {'f', 2, SURG_F16, "<f2"},  {'f', 4, SURG_F32, "<f4"}, {'f', 8, SURG_F64, "<f8"},
    {'c', 8, SURG_C64, "<c8"},
};

static bool fail(npy_error *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(npy_error *err, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return false;
}

bool npy_preamble(const unsigned char *b, size_t n, npy_header *h, npy_error *err)
{
    if (n < 10 || memcmp(b, magic, sizeof magic) != 0)
        return fail(err, "npy-magic", "not a .npy array: it does not start with \"\\x93NUMPY\"");
    h->major = b[6];
    h->minor = b[7];
    if (h->minor != 0 || h->major < 1 || h->major > 3)
        return fail(err, "npy-version", "unknown .npy format version %u.%u (1.0, 2.0 and 3.0 "
                    "are read)", h->major, h->minor);
    if (h->major == 1) {
        h->data_at = 10 + (uint64_t)(b[8] | b[9] << 8);
        return true;
    }
    if (n < 12)
        return fail(err, "npy-header", "the .npy preamble is cut short");
    uint64_t len = (uint64_t)b[8] | (uint64_t)b[9] << 8 | (uint64_t)b[10] << 16 |
                   (uint64_t)b[11] << 24;
    if (len > NPY_MAX_HEADER)
        return fail(err, "npy-header", "the .npy header claims %llu bytes, more than the %u "
                    "read", (unsigned long long)len, NPY_MAX_HEADER);
    h->data_at = 12 + len;
    return true;
}

/* ---- the dict ---------------------------------------------------------- */

typedef struct rd {
    const char *p, *end;
    npy_error *err;
} rd;

static void ws(rd *r)
{
    while (r->p < r->end && strchr(" \t\n\r\f\v", *r->p) && *r->p)
        r->p++;
}

static bool peek(rd *r, char c)
{
    ws(r);
    return r->p < r->end && *r->p == c;
}

static bool expect(rd *r, char c, const char *where)
{
    if (peek(r, c)) {
        r->p++;
        return true;
    }
    return fail(r->err, "npy-header", "the .npy header is not a valid dict: expected '%c' %s",
                c, where);
}

static bool word(rd *r, const char *w)
{
    size_t n = strlen(w);
    ws(r);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n) != 0)
        return false;
    const char *after = r->p + n;
    if (after < r->end && (*after == '_' || (*after >= '0' && *after <= '9') ||
                           ((*after | 32) >= 'a' && (*after | 32) <= 'z')))
        return false;
    r->p = after;
    return true;
}

static bool string(rd *r, const char **s, size_t *n)
{
    ws(r);
    if (r->p >= r->end || (*r->p != '\'' && *r->p != '"'))
        return fail(r->err, "npy-header", "the .npy header is not a valid dict: expected a "
                    "quoted string");
    char q = *r->p++;
    const char *start = r->p;
    while (r->p < r->end && *r->p != q) {
        if (*r->p == '\\' || *r->p == '\n' || *r->p == '\0')
            return fail(r->err, "npy-header", "the .npy header has a string with an escape, a "
                        "newline or a NUL");
        r->p++;
    }
    if (r->p >= r->end)
        return fail(r->err, "npy-header", "the .npy header has an unterminated string");
    *s = start;
    *n = (size_t)(r->p++ - start);
    return true;
}

static bool integer(rd *r, uint64_t *v)
{
    ws(r);
    const char *start = r->p;
    *v = 0;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        if (__builtin_mul_overflow(*v, 10, v) || __builtin_add_overflow(*v, (uint64_t)(*r->p - '0'), v))
            return fail(r->err, "npy-shape", "a dimension of the shape is too large");
        r->p++;
    }
    if (r->p == start || (*start == '0' && r->p - start > 1))
        return fail(r->err, "npy-shape", "the shape must be a tuple of non-negative decimal "
                    "integers");
    if (r->p < r->end && *r->p == 'L') /* Python 2's long */
        r->p++;
    return true;
}

/* (), (n,), (n, m), (n, m,) — a 1-tuple needs its comma, as in Python. */
static bool shape(rd *r, npy_header *h)
{
    if (!peek(r, '('))
        return fail(r->err, "npy-shape", "'shape' must be a tuple");
    r->p++;
    h->rank = 0;
    bool comma = false;
    while (!peek(r, ')')) {
        if (h->rank == SURG_MAX_RANK)
            return fail(r->err, "npy-shape", "the shape has more than %d dimensions",
                        SURG_MAX_RANK);
        if (!integer(r, &h->shape[h->rank++]))
            return false;
        comma = peek(r, ',');
        if (comma)
            r->p++;
        else if (!peek(r, ')'))
            return fail(r->err, "npy-shape", "the shape must be a tuple of integers");
    }
    r->p++;
    if (h->rank == 1 && !comma)
        return fail(r->err, "npy-shape", "the shape must be a tuple: (n) is a number, (n,) a "
                    "tuple");
    return true;
}

static bool descr(npy_header *h, const char *s, size_t n, npy_error *err)
{
    char text[64];
    snprintf(text, sizeof text, "%.*s", (int)(n < 40 ? n : 40), s);
    size_t i = 0;
    char order = n && strchr("<>|=", s[0]) ? s[i++] : 0;
    if (i < n && s[i] == 'O')
        return fail(err, "npy-object", "it holds Python objects (dtype '%s'): reading them would "
                    "mean unpickling; only plain numeric arrays are read", text);
    char kind = i < n ? s[i++] : 0;
    unsigned size = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9' && size < 1000)
        size = size * 10 + (unsigned)(s[i++] - '0');
    for (size_t k = 0; i == n && k < sizeof types / sizeof *types; k++) {
        if (types[k].kind != kind || types[k].size != size)
            continue;
        if (size > 1 && order != '<' && order != '>')
            return fail(err, "npy-dtype", "dtype '%s' does not say its byte order ('<' or '>')",
                        text);
        h->dtype = types[k].dt;
        h->swap = (uint8_t)(size > 1 && order == '>' ? (kind == 'c' ? size / 2 : size) : 0);
        return true;
    }
    return fail(err, "npy-dtype", "dtype '%s' is not supported: surg reads bool, i1 to i8, "
                "u1 to u8, f2, f4, f8 and c8 (complex64)", text);
}

enum { KEY_DESCR = 1, KEY_FORTRAN = 2, KEY_SHAPE = 4 };

static bool item(rd *r, npy_header *h, unsigned *seen)
{
    const char *k;
    size_t n;
    if (!string(r, &k, &n) || !expect(r, ':', "after a key"))
        return false;
    unsigned key = n == 5 && !memcmp(k, "descr", 5)           ? KEY_DESCR
                   : n == 13 && !memcmp(k, "fortran_order", 13) ? KEY_FORTRAN
                   : n == 5 && !memcmp(k, "shape", 5)           ? KEY_SHAPE
                                                                : 0;
    if (!key)
        return fail(r->err, "npy-header", "the .npy header has a key '%.*s' (only 'descr', "
                    "'fortran_order' and 'shape' belong there)", (int)(n < 40 ? n : 40), k);
    if (*seen & key)
        return fail(r->err, "npy-header", "the .npy header gives '%.*s' twice", (int)n, k);
    *seen |= key;
    if (key == KEY_SHAPE)
        return shape(r, h);
    if (key == KEY_FORTRAN) {
        if (word(r, "True"))
            h->fortran = true;
        else if (word(r, "False"))
            h->fortran = false;
        else
            return fail(r->err, "npy-header", "'fortran_order' must be True or False");
        return true;
    }
    if (peek(r, '[') || peek(r, '{'))
        return fail(r->err, "npy-dtype", "it is a structured array (a record dtype): only "
                    "plain numeric arrays are read");
    const char *d;
    size_t dn;
    return string(r, &d, &dn) && descr(h, d, dn, r->err);
}

bool npy_parse_dict(const char *text, size_t len, npy_header *h, npy_error *err)
{
    rd r = {text, text + len, err};
    unsigned seen = 0;
    if (!expect(&r, '{', "at the start of the header"))
        return false;
    while (!peek(&r, '}')) {
        if (!item(&r, h, &seen))
            return false;
        if (peek(&r, ','))
            r.p++;
        else if (!peek(&r, '}'))
            return expect(&r, '}', "after an item");
    }
    r.p++;
    ws(&r);
    if (r.p != r.end)
        return fail(err, "npy-header", "the .npy header has something after its dict");
    if (seen != (KEY_DESCR | KEY_FORTRAN | KEY_SHAPE))
        return fail(err, "npy-header", "the .npy header lacks '%s'",
                    !(seen & KEY_DESCR) ? "descr" : !(seen & KEY_FORTRAN) ? "fortran_order"
                                                                         : "shape");
    bool partial;
    if (!st_tensor_size(h->dtype, h->rank, h->shape, &h->nelems, &h->nbytes, &partial))
        return fail(err, "npy-overflow", "the size of its shape overflows");
    return true;
}

/* ---- writing ----------------------------------------------------------- */

const char *npy_descr(surg_dtype dt)
{
    for (size_t k = 0; k < sizeof types / sizeof *types; k++)
        if (types[k].dt == dt)
            return types[k].descr;
    return NULL;
}

bool npy_write_header(buf *out, surg_dtype dt, uint32_t rank, const uint64_t *shape)
{
    const char *d = npy_descr(dt);
    if (!d)
        return false;
    buf h;
    buf_init(&h);
    buf_printf(&h, "{'descr': '%s', 'fortran_order': False, 'shape': (", d);
    for (uint32_t i = 0; i < rank; i++)
        buf_printf(&h, "%s%llu", i ? ", " : "", (unsigned long long)shape[i]);
    buf_puts(&h, rank == 1 ? ",), }" : "), }");
    if (rank) { /* room for the first axis to grow in place, as NumPy leaves */
        char first[24];
        int digits = snprintf(first, sizeof first, "%llu", (unsigned long long)shape[0]);
        for (int i = digits; i < 21; i++)
            buf_putc(&h, ' ');
    }
    size_t hlen = h.len + 1, pre = 10;
    size_t pad = 64 - (pre + hlen) % 64;
    if (hlen + pad > 65535) {
        pre = 12;
        pad = 64 - (pre + hlen) % 64;
    }
    uint64_t total = hlen + pad;
    unsigned char p[12];
    memcpy(p, magic, sizeof magic);
    p[6] = pre == 10 ? 1 : 2;
    p[7] = 0;
    for (size_t i = 0; i < pre - 8; i++)
        p[8 + i] = (unsigned char)(total >> (8 * i));
    buf_append(out, p, pre);
    buf_append(out, h.data, h.len);
    for (size_t i = 0; i < pad; i++)
        buf_putc(out, ' ');
    buf_putc(out, '\n');
    bool ok = !h.failed;
    buf_free(&h);
    return ok;
}
