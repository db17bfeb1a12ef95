"""test_lora_merge.py: `merge-lora` against PEFT's formula in NumPy.

PEFT's merge_and_unload (peft/tuners/lora/layer.py, Linear.merge and
get_delta_weight) adds to each targeted weight

    delta = transpose(B @ A, fan_in_fan_out) * scaling
    scaling = lora_alpha / r            (lora_alpha / sqrt(r) with use_rslora)

where, on a CPU, B and A in f16/bf16 are cast to f32 for the product and
the delta cast back to lora_B's dtype before `weight += delta`. The
references below compute exactly that in NumPy: the product in float64
rounded to f32 (surg sums in double in order and rounds once: within an ulp
of it, docs/numerics.md), the scaling in f32, the delta rounded to lora_B's
dtype, the sum in f32 rounded to the weight's dtype. Embeddings
(lora_embedding_A/B) are always transposed; lora_B's bias (lora_bias) goes
into the base's bias; a module PEFT saved whole (modules_to_save) replaces
the base's. A bf16 case is also checked against torch doing what PEFT's code
does. Inputs: a PEFT adapter directory (adapter_model.safetensors and
adapter_config.json) mounted with --in lora=DIR, the base a safetensors
file; same bytes for 1 and 3 threads; every config/weights mismatch is a
compile error with its exact message.

usage: test_lora_merge.py --surg SURG [unittest args]
"""

import argparse
import json
import math
import os
import sys
import tempfile
import unittest

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402

ARGS = None
F, D = np.float32, np.float64
RECIPE = 'merge-lora "lora/" into "base/"\nrename "base/**" -> "$1"\n'


def bf16_bits(values):
    return runutil.f32_to_bf16(np.asarray(values, F))


def bf16_values(bits):
    return runutil.bf16_to_f32(bits)


def as_stored(dtype, values):
    """f32 values -> (safetensors dtype, array as stnp stores it)."""
    if dtype == "bf16":
        return "BF16", bf16_bits(values)
    return {"f32": "F32", "f16": "F16"}[dtype], np.asarray(values, {"f32": F, "f16": np.float16}[dtype])


def read_f32(entry):
    dt, arr = entry
    return bf16_values(arr) if dt == "BF16" else np.asarray(arr).astype(F)


def round_to(dtype, values_f32):
    """f32 -> the dtype's nearest value, as f32."""
    if dtype == "bf16":
        return bf16_values(bf16_bits(values_f32))
    if dtype == "f16":
        return np.asarray(values_f32, F).astype(np.float16).astype(F)
    return np.asarray(values_f32, F)


def peft_merge(w, a, b, scaling, w_dtype, ab_dtype, transposed):
    """PEFT's Linear.merge on a CPU, in NumPy: w, a, b as f32 values."""
    prod = (b.astype(D) @ a.astype(D)).astype(F)
    if transposed:
        prod = prod.T
    delta = round_to(ab_dtype, prod * F(scaling))
    return round_to(w_dtype, w + delta)


def steps(a, b, dtype):
    """How many steps of `dtype` apart a and b are (bf16: 2^-7 relative)."""
    a, b = np.asarray(a, D), np.asarray(b, D)
    mant = {"f32": 23, "bf16": 7, "f16": 10}[dtype]
    scale = np.maximum(np.abs(a), np.abs(b))
    step = np.where(scale > 0, 2.0 ** (np.floor(np.log2(np.maximum(scale, 1e-30))) - mant), 1.0)
    return np.abs(a - b) / step


class Merge(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.rng = np.random.default_rng(16)

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, *names):
        return os.path.join(self.dir, *names)

    def normal(self, *shape, scale=1.0):
        return (self.rng.standard_normal(shape) * scale).astype(F)

    def write(self, base, adapter, config, recipe=RECIPE):
        """base.safetensors, adapter/ (adapter_model.safetensors and
        adapter_config.json) and the recipe; tensors as (dtype, f32 values)."""
        stnp.save(self.path("base.safetensors"),
                  {k: as_stored(dt, v) for k, (dt, v) in base.items()})
        os.makedirs(self.path("adapter"), exist_ok=True)
        stnp.save(self.path("adapter", "adapter_model.safetensors"),
                  {k: as_stored(dt, v) for k, (dt, v) in adapter.items()})
        if config is not None:
            with open(self.path("adapter", "adapter_config.json"), "w") as f:
                json.dump(config, f, indent=2)
        with open(self.path("r.surg"), "w") as f:
            f.write(recipe)

    def run_merge(self, threads=2, out="out.safetensors"):
        rc, _, err = runutil.run_surg(
            ARGS.surg, "run", self.path("r.surg"), "--in", "base=" + self.path("base.safetensors"),
            "--in", "lora=" + self.path("adapter"), self.path(out), "--threads", threads)
        self.assertEqual((rc, err), (0, ""))
        tensors, _, _ = stnp.load(self.path(out))
        return tensors

    def check_error(self, want):
        rc, out, err = runutil.run_surg(
            ARGS.surg, "check", self.path("r.surg"), "--in", "base=" + self.path("base.safetensors"),
            "--in", "lora=" + self.path("adapter"))
        self.assertEqual(rc, 1, err)
        self.assertIn(want, err)

    def llama(self, layers, modules, out_in, r, w_dtype="f32", ab_dtype="f32",
              ranks=None):
        """A base and a PEFT adapter on `modules` of `layers` layers."""
        base, adapter, ref = {}, {}, {}
        for i in range(layers):
            for mod in modules:
                name = "model.layers.%d.self_attn.%s" % (i, mod)
                o, n = out_in
                rr = (ranks or {}).get(name, r)
                w = round_to(w_dtype, self.normal(o, n))
                a = round_to(ab_dtype, self.normal(rr, n, scale=0.3))
                b = round_to(ab_dtype, self.normal(o, rr, scale=0.1))
                base[name + ".weight"] = (w_dtype, w)
                adapter["base_model.model.%s.lora_A.weight" % name] = (ab_dtype, a)
                adapter["base_model.model.%s.lora_B.weight" % name] = (ab_dtype, b)
                ref[name + ".weight"] = (w, a, b)
        base["model.norm.weight"] = (w_dtype, round_to(w_dtype, self.normal(out_in[1])))
        return base, adapter, ref

    def config(self, r, alpha, targets, **extra):
        c = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha,
             "lora_dropout": 0.05, "target_modules": targets, "use_rslora": False,
             "fan_in_fan_out": False, "bias": "none", "use_dora": False,
             "rank_pattern": {}, "alpha_pattern": {}, "modules_to_save": None}
        c.update(extra)
        return c

    def assert_merged(self, out, ref, scaling, w_dtype, ab_dtype, transposed=False, most=1.0):
        for name, (w, a, b) in ref.items():
            s = scaling(name) if callable(scaling) else scaling
            want = peft_merge(w, a, b, s, w_dtype, ab_dtype, transposed)
            got = read_f32(out[name])
            self.assertEqual(got.shape, want.shape, name)
            d = steps(got, want, w_dtype)
            self.assertLessEqual(float(d.max()), 1.0, name)
            self.assertGreaterEqual(float(np.mean(d == 0)), most, name)

    # ---- the merges ------------------------------------------------------

    def test_plain_several_modules(self):
        """r 8, lora_alpha 16: scaling 2, q_proj and v_proj of 3 layers in
        one statement; the adapter consumed, the base's other tensors kept."""
        base, adapter, ref = self.llama(3, ["q_proj", "v_proj"], (48, 40), 8)
        self.write(base, adapter, self.config(8, 16, ["q_proj", "v_proj"]))
        out = self.run_merge()
        self.assertEqual(sorted(out), sorted(base))
        self.assertTrue(np.array_equal(read_f32(out["model.norm.weight"]),
                                       base["model.norm.weight"][1]))
        self.assert_merged(out, ref, 2.0, "f32", "f32")

    def test_rslora(self):
        """use_rslora: lora_alpha / sqrt(r) = 3 / sqrt(8), rounded to f32 as
        torch multiplies an f32 tensor by a Python float."""
        base, adapter, ref = self.llama(2, ["q_proj"], (33, 70), 8)
        self.write(base, adapter, self.config(8, 3, ["q_proj"], use_rslora=True))
        self.assert_merged(self.run_merge(), ref, 3 / math.sqrt(8), "f32", "f32")

    def test_fan_in_fan_out(self):
        """GPT-2's Conv1D stores its weight [in, out]: the delta is
        transposed (fan_in_fan_out: true)."""
        base, adapter, ref = {}, {}, {}
        for i in range(2):
            name = "transformer.h.%d.attn.c_attn" % i
            w, a, b = self.normal(40, 96), self.normal(4, 40, scale=0.3), self.normal(96, 4, scale=0.1)
            base[name + ".weight"] = ("f32", w)
            base[name + ".bias"] = ("f32", self.normal(96))
            adapter["base_model.model.%s.lora_A.weight" % name] = ("f32", a)
            adapter["base_model.model.%s.lora_B.weight" % name] = ("f32", b)
            ref[name + ".weight"] = (w, a, b)
        self.write(base, adapter, self.config(4, 8, ["c_attn"], fan_in_fan_out=True))
        out = self.run_merge()
        self.assert_merged(out, ref, 2.0, "f32", "f32", transposed=True)
        for i in range(2):
            name = "transformer.h.%d.attn.c_attn.bias" % i
            self.assertTrue(np.array_equal(read_f32(out[name]), base[name][1]))

    def test_bf16(self):
        """A bf16 base and bf16 adapter: the product in f32, the delta
        rounded to bf16 (lora_B's dtype), then added and rounded to bf16."""
        base, adapter, ref = self.llama(2, ["q_proj", "v_proj"], (64, 48), 16, "bf16", "bf16")
        self.write(base, adapter, self.config(16, 32, ["q_proj", "v_proj"]))
        out = self.run_merge()
        self.assertEqual({out[k][0] for k in ref}, {"BF16"})
        self.assert_merged(out, ref, 2.0, "bf16", "bf16", most=0.99)
        self.against_torch(out, ref, 2.0)

    def against_torch(self, out, ref, scaling):
        """The same as PEFT's own code on a CPU, with torch (when present)."""
        try:
            import torch
        except ImportError:
            return
        for name, (w, a, b) in ref.items():
            tw = torch.from_numpy(w).to(torch.bfloat16)
            ta = torch.from_numpy(a).to(torch.bfloat16)
            tb = torch.from_numpy(b).to(torch.bfloat16)
            delta = (tb.float() @ ta.float()) * scaling  # get_delta_weight, cast_to_fp32
            tw += delta.to(torch.bfloat16)  # merge: base_layer.weight.data += delta_weight
            want = tw.float().numpy()
            d = steps(read_f32(out[name]), want, "bf16")
            self.assertLessEqual(float(d.max()), 1.0, name)
            self.assertGreaterEqual(float(np.mean(d == 0)), 0.99, name)

    def test_bf16_base_f32_adapter(self):
        """An f32 adapter on a bf16 base: the delta stays f32, the sum is
        rounded to bf16 once (torch's in-place add into a bf16 weight)."""
        base, adapter, ref = self.llama(1, ["q_proj"], (64, 32), 8, "bf16", "f32")
        self.write(base, adapter, self.config(8, 8, ["q_proj"]))
        self.assert_merged(self.run_merge(), ref, 1.0, "bf16", "f32", most=0.99)

    def test_patterns_bias_embeddings_modules_to_save(self):
        """rank_pattern and alpha_pattern (matched at a name's end, as PEFT's
        get_pattern_key does), lora_B's bias into the base's bias, an
        embedding's lora_embedding_A/B (transposed), and lm_head saved whole
        (modules_to_save) replacing the base's."""
        ranks = {"model.layers.1.self_attn.q_proj": 4}
        base, adapter, ref = self.llama(2, ["q_proj"], (40, 24), 8, ranks=ranks)
        for i in range(2):
            name = "model.layers.%d.self_attn.q_proj" % i
            base[name + ".bias"] = ("f32", self.normal(40))
            adapter["base_model.model.%s.lora_B.bias" % name] = ("f32", self.normal(40))
        emb_w, emb_a, emb_b = self.normal(50, 24), self.normal(8, 50), self.normal(24, 8)
        base["model.embed_tokens.weight"] = ("f32", emb_w)
        adapter["base_model.model.model.embed_tokens.lora_embedding_A"] = ("f32", emb_a)
        adapter["base_model.model.model.embed_tokens.lora_embedding_B"] = ("f32", emb_b)
        base["lm_head.weight"] = ("bf16", round_to("bf16", self.normal(50, 24)))
        head = self.normal(50, 24)
        adapter["base_model.model.lm_head.weight"] = ("f32", head)
        cfg = self.config(8, 16, ["q_proj", "embed_tokens"], lora_bias=True,
                          rank_pattern={"layers.1.self_attn.q_proj": 4},
                          alpha_pattern={"model.layers.0.self_attn.q_proj": 4},
                          modules_to_save=["lm_head"])
        self.write(base, adapter, cfg)
        out = self.run_merge()
        self.assertEqual(sorted(out), sorted(base))

        def scaling(name):
            return {"model.layers.0.self_attn.q_proj.weight": 4 / 8,
                    "model.layers.1.self_attn.q_proj.weight": 16 / 4}[name]
        self.assert_merged(out, ref, scaling, "f32", "f32")
        for i, s in ((0, 0.5), (1, 4.0)):
            name = "model.layers.%d.self_attn.q_proj" % i
            want = base[name + ".bias"][1] + adapter["base_model.model.%s.lora_B.bias" % name][1] * F(s)
            self.assertTrue(np.array_equal(read_f32(out[name + ".bias"]), want), name)
        want = peft_merge(emb_w, emb_a, emb_b, 2.0, "f32", "f32", True)
        self.assertLessEqual(float(steps(read_f32(out["model.embed_tokens.weight"]), want,
                                         "f32").max()), 1.0)
        self.assertEqual(out["lm_head.weight"][0], "BF16")
        self.assertTrue(np.array_equal(read_f32(out["lm_head.weight"]), round_to("bf16", head)))

    def test_threads_identical(self):
        base, adapter, _ = self.llama(2, ["q_proj", "v_proj"], (300, 200), 16)
        self.write(base, adapter, self.config(16, 32, ["q_proj", "v_proj"]))
        self.run_merge(threads=1, out="one.safetensors")
        self.run_merge(threads=3, out="three.safetensors")
        self.assertEqual(runutil.sha256(self.path("one.safetensors")),
                         runutil.sha256(self.path("three.safetensors")))

    def test_config_clause(self):
        """config "FILE" names the config, from the recipe's directory."""
        base, adapter, ref = self.llama(1, ["q_proj"], (16, 16), 4)
        self.write(base, adapter, None,
                   'merge-lora "lora/" into "base/" config "my.json"\nrename "base/**" -> "$1"\n')
        with open(self.path("my.json"), "w") as f:
            json.dump(self.config(4, 2, ["q_proj"]), f)
        self.assert_merged(self.run_merge(), ref, 0.5, "f32", "f32")

    # ---- mismatches between the config and the weights -------------------

    def test_errors(self):
        base, adapter, _ = self.llama(2, ["q_proj", "v_proj"], (16, 12), 4)
        cfg = self.config(4, 8, ["q_proj", "v_proj"])
        cases = [
            (dict(target_modules=["q_proj", "v_proj", "k_proj"]),
             'error: target_modules in "%s" names "k_proj", but the adapter has no weights '
             'for it (no "base_model.model.…k_proj.lora_A.weight" under "lora/")'),
            (dict(target_modules=["q_proj"]),
             'error: the adapter has weights for "model.layers.0.self_attn.v_proj", which '
             'target_modules in "%s" does not name'),
            (dict(r=8),
             'error: "lora/base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" has '
             'rank 4 (f32[4, 12]), but "%s" gives "model.layers.0.self_attn.q_proj" r = 8'),
            (dict(rank_pattern={"v_proj": 2}),
             'error: "lora/base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight" has '
             'rank 4 (f32[4, 12]), but "%s" gives "model.layers.0.self_attn.v_proj" r = 2'),
            (dict(fan_in_fan_out=True),
             'error: "base/model.layers.0.self_attn.q_proj.weight" is f32[16, 12], but its '
             'adapter makes [12, 16] (lora_B f32[16, 4], lora_A f32[4, 12], transposed)'),
            (dict(use_dora=True),
             'error: "%s": the adapter is DoRA (use_dora: true); merge-lora merges LoRA\'s '
             'W + scaling * (B @ A) only'),
            (dict(peft_type="IA3"),
             'error: "%s" is not a LoRA adapter\'s config: its peft_type is not "LORA"'),
            (dict(r=2.5), 'error: "%s": "r" is not a whole number of at least 1'),
            (dict(rank_pattern={"layers\\.0\\..*": 2}),
             'error: "%s": the rank_pattern key "layers\\.0\\..*" is a regular expression'),
        ]
        config_path = self.path("adapter", "adapter_config.json")
        for change, want in cases:
            with self.subTest(change):
                c = dict(cfg)
                c.update(change)
                self.write(base, adapter, c)
                self.check_error(want.replace("%s", config_path) if "%s" in want else want)
        # the fan_in_fan_out mismatch says which way would fit
        c = dict(cfg, fan_in_fan_out=True)
        self.write(base, adapter, c)
        self.check_error('note: it would fit with fan_in_fan_out: false in "%s"' % config_path)
        # no config beside the adapter
        self.write(base, adapter, None)
        os.remove(config_path)
        self.check_error('error: cannot read "%s": no such file' % config_path)
        # a factor without its pair, a shape the base does not have
        broken = dict(adapter)
        del broken["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]
        self.write(base, broken, cfg)
        self.check_error('"lora/base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight" '
                         'has no "lora/base_model.model.model.layers.1.self_attn.v_proj.'
                         'lora_B.weight" beside it')
        broken = dict(adapter)
        broken["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"] = (
            "f32", self.normal(16, 3))
        self.write(base, broken, cfg)
        self.check_error('their ranks differ (4 and 3)')
        broken = dict(adapter)
        broken["base_model.model.model.layers.0.mlp.up_proj.lora_A.weight"] = ("f32", self.normal(4, 12))
        broken["base_model.model.model.layers.0.mlp.up_proj.lora_B.weight"] = ("f32", self.normal(16, 4))
        self.write(base, broken, dict(cfg, target_modules=["q_proj", "v_proj", "up_proj"]))
        self.check_error('error: the adapter\'s "lora/base_model.model.model.layers.0.mlp.up_proj.'
                         'lora_A.weight" has no base tensor "base/model.layers.0.mlp.up_proj.weight"')
        broken = dict(adapter)
        broken["base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"] = (
            "f32", self.normal(16))
        self.write(base, broken, cfg)
        self.check_error("is DoRA's magnitude")


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ARGS, rest = ap.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=1)


if __name__ == "__main__":
    main()
