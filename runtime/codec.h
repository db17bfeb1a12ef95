/* codec.h: compressed bytes made plain with bounded memory — zstd (Debian's
 * libzstd; TensorStore writes frames without their content size, so frames
 * are always decoded as streams), zlib and gzip (zlib). One stream is one
 * frame or member: bytes after its end are an error, as are a stream that
 * ends early and one that would give more than the caller expects. */
#ifndef SURG_CODEC_H
#define SURG_CODEC_H

#include <stdbool.h>
#include <stddef.h>

#include "surg/surg.h"

typedef enum codec_kind { CODEC_NONE, CODEC_ZLIB, CODEC_GZIP, CODEC_ZSTD } codec_kind;

/* What the kind is called in messages ("zstd"). */
const char *codec_name(codec_kind kind);

/* One stream being decoded. `what` names it in every message (the file, or
 * "array \"a\" chunk 0.0 in DIR"); it is borrowed. */
typedef struct codec_stream {
    codec_kind kind;
    void *state; /* a z_stream or a ZSTD_DStream */
    const char *what;
    bool ended;  /* the frame or member is complete */
} codec_stream;

surg_status codec_begin(codec_stream *c, codec_kind kind, const char *what, surg_sink *sink);
/* A zstd frame of this stream may not ask for a window larger than `bytes`
 * (rounded up to a power of two, and at least 1 MiB): a caller that knows
 * how much a stream may decode to bounds the memory the decoder takes
 * (otherwise up to 2 GiB). Other kinds ignore it. */
void codec_window_max(codec_stream *c, size_t bytes);
/* Decode from *in (*in_len bytes; both advanced past what was used) into
 * out, at most out_cap bytes, *produced of them. Sets c->ended at the end
 * of the stream; input after it is left unused. CODEC_NONE copies. */
surg_status codec_step(codec_stream *c, const unsigned char **in, size_t *in_len,
                       unsigned char *out, size_t out_cap, size_t *produced, surg_sink *sink);
void codec_end(codec_stream *c);

/* All `n` bytes of `in`, one whole stream, decoded to exactly `want` bytes
 * at `out`. */
surg_status codec_decode_mem(codec_kind kind, const void *in, size_t n, void *out, size_t want,
                             const char *what, surg_sink *sink);

#endif
