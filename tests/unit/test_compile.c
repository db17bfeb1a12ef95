/* test_compile.c: the typed result of every statement and expression: the
 * names, dtypes and shapes of the output, and the op graph's nodes, compiled
 * against a schema (no data anywhere). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/checkpoint.h"
#include "testutil.h"

/* A small model in both conventions: Flax's CNN with Adam state, a PyTorch
 * MLP, and a few odd tensors. */
static const char *schema_json =
    "{\"params/Conv_0/kernel\": {\"dtype\": \"F32\", \"shape\": [3, 3, 1, 32]},"
    " \"params/Conv_0/bias\": {\"dtype\": \"F32\", \"shape\": [32]},"
    " \"params/Dense_0/kernel\": {\"dtype\": \"F32\", \"shape\": [3136, 256]},"
    " \"params/Dense_0/bias\": {\"dtype\": \"F32\", \"shape\": [256]},"
    " \"params/Dense_1/kernel\": {\"dtype\": \"F32\", \"shape\": [256, 10]},"
    " \"params/Dense_1/bias\": {\"dtype\": \"F32\", \"shape\": [10]},"
    " \"opt/mu/Dense_1/kernel\": {\"dtype\": \"F32\", \"shape\": [256, 10]},"
    " \"opt/count\": {\"dtype\": \"I32\", \"shape\": []},"
    " \"fc.weight\": {\"dtype\": \"BF16\", \"shape\": [64, 32]},"
    " \"fc.bias\": {\"dtype\": \"BF16\", \"shape\": [64]},"
    " \"qkv\": {\"dtype\": \"F16\", \"shape\": [8, 12]},"
    " \"layers_2/w\": {\"dtype\": \"F32\", \"shape\": [4, 4]},"
    " \"layers_10/w\": {\"dtype\": \"F32\", \"shape\": [4, 4]},"
    " \"layers_1/w\": {\"dtype\": \"F32\", \"shape\": [4, 4]},"
    " \"attn/q\": {\"dtype\": \"F32\", \"shape\": [4, 2]},"
    " \"attn/k\": {\"dtype\": \"F32\", \"shape\": [4, 3]},"
    " \"attn/v\": {\"dtype\": \"F32\", \"shape\": [4, 1]},"
    " \"stacked\": {\"dtype\": \"F32\", \"shape\": [3, 2, 5]},"
    " \"scales\": {\"dtype\": \"F8_E8M0\", \"shape\": [4]},"
    " \"mask\": {\"dtype\": \"BOOL\", \"shape\": [4]}}";

/* Params with Adam moments (f32 moments for bf16 params), as Optax keeps
 * them, and a step count outside the mirrored trees. */
static const char *adam_json =
    "{\"p/a/kernel\": {\"dtype\": \"BF16\", \"shape\": [4, 6]},"
    " \"p/a/bias\": {\"dtype\": \"BF16\", \"shape\": [6]},"
    " \"p/b/kernel\": {\"dtype\": \"BF16\", \"shape\": [4, 6]},"
    " \"p/qkv\": {\"dtype\": \"BF16\", \"shape\": [2, 9]},"
    " \"p/l_0/w\": {\"dtype\": \"BF16\", \"shape\": [3]},"
    " \"p/l_1/w\": {\"dtype\": \"BF16\", \"shape\": [3]},"
    " \"o/mu/a/kernel\": {\"dtype\": \"F32\", \"shape\": [4, 6]},"
    " \"o/mu/a/bias\": {\"dtype\": \"F32\", \"shape\": [6]},"
    " \"o/mu/b/kernel\": {\"dtype\": \"F32\", \"shape\": [4, 6]},"
    " \"o/mu/qkv\": {\"dtype\": \"F32\", \"shape\": [2, 9]},"
    " \"o/mu/l_0/w\": {\"dtype\": \"F32\", \"shape\": [3]},"
    " \"o/mu/l_1/w\": {\"dtype\": \"F32\", \"shape\": [3]},"
    " \"o/nu/a/kernel\": {\"dtype\": \"F32\", \"shape\": [4, 6]},"
    " \"o/nu/a/bias\": {\"dtype\": \"F32\", \"shape\": [6]},"
    " \"o/nu/b/kernel\": {\"dtype\": \"F32\", \"shape\": [4, 6]},"
    " \"o/nu/qkv\": {\"dtype\": \"F32\", \"shape\": [2, 9]},"
    " \"o/nu/l_0/w\": {\"dtype\": \"F32\", \"shape\": [3]},"
    " \"o/nu/l_1/w\": {\"dtype\": \"F32\", \"shape\": [3]},"
    " \"o/count\": {\"dtype\": \"I32\", \"shape\": []}}";

/* A model whose head is tied to its embedding and whose "fc" carries a
 * LoRA adapter, both recorded by an earlier run. */
static const char *tied_json =
    "{\"__metadata__\": {\"surg.ties\": \"{\\\"model.head.weight\\\": \\\"model.emb.weight\\\"}\","
    " \"surg.lora\": \"[{\\\"r\\\":2,\\\"lora_alpha\\\":4,\\\"style\\\":\\\"peft\\\","
    "\\\"target\\\":\\\"fc.weight\\\",\\\"lora_a\\\":\\\"fc.lora_A.weight\\\","
    "\\\"lora_b\\\":\\\"fc.lora_B.weight\\\"}]\"},"
    " \"model.emb.weight\": {\"dtype\": \"F32\", \"shape\": [4, 2]},"
    " \"model.norm\": {\"dtype\": \"F32\", \"shape\": [2]},"
    " \"other\": {\"dtype\": \"F32\", \"shape\": [4, 2]},"
    " \"attn.q.weight\": {\"dtype\": \"F32\", \"shape\": [4, 4]},"
    " \"fc.weight\": {\"dtype\": \"F32\", \"shape\": [4, 3]},"
    " \"fc.lora_A.weight\": {\"dtype\": \"F32\", \"shape\": [2, 3]},"
    " \"fc.lora_B.weight\": {\"dtype\": \"F32\", \"shape\": [4, 2]}}";

/* t5x's Adafactor state beside each parameter (factored from 4 elements
 * on: min 4), momentum unused ([1] placeholders), and the step. */
#define SLOTS(p, v, row, col)                                                \
    " \"s/" p "/m\": {\"dtype\": \"F32\", \"shape\": [1]},"                      \
    " \"s/" p "/v\": {\"dtype\": \"F32\", \"shape\": " v "},"                    \
    " \"s/" p "/v_row\": {\"dtype\": \"F32\", \"shape\": " row "},"              \
    " \"s/" p "/v_col\": {\"dtype\": \"F32\", \"shape\": " col "},"
static const char *t5x_json =
    "{\"t/d/kernel\": {\"dtype\": \"F32\", \"shape\": [6, 4]},"
    " \"t/sq\": {\"dtype\": \"F32\", \"shape\": [4, 4]},"
    " \"t/b\": {\"dtype\": \"F32\", \"shape\": [6]},"
    " \"t/s\": {\"dtype\": \"F32\", \"shape\": [2, 3]},"
    " \"t/l\": {\"dtype\": \"F32\", \"shape\": [2, 4, 4]},"
    " \"t/cube\": {\"dtype\": \"F32\", \"shape\": [4, 4, 4]},"
    SLOTS("d/kernel", "[1]", "[4]", "[6]") SLOTS("sq", "[1]", "[4]", "[4]")
    SLOTS("b", "[6]", "[1]", "[1]") SLOTS("s", "[2, 3]", "[1]", "[1]")
    SLOTS("l", "[1]", "[2, 4]", "[2, 4]") SLOTS("cube", "[1]", "[4, 4]", "[4, 4]")
    " \"s/step\": {\"dtype\": \"I32\", \"shape\": []}}";

static surg_ckpt *schema, *adam, *tied, *t5x;

typedef struct result {
    surg_program *p;
    char *dump;
    recorder r;
} result;

static surg_ckpt *current;

static void compile_text(result *out, const char *text)
{
    rec_init(&out->r);
    surg_recipe *rec;
    out->p = NULL;
    out->dump = NULL;
    if (surg_recipe_parse("t.surg", text, strlen(text), &out->r.sink, &rec) != SURG_OK)
        fail_msg("parse: %s", out->r.messages);
    surg_compile(rec, current ? current : schema, &out->r.sink, &out->p);
    surg_recipe_free(rec);
    if (out->p)
        out->dump = surg_program_dump(out->p);
}

static void done(result *r)
{
    free(r->dump);
    surg_program_free(r->p);
}

/* The recipe compiles; return its result. */
static result ok(const char *text)
{
    result r;
    compile_text(&r, text);
    if (!r.p)
        fail_msg("%s: %s", text, r.r.messages);
    return r;
}

/* The recipe fails with `code` and a message containing `msg`. */
static void bad(const char *text, const char *code, const char *msg)
{
    result r;
    compile_text(&r, text);
    if (r.p || !rec_has_code(&r.r, code) || !rec_has_text(&r.r, msg))
        fail_msg("%s: wanted %s '%s', got [%s] %s", text, code, msg, r.r.codes, r.r.messages);
    done(&r);
}

static const char *type_of(const result *r, const char *name)
{
    static char text[128];
    for (size_t i = 0; i < surg_program_output_count(r->p); i++) {
        const surg_tensor_info *t = surg_program_output(r->p, i);
        if (strcmp(t->name, name) != 0)
            continue;
        int n = snprintf(text, sizeof text, "%s[", surg_dtype_recipe_name(t->dtype));
        for (uint32_t d = 0; d < t->rank; d++)
            n += snprintf(text + n, sizeof text - (size_t)n, "%s%llu", d ? ", " : "",
                          (unsigned long long)t->shape[d]);
        snprintf(text + n, sizeof text - (size_t)n, "]");
        return text;
    }
    return "absent";
}

#define TYPE(r, name, want) assert_string_equal(type_of(&(r), name), want)
#define NO(r, text)                                                                          \
    do {                                                                                     \
        if (strstr((r).dump, text))                                                          \
            fail_msg("'%s' in:\n%s", text, (r).dump);                                        \
    } while (0)
#define HAS(r, text)                                                                         \
    do {                                                                                     \
        if (!strstr((r).dump, text))                                                         \
            fail_msg("no '%s' in:\n%s", text, (r).dump);                                     \
    } while (0)

static void test_names(void **state)
{
    (void)state;
    result r = ok("rename \"params/Dense_{0,1}/**\" -> \"params/dense$1/$2\"\n");
    TYPE(r, "params/dense1/kernel", "f32[256, 10]");
    TYPE(r, "params/Dense_1/kernel", "absent");
    assert_int_equal(surg_program_output_count(r.p), 20);
    done(&r);
    r = ok("drop \"opt/**\"\ndrop optional \"nothing/*\"\n");
    TYPE(r, "opt/count", "absent");
    assert_int_equal(surg_program_output_count(r.p), 18);
    done(&r);
    r = ok("keep \"params/**\", \"fc.*\"\n");
    assert_int_equal(surg_program_output_count(r.p), 8);
    done(&r);
    r = ok("rename \"attn/q\" -> \"attn/x\"\nrename \"attn/k\" -> \"attn/q\"\n");
    TYPE(r, "attn/q", "f32[4, 3]");
    done(&r);
    r = ok("tie \"opt/mu/Dense_1/kernel\" = \"params/Dense_1/kernel\"\n"
           "rename \"params/Dense_1/kernel\" -> \"params/head\"\n");
    TYPE(r, "opt/mu/Dense_1/kernel", "absent");
    HAS(r, "\"opt/mu/Dense_1/kernel\" -> \"params/head\"");
    done(&r);
}

static void test_name_errors(void **state)
{
    (void)state;
    bad("rename \"attn/*\" -> \"attn/x\"\n", "name-collision", "maps both \"attn/k\" and");
    bad("rename \"attn/q\" -> \"attn/k\"\n", "name-exists", "makes \"attn/k\", which already exists");
    bad("drop \"params/Dense_2/*\"\n", "match-none", "matches no tensor");
    bad("rename \"attn/q\" -> \"$2\"\n", "template-capture", "uses $2, but the pattern has 0");
    bad("tie \"attn/q\" = \"attn/k\"\n", "tie-type", "f32[4, 2]");
    bad("tie \"attn/q\" = \"attn/z\"\n", "tie-target", "no tensor \"attn/z\"");
    bad("fill \"attn/q\" : f32[2] = 0\n", "name-exists", "already exists");
    bad("fill \"attn/*\" : f32[2] = 0\n", "fill-name", "plain name");
    bad("fill \"n\" : f32[*, 2] = 0\n", "type-star", "every dimension");
}

static void test_fill(void **state)
{
    (void)state;
    result r = ok("seed 3\nfill \"params/Dense_0/kernel\" = he_uniform\n"
                  "fill \"fc.weight\" = kaiming_uniform(a=2.2360679775)\n"
                  "fill \"params/Conv_0/kernel\" = lecun_normal\n"
                  "fill \"attn/q\" = 0.5\nfill \"mask\" = 1\nfill \"opt/count\" = -7\n"
                  "fill \"n/new\" : bf16[2, 3] = normal(std=0.02)\n"
                  "fill \"n/u\" : f64[] = uniform(-1, 1)\n"
                  "fill \"n/t\" : f32[5] = truncated_normal(0.1)\n");
    HAS(r, "init he_uniform() seed=3 key=\"params/Dense_0/kernel\" fan_in=3136 fan_out=256 : f32[3136, 256]");
    HAS(r, "init kaiming_uniform(2.2360679775) seed=3 key=\"fc.weight\" fan_in=32 fan_out=64 : bf16[64, 32]");
    HAS(r, "fan_in=9 fan_out=288 : f32[3, 3, 1, 32]"); /* receptive field 3x3 */
    HAS(r, "init value 0.5 : f32[4, 2]");
    HAS(r, "init value 1 : bool[4]");
    HAS(r, "init value -7 : i32[]");
    HAS(r, "init normal(0, 0.02) seed=3 key=\"n/new\" : bf16[2, 3]");
    HAS(r, "init uniform(-1, 1) seed=3 key=\"n/u\" : f64[]");
    HAS(r, "init truncated_normal(0.1)");
    TYPE(r, "n/new", "bf16[2, 3]");
    done(&r);
    r = ok("layout torch\nfill \"attn/q\" = xavier_normal\n");
    HAS(r, "fan_in=2 fan_out=4 : f32[4, 2]");
    done(&r);
}

static void test_fill_errors(void **state)
{
    (void)state;
    bad("fill \"attn/q\" = he_normal\n", "init-layout", "layout flax");
    bad("fill \"params/Conv_0/bias\" = he_normal\n", "init-layout", "neither");
    bad("layout flax\nfill \"params/Conv_0/bias\" = he_normal\n", "init-rank", "at least 2");
    bad("fill \"attn/q\" = normal(0)\n", "init-args", "needs std");
    bad("fill \"attn/q\" = uniform(1, 0)\n", "init-args", "lo < hi");
    bad("fill \"attn/q\" = normal(std=-1)\n", "init-args", "not be negative");
    bad("fill \"attn/q\" = normal(sigma=1)\n", "init-args", "no parameter 'sigma'");
    bad("fill \"attn/q\" = gaussian\n", "init", "unknown initializer");
    bad("fill \"opt/count\" = normal(0, 1)\n", "init-dtype", "floating-point");
    bad("fill \"opt/count\" = 0.5\n", "init-value", "not a value of i32");
    bad("fill \"mask\" = 2\n", "init-value", "not a value of bool");
    bad("fill \"scales\" = 0\n", "dtype-compute", "cannot compute");
}

static void test_map(void **state)
{
    (void)state;
    result r = ok("map \"params/Dense_1/kernel\" = x / norm(x)\n"
                  "map \"fc.weight\" = cast(x, f32) * 2 + 1\n"
                  "map \"qkv\" = transpose(x)\n"
                  "map \"stacked\" = transpose(x, 1, 0, 2)\n"
                  "map \"attn/q\" = reshape(x, -1)\n"
                  "map \"attn/k\" = clip(x, -1, 1) - mean(x) / std(x)\n"
                  "map \"layers_1/w\" = abs(sqrt(exp(log(tanh(sign(-x))))))\n"
                  "map \"layers_2/w\" = full_like(x, 0.5) + zeros_like(x) + min(x) + max(x) + sum(x)\n"
                  "map \"fc.bias\" = x + cast(x, f16)\n"
                  "map \"layers_10/w\" = x + 0.5 * (tensor(\"layers_2/w\") - x)\n");
    HAS(r, "norm %");
    TYPE(r, "params/Dense_1/kernel", "f32[256, 10]");
    TYPE(r, "fc.weight", "f32[64, 32]");
    TYPE(r, "qkv", "f16[12, 8]");
    HAS(r, "transpose perm=1,0 %");
    TYPE(r, "stacked", "f32[2, 3, 5]");
    TYPE(r, "attn/q", "f32[8]");
    TYPE(r, "attn/k", "f32[4, 3]");
    TYPE(r, "layers_2/w", "f32[4, 4]");
    TYPE(r, "fc.bias", "f32[64]"); /* bf16 and f16 meet in f32 */
    done(&r);
    r = ok("map \"opt/count\" = x * 2\n");
    TYPE(r, "opt/count", "i32[]");
    done(&r);
    r = ok("map \"mask\" = cast(x, f32)\n");
    TYPE(r, "mask", "f32[4]");
    done(&r);
    /* matmul: 2-D, batched and broadcast, 1-D as NumPy; dtypes promote */
    r = ok("map \"layers_1/w\" = tensor(\"opt/mu/Dense_1/kernel\") @ reshape(tensor(\"stacked\"), 3, 10, 1)\n"
           "map \"layers_2/w\" = reshape(x, 2, 1, 4, 2) @ transpose(tensor(\"attn/q\")) @ tensor(\"attn/k\")\n"
           "map \"attn/q\" = tensor(\"attn/k\") @ transpose(tensor(\"attn/k\"))\n"
           "map \"stacked\" = matmul(x, transpose(x, 0, 2, 1))\n"
           "map \"attn/v\" = reshape(x, 4) @ tensor(\"layers_10/w\")\n"
           "map \"fc.bias\" = tensor(\"qkv\") @ reshape(tensor(\"qkv\"), 12, 8)\n");
    TYPE(r, "attn/q", "f32[4, 4]");
    TYPE(r, "stacked", "f32[3, 2, 2]");
    TYPE(r, "attn/v", "f32[4]");
    TYPE(r, "layers_1/w", "f32[3, 256, 1]");
    TYPE(r, "layers_2/w", "f32[2, 1, 4, 3]");
    TYPE(r, "fc.bias", "f16[8, 8]");
    done(&r);
    /* broadcasting and reductions over an axis */
    r = ok("map \"attn/q\" = tensor(\"attn/v\") + tensor(\"params/Dense_1/bias\")\n"
           "map \"attn/k\" = x / norm(x, axis=1, keepdims=true)\n"
           "map \"stacked\" = sum(x, axis=-1)\n"
           "map \"layers_1/w\" = mean(x, 0, true)\n"
           "map \"layers_2/w\" = max(x, keepdims=true)\n");
    TYPE(r, "attn/q", "f32[4, 10]");
    TYPE(r, "attn/k", "f32[4, 3]");
    TYPE(r, "stacked", "f32[3, 2]");
    TYPE(r, "layers_1/w", "f32[1, 4]");
    TYPE(r, "layers_2/w", "f32[1, 1]");
    done(&r);
}

static void test_map_errors(void **state)
{
    (void)state;
    bad("map \"attn/q\" = x + tensor(\"attn/k\")\n", "shape", "do not broadcast");
    bad("map \"attn/q\" = x + tensor(\"attn/zz\")\n", "tensor", "does not exist");
    bad("map \"attn/q\" = reshape(x, 3, -1)\n", "reshape", "cannot reshape f32[4, 2]");
    bad("map \"attn/q\" = reshape(x, -1, -1)\n", "reshape", "-1 once");
    bad("map \"stacked\" = transpose(x, 0, 0, 1)\n", "transpose", "permutation");
    bad("map \"stacked\" = transpose(x, 1, 0)\n", "transpose", "needs 3 axes");
    bad("map \"attn/q\" = x + transpose(x)\n", "shape", "axis 1 of the first is 2");
    bad("map \"attn/q\" = x @ x\n", "matmul", "axis 1 of the first is 2 but axis 0");
    bad("map \"attn/q\" = x / norm(x, axis=-3)\n", "axis", "axis -3 is out of range");
    bad("map \"attn/q\" = sum(x, 0, 1)\n", "call-args", "keepdims is true or false");
    bad("map \"attn/q\" = sum(x, axis=0, axis=1)\n", "call-args", "axis is given twice");
    bad("map \"attn/q\" = sum(axis=0)\n", "call-args", "sum takes a tensor");
    bad("map \"mask\" = x @ x\n", "dtype-compute", "bool");
    bad("map \"attn/q\" = cast(x, f33)\n", "cast-dtype", "a dtype");
    bad("map \"attn/q\" = cast(x, f8e8m0)\n", "dtype-compute", "cannot cast to");
    bad("map \"scales\" = x * 2\n", "dtype-compute", "cannot compute");
    bad("map \"mask\" = x * 2\n", "dtype-compute", "bool");
    bad("map \"attn/q\" = y\n", "unknown-name", "unknown name 'y'");
    bad("map \"attn/q\" = nrm(x)\n", "unknown-function", "unknown function 'nrm'");
    bad("map \"attn/q\" = he_uniform(x)\n", "unknown-function", "he_uniform");
    bad("map \"attn/q\" = 2\n", "map-constant", "plain number");
    bad("map \"attn/q\" = norm(x, 2)\n", "axis", "axis 2 is out of range");
    bad("map \"attn/q\" = norm(x, 0, true, 1)\n", "call-args", "at most 3 arguments");
    bad("map \"attn/q\" = abs(e=x)\n", "call-args", "no named arguments");
    bad("map \"attn/q\" = full_like(x, x)\n", "full-like", "scalar");
    bad("map \"attn/q\" = \"x\"\n", "string", "tensor(");
}

static void test_lora(void **state)
{
    (void)state;
    result r = ok("init-lora \"params/Dense_0/kernel\" rank 3\n"
                  "init-lora \"fc.weight\" rank 4 alpha 8\n"
                  "init-lora \"attn/q\" rank 2 style peft as \"A/$0\", \"B/$0\"\n");
    TYPE(r, "params/Dense_0/lora/lora_a", "f32[3136, 3]");
    TYPE(r, "params/Dense_0/lora/lora_b", "f32[3, 256]");
    TYPE(r, "base_model.model.fc.lora_A.weight", "bf16[4, 32]");
    TYPE(r, "base_model.model.fc.lora_B.weight", "bf16[64, 4]");
    TYPE(r, "A/attn/q", "f32[2, 2]"); /* peft: [r, in] with in = 2 */
    TYPE(r, "B/attn/q", "f32[4, 2]");
    TYPE(r, "params/Dense_0/kernel", "f32[3136, 256]");
    HAS(r, "init he_uniform() seed=0 key=\"params/Dense_0/lora/lora_a\" fan_in=3136 fan_out=3");
    HAS(r, "init kaiming_uniform(2.2360679775) seed=0 key=\"base_model.model.fc.lora_A.weight\" "
           "fan_in=32 fan_out=4");
    HAS(r, "init value 0 : bf16[64, 4]");
    HAS(r, "\"lora_alpha\":8,\"style\":\"peft\",\"target\":\"fc.weight\"");
    done(&r);
    bad("init-lora \"params/Dense_0/bias\" rank 3\n", "lora-style", "neither");
    bad("init-lora \"params/Conv_0/kernel\" rank 3\n", "lora-rank2", "2-D");
    bad("init-lora \"fc.weight\"\n", "lora-rank", "needs a rank");
    bad("init-lora \"fc.weight\" rank 0\n", "integer", "from 1");
    bad("init-lora \"fc.weight\" rank 2 rank 3\n", "lora-clause", "twice");
    bad("init-lora \"fc.weight\" rank 2 rslora rslora\n", "lora-clause", "twice");
    bad("init-lora \"fc.weight\" rank 2 dropout 1.5\n", "number", "from 0 to 1");
    bad("init-lora \"params/Dense_0/kernel\" rank 2 fan_in_fan_out\n", "lora-clause",
        "an option of style peft");
    /* PEFT's options: recorded; fan_in_fan_out reads the weight as [in, out] */
    r = ok("init-lora \"fc.weight\" rank 4 alpha 8 rslora dropout 0.05 fan_in_fan_out\n");
    TYPE(r, "base_model.model.fc.lora_A.weight", "bf16[4, 64]");
    TYPE(r, "base_model.model.fc.lora_B.weight", "bf16[32, 4]");
    HAS(r, "\"lora_b\":\"base_model.model.fc.lora_B.weight\",\"use_rslora\":true,"
           "\"fan_in_fan_out\":true,\"lora_dropout\":0.05}");
    HAS(r, "key=\"base_model.model.fc.lora_A.weight\" fan_in=64 fan_out=4");
    done(&r);
    bad("init-lora \"params/Dense_0/kernel\" rank 3\ninit-lora \"params/Dense_0/kernel\" rank 3\n",
        "name-exists", "already exists");
}

static void test_structure(void **state)
{
    (void)state;
    result r = ok("split \"qkv\" axis 1 -> \"q\", \"k\", \"v\"\n"
                  "split \"stacked\" axis 2 sizes 1, 4 -> \"s1\", \"s4\"\n");
    TYPE(r, "q", "f16[8, 4]");
    TYPE(r, "s4", "f32[3, 2, 4]");
    TYPE(r, "qkv", "absent");
    HAS(r, "slice axis=2 start=1 len=4");
    done(&r);
    /* Alternatives order: q, k, v as written, not byte order (k, q, v). */
    r = ok("keep \"attn/*\"\nconcat \"attn/{q,k,v}\" axis 1 -> \"attn/qkv\"\n");
    TYPE(r, "attn/qkv", "f32[4, 6]");
    HAS(r, "%1 = input \"attn/k\" : f32[4, 3]\n%2 = input \"attn/q\" : f32[4, 2]\n"
           "%3 = input \"attn/v\" : f32[4, 1]\n%4 = concat axis=1 %2, %1, %3 : f32[4, 6]");
    done(&r);
    /* Natural order: 1, 2, 10 (byte order is 1, 10, 2). */
    r = ok("keep \"layers_*/w\"\nstack \"layers_*/w\" axis 0 -> \"layers/w\"\n");
    TYPE(r, "layers/w", "f32[3, 4, 4]");
    HAS(r, "%1 = input \"layers_1/w\" : f32[4, 4]\n%2 = input \"layers_10/w\" : f32[4, 4]\n"
           "%3 = input \"layers_2/w\" : f32[4, 4]\n%4 = stack axis=0 %1, %3, %2 : f32[3, 4, 4]");
    done(&r);
    r = ok("stack \"layers_*/w\" axis 2 -> \"w\"\n");
    TYPE(r, "w", "f32[4, 4, 3]");
    done(&r);
    /* Grouped by the template: one output per layer. */
    r = ok("rename \"attn/{q,k}\" -> \"g/$1/a\"\nrename \"attn/v\" -> \"g/q/b\"\n"
           "concat \"g/*/{a,b}\" axis 1 -> \"g/$1\"\n");
    TYPE(r, "g/q", "f32[4, 3]");
    TYPE(r, "g/k", "f32[4, 3]");
    done(&r);
    r = ok("unstack \"stacked\" axis 0 -> \"part_$i\"\n");
    TYPE(r, "part_0", "f32[2, 5]");
    TYPE(r, "part_2", "f32[2, 5]");
    HAS(r, "slice axis=0 start=2 len=1 squeeze");
    done(&r);
}

static void test_structure_errors(void **state)
{
    (void)state;
    bad("split \"qkv\" axis 1 -> \"a\", \"b\", \"c\", \"d\", \"e\"\n", "split-parts", "5 equal parts");
    bad("split \"qkv\" axis 1 sizes 5, 5 -> \"a\", \"b\"\n", "split-sizes", "add up to 10");
    bad("split \"qkv\" axis 1 sizes 5 -> \"a\", \"b\"\n", "split-sizes", "one size per part");
    bad("split \"qkv\" axis 2 -> \"a\", \"b\"\n", "axis", "out of range");
    bad("split \"qkv\" axis 0 -> \"a\", \"a\"\n", "name-collision", "maps both");
    bad("concat \"attn/*\" axis 0 -> \"attn/all\"\n", "group-members", "every other axis");
    bad("stack \"attn/*\" axis 0 -> \"attn/all\"\n", "group-members", "every axis");
    bad("stack \"layers_*/w\" axis 3 -> \"w\"\n", "axis", "out of range");
    bad("unstack \"stacked\" axis 0 -> \"part\"\n", "unstack-index", "$i");
}

static void test_expect(void **state)
{
    (void)state;
    result r = ok("expect \"params/Dense_*/kernel\" : f32[*, *]\nexpect \"opt/count\" : i32[]\n"
                  "expect \"qkv\" : f16[8, 12]\n");
    done(&r);
    bad("expect \"params/Dense_*/kernel\" : f32[*, 10]\n", "expect",
        "\"params/Dense_0/kernel\" is f32[3136, 256], expected f32[*, 10]");
    bad("expect \"qkv\" : f32[8, 12]\n", "expect", "is f16[8, 12]");
    bad("expect \"qkv\" : f16[8]\n", "expect", "expected f16[8]");
}

/* Errors are all reported, each statement failing alone. */
static void test_all_errors(void **state)
{
    (void)state;
    result r;
    compile_text(&r, "drop \"nope\"\nmap \"attn/q\" = y\nrename \"attn/q\" -> \"attn/k\"\n"
                     "seed 1.5\n");
    assert_null(r.p);
    assert_int_equal(r.r.sink.errors, 4);
    done(&r);
}

/* --to: every missing, unexpected and mismatched tensor, in name order. */
static void test_target(void **state)
{
    (void)state;
    const char *path = tmp_path("target.json");
    const char *target = "{\"attn/q\": {\"dtype\": \"F32\", \"shape\": [4, 2]},"
                         " \"attn/k\": {\"dtype\": \"F16\", \"shape\": [4, 3]},"
                         " \"attn/new\": {\"dtype\": \"F32\", \"shape\": [1]},"
                         " \"tied\": {\"dtype\": \"F32\", \"shape\": [4, 4]},"
                         " \"layers_2/w\": {\"dtype\": \"F32\", \"shape\": [4, 4]}}";
    write_file(path, target, strlen(target));
    surg_ckpt *t;
    recorder rr;
    rec_init(&rr);
    assert_int_equal(surg_ckpt_open(path, &rr.sink, &t), SURG_OK);
    result r = ok("keep \"attn/*\", \"mask\", \"layers_{1,2}/w\"\n"
                  "rename \"layers_1/w\" -> \"tied\"\ntie \"tied\" = \"layers_2/w\"\n");
    rec_init(&rr);
    assert_int_equal(surg_program_check_target(r.p, t, &rr.sink), SURG_EINVALID);
    assert_int_equal(rr.sink.errors, 4);
    const char *want = "the result's \"attn/k\" is f32[4, 3], but the target has f16[4, 3]\n"
                       "the result lacks \"attn/new\" (f32[1] in the target)\n"
                       "the result has \"attn/v\" (f32[4, 1]), which the target does not\n"
                       "the result has \"mask\" (bool[4]), which the target does not\n";
    assert_string_equal(rr.messages, want);
    done(&r);
    surg_ckpt_close(t);
}

/* Compiling reads headers only: nothing of a real checkpoint's data region
 * is mapped or read. */
static void test_reads_no_data(void **state)
{
    (void)state;
    recorder rr;
    rec_init(&rr);
    surg_ckpt *ck;
    assert_int_equal(surg_ckpt_open(SURG_FIXTURES "/safetensors-reference/model.numpy.safetensors",
                                    &rr.sink, &ck),
                     SURG_OK);
    const char *text = "map \"float32_*\" = x * 2\nrename \"int8_*\" -> \"i8/$1\"\n"
                       "concat \"float64_{3,35}\" axis 0 -> \"f\"\n";
    surg_recipe *rec;
    assert_int_equal(surg_recipe_parse("r.surg", text, strlen(text), &rr.sink, &rec), SURG_OK);
    surg_program *p;
    surg_status st = surg_compile(rec, ck, &rr.sink, &p);
    assert_int_equal(st, SURG_EINVALID); /* ranks differ: the check itself needs no data */
    assert_null(ck->files[0].map);
    surg_recipe_free(rec);
    text = "map \"float32_*\" = x * 2\nrename \"int8_*\" -> \"i8/$1\"\n";
    assert_int_equal(surg_recipe_parse("r.surg", text, strlen(text), &rr.sink, &rec), SURG_OK);
    assert_int_equal(surg_compile(rec, ck, &rr.sink, &p), SURG_OK);
    assert_null(ck->files[0].map);
    /* What was read is the length field and the header, to the byte. */
    assert_int_equal(ck->files[0].bytes_read, ck->files[0].data_start);
    assert_int_equal(ck->files[0].data_start, 8 + 1840);
    surg_program_free(p);
    surg_recipe_free(rec);
    surg_ckpt_close(ck);
}

#define M "mirror \"p/\" -> \"o/mu/\", \"o/nu/\"\n"

/* Every statement keeps the slots in step (SPEC §3.3, mirror). */
static void test_mirror(void **state)
{
    (void)state;
    current = adam;
    result r = ok(M "rename \"p/{a,b}/**\" -> \"p/layer_$1/$2\"\n");
    TYPE(r, "o/mu/layer_a/kernel", "f32[4, 6]");
    TYPE(r, "o/nu/layer_b/kernel", "f32[4, 6]");
    TYPE(r, "o/mu/a/kernel", "absent");
    TYPE(r, "o/count", "i32[]");
    done(&r);
    r = ok(M "drop \"p/b/*\"\n");
    TYPE(r, "o/mu/b/kernel", "absent");
    TYPE(r, "o/nu/a/kernel", "f32[4, 6]");
    done(&r);
    r = ok(M "keep \"p/a/**\", \"o/count\"\n");
    assert_int_equal(surg_program_output_count(r.p), 7); /* 2 params, 4 slots, count */
    done(&r);
    r = ok(M "tie \"p/b/kernel\" = \"p/a/kernel\"\n");
    TYPE(r, "o/mu/b/kernel", "absent");
    done(&r);
    /* New values, new parameters: zero slots, of the slots' dtype. */
    r = ok(M "fill \"p/a/bias\" = 0.1\nfill \"p/c\" : bf16[5] = 1\n"
             "init-lora \"p/a/kernel\" rank 2\n");
    HAS(r, "init value 0 : f32[6]");
    TYPE(r, "o/mu/c", "f32[5]");
    TYPE(r, "o/nu/a/lora/lora_a", "f32[4, 2]");
    TYPE(r, "o/mu/a/lora/lora_b", "f32[2, 6]");
    done(&r);
    /* A value map leaves the moments; a layout map moves them too. */
    r = ok(M "map \"p/a/kernel\" = x * 2\n");
    HAS(r, "\"o/mu/a/kernel\" = %3\n"); /* still the input (%3 in byte order) */
    done(&r);
    r = ok(M "map \"p/{a,b}/kernel\" = transpose(x * 2)\n"
             "map \"p/qkv\" = reshape(cast(x, f32), 3, 6)\n");
    TYPE(r, "o/mu/a/kernel", "f32[6, 4]");
    TYPE(r, "o/nu/b/kernel", "f32[6, 4]");
    TYPE(r, "o/mu/qkv", "f32[3, 6]");
    TYPE(r, "p/qkv", "f32[3, 6]");
    done(&r);
    r = ok(M "split \"p/qkv\" axis 1 -> \"p/q\", \"p/k\", \"p/v\"\n");
    TYPE(r, "o/mu/k", "f32[2, 3]");
    TYPE(r, "o/nu/qkv", "absent");
    done(&r);
    r = ok(M "stack \"p/l_*/w\" axis 0 -> \"p/l/w\"\nunstack \"p/l/w\" axis 1 -> \"p/l/w_$i\"\n");
    TYPE(r, "o/nu/l/w_2", "f32[2]");
    TYPE(r, "o/mu/l_0/w", "absent");
    done(&r);
    r = ok(M "concat \"p/{a,b}/kernel\" axis 0 -> \"p/ab\"\n");
    TYPE(r, "o/mu/ab", "f32[8, 6]");
    done(&r);
    current = NULL;
}

static void test_mirror_errors(void **state)
{
    (void)state;
    current = adam;
    bad(M "rename \"p/a/bias\" -> \"bias\"\n", "mirror-move", "orphaning");
    bad(M "map \"p/a/kernel\" = transpose(x) * 2\n", "mirror-map", "wraps the whole");
    bad(M "map \"p/a/kernel\" = norm(x)\n", "mirror-map", "without transpose");
    bad(M "concat \"{p/a/kernel,o/count}\" axis 0 -> \"p/x\"\n", "group-members", "");
    bad(M "drop \"o/mu/a/bias\"\n", "mirror-missing", "has no optimizer slot \"o/mu/a/bias\"");
    bad("mirror \"p/\" -> \"o/mu/\", \"o/\"\n", "mirror-prefix", "overlap");
    bad("mirror \"z/\" -> \"o/mu/\"\n", "mirror-empty", "no tensor");
    /* A declaration that does not hold lists every mismatch. */
    result r;
    compile_text(&r, "drop \"o/mu/qkv\"\nfill \"o/nu/extra\" : f32[1] = 0\n"
                     "map \"o/nu/a/bias\" = reshape(x, 2, 3)\n" M);
    assert_null(r.p);
    assert_int_equal(r.r.sink.errors, 3);
    assert_true(rec_has_text(&r.r, "\"p/qkv\" has no optimizer slot \"o/mu/qkv\""));
    assert_true(rec_has_text(&r.r, "slot \"o/nu/a/bias\" is f32[2, 3], but its parameter"));
    assert_true(rec_has_text(&r.r, "slot \"o/nu/extra\" has no parameter \"p/extra\""));
    done(&r);
    current = NULL;
}

#define T "mirror \"t/\" -> \"s/$1/m\" factored \"s/$1/v\", \"s/$1/v_row\", \"s/$1/v_col\" min 4\n"

/* Slots beside each parameter, and Adafactor's factored second moments. */
static void test_mirror_factored(void **state)
{
    (void)state;
    current = t5x;
    result r = ok(T "rename \"t/d/**\" -> \"t/e/$1\"\ndrop \"t/b\"\n");
    TYPE(r, "s/e/kernel/v_col", "f32[6]");
    TYPE(r, "s/e/kernel/m", "f32[1]");
    TYPE(r, "s/d/kernel/v_row", "absent");
    TYPE(r, "s/b/v", "absent");
    TYPE(r, "s/step", "i32[]");
    done(&r);
    /* New parameters: factored over their two longest axes, or not. */
    r = ok(T "fill \"t/n\" : f32[8, 5] = 1\nfill \"t/o\" : f32[3, 9] = 1\n"
             "fill \"t/c\" : f32[5, 4, 4] = 1\ninit-lora \"t/d/kernel\" rank 4 style flax\n");
    TYPE(r, "s/n/v_row", "f32[5]");
    TYPE(r, "s/n/v_col", "f32[8]");
    TYPE(r, "s/n/v", "f32[1]");
    TYPE(r, "s/n/m", "f32[1]");
    TYPE(r, "s/o/v", "f32[3, 9]"); /* 3 < 4: not factored */
    TYPE(r, "s/o/v_row", "f32[1]");
    TYPE(r, "s/c/v_row", "f32[4, 4]"); /* axes 2 and 0: equal lengths, the later first */
    TYPE(r, "s/c/v_col", "f32[5, 4]");
    TYPE(r, "s/d/lora/lora_a/v_row", "f32[4]"); /* [6, 4], rank 4: factored too */
    TYPE(r, "s/d/lora/lora_b/v_col", "f32[4]");
    done(&r);
    /* A transpose: each factor goes with the axis it averages over. */
    r = ok(T "map \"t/{d/kernel,sq,s,l}\" = transpose(x)\n");
    TYPE(r, "s/d/kernel/v_row", "f32[4]"); /* still over the longer axis */
    TYPE(r, "s/d/kernel/v_col", "f32[6]");
    TYPE(r, "s/s/v", "f32[3, 2]");
    TYPE(r, "s/s/v_row", "f32[1]");
    TYPE(r, "s/l/v_row", "f32[4, 2]");
    TYPE(r, "s/l/v_col", "f32[4, 2]");
    HAS(r, "\"s/sq/v_row\" = %23\n"); /* the square's: swapped (v_col is %23) */
    HAS(r, "\"s/sq/v_col\" = %24\n");
    done(&r);
    r = ok(T "map \"t/l\" = transpose(x, 2, 0, 1)\n"); /* [4, 2, 4]: axes 0 and 2 */
    TYPE(r, "s/l/v_row", "f32[4, 2]");
    TYPE(r, "s/l/v_col", "f32[2, 4]");
    done(&r);
    /* Unfactored parameters split and join; placeholders stay [1]. */
    r = ok(T "split \"t/s\" axis 1 -> \"t/s1\", \"t/s2\", \"t/s3\"\n"
             "concat \"t/s{1,2}\" axis 1 -> \"t/s12\"\n");
    TYPE(r, "s/s3/v", "f32[2, 1]");
    TYPE(r, "s/s3/v_row", "f32[1]");
    TYPE(r, "s/s12/v", "f32[2, 2]");
    TYPE(r, "s/s12/v_col", "f32[1]");
    TYPE(r, "s/s12/m", "f32[1]");
    done(&r);
    current = NULL;
}

static void test_mirror_factored_errors(void **state)
{
    (void)state;
    current = t5x;
    bad(T "map \"t/d/kernel\" = reshape(x, 4, 6)\n", "mirror-factored", "not a reshape");
    bad(T "split \"t/d/kernel\" axis 0 -> \"t/p\", \"t/q\"\n", "mirror-factored",
        "cannot follow split");
    bad(T "stack \"t/{d/kernel,d/kernel}\" axis 0 -> \"t/x\"\n", "mirror-factored", "");
    bad(T "map \"t/cube\" = transpose(x, 2, 0, 1)\n", "mirror-factored",
        "which were axes 0 and 1, but its second moments were averaged over axes 1 and 2");
    bad("mirror \"t/\" -> \"s/$1/m\" factored \"s/$1/v\", \"s/$1/v_row\"\n", "mirror-clause",
        "three slots");
    bad("mirror \"t/\" -> \"s/$1/m\" min 4\n", "mirror-clause", "needs 'factored'");
    bad("mirror \"t/\" -> \"s/$2/m\"\n", "mirror-slot", "holds $1 once");
    bad("mirror \"t/\" -> \"s/$1/v\", \"s/$1/v\"\n", "mirror-prefix", "overlap");
    bad("mirror \"t/\" -> \"s/$1/m\", \"s/x/$1/m\"\n", "mirror-prefix", "overlap");
    /* Without min 4 nothing this small is factored: every factored slot is
     * a mismatch, each listed. */
    result r;
    compile_text(&r, "mirror \"t/\" -> \"s/$1/m\" factored \"s/$1/v\", \"s/$1/v_row\", "
                     "\"s/$1/v_col\"\n");
    assert_null(r.p);
    assert_int_equal(r.r.sink.errors, 12); /* d, sq, l, cube: v, v_row, v_col each */
    assert_true(rec_has_text(&r.r, "slot \"s/sq/v\" is f32[1], but its parameter \"t/sq\" is "
                                   "f32[4, 4], so it should be f32[4, 4] (the parameter's shape)"));
    done(&r);
    compile_text(&r, "drop \"s/b/v_row\"\nmap \"s/d/kernel/v_col\" = reshape(x, 2, 3)\n"
                     "fill \"s/b/w\" : f32[1] = 0\nfill \"s/gone/m\" : f32[1] = 0\n" T);
    assert_null(r.p);
    assert_int_equal(r.r.sink.errors, 4);
    assert_true(rec_has_text(&r.r, "\"t/b\" has no optimizer slot \"s/b/v_row\""));
    assert_true(rec_has_text(&r.r, "slot \"s/d/kernel/v_col\" is f32[2, 3], but its parameter "
                                   "\"t/d/kernel\" is f32[6, 4], so it should be f32[6] "
                                   "(the parameter without axis 1, its second longest)"));
    assert_true(rec_has_text(&r.r, "\"s/b/w\" sits among the slots of \"t/b\" but is none"));
    assert_true(rec_has_text(&r.r, "slot \"s/gone/m\" has no parameter \"t/gone\""));
    done(&r);
    /* A slot renamed by hand: the final check finds it. */
    bad(T "rename \"s/b/m\" -> \"s/b/mm\"\n", "mirror-missing", "no optimizer slot \"s/b/m\"");
    current = NULL;
}

/* Tied names are names of the state: every statement matches them. */
static void test_tied_names(void **state)
{
    (void)state;
    current = tied;
    /* The case: the tied name moves with the pattern. */
    result r = ok("keep \"model.**\"\nrename \"model.**\" -> \"$1\"\n");
    HAS(r, "\"head.weight\" -> \"emb.weight\"\n");
    assert_int_equal(surg_program_alias_count(r.p), 1);
    done(&r);
    /* keep keeps exactly the names it matches. */
    r = ok("keep \"model.emb.weight\"\n");
    assert_int_equal(surg_program_alias_count(r.p), 0);
    assert_int_equal(surg_program_output_count(r.p), 1);
    done(&r);
    /* drop of a tied name removes only it. */
    r = ok("drop \"model.head.weight\"\n");
    assert_int_equal(surg_program_alias_count(r.p), 0);
    TYPE(r, "model.emb.weight", "f32[4, 2]");
    done(&r);
    /* rename of a tied name alone; rename of its stored tensor. */
    r = ok("rename \"model.head.weight\" -> \"lm_head.weight\"\n");
    HAS(r, "\"lm_head.weight\" -> \"model.emb.weight\"\n");
    done(&r);
    r = ok("rename \"model.emb.weight\" -> \"embed\"\n");
    HAS(r, "\"model.head.weight\" -> \"embed\"\n");
    done(&r);
    /* A tied name is taken, and suggested. */
    bad("rename \"other\" -> \"model.head.weight\"\n", "name-exists", "as a tied name");
    current = NULL;
}

/* When a stored tensor goes while names are tied to it, the first of them
 * takes over its value; the others are tied to that one. */
static void test_tied_takeover(void **state)
{
    (void)state;
    current = tied;
    result r = ok("drop \"model.emb.weight\"\n");
    HAS(r, "%5 = input \"model.emb.weight\" : f32[4, 2]\n"); /* %5 in byte order */
    HAS(r, "\"model.head.weight\" = %5\n");
    assert_int_equal(surg_program_alias_count(r.p), 0);
    done(&r);
    r = ok("tie \"other\" = \"model.emb.weight\"\ndrop \"model.emb.weight\"\n");
    HAS(r, "\"model.head.weight\" = %5\n");
    HAS(r, "\"other\" -> \"model.head.weight\"\n");
    TYPE(r, "other", "absent");
    done(&r);
    /* keep of a tied name without its stored tensor. */
    r = ok("keep \"model.head.weight\", \"other\"\n");
    TYPE(r, "model.head.weight", "f32[4, 2]");
    TYPE(r, "model.emb.weight", "absent");
    done(&r);
    /* tie A = B; drop B: A keeps B's value (it went with B before). */
    r = ok("map \"other\" = x * 2\ntie \"model.emb.weight\" = \"other\"\ndrop \"other\"\n");
    HAS(r, "%8 = mul %6, %7 : f32[4, 2]\n"); /* \"other\" doubled */
    HAS(r, "\"model.emb.weight\" = %8\n");
    HAS(r, "\"model.head.weight\" -> \"model.emb.weight\"\n");
    done(&r);
    /* The structural statements consume a tied name like a tensor, and a
     * stored tensor they consume hands its value on the same way. */
    r = ok("split \"model.head.weight\" axis 0 -> \"p\", \"q\"\n");
    TYPE(r, "p", "f32[2, 2]");
    assert_int_equal(surg_program_alias_count(r.p), 0);
    done(&r);
    r = ok("split \"model.emb.weight\" axis 0 -> \"p\", \"q\"\n");
    TYPE(r, "model.head.weight", "f32[4, 2]");
    assert_int_equal(surg_program_alias_count(r.p), 0);
    done(&r);
    current = NULL;
}

/* tie onto a tied name, tie of a tied name, untie, and the statements
 * that give values. */
static void test_tie_untie(void **state)
{
    (void)state;
    current = tied;
    result r = ok("tie \"other\" = \"model.head.weight\"\n");
    HAS(r, "\"other\" -> \"model.emb.weight\"\n"); /* chains resolve */
    done(&r);
    r = ok("tie \"model.emb.weight\" = \"other\"\n"); /* its tied names follow */
    HAS(r, "\"model.emb.weight\" -> \"other\"\n");
    HAS(r, "\"model.head.weight\" -> \"other\"\n");
    done(&r);
    r = ok("tie \"model.head.weight\" = \"other\"\n");
    HAS(r, "\"model.head.weight\" -> \"other\"\n");
    TYPE(r, "model.emb.weight", "f32[4, 2]");
    done(&r);
    bad("tie \"model.emb.weight\" = \"model.head.weight\"\n", "tie-target",
        "cannot tie \"model.emb.weight\" to \"model.head.weight\": a tensor cannot be tied to "
        "itself");
    /* untie: a tensor of its own, the same value (a copy in the plan). */
    r = ok("untie \"model.**\"\n");
    HAS(r, "%5 = input \"model.emb.weight\" : f32[4, 2]\n");
    HAS(r, "\"model.emb.weight\" = %5\n\"model.head.weight\" = %5\n");
    assert_int_equal(surg_program_alias_count(r.p), 0);
    done(&r);
    r = ok("untie \"model.head.weight\"\nmap \"model.head.weight\" = x * 2\n");
    TYPE(r, "model.head.weight", "f32[4, 2]");
    assert_int_equal(surg_program_alias_count(r.p), 0);
    done(&r);
    r = ok("untie optional \"nothing.*\"\n");
    done(&r);
    bad("untie \"model.norm\"\n", "untie-none",
        "pattern \"model.norm\" matches no tied name, only 1 stored tensor");
    /* A value statement that changes the stored tensor carries the tied
     * name along; alone, it is an error. */
    r = ok("map \"model.*.weight\" = x * 2\nfill \"**.weight\" = 1\n");
    assert_int_equal(surg_program_alias_count(r.p), 1);
    done(&r);
    bad("map \"model.head.weight\" = x * 2\n", "tied-value",
        "cannot map \"model.head.weight\": it is tied to \"model.emb.weight\" (one tensor, stored "
        "once); untie \"model.head.weight\" first to give it a value of its own");
    bad("fill \"model.head.weight\" = 0\n", "tied-value", "cannot fill \"model.head.weight\"");
    /* expect and tensor() see the stored tensor's type and value. */
    r = ok("expect \"model.*.weight\" : f32[4, 2]\nmap \"other\" = tensor(\"model.head.weight\")\n");
    HAS(r, "\"other\" = %5\n"); /* \"model.emb.weight\" */
    done(&r);
    bad("expect \"model.head.weight\" : f32[2]\n", "expect",
        "\"model.head.weight\" is f32[4, 2], expected f32[2]");
    current = NULL;
}

/* --to: a tied name is a name on either side, of its stored tensor's type. */
static void test_tied_target(void **state)
{
    (void)state;
    current = tied;
    result r = ok("untie \"model.head.weight\"\n");
    recorder rr;
    rec_init(&rr);
    assert_int_equal(surg_program_check_target(r.p, tied, &rr.sink), SURG_OK);
    done(&r);
    r = ok("drop \"model.head.weight\"\ntie \"fc.lora_B.weight\" = \"other\"\n");
    rec_init(&rr);
    assert_int_equal(surg_program_check_target(r.p, tied, &rr.sink), SURG_EINVALID);
    assert_string_equal(rr.messages,
                        "the result lacks \"model.head.weight\" (f32[4, 2] in the target, tied)\n");
    done(&r);
    r = ok("tie \"fc.lora_B.weight\" = \"other\"\nmap \"other\" = cast(x, f16)\n");
    rec_init(&rr);
    assert_int_equal(surg_program_check_target(r.p, tied, &rr.sink), SURG_EINVALID);
    assert_string_equal(rr.messages,
                        "the result's tied \"fc.lora_B.weight\" is f16[4, 2], but the target has "
                        "f32[4, 2]\n"
                        "the result's \"other\" is f16[4, 2], but the target has f32[4, 2]\n");
    done(&r);
    current = NULL;
}

/* Tied parameters in a mirrored tree: no slots of their own; the slots go
 * with the value when a tied name takes over or is untied. */
static void test_tied_mirror(void **state)
{
    (void)state;
    current = adam;
    result r = ok(M "tie \"p/b/kernel\" = \"p/a/kernel\"\ndrop \"p/a/kernel\"\n");
    TYPE(r, "p/b/kernel", "bf16[4, 6]");
    TYPE(r, "o/mu/b/kernel", "f32[4, 6]");
    TYPE(r, "o/nu/b/kernel", "f32[4, 6]");
    TYPE(r, "o/mu/a/kernel", "absent");
    HAS(r, "%3 = input \"o/mu/a/kernel\" : f32[4, 6]\n");
    HAS(r, "\"o/mu/b/kernel\" = %3\n"); /* the slot of the value it took over */
    done(&r);
    r = ok(M "tie \"p/b/kernel\" = \"p/a/kernel\"\nuntie \"p/b/kernel\"\n");
    TYPE(r, "o/nu/b/kernel", "f32[4, 6]");
    TYPE(r, "o/nu/a/kernel", "f32[4, 6]");
    done(&r);
    r = ok(M "tie \"p/b/kernel\" = \"p/a/kernel\"\nrename \"p/b/kernel\" -> \"p/c\"\n");
    HAS(r, "\"p/c\" -> \"p/a/kernel\"\n");
    done(&r);
    current = NULL;
}

/* LoRA records follow renames, and go with a warning when their tensors
 * do: those of init-lora and those an input recorded. */
static void test_lora_records(void **state)
{
    (void)state;
    current = tied;
    result r = ok("rename \"fc.**\" -> \"proj.$1\"\n");
    HAS(r, "lora [{\"r\":2,\"lora_alpha\":4,\"style\":\"peft\",\"target\":\"proj.weight\","
           "\"lora_a\":\"proj.lora_A.weight\",\"lora_b\":\"proj.lora_B.weight\"}]\n");
    done(&r);
    r = ok("init-lora \"attn.q.weight\" rank 2\nrename \"**attn.**\" -> \"$1blk.$2\"\n");
    HAS(r, "{\"r\":2,\"lora_alpha\":2,\"style\":\"peft\",\"target\":\"blk.q.weight\","
           "\"lora_a\":\"base_model.model.blk.q.lora_A.weight\","
           "\"lora_b\":\"base_model.model.blk.q.lora_B.weight\"}]\n");
    done(&r);
    r = ok("init-lora \"attn.q.weight\" rank 2\ndrop \"base_model.**.lora_B.weight\"\n");
    assert_string_equal(r.r.messages,
                        "the LoRA record of \"attn.q.weight\" (adapter "
                        "\"base_model.model.attn.q.lora_A.weight\", "
                        "\"base_model.model.attn.q.lora_B.weight\") is dropped: "
                        "\"base_model.model.attn.q.lora_B.weight\" is gone\n");
    NO(r, "attn.q.weight\",\"lora_a");
    done(&r);
    r = ok("keep \"fc.weight\", \"model.**\"\n");
    assert_string_equal(r.r.messages,
                        "the LoRA record of \"fc.weight\" (adapter \"fc.lora_A.weight\", "
                        "\"fc.lora_B.weight\") is dropped: \"fc.lora_A.weight\" is gone\n");
    NO(r, "lora [");
    done(&r);
    current = NULL;
}

static surg_ckpt *open_schema(const char *name, const char *json)
{
    const char *path = tmp_path(name);
    write_file(path, json, strlen(json));
    recorder r;
    rec_init(&r);
    surg_ckpt *ck = NULL;
    if (surg_ckpt_open(path, &r.sink, &ck) != SURG_OK)
        fprintf(stderr, "%s", r.messages);
    return ck;
}

static int setup(void **state)
{
    (void)state;
    schema = open_schema("model.json", schema_json);
    adam = open_schema("adam.json", adam_json);
    tied = open_schema("tied.json", tied_json);
    t5x = open_schema("t5x.json", t5x_json);
    return schema && adam && tied && t5x ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    surg_ckpt_close(schema);
    surg_ckpt_close(adam);
    surg_ckpt_close(tied);
    surg_ckpt_close(t5x);
    tmp_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),      cmocka_unit_test(test_name_errors),
        cmocka_unit_test(test_fill),       cmocka_unit_test(test_fill_errors),
        cmocka_unit_test(test_map),        cmocka_unit_test(test_map_errors),
        cmocka_unit_test(test_lora),       cmocka_unit_test(test_structure),
        cmocka_unit_test(test_structure_errors), cmocka_unit_test(test_expect),
        cmocka_unit_test(test_all_errors), cmocka_unit_test(test_target),
        cmocka_unit_test(test_reads_no_data), cmocka_unit_test(test_mirror),
        cmocka_unit_test(test_mirror_errors), cmocka_unit_test(test_tied_names),
        cmocka_unit_test(test_tied_takeover), cmocka_unit_test(test_tie_untie),
        cmocka_unit_test(test_tied_mirror),  cmocka_unit_test(test_lora_records),
        cmocka_unit_test(test_tied_target), cmocka_unit_test(test_mirror_factored),
        cmocka_unit_test(test_mirror_factored_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
