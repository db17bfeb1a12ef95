/* torch.c: PyTorch's torch.save files opened as checkpoints. Since PyTorch
 * 1.6 such a file is a zip archive: <prefix>/data.pkl, the pickled object,
 * and <prefix>/data/<key>, one uncompressed entry per storage. The pickle is
 * read as data (pickle.c); its dicts, lists and tuples flatten to names
 * joined with "."; each tensor is a view (offset, size, stride) into a
 * storage. A contiguous view is read in place in the archive; any other is
 * gathered into the checkpoint's scratch file when a run needs it
 * (decode.c). Names for one and the same view are a tie. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "checkpoint.h"
#include "diag.h"
#include "pickle.h"
#include "readfile.h"
#include "strsort.h"
#include "tensor_name.h"

enum {
    MAX_DEPTH = 100, /* containers inside one another */
    MAX_SHOWN = 3,   /* skipped names shown in the note */
};

/* Views gathered into the scratch file may make at most this many bytes
 * per byte of the file (deflate's own limit, which the zip reader holds
 * compressed entries to), plus GATHER_SLACK: a stride of 0 repeats
 * elements, so a tiny file could otherwise claim terabytes. */
#define GATHER_RATIO 1032u
#define GATHER_SLACK (16u << 20)

/* A tensor of the pickle under its name. */
typedef struct pt_item {
    const char *name; /* first: the key ss_sort sorts by */
    const pk_tensor *t;
    size_t order;     /* in the pickle's order of appearance */
    const zip_entry *storage;
    uint64_t nelems, nbytes;
    uint64_t at;      /* byte offset of element 0 in the storage */
    bool in_place;
    const char *tied_to; /* stored as another item's tensor */
} pt_item;

typedef struct pt_state {
    surg_ckpt *ck; /* whose arena keeps what the tables point at */
    surg_sink *sink;
    const char *path; /* the file, and its place among ck->files */
    st_file *file;
    zip_archive *arc;
    arena tmp; /* the pickle's values */
    unsigned char *pickle;
    size_t pickle_len;
    const char *prefix; /* "archive/" */
    size_t prefix_len;
    bool big_endian;
    pt_item *items;
    size_t n, cap;
    buf name;           /* the path being flattened */
    uint64_t visits;    /* values flattened, bounded */
    uint64_t name_bytes; /* bytes of names built and kept, bounded */
    size_t n_skipped;
    char *skipped[MAX_SHOWN];
    bool failed;
} pt_state;

static const char *const extensions[] = {".pth.tar", ".pt", ".pth", ".bin"};

bool pt_wanted(const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < sizeof extensions / sizeof *extensions; i++) {
        size_t k = strlen(extensions[i]);
        if (n >= k && strcmp(path + n - k, extensions[i]) == 0)
            return true;
    }
    return false;
}

static void error(pt_state *o, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void error(pt_state *o, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dg_file(o->sink, SURG_ERROR, code, o->path, "%s", msg);
    o->failed = true;
}

/* ---- the archive -------------------------------------------------------- */

static surg_status open_file(pt_state *o)
{
    *o->file = (st_file){.path = o->path, .fd = -1};
    o->arc = ar_alloc(&o->ck->ar, sizeof *o->arc);
    if (!o->arc)
        return dg_nomem(o->sink, o->path);
    return st_file_open(o->sink, o->path, o->file);
}

/* Before PyTorch 1.6 (and with _use_new_zipfile_serialization=False)
 * torch.save wrote pickles one after another, the tensors' bytes between
 * them: a file that starts with a pickle's PROTO opcode. */
static surg_status refuse_legacy(pt_state *o)
{
    unsigned char head[2] = {0};
    const st_file *f = o->file;
    if (f->size < 2)
        return SURG_OK;
    surg_status st = rf_read_exact(o->sink, f->path, f->fd, head, 2, 0);
    if (st || head[0] != 0x80 || head[1] > 5)
        return st;
    dg_file(o->sink, SURG_ERROR, "pt-legacy", f->path,
            "a torch.save file in the legacy format (PyTorch before 1.6, or "
            "_use_new_zipfile_serialization=False) is unsupported: re-save it with torch.save "
            "in PyTorch 1.6 or newer");
    return SURG_EINVALID;
}

/* The one entry <prefix>/data.pkl, its prefix a single folder. */
static surg_status find_pickle(pt_state *o, const zip_entry **pkl)
{
    *pkl = NULL;
    for (size_t i = 0; i < o->arc->n; i++) {
        const zip_entry *e = &o->arc->entries[i];
        const char *slash = strchr(e->name, '/');
        if (!slash || strcmp(slash, "/data.pkl") != 0 || slash == e->name)
            continue;
        if (*pkl) {
            dg_file(o->sink, SURG_ERROR, "pt-archive", o->path,
                    "the archive holds two pickles, \"%s\" and \"%s\": not one torch.save "
                    "file",
                    (*pkl)->name, e->name);
            return SURG_EINVALID;
        }
        *pkl = e;
    }
    if (!*pkl) {
        dg_file(o->sink, SURG_ERROR, "pt-archive", o->path,
                "not a torch.save file: the zip archive has no entry \"<name>/data.pkl\"");
        return SURG_EINVALID;
    }
    o->prefix_len = (size_t)(strchr((*pkl)->name, '/') - (*pkl)->name) + 1;
    o->prefix = ar_strndup(&o->ck->ar, (*pkl)->name, o->prefix_len);
    return o->prefix ? SURG_OK : dg_nomem(o->sink, o->path);
}

/* An entry's bytes, all of them (its CRC checked), into malloc'd memory. */
static surg_status read_entry(pt_state *o, const zip_entry *e, unsigned char **out)
{
    zip_stream z;
    *out = malloc(e->usize ? (size_t)e->usize : 1);
    if (!*out)
        return dg_nomem(o->sink, o->path);
    surg_status st = zip_stream_open(&z, o->arc, e, o->sink);
    if (!st && e->usize)
        st = zip_stream_read_exact(&z, o->sink, *out, (size_t)e->usize);
    size_t got = 0;
    unsigned char extra;
    if (!st)
        st = zip_stream_read(&z, o->sink, &extra, 1, &got); /* the end: the CRC */
    zip_stream_close(&z);
    o->file->bytes_read += e->csize;
    if (st) {
        free(*out);
        *out = NULL;
    }
    return st;
}

/* "<prefix><mid><key>", the name of an entry of the archive, malloc'd. */
static char *entry_name(pt_state *o, const char *mid, const char *key, size_t key_len)
{
    size_t n = o->prefix_len + strlen(mid) + key_len + 1;
    char *name = malloc(n);
    if (name)
        snprintf(name, n, "%s%s%.*s", o->prefix, mid, (int)key_len, key);
    else
        dg_nomem(o->sink, o->path);
    return name;
}

/* <prefix>/byteorder ("little" or "big"), written by PyTorch 2.1 and
 * later; without it the storages are little-endian. */
static surg_status read_byteorder(pt_state *o)
{
    char *name = entry_name(o, "byteorder", "", 0);
    if (!name)
        return SURG_ENOMEM;
    const zip_entry *e = zip_find(o->arc, name);
    if (!e) {
        free(name);
        return SURG_OK;
    }
    unsigned char *text = NULL;
    surg_status st = e->usize > 16 ? SURG_EINVALID : read_entry(o, e, &text);
    size_t n = st ? 0 : (size_t)e->usize;
    bool little = n == 6 && memcmp(text, "little", 6) == 0;
    o->big_endian = n == 3 && memcmp(text, "big", 3) == 0;
    free(text);
    if (st == SURG_EINVALID || (!st && !little && !o->big_endian)) {
        dg_file(o->sink, SURG_ERROR, "pt-archive", o->path,
                "entry \"%s\" says neither \"little\" nor \"big\"", name);
        st = SURG_EINVALID;
    }
    free(name);
    return st;
}

static surg_status read_pickle(pt_state *o, const zip_entry *e)
{
    if (e->usize > PK_MAX_PICKLE) {
        dg_file(o->sink, SURG_ERROR, "pt-pickle-size", o->path,
                "entry \"%s\" is %llu bytes, more than the %u a pickle may have here",
                e->name, (unsigned long long)e->usize, PK_MAX_PICKLE);
        return SURG_EINVALID;
    }
    o->pickle_len = (size_t)e->usize;
    return read_entry(o, e, &o->pickle);
}

/* A TorchScript archive (torch.jit.save) has code beside its data.pkl. */
static bool torchscript(const pt_state *o)
{
    for (size_t i = 0; i < o->arc->n; i++) {
        const char *name = o->arc->entries[i].name;
        if (strncmp(name, o->prefix, o->prefix_len) == 0 &&
            (strncmp(name + o->prefix_len, "code/", 5) == 0 ||
             strcmp(name + o->prefix_len, "constants.pkl") == 0))
            return true;
    }
    return false;
}

static surg_status run_pickle(pt_state *o, pk_value **root)
{
    pk_error err;
    if (pk_load(&o->tmp, o->pickle, o->pickle_len, root, &err))
        return SURG_OK;
    if (!err.code)
        return dg_nomem(o->sink, o->path);
    const char *note = "this is a TorchScript archive (torch.jit.save): surg reads what "
                       "torch.save writes; save the model's state_dict() with torch.save";
    bool jit = strcmp(err.code, "pt-global") == 0 && torchscript(o);
    dg_file_notes(o->sink, SURG_ERROR, err.code, o->path, &note, jit ? 1 : 0,
                  "%sdata.pkl, byte %llu: %s", o->prefix, (unsigned long long)err.at,
                  err.msg);
    return SURG_EINVALID;
}

/* ---- flattening ---------------------------------------------------------- */

static surg_status walk(pt_state *o, const pk_value *v, int depth);

/* Containers reached again through the memo are walked again, so a small
 * pickle could name a great many values, or make long names many times:
 * the values visited are bounded by the pickle's size, and so are the
 * bytes of names built and kept (PK_MEMORY_RATIO times it). */
static bool visit(pt_state *o, int depth)
{
    if (depth > MAX_DEPTH || ++o->visits > o->pickle_len + 4096) {
        error(o, "pt-pickle-shape",
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
    error(o, "pt-pickle-shape",
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
    char *name = ar_strndup(&o->ck->ar, o->name.data ? o->name.data : "", o->name.len);
    if (!name)
        return dg_nomem(o->sink, o->path);
    o->items[o->n] = (pt_item){.name = name, .t = t, .order = o->n};
    o->n++;
    return SURG_OK;
}

static surg_status skip(pt_state *o)
{
    if (o->n_skipped < MAX_SHOWN) {
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
        return skip(o);
    error(o, "pt-name",
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
            error(o, "pt-name", "a set at \"%s\" holds a tensor: a set has no order to name "
                                "its members by",
                  o->name.data ? o->name.data : "");
        return held ? SURG_EINVALID : skip(o);
    }
    default:
        return skip(o);
    }
}

/* The file's name without its folder and extension: a lone tensor's name. */
static const char *stem(pt_state *o)
{
    const char *slash = strrchr(o->path, '/');
    const char *base = slash ? slash + 1 : o->path;
    size_t n = strlen(base);
    for (size_t i = 0; i < sizeof extensions / sizeof *extensions; i++) {
        size_t k = strlen(extensions[i]);
        if (n > k && strcmp(base + n - k, extensions[i]) == 0) {
            n -= k;
            break;
        }
    }
    return ar_strndup(&o->ck->ar, base, n);
}

static surg_status flatten(pt_state *o, const pk_value *root)
{
    if (root->kind == PK_TENSOR) {
        const char *name = stem(o);
        if (!name)
            return dg_nomem(o->sink, o->path);
        buf_puts(&o->name, name);
    }
    surg_status st = walk(o, root, 0);
    if (!st && o->n_skipped) {
        buf b;
        buf_init(&b);
        for (size_t i = 0; i < o->n_skipped && i < MAX_SHOWN; i++)
            buf_printf(&b, "%s\"%s\"", i ? ", " : "", o->skipped[i]);
        if (o->n_skipped > MAX_SHOWN)
            buf_printf(&b, " and %zu more", o->n_skipped - MAX_SHOWN);
        if (b.failed)
            st = dg_nomem(o->sink, o->path);
        else
            dg_file(o->sink, SURG_NOTE, "pt-not-tensor", o->path,
                    "skipped %zu value%s that %s not a tensor (numbers, strings, None, ...; "
                    "surg carries tensors only): %s",
                    o->n_skipped, o->n_skipped > 1 ? "s" : "", o->n_skipped > 1 ? "are" : "is",
                    b.data);
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

/* The storage entry of an item: <prefix>data/<key>, stored, exactly as
 * large as the storage's elements. */
static const zip_entry *storage_entry(pt_state *o, const pt_item *it, uint64_t *bytes)
{
    const pk_storage *s = it->t->storage;
    if (memchr(s->key, 0, s->key_len) || s->key_len > 4096) {
        error(o, "pt-storage", "tensor \"%s\": its storage key is not a plain name", it->name);
        return NULL;
    }
    char *name = entry_name(o, "data/", s->key, s->key_len);
    if (!name) {
        o->failed = true;
        return NULL;
    }
    const zip_entry *e = zip_find(o->arc, name);
    unsigned esize = surg_dtype_bits(s->dtype) / 8;
    if (!e)
        error(o, "pt-storage", "tensor \"%s\": its storage \"%s\" is not in the archive",
              it->name, name);
    else if (e->method != ZIP_STORED)
        error(o, "pt-storage",
              "tensor \"%s\": its storage \"%s\" is compressed (torch.save stores storages "
              "uncompressed, to be read in place): refused",
              it->name, name);
    else if (s->numel > UINT64_MAX / esize || s->numel * esize != e->usize)
        error(o, "pt-storage",
              "tensor \"%s\": its storage \"%s\" holds %llu bytes, but the pickle says %llu "
              "elements of %s",
              it->name, name, (unsigned long long)e->usize, (unsigned long long)s->numel,
              surg_dtype_recipe_name(s->dtype));
    else
        *bytes = e->usize;
    free(name);
    return o->failed ? NULL : e;
}

/* The byte just past the last element the view reaches, or false on
 * overflow. */
static bool view_end(const pk_tensor *t, unsigned esize, uint64_t *end)
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

static void check_view(pt_state *o, pt_item *it)
{
    const pk_tensor *t = it->t;
    uint64_t sbytes = 0, end = 0;
    bool partial = false;
    unsigned esize = surg_dtype_bits(t->dtype) / 8;
    it->storage = storage_entry(o, it, &sbytes);
    if (!it->storage)
        return;
    if (!st_tensor_size(t->dtype, t->rank, t->size, &it->nelems, &it->nbytes, &partial)) {
        error(o, "pt-view", "tensor \"%s\": its size overflows", it->name);
        return;
    }
    it->in_place = true;
    if (!it->nelems)
        return; /* no bytes: anywhere will do */
    char a[128], b[128];
    if (!view_end(t, esize, &end) || end > sbytes) {
        error(o, "pt-view",
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

static surg_status check_names(pt_state *o)
{
    surg_status st = sort_items(o);
    if (st)
        return st;
    for (size_t i = 0; i < o->n; i++) {
        const char *name = o->items[i].name;
        const char *why = tn_problem(name, strlen(name));
        if (i && strcmp(name, o->items[i - 1].name) == 0)
            error(o, "pt-name", "two values of the pickle flatten to the name \"%s\"", name);
        else if (why)
            error(o, "pt-name", "the pickle names a tensor \"%s\", which cannot be a tensor "
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
static surg_status find_ties(pt_state *o, size_t *n_ties)
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
static surg_status tie_pairs(pt_state *o, size_t n_ties, pt_tables *out)
{
    out->ties = ar_array(&o->ck->ar, n_ties ? n_ties : 1, sizeof *out->ties);
    if (!out->ties)
        return dg_nomem(o->sink, o->path);
    for (size_t i = 0; i < o->n; i++)
        if (o->items[i].tied_to)
            out->ties[out->n_ties++] = (surg_meta_entry){o->items[i].name, o->items[i].tied_to};
    return SURG_OK;
}

surg_status pt_ties_meta(surg_ckpt *ck, surg_sink *sink, const surg_meta_entry *ties, size_t n,
                         st_header *h)
{
    if (!n)
        return SURG_OK;
    buf b;
    buf_init(&b);
    buf_putc(&b, '{');
    for (size_t i = 0; i < n; i++) {
        buf_puts(&b, i ? "," : "");
        buf_json_string(&b, ties[i].key);
        buf_putc(&b, ':');
        buf_json_string(&b, ties[i].value);
    }
    buf_putc(&b, '}');
    surg_meta_entry *m = ar_alloc(&ck->ar, sizeof *m);
    char *value = b.failed ? NULL : ar_strdup(&ck->ar, b.data);
    buf_free(&b);
    if (!m || !value)
        return dg_nomem(sink, ck->path);
    *m = (surg_meta_entry){"surg.ties", value};
    h->meta = m;
    h->n_meta = 1;
    return SURG_OK;
}

/* ---- the tables ---------------------------------------------------------- */

static uint64_t *copy_dims(pt_state *o, uint32_t rank, const uint64_t *d)
{
    uint64_t *c = ar_array(&o->ck->ar, rank ? rank : 1, sizeof *c);
    if (c)
        memcpy(c, d, rank * sizeof *c);
    return c;
}

typedef struct tables {
    pt_tables *t;
    uint64_t page;
    uint64_t gathered, gather_limit; /* bytes of the views not in place */
} tables;

static surg_status place(pt_state *o, tables *tb, const pt_item *it)
{
    const pk_tensor *t = it->t;
    uint64_t *shape = copy_dims(o, t->rank, t->size);
    if (!shape)
        return dg_nomem(o->sink, o->path);
    surg_tensor_info info = {it->name, t->dtype, t->rank, shape, it->nelems, it->nbytes};
    if (it->in_place) {
        uint64_t at = it->nbytes ? it->storage->data_at + it->at : 0;
        tb->t->h[0].entries[tb->t->h[0].n++] = (st_entry){info, at, at + it->nbytes};
        return SURG_OK;
    }
    if (it->nbytes > tb->gather_limit - tb->gathered) {
        dg_file(o->sink, SURG_ERROR, "pt-view", o->path,
                "its strided views would make more than %llu bytes out of a file of %llu "
                "(at \"%s\"), more than %u times its size: refused as a bomb",
                (unsigned long long)tb->gather_limit,
                (unsigned long long)o->file->size, it->name, GATHER_RATIO);
        return SURG_EINVALID;
    }
    dc_source *s = ar_alloc(&o->ck->ar, sizeof *s);
    uint64_t *stride = copy_dims(o, t->rank, t->stride);
    if (!s || !stride)
        return dg_nomem(o->sink, o->path);
    unsigned esize = surg_dtype_bits(t->dtype) / 8;
    uint8_t swap = !o->big_endian || esize == 1 ? 0 : t->dtype == SURG_C64 ? 4 : (uint8_t)esize;
    uint64_t end = 0;
    view_end(t, esize, &end); /* checked already */
    *s = (dc_source){.arc = o->arc, .entry = *it->storage, .skip = it->at, .name = it->name,
                     .esize = esize, .swap = swap, .rank = t->rank, .shape = shape,
                     .nbytes = it->nbytes, .stride = stride, .span = end - it->at};
    tb->t->src[tb->t->h[1].n] = s;
    tb->gathered += it->nbytes;
    tb->t->h[1].entries[tb->t->h[1].n++] =
        (st_entry){info, tb->t->scratch_size, tb->t->scratch_size + it->nbytes};
    /* Each in pages of its own, as the NumPy reader places them. */
    uint64_t next = tb->t->scratch_size + it->nbytes;
    tb->t->scratch_size = next + (tb->page - next % tb->page) % tb->page;
    return SURG_OK;
}

static surg_status make_tables(pt_state *o, pt_tables *out)
{
    long page = sysconf(_SC_PAGESIZE);
    tables tb = {.t = out, .page = page > 0 ? (uint64_t)page : 4096};
    uint64_t size = o->file->size;
    tb.gather_limit = size <= (UINT64_MAX - GATHER_SLACK) / GATHER_RATIO
                          ? size * GATHER_RATIO + GATHER_SLACK
                          : UINT64_MAX;
    size_t n_ties = 0;
    surg_status st = find_ties(o, &n_ties);
    size_t n = o->n ? o->n : 1;
    out->h[0].entries = malloc(n * sizeof *out->h[0].entries);
    out->h[1].entries = malloc(n * sizeof *out->h[1].entries);
    out->src = ar_array(&o->ck->ar, n, sizeof *out->src);
    if (!st && (!out->h[0].entries || !out->h[1].entries || !out->src))
        st = dg_nomem(o->sink, o->path);
    for (size_t i = 0; !st && i < o->n; i++)
        if (!o->items[i].tied_to)
            st = place(o, &tb, &o->items[i]);
    return st ? st : tie_pairs(o, n_ties, out);
}

/* ---- opening ------------------------------------------------------------- */

static surg_status read_tensors(pt_state *o, pt_tables *out)
{
    const zip_entry *pkl;
    pk_value *root = NULL;
    surg_status st = find_pickle(o, &pkl);
    if (!st)
        st = read_byteorder(o);
    if (!st)
        st = read_pickle(o, pkl);
    if (!st)
        st = run_pickle(o, &root);
    if (!st)
        st = flatten(o, root);
    for (size_t i = 0; !st && i < o->n; i++)
        check_view(o, &o->items[i]);
    if (!st)
        st = check_names(o);
    if (!st && o->failed)
        st = SURG_EINVALID;
    return st ? st : make_tables(o, out);
}

surg_status pt_read(surg_ckpt *ck, surg_sink *sink, const char *path, st_file *file,
                    pt_tables *out)
{
    *out = (pt_tables){0};
    pt_state o = {.ck = ck, .sink = sink, .path = path, .file = file};
    ar_init(&o.tmp);
    buf_init(&o.name);
    surg_status st = open_file(&o);
    if (!st)
        st = refuse_legacy(&o);
    if (!st)
        st = zip_open(&ck->ar, sink, path, file->fd, file->size, o.arc);
    if (!st) {
        file->bytes_read += o.arc->bytes_read;
        st = read_tensors(&o, out);
    }
    for (size_t i = 0; i < o.n_skipped && i < MAX_SHOWN; i++)
        free(o.skipped[i]);
    buf_free(&o.name);
    free(o.items);
    free(o.pickle);
    ar_free(&o.tmp);
    return st;
}

void pt_tables_free(pt_tables *t)
{
    free(t->h[0].entries);
    free(t->h[1].entries);
    *t = (pt_tables){0};
}

surg_status pt_open(surg_ckpt *ck, surg_sink *sink)
{
    ck->kind = SURG_CKPT_TORCH;
    ck->files = ar_array(&ck->ar, 2, sizeof *ck->files);
    if (!ck->files)
        return dg_nomem(sink, ck->path);
    ck->n_files = 1;
    pt_tables t;
    surg_status st = pt_read(ck, sink, ck->path, &ck->files[0], &t);
    if (!st)
        st = pt_ties_meta(ck, sink, t.ties, t.n_ties, &t.h[0]);
    if (!st)
        st = ck_collect_scratch(ck, sink, t.h, t.src, t.scratch_size);
    pt_tables_free(&t);
    return st;
}

surg_status pt_open_shards(surg_ckpt *ck, surg_sink *sink, const char *const *paths, size_t n)
{
    size_t nf = n ? 2 * n : 1;
    ck->files = ar_array(&ck->ar, nf, sizeof *ck->files);
    st_header *h = calloc(nf, sizeof *h);
    dc_source ***srcs = calloc(nf, sizeof *srcs);
    pt_tables *t = calloc(n ? n : 1, sizeof *t);
    surg_status st = ck->files && h && srcs && t ? SURG_OK : dg_nomem(sink, ck->path);
    size_t n_ties = 0;
    for (size_t i = 0; !st && i < n; i++) {
        ck->n_files = 2 * i + 1; /* closed with the checkpoint, whatever happens */
        st = pt_read(ck, sink, paths[i], &ck->files[2 * i], &t[i]);
        if (!st)
            st = ck_scratch_file(ck, sink, 2 * i + 1, paths[i], t[i].scratch_size);
        if (st)
            break;
        ck->n_files = 2 * i + 2;
        h[2 * i] = t[i].h[0];
        h[2 * i + 1] = t[i].h[1];
        srcs[2 * i + 1] = t[i].src;
        n_ties += t[i].n_ties;
    }
    surg_meta_entry *ties = st ? NULL : malloc((n_ties ? n_ties : 1) * sizeof *ties);
    if (!st && !ties)
        st = dg_nomem(sink, ck->path);
    for (size_t i = 0, k = 0; !st && i < n; k += t[i].n_ties, i++)
        if (t[i].n_ties)
            memcpy(ties + k, t[i].ties, t[i].n_ties * sizeof *ties);
    if (!st && ss_sort(ties, n_ties, sizeof *ties) != 0)
        st = dg_nomem(sink, ck->path);
    if (!st && n)
        st = pt_ties_meta(ck, sink, ties, n_ties, &h[0]);
    if (!st)
        st = ck_collect(ck, sink, h);
    if (!st)
        st = ck_link_decoded(ck, sink, h, (dc_source **const *)srcs);
    for (size_t i = 0; t && i < n; i++)
        pt_tables_free(&t[i]);
    free(ties);
    free(t);
    free(srcs);
    free(h);
    return st;
}
