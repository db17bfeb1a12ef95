/* philox.h: Philox-4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random
 * numbers: as easy as 1, 2, 3", 2011), a counter-based generator: the
 * output for a counter depends on nothing else, so any element of a random
 * tensor can be made alone, by any thread, in any order. */
#ifndef SURG_PHILOX_H
#define SURG_PHILOX_H

#include <stdint.h>

void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* The key of a random tensor: its seed and its name, mixed. */
void philox_key(uint64_t seed, const char *name, uint32_t key[2]);

#endif
