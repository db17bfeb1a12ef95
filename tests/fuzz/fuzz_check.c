/* fuzz_check.c: libFuzzer harness for the compiler (`surg check`). The input
 * is a recipe, compiled against a fixed schema written once at start-up: a
 * Flax params tree "p/" with its Adam moments mirrored under "o/mu/", a step
 * count, t5x's Adafactor slots beside "t/" under "s/" (factored from 4 on), and
 * PyTorch-named tensors of every kind of dtype (bf16, f32, i32,
 * bool, and f8e8m0, which can be carried but not computed on), a head tied to
 * the embedding and a LoRA record, as an earlier run records them. A recipe must
 * be refused with an error diagnostic or compile to a program whose outputs
 * are in strict name order with sizes that are their shapes' products, whose
 * tied names are not stored and point at stored tensors; its op graph is
 * dumped and it is checked against the input as a target. No name is empty
 * or "__metadata__"; compiled for an .npz output, none is longer than an
 * .npz holds. The schema's metadata has a msgpack.tree of values, and a JSON
 * file beside the recipe, for the meta statements; a PEFT adapter under "ad/"
 * with its adapter_config.json beside the schema, for merge-lora. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "surg/surg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char schema_text[] =
    "{\n"
    "  \"__metadata__\": {\"format\": \"flax\", \"author\": \"fuzz\",\n"
    "    \"msgpack.tree\": \"{\\\"step\\\": \\\"cd03e8\\\", \\\"lr\\\": \\\"cb3f50624dd2f1a9fc\\\", "
    "\\\"o/count\\\": \\\"\\\", \\\"name\\\": \\\"a3616263\\\"}\",\n"
    "    \"surg.ties\": \"{\\\"model.head.weight\\\": \\\"model.embed_tokens.weight\\\"}\",\n"
    "    \"surg.lora\": \"[{\\\"r\\\": 2, \\\"lora_alpha\\\": 2, \\\"style\\\": \\\"peft\\\", "
    "\\\"target\\\": \\\"model.layers.0.self_attn.q_proj.weight\\\", "
    "\\\"lora_a\\\": \\\"model.layers.1.self_attn.q_proj.weight\\\", "
    "\\\"lora_b\\\": \\\"model.mask\\\"}]\"},\n"
    "  \"ad/base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight\": "
    "{\"dtype\": \"BF16\", \"shape\": [2, 4]},\n"
    "  \"ad/base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight\": "
    "{\"dtype\": \"BF16\", \"shape\": [4, 2]},\n"
    "  \"lm_head.weight\": {\"dtype\": \"BF16\", \"shape\": [16, 4]},\n"
    "  \"model.embed_tokens.weight\": {\"dtype\": \"BF16\", \"shape\": [16, 4]},\n"
    "  \"model.layers.0.mlp.gate_up_proj.weight\": {\"dtype\": \"F32\", \"shape\": [8, 4]},\n"
    "  \"model.layers.0.self_attn.q_proj.weight\": {\"dtype\": \"BF16\", \"shape\": [4, 4]},\n"
    "  \"model.layers.1.self_attn.q_proj.weight\": {\"dtype\": \"BF16\", \"shape\": [4, 4]},\n"
    "  \"model.mask\": {\"dtype\": \"BOOL\", \"shape\": [4]},\n"
    "  \"model.norm.scales\": {\"dtype\": \"F8_E8M0\", \"shape\": [4]},\n"
    "  \"o/count\": {\"dtype\": \"I32\", \"shape\": []},\n"
    "  \"o/mu/Dense_0/bias\": {\"dtype\": \"F32\", \"shape\": [8]},\n"
    "  \"o/mu/Dense_0/kernel\": {\"dtype\": \"F32\", \"shape\": [4, 8]},\n"
    "  \"o/mu/Dense_1/kernel\": {\"dtype\": \"F32\", \"shape\": [8, 2]},\n"
    "  \"o/mu/blocks_0/kernel\": {\"dtype\": \"F32\", \"shape\": [2, 3]},\n"
    "  \"o/mu/blocks_1/kernel\": {\"dtype\": \"F32\", \"shape\": [2, 3]},\n"
    "  \"p/Dense_0/bias\": {\"dtype\": \"F32\", \"shape\": [8]},\n"
    "  \"p/Dense_0/kernel\": {\"dtype\": \"F32\", \"shape\": [4, 8]},\n"
    "  \"p/Dense_1/kernel\": {\"dtype\": \"BF16\", \"shape\": [8, 2]},\n"
    "  \"p/blocks_0/kernel\": {\"dtype\": \"F32\", \"shape\": [2, 3]},\n"
    "  \"p/blocks_1/kernel\": {\"dtype\": \"F32\", \"shape\": [2, 3]},\n"
    "  \"s/k/m\": {\"dtype\": \"F32\", \"shape\": [1]},\n"
    "  \"s/k/v\": {\"dtype\": \"F32\", \"shape\": [1]},\n"
    "  \"s/k/v_col\": {\"dtype\": \"F32\", \"shape\": [6]},\n"
    "  \"s/k/v_row\": {\"dtype\": \"F32\", \"shape\": [4]},\n"
    "  \"s/sq/m\": {\"dtype\": \"F32\", \"shape\": [1]},\n"
    "  \"s/sq/v\": {\"dtype\": \"F32\", \"shape\": [1]},\n"
    "  \"s/sq/v_col\": {\"dtype\": \"F32\", \"shape\": [4]},\n"
    "  \"s/sq/v_row\": {\"dtype\": \"F32\", \"shape\": [4]},\n"
    "  \"s/v/m\": {\"dtype\": \"F32\", \"shape\": [1]},\n"
    "  \"s/v/v\": {\"dtype\": \"F32\", \"shape\": [2, 3]},\n"
    "  \"s/v/v_col\": {\"dtype\": \"F32\", \"shape\": [1]},\n"
    "  \"s/v/v_row\": {\"dtype\": \"F32\", \"shape\": [1]},\n"
    "  \"t/k\": {\"dtype\": \"F32\", \"shape\": [6, 4]},\n"
    "  \"t/sq\": {\"dtype\": \"F32\", \"shape\": [4, 4]},\n"
    "  \"t/v\": {\"dtype\": \"F32\", \"shape\": [2, 3]}\n"
    "}\n";

static const char cfg_text[] =
    "{\"r\": 16, \"lora_alpha\": 32, \"target_modules\": [\"q_proj\", \"v_proj\"],\n"
    " \"use_rslora\": false, \"rank_pattern\": {\"a.b\": 8}, \"peft_type\": \"LORA\",\n"
    " \"none\": null, \"nested\": [[1, 2], {\"k\": \"v\"}]}\n";

/* merge-lora "ad/" into "": the adapter's config, found beside the schema */
static const char adapter_cfg_text[] =
    "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"q_proj\"],\n"
    " \"rank_pattern\": {\"layers.0.self_attn.q_proj\": 2}, \"alpha_pattern\": {}}\n";

static surg_ckpt *schema(void)
{
    static surg_ckpt *ck;
    if (!ck) {
        const char *path = fz_path(0, "model.json");
        fz_write(path, schema_text, sizeof schema_text - 1);
        /* what `meta ... = json("cfg.json", ...)` reads beside the recipe */
        fz_write(fz_path(1, "cfg.json"), cfg_text, sizeof cfg_text - 1);
        fz_write(fz_path(3, "adapter_config.json"), adapter_cfg_text,
                 sizeof adapter_cfg_text - 1);
        if (surg_ckpt_open(path, NULL, &ck) != SURG_OK)
            fz_fail("the harness's schema does not open", path);
    }
    return ck;
}

static const surg_tensor_info *find_output(const surg_program *p, const char *name)
{
    for (size_t i = 0; i < surg_program_output_count(p); i++)
        if (strcmp(surg_program_output(p, i)->name, name) == 0)
            return surg_program_output(p, i);
    return NULL;
}

static void check_program(const surg_program *p, bool npz)
{
    size_t n = surg_program_output_count(p);
    for (size_t i = 0; i < n; i++) {
        const surg_tensor_info *t = surg_program_output(p, i);
        if (!t || !t->name || (t->rank && !t->shape) || t->rank > SURG_MAX_RANK ||
            (unsigned)t->dtype >= SURG_DTYPE_COUNT)
            fz_fail("a malformed output", t ? t->name : NULL);
        if (i && strcmp(surg_program_output(p, i - 1)->name, t->name) >= 0)
            fz_fail("output names not strictly increasing", t->name);
        if (!*t->name || strcmp(t->name, "__metadata__") == 0)
            fz_fail("an output name no format holds", t->name);
        if (npz && strlen(t->name) > 65531)
            fz_fail("an output name too long for the .npz it was compiled for", t->name);
        uint64_t elems = 1, bits;
        for (uint32_t d = 0; d < t->rank; d++)
            if (__builtin_mul_overflow(elems, t->shape[d], &elems))
                fz_fail("an output's element count overflows 64 bits", t->name);
        if (elems != t->nelems)
            fz_fail("an output's element count is not its shape's product", t->name);
        if (__builtin_mul_overflow(elems, (uint64_t)surg_dtype_bits(t->dtype), &bits))
            fz_fail("an output's size in bits overflows 64 bits", t->name);
        if (bits / 8 != t->nbytes)
            fz_fail("an output's byte size is wrong", t->name);
    }
    if (surg_program_output(p, n) != NULL)
        fz_fail("surg_program_output past the end is not NULL", NULL);
    for (size_t i = 0; i < surg_program_alias_count(p); i++) {
        const surg_meta_entry *a = surg_program_alias(p, i);
        if (!a || !a->key || !a->value)
            fz_fail("a malformed tied name", NULL);
        if (!*a->key || strcmp(a->key, "__metadata__") == 0 ||
            (npz && strlen(a->key) > 65531))
            fz_fail("a tied name its output cannot hold", a->key);
        if (find_output(p, a->key))
            fz_fail("a tied name is also stored", a->key);
        if (!find_output(p, a->value))
            fz_fail("a tied name points at no stored tensor", a->key);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    surg_ckpt *from = schema();
    size_t total = 0;
    surg_sink sink = fz_sink(&total);
    surg_recipe *r = NULL;
    /* in the harness's directory: json("cfg.json") reads the file there */
    if (surg_recipe_parse(fz_path(2, "fuzz.surg"), (const char *)data, size, &sink, &r) !=
        SURG_OK) {
        if (r || sink.errors == 0)
            fz_fail("a refused recipe gave a tree or no error", NULL);
        /* What parsed is still compiled, as check does after syntax errors:
         * reported, never a crash. */
        surg_recipe *part = NULL;
        surg_status st = surg_recipe_parse_partial(fz_path(2, "fuzz.surg"), (const char *)data,
                                                   size, &sink, &part);
        if (st == SURG_OK)
            fz_fail("a refused recipe parsed in part without an error", NULL);
        surg_program *q = NULL;
        if (part && surg_compile(part, from, &sink, &q) == SURG_OK && !q)
            fz_fail("a compiled recipe gave no program", NULL);
        surg_program_free(q);
        surg_recipe_free(part);
        return 0;
    }
    sink.errors = 0;
    surg_program *p = NULL;
    if (surg_compile(r, from, &sink, &p) != SURG_OK) {
        if (p || sink.errors == 0)
            fz_fail("a refused recipe gave a program or no error", NULL);
        surg_recipe_free(r);
        return 0;
    }
    check_program(p, false);
    /* Compiled for an .npz output: refused with an error, or every name fits. */
    surg_program *q = NULL;
    surg_compile_opts npz = {.out_path = "fuzz.npz"};
    if (surg_compile_for(r, from, &npz, &sink, &q) == SURG_OK)
        check_program(q, true);
    else if (q || sink.errors == 0)
        fz_fail("a recipe refused for .npz gave a program or no error", NULL);
    surg_program_free(q);
    char *dump = surg_program_dump(p);
    if (!dump)
        fz_fail("surg_program_dump failed", NULL);
    free(dump);
    surg_program_check_target(p, from, &sink);
    /* --to its own input, with each problem at the statement that caused
     * it: refused with an error, or compiled. */
    surg_program *t = NULL;
    unsigned before = sink.errors;
    surg_compile_opts to = {.target = from};
    if (surg_compile_for(r, from, &to, &sink, &t) != SURG_OK && (t || sink.errors == before))
        fz_fail("a recipe refused against its target gave a program or no error", NULL);
    surg_program_free(t);
    surg_program_free(p);
    surg_recipe_free(r);
    return 0;
}
