/* strsort.c: multikey quicksort (Bentley and Sedgewick, 1997): partition on
 * one character at a time, so a shared prefix is read once per level rather
 * than once per comparison. Records are swapped in place; pending parts wait
 * on a heap stack, so no input can exhaust the C stack. */
#include "support/strsort.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct sorter {
    unsigned char *base;
    size_t size;
} sorter;

static const unsigned char *key(const sorter *s, size_t i)
{
    const unsigned char *k;
    memcpy(&k, s->base + i * s->size, sizeof k);
    return k;
}

static void swap(const sorter *s, size_t i, size_t j)
{
    unsigned char t[64];
    unsigned char *a = s->base + i * s->size, *b = s->base + j * s->size;
    memcpy(t, a, s->size);
    memcpy(a, b, s->size);
    memcpy(b, t, s->size);
}

static void insertion(const sorter *s, size_t lo, size_t n, size_t d)
{
    for (size_t i = lo + 1; i < lo + n; i++)
        for (size_t j = i; j > lo && strcmp((const char *)key(s, j - 1) + d,
                                            (const char *)key(s, j) + d) > 0;
             j--)
            swap(s, j - 1, j);
}

typedef struct task {
    size_t lo, n, d;
} task;

typedef struct stack {
    task *t;
    size_t n, cap;
} stack;

static int push(stack *st, size_t lo, size_t n, size_t d)
{
    if (n < 2)
        return 0;
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        task *t = realloc(st->t, cap * sizeof *t);
        if (!t)
            return -1;
        st->t = t;
        st->cap = cap;
    }
    st->t[st->n++] = (task){lo, n, d};
    return 0;
}

int ss_sort(void *records, size_t n, size_t size)
{
    if (n < 2)
        return 0;
    if (size > 64)
        return -1;
    sorter s = {records, size};
    stack st = {0};
    int rc = push(&st, 0, n, 0);
    while (rc == 0 && st.n) {
        task t = st.t[--st.n];
        if (t.n < 16) {
            insertion(&s, t.lo, t.n, t.d);
            continue;
        }
        swap(&s, t.lo, t.lo + t.n / 2);
        int pivot = key(&s, t.lo)[t.d];
        size_t lt = t.lo, i = t.lo, gt = t.lo + t.n;
        /* [lo, lt) below the pivot, [lt, i) equal, [gt, end) above */
        while (i < gt) {
            int c = key(&s, i)[t.d];
            if (c < pivot)
                swap(&s, lt++, i++);
            else if (c > pivot)
                swap(&s, i, --gt);
            else
                i++;
        }
        rc = push(&st, t.lo, lt - t.lo, t.d) | push(&st, gt, t.lo + t.n - gt, t.d);
        if (pivot != 0) /* keys equal to their end need no more sorting */
            rc |= push(&st, lt, gt - lt, t.d + 1);
    }
    free(st.t);
    return rc;
}

size_t ss_find(const void *records, size_t n, size_t size, const char *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *k;
        memcpy(&k, (const char *)records + mid * size, sizeof k);
        int c = strcmp(k, key);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (size_t)-1;
}
