/* test_pickle.c: the pickle interpreter (pickle.c) on byte strings built
 * here: each opcode it reads and the value it makes, the tensors torch.save
 * pickles (v2, v3 with a dtype, parameters, tensors with attributes), and
 * every refusal — globals outside the table (os.system, builtins.eval),
 * opcodes torch.save does not write, lengths past the end, memo and stack
 * abuse, and a pickle whose values would take too much memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "runtime/pickle.h"

#define B(s) (const unsigned char *)(s), sizeof(s) - 1

/* Pieces of what torch.save writes (split where a hex escape would run on). */
#define STR(n, s) "X" n "\x00\x00\x00" s /* BINUNICODE of a short string */
#define ODICT "ccollections\nOrderedDict\n)R"
#define V2 "ctorch._utils\n_rebuild_tensor_v2\n"
#define PERSID(type, key, numel) \
    "(" STR("\x07", "storage") "ctorch\n" type "\n" STR("\x01", key) STR("\x03", "cpu") \
    "K" numel "tQ"
/* A float32 tensor of shape (2, 3) over storage "0" of 6 elements. */
#define T23 V2 "(" PERSID("FloatStorage", "0", "\x06") "K\x00" \
    "K\x02K\x03\x86K\x03K\x01\x86\x89" ODICT "tR"

typedef struct run {
    arena ar;
    pk_value *root;
    pk_error err;
    bool ok;
} run;

static run *load(const unsigned char *data, size_t len)
{
    static run r;
    ar_free(&r.ar);
    ar_init(&r.ar);
    r.ok = pk_load(&r.ar, data, len, &r.root, &r.err);
    return &r;
}

static void refused(const unsigned char *data, size_t len, const char *code, const char *text)
{
    run *r = load(data, len);
    if (r->ok)
        fail_msg("accepted, expected %s", code);
    assert_non_null(r->err.code);
    if (strcmp(r->err.code, code) != 0 || !strstr(r->err.msg, text))
        fail_msg("got %s: %s; expected %s with \"%s\"", r->err.code, r->err.msg, code, text);
    assert_null(r->root);
}

static pk_value *dict_get(const pk_value *d, const char *key)
{
    assert_int_equal(d->kind, PK_DICT);
    for (size_t i = 0; i + 1 < d->u.seq.n; i += 2) {
        const pk_value *k = d->u.seq.v[i];
        if (k->kind == PK_STR && k->u.s.len == strlen(key) &&
            memcmp(k->u.s.p, key, k->u.s.len) == 0)
            return d->u.seq.v[i + 1];
    }
    fail_msg("no key %s", key);
    return NULL;
}

static void is_int(const pk_value *v, int64_t want)
{
    assert_int_equal(v->kind, PK_INT);
    assert_true(v->u.i == want);
}

static void test_scalars(void **state)
{
    (void)state;
    run *r = load(B("\x80\x02(K\x07M\x01\x02J\xfe\xff\xff\xff\x8a\x00\x8a\x01\xff"
                    "\x8a\x02\x00\x80\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\xff"
                    "\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01"
                    "\x8b\x03\x00\x00\x00\x01\x02\x03"
                    "G\x3f\xf8\x00\x00\x00\x00\x00\x00" "\x88\x89N"
                    "\x8c\x02hi" "\x8d\x03\x00\x00\x00\x00\x00\x00\x00" "abc"
                    "C\x01z" "B\x02\x00\x00\x00" "yz"
                    "\x8e\x00\x00\x00\x00\x00\x00\x00\x00" "l."));
    assert_true(r->ok);
    const pk_value *l = r->root;
    assert_int_equal(l->kind, PK_LIST);
    assert_int_equal(l->u.seq.n, 18);
    pk_value **v = l->u.seq.v;
    is_int(v[0], 7);
    is_int(v[1], 0x201);
    is_int(v[2], -2);
    is_int(v[3], 0);
    is_int(v[4], -1);
    is_int(v[5], -32768);
    is_int(v[6], -1);                        /* 9 bytes, but it fits */
    assert_int_equal(v[7]->kind, PK_BIGINT); /* 2^64 */
    is_int(v[8], 0x030201);
    assert_int_equal(v[9]->kind, PK_FLOAT);
    assert_true(v[9]->u.f == 1.5);
    assert_true(v[10]->kind == PK_BOOL && v[10]->u.b);
    assert_true(v[11]->kind == PK_BOOL && !v[11]->u.b);
    assert_int_equal(v[12]->kind, PK_NONE);
    assert_true(v[13]->kind == PK_STR && v[13]->u.s.len == 2 && !memcmp(v[13]->u.s.p, "hi", 2));
    assert_true(v[14]->kind == PK_STR && v[14]->u.s.len == 3);
    assert_true(v[15]->kind == PK_BYTES && v[15]->u.s.len == 1);
    assert_true(v[16]->kind == PK_BYTES && v[16]->u.s.len == 2);
    assert_true(v[17]->kind == PK_BYTES && v[17]->u.s.len == 0);
}

static void test_containers_and_memo(void **state)
{
    (void)state;
    /* {"a": [1, 2, 3], "b": (1,), "c": (1, 2), "d": (1, 2, 3), "e": <"a"'s list>,
     *  "f": {"x": None}} with BINPUT/BINGET, LONG_BINPUT/LONG_BINGET, MEMOIZE,
     *  DUP, POP, POP_MARK, FRAME and a protocol-1 DICT */
    run *r = load(B("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00"
                    "}q\x00(" STR("\x01", "a") "]q\x01K\x01" "a(K\x02K\x03" "e"
                    STR("\x01", "b") "K\x01\x85" STR("\x01", "c") "K\x01K\x02\x86"
                    STR("\x01", "d") "K\x01K\x02K\x03\x87"
                    STR("\x01", "e") "h\x01"
                    STR("\x01", "f") "(" STR("\x01", "x") "N" "d" "\x94"
                    "r\x03\x00\x00\x00" "j\x03\x00\x00\x00" "0"
                    "(K\x09K\x09" "1" "K\x08" "2" "0" "0"
                    "u."));
    if (!r->ok)
        fail_msg("%s", r->err.msg);
    const pk_value *d = r->root;
    assert_int_equal(d->u.seq.n, 12);
    const pk_value *a = dict_get(d, "a");
    assert_int_equal(a->kind, PK_LIST);
    assert_int_equal(a->u.seq.n, 3);
    is_int(a->u.seq.v[2], 3);
    assert_ptr_equal(dict_get(d, "e"), a); /* the memo shares, as Python's does */
    assert_int_equal(dict_get(d, "b")->u.seq.n, 1);
    assert_int_equal(dict_get(d, "c")->u.seq.n, 2);
    assert_int_equal(dict_get(d, "d")->kind, PK_TUPLE);
    assert_int_equal(dict_get(d, "d")->u.seq.n, 3);
    assert_int_equal(dict_get(dict_get(d, "f"), "x")->kind, PK_NONE);
}

static void test_torch_tensor(void **state)
{
    (void)state;
    /* OrderedDict {"w": tensor} with BUILD of a _metadata state, as a
     * state_dict() pickles. */
    run *r = load(B("\x80\x02" ODICT "q\x00(" STR("\x01", "w") T23 "u"
                    "}" STR("\x09", "_metadata") ODICT "sb."));
    if (!r->ok)
        fail_msg("%s", r->err.msg);
    const pk_value *t = dict_get(r->root, "w");
    assert_int_equal(t->kind, PK_TENSOR);
    assert_int_equal(t->u.tensor.dtype, SURG_F32);
    assert_int_equal(t->u.tensor.rank, 2);
    assert_int_equal(t->u.tensor.size[0], 2);
    assert_int_equal(t->u.tensor.size[1], 3);
    assert_int_equal(t->u.tensor.stride[0], 3);
    assert_int_equal(t->u.tensor.stride[1], 1);
    assert_int_equal(t->u.tensor.offset, 0);
    const pk_storage *s = t->u.tensor.storage;
    assert_true(s->key_len == 1 && s->key[0] == '0' && s->typed);
    assert_int_equal(s->numel, 6);
    assert_int_equal(s->dtype, SURG_F32);

    /* A parameter wraps its tensor; v3 takes the dtype over an untyped
     * storage; a tensor with attributes goes through _rebuild_from_type_v2;
     * torch.Size is a tuple; protocol 4 names globals with STACK_GLOBAL. */
    r = load(B("\x80\x02(ctorch._utils\n_rebuild_parameter\n(" T23 "\x88" ODICT "tR"
               "ctorch._utils\n_rebuild_tensor_v3\n("
               "(" STR("\x07", "storage") "ctorch.storage\nUntypedStorage\n"
               STR("\x01", "1") STR("\x03", "cpu") "K\x08tQ"
               "K\x01" "K\x03\x85" "K\x01\x85" "\x89" ODICT "ctorch\nuint16\n" "tR"
               "ctorch._tensor\n_rebuild_from_type_v2\n(" V2
               "ctorch\nTensor\n"
               "(" PERSID("HalfStorage", "2", "\x04") "K\x01" "K\x03\x85" "K\x01\x85"
               "\x89" ODICT "t}tR"
               "ctorch\nSize\n" "K\x04K\x05\x86\x85R"
               "\x8c\x0b" "collections" "\x8c\x0b" "OrderedDict" "\x93)R"
               "l."));
    if (!r->ok)
        fail_msg("%s", r->err.msg);
    pk_value **v = r->root->u.seq.v;
    assert_int_equal(r->root->u.seq.n, 5);
    assert_int_equal(v[0]->kind, PK_TENSOR);
    assert_int_equal(v[1]->kind, PK_TENSOR);
    assert_int_equal(v[1]->u.tensor.dtype, SURG_U16);
    assert_false(v[1]->u.tensor.storage->typed);
    assert_int_equal(v[1]->u.tensor.storage->dtype, SURG_U8);
    assert_int_equal(v[1]->u.tensor.offset, 1);
    assert_int_equal(v[2]->kind, PK_TENSOR);
    assert_int_equal(v[2]->u.tensor.dtype, SURG_F16);
    assert_int_equal(v[3]->kind, PK_TUPLE);
    assert_int_equal(v[3]->u.seq.n, 2);
    assert_int_equal(v[4]->kind, PK_DICT);
}

/* What training checkpoints hold beside tensors, read as data: sets (the
 * opcodes and protocol 2's set([...])), torch.device and NumPy scalars and
 * dtypes as opaque objects, bytes through _codecs.encode as latin-1. */
static void test_training_extras(void **state)
{
    (void)state;
    run *r = load(B("\x80\x04(\x8f(K\x01K\x02\x90" "(K\x03\x91"
                    "c__builtin__\nset\n]K\x04" "a\x85R"
                    "ctorch\ndevice\n" STR("\x04", "cuda") "K\x00\x86R"
                    "cnumpy\ndtype\n" STR("\x02", "f8") "\x89\x88\x87R"
                    "(K\x03" STR("\x01", "<") "NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
                    "c_codecs\nencode\n" "X\x03\x00\x00\x00" "\xc3\xbf" "a"
                    STR("\x06", "latin1") "\x86R"
                    "l."));
    if (!r->ok)
        fail_msg("%s", r->err.msg);
    pk_value **v = r->root->u.seq.v;
    assert_int_equal(r->root->u.seq.n, 6);
    assert_int_equal(v[0]->kind, PK_SET);
    assert_int_equal(v[0]->u.seq.n, 2);
    assert_int_equal(v[1]->kind, PK_SET); /* frozenset */
    assert_int_equal(v[1]->u.seq.n, 1);
    assert_int_equal(v[2]->kind, PK_SET);
    is_int(v[2]->u.seq.v[0], 4);
    assert_int_equal(v[3]->kind, PK_OBJECT);
    assert_string_equal(v[3]->u.g.name, "torch.device");
    assert_int_equal(v[4]->kind, PK_OBJECT); /* its BUILD state is not read */
    assert_int_equal(v[5]->kind, PK_BYTES);
    assert_int_equal(v[5]->u.s.len, 2);
    assert_memory_equal(v[5]->u.s.p, "\xff" "a", 2);

    /* An opaque object is made of plain values only: nothing can hide in it. */
    refused(B("\x80\x02" "ctorch\ndevice\n" T23 "\x85R."), "pt-pickle", "given a tensor");
    refused(B("\x80\x02" "cnumpy\ndtype\n]\x85R."), "pt-pickle", "given a list");
    refused(B("\x80\x02" "c__builtin__\nset\nK\x01\x85R."), "pt-pickle", "not a list");
    refused(B("\x80\x02(\x90."), "pt-pickle", "stack is empty");
    refused(B("\x80\x02](K\x01\x90."), "pt-pickle", "ADDITEMS adds to a list");
    refused(B("\x80\x02" "c_codecs\nencode\n" "X\x02\x00\x00\x00" "\xe2\x82"
              STR("\x06", "latin1") "\x86R."),
            "pt-pickle", "not latin-1");
    refused(B("\x80\x02" "c_codecs\nencode\n" STR("\x01", "a") STR("\x04", "utf8") "\x86R."),
            "pt-pickle", "\"latin1\"");
}

/* Lazy conjugate and negative views (PyTorch's tensor metadata) are
 * refused; metadata that marks nothing is fine. */
static void test_tensor_metadata(void **state)
{
    (void)state;
#define T4(md) V2 "(" PERSID("FloatStorage", "0", "\x04") "K\x00K\x04\x85K\x01\x85\x89" ODICT md "tR."
    run *r = load(B("\x80\x02" T4("}")));
    assert_true(r->ok);
    r = load(B("\x80\x02" T4("}" STR("\x03", "neg") "\x89s")));
    assert_true(r->ok);
    refused(B("\x80\x02" T4("}" STR("\x04", "conj") "\x88s")), "pt-tensor", "\"conj\"");
    refused(B("\x80\x02" T4("}" STR("\x03", "neg") "K\x01s")), "pt-tensor", "\"neg\"");
    refused(B("\x80\x02" T4("K\x01")), "pt-tensor", "metadata is an int");
#undef T4
}

/* Every global outside the table is refused by its name, at the GLOBAL. */
static void test_globals_refused(void **state)
{
    (void)state;
    refused(B("\x80\x02" "cos\nsystem\n" STR("\x05", "touch") "\x85R."), "pt-global",
            "\"os.system\"");
    refused(B("\x80\x02" "cposix\nsystem\n" STR("\x05", "touch") "\x85R."), "pt-global",
            "\"posix.system\"");
    refused(B("\x80\x04\x8c\x08" "builtins" "\x8c\x04" "eval" "\x93" "\x8c\x01" "1" "\x85R."),
            "pt-global", "\"builtins.eval\"");
    refused(B("\x80\x02" "c__builtin__\ngetattr\n."), "pt-global", "nothing was run");
    refused(B("\x80\x02" "ctorch\nload\n."), "pt-global", "\"torch.load\"");
    refused(B("\x80\x02" "cnumpy.core.multiarray\n_reconstruct\n."), "pt-global",
            "numpy.core.multiarray._reconstruct");
    refused(B("\x80\x02" "cos\x01\nsy\"s\n."), "pt-global", "\"os\\x01.sy\\x22s\"");
    refused(B("\x80\x02" "ctorch\nComplexDoubleStorage\n."), "pt-dtype",
            "torch.ComplexDoubleStorage");
    refused(B("\x80\x02" "ctorch\ncomplex128\n."), "pt-dtype", "no dtype");
    /* Known globals are data, not functions to call as anything. */
    refused(B("\x80\x02" "ctorch\nfloat32\n)R."), "pt-pickle", "not a function surg reads");
    refused(B("\x80\x02" "K\x01)R."), "pt-pickle", "REDUCE calls an int");
    refused(B("\x80\x02" ODICT "K\x01\x85R."), "pt-pickle", "REDUCE calls a dict");
    refused(B("\x80\x02" "ccollections\nOrderedDict\nK\x01\x85R."), "pt-pickle",
            "1 arguments, not 0");
    refused(B("\x80\x02" "cos\nsystem" ), "pt-pickle", "no end of line");
}

static void test_opcodes_refused(void **state)
{
    (void)state;
    refused(B("\x80\x02(cos\nsystem\nS'ls'\ni."), "pt-global", "os.system");
    refused(B("\x80\x02(S'ls'\n."), "pt-pickle", "opcode STRING");
    refused(B("\x80\x02" ODICT "\x81."), "pt-pickle", "opcode NEWOBJ");
    refused(B("\x80\x02" "I1\n."), "pt-pickle", "opcode INT");
    refused(B("\x80\x02" "g0\n."), "pt-pickle", "opcode GET");
    refused(B("\x80\x02" "\x92."), "pt-pickle", "opcode NEWOBJ_EX");
    refused(B("\x80\x02" "\xff."), "pt-pickle", "byte 0xff");
    refused(B("\x80\x06N."), "pt-pickle", "protocol 6");
}

static void test_bounds(void **state)
{
    (void)state;
    /* Lengths past the end are refused before anything is allocated. */
    refused(B("\x80\x02X\xff\xff\xff\x7f" "abc."), "pt-pickle", "truncated");
    refused(B("\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\xff" "a."), "pt-pickle", "truncated");
    refused(B("\x80\x04\x95\xff\xff\xff\xff\x00\x00\x00\x00N."), "pt-pickle", "FRAME");
    refused(B("\x80\x02\x8b\xff\xff\xff\xff."), "pt-pickle", "negative length");
    refused(B("\x80\x02J\x01\x00"), "pt-pickle", "truncated");
    /* The memo: an index stored in order, read only once stored. */
    refused(B("\x80\x02Nq\x01."), "pt-pickle", "skips past");
    refused(B("\x80\x02Nr\x00\x00\x00\x80."), "pt-pickle", "skips past");
    refused(B("\x80\x02h\x00."), "pt-pickle", "never stored");
    refused(B("\x80\x02Nq\x00j\x01\x00\x00\x00."), "pt-pickle", "never stored");
    /* The stack: nothing taken that is not there, marks respected. */
    refused(B("\x80\x02."), "pt-pickle", "STOP with 0 values");
    refused(B("\x80\x02NN."), "pt-pickle", "STOP with 2 values");
    refused(B("\x80\x02(N."), "pt-pickle", "1 marks");
    refused(B("\x80\x02N(s."), "pt-pickle", "needs a container");
    refused(B("\x80\x02}(Nu."), "pt-pickle", "key without a value");
    refused(B("\x80\x02](Nu."), "pt-pickle", "adds to a list");
    refused(B("\x80\x02Nt."), "pt-pickle", "needs a MARK");
    refused(B("\x80\x02(\x85."), "pt-pickle", "TUPLE1");
    refused(B("\x80\x02(R."), "pt-pickle", "stack is empty");
    refused(B("\x80\x02(b."), "pt-pickle", "stack is empty");
    refused(B("\x80\x02N"), "pt-pickle", "without STOP");
    refused(B("\x80\x02N.N"), "pt-pickle", "1 bytes follow");
    refused(B(""), "pt-pickle", "without STOP");

    /* Too many marks open at once. */
    size_t n = PK_MAX_MARKS + 8;
    unsigned char *p = malloc(n + 2);
    memset(p, '(', n);
    memcpy(p + n, "N.", 2);
    refused(p, n + 2, "pt-pickle", "MARKs are open");
    free(p);

    /* Values that take far more memory than their bytes: 100,000 empty
     * dicts in a tuple (some 80 bytes of values, stack and tuple for each
     * byte). */
    n = 100000;
    p = malloc(n + 3);
    p[0] = '(';
    memset(p + 1, '}', n);
    memcpy(p + 1 + n, "t.", 2);
    refused(p, n + 3, "pt-pickle-size", "more than");
    free(p);
}

static void test_tensors_refused(void **state)
{
    (void)state;
    refused(B("\x80\x02" V2 "(K\x00K\x00)))\x89" ODICT "tR."), "pt-tensor", "not a storage");
    refused(B("\x80\x02" V2 "(" PERSID("FloatStorage", "0", "\x06")
              "J\xff\xff\xff\xff)))\x89" ODICT "tR."), "pt-tensor", "negative");
    refused(B("\x80\x02" V2 "(" PERSID("FloatStorage", "0", "\x06")
              "K\x00K\x02\x85))\x89" ODICT "tR."), "pt-tensor", "1 dimensions but its stride 0");
    refused(B("\x80\x02" V2 "(" PERSID("FloatStorage", "0", "\x06")
              "K\x00" STR("\x01", "x") ")\x89" ODICT "tR."), "pt-tensor", "size is a string");
    refused(B("\x80\x02" V2 "(" PERSID("FloatStorage", "0", "\x06") "K\x00))tR."),
            "pt-pickle", "4 arguments, not 6 or 7");
    refused(B("\x80\x02" "ctorch._utils\n_rebuild_tensor_v3\n(" PERSID("FloatStorage", "0", "\x06")
              "K\x00))\x89" ODICT "ctorch\nFloatStorage\ntR."), "pt-tensor",
            "torch.FloatStorage for a dtype");
    refused(B("\x80\x02" "(" STR("\x07", "storage") "ctorch\nfloat32\n" STR("\x01", "0")
              STR("\x03", "cpu") "K\x01tQ."), "pt-storage", "not a torch storage type");
    refused(B("\x80\x02" "(" STR("\x07", "storagX") "tQ."), "pt-storage", "persistent id");
    refused(B("\x80\x02" "(" STR("\x07", "storage") "ctorch\nFloatStorage\n" STR("\x01", "0")
              STR("\x03", "cpu") "J\xff\xff\xff\xfftQ."), "pt-storage", "non-negative");
    refused(B("\x80\x02" "ctorch._utils\n_rebuild_parameter\n(K\x01\x88" ODICT "tR."),
            "pt-pickle", "not a tensor");
    refused(B("\x80\x02" "ctorch._tensor\n_rebuild_from_type_v2\n(" ODICT "ctorch\nTensor\n)}tR."),
            "pt-pickle", "rebuilding function");

    /* 65 dimensions */
    unsigned char big[4096], *p = big;
    const char head[] = "\x80\x02" V2 "(" PERSID("FloatStorage", "0", "\x06") "K\x00(";
    memcpy(p, head, sizeof head - 1);
    p += sizeof head - 1;
    for (int i = 0; i < 65; i++) {
        memcpy(p, "K\x01", 2);
        p += 2;
    }
    memcpy(p, "t)\x89" ODICT "tR.", sizeof("t)\x89" ODICT "tR.") - 1);
    p += sizeof("t)\x89" ODICT "tR.") - 1;
    refused(big, (size_t)(p - big), "pt-tensor", "65 dimensions");
}

static int teardown(void **state)
{
    (void)state;
    run *r = load(B("N."));
    ar_free(&r->ar);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),         cmocka_unit_test(test_containers_and_memo),
        cmocka_unit_test(test_torch_tensor),    cmocka_unit_test(test_globals_refused),
        cmocka_unit_test(test_opcodes_refused), cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_tensors_refused), cmocka_unit_test(test_training_extras),
        cmocka_unit_test(test_tensor_metadata),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
