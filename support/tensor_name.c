/* tensor_name.c: the rules a tensor's name obeys (tensor_name.h). */
#include "support/tensor_name.h"

#include <stdbool.h>
#include <string.h>

#include "support/utf8.h"

const char *tn_problem(const char *name, size_t len)
{
    size_t bad;
    if (len == 0)
        return "a name may not be empty";
    if (!utf8_valid((const unsigned char *)name, len, &bad))
        return "it is not UTF-8";
    if (len == 12 && memcmp(name, "__metadata__", 12) == 0)
        return "\"__metadata__\" is reserved (safetensors keeps its metadata under it)";
    return NULL;
}

const char *tn_format_problem(const char *name, size_t len, tn_format f)
{
    const char *why = tn_problem(name, len);
    if (!why && f == TN_NPZ && len > TN_NPZ_MAX_NAME)
        why = "an .npz holds names of at most 65,531 bytes (the zip entry NAME.npy is "
              "at most 65,535)";
    bool empty_segment = false;
    for (size_t i = 0; f == TN_MSGPACK && i < len; i++)
        empty_segment |= name[i] == '/' && (i == 0 || i == len - 1 || name[i - 1] == '/');
    if (!why && empty_segment)
        why = "a .msgpack nests maps at each \"/\": a name may not begin or end with \"/\" "
              "or hold \"//\"";
    return why;
}

const char *tn_short(const char *name, char *out, size_t keep)
{
    size_t n = strlen(name);
    if (n <= keep + 3) {
        memcpy(out, name, n + 1);
        return out;
    }
    while (keep && ((unsigned char)name[keep] & 0xC0) == 0x80)
        keep--; /* not inside a character */
    memcpy(out, name, keep);
    memcpy(out + keep, "\xE2\x80\xA6", 4); /* … */
    return out;
}
