/* msgpack_write.c: the .msgpack writer (see msgpack_write.h). The names,
 * sorted key by key, are a preorder walk of the tree: each name opens the
 * maps its path does not share with the name before it, then its tensor.
 * The bytes that are not data (map headers, keys, each ext's header and
 * [shape, dtype] head) are made once here, into one buffer, with where
 * each piece of data falls between them: a tensor's bytes, or one chunk of
 * an array Flax writes in chunks. A chunked tensor is written whole, its
 * bytes one after another from where its first chunk goes; once every
 * tensor is written its chunks are moved apart, last first, into their
 * places, and the bytes between them written again. */
#include "runtime/msgpack_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/diag.h"
#include "support/json.h"
#include "support/strsort.h"
#include "support/tensor_name.h"
#include "runtime/format.h"
#include "runtime/msgpack.h"

/* A piece of data: a tensor, or one of its chunks. */
typedef struct mpw_gap {
    size_t skel_at; /* skeleton bytes before it */
    size_t tensor;
    uint64_t len;
    uint64_t at;    /* its place in the file */
    uint64_t from;  /* where it is written: its tensor's bytes are one run */
} mpw_gap;

typedef struct mpw_layout {
    arena ar; /* the leaves */
    buf skel; /* every byte that is not a tensor's, in file order */
    mpw_gap *gap;
    size_t n_gap, cap_gap;
} mpw_layout;


/* ---- encodings, as msgpack-python picks them ------------------------------ */

static void put_be(buf *b, unsigned char tag, uint64_t v, unsigned n)
{
    unsigned char p[9] = {tag};
    for (unsigned i = 0; i < n; i++)
        p[1 + i] = (unsigned char)(v >> (8 * (n - 1 - i)));
    buf_append(b, p, 1 + n);
}

static void put_uint(buf *b, uint64_t v)
{
    if (v <= 0x7f)
        buf_putc(b, (char)v);
    else if (v <= 0xff)
        put_be(b, 0xcc, v, 1);
    else if (v <= 0xffff)
        put_be(b, 0xcd, v, 2);
    else if (v <= 0xffffffff)
        put_be(b, 0xce, v, 4);
    else
        put_be(b, 0xcf, v, 8);
}

/* The head of a str, map or array (fix form, then 8-, 16-, 32-bit). */
static void put_count(buf *b, uint64_t n, unsigned char fix, unsigned fix_max,
                      unsigned char c8, unsigned char c16)
{
    if (n <= fix_max)
        buf_putc(b, (char)(fix | n));
    else if (c8 && n <= 0xff)
        put_be(b, c8, n, 1);
    else if (n <= 0xffff)
        put_be(b, c16, n, 2);
    else
        put_be(b, (unsigned char)(c16 + 1), n, 4);
}

static void put_str(buf *b, const char *s, size_t len)
{
    put_count(b, len, 0xa0, 31, 0xd9, 0xda);
    buf_append(b, s, len);
}

static void put_map(buf *b, uint64_t n) { put_count(b, n, 0x80, 15, 0, 0xde); }
static void put_array(buf *b, uint64_t n) { put_count(b, n, 0x90, 15, 0, 0xdc); }

static void put_bin_head(buf *b, uint64_t n)
{
    if (n <= 0xff)
        put_be(b, 0xc4, n, 1);
    else if (n <= 0xffff)
        put_be(b, 0xc5, n, 2);
    else
        put_be(b, 0xc6, n, 4);
}

/* ext 1 of an array (ext 3 of a NumPy scalar), all but its data: the ext
 * head, then [shape, dtype, bin head. */
static void put_array_head(buf *b, int ext, surg_dtype dtype, uint32_t rank,
                           const uint64_t *shape, uint64_t nbytes)
{
    buf inner;
    buf_init(&inner);
    buf_putc(&inner, (char)0x93);
    put_array(&inner, rank);
    for (uint32_t d = 0; d < rank; d++)
        put_uint(&inner, shape[d]);
    const char *dt = mp_dtype_name(dtype);
    put_str(&inner, dt, strlen(dt));
    put_bin_head(&inner, nbytes);
    uint64_t len = inner.len + nbytes;
    switch (len) {
    case 1: buf_putc(b, (char)0xd4); break;
    case 2: buf_putc(b, (char)0xd5); break;
    case 4: buf_putc(b, (char)0xd6); break;
    case 8: buf_putc(b, (char)0xd7); break;
    case 16: buf_putc(b, (char)0xd8); break;
    default:
        if (len <= 0xff)
            put_be(b, 0xc7, len, 1);
        else if (len <= 0xffff)
            put_be(b, 0xc8, len, 2);
        else
            put_be(b, 0xc9, len, 4);
    }
    buf_putc(b, (char)ext);
    buf_append(b, inner.data, inner.len);
    if (inner.failed)
        b->failed = true;
    buf_free(&inner);
}

/* ---- the tree --------------------------------------------------------------- */

#define NEW_KEY UINT64_MAX

/* An item of the tree: a tensor (idx), or a value (raw, its msgpack bytes).
 * pos: the place of its path in the input's tree (NEW_KEY: none); scalar:
 * a tensor written as a NumPy scalar (ext 3). */
typedef struct keyed {
    const char *name;
    size_t idx;
    const unsigned char *raw;
    size_t raw_len;
    uint64_t pos;
    bool scalar;
} keyed;

/* A path of the tree kept: a tensor's ("" or "s") or a value's. */
typedef struct kept_path {
    const char *path; /* first: the key ss_sort sorts by */
    const char *value;
    uint64_t pos;
} kept_path;

/* Key by key ("/" sorts before every byte, so a map's keys come out in
 * byte order whatever follows them); at one name a tensor first, then the
 * values in their input order. */
static int tree_order(const void *pa, const void *pb)
{
    const keyed *ka = pa, *kb = pb;
    const unsigned char *a = (const unsigned char *)ka->name;
    const unsigned char *b = (const unsigned char *)kb->name;
    for (;; a++, b++) {
        unsigned x = *a == '/' ? 1 : *a ? *a + 1u : 0, y = *b == '/' ? 1 : *b ? *b + 1u : 0;
        if (x != y)
            return x < y ? -1 : 1;
        if (!x)
            break;
    }
    if (!ka->raw != !kb->raw)
        return ka->raw ? 1 : -1;
    return ka->pos < kb->pos ? -1 : ka->pos > kb->pos;
}

static bool mp_holds(surg_dtype dt) { return mp_dtype_name(dt) != NULL; }

static surg_status check_tensors(surg_sink *sink, const char *out_path, const stw_output *out)
{
    return stw_refuse_dtypes(sink, "mp-dtype", out_path, out, mp_holds,
                             "NumPy has no name for");
}

static bool add_gap(mpw_layout *z, size_t tensor, uint64_t len, uint64_t from)
{
    if (z->n_gap == z->cap_gap) {
        size_t cap = z->cap_gap ? z->cap_gap * 2 : 16;
        mpw_gap *g = realloc(z->gap, cap * sizeof *g);
        if (!g)
            return false;
        z->gap = g;
        z->cap_gap = cap;
    }
    z->gap[z->n_gap++] = (mpw_gap){z->skel.len, tensor, len, 0, from};
    return true;
}

static void put_index(buf *b, uint64_t i)
{
    char key[24];
    int n = snprintf(key, sizeof key, "%llu", (unsigned long long)i);
    put_str(b, key, (size_t)n);
}

/* Tensor i: ext 1 (ext 3 for a scalar), or over chunk_bytes Flax's map of
 * chunks of chunk_bytes / itemsize elements, each a 1-D ext 1. */
static bool put_tensor(mpw_layout *z, const surg_tensor_info *t, size_t i, uint64_t chunk_bytes,
                       bool scalar)
{
    if (t->nbytes <= chunk_bytes) {
        put_array_head(&z->skel, scalar ? 3 : 1, t->dtype, t->rank, t->shape, t->nbytes);
        return add_gap(z, i, t->nbytes, 0);
    }
    static const char flag[] = "__msgpack_chunked_array__";
    uint64_t esize = surg_dtype_bits(t->dtype) / 8;
    uint64_t per = chunk_bytes / esize ? chunk_bytes / esize : 1;
    uint64_t n = (t->nelems + per - 1) / per;
    put_map(&z->skel, 3);
    put_str(&z->skel, flag, sizeof flag - 1);
    buf_putc(&z->skel, (char)0xc3);
    put_str(&z->skel, "shape", 5);
    put_map(&z->skel, t->rank);
    for (uint32_t d = 0; d < t->rank; d++) {
        put_index(&z->skel, d);
        put_uint(&z->skel, t->shape[d]);
    }
    put_str(&z->skel, "chunks", 6);
    put_map(&z->skel, n);
    for (uint64_t c = 0; c < n; c++) {
        uint64_t elems = c + 1 < n ? per : t->nelems - c * per;
        put_index(&z->skel, c);
        put_array_head(&z->skel, 1, t->dtype, 1, &elems, elems * esize);
        if (!add_gap(z, i, elems * esize, c * per * esize))
            return false;
    }
    return true;
}

/* The segments of a and b that are the same, whole. */
static size_t shared_depth(const char *a, const char *b)
{
    size_t d = 0;
    for (size_t i = 0;; i++) {
        if (a[i] != b[i] || !a[i])
            return d;
        d += a[i] == '/';
    }
}

typedef struct mpw_node {
    const char *key; /* NULL: the top map */
    size_t len;
    const keyed *item; /* NULL: a map */
    size_t parent;
    uint64_t count;  /* a map's keys */
    uint64_t pos;    /* the first place in the input of its paths, or NEW_KEY */
    size_t kids;     /* a map's keys, ordered, from here in the kids array */
    bool numeric;    /* a map whose keys are all indices: "0", "1", ... */
} mpw_node;

/* The nodes of the tree the names make (in tree order), in preorder. */
static surg_status make_nodes(surg_sink *sink, const char *out_path, const keyed *items,
                              size_t n_items, mpw_node **out, size_t *n_out)
{
    size_t n_nodes = 1, cap = 16;
    mpw_node *nodes = malloc(cap * sizeof *nodes);
    size_t open_cap = 16;
    size_t *open = malloc(open_cap * sizeof *open); /* the maps on the path, by depth */
    if (!nodes || !open) {
        free(nodes);
        free(open);
        return dg_nomem(sink, out_path);
    }
    nodes[0] = (mpw_node){.parent = SIZE_MAX, .pos = NEW_KEY};
    open[0] = 0;
    surg_status st = SURG_OK;
    const char *prev = NULL;
    for (size_t i = 0; !st && i < n_items; i++) {
        const char *name = items[i].name;
        size_t plen = prev ? strlen(prev) : 0;
        if (prev && strncmp(prev, name, plen) == 0 && name[plen] == '/') {
            dg_file(sink, SURG_ERROR, "mp-tree", out_path,
                    "tensor \"%s\" and tensor \"%s\" cannot both be in a tree: \"%s\" would "
                    "be an array and a map",
                    prev, name, prev);
            st = SURG_EINVALID;
            break;
        }
        size_t depth = prev ? shared_depth(prev, name) : 0; /* maps still open */
        const char *seg = name;
        for (size_t d = 0; d < depth; d++)
            seg = strchr(seg, '/') + 1;
        for (;;) {
            const char *slash = strchr(seg, '/');
            size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
            if (n_nodes == cap) {
                mpw_node *x = realloc(nodes, (cap *= 2) * sizeof *x);
                if (!x) {
                    st = dg_nomem(sink, out_path);
                    break;
                }
                nodes = x;
            }
            nodes[open[depth]].count++;
            nodes[n_nodes] = (mpw_node){seg, len, slash ? NULL : &items[i], open[depth], 0,
                                        slash ? NEW_KEY : items[i].pos, 0, false};
            if (!slash) {
                n_nodes++;
                break;
            }
            if (depth + 2 > open_cap) {
                size_t *x = realloc(open, (open_cap *= 2) * sizeof *x);
                if (!x) {
                    st = dg_nomem(sink, out_path);
                    break;
                }
                open = x;
            }
            open[++depth] = n_nodes++;
            seg = slash + 1;
        }
        prev = name;
    }
    free(open);
    if (st) {
        free(nodes);
        return st;
    }
    *out = nodes;
    *n_out = n_nodes;
    return SURG_OK;
}

/* "0", or digits not starting with 0. */
static bool is_index(const char *k, size_t len)
{
    if (!len || (k[0] == '0' && len > 1))
        return false;
    for (size_t i = 0; i < len; i++)
        if (k[i] < '0' || k[i] > '9')
            return false;
    return true;
}

/* A key of a map, being put in order. */
typedef struct kref {
    const char *key;
    size_t len;
    uint64_t pos;
    size_t node;
} kref;

/* The order Flax's state dicts give new keys: a list's indices in number
 * order, a dict's keys in byte order (as JAX sorts them). */
static int key_cmp(const kref *a, const kref *b, bool numeric)
{
    if (numeric && a->len != b->len)
        return a->len < b->len ? -1 : 1;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->key, b->key, n);
    return c ? c : a->len < b->len ? -1 : a->len > b->len;
}

static int by_pos(const void *pa, const void *pb)
{
    const kref *a = pa, *b = pb;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int by_number(const void *pa, const void *pb) { return key_cmp(pa, pb, true); }

/* Each map's keys in order: those the input had in its order (by where
 * their paths first were), and each new key before the first of them
 * that sorts after it, the new keys in Flax's order among themselves. */
static bool order_keys(mpw_node *nodes, size_t n_nodes, size_t *kids)
{
    kref *old = malloc((n_nodes ? n_nodes : 1) * sizeof *old);
    kref *new = malloc((n_nodes ? n_nodes : 1) * sizeof *new);
    size_t *fill = malloc((n_nodes ? n_nodes : 1) * sizeof *fill);
    bool ok = old && new && fill;
    for (size_t k = n_nodes; ok && k-- > 1;) { /* a map's place: its first path's */
        mpw_node *p = &nodes[nodes[k].parent];
        if (nodes[k].pos < p->pos)
            p->pos = nodes[k].pos;
    }
    size_t at = 0;
    for (size_t k = 0; ok && k < n_nodes; k++) {
        nodes[k].kids = fill[k] = at;
        nodes[k].numeric = !nodes[k].item;
        at += nodes[k].item ? 0 : (size_t)nodes[k].count;
    }
    for (size_t k = 1; ok && k < n_nodes; k++) { /* in tree (byte) order */
        mpw_node *p = &nodes[nodes[k].parent];
        kids[fill[nodes[k].parent]++] = k;
        p->numeric = p->numeric && is_index(nodes[k].key, nodes[k].len);
    }
    for (size_t k = 0; ok && k < n_nodes; k++) {
        const mpw_node *m = &nodes[k];
        size_t n = m->item ? 0 : (size_t)m->count, *c = kids + m->kids;
        size_t n_old = 0, n_new = 0;
        if (n < 2)
            continue;
        for (size_t i = 0; i < n; i++) {
            const mpw_node *x = &nodes[c[i]];
            kref r = {x->key, x->len, x->pos, c[i]};
            if (x->pos != NEW_KEY)
                old[n_old++] = r;
            else
                new[n_new++] = r;
        }
        qsort(old, n_old, sizeof *old, by_pos);
        if (m->numeric)
            qsort(new, n_new, sizeof *new, by_number);
        for (size_t i = 0, j = 0, w = 0; i < n_old || j < n_new;)
            if (j < n_new && (i == n_old || key_cmp(&new[j], &old[i], m->numeric) < 0))
                c[w++] = new[j++].node;
            else
                c[w++] = old[i++].node;
    }
    free(old);
    free(new);
    free(fill);
    return ok;
}

/* The skeleton, from the tree the items make, each map's keys in order;
 * the tensors of f in the order they come. */
static surg_status build(surg_sink *sink, const char *out_path, const stw_output *out,
                         const keyed *items, size_t n_items, mpw_layout *z, stw_file *f)
{
    mpw_node *nodes = NULL;
    size_t n_nodes = 0;
    surg_status st = make_nodes(sink, out_path, items, n_items, &nodes, &n_nodes);
    if (st)
        return st;
    size_t *kids = malloc(n_nodes * sizeof *kids), *stack = malloc(n_nodes * sizeof *stack);
    size_t *next = malloc(n_nodes * sizeof *next);
    if (!kids || !stack || !next || !order_keys(nodes, n_nodes, kids))
        st = dg_nomem(sink, out_path);
    uint64_t chunk_bytes = out->chunk_bytes ? out->chunk_bytes : MP_MAX_CHUNK_BYTES;
    size_t depth = 0;
    if (!st) {
        put_map(&z->skel, nodes[0].count);
        stack[depth] = 0;
        next[depth++] = 0;
    }
    while (!st && depth) {
        const mpw_node *m = &nodes[stack[depth - 1]];
        if (next[depth - 1] == m->count) {
            depth--;
            continue;
        }
        const mpw_node *x = &nodes[kids[m->kids + next[depth - 1]++]];
        put_str(&z->skel, x->key, x->len);
        if (!x->item) {
            put_map(&z->skel, x->count);
            stack[depth] = (size_t)(x - nodes);
            next[depth++] = 0;
        } else if (x->item->raw) {
            buf_append(&z->skel, x->item->raw, x->item->raw_len);
        } else {
            f->idx[f->n++] = x->item->idx;
            if (!put_tensor(z, &out->tensors[x->item->idx], x->item->idx, chunk_bytes,
                            x->item->scalar))
                st = dg_nomem(sink, out_path);
        }
    }
    if (!st && z->skel.failed)
        st = dg_nomem(sink, out_path);
    free(kids);
    free(stack);
    free(next);
    free(nodes);
    return st;
}

/* The tree kept in MP_TREE_KEY (msgpack.h): its paths into *paths (in the
 * order given), its values added to items[n..] (the count returned). A
 * tree that is not what the reader writes is not used, with a warning. */
static size_t read_tree(surg_sink *sink, const char *out_path, const char *v, arena *ar,
                        keyed *items, size_t n, kept_path **paths, size_t *n_paths)
{
    *paths = NULL;
    *n_paths = 0;
    if (!v)
        return n;
    mp_tree_entry *e;
    size_t n_e, k = n;
    const char *why = mp_tree_read(v, ar, &e, &n_e);
    if (!why && n_e && !(*paths = malloc(n_e * sizeof **paths)))
        why = "out of memory";
    for (size_t i = 0; !why && i < n_e; i++) {
        if (tn_format_problem(e[i].path, strlen(e[i].path), TN_MSGPACK))
            why = "a path is not one a .msgpack can hold";
        (*paths)[i] = (kept_path){e[i].path, e[i].mark, i};
        if (e[i].raw)
            items[k++] = (keyed){e[i].path, SIZE_MAX, e[i].raw, e[i].len, i, false};
    }
    *n_paths = why ? 0 : n_e;
    free(e);
    if (!why && ss_sort(*paths, *n_paths, sizeof **paths) != 0)
        why = "out of memory";
    if (!why)
        return k;
    dg_file(sink, SURG_WARNING, "mp-tree-metadata", out_path,
            "the metadata \"" MP_TREE_KEY "\" is not a tree a .msgpack can keep (%s): its "
            "order and values are not used",
            why);
    free(*paths);
    *paths = NULL;
    *n_paths = 0;
    return n;
}

/* A value whose path is a tensor's, or is inside one's or holds one, gives
 * way to the tensor: the recipe made it; of two values so, the one first
 * in the input stays. Items are in tree order. */
static size_t drop_clashing_values(surg_sink *sink, const char *out_path, keyed *items,
                                   size_t n)
{
    size_t k = 0, dropped = 0;
    const char *first = NULL;
    for (size_t i = 0; i < n; i++) {
        keyed *last = k ? &items[k - 1] : NULL;
        if (last && mp_path_holds(last->name, items[i].name) && (items[i].raw || last->raw)) {
            bool keep_new = last->raw && (!items[i].raw || items[i].pos < last->pos);
            const keyed *gone = keep_new ? last : &items[i];
            first = first ? first : gone->name;
            dropped++;
            if (keep_new)
                *last = items[i];
            continue;
        }
        items[k++] = items[i];
    }
    if (dropped)
        dg_file(sink, SURG_WARNING, "mp-tree-metadata", out_path,
                "%zu value%s of the metadata \"" MP_TREE_KEY "\" (\"%s\"%s) %s not written: "
                "a tensor of the output, or a value before it, is there",
                dropped, dropped > 1 ? "s" : "", first, dropped > 1 ? ", ..." : "",
                dropped > 1 ? "are" : "is");
    return k;
}

static surg_status mpw_layout_make(surg_sink *sink, const char *out_path, const stw_output *out,
                                   stw_layout *lay)
{
    if (out->max_shard_size) {
        dg_file(sink, SURG_ERROR, "mp-sharded", out_path,
                "a .msgpack is one file: --max-shard-size writes safetensors shards");
        return SURG_EUSAGE;
    }
    surg_status st = check_tensors(sink, out_path, out);
    if (st)
        return st;
    stw_warn_metadata(sink, out_path, out, "mp-metadata",
                      ".msgpack holds a tree of arrays only", MP_TREE_KEY);
    mpw_layout *z = calloc(1, sizeof *z);
    lay->state = z;
    if (!z)
        return dg_nomem(sink, out_path);
    ar_init(&z->ar);
    buf_init(&z->skel);
    st = stw_one_file(lay, sink, out_path);
    const char *tree = stw_meta(out, MP_TREE_KEY);
    size_t room = out->n;
    for (const char *p = tree; p && *p; p++) /* at most one path per colon */
        room += *p == ':';
    keyed *k = st ? NULL : malloc((room ? room : 1) * sizeof *k);
    if (!st && !k)
        st = dg_nomem(sink, out_path);
    if (st)
        return st;
    kept_path *paths;
    size_t n_paths;
    size_t n_items = read_tree(sink, out_path, tree, &z->ar, k, out->n, &paths, &n_paths);
    for (size_t i = 0; i < out->n; i++) {
        const surg_tensor_info *t = &out->tensors[i];
        size_t at = n_paths ? ss_find(paths, n_paths, sizeof *paths, t->name) : (size_t)-1;
        bool scalar = at != (size_t)-1 && !t->rank &&
                      strcmp(paths[at].value, MP_TREE_SCALAR) == 0;
        k[i] = (keyed){t->name, i, NULL, 0, at != (size_t)-1 ? paths[at].pos : NEW_KEY, scalar};
    }
    free(paths);
    qsort(k, n_items, sizeof *k, tree_order);
    n_items = drop_clashing_values(sink, out_path, k, n_items);
    stw_file *f = &lay->files[0];
    st = build(sink, out_path, out, k, n_items, z, f);
    free(k);
    if (st)
        return st;
    uint64_t at = 0;
    size_t from = 0;
    for (size_t i = 0; i < z->n_gap; i++) {
        mpw_gap *g = &z->gap[i];
        at += g->skel_at - from;
        from = g->skel_at;
        g->at = at;
        if (!g->from) /* its tensor's first piece */
            lay->offset[g->tensor] = at;
        lay->file_of[g->tensor] = 0;
        at += g->len;
    }
    for (size_t i = 0; i < z->n_gap; i++)
        z->gap[i].from += lay->offset[z->gap[i].tensor];
    f->size = at + (z->skel.len - from);
    return SURG_OK;
}

/* Every byte that is not data, in its place. */
static surg_status write_skeleton(stw_layout *lay, surg_sink *sink)
{
    mpw_layout *z = lay->state;
    const stw_file *f = &lay->files[0];
    uint64_t at = 0;
    size_t from = 0;
    surg_status st = SURG_OK;
    for (size_t i = 0; !st && i <= z->n_gap; i++) {
        size_t to = i < z->n_gap ? z->gap[i].skel_at : z->skel.len;
        st = of_pwrite(f->of, sink, z->skel.data + from, to - from, at);
        if (i < z->n_gap)
            at = z->gap[i].at + z->gap[i].len;
        from = to;
    }
    return st;
}

static surg_status mpw_layout_open(stw_layout *lay, surg_sink *sink)
{
    return write_skeleton(lay, sink);
}

/* len bytes at `from` moved up to `to` (> from) in the file, the last
 * first, so what is still to move is never overwritten. */
static surg_status move_up(of_file *of, surg_sink *sink, const char *path, uint64_t from,
                           uint64_t to, uint64_t len)
{
    enum { BUF = 1 << 20 };
    unsigned char *b = malloc(BUF);
    if (!b)
        return dg_nomem(sink, path);
    surg_status st = SURG_OK;
    while (len && !st) {
        size_t n = len < BUF ? (size_t)len : BUF;
        len -= n;
        ssize_t got = pread(of_fd(of), b, n, (off_t)(from + len));
        if (got != (ssize_t)n) {
            st = dg_errno(sink, path, "cannot read back the output", got < 0 ? errno : EIO);
            break;
        }
        st = of_pwrite(of, sink, b, n, to + len);
    }
    free(b);
    return st;
}

static surg_status mpw_layout_finish(stw_layout *lay, surg_sink *sink)
{
    mpw_layout *z = lay->state;
    const size_t *same = lay->out->same_as;
    of_file *of = lay->files[0].of;
    surg_status st = SURG_OK;
    bool moved = false;
    for (size_t t = 0; same && !st && t < lay->out->n; t++)
        if (same[t] != SIZE_MAX)
            st = of_copy_at(of, sink, of_fd(of), lay->offset[same[t]],
                            lay->out->tensors[t].nbytes, lay->offset[t]);
    for (size_t i = z->n_gap; !st && i-- > 0;)
        if (z->gap[i].from != z->gap[i].at) {
            st = move_up(of, sink, lay->files[0].path, z->gap[i].from, z->gap[i].at,
                         z->gap[i].len);
            moved = true;
        }
    return !st && moved ? write_skeleton(lay, sink) : st;
}

static void mpw_layout_free(stw_layout *lay)
{
    mpw_layout *z = lay->state;
    if (!z)
        return;
    buf_free(&z->skel);
    ar_free(&z->ar);
    free(z->gap);
    free(z);
    lay->state = NULL;
}

const stw_writer mpw_writer = {
    .make = mpw_layout_make,
    .open = mpw_layout_open,
    .finish = mpw_layout_finish,
    .free = mpw_layout_free,
};
