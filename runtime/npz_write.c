/* npz_write.c: the .npz writer (see npz_write.h). Each entry: a local header
 * (its extra field pads it so the .npy header, and so the data, starts on a
 * 64-byte boundary), the .npy header NumPy would write, the data. Entries
 * are stored, dated 1980-01-01 (the same input gives the same bytes), and
 * carry the UTF-8 flag when their name needs it. */
#include "runtime/npz_write.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "support/diag.h"
#include "runtime/format.h"
#include "runtime/npy.h"
#include "support/tensor_name.h"
#include "runtime/zip.h"

enum {
    ALIGN = 64,
    PAD_ID = 0xD935, /* the alignment padding field of Android's zipalign */
    DOS_DATE = (0 << 9) | (1 << 5) | 1, /* 1980-01-01 */
    MADE_BY = (3 << 8) | 45,            /* Unix, APPNOTE 4.5 */
};

#define MAX32 0xFFFFFFFFull

typedef struct nzw_entry {
    size_t t;          /* which tensor */
    uint64_t header_at;
    uint64_t npy_at;   /* its .npy header */
    uint64_t data_at;
    uint64_t usize;    /* .npy header + data */
    uint32_t name_len;
    uint16_t extra_len; /* of the local header */
    bool zip64;        /* sizes in a ZIP64 extra field */
    uint32_t npy_crc, npy_len;
    uint32_t data_crc;
    bool has_crc;
} nzw_entry;

typedef struct nzw_layout {
    nzw_entry *e;   /* in file order */
    size_t n;
    size_t *entry_of; /* per tensor */
    uint64_t cd_at, cd_size, end_size;
    bool zip64_end;
} nzw_layout;

static void put16(unsigned char *p, uint64_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, uint64_t v)
{
    put16(p, v);
    put16(p + 2, v >> 16);
}
static void put64(unsigned char *p, uint64_t v)
{
    put32(p, v);
    put32(p + 4, v >> 32);
}


static bool ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

static bool npy_holds(surg_dtype dt) { return npy_descr(dt) != NULL; }

static surg_status check_dtypes(surg_sink *sink, const char *out_path, const stw_output *out)
{
    return stw_refuse_dtypes(sink, "npz-dtype", out_path, out, npy_holds, ".npy cannot hold");
}

/* Place entry e at `at`: its local header, padding, .npy header, data. */
static uint64_t place(nzw_entry *e, const surg_tensor_info *t, uint64_t at, bool force64)
{
    buf npy;
    buf_init(&npy);
    npy_write_header(&npy, t->dtype, t->rank, t->shape);
    e->npy_len = (uint32_t)npy.len;
    e->npy_crc = (uint32_t)crc32_z(0, (const unsigned char *)npy.data, npy.len);
    buf_free(&npy);
    e->name_len = (uint32_t)strlen(t->name) + 4;
    e->usize = e->npy_len + t->nbytes;
    e->zip64 = force64 || e->usize >= MAX32;
    e->header_at = at;
    uint64_t fixed = at + ZIP_LOCAL_SIZE + e->name_len + (e->zip64 ? 20 : 0);
    uint64_t pad = (ALIGN - fixed % ALIGN) % ALIGN;
    if (pad && pad < 6)
        pad += ALIGN;
    e->extra_len = (uint16_t)((e->zip64 ? 20 : 0) + pad);
    e->npy_at = fixed + pad;
    e->data_at = e->npy_at + e->npy_len;
    return e->data_at + t->nbytes;
}

static uint64_t cd_entry_size(const nzw_entry *e, bool force64)
{
    uint64_t x = (e->zip64 ? 16 : 0) + (force64 || e->header_at >= MAX32 ? 8 : 0);
    return ZIP_CDIR_SIZE + e->name_len + (x ? 4 + x : 0);
}

static surg_status nzw_layout_make(surg_sink *sink, const char *out_path, const stw_output *out,
                            stw_layout *lay)
{
    if (out->max_shard_size) {
        dg_file(sink, SURG_ERROR, "npz-sharded", out_path,
                "an .npz is one file: --max-shard-size writes safetensors shards");
        return SURG_EUSAGE;
    }
    surg_status st = check_dtypes(sink, out_path, out);
    if (st)
        return st;
    stw_warn_metadata(sink, out_path, out, "npz-metadata", ".npz holds arrays only", NULL);
    nzw_layout *z = calloc(1, sizeof *z);
    lay->state = z;
    if (!z)
        return dg_nomem(sink, out_path);
    st = stw_one_file(lay, sink, out_path);
    if (st)
        return st;
    z->n = out->n;
    z->e = calloc(out->n ? out->n : 1, sizeof *z->e);
    z->entry_of = calloc(out->n ? out->n : 1, sizeof *z->entry_of);
    stw_file *f = &lay->files[0];
    if (!z->e || !z->entry_of)
        return dg_nomem(sink, out_path);
    uint64_t at = 0;
    for (size_t i = 0; i < out->n; i++) {
        size_t t = lay->order[i];
        nzw_entry *e = &z->e[i];
        e->t = t;
        z->entry_of[t] = i;
        f->idx[f->n++] = t;
        at = place(e, &out->tensors[t], at, out->force_zip64);
        lay->file_of[t] = 0;
        lay->offset[t] = e->data_at;
    }
    z->cd_at = at;
    for (size_t i = 0; i < z->n; i++)
        z->cd_size += cd_entry_size(&z->e[i], out->force_zip64);
    z->zip64_end = out->force_zip64 || z->n >= 0xFFFF || z->cd_at >= MAX32 ||
                   z->cd_size >= MAX32;
    z->end_size = ZIP_EOCD_SIZE + (z->zip64_end ? ZIP_EOCD64_SIZE + ZIP_LOCATOR_SIZE : 0);
    f->size = z->cd_at + z->cd_size + z->end_size;
    return SURG_OK;
}

static void local_header(unsigned char *p, const nzw_entry *e, const char *name, uint32_t crc)
{
    put32(p, ZIP_SIG_LOCAL);
    put16(p + 4, e->zip64 ? 45 : 20);
    put16(p + 6, ascii(name) ? 0 : 0x800);
    put16(p + 8, 0);
    put16(p + 10, 0);
    put16(p + 12, DOS_DATE);
    put32(p + 14, crc);
    put32(p + 18, e->zip64 ? MAX32 : e->usize);
    put32(p + 22, e->zip64 ? MAX32 : e->usize);
    put16(p + 26, e->name_len);
    put16(p + 28, e->extra_len);
    unsigned char *q = p + ZIP_LOCAL_SIZE;
    memcpy(q, name, e->name_len - 4);
    memcpy(q + e->name_len - 4, ".npy", 4);
    q += e->name_len;
    unsigned pad = e->extra_len;
    if (e->zip64) {
        put16(q, 1);
        put16(q + 2, 16);
        put64(q + 4, e->usize);
        put64(q + 12, e->usize);
        q += 20;
        pad -= 20;
    }
    if (pad) {
        put16(q, PAD_ID);
        put16(q + 2, pad - 4);
        put16(q + 4, ALIGN);
        memset(q + 6, 0, pad - 6);
    }
}

static surg_status nzw_layout_open(stw_layout *lay, surg_sink *sink)
{
    nzw_layout *z = lay->state;
    of_file *of = lay->files[0].of;
    buf b;
    buf_init(&b);
    surg_status st = SURG_OK;
    for (size_t i = 0; i < z->n && !st; i++) {
        const nzw_entry *e = &z->e[i];
        const surg_tensor_info *t = &lay->out->tensors[e->t];
        size_t head = ZIP_LOCAL_SIZE + e->name_len + e->extra_len;
        b.len = 0;
        while (b.len < head && !b.failed)
            buf_putc(&b, 0);
        npy_write_header(&b, t->dtype, t->rank, t->shape);
        if (b.failed) {
            st = dg_nomem(sink, lay->files[0].path);
            break;
        }
        local_header((unsigned char *)b.data, e, t->name, 0); /* the CRC comes last */
        st = of_pwrite(of, sink, b.data, b.len, e->header_at);
    }
    buf_free(&b);
    return st;
}

static void nzw_set_crc(stw_layout *lay, size_t i, uint32_t crc)
{
    nzw_layout *z = lay->state;
    nzw_entry *e = &z->e[z->entry_of[i]];
    e->data_crc = crc;
    e->has_crc = true;
}

/* The CRC of bytes already in the file. */
static surg_status crc_back(of_file *of, surg_sink *sink, const char *path, uint64_t at,
                            uint64_t len, uint32_t *crc)
{
    enum { CHUNK = 1 << 20 };
    unsigned char *b = malloc(CHUNK);
    if (!b)
        return dg_nomem(sink, path);
    uLong c = crc32_z(0, NULL, 0);
    surg_status st = SURG_OK;
    while (len && !st) {
        size_t want = len < CHUNK ? (size_t)len : CHUNK;
        ssize_t n = pread(of_fd(of), b, want, (off_t)at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            st = n ? dg_errno(sink, path, "cannot read back the output", errno)
                   : dg_errno(sink, path, "cannot read back the output", EIO);
            break;
        }
        c = crc32_z(c, b, (size_t)n);
        at += (uint64_t)n;
        len -= (uint64_t)n;
    }
    free(b);
    *crc = (uint32_t)c;
    return st;
}

/* Repeated arrays (tied names) are copies of their tensor's bytes, made
 * inside the file, with its CRC. */
static surg_status fill_data(stw_layout *lay, surg_sink *sink)
{
    nzw_layout *z = lay->state;
    of_file *of = lay->files[0].of;
    const char *path = lay->files[0].path;
    const size_t *same = lay->out->same_as;
    surg_status st = SURG_OK;
    for (size_t i = 0; i < z->n && !st; i++) {
        nzw_entry *e = &z->e[i];
        size_t from = same ? same[e->t] : SIZE_MAX;
        uint64_t len = lay->out->tensors[e->t].nbytes;
        if (from != SIZE_MAX) {
            const nzw_entry *src = &z->e[z->entry_of[from]];
            st = of_copy_at(of, sink, of_fd(of), src->data_at, len, e->data_at);
            if (!st && src->has_crc) {
                e->data_crc = src->data_crc;
                e->has_crc = true;
            }
        }
        if (!st && !e->has_crc)
            st = crc_back(of, sink, path, e->data_at, len, &e->data_crc);
        e->has_crc = !st;
    }
    return st;
}

static uint32_t entry_crc(const nzw_entry *e, uint64_t nbytes)
{
    return (uint32_t)crc32_combine(e->npy_crc, e->data_crc, (z_off_t)nbytes);
}

static void cd_entry(buf *b, const nzw_entry *e, const char *name, uint32_t crc, bool force64)
{
    bool off64 = force64 || e->header_at >= MAX32;
    uint16_t x = (uint16_t)((e->zip64 ? 16 : 0) + (off64 ? 8 : 0));
    unsigned char p[ZIP_CDIR_SIZE + 4 + 24];
    put32(p, ZIP_SIG_CDIR);
    put16(p + 4, MADE_BY);
    put16(p + 6, e->zip64 || off64 ? 45 : 20);
    put16(p + 8, ascii(name) ? 0 : 0x800);
    put16(p + 10, 0);
    put16(p + 12, 0);
    put16(p + 14, DOS_DATE);
    put32(p + 16, crc);
    put32(p + 20, e->zip64 ? MAX32 : e->usize);
    put32(p + 24, e->zip64 ? MAX32 : e->usize);
    put16(p + 28, e->name_len);
    put16(p + 30, x ? 4 + x : 0);
    put16(p + 32, 0);
    put16(p + 34, 0);
    put16(p + 36, 0);
    put32(p + 38, (uint64_t)0100644 << 16);
    put32(p + 42, off64 ? MAX32 : e->header_at);
    buf_append(b, p, ZIP_CDIR_SIZE);
    buf_append(b, name, e->name_len - 4);
    buf_append(b, ".npy", 4);
    if (!x)
        return;
    unsigned char *q = p + ZIP_CDIR_SIZE;
    size_t k = 4;
    put16(q, 1);
    put16(q + 2, x);
    if (e->zip64) {
        put64(q + k, e->usize);
        put64(q + k + 8, e->usize);
        k += 16;
    }
    if (off64) {
        put64(q + k, e->header_at);
        k += 8;
    }
    buf_append(b, q, k);
}

static void end_records(buf *b, const nzw_layout *z)
{
    unsigned char p[ZIP_EOCD64_SIZE + ZIP_LOCATOR_SIZE + ZIP_EOCD_SIZE] = {0};
    unsigned char *q = p;
    if (z->zip64_end) {
        put32(q, ZIP_SIG_EOCD64);
        put64(q + 4, ZIP_EOCD64_SIZE - 12);
        put16(q + 12, MADE_BY);
        put16(q + 14, 45);
        put64(q + 24, z->n);
        put64(q + 32, z->n);
        put64(q + 40, z->cd_size);
        put64(q + 48, z->cd_at);
        q += ZIP_EOCD64_SIZE;
        put32(q, ZIP_SIG_LOCATOR);
        put64(q + 8, z->cd_at + z->cd_size);
        put32(q + 16, 1);
        q += ZIP_LOCATOR_SIZE;
    }
    uint64_t n = z->n < 0xFFFF ? z->n : 0xFFFF;
    put32(q, ZIP_SIG_EOCD);
    put16(q + 8, n);
    put16(q + 10, n);
    put32(q + 12, z->cd_size < MAX32 ? z->cd_size : MAX32);
    put32(q + 16, z->cd_at < MAX32 ? z->cd_at : MAX32);
    q += ZIP_EOCD_SIZE;
    buf_append(b, p, (size_t)(q - p));
}

static surg_status nzw_layout_finish(stw_layout *lay, surg_sink *sink)
{
    nzw_layout *z = lay->state;
    of_file *of = lay->files[0].of;
    surg_status st = fill_data(lay, sink);
    buf cd;
    buf_init(&cd);
    for (size_t i = 0; i < z->n && !st; i++) {
        const nzw_entry *e = &z->e[i];
        const surg_tensor_info *t = &lay->out->tensors[e->t];
        uint32_t crc = entry_crc(e, t->nbytes);
        unsigned char c[4];
        put32(c, crc);
        st = of_pwrite(of, sink, c, 4, e->header_at + 14);
        cd_entry(&cd, e, t->name, crc, lay->out->force_zip64);
    }
    end_records(&cd, z);
    if (!st && cd.failed)
        st = dg_nomem(sink, lay->files[0].path);
    if (!st)
        st = of_pwrite(of, sink, cd.data, cd.len, z->cd_at);
    buf_free(&cd);
    return st;
}

static void nzw_layout_free(stw_layout *lay)
{
    nzw_layout *z = lay->state;
    if (!z)
        return;
    free(z->e);
    free(z->entry_of);
    free(z);
    lay->state = NULL;
}

const stw_writer nzw_writer = {
    .make = nzw_layout_make,
    .open = nzw_layout_open,
    .finish = nzw_layout_finish,
    .set_crc = nzw_set_crc,
    .free = nzw_layout_free,
};
