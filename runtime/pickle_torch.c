/* pickle_torch.c: torch's object model, as the pickle interpreter
 * (pickle.c) meets it: the globals surg knows (functions, storage types,
 * dtypes, opaque classes, sets), "calling" them (REDUCE) to build the value
 * they would return, and persistent ids made storages. */
#include <stdio.h>
#include <string.h>

#include "runtime/pickle_machine.h"

/* torch's storage types and dtypes; SURG_DTYPE_COUNT where surg has no
 * dtype for them (refused with a message saying so). */
typedef struct type_name {
    const char *name;
    surg_dtype dtype;
} type_name;

static const type_name storage_types[] = {
    {"FloatStorage", SURG_F32},      {"DoubleStorage", SURG_F64}, {"HalfStorage", SURG_F16},
    {"BFloat16Storage", SURG_BF16},  {"LongStorage", SURG_I64},   {"IntStorage", SURG_I32},
    {"ShortStorage", SURG_I16},      {"CharStorage", SURG_I8},    {"ByteStorage", SURG_U8},
    {"BoolStorage", SURG_BOOL},      {"ComplexFloatStorage", SURG_C64},
    {"ComplexDoubleStorage", SURG_DTYPE_COUNT}, {"QUInt8Storage", SURG_DTYPE_COUNT},
    {"QInt8Storage", SURG_DTYPE_COUNT}, {"QInt32Storage", SURG_DTYPE_COUNT},
    {"QUInt4x2Storage", SURG_DTYPE_COUNT}, {"QUInt2x4Storage", SURG_DTYPE_COUNT},
    {"ComplexHalfStorage", SURG_DTYPE_COUNT},
};

static const type_name dtypes[] = {
    {"float32", SURG_F32},   {"float", SURG_F32},     {"float64", SURG_F64},
    {"double", SURG_F64},    {"float16", SURG_F16},   {"half", SURG_F16},
    {"bfloat16", SURG_BF16}, {"int64", SURG_I64},     {"long", SURG_I64},
    {"int32", SURG_I32},     {"int", SURG_I32},       {"int16", SURG_I16},
    {"short", SURG_I16},     {"int8", SURG_I8},       {"uint8", SURG_U8},
    {"bool", SURG_BOOL},     {"complex64", SURG_C64}, {"cfloat", SURG_C64},
    {"uint16", SURG_U16},    {"uint32", SURG_U32},    {"uint64", SURG_U64},
    {"float8_e4m3fn", SURG_F8_E4M3},         {"float8_e5m2", SURG_F8_E5M2},
    {"float8_e4m3fnuz", SURG_F8_E4M3FNUZ},   {"float8_e5m2fnuz", SURG_F8_E5M2FNUZ},
    {"float8_e8m0fnu", SURG_F8_E8M0},
    {"complex128", SURG_DTYPE_COUNT}, {"cdouble", SURG_DTYPE_COUNT},
    {"complex32", SURG_DTYPE_COUNT},  {"chalf", SURG_DTYPE_COUNT},
    {"qint8", SURG_DTYPE_COUNT},      {"quint8", SURG_DTYPE_COUNT},
    {"qint32", SURG_DTYPE_COUNT},     {"quint4x2", SURG_DTYPE_COUNT},
    {"quint2x4", SURG_DTYPE_COUNT},   {"float4_e2m1fn_x2", SURG_DTYPE_COUNT},
    {"int1", SURG_DTYPE_COUNT},  {"int2", SURG_DTYPE_COUNT},  {"int3", SURG_DTYPE_COUNT},
    {"int4", SURG_DTYPE_COUNT},  {"int5", SURG_DTYPE_COUNT},  {"int6", SURG_DTYPE_COUNT},
    {"int7", SURG_DTYPE_COUNT},  {"uint1", SURG_DTYPE_COUNT}, {"uint2", SURG_DTYPE_COUNT},
    {"uint3", SURG_DTYPE_COUNT}, {"uint4", SURG_DTYPE_COUNT}, {"uint5", SURG_DTYPE_COUNT},
    {"uint6", SURG_DTYPE_COUNT}, {"uint7", SURG_DTYPE_COUNT}, {"bits1x8", SURG_DTYPE_COUNT},
    {"bits2x4", SURG_DTYPE_COUNT}, {"bits4x2", SURG_DTYPE_COUNT}, {"bits8", SURG_DTYPE_COUNT},
    {"bits16", SURG_DTYPE_COUNT},
};

/* Classes read as opaque values or sets (module, name, which). */
static const struct {
    const char *module, *name;
    pk_global which;
} classes[] = {
    {"torch", "device", PK_G_OBJECT},
    {"numpy", "dtype", PK_G_OBJECT},
    {"numpy.core.multiarray", "scalar", PK_G_OBJECT},
    {"numpy._core.multiarray", "scalar", PK_G_OBJECT}, /* NumPy 2 */
    {"builtins", "set", PK_G_SET},
    {"__builtin__", "set", PK_G_SET}, /* protocol 2: Python 2's names */
    {"builtins", "frozenset", PK_G_SET},
    {"__builtin__", "frozenset", PK_G_SET},
};

static const struct {
    const char *module, *name;
} functions[] = {
#define PK_X_NAME(e, module, name) {module, name},
    PK_FUNCTIONS(PK_X_NAME)
#undef PK_X_NAME
};

/* ---- globals ------------------------------------------------------------ */

/* A name as printable text for a message: other bytes as \xNN, a long
 * one cut with "...". */
static void printable(char *out, size_t size, const char *s, size_t len)
{
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (k + 8 >= size) {
            memcpy(out + k, "...", 3);
            k += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[k++] = (char)c;
        else
            k += (size_t)snprintf(out + k, size - k, "\\x%02x", c);
    }
    out[k] = '\0';
}

static bool is(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

static const type_name *find_type(const type_name *t, size_t n, const char *s, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (is(s, len, t[i].name))
            return &t[i];
    return NULL;
}

static pk_value *global_value(pk_machine *m, pk_global which, surg_dtype dt, bool typed,
                              const char *name)
{
    pk_value *v = pk_new_value(m, PK_GLOBAL);
    if (v)
        v->u.g = (pk_known){which, dt, typed, name};
    return v;
}

/* A global by module and name: one of the table's, or refused by name. */
pk_value *pk_lookup(pk_machine *m, const char *mod, size_t mlen, const char *name, size_t nlen)
{
    char full[200];
    char *text = pk_alloc(m, mlen + nlen + 2, 1);
    if (!text)
        return NULL;
    memcpy(text, mod, mlen);
    text[mlen] = '.';
    memcpy(text + mlen + 1, name, nlen);
    for (size_t i = 0; i < sizeof functions / sizeof *functions; i++)
        if (is(mod, mlen, functions[i].module) && is(name, nlen, functions[i].name))
            return global_value(m, (pk_global)i, SURG_DTYPE_COUNT, false, text);
    for (size_t i = 0; i < sizeof classes / sizeof *classes; i++)
        if (is(mod, mlen, classes[i].module) && is(name, nlen, classes[i].name))
            return global_value(m, classes[i].which, SURG_DTYPE_COUNT, false, text);
    const type_name *t = NULL;
    pk_global kind = PK_G_DTYPE;
    bool untyped = (is(mod, mlen, "torch") || is(mod, mlen, "torch.storage")) &&
                   (is(name, nlen, "UntypedStorage") || is(name, nlen, "TypedStorage"));
    if (untyped)
        return global_value(m, PK_G_STORAGE_TYPE, SURG_U8, false, text);
    if (is(mod, mlen, "torch")) {
        t = find_type(storage_types, sizeof storage_types / sizeof *storage_types, name, nlen);
        kind = t ? PK_G_STORAGE_TYPE : PK_G_DTYPE;
        if (!t)
            t = find_type(dtypes, sizeof dtypes / sizeof *dtypes, name, nlen);
    }
    printable(full, sizeof full, text, mlen + nlen + 1);
    if (t && t->dtype == SURG_DTYPE_COUNT) {
        pk_fail(m, "pt-dtype", "the pickle holds tensors of %s, which surg has no dtype for", full);
        return NULL;
    }
    if (t)
        return global_value(m, kind, t->dtype, true, text);
    pk_fail(m, "pt-global",
            "the pickle refers to \"%s\", which surg does not know: refused, nothing was run "
            "(surg reads tensors, their storages and dtypes, and plain containers, never "
            "other objects)",
            full);
    return NULL;
}

/* ---- calling the known globals (REDUCE) --------------------------------- */

static bool want_int(pk_machine *m, const pk_value *v, const char *what, uint64_t *out)
{
    if (v->kind != PK_INT || v->u.i < 0)
        return pk_fail(m, "pt-tensor", "a tensor's %s is %s, not a non-negative int", what,
                       v->kind == PK_INT ? "negative" : pk_kind_name(v->kind));
    *out = (uint64_t)v->u.i;
    return true;
}

/* A tuple of non-negative ints (a size or a stride) as an array. */
static bool want_dims(pk_machine *m, const pk_value *v, const char *what, uint32_t *rank,
                      uint64_t **out)
{
    if (v->kind != PK_TUPLE && v->kind != PK_LIST)
        return pk_fail(m, "pt-tensor", "a tensor's %s is %s, not a tuple", what,
                       pk_kind_name(v->kind));
    if (v->u.seq.n > SURG_MAX_RANK)
        return pk_fail(m, "pt-tensor", "a tensor has %zu dimensions, more than %d", v->u.seq.n,
                       SURG_MAX_RANK);
    *rank = (uint32_t)v->u.seq.n;
    *out = pk_alloc(m, v->u.seq.n, sizeof **out);
    if (!*out)
        return false;
    for (size_t i = 0; i < v->u.seq.n; i++)
        if (!want_int(m, v->u.seq.v[i], what, &(*out)[i]))
            return false;
    return true;
}

static bool want_args(pk_machine *m, const pk_value *f, const pk_value *args, size_t lo, size_t hi)
{
    if (args->kind != PK_TUPLE)
        return pk_fail(m, "pt-pickle", "%s is called with %s, not a tuple", f->u.g.name,
                       pk_kind_name(args->kind));
    if (args->u.seq.n < lo || args->u.seq.n > hi) {
        if (hi > lo)
            return pk_fail(m, "pt-pickle", "%s is called with %zu arguments, not %zu or %zu",
                           f->u.g.name, args->u.seq.n, lo, hi);
        return pk_fail(m, "pt-pickle", "%s is called with %zu arguments, not %zu", f->u.g.name,
                       args->u.seq.n, lo);
    }
    return true;
}

/* A tensor's metadata argument: {} (or None) for a plain view. PyTorch
 * marks a lazily conjugated or negated view there ({"conj": True},
 * {"neg": True}); its stored values are not the tensor's, so it is refused
 * rather than carried wrong. */
static bool plain_metadata(pk_machine *m, const pk_value *md)
{
    if (md->kind == PK_NONE)
        return true;
    if (md->kind != PK_DICT)
        return pk_fail(m, "pt-tensor", "a tensor's metadata is %s, not a dict",
                       pk_kind_name(md->kind));
    for (size_t i = 0; i + 1 < md->u.seq.n; i += 2) {
        const pk_value *k = md->u.seq.v[i], *v = md->u.seq.v[i + 1];
        bool set = (v->kind == PK_BOOL && v->u.b) || (v->kind == PK_INT && v->u.i);
        if (!set)
            continue;
        char key[64] = "?";
        if (k->kind == PK_STR)
            printable(key, sizeof key, k->u.s.p, k->u.s.len);
        return pk_fail(m, "pt-tensor",
                       "a tensor is saved as a lazy view whose values are not its storage's "
                       "(its metadata says \"%s\"): surg cannot carry it; save it resolved "
                       "(x.resolve_conj(), x.resolve_neg())",
                       key);
    }
    return true;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks[, metadata]); v3 has the dtype after backward_hooks. */
static pk_value *rebuild_tensor(pk_machine *m, const pk_value *f, const pk_value *args)
{
    bool v3 = f->u.g.which == PK_G_REBUILD_TENSOR_V3;
    if (!want_args(m, f, args, v3 ? 7 : 6, v3 ? 8 : 7))
        return NULL;
    pk_value *const *a = args->u.seq.v;
    if (a[0]->kind != PK_STORAGE) {
        pk_fail(m, "pt-tensor", "%s is given %s, not a storage", f->u.g.name,
                pk_kind_name(a[0]->kind));
        return NULL;
    }
    size_t md = v3 ? 7 : 6;
    if (args->u.seq.n > md && !plain_metadata(m, a[md]))
        return NULL;
    pk_value *v = pk_new_value(m, PK_TENSOR);
    if (!v)
        return NULL;
    pk_tensor *t = &v->u.tensor;
    t->storage = &a[0]->u.storage;
    t->dtype = t->storage->dtype;
    uint32_t rank_stride = 0;
    uint64_t *size = NULL, *stride = NULL;
    if (!want_int(m, a[1], "storage offset", &t->offset) ||
        !want_dims(m, a[2], "size", &t->rank, &size) ||
        !want_dims(m, a[3], "stride", &rank_stride, &stride))
        return NULL;
    if (rank_stride != t->rank) {
        pk_fail(m, "pt-tensor", "a tensor's size has %u dimensions but its stride %u", t->rank,
                rank_stride);
        return NULL;
    }
    t->size = size;
    t->stride = stride;
    if (v3) {
        if (a[6]->kind != PK_GLOBAL || a[6]->u.g.which != PK_G_DTYPE) {
            pk_fail(m, "pt-tensor", "%s is given %s for a dtype", f->u.g.name,
                    a[6]->kind == PK_GLOBAL ? a[6]->u.g.name : pk_kind_name(a[6]->kind));
            return NULL;
        }
        t->dtype = a[6]->u.g.dtype;
    }
    return v;
}

static pk_value *call(pk_machine *m, const pk_value *f, const pk_value *args, int depth);

/* _rebuild_from_type_v2(func, new_type, args, state): a tensor (or
 * parameter) with Python attributes; the attributes are not read. */
static pk_value *rebuild_from_type(pk_machine *m, const pk_value *f, const pk_value *args,
                                   int depth)
{
    if (!want_args(m, f, args, 4, 4))
        return NULL;
    pk_value *const *a = args->u.seq.v;
    bool known_class = a[1]->kind == PK_GLOBAL && (a[1]->u.g.which == PK_G_TENSOR_CLASS ||
                                                   a[1]->u.g.which == PK_G_PARAMETER_CLASS);
    if (a[0]->kind != PK_GLOBAL || !known_class || depth > 0) {
        pk_fail(m, "pt-pickle", "%s is given something other than a rebuilding function and "
                                "torch.Tensor or torch.nn.parameter.Parameter",
                f->u.g.name);
        return NULL;
    }
    pk_value *v = call(m, a[0], a[2], depth + 1);
    if (v && v->kind != PK_TENSOR) {
        pk_fail(m, "pt-pickle", "%s does not rebuild a tensor", f->u.g.name);
        return NULL;
    }
    return v;
}

/* _codecs.encode(text, "latin1"), how protocol 2 pickles bytes: each
 * character of the (UTF-8) text below U+0100 is one byte. */
static pk_value *latin1_bytes(pk_machine *m, const pk_value *f, const pk_value *args)
{
    if (!want_args(m, f, args, 2, 2))
        return NULL;
    const pk_value *text = args->u.seq.v[0], *codec = args->u.seq.v[1];
    if (text->kind != PK_STR || codec->kind != PK_STR ||
        !is(codec->u.s.p, codec->u.s.len, "latin1")) {
        pk_fail(m, "pt-pickle", "_codecs.encode is given something other than a string and "
                                "\"latin1\"");
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)text->u.s.p;
    size_t n = text->u.s.len, k = 0;
    char *out = pk_alloc(m, n ? n : 1, 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x80) {
            out[k++] = (char)s[i];
        } else if ((s[i] == 0xc2 || s[i] == 0xc3) && i + 1 < n && (s[i + 1] & 0xc0) == 0x80) {
            out[k++] = (char)(((s[i] & 0x1f) << 6) | (s[i + 1] & 0x3f));
            i++;
        } else {
            pk_fail(m, "pt-pickle", "_codecs.encode is given text that is not latin-1");
            return NULL;
        }
    }
    pk_value *v = pk_new_value(m, PK_BYTES);
    if (v) {
        v->u.s.p = out;
        v->u.s.len = k;
    }
    return v;
}

/* An object of a class read as opaque (torch.device("cuda", 0), a NumPy
 * scalar from its dtype and bytes): its arguments are plain values, never a
 * tensor or a container that could hide one, so nothing is lost by not
 * reading it. BUILD on it sets nothing. */
static pk_value *opaque_object(pk_machine *m, const pk_value *f, const pk_value *args)
{
    if (!want_args(m, f, args, 0, SIZE_MAX))
        return NULL;
    for (size_t i = 0; i < args->u.seq.n; i++) {
        pk_kind k = args->u.seq.v[i]->kind;
        if (k == PK_TUPLE || k == PK_LIST || k == PK_DICT || k == PK_SET ||
            k == PK_STORAGE || k == PK_TENSOR) {
            pk_fail(m, "pt-pickle", "%s is given %s: only plain values make one here",
                    f->u.g.name, pk_kind_name(k));
            return NULL;
        }
    }
    pk_value *v = pk_new_value(m, PK_OBJECT);
    if (v)
        v->u.g = f->u.g;
    return v;
}

/* set() or set(list), frozenset likewise. */
static pk_value *set_of(pk_machine *m, const pk_value *f, const pk_value *args)
{
    if (!want_args(m, f, args, 0, 1))
        return NULL;
    if (!args->u.seq.n)
        return pk_seq_value(m, PK_SET, NULL, 0);
    const pk_value *items = args->u.seq.v[0];
    if (items->kind != PK_LIST && items->kind != PK_TUPLE) {
        pk_fail(m, "pt-pickle", "%s is given %s, not a list", f->u.g.name,
                pk_kind_name(items->kind));
        return NULL;
    }
    return pk_seq_value(m, PK_SET, items->u.seq.v, items->u.seq.n);
}

static pk_value *call(pk_machine *m, const pk_value *f, const pk_value *args, int depth)
{
    if (f->kind != PK_GLOBAL) {
        pk_fail(m, "pt-pickle", "REDUCE calls %s, not a function", pk_kind_name(f->kind));
        return NULL;
    }
    switch (f->u.g.which) {
    case PK_G_ORDERED_DICT:
        return want_args(m, f, args, 0, 0) ? pk_seq_value(m, PK_DICT, NULL, 0) : NULL;
    case PK_G_REBUILD_TENSOR_V2:
    case PK_G_REBUILD_TENSOR_V3:
        return rebuild_tensor(m, f, args);
    case PK_G_REBUILD_PARAMETER:
    case PK_G_REBUILD_PARAMETER_STATE: {
        size_t n = f->u.g.which == PK_G_REBUILD_PARAMETER ? 3 : 4;
        if (!want_args(m, f, args, n, n))
            return NULL;
        if (args->u.seq.v[0]->kind != PK_TENSOR) {
            pk_fail(m, "pt-pickle", "%s is given %s, not a tensor", f->u.g.name,
                    pk_kind_name(args->u.seq.v[0]->kind));
            return NULL;
        }
        return args->u.seq.v[0];
    }
    case PK_G_REBUILD_FROM_TYPE:
        return rebuild_from_type(m, f, args, depth);
    case PK_G_SIZE:
        if (!want_args(m, f, args, 1, 1))
            return NULL;
        if (args->u.seq.v[0]->kind != PK_TUPLE) {
            pk_fail(m, "pt-pickle", "torch.Size is given %s, not a tuple",
                    pk_kind_name(args->u.seq.v[0]->kind));
            return NULL;
        }
        return args->u.seq.v[0];
    case PK_G_CODECS_ENCODE:
        return latin1_bytes(m, f, args);
    case PK_G_OBJECT:
        return opaque_object(m, f, args);
    case PK_G_SET:
        return set_of(m, f, args);
    case PK_G_TENSOR_CLASS:
    case PK_G_PARAMETER_CLASS:
    case PK_G_STORAGE_TYPE:
    case PK_G_DTYPE:
        break;
    }
    pk_fail(m, "pt-pickle", "REDUCE calls %s, which is not a function surg reads", f->u.g.name);
    return NULL;
}

pk_value *pk_call(pk_machine *m, const pk_value *f, const pk_value *args)
{
    return call(m, f, args, 0);
}

/* ---- persistent ids (BINPERSID) ----------------------------------------- */

/* BINPERSID's id: ("storage", storage_type, key, location, numel), as
 * torch.save's persistent_id writes every storage. */
static bool storage_id(pk_machine *m, const pk_value *pid)
{
    if (pid->kind != PK_TUPLE || pid->u.seq.n != 5 || pid->u.seq.v[0]->kind != PK_STR ||
        !is(pid->u.seq.v[0]->u.s.p, pid->u.seq.v[0]->u.s.len, "storage"))
        return pk_fail(m, "pt-storage",
                       "a persistent id is not (\"storage\", type, key, location, size)");
    pk_value *const *a = pid->u.seq.v;
    if (a[1]->kind != PK_GLOBAL || a[1]->u.g.which != PK_G_STORAGE_TYPE)
        return pk_fail(m, "pt-storage", "a storage's type is %s, not a torch storage type",
                       a[1]->kind == PK_GLOBAL ? a[1]->u.g.name : pk_kind_name(a[1]->kind));
    if (a[2]->kind != PK_STR || a[3]->kind != PK_STR)
        return pk_fail(m, "pt-storage", "a storage's key or location is not a string");
    if (a[4]->kind != PK_INT || a[4]->u.i < 0)
        return pk_fail(m, "pt-storage", "a storage's size is not a non-negative int");
    return true;
}

pk_value *pk_persistent_load(pk_machine *m, const pk_value *pid)
{
    if (!storage_id(m, pid))
        return NULL;
    pk_value *const *a = pid->u.seq.v;
    pk_value *v = pk_new_value(m, PK_STORAGE);
    if (v)
        v->u.storage = (pk_storage){a[2]->u.s.p, a[2]->u.s.len, a[1]->u.g.dtype,
                                    a[1]->u.g.typed, (uint64_t)a[4]->u.i};
    return v;
}
