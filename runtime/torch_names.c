/* torch_names.c: a torch.save file's pickle, once loaded (torch.c), made
 * tensors: its dicts, lists and tuples flatten to names joined with ".";
 * each tensor's view (offset, size, stride) is checked against its storage;
 * names for one and the same view are a tie. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/diag.h"
#include "support/strsort.h"
#include "runtime/torch_state.h"
#include "support/tensor_name.h"
#include "support/utf8.h"

enum { MAX_DEPTH = 100 }; /* containers inside one another */

/* ---- flattening ---------------------------------------------------------- */

static surg_status walk(pt_state *o, const pk_value *v, int depth);

/* Containers reached again through the memo are walked again, so a small
 * pickle could name a great many values, or make long names many times:
 * the values visited are bounded by the pickle's size, and so are the
 * bytes of names built and kept (PK_MEMORY_RATIO times it). */
static bool visit(pt_state *o, int depth)
{
    if (depth > MAX_DEPTH || ++o->visits > o->pickle_len + 4096) {
        pt_error(o, "pt-pickle-shape",
                 depth > MAX_DEPTH
                     ? "containers nest more than %d deep at \"%s\" (or hold themselves)"
                     : "the pickle's containers repeat one another more than its size "
                       "allows (%d deep, at \"%s\"): refused",
                 depth > MAX_DEPTH ? MAX_DEPTH : depth, o->name.data ? o->name.data : "");
        return false;
    }
    return true;
}

static bool spend_name(pt_state *o, size_t n)
{
    uint64_t budget = (uint64_t)o->pickle_len * PK_MEMORY_RATIO + PK_MEMORY_BASE;
    if ((o->name_bytes += n) <= budget)
        return true;
    pt_error(o, "pt-pickle-shape",
             "the pickle's names would take more than %llu bytes (its containers repeat one "
             "another, or hold very long keys): refused",
             (unsigned long long)budget);
    return false;
}

/* Whether a tensor is anywhere inside v (within the same bounds). */
static int holds_tensor(pt_state *o, const pk_value *v, int depth)
{
    if (!visit(o, depth))
        return -1;
    if (v->kind == PK_TENSOR)
        return 1;
    if (v->kind != PK_DICT && v->kind != PK_LIST && v->kind != PK_TUPLE && v->kind != PK_SET)
        return 0;
    for (size_t i = 0; i < v->u.seq.n; i++) {
        int r = holds_tensor(o, v->u.seq.v[i], depth + 1);
        if (r)
            return r;
    }
    return 0;
}

static surg_status add_item(pt_state *o, const pk_tensor *t)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        pt_item *v = realloc(o->items, cap * sizeof *v);
        if (!v)
            return dg_nomem(o->sink, o->path);
        o->items = v;
        o->cap = cap;
    }
    if (!spend_name(o, o->name.len + 1))
        return SURG_EINVALID;
    char *name = ar_strndup(o->keep, o->name.data ? o->name.data : "", o->name.len);
    if (!name)
        return dg_nomem(o->sink, o->path);
    o->items[o->n] = (pt_item){.name = name, .t = t, .order = o->n};
    o->n++;
    return SURG_OK;
}

/* The JSON text of a value the reader keeps (None, a bool, an int, a
 * finite float, a UTF-8 string without NUL) into b; false for any other. */
static bool value_text(const pk_value *v, buf *b)
{
    switch (v->kind) {
    case PK_NONE:
        buf_puts(b, "null");
        return true;
    case PK_BOOL:
        buf_puts(b, v->u.b ? "true" : "false");
        return true;
    case PK_INT:
        buf_printf(b, "%lld", (long long)v->u.i);
        return true;
    case PK_FLOAT:
        if (!isfinite(v->u.f))
            return false;
        buf_double(b, v->u.f);
        return true;
    case PK_STR: {
        if (memchr(v->u.s.p, 0, v->u.s.len) ||
            !utf8_valid((const unsigned char *)v->u.s.p, v->u.s.len, NULL))
            return false;
        char *s = malloc(v->u.s.len + 1);
        if (s) {
            memcpy(s, v->u.s.p, v->u.s.len);
            s[v->u.s.len] = '\0';
        } else {
            b->failed = true;
            return true;
        }
        buf_json_string(b, s);
        free(s);
        return true;
    }
    default:
        return false;
    }
}

/* A value at the current name kept in o->values, while they fit
 * (torch.h); past the bounds none is kept. */
static surg_status keep_value(pt_state *o, const pk_value *v)
{
    const char *path = o->name.data ? o->name.data : "";
    if (o->values_dropped || !*path || !utf8_valid((const unsigned char *)path, o->name.len, NULL))
        return SURG_OK;
    buf text;
    buf_init(&text);
    if (!value_text(v, &text)) {
        buf_free(&text);
        return SURG_OK;
    }
    if (text.failed) {
        buf_free(&text);
        return dg_nomem(o->sink, o->path);
    }
    o->value_bytes += text.len;
    o->path_bytes += o->name.len;
    if (o->value_bytes > PT_MAX_VALUE_BYTES || o->path_bytes > PT_MAX_VALUE_PATHS) {
        o->values_dropped = true;
        buf_free(&o->values);
        buf_free(&text);
        return SURG_OK;
    }
    buf_puts(&o->values, o->n_values++ ? ", " : "");
    buf_json_string(&o->values, path);
    buf_puts(&o->values, ": ");
    buf_json_string(&o->values, text.data);
    buf_free(&text);
    return o->values.failed ? dg_nomem(o->sink, o->path) : SURG_OK;
}

surg_status pt_values_meta(pt_state *o, fmt_table *out)
{
    if (o->values_dropped || !o->n_values)
        return SURG_OK;
    buf v;
    buf_init(&v);
    buf_putc(&v, '{');
    buf_append(&v, o->values.data, o->values.len);
    buf_putc(&v, '}');
    char *value = v.failed ? NULL : ar_strdup(o->keep, v.data);
    buf_free(&v);
    out->h[0].meta = malloc(sizeof *out->h[0].meta);
    if (!value || !out->h[0].meta)
        return dg_nomem(o->sink, o->path);
    out->h[0].meta[out->h[0].n_meta++] = (surg_meta_entry){PT_VALUES_KEY, value};
    return SURG_OK;
}

/* A value that is not a tensor (v NULL: one under a key that makes no
 * name): noted, and kept if it is a value the reader keeps. */
static surg_status skip(pt_state *o, const pk_value *v)
{
    if (v) {
        surg_status st = keep_value(o, v);
        if (st)
            return st;
    }
    if (o->n_skipped < PT_MAX_SHOWN) {
        o->skipped[o->n_skipped] = strdup(o->name.data ? o->name.data : "");
        if (!o->skipped[o->n_skipped])
            return dg_nomem(o->sink, o->path);
    }
    o->n_skipped++;
    return SURG_OK;
}

/* The child's name segment: a string key as it is, an int in decimal.
 * 1: added; 0: a key of another kind (no name can be made); -1: failed. */
static int segment(pt_state *o, const pk_value *key, size_t index)
{
    size_t before = o->name.len;
    if (o->name.len)
        buf_putc(&o->name, '.');
    if (!key) {
        buf_printf(&o->name, "%zu", index);
    } else if (key->kind == PK_INT) {
        buf_printf(&o->name, "%lld", (long long)key->u.i);
    } else if (key->kind == PK_STR && !memchr(key->u.s.p, 0, key->u.s.len)) {
        buf_append(&o->name, key->u.s.p, key->u.s.len);
    } else {
        buf_printf(&o->name, "<%s>", pk_kind_name(key->kind));
        return 0;
    }
    if (o->name.failed) {
        dg_nomem(o->sink, o->path);
        return -1;
    }
    return spend_name(o, o->name.len - before) ? 1 : -1;
}

/* A value under a key that makes no name (a float, a tuple, None): skipped
 * with the other values that are not tensors, unless a tensor is inside. */
static surg_status unnamed(pt_state *o, const pk_value *key, const pk_value *v, size_t parent,
                           int depth)
{
    int held = holds_tensor(o, v, depth);
    if (held < 0)
        return SURG_EINVALID;
    if (!held)
        return skip(o, NULL);
    pt_error(o, "pt-name",
             "a dict key under \"%.*s\" is %s: only strings (without NUL) and ints make tensor "
             "names, and a tensor is under it",
             (int)parent, o->name.data ? o->name.data : "", pk_kind_name(key->kind));
    return SURG_EINVALID;
}

static surg_status walk_children(pt_state *o, const pk_value *v, int depth)
{
    bool dict = v->kind == PK_DICT;
    size_t step = dict ? 2 : 1, len = o->name.len;
    surg_status st = SURG_OK;
    for (size_t i = 0; i < v->u.seq.n && !st; i += step) {
        const pk_value *child = v->u.seq.v[i + step - 1];
        int named = segment(o, dict ? v->u.seq.v[i] : NULL, i);
        st = named > 0   ? walk(o, child, depth + 1)
             : named == 0 ? unnamed(o, v->u.seq.v[i], child, len, depth + 1)
                          : SURG_EINVALID;
        o->name.len = len;
        if (o->name.data)
            o->name.data[len] = '\0';
    }
    return st;
}

static surg_status walk(pt_state *o, const pk_value *v, int depth)
{
    if (!visit(o, depth))
        return SURG_EINVALID;
    switch (v->kind) {
    case PK_DICT:
    case PK_LIST:
    case PK_TUPLE:
        return walk_children(o, v, depth);
    case PK_TENSOR:
        return add_item(o, &v->u.tensor);
    case PK_SET: {
        int held = holds_tensor(o, v, depth);
        if (held > 0)
            pt_error(o, "pt-name", "a set at \"%s\" holds a tensor: a set has no order to name "
                                   "its members by",
                     o->name.data ? o->name.data : "");
        return held ? SURG_EINVALID : skip(o, NULL);
    }
    default:
        return skip(o, v);
    }
}

surg_status pt_flatten(pt_state *o, const pk_value *root)
{
    if (root->kind == PK_TENSOR) {
        const char *name = pt_stem(o);
        if (!name)
            return dg_nomem(o->sink, o->path);
        buf_puts(&o->name, name);
    }
    surg_status st = walk(o, root, 0);
    if (!st && o->n_skipped) {
        buf b;
        buf_init(&b);
        for (size_t i = 0; i < o->n_skipped && i < PT_MAX_SHOWN; i++)
            buf_printf(&b, "%s\"%s\"", i ? ", " : "", o->skipped[i]);
        if (o->n_skipped > PT_MAX_SHOWN)
            buf_printf(&b, " and %zu more", o->n_skipped - PT_MAX_SHOWN);
        if (b.failed)
            st = dg_nomem(o->sink, o->path);
        else
            dg_file(o->sink, SURG_NOTE, "pt-not-tensor", o->path,
                    "skipped %zu value%s that %s not a tensor (numbers, strings, None, ...; "
                    "surg carries tensors only): %s%s",
                    o->n_skipped, o->n_skipped > 1 ? "s" : "", o->n_skipped > 1 ? "are" : "is",
                    b.data,
                    o->values_dropped ? "; too many to keep (over 64 KiB, or paths over 1 MiB), "
                                        "value() reads none"
                    : o->n_values ? "; ints, floats, bools, strings and None are kept in the "
                                    "metadata \"" PT_VALUES_KEY "\" for value()"
                                  : "");
        buf_free(&b);
    }
    return st;
}

/* ---- views -------------------------------------------------------------- */

static const char *dims_text(char *out, size_t size, uint32_t rank, const uint64_t *d)
{
    size_t k = (size_t)snprintf(out, size, "[");
    for (uint32_t i = 0; i < rank && k < size; i++)
        k += (size_t)snprintf(out + k, size - k, "%s%llu", i ? ", " : "",
                              (unsigned long long)d[i]);
    if (k < size)
        snprintf(out + k, size - k, "]");
    return out;
}

/* The byte just past the last element the view reaches, or false on
 * overflow. */
bool pt_view_end(const pk_tensor *t, unsigned esize, uint64_t *end)
{
    uint64_t last = t->offset;
    for (uint32_t d = 0; d < t->rank; d++) {
        uint64_t reach = t->size[d] - 1;
        if (t->stride[d] && reach > (UINT64_MAX - last) / t->stride[d])
            return false;
        last += reach * t->stride[d];
    }
    if (last >= UINT64_MAX / esize)
        return false;
    *end = (last + 1) * esize;
    return true;
}

static bool contiguous(const pk_tensor *t)
{
    uint64_t want = 1;
    for (uint32_t d = t->rank; d-- > 0;) {
        if (t->size[d] != 1 && t->stride[d] != want)
            return false;
        want *= t->size[d];
    }
    return true;
}

void pt_check_view(pt_state *o, pt_item *it)
{
    const pk_tensor *t = it->t;
    uint64_t sbytes = 0, end = 0;
    bool partial = false;
    unsigned esize = surg_dtype_bits(t->dtype) / 8;
    it->storage = pt_storage_entry(o, it, &sbytes);
    if (!it->storage)
        return;
    if (!st_tensor_size(t->dtype, t->rank, t->size, &it->nelems, &it->nbytes, &partial)) {
        pt_error(o, "pt-view", "tensor \"%s\": its size overflows", it->name);
        return;
    }
    it->in_place = true;
    if (!it->nelems)
        return; /* no bytes: anywhere will do */
    char a[128], b[128];
    if (!pt_view_end(t, esize, &end) || end > sbytes) {
        pt_error(o, "pt-view",
                 "tensor \"%s\": its view (offset %llu, size %s, stride %s) reaches past the "
                 "%llu bytes of its storage \"%s\"",
                 it->name, (unsigned long long)t->offset, dims_text(a, sizeof a, t->rank, t->size),
                 dims_text(b, sizeof b, t->rank, t->stride), (unsigned long long)sbytes,
                 it->storage->name);
        return;
    }
    it->at = t->offset * esize;
    it->in_place = contiguous(t) && !(o->big_endian && esize > 1);
}

/* ---- names and ties ------------------------------------------------------ */

typedef struct named {
    const char *name; /* first: the key ss_sort sorts by */
    size_t i;
} named;

/* The items in name order. */
static surg_status sort_items(pt_state *o)
{
    named *v = malloc((o->n ? o->n : 1) * sizeof *v);
    pt_item *items = malloc((o->n ? o->n : 1) * sizeof *items);
    surg_status st = v && items ? SURG_OK : dg_nomem(o->sink, o->path);
    for (size_t i = 0; !st && i < o->n; i++)
        v[i] = (named){o->items[i].name, i};
    if (!st && ss_sort(v, o->n, sizeof *v) != 0)
        st = dg_nomem(o->sink, o->path);
    for (size_t i = 0; !st && i < o->n; i++)
        items[i] = o->items[v[i].i];
    free(v);
    if (st) {
        free(items);
        return st;
    }
    free(o->items);
    o->items = items;
    o->cap = o->n;
    return SURG_OK;
}

surg_status pt_check_names(pt_state *o)
{
    surg_status st = sort_items(o);
    if (st)
        return st;
    for (size_t i = 0; i < o->n; i++) {
        const char *name = o->items[i].name;
        const char *why = tn_problem(name, strlen(name));
        if (i && strcmp(name, o->items[i - 1].name) == 0)
            pt_error(o, "pt-name", "two values of the pickle flatten to the name \"%s\"", name);
        else if (why)
            pt_error(o, "pt-name", "the pickle names a tensor \"%s\", which cannot be a tensor "
                     "name: %s", name, why);
    }
    return SURG_OK;
}

static int cmp_u64(uint64_t a, uint64_t b) { return a < b ? -1 : a > b; }

/* Items ordered by their view (storage, dtype, offset, size, stride), then
 * by their order in the pickle: equal views end up together, first-seen
 * first. */
static int by_view(const void *pa, const void *pb)
{
    const pt_item *x = *(const pt_item *const *)pa, *y = *(const pt_item *const *)pb;
    const pk_tensor *a = x->t, *b = y->t;
    int c = cmp_u64((uintptr_t)x->storage, (uintptr_t)y->storage);
    c = c ? c : cmp_u64(a->dtype, b->dtype);
    c = c ? c : cmp_u64(a->offset, b->offset);
    c = c ? c : cmp_u64(a->rank, b->rank);
    for (uint32_t d = 0; !c && d < a->rank; d++)
        c = cmp_u64(a->size[d], b->size[d]);
    for (uint32_t d = 0; !c && d < a->rank; d++)
        c = cmp_u64(a->stride[d], b->stride[d]);
    return c ? c : cmp_u64(x->order, y->order);
}

static bool same_view(const pt_item *x, const pt_item *y)
{
    const pk_tensor *a = x->t, *b = y->t;
    if (x->storage != y->storage || a->dtype != b->dtype || a->offset != b->offset ||
        a->rank != b->rank)
        return false;
    for (uint32_t d = 0; d < a->rank; d++)
        if (a->size[d] != b->size[d] || a->stride[d] != b->stride[d])
            return false;
    return true;
}

/* Every item whose view another item seen before it has is tied to that
 * one; the ties go to the metadata as "surg.ties", which the compiler
 * reads as tied names. */
surg_status pt_find_ties(pt_state *o, size_t *n_ties)
{
    *n_ties = 0;
    pt_item **v = malloc((o->n ? o->n : 1) * sizeof *v);
    if (!v)
        return dg_nomem(o->sink, o->path);
    for (size_t i = 0; i < o->n; i++)
        v[i] = &o->items[i];
    qsort(v, o->n, sizeof *v, by_view);
    for (size_t i = 1; i < o->n; i++)
        if (same_view(v[i], v[i - 1])) {
            v[i]->tied_to = v[i - 1]->tied_to ? v[i - 1]->tied_to : v[i - 1]->name;
            ++*n_ties;
        }
    free(v);
    return SURG_OK;
}

/* The tied items, in name order, as (alias, stored as) pairs. */
surg_status pt_tie_pairs(pt_state *o, size_t n_ties, fmt_table *out)
{
    out->ties = ar_array(o->keep, n_ties ? n_ties : 1, sizeof *out->ties);
    if (!out->ties)
        return dg_nomem(o->sink, o->path);
    for (size_t i = 0; i < o->n; i++)
        if (o->items[i].tied_to)
            out->ties[out->n_ties++] = (surg_meta_entry){o->items[i].name, o->items[i].tied_to};
    return SURG_OK;
}
