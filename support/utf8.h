/* utf8.h: strict UTF-8 validation (no overlong forms, no surrogates, nothing
 * past U+10FFFF), as Rust's str::from_utf8 accepts it. */
#ifndef SURG_UTF8_H
#define SURG_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..len) is valid; otherwise *bad is the first bad byte. */
bool utf8_valid(const unsigned char *s, size_t len, size_t *bad);

/* Length of the well-formed sequence at s (at most n bytes, n > 0), or 0. */
size_t utf8_seq_len(const unsigned char *s, size_t n);

#endif
