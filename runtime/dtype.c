/* dtype.c: the dtype table of surg.h, looked up by enum and by name. */
#include <string.h>

#include "surg/surg.h"

static const struct {
    const char *st, *recipe;
    unsigned bits;
    surg_dtype_kind kind;
} dtypes[] = {
#define X(e, st, rc, bits, kind) {st, rc, bits, kind},
    SURG_DTYPES(X)
#undef X
};

const char *surg_dtype_st_name(surg_dtype dt) { return dtypes[dt].st; }
const char *surg_dtype_recipe_name(surg_dtype dt) { return dtypes[dt].recipe; }
unsigned surg_dtype_bits(surg_dtype dt) { return dtypes[dt].bits; }
surg_dtype_kind surg_dtype_kind_of(surg_dtype dt) { return dtypes[dt].kind; }

surg_dtype surg_dtype_from_st_name(const char *name)
{
    for (int i = 0; i < SURG_DTYPE_COUNT; i++)
        if (strcmp(dtypes[i].st, name) == 0)
            return (surg_dtype)i;
    return SURG_DTYPE_COUNT;
}

surg_dtype surg_dtype_from_recipe_name(const char *name)
{
    for (int i = 0; i < SURG_DTYPE_COUNT; i++)
        if (strcmp(dtypes[i].recipe, name) == 0)
            return (surg_dtype)i;
    return SURG_DTYPE_COUNT;
}
