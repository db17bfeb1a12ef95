/* bigbuf.c: huge-page-aligned anonymous mappings. Small requests still get
 * at least one huge page's worth of address space; only touched pages cost
 * memory. */
#include "support/bigbuf.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

enum { BB_HUGE = 2 << 20 };

static size_t round_up(size_t n) { return (n + BB_HUGE - 1) / BB_HUGE * BB_HUGE; }

void *bb_map(size_t bytes)
{
    size_t size = round_up(bytes ? bytes : 1), extra = size + BB_HUGE;
    if (extra < size)
        return NULL;
    char *m = mmap(NULL, extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    uintptr_t start = ((uintptr_t)m + BB_HUGE - 1) & ~(uintptr_t)(BB_HUGE - 1);
    size_t head = start - (uintptr_t)m, tail = extra - head - size;
    if (head)
        munmap(m, head);
    if (tail)
        munmap((char *)start + size, tail);
#ifdef MADV_HUGEPAGE
    madvise((void *)start, size, MADV_HUGEPAGE); /* advice the kernel may ignore */
#endif
    return (void *)start;
}

void bb_unmap(void *p, size_t bytes)
{
    if (p)
        munmap(p, round_up(bytes ? bytes : 1));
}

bool bb_reserve(bigbuf *b, size_t bytes)
{
    if (bytes <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : BB_HUGE;
    while (cap < bytes) {
        if (cap > SIZE_MAX / 2)
            return false;
        cap *= 2;
    }
    void *p = bb_map(cap);
    if (!p)
        return false;
    if (b->p) {
        memcpy(p, b->p, b->cap);
        bb_unmap(b->p, b->cap);
    }
    b->p = p;
    b->cap = round_up(cap);
    return true;
}

void bb_free(bigbuf *b)
{
    bb_unmap(b->p, b->cap);
    *b = (bigbuf){0};
}
