/* philox.h: Philox-4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random
 * numbers: as easy as 1, 2, 3", 2011), a counter-based generator: the
 * output for a counter depends on nothing else, so any element of a random
 * tensor can be made alone, by any thread, in any order. */
#ifndef SURG_PHILOX_H
#define SURG_PHILOX_H

#include <stddef.h>
#include <stdint.h>

/* Ten rounds of multiply-and-xor over a 128-bit counter, the key bumped by
 * the Weyl constants between rounds. Inline: it is the inner loop of every
 * random initializer. */
enum {
    PHILOX_M0 = 0xD2511F53u, /* multipliers and Weyl constants of Philox-4x32 */
    PHILOX_M1 = 0xCD9E8D57u,
    PHILOX_W0 = 0x9E3779B9u,
    PHILOX_W1 = 0xBB67AE85u,
};

static inline void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}


/* Draws [first, first + n) at once, n <= PHILOX_BATCH, word j of draw d in
 * out[j][d]: the same values as philox4x32_10 on counters (first + d, 0),
 * in loops over the draws that the compiler can vectorize. */
enum { PHILOX_BATCH = 64 };

static inline void philox4x32_10_batch(uint64_t first, size_t n, const uint32_t key[2],
                                       uint32_t out[4][PHILOX_BATCH])
{
    uint32_t *c0 = out[0], *c1 = out[1], *c2 = out[2], *c3 = out[3];
    for (size_t d = 0; d < n; d++) {
        c0[d] = (uint32_t)(first + d);
        c1[d] = (uint32_t)((first + d) >> 32);
        c2[d] = c3[d] = 0;
    }
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        for (size_t d = 0; d < n; d++) {
            uint64_t p0 = (uint64_t)PHILOX_M0 * c0[d], p1 = (uint64_t)PHILOX_M1 * c2[d];
            uint32_t hi0 = (uint32_t)(p0 >> 32), hi1 = (uint32_t)(p1 >> 32);
            c0[d] = hi1 ^ c1[d] ^ k0;
            c1[d] = (uint32_t)p1;
            c2[d] = hi0 ^ c3[d] ^ k1;
            c3[d] = (uint32_t)p0;
        }
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
}

/* The key of a random tensor: its seed and its name, mixed. */
void philox_key(uint64_t seed, const char *name, uint32_t key[2]);

#endif
