/* state.c: the sorted name table, and merging a statement's changes. */
#include "state.h"

#include <stdlib.h>
#include <string.h>

size_t sv_find(const sv_state *s, const char *name)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->e[mid].name, name);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SV_NONE;
}

void sv_prefix_range(const sv_state *s, const char *prefix, size_t len, size_t *lo,
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

size_t sv_find_alias(const sv_state *s, const char *name)
{
    for (size_t i = 0; i < s->n_alias; i++)
        if (strcmp(s->aliases[i].name, name) == 0)
            return i;
    return SV_NONE;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const sv_entry *)a)->name, ((const sv_entry *)b)->name);
}

bool sv_commit(sv_state *s, const uint8_t *removed, sv_entry *added, size_t n_added)
{
    qsort(added, n_added, sizeof *added, entry_cmp);
    size_t kept = 0;
    for (size_t i = 0; i < s->n; i++)
        kept += !(removed && removed[i]);
    sv_entry *e = malloc((kept + n_added + 1) * sizeof *e);
    if (!e)
        return false;
    size_t i = 0, j = 0, k = 0;
    while (i < s->n || j < n_added) {
        if (i < s->n && removed && removed[i]) {
            i++;
            continue;
        }
        bool take_old = j == n_added || (i < s->n && strcmp(s->e[i].name, added[j].name) < 0);
        e[k++] = take_old ? s->e[i++] : added[j++];
    }
    free(s->e);
    s->e = e;
    s->n = k;
    return true;
}

void sv_free(sv_state *s)
{
    free(s->e);
    s->e = NULL;
    s->n = 0;
}

bool sv_add_alias(sv_state *s, const char *name, const char *target)
{
    if (s->n_alias == s->cap_alias) {
        size_t cap = s->cap_alias ? s->cap_alias * 2 : 8;
        cg_alias *a = ar_array(s->ar, cap, sizeof *a);
        if (!a)
            return false;
        if (s->n_alias)
            memcpy(a, s->aliases, s->n_alias * sizeof *a);
        s->aliases = a;
        s->cap_alias = cap;
    }
    s->aliases[s->n_alias++] = (cg_alias){name, target};
    return true;
}
