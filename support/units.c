/* units.c: sizes in bytes as people write them ("5GB", "500MiB") and as
 * surg prints them ("9.4 MiB"), for the command line, plans and schemas. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "surg/surg.h"

/* Decimal units as Hugging Face reads them (GB = 10^9), binary ones with an
 * i (GiB = 2^30). */
surg_status surg_parse_size(const char *text, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {
        {"", 1},           {"B", 1},
        {"KB", 1000ull},   {"MB", 1000000ull},
        {"GB", 1000000000ull}, {"TB", 1000000000000ull},
        {"KIB", 1ull << 10}, {"MIB", 1ull << 20},
        {"GIB", 1ull << 30}, {"TIB", 1ull << 40},
    };
    char *end;
    if (!isdigit((unsigned char)*text))
        return SURG_EUSAGE;
    unsigned long long v = strtoull(text, &end, 10);
    char unit[8];
    size_t n = strlen(end);
    if (n >= sizeof unit)
        return SURG_EUSAGE;
    for (size_t i = 0; i <= n; i++)
        unit[i] = (char)toupper((unsigned char)end[i]);
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (strcmp(unit, units[i].unit) == 0) {
            if (v == 0 || __builtin_mul_overflow((uint64_t)v, units[i].mult, out))
                return SURG_EUSAGE;
            return SURG_OK;
        }
    return SURG_EUSAGE;
}

int surg_format_size(uint64_t bytes, char *out, size_t cap)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 6) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        return snprintf(out, cap, "%llu B", (unsigned long long)bytes);
    return snprintf(out, cap, "%.1f %s", v, units[u]);
}
