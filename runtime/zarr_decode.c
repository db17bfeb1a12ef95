/* zarr_decode.c: a zarr array's chunks made into its plain bytes
 * (zarr_decode in zarr.h). Each stored chunk is read through a pipe of
 * stages pulled a buffer at a time — its value's bytes, then each
 * compressor and checksum undone, last applied first, each stage knowing
 * exactly how many bytes it must give — and its elements are put in place
 * in the output: rows of a C-order chunk straight from the stream, a
 * transposed (or Fortran-order) chunk gathered from a copy staged in
 * memory when small, else in an unlinked temporary file. Shards are read
 * inner chunk by inner chunk through their index. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime/codec.h"
#include "runtime/zarr.h"
#include "support/crc32c.h"
#include "support/diag.h"

enum {
    BUF = 1 << 20,         /* a read, write or fill buffer */
    IN_BUF = 1 << 18,      /* a decompressor's input */
    SMALL = 4 << 20,       /* transposed chunks up to this are staged in memory */
    WHAT = 12 * 1024,      /* a chunk's name in messages */
};

/* ---- the pipe: a stored value's bytes, compressors and checksums undone ---- */

enum { ST_SRC, ST_CODEC, ST_CRC };

typedef struct zr_stage {
    int kind;
    uint64_t len, pos;        /* the bytes this stage gives: all of them, given so far */
    bool known;
    uint64_t base;            /* ST_SRC: where in the value */
    codec_stream cs;          /* ST_CODEC */
    bool open;
    const unsigned char *in;  /* its input not yet used, in inbuf */
    size_t in_n;
    unsigned char *inbuf;
    uint32_t crc;             /* ST_CRC: of the bytes given so far */
} zr_stage;

typedef struct zr_pipe {
    zr_stage s[ZARR_MAX_B2B + 1];
    int top;
    kv_reader *rd;
    const char *what;
} zr_pipe;

typedef struct zr_ctx {
    const zarr_array *a;
    kv_store *store;
    bool missing_is_fill;
    int fd;
    uint64_t off;
    const char *tmp_dir;
    surg_sink *sink;
    uint32_t rank;               /* rank 0 is read as rank 1 of one element */
    const uint64_t *shape, *chunk, *inner;
    uint64_t one[1];
    uint64_t ostride[SURG_MAX_RANK]; /* the output's, in elements */
    unsigned swap;               /* bytes per unit to reverse, or 0 */
    unsigned char *rbuf, *wbuf, *fill;
    unsigned char *inbufs[ZARR_MAX_B2B];
    size_t w_n;                  /* pending output, at w_at */
    uint64_t w_at;
    char *what, *key;
    size_t key_at;               /* where the chunk key starts in key */
} zr_ctx;

static surg_status bad(zr_ctx *z, const char *code, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static surg_status bad(zr_ctx *z, const char *code, const char *what, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dg_file(z->sink, SURG_ERROR, code, what, "%s", msg);
    return SURG_EINVALID;
}

static surg_status pull(zr_pipe *p, int k, unsigned char *buf, size_t n, surg_sink *sink);

static surg_status refill(zr_pipe *p, int k, surg_sink *sink)
{
    zr_stage *s = &p->s[k], *below = &p->s[k - 1];
    size_t m = below->len - below->pos < IN_BUF ? (size_t)(below->len - below->pos) : IN_BUF;
    surg_status st = m ? pull(p, k - 1, s->inbuf, m, sink) : SURG_OK;
    s->in = s->inbuf;
    s->in_n = st ? 0 : m;
    return st;
}

static surg_status cut_short(zr_pipe *p, zr_stage *s, uint64_t got, surg_sink *sink)
{
    dg_file(sink, SURG_ERROR, "codec-size", p->what,
            "the %s stream is cut short after %llu of the %llu bytes expected",
            codec_name(s->cs.kind), (unsigned long long)got, (unsigned long long)s->len);
    return SURG_EINVALID;
}

static surg_status inflate_into(zr_pipe *p, int k, unsigned char *buf, size_t n,
                                surg_sink *sink)
{
    zr_stage *s = &p->s[k], *below = &p->s[k - 1];
    size_t got = 0;
    while (got < n) {
        if (s->cs.ended) {
            dg_file(sink, SURG_ERROR, "codec-size", p->what,
                    "the %s stream ends after %llu of the %llu bytes expected",
                    codec_name(s->cs.kind), (unsigned long long)(s->pos + got),
                    (unsigned long long)s->len);
            return SURG_EINVALID;
        }
        surg_status st = !s->in_n ? refill(p, k, sink) : SURG_OK;
        if (st)
            return st;
        size_t made, left = s->in_n;
        st = codec_step(&s->cs, &s->in, &s->in_n, buf + got, n - got, &made, sink);
        if (st)
            return st;
        got += made;
        /* No progress: the input is used up, or the decoder takes no more. */
        if (!made && !s->cs.ended && s->in_n == left && (left || below->pos == below->len))
            return cut_short(p, s, s->pos + got, sink);
    }
    return SURG_OK;
}

static surg_status pull(zr_pipe *p, int k, unsigned char *buf, size_t n, surg_sink *sink)
{
    zr_stage *s = &p->s[k];
    surg_status st = SURG_OK;
    if (s->kind == ST_SRC) {
        st = kv_reader_read(p->rd, s->base + s->pos, buf, n, sink);
    } else if (s->kind == ST_CRC) {
        st = pull(p, k - 1, buf, n, sink);
        if (!st)
            s->crc = crc32c(s->crc, buf, n);
    } else {
        st = inflate_into(p, k, buf, n, sink);
    }
    if (!st)
        s->pos += n;
    return st;
}

/* The stage has given all its bytes: check that its input ends there. */
static surg_status finish(zr_pipe *p, int k, surg_sink *sink)
{
    zr_stage *s = &p->s[k];
    if (s->kind == ST_SRC)
        return SURG_OK;
    if (s->kind == ST_CRC) {
        unsigned char t[4];
        surg_status st = pull(p, k - 1, t, 4, sink);
        if (st)
            return st;
        uint32_t want = (uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 |
                        (uint32_t)t[3] << 24;
        if (want != s->crc) {
            dg_file(sink, SURG_ERROR, "zarr-crc", p->what,
                    "the CRC-32C of the chunk is %08x, not the %08x stored", s->crc, want);
            return SURG_EINVALID;
        }
        return finish(p, k - 1, sink);
    }
    zr_stage *below = &p->s[k - 1];
    while (!s->cs.ended) {
        unsigned char extra;
        surg_status st = !s->in_n ? refill(p, k, sink) : SURG_OK;
        size_t made = 0, left = s->in_n;
        if (!st)
            st = codec_step(&s->cs, &s->in, &s->in_n, &extra, 1, &made, sink);
        if (st)
            return st;
        if (made) {
            dg_file(sink, SURG_ERROR, "codec-size", p->what,
                    "the %s stream holds more than the %llu bytes expected",
                    codec_name(s->cs.kind), (unsigned long long)s->len);
            return SURG_EINVALID;
        }
        if (!s->cs.ended && s->in_n == left && (left || below->pos == below->len))
            return cut_short(p, s, s->pos, sink);
    }
    uint64_t rest = s->in_n + (below->len - below->pos);
    if (rest) {
        dg_file(sink, SURG_ERROR, "codec-size", p->what, "%llu bytes follow the end of the %s "
                "stream", (unsigned long long)rest, codec_name(s->cs.kind));
        return SURG_EINVALID;
    }
    return finish(p, k - 1, sink);
}

static void pipe_end(zr_pipe *p)
{
    for (int k = 1; k <= p->top; k++)
        if (p->s[k].open)
            codec_end(&p->s[k].cs);
}

static surg_status size_wrong(zr_ctx *z, const char *what, uint64_t have, uint64_t want)
{
    return bad(z, "zarr-size", what, "the stored chunk has %llu bytes, not the %llu its codecs "
               "and shape need", (unsigned long long)have, (unsigned long long)want);
}

/* A pipe over `len` bytes at `base` of the value rd reads, giving `want`
 * bytes: stage 0 the value, stage k the codec applied k-th from last. */
static surg_status pipe_open(zr_ctx *z, zr_pipe *p, const zarr_chain *ch, kv_reader *rd,
                             uint64_t base, uint64_t len, uint64_t want, const char *what)
{
    memset(p, 0, sizeof *p);
    p->rd = rd;
    p->what = what;
    int m = ch->n_b2b;
    p->top = m;
    p->s[0] = (zr_stage){.kind = ST_SRC, .len = len, .known = true, .base = base};
    for (int k = 1; k <= m; k++) {
        uint8_t c = ch->b2b[m - k];
        zr_stage *s = &p->s[k], *below = &p->s[k - 1];
        s->kind = c == ZARR_CRC32C ? ST_CRC : ST_CODEC;
        if (s->kind == ST_CRC && below->known) {
            if (below->len < 4)
                return bad(z, "zarr-size", what, "the stored chunk has %llu bytes, too few for "
                           "its CRC-32C", (unsigned long long)below->len);
            s->len = below->len - 4;
            s->known = true;
        }
    }
    /* From the top down: each checksum's input is 4 bytes more. */
    uint64_t w = want;
    for (int k = m; k >= 0; k--) {
        zr_stage *s = &p->s[k];
        if (s->known && s->len != w) /* only checksums below: the value is short or long */
            return size_wrong(z, what, p->s[0].len, p->s[0].len - s->len + w);
        s->len = w;
        s->known = true;
        if (s->kind != ST_CRC)
            break;
        w += 4;
    }
    for (int k = 1; k <= m; k++) {
        zr_stage *s = &p->s[k];
        if (s->kind != ST_CODEC)
            continue;
        s->inbuf = z->inbufs[k - 1];
        if (!s->inbuf && !(s->inbuf = z->inbufs[k - 1] = malloc(IN_BUF)))
            return dg_nomem(z->sink, what);
        surg_status st = codec_begin(&s->cs, (codec_kind)ch->b2b[m - k], what, z->sink);
        if (st)
            return st;
        s->open = true;
    }
    return SURG_OK;
}

/* ---- output: pending bytes joined while they are adjacent ---------------- */

static surg_status write_at(zr_ctx *z, const void *data, size_t len, uint64_t off)
{
    const char *b = data;
    while (len) {
        ssize_t n = pwrite(z->fd, b, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return dg_errno(z->sink, z->a->root, "cannot write a decoded zarr array", errno);
        b += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return SURG_OK;
}

static surg_status flush(zr_ctx *z)
{
    surg_status st = z->w_n ? write_at(z, z->wbuf, z->w_n, z->w_at) : SURG_OK;
    z->w_n = 0;
    return st;
}

static surg_status put(zr_ctx *z, uint64_t at, const unsigned char *data, size_t n)
{
    surg_status st = SURG_OK;
    if (z->w_n && (at != z->w_at + z->w_n || z->w_n + n > BUF))
        st = flush(z);
    if (st || n >= BUF)
        return st ? st : write_at(z, data, n, at);
    if (!z->w_n)
        z->w_at = at;
    memcpy(z->wbuf + z->w_n, data, n);
    z->w_n += n;
    return SURG_OK;
}

/* ---- placing a chunk's elements -------------------------------------------- */

typedef struct zr_region {
    const uint64_t *cshape;           /* the stored chunk's shape */
    uint64_t origin[SURG_MAX_RANK];   /* its first element in the array */
    uint64_t ext[SURG_MAX_RANK];      /* how much of it is inside the array */
} zr_region;

static void swap_units(unsigned char *b, size_t len, unsigned unit)
{
    for (size_t i = 0; i + unit <= len; i += unit)
        for (unsigned x = 0, y = unit - 1; x < y; x++, y--) {
            unsigned char t = b[i + x];
            b[i + x] = b[i + y];
            b[i + y] = t;
        }
}

/* The chunk's stream, read a buffer at a time. */
typedef struct zr_in {
    zr_pipe *p;
    uint64_t left;
    size_t pos, n;
    bool swap;
} zr_in;

static surg_status next(zr_ctx *z, zr_in *r, size_t want, const unsigned char **data,
                        size_t *got)
{
    if (r->pos == r->n) {
        size_t m = r->left < BUF ? (size_t)r->left : BUF;
        surg_status st = pull(r->p, r->p->top, z->rbuf, m, z->sink);
        if (st)
            return st;
        if (r->swap && z->swap)
            swap_units(z->rbuf, m, z->swap);
        r->left -= m;
        r->pos = 0;
        r->n = m;
    }
    *got = r->n - r->pos < want ? r->n - r->pos : want;
    *data = z->rbuf + r->pos;
    r->pos += *got;
    return SURG_OK;
}

static uint64_t prod(const uint64_t *v, uint32_t n)
{
    uint64_t k = 1;
    for (uint32_t i = 0; i < n; i++)
        k *= v[i];
    return k;
}

/* Where element (origin + idx) of the region starts in the output, for
 * the leading dimensions (the last one's index is 0). */
static uint64_t row_at(const zr_ctx *z, const zr_region *g, const uint64_t *idx)
{
    uint32_t last = z->rank - 1;
    uint64_t e = g->origin[last];
    for (uint32_t d = 0; d < last; d++)
        e += (g->origin[d] + idx[d]) * z->ostride[d];
    return z->off + e * z->a->esize;
}

/* Count idx up over the first n dimensions of `lim`, last fastest. */
static void step(uint64_t *idx, const uint64_t *lim, uint32_t n)
{
    for (uint32_t d = n; d-- > 0;) {
        if (++idx[d] < lim[d])
            return;
        idx[d] = 0;
    }
}

/* A C-order chunk: its rows straight from the stream to their places. */
static surg_status place_c(zr_ctx *z, zr_pipe *p, const zr_region *g)
{
    unsigned es = z->a->esize;
    uint32_t last = z->rank - 1;
    uint64_t row = g->cshape[last] * es, keep = g->ext[last] * es;
    uint64_t rows = prod(g->cshape, last), idx[SURG_MAX_RANK] = {0};
    zr_in in = {.p = p, .left = rows * row, .swap = true};
    surg_status st = SURG_OK;
    for (uint64_t r = 0; !st && r < rows; r++, step(idx, g->cshape, last)) {
        bool inside = true;
        for (uint32_t d = 0; d < last; d++)
            inside &= idx[d] < g->ext[d];
        uint64_t at = inside ? row_at(z, g, idx) : 0;
        for (uint64_t q = 0; !st && q < row;) {
            const unsigned char *data;
            size_t got;
            st = next(z, &in, row - q < BUF ? (size_t)(row - q) : BUF, &data, &got);
            if (!st && inside && q < keep)
                st = put(z, at + q, data, keep - q < got ? (size_t)(keep - q) : got);
            q += got;
        }
    }
    return st;
}

/* A transposed chunk: staged whole (in memory when small, else in a
 * temporary file mapped for reading), then gathered in output order. */
static surg_status place_perm(zr_ctx *z, zr_pipe *p, const zr_region *g, const uint32_t *perm,
                              const char *what)
{
    unsigned es = z->a->esize;
    uint32_t n = z->rank;
    uint64_t total = prod(g->cshape, n) * es;
    unsigned char *mem = NULL;
    int tfd = -1;
    surg_status st = SURG_OK;
    zr_in in = {.p = p, .left = total, .swap = true};
    if (total <= SMALL) {
        if (!(mem = malloc((size_t)total)))
            return dg_nomem(z->sink, what);
        for (uint64_t q = 0; !st && q < total;) {
            const unsigned char *data;
            size_t got;
            st = next(z, &in, BUF, &data, &got);
            if (!st)
                memcpy(mem + q, data, got);
            q += got;
        }
    } else {
        st = dc_temp_file(z->tmp_dir, what, z->sink, &tfd);
        for (uint64_t q = 0; !st && q < total;) {
            const unsigned char *data;
            size_t got;
            st = next(z, &in, BUF, &data, &got);
            for (size_t w = 0; !st && w < got;) {
                ssize_t k = pwrite(tfd, data + w, got - w, (off_t)(q + w));
                if (k < 0 && errno == EINTR)
                    continue;
                if (k < 0)
                    st = dg_errno(z->sink, what, "cannot write the staging file", errno);
                else
                    w += (size_t)k;
            }
            q += got;
        }
        if (!st) {
            void *m = mmap(NULL, (size_t)total, PROT_READ, MAP_SHARED, tfd, 0);
            if (m == MAP_FAILED)
                st = dg_errno(z->sink, what, "cannot map the staging file", errno);
            else
                mem = m;
        }
    }
    /* Element x of the chunk is at sum x[perm[i]] * pstride[i]. */
    uint64_t sstride[SURG_MAX_RANK], k = 1;
    for (uint32_t i = n; i-- > 0;) {
        sstride[perm[i]] = k * es;
        k *= g->cshape[perm[i]];
    }
    uint64_t idx[SURG_MAX_RANK] = {0}, rows = prod(g->ext, n - 1);
    for (uint64_t r = 0; !st && r < rows; r++, step(idx, g->ext, n - 1)) {
        uint64_t at = row_at(z, g, idx), src = 0;
        for (uint32_t d = 0; d + 1 < n; d++)
            src += idx[d] * sstride[d];
        for (uint64_t x = 0; !st && x < g->ext[n - 1]; x++, src += sstride[n - 1])
            st = put(z, at + x * es, mem + src, es);
    }
    if (tfd >= 0) {
        if (mem)
            munmap(mem, (size_t)total);
        close(tfd);
    } else {
        free(mem);
    }
    return st;
}

/* A region of the array that no stored chunk holds: the fill value. */
static surg_status place_fill(zr_ctx *z, const zr_region *g)
{
    unsigned es = z->a->esize;
    uint32_t last = z->rank - 1;
    uint64_t keep = g->ext[last] * es, rows = prod(g->ext, last), idx[SURG_MAX_RANK] = {0};
    surg_status st = SURG_OK;
    for (uint64_t r = 0; !st && r < rows; r++, step(idx, g->ext, last)) {
        uint64_t at = row_at(z, g, idx);
        for (uint64_t q = 0; !st && q < keep; q += BUF)
            st = put(z, at + q, z->fill, keep - q < BUF ? (size_t)(keep - q) : BUF);
    }
    return st;
}

static surg_status place_chunk(zr_ctx *z, kv_reader *rd, uint64_t base, uint64_t len,
                               const zr_region *g, const char *what)
{
    const zarr_chain *ch = &z->a->chain;
    zr_pipe p;
    uint64_t want = prod(g->cshape, z->rank) * z->a->esize;
    surg_status st = pipe_open(z, &p, ch, rd, base, len, want, what);
    if (!st)
        st = ch->perm && z->a->rank > 1 ? place_perm(z, &p, g, ch->perm, what)
                                         : place_c(z, &p, g);
    if (!st)
        st = finish(&p, p.top, z->sink);
    pipe_end(&p);
    return st;
}

/* ---- chunks and shards ------------------------------------------------------ */

static surg_status missing(zr_ctx *z, const zr_region *g, const char *what, const char *why)
{
    if (z->missing_is_fill)
        return place_fill(z, g);
    return bad(z, "zarr-missing", what, "%s, and missing chunks are not read as the fill value "
               "in this checkpoint", why);
}

static uint64_t get_u64(const unsigned char *b, bool big)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)b[big ? 7 - i : i] << (8 * i);
    return v;
}

static surg_status check_index_crc(zr_ctx *z, kv_reader *rd, uint64_t at, uint64_t n,
                                   const char *what)
{
    uint32_t crc = 0;
    surg_status st = SURG_OK;
    for (uint64_t q = 0; !st && q < n; q += BUF) {
        size_t m = n - q < BUF ? (size_t)(n - q) : BUF;
        st = kv_reader_read(rd, at + q, z->rbuf, m, z->sink);
        if (!st)
            crc = crc32c(crc, z->rbuf, m);
    }
    unsigned char t[4];
    if (!st)
        st = kv_reader_read(rd, at + n, t, 4, z->sink);
    if (st)
        return st;
    uint32_t want = (uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 |
                    (uint32_t)t[3] << 24;
    if (crc != want)
        return bad(z, "zarr-crc", what, "the CRC-32C of the shard's index is %08x, not the %08x "
                   "stored", crc, want);
    return SURG_OK;
}

static void inner_what(zr_ctx *z, char *out, const char *shard_what, const uint64_t *h)
{
    size_t n = (size_t)snprintf(out, WHAT, "%s, inner chunk [", shard_what);
    for (uint32_t d = 0; d < z->rank && n < WHAT - 32; d++)
        n += (size_t)snprintf(out + n, WHAT - n, "%s%llu", d ? ", " : "", (unsigned long long)h[d]);
    snprintf(out + n, WHAT - n, "]");
}

static surg_status place_shard(zr_ctx *z, kv_reader *rd, uint64_t len, const zr_region *g,
                               const char *what)
{
    const zarr_array *a = z->a;
    uint64_t n = a->n_inner, isz = 16 * n + (a->index_crc ? 4 : 0);
    if (len < isz)
        return bad(z, "zarr-shard", what, "the shard has %llu bytes, too few for its index of "
                   "%llu", (unsigned long long)len, (unsigned long long)isz);
    uint64_t ix = a->index_at_start ? 0 : len - isz;
    uint64_t lo = a->index_at_start ? isz : 0, hi = a->index_at_start ? len : len - isz;
    surg_status st = a->index_crc ? check_index_crc(z, rd, ix, 16 * n, what) : SURG_OK;
    uint64_t ig[SURG_MAX_RANK], h[SURG_MAX_RANK] = {0};
    for (uint32_t d = 0; d < z->rank; d++)
        ig[d] = z->chunk[d] / z->inner[d];
    char *iw = malloc(WHAT);
    unsigned char *ent = malloc(BUF); /* index entries read a buffer at a time */
    if (!st && (!iw || !ent))
        st = dg_nomem(z->sink, what);
    size_t have = 0, used = 0;
    for (uint64_t k = 0; !st && k < n; k++, step(h, ig, z->rank)) {
        if (used == have) {
            uint64_t left = 16 * (n - k);
            have = left < BUF ? (size_t)left : BUF;
            used = 0;
            if ((st = kv_reader_read(rd, ix + 16 * k, ent, have, z->sink)))
                break;
        }
        uint64_t off = get_u64(ent + used, a->index_big), nb = get_u64(ent + used + 8, a->index_big);
        used += 16;
        zr_region r = {.cshape = z->inner};
        bool inside = true;
        for (uint32_t d = 0; d < z->rank; d++) {
            r.origin[d] = g->origin[d] + h[d] * z->inner[d];
            inside &= r.origin[d] < z->shape[d];
            if (inside)
                r.ext[d] = z->shape[d] - r.origin[d] < z->inner[d] ? z->shape[d] - r.origin[d]
                                                                   : z->inner[d];
        }
        inner_what(z, iw, what, h);
        if (off == UINT64_MAX && nb == UINT64_MAX) {
            if (inside)
                st = missing(z, &r, iw, "is empty in its shard's index");
            continue;
        }
        if (off < lo || off > hi || nb > hi - off) {
            st = bad(z, "zarr-shard", iw, "the shard's index puts it at bytes %llu to %llu, "
                     "outside the shard's chunks (bytes %llu to %llu)", (unsigned long long)off,
                     (unsigned long long)(off + (nb > UINT64_MAX - off ? 0 : nb)),
                     (unsigned long long)lo, (unsigned long long)hi);
            break;
        }
        if (inside)
            st = place_chunk(z, rd, off, nb, &r, iw);
    }
    free(iw);
    free(ent);
    return st;
}

/* The chunk key at grid position gi after the array's prefix in z->key. */
static void chunk_key(zr_ctx *z, const uint64_t *gi)
{
    char *k = z->key + z->key_at;
    size_t cap = WHAT - z->key_at, n = 0;
    if (z->a->key_c)
        n += (size_t)snprintf(k + n, cap - n, "c");
    if (!z->a->rank)
        n += (size_t)snprintf(k + n, cap - n, z->a->key_c ? "" : "0");
    for (uint32_t d = 0; d < z->a->rank; d++) {
        if (d || z->a->key_c)
            k[n++] = z->a->sep;
        n += (size_t)snprintf(k + n, cap - n, "%llu", (unsigned long long)gi[d]);
    }
}

static surg_status decode_all(zr_ctx *z)
{
    const zarr_array *a = z->a;
    uint64_t grid[SURG_MAX_RANK], gi[SURG_MAX_RANK] = {0};
    for (uint32_t d = 0; d < z->rank; d++)
        grid[d] = (z->shape[d] - 1) / z->chunk[d] + 1;
    surg_status st = SURG_OK;
    for (uint64_t c = 0; !st && c < a->n_chunks; c++, step(gi, grid, z->rank)) {
        chunk_key(z, gi);
        snprintf(z->what, WHAT, "array \"%s\" chunk %s in %s", a->name, z->key + z->key_at,
                 a->root);
        zr_region g = {.cshape = z->chunk};
        for (uint32_t d = 0; d < z->rank; d++) {
            g.origin[d] = gi[d] * z->chunk[d];
            uint64_t rest = z->shape[d] - g.origin[d];
            g.ext[d] = rest < z->chunk[d] ? rest : z->chunk[d];
        }
        kv_value v;
        bool found;
        st = kv_get(z->store, z->key, z->sink, &v, &found);
        if (st)
            break;
        if (!found) {
            char why[WHAT / 2];
            snprintf(why, sizeof why, "is missing (no key \"%.5000s\")", z->key);
            st = missing(z, &g, z->what, why);
            continue;
        }
        kv_reader rd;
        kv_reader_init(&rd, z->store, &v, z->what);
        st = a->sharded ? place_shard(z, &rd, v.length, &g, z->what)
                        : place_chunk(z, &rd, 0, v.length, &g, z->what);
        kv_reader_close(&rd);
    }
    return st ? st : flush(z);
}

surg_status zarr_decode(const zarr_array *a, kv_store *store, bool missing_is_fill, int dst_fd,
                        uint64_t dst_off, const char *tmp_dir, surg_sink *sink)
{
    if (!a->nbytes)
        return SURG_OK;
    zr_ctx z = {.a = a, .store = store, .missing_is_fill = missing_is_fill, .fd = dst_fd,
                .off = dst_off, .tmp_dir = tmp_dir, .sink = sink, .rank = a->rank,
                .shape = a->shape, .chunk = a->chunk, .inner = a->inner, .one = {1}};
    if (!a->rank) {
        z.rank = 1;
        z.shape = z.chunk = z.inner = z.one;
    }
    uint64_t k = 1;
    for (uint32_t d = z.rank; d-- > 0;) {
        z.ostride[d] = k;
        k *= z.shape[d];
    }
    if (a->chain.big && a->esize > 1)
        z.swap = a->dtype == SURG_C64 ? 4 : a->esize;
    z.rbuf = malloc(BUF);
    z.wbuf = malloc(BUF);
    z.fill = malloc(BUF);
    z.what = malloc(WHAT);
    z.key = malloc(WHAT);
    surg_status st = SURG_OK;
    if (!z.rbuf || !z.wbuf || !z.fill || !z.what || !z.key || strlen(a->name) > WHAT / 2) {
        st = dg_nomem(sink, a->root);
    } else {
        for (size_t i = 0; i < BUF; i += a->esize)
            memcpy(z.fill + i, a->fill, a->esize);
        z.key_at = (size_t)snprintf(z.key, WHAT, "%s%s", a->name, *a->name ? "/" : "");
        st = decode_all(&z);
    }
    for (int i = 0; i < ZARR_MAX_B2B; i++)
        free(z.inbufs[i]);
    free(z.rbuf);
    free(z.wbuf);
    free(z.fill);
    free(z.what);
    free(z.key);
    return st;
}

/* ---- decoded on demand ------------------------------------------------------ */

typedef struct zr_src {
    const zarr_array *a;
    kv_store *store;
    bool missing_is_fill;
} zr_src;

static surg_status source_decode(const dc_source *s, int dst_fd, uint64_t dst_off,
                                 const char *tmp_dir, surg_sink *sink)
{
    const zr_src *c = s->ctx;
    return zarr_decode(c->a, c->store, c->missing_is_fill, dst_fd, dst_off, tmp_dir, sink);
}

surg_status zarr_source(arena *keep, const zarr_array *a, kv_store *store, bool missing_is_fill,
                        const char *tensor_name, dc_source *out, surg_sink *sink)
{
    zr_src *c = ar_alloc(keep, sizeof *c);
    if (!c)
        return dg_nomem(sink, a->root);
    *c = (zr_src){a, store, missing_is_fill};
    *out = (dc_source){.name = tensor_name, .esize = a->esize, .rank = a->rank,
                       .shape = a->shape, .nbytes = a->nbytes, .decode = source_decode, .ctx = c};
    return SURG_OK;
}
