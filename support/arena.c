/* arena.c: a list of blocks; each allocation bumps a pointer in the newest.
 * Blocks are bigbuf mappings (bb_map): zeroed by the kernel (so allocations
 * need no clearing), and backed by huge pages where the kernel allows, since
 * a header of a million tensors touches tens of megabytes and a page fault
 * per 4 KiB costs more than the parsing. */
#include "support/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "support/bigbuf.h"

struct ar_block {
    ar_block *next;
    size_t used, cap, mapped;
    alignas(max_align_t) unsigned char data[];
};

enum { AR_BLOCK = 4 << 20, AR_HUGE = 2 << 20 }; /* AR_HUGE: bigbuf's huge page */

void ar_init(arena *a) { a->head = NULL; }

void ar_free(arena *a)
{
    ar_block *b = a->head;
    while (b) {
        ar_block *next = b->next;
        bb_unmap(b, b->mapped);
        b = next;
    }
    a->head = NULL;
}

static size_t align_up(size_t n)
{
    size_t al = alignof(max_align_t);
    return (n + al - 1) & ~(al - 1);
}

void *ar_alloc(arena *a, size_t size)
{
    if (size > SIZE_MAX / 2)
        return NULL;
    size = align_up(size ? size : 1);
    ar_block *b = a->head;
    if (!b || b->cap - b->used < size) {
        size_t want = sizeof *b + (size > AR_BLOCK ? size : AR_BLOCK);
        size_t mapped = (want + AR_HUGE - 1) / AR_HUGE * AR_HUGE;
        void *m = bb_map(mapped);
        if (!m)
            return NULL;
        b = m;
        b->mapped = mapped;
        b->cap = mapped - sizeof *b;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

void *ar_array(arena *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / 2 / size)
        return NULL;
    return ar_alloc(a, n * size);
}

char *ar_strndup(arena *a, const char *s, size_t n)
{
    char *p = ar_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *ar_strdup(arena *a, const char *s) { return ar_strndup(a, s, strlen(s)); }
