/* msgpack_write.c: the .msgpack writer (see msgpack_write.h). The names,
 * sorted key by key, are a preorder walk of the tree: each name opens the
 * maps its path does not share with the name before it, then its tensor.
 * The bytes that are not data (map headers, keys, each ext's header and
 * [shape, dtype] head) are made once here, into one buffer, with where
 * each tensor's data falls between them. */
#include "runtime/msgpack_write.h"

#include <stdlib.h>
#include <string.h>

#include "support/diag.h"
#include "runtime/format.h"
#include "runtime/msgpack.h"

typedef struct mpw_node {
    const char *key; /* NULL: the top map */
    size_t len;
    size_t tensor;   /* SIZE_MAX: a map */
    uint64_t count;  /* a map's keys */
} mpw_node;

struct mpw_layout {
    buf skel;        /* every byte that is not a tensor's, in file order */
    size_t *skel_at; /* per tensor in file order: skeleton bytes before its data */
    size_t n;
};

bool mpw_wanted(const char *out_path) { return fmt_output(out_path) == FMT_MSGPACK; }

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

/* ext 1 of `t`, all but its data: the ext head, then [shape, dtype, bin head. */
static void put_array_head(buf *b, const surg_tensor_info *t)
{
    buf inner;
    buf_init(&inner);
    buf_putc(&inner, (char)0x93);
    put_array(&inner, t->rank);
    for (uint32_t d = 0; d < t->rank; d++)
        put_uint(&inner, t->shape[d]);
    const char *dt = mp_dtype_name(t->dtype);
    put_str(&inner, dt, strlen(dt));
    put_bin_head(&inner, t->nbytes);
    uint64_t len = inner.len + t->nbytes;
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
    buf_putc(b, 1);
    buf_append(b, inner.data, inner.len);
    if (inner.failed)
        b->failed = true;
    buf_free(&inner);
}

/* ---- the tree --------------------------------------------------------------- */

typedef struct keyed {
    const char *name;
    size_t idx;
} keyed;

/* Key by key: "/" sorts before every byte, so a map's keys come out in
 * byte order whatever follows them. */
static int tree_order(const void *pa, const void *pb)
{
    const unsigned char *a = (const unsigned char *)((const keyed *)pa)->name;
    const unsigned char *b = (const unsigned char *)((const keyed *)pb)->name;
    for (;; a++, b++) {
        unsigned x = *a == '/' ? 1 : *a ? *a + 1u : 0, y = *b == '/' ? 1 : *b ? *b + 1u : 0;
        if (x != y || !x)
            return x < y ? -1 : x > y;
    }
}

static surg_status check_tensors(surg_sink *sink, const char *out_path, const stw_output *out)
{
    surg_status st = SURG_OK;
    for (size_t i = 0; i < out->n; i++) {
        const surg_tensor_info *t = &out->tensors[i];
        if (!mp_dtype_name(t->dtype)) {
            dg_file(sink, SURG_ERROR, "mp-dtype", out_path,
                    "tensor \"%s\" is %s, which NumPy has no name for: cast it (map \"%s\" = "
                    "cast(x, f32)) or write .safetensors",
                    t->name, surg_dtype_recipe_name(t->dtype), t->name);
            st = SURG_EINVALID;
        } else if (t->nbytes > MP_MAX_CHUNK_BYTES) {
            dg_file(sink, SURG_ERROR, "mp-chunk", out_path,
                    "tensor \"%s\" holds %llu bytes: Flax writes arrays over 2^30 bytes in "
                    "chunks, which surg does not write yet (write .safetensors)",
                    t->name, (unsigned long long)t->nbytes);
            st = SURG_EINVALID;
        }
    }
    return st;
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

/* The preorder walk of the tree the names make (in `order`), and the
 * skeleton written from it. */
static surg_status build(surg_sink *sink, const char *out_path, const stw_output *out,
                         const size_t *order, mpw_layout *z)
{
    size_t n_nodes = 1, cap = 16;
    mpw_node *nodes = malloc(cap * sizeof *nodes);
    size_t *open = NULL; /* the maps on the current path, by depth */
    size_t open_cap = 16, depth = 0;
    open = malloc(open_cap * sizeof *open);
    if (!nodes || !open) {
        free(nodes);
        free(open);
        return dg_nomem(sink, out_path);
    }
    nodes[0] = (mpw_node){NULL, 0, SIZE_MAX, 0};
    open[0] = 0;
    surg_status st = SURG_OK;
    const char *prev = NULL;
    for (size_t i = 0; !st && i < out->n; i++) {
        const char *name = out->tensors[order[i]].name;
        size_t plen = prev ? strlen(prev) : 0;
        if (prev && strncmp(prev, name, plen) == 0 && name[plen] == '/') {
            dg_file(sink, SURG_ERROR, "mp-tree", out_path,
                    "tensor \"%s\" and tensor \"%s\" cannot both be in a tree: \"%s\" would "
                    "be an array and a map",
                    prev, name, prev);
            st = SURG_EINVALID;
            break;
        }
        size_t keep = prev ? shared_depth(prev, name) : 0;
        depth = keep; /* maps still open: open[0..depth] */
        const char *seg = name;
        for (size_t d = 0; d < keep; d++)
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
            nodes[n_nodes] = (mpw_node){seg, len, slash ? SIZE_MAX : order[i], 0};
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
    z->skel_at = malloc((out->n ? out->n : 1) * sizeof *z->skel_at);
    if (!st && !z->skel_at)
        st = dg_nomem(sink, out_path);
    for (size_t k = 0; !st && k < n_nodes; k++) {
        const mpw_node *x = &nodes[k];
        if (x->key)
            put_str(&z->skel, x->key, x->len);
        if (x->tensor == SIZE_MAX) {
            put_map(&z->skel, x->count);
            continue;
        }
        put_array_head(&z->skel, &out->tensors[x->tensor]);
        z->skel_at[z->n++] = z->skel.len;
    }
    if (!st && z->skel.failed)
        st = dg_nomem(sink, out_path);
    free(nodes);
    free(open);
    return st;
}

surg_status mpw_layout_make(surg_sink *sink, const char *out_path, const stw_output *out,
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
    stw_warn_metadata(sink, out_path, out, "mp-metadata", ".msgpack holds a tree of arrays only");
    mpw_layout *z = calloc(1, sizeof *z);
    lay->mp = z;
    if (!z)
        return dg_nomem(sink, out_path);
    buf_init(&z->skel);
    st = stw_one_file(lay, sink, out_path);
    keyed *k = st ? NULL : malloc((out->n ? out->n : 1) * sizeof *k);
    if (!st && !k)
        st = dg_nomem(sink, out_path);
    if (st)
        return st;
    for (size_t i = 0; i < out->n; i++)
        k[i] = (keyed){out->tensors[i].name, i};
    qsort(k, out->n, sizeof *k, tree_order);
    stw_file *f = &lay->files[0];
    for (size_t i = 0; i < out->n; i++)
        f->idx[i] = k[i].idx;
    f->n = out->n;
    free(k);
    st = build(sink, out_path, out, f->idx, z);
    if (st)
        return st;
    uint64_t at = 0;
    size_t from = 0;
    for (size_t i = 0; i < out->n; i++) {
        size_t t = f->idx[i];
        at += z->skel_at[i] - from;
        from = z->skel_at[i];
        lay->file_of[t] = 0;
        lay->offset[t] = at;
        at += out->tensors[t].nbytes;
    }
    f->size = at + (z->skel.len - from);
    return SURG_OK;
}

surg_status mpw_layout_open(stw_layout *lay, surg_sink *sink)
{
    mpw_layout *z = lay->mp;
    const stw_file *f = &lay->files[0];
    uint64_t at = 0;
    size_t from = 0;
    surg_status st = SURG_OK;
    for (size_t i = 0; !st && i <= z->n; i++) {
        size_t to = i < z->n ? z->skel_at[i] : z->skel.len;
        st = of_pwrite(f->of, sink, z->skel.data + from, to - from, at);
        if (i < z->n)
            at = lay->offset[f->idx[i]] + lay->out->tensors[f->idx[i]].nbytes;
        from = to;
    }
    return st;
}

surg_status mpw_layout_finish(stw_layout *lay, surg_sink *sink)
{
    const size_t *same = lay->out->same_as;
    of_file *of = lay->files[0].of;
    surg_status st = SURG_OK;
    for (size_t t = 0; same && !st && t < lay->out->n; t++)
        if (same[t] != SIZE_MAX)
            st = of_copy_at(of, sink, of_fd(of), lay->offset[same[t]],
                            lay->out->tensors[t].nbytes, lay->offset[t]);
    return st;
}

void mpw_layout_free(stw_layout *lay)
{
    if (!lay->mp)
        return;
    buf_free(&lay->mp->skel);
    free(lay->mp->skel_at);
    free(lay->mp);
    lay->mp = NULL;
}
