/* zip.c: the zip reader (see zip.h). Layouts from APPNOTE 6.3: the end of
 * central directory record (EOCD) closes the file, optionally preceded by a
 * ZIP64 end record and its locator; the central directory lists every entry
 * with its sizes, CRC and local header offset (ZIP64 extra field 0x0001 when
 * a field is saturated); each local header precedes its entry's data. */
#include "runtime/zip.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "support/diag.h"
#include "support/readfile.h"
#include "support/strsort.h"

enum {
    MAX_COMMENT = 65535,
    IN_BUF = 64 << 10,
};

/* Deflate codes each match of at most 258 bytes in at least 2 bits. */
#define DEFLATE_MAX_RATIO 1032u

#define FAIL(sink, z, code, ...) (dg_file(sink, SURG_ERROR, code, (z)->path, __VA_ARGS__), SURG_EINVALID)

static uint16_t le16(const unsigned char *b) { return (uint16_t)(b[0] | b[1] << 8); }
static uint32_t le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static uint64_t le64(const unsigned char *b) { return le32(b) | (uint64_t)le32(b + 4) << 32; }

static surg_status read_at(zip_archive *z, surg_sink *sink, void *dst, size_t len, uint64_t off)
{
    z->bytes_read += len;
    return rf_read_exact(sink, z->path, z->fd, dst, len, off);
}

/* ---- the end records --------------------------------------------------- */

typedef struct dir_place {
    uint64_t n, at, size; /* entries, where the directory starts, its bytes */
    uint64_t end;         /* where the end records start: the directory ends at or before it */
} dir_place;

/* The EOCD is the last record: its comment must end exactly at the end of
 * the file, so a signature inside the comment cannot be taken for it. */
static surg_status find_eocd(zip_archive *z, surg_sink *sink, unsigned char *tail, size_t n,
                             size_t *at)
{
    for (size_t i = n - ZIP_EOCD_SIZE + 1; i-- > 0;)
        if (le32(tail + i) == ZIP_SIG_EOCD && i + ZIP_EOCD_SIZE + le16(tail + i + 20) == n) {
            *at = i;
            return SURG_OK;
        }
    return FAIL(sink, z, "zip-no-end",
                "not a zip archive: no end of central directory record at its end "
                "(is it truncated?)");
}

static surg_status read_zip64_end(zip_archive *z, surg_sink *sink, uint64_t locator_at,
                                  const unsigned char *loc, dir_place *d)
{
    uint64_t at = le64(loc + 8);
    if (le32(loc + 4) != 0 || le32(loc + 16) != 1)
        return FAIL(sink, z, "zip-multi-disk", "archives spanning several disks are not read");
    if (at > locator_at || locator_at - at < ZIP_EOCD64_SIZE)
        return FAIL(sink, z, "zip-bad-end",
                    "the ZIP64 end record's offset %llu is not before its locator",
                    (unsigned long long)at);
    unsigned char r[ZIP_EOCD64_SIZE];
    surg_status st = read_at(z, sink, r, sizeof r, at);
    if (st)
        return st;
    if (le32(r) != ZIP_SIG_EOCD64)
        return FAIL(sink, z, "zip-bad-end", "no ZIP64 end record where its locator points (%llu)",
                    (unsigned long long)at);
    if (le32(r + 16) != 0 || le32(r + 20) != 0 || le64(r + 24) != le64(r + 32))
        return FAIL(sink, z, "zip-multi-disk", "archives spanning several disks are not read");
    d->n = le64(r + 32);
    d->size = le64(r + 40);
    d->at = le64(r + 48);
    d->end = at;
    return SURG_OK;
}

static surg_status read_end(zip_archive *z, surg_sink *sink, dir_place *d)
{
    if (z->size < ZIP_EOCD_SIZE)
        return FAIL(sink, z, "zip-no-end",
                    "not a zip archive: %llu bytes, fewer than an end of central directory "
                    "record",
                    (unsigned long long)z->size);
    size_t n = z->size < ZIP_EOCD_SIZE + MAX_COMMENT + ZIP_LOCATOR_SIZE
                   ? (size_t)z->size
                   : ZIP_EOCD_SIZE + MAX_COMMENT + ZIP_LOCATOR_SIZE;
    unsigned char *tail = malloc(n);
    if (!tail)
        return dg_nomem(sink, z->path);
    uint64_t base = z->size - n;
    size_t at = 0;
    surg_status st = read_at(z, sink, tail, n, base);
    if (!st)
        st = find_eocd(z, sink, tail, n, &at);
    if (st) {
        free(tail);
        return st;
    }
    const unsigned char *e = tail + at;
    *d = (dir_place){le16(e + 10), le32(e + 16), le32(e + 12), base + at};
    bool multi = le16(e + 4) != 0 || le16(e + 6) != 0 || le16(e + 8) != le16(e + 10);
    if (at >= ZIP_LOCATOR_SIZE && le32(e - ZIP_LOCATOR_SIZE) == ZIP_SIG_LOCATOR) {
        unsigned char loc[ZIP_LOCATOR_SIZE];
        memcpy(loc, e - ZIP_LOCATOR_SIZE, sizeof loc);
        free(tail);
        return read_zip64_end(z, sink, base + at - ZIP_LOCATOR_SIZE, loc, d);
    }
    free(tail);
    if (multi)
        return FAIL(sink, z, "zip-multi-disk", "archives spanning several disks are not read");
    return SURG_OK;
}

/* ---- the central directory --------------------------------------------- */

/* The ZIP64 extra field holds, in this order, each of the four fields that
 * is saturated in the fixed part. */
static surg_status zip64_fields(zip_archive *z, surg_sink *sink, const unsigned char *x,
                                size_t len, zip_entry *e, uint32_t *disk, const char *name)
{
    bool want[4] = {e->usize == 0xFFFFFFFFu, e->csize == 0xFFFFFFFFu,
                    e->header_at == 0xFFFFFFFFu, *disk == 0xFFFFu};
    if (!want[0] && !want[1] && !want[2] && !want[3])
        return SURG_OK;
    for (size_t i = 0; i + 4 <= len;) {
        uint16_t id = le16(x + i), sz = le16(x + i + 2);
        if (i + 4 + sz > len)
            break;
        if (id == 0x0001) {
            const unsigned char *p = x + i + 4, *end = p + sz;
            uint64_t *dst[3] = {&e->usize, &e->csize, &e->header_at};
            for (int k = 0; k < 3; k++)
                if (want[k]) {
                    if (end - p < 8)
                        return FAIL(sink, z, "zip-bad-directory",
                                    "entry \"%s\": its ZIP64 extra field is too short", name);
                    *dst[k] = le64(p);
                    p += 8;
                }
            if (want[3]) {
                if (end - p < 4)
                    return FAIL(sink, z, "zip-bad-directory",
                                "entry \"%s\": its ZIP64 extra field is too short", name);
                *disk = le32(p);
            }
            return SURG_OK;
        }
        i += 4 + (size_t)sz;
    }
    return FAIL(sink, z, "zip-bad-directory",
                "entry \"%s\": a size or offset says ZIP64 but there is no ZIP64 extra field",
                name);
}

static surg_status check_entry(zip_archive *z, surg_sink *sink, const zip_entry *e)
{
    if (e->flags & 0x41)
        return FAIL(sink, z, "zip-encrypted", "entry \"%s\" is encrypted", e->name);
    if (e->method != ZIP_STORED && e->method != ZIP_DEFLATED)
        return FAIL(sink, z, "zip-method",
                    "entry \"%s\" uses compression method %u: only stored (0) and deflated "
                    "(8) entries are read",
                    e->name, e->method);
    if (e->method == ZIP_STORED && e->csize != e->usize)
        return FAIL(sink, z, "zip-bad-directory",
                    "entry \"%s\" is stored, but its sizes differ (%llu and %llu bytes)",
                    e->name, (unsigned long long)e->csize, (unsigned long long)e->usize);
    if (e->method == ZIP_DEFLATED && e->usize / DEFLATE_MAX_RATIO > e->csize)
        return FAIL(sink, z, "zip-bomb",
                    "entry \"%s\" claims %llu bytes from %llu deflated bytes, more than "
                    "deflate can produce: refused as a zip bomb",
                    e->name, (unsigned long long)e->usize, (unsigned long long)e->csize);
    return SURG_OK;
}

static surg_status parse_entry(zip_archive *z, surg_sink *sink, arena *ar,
                               const unsigned char *p, size_t left, size_t *used, zip_entry *e)
{
    if (left < ZIP_CDIR_SIZE || le32(p) != ZIP_SIG_CDIR)
        return FAIL(sink, z, "zip-bad-directory",
                    "the central directory is malformed: entry %zu is not a directory "
                    "record",
                    (size_t)(e - z->entries) + 1);
    size_t nlen = le16(p + 28), xlen = le16(p + 30), clen = le16(p + 32);
    if (ZIP_CDIR_SIZE + nlen + xlen + clen > left)
        return FAIL(sink, z, "zip-bad-directory",
                    "the central directory is malformed: entry %zu runs past its end",
                    (size_t)(e - z->entries) + 1);
    if (nlen == 0 || memchr(p + ZIP_CDIR_SIZE, 0, nlen))
        return FAIL(sink, z, "zip-bad-name",
                    "entry %zu has an empty name or one holding a NUL byte",
                    (size_t)(e - z->entries) + 1);
    char *name = ar_strndup(ar, (const char *)p + ZIP_CDIR_SIZE, nlen);
    if (!name)
        return dg_nomem(sink, z->path);
    *e = (zip_entry){.name = name, .name_len = (uint32_t)nlen, .method = le16(p + 10),
                     .flags = le16(p + 8), .crc = le32(p + 16), .check_crc = true,
                     .csize = le32(p + 20), .usize = le32(p + 24), .header_at = le32(p + 42)};
    uint32_t disk = le16(p + 34);
    surg_status st = zip64_fields(z, sink, p + ZIP_CDIR_SIZE + nlen, xlen, e, &disk, name);
    if (!st && disk != 0)
        st = FAIL(sink, z, "zip-multi-disk", "entry \"%s\" is on another disk", name);
    if (!st)
        st = check_entry(z, sink, e);
    *used = ZIP_CDIR_SIZE + nlen + xlen + clen;
    return st;
}

static surg_status read_directory(zip_archive *z, surg_sink *sink, arena *ar, const dir_place *d)
{
    if (d->at > d->end || d->size > d->end - d->at)
        return FAIL(sink, z, "zip-bad-directory",
                    "the central directory (%llu bytes at %llu) is not inside the file before "
                    "its end record",
                    (unsigned long long)d->size, (unsigned long long)d->at);
    if (d->n > d->size / ZIP_CDIR_SIZE)
        return FAIL(sink, z, "zip-bad-directory",
                    "the end record claims %llu entries, more than a central directory of %llu "
                    "bytes holds",
                    (unsigned long long)d->n, (unsigned long long)d->size);
    unsigned char *dir = malloc(d->size ? d->size : 1);
    z->entries = ar_array(ar, d->n ? d->n : 1, sizeof *z->entries);
    if (!dir || !z->entries) {
        free(dir);
        return dg_nomem(sink, z->path);
    }
    surg_status st = read_at(z, sink, dir, d->size, d->at);
    size_t off = 0;
    for (uint64_t i = 0; !st && i < d->n; i++) {
        size_t used = 0;
        st = parse_entry(z, sink, ar, dir + off, d->size - off, &used, &z->entries[i]);
        off += used;
        z->n = i + 1;
    }
    free(dir);
    if (!st && off != d->size)
        st = FAIL(sink, z, "zip-bad-directory",
                  "the central directory's %llu entries take %zu bytes, but the end record "
                  "says %llu",
                  (unsigned long long)d->n, off, (unsigned long long)d->size);
    return st;
}

/* ---- local headers, overlaps, names ------------------------------------ */

/* The local header and its name, in one read (the name as long as the
 * directory's: any other length is refused anyway). */
static surg_status read_local(zip_archive *z, surg_sink *sink, zip_entry *e, uint64_t dir_at)
{
    uint64_t len = ZIP_LOCAL_SIZE + (uint64_t)e->name_len;
    if (e->header_at > dir_at || dir_at - e->header_at < len)
        return FAIL(sink, z, "zip-bad-offset",
                    "entry \"%s\": its local header offset %llu is not before the central "
                    "directory",
                    e->name, (unsigned long long)e->header_at);
    unsigned char *h = malloc(len);
    if (!h)
        return dg_nomem(sink, z->path);
    surg_status st = read_at(z, sink, h, len, e->header_at);
    uint64_t nlen = st ? 0 : le16(h + 26), xlen = st ? 0 : le16(h + 28);
    uint64_t data = e->header_at + ZIP_LOCAL_SIZE + nlen + xlen;
    if (st)
        ;
    else if (le32(h) != ZIP_SIG_LOCAL)
        st = FAIL(sink, z, "zip-bad-offset", "entry \"%s\": no local header at offset %llu",
                  e->name, (unsigned long long)e->header_at);
    else if (nlen != e->name_len || memcmp(h + ZIP_LOCAL_SIZE, e->name, nlen) != 0)
        st = FAIL(sink, z, "zip-bad-local",
                  "entry \"%s\": the local header's name differs from the directory's", e->name);
    else if (data > dir_at || dir_at - data < e->csize)
        st = FAIL(sink, z, "zip-bad-offset",
                  "entry \"%s\": its data runs past the central directory (or the end of the "
                  "file)",
                  e->name);
    free(h);
    e->data_at = data;
    return st;
}

static int by_header(const void *a, const void *b)
{
    uint64_t x = (*(const zip_entry *const *)a)->header_at;
    uint64_t y = (*(const zip_entry *const *)b)->header_at;
    return x < y ? -1 : x > y;
}

/* Two entries sharing bytes is how the worst zip bombs multiply their
 * output; no honest writer does it. */
static surg_status check_overlaps(zip_archive *z, surg_sink *sink)
{
    const zip_entry **v = malloc((z->n ? z->n : 1) * sizeof *v);
    if (!v)
        return dg_nomem(sink, z->path);
    for (size_t i = 0; i < z->n; i++)
        v[i] = &z->entries[i];
    qsort(v, z->n, sizeof *v, by_header);
    surg_status st = SURG_OK;
    for (size_t i = 1; i < z->n && !st; i++)
        if (v[i]->header_at < v[i - 1]->data_at + v[i - 1]->csize)
            st = FAIL(sink, z, "zip-overlap", "entries \"%s\" and \"%s\" overlap in the file",
                      v[i - 1]->name, v[i]->name);
    free(v);
    return st;
}

typedef struct named {
    const char *name; /* first: the key ss_sort sorts by */
    const zip_entry *e;
} named;

static surg_status index_names(zip_archive *z, surg_sink *sink, arena *ar)
{
    named *v = malloc((z->n ? z->n : 1) * sizeof *v);
    z->by_name = ar_array(ar, z->n ? z->n : 1, sizeof *z->by_name);
    if (!v || !z->by_name) {
        free(v);
        return dg_nomem(sink, z->path);
    }
    for (size_t i = 0; i < z->n; i++)
        v[i] = (named){z->entries[i].name, &z->entries[i]};
    if (ss_sort(v, z->n, sizeof *v) != 0) {
        free(v);
        return dg_nomem(sink, z->path);
    }
    surg_status st = SURG_OK;
    for (size_t i = 0; i < z->n; i++) {
        if (i && strcmp(v[i].name, v[i - 1].name) == 0 && !st)
            st = FAIL(sink, z, "zip-duplicate", "the archive holds two entries named \"%s\"",
                      v[i].name);
        z->by_name[i] = v[i].e;
    }
    free(v);
    return st;
}

surg_status zip_open(arena *ar, surg_sink *sink, const char *path, int fd, uint64_t size,
                     zip_archive *z)
{
    *z = (zip_archive){.path = path, .fd = fd, .size = size};
    dir_place d = {0};
    surg_status st = read_end(z, sink, &d);
    if (!st)
        st = read_directory(z, sink, ar, &d);
    for (size_t i = 0; !st && i < z->n; i++)
        st = read_local(z, sink, &z->entries[i], d.at);
    if (!st)
        st = check_overlaps(z, sink);
    if (!st)
        st = index_names(z, sink, ar);
    if (st)
        z->n = 0;
    return st;
}

const zip_entry *zip_find(const zip_archive *z, const char *name)
{
    size_t lo = 0, hi = z->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(z->by_name[mid]->name, name);
        if (c == 0)
            return z->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- streams ----------------------------------------------------------- */

surg_status zip_stream_open(zip_stream *s, const zip_archive *z, const zip_entry *e,
                            surg_sink *sink)
{
    *s = (zip_stream){.z = z, .e = e, .in_at = e->data_at, .in_left = e->csize};
    if (e->method != ZIP_DEFLATED)
        return SURG_OK;
    z_stream *zs = calloc(1, sizeof *zs);
    s->in_cap = e->csize < IN_BUF ? (size_t)e->csize + 1 : IN_BUF;
    s->in = malloc(s->in_cap);
    if (!zs || !s->in || inflateInit2(zs, -MAX_WBITS) != Z_OK) {
        free(zs);
        free(s->in);
        s->in = NULL;
        return dg_nomem(sink, z->path);
    }
    s->inflater = zs;
    return SURG_OK;
}

void zip_stream_close(zip_stream *s)
{
    if (s->inflater) {
        inflateEnd(s->inflater);
        free(s->inflater);
    }
    free(s->in);
    *s = (zip_stream){0};
}

static surg_status stream_fail(zip_stream *s, surg_sink *sink, const char *code, const char *what)
{
    dg_file(sink, SURG_ERROR, code, s->z->path, "entry \"%s\": %s", s->e->name, what);
    return SURG_EINVALID;
}

/* At the end of the entry: the CRC of everything given must match. */
static surg_status check_end(zip_stream *s, surg_sink *sink)
{
    if (s->e->check_crc && s->crc != s->e->crc) {
        dg_file(sink, SURG_ERROR, "zip-crc", s->z->path,
                "entry \"%s\": CRC-32 mismatch (the data says %08x, the directory %08x): "
                "the archive is corrupt",
                s->e->name, s->crc, s->e->crc);
        return SURG_EINVALID;
    }
    return SURG_OK;
}

static surg_status read_stored(zip_stream *s, surg_sink *sink, void *dst, size_t len, size_t *got)
{
    size_t n = len < s->in_left ? len : (size_t)s->in_left;
    surg_status st = rf_read_exact(sink, s->z->path, s->z->fd, dst, n, s->in_at);
    if (st)
        return st;
    s->in_at += n;
    s->in_left -= n;
    s->out += n;
    s->crc = (uint32_t)crc32_z(s->crc, dst, n);
    *got = n;
    return SURG_OK;
}

/* Feed the inflater when it has used what it had. */
static surg_status refill(zip_stream *s, surg_sink *sink, z_stream *zs)
{
    if (zs->avail_in || !s->in_left)
        return SURG_OK;
    size_t n = s->in_left < s->in_cap ? (size_t)s->in_left : s->in_cap;
    surg_status st = rf_read_exact(sink, s->z->path, s->z->fd, s->in, n, s->in_at);
    if (st)
        return st;
    s->in_at += n;
    s->in_left -= n;
    zs->next_in = s->in;
    zs->avail_in = (uInt)n;
    return SURG_OK;
}

/* One inflate step into [dst, dst + room); the output is bounded by the
 * caller, so a stream that runs on is caught, never followed. */
static surg_status inflate_some(zip_stream *s, surg_sink *sink, unsigned char *dst, size_t room,
                                size_t *made)
{
    z_stream *zs = s->inflater;
    surg_status st = refill(s, sink, zs);
    if (st)
        return st;
    zs->next_out = dst;
    zs->avail_out = (uInt)room;
    bool had_input = zs->avail_in > 0;
    int rc = inflate(zs, Z_NO_FLUSH);
    *made = room - zs->avail_out;
    if (rc == Z_STREAM_END)
        s->ended = true;
    else if (rc == Z_MEM_ERROR)
        return dg_nomem(sink, s->z->path);
    else if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT || rc == Z_STREAM_ERROR) {
        dg_file(sink, SURG_ERROR, "zip-corrupt", s->z->path,
                "entry \"%s\": the deflated data is corrupt (%s)", s->e->name,
                zs->msg ? zs->msg : "invalid deflate data");
        return SURG_EINVALID;
    }
    else if (rc == Z_BUF_ERROR && !had_input && !s->in_left)
        return stream_fail(s, sink, "zip-truncated",
                           "the deflated data ends before the size the directory claims");
    return SURG_OK;
}

static surg_status read_deflated(zip_stream *s, surg_sink *sink, void *dst, size_t len,
                                 size_t *got)
{
    uint64_t left = s->e->usize - s->out;
    size_t want = len < left ? len : (size_t)left;
    if (want > (1u << 30))
        want = 1u << 30;
    size_t made = 0;
    if (s->out == s->e->usize && s->ended)
        return SURG_OK;
    while (!made && want) {
        if (s->ended)
            return stream_fail(s, sink, "zip-truncated",
                               "the deflated data gives fewer bytes than the directory claims");
        surg_status st = inflate_some(s, sink, dst, want, &made);
        if (st)
            return st;
    }
    s->out += made;
    s->crc = (uint32_t)crc32_z(s->crc, dst, made);
    *got = made;
    if (s->out < s->e->usize)
        return SURG_OK;
    /* Every claimed byte given: the stream must end here, not run on. */
    while (!s->ended) {
        unsigned char extra;
        size_t more = 0;
        surg_status st = inflate_some(s, sink, &extra, 1, &more);
        if (st)
            return st;
        if (more)
            return stream_fail(s, sink, "zip-bomb",
                               "the deflated data inflates to more bytes than the directory "
                               "claims: refused as a zip bomb");
    }
    return SURG_OK;
}

surg_status zip_stream_read(zip_stream *s, surg_sink *sink, void *dst, size_t len, size_t *got)
{
    *got = 0;
    if (s->done || !len)
        return SURG_OK;
    surg_status st = s->e->method == ZIP_DEFLATED ? read_deflated(s, sink, dst, len, got)
                                                  : read_stored(s, sink, dst, len, got);
    if (!st && s->out == s->e->usize && (s->ended || s->e->method != ZIP_DEFLATED)) {
        s->done = true;
        st = check_end(s, sink);
    }
    return st;
}

surg_status zip_stream_read_exact(zip_stream *s, surg_sink *sink, void *dst, size_t len)
{
    unsigned char *p = dst;
    while (len) {
        size_t got;
        surg_status st = zip_stream_read(s, sink, p, len, &got);
        if (st)
            return st;
        if (!got)
            return stream_fail(s, sink, "zip-truncated", "the entry ends early");
        p += got;
        len -= got;
    }
    return SURG_OK;
}
