/* tensor_name.h: what a tensor's name may be, written once for the readers,
 * the compiler and the writers: the rules every format shares, and those of
 * one output format. A name the compiler accepts is one its output can hold,
 * and one surg (and NumPy) reads back. */
#ifndef SURG_TENSOR_NAME_H
#define SURG_TENSOR_NAME_H

#include <stdbool.h>
#include <stddef.h>

/* An .npz entry is `NAME.npy`, and a zip name holds at most 65,535 bytes. */
#define TN_NPZ_MAX_NAME 65531u

/* The rules of an output format; which format an output is written in is
 * told by its name (runtime/format.h: fmt_output). */
typedef enum tn_format {
    TN_ANY,         /* not known: the shared rules only */
    TN_SAFETENSORS, /* one file or sharded */
    TN_NPZ,
    TN_MSGPACK, /* "/" nests maps: no empty segment */
    TN_ORBAX,   /* a tree too, and each name a directory: its keys joined
                   with "." (at most 255 bytes, not one of the files an
                   Orbax checkpoint holds); no character Python's repr
                   escapes beyond ASCII (tn_orbax_printable) */
} tn_format;

/* Whether Python's repr() keeps the character `cp` as it is, for those
 * past ASCII that surg knows it escapes: C1 controls, spaces other than
 * " ", separators, format characters, private use, noncharacters (the
 * unassigned ones are not known here). */
bool tn_orbax_printable(unsigned cp);

/* The rules every format shares: not empty, UTF-8, not "__metadata__"
 * (which safetensors reserves, and which the .npz and PyTorch readers
 * refuse with it). Why `name` (len bytes) breaks them, or NULL; the reason
 * reads after "cannot be a tensor name: ". */
const char *tn_problem(const char *name, size_t len);

/* The same, then the rules of `f`. */
const char *tn_format_problem(const char *name, size_t len, tn_format f);

/* `name` shortened for a message: the first `keep` bytes (cut at a
 * character boundary), then "…"; at most keep + 4 bytes with the NUL, in
 * `out`. */
const char *tn_short(const char *name, char *out, size_t keep);

#endif
