/* natural.c: natural order; ties between equal numbers with different
 * leading zeros fall back to byte order, so the order is total. */
#include "support/natural.h"

#include "surg/surg.h"

#include <string.h>

static int is_digit(char c) { return c >= '0' && c <= '9'; }

int natural_cmpn(const char *a, size_t la, const char *b, size_t lb)
{
    size_t i = 0, j = 0;
    while (i < la && j < lb) {
        if (is_digit(a[i]) && is_digit(b[j])) {
            size_t zi = i, zj = j;
            while (zi < la && a[zi] == '0')
                zi++;
            while (zj < lb && b[zj] == '0')
                zj++;
            size_t ei = zi, ej = zj;
            while (ei < la && is_digit(a[ei]))
                ei++;
            while (ej < lb && is_digit(b[ej]))
                ej++;
            if (ei - zi != ej - zj)
                return ei - zi < ej - zj ? -1 : 1;
            int c = memcmp(a + zi, b + zj, ei - zi);
            if (c)
                return c;
            i = ei;
            j = ej;
            continue;
        }
        if (a[i] != b[j])
            return (unsigned char)a[i] < (unsigned char)b[j] ? -1 : 1;
        i++;
        j++;
    }
    if (i < la || j < lb)
        return i < la ? 1 : -1;
    /* Equal by value: byte order decides ("01" vs "1"). */
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

int natural_cmp(const char *a, const char *b)
{
    return natural_cmpn(a, strlen(a), b, strlen(b));
}

int surg_natural_cmp(const char *a, const char *b) { return natural_cmp(a, b); }
