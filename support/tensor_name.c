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

bool tn_orbax_printable(unsigned cp)
{
    static const unsigned not_kept[][2] = {
        {0x80, 0xA0},       {0xAD, 0xAD},       {0x600, 0x605},     {0x61C, 0x61C},
        {0x6DD, 0x6DD},     {0x70F, 0x70F},     {0x890, 0x891},     {0x8E2, 0x8E2},
        {0x1680, 0x1680},   {0x180E, 0x180E},   {0x2000, 0x200F},   {0x2028, 0x202F},
        {0x205F, 0x206F},   {0x3000, 0x3000},   {0xD800, 0xF8FF},   {0xFDD0, 0xFDEF},
        {0xFEFF, 0xFEFF},   {0xFFF0, 0xFFFB},   {0x110BD, 0x110BD}, {0x110CD, 0x110CD},
        {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0000, 0xE0FFF},
        {0xF0000, 0x10FFFF},
    };
    if ((cp & 0xFFFE) == 0xFFFE) /* U+FFFE, U+FFFF and their like in every plane */
        return false;
    for (size_t i = 0; i < sizeof not_kept / sizeof *not_kept; i++)
        if (cp >= not_kept[i][0] && cp <= not_kept[i][1])
            return false;
    return true;
}

/* The names an Orbax checkpoint keeps for its own files. */
static const char *const orbax_files[] = {
    "_METADATA", "_CHECKPOINT_METADATA", "_strings.json", "_sharding", "checkpoint",
    "manifest.ocdbt", "array_metadatas", "orbax.checkpoint",
};

/* Is `name` (len bytes, "/" read as ".") the same as `file`'s first k bytes? */
static bool same_dir(const char *name, size_t len, const char *file, size_t k)
{
    if (len < k)
        return false;
    for (size_t i = 0; i < k; i++)
        if ((name[i] == '/' ? '.' : name[i]) != file[i])
            return false;
    return true;
}

/* A name of UTF-8 `len` bytes as one directory of an Orbax checkpoint (its
 * "/" written "."). */
static const char *orbax_problem(const char *name, size_t len)
{
    if (len > 255)
        return "an Orbax checkpoint keeps each array in a directory named by its keys joined "
               "with \".\", and a directory's name holds at most 255 bytes";
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return "an Orbax checkpoint keeps each array in a directory named by its keys, and "
               "\".\" and \"..\" name other directories";
    for (size_t i = 0; i < sizeof orbax_files / sizeof *orbax_files; i++)
        if (strlen(orbax_files[i]) == len && same_dir(name, len, orbax_files[i], len))
            return "an Orbax checkpoint keeps a file or directory of its own under this name";
    if (len > 14 && same_dir(name, len, "ocdbt.process_", 14))
        return "an Orbax checkpoint keeps a directory of its own under this name";
    const unsigned char *p = (const unsigned char *)name;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq_len(p + i, len - i);
        if (k < 2) {
            i += k ? k : 1;
            continue;
        }
        unsigned cp = p[i] & (0x7Fu >> k);
        for (size_t j = 1; j < k; j++)
            cp = cp << 6 | (p[i + j] & 0x3Fu);
        if (!tn_orbax_printable(cp))
            return "an Orbax checkpoint's _METADATA keys each array by Python's repr of its "
                   "keys, and surg writes that repr only for names whose characters past "
                   "ASCII it keeps as they are (no control, space, separator, format or "
                   "private-use characters)";
        i += k;
    }
    return NULL;
}

const char *tn_format_problem(const char *name, size_t len, tn_format f)
{
    const char *why = tn_problem(name, len);
    if (!why && f == TN_NPZ && len > TN_NPZ_MAX_NAME)
        why = "an .npz holds names of at most 65,531 bytes (the zip entry NAME.npy is "
              "at most 65,535)";
    bool empty_segment = false;
    for (size_t i = 0; (f == TN_MSGPACK || f == TN_ORBAX) && i < len; i++)
        empty_segment |= name[i] == '/' && (i == 0 || i == len - 1 || name[i - 1] == '/');
    if (!why && empty_segment && f == TN_ORBAX)
        why = "an Orbax checkpoint is a tree keyed at each \"/\": a name may not begin or end "
              "with \"/\" or hold \"//\"";
    if (!why && empty_segment)
        why = "a .msgpack nests maps at each \"/\": a name may not begin or end with \"/\" "
              "or hold \"//\"";
    if (!why && f == TN_ORBAX)
        why = orbax_problem(name, len);
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
