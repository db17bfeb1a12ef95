/* schema.c: the schema reader (format.h): a .json file that is a
 * safetensors header without a file behind it (names, dtypes and shapes;
 * data_offsets ignored), what `surg schema` writes. */
#include "support/diag.h"
#include "runtime/format.h"
#include "support/readfile.h"

static surg_status read_table(arena *keep, surg_sink *sink, const char *path, fmt_table *out)
{
    char *json;
    size_t len;
    surg_status st = rf_read_into(keep, sink, path, ST_MAX_HEADER, &json, &len);
    if (st)
        return st;
    return st_parse_header(keep, sink, path, json, len, 0, ST_SCHEMA, &out->h[0]);
}

static const char *const suffixes[] = {".json", NULL};

const fmt_reader fmt_schema = {
    .id = "schema",
    .suffixes = suffixes,
    .open = read_table,
    .called = "a .json schema",
    .unwritten = NULL, /* a schema comes from `surg schema` (outpath.c says so) */
};
