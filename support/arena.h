/* arena.h: bump allocation for memory that lives and dies together (one
 * checkpoint's tables, one compilation). */
#ifndef SURG_ARENA_H
#define SURG_ARENA_H

#include <stddef.h>

typedef struct ar_block ar_block;

typedef struct arena {
    ar_block *head;
} arena;

void ar_init(arena *a);
void ar_free(arena *a);
/* NULL when memory runs out; zeroed memory, aligned for any type. */
void *ar_alloc(arena *a, size_t size);
/* n * size with overflow checked. */
void *ar_array(arena *a, size_t n, size_t size);
char *ar_strndup(arena *a, const char *s, size_t n);
char *ar_strdup(arena *a, const char *s);

#endif
