/* st_header.c: validating a safetensors header as strictly as the reference
 * implementation does: UTF-8 JSON object, no duplicate keys at any level,
 * `__metadata__` strings only, known dtypes, sizes without overflow that
 * match their byte ranges, ranges tiling the data region with no gap or
 * overlap. */
#include "runtime/st_header.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/buf.h"
#include "support/diag.h"
#include "support/json.h"
#include "support/tensor_name.h"
#include "support/utf8.h"

typedef struct parser {
    arena *ar;
    surg_sink *sink;
    const char *file;
    st_mode mode;
} parser;

#define FAIL(p, code, ...)                                                   \
    (dg_file((p)->sink, SURG_ERROR, code, (p)->file, __VA_ARGS__),           \
     SURG_EINVALID)

bool st_tensor_size(surg_dtype dt, uint32_t rank, const uint64_t *shape,
                    uint64_t *nelems, uint64_t *nbytes, bool *partial)
{
    uint64_t n = 1;
    *partial = false;
    for (uint32_t i = 0; i < rank; i++)
        if (__builtin_mul_overflow(n, shape[i], &n))
            return false;
    uint64_t bits;
    if (__builtin_mul_overflow(n, (uint64_t)surg_dtype_bits(dt), &bits))
        return false;
    if (bits % 8) {
        *partial = true;
        return false;
    }
    *nelems = n;
    *nbytes = bits / 8;
    return true;
}

static void shape_text(buf *b, uint32_t rank, const uint64_t *shape)
{
    buf_putc(b, '[');
    for (uint32_t i = 0; i < rank; i++)
        buf_printf(b, "%s%llu", i ? ", " : "", (unsigned long long)shape[i]);
    buf_putc(b, ']');
}

/* A JSON error from the reader, as a header error. */
static surg_status json_error(parser *p, const json_reader *j)
{
    const char *what = p->mode == ST_SCHEMA ? "schema" : "header";
    if (j->duplicate)
        return FAIL(p, "st-duplicate-key", "the %s has a %s (at byte %zu)", what, j->err,
                    j->err_at);
    return FAIL(p, "st-header-json", "the %s is not valid JSON: %s (at byte %zu)", what, j->err,
                j->err_at);
}

/* What one entry's fields were, before they are checked. */
typedef struct fields {
    const char *dtype;      /* NULL: missing */
    bool dtype_string;
    bool has_shape, has_offsets;
    bool shape_ok, offsets_ok;
    size_t bad_dim;         /* first dimension that is not a count */
    uint64_t shape[SURG_MAX_RANK];
    size_t rank;
    uint64_t offsets[2];
    size_t n_offsets;
} fields;

/* An array of counts, up to `max` of them; *n counts them all. */
static bool read_counts(json_reader *j, uint64_t *v, size_t max, size_t *n, bool *ok, size_t *bad)
{
    *n = 0;
    *ok = true;
    if (json_peek(j) != '[') {
        *ok = false;
        return json_skip(j);
    }
    if (!json_open(j, '['))
        return false;
    int more;
    for (more = json_first(j, ']'); more > 0; more = json_more(j, ']')) {
        if (json_is_count(j)) {
            uint64_t x;
            if (!json_count(j, &x))
                return false;
            if (*n < max)
                v[*n] = x;
        } else {
            if (*ok && bad)
                *bad = *n;
            *ok = false;
            if (!json_skip(j))
                return false;
        }
        (*n)++;
    }
    return more == 0;
}

/* One field of an entry, its key already read. */
static bool read_field(json_reader *j, fields *f, const char *key)
{
    bool is_dtype = strcmp(key, "dtype") == 0, is_shape = strcmp(key, "shape") == 0;
    bool is_offsets = strcmp(key, "data_offsets") == 0;
    if ((is_dtype && f->dtype) || (is_shape && f->has_shape) || (is_offsets && f->has_offsets)) {
        json_fail(j, "duplicate key \"%s\" in a tensor entry", key);
        j->duplicate = true;
        return false;
    }
    if (is_dtype) {
        f->dtype_string = json_peek(j) == '"';
        if (f->dtype_string)
            return json_string(j, &f->dtype);
        f->dtype = "";
        return json_skip(j);
    }
    if (is_shape) {
        f->has_shape = true;
        return read_counts(j, f->shape, SURG_MAX_RANK, &f->rank, &f->shape_ok, &f->bad_dim);
    }
    f->has_offsets = true;
    return read_counts(j, f->offsets, 2, &f->n_offsets, &f->offsets_ok, NULL);
}

static bool read_fields(json_reader *j, fields *f)
{
    memset(f, 0, sizeof *f);
    json_keys other = {0}; /* keys surg does not use: skipped, but no duplicates */
    int more = json_open(j, '{') ? json_first(j, '}') : -1;
    for (; more > 0; more = json_more(j, '}')) {
        const char *key;
        if (!json_key(j, &key))
            break;
        bool known = strcmp(key, "dtype") == 0 || strcmp(key, "shape") == 0 ||
                     strcmp(key, "data_offsets") == 0;
        if (known ? !read_field(j, f, key) : !json_keys_add(j, &other, key) || !json_skip(j))
            break;
    }
    return json_keys_unique(j, &other, "a tensor entry") && more == 0;
}

static surg_status check_size(parser *p, const char *name, st_entry *e)
{
    bool partial;
    if (st_tensor_size(e->info.dtype, e->info.rank, e->info.shape, &e->info.nelems,
                       &e->info.nbytes, &partial))
        return SURG_OK;
    buf t;
    buf_init(&t);
    shape_text(&t, e->info.rank, e->info.shape);
    surg_status st =
        partial ? FAIL(p, "st-partial-byte",
                       "tensor \"%s\": %s%s does not fill a whole number of bytes", name,
                       surg_dtype_st_name(e->info.dtype), t.failed ? "" : t.data)
                : FAIL(p, "st-overflow", "tensor \"%s\": the size of shape %s overflows", name,
                       t.failed ? "" : t.data);
    buf_free(&t);
    return st;
}

static surg_status check_offsets(parser *p, const char *name, const fields *f, st_entry *e)
{
    if (!f->has_offsets)
        return FAIL(p, "st-entry", "tensor \"%s\": \"data_offsets\" is missing", name);
    if (!f->offsets_ok || f->n_offsets != 2)
        return FAIL(p, "st-offsets",
                    "tensor \"%s\": \"data_offsets\" must be [begin, end], two non-negative "
                    "integers",
                    name);
    e->begin = f->offsets[0];
    e->end = f->offsets[1];
    if (e->end < e->begin)
        return FAIL(p, "st-offsets", "tensor \"%s\": data_offsets [%llu, %llu] end before they begin",
                    name, (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end - e->begin == e->info.nbytes)
        return SURG_OK;
    buf t;
    buf_init(&t);
    shape_text(&t, e->info.rank, e->info.shape);
    surg_status st = FAIL(
        p, "st-size-mismatch",
        "tensor \"%s\": %s%s needs %llu bytes, but data_offsets [%llu, %llu] hold %llu", name,
        surg_dtype_st_name(e->info.dtype), t.failed ? "" : t.data,
        (unsigned long long)e->info.nbytes, (unsigned long long)e->begin,
        (unsigned long long)e->end, (unsigned long long)(e->end - e->begin));
    buf_free(&t);
    return st;
}

/* A schema's dtype: the safetensors name ("F32"), the recipe's ("f32") or
 * NumPy's and JAX's, as str(a.dtype) gives it ("float32"). */
static const struct {
    const char *name;
    surg_dtype dt;
} numpy_names[] = {
    {"bool", SURG_BOOL},         {"uint8", SURG_U8},           {"int8", SURG_I8},
    {"int16", SURG_I16},         {"uint16", SURG_U16},         {"float16", SURG_F16},
    {"bfloat16", SURG_BF16},     {"int32", SURG_I32},          {"uint32", SURG_U32},
    {"float32", SURG_F32},       {"complex64", SURG_C64},      {"float64", SURG_F64},
    {"int64", SURG_I64},         {"uint64", SURG_U64},         {"float8_e5m2", SURG_F8_E5M2},
    {"float8_e4m3fn", SURG_F8_E4M3}, {"float8_e8m0fnu", SURG_F8_E8M0},
    {"float8_e4m3fnuz", SURG_F8_E4M3FNUZ}, {"float8_e5m2fnuz", SURG_F8_E5M2FNUZ},
    {"float4_e2m1fn", SURG_F4},  {"float6_e2m3fn", SURG_F6_E2M3}, {"float6_e3m2fn", SURG_F6_E3M2},
};

static surg_dtype schema_dtype(const char *name)
{
    surg_dtype dt = surg_dtype_from_st_name(name);
    if (dt == SURG_DTYPE_COUNT)
        dt = surg_dtype_from_recipe_name(name);
    for (size_t i = 0; dt == SURG_DTYPE_COUNT && i < sizeof numpy_names / sizeof *numpy_names; i++)
        if (strcmp(numpy_names[i].name, name) == 0)
            dt = numpy_names[i].dt;
    return dt;
}

/* The unknown-dtype error of a schema, listing the names it takes. */
static surg_status schema_unknown_dtype(parser *p, const char *name, const char *dtype)
{
    buf t;
    buf_init(&t);
    for (int i = 0; i < SURG_DTYPE_COUNT; i++)
        buf_printf(&t, "%s%s", i ? ", " : "", surg_dtype_recipe_name((surg_dtype)i));
    surg_status st = FAIL(p, "st-dtype",
                          "tensor \"%s\": unknown dtype \"%s\"; a schema takes %s, or their "
                          "safetensors names (F32, BF16, ...) or NumPy's and JAX's (float32, "
                          "bfloat16, float8_e4m3fn, ...)",
                          name, dtype, t.failed ? "" : t.data);
    buf_free(&t);
    return st;
}

/* An entry's fields, read, checked in the order a user can act on (dtype,
 * shape, size, offsets). */
static surg_status check_fields(parser *p, const char *name, const fields *f, st_entry *e)
{
    e->info.name = name;
    if (!f->dtype)
        return FAIL(p, "st-entry", "tensor \"%s\": \"dtype\" is missing", name);
    if (!f->dtype_string)
        return FAIL(p, "st-dtype", "tensor \"%s\": \"dtype\" must be a string", name);
    e->info.dtype = p->mode == ST_SCHEMA ? schema_dtype(f->dtype)
                                         : surg_dtype_from_st_name(f->dtype);
    if (e->info.dtype == SURG_DTYPE_COUNT && p->mode == ST_SCHEMA)
        return schema_unknown_dtype(p, name, f->dtype);
    if (e->info.dtype == SURG_DTYPE_COUNT)
        return FAIL(p, "st-dtype", "tensor \"%s\": unknown dtype \"%s\"", name, f->dtype);
    if (!f->has_shape)
        return FAIL(p, "st-entry", "tensor \"%s\": \"shape\" is missing", name);
    if (!f->shape_ok && !f->rank)
        return FAIL(p, "st-shape",
                    "tensor \"%s\": \"shape\" must be an array of non-negative integers", name);
    if (!f->shape_ok)
        return FAIL(p, "st-shape",
                    "tensor \"%s\": dimension %zu of \"shape\" is not a non-negative integer",
                    name, f->bad_dim);
    if (f->rank > SURG_MAX_RANK)
        return FAIL(p, "st-shape", "tensor \"%s\": shape has %zu dimensions (at most %d)", name,
                    f->rank, SURG_MAX_RANK);
    uint64_t *shape = ar_array(p->ar, f->rank ? f->rank : 1, sizeof *shape);
    if (!shape)
        return dg_nomem(p->sink, p->file);
    memcpy(shape, f->shape, f->rank * sizeof *shape);
    e->info.rank = (uint32_t)f->rank;
    e->info.shape = shape;
    surg_status st = check_size(p, name, e);
    if (st || p->mode == ST_SCHEMA)
        return st;
    return check_offsets(p, name, f, e);
}

static surg_status check_name(parser *p, const char *name)
{
    const char *why = tn_problem(name, strlen(name));
    if (why)
        return FAIL(p, "st-name", "the %s names a tensor \"%s\", which cannot be a tensor name: %s",
                    p->mode == ST_SCHEMA ? "schema" : "header", name, why);
    return SURG_OK;
}

/* One tensor entry of a safetensors header. */
static surg_status parse_entry(parser *p, json_reader *j, const char *name, st_entry *e)
{
    surg_status st = check_name(p, name);
    if (st)
        return st;
    if (json_peek(j) != '{') {
        if (!json_skip(j))
            return json_error(p, j);
        return FAIL(p, "st-entry",
                    "tensor \"%s\": its entry must be an object with \"dtype\", \"shape\" and "
                    "\"data_offsets\"",
                    name);
    }
    fields f;
    if (!read_fields(j, &f))
        return json_error(p, j);
    return check_fields(p, name, &f, e);
}

/* ---- a schema: flat, or a nested pytree -------------------------------- */

/* A schema's value under a name is a tensor entry (an object with "dtype"),
 * or a subtree: an object or array whose members are named
 * `name/key` (`name/index`), as a pytree's leaves are; null, {} and [] are
 * empty subtrees. The recursion is bounded by the JSON reader's depth. */
static surg_status schema_value(parser *p, json_reader *j, buf *name, st_header *h);

static surg_status schema_child(parser *p, json_reader *j, buf *name, const char *key,
                                st_header *h)
{
    size_t at = name->len;
    buf_printf(name, "%s%s", at ? "/" : "", key);
    if (name->failed)
        return dg_nomem(p->sink, p->file);
    surg_status st = schema_value(p, j, name, h);
    name->len = at;
    name->data[at] = '\0';
    return st;
}

static surg_status schema_value(parser *p, json_reader *j, buf *name, st_header *h)
{
    int c = json_peek(j);
    if (c == 'n') {
        if (!json_skip(j))
            return json_error(p, j);
        return SURG_OK;
    }
    if (c == '[') {
        if (!json_open(j, '['))
            return json_error(p, j);
        int more;
        size_t i = 0;
        for (more = json_first(j, ']'); more > 0; more = json_more(j, ']')) {
            char key[24];
            snprintf(key, sizeof key, "%zu", i++);
            surg_status st = schema_child(p, j, name, key, h);
            if (st)
                return st;
        }
        return more < 0 ? json_error(p, j) : SURG_OK;
    }
    if (c != '{') {
        if (!json_skip(j))
            return json_error(p, j);
        return FAIL(p, "st-entry",
                    "tensor \"%s\": its entry must be an object with \"dtype\" and \"shape\" "
                    "(or a subtree of them)",
                    name->data);
    }
    fields f;
    memset(&f, 0, sizeof f);
    json_keys other = {0};
    const char *subtree = NULL, *loose = NULL;
    if (!json_open(j, '{'))
        return json_error(p, j);
    int more;
    surg_status st = SURG_OK;
    for (more = json_first(j, '}'); more > 0 && !st; more = json_more(j, '}')) {
        const char *key;
        if (!json_key(j, &key))
            break;
        bool known = strcmp(key, "dtype") == 0 || strcmp(key, "shape") == 0 ||
                     strcmp(key, "data_offsets") == 0;
        int v = json_peek(j);
        if (known) {
            if (!read_field(j, &f, key))
                break;
        } else if (v == 'n') { /* None: an empty subtree, or a field surg does not use */
            if (!json_keys_add(j, &other, key) || !json_skip(j))
                break;
        } else if (v == '{' || v == '[') {
            if (!json_keys_add(j, &other, key))
                break;
            subtree = subtree ? subtree : key;
            st = schema_child(p, j, name, key, h);
        } else {
            if (!json_keys_add(j, &other, key) || !json_skip(j))
                break;
            loose = loose ? loose : key;
        }
    }
    if (st) {
        json_keys_free(&other);
        return st;
    }
    if (!json_keys_unique(j, &other, "an object") || more != 0)
        return json_error(p, j);
    bool leaf = f.dtype || f.has_shape || f.has_offsets;
    if (leaf && subtree)
        return FAIL(p, "st-entry",
                    "tensor \"%s\": an entry with \"dtype\" and \"shape\" cannot also hold "
                    "\"%s\", an object",
                    name->data, subtree);
    if (!leaf && loose)
        return FAIL(p, "st-entry",
                    "\"%s/%s\" is neither a tensor entry (an object with \"dtype\" and "
                    "\"shape\") nor a subtree of them",
                    name->data, loose);
    if (!leaf)
        return SURG_OK;
    char *keep = ar_strdup(p->ar, name->data);
    if (!keep)
        return dg_nomem(p->sink, p->file);
    st = check_name(p, keep);
    return st ? st : check_fields(p, keep, &f, &h->entries[h->n++]);
}

static int meta_cmp(const void *a, const void *b)
{
    return strcmp(((const surg_meta_entry *)a)->key,
                  ((const surg_meta_entry *)b)->key);
}

/* `__metadata__` maps strings to strings. An object that looks like a tensor
 * entry there is a tensor named `__metadata__`, which the format forbids. */
static surg_status parse_metadata(parser *p, json_reader *j, st_header *h)
{
    if (json_peek(j) != '{') {
        if (!json_skip(j))
            return json_error(p, j);
        return FAIL(p, "st-metadata", "\"__metadata__\" must be an object mapping strings to strings");
    }
    size_t cap = 8;
    h->meta = malloc(cap * sizeof *h->meta);
    if (!h->meta || !json_open(j, '{'))
        return h->meta ? json_error(p, j) : dg_nomem(p->sink, p->file);
    int more;
    for (more = json_first(j, '}'); more > 0; more = json_more(j, '}')) {
        const char *key, *value;
        if (!json_key(j, &key))
            return json_error(p, j);
        if (json_peek(j) != '"') {
            bool tensor = strcmp(key, "shape") == 0 || strcmp(key, "data_offsets") == 0;
            if (!json_skip(j))
                return json_error(p, j);
            if (tensor)
                return FAIL(p, "st-metadata-tensor",
                            "a tensor may not be named \"__metadata__\" (the name is reserved "
                            "for the string-to-string metadata)");
            return FAIL(p, "st-metadata",
                        "\"__metadata__\" must map strings to strings, but \"%s\" is not a string",
                        key);
        }
        if (!json_string(j, &value))
            return json_error(p, j);
        if (h->n_meta == cap) {
            surg_meta_entry *m = realloc(h->meta, (cap *= 2) * sizeof *m);
            if (!m)
                return dg_nomem(p->sink, p->file);
            h->meta = m;
        }
        h->meta[h->n_meta++] = (surg_meta_entry){key, value};
    }
    if (more < 0)
        return json_error(p, j);
    qsort(h->meta, h->n_meta, sizeof *h->meta, meta_cmp);
    for (size_t i = 1; i < h->n_meta; i++)
        if (strcmp(h->meta[i - 1].key, h->meta[i].key) == 0)
            return FAIL(p, "st-duplicate-key", "the %s has a duplicate key \"%s\" in \"__metadata__\"",
                        p->mode == ST_SCHEMA ? "schema" : "header", h->meta[i].key);
    return SURG_OK;
}

static int offset_cmp(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* After sorting by offset, each range must start where the previous ended,
 * and the last must end where the file does. */
static surg_status check_tiling(parser *p, st_header *h, uint64_t data_len)
{
    qsort(h->entries, h->n, sizeof *h->entries, offset_cmp);
    uint64_t at = 0;
    for (size_t i = 0; i < h->n; i++) {
        const st_entry *e = &h->entries[i];
        const char *prev = i ? h->entries[i - 1].info.name : NULL;
        if (e->begin > at && !prev)
            return FAIL(p, "st-gap",
                        "tensor \"%s\": its data starts at byte %llu, but the "
                        "first tensor must start at 0",
                        e->info.name, (unsigned long long)e->begin);
        if (e->begin > at)
            return FAIL(p, "st-gap",
                        "tensor \"%s\": its data starts at byte %llu, leaving "
                        "a gap of %llu bytes after \"%s\"",
                        e->info.name, (unsigned long long)e->begin,
                        (unsigned long long)(e->begin - at), prev);
        if (e->begin < at)
            return FAIL(p, "st-overlap",
                        "tensor \"%s\": its data [%llu, %llu) overlaps that "
                        "of \"%s\", which ends at byte %llu",
                        e->info.name, (unsigned long long)e->begin,
                        (unsigned long long)e->end, prev,
                        (unsigned long long)at);
        if (e->end > data_len)
            return FAIL(p, "st-data-past-eof",
                        "tensor \"%s\": data_offsets [%llu, %llu] run past the "
                        "end of the file (the data region holds %llu bytes)",
                        e->info.name, (unsigned long long)e->begin,
                        (unsigned long long)e->end,
                        (unsigned long long)data_len);
        at = e->end;
    }
    if (at != data_len)
        return FAIL(p, "st-trailing",
                    "%llu bytes follow the last tensor's data: the data region "
                    "holds %llu bytes but the header accounts for %llu",
                    (unsigned long long)(data_len - at),
                    (unsigned long long)data_len, (unsigned long long)at);
    return SURG_OK;
}

/* Every entry is an object: there are fewer entries than '{' outside the
 * strings of the text. */
static size_t max_entries(const json_reader *j)
{
    size_t n = 0;
    bool in_string = false;
    for (size_t i = 0; i < j->n; i++) {
        char c = j->s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else {
            in_string = c == '"';
            n += c == '{';
        }
    }
    return n;
}

static surg_status parse_object(parser *p, json_reader *j, uint64_t data_len, st_header *h)
{
    size_t cap = max_entries(j);
    h->entries = ar_array(p->ar, cap ? cap : 1, sizeof *h->entries);
    if (!h->entries)
        return dg_nomem(p->sink, p->file);
    bool seen_meta = false;
    if (!json_open(j, '{'))
        return json_error(p, j);
    int more;
    for (more = json_first(j, '}'); more > 0; more = json_more(j, '}')) {
        const char *key;
        if (!json_key(j, &key))
            return json_error(p, j);
        if (strcmp(key, "__metadata__") == 0) {
            if (seen_meta)
                return FAIL(p, "st-duplicate-key", "the %s has \"__metadata__\" twice",
                            p->mode == ST_SCHEMA ? "schema" : "header");
            seen_meta = true;
            surg_status st = parse_metadata(p, j, h);
            if (st)
                return st;
            continue;
        }
        surg_status st;
        if (p->mode == ST_SCHEMA) {
            buf name;
            buf_init(&name);
            buf_puts(&name, key);
            st = name.failed ? dg_nomem(p->sink, p->file) : schema_value(p, j, &name, h);
            buf_free(&name);
        } else {
            st = parse_entry(p, j, key, &h->entries[h->n++]);
        }
        if (st)
            return st;
    }
    if (more < 0 || !json_end(j))
        return json_error(p, j);
    /* A tensor name given twice is found when the checkpoint's table is
     * sorted by name (ck_table.c), which is done anyway. */
    return p->mode == ST_SCHEMA ? SURG_OK : check_tiling(p, h, data_len);
}

void st_header_free(st_header *h)
{
    free(h->meta);
    *h = (st_header){0};
}

surg_status st_parse_header(arena *ar, surg_sink *sink, const char *file,
                            char *json, size_t len, uint64_t data_len,
                            st_mode mode, st_header *out)
{
    parser p = {.ar = ar, .sink = sink, .file = file, .mode = mode};
    *out = (st_header){0};
    size_t bad;
    if (!utf8_valid((const unsigned char *)json, len, &bad))
        return FAIL(&p, "st-header-utf8",
                    "the header is not valid UTF-8 (bad byte at offset %zu of "
                    "the header)",
                    bad);
    size_t lead = 0;
    while (mode == ST_SCHEMA && lead < len &&
           (json[lead] == ' ' || json[lead] == '\t' || json[lead] == '\r' || json[lead] == '\n'))
        lead++;
    if (lead == len || json[lead] != '{')
        return FAIL(&p, "st-header-start",
                    mode == ST_SCHEMA
                        ? "a schema must be a JSON object"
                        : "the header does not start with '{' (this is not a "
                          "safetensors file, or its header is damaged)");
    json_reader j;
    json_init_in_place(&j, json, len);
    surg_status st = parse_object(&p, &j, data_len, out);
    if (st)
        st_header_free(out);
    return st;
}
