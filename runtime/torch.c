/* torch.c: the reader of PyTorch's torch.save files (format.h). Since
 * PyTorch 1.6 such a file is a zip archive: <prefix>/data.pkl, the pickled
 * object, and <prefix>/data/<key>, one uncompressed entry per storage.
 * Here: the archive, its pickle read as data (pickle.c), and the table a
 * file opens to; the pickle's tensors are named, their views checked and
 * tied in torch_names.c. A contiguous view is read in place in the
 * archive; any other is gathered into the scratch file when a run needs it
 * (decode.c). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/buf.h"
#include "support/diag.h"
#include "support/readfile.h"
#include "support/strsort.h"
#include "runtime/torch_state.h"

/* Views gathered into the scratch file may make at most this many bytes
 * per byte of the file (deflate's own limit, which the zip reader holds
 * compressed entries to), plus GATHER_SLACK: a stride of 0 repeats
 * elements, so a tiny file could otherwise claim terabytes. */
#define GATHER_RATIO 1032u
#define GATHER_SLACK (16u << 20)

static const char *const extensions[] = {".pth.tar", ".pt", ".pth", ".bin", NULL};

/* The file's name without its folder and extension: a lone tensor's name. */
const char *pt_stem(pt_state *o)
{
    const char *slash = strrchr(o->path, '/');
    const char *base = slash ? slash + 1 : o->path;
    size_t n = strlen(base);
    for (size_t i = 0; extensions[i]; i++) {
        size_t k = strlen(extensions[i]);
        if (n > k && strcmp(base + n - k, extensions[i]) == 0) {
            n -= k;
            break;
        }
    }
    return ar_strndup(o->keep, base, n);
}

void pt_error(pt_state *o, const char *code, const char *fmt, ...)
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
    o->arc = ar_alloc(o->keep, sizeof *o->arc);
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
    o->prefix = ar_strndup(o->keep, (*pkl)->name, o->prefix_len);
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

/* The storage entry of an item: <prefix>data/<key>, stored, exactly as
 * large as the storage's elements. */
const zip_entry *pt_storage_entry(pt_state *o, const pt_item *it, uint64_t *bytes)
{
    const pk_storage *s = it->t->storage;
    if (memchr(s->key, 0, s->key_len) || s->key_len > 4096) {
        pt_error(o, "pt-storage", "tensor \"%s\": its storage key is not a plain name", it->name);
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
        pt_error(o, "pt-storage", "tensor \"%s\": its storage \"%s\" is not in the archive",
                 it->name, name);
    else if (e->method != ZIP_STORED)
        pt_error(o, "pt-storage",
                 "tensor \"%s\": its storage \"%s\" is compressed (torch.save stores storages "
                 "uncompressed, to be read in place): refused",
                 it->name, name);
    else if (s->numel > UINT64_MAX / esize || s->numel * esize != e->usize)
        pt_error(o, "pt-storage",
                 "tensor \"%s\": its storage \"%s\" holds %llu bytes, but the pickle says %llu "
                 "elements of %s",
                 it->name, name, (unsigned long long)e->usize, (unsigned long long)s->numel,
                 surg_dtype_recipe_name(s->dtype));
    else
        *bytes = e->usize;
    free(name);
    return o->failed ? NULL : e;
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

/* ---- the tables ---------------------------------------------------------- */

static uint64_t *copy_dims(pt_state *o, uint32_t rank, const uint64_t *d)
{
    uint64_t *c = ar_array(o->keep, rank ? rank : 1, sizeof *c);
    if (c)
        memcpy(c, d, rank * sizeof *c);
    return c;
}

typedef struct tables {
    fmt_table *t;
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
    dc_source *s = ar_alloc(o->keep, sizeof *s);
    uint64_t *stride = copy_dims(o, t->rank, t->stride);
    if (!s || !stride)
        return dg_nomem(o->sink, o->path);
    unsigned esize = surg_dtype_bits(t->dtype) / 8;
    uint8_t swap = !o->big_endian || esize == 1 ? 0 : t->dtype == SURG_C64 ? 4 : (uint8_t)esize;
    uint64_t end = 0;
    pt_view_end(t, esize, &end); /* checked already */
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

static surg_status make_tables(pt_state *o, fmt_table *out)
{
    long page = sysconf(_SC_PAGESIZE);
    tables tb = {.t = out, .page = page > 0 ? (uint64_t)page : 4096};
    uint64_t size = o->file->size;
    tb.gather_limit = size <= (UINT64_MAX - GATHER_SLACK) / GATHER_RATIO
                          ? size * GATHER_RATIO + GATHER_SLACK
                          : UINT64_MAX;
    size_t n_ties = 0;
    surg_status st = pt_find_ties(o, &n_ties);
    size_t n = o->n ? o->n : 1;
    out->own_entries = true;
    out->h[0].entries = malloc(n * sizeof *out->h[0].entries);
    out->h[1].entries = malloc(n * sizeof *out->h[1].entries);
    out->src = malloc(n * sizeof *out->src);
    if (!st && (!out->h[0].entries || !out->h[1].entries || !out->src))
        st = dg_nomem(o->sink, o->path);
    for (size_t i = 0; !st && i < o->n; i++)
        if (!o->items[i].tied_to)
            st = place(o, &tb, &o->items[i]);
    return st ? st : pt_tie_pairs(o, n_ties, out);
}

/* ---- opening ------------------------------------------------------------- */

static surg_status read_tensors(pt_state *o, fmt_table *out)
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
        st = pt_flatten(o, root);
    for (size_t i = 0; !st && i < o->n; i++)
        pt_check_view(o, &o->items[i]);
    if (!st)
        st = pt_check_names(o);
    if (!st && o->failed)
        st = SURG_EINVALID;
    if (!st)
        st = make_tables(o, out);
    return st ? st : pt_values_meta(o, out);
}

static surg_status read_table(arena *keep, surg_sink *sink, const char *path, fmt_table *out)
{
    st_file *file = &out->file;
    pt_state o = {.keep = keep, .sink = sink, .path = path, .file = file};
    ar_init(&o.tmp);
    buf_init(&o.name);
    buf_init(&o.values);
    surg_status st = open_file(&o);
    if (!st)
        st = refuse_legacy(&o);
    if (!st)
        st = zip_open(keep, sink, path, file->fd, file->size, o.arc);
    if (!st) {
        file->bytes_read += o.arc->bytes_read;
        st = read_tensors(&o, out);
    }
    for (size_t i = 0; i < o.n_skipped && i < PT_MAX_SHOWN; i++)
        free(o.skipped[i]);
    buf_free(&o.name);
    buf_free(&o.values);
    free(o.items);
    free(o.pickle);
    ar_free(&o.tmp);
    return st;
}

const fmt_reader fmt_torch = {
    .id = "torch",
    .suffixes = extensions,
    .open = read_table,
    .called = "a PyTorch .pt, .pth or .bin",
    .dir_file = "pytorch_model.bin",
    .shards = true,
    .paths_meta = PT_VALUES_KEY,
    .unwritten = "surg reads PyTorch files but does not write them: write a .safetensors "
                 "(torch reads it with safetensors.torch.load_file) or an .npz",
};
