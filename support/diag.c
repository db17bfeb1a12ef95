/* diag.c: building diagnostics and counting them into the sink, and the
 * exit status each outcome gives. */
#include "support/diag.h"

#include <stdarg.h>
#include <string.h>

#include "support/buf.h"

void dg_emit(surg_sink *sink, const surg_diag *d)
{
    if (!sink)
        return;
    if (d->severity == SURG_ERROR)
        sink->errors++;
    else if (d->severity == SURG_WARNING)
        sink->warnings++;
    if (sink->fn)
        sink->fn(d, sink->user);
}

static void vreport(surg_sink *sink, surg_severity sev, const char *code,
                    const char *file, const char *const *notes,
                    size_t n_notes, const char *fmt, va_list ap)
{
    buf msg;
    buf_init(&msg);
    buf_vprintf(&msg, fmt, ap);
    surg_diag d = {
        .severity = sev,
        .code = code,
        .file = file,
        .message = msg.failed ? "(out of memory while describing an error)"
                              : msg.data,
        .notes = notes,
        .n_notes = n_notes,
    };
    dg_emit(sink, &d);
    buf_free(&msg);
}

void dg_file(surg_sink *sink, surg_severity sev, const char *code,
             const char *file, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(sink, sev, code, file, NULL, 0, fmt, ap);
    va_end(ap);
}

void dg_file_notes(surg_sink *sink, surg_severity sev, const char *code,
                   const char *file, const char *const *notes, size_t n_notes,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(sink, sev, code, file, notes, n_notes, fmt, ap);
    va_end(ap);
}

surg_status dg_errno(surg_sink *sink, const char *file, const char *what,
                     int err)
{
    dg_file(sink, SURG_ERROR, "io", file, "%s: %s", what, strerror(err));
    return SURG_EIO;
}

surg_status dg_nomem(surg_sink *sink, const char *file)
{
    dg_file(sink, SURG_ERROR, "nomem", file, "out of memory");
    return SURG_ENOMEM;
}

int surg_exit_code(surg_status st)
{
    switch (st) {
    case SURG_OK: return 0;
    case SURG_EINVALID: return 1;
    default: return 2;
    }
}

static const char *severity_name(surg_severity s)
{
    return s == SURG_ERROR ? "error" : s == SURG_WARNING ? "warning" : "note";
}

char *surg_diag_json(const surg_diag *d)
{
    buf b;
    buf_init(&b);
    buf_puts(&b, "{\"file\":");
    buf_json_string(&b, d->file ? d->file : "");
    if (d->line)
        buf_printf(&b, ",\"line\":%u,\"column\":%u,\"end_line\":%u,\"end_column\":%u",
                   (unsigned)d->line, (unsigned)d->col, (unsigned)d->end_line,
                   (unsigned)d->end_col);
    buf_printf(&b, ",\"severity\":\"%s\",\"code\":", severity_name(d->severity));
    buf_json_string(&b, d->code ? d->code : "");
    buf_puts(&b, ",\"message\":");
    buf_json_string(&b, d->message ? d->message : "");
    buf_puts(&b, ",\"notes\":[");
    for (size_t i = 0; i < d->n_notes; i++) {
        if (i)
            buf_putc(&b, ',');
        buf_json_string(&b, d->notes[i] ? d->notes[i] : "");
    }
    buf_puts(&b, "]}");
    return buf_take(&b);
}
