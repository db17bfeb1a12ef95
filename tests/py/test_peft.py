"""test_peft.py: PEFT LoRA adapters, both ways.

`init-lora ... style peft` with `--out-format peft` writes a directory as
PeftModel.save_pretrained does: adapter_model.safetensors (names
base_model.model.<module>.lora_A.weight / lora_B.weight, the adapter's own
name "default" left out, as get_peft_model_state_dict saves them) and
adapter_config.json. PEFT itself is not installed here, so its loading is
done the way its source does it (huggingface/peft, src/peft/config.py,
tuners/lora/config.py, tuners/tuners_utils.py, utils/other.py,
utils/save_and_load.py), step by step, over a small llama-like model built
with torch.nn: the config's fields checked against those LoraConfig
accepts, the targeted modules found as check_target_module_exists finds
them, each module's rank and alpha as get_pattern_key resolves them, the
adapter name inserted into the keys as _insert_adapter_name_into_state_dict
does, and the result loaded into torch modules shaped as PEFT's LoRA layers
(lora_A: Linear(in, r), lora_B: Linear(r, out)) with load_state_dict.

Then the merge, as merge_and_unload computes it (W + scaling * B @ A,
scaling = lora_alpha / r, or / sqrt(r) with use_rslora, transposed when
fan_in_fan_out), written as the recipe docs/language.md gives, over an
adapter directory written here as PEFT writes one, checked in NumPy.

usage: test_peft.py --surg SURG [unittest args]
"""

import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch
from torch import nn

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402

ARGS = None  # filled in by main()
F = np.float32

# The fields LoraConfig(**json) accepts (huggingface/peft, src/peft/config.py:
# PeftConfigMixin and PeftConfig; src/peft/tuners/lora/config.py: LoraConfig).
# An unknown key makes config_cls(**kwargs) raise TypeError (PEFT < 0.11) or
# is dropped with a warning (from_peft_type): surg writes none.
PEFT_CONFIG_FIELDS = {
    "task_type", "peft_type", "auto_mapping", "peft_version",  # PeftConfigMixin
    "base_model_name_or_path", "revision", "inference_mode",  # PeftConfig
}
LORA_CONFIG_FIELDS = PEFT_CONFIG_FIELDS | {
    "r", "target_modules", "exclude_modules", "lora_alpha", "lora_dropout", "fan_in_fan_out",
    "bias", "use_rslora", "modules_to_save", "init_lora_weights", "layers_to_transform",
    "layers_pattern", "rank_pattern", "alpha_pattern", "megatron_config", "megatron_core",
    "trainable_token_indices", "loftq_config", "eva_config", "corda_config", "lora_ga_config",
    "use_dora", "velora_config", "alora_invocation_tokens", "use_qalora", "qalora_group_size",
    "monteclora_config", "layer_replication", "runtime_config", "lora_bias",
    "target_parameters", "use_bdlora", "arrow_config", "kasa_config", "ensure_weight_tying",
}
MIN_EXPECTED_CONFIG_KEYS = {"peft_type"}  # src/peft/config.py


# ---- a small llama-like model, as transformers' LlamaForCausalLM names it

class Attention(nn.Module):
    def __init__(self, h, kv):
        super().__init__()
        self.q_proj = nn.Linear(h, h, bias=False)
        self.k_proj = nn.Linear(h, kv, bias=False)
        self.v_proj = nn.Linear(h, kv, bias=False)
        self.o_proj = nn.Linear(h, h, bias=False)


class Mlp(nn.Module):
    def __init__(self, h, i):
        super().__init__()
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)


class Norm(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(h))


class Layer(nn.Module):
    def __init__(self, h, kv, i):
        super().__init__()
        self.self_attn = Attention(h, kv)
        self.mlp = Mlp(h, i)
        self.input_layernorm = Norm(h)
        self.post_attention_layernorm = Norm(h)


class Llama(nn.Module):
    def __init__(self, vocab, h, kv, i, layers):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, h)
        self.layers = nn.ModuleList([Layer(h, kv, i) for _ in range(layers)])
        self.norm = Norm(h)


class LlamaForCausalLM(nn.Module):
    def __init__(self, vocab=40, h=48, kv=16, i=80, layers=3):
        super().__init__()
        self.model = Llama(vocab, h, kv, i, layers)
        self.lm_head = nn.Linear(h, vocab, bias=False)


def llama(seed=0):
    torch.manual_seed(seed)
    return LlamaForCausalLM()


def save_model(path, model):
    stnp.save(path, {k: ("F32", v.detach().numpy().astype(F))
                     for k, v in model.state_dict().items()})


# ---- PEFT's loading, step by step, as its source does it

def check_target_module_exists(config, key):
    """tuners_utils.check_target_module_exists for a list of targets."""
    targets = config["target_modules"]
    if isinstance(targets, str):
        return re.fullmatch(targets, key) is not None
    return key in targets or any(key.endswith("." + t) for t in targets)


def get_pattern_key(pattern_keys, key_to_match):
    """utils/other.get_pattern_key."""
    for key in pattern_keys:
        if re.match(rf"(.*\.)?({key})$", key_to_match):
            return key
    return key_to_match


def module_r_alpha(config, name):
    """The rank and alpha LoraModel._create_and_replace gives a module."""
    r_key = get_pattern_key(list(config.get("rank_pattern") or {}), name)
    a_key = get_pattern_key(list(config.get("alpha_pattern") or {}), name)
    return ((config.get("rank_pattern") or {}).get(r_key, config["r"]),
            (config.get("alpha_pattern") or {}).get(a_key, config["lora_alpha"]))


def insert_adapter_name(state_dict, adapter_name="default", parameter_prefix="lora_"):
    """utils/save_and_load._insert_adapter_name_into_state_dict."""
    out = {}
    for key, val in state_dict.items():
        if parameter_prefix in key:
            _, _, suffix = key.rpartition(parameter_prefix)
            if "." in suffix:
                rest = ".".join(suffix.split(".")[1:])
                key = re.sub(re.escape(rest) + r"$", f"{adapter_name}.{rest}", key)
            else:
                key = f"{key}.{adapter_name}"
        out[key] = val
    return out


class PeftLike(nn.Module):
    """A PeftModel over `model` with a LoRA adapter "default" on each module
    the config targets, parameters named as PEFT's LoraLayer names them."""

    def __init__(self, model, config):
        super().__init__()
        self.base_model = nn.Module()
        self.base_model.model = model
        self.targeted = {}
        for name, mod in list(model.named_modules()):
            if not isinstance(mod, nn.Linear) or not check_target_module_exists(config, name):
                continue
            r, alpha = module_r_alpha(config, name)
            fif = config["fan_in_fan_out"]
            i, o = (mod.out_features, mod.in_features) if fif else (mod.in_features,
                                                                   mod.out_features)
            mod.lora_A = nn.ModuleDict({"default": nn.Linear(i, r, bias=False)})
            mod.lora_B = nn.ModuleDict({"default": nn.Linear(r, o, bias=False)})
            self.targeted[name] = (r, alpha, i, o)


class Case(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-peft-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def surg(self, *args):
        return runutil.run_surg(ARGS.surg, *args)

    def recipe(self, text, name="r.surg"):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def adapter(self, text, inp, out="adapter", *extra):
        """Run `text` over `inp` into the PEFT adapter directory `out`."""
        out = self.path(out)
        rc, _, err = self.surg("run", self.recipe(text), inp, out, "--out-format", "peft", *extra)
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "")
        self.assertEqual(sorted(os.listdir(out)), ["adapter_config.json",
                                                   "adapter_model.safetensors"])
        self.assertEqual(runutil.temporaries(self.tmp), [])
        with open(os.path.join(out, "adapter_config.json")) as f:
            config = json.load(f)
        tensors, meta, _ = stnp.load(os.path.join(out, "adapter_model.safetensors"))
        return config, tensors, meta

    def refused(self, args, want_err, code=1, out=None):
        rc, _, err = self.surg(*args)
        self.assertEqual((rc, err), (code, want_err))
        if out:
            self.assertFalse(os.path.exists(out), out)
        self.assertEqual(runutil.temporaries(self.tmp), [])

    def check_loads(self, config, tensors, model, want_targets):
        """Everything PEFT does with the adapter before it computes."""
        self.assertTrue(MIN_EXPECTED_CONFIG_KEYS <= set(config))
        self.assertLessEqual(set(config), LORA_CONFIG_FIELDS, "fields LoraConfig does not take")
        self.assertEqual(config["peft_type"], "LORA")
        peft = PeftLike(model, config)
        self.assertEqual(sorted(peft.targeted), sorted(want_targets))
        # PeftModel.load_adapter: load_peft_weights reads the safetensors,
        # set_peft_model_state_dict inserts "default", load_state_dict(strict=False)
        sd = {k: torch.from_numpy(v.copy()) for k, (_, v) in tensors.items()}
        res = peft.load_state_dict(insert_adapter_name(sd), strict=False)
        self.assertEqual(res.unexpected_keys, [])
        lora_keys = [k for k, _ in peft.named_parameters() if ".lora_" in k]
        self.assertEqual(sorted(k for k in res.missing_keys if ".lora_" in k), [],
                         "every LoRA parameter comes from the file")
        self.assertEqual(len(lora_keys), 2 * len(want_targets))
        for name, (r, _, i, o) in peft.targeted.items():
            a = tensors["base_model.model.%s.lora_A.weight" % name][1]
            b = tensors["base_model.model.%s.lora_B.weight" % name][1]
            self.assertEqual((a.shape, b.shape), ((r, i), (o, r)), name)
        return peft

    def check_init(self, A, B, fan_in):
        """PEFT's reset_lora_parameters: kaiming_uniform_(A, a=sqrt(5)),
        whose bound is gain * sqrt(3 / fan_in) = sqrt(2 / 6) * sqrt(3 / in)
        = 1 / sqrt(in); zeros_(B)."""
        bound = 1 / math.sqrt(fan_in)
        self.assertLessEqual(float(np.max(np.abs(A))), bound * (1 + 1e-6))
        self.assertGreater(float(np.max(np.abs(A))), 0.9 * bound)
        self.assertLess(abs(float(A.astype(np.float64).std()) / (bound / math.sqrt(3)) - 1), 0.15)
        self.assertTrue(np.all(B == 0) and not np.any(np.signbit(B)), "B is +0.0")


class TestInitLoraAdapter(Case):
    def test_llama_attention(self):
        """q_proj and v_proj of every layer: the adapter PEFT's
        LoraConfig(r=8, lora_alpha=16, target_modules=[...]) makes."""
        model = llama()
        inp = self.path("model.safetensors")
        save_model(inp, model)
        config, tensors, meta = self.adapter(
            'seed 7\ninit-lora "model.layers.*.self_attn.{q,v}_proj.weight" rank 8 alpha 16\n',
            inp)
        want = ["model.layers.%d.self_attn.%s_proj" % (i, p) for i in range(3) for p in "qv"]
        self.assertEqual(config, {
            "alpha_pattern": {}, "base_model_name_or_path": None, "bias": "none",
            "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
            "layers_pattern": None, "layers_to_transform": None, "lora_alpha": 16,
            "lora_dropout": 0.0, "modules_to_save": None, "peft_type": "LORA", "r": 8,
            "rank_pattern": {}, "revision": None, "target_modules": sorted(want),
            "task_type": None, "use_rslora": False})
        self.assertEqual(sorted(tensors), sorted(
            "base_model.model.%s.lora_%s.weight" % (m, ab) for m in want for ab in "AB"))
        self.assertEqual(meta, {"format": "pt", "surg.output": "peft"})
        peft = self.check_loads(config, tensors, llama(), want)
        As = []
        for name, (r, alpha, i, o) in peft.targeted.items():
            self.assertEqual((r, alpha), (8, 16))
            A = tensors["base_model.model.%s.lora_A.weight" % name][1]
            B = tensors["base_model.model.%s.lora_B.weight" % name][1]
            self.assertEqual(A.dtype, F)
            self.check_init(A, B, i)
            As.append(A)
        self.assertEqual(len({a.tobytes() for a in As}), len(As), "each A draws its own values")
        # B = 0: the adapted model computes what the base did
        x = np.random.default_rng(1).standard_normal((5, 48)).astype(F)
        w = model.model.layers[0].self_attn.q_proj.weight.detach().numpy()
        A = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"][1]
        B = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"][1]
        np.testing.assert_array_equal(x @ w.T + 2.0 * ((x @ A.T) @ B.T), x @ w.T)

    def test_same_values_as_a_plain_output(self):
        """The adapter's tensors are those the same recipe writes beside the
        base into one .safetensors (with the records, and no config)."""
        inp = self.path("model.safetensors")
        save_model(inp, llama())
        text = 'seed 3\ninit-lora "model.layers.*.mlp.*_proj.weight" rank 4\n'
        _, tensors, _ = self.adapter(text, inp, "adapter", "--threads", "1")
        self.adapter(text, inp, "adapter3", "--threads", "3")
        self.assertEqual(runutil.sha256(self.path("adapter")), runutil.sha256(self.path("adapter3")))
        plain = self.path("plain.safetensors")
        rc, _, err = self.surg("run", self.recipe(text), inp, plain)
        self.assertEqual(rc, 0, err)
        both, meta, _ = stnp.load(plain)
        for name, (dt, v) in tensors.items():
            self.assertEqual(both[name][0], dt)
            np.testing.assert_array_equal(both[name][1], v)
        self.assertEqual(len(both), len(tensors) + len(llama().state_dict()))
        records = json.loads(meta["surg.lora"])
        self.assertEqual(records[0], {
            "r": 4, "lora_alpha": 4, "style": "peft",
            "target": "model.layers.0.mlp.down_proj.weight",
            "lora_a": "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight",
            "lora_b": "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"})

    def test_ranks_and_alphas_differ(self):
        """Modules of other ranks and alphas than the first record's go to
        rank_pattern and alpha_pattern, which PEFT resolves per module."""
        inp = self.path("model.safetensors")
        save_model(inp, llama())
        config, tensors, _ = self.adapter(
            'init-lora "model.layers.*.self_attn.q_proj.weight" rank 8 alpha 16\n'
            'init-lora "model.layers.1.self_attn.k_proj.weight" rank 2 alpha 16\n'
            'init-lora "lm_head.weight" rank 4 alpha 2.5\n', inp)
        self.assertEqual((config["r"], config["lora_alpha"]), (8, 16))
        self.assertEqual(config["rank_pattern"], {r"model\.layers\.1\.self_attn\.k_proj": 2,
                                                  r"lm_head": 4})
        self.assertEqual(config["alpha_pattern"], {r"lm_head": 2.5})
        want = ["model.layers.%d.self_attn.q_proj" % i for i in range(3)]
        want += ["model.layers.1.self_attn.k_proj", "lm_head"]
        peft = self.check_loads(config, tensors, llama(), want)
        self.assertEqual(peft.targeted["lm_head"][:2], (4, 2.5))
        self.assertEqual(peft.targeted["model.layers.1.self_attn.k_proj"][:2], (2, 16))
        self.assertEqual(peft.targeted["model.layers.2.self_attn.q_proj"][:2], (8, 16))

    def test_conv1d_options(self):
        """GPT-2's Conv1D keeps its weight [in, out]: fan_in_fan_out reads it
        so (A [r, in], B [out, r], as PEFT's Linear over a Conv1D makes
        them); rslora and dropout are written to the config."""
        rng = np.random.default_rng(5)
        inp = self.path("gpt2.safetensors")
        stnp.save(inp, {"transformer.h.%d.attn.c_attn.weight" % i:
                        ("F32", rng.standard_normal((32, 96)).astype(F)) for i in range(2)})
        config, tensors, _ = self.adapter(
            'init-lora "transformer.h.*.attn.c_attn.weight" rank 4 alpha 8 rslora '
            'fan_in_fan_out dropout 0.05\n', inp)
        self.assertEqual((config["fan_in_fan_out"], config["use_rslora"], config["lora_dropout"]),
                         (True, True, 0.05))
        for i in range(2):
            pre = "base_model.model.transformer.h.%d.attn.c_attn." % i
            self.assertEqual(tensors[pre + "lora_A.weight"][1].shape, (4, 32))
            self.assertEqual(tensors[pre + "lora_B.weight"][1].shape, (96, 4))
            self.check_init(tensors[pre + "lora_A.weight"][1], tensors[pre + "lora_B.weight"][1],
                            32)

    def test_refusals(self):
        inp = self.path("model.safetensors")
        save_model(inp, llama())
        out = self.path("adapter")
        r = self.recipe('init-lora "model.layers.*.self_attn.q_proj.weight" rank 2\n'
                        'init-lora "model.layers.*.self_attn.v_proj.weight" rank 2 rslora\n')
        self.refused(["run", r, inp, out, "--out-format", "peft"],
                     '%s: error: the adapters of "model.layers.0.self_attn.q_proj" and '
                     '"model.layers.0.self_attn.v_proj" differ in rslora, which a PEFT '
                     "adapter's config gives once for all its modules: write them as two "
                     "adapters\n" % out, out=out)
        r = self.recipe('init-lora "model.layers.0.self_attn.q_proj.weight" rank 2 style flax\n')
        # (style flax on a PyTorch weight is warned of: issue 17 §5)
        self.refused(["run", r, inp, out, "--out-format", "peft"],
                     '%s:1:1: warning: style flax reads "model.layers.0.self_attn.q_proj.weight" '
                     "as a Flax kernel, [in, out] (in %d, out %d), but its name says PyTorch, "
                     "whose Linear weight is [out, in]: for PyTorch weights use style peft, or "
                     "transpose them first (map ... = transpose(x))\n"
                     "    1 | init-lora \"model.layers.0.self_attn.q_proj.weight\" rank 2 "
                     "style flax\n"
                     "      | ^%s\n"
                     "%s: error: --out-format peft writes a PEFT adapter, the A and B of each "
                     "init-lora of style peft, and the recipe leaves none\n"
                     % (r, *llama().state_dict()["model.layers.0.self_attn.q_proj.weight"].shape,
                        "~" * 67, r),
                     out=out)
        r = self.recipe('init-lora "model.layers.0.self_attn.q_proj.weight" rank 2 '
                        'as "q.A", "q.B"\n')
        self.refused(["run", r, inp, out, "--out-format", "peft"],
                     '%s: error: the LoRA adapter "q.A", "q.B" is not named as PEFT loads '
                     "one: base_model.model.<module>.lora_A.weight and .lora_B.weight "
                     "(init-lora ... style peft names it so)\n" % out, out=out)
        q = "base_model.model.model.layers.%d.self_attn.q_proj.lora_A.weight"
        tie = 'tie "%s" = "%s"' % (q % 1, q % 0)
        lora = 'init-lora "model.layers.*.self_attn.q_proj.weight" rank 2'
        r = self.recipe(lora + "\n" + tie + "\n")
        self.refused(["run", r, inp, out, "--out-format", "peft"],
                     '%s:1:1: error: "%s" is tied to "%s": a PEFT adapter holds its A and B as '
                     "they are; untie it\n    1 | %s\n      | ^%s\n"
                     % (r, q % 1, q % 0, lora, "~" * (len(lora) - 1)), out=out)
        r = self.recipe('init-lora "model.norm.weight" rank 2\n')
        self.refused(["run", r, inp, out, "--out-format", "peft"],
                     '%s:1:11: error: init-lora needs a 2-D kernel, but "model.norm.weight" is '
                     'f32[48]\n    1 | init-lora "model.norm.weight" rank 2\n'
                     '      |           ^~~~~~~~~~~~~~~~~~~\n' % r, out=out)
        r = self.recipe('init-lora "lm_head.weight" rank 2\n')
        rc, _, err = self.surg("run", r, inp, out, "--out-format", "peft", "--max-shard-size",
                               "1MB")
        self.assertEqual((rc, err), (2, "%s: error: a PEFT adapter is one directory: "
                                        "--max-shard-size writes safetensors shards\n" % out))
        # a directory surg did not write is never replaced
        os.mkdir(out)
        with open(os.path.join(out, "notes.txt"), "w") as f:
            f.write("mine")
        self.refused(["run", r, inp, out, "--out-format", "peft"],
                     "%s: error: the output's name holds a directory that surg did not write "
                     "(its adapter_model.safetensors has no \"surg.output\": \"peft\" in its "
                     "metadata): it is not replaced; remove it, or write elsewhere\n" % out,
                     code=2)
        self.assertEqual(os.listdir(out), ["notes.txt"])

    def test_replaced_whole_or_not_at_all(self):
        """An earlier adapter of surg is replaced whole; a run that fails
        midway (a file-size limit) leaves it as it was, and a new name
        empty: the config never appears without the weights."""
        inp = self.path("model.safetensors")
        save_model(inp, llama())
        self.adapter('init-lora "lm_head.weight" rank 2\n', inp)
        out = self.path("adapter")
        before = runutil.sha256(out)
        r = self.recipe('init-lora "model.layers.*.mlp.*_proj.weight" rank 64\n')

        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

        for target in (out, self.path("fresh")):
            p = subprocess.run([ARGS.surg, "run", r, inp, target, "--out-format", "peft",
                                "--threads", "1"], capture_output=True, preexec_fn=limit,
                               timeout=120, env=dict(os.environ, CI="1"))
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(b"File too large", p.stderr)
            self.assertEqual(runutil.temporaries(self.tmp), [])
        self.assertEqual(runutil.sha256(out), before)
        self.assertFalse(os.path.exists(self.path("fresh")))
        config, _, _ = self.adapter('init-lora "model.layers.*.mlp.*_proj.weight" rank 4\n',
                                    inp)
        self.assertEqual(len(config["target_modules"]), 9)

    def test_read_back(self):
        """An adapter directory is an input: its safetensors, by name."""
        inp = self.path("model.safetensors")
        save_model(inp, llama())
        _, tensors, _ = self.adapter('init-lora "lm_head.weight" rank 2\n', inp)
        rc, out, err = self.surg("schema", self.path("adapter"))
        self.assertEqual(rc, 0, err)
        self.assertIn("lora_A.weight  f32[2, 48]", out)
        self.assertIn("2 tensors", out)


class TestMerge(Case):
    """The merge recipe of docs/language.md over an adapter PEFT wrote."""

    def peft_adapter(self, d, model, targets, r, alpha, rslora=False, fif=False, seed=0):
        """An adapter directory as PeftModel.save_pretrained writes it, with
        trained (random) A and B."""
        os.mkdir(d)
        rng = np.random.default_rng(seed)
        tensors = {}
        for name in targets:
            w = dict(model.named_parameters())[name + ".weight"]
            i, o = (w.shape[0], w.shape[1]) if fif else (w.shape[1], w.shape[0])
            tensors["base_model.model.%s.lora_A.weight" % name] = (
                "F32", rng.standard_normal((r, i)).astype(F))
            tensors["base_model.model.%s.lora_B.weight" % name] = (
                "F32", (0.1 * rng.standard_normal((o, r))).astype(F))
        stnp.save(os.path.join(d, "adapter_model.safetensors"), tensors, metadata={"format": "pt"})
        with open(os.path.join(d, "adapter_config.json"), "w") as f:
            json.dump({"peft_type": "LORA", "r": r, "lora_alpha": alpha, "use_rslora": rslora,
                       "fan_in_fan_out": fif, "target_modules": ["q_proj", "v_proj"],
                       "bias": "none", "task_type": "CAUSAL_LM"}, f, indent=2, sort_keys=True)
        return {k: v for k, (_, v) in tensors.items()}

    def merged(self, model, lora, targets, scaling, fif=False):
        """Two references: LoraLayer.merge as PEFT computes it in torch
        (W + transpose(B @ A, fan_in_fan_out) * scaling, all in float32),
        and the same with the product's sums in float64 rounded once to
        float32, then scaled and added in float32, as docs/numerics.md says
        surg computes `x + s * (B @ A)`."""
        w = {k: v.detach().numpy().astype(F) for k, v in model.state_dict().items()}
        peft, exact = dict(w), dict(w)
        for name in targets:
            a = lora["base_model.model.%s.lora_A.weight" % name]
            b = lora["base_model.model.%s.lora_B.weight" % name]
            delta = torch.from_numpy(b) @ torch.from_numpy(a)
            delta = (delta.T if fif else delta) * scaling
            peft[name + ".weight"] = (torch.from_numpy(w[name + ".weight"]) + delta).numpy()
            prod = (b.astype(np.float64) @ a.astype(np.float64)).astype(F)
            prod = prod.T if fif else prod
            exact[name + ".weight"] = w[name + ".weight"] + F(scaling) * prod
        return peft, exact

    def run_merge(self, text, base, adapter, threads):
        out = self.path("merged-%d.safetensors" % threads)
        rc, _, err = self.surg("run", self.recipe(text), "--in", "base=" + base,
                               "--in", "lora=" + adapter, out, "--threads", str(threads))
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "")
        return out

    def check(self, text, want, base, adapter):
        peft, exact = want
        outs = [self.run_merge(text, base, adapter, t) for t in (1, 3)]
        self.assertEqual(runutil.sha256(outs[0]), runutil.sha256(outs[1]), "threads")
        got, _, _ = stnp.load(outs[0])
        self.assertEqual(sorted(got), sorted(exact))
        for k in exact:
            self.assertLessEqual(int(np.max(runutil.ulp_distance_f32(got[k][1], exact[k]))), 1, k)
            np.testing.assert_allclose(got[k][1], peft[k], rtol=1e-5, atol=1e-5, err_msg=k)

    def test_merge(self):
        model = llama(4)
        base = self.path("model.safetensors")
        save_model(base, model)
        targets = ["model.layers.%d.self_attn.%s_proj" % (i, p) for i in range(3) for p in "qv"]
        lora = self.peft_adapter(self.path("adapter"), model, targets, r=16, alpha=32)
        # scaling = lora_alpha / r = 2
        text = ('map "base/**.{q_proj,v_proj}.weight" = x + 2 * '
                '(tensor("lora/base_model.model.$1.$2.lora_B.weight") @ '
                'tensor("lora/base_model.model.$1.$2.lora_A.weight"))\n'
                'keep "base/**"\nrename "base/**" -> "$1"\n')
        self.check(text, self.merged(model, lora, targets, 2.0), base, self.path("adapter"))

    def test_merge_rslora(self):
        model = llama(5)
        base = self.path("model.safetensors")
        save_model(base, model)
        targets = ["model.layers.%d.self_attn.q_proj" % i for i in range(3)]
        lora = self.peft_adapter(self.path("adapter"), model, targets, r=16, alpha=32,
                                 rslora=True)
        # use_rslora: scaling = lora_alpha / sqrt(r) = 8
        text = ('map "base/**.q_proj.weight" = x + 8 * '
                '(tensor("lora/base_model.model.$1.q_proj.lora_B.weight") @ '
                'tensor("lora/base_model.model.$1.q_proj.lora_A.weight"))\n'
                'keep "base/**"\nrename "base/**" -> "$1"\n')
        self.check(text, self.merged(model, lora, targets, 32 / math.sqrt(16)), base,
                   self.path("adapter"))

    def test_merge_fan_in_fan_out(self):
        """A Conv1D weight [in, out]: the product transposed."""
        rng = np.random.default_rng(9)
        w = {"transformer.h.%d.attn.c_attn.weight" % i: rng.standard_normal((32, 96)).astype(F)
             for i in range(2)}
        base = self.path("gpt2.safetensors")
        stnp.save(base, {k: ("F32", v) for k, v in w.items()})

        class Gpt2(nn.Module):
            def named_parameters(self, *a, **k):
                return [(k, torch.from_numpy(v)) for k, v in w.items()]

            def state_dict(self, *a, **k):
                return {k: torch.from_numpy(v) for k, v in w.items()}

        targets = ["transformer.h.%d.attn.c_attn" % i for i in range(2)]
        lora = self.peft_adapter(self.path("adapter"), Gpt2(), targets, r=4, alpha=8, fif=True)
        text = ('map "base/**.c_attn.weight" = x + 2 * '
                '(transpose(tensor("lora/base_model.model.$1.c_attn.lora_A.weight")) @ '
                'transpose(tensor("lora/base_model.model.$1.c_attn.lora_B.weight")))\n'
                'keep "base/**"\nrename "base/**" -> "$1"\n')
        self.check(text, self.merged(Gpt2(), lora, targets, 2.0, fif=True), base,
                   self.path("adapter"))


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surg", required=True, help="the surg executable")
    ARGS, rest = parser.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
