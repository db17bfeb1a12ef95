/* pickle.h: the pickle that torch.save writes (its data.pkl), read as data.
 * A small interpreter of pickle opcodes (those protocols 2 to 5 use for
 * containers, numbers, strings, the memo, globals and persistent ids) that
 * builds values and never runs code: a global is a name looked up in a fixed
 * table of what a state dict needs (collections.OrderedDict, torch's storage
 * types and dtypes, the functions that rebuild tensors and parameters), and
 * "calling" one (REDUCE) builds the value that function would return. Any
 * other global — os.system, builtins.eval, a class of the training script —
 * is refused by name before anything else happens.
 *
 * Bounded: at most PK_MAX_PICKLE bytes of pickle; the stack, the marks and
 * the memo may hold only what the pickle's own bytes could have put there in
 * order, every length is checked against the bytes left, and the values take
 * at most PK_MEMORY_RATIO times the pickle's size (plus PK_MEMORY_BASE). */
#ifndef SURG_PICKLE_H
#define SURG_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "support/arena.h"
#include "surg/surg.h"

#define PK_MAX_PICKLE (256u << 20)
#define PK_MEMORY_RATIO 32u
#define PK_MEMORY_BASE (1u << 20)
#define PK_MAX_MARKS 4096u /* containers being built inside one another */

typedef enum pk_kind {
    PK_NONE,
    PK_BOOL,
    PK_INT,     /* fits int64 */
    PK_BIGINT,  /* a LONG that does not: carried, never read */
    PK_FLOAT,
    PK_STR,
    PK_BYTES,
    PK_TUPLE,
    PK_LIST,
    PK_DICT,    /* dict and OrderedDict: keys and values alternate in seq */
    PK_SET,     /* set and frozenset: no order to name members by */
    PK_GLOBAL,  /* one of the known globals, not called */
    PK_OBJECT,  /* a known object surg carries no data of (torch.device, a
                   NumPy scalar or dtype): u.g names its class */
    PK_STORAGE, /* a storage, from a persistent id */
    PK_TENSOR,
} pk_kind;

/* The globals a torch.save state dict uses: X(ENUM, module, name). Storage
 * types and dtypes have tables of their own (pickle_torch.c), and so do the
 * classes whose objects are read as opaque values (PK_G_OBJECT: torch.device,
 * NumPy scalars and dtypes, which training checkpoints hold beside their
 * tensors) and set and frozenset (PK_G_SET). */
#define PK_FUNCTIONS(X)                                                        \
    X(ORDERED_DICT, "collections", "OrderedDict")                              \
    X(REBUILD_TENSOR_V2, "torch._utils", "_rebuild_tensor_v2")                 \
    X(REBUILD_TENSOR_V3, "torch._utils", "_rebuild_tensor_v3")                 \
    X(REBUILD_PARAMETER, "torch._utils", "_rebuild_parameter")                 \
    X(REBUILD_PARAMETER_STATE, "torch._utils", "_rebuild_parameter_with_state") \
    X(REBUILD_FROM_TYPE, "torch._tensor", "_rebuild_from_type_v2")             \
    X(TENSOR_CLASS, "torch", "Tensor")                                         \
    X(PARAMETER_CLASS, "torch.nn.parameter", "Parameter")                      \
    X(SIZE, "torch", "Size")                                                   \
    X(CODECS_ENCODE, "_codecs", "encode")

typedef enum pk_global {
#define PK_X_ENUM(e, module, name) PK_G_##e,
    PK_FUNCTIONS(PK_X_ENUM)
#undef PK_X_ENUM
    PK_G_STORAGE_TYPE, /* torch.FloatStorage, torch.UntypedStorage, ... */
    PK_G_DTYPE,        /* torch.float32, ... */
    PK_G_OBJECT,       /* "calling" it makes a PK_OBJECT */
    PK_G_SET,          /* builtins.set, frozenset: a PK_SET of a list's items */
} pk_global;

typedef struct pk_value pk_value;

typedef struct pk_known {
    pk_global which;
    surg_dtype dtype; /* of a storage type or a dtype */
    bool typed;       /* a storage type that has a dtype (not UntypedStorage) */
    const char *name; /* "torch.FloatStorage", for messages */
} pk_known;

typedef struct pk_storage {
    const char *key;  /* the archive entry data/<key>; may hold a NUL (key_len) */
    size_t key_len;
    surg_dtype dtype; /* of the storage type: u8 for an untyped storage */
    bool typed;
    uint64_t numel;   /* elements of dtype (bytes, untyped) */
} pk_storage;

typedef struct pk_tensor {
    const pk_storage *storage;
    surg_dtype dtype;
    uint64_t offset;  /* into the storage, in elements of dtype */
    uint32_t rank;    /* at most SURG_MAX_RANK */
    const uint64_t *size, *stride; /* in elements */
} pk_tensor;

struct pk_value {
    pk_kind kind;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p; /* into the pickle's bytes: not NUL-terminated */
            size_t len;
        } s;               /* PK_STR (UTF-8 as pickled), PK_BYTES */
        struct {
            pk_value **v;
            size_t n, cap;
        } seq;             /* PK_TUPLE, PK_LIST, PK_DICT, PK_SET */
        pk_known g;        /* PK_GLOBAL, PK_OBJECT */
        pk_storage storage;
        pk_tensor tensor;
    } u;
};

/* An error: a stable code ("pt-pickle", "pt-global"), the byte of the
 * opcode where it happened, and a message for people. */
typedef struct pk_error {
    const char *code;
    uint64_t at;
    char msg[320];
} pk_error;

/* Run the pickle data[0..len) to its STOP, which must end the data with
 * exactly one value on the stack: *root. Values live in `ar` and point into
 * `data` (strings), which must outlive them. False with *err set on any
 * problem; false with err->code NULL when memory ran out. */
bool pk_load(arena *ar, const unsigned char *data, size_t len, pk_value **root, pk_error *err);

/* "a dict", "an int", ... for messages. */
const char *pk_kind_name(pk_kind kind);

#endif
