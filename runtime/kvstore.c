/* kvstore.c: reading a store's values (kvstore.h) — inline bytes copied,
 * a file's range read with pread, the file opened once per reader. */
#include "runtime/kvstore.h"

#include <string.h>
#include <unistd.h>

#include "support/diag.h"
#include "support/readfile.h"

void kv_reader_init(kv_reader *r, kv_store *store, const kv_value *v, const char *what)
{
    *r = (kv_reader){.store = store, .v = *v, .what = what, .fd = -1};
}

static surg_status past_end(const kv_reader *r, uint64_t at, size_t n, surg_sink *sink)
{
    dg_file(sink, SURG_ERROR, "kv-range", r->what,
            "reading %zu bytes at byte %llu, past the end of the value (%llu bytes)", n,
            (unsigned long long)at, (unsigned long long)r->v.length);
    return SURG_EINVALID;
}

/* Open the value's file and check that it still holds the whole range. */
static surg_status open_file(kv_reader *r, surg_sink *sink)
{
    uint64_t size = 0;
    surg_status st = r->store && r->store->ops->open_file
                         ? r->store->ops->open_file(r->store, &r->v, sink, &r->fd, &size)
                         : rf_open_regular(sink, r->v.file, &r->fd, &size);
    if (st)
        return st;
    if (r->v.offset > size || r->v.length > size - r->v.offset) {
        dg_file(sink, SURG_ERROR, "io", r->v.file,
                "the file has %llu bytes, too few for the %llu bytes at %llu it should hold "
                "(was it truncated?)",
                (unsigned long long)size, (unsigned long long)r->v.length,
                (unsigned long long)r->v.offset);
        return SURG_EIO;
    }
    return SURG_OK;
}

surg_status kv_reader_read(kv_reader *r, uint64_t at, void *buf, size_t n, surg_sink *sink)
{
    if (at > r->v.length || n > r->v.length - at)
        return past_end(r, at, n, sink);
    if (!n)
        return SURG_OK;
    if (r->v.bytes) {
        memcpy(buf, r->v.bytes + at, n);
        return SURG_OK;
    }
    if (r->fd < 0) {
        surg_status st = open_file(r, sink);
        if (st) {
            kv_reader_close(r);
            return st;
        }
    }
    return rf_read_exact(sink, r->v.file, r->fd, buf, n, r->v.offset + at);
}

void kv_reader_close(kv_reader *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}

surg_status kv_read(const kv_value *v, uint64_t at, void *buf, size_t n, const char *what,
                    surg_sink *sink)
{
    kv_reader r;
    kv_reader_init(&r, NULL, v, what);
    surg_status st = kv_reader_read(&r, at, buf, n, sink);
    kv_reader_close(&r);
    return st;
}
