/* zarr.c: zarr v2 and v3 metadata parsed into a zarr_array (zarr.h) —
 * dtypes, chunk grid, codec chain, fill value, chunk keys — checked and
 * bounded before any chunk is read. The decoder is in zarr_decode.c. */
#include "runtime/zarr.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/codec.h"
#include "runtime/numeric.h"
#include "support/diag.h"
#include "support/json.h"
#include "support/utf8.h"

/* ---- dtypes --------------------------------------------------------------- */

static const struct {
    surg_dtype dt;
    const char *v2; /* without its byte order; NULL: only a literal name */
    const char *v3; /* the v3 name, also TensorStore's v2 literal for the extended ones */
} zdt[] = {
    {SURG_BOOL, "b1", "bool"},          {SURG_I8, "i1", "int8"},
    {SURG_U8, "u1", "uint8"},           {SURG_I16, "i2", "int16"},
    {SURG_U16, "u2", "uint16"},         {SURG_I32, "i4", "int32"},
    {SURG_U32, "u4", "uint32"},         {SURG_I64, "i8", "int64"},
    {SURG_U64, "u8", "uint64"},         {SURG_F16, "f2", "float16"},
    {SURG_F32, "f4", "float32"},        {SURG_F64, "f8", "float64"},
    {SURG_C64, "c8", "complex64"},      {SURG_BF16, NULL, "bfloat16"},
    {SURG_F8_E4M3, NULL, "float8_e4m3fn"}, {SURG_F8_E5M2, NULL, "float8_e5m2"},
    {SURG_F8_E4M3FNUZ, NULL, "float8_e4m3fnuz"}, {SURG_F8_E5M2FNUZ, NULL, "float8_e5m2fnuz"},
    {SURG_F8_E8M0, NULL, "float8_e8m0fnu"},
};
enum { N_ZDT = sizeof zdt / sizeof zdt[0] };

const char *zarr_v3_dtype(surg_dtype dt)
{
    for (int i = 0; i < N_ZDT; i++)
        if (zdt[i].dt == dt)
            return zdt[i].v3;
    return NULL;
}

const char *zarr_v2_dtype(surg_dtype dt)
{
    static const char *const v2[] = {
        [SURG_BOOL] = "|b1", [SURG_I8] = "|i1",  [SURG_U8] = "|u1",  [SURG_I16] = "<i2",
        [SURG_U16] = "<u2",  [SURG_I32] = "<i4", [SURG_U32] = "<u4", [SURG_I64] = "<i8",
        [SURG_U64] = "<u8",  [SURG_F16] = "<f2", [SURG_F32] = "<f4", [SURG_F64] = "<f8",
        [SURG_C64] = "<c8",
    };
    if ((unsigned)dt < sizeof v2 / sizeof v2[0] && v2[dt])
        return v2[dt];
    return zarr_v3_dtype(dt); /* TensorStore writes the extended ones by name */
}

/* ---- the parser's state and its errors ------------------------------------ */

enum { MAX_MEMBERS = 24, MAX_CODECS = 8 };

typedef struct zp {
    arena *keep;
    surg_sink *sink;
    const char *text;
    const char *what;  /* "a/.zarray in DIR" */
    bool reported;
    zarr_array *a;
    bool big;          /* v2: the dtype's byte order */
    uint64_t shape[SURG_MAX_RANK], chunk[SURG_MAX_RANK], inner[SURG_MAX_RANK];
    uint32_t perm[SURG_MAX_RANK];
} zp;

/* A member of an object: its key and where its value is in the text. */
typedef struct zspan {
    const char *key;
    size_t at, end;
} zspan;

typedef struct zobj {
    zspan m[MAX_MEMBERS];
    size_t n;
    bool used[MAX_MEMBERS];
} zobj;

static bool bad(zp *p, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool bad(zp *p, const char *code, const char *fmt, ...)
{
    if (p->reported)
        return false;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dg_file(p->sink, SURG_ERROR, code, p->what, "%s", msg);
    p->reported = true;
    return false;
}

static bool bad_json(zp *p, json_reader *j)
{
    return bad(p, "zarr-json", "is not valid JSON: %s (at byte %zu)", j->err,
               (size_t)(j->s - p->text) + j->err_at);
}

static void sub(zp *p, const zspan *s, json_reader *j)
{
    json_init(j, p->text + s->at, s->end - s->at, p->keep);
}

/* The members of the object at `s` (the whole text when s is NULL). */
static bool members(zp *p, const zspan *s, const char *where, zobj *o)
{
    json_reader j;
    if (s)
        sub(p, s, &j);
    else
        json_init(&j, p->text, strlen(p->text), p->keep);
    memset(o, 0, sizeof *o);
    if (json_peek(&j) != '{')
        return bad(p, "zarr-meta", "%s is not a JSON object", where);
    if (!json_open(&j, '{'))
        return bad_json(p, &j);
    const char *keys[MAX_MEMBERS];
    int r;
    for (r = json_first(&j, '}'); r == 1; r = json_more(&j, '}')) {
        const char *k;
        if (!json_key(&j, &k))
            return bad_json(p, &j);
        if (o->n == MAX_MEMBERS)
            return bad(p, "zarr-meta", "%s has more than %d keys", where, MAX_MEMBERS);
        json_peek(&j);
        size_t at = j.i;
        if (!json_skip(&j))
            return bad_json(p, &j);
        keys[o->n] = k;
        o->m[o->n++] = (zspan){k, (size_t)(j.s - p->text) + at, (size_t)(j.s - p->text) + j.i};
    }
    if (r < 0 || !json_unique(&j, keys, o->n, where) || (!s && !json_end(&j)))
        return bad_json(p, &j);
    return true;
}

static const zspan *member(zobj *o, const char *key)
{
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->m[i].key, key) == 0) {
            o->used[i] = true;
            return &o->m[i];
        }
    return NULL;
}

static const zspan *need(zp *p, zobj *o, const char *key, const char *where)
{
    const zspan *s = member(o, key);
    if (!s)
        bad(p, "zarr-meta", "%s has no \"%s\"", where, key);
    return s;
}

static bool no_others(zp *p, zobj *o, const char *where)
{
    for (size_t i = 0; i < o->n; i++)
        if (!o->used[i])
            return bad(p, "zarr-unsupported", "%s has a key \"%s\" surg does not know", where,
                       o->m[i].key);
    return true;
}

static bool is_null(zp *p, const zspan *s)
{
    return s->end - s->at == 4 && memcmp(p->text + s->at, "null", 4) == 0;
}

static char first_char(zp *p, const zspan *s) { return p->text[s->at]; }

static bool get_string(zp *p, const zspan *s, const char *field, const char **out)
{
    json_reader j;
    sub(p, s, &j);
    if (json_peek(&j) != '"')
        return bad(p, "zarr-meta", "\"%s\" is not a string", field);
    return json_string(&j, out) || bad_json(p, &j);
}

/* A whole number of `s`, signed; *neg set for a negative one. */
static bool get_int(zp *p, const zspan *s, const char *field, uint64_t *mag, bool *neg)
{
    const char *t = p->text + s->at;
    size_t n = s->end - s->at;
    *neg = n && t[0] == '-';
    size_t i = *neg;
    if (i == n || t[i] < '0' || t[i] > '9')
        return bad(p, "zarr-meta", "\"%s\" is not a number", field);
    uint64_t v = 0;
    for (; i < n; i++) {
        if (t[i] < '0' || t[i] > '9')
            return bad(p, "zarr-meta", "\"%s\" is %.*s, not a whole number", field, (int)n, t);
        unsigned d = (unsigned)(t[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return bad(p, "zarr-meta", "\"%s\" is %.*s, too large", field, (int)(n > 40 ? 40 : n), t);
        v = v * 10 + d;
    }
    *mag = v;
    return true;
}

static bool get_bool(zp *p, const zspan *s, const char *field, bool *out)
{
    const char *t = p->text + s->at;
    size_t n = s->end - s->at;
    if (n == 4 && !memcmp(t, "true", 4))
        *out = true;
    else if (n == 5 && !memcmp(t, "false", 5))
        *out = false;
    else
        return bad(p, "zarr-meta", "\"%s\" is not true or false", field);
    return true;
}

/* A list of dimensions: `min` or more each, at most SURG_MAX_RANK. */
static bool get_dims(zp *p, const zspan *s, const char *field, uint64_t min, uint64_t *out,
                     uint32_t *rank)
{
    json_reader j;
    sub(p, s, &j);
    if (json_peek(&j) != '[')
        return bad(p, "zarr-meta", "\"%s\" is not a list of dimensions", field);
    if (!json_open(&j, '['))
        return bad_json(p, &j);
    uint32_t n = 0;
    int r;
    for (r = json_first(&j, ']'); r == 1; r = json_more(&j, ']')) {
        if (n == SURG_MAX_RANK)
            return bad(p, "zarr-meta", "\"%s\" has more than %d dimensions", field, SURG_MAX_RANK);
        int c = json_peek(&j);
        if (c == '-')
            return bad(p, "zarr-meta", "\"%s\" has a negative dimension", field);
        if (c < '0' || c > '9')
            return bad(p, "zarr-meta", "\"%s\" has a dimension that is not a whole number", field);
        if (!json_count(&j, &out[n]))
            return bad(p, "zarr-meta", "\"%s\" has a dimension that is not a whole number "
                       "below 2^64", field);
        if (out[n] < min)
            return bad(p, "zarr-meta", "\"%s\" has a dimension of %llu (each must be at least %llu)",
                       field, (unsigned long long)out[n], (unsigned long long)min);
        n++;
    }
    if (r < 0)
        return bad_json(p, &j);
    *rank = n;
    return true;
}

/* ---- dtypes by name ------------------------------------------------------- */

static bool set_dtype(zp *p, surg_dtype dt)
{
    p->a->dtype = dt;
    p->a->esize = surg_dtype_bits(dt) / 8;
    return true;
}

static bool v2_dtype(zp *p, const zspan *s)
{
    if (first_char(p, s) == '[')
        return bad(p, "zarr-unsupported", "\"dtype\" is a structured dtype, which surg does not "
                   "support");
    const char *name;
    if (!get_string(p, s, "dtype", &name))
        return false;
    size_t n = strlen(name);
    if (n >= 3 && strchr("<>|", name[0])) {
        for (int i = 0; i < N_ZDT; i++)
            if (zdt[i].v2 && strcmp(zdt[i].v2, name + 1) == 0) {
                unsigned es = surg_dtype_bits(zdt[i].dt) / 8;
                if (name[0] == '|' && es > 1)
                    break;
                p->big = name[0] == '>' && es > 1;
                return set_dtype(p, zdt[i].dt);
            }
    } else {
        for (int i = 0; i < N_ZDT; i++)
            if (!zdt[i].v2 && strcmp(zdt[i].v3, name) == 0)
                return set_dtype(p, zdt[i].dt);
    }
    return bad(p, "zarr-unsupported", "\"dtype\" is \"%.64s\", which surg does not support (it "
               "reads bool, int8 to uint64, float16/32/64, complex64, bfloat16 and the float8 "
               "types)", name);
}

static bool v3_dtype(zp *p, const zspan *s)
{
    if (first_char(p, s) != '"')
        return bad(p, "zarr-unsupported", "\"data_type\" is not a name surg knows");
    const char *name;
    if (!get_string(p, s, "data_type", &name))
        return false;
    for (int i = 0; i < N_ZDT; i++)
        if (strcmp(zdt[i].v3, name) == 0)
            return set_dtype(p, zdt[i].dt);
    return bad(p, "zarr-unsupported", "\"data_type\" is \"%.64s\", which surg does not support "
               "(it reads bool, int8 to uint64, float16/32/64, complex64, bfloat16 and the "
               "float8 types)", name);
}

/* ---- fill values ---------------------------------------------------------- */

static void put_le(unsigned char *b, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static bool float_fill(zp *p, surg_dtype dt, double v, unsigned char *b, const char *text)
{
    switch (dt) {
    case SURG_F64: memcpy(b, &v, 8); return true;
    case SURG_F32: {
        float f = isnan(v) || isinf(v) || !text ? (float)v : strtof(text, NULL);
        memcpy(b, &f, 4);
        return true;
    }
    case SURG_F16: put_le(b, nm_f16_from(v), 2); return true;
    case SURG_BF16: put_le(b, nm_bf16_from(v), 2); return true;
    case SURG_F8_E4M3: b[0] = nm_e4m3_from(v); return true;
    case SURG_F8_E5M2: b[0] = nm_e5m2_from(v); return true;
    case SURG_F8_E4M3FNUZ:
    case SURG_F8_E5M2FNUZ:
        if (v == 0 || isnan(v)) {
            b[0] = isnan(v) ? 0x80 : 0;
            return true;
        }
        break;
    case SURG_F8_E8M0:
        if (isnan(v)) {
            b[0] = 0xFF;
            return true;
        }
        break;
    default: break;
    }
    return bad(p, "zarr-unsupported", "\"fill_value\" %s for %s is not supported (give its bits "
               "as \"0x..\")", text ? text : "NaN", zarr_v3_dtype(dt));
}

/* One real fill value (a number, "NaN", "Infinity", "-Infinity", "0x.."
 * raw bits in v3) of dtype dt into b. */
static bool real_fill(zp *p, const zspan *s, surg_dtype dt, unsigned char *b)
{
    unsigned es = surg_dtype_bits(dt) / 8;
    const char *t = p->text + s->at;
    size_t n = s->end - s->at;
    bool is_float = dt == SURG_F16 || dt == SURG_F32 || dt == SURG_F64 || dt == SURG_BF16 ||
                    (es == 1 && dt != SURG_BOOL && dt != SURG_I8 && dt != SURG_U8);
    char text[64];
    if (t[0] == '"') {
        const char *str;
        if (!get_string(p, s, "fill_value", &str))
            return false;
        if (!is_float)
            return bad(p, "zarr-meta", "\"fill_value\" is \"%.40s\", not a value of %s", str,
                       zarr_v3_dtype(dt));
        if (p->a->format == 3 && str[0] == '0' && str[1] == 'x') {
            uint64_t v = 0;
            size_t k = 2;
            for (; str[k]; k++) {
                int c = str[k];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
                if (d < 0 || k - 2 >= 2 * es)
                    break;
                v = v << 4 | (unsigned)d;
            }
            if (str[k] || k - 2 != 2 * es)
                return bad(p, "zarr-meta", "\"fill_value\" \"%.40s\" is not %u hex digits after "
                           "\"0x\"", str, 2 * es);
            put_le(b, v, es);
            return true;
        }
        double v = strcmp(str, "NaN") == 0 ? NAN : strcmp(str, "Infinity") == 0 ? INFINITY
                   : strcmp(str, "-Infinity") == 0 ? -INFINITY : 0;
        if (v == 0)
            return bad(p, "zarr-meta", "\"fill_value\" is \"%.40s\" (a string must be \"NaN\", "
                       "\"Infinity\", \"-Infinity\"%s)", str, p->a->format == 3 ? " or \"0x..\"" : "");
        return float_fill(p, dt, v, b, isnan(v) ? NULL : str);
    }
    if (t[0] != '-' && (t[0] < '0' || t[0] > '9'))
        return bad(p, "zarr-meta", "\"fill_value\" is not a value of %s", zarr_v3_dtype(dt));
    if (n >= sizeof text)
        return bad(p, "zarr-meta", "\"fill_value\" is a number of more than %zu characters",
                   sizeof text - 1);
    snprintf(text, sizeof text, "%.*s", (int)n, t);
    if (is_float)
        return float_fill(p, dt, strtod(text, NULL), b, text);
    uint64_t mag;
    bool neg;
    if (!get_int(p, s, "fill_value", &mag, &neg))
        return false;
    if (dt == SURG_BOOL) {
        if (p->a->format == 3 || neg || mag > 1)
            return bad(p, "zarr-meta", "\"fill_value\" %s is not a bool", text);
        b[0] = (unsigned char)mag;
        return true;
    }
    bool sgn = surg_dtype_kind_of(dt) == SURG_KIND_INT;
    uint64_t lim = es == 8 ? UINT64_MAX : ((uint64_t)1 << (8 * es)) - 1;
    if (sgn)
        lim >>= 1;
    if ((neg && !sgn && mag) || (!neg && mag > lim) || (neg && mag > lim + 1))
        return bad(p, "zarr-meta", "\"fill_value\" %s is out of the range of %s", text,
                   zarr_v3_dtype(dt));
    put_le(b, neg ? (uint64_t)0 - mag : mag, es);
    return true;
}

static bool fill_value(zp *p, const zspan *s)
{
    zarr_array *a = p->a;
    memset(a->fill, 0, sizeof a->fill);
    if (is_null(p, s)) {
        if (a->format == 3)
            return bad(p, "zarr-meta", "\"fill_value\" is null (zarr v3 needs a value)");
        return true; /* unspecified: zeros, as TensorStore reads it */
    }
    char c = first_char(p, s);
    if (c == 't' || c == 'f') {
        bool v;
        if (a->dtype != SURG_BOOL)
            return bad(p, "zarr-meta", "\"fill_value\" is a bool but the dtype is %s",
                       zarr_v3_dtype(a->dtype));
        if (!get_bool(p, s, "fill_value", &v))
            return false;
        a->fill[0] = v;
        return true;
    }
    if (a->dtype == SURG_C64) {
        zspan part[2];
        json_reader j;
        sub(p, s, &j);
        int k = 0, r;
        if (c != '[' || !json_open(&j, '['))
            return bad(p, "zarr-meta", "\"fill_value\" of complex64 is not [real, imaginary]");
        for (r = json_first(&j, ']'); r == 1 && k < 2; r = json_more(&j, ']'), k++) {
            json_peek(&j);
            part[k].at = s->at + j.i;
            if (!json_skip(&j))
                return bad_json(p, &j);
            part[k].end = s->at + j.i;
        }
        if (r != 0 || k != 2)
            return bad(p, "zarr-meta", "\"fill_value\" of complex64 is not [real, imaginary]");
        return real_fill(p, &part[0], SURG_F32, a->fill) &&
               real_fill(p, &part[1], SURG_F32, a->fill + 4);
    }
    return real_fill(p, s, a->dtype, a->fill);
}

/* ---- sizes and the grid --------------------------------------------------- */

static bool mul(uint64_t x, uint64_t y, uint64_t *out)
{
    if (y && x > UINT64_MAX / y)
        return false;
    *out = x * y;
    return true;
}

#define ZARR_MAX_BYTES ((uint64_t)1 << 62)

static bool sizes(zp *p)
{
    zarr_array *a = p->a;
    uint64_t ne = 1, ce = 1, nc = 1, cb;
    for (uint32_t d = 0; d < a->rank; d++) {
        uint64_t g = p->shape[d] ? (p->shape[d] - 1) / p->chunk[d] + 1 : 0;
        if (!mul(ne, p->shape[d], &ne) || !mul(ce, p->chunk[d], &ce) || !mul(nc, g, &nc))
            goto big;
    }
    if (!mul(ne, a->esize, &a->nbytes) || a->nbytes > ZARR_MAX_BYTES || !mul(ce, a->esize, &cb) ||
        cb > ZARR_MAX_BYTES)
        goto big;
    a->nelems = ne;
    a->n_chunks = nc;
    /* All the stored chunks together decode to at most 8 times the array
     * and a GiB: chunks far larger than the array cost no unbounded work. */
    uint64_t grid, lim = a->nbytes > (UINT64_MAX >> 4) ? UINT64_MAX : 8 * a->nbytes + (1u << 30);
    if (!mul(nc, cb, &grid) || grid > lim)
        return bad(p, "zarr-meta", "the chunk grid (%llu chunks of %llu bytes) is far larger "
                   "than the array (%llu bytes)", (unsigned long long)nc, (unsigned long long)cb,
                   (unsigned long long)a->nbytes);
    return true;
big:
    return bad(p, "zarr-meta", "the array or its chunks are too large (more than 2^62 bytes, "
               "or sizes that overflow)");
}

/* ---- codecs --------------------------------------------------------------- */

static bool endian(zp *p, const zspan *cfg, const char *codec, bool *big)
{
    *big = false;
    zobj o;
    if (!cfg) {
        if (p->a->esize > 1)
            return bad(p, "zarr-meta", "codec \"%s\" has no \"endian\"", codec);
        return true;
    }
    if (!members(p, cfg, "the bytes codec's configuration", &o))
        return false;
    const zspan *e = member(&o, "endian");
    if (!no_others(p, &o, "the bytes codec's configuration"))
        return false;
    if (!e) {
        if (p->a->esize > 1)
            return bad(p, "zarr-meta", "codec \"%s\" has no \"endian\"", codec);
        return true;
    }
    const char *v;
    if (!get_string(p, e, "endian", &v))
        return false;
    if (strcmp(v, "little") && strcmp(v, "big"))
        return bad(p, "zarr-meta", "\"endian\" is \"%.20s\", not \"little\" or \"big\"", v);
    *big = v[0] == 'b';
    return true;
}

/* A codec list's members: each {"name": ..., "configuration": {...}}. */
typedef struct zcodec {
    const char *name;
    const zspan *cfg;
    zobj o;
} zcodec;

static bool codec_list(zp *p, const zspan *s, const char *field, zcodec *c, size_t *n)
{
    json_reader j;
    sub(p, s, &j);
    if (json_peek(&j) != '[' || !json_open(&j, '['))
        return bad(p, "zarr-meta", "\"%s\" is not a list of codecs", field);
    size_t k = 0;
    int r;
    for (r = json_first(&j, ']'); r == 1; r = json_more(&j, ']')) {
        if (k == MAX_CODECS)
            return bad(p, "zarr-unsupported", "\"%s\" has more than %d codecs", field, MAX_CODECS);
        json_peek(&j);
        zspan m = {NULL, s->at + j.i, 0};
        if (!json_skip(&j))
            return bad_json(p, &j);
        m.end = s->at + j.i;
        if (!members(p, &m, "a codec", &c[k].o))
            return false;
        const zspan *nm = need(p, &c[k].o, "name", "a codec");
        if (!nm || !get_string(p, nm, "name", &c[k].name))
            return false;
        c[k].cfg = member(&c[k].o, "configuration");
        const zspan *mu = member(&c[k].o, "must_understand");
        bool must = true;
        if (mu && !get_bool(p, mu, "must_understand", &must))
            return false;
        if (!no_others(p, &c[k].o, "a codec"))
            return false;
        k++;
    }
    if (r < 0)
        return bad_json(p, &j);
    *n = k;
    return true;
}

static bool level(zp *p, const zcodec *c, bool zstd)
{
    if (!c->cfg)
        return true;
    zobj o;
    if (!members(p, c->cfg, "a compressor's configuration", &o))
        return false;
    const zspan *l = member(&o, "level"), *ck = zstd ? member(&o, "checksum") : NULL;
    uint64_t mag;
    bool neg, b;
    if (l && !get_int(p, l, "level", &mag, &neg))
        return false;
    if (ck && !get_bool(p, ck, "checksum", &b))
        return false;
    return no_others(p, &o, "a compressor's configuration");
}

static bool perm_of(zp *p, const zspan *cfg, uint32_t rank, uint32_t *perm)
{
    zobj o;
    if (!cfg)
        return bad(p, "zarr-meta", "codec \"transpose\" has no configuration");
    if (!members(p, cfg, "the transpose codec's configuration", &o))
        return false;
    const zspan *ord = need(p, &o, "order", "the transpose codec's configuration");
    if (!ord || !no_others(p, &o, "the transpose codec's configuration"))
        return false;
    if (first_char(p, ord) == '"') {
        const char *v;
        if (!get_string(p, ord, "order", &v))
            return false;
        if (strcmp(v, "C") && strcmp(v, "F"))
            return bad(p, "zarr-meta", "transpose \"order\" is \"%.20s\"", v);
        for (uint32_t d = 0; d < rank; d++)
            perm[d] = v[0] == 'C' ? d : rank - 1 - d;
        return true;
    }
    uint64_t dims[SURG_MAX_RANK];
    uint32_t n;
    if (!get_dims(p, ord, "order", 0, dims, &n))
        return false;
    uint64_t seen = 0;
    if (n != rank)
        return bad(p, "zarr-meta", "transpose \"order\" has %u entries for an array of rank %u",
                   n, rank);
    for (uint32_t d = 0; d < n; d++) {
        if (dims[d] >= rank || (seen >> dims[d] & 1))
            return bad(p, "zarr-meta", "transpose \"order\" is not a permutation of 0..%u",
                       rank ? rank - 1 : 0);
        seen |= (uint64_t)1 << dims[d];
        perm[d] = (uint32_t)dims[d];
    }
    return true;
}

static bool b2b_codec(zp *p, const zcodec *c, zarr_chain *ch)
{
    uint8_t kind;
    if (strcmp(c->name, "zstd") == 0)
        kind = CODEC_ZSTD;
    else if (strcmp(c->name, "gzip") == 0)
        kind = CODEC_GZIP;
    else if (strcmp(c->name, "crc32c") == 0)
        kind = ZARR_CRC32C;
    else
        return bad(p, "zarr-unsupported", "codec \"%.40s\" is not supported (surg reads "
                   "transpose, bytes, sharding_indexed, zstd, gzip and crc32c)", c->name);
    if (kind == ZARR_CRC32C) {
        zobj o;
        if (c->cfg && (!members(p, c->cfg, "the crc32c codec's configuration", &o) ||
                       !no_others(p, &o, "the crc32c codec's configuration")))
            return false;
    } else {
        if (!level(p, c, kind == CODEC_ZSTD))
            return false;
        for (unsigned i = 0; i < ch->n_b2b; i++)
            if (ch->b2b[i] != ZARR_CRC32C)
                return bad(p, "zarr-unsupported", "the codecs compress twice (surg reads one "
                           "compressor per chain)");
    }
    if (ch->n_b2b == ZARR_MAX_B2B)
        return bad(p, "zarr-unsupported", "more than %d compressors and checksums in a chain",
                   ZARR_MAX_B2B);
    ch->b2b[ch->n_b2b++] = kind;
    return true;
}

static bool v3_chain(zp *p, const zspan *s, const char *field, const uint64_t *cshape,
                     bool outer, zarr_chain *ch);

static bool index_codecs(zp *p, const zspan *s)
{
    zcodec c[MAX_CODECS];
    size_t n;
    if (!codec_list(p, s, "index_codecs", c, &n))
        return false;
    if (!n || strcmp(c[0].name, "bytes") != 0)
        return bad(p, "zarr-unsupported", "\"index_codecs\" do not start with the bytes codec");
    if (!endian(p, c[0].cfg, "bytes", &p->a->index_big))
        return false;
    if (n == 2 && strcmp(c[1].name, "crc32c") == 0) {
        zobj o;
        if (c[1].cfg && (!members(p, c[1].cfg, "the crc32c codec's configuration", &o) ||
                         !no_others(p, &o, "the crc32c codec's configuration")))
            return false;
        p->a->index_crc = true;
    } else if (n != 1) {
        return bad(p, "zarr-unsupported", "\"index_codecs\" are not bytes and an optional "
                   "crc32c");
    }
    return true;
}

static bool sharding(zp *p, const zcodec *c, const uint64_t *shard, zarr_chain *ch)
{
    zarr_array *a = p->a;
    zobj o;
    const char *where = "the sharding_indexed codec's configuration";
    if (!c->cfg)
        return bad(p, "zarr-meta", "codec \"sharding_indexed\" has no configuration");
    if (!members(p, c->cfg, where, &o))
        return false;
    const zspan *cs = need(p, &o, "chunk_shape", where), *cod = need(p, &o, "codecs", where),
                *ix = need(p, &o, "index_codecs", where), *loc = member(&o, "index_location");
    if (!cs || !cod || !ix || !no_others(p, &o, where))
        return false;
    uint32_t r;
    if (!get_dims(p, cs, "chunk_shape", 1, p->inner, &r))
        return false;
    uint32_t rank = a->rank ? a->rank : 0;
    if (r != rank)
        return bad(p, "zarr-meta", "the inner \"chunk_shape\" has %u dimensions, the array %u", r,
                   rank);
    uint64_t n = 1;
    for (uint32_t d = 0; d < r; d++) {
        if (shard[d] % p->inner[d])
            return bad(p, "zarr-meta", "the inner chunk shape does not divide the shard's "
                       "(dimension %u: %llu into %llu)", d, (unsigned long long)p->inner[d],
                       (unsigned long long)shard[d]);
        n *= shard[d] / p->inner[d]; /* at most the shard's elements: no overflow */
    }
    if (n > ((uint64_t)1 << 40))
        return bad(p, "zarr-meta", "a shard holds more than 2^40 inner chunks");
    a->n_inner = n;
    a->sharded = true;
    if (loc) {
        const char *v;
        if (!get_string(p, loc, "index_location", &v))
            return false;
        if (strcmp(v, "start") && strcmp(v, "end"))
            return bad(p, "zarr-meta", "\"index_location\" is \"%.20s\", not \"start\" or "
                       "\"end\"", v);
        a->index_at_start = v[0] == 's';
    }
    return index_codecs(p, ix) && v3_chain(p, cod, "codecs", p->inner, false, ch);
}

/* transpose?, then bytes or (outer only) sharding_indexed, then compressors
 * and checksums. */
static bool v3_chain(zp *p, const zspan *s, const char *field, const uint64_t *cshape,
                     bool outer, zarr_chain *ch)
{
    zcodec c[MAX_CODECS];
    size_t n, i = 0;
    if (!codec_list(p, s, field, c, &n))
        return false;
    memset(ch, 0, sizeof *ch);
    uint32_t rank = p->a->rank;
    if (i < n && strcmp(c[i].name, "transpose") == 0) {
        uint32_t *perm = ar_array(p->keep, rank ? rank : 1, sizeof *perm);
        if (!perm)
            return bad(p, "nomem", "out of memory");
        if (!perm_of(p, c[i].cfg, rank, perm))
            return false;
        bool id = true;
        for (uint32_t d = 0; d < rank; d++)
            id &= perm[d] == d;
        ch->perm = id ? NULL : perm;
        i++;
    }
    if (i == n)
        return bad(p, "zarr-meta", "\"%s\" have no bytes codec", field);
    if (strcmp(c[i].name, "sharding_indexed") == 0 && outer) {
        if (ch->perm)
            return bad(p, "zarr-unsupported", "a transpose before sharding_indexed is not "
                       "supported");
        if (i + 1 != n)
            return bad(p, "zarr-unsupported", "codecs after sharding_indexed are not supported");
        return sharding(p, &c[i], cshape, ch);
    }
    if (strcmp(c[i].name, "bytes") == 0) {
        if (!endian(p, c[i].cfg, "bytes", &ch->big))
            return false;
    } else if (strcmp(c[i].name, "transpose") == 0) {
        return bad(p, "zarr-unsupported", "two transpose codecs are not supported");
    } else if (strcmp(c[i].name, "sharding_indexed") == 0) {
        return bad(p, "zarr-unsupported", "sharding_indexed inside sharding_indexed is not "
                   "supported");
    } else {
        return bad(p, "zarr-unsupported", "codec \"%.40s\" is not supported (surg reads "
                   "transpose, bytes, sharding_indexed, zstd, gzip and crc32c)", c[i].name);
    }
    for (i++; i < n; i++)
        if (!b2b_codec(p, &c[i], ch))
            return false;
    return true;
}

/* ---- zarr v2 --------------------------------------------------------------- */

static bool v2_compressor(zp *p, const zspan *s)
{
    if (is_null(p, s))
        return true;
    zobj o;
    const char *id;
    if (!members(p, s, "\"compressor\"", &o))
        return false;
    const zspan *ids = need(p, &o, "id", "\"compressor\"");
    if (!ids || !get_string(p, ids, "id", &id))
        return false;
    uint8_t kind = strcmp(id, "zstd") == 0   ? CODEC_ZSTD
                   : strcmp(id, "zlib") == 0 ? CODEC_ZLIB
                   : strcmp(id, "gzip") == 0 ? CODEC_GZIP
                                             : CODEC_NONE;
    if (kind == CODEC_NONE)
        return bad(p, "zarr-unsupported", "\"compressor\" is \"%.40s\", which surg does not "
                   "support (it reads zstd, zlib and gzip)", id);
    p->a->chain.b2b[0] = kind;
    p->a->chain.n_b2b = 1;
    return true;
}

static bool parse_v2(zp *p, zobj *o)
{
    zarr_array *a = p->a;
    const char *w = "the .zarray";
    const zspan *fmt = need(p, o, "zarr_format", w), *shape = need(p, o, "shape", w),
                *chunks = need(p, o, "chunks", w), *dtype = need(p, o, "dtype", w),
                *comp = need(p, o, "compressor", w), *fill = need(p, o, "fill_value", w),
                *order = need(p, o, "order", w), *filters = need(p, o, "filters", w),
                *sep = member(o, "dimension_separator");
    if (!fmt || !shape || !chunks || !dtype || !comp || !fill || !order || !filters)
        return false;
    uint64_t v;
    bool neg;
    if (!get_int(p, fmt, "zarr_format", &v, &neg))
        return false;
    if (v != 2 || neg)
        return bad(p, "zarr-meta", "\"zarr_format\" is not 2");
    if (!no_others(p, o, w))
        return false;
    uint32_t rank, crank;
    if (!get_dims(p, shape, "shape", 0, p->shape, &rank) ||
        !get_dims(p, chunks, "chunks", 1, p->chunk, &crank))
        return false;
    if (rank != crank)
        return bad(p, "zarr-meta", "\"shape\" has %u dimensions but \"chunks\" %u", rank, crank);
    a->rank = rank;
    if (!v2_dtype(p, dtype) || !v2_compressor(p, comp))
        return false;
    if (!is_null(p, filters) && !(filters->end - filters->at >= 2 && first_char(p, filters) == '[' &&
                                  p->text[filters->end - 1] == ']' &&
                                  strspn(p->text + filters->at + 1, " \t\r\n") ==
                                      filters->end - filters->at - 2))
        return bad(p, "zarr-unsupported", "\"filters\" are set, which surg does not support "
                   "(only null or [])");
    const char *ord;
    if (!get_string(p, order, "order", &ord))
        return false;
    if (strcmp(ord, "C") && strcmp(ord, "F"))
        return bad(p, "zarr-meta", "\"order\" is \"%.20s\", not \"C\" or \"F\"", ord);
    if (ord[0] == 'F' && rank > 1) {
        uint32_t *perm = ar_array(p->keep, rank, sizeof *perm);
        if (!perm)
            return bad(p, "nomem", "out of memory");
        for (uint32_t d = 0; d < rank; d++)
            perm[d] = rank - 1 - d;
        a->chain.perm = perm;
    }
    a->sep = '.';
    if (sep) {
        const char *sv;
        if (!get_string(p, sep, "dimension_separator", &sv))
            return false;
        if (strcmp(sv, ".") && strcmp(sv, "/"))
            return bad(p, "zarr-meta", "\"dimension_separator\" is \"%.20s\", not \".\" or \"/\"",
                       sv);
        a->sep = sv[0];
    }
    a->chain.big = p->big;
    return fill_value(p, fill);
}

/* ---- zarr v3 --------------------------------------------------------------- */

static bool named(zp *p, const zspan *s, const char *field, zobj *o, const char **name,
                  const zspan **cfg)
{
    if (!members(p, s, field, o))
        return false;
    const zspan *nm = need(p, o, "name", field);
    if (!nm || !get_string(p, nm, "name", name))
        return false;
    *cfg = member(o, "configuration");
    return no_others(p, o, field);
}

static bool v3_grid(zp *p, const zspan *s)
{
    zobj o, c;
    const char *name;
    const zspan *cfg;
    if (!named(p, s, "\"chunk_grid\"", &o, &name, &cfg))
        return false;
    if (strcmp(name, "regular"))
        return bad(p, "zarr-unsupported", "\"chunk_grid\" is \"%.40s\", not \"regular\"", name);
    if (!cfg)
        return bad(p, "zarr-meta", "\"chunk_grid\" has no configuration");
    if (!members(p, cfg, "the chunk grid's configuration", &c))
        return false;
    const zspan *cs = need(p, &c, "chunk_shape", "the chunk grid's configuration");
    uint32_t r;
    if (!cs || !no_others(p, &c, "the chunk grid's configuration") ||
        !get_dims(p, cs, "chunk_shape", 1, p->chunk, &r))
        return false;
    if (r != p->a->rank)
        return bad(p, "zarr-meta", "\"shape\" has %u dimensions but \"chunk_shape\" %u",
                   p->a->rank, r);
    return true;
}

static bool v3_keys(zp *p, const zspan *s)
{
    zarr_array *a = p->a;
    zobj o, c;
    const char *name;
    const zspan *cfg;
    if (!named(p, s, "\"chunk_key_encoding\"", &o, &name, &cfg))
        return false;
    if (strcmp(name, "default") && strcmp(name, "v2"))
        return bad(p, "zarr-unsupported", "\"chunk_key_encoding\" is \"%.40s\", not \"default\" "
                   "or \"v2\"", name);
    a->key_c = name[0] == 'd';
    a->sep = a->key_c ? '/' : '.';
    if (!cfg)
        return true;
    if (!members(p, cfg, "the chunk key encoding's configuration", &c))
        return false;
    const zspan *sep = member(&c, "separator");
    if (!no_others(p, &c, "the chunk key encoding's configuration"))
        return false;
    if (sep) {
        const char *sv;
        if (!get_string(p, sep, "separator", &sv))
            return false;
        if (strcmp(sv, ".") && strcmp(sv, "/"))
            return bad(p, "zarr-meta", "\"separator\" is \"%.20s\", not \".\" or \"/\"", sv);
        a->sep = sv[0];
    }
    return true;
}

static bool parse_v3(zp *p, zobj *o)
{
    zarr_array *a = p->a;
    const char *w = "the zarr.json";
    const zspan *fmt = need(p, o, "zarr_format", w), *node = need(p, o, "node_type", w),
                *shape = need(p, o, "shape", w), *dtype = need(p, o, "data_type", w),
                *grid = need(p, o, "chunk_grid", w), *keys = need(p, o, "chunk_key_encoding", w),
                *fill = need(p, o, "fill_value", w), *codecs = need(p, o, "codecs", w),
                *st = member(o, "storage_transformers");
    if (!fmt || !node || !shape || !dtype || !grid || !keys || !fill || !codecs)
        return false;
    member(o, "attributes");
    member(o, "dimension_names");
    uint64_t v;
    bool neg;
    const char *nt;
    if (!get_int(p, fmt, "zarr_format", &v, &neg))
        return false;
    if (v != 3 || neg)
        return bad(p, "zarr-meta", "\"zarr_format\" is not 3");
    if (!get_string(p, node, "node_type", &nt))
        return false;
    if (strcmp(nt, "array"))
        return bad(p, "zarr-meta", "\"node_type\" is \"%.20s\", not \"array\"", nt);
    if (st && !(st->end - st->at >= 2 && first_char(p, st) == '[' &&
                strspn(p->text + st->at + 1, " \t\r\n") == st->end - st->at - 2))
        return bad(p, "zarr-unsupported", "\"storage_transformers\" are set, which surg does not "
                   "support");
    /* Extensions that need not be understood: {"must_understand": false}. */
    for (size_t i = 0; i < o->n; i++) {
        if (o->used[i])
            continue;
        zobj e;
        bool must = true;
        if (first_char(p, &o->m[i]) == '{') {
            if (!members(p, &o->m[i], "an extension", &e))
                return false;
            const zspan *mu = member(&e, "must_understand");
            if (mu && !get_bool(p, mu, "must_understand", &must))
                return false;
        }
        if (must)
            return bad(p, "zarr-unsupported", "the zarr.json has a key \"%s\" surg does not know",
                       o->m[i].key);
    }
    uint32_t rank;
    if (!get_dims(p, shape, "shape", 0, p->shape, &rank))
        return false;
    a->rank = rank;
    return v3_dtype(p, dtype) && v3_grid(p, grid) && v3_keys(p, keys) &&
           v3_chain(p, codecs, "codecs", p->chunk, true, &a->chain) && fill_value(p, fill);
}

/* ---- entry points ----------------------------------------------------------- */

static const uint64_t *keep_dims(zp *p, const uint64_t *d)
{
    if (!p->a->rank)
        return NULL;
    uint64_t *v = ar_array(p->keep, p->a->rank, sizeof *v);
    if (v)
        memcpy(v, d, p->a->rank * sizeof *v);
    return v;
}

surg_status zarr_parse(arena *keep, const char *text, size_t n, int format, const char *name,
                       const char *root, surg_sink *sink, zarr_array **out)
{
    *out = NULL;
    const char *file = format == 2 ? ".zarray" : "zarr.json";
    size_t wn = strlen(name) + strlen(file) + strlen(root) + 8;
    char *what = ar_alloc(keep, wn);
    if (!what)
        return dg_nomem(sink, root);
    snprintf(what, wn, "%s%s%s in %s", name, *name ? "/" : "", file, root);
    if (n > ZARR_MAX_META) {
        dg_file(sink, SURG_ERROR, "too-large", what, "has %zu bytes, more than the %u allowed", n,
                ZARR_MAX_META);
        return SURG_EINVALID;
    }
    zarr_array *a = ar_alloc(keep, sizeof *a);
    char *copy = ar_alloc(keep, n + 1);
    if (!a || !copy)
        return dg_nomem(sink, what);
    zp p = {.keep = keep, .sink = sink, .text = copy, .what = what, .a = a};
    size_t at = 0;
    if (!utf8_valid((const unsigned char *)text, n, &at) || memchr(text, 0, n)) {
        dg_file(sink, SURG_ERROR, "zarr-json", what, "is not UTF-8 text (byte %zu)", at);
        return SURG_EINVALID;
    }
    memcpy(copy, text, n);
    copy[n] = '\0';
    a->format = format;
    a->name = ar_strdup(keep, name);
    a->root = ar_strdup(keep, root);
    zobj o;
    bool ok = a->name && a->root && members(&p, NULL, "the metadata", &o) &&
              (format == 2 ? parse_v2(&p, &o) : parse_v3(&p, &o)) && sizes(&p);
    if (ok) {
        a->shape = keep_dims(&p, p.shape);
        a->chunk = keep_dims(&p, p.chunk);
        a->inner = a->sharded ? keep_dims(&p, p.inner) : NULL;
        if (a->rank && (!a->shape || !a->chunk || (a->sharded && !a->inner)))
            return dg_nomem(sink, what);
        *out = a;
        return SURG_OK;
    }
    if (!p.reported)
        dg_nomem(sink, what);
    return SURG_EINVALID;
}

surg_status zarr_open(arena *keep, kv_store *store, const char *name, int format,
                      surg_sink *sink, zarr_array **out)
{
    *out = NULL;
    size_t kn = strlen(name) + 16;
    char *k2 = malloc(kn), *k3 = malloc(kn);
    if (!k2 || !k3) {
        free(k2);
        free(k3);
        return dg_nomem(sink, store->root);
    }
    snprintf(k2, kn, "%s%s.zarray", name, *name ? "/" : "");
    snprintf(k3, kn, "%s%szarr.json", name, *name ? "/" : "");
    kv_value v2 = {0}, v3 = {0};
    bool f2 = false, f3 = false;
    surg_status st = SURG_OK;
    if (format != 3)
        st = kv_get(store, k2, sink, &v2, &f2);
    if (!st && format != 2)
        st = kv_get(store, k3, sink, &v3, &f3);
    if (!st && f2 && f3) {
        dg_file(sink, SURG_ERROR, "zarr-meta", store->root,
                "the array \"%s\" has both a .zarray and a zarr.json", name);
        st = SURG_EINVALID;
    }
    if (!st && (f2 || f3)) {
        /* Again: a directory store's path lives only until its next get. */
        const char *key = f3 ? k3 : k2;
        const char *what = f3 ? "zarr.json" : ".zarray";
        kv_value v;
        bool found;
        st = kv_get(store, key, sink, &v, &found);
        if (!st && !found) {
            dg_file(sink, SURG_ERROR, "zarr-meta", store->root,
                    "the array \"%s\"'s %s went away while it was read", name, what);
            st = SURG_EIO;
        }
        if (!st && v.length > ZARR_MAX_META) {
            dg_file(sink, SURG_ERROR, "too-large", v.file ? v.file : store->root,
                    "the array \"%s\"'s %s has %llu bytes, more than the %u allowed", name, what,
                    (unsigned long long)v.length, ZARR_MAX_META);
            st = SURG_EINVALID;
        }
        char *text = st ? NULL : malloc(v.length + 1);
        if (!st && !text)
            st = dg_nomem(sink, store->root);
        if (!st) {
            kv_reader r;
            kv_reader_init(&r, store, &v, key);
            st = kv_reader_read(&r, 0, text, (size_t)v.length, sink);
            kv_reader_close(&r);
        }
        if (!st)
            st = zarr_parse(keep, text, (size_t)v.length, f3 ? 3 : 2, name, store->root, sink, out);
        free(text);
    }
    free(k2);
    free(k3);
    return st;
}
