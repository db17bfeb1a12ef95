/* ocdbt.c: TensorStore's OCDBT key-value database, read only (kvstore.h).
 * Only the root manifest.ocdbt is read, as Orbax reads it; the b+tree of its
 * latest version is walked once at open, without recursion, into a sorted
 * table of keys whose values are bytes kept here or ranges of data files
 * under the root. Every count, length, path and reference is checked
 * against the bytes and the files it points at, each node is read at most
 * once, and the walk is bounded in nodes, keys and bytes, so no input makes
 * it loop or allocate without bound. The format is decoded in
 * docs/design/flax-orbax-formats.md §3; the rules are in docs/formats.md. */
#include "runtime/kvstore.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/codec.h"
#include "support/crc32c.h"
#include "support/diag.h"
#include "support/readfile.h"

#define OC_MAGIC_MANIFEST 0x0cdb3a2au
#define OC_MAGIC_BTREE 0x0cdb20deu
#define OC_MIN_OBJECT 18                      /* magic, length, version, compression, crc */
#define OC_MAX_OBJECT ((uint64_t)256 << 20)   /* encoded or decoded manifest or node */
#define OC_MAX_WORK ((uint64_t)4 << 30)       /* node bytes read and decoded, in all */
#define OC_MAX_KEPT ((uint64_t)512 << 20)     /* keys, values, paths and entries made */
#define OC_MAX_NODES (1u << 20)
#define OC_MAX_KEYS (1u << 24)
#define OC_MAX_ARITY (1u << 20)               /* entries of one node */
#define OC_MAX_INLINE (1u << 20)              /* one inline value */
#define OC_MAX_LEN 65535u                     /* a key, a data file path */
#define OC_MAX_VERSION_NODES 64
#define OC_MISSING UINT64_MAX

/* ---- the store --------------------------------------------------------- */

/* One entry of a data file table: the path relative to the root (the
 * transitive path the node was reached through, then the entry's path),
 * and how much of it the entry's children take as their transitive path. */
typedef struct oc_path {
    const char *rel;
    size_t len, base_len;
} oc_path;

typedef struct oc_table {
    oc_path *files;
    size_t n;
    char *blob;
    uint32_t *ids; /* each entry's data file index + 1, once looked up */
} oc_table;

/* A data file some reference reached: opened once, its size known. */
typedef struct oc_file {
    char *rel, *full;
    uint64_t size;
} oc_file;

typedef struct oc_entry {
    uint64_t key_off, off, len; /* off: into the kept values, or of the file */
    uint32_t key_len, file;     /* file: UINT32_MAX for a value kept here */
} oc_entry;

typedef struct oc_seen {
    uint64_t off;
    uint32_t file; /* + 1; 0 is an empty slot */
} oc_seen;

typedef struct oc_store {
    kv_store base;
    char *root, *manifest;
    surg_sink *sink;
    oc_entry *e;
    size_t n, cap;
    char *keys; /* each key followed by a NUL */
    size_t keys_len, keys_cap;
    unsigned char *vals;
    size_t vals_len, vals_cap;
    oc_file *files;
    size_t nfiles, files_cap;
    uint32_t *slots; /* file index + 1 by hash of the path; 0 empty */
    size_t nslots;
    oc_seen *seen;
    size_t nseen, seen_cap;
    uint64_t work, kept, max_node;
    uint32_t nodes;
    int fd;           /* the last data file opened, kept for the next node */
    uint32_t fd_file;
} oc_store;

/* A place in decoded bytes, with what messages name: the file and where in
 * it ("b-tree node at byte 0: ", or "" for the manifest). */
typedef struct oc_cur {
    const unsigned char *p, *end;
    const char *file, *where;
    surg_sink *sink;
} oc_cur;

static surg_status bad(const oc_cur *c, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static surg_status bad(const oc_cur *c, const char *code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dg_file(c->sink, SURG_ERROR, code, c->file, "%s%s", c->where, msg);
    return SURG_EINVALID;
}

/* Bytes of a key or a path for a message: printable ASCII as is, the rest
 * as \xNN, cut at about 200 characters. */
static const char *shown(char *out, size_t size, const char *s, size_t n)
{
    size_t o = 0, i = 0;
    for (; i < n && o + 8 < size; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '"')
            out[o++] = (char)ch;
        else
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", ch);
    }
    if (i < n)
        o += (size_t)snprintf(out + o, size - o, "...");
    out[o] = 0;
    return out;
}

/* Two budgets over the whole walk: bytes read, decoded and looked at
 * (time), and bytes made and kept (memory: keys made from prefixes can be
 * far more than the bytes that encode them). */
static surg_status charge(oc_store *s, const oc_cur *c, uint64_t n)
{
    if (n > OC_MAX_WORK - s->work)
        return bad(c, "ocdbt-limit", "the database needs more than %" PRIu64 " bytes of nodes "
                   "read and decoded (the limit)", OC_MAX_WORK);
    s->work += n;
    return SURG_OK;
}

static surg_status keep(oc_store *s, const oc_cur *c, uint64_t n)
{
    if (n > OC_MAX_KEPT - s->kept)
        return bad(c, "ocdbt-limit", "the database's keys, values and paths need more than %"
                   PRIu64 " bytes (the limit)", OC_MAX_KEPT);
    s->kept += n;
    return SURG_OK;
}

/* Grow the array the pointer at `pp` points at (*cap elements of `size`)
 * to hold `need`. */
static bool grow(void *pp, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return true;
    /* A quarter more than needed: the key bytes come in big steps, and
     * doubling could take twice the bound. */
    size_t c = need < 16 ? 16 : need > SIZE_MAX / 2 ? need : need + need / 4;
    if (c > SIZE_MAX / size)
        return false;
    void *p;
    memcpy(&p, pp, sizeof p);
    void *q = realloc(p, c * size);
    if (!q)
        return false;
    memcpy(pp, &q, sizeof q);
    *cap = c;
    return true;
}

/* ---- primitives -------------------------------------------------------- */

static char *field_name(char *out, size_t size, const char *field, size_t i)
{
    if (i == SIZE_MAX)
        snprintf(out, size, "%s", field);
    else
        snprintf(out, size, "%s[%zu]", field, i);
    return out;
}

/* An unsigned LEB128 varint of at most 10 bytes, no more than `max`. */
static surg_status varint(oc_cur *c, uint64_t max, const char *field, size_t i, uint64_t *v)
{
    char name[96];
    uint64_t x = 0;
    for (unsigned k = 0;; k++) {
        if (c->p == c->end)
            return bad(c, "ocdbt-corrupt", "ends inside %s",
                       field_name(name, sizeof name, field, i));
        unsigned b = *c->p++;
        if (k == 9 && b > 1)
            return bad(c, "ocdbt-corrupt", "%s is a varint of more than 64 bits",
                       field_name(name, sizeof name, field, i));
        x |= (uint64_t)(b & 0x7f) << (7 * k);
        if (!(b & 0x80))
            break;
    }
    if (x > max)
        return bad(c, "ocdbt-corrupt", "%s is %" PRIu64 ", more than %" PRIu64,
                   field_name(name, sizeof name, field, i), x, max);
    *v = x;
    return SURG_OK;
}

static surg_status take(oc_cur *c, size_t n, const char *field, const unsigned char **out)
{
    if ((size_t)(c->end - c->p) < n)
        return bad(c, "ocdbt-corrupt", "ends inside %s (%zu bytes needed, %zu left)", field, n,
                   (size_t)(c->end - c->p));
    *out = c->p;
    c->p += n;
    return SURG_OK;
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static surg_status at_end(const oc_cur *c, const char *what)
{
    if (c->p != c->end)
        return bad(c, "ocdbt-corrupt", "%zu bytes follow the %s", (size_t)(c->end - c->p), what);
    return SURG_OK;
}

/* A count of entries each taking at least `per` bytes of what is left. */
static surg_status count(oc_cur *c, uint64_t max, const char *field, uint64_t *n, size_t per)
{
    surg_status st = varint(c, max, field, SIZE_MAX, n);
    if (!st && *n > (uint64_t)(c->end - c->p) / per)
        return bad(c, "ocdbt-corrupt", "%s is %" PRIu64 ", more than its %zu bytes can hold",
                   field, *n, (size_t)(c->end - c->p));
    return st;
}

/* ---- the object envelope ------------------------------------------------ */

/* A zstd frame of the whole input, decoded to at most `cap` bytes. */
static surg_status unzstd(oc_cur *c, const unsigned char *in, size_t n, size_t cap,
                          unsigned char **out, size_t *out_len)
{
    codec_stream z;
    surg_status st = codec_begin(&z, CODEC_ZSTD, c->file, c->sink);
    if (!st)
        codec_window_max(&z, cap);
    size_t alloc = n < cap / 4 ? n * 4 : cap;
    alloc = alloc < 4096 ? (cap < 4096 ? cap : 4096) : alloc;
    unsigned char *buf = st ? NULL : malloc(alloc ? alloc : 1);
    size_t got = 0;
    if (!st && !buf)
        st = dg_nomem(c->sink, c->file);
    while (!st && !z.ended) {
        size_t left = n, made = 0;
        if (got == alloc && alloc == cap) {
            unsigned char extra;
            st = codec_step(&z, &in, &n, &extra, 1, &made, c->sink);
            if (!st && made)
                st = bad(c, "ocdbt-limit", "the zstd body decodes to more than %zu bytes",
                         cap);
        } else {
            if (got == alloc) {
                size_t bigger = alloc > cap / 2 ? cap : alloc * 2;
                unsigned char *q = realloc(buf, bigger);
                if (!q) {
                    st = dg_nomem(c->sink, c->file);
                    break;
                }
                buf = q;
                alloc = bigger;
            }
            st = codec_step(&z, &in, &n, buf + got, alloc - got, &made, c->sink);
            got += made;
        }
        if (!st && !z.ended && !made && n == left)
            st = bad(c, "ocdbt-corrupt", "the zstd body is cut short");
    }
    codec_end(&z);
    if (!st && n)
        st = bad(c, "ocdbt-corrupt", "%zu bytes follow the zstd frame before the CRC", n);
    if (st) {
        free(buf);
        return st;
    }
    *out = buf;
    *out_len = got;
    return SURG_OK;
}

/* Check an encoded object (magic, length, CRC-32C, version) and give its
 * body, decoded to at most `cap` bytes: *body points into `raw`, or at
 * *owned, which the caller frees. */
static surg_status envelope(oc_cur *c, const unsigned char *raw, size_t n, uint32_t magic,
                            const char *kind, uint64_t cap, oc_cur *body,
                            unsigned char **owned)
{
    *owned = NULL;
    if (n < OC_MIN_OBJECT)
        return bad(c, "ocdbt-corrupt", "is %zu bytes long, too short for an OCDBT %s", n, kind);
    uint32_t m = (uint32_t)raw[0] << 24 | (uint32_t)raw[1] << 16 | (uint32_t)raw[2] << 8 | raw[3];
    if (m != magic)
        return bad(c, "ocdbt-corrupt", "does not start with the OCDBT %s magic %08x (found %08x)",
                   kind, magic, m);
    uint64_t len = le64(raw + 4);
    if (len != n)
        return bad(c, "ocdbt-corrupt", "its header gives a length of %" PRIu64
                   " bytes, but it has %zu", len, n);
    uint32_t want = le32(raw + n - 4), got = crc32c(0, raw, n - 4);
    if (want != got)
        return bad(c, "ocdbt-corrupt", "CRC-32C mismatch: stored %08x, computed %08x", want, got);
    oc_cur h = *c;
    h.p = raw + 12;
    h.end = raw + n - 4;
    uint64_t version, compression;
    surg_status st = varint(&h, UINT32_MAX, "version", SIZE_MAX, &version);
    if (!st && version != 0)
        return bad(c, "ocdbt-unsupported", "has format version %" PRIu64 "; only 0 is known",
                   version);
    if (!st)
        st = varint(&h, UINT32_MAX, "compression", SIZE_MAX, &compression);
    if (st)
        return st;
    *body = h;
    if (compression == 0) {
        if ((uint64_t)(h.end - h.p) > cap)
            return bad(c, "ocdbt-limit", "its body of %zu bytes is larger than %" PRIu64 " bytes",
                       (size_t)(h.end - h.p), cap);
        return SURG_OK;
    }
    if (compression != 1)
        return bad(c, "ocdbt-corrupt", "compression %" PRIu64 " is unknown (0 none, 1 zstd)",
                   compression);
    size_t dn;
    st = unzstd(c, h.p, (size_t)(h.end - h.p), (size_t)cap, owned, &dn);
    if (st)
        return st;
    body->p = *owned;
    body->end = *owned + dn;
    return SURG_OK;
}

/* ---- data files -------------------------------------------------------- */

/* Why a data file path may not be opened, or NULL: it stays under the
 * root, segment by segment. */
static const char *path_problem(const char *p, size_t n)
{
    if (!n)
        return "is empty";
    if (p[0] == '/')
        return "is absolute";
    for (size_t i = 0; i < n; i++) {
        if (p[i] == 0)
            return "holds a NUL byte";
        if (p[i] == '\\')
            return "holds a backslash";
    }
    for (size_t i = 0; i <= n;) {
        size_t j = i;
        while (j < n && p[j] != '/')
            j++;
        if (j == i)
            return "has an empty segment";
        if ((j - i == 1 && p[i] == '.') || (j - i == 2 && p[i] == '.' && p[i + 1] == '.'))
            return j - i == 1 ? "has a '.' segment" : "has a '..' segment";
        i = j + 1;
    }
    return NULL;
}

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211u;
    return h;
}

static bool slots_grow(oc_store *s)
{
    size_t m = s->nslots ? s->nslots * 2 : 64;
    uint32_t *t = calloc(m, sizeof *t);
    if (!t)
        return false;
    for (size_t i = 0; i < s->nfiles; i++) {
        size_t k = hash_bytes(s->files[i].rel, strlen(s->files[i].rel)) & (m - 1);
        while (t[k])
            k = (k + 1) & (m - 1);
        t[k] = (uint32_t)i + 1;
    }
    free(s->slots);
    s->slots = t;
    s->nslots = m;
    return true;
}

static void fd_drop(oc_store *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* The data file of entry `i` of table `t` (of the node or manifest `c`
 * names): its path checked, the file opened once to learn its size, and
 * given an index; each entry is looked up once. */
static surg_status data_file(oc_store *s, const oc_cur *c, oc_table *t, size_t i, uint32_t *out)
{
    if (t->ids && t->ids[i]) {
        *out = t->ids[i] - 1;
        return SURG_OK;
    }
    if (!t->ids && !(t->ids = calloc(t->n, sizeof *t->ids)))
        return dg_nomem(s->sink, c->file);
    const oc_path *path = &t->files[i];
    surg_status st = charge(s, c, path->len);
    if (st)
        return st;
    const char *why = path_problem(path->rel, path->len);
    if (why) {
        char text[256];
        return bad(c, "ocdbt-path", "data file path \"%s\" %s",
                   shown(text, sizeof text, path->rel, path->len), why);
    }
    if (!s->nslots && !slots_grow(s))
        return dg_nomem(s->sink, c->file);
    size_t k = hash_bytes(path->rel, path->len) & (s->nslots - 1);
    for (; s->slots[k]; k = (k + 1) & (s->nslots - 1)) {
        const char *r = s->files[s->slots[k] - 1].rel;
        if (strlen(r) == path->len && memcmp(r, path->rel, path->len) == 0) {
            *out = s->slots[k] - 1;
            t->ids[i] = s->slots[k];
            return SURG_OK;
        }
    }
    if ((s->nfiles + 1) * 2 > s->nslots && !slots_grow(s))
        return dg_nomem(s->sink, c->file);
    size_t rootlen = strlen(s->root);
    bool slash = rootlen && s->root[rootlen - 1] == '/';
    st = keep(s, c, 2 * path->len + rootlen + sizeof(oc_file) + 8);
    if (st)
        return st;
    oc_file f = {malloc(path->len + 1), malloc(rootlen + 1 + path->len + 1), 0};
    if (!f.rel || !f.full || !grow(&s->files, &s->files_cap, s->nfiles + 1, sizeof f)) {
        free(f.rel);
        free(f.full);
        return dg_nomem(s->sink, c->file);
    }
    memcpy(f.rel, path->rel, path->len);
    f.rel[path->len] = 0;
    snprintf(f.full, rootlen + path->len + 2, "%s%s%s", s->root, slash ? "" : "/", f.rel);
    int fd;
    st = rf_open_regular(s->sink, f.full, &fd, &f.size);
    if (st) {
        free(f.rel);
        free(f.full);
        return st;
    }
    fd_drop(s);
    s->fd = fd;
    s->fd_file = (uint32_t)s->nfiles;
    s->files[s->nfiles++] = f;
    k = hash_bytes(path->rel, path->len) & (s->nslots - 1);
    while (s->slots[k])
        k = (k + 1) & (s->nslots - 1);
    s->slots[k] = (uint32_t)s->nfiles;
    t->ids[i] = (uint32_t)s->nfiles;
    *out = (uint32_t)s->nfiles - 1;
    return SURG_OK;
}

/* A data file table (§3.3). Paths are not checked here: a path is checked
 * when something it names is read (an empty database's table holds the
 * empty path). */
static surg_status read_table(oc_store *s, oc_cur *c, const char *trans, size_t tlen,
                              oc_table *t)
{
    *t = (oc_table){0};
    uint64_t n;
    surg_status st = count(c, UINT32_MAX, "num_files", &n, 2);
    if (st || !n)
        return st;
    uint64_t *len = calloc((size_t)n * 3, sizeof *len);
    t->files = calloc((size_t)n, sizeof *t->files);
    if (!len || !t->files) {
        free(len);
        return dg_nomem(s->sink, c->file);
    }
    uint64_t *prefix = len, *suffix = len + n, *base = len + 2 * n;
    for (size_t i = 1; !st && i < n; i++)
        st = varint(c, OC_MAX_LEN, "path_prefix_length", i, &prefix[i]);
    for (size_t i = 0; !st && i < n; i++)
        st = varint(c, OC_MAX_LEN, "path_suffix_length", i, &suffix[i]);
    uint64_t total = 0, prev_len = 0, prev_base = 0;
    for (size_t i = 0; !st && i < n; i++) {
        st = varint(c, OC_MAX_LEN, "base_path_length", i, &base[i]);
        uint64_t plen = prefix[i] + suffix[i];
        if (st)
            break;
        if (prefix[i] > prev_len)
            st = bad(c, "ocdbt-corrupt", "path_prefix_length[%zu] is %" PRIu64
                     ", more than the previous path's %" PRIu64 " bytes", i, prefix[i], prev_len);
        else if (plen > OC_MAX_LEN - tlen)
            st = bad(c, "ocdbt-corrupt", "data file path %zu is %" PRIu64 " bytes long after a "
                     "transitive path of %zu; at most %u in all", i, plen, tlen, OC_MAX_LEN);
        else if (base[i] > plen)
            st = bad(c, "ocdbt-corrupt", "base_path_length[%zu] is %" PRIu64
                     ", more than its path's %" PRIu64 " bytes", i, base[i], plen);
        else if (prefix[i] > (prev_base < base[i] ? prev_base : base[i]) && base[i] != prev_base)
            st = bad(c, "ocdbt-corrupt", "path_prefix_length[%zu] is %" PRIu64
                     ", past a base path that differs from the previous one", i, prefix[i]);
        prev_len = plen;
        prev_base = base[i];
        total += tlen + plen;
    }
    if (!st)
        st = keep(s, c, total);
    if (!st && !(t->blob = malloc(total ? total : 1)))
        st = dg_nomem(s->sink, c->file);
    size_t at = 0;
    for (size_t i = 0; !st && i < n; i++) {
        const unsigned char *suf = NULL;
        st = take(c, suffix[i], "the data file paths", &suf);
        if (st)
            break;
        char *p = t->blob + at;
        memcpy(p, trans, tlen);
        if (i)
            memcpy(p + tlen, t->files[i - 1].rel + tlen, prefix[i]);
        memcpy(p + tlen + prefix[i], suf, suffix[i]);
        t->files[i] = (oc_path){p, tlen + prefix[i] + suffix[i], tlen + base[i]};
        at += t->files[i].len;
    }
    free(len);
    t->n = (size_t)n;
    return st;
}

static void table_free(oc_table *t)
{
    free(t->files);
    free(t->blob);
    free(t->ids);
    *t = (oc_table){0};
}

/* A reference to bytes of a data file (§3.3), `n` of them in columns. */
typedef struct oc_ref {
    uint64_t file, off, len;
} oc_ref;

static surg_status read_refs(oc_cur *c, const oc_table *t, oc_ref *r, size_t n, bool allow_missing)
{
    surg_status st = SURG_OK;
    for (size_t i = 0; !st && i < n; i++) {
        st = varint(c, UINT64_MAX, "data_file_id", i, &r[i].file);
        if (!st && r[i].file >= t->n)
            st = bad(c, "ocdbt-corrupt", "data_file_id[%zu] is %" PRIu64
                     ", but the data file table has %zu files", i, r[i].file, t->n);
    }
    for (size_t i = 0; !st && i < n; i++)
        st = varint(c, UINT64_MAX, "offset", i, &r[i].off);
    for (size_t i = 0; !st && i < n; i++) {
        st = varint(c, UINT64_MAX, "length", i, &r[i].len);
        if (st || (allow_missing && r[i].off == OC_MISSING && r[i].len == OC_MISSING))
            continue;
        if (r[i].off > (uint64_t)INT64_MAX || r[i].len > (uint64_t)INT64_MAX - r[i].off)
            st = bad(c, "ocdbt-corrupt", "offset %" PRIu64 " and length %" PRIu64
                     " (entry %zu) overflow", r[i].off, r[i].len, i);
    }
    return st;
}

static surg_status skip_varints(oc_cur *c, size_t n, const char *field)
{
    uint64_t v;
    surg_status st = SURG_OK;
    for (size_t i = 0; !st && i < n; i++)
        st = varint(c, UINT64_MAX, field, i, &v);
    return st;
}

/* ---- the manifest (§3.4) ------------------------------------------------ */

typedef struct oc_root {
    bool empty;
    unsigned height;
    oc_ref ref;
    oc_table table;
} oc_root;

static surg_status read_versions(oc_cur *c, unsigned arity, oc_root *root)
{
    uint64_t n;
    surg_status st = count(c, UINT64_MAX, "num_versions", &n, 8);
    if (st)
        return st;
    if (n == 0)
        return bad(c, "ocdbt-corrupt", "the manifest lists no versions");
    if (n > (1u << arity))
        return bad(c, "ocdbt-corrupt", "num_versions is %" PRIu64 ", more than the %u a node of "
                   "arity 2^%u holds", n, 1u << arity, arity);
    oc_ref *refs = calloc((size_t)n, sizeof *refs);
    if (!refs)
        return dg_nomem(c->sink, c->file);
    uint64_t prev = 0, g;
    for (size_t i = 0; !st && i < n; i++) {
        st = varint(c, UINT64_MAX, "generation_number", i, &g);
        if (!st && g <= prev)
            st = bad(c, "ocdbt-corrupt", "generation_number[%zu] is %" PRIu64 "%s", i, g,
                     g ? ", not more than the one before" : "; generations start at 1");
        prev = g;
    }
    const unsigned char *heights = NULL, *times = NULL;
    if (!st)
        st = take(c, (size_t)n, "root_height", &heights);
    if (!st)
        st = read_refs(c, &root->table, refs, (size_t)n, true);
    if (!st)
        st = skip_varints(c, (size_t)n * 3, "version statistics");
    if (!st)
        st = take(c, (size_t)n * 8, "commit_time", &times);
    if (!st) {
        root->ref = refs[n - 1];
        root->height = heights[n - 1];
        root->empty = root->ref.off == OC_MISSING && root->ref.len == OC_MISSING;
    }
    free(refs);
    return st;
}

/* The version tree nodes of older generations: checked, never followed. */
static surg_status read_version_nodes(oc_cur *c, const oc_table *t)
{
    uint64_t n, g, prev = 0;
    surg_status st = count(c, OC_MAX_VERSION_NODES, "num_version_nodes", &n, 1);
    oc_ref refs[OC_MAX_VERSION_NODES];
    for (size_t i = 0; !st && i < n; i++) {
        st = varint(c, UINT64_MAX, "version node generation_number", i, &g);
        if (!st && g <= prev)
            st = bad(c, "ocdbt-corrupt", "version node generation_number[%zu] is %" PRIu64
                     ", not more than the one before", i, g);
        prev = g;
    }
    if (!st)
        st = read_refs(c, t, refs, (size_t)n, false);
    if (!st)
        st = skip_varints(c, (size_t)n, "num_generations");
    const unsigned char *times = NULL, *heights = NULL;
    if (!st)
        st = take(c, (size_t)n * 8, "commit_time", &times);
    if (!st)
        st = take(c, (size_t)n, "version node height", &heights);
    for (size_t i = 0; !st && i < n; i++)
        if (heights[i] == 0 || (i && heights[i] >= heights[i - 1]))
            st = bad(c, "ocdbt-corrupt", "version node height[%zu] is %u, not decreasing from "
                     "at least 1", i, heights[i]);
    return st;
}

static surg_status read_manifest(oc_store *s, oc_root *root)
{
    size_t rootlen = strlen(s->root);
    char *path = malloc(rootlen + sizeof "/manifest.ocdbt");
    if (!path)
        return dg_nomem(s->sink, s->root);
    snprintf(path, rootlen + sizeof "/manifest.ocdbt", "%s%smanifest.ocdbt", s->root,
             rootlen && s->root[rootlen - 1] == '/' ? "" : "/");
    oc_cur c = {.file = path, .where = "", .sink = s->sink};
    int fd;
    uint64_t size;
    unsigned char *raw = NULL, *owned = NULL;
    surg_status st = rf_open_regular(s->sink, path, &fd, &size);
    s->manifest = path;
    if (st)
        return st;
    if (size > OC_MAX_OBJECT)
        st = bad(&c, "ocdbt-limit", "is %" PRIu64 " bytes, more than %" PRIu64, size,
                 OC_MAX_OBJECT);
    else if (!(raw = malloc(size ? (size_t)size : 1)))
        st = dg_nomem(s->sink, path);
    else
        st = rf_read_exact(s->sink, path, fd, raw, (size_t)size, 0);
    close(fd);
    oc_cur b;
    if (!st)
        st = envelope(&c, raw, (size_t)size, OC_MAGIC_MANIFEST, "manifest", OC_MAX_OBJECT, &b,
                      &owned);
    const unsigned char *uuid = NULL, *kind = NULL, *arity = NULL, *level = NULL;
    uint64_t max_inline, max_node, method;
    if (!st)
        st = take(&b, 16, "uuid", &uuid);
    if (!st)
        st = take(&b, 1, "manifest_kind", &kind);
    if (!st && *kind == 1)
        st = bad(&b, "ocdbt-unsupported", "is a numbered manifest (manifest_kind 1: the versions "
                 "are in manifest.<generation> files), which Orbax does not write; only "
                 "manifest_kind 0 (single) is read");
    else if (!st && *kind != 0)
        st = bad(&b, "ocdbt-corrupt", "manifest_kind %u is unknown", *kind);
    if (!st)
        st = varint(&b, UINT32_MAX, "max_inline_value_bytes", SIZE_MAX, &max_inline);
    if (!st)
        st = varint(&b, UINT32_MAX, "max_decoded_node_bytes", SIZE_MAX, &max_node);
    if (!st)
        st = take(&b, 1, "version_tree_arity_log2", &arity);
    if (!st && (*arity < 1 || *arity > 16))
        st = bad(&b, "ocdbt-corrupt", "version_tree_arity_log2 is %u, not 1 to 16", *arity);
    if (!st)
        st = varint(&b, UINT32_MAX, "compression_method", SIZE_MAX, &method);
    if (!st && method > 1)
        st = bad(&b, "ocdbt-corrupt", "compression_method %" PRIu64 " is unknown (0 none, 1 zstd)",
                 method);
    if (!st && method == 1)
        st = take(&b, 4, "zstd_level", &level);
    if (!st)
        st = read_table(s, &b, "", 0, &root->table);
    if (!st)
        st = read_versions(&b, *arity, root);
    if (!st)
        st = read_version_nodes(&b, &root->table);
    if (!st)
        st = at_end(&b, "manifest");
    if (!st)
        s->max_node = max_node < OC_MAX_OBJECT ? max_node : OC_MAX_OBJECT;
    (void)max_inline;
    free(owned);
    free(raw);
    s->manifest = path;
    return st;
}

/* ---- b+tree nodes (§3.5) ------------------------------------------------ */

/* A child of an interior node, found by its full start key (the node's
 * prefix and the entry's key) in the frame's key bytes. */
typedef struct oc_kid {
    size_t key_off, key_len, prefix_len;
    oc_ref ref; /* ref.file: an entry of the frame's table */
} oc_kid;

typedef struct oc_frame {
    oc_table table;
    char *keys;
    oc_kid *kids;
    size_t n, next;
    unsigned height;
    const char *file; /* the node's, for messages about its table */
    uint64_t at;
} oc_frame;

static void frame_free(oc_frame *f)
{
    table_free(&f->table);
    free(f->keys);
    free(f->kids);
    *f = (oc_frame){0};
}

/* What a node is reached with: where it is, the height it must have, the
 * least key it may start with, and the prefix and transitive path its
 * keys and data file paths continue. */
typedef struct oc_visit {
    const char *from; /* the manifest or node whose table holds the path */
    uint64_t from_at; /* the node's offset, or UINT64_MAX for the manifest */
    oc_table *table; /* ref.file is an entry of it */
    oc_ref ref;
    unsigned height;
    const char *min, *prefix, *trans;
    size_t min_len, prefix_len, trans_len;
} oc_visit;

static int keycmp(const char *a, size_t an, const char *b, size_t bn)
{
    int r = memcmp(a, b, an < bn ? an : bn);
    return r ? r : (an > bn) - (an < bn);
}

/* The key columns of a node, materialized as full keys (the node's prefix
 * and each entry's key) at dst + off[i]; each key followed by a NUL when
 * `nul`. dst is the store's key bytes for a leaf, the frame's for an
 * interior node; *dst may move. */
typedef struct oc_keycols {
    uint64_t *pre, *suf, *scp;
    size_t *off;
} oc_keycols;

static size_t key_len_at(const oc_keycols *k, const oc_visit *v, size_t i)
{
    return v->prefix_len + (size_t)(k->pre[i] + k->suf[i]);
}

static surg_status read_keys(oc_store *s, oc_cur *c, const oc_visit *v, size_t n, bool interior,
                             oc_keycols *k, char **dst, size_t *dst_len, size_t *dst_cap, bool nul)
{
    surg_status st = SURG_OK;
    k->pre[0] = 0;
    for (size_t i = 1; !st && i < n; i++)
        st = varint(c, OC_MAX_LEN, "key_prefix_length", i, &k->pre[i]);
    for (size_t i = 0; !st && i < n; i++)
        st = varint(c, OC_MAX_LEN, "key_suffix_length", i, &k->suf[i]);
    for (size_t i = 0; !st && interior && i < n; i++)
        st = varint(c, OC_MAX_LEN, "subtree_common_prefix_length", i, &k->scp[i]);
    uint64_t prev = 0, total = 0;
    for (size_t i = 0; !st && i < n; i++) {
        uint64_t len = k->pre[i] + k->suf[i];
        if (k->pre[i] > prev)
            st = bad(c, "ocdbt-corrupt", "key_prefix_length[%zu] is %" PRIu64
                     ", more than the previous key's %" PRIu64 " bytes", i, k->pre[i], prev);
        else if (len + v->prefix_len > OC_MAX_LEN)
            st = bad(c, "ocdbt-corrupt", "key %zu is %" PRIu64 " bytes long with its prefix; at "
                     "most %u", i, len + v->prefix_len, OC_MAX_LEN);
        else if (interior && k->scp[i] > len)
            st = bad(c, "ocdbt-corrupt", "subtree_common_prefix_length[%zu] is %" PRIu64
                     ", more than its key's %" PRIu64 " bytes", i, k->scp[i], len);
        prev = len;
        total += v->prefix_len + len + nul;
    }
    if (!st)
        st = keep(s, c, total);
    if (!st && !grow(dst, dst_cap, *dst_len + (size_t)total + 1, 1))
        st = dg_nomem(s->sink, c->file);
    for (size_t i = 0; !st && i < n; i++) {
        const unsigned char *suf = NULL;
        st = take(c, (size_t)k->suf[i], "the keys", &suf);
        if (st)
            break;
        char *p = *dst + *dst_len;
        size_t head = v->prefix_len + (size_t)k->pre[i];
        if (i)
            memcpy(p, *dst + k->off[i - 1], head);
        else
            memcpy(p, v->prefix, head);
        memcpy(p + head, suf, (size_t)k->suf[i]);
        size_t len = head + (size_t)k->suf[i];
        if (nul)
            p[len] = 0;
        k->off[i] = *dst_len;
        if (i && keycmp(*dst + k->off[i - 1], key_len_at(k, v, i - 1), p, len) >= 0) {
            char a[256];
            st = bad(c, "ocdbt-corrupt", "keys out of order: \"%s\" (entry %zu) is not after the "
                     "key before it", shown(a, sizeof a, p, len), i);
        }
        *dst_len += len + nul;
    }
    if (!st && n) {
        size_t len0 = v->prefix_len + (size_t)k->suf[0];
        if (keycmp(*dst + k->off[0], len0, v->min, v->min_len) < 0) {
            char a[256], b[256];
            st = bad(c, "ocdbt-corrupt", "its first key \"%s\" is before \"%s\", where its "
                     "parent's entry starts", shown(a, sizeof a, *dst + k->off[0], len0),
                     shown(b, sizeof b, v->min, v->min_len));
        }
    }
    return st;
}

static surg_status read_leaf(oc_store *s, oc_cur *c, const oc_visit *v, oc_table *t,
                             size_t n, oc_keycols *k)
{
    size_t first = s->keys_len;
    surg_status st = read_keys(s, c, v, n, false, k, &s->keys, &s->keys_len, &s->keys_cap, true);
    if (!st && s->n) {
        const oc_entry *last = &s->e[s->n - 1];
        if (keycmp(s->keys + last->key_off, last->key_len, s->keys + first,
                   key_len_at(k, v, 0)) >= 0) {
            char a[256];
            st = bad(c, "ocdbt-corrupt", "keys out of order: \"%s\" is not after the last key of "
                     "the node before", shown(a, sizeof a, s->keys + first, key_len_at(k, v, 0)));
        }
    }
    if (!st && s->n + n > OC_MAX_KEYS)
        st = bad(c, "ocdbt-limit", "the database has more than %u keys (the limit)", OC_MAX_KEYS);
    if (!st)
        st = keep(s, c, n * sizeof(oc_entry));
    if (!st && !grow(&s->e, &s->cap, s->n + n, sizeof *s->e))
        st = dg_nomem(s->sink, c->file);
    /* The value columns: lengths, kinds, then the files and offsets of the
     * values kept out of line, then the inline bytes. */
    uint64_t *len = k->scp; /* a leaf has no subtree prefixes */
    const unsigned char *kind = NULL;
    for (size_t i = 0; !st && i < n; i++)
        st = varint(c, UINT64_MAX, "value_length", i, &len[i]);
    if (!st)
        st = take(c, n, "value_kind", &kind);
    size_t outside = 0;
    for (size_t i = 0; !st && i < n; i++) {
        if (kind[i] > 1)
            st = bad(c, "ocdbt-corrupt", "value_kind[%zu] is %u; only 0 (inline) and 1 (in a "
                     "data file) are known", i, kind[i]);
        else if (kind[i] == 0 && len[i] > OC_MAX_INLINE)
            st = bad(c, "ocdbt-corrupt", "value_length[%zu] is %" PRIu64 ", more than %u for an "
                     "inline value", i, len[i], OC_MAX_INLINE);
        outside += kind[i];
    }
    oc_ref *refs = NULL;
    if (!st && outside && !(refs = calloc(outside, sizeof *refs)))
        st = dg_nomem(s->sink, c->file);
    for (size_t i = 0, j = 0; !st && i < n; i++)
        if (kind[i]) {
            st = varint(c, UINT64_MAX, "data_file_id", i, &refs[j].file);
            if (!st && refs[j].file >= t->n)
                st = bad(c, "ocdbt-corrupt", "data_file_id[%zu] is %" PRIu64
                         ", but the data file table has %zu files", i, refs[j].file, t->n);
            refs[j++].len = len[i];
        }
    for (size_t i = 0, j = 0; !st && i < n; i++)
        if (kind[i]) {
            oc_ref *r = &refs[j++];
            st = varint(c, UINT64_MAX, "data_file_offset", i, &r->off);
            if (!st && (r->off > (uint64_t)INT64_MAX || r->len > (uint64_t)INT64_MAX - r->off))
                st = bad(c, "ocdbt-corrupt", "the value of entry %zu: offset %" PRIu64
                         " and length %" PRIu64 " overflow", i, r->off, r->len);
        }
    for (size_t i = 0, j = 0; !st && i < n; i++) {
        oc_entry *e = &s->e[s->n + i];
        e->key_off = k->off[i];
        e->key_len = (uint32_t)key_len_at(k, v, i);
        e->len = len[i];
        if (kind[i]) {
            oc_ref *r = &refs[j++];
            st = data_file(s, c, t, (size_t)r->file, &e->file);
            e->off = r->off;
            if (!st && r->off + r->len > s->files[e->file].size) {
                char a[256];
                st = bad(c, "ocdbt-corrupt", "the value of \"%s\" is bytes %" PRIu64 "..%" PRIu64
                         " of %s, which has %" PRIu64 " bytes",
                         shown(a, sizeof a, s->keys + e->key_off, e->key_len), r->off,
                         r->off + r->len, s->files[e->file].rel, s->files[e->file].size);
            }
            continue;
        }
        const unsigned char *bytes = NULL;
        e->file = UINT32_MAX;
        st = take(c, (size_t)len[i], "the inline values", &bytes);
        if (!st)
            st = keep(s, c, len[i]);
        if (!st && !grow(&s->vals, &s->vals_cap, s->vals_len + (size_t)len[i] + 1, 1))
            st = dg_nomem(s->sink, c->file);
        if (st)
            break;
        memcpy(s->vals + s->vals_len, bytes, (size_t)len[i]);
        e->off = s->vals_len;
        s->vals_len += (size_t)len[i];
    }
    free(refs);
    if (!st)
        st = at_end(c, "leaf's values");
    if (!st)
        s->n += n;
    return st;
}

static surg_status read_interior(oc_store *s, oc_cur *c, const oc_visit *v, oc_frame *f,
                                 size_t n, oc_keycols *k)
{
    size_t len = 0, cap = 0;
    surg_status st = read_keys(s, c, v, n, true, k, &f->keys, &len, &cap, false);
    oc_ref *refs = st ? NULL : calloc(n, sizeof *refs);
    if (!st && !refs)
        st = dg_nomem(s->sink, c->file);
    if (!st)
        st = read_refs(c, &f->table, refs, n, false);
    if (!st)
        st = skip_varints(c, n * 3, "child statistics");
    if (!st)
        st = at_end(c, "interior node's entries");
    if (!st && !(f->kids = calloc(n, sizeof *f->kids)))
        st = dg_nomem(s->sink, c->file);
    for (size_t i = 0; !st && i < n; i++)
        f->kids[i] = (oc_kid){k->off[i], key_len_at(k, v, i), v->prefix_len + (size_t)k->scp[i],
                              refs[i]};
    free(refs);
    f->n = n;
    return st;
}

/* Read the node `v` names: a leaf's entries join the table, an interior
 * node becomes the frame *f (f->n stays 0 for a leaf). */
static surg_status visit(oc_store *s, const oc_visit *v, oc_frame *f)
{
    char where[64], from[64] = "";
    if (v->from_at != UINT64_MAX)
        snprintf(from, sizeof from, "b-tree node at byte %" PRIu64 ": ", v->from_at);
    snprintf(where, sizeof where, "b-tree node at byte %" PRIu64 ": ", v->ref.off);
    oc_cur c = {.file = v->from, .where = from, .sink = s->sink};
    uint32_t file;
    surg_status st = data_file(s, &c, v->table, (size_t)v->ref.file, &file);
    if (st)
        return st;
    c.file = s->files[file].full;
    c.where = where;
    if (v->ref.off + v->ref.len > s->files[file].size)
        return bad(&c, "ocdbt-corrupt", "its %" PRIu64 " bytes end past the end of the file (%"
                   PRIu64 " bytes)", v->ref.len, s->files[file].size);
    if (v->ref.len > OC_MAX_OBJECT)
        return bad(&c, "ocdbt-limit", "it is %" PRIu64 " bytes, more than %" PRIu64, v->ref.len,
                   OC_MAX_OBJECT);
    /* Each node once: a node reached again is a cycle or a shared subtree,
     * which no tree has and which could make the walk endless. */
    if ((s->nseen + 1) * 2 > s->seen_cap) {
        size_t m = s->seen_cap ? s->seen_cap * 2 : 64;
        oc_seen *t = calloc(m, sizeof *t);
        if (!t)
            return dg_nomem(s->sink, c.file);
        for (size_t i = 0; i < s->seen_cap; i++) {
            if (!s->seen[i].file)
                continue;
            size_t h = (size_t)((s->seen[i].off * 0x9E3779B97F4A7C15u) ^ s->seen[i].file) & (m - 1);
            while (t[h].file)
                h = (h + 1) & (m - 1);
            t[h] = s->seen[i];
        }
        free(s->seen);
        s->seen = t;
        s->seen_cap = m;
    }
    size_t h = (size_t)((v->ref.off * 0x9E3779B97F4A7C15u) ^ (file + 1)) & (s->seen_cap - 1);
    for (; s->seen[h].file; h = (h + 1) & (s->seen_cap - 1))
        if (s->seen[h].file == file + 1 && s->seen[h].off == v->ref.off)
            return bad(&c, "ocdbt-corrupt", "the node is reached a second time (a cycle, or a "
                       "subtree shared by two parents)");
    s->seen[h] = (oc_seen){v->ref.off, file + 1};
    s->nseen++;
    if (++s->nodes > OC_MAX_NODES)
        return bad(&c, "ocdbt-limit", "the tree has more than %u nodes (the limit)", OC_MAX_NODES);
    st = charge(s, &c, v->ref.len);
    unsigned char *raw = NULL, *owned = NULL;
    if (!st && !(raw = malloc(v->ref.len ? (size_t)v->ref.len : 1)))
        st = dg_nomem(s->sink, c.file);
    if (!st && s->fd_file == file && s->fd >= 0) {
        st = rf_read_exact(s->sink, c.file, s->fd, raw, (size_t)v->ref.len, v->ref.off);
    } else if (!st) {
        uint64_t size;
        fd_drop(s);
        st = rf_open_regular(s->sink, c.file, &s->fd, &size);
        s->fd_file = file;
        if (!st)
            st = rf_read_exact(s->sink, c.file, s->fd, raw, (size_t)v->ref.len, v->ref.off);
    }
    oc_cur b;
    if (!st)
        st = envelope(&c, raw, (size_t)v->ref.len, OC_MAGIC_BTREE, "b-tree node", s->max_node,
                      &b, &owned);
    if (!st)
        st = charge(s, &c, (uint64_t)(b.end - b.p));
    const unsigned char *height = NULL;
    if (!st)
        st = take(&b, 1, "height", &height);
    if (!st && *height != v->height)
        st = bad(&b, "ocdbt-corrupt", "its height is %u, but %u is expected there", *height,
                 v->height);
    oc_table table = {0};
    if (!st)
        st = read_table(s, &b, v->trans, v->trans_len, &table);
    uint64_t n = 0;
    if (!st)
        st = varint(&b, UINT32_MAX, "num_entries", SIZE_MAX, &n);
    if (!st && n == 0)
        st = bad(&b, "ocdbt-corrupt", "the node has no entries");
    if (!st && n > OC_MAX_ARITY)
        st = bad(&b, "ocdbt-corrupt", "num_entries is %" PRIu64 ", more than %u", n, OC_MAX_ARITY);
    if (!st && n > (uint64_t)(b.end - b.p))
        st = bad(&b, "ocdbt-corrupt", "num_entries is %" PRIu64 ", more than its %zu bytes can "
                 "hold", n, (size_t)(b.end - b.p));
    oc_keycols k = {0};
    if (!st) {
        k.pre = calloc((size_t)n * 3, sizeof *k.pre);
        k.off = calloc((size_t)n, sizeof *k.off);
        k.suf = k.pre ? k.pre + n : NULL;
        k.scp = k.pre ? k.pre + 2 * n : NULL;
        if (!k.pre || !k.off)
            st = dg_nomem(s->sink, c.file);
    }
    if (!st && *height == 0) {
        st = read_leaf(s, &b, v, &table, (size_t)n, &k);
        table_free(&table);
    } else if (!st) {
        f->table = table;
        table = (oc_table){0};
        f->height = *height;
        f->file = c.file;
        f->at = v->ref.off;
        st = read_interior(s, &b, v, f, (size_t)n, &k);
    }
    table_free(&table);
    free(k.pre);
    free(k.off);
    free(owned);
    free(raw);
    return st;
}

/* Walk the tree in key order, depth first, with a stack of interior
 * nodes: heights fall by one at each level, so it holds at most 256. */
static surg_status walk(oc_store *s, oc_root *root)
{
    if (root->empty)
        return SURG_OK;
    oc_frame stack[257];
    size_t depth = 0;
    const oc_path *p = &root->table.files[root->ref.file];
    oc_visit v = {.from = s->manifest, .from_at = UINT64_MAX, .table = &root->table,
                  .ref = root->ref, .height = root->height, .min = "", .prefix = "",
                  .trans = p->rel, .trans_len = p->base_len};
    stack[0] = (oc_frame){0};
    surg_status st = visit(s, &v, &stack[0]);
    if (stack[0].n)
        depth = 1;
    else
        frame_free(&stack[0]);
    while (!st && depth) {
        oc_frame *f = &stack[depth - 1];
        if (f->next == f->n) {
            frame_free(f);
            depth--;
            continue;
        }
        const oc_kid *kid = &f->kids[f->next++];
        p = &f->table.files[kid->ref.file];
        v = (oc_visit){.from = f->file, .from_at = f->at, .table = &f->table, .ref = kid->ref,
                       .height = f->height - 1, .min = f->keys + kid->key_off,
                       .min_len = kid->key_len, .prefix = f->keys + kid->key_off,
                       .prefix_len = kid->prefix_len, .trans = p->rel,
                       .trans_len = p->base_len};
        stack[depth] = (oc_frame){0};
        st = visit(s, &v, &stack[depth]);
        if (stack[depth].n)
            depth++;
        else
            frame_free(&stack[depth]);
    }
    while (depth)
        frame_free(&stack[--depth]);
    return st;
}

/* ---- the kv_store operations ------------------------------------------- */

static void value_of(const oc_store *s, const oc_entry *e, kv_value *v)
{
    if (e->file == UINT32_MAX)
        *v = (kv_value){.bytes = s->vals + e->off, .length = e->len};
    else
        *v = (kv_value){.file = s->files[e->file].full, .offset = e->off, .length = e->len};
}

/* The first entry whose key is not before key[0..n). */
static size_t lower_bound(const oc_store *s, const char *key, size_t n)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const oc_entry *e = &s->e[mid];
        if (keycmp(s->keys + e->key_off, e->key_len, key, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static surg_status oc_get(kv_store *base, const char *key, surg_sink *sink, kv_value *v,
                          bool *found)
{
    (void)sink;
    oc_store *s = (oc_store *)base;
    size_t n = strlen(key), i = lower_bound(s, key, n);
    *found = i < s->n && keycmp(s->keys + s->e[i].key_off, s->e[i].key_len, key, n) == 0;
    if (*found)
        value_of(s, &s->e[i], v);
    return SURG_OK;
}

static surg_status oc_list(kv_store *base, const char *prefix, surg_sink *sink, kv_each_fn *each,
                           void *ctx, int *stopped)
{
    (void)sink;
    oc_store *s = (oc_store *)base;
    size_t n = strlen(prefix);
    if (stopped)
        *stopped = 0;
    for (size_t i = lower_bound(s, prefix, n); i < s->n; i++) {
        const oc_entry *e = &s->e[i];
        if (e->key_len < n || memcmp(s->keys + e->key_off, prefix, n) != 0)
            break;
        kv_value v;
        value_of(s, e, &v);
        int r = each(ctx, s->keys + e->key_off, e->key_len, &v);
        if (r) {
            if (stopped)
                *stopped = r;
            break;
        }
    }
    return SURG_OK;
}

static void oc_close(kv_store *base)
{
    oc_store *s = (oc_store *)base;
    fd_drop(s);
    for (size_t i = 0; i < s->nfiles; i++) {
        free(s->files[i].rel);
        free(s->files[i].full);
    }
    free(s->files);
    free(s->slots);
    free(s->seen);
    free(s->e);
    free(s->keys);
    free(s->vals);
    free(s->root);
    free(s->manifest);
    free(s);
}

static const kv_ops oc_ops = {.get = oc_get, .list = oc_list, .close = oc_close};

surg_status kv_open_ocdbt(const char *dir, surg_sink *sink, kv_store **out)
{
    *out = NULL;
    oc_store *s = calloc(1, sizeof *s);
    if (!s || !(s->root = strdup(dir))) {
        free(s);
        return dg_nomem(sink, dir);
    }
    s->base = (kv_store){&oc_ops, s->root};
    s->sink = sink;
    s->fd = -1;
    s->fd_file = UINT32_MAX;
    oc_root root = {0};
    surg_status st = read_manifest(s, &root);
    if (!st)
        st = walk(s, &root);
    table_free(&root.table);
    fd_drop(s);
    free(s->seen);
    free(s->slots);
    s->seen = NULL;
    s->slots = NULL;
    s->nslots = s->seen_cap = 0;
    if (!st && !s->vals && !(s->vals = malloc(1)))
        st = dg_nomem(sink, dir);
    if (!st && !s->keys && !(s->keys = malloc(1)))
        st = dg_nomem(sink, dir);
    if (st) {
        oc_close(&s->base);
        return st;
    }
    s->sink = NULL;
    *out = &s->base;
    return SURG_OK;
}
