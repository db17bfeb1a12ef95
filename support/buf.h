/* buf.h: a growable byte string, for text the library builds (headers,
 * messages, schema JSON). Once an append fails the buffer stays failed, so a
 * sequence of appends needs one check at the end. */
#ifndef SURG_BUF_H
#define SURG_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct buf {
    char *data; /* NUL-terminated while not failed */
    size_t len, cap;
    bool failed;
} buf;

void buf_init(buf *b);
void buf_free(buf *b);
void buf_append(buf *b, const void *data, size_t len);
void buf_puts(buf *b, const char *s);
void buf_putc(buf *b, char c);
void buf_printf(buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void buf_vprintf(buf *b, const char *fmt, va_list ap);
/* The shortest decimal text that reads back as exactly v (as %.17g would,
 * but without its noise: 0.1, not 0.10000000000000001). */
void buf_double(buf *b, double v);
/* Shortest text of a float value. */
void buf_float(buf *b, float v);
/* A JSON string literal, valid JSON for any bytes: escaped as serde_json
 * escapes it, and DEL, the C1 controls (U+0080-U+009F), U+2028 and U+2029
 * as \uXXXX too; a byte that does not begin well-formed UTF-8 becomes
 * \ufffd. */
void buf_json_string(buf *b, const char *s);
/* The same, with every non-ASCII character escaped as \uXXXX (surrogate
 * pairs past U+FFFF), as Python's json.dumps writes by default. */
void buf_json_ascii(buf *b, const char *s);
/* Hand the string over to the caller (NULL if failed); the buffer is reset. */
char *buf_take(buf *b);

#endif
