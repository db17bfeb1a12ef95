/* codec.c: zstd, zlib and gzip streams (codec.h). */
#include "runtime/codec.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "support/diag.h"

const char *codec_name(codec_kind kind)
{
    switch (kind) {
    case CODEC_ZLIB: return "zlib";
    case CODEC_GZIP: return "gzip";
    case CODEC_ZSTD: return "zstd";
    case CODEC_NONE: break;
    }
    return "no compression";
}

static surg_status corrupt(codec_stream *c, surg_sink *sink, const char *detail)
{
    dg_file(sink, SURG_ERROR, "codec-corrupt", c->what, "the %s stream is corrupt: %s",
            codec_name(c->kind), detail);
    return SURG_EINVALID;
}

surg_status codec_begin(codec_stream *c, codec_kind kind, const char *what, surg_sink *sink)
{
    *c = (codec_stream){.kind = kind, .what = what};
    if (kind == CODEC_ZSTD) {
        c->state = ZSTD_createDStream();
        if (c->state && ZSTD_isError(ZSTD_initDStream(c->state))) {
            ZSTD_freeDStream(c->state);
            c->state = NULL;
        }
        /* A frame may ask for a window of up to 2 GiB; refuse the rest. */
        if (c->state)
            ZSTD_DCtx_setParameter(c->state, ZSTD_d_windowLogMax, 31);
    } else if (kind == CODEC_ZLIB || kind == CODEC_GZIP) {
        z_stream *z = calloc(1, sizeof *z);
        if (z && inflateInit2(z, kind == CODEC_GZIP ? 16 + MAX_WBITS : MAX_WBITS) != Z_OK) {
            free(z);
            z = NULL;
        }
        c->state = z;
    } else {
        return SURG_OK;
    }
    return c->state ? SURG_OK : dg_nomem(sink, what);
}

void codec_window_max(codec_stream *c, size_t bytes)
{
    if (c->kind != CODEC_ZSTD || !c->state)
        return;
    int log = 20;
    while (log < 31 && ((size_t)1 << log) < bytes)
        log++;
    ZSTD_DCtx_setParameter(c->state, ZSTD_d_windowLogMax, log);
}

surg_status codec_step(codec_stream *c, const unsigned char **in, size_t *in_len,
                       unsigned char *out, size_t out_cap, size_t *produced, surg_sink *sink)
{
    *produced = 0;
    if (c->ended || !out_cap)
        return SURG_OK;
    if (c->kind == CODEC_NONE) {
        size_t n = *in_len < out_cap ? *in_len : out_cap;
        memcpy(out, *in, n);
        *in += n;
        *in_len -= n;
        *produced = n;
        return SURG_OK;
    }
    if (c->kind == CODEC_ZSTD) {
        ZSTD_inBuffer ib = {*in, *in_len, 0};
        ZSTD_outBuffer ob = {out, out_cap, 0};
        size_t r = ZSTD_decompressStream(c->state, &ob, &ib);
        if (ZSTD_isError(r))
            return corrupt(c, sink, ZSTD_getErrorName(r));
        *in += ib.pos;
        *in_len -= ib.pos;
        *produced = ob.pos;
        c->ended = r == 0;
        return SURG_OK;
    }
    z_stream *z = c->state;
    /* zlib counts in uInt: feed and take at most 1 GiB a step. */
    uInt in_n = *in_len < (1u << 30) ? (uInt)*in_len : 1u << 30;
    uInt out_n = out_cap < (1u << 30) ? (uInt)out_cap : 1u << 30;
    z->next_in = (unsigned char *)*in;
    z->avail_in = in_n;
    z->next_out = out;
    z->avail_out = out_n;
    int r = inflate(z, Z_NO_FLUSH);
    if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR)
        return corrupt(c, sink, z->msg ? z->msg : r == Z_NEED_DICT ? "needs a dictionary" : "bad data");
    *in += in_n - z->avail_in;
    *in_len -= in_n - z->avail_in;
    *produced = out_n - z->avail_out;
    c->ended = r == Z_STREAM_END;
    return SURG_OK;
}

void codec_end(codec_stream *c)
{
    if (c->kind == CODEC_ZSTD && c->state)
        ZSTD_freeDStream(c->state);
    else if (c->state) {
        inflateEnd(c->state);
        free(c->state);
    }
    c->state = NULL;
}

surg_status codec_decode_mem(codec_kind kind, const void *in, size_t n, void *out, size_t want,
                             const char *what, surg_sink *sink)
{
    codec_stream c;
    surg_status st = codec_begin(&c, kind, what, sink);
    const unsigned char *p = in;
    unsigned char *o = out;
    size_t got = 0;
    unsigned char extra;
    while (!st) {
        size_t made = 0, left = n;
        bool full = got == want;
        /* Past the wanted bytes, one more byte shows a stream too long. */
        st = codec_step(&c, &p, &n, full ? &extra : o + got, full ? 1 : want - got, &made, sink);
        if (st)
            break;
        got += made;
        if (got > want) {
            dg_file(sink, SURG_ERROR, "codec-size", what,
                    "the %s stream holds more than the %zu bytes expected", codec_name(kind),
                    want);
            st = SURG_EINVALID;
        } else if (kind == CODEC_NONE ? !n : c.ended) {
            if (n) {
                dg_file(sink, SURG_ERROR, "codec-size", what,
                        "%zu bytes follow the end of the %s stream", n, codec_name(kind));
                st = SURG_EINVALID;
            } else if (got != want) {
                dg_file(sink, SURG_ERROR, "codec-size", what,
                        "the %s stream ends after %zu of the %zu bytes expected",
                        codec_name(kind), got, want);
                st = SURG_EINVALID;
            }
            break;
        } else if (!made && n == left) {
            dg_file(sink, SURG_ERROR, "codec-size", what,
                    "the %s stream is cut short after %zu of the %zu bytes expected",
                    codec_name(kind), got, want);
            st = SURG_EINVALID;
        }
    }
    codec_end(&c);
    return st;
}
