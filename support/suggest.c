/* suggest.c: optimal-string-alignment distance, computed only within the
 * band of cells that can stay under the limit and abandoned once a row
 * exceeds it, for suggestions in diagnostics. */
#include "support/suggest.h"

#include <stdlib.h>
#include <string.h>

/* Three rows of the table, each with the columns [lo, hi] it holds: a cell
 * outside is certainly over the limit. */
typedef struct sg_row {
    size_t *v;
    size_t lo, hi;
} sg_row;

static size_t at(const sg_row *r, size_t j, size_t inf)
{
    return j >= r->lo && j <= r->hi ? r->v[j] : inf;
}

size_t sg_distance(const char *a, const char *b, size_t limit)
{
    size_t la = strlen(a), lb = strlen(b);
    if (limit > la + lb)
        limit = la + lb; /* no distance is more */
    const size_t inf = limit + 1;
    if ((la > lb ? la - lb : lb - la) > limit)
        return inf;
    size_t *cells = malloc(3 * (lb + 1) * sizeof *cells);
    if (!cells)
        return inf;
    sg_row r[3] = {{cells, 1, 0}, {cells + lb + 1, 0, 0}, {cells + 2 * (lb + 1), 1, 0}};
    sg_row *prev2 = &r[0], *prev = &r[1], *cur = &r[2];
    prev->hi = lb < limit ? lb : limit;
    for (size_t j = 0; j <= prev->hi; j++)
        prev->v[j] = j;
    size_t result = inf;
    for (size_t i = 1; i <= la; i++) {
        /* |i - j| > limit costs more than the limit: the band is 2 limit + 1 wide. */
        cur->lo = i > limit ? i - limit : 0;
        cur->hi = lb - i < limit || i > lb ? lb : i + limit;
        size_t row_min = inf;
        for (size_t j = cur->lo; j <= cur->hi; j++) {
            size_t v = at(prev, j, inf) + 1;
            if (j) {
                size_t left = j > cur->lo ? cur->v[j - 1] + 1 : inf;
                size_t diag = at(prev, j - 1, inf) + (a[i - 1] != b[j - 1]);
                v = left < v ? left : v;
                v = diag < v ? diag : v;
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                    at(prev2, j - 2, inf) + 1 < v)
                    v = at(prev2, j - 2, inf) + 1;
            }
            cur->v[j] = v < inf ? v : inf;
            row_min = cur->v[j] < row_min ? cur->v[j] : row_min;
        }
        if (row_min > limit)
            goto done;
        sg_row *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    result = at(prev, lb, inf);
done:
    free(cells);
    return result;
}

const char *sg_closest(const char *word, const char *const *cands, size_t n)
{
    size_t limit = strlen(word) / 3;
    if (limit < 1)
        limit = 1;
    const char *best = NULL;
    size_t best_d = limit + 1;
    for (size_t i = 0; i < n; i++) {
        size_t d = sg_distance(word, cands[i], best_d - 1 < limit ? best_d - 1 : limit);
        if (d < best_d && d <= limit) {
            best = cands[i];
            best_d = d;
        }
    }
    return best;
}
