/* state.c: the sorted name table, and merging a statement's changes. */
#include "compiler/state.h"

#include <stdlib.h>
#include <string.h>

#include "support/strsort.h"

size_t state_find(const state_table *s, const char *name)
{
    size_t i = ss_find(s->e, s->n, sizeof *s->e, name);
    return i == (size_t)-1 ? STATE_NONE : i;
}

void state_prefix_range(const state_table *s, const char *prefix, size_t len, size_t *lo,
                        size_t *hi)
{
    size_t a = 0, b = s->n;
    while (a < b) { /* first name >= prefix */
        size_t mid = a + (b - a) / 2;
        if (strncmp(s->e[mid].name, prefix, len) < 0)
            a = mid + 1;
        else
            b = mid;
    }
    size_t c = a, d = s->n;
    while (c < d) { /* first name past every one that starts with prefix */
        size_t mid = c + (d - c) / 2;
        if (strncmp(s->e[mid].name, prefix, len) <= 0)
            c = mid + 1;
        else
            d = mid;
    }
    *lo = a;
    *hi = c;
}

cg_id state_node(const state_table *s, size_t i)
{
    if (!s->e[i].tied)
        return s->e[i].node;
    size_t t = state_find(s, s->e[i].tied);
    return t == STATE_NONE ? CG_NONE : s->e[t].node;
}

/* First index whose name is not below `name`. */
static size_t lower_bound(const state_table *s, const char *name)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(s->e[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool any_tied(const state_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (e[i].tied)
            return true;
    return false;
}

bool state_commit(state_table *s, const uint8_t *removed, state_entry *added, size_t n_added,
                  bool sorted)
{
    if (!sorted && ss_sort(added, n_added, sizeof *added) != 0)
        return false;
    bool walk = n_added * 16 >= s->n;
    bigbuf *next = &s->buf[!s->cur];
    if (!bb_reserve(next, (s->n + n_added + 1) * sizeof *s->e))
        return false;
    state_entry *e = next->p;
    size_t from = 0, k = 0;
    for (size_t j = 0; j <= n_added; j++) {
        size_t to = from;
        if (j == n_added)
            to = s->n;
        else if (!walk)
            to = lower_bound(s, added[j].name);
        else
            while (to < s->n && strcmp(s->e[to].name, added[j].name) < 0)
                to++;
        while (from < to) { /* copy runs of kept entries at once */
            size_t run = from;
            while (run < to && !(removed && removed[run]))
                run++;
            memcpy(e + k, s->e + from, (run - from) * sizeof *e);
            k += run - from;
            from = run;
            while (from < to && removed && removed[from])
                from++;
        }
        if (j < n_added) {
            e[k] = added[j];
            e[k++].len = (uint32_t)strlen(added[j].name);
        }
    }
    s->cur = !s->cur;
    s->e = e;
    s->n = k;
    if (s->n_tied || any_tied(added, n_added)) { /* a walk only when ties exist */
        s->n_tied = 0;
        for (size_t i = 0; i < k; i++)
            s->n_tied += e[i].tied != NULL;
    }
    return true;
}

void state_free(state_table *s)
{
    bb_free(&s->buf[0]);
    bb_free(&s->buf[1]);
    s->e = NULL;
    s->n = 0;
}
