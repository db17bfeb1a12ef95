/* ckpt_write.c: writing a whole checkpoint back out (the identity surgery),
 * and its abstract state as a schema file. Tensor bytes go from input to
 * output as byte ranges, never decoded. */
#include <stdlib.h>
#include <string.h>

#include "runtime/checkpoint.h"
#include "support/diag.h"
#include "runtime/st_write.h"

static surg_status copy_tensor(void *ctx, size_t i, of_file *out,
                               surg_sink *sink)
{
    surg_ckpt *ck = ctx;
    surg_status st = ck_ready(ck, i, sink);
    return st ? st : of_copy(out, sink, ck_file_of(ck, i)->fd, ck->offset[i],
                             ck->tensors[i].nbytes);
}

surg_status surg_ckpt_write(surg_ckpt *in, const char *out_path,
                            const surg_write_opts *opts, surg_sink *sink)
{
    if (in->kind == SURG_CKPT_SCHEMA) {
        dg_file(sink, SURG_ERROR, "ck-no-data", in->path,
                "a schema holds no tensor data to write");
        return SURG_EUSAGE;
    }
    outp_reads reads = {0};
    surg_status st = outp_reads_add_ckpt(&reads, sink, in);
    stw_output out = {
        .tensors = in->tensors,
        .n = in->n,
        .meta = in->meta,
        .n_meta = in->n_meta,
        .max_shard_size = opts ? opts->max_shard_size : 0,
        .emit = copy_tensor,
        .ctx = in,
        .reads = &reads,
        .format = opts ? opts->out_format : NULL,
    };
    if (!st)
        st = stw_write(sink, out_path, &out);
    outp_reads_free(&reads);
    return st;
}

surg_status surg_ckpt_schema_json(const surg_ckpt *ck, char **out)
{
    buf b;
    buf_init(&b);
    buf_putc(&b, '{');
    const char *sep = "\n  ";
    if (ck->n_meta) {
        buf_puts(&b, "\n  \"__metadata__\": {");
        for (size_t i = 0; i < ck->n_meta; i++) {
            buf_puts(&b, i ? ", " : "");
            buf_json_string(&b, ck->meta[i].key);
            buf_puts(&b, ": ");
            buf_json_string(&b, ck->meta[i].value);
        }
        buf_putc(&b, '}');
        sep = ",\n  ";
    }
    for (size_t i = 0; i < ck->n; i++) {
        const surg_tensor_info *t = &ck->tensors[i];
        buf_puts(&b, sep);
        buf_json_string(&b, t->name);
        buf_printf(&b, ": {\"dtype\": \"%s\", \"shape\": [",
                   surg_dtype_st_name(t->dtype));
        for (uint32_t d = 0; d < t->rank; d++)
            buf_printf(&b, "%s%llu", d ? ", " : "",
                       (unsigned long long)t->shape[d]);
        buf_puts(&b, "]}");
        sep = ",\n  ";
    }
    buf_puts(&b, ck->n || ck->n_meta ? "\n}\n" : "}\n");
    *out = buf_take(&b);
    return *out ? SURG_OK : SURG_ENOMEM;
}
