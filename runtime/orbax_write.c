/* orbax_write.c: the Orbax writer (see orbax_write.h). The names, sorted
 * key by key, are the tree; each array is a directory `<keys joined with
 * ".">/` holding `.zarray` and its chunks. An array is written whole into
 * the file of its first chunk, where the executor puts it at offset 0 like
 * any one-file output; one over the chunk size is cut into its chunks once
 * every tensor is written (chunks are whole rows of its first dimensions,
 * so each is one run of its bytes). Every other file is made in full when
 * the directory is. */
#include "runtime/orbax_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support/diag.h"
#include "support/json.h"
#include "support/tensor_name.h"
#include "runtime/format.h"
#include "runtime/msgpack.h"

/* What an item of the tree is. */
typedef enum ow_kind {
    OW_TENSOR,
    OW_SCALAR, /* a number a msgpack input kept: a 0-d array */
    OW_STRING, /* in _strings.json */
    OW_DICT,   /* an empty map: only in _METADATA */
    OW_LIST,   /* an empty array */
    OW_NONE,   /* nil */
} ow_kind;

typedef struct ow_item {
    const char *name;
    ow_kind kind;
    size_t tensor;         /* OW_TENSOR */
    surg_dtype dtype;      /* OW_SCALAR */
    unsigned char raw[8];  /* OW_SCALAR: its bytes, little-endian */
    const char *text;      /* OW_STRING */
    char *param;           /* the keys joined with "." */
} ow_item;

/* How an array is cut: chunk shape, and the grid over the dimensions up to
 * `split` (those after it are whole in every chunk). */
typedef struct ow_grid {
    uint64_t chunk[SURG_MAX_RANK];
    uint32_t split;        /* chunks differ in dims 0..split only */
    uint64_t n_chunks;     /* 0: no elements, no chunk */
    uint64_t chunk_bytes;  /* of every chunk as stored (edge chunks padded) */
    uint64_t row_bytes;    /* bytes of one index of dim `split` */
} ow_grid;

typedef struct ow_state {
    arena ar;
    ow_item *items;
    size_t n_items;
    ow_grid *grid;   /* per tensor */
    buf metadata;    /* _METADATA */
    buf ckpt;        /* _CHECKPOINT_METADATA */
    buf strings;     /* _strings.json (empty: none) */
    uint64_t max_chunk;
} ow_state;

/* ---- dtypes ------------------------------------------------------------- */

/* The zarr v2 dtype of `dt` (TensorStore's own names for the types NumPy
 * has none of), or NULL. */
static const char *zarr_dtype(surg_dtype dt)
{
    switch (dt) {
    case SURG_BOOL: return "|b1";
    case SURG_U8: return "|u1";
    case SURG_I8: return "|i1";
    case SURG_I16: return "<i2";
    case SURG_U16: return "<u2";
    case SURG_F16: return "<f2";
    case SURG_BF16: return "bfloat16";
    case SURG_I32: return "<i4";
    case SURG_U32: return "<u4";
    case SURG_F32: return "<f4";
    case SURG_C64: return "<c8";
    case SURG_F64: return "<f8";
    case SURG_I64: return "<i8";
    case SURG_U64: return "<u8";
    case SURG_F8_E5M2: return "float8_e5m2";
    case SURG_F8_E4M3: return "float8_e4m3fn";
    case SURG_F8_E8M0: return "float8_e8m0fnu";
    case SURG_F8_E4M3FNUZ: return "float8_e4m3fnuz";
    case SURG_F8_E5M2FNUZ: return "float8_e5m2fnuz";
    default: return NULL;
    }
}

/* ---- the tree ------------------------------------------------------------ */

/* Key by key: "/" sorts before every byte, so each map's keys come out in
 * byte order (as JAX orders a dict's keys) whatever follows them. */
static int tree_order(const void *pa, const void *pb)
{
    const unsigned char *a = (const unsigned char *)((const ow_item *)pa)->name;
    const unsigned char *b = (const unsigned char *)((const ow_item *)pb)->name;
    for (;; a++, b++) {
        unsigned x = *a == '/' ? 1 : *a ? *a + 1u : 0, y = *b == '/' ? 1 : *b ? *b + 1u : 0;
        if (x != y || !x)
            return x < y ? -1 : x > y;
    }
}

static int param_order(const void *pa, const void *pb)
{
    const ow_item *a = *(const ow_item *const *)pa, *b = *(const ow_item *const *)pb;
    int c = strcmp(a->param, b->param);
    return c ? c : strcmp(a->name, b->name);
}

static uint64_t be(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_le(unsigned char *out, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(v >> (8 * i));
}

/* One msgpack leaf (mp_leaf_len checked it) as an item of the tree, or
 * false for what Orbax has no place for (bytes, exts, strings with a NUL). */
static bool leaf_item(arena *ar, const unsigned char *p, size_t n, ow_item *it)
{
    unsigned c = p[0];
    if (c == 0xc0) {
        it->kind = OW_NONE;
    } else if (c == 0xc2 || c == 0xc3) {
        it->kind = OW_SCALAR;
        it->dtype = SURG_BOOL;
        it->raw[0] = c == 0xc3;
    } else if (c <= 0x7f || (c >= 0xcc && c <= 0xcf)) {
        uint64_t v = c <= 0x7f ? c : be(p + 1, 1u << (c - 0xcc));
        it->kind = OW_SCALAR;
        it->dtype = v > INT64_MAX ? SURG_U64 : SURG_I64; /* as np.asarray(int) */
        put_le(it->raw, v);
    } else if (c >= 0xe0 || (c >= 0xd0 && c <= 0xd3)) {
        int64_t v = c >= 0xe0   ? (int8_t)c
                    : c == 0xd0 ? (int8_t)p[1]
                    : c == 0xd1 ? (int16_t)be(p + 1, 2)
                    : c == 0xd2 ? (int32_t)be(p + 1, 4)
                                : (int64_t)be(p + 1, 8);
        it->kind = OW_SCALAR;
        it->dtype = SURG_I64;
        put_le(it->raw, (uint64_t)v);
    } else if (c == 0xca || c == 0xcb) {
        double d;
        if (c == 0xca) {
            uint32_t bits = (uint32_t)be(p + 1, 4);
            float f;
            memcpy(&f, &bits, 4);
            d = f; /* msgpack reads it as a Python float: float64 */
        } else {
            uint64_t bits = be(p + 1, 8);
            memcpy(&d, &bits, 8);
        }
        uint64_t bits;
        memcpy(&bits, &d, 8);
        it->kind = OW_SCALAR;
        it->dtype = SURG_F64;
        put_le(it->raw, bits);
    } else if ((c >= 0xa0 && c <= 0xbf) || (c >= 0xd9 && c <= 0xdb)) {
        size_t head = c <= 0xbf ? 1 : 1 + (1u << (c - 0xd9));
        size_t len = n - head;
        if (memchr(p + head, 0, len))
            return false;
        it->kind = OW_STRING;
        it->text = ar_strndup(ar, (const char *)p + head, len);
        return it->text != NULL;
    } else if (c == 0x80 || c == 0xde || c == 0xdf) {
        it->kind = OW_DICT; /* empty: mp_leaf_len takes no other map */
    } else if (c == 0x90 || c == 0xdc || c == 0xdd) {
        it->kind = OW_LIST;
    } else {
        return false;
    }
    return true;
}

/* The values a msgpack input kept ("msgpack.tree": every path, the hex of
 * a value's bytes, "" or "s" where a tensor is, which is not read here) added to items[n..room): those Orbax has a place for,
 * under names it can hold; a warning lists how many others are not
 * written. */
static size_t read_leaves(surg_sink *sink, const char *out_path, const stw_output *out,
                          arena *ar, ow_item *items, size_t n, size_t room)
{
    const char *v = stw_meta(out, MP_TREE_KEY);
    if (!v)
        return n;
    mp_tree_entry *e;
    size_t n_e, k = n, skipped = 0;
    const char *first = NULL, *why = mp_tree_read(v, ar, &e, &n_e);
    for (size_t i = 0; !why && i < n_e; i++) {
        if (!e[i].raw)
            continue; /* a tensor's place */
        if (k == room) {
            why = "out of memory";
            break;
        }
        ow_item it = {.name = e[i].path, .tensor = SIZE_MAX};
        if (tn_format_problem(it.name, strlen(it.name), TN_ORBAX) ||
            !leaf_item(ar, e[i].raw, e[i].len, &it)) {
            first = first ? first : it.name;
            skipped++;
            continue;
        }
        items[k++] = it;
    }
    free(e);
    if (why) {
        dg_file(sink, SURG_WARNING, "orbax-leaves", out_path,
                "the metadata \"" MP_TREE_KEY "\" does not hold values a msgpack input "
                "keeps (%s): they are not written", why);
        return n;
    }
    if (skipped)
        dg_file(sink, SURG_WARNING, "orbax-leaves", out_path,
                "%zu value%s of the metadata \"" MP_TREE_KEY "\" (\"%s\"%s) %s not written: "
                "an Orbax checkpoint keeps numbers, strings, None and empty containers, under "
                "names it can hold, and not bytes or msgpack exts",
                skipped, skipped > 1 ? "s" : "", first, skipped > 1 ? ", ..." : "",
                skipped > 1 ? "are" : "is");
    return k;
}

/* A leaf whose path is a tensor's, or is inside one's or holds one, gives
 * way to the tensor: the recipe made it. Two tensors that clash make no
 * tree: an error. */
static surg_status prune(surg_sink *sink, const char *out_path, ow_item *items, size_t *n)
{
    size_t k = 0, dropped = 0;
    const char *first = NULL;
    surg_status st = SURG_OK;
    for (size_t i = 0; i < *n; i++) {
        ow_item *prev = k ? &items[k - 1] : NULL;
        if (!prev || !mp_path_holds(prev->name, items[i].name)) {
            items[k++] = items[i];
            continue;
        }
        if (prev->kind == OW_TENSOR && items[i].kind == OW_TENSOR) {
            dg_file(sink, SURG_ERROR, "orbax-tree", out_path,
                    "tensor \"%s\" and tensor \"%s\" cannot both be in a tree: \"%s\" would "
                    "be an array and a map",
                    prev->name, items[i].name, prev->name);
            st = SURG_EINVALID;
            continue;
        }
        bool keep_new = prev->kind != OW_TENSOR;
        first = first ? first : keep_new ? prev->name : items[i].name;
        dropped++;
        if (keep_new)
            *prev = items[i];
    }
    *n = k;
    if (dropped)
        dg_file(sink, SURG_WARNING, "orbax-leaves", out_path,
                "%zu value%s of the metadata \"" MP_TREE_KEY "\" (\"%s\"%s) %s not written: "
                "a tensor of the output is there",
                dropped, dropped > 1 ? "s" : "", first, dropped > 1 ? ", ..." : "",
                dropped > 1 ? "are" : "is");
    return st;
}

/* Each item's directory name; two that are the same are an error. */
static surg_status set_params(surg_sink *sink, const char *out_path, ow_state *z)
{
    ow_item **by = malloc((z->n_items ? z->n_items : 1) * sizeof *by);
    if (!by)
        return dg_nomem(sink, out_path);
    for (size_t i = 0; i < z->n_items; i++) {
        ow_item *it = &z->items[i];
        if (!(it->param = ar_strdup(&z->ar, it->name))) {
            free(by);
            return dg_nomem(sink, out_path);
        }
        for (char *p = it->param; *p; p++)
            *p = *p == '/' ? '.' : *p;
        by[i] = it;
    }
    qsort(by, z->n_items, sizeof *by, param_order);
    surg_status st = SURG_OK;
    for (size_t i = 1; i < z->n_items; i++)
        if (strcmp(by[i - 1]->param, by[i]->param) == 0) {
            dg_file(sink, SURG_ERROR, "orbax-name", out_path,
                    "\"%s\" and \"%s\" would both be the array \"%s\": Orbax names an array by "
                    "its keys joined with \".\"; rename one",
                    by[i - 1]->name, by[i]->name, by[i]->param);
            st = SURG_EINVALID;
        }
    free(by);
    return st;
}

/* ---- chunks ----------------------------------------------------------- */

/* One chunk the whole array, as Orbax writes it (a dimension of 0 a chunk
 * of 1), unless it has more bytes than `max`: then chunks of whole rows of
 * the first dimensions, as many as fit. */
static void make_grid(const surg_tensor_info *t, uint64_t max, ow_grid *g)
{
    uint64_t esize = surg_dtype_bits(t->dtype) / 8;
    *g = (ow_grid){.n_chunks = t->nbytes ? 1 : 0, .chunk_bytes = t->nbytes};
    for (uint32_t d = 0; d < t->rank; d++)
        g->chunk[d] = t->shape[d] ? t->shape[d] : 1;
    if (!t->rank || t->nbytes <= max)
        return;
    /* The first dimension k whose rows (dims after k whole) fit. */
    uint64_t row = esize;
    uint32_t k = t->rank - 1;
    while (k > 0 && t->shape[k] <= max / row) {
        row *= t->shape[k];
        k--;
    }
    /* rows of dim k are `row` bytes each (dims after k whole) */
    uint64_t per = max / row ? max / row : 1;
    if (per > t->shape[k])
        per = t->shape[k];
    for (uint32_t d = 0; d < k; d++)
        g->chunk[d] = 1;
    g->chunk[k] = per;
    g->split = k;
    g->row_bytes = row;
    g->chunk_bytes = per * row;
    g->n_chunks = 1;
    for (uint32_t d = 0; d <= k; d++)
        g->n_chunks *= (t->shape[d] + g->chunk[d] - 1) / g->chunk[d];
}

/* The key of chunk c (C order over the grid) and the run of the array's
 * bytes it holds. */
static void chunk_place(const surg_tensor_info *t, const ow_grid *g, uint64_t c, buf *key,
                        uint64_t *off, uint64_t *len)
{
    if (!t->rank) {
        buf_putc(key, '0');
        *off = 0;
        *len = t->nbytes;
        return;
    }
    uint64_t idx[SURG_MAX_RANK] = {0};
    uint32_t k = g->split;
    uint64_t rest = c;
    for (uint32_t d = k + 1; d-- > 0;) {
        uint64_t n = (t->shape[d] + g->chunk[d] - 1) / g->chunk[d];
        idx[d] = n ? rest % n : 0;
        rest = n ? rest / n : 0;
    }
    uint64_t lead = 0; /* the index of dims 0..k-1, C order */
    for (uint32_t d = 0; d < k; d++)
        lead = lead * t->shape[d] + idx[d];
    uint64_t first = idx[k] * g->chunk[k];
    uint64_t rows = t->shape[k] - first < g->chunk[k] ? t->shape[k] - first : g->chunk[k];
    *off = (lead * t->shape[k] + first) * g->row_bytes;
    *len = rows * g->row_bytes;
    for (uint32_t d = 0; d < t->rank; d++)
        buf_printf(key, "%s%llu", d ? "." : "", (unsigned long long)idx[d]);
}

/* ---- the metadata ------------------------------------------------------- */

/* Python's repr() of a str: quoted with ' unless it holds ' and no ",
 * backslash and the quote escaped, \t \n \r, other ASCII controls \xNN;
 * every other character as it is (tn_orbax_printable saw to that). */
static void put_repr(buf *b, const char *s, size_t len)
{
    bool sq = memchr(s, '\'', len) != NULL, dq = memchr(s, '"', len) != NULL;
    char q = sq && !dq ? '"' : '\'';
    buf_putc(b, q);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == (unsigned char)q || c == '\\')
            buf_printf(b, "\\%c", c);
        else if (c == '\t')
            buf_puts(b, "\\t");
        else if (c == '\n')
            buf_puts(b, "\\n");
        else if (c == '\r')
            buf_puts(b, "\\r");
        else if (c < 0x20 || c == 0x7f)
            buf_printf(b, "\\x%02x", c);
        else
            buf_putc(b, (char)c);
    }
    buf_putc(b, q);
}

/* str(tuple(keys)): "('a',)", "('b', 'c')". */
static void put_tuple_repr(buf *b, const char *name)
{
    buf_putc(b, '(');
    size_t n = 0;
    for (const char *seg = name;; n++) {
        const char *slash = strchr(seg, '/');
        size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
        buf_puts(b, n ? ", " : "");
        put_repr(b, seg, len);
        if (!slash)
            break;
        seg = slash + 1;
    }
    buf_puts(b, n == 0 ? ",)" : ")");
}

static void put_key_metadata(buf *b, const char *name, arena *ar, bool *nomem)
{
    buf_puts(b, "[");
    for (const char *seg = name;;) {
        const char *slash = strchr(seg, '/');
        size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
        char *key = ar_strndup(ar, seg, len);
        *nomem |= !key;
        buf_puts(b, seg == name ? "{\"key\": " : ", {\"key\": ");
        buf_json_ascii(b, key ? key : "");
        buf_puts(b, ", \"key_type\": 2}"); /* DICT: see docs/formats.md */
        if (!slash)
            break;
        seg = slash + 1;
    }
    buf_puts(b, "]");
}

/* _METADATA, as Orbax writes it (json.dumps: ", " and ": ", ASCII). */
static surg_status metadata_text(ow_state *z, const stw_output *out)
{
    buf *b = &z->metadata;
    bool nomem = false;
    buf_puts(b, "{\"tree_metadata\": {");
    for (size_t i = 0; i < z->n_items; i++) {
        const ow_item *it = &z->items[i];
        buf repr;
        buf_init(&repr);
        put_tuple_repr(&repr, it->name);
        buf_puts(b, i ? ", " : "");
        buf_json_ascii(b, repr.failed ? "" : repr.data);
        nomem |= repr.failed;
        buf_free(&repr);
        buf_puts(b, ": {\"key_metadata\": ");
        put_key_metadata(b, it->name, &z->ar, &nomem);
        static const char *const type[] = {
            [OW_TENSOR] = "np.ndarray", [OW_SCALAR] = "scalar", [OW_STRING] = "string",
            [OW_DICT] = "Dict",         [OW_LIST] = "List",     [OW_NONE] = "None",
        };
        bool empty = it->kind == OW_DICT || it->kind == OW_LIST || it->kind == OW_NONE;
        buf_printf(b, ", \"value_metadata\": {\"value_type\": \"%s\", \"skip_deserialize\": %s",
                   type[it->kind], empty ? "true" : "false");
        if (it->kind == OW_TENSOR) {
            const surg_tensor_info *t = &out->tensors[it->tensor];
            buf_puts(b, ", \"write_shape\": [");
            for (uint32_t d = 0; d < t->rank; d++)
                buf_printf(b, "%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
            buf_puts(b, "]");
        }
        buf_puts(b, "}}");
    }
    buf_puts(b, "}, \"use_ocdbt\": false, \"use_zarr3\": false, "
                "\"store_array_data_equal_to_fill_value\": true, \"custom_metadata\": null}");
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    unsigned long long ns = (unsigned long long)now.tv_sec * 1000000000ull +
                            (unsigned long long)now.tv_nsec;
    buf_printf(&z->ckpt,
               "{\"item_handlers\": \"" OW_HANDLER "\", \"metrics\": {}, "
               "\"performance_metrics\": {}, \"init_timestamp_nsecs\": %llu, "
               "\"commit_timestamp_nsecs\": %llu, \"custom_metadata\": {\"" OUTP_MARK_KEY
               "\": \"" OUTP_DIR_MARK_VALUE "\"}}",
               ns, ns);
    size_t n_strings = 0;
    for (size_t i = 0; i < z->n_items; i++) {
        const ow_item *it = &z->items[i];
        if (it->kind != OW_STRING)
            continue;
        buf_puts(&z->strings, n_strings++ ? ", " : "{");
        buf_json_ascii(&z->strings, it->param);
        buf_puts(&z->strings, ": ");
        buf_json_ascii(&z->strings, it->text);
    }
    if (n_strings)
        buf_puts(&z->strings, "}");
    return nomem || b->failed || z->ckpt.failed || z->strings.failed ? SURG_ENOMEM : SURG_OK;
}

/* A .zarray as TensorStore writes it: compact, keys sorted. */
static void zarray_text(buf *b, surg_dtype dtype, uint32_t rank, const uint64_t *shape,
                        const uint64_t *chunk)
{
    buf_puts(b, "{\"chunks\":[");
    for (uint32_t d = 0; d < rank; d++)
        buf_printf(b, "%s%llu", d ? "," : "", (unsigned long long)chunk[d]);
    buf_printf(b, "],\"compressor\":null,\"dimension_separator\":\".\",\"dtype\":\"%s\","
                  "\"fill_value\":null,\"filters\":null,\"order\":\"C\",\"shape\":[",
               zarr_dtype(dtype));
    for (uint32_t d = 0; d < rank; d++)
        buf_printf(b, "%s%llu", d ? "," : "", (unsigned long long)shape[d]);
    buf_puts(b, "],\"zarr_format\":2}");
}

/* ---- the layout ------------------------------------------------------------ */

static bool zarr_holds(surg_dtype dt) { return zarr_dtype(dt) != NULL; }

static surg_status check_dtypes(surg_sink *sink, const char *out_path, const stw_output *out)
{
    return stw_refuse_dtypes(sink, "orbax-dtype", out_path, out, zarr_holds,
                             "zarr has no name for");
}

static surg_status add_file(stw_layout *lay, surg_sink *sink, const char *path, size_t tensor,
                            uint64_t size)
{
    stw_file *f = &lay->files[lay->n_files];
    *f = (stw_file){.path = strdup(path), .size = size};
    buf_init(&f->header);
    lay->n_files++;
    if (tensor != SIZE_MAX && (f->idx = malloc(sizeof *f->idx)) != NULL)
        f->idx[f->n++] = tensor;
    return f->path && (tensor == SIZE_MAX || f->idx) ? SURG_OK : dg_nomem(sink, path);
}

static surg_status ow_make(surg_sink *sink, const char *out_path, const stw_output *out,
                           stw_layout *lay)
{
    surg_status st = check_dtypes(sink, out_path, out);
    if (st)
        return st;
    stw_warn_metadata(sink, out_path, out, "orbax-metadata",
                      "an Orbax checkpoint holds a tree of arrays only", MP_TREE_KEY);
    ow_state *z = calloc(1, sizeof *z);
    lay->state = z;
    if (!z)
        return dg_nomem(sink, out_path);
    ar_init(&z->ar);
    buf_init(&z->metadata);
    buf_init(&z->ckpt);
    buf_init(&z->strings);
    z->max_chunk = out->chunk_bytes ? out->chunk_bytes : OW_MAX_CHUNK_BYTES;
    const char *leaves = stw_meta(out, MP_TREE_KEY);
    size_t room = out->n;
    for (const char *p = leaves; p && *p; p++) /* at most one leaf per colon */
        room += *p == ':';
    z->items = malloc((room ? room : 1) * sizeof *z->items);
    z->grid = malloc((out->n ? out->n : 1) * sizeof *z->grid);
    lay->files = calloc(out->n + 1, sizeof *lay->files);
    if (!z->items || !z->grid || !lay->files)
        return dg_nomem(sink, out_path);
    for (size_t i = 0; i < out->n; i++)
        z->items[i] = (ow_item){.name = out->tensors[i].name, .kind = OW_TENSOR, .tensor = i};
    z->n_items = read_leaves(sink, out_path, out, &z->ar, z->items, out->n, room);
    qsort(z->items, z->n_items, sizeof *z->items, tree_order);
    st = prune(sink, out_path, z->items, &z->n_items);
    if (!st)
        st = set_params(sink, out_path, z);
    if (!st && metadata_text(z, out))
        st = dg_nomem(sink, out_path);
    /* files[0]: _METADATA, where the tensors without bytes point (nothing
     * is written for them); then each tensor's first chunk. */
    if (!st)
        st = add_file(lay, sink, "_METADATA", SIZE_MAX, z->metadata.len);
    for (size_t i = 0; !st && i < z->n_items; i++) {
        const ow_item *it = &z->items[i];
        if (it->kind != OW_TENSOR)
            continue;
        const surg_tensor_info *t = &out->tensors[it->tensor];
        ow_grid *g = &z->grid[it->tensor];
        make_grid(t, z->max_chunk, g);
        lay->file_of[it->tensor] = 0;
        lay->offset[it->tensor] = 0;
        if (!g->n_chunks)
            continue;
        buf path;
        buf_init(&path);
        buf_printf(&path, "%s/", it->param);
        uint64_t off, len;
        chunk_place(t, g, 0, &path, &off, &len);
        lay->file_of[it->tensor] = (uint32_t)lay->n_files;
        st = path.failed ? dg_nomem(sink, out_path)
                         : add_file(lay, sink, path.data, it->tensor, t->nbytes);
        buf_free(&path);
    }
    return st;
}

/* A whole small file of the directory. */
static surg_status put_file(stw_layout *lay, surg_sink *sink, const char *rel, const void *data,
                            size_t len, of_file **kept)
{
    of_file *f;
    surg_status st = of_dir_file(lay->dir, sink, rel, &f);
    if (!st)
        st = of_write(f, sink, data, len);
    if (kept)
        *kept = st ? NULL : f;
    return st;
}

static surg_status put_array_dir(stw_layout *lay, surg_sink *sink, const char *param,
                                 surg_dtype dtype, uint32_t rank, const uint64_t *shape,
                                 const uint64_t *chunk)
{
    buf path, text;
    buf_init(&path);
    buf_init(&text);
    buf_printf(&path, "%s/.zarray", param);
    zarray_text(&text, dtype, rank, shape, chunk);
    surg_status st = path.failed || text.failed ? dg_nomem(sink, lay->dir_path)
                                                : of_dir_mkdir(lay->dir, sink, param);
    if (!st)
        st = put_file(lay, sink, path.data, text.data, text.len, NULL);
    buf_free(&path);
    buf_free(&text);
    return st;
}

static surg_status ow_open(stw_layout *lay, surg_sink *sink)
{
    ow_state *z = lay->state;
    const stw_output *out = lay->out;
    surg_status st = put_file(lay, sink, "_METADATA", z->metadata.data, z->metadata.len,
                              &lay->files[0].of);
    if (!st)
        st = put_file(lay, sink, OUTP_DIR_MARK_FILE, z->ckpt.data, z->ckpt.len, NULL);
    if (!st && z->strings.len)
        st = put_file(lay, sink, "_strings.json", z->strings.data, z->strings.len, NULL);
    for (size_t i = 0; !st && i < z->n_items; i++) {
        const ow_item *it = &z->items[i];
        if (it->kind == OW_SCALAR) {
            buf path;
            buf_init(&path);
            buf_printf(&path, "%s/0", it->param);
            st = path.failed ? dg_nomem(sink, lay->dir_path)
                             : put_array_dir(lay, sink, it->param, it->dtype, 0, NULL, NULL);
            if (!st)
                st = put_file(lay, sink, path.data, it->raw, surg_dtype_bits(it->dtype) / 8,
                              NULL);
            buf_free(&path);
            continue;
        }
        if (it->kind != OW_TENSOR)
            continue;
        const surg_tensor_info *t = &out->tensors[it->tensor];
        st = put_array_dir(lay, sink, it->param, t->dtype, t->rank, t->shape,
                           z->grid[it->tensor].chunk);
        uint32_t k = lay->file_of[it->tensor];
        if (st || !k)
            continue;
        stw_file *f = &lay->files[k];
        st = of_dir_file(lay->dir, sink, f->path, &f->of);
        if (!st)
            st = of_reserve(f->of, sink, f->size);
    }
    return st;
}

/* Chunk c > 0 of tensor t, out of its first chunk's file (which holds the
 * whole array until it is cut). */
static surg_status cut_chunk(stw_layout *lay, surg_sink *sink, const ow_item *it, uint64_t c)
{
    ow_state *z = lay->state;
    const surg_tensor_info *t = &lay->out->tensors[it->tensor];
    const ow_grid *g = &z->grid[it->tensor];
    of_file *whole = lay->files[lay->file_of[it->tensor]].of, *f;
    buf path;
    buf_init(&path);
    buf_printf(&path, "%s/", it->param);
    uint64_t off, len;
    chunk_place(t, g, c, &path, &off, &len);
    surg_status st = path.failed ? dg_nomem(sink, lay->dir_path)
                                 : of_dir_file(lay->dir, sink, path.data, &f);
    if (!st)
        st = of_reserve(f, sink, g->chunk_bytes);
    if (!st)
        st = of_copy_at(f, sink, of_fd(whole), off, len, 0);
    /* An edge chunk is stored whole: the rows past the array are zeros. */
    if (!st && len < g->chunk_bytes && ftruncate(of_fd(f), (off_t)g->chunk_bytes) != 0)
        st = dg_errno(sink, path.data, "cannot write", errno);
    buf_free(&path);
    return st;
}

static surg_status ow_finish(stw_layout *lay, surg_sink *sink)
{
    ow_state *z = lay->state;
    const stw_output *out = lay->out;
    const size_t *same = out->same_as;
    surg_status st = SURG_OK;
    /* Tied names first: they copy the whole array, before it is cut. */
    for (size_t t = 0; same && !st && t < out->n; t++) {
        if (same[t] == SIZE_MAX || !lay->file_of[t])
            continue;
        of_file *to = lay->files[lay->file_of[t]].of;
        of_file *from = lay->files[lay->file_of[same[t]]].of;
        st = of_copy_at(to, sink, of_fd(from), 0, out->tensors[t].nbytes, 0);
    }
    for (size_t i = 0; !st && i < z->n_items; i++) {
        const ow_item *it = &z->items[i];
        if (it->kind != OW_TENSOR || z->grid[it->tensor].n_chunks < 2)
            continue;
        for (uint64_t c = 1; !st && c < z->grid[it->tensor].n_chunks; c++)
            st = cut_chunk(lay, sink, it, c);
        const stw_file *f = &lay->files[lay->file_of[it->tensor]];
        if (!st && ftruncate(of_fd(f->of), (off_t)z->grid[it->tensor].chunk_bytes) != 0)
            st = dg_errno(sink, f->path, "cannot write", errno);
    }
    return st;
}

static void ow_free(stw_layout *lay)
{
    ow_state *z = lay->state;
    if (!z)
        return;
    buf_free(&z->metadata);
    buf_free(&z->ckpt);
    buf_free(&z->strings);
    free(z->items);
    free(z->grid);
    ar_free(&z->ar);
    free(z);
    lay->state = NULL;
}

const stw_writer ow_writer = {
    .dir = true,
    .make = ow_make,
    .open = ow_open,
    .finish = ow_finish,
    .free = ow_free,
};
