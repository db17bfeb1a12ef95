/* npz.c: NumPy's .npz (a zip archive of .npy arrays, stored or deflated) and
 * a single .npy file, opened as checkpoints. Only headers are read: the
 * archive's directory and local headers, and each array's .npy header (for
 * a deflated entry, the first few hundred bytes of its stream). An array
 * stored little-endian in C order is read in place, at its offset in the
 * archive; any other is decoded on demand into the checkpoint's scratch
 * file (decode.c), where the tensor's table entry points from the start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "diag.h"
#include "npy.h"
#include "readfile.h"
#include "tensor_name.h"

enum { FIRST_READ = 256 };

typedef struct npz_open_state {
    surg_ckpt *ck;
    surg_sink *sink;
    zip_archive *arc;
    st_header h[2];         /* read in place (file 0), decoded (file 1: scratch) */
    size_t cap[2];
    dc_source **src;        /* per entry of h[1] */
    uint64_t scratch_size;  /* page-aligned places */
    uint64_t page;
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

static st_entry *add_entry(npz_open_state *o, int which)
{
    st_header *h = &o->h[which];
    if (h->n == o->cap[which]) {
        size_t cap = o->cap[which] ? o->cap[which] * 2 : 16;
        st_entry *v = realloc(h->entries, cap * sizeof *v);
        dc_source **s = which ? realloc(o->src, cap * sizeof *s) : NULL;
        if (v)
            h->entries = v;
        if (s)
            o->src = s;
        if (!v || (which && !s))
            return NULL;
        o->cap[which] = cap;
    }
    return &h->entries[h->n++];
}

static surg_status add_array(npz_open_state *o, const zip_entry *e, const char *name,
                             const npy_header *h)
{
    surg_ckpt *ck = o->ck;
    uint64_t *shape = ar_array(&ck->ar, h->rank ? h->rank : 1, sizeof *shape);
    if (!shape)
        return dg_nomem(o->sink, o->arc->path);
    memcpy(shape, h->shape, h->rank * sizeof *shape);
    surg_tensor_info info = {name, h->dtype, h->rank, shape, h->nelems, h->nbytes};
    bool fortran = really_fortran(h);
    bool in_place = !h->nbytes || (e->method == ZIP_STORED && !h->swap && !fortran);
    st_entry *x = add_entry(o, in_place ? 0 : 1);
    if (!x)
        return dg_nomem(o->sink, o->arc->path);
    if (in_place) {
        *x = (st_entry){info, e->data_at + h->data_at, e->data_at + h->data_at + h->nbytes};
        return SURG_OK;
    }
    dc_source *s = ar_alloc(&ck->ar, sizeof *s);
    if (!s)
        return dg_nomem(o->sink, o->arc->path);
    *s = (dc_source){.arc = o->arc, .entry = *e, .skip = h->data_at, .name = name,
                     .esize = surg_dtype_bits(h->dtype) / 8, .swap = h->swap,
                     .fortran = fortran, .rank = h->rank, .shape = shape, .nbytes = h->nbytes};
    o->src[o->h[1].n - 1] = s;
    *x = (st_entry){info, o->scratch_size, o->scratch_size + h->nbytes};
    /* Each in pages of its own, so a mapping made before a tensor is
     * decoded never holds a stale page of it. */
    uint64_t end = o->scratch_size + h->nbytes;
    o->scratch_size = end + (o->page - end % o->page) % o->page;
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
    char *name = ar_strndup(&o->ck->ar, e->name, e->name_len - 4);
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

/* files[0] is the archive, files[1] the scratch file (made when a tensor
 * is first decoded). */
static surg_status collect(npz_open_state *o)
{
    return ck_collect_scratch(o->ck, o->sink, o->h, o->src, o->scratch_size);
}

static surg_status open_common(surg_ckpt *ck, surg_sink *sink, surg_ckpt_kind kind,
                               npz_open_state *o)
{
    long page = sysconf(_SC_PAGESIZE);
    *o = (npz_open_state){.ck = ck, .sink = sink, .page = page > 0 ? (uint64_t)page : 4096};
    ck->kind = kind;
    ck->files = ar_array(&ck->ar, 2, sizeof *ck->files);
    o->arc = ar_alloc(&ck->ar, sizeof *o->arc);
    if (!ck->files || !o->arc)
        return dg_nomem(sink, ck->path);
    ck->files[1] = (st_file){.path = ck->path, .fd = -1};
    ck->n_files = 1;
    return st_file_open(sink, ck->path, &ck->files[0]);
}

static surg_status finish(npz_open_state *o, surg_status st)
{
    if (!st && o->failed)
        st = SURG_EINVALID;
    if (!st)
        st = collect(o);
    free(o->h[0].entries);
    free(o->h[1].entries);
    free(o->src);
    return st;
}

surg_status npz_open(surg_ckpt *ck, surg_sink *sink)
{
    npz_open_state o;
    surg_status st = open_common(ck, sink, SURG_CKPT_NPZ, &o);
    if (!st)
        st = zip_open(&ck->ar, sink, ck->path, ck->files[0].fd, ck->files[0].size, o.arc);
    if (!st)
        ck->files[0].bytes_read = o.arc->bytes_read;
    for (size_t i = 0; !st && i < o.arc->n; i++)
        st = read_entry(&o, &o.arc->entries[i]);
    return finish(&o, st);
}

/* A .npy file is one stored "entry" spanning the file, without a CRC; the
 * tensor is named after the file (its name without directory and ".npy"). */
surg_status npy_open(surg_ckpt *ck, surg_sink *sink)
{
    npz_open_state o;
    surg_status st = open_common(ck, sink, SURG_CKPT_NPY, &o);
    if (st)
        return finish(&o, st);
    const st_file *f = &ck->files[0];
    *o.arc = (zip_archive){.path = ck->path, .fd = f->fd, .size = f->size};
    const char *slash = strrchr(ck->path, '/');
    const char *base = slash ? slash + 1 : ck->path;
    zip_entry *e = ar_alloc(&ck->ar, sizeof *e);
    if (!e)
        return finish(&o, dg_nomem(sink, ck->path));
    *e = (zip_entry){.name = base, .name_len = (uint32_t)strlen(base), .method = ZIP_STORED,
                     .csize = f->size, .usize = f->size};
    return finish(&o, read_entry(&o, e));
}
