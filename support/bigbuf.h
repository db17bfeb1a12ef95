/* bigbuf.h: a growable buffer for the big tables (tensors by the hundred
 * thousand), mapped straight from the kernel with huge pages advised, where
 * malloc would hand out 4 KiB pages that each cost a fault on first touch. */
#ifndef SURG_BIGBUF_H
#define SURG_BIGBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct bigbuf {
    void *p;
    size_t cap; /* bytes mapped */
} bigbuf;

/* Room for at least `bytes`, keeping the contents; new bytes are zero. */
bool bb_reserve(bigbuf *b, size_t bytes);
void bb_free(bigbuf *b);

/* Fresh zeroed memory for a table that is never grown; NULL when out of
 * memory. Free with bb_unmap(p, bytes). */
void *bb_map(size_t bytes);
void bb_unmap(void *p, size_t bytes);

#endif
