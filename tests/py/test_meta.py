"""test_meta.py: the `meta` statements end to end. Outputs' `__metadata__` is
read with a reader of this test's own (the 8-byte length and json.loads of
the header, as the safetensors documentation describes it), never with surg;
inputs are written by stnp (safetensors), msgpack.packb (Flax's msgpack),
torch.save (PyTorch) and json.dump (adapter_config.json as PEFT writes it).

usage: test_meta.py --surg SURG [unittest args]
"""

import argparse
import json
import os
import struct
import sys
import tempfile
import unittest

import msgpack
import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stnp  # noqa: E402
from runutil import run_surg  # noqa: E402

ARGS = None  # filled in by main()

W = np.arange(8, dtype=np.float32).reshape(4, 2)
B = np.array([0.5, -1.5], dtype=np.float32)

# PEFT's adapter_config.json (LoraConfig.save_pretrained), the keys a merge reads.
ADAPTER_CONFIG = {
    "base_model_name_or_path": "meta-llama/Llama-3.2-1B",
    "peft_type": "LORA",
    "r": 16,
    "lora_alpha": 32,
    "use_rslora": False,
    "fan_in_fan_out": False,
    "target_modules": ["q_proj", "v_proj"],
    "rank_pattern": {"model.layers.0.self_attn.q_proj": 8},
    "lora_dropout": 0.05,
}


def header(path):
    """The JSON header of a safetensors file, parsed here."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def metadata(path):
    return header(path).get("__metadata__")


def tensor(path, name):
    h = header(path)
    e = h[name]
    start, end = e["data_offsets"]
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(8 + n + start)
        return np.frombuffer(f.read(end - start), dtype=np.float32).reshape(e["shape"])


def to_bytes(tree):
    """flax.serialization.to_bytes of a tree of arrays and plain values: an
    array is ext 1 of [shape, dtype name, bytes]."""
    def pack(x):
        if isinstance(x, dict):
            return {k: pack(v) for k, v in x.items()}
        if isinstance(x, np.ndarray):
            return msgpack.ExtType(1, msgpack.packb((list(x.shape), x.dtype.name, x.tobytes()),
                                                    use_bin_type=True))
        return x
    return msgpack.packb(pack(tree), use_bin_type=True)


class Meta(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def safetensors_in(self, meta):
        p = self.path("in.safetensors")
        stnp.save(p, {"w": ("F32", W), "b": ("F32", B)}, metadata=meta, add_format=False)
        return p

    def run_ok(self, recipe, inp, out, *extra):
        rc, _, err = run_surg(ARGS.surg, "run", recipe, inp, out, *extra)
        self.assertEqual(rc, 0, err)
        return err

    def test_set_copy_drop_json(self):
        inp = self.safetensors_in({"format": "pt", "author": "base", "note": "old",
                                   "tmp.a": "1", "tmp.b": "2"})
        self.write("adapter_config.json", json.dumps(ADAPTER_CONFIG, indent=2))
        r = self.write("r.surg", "\n".join([
            'meta "format" = "flax"',
            'meta "written_by" = input("author")',
            'meta "lora_alpha" = str(json("adapter_config.json", "lora_alpha"))',
            'meta "r" = str(json("adapter_config.json", "r"))',
            'meta "targets" = str(json("adapter_config.json", "target_modules"))',
            'meta "first" = json("adapter_config.json", "target_modules", 0)',
            'meta "q_rank" = str(json("adapter_config.json", "rank_pattern", '
            '"model.layers.0.self_attn.q_proj"))',
            'meta "rslora" = str(json("adapter_config.json", "use_rslora"))',
            'meta "dropout" = str(json("adapter_config.json", "lora_dropout"))',
            'meta "peft" = json("adapter_config.json", "peft_type")',
            'meta "line" = "a \\"quoted\\"\\nline"',
            'meta drop "note", "tmp.*"',
            'meta drop optional "absent*"',
            "",
        ]))
        out = self.path("out.safetensors")
        self.run_ok(r, inp, out)
        cfg = ADAPTER_CONFIG
        self.assertEqual(metadata(out), {
            "format": "flax", "author": "base", "written_by": "base",
            "lora_alpha": str(cfg["lora_alpha"]), "r": str(cfg["r"]),
            "targets": json.dumps(cfg["target_modules"], separators=(",", ":")),
            "first": cfg["target_modules"][0], "q_rank": "8", "rslora": "false",
            "dropout": repr(cfg["lora_dropout"]), "peft": "LORA", "line": 'a "quoted"\nline',
        })
        np.testing.assert_array_equal(tensor(out, "w"), W)
        np.testing.assert_array_equal(tensor(out, "b"), B)

    def test_keep(self):
        inp = self.safetensors_in({"format": "pt", "a": "1", "b": "2", "c": "3"})
        r = self.write("r.surg", 'meta "d" = "4"\nmeta keep "a", "d"\n')
        out = self.path("out.safetensors")
        self.run_ok(r, inp, out)
        # "format" goes too: kept only when a pattern names it.
        self.assertEqual(metadata(out), {"a": "1", "d": "4"})

    def test_drop_format(self):
        """The writer adds "format": "pt" where it is missing, unless the
        recipe dropped it; a later set wins over an earlier drop."""
        inp = self.safetensors_in({"x": "1"})
        out = self.path("out.safetensors")
        self.run_ok(self.write("r.surg", "drop \"b\"\n"), inp, out)
        self.assertEqual(metadata(out), {"format": "pt", "x": "1"})
        self.run_ok(self.write("r.surg", 'meta drop "format"\n'), inp, out)
        self.assertEqual(metadata(out), {"x": "1"})
        self.run_ok(self.write("r.surg", 'meta drop "format", "x"\n'), inp, out)
        self.assertIn(metadata(out), (None, {}))
        self.run_ok(self.write("r.surg", 'meta drop "format"\nmeta "format" = "np"\n'), inp, out)
        self.assertEqual(metadata(out), {"format": "np", "x": "1"})

    def test_msgpack_values(self):
        """A Flax TrainState's step and learning rate lifted to metadata."""
        tree = {"step": 1000, "lr": 0.001, "lr32": np.float32(0.25).item(),
                "name": "run-7", "neg": -3, "big": 2 ** 40, "ok": True, "none": None,
                "params": {"w": W, "b": B}, "opt_state": {"1": {}}}
        inp = self.path("state.msgpack")
        with open(inp, "wb") as f:
            f.write(to_bytes(tree))
        r = self.write("r.surg", "\n".join([
            'rename "name" -> "run/name"',
            'meta "step" = str(value("step"))',
            'meta "lr" = str(value("lr"))',
            'meta "name" = value("run/name")',
            'meta "neg" = str(value("neg"))',
            'meta "big" = str(value("big"))',
            'meta "ok" = str(value("ok"))',
            'meta "none" = str(value("none"))',
            'meta "empty" = str(value("opt_state/1"))',
            "",
        ]))
        out = self.path("out.safetensors")
        self.run_ok(r, inp, out)
        m = metadata(out)
        tree_meta = json.loads(m.pop("msgpack.tree"))  # the values stay in the tree too
        self.assertEqual(bytes.fromhex(tree_meta["step"]), msgpack.packb(1000))
        self.assertEqual(m, {"format": "pt", "step": "1000", "lr": repr(0.001), "name": "run-7",
                             "neg": "-3", "big": str(2 ** 40), "ok": "true", "none": "null",
                             "empty": "{}"})
        np.testing.assert_array_equal(tensor(out, "params/w"), W)
        # A float32 (msgpack float 32) reads as its shortest float32 text.
        with open(inp, "wb") as f:
            f.write(msgpack.packb({"w": msgpack.ExtType(1, msgpack.packb(
                        ([2], "float32", B.tobytes()), use_bin_type=True)), "lr": 0.1},
                        use_bin_type=True, use_single_float=True))
        self.run_ok(self.write("r.surg", 'meta "lr" = str(value("lr"))\n'), inp, out)
        self.assertEqual(metadata(out)["lr"], str(np.float32(0.1)))

    def torch_in(self):
        """A training checkpoint as torch.save writes one: a model's and an
        Adam optimizer's state dicts beside an epoch, a learning rate, a
        name, a flag, None; and values no metadata can hold (an int past
        64 bits, a NaN, bytes)."""
        import torch  # here: only these tests need it
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 2)
        opt = torch.optim.Adam(model.parameters(), lr=3e-4, betas=(0.9, 0.999), eps=1e-8)
        model(torch.ones(1, 2)).sum().backward()
        opt.step()
        p = self.path("ckpt.pt")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                    "epoch": 7, "lr": 0.001, "name": 'run-3 \u00e9 "q"', "flag": True,
                    "none": None, "neg": -12, "step": 2 ** 40, "huge": 2 ** 70,
                    "nan": float("nan"), "blob": b"\x00\x01"}, p)
        return p, opt.state_dict()["param_groups"][0]

    def test_torch_values(self):
        """A torch.save file's values that are not tensors lifted to metadata
        with value(); no output writes the record they are kept in."""
        inp, group = self.torch_in()
        r = self.write("r.surg", "\n".join([
            'meta "epoch" = str(value("epoch"))',
            'meta "lr" = str(value("lr"))',
            'meta "name" = value("name")',
            'meta "flag" = str(value("flag"))',
            'meta "none" = str(value("none"))',
            'meta "neg" = str(value("neg"))',
            'meta "step" = str(value("step"))',
            'meta "opt_lr" = str(value("optimizer.param_groups.0.lr"))',
            'meta "opt_eps" = str(value("optimizer.param_groups.0.eps"))',
            'meta "beta2" = str(value("optimizer.param_groups.0.betas.1"))',
            'meta "amsgrad" = str(value("optimizer.param_groups.0.amsgrad"))',
            "",
        ]))
        out = self.path("out.safetensors")
        err = self.run_ok(r, inp, out)
        self.assertIn('are kept in the metadata "torch.values" for value()', err)
        self.assertEqual(metadata(out), {
            "format": "pt", "epoch": "7", "lr": repr(0.001), "name": 'run-3 \u00e9 "q"',
            "flag": "true", "none": "null", "neg": "-12", "step": str(2 ** 40),
            "opt_lr": repr(group["lr"]), "opt_eps": repr(group["eps"]),
            "beta2": repr(group["betas"][1]), "amsgrad": json.dumps(group["amsgrad"])})
        self.assertEqual(repr(group["eps"]), "1e-08")  # Python's shortest text, as surg's
        # The tensors are carried as ever.
        self.assertEqual(sorted(k for k in header(out) if k != "__metadata__"),
                         ["model.bias", "model.weight", "optimizer.state.0.exp_avg",
                          "optimizer.state.0.exp_avg_sq", "optimizer.state.0.step",
                          "optimizer.state.1.exp_avg", "optimizer.state.1.exp_avg_sq",
                          "optimizer.state.1.step"])
        # Without a meta statement nothing of it is written, to any output.
        r = self.write("r.surg", 'drop "optimizer.**"\n')
        self.run_ok(r, inp, out)
        self.assertEqual(metadata(out), {"format": "pt"})
        err = self.run_ok(r, inp, self.path("out.npz"))
        self.assertNotIn("warning", err)
        # Renamed as earlier statements said, like a msgpack's values.
        r = self.write("r.surg", 'rename "epoch" -> "run.epoch"\n'
                                 'meta "e" = str(value("run.epoch"))\n')
        self.run_ok(r, inp, out)
        self.assertEqual(metadata(out), {"format": "pt", "e": "7"})
        # With several inputs a path names its input, as tensor names do.
        import torch
        s = self.path("state.pt")
        torch.save({"mu": torch.zeros(2), "epoch": 9}, s)
        r = self.write("r.surg", 'meta "e" = str(value("params/epoch"))\n'
                                 'meta "s" = str(value("opt_state/epoch"))\n')
        po, so = self.path("po.safetensors"), self.path("so.safetensors")
        self.run_ok(r, "--params", inp, "--state", s, po, so)
        self.assertEqual(metadata(po), {"format": "pt", "e": "7", "s": "9"})
        self.assertEqual(metadata(so), {"format": "pt", "e": "7", "s": "9"})

    def test_torch_value_errors(self):
        inp, _ = self.torch_in()
        cases = [
            ('value("model.weight")',
             'r.surg:1:22: error: "model.weight" is a tensor, not a value: metadata holds '
             'strings'),
            ('value("epochs")', 'r.surg:1:22: error: there is no value at "epochs"\n'
             '    1 | meta "x" = str(value("epochs"))\n'
             '      |                      ^~~~~~~~\n'
             'note: did you mean "epoch"?\n'
             'note: the values are at: "optimizer.param_groups.0.lr", '),
            # An int past 64 bits and a NaN have no JSON text: not kept.
            ('value("huge")', 'r.surg:1:22: error: there is no value at "huge"\n'),
            ('value("nan")', 'r.surg:1:22: error: there is no value at "nan"\n'),
            ('value("epoch")',
             'r.surg:1:12: error: this value is a number (7), not a string: safetensors\' '
             '__metadata__ maps strings to strings\n'
             '    1 | meta "x" = value("epoch")\n'
             '      |            ^~~~~~~~~~~~~~\n'
             'note: str(value("epoch")) keeps its JSON text\n'),
        ]
        for expr, message in cases:
            with self.subTest(expr):
                r = self.write("r.surg", 'meta "x" = str(%s)\n' % expr
                               if "epoch\"" not in expr else 'meta "x" = %s\n' % expr)
                rc, _, err = run_surg(ARGS.surg, "check", r, "--from", inp)
                self.assertEqual(rc, 1, err)
                self.assertIn(message, err.replace(self.dir + os.sep, ""))

    def test_torch_values_bounded(self):
        """Past 64 KiB of values none is kept, and the note says so."""
        import torch
        p = self.path("big.pt")
        torch.save({"w": torch.zeros(2), "epoch": 1, "texts": ["%04d" % i + "x" * 996
                                                               for i in range(70)]}, p)
        r = self.write("r.surg", 'meta "e" = str(value("epoch"))\n')
        rc, _, err = run_surg(ARGS.surg, "check", r, "--from", p)
        self.assertEqual(rc, 1, err)
        self.assertIn('and 68 more; too many to keep (over 64 KiB, or paths over 1 MiB), '
                      'value() reads none\n', err)
        self.assertIn('error: there is no value at "epoch"\n', err)
        torch.save({"w": torch.zeros(2), "epoch": 1, "texts": ["x" * 996] * 60}, p)
        self.assertEqual(run_surg(ARGS.surg, "check", r, "--from", p)[0], 0)

    def test_json_beside_recipe(self):
        """A relative path is read from the recipe's directory, whatever the
        working directory; an absolute path as it is."""
        sub = os.path.join(self.dir, "recipes")
        os.mkdir(sub)
        with open(os.path.join(sub, "cfg.json"), "w") as f:
            json.dump({"r": 4}, f)
        other = self.write("other.json", '{"k": "v"}')
        r = os.path.join(sub, "r.surg")
        with open(r, "w") as f:
            f.write('meta "r" = str(json("cfg.json", "r"))\nmeta "k" = json(%s, "k")\n'
                    % json.dumps(other))
        inp = self.safetensors_in({"format": "pt"})
        out = self.path("out.safetensors")
        self.run_ok(r, inp, out)
        self.assertEqual(metadata(out), {"format": "pt", "r": "4", "k": "v"})

    def test_json_strict_and_bounded(self):
        inp = self.safetensors_in({"format": "pt"})
        out = self.path("out.safetensors")
        cases = [
            ('{"r": 1, "r": 2}', 'duplicate key "r"'),
            ('{"r": 01}', "is not JSON"),
            ('{"r": 1} x', "is not JSON"),
            ("[" * 200 + "]" * 200, "is not JSON"),
        ]
        for text, want in cases:
            with self.subTest(text=text[:20]):
                self.write("c.json", text)
                r = self.write("r.surg", 'meta "r" = str(json("c.json"))\n')
                rc, _, err = run_surg(ARGS.surg, "check", r, "--from", inp)
                self.assertEqual(rc, 1, err)
                self.assertIn("r.surg:1:21: error: ", err)
                self.assertIn(want, err)
                self.assertIn(self.path("c.json"), err)
        with open(self.path("c.json"), "w") as f:
            f.write('{"pad": "' + "x" * (1 << 20) + '"}')
        rc, _, err = run_surg(ARGS.surg, "check", r, "--from", inp)
        self.assertEqual(rc, 1)
        self.assertIn("cannot read \"%s\"" % self.path("c.json"), err)
        os.mkfifo(self.path("fifo.json"))
        r = self.write("r.surg", 'meta "r" = json("fifo.json")\n')
        rc, _, err = run_surg(ARGS.surg, "check", r, "--from", inp, timeout=20)
        self.assertEqual(rc, 1)
        self.assertIn("FIFO", err)
        self.assertFalse(os.path.exists(out))

    def test_several_inputs(self):
        """--params/--state mount two inputs, named params and opt_state:
        input() names one; each output gets the recipe's metadata over its
        own input's."""
        p = self.path("p.safetensors")
        s = self.path("s.safetensors")
        stnp.save(p, {"w": ("F32", W)}, metadata={"format": "pt", "who": "params"},
                  add_format=False)
        stnp.save(s, {"mu/w": ("F32", W)}, metadata={"format": "pt", "who": "state"},
                  add_format=False)
        r = self.write("r.surg", 'meta "from_state" = input("opt_state", "who")\n'
                                 'meta drop "who"\n')
        po, so = self.path("po.safetensors"), self.path("so.safetensors")
        self.run_ok(r, "--params", p, "--state", s, po, so)
        self.assertEqual(metadata(po), {"format": "pt", "from_state": "state"})
        self.assertEqual(metadata(so), {"format": "pt", "from_state": "state"})
        r = self.write("r.surg", 'meta "x" = input("who")\n')
        rc, _, err = run_surg(ARGS.surg, "check", r, "--params", p, "--state", s)
        self.assertEqual(rc, 1)
        self.assertIn('error: there are 2 inputs: say whose metadata, as in '
                      'input("params", "who")', err)
        self.assertIn('note: the inputs: "params", "opt_state"', err)  # in the order given

    def test_other_outputs(self):
        """.npz and .msgpack hold no free metadata: the keys the recipe set
        are named in a warning, and the arrays are written."""
        inp = self.safetensors_in({"format": "pt"})
        r = self.write("r.surg", 'meta "epoch" = "3"\n')
        for name, code in (("out.npz", "npz-metadata"), ("out.msgpack", "mp-metadata")):
            with self.subTest(name):
                err = self.run_ok(r, inp, self.path(name))
                self.assertIn('warning: ', err)
                self.assertIn('the metadata "epoch" is not written', err)
                self.assertIn(code, err + code)  # the code is in --diagnostics json
                self.assertTrue(os.path.exists(self.path(name)))

    def test_plan_shows_edits(self):
        inp = self.safetensors_in({"format": "pt", "note": "x"})
        r = self.write("r.surg", 'meta "a" = "1"\nmeta drop "note"\n')
        rc, out, err = run_surg(ARGS.surg, "plan", r, "--from", inp)
        self.assertEqual((rc, err), (0, ""))
        self.assertIn('  metadata: "a" = "1"\n  metadata: "note" dropped\n', out)
        rc, out, err = run_surg(ARGS.surg, "plan", r, "--from", inp, "--json")
        self.assertEqual(rc, 0)
        self.assertEqual(json.loads(out)["metadata"], {"a": "1", "format": "pt"})


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ARGS, rest = ap.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=1)


if __name__ == "__main__":
    main()
