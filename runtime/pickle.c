/* pickle.c: the pickle interpreter (see pickle.h): the machine that reads
 * the opcodes — a stack with marks, a memo, the bytes and their bounds.
 * Opcodes and their meaning follow the description in CPython's pickletools
 * module (the protocol's reference). Here "making an object" only ever
 * builds a pk_value: the globals a pickle names, the calls it makes
 * (REDUCE) and its persistent ids are torch's object model
 * (pickle_torch.c); BUILD sets nothing and NEWOBJ and INST/OBJ are
 * refused. */
#include "runtime/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/pickle_machine.h"

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

struct pk_machine {
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
};

/* ---- failing, allocating ------------------------------------------------ */

bool pk_fail(pk_machine *m, const char *code, const char *fmt, ...)
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
static bool nomem(pk_machine *m)
{
    if (!m->failed)
        *m->err = (pk_error){.at = m->op_at, .msg = "out of memory"};
    m->failed = true;
    return false;
}

static bool charge(pk_machine *m, uint64_t bytes)
{
    if (bytes > m->budget)
        return pk_fail(m, "pt-pickle-size",
                       "the pickle's values would take more than %u times its %zu bytes: "
                       "refused",
                       PK_MEMORY_RATIO, m->len);
    m->budget -= bytes;
    return true;
}

void *pk_alloc(pk_machine *m, size_t n, size_t size)
{
    if (n && size > SIZE_MAX / n) {
        pk_fail(m, "pt-pickle-size", "a container of %zu items is too large", n);
        return NULL;
    }
    if (!charge(m, (uint64_t)n * size))
        return NULL;
    void *p = ar_array(m->ar, n ? n : 1, size);
    if (!p)
        nomem(m);
    return p;
}

pk_value *pk_new_value(pk_machine *m, pk_kind kind)
{
    pk_value *v = pk_alloc(m, 1, sizeof *v);
    if (v)
        v->kind = kind;
    return v;
}

/* A malloc'd array (the stack, the marks, the memo) grown to hold `need`. */
static bool grow(pk_machine *m, void *arr, size_t *cap, size_t need, size_t elem)
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

static size_t base(const pk_machine *m) { return m->n_marks ? m->marks[m->n_marks - 1] : 0; }

static bool push(pk_machine *m, pk_value *v)
{
    if (!v || !grow(m, &m->stack, &m->cap, m->n + 1, sizeof *m->stack))
        return false;
    m->stack[m->n++] = v;
    return true;
}

static pk_value *pop(pk_machine *m)
{
    if (m->n == base(m)) {
        pk_fail(m, "pt-pickle", "an opcode needs a value but the stack is empty");
        return NULL;
    }
    return m->stack[--m->n];
}

static pk_value *top(pk_machine *m)
{
    if (m->n == base(m)) {
        pk_fail(m, "pt-pickle", "an opcode needs a value but the stack is empty");
        return NULL;
    }
    return m->stack[m->n - 1];
}

/* The values above the last mark, which is removed: *items points into the
 * stack (valid until the next push). */
static bool pop_mark(pk_machine *m, pk_value ***items, size_t *n)
{
    if (!m->n_marks)
        return pk_fail(m, "pt-pickle", "an opcode needs a MARK but there is none");
    size_t at = m->marks[--m->n_marks];
    *n = m->n - at;
    *items = *n ? m->stack + at : NULL;
    m->n = at;
    return true;
}

/* ---- reading the bytes -------------------------------------------------- */

static bool need(pk_machine *m, uint64_t n)
{
    if (n > m->len - m->pos)
        return pk_fail(m, "pt-pickle",
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
static bool field(pk_machine *m, unsigned n, uint64_t *v)
{
    if (!need(m, n))
        return false;
    *v = le(m->data + m->pos, n);
    m->pos += n;
    return true;
}

/* ---- values ------------------------------------------------------------- */

static pk_value *int_value(pk_machine *m, int64_t i)
{
    pk_value *v = pk_new_value(m, PK_INT);
    if (v)
        v->u.i = i;
    return v;
}

pk_value *pk_seq_value(pk_machine *m, pk_kind kind, pk_value **items, size_t n)
{
    if (kind == PK_TUPLE && n == 0)
        return m->empty_tuple;
    pk_value *v = pk_new_value(m, kind);
    pk_value **copy = v ? pk_alloc(m, n, sizeof *copy) : NULL;
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
static bool seq_append(pk_machine *m, pk_value *c, pk_value **items, size_t n)
{
    if (n > c->u.seq.cap - c->u.seq.n) {
        size_t cap = c->u.seq.cap ? c->u.seq.cap : 4;
        while (cap - c->u.seq.n < n)
            cap *= 2;
        pk_value **v = pk_alloc(m, cap, sizeof *v);
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

/* ---- globals, calls, storages (torch's object model) -------------------- */

/* GLOBAL: "module\nname\n" in the opcode's bytes. */
static bool read_line(pk_machine *m, const char **s, size_t *len)
{
    size_t left = m->len - m->pos;
    size_t max = left < MAX_GLOBAL_LINE ? left : MAX_GLOBAL_LINE;
    const unsigned char *nl = memchr(m->data + m->pos, '\n', max);
    if (!nl)
        return pk_fail(m, "pt-pickle", "a GLOBAL's name has no end of line within %d bytes",
                       MAX_GLOBAL_LINE);
    *s = (const char *)m->data + m->pos;
    *len = (size_t)(nl - (m->data + m->pos));
    m->pos += *len + 1;
    return true;
}

static bool op_global(pk_machine *m)
{
    const char *mod = NULL, *name = NULL;
    size_t mlen = 0, nlen = 0;
    return read_line(m, &mod, &mlen) && read_line(m, &name, &nlen) &&
           push(m, pk_lookup(m, mod, mlen, name, nlen));
}

static bool op_stack_global(pk_machine *m)
{
    pk_value *name = pop(m), *mod = name ? pop(m) : NULL;
    if (!mod)
        return false;
    if (mod->kind != PK_STR || name->kind != PK_STR)
        return pk_fail(m, "pt-pickle", "STACK_GLOBAL needs two strings, not %s and %s",
                       pk_kind_name(mod->kind), pk_kind_name(name->kind));
    return push(m, pk_lookup(m, mod->u.s.p, mod->u.s.len, name->u.s.p, name->u.s.len));
}

static bool op_reduce(pk_machine *m)
{
    pk_value *args = pop(m), *f = args ? pop(m) : NULL;
    return f && push(m, pk_call(m, f, args));
}

/* BINPERSID: a storage, as torch.save's persistent_id writes each. */
static bool op_persid(pk_machine *m)
{
    pk_value *pid = pop(m);
    return pid && push(m, pk_persistent_load(m, pid));
}

/* ---- the opcodes -------------------------------------------------------- */

static bool op_string(pk_machine *m, pk_kind kind, unsigned width)
{
    uint64_t n;
    if (!field(m, width, &n) || !need(m, n))
        return false;
    pk_value *v = pk_new_value(m, kind);
    if (!v)
        return false;
    v->u.s.p = (const char *)m->data + m->pos;
    v->u.s.len = (size_t)n;
    m->pos += (size_t)n;
    return push(m, v);
}

static bool op_int(pk_machine *m, unsigned width, bool is_signed)
{
    uint64_t u;
    if (!field(m, width, &u))
        return false;
    int64_t i = is_signed ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
    return push(m, int_value(m, i));
}

/* LONG1 / LONG4: a little-endian two's complement integer of n bytes. */
static bool op_long(pk_machine *m, unsigned width)
{
    uint64_t n;
    if (!field(m, width, &n))
        return false;
    if (width == 4 && n > INT32_MAX)
        return pk_fail(m, "pt-pickle", "LONG4 has a negative length");
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
        return push(m, pk_new_value(m, PK_BIGINT));
    uint64_t u = n ? le(p, n < 8 ? (unsigned)n : 8) : 0;
    if (neg && n < 8)
        u |= ~0ull << (8 * n);
    return push(m, int_value(m, (int64_t)u));
}

static bool op_float(pk_machine *m)
{
    if (!need(m, 8))
        return false;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | m->data[m->pos + (size_t)i]; /* big-endian */
    m->pos += 8;
    pk_value *v = pk_new_value(m, PK_FLOAT);
    if (!v)
        return false;
    memcpy(&v->u.f, &u, sizeof u);
    return push(m, v);
}

static bool op_tuple_n(pk_machine *m, size_t n)
{
    if (m->n - base(m) < n)
        return pk_fail(m, "pt-pickle", "TUPLE%zu needs %zu values on the stack", n, n);
    m->n -= n;
    return push(m, pk_seq_value(m, PK_TUPLE, m->stack + m->n, n));
}

static bool op_from_mark(pk_machine *m, pk_kind kind)
{
    pk_value **items = NULL;
    size_t n = 0;
    if (!pop_mark(m, &items, &n))
        return false;
    if (kind == PK_DICT && n % 2)
        return pk_fail(m, "pt-pickle", "DICT has a key without a value");
    return push(m, pk_seq_value(m, kind, items, n));
}

static bool into(pk_machine *m, pk_kind kind, pk_value **items, size_t n, const char *op)
{
    pk_value *c = top(m);
    if (!c)
        return false;
    if (c->kind != kind)
        return pk_fail(m, "pt-pickle", "%s adds to %s, not %s", op, pk_kind_name(c->kind),
                       pk_kind_name(kind));
    if (kind == PK_DICT && n % 2)
        return pk_fail(m, "pt-pickle", "%s has a key without a value", op);
    return seq_append(m, c, items, n);
}

static bool op_add_one(pk_machine *m, pk_kind kind)
{
    size_t n = kind == PK_DICT ? 2 : 1;
    if (m->n - base(m) < n + 1)
        return pk_fail(m, "pt-pickle", "%s needs a container and %zu values on the stack",
                       kind == PK_DICT ? "SETITEM" : "APPEND", n);
    m->n -= n;
    return into(m, kind, m->stack + m->n, n, kind == PK_DICT ? "SETITEM" : "APPEND");
}

static bool op_add_many(pk_machine *m, pk_kind kind)
{
    pk_value **items = NULL;
    size_t n = 0;
    return pop_mark(m, &items, &n) &&
           into(m, kind, items, n,
                kind == PK_DICT ? "SETITEMS" : kind == PK_SET ? "ADDITEMS" : "APPENDS");
}

static bool op_mark(pk_machine *m)
{
    if (m->n_marks == PK_MAX_MARKS)
        return pk_fail(m, "pt-pickle", "more than %u MARKs are open at once", PK_MAX_MARKS);
    if (!m->marks) {
        m->marks = malloc(PK_MAX_MARKS * sizeof *m->marks);
        if (!m->marks)
            return nomem(m);
    }
    m->marks[m->n_marks++] = m->n;
    return true;
}

static bool op_pop(pk_machine *m)
{
    if (m->n > base(m)) {
        m->n--;
        return true;
    }
    if (m->n_marks) { /* POP at a mark removes the mark, as Python's does */
        m->n_marks--;
        return true;
    }
    return pk_fail(m, "pt-pickle", "POP on an empty stack");
}

/* The memo: PUT stores at an index no larger than the entries stored so
 * far (a pickler numbers them in order), so it grows by one at most. */
static bool op_put(pk_machine *m, uint64_t idx)
{
    pk_value *v = top(m);
    if (!v)
        return false;
    if (idx > m->n_memo)
        return pk_fail(m, "pt-pickle", "memo index %llu skips past the %zu entries stored",
                       (unsigned long long)idx, m->n_memo);
    if (idx == m->n_memo) {
        if (!grow(m, &m->memo, &m->memo_cap, m->n_memo + 1, sizeof *m->memo))
            return false;
        m->n_memo++;
    }
    m->memo[idx] = v;
    return true;
}

static bool op_get(pk_machine *m, uint64_t idx)
{
    if (idx >= m->n_memo)
        return pk_fail(m, "pt-pickle", "memo index %llu was never stored", (unsigned long long)idx);
    return push(m, m->memo[idx]);
}

static bool op_memo(pk_machine *m, int op)
{
    uint64_t idx = m->n_memo;
    bool get = op == OP_BINGET || op == OP_LONG_BINGET;
    unsigned width = op == OP_BINGET || op == OP_BINPUT ? 1 : op == OP_MEMOIZE ? 0 : 4;
    if (width && !field(m, width, &idx))
        return false;
    return get ? op_get(m, idx) : op_put(m, idx);
}

static bool op_frame(pk_machine *m, bool proto)
{
    uint64_t v;
    if (!field(m, proto ? 1 : 8, &v))
        return false;
    if (proto && v > 5)
        return pk_fail(m, "pt-pickle", "pickle protocol %llu is not one Python writes (0 to 5)",
                       (unsigned long long)v);
    if (!proto && v > m->len - m->pos)
        return pk_fail(m, "pt-pickle", "a FRAME of %llu bytes runs past the pickle's end",
                       (unsigned long long)v);
    return true;
}

static bool op_build(pk_machine *m)
{
    /* The state (an OrderedDict's _metadata, a tensor's attributes) is
     * not read: nothing is set on anything. */
    return pop(m) && top(m);
}

static bool refused(pk_machine *m, int op)
{
    for (size_t i = 0; i < sizeof refused_ops / sizeof *refused_ops; i++)
        if (refused_ops[i].op == op)
            return pk_fail(m, "pt-pickle",
                           "opcode %s is not one torch.save writes for a state dict: refused",
                           refused_ops[i].name);
    return pk_fail(m, "pt-pickle", "byte 0x%02x is not a pickle opcode", (unsigned)op);
}

static bool step(pk_machine *m, int op)
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
    case OP_EMPTY_LIST: return push(m, pk_seq_value(m, PK_LIST, NULL, 0));
    case OP_EMPTY_DICT: return push(m, pk_seq_value(m, PK_DICT, NULL, 0));
    case OP_TUPLE1: return op_tuple_n(m, 1);
    case OP_TUPLE2: return op_tuple_n(m, 2);
    case OP_TUPLE3: return op_tuple_n(m, 3);
    case OP_TUPLE: return op_from_mark(m, PK_TUPLE);
    case OP_LIST: return op_from_mark(m, PK_LIST);
    case OP_DICT: return op_from_mark(m, PK_DICT);
    case OP_APPEND: return op_add_one(m, PK_LIST);
    case OP_APPENDS: return op_add_many(m, PK_LIST);
    case OP_EMPTY_SET: return push(m, pk_seq_value(m, PK_SET, NULL, 0));
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

static bool constants(pk_machine *m)
{
    m->none = pk_new_value(m, PK_NONE);
    m->yes = pk_new_value(m, PK_BOOL);
    m->no = pk_new_value(m, PK_BOOL);
    m->empty_tuple = pk_new_value(m, PK_TUPLE);
    if (!m->none || !m->yes || !m->no || !m->empty_tuple)
        return false;
    m->yes->u.b = true;
    return true;
}

static bool run(pk_machine *m, pk_value **root)
{
    if (m->len > PK_MAX_PICKLE)
        return pk_fail(m, "pt-pickle-size", "the pickle is %zu bytes, more than the %u read",
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
            return pk_fail(m, "pt-pickle", "STOP with %zu values and %zu marks on the stack, "
                                           "not one value",
                           m->n, m->n_marks);
        if (m->pos != m->len)
            return pk_fail(m, "pt-pickle", "%zu bytes follow the pickle's STOP",
                           m->len - m->pos);
        *root = m->stack[0];
        return true;
    }
    m->op_at = m->pos;
    return pk_fail(m, "pt-pickle", "the pickle ends without STOP: it is truncated");
}

bool pk_load(arena *ar, const unsigned char *data, size_t len, pk_value **root, pk_error *err)
{
    *err = (pk_error){0};
    *root = NULL;
    pk_machine m = {.ar = ar, .data = data, .len = len, .err = err,
                    .budget = PK_MEMORY_BASE + (uint64_t)PK_MEMORY_RATIO * len};
    bool ok = run(&m, root);
    free(m.stack);
    free(m.marks);
    free(m.memo);
    return ok;
}
