/* pickle.c: the pickle interpreter (see pickle.h). Opcodes and their
 * meaning follow the description in CPython's pickletools module (the
 * protocol's reference): a stack machine with marks, a memo, and a handful
 * of opcodes that make objects. Here "making an object" only ever builds a
 * pk_value; the four opcodes through which a pickle runs code (REDUCE,
 * BUILD, NEWOBJ and INST/OBJ) either act on the known globals as data or
 * are refused. */
#include "pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OP_MARK = '(', OP_STOP = '.', OP_POP = '0', OP_POP_MARK = '1', OP_DUP = '2',
    OP_BINBYTES = 'B', OP_SHORT_BINBYTES = 'C', OP_BINFLOAT = 'G', OP_BININT = 'J',
    OP_BININT1 = 'K', OP_BININT2 = 'M', OP_NONE = 'N', OP_BINPERSID = 'Q', OP_REDUCE = 'R',
    OP_BINUNICODE = 'X', OP_EMPTY_LIST = ']', OP_APPEND = 'a', OP_BUILD = 'b',
    OP_GLOBAL = 'c', OP_DICT = 'd', OP_APPENDS = 'e', OP_BINGET = 'h', OP_LONG_BINGET = 'j',
    OP_LIST = 'l', OP_BINPUT = 'q', OP_LONG_BINPUT = 'r', OP_SETITEM = 's', OP_TUPLE = 't',
    OP_SETITEMS = 'u', OP_EMPTY_DICT = '}', OP_EMPTY_TUPLE = ')',
    OP_PROTO = 0x80, OP_TUPLE1 = 0x85, OP_TUPLE2 = 0x86, OP_TUPLE3 = 0x87, OP_NEWTRUE = 0x88,
    OP_NEWFALSE = 0x89, OP_LONG1 = 0x8a, OP_LONG4 = 0x8b, OP_SHORT_BINUNICODE = 0x8c,
    OP_BINUNICODE8 = 0x8d, OP_BINBYTES8 = 0x8e, OP_EMPTY_SET = 0x8f, OP_ADDITEMS = 0x90,
    OP_FROZENSET = 0x91, OP_STACK_GLOBAL = 0x93, OP_MEMOIZE = 0x94, OP_FRAME = 0x95,
};

#define MAX_GLOBAL_LINE 1024

/* Opcodes of the protocol that torch.save never writes, named in errors. */
static const struct {
    unsigned char op;
    const char *name;
} refused_ops[] = {
    {'I', "INT"}, {'L', "LONG"}, {'F', "FLOAT"}, {'S', "STRING"}, {'T', "BINSTRING"},
    {'U', "SHORT_BINSTRING"}, {'V', "UNICODE"}, {'P', "PERSID"}, {'g', "GET"}, {'p', "PUT"},
    {'i', "INST"}, {'o', "OBJ"}, {0x81, "NEWOBJ"}, {0x82, "EXT1"}, {0x83, "EXT2"},
    {0x84, "EXT4"}, {0x92, "NEWOBJ_EX"}, {0x96, "BYTEARRAY8"}, {0x97, "NEXT_BUFFER"},
    {0x98, "READONLY_BUFFER"},
};

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

typedef struct machine {
    arena *ar;
    const unsigned char *data;
    size_t len, pos, op_at;
    pk_value **stack;
    size_t n, cap;
    size_t *marks; /* stack heights where each open mark stands */
    size_t n_marks;
    pk_value **memo;
    size_t n_memo, memo_cap;
    uint64_t budget; /* bytes the values may still take */
    pk_error *err;
    bool failed; /* err is set (or memory ran out) */
    pk_value *none, *yes, *no, *empty_tuple;
} machine;

/* ---- failing, allocating ------------------------------------------------ */

static bool fail(machine *m, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(machine *m, const char *code, const char *fmt, ...)
{
    if (m->failed)
        return false;
    m->failed = true;
    m->err->code = code;
    m->err->at = m->op_at;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err->msg, sizeof m->err->msg, fmt, ap);
    va_end(ap);
    return false;
}

/* Out of memory: no code (pk_load's contract). */
static bool nomem(machine *m)
{
    if (!m->failed)
        *m->err = (pk_error){.at = m->op_at, .msg = "out of memory"};
    m->failed = true;
    return false;
}

static bool charge(machine *m, uint64_t bytes)
{
    if (bytes > m->budget)
        return fail(m, "pt-pickle-size",
                    "the pickle's values would take more than %u times its %zu bytes: "
                    "refused",
                    PK_MEMORY_RATIO, m->len);
    m->budget -= bytes;
    return true;
}

static void *alloc(machine *m, size_t n, size_t size)
{
    if (n && size > SIZE_MAX / n) {
        fail(m, "pt-pickle-size", "a container of %zu items is too large", n);
        return NULL;
    }
    if (!charge(m, (uint64_t)n * size))
        return NULL;
    void *p = ar_array(m->ar, n ? n : 1, size);
    if (!p)
        nomem(m);
    return p;
}

static pk_value *new_value(machine *m, pk_kind kind)
{
    pk_value *v = alloc(m, 1, sizeof *v);
    if (v)
        v->kind = kind;
    return v;
}

/* A malloc'd array (the stack, the marks, the memo) grown to hold `need`. */
static bool grow(machine *m, void *arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    if (!charge(m, (uint64_t)(n - *cap) * elem))
        return false;
    void *p = realloc(*(void **)arr, n * elem);
    if (!p)
        return nomem(m);
    *(void **)arr = p;
    *cap = n;
    return true;
}

/* ---- the stack ---------------------------------------------------------- */

static size_t base(const machine *m) { return m->n_marks ? m->marks[m->n_marks - 1] : 0; }

static bool push(machine *m, pk_value *v)
{
    if (!v || !grow(m, &m->stack, &m->cap, m->n + 1, sizeof *m->stack))
        return false;
    m->stack[m->n++] = v;
    return true;
}

static pk_value *pop(machine *m)
{
    if (m->n == base(m)) {
        fail(m, "pt-pickle", "an opcode needs a value but the stack is empty");
        return NULL;
    }
    return m->stack[--m->n];
}

static pk_value *top(machine *m)
{
    if (m->n == base(m)) {
        fail(m, "pt-pickle", "an opcode needs a value but the stack is empty");
        return NULL;
    }
    return m->stack[m->n - 1];
}

/* The values above the last mark, which is removed: *items points into the
 * stack (valid until the next push). */
static bool pop_mark(machine *m, pk_value ***items, size_t *n)
{
    if (!m->n_marks)
        return fail(m, "pt-pickle", "an opcode needs a MARK but there is none");
    size_t at = m->marks[--m->n_marks];
    *n = m->n - at;
    *items = *n ? m->stack + at : NULL;
    m->n = at;
    return true;
}

/* ---- reading the bytes -------------------------------------------------- */

static bool need(machine *m, uint64_t n)
{
    if (n > m->len - m->pos)
        return fail(m, "pt-pickle",
                    "the pickle ends inside an opcode (%llu bytes needed, %zu left): it is "
                    "truncated",
                    (unsigned long long)n, m->len - m->pos);
    return true;
}

static uint64_t le(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

/* An unsigned little-endian field of n bytes. */
static bool field(machine *m, unsigned n, uint64_t *v)
{
    if (!need(m, n))
        return false;
    *v = le(m->data + m->pos, n);
    m->pos += n;
    return true;
}

/* ---- values ------------------------------------------------------------- */

static pk_value *int_value(machine *m, int64_t i)
{
    pk_value *v = new_value(m, PK_INT);
    if (v)
        v->u.i = i;
    return v;
}

static pk_value *seq_value(machine *m, pk_kind kind, pk_value **items, size_t n)
{
    if (kind == PK_TUPLE && n == 0)
        return m->empty_tuple;
    pk_value *v = new_value(m, kind);
    pk_value **copy = v ? alloc(m, n, sizeof *copy) : NULL;
    if (!copy)
        return NULL;
    if (n)
        memcpy(copy, items, n * sizeof *copy);
    v->u.seq.v = copy;
    v->u.seq.n = v->u.seq.cap = n;
    return v;
}

/* Append to a list or dict: its array doubles inside the arena (the old
 * one is left there, so a container costs at most twice its size). */
static bool seq_append(machine *m, pk_value *c, pk_value **items, size_t n)
{
    if (n > c->u.seq.cap - c->u.seq.n) {
        size_t cap = c->u.seq.cap ? c->u.seq.cap : 4;
        while (cap - c->u.seq.n < n)
            cap *= 2;
        pk_value **v = alloc(m, cap, sizeof *v);
        if (!v)
            return false;
        if (c->u.seq.n)
            memcpy(v, c->u.seq.v, c->u.seq.n * sizeof *v);
        c->u.seq.v = v;
        c->u.seq.cap = cap;
    }
    if (n)
        memcpy(c->u.seq.v + c->u.seq.n, items, n * sizeof *items);
    c->u.seq.n += n;
    return true;
}

const char *pk_kind_name(pk_kind kind)
{
    static const char *const names[] = {
        [PK_NONE] = "None",       [PK_BOOL] = "a bool",      [PK_INT] = "an int",
        [PK_BIGINT] = "an int",   [PK_FLOAT] = "a float",    [PK_STR] = "a string",
        [PK_BYTES] = "bytes",     [PK_TUPLE] = "a tuple",    [PK_LIST] = "a list",
        [PK_DICT] = "a dict",     [PK_SET] = "a set",        [PK_GLOBAL] = "a global",
        [PK_OBJECT] = "an object", [PK_STORAGE] = "a storage", [PK_TENSOR] = "a tensor",
    };
    return (unsigned)kind < sizeof names / sizeof *names ? names[kind] : "a value";
}

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

static pk_value *global_value(machine *m, pk_global which, surg_dtype dt, bool typed,
                              const char *name)
{
    pk_value *v = new_value(m, PK_GLOBAL);
    if (v)
        v->u.g = (pk_known){which, dt, typed, name};
    return v;
}

/* A global by module and name: one of the table's, or refused by name. */
static pk_value *lookup(machine *m, const char *mod, size_t mlen, const char *name, size_t nlen)
{
    char full[200];
    char *text = alloc(m, mlen + nlen + 2, 1);
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
        fail(m, "pt-dtype", "the pickle holds tensors of %s, which surg has no dtype for", full);
        return NULL;
    }
    if (t)
        return global_value(m, kind, t->dtype, true, text);
    fail(m, "pt-global",
         "the pickle refers to \"%s\", which surg does not know: refused, nothing was run "
         "(surg reads tensors, their storages and dtypes, and plain containers, never "
         "other objects)",
         full);
    return NULL;
}

/* GLOBAL: "module\nname\n" in the opcode's bytes. */
static bool read_line(machine *m, const char **s, size_t *len)
{
    size_t left = m->len - m->pos;
    size_t max = left < MAX_GLOBAL_LINE ? left : MAX_GLOBAL_LINE;
    const unsigned char *nl = memchr(m->data + m->pos, '\n', max);
    if (!nl)
        return fail(m, "pt-pickle", "a GLOBAL's name has no end of line within %d bytes",
                    MAX_GLOBAL_LINE);
    *s = (const char *)m->data + m->pos;
    *len = (size_t)(nl - (m->data + m->pos));
    m->pos += *len + 1;
    return true;
}

static bool op_global(machine *m)
{
    const char *mod = NULL, *name = NULL;
    size_t mlen = 0, nlen = 0;
    return read_line(m, &mod, &mlen) && read_line(m, &name, &nlen) &&
           push(m, lookup(m, mod, mlen, name, nlen));
}

static bool op_stack_global(machine *m)
{
    pk_value *name = pop(m), *mod = name ? pop(m) : NULL;
    if (!mod)
        return false;
    if (mod->kind != PK_STR || name->kind != PK_STR)
        return fail(m, "pt-pickle", "STACK_GLOBAL needs two strings, not %s and %s",
                    pk_kind_name(mod->kind), pk_kind_name(name->kind));
    return push(m, lookup(m, mod->u.s.p, mod->u.s.len, name->u.s.p, name->u.s.len));
}

/* ---- calling the known globals (REDUCE) --------------------------------- */

static bool want_int(machine *m, const pk_value *v, const char *what, uint64_t *out)
{
    if (v->kind != PK_INT || v->u.i < 0)
        return fail(m, "pt-tensor", "a tensor's %s is %s, not a non-negative int", what,
                    v->kind == PK_INT ? "negative" : pk_kind_name(v->kind));
    *out = (uint64_t)v->u.i;
    return true;
}

/* A tuple of non-negative ints (a size or a stride) as an array. */
static bool want_dims(machine *m, const pk_value *v, const char *what, uint32_t *rank,
                      uint64_t **out)
{
    if (v->kind != PK_TUPLE && v->kind != PK_LIST)
        return fail(m, "pt-tensor", "a tensor's %s is %s, not a tuple", what,
                    pk_kind_name(v->kind));
    if (v->u.seq.n > SURG_MAX_RANK)
        return fail(m, "pt-tensor", "a tensor has %zu dimensions, more than %d", v->u.seq.n,
                    SURG_MAX_RANK);
    *rank = (uint32_t)v->u.seq.n;
    *out = alloc(m, v->u.seq.n, sizeof **out);
    if (!*out)
        return false;
    for (size_t i = 0; i < v->u.seq.n; i++)
        if (!want_int(m, v->u.seq.v[i], what, &(*out)[i]))
            return false;
    return true;
}

static bool want_args(machine *m, const pk_value *f, const pk_value *args, size_t lo, size_t hi)
{
    if (args->kind != PK_TUPLE)
        return fail(m, "pt-pickle", "%s is called with %s, not a tuple", f->u.g.name,
                    pk_kind_name(args->kind));
    if (args->u.seq.n < lo || args->u.seq.n > hi) {
        if (hi > lo)
            return fail(m, "pt-pickle", "%s is called with %zu arguments, not %zu or %zu",
                        f->u.g.name, args->u.seq.n, lo, hi);
        return fail(m, "pt-pickle", "%s is called with %zu arguments, not %zu", f->u.g.name,
                    args->u.seq.n, lo);
    }
    return true;
}

/* A tensor's metadata argument: {} (or None) for a plain view. PyTorch
 * marks a lazily conjugated or negated view there ({"conj": True},
 * {"neg": True}); its stored values are not the tensor's, so it is refused
 * rather than carried wrong. */
static bool plain_metadata(machine *m, const pk_value *md)
{
    if (md->kind == PK_NONE)
        return true;
    if (md->kind != PK_DICT)
        return fail(m, "pt-tensor", "a tensor's metadata is %s, not a dict",
                    pk_kind_name(md->kind));
    for (size_t i = 0; i + 1 < md->u.seq.n; i += 2) {
        const pk_value *k = md->u.seq.v[i], *v = md->u.seq.v[i + 1];
        bool set = (v->kind == PK_BOOL && v->u.b) || (v->kind == PK_INT && v->u.i);
        if (!set)
            continue;
        char key[64] = "?";
        if (k->kind == PK_STR)
            printable(key, sizeof key, k->u.s.p, k->u.s.len);
        return fail(m, "pt-tensor",
                    "a tensor is saved as a lazy view whose values are not its storage's "
                    "(its metadata says \"%s\"): surg cannot carry it; save it resolved "
                    "(x.resolve_conj(), x.resolve_neg())",
                    key);
    }
    return true;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks[, metadata]); v3 has the dtype after backward_hooks. */
static pk_value *rebuild_tensor(machine *m, const pk_value *f, const pk_value *args)
{
    bool v3 = f->u.g.which == PK_G_REBUILD_TENSOR_V3;
    if (!want_args(m, f, args, v3 ? 7 : 6, v3 ? 8 : 7))
        return NULL;
    pk_value *const *a = args->u.seq.v;
    if (a[0]->kind != PK_STORAGE) {
        fail(m, "pt-tensor", "%s is given %s, not a storage", f->u.g.name,
             pk_kind_name(a[0]->kind));
        return NULL;
    }
    size_t md = v3 ? 7 : 6;
    if (args->u.seq.n > md && !plain_metadata(m, a[md]))
        return NULL;
    pk_value *v = new_value(m, PK_TENSOR);
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
        fail(m, "pt-tensor", "a tensor's size has %u dimensions but its stride %u", t->rank,
             rank_stride);
        return NULL;
    }
    t->size = size;
    t->stride = stride;
    if (v3) {
        if (a[6]->kind != PK_GLOBAL || a[6]->u.g.which != PK_G_DTYPE) {
            fail(m, "pt-tensor", "%s is given %s for a dtype", f->u.g.name,
                 a[6]->kind == PK_GLOBAL ? a[6]->u.g.name : pk_kind_name(a[6]->kind));
            return NULL;
        }
        t->dtype = a[6]->u.g.dtype;
    }
    return v;
}

static pk_value *call(machine *m, const pk_value *f, const pk_value *args, int depth);

/* _rebuild_from_type_v2(func, new_type, args, state): a tensor (or
 * parameter) with Python attributes; the attributes are not read. */
static pk_value *rebuild_from_type(machine *m, const pk_value *f, const pk_value *args,
                                   int depth)
{
    if (!want_args(m, f, args, 4, 4))
        return NULL;
    pk_value *const *a = args->u.seq.v;
    bool known_class = a[1]->kind == PK_GLOBAL && (a[1]->u.g.which == PK_G_TENSOR_CLASS ||
                                                   a[1]->u.g.which == PK_G_PARAMETER_CLASS);
    if (a[0]->kind != PK_GLOBAL || !known_class || depth > 0) {
        fail(m, "pt-pickle", "%s is given something other than a rebuilding function and "
                             "torch.Tensor or torch.nn.parameter.Parameter",
             f->u.g.name);
        return NULL;
    }
    pk_value *v = call(m, a[0], a[2], depth + 1);
    if (v && v->kind != PK_TENSOR) {
        fail(m, "pt-pickle", "%s does not rebuild a tensor", f->u.g.name);
        return NULL;
    }
    return v;
}

/* _codecs.encode(text, "latin1"), how protocol 2 pickles bytes: each
 * character of the (UTF-8) text below U+0100 is one byte. */
static pk_value *latin1_bytes(machine *m, const pk_value *f, const pk_value *args)
{
    if (!want_args(m, f, args, 2, 2))
        return NULL;
    const pk_value *text = args->u.seq.v[0], *codec = args->u.seq.v[1];
    if (text->kind != PK_STR || codec->kind != PK_STR ||
        !is(codec->u.s.p, codec->u.s.len, "latin1")) {
        fail(m, "pt-pickle", "_codecs.encode is given something other than a string and "
                             "\"latin1\"");
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)text->u.s.p;
    size_t n = text->u.s.len, k = 0;
    char *out = alloc(m, n ? n : 1, 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x80) {
            out[k++] = (char)s[i];
        } else if ((s[i] == 0xc2 || s[i] == 0xc3) && i + 1 < n && (s[i + 1] & 0xc0) == 0x80) {
            out[k++] = (char)(((s[i] & 0x1f) << 6) | (s[i + 1] & 0x3f));
            i++;
        } else {
            fail(m, "pt-pickle", "_codecs.encode is given text that is not latin-1");
            return NULL;
        }
    }
    pk_value *v = new_value(m, PK_BYTES);
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
static pk_value *opaque_object(machine *m, const pk_value *f, const pk_value *args)
{
    if (!want_args(m, f, args, 0, SIZE_MAX))
        return NULL;
    for (size_t i = 0; i < args->u.seq.n; i++) {
        pk_kind k = args->u.seq.v[i]->kind;
        if (k == PK_TUPLE || k == PK_LIST || k == PK_DICT || k == PK_SET ||
            k == PK_STORAGE || k == PK_TENSOR) {
            fail(m, "pt-pickle", "%s is given %s: only plain values make one here",
                 f->u.g.name, pk_kind_name(k));
            return NULL;
        }
    }
    pk_value *v = new_value(m, PK_OBJECT);
    if (v)
        v->u.g = f->u.g;
    return v;
}

/* set() or set(list), frozenset likewise. */
static pk_value *set_of(machine *m, const pk_value *f, const pk_value *args)
{
    if (!want_args(m, f, args, 0, 1))
        return NULL;
    if (!args->u.seq.n)
        return seq_value(m, PK_SET, NULL, 0);
    const pk_value *items = args->u.seq.v[0];
    if (items->kind != PK_LIST && items->kind != PK_TUPLE) {
        fail(m, "pt-pickle", "%s is given %s, not a list", f->u.g.name,
             pk_kind_name(items->kind));
        return NULL;
    }
    return seq_value(m, PK_SET, items->u.seq.v, items->u.seq.n);
}

static pk_value *call(machine *m, const pk_value *f, const pk_value *args, int depth)
{
    if (f->kind != PK_GLOBAL) {
        fail(m, "pt-pickle", "REDUCE calls %s, not a function", pk_kind_name(f->kind));
        return NULL;
    }
    switch (f->u.g.which) {
    case PK_G_ORDERED_DICT:
        return want_args(m, f, args, 0, 0) ? seq_value(m, PK_DICT, NULL, 0) : NULL;
    case PK_G_REBUILD_TENSOR_V2:
    case PK_G_REBUILD_TENSOR_V3:
        return rebuild_tensor(m, f, args);
    case PK_G_REBUILD_PARAMETER:
    case PK_G_REBUILD_PARAMETER_STATE: {
        size_t n = f->u.g.which == PK_G_REBUILD_PARAMETER ? 3 : 4;
        if (!want_args(m, f, args, n, n))
            return NULL;
        if (args->u.seq.v[0]->kind != PK_TENSOR) {
            fail(m, "pt-pickle", "%s is given %s, not a tensor", f->u.g.name,
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
            fail(m, "pt-pickle", "torch.Size is given %s, not a tuple",
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
    fail(m, "pt-pickle", "REDUCE calls %s, which is not a function surg reads", f->u.g.name);
    return NULL;
}

static bool op_reduce(machine *m)
{
    pk_value *args = pop(m), *f = args ? pop(m) : NULL;
    return f && push(m, call(m, f, args, 0));
}

/* BINPERSID: ("storage", storage_type, key, location, numel), as
 * torch.save's persistent_id writes every storage. */
static bool op_persid(machine *m)
{
    pk_value *pid = pop(m);
    if (!pid)
        return false;
    if (pid->kind != PK_TUPLE || pid->u.seq.n != 5 || pid->u.seq.v[0]->kind != PK_STR ||
        !is(pid->u.seq.v[0]->u.s.p, pid->u.seq.v[0]->u.s.len, "storage"))
        return fail(m, "pt-storage",
                    "a persistent id is not (\"storage\", type, key, location, size)");
    pk_value *const *a = pid->u.seq.v;
    if (a[1]->kind != PK_GLOBAL || a[1]->u.g.which != PK_G_STORAGE_TYPE)
        return fail(m, "pt-storage", "a storage's type is %s, not a torch storage type",
                    a[1]->kind == PK_GLOBAL ? a[1]->u.g.name : pk_kind_name(a[1]->kind));
    if (a[2]->kind != PK_STR || a[3]->kind != PK_STR)
        return fail(m, "pt-storage", "a storage's key or location is not a string");
    if (a[4]->kind != PK_INT || a[4]->u.i < 0)
        return fail(m, "pt-storage", "a storage's size is not a non-negative int");
    pk_value *v = new_value(m, PK_STORAGE);
    if (!v)
        return false;
    v->u.storage = (pk_storage){a[2]->u.s.p, a[2]->u.s.len, a[1]->u.g.dtype, a[1]->u.g.typed,
                                (uint64_t)a[4]->u.i};
    return push(m, v);
}

/* ---- the opcodes -------------------------------------------------------- */

static bool op_string(machine *m, pk_kind kind, unsigned width)
{
    uint64_t n;
    if (!field(m, width, &n) || !need(m, n))
        return false;
    pk_value *v = new_value(m, kind);
    if (!v)
        return false;
    v->u.s.p = (const char *)m->data + m->pos;
    v->u.s.len = (size_t)n;
    m->pos += (size_t)n;
    return push(m, v);
}

static bool op_int(machine *m, unsigned width, bool is_signed)
{
    uint64_t u;
    if (!field(m, width, &u))
        return false;
    int64_t i = is_signed ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
    return push(m, int_value(m, i));
}

/* LONG1 / LONG4: a little-endian two's complement integer of n bytes. */
static bool op_long(machine *m, unsigned width)
{
    uint64_t n;
    if (!field(m, width, &n))
        return false;
    if (width == 4 && n > INT32_MAX)
        return fail(m, "pt-pickle", "LONG4 has a negative length");
    if (!need(m, n))
        return false;
    const unsigned char *p = m->data + m->pos;
    m->pos += (size_t)n;
    bool neg = n && (p[n - 1] & 0x80);
    bool fits = true;
    for (uint64_t i = 8; i < n && fits; i++)
        fits = p[i] == (neg ? 0xff : 0x00);
    if (n > 8)
        fits = fits && ((p[7] & 0x80) != 0) == neg;
    if (!fits)
        return push(m, new_value(m, PK_BIGINT));
    uint64_t u = n ? le(p, n < 8 ? (unsigned)n : 8) : 0;
    if (neg && n < 8)
        u |= ~0ull << (8 * n);
    return push(m, int_value(m, (int64_t)u));
}

static bool op_float(machine *m)
{
    if (!need(m, 8))
        return false;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | m->data[m->pos + (size_t)i]; /* big-endian */
    m->pos += 8;
    pk_value *v = new_value(m, PK_FLOAT);
    if (!v)
        return false;
    memcpy(&v->u.f, &u, sizeof u);
    return push(m, v);
}

static bool op_tuple_n(machine *m, size_t n)
{
    if (m->n - base(m) < n)
        return fail(m, "pt-pickle", "TUPLE%zu needs %zu values on the stack", n, n);
    m->n -= n;
    return push(m, seq_value(m, PK_TUPLE, m->stack + m->n, n));
}

static bool op_from_mark(machine *m, pk_kind kind)
{
    pk_value **items = NULL;
    size_t n = 0;
    if (!pop_mark(m, &items, &n))
        return false;
    if (kind == PK_DICT && n % 2)
        return fail(m, "pt-pickle", "DICT has a key without a value");
    return push(m, seq_value(m, kind, items, n));
}

static bool into(machine *m, pk_kind kind, pk_value **items, size_t n, const char *op)
{
    pk_value *c = top(m);
    if (!c)
        return false;
    if (c->kind != kind)
        return fail(m, "pt-pickle", "%s adds to %s, not %s", op, pk_kind_name(c->kind),
                    pk_kind_name(kind));
    if (kind == PK_DICT && n % 2)
        return fail(m, "pt-pickle", "%s has a key without a value", op);
    return seq_append(m, c, items, n);
}

static bool op_add_one(machine *m, pk_kind kind)
{
    size_t n = kind == PK_DICT ? 2 : 1;
    if (m->n - base(m) < n + 1)
        return fail(m, "pt-pickle", "%s needs a container and %zu values on the stack",
                    kind == PK_DICT ? "SETITEM" : "APPEND", n);
    m->n -= n;
    return into(m, kind, m->stack + m->n, n, kind == PK_DICT ? "SETITEM" : "APPEND");
}

static bool op_add_many(machine *m, pk_kind kind)
{
    pk_value **items = NULL;
    size_t n = 0;
    return pop_mark(m, &items, &n) &&
           into(m, kind, items, n,
                kind == PK_DICT ? "SETITEMS" : kind == PK_SET ? "ADDITEMS" : "APPENDS");
}

static bool op_mark(machine *m)
{
    if (m->n_marks == PK_MAX_MARKS)
        return fail(m, "pt-pickle", "more than %u MARKs are open at once", PK_MAX_MARKS);
    if (!m->marks) {
        m->marks = malloc(PK_MAX_MARKS * sizeof *m->marks);
        if (!m->marks)
            return nomem(m);
    }
    m->marks[m->n_marks++] = m->n;
    return true;
}

static bool op_pop(machine *m)
{
    if (m->n > base(m)) {
        m->n--;
        return true;
    }
    if (m->n_marks) { /* POP at a mark removes the mark, as Python's does */
        m->n_marks--;
        return true;
    }
    return fail(m, "pt-pickle", "POP on an empty stack");
}

/* The memo: PUT stores at an index no larger than the entries stored so
 * far (a pickler numbers them in order), so it grows by one at most. */
static bool op_put(machine *m, uint64_t idx)
{
    pk_value *v = top(m);
    if (!v)
        return false;
    if (idx > m->n_memo)
        return fail(m, "pt-pickle", "memo index %llu skips past the %zu entries stored",
                    (unsigned long long)idx, m->n_memo);
    if (idx == m->n_memo) {
        if (!grow(m, &m->memo, &m->memo_cap, m->n_memo + 1, sizeof *m->memo))
            return false;
        m->n_memo++;
    }
    m->memo[idx] = v;
    return true;
}

static bool op_get(machine *m, uint64_t idx)
{
    if (idx >= m->n_memo)
        return fail(m, "pt-pickle", "memo index %llu was never stored", (unsigned long long)idx);
    return push(m, m->memo[idx]);
}

static bool op_memo(machine *m, int op)
{
    uint64_t idx = m->n_memo;
    bool get = op == OP_BINGET || op == OP_LONG_BINGET;
    unsigned width = op == OP_BINGET || op == OP_BINPUT ? 1 : op == OP_MEMOIZE ? 0 : 4;
    if (width && !field(m, width, &idx))
        return false;
    return get ? op_get(m, idx) : op_put(m, idx);
}

static bool op_frame(machine *m, bool proto)
{
    uint64_t v;
    if (!field(m, proto ? 1 : 8, &v))
        return false;
    if (proto && v > 5)
        return fail(m, "pt-pickle", "pickle protocol %llu is not one Python writes (0 to 5)",
                    (unsigned long long)v);
    if (!proto && v > m->len - m->pos)
        return fail(m, "pt-pickle", "a FRAME of %llu bytes runs past the pickle's end",
                    (unsigned long long)v);
    return true;
}

static bool op_build(machine *m)
{
    /* The state (an OrderedDict's _metadata, a tensor's attributes) is
     * not read: nothing is set on anything. */
    return pop(m) && top(m);
}

static bool refused(machine *m, int op)
{
    for (size_t i = 0; i < sizeof refused_ops / sizeof *refused_ops; i++)
        if (refused_ops[i].op == op)
            return fail(m, "pt-pickle",
                        "opcode %s is not one torch.save writes for a state dict: refused",
                        refused_ops[i].name);
    return fail(m, "pt-pickle", "byte 0x%02x is not a pickle opcode", (unsigned)op);
}

static bool step(machine *m, int op)
{
    switch (op) {
    case OP_PROTO: return op_frame(m, true);
    case OP_FRAME: return op_frame(m, false);
    case OP_MARK: return op_mark(m);
    case OP_POP: return op_pop(m);
    case OP_POP_MARK: {
        pk_value **items = NULL;
        size_t n = 0;
        return pop_mark(m, &items, &n);
    }
    case OP_DUP: return push(m, top(m));
    case OP_NONE: return push(m, m->none);
    case OP_NEWTRUE: return push(m, m->yes);
    case OP_NEWFALSE: return push(m, m->no);
    case OP_BININT: return op_int(m, 4, true);
    case OP_BININT1: return op_int(m, 1, false);
    case OP_BININT2: return op_int(m, 2, false);
    case OP_LONG1: return op_long(m, 1);
    case OP_LONG4: return op_long(m, 4);
    case OP_BINFLOAT: return op_float(m);
    case OP_SHORT_BINUNICODE: return op_string(m, PK_STR, 1);
    case OP_BINUNICODE: return op_string(m, PK_STR, 4);
    case OP_BINUNICODE8: return op_string(m, PK_STR, 8);
    case OP_SHORT_BINBYTES: return op_string(m, PK_BYTES, 1);
    case OP_BINBYTES: return op_string(m, PK_BYTES, 4);
    case OP_BINBYTES8: return op_string(m, PK_BYTES, 8);
    case OP_EMPTY_TUPLE: return push(m, m->empty_tuple);
    case OP_EMPTY_LIST: return push(m, seq_value(m, PK_LIST, NULL, 0));
    case OP_EMPTY_DICT: return push(m, seq_value(m, PK_DICT, NULL, 0));
    case OP_TUPLE1: return op_tuple_n(m, 1);
    case OP_TUPLE2: return op_tuple_n(m, 2);
    case OP_TUPLE3: return op_tuple_n(m, 3);
    case OP_TUPLE: return op_from_mark(m, PK_TUPLE);
    case OP_LIST: return op_from_mark(m, PK_LIST);
    case OP_DICT: return op_from_mark(m, PK_DICT);
    case OP_APPEND: return op_add_one(m, PK_LIST);
    case OP_APPENDS: return op_add_many(m, PK_LIST);
    case OP_EMPTY_SET: return push(m, seq_value(m, PK_SET, NULL, 0));
    case OP_ADDITEMS: return op_add_many(m, PK_SET);
    case OP_FROZENSET: return op_from_mark(m, PK_SET);
    case OP_SETITEM: return op_add_one(m, PK_DICT);
    case OP_SETITEMS: return op_add_many(m, PK_DICT);
    case OP_BINPUT:
    case OP_LONG_BINPUT:
    case OP_MEMOIZE:
    case OP_BINGET:
    case OP_LONG_BINGET: return op_memo(m, op);
    case OP_GLOBAL: return op_global(m);
    case OP_STACK_GLOBAL: return op_stack_global(m);
    case OP_REDUCE: return op_reduce(m);
    case OP_BUILD: return op_build(m);
    case OP_BINPERSID: return op_persid(m);
    default: return refused(m, op);
    }
}

static bool constants(machine *m)
{
    m->none = new_value(m, PK_NONE);
    m->yes = new_value(m, PK_BOOL);
    m->no = new_value(m, PK_BOOL);
    m->empty_tuple = new_value(m, PK_TUPLE);
    if (!m->none || !m->yes || !m->no || !m->empty_tuple)
        return false;
    m->yes->u.b = true;
    return true;
}

static bool run(machine *m, pk_value **root)
{
    if (m->len > PK_MAX_PICKLE)
        return fail(m, "pt-pickle-size", "the pickle is %zu bytes, more than the %u read",
                    m->len, PK_MAX_PICKLE);
    if (!constants(m))
        return false;
    while (m->pos < m->len) {
        m->op_at = m->pos;
        int op = m->data[m->pos++];
        if (op != OP_STOP) {
            if (!step(m, op))
                return false;
            continue;
        }
        if (m->n_marks || m->n != 1)
            return fail(m, "pt-pickle", "STOP with %zu values and %zu marks on the stack, "
                                        "not one value",
                        m->n, m->n_marks);
        if (m->pos != m->len)
            return fail(m, "pt-pickle", "%zu bytes follow the pickle's STOP",
                        m->len - m->pos);
        *root = m->stack[0];
        return true;
    }
    m->op_at = m->pos;
    return fail(m, "pt-pickle", "the pickle ends without STOP: it is truncated");
}

bool pk_load(arena *ar, const unsigned char *data, size_t len, pk_value **root, pk_error *err)
{
    *err = (pk_error){0};
    *root = NULL;
    machine m = {.ar = ar, .data = data, .len = len, .err = err,
                 .budget = PK_MEMORY_BASE + (uint64_t)PK_MEMORY_RATIO * len};
    bool ok = run(&m, root);
    free(m.stack);
    free(m.marks);
    free(m.memo);
    return ok;
}
