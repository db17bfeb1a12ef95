/* strsort.h: sorting records by a string key in byte order, fast when the
 * keys share long prefixes (as checkpoint names do: "model.layers.12..."),
 * where comparison sorts spend their time re-reading the same prefix. */
#ifndef SURG_STRSORT_H
#define SURG_STRSORT_H

#include <stddef.h>

/* Sort n records of `size` bytes (at most 64), each starting with a
 * `const char *` key (the first field of the record), in place. Not stable:
 * keys should be distinct, or their order among equals must not matter.
 * Returns -1 when out of memory. */
int ss_sort(void *records, size_t n, size_t size);

/* The index of the record whose key is `key` among n such records sorted
 * by key, or (size_t)-1. */
size_t ss_find(const void *records, size_t n, size_t size, const char *key);

#endif
