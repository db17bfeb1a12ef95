/* st_header.c: validating a safetensors header as strictly as the reference
 * implementation does: UTF-8 JSON object, no duplicate keys at any level,
 * `__metadata__` strings only, known dtypes, sizes without overflow that
 * match their byte ranges, ranges tiling the data region with no gap or
 * overlap. */
#include "st_header.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "diag.h"
#include "utf8.h"

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

/* A JSON integer that fits a non-negative 64-bit count. */
static bool get_count(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static void shape_text(buf *b, uint32_t rank, const uint64_t *shape)
{
    buf_putc(b, '[');
    for (uint32_t i = 0; i < rank; i++)
        buf_printf(b, "%s%llu", i ? ", " : "", (unsigned long long)shape[i]);
    buf_putc(b, ']');
}

static surg_status parse_shape(parser *p, const char *name, const json_t *js,
                               st_entry *e)
{
    if (!json_is_array(js))
        return FAIL(p, "st-shape",
                    "tensor \"%s\": \"shape\" must be an array of "
                    "non-negative integers",
                    name);
    size_t rank = json_array_size(js);
    if (rank > SURG_MAX_RANK)
        return FAIL(p, "st-shape",
                    "tensor \"%s\": shape has %zu dimensions (at most %d)",
                    name, rank, SURG_MAX_RANK);
    uint64_t *shape = ar_array(p->ar, rank ? rank : 1, sizeof *shape);
    if (!shape)
        return dg_nomem(p->sink, p->file);
    for (size_t i = 0; i < rank; i++)
        if (!get_count(json_array_get(js, i), &shape[i]))
            return FAIL(p, "st-shape",
                        "tensor \"%s\": dimension %zu of \"shape\" is not a "
                        "non-negative integer",
                        name, i);
    e->info.rank = (uint32_t)rank;
    e->info.shape = shape;
    bool partial;
    if (!st_tensor_size(e->info.dtype, e->info.rank, shape, &e->info.nelems,
                        &e->info.nbytes, &partial)) {
        buf t;
        buf_init(&t);
        shape_text(&t, e->info.rank, shape);
        surg_status st =
            partial ? FAIL(p, "st-partial-byte",
                           "tensor \"%s\": %s%s does not fill a whole number "
                           "of bytes",
                           name, surg_dtype_st_name(e->info.dtype),
                           t.failed ? "" : t.data)
                    : FAIL(p, "st-overflow",
                           "tensor \"%s\": the size of shape %s overflows",
                           name, t.failed ? "" : t.data);
        buf_free(&t);
        return st;
    }
    return SURG_OK;
}

static surg_status parse_offsets(parser *p, const char *name, const json_t *js,
                                 st_entry *e)
{
    if (!json_is_array(js) || json_array_size(js) != 2 ||
        !get_count(json_array_get(js, 0), &e->begin) ||
        !get_count(json_array_get(js, 1), &e->end))
        return FAIL(p, "st-offsets",
                    "tensor \"%s\": \"data_offsets\" must be [begin, end], "
                    "two non-negative integers",
                    name);
    if (e->end < e->begin)
        return FAIL(p, "st-offsets",
                    "tensor \"%s\": data_offsets [%llu, %llu] end before they "
                    "begin",
                    name, (unsigned long long)e->begin,
                    (unsigned long long)e->end);
    if (e->end - e->begin != e->info.nbytes) {
        buf t;
        buf_init(&t);
        shape_text(&t, e->info.rank, e->info.shape);
        surg_status st = FAIL(
            p, "st-size-mismatch",
            "tensor \"%s\": %s%s needs %llu bytes, but data_offsets [%llu, "
            "%llu] hold %llu",
            name, surg_dtype_st_name(e->info.dtype), t.failed ? "" : t.data,
            (unsigned long long)e->info.nbytes, (unsigned long long)e->begin,
            (unsigned long long)e->end,
            (unsigned long long)(e->end - e->begin));
        buf_free(&t);
        return st;
    }
    return SURG_OK;
}

static surg_status parse_entry(parser *p, const char *name, const json_t *js,
                               st_entry *e)
{
    if (!json_is_object(js))
        return FAIL(p, "st-entry",
                    "tensor \"%s\": its entry must be an object with "
                    "\"dtype\", \"shape\" and \"data_offsets\"",
                    name);
    e->info.name = ar_strdup(p->ar, name);
    if (!e->info.name)
        return dg_nomem(p->sink, p->file);
    const json_t *dt = json_object_get(js, "dtype");
    if (!dt)
        return FAIL(p, "st-entry", "tensor \"%s\": \"dtype\" is missing",
                    name);
    if (!json_is_string(dt))
        return FAIL(p, "st-dtype", "tensor \"%s\": \"dtype\" must be a string",
                    name);
    e->info.dtype = surg_dtype_from_st_name(json_string_value(dt));
    if (e->info.dtype == SURG_DTYPE_COUNT)
        return FAIL(p, "st-dtype", "tensor \"%s\": unknown dtype \"%s\"", name,
                    json_string_value(dt));
    const json_t *shape = json_object_get(js, "shape");
    if (!shape)
        return FAIL(p, "st-entry", "tensor \"%s\": \"shape\" is missing",
                    name);
    surg_status st = parse_shape(p, name, shape, e);
    if (st || p->mode == ST_SCHEMA)
        return st;
    const json_t *offs = json_object_get(js, "data_offsets");
    if (!offs)
        return FAIL(p, "st-entry", "tensor \"%s\": \"data_offsets\" is missing",
                    name);
    return parse_offsets(p, name, offs, e);
}

static int meta_cmp(const void *a, const void *b)
{
    return strcmp(((const surg_meta_entry *)a)->key,
                  ((const surg_meta_entry *)b)->key);
}

/* `__metadata__` maps strings to strings. An object that looks like a tensor
 * entry there is a tensor named `__metadata__`, which the format forbids. */
static surg_status parse_metadata(parser *p, const json_t *js, st_header *h)
{
    if (json_is_object(js) && json_object_get(js, "dtype") &&
        json_object_get(js, "shape") && !json_is_string(json_object_get(js, "shape")))
        return FAIL(p, "st-metadata-tensor",
                    "a tensor may not be named \"__metadata__\" (the name is "
                    "reserved for the string-to-string metadata)");
    if (!json_is_object(js))
        return FAIL(p, "st-metadata",
                    "\"__metadata__\" must be an object mapping strings to "
                    "strings");
    h->n_meta = json_object_size(js);
    h->meta = ar_array(p->ar, h->n_meta ? h->n_meta : 1, sizeof *h->meta);
    if (!h->meta)
        return dg_nomem(p->sink, p->file);
    size_t i = 0;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)js, key, val) {
        if (!json_is_string(val))
            return FAIL(p, "st-metadata",
                        "\"__metadata__\" must map strings to strings, but "
                        "\"%s\" is not a string",
                        key);
        h->meta[i].key = ar_strdup(p->ar, key);
        h->meta[i].value = ar_strdup(p->ar, json_string_value(val));
        if (!h->meta[i].key || !h->meta[i].value)
            return dg_nomem(p->sink, p->file);
        i++;
    }
    qsort(h->meta, h->n_meta, sizeof *h->meta, meta_cmp);
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

static surg_status json_error(parser *p, const json_error_t *err)
{
    const char *what = p->mode == ST_SCHEMA ? "schema" : "header";
    if (json_error_code(err) == json_error_duplicate_key)
        return FAIL(p, "st-duplicate-key", "the %s has a duplicate key (%s, at byte %d)",
                    what, err->text, err->position);
    return FAIL(p, "st-header-json", "the %s is not valid JSON: %s (at byte %d)",
                what, err->text, err->position);
}

static surg_status parse_object(parser *p, const json_t *root, uint64_t data_len,
                                st_header *h)
{
    if (!json_is_object(root))
        return FAIL(p, "st-header-json", "the header must be a JSON object");
    const json_t *meta = json_object_get(root, "__metadata__");
    size_t n = json_object_size(root) - (meta != NULL);
    h->entries = ar_array(p->ar, n ? n : 1, sizeof *h->entries);
    if (!h->entries)
        return dg_nomem(p->sink, p->file);
    surg_status st = meta ? parse_metadata(p, meta, h) : SURG_OK;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)root, key, val) {
        if (st || val == meta)
            continue;
        st = parse_entry(p, key, val, &h->entries[h->n++]);
    }
    if (st || p->mode == ST_SCHEMA)
        return st;
    return check_tiling(p, h, data_len);
}

surg_status st_parse_header(arena *ar, surg_sink *sink, const char *file,
                            const char *json, size_t len, uint64_t data_len,
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
    while (mode == ST_SCHEMA && lead < len && strchr(" \t\r\n", json[lead]))
        lead++;
    if (lead == len || json[lead] != '{')
        return FAIL(&p, "st-header-start",
                    mode == ST_SCHEMA
                        ? "a schema must be a JSON object"
                        : "the header does not start with '{' (this is not a "
                          "safetensors file, or its header is damaged)");
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return json_error(&p, &err);
    surg_status st = parse_object(&p, root, data_len, out);
    json_decref(root);
    return st;
}
