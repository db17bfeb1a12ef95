/* npz.c: the NumPy readers (format.h): an .npz (a zip archive of .npy
 * arrays, stored or deflated) and a single .npy file. Only headers are
 * read: the archive's directory and local headers, and each array's .npy
 * header (for a deflated entry, the first few hundred bytes of its stream).
 * An array stored little-endian in C order is read in place, at its offset
 * in the archive; any other is decoded on demand into the scratch file
 * (decode.c), where the tensor's table entry points from the start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/diag.h"
#include "runtime/format.h"
#include "runtime/npy.h"
#include "runtime/npz_write.h"
#include "support/readfile.h"
#include "support/tensor_name.h"

enum { FIRST_READ = 256 };

typedef struct npz_open_state {
    arena *keep;
    surg_sink *sink;
    zip_archive *arc;
    fmt_table *t;  /* h[0] read in place, h[1] decoded (src[k] each) */
    size_t cap[2];
    uint64_t page; /* decoded tensors are placed in pages of their own */
    bool failed;
} npz_open_state;

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* An error about one array: the rest are still read, so all are reported. */
static void array_error(npz_open_state *o, const char *name, const npy_error *err)
{
    dg_file(o->sink, SURG_ERROR, err->code, o->arc->path, "array \"%s\": %s", name, err->msg);
    o->failed = true;
}

/* The .npy preamble and header dict at the start of the entry. */
static surg_status read_npy_header(npz_open_state *o, const zip_entry *e, const char *name,
                                   npy_header *h, bool *ok)
{
    zip_stream z;
    npy_error err = {0};
    unsigned char pre[FIRST_READ]; /* most headers are 128 bytes: one read */
    size_t first = e->usize < sizeof pre ? (size_t)e->usize : sizeof pre;
    char *text = NULL;
    *ok = false;
    surg_status st = zip_stream_open(&z, o->arc, e, o->sink);
    if (st)
        return st;
    st = zip_stream_read_exact(&z, o->sink, pre, first);
    if (st)
        goto done;
    if (!npy_preamble(pre, first, h, &err)) {
        array_error(o, name, &err);
        goto done;
    }
    size_t pre_len = h->major > 1 ? 12 : 10;
    if (h->data_at > e->usize || h->data_at > NPY_MAX_HEADER + pre_len) {
        err = (npy_error){"npy-header", ""};
        snprintf(err.msg, sizeof err.msg, "its .npy header (%llu bytes) runs past the end of %s",
                 (unsigned long long)h->data_at, o->arc->n ? "its entry" : "the file");
        array_error(o, name, &err);
        goto done;
    }
    size_t len = (size_t)h->data_at - pre_len, have = first - pre_len;
    text = malloc(len ? len : 1);
    if (!text) {
        st = dg_nomem(o->sink, o->arc->path);
        goto done;
    }
    memcpy(text, pre + pre_len, have < len ? have : len);
    if (len > have)
        st = zip_stream_read_exact(&z, o->sink, text + have, len - have);
    if (!st && !npy_parse_dict(text, len, h, &err))
        array_error(o, name, &err);
    else if (!st)
        *ok = true;
done:
    free(text);
    zip_stream_close(&z);
    /* A broken stream is this array's problem: the others are still read. */
    if (st == SURG_EINVALID) {
        o->failed = true;
        st = SURG_OK;
    }
    return st;
}

/* Whether Fortran order changes anything: not with at most one axis > 1. */
static bool really_fortran(const npy_header *h)
{
    uint32_t big = 0;
    for (uint32_t d = 0; d < h->rank; d++)
        big += h->shape[d] > 1;
    return h->fortran && big > 1;
}

static surg_status add_array(npz_open_state *o, const zip_entry *e, const char *name,
                             const npy_header *h)
{
    fmt_table *t = o->t;
    uint64_t *shape = ar_array(o->keep, h->rank ? h->rank : 1, sizeof *shape);
    if (!shape)
        return dg_nomem(o->sink, o->arc->path);
    memcpy(shape, h->shape, h->rank * sizeof *shape);
    surg_tensor_info info = {name, h->dtype, h->rank, shape, h->nelems, h->nbytes};
    bool fortran = really_fortran(h);
    bool in_place = !h->nbytes || (e->method == ZIP_STORED && !h->swap && !fortran);
    st_entry *x = fmt_add_entry(o->t, in_place ? 0 : 1, o->cap);
    if (!x)
        return dg_nomem(o->sink, o->arc->path);
    if (in_place) {
        *x = (st_entry){info, e->data_at + h->data_at, e->data_at + h->data_at + h->nbytes};
        return SURG_OK;
    }
    dc_source *s = ar_alloc(o->keep, sizeof *s);
    if (!s)
        return dg_nomem(o->sink, o->arc->path);
    *s = (dc_source){.arc = o->arc, .entry = *e, .skip = h->data_at, .name = name,
                     .esize = surg_dtype_bits(h->dtype) / 8, .swap = h->swap,
                     .fortran = fortran, .rank = h->rank, .shape = shape, .nbytes = h->nbytes};
    t->src[t->h[1].n - 1] = s;
    *x = (st_entry){info, t->scratch_size, t->scratch_size + h->nbytes};
    /* Each in pages of its own, so a mapping made before a tensor is
     * decoded never holds a stale page of it. */
    uint64_t end = t->scratch_size + h->nbytes;
    t->scratch_size = end + (o->page - end % o->page) % o->page;
    return SURG_OK;
}

static surg_status read_entry(npz_open_state *o, const zip_entry *e)
{
    if (e->name[e->name_len - 1] == '/' && e->usize == 0)
        return SURG_OK; /* a directory */
    if (!ends_with(e->name, e->name_len, ".npy")) {
        dg_file(o->sink, SURG_WARNING, "npz-not-array", o->arc->path,
                "entry \"%s\" is not a .npy array: ignored", e->name);
        return SURG_OK;
    }
    char *name = ar_strndup(o->keep, e->name, e->name_len - 4);
    if (!name)
        return dg_nomem(o->sink, o->arc->path);
    const char *why = tn_problem(name, strlen(name));
    if (why) {
        dg_file(o->sink, SURG_ERROR, "npz-name", o->arc->path,
                "entry \"%s\" does not name an array as a tensor may be named: %s", e->name,
                why);
        o->failed = true;
        return SURG_OK;
    }
    npy_header h = {0};
    bool ok;
    surg_status st = read_npy_header(o, e, name, &h, &ok);
    if (st || !ok)
        return st;
    if (e->usize - h.data_at != h.nbytes) {
        dg_file(o->sink, SURG_ERROR, "npz-size", o->arc->path,
                "array \"%s\": %llu elements of %s need %llu bytes, but the %s holds %llu "
                "after its header",
                name, (unsigned long long)h.nelems, surg_dtype_recipe_name(h.dtype),
                (unsigned long long)h.nbytes, o->arc->n ? "entry" : "file",
                (unsigned long long)(e->usize - h.data_at));
        o->failed = true;
        return SURG_OK;
    }
    return add_array(o, e, name, &h);
}

/* The archive (or the .npy file) opened into out->file. The table's
 * arrays are malloc'd, and src is never NULL: these files may need a
 * scratch file. */
static surg_status open_common(arena *keep, surg_sink *sink, const char *path, fmt_table *out,
                               npz_open_state *o)
{
    long page = sysconf(_SC_PAGESIZE);
    *o = (npz_open_state){.keep = keep, .sink = sink, .t = out,
                          .page = page > 0 ? (uint64_t)page : 4096};
    out->own_entries = true;
    out->src = malloc(sizeof *out->src);
    o->arc = ar_alloc(keep, sizeof *o->arc);
    if (!out->src || !o->arc)
        return dg_nomem(sink, path);
    return st_file_open(sink, path, &out->file);
}

static surg_status npz_read(arena *keep, surg_sink *sink, const char *path, fmt_table *out)
{
    npz_open_state o;
    surg_status st = open_common(keep, sink, path, out, &o);
    if (!st)
        st = zip_open(keep, sink, path, out->file.fd, out->file.size, o.arc);
    if (!st)
        out->file.bytes_read = o.arc->bytes_read;
    for (size_t i = 0; !st && i < o.arc->n; i++)
        st = read_entry(&o, &o.arc->entries[i]);
    return !st && o.failed ? SURG_EINVALID : st;
}

/* A .npy file is one stored "entry" spanning the file, without a CRC; the
 * tensor is named after the file (its name without directory and ".npy"). */
static surg_status npy_read(arena *keep, surg_sink *sink, const char *path, fmt_table *out)
{
    npz_open_state o;
    surg_status st = open_common(keep, sink, path, out, &o);
    if (st)
        return st;
    const st_file *f = &out->file;
    *o.arc = (zip_archive){.path = path, .fd = f->fd, .size = f->size};
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    zip_entry *e = ar_alloc(keep, sizeof *e);
    if (!e)
        return dg_nomem(sink, path);
    *e = (zip_entry){.name = base, .name_len = (uint32_t)strlen(base), .method = ZIP_STORED,
                     .csize = f->size, .usize = f->size};
    st = read_entry(&o, e);
    return !st && o.failed ? SURG_EINVALID : st;
}

static const char *const npz_suffixes[] = {".npz", NULL};
static const char *const npy_suffixes[] = {".npy", NULL};

const fmt_reader fmt_npz = {
    .id = "npz",
    .suffixes = npz_suffixes,
    .open = npz_read,
    .called = "a NumPy .npz or .npy",
    .writes = true,
    .writer = &nzw_writer,
    .names = TN_NPZ,
};

const fmt_reader fmt_npy = {
    .id = "npy",
    .suffixes = npy_suffixes,
    .open = npy_read,
    .called = NULL, /* fmt_npz's words name it */
    .unwritten = "a .npy holds one array: write an .npz (or .safetensors) instead",
};
