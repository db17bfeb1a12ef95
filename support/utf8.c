/* utf8.c: the table of well-formed byte sequences of Unicode §3.9. */
#include "support/utf8.h"

#include <stdint.h>
#include <string.h>

static bool in(unsigned char c, unsigned char lo, unsigned char hi)
{
    return c >= lo && c <= hi;
}

size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (in(c, 0xC2, 0xDF))
        return n >= 2 && in(s[1], 0x80, 0xBF) ? 2 : 0;
    if (in(c, 0xE0, 0xEF)) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80;
        unsigned char hi = c == 0xED ? 0x9F : 0xBF;
        return n >= 3 && in(s[1], lo, hi) && in(s[2], 0x80, 0xBF) ? 3 : 0;
    }
    if (in(c, 0xF0, 0xF4)) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80;
        unsigned char hi = c == 0xF4 ? 0x8F : 0xBF;
        return n >= 4 && in(s[1], lo, hi) && in(s[2], 0x80, 0xBF) &&
                       in(s[3], 0x80, 0xBF)
                   ? 4
                   : 0;
    }
    return 0;
}

bool utf8_valid(const unsigned char *s, size_t len, size_t *bad)
{
    size_t i = 0;
    while (i < len) {
        /* Names and headers are mostly ASCII: eight bytes at a time. */
        uint64_t w;
        while (len - i >= 8 && (memcpy(&w, s + i, 8), (w & 0x8080808080808080ull) == 0))
            i += 8;
        if (i == len)
            break;
        size_t k = utf8_seq_len(s + i, len - i);
        if (!k) {
            if (bad)
                *bad = i;
            return false;
        }
        i += k;
    }
    return true;
}
