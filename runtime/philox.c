/* philox.c: the key of a random tensor. */
#include "runtime/philox.h"

/* FNV-1a over the name, then SplitMix64's finalizer over it and the seed:
 * names that differ in one byte get unrelated keys. */
void philox_key(uint64_t seed, const char *name, uint32_t key[2])
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001B3ull;
    uint64_t z = h ^ (seed + 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    key[0] = (uint32_t)z;
    key[1] = (uint32_t)(z >> 32);
}
