/* st_write.h: writing safetensors, one file or sharded, byte for byte as the
 * reference writer lays it out. The caller supplies each tensor's bytes
 * through a callback, so data streams from wherever it comes from. */
#ifndef SURG_ST_WRITE_H
#define SURG_ST_WRITE_H

#include "buf.h"
#include "outfile.h"

/* Write the bytes of tensors[item] (exactly its nbytes) to `out`. */
typedef surg_status (*stw_emit_fn)(void *ctx, size_t item, of_file *out,
                                   surg_sink *sink);

typedef struct stw_output {
    const surg_tensor_info *tensors; /* any order; names unique */
    size_t n;
    const surg_meta_entry *meta; /* sorted by key; "format" added if absent */
    size_t n_meta;
    uint64_t max_shard_size; /* 0: one file */
    stw_emit_fn emit;
    void *ctx;
} stw_output;

surg_status stw_write(surg_sink *sink, const char *out_path,
                      const stw_output *out);

/* The header of one file holding tensors[idx[0..n)], and the order the data
 * follows it (the reference's: dtype alignment, largest first, then name).
 * `hdr` gets the 8-byte length and the padded JSON. */
surg_status stw_header(const stw_output *out, size_t *idx, size_t n, buf *hdr);

#endif
