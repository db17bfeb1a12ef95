#!/usr/bin/env python3
"""surg invert: for every invertible recipe (examples and tests/golden/invert/ok),
run(invert(R), run(R, X)) == X byte for byte — names, dtypes, shapes and the
bytes of every tensor, read with the independent reader stnp.py (metadata
aside) — on checkpoints made with NumPy; the inverse is in canonical layout
(`surg fmt --check`) and compiles against the result; every statement with no
inverse is an error at its line, with a note (goldens:
tests/golden/invert/errors/*.err).

usage: test_invert.py --surg SURG --golden DIR --examples DIR [--update]"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402

ARGS = None


def random_tensor(rng, dtype, shape):
    """Values of every dtype, finite and varied (no NaN: a NaN's payload
    is no value a cast must keep)."""
    shape = tuple(shape)
    if dtype == "BF16":
        f = rng.standard_normal(shape).astype("<f4")
        return (f.view("<u4") >> 16).astype("<u2")
    if dtype in ("F16", "F32", "F64"):
        return rng.standard_normal(shape).astype(stnp.DTYPES[dtype][0])
    if dtype == "BOOL":
        return rng.integers(0, 2, shape).astype("?")
    info = np.iinfo(np.dtype(stnp.DTYPES[dtype][0]))
    return rng.integers(info.min, info.max, shape, endpoint=True,
                        dtype=np.dtype(stnp.DTYPES[dtype][0]))


def make_checkpoint(schema, out, seed=0):
    with open(schema) as f:
        s = json.load(f)
    rng = np.random.default_rng(seed)
    tensors = {name: (e["dtype"], random_tensor(rng, e["dtype"], e["shape"]))
               for name, e in s.items() if name != "__metadata__"}
    stnp.save(out, tensors)
    return out


class Invert(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-invert-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, *p):
        return os.path.join(self.tmp, *p)

    def surg(self, *args):
        return runutil.run_surg(ARGS.surg, "--color", "never", *args)

    def roundtrip(self, recipe, x, name):
        """X -> run R -> run invert(R) -> X again, byte for byte."""
        y = self.path(name + ".y.safetensors")
        code, _, err = self.surg("run", recipe, x, y)
        self.assertEqual(code, 0, "run %s: %s" % (recipe, err))
        code, inv, err = self.surg("invert", recipe, "--from", x)
        self.assertEqual((code, err), (0, ""), "invert %s" % recipe)
        inv_path = self.path(name + ".inverse.surg")
        with open(inv_path, "w") as f:
            f.write(inv)
        code, _, err = self.surg("fmt", "--check", inv_path)
        self.assertEqual((code, err), (0, ""), "the inverse of %s is not canonical" % recipe)
        code, _, err = self.surg("check", inv_path, "--from", y)
        self.assertEqual((code, err.count("error")), (0, 0), err)
        z = self.path(name + ".z.safetensors")
        code, _, err = self.surg("run", inv_path, y, z)
        self.assertEqual(code, 0, "run the inverse of %s: %s\n%s" % (recipe, err, inv))
        want, _, _ = stnp.load_raw(x)
        got, _, _ = stnp.load_raw(z)
        self.assertEqual(sorted(got), sorted(want), "names, inverse:\n" + inv)
        for n in want:
            self.assertEqual(got[n][0], want[n][0], "dtype of " + n)
            self.assertEqual(list(got[n][1]), list(want[n][1]), "shape of " + n)
            self.assertTrue(got[n][2] == want[n][2], "the bytes of %s differ" % n)
        return inv

    def test_golden_recipes(self):
        x = make_checkpoint(os.path.join(ARGS.golden, "invert", "model.json"),
                            self.path("x.safetensors"))
        cases = sorted(glob.glob(os.path.join(ARGS.golden, "invert", "ok", "*.surg")))
        self.assertGreaterEqual(len(cases), 10)
        for rel in cases:
            with self.subTest(os.path.basename(rel)):
                self.roundtrip(rel, x, os.path.basename(rel)[:-5])

    def test_check_goldens(self):
        """The golden recipes of `surg check` that check clean (a keep of
        everything, the Flax guide's rename with Adam state), on a checkpoint
        of examples/mlp/two_layer_mlp.json."""
        x = make_checkpoint(os.path.join(ARGS.examples, "mlp", "two_layer_mlp.json"),
                            self.path("mlp.safetensors"), seed=5)
        for name in ("mlp_keep.surg", "mlp_rename.surg"):
            with self.subTest(name):
                self.roundtrip(os.path.join(ARGS.golden, "check", "ok", name), x, name[:-5])

    def example(self, name):
        return os.path.join(ARGS.examples, name)

    def make(self, script, name, *options):
        out = self.path(name)
        r = subprocess.run([sys.executable, self.example(script), *options, out],
                           capture_output=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        return out

    def test_examples(self):
        mlp = self.make("make_mlp_checkpoint.py", "mlp.safetensors")
        for recipe in ("mlp_rename.surg", "mlp_lora.surg", "convert.surg"):
            with self.subTest(recipe):
                self.roundtrip(self.example(recipe), mlp, recipe[:-5])
        torch = self.make("make_torch_mlp_checkpoint.py", "torch.safetensors")
        with self.subTest("torch_to_flax.surg"):
            inv = self.roundtrip(self.example("torch_to_flax.surg"), torch, "t2f")
            self.assertIn('map "params/Dense_0/kernel" = transpose(x, 1, 0)', inv)

    def test_examples_without_inverse(self):
        """The examples that discard values: an error at the statement."""
        cases = [("make_mlp_checkpoint.py", "mlp_fill_kernel.surg", "fill has no inverse"),
                 ("make_mlp_checkpoint.py", "mlp_port_lora.surg", "div is not one of"),
                 ("make_torch_mlp_checkpoint.py", "torch_to_flax_adam.surg",
                  "drop has no inverse"),
                 ("make_cnn_checkpoint.py", "cnn_normalize.surg", "this value has no inverse"),
                 ("make_llama_checkpoint.py", "llama_tie_embeddings.surg",
                  "tie has no inverse here")]
        for script, recipe, msg in cases:
            with self.subTest(recipe):
                opts = ("--adam",) if "adam" in recipe else ()
                x = self.make(script, recipe + ".safetensors", *opts)
                code, out, err = self.surg("invert", self.example(recipe), "--from", x)
                self.assertEqual((code, out), (1, ""))
                self.assertIn(msg, err)
                self.assertIn("note: ", err)

    def test_error_goldens(self):
        cases = sorted(glob.glob(os.path.join(ARGS.golden, "invert", "errors", "*.surg")))
        self.assertGreaterEqual(len(cases), 10)
        for full in cases:
            rel = os.path.relpath(full, ARGS.golden)
            with self.subTest(rel):
                p = subprocess.run([ARGS.surg, "--color", "never", "invert", rel, "--from",
                                    "invert/model.json"], capture_output=True,
                                   cwd=ARGS.golden, timeout=60)
                self.assertEqual((p.returncode, p.stdout), (1, b""))
                err = p.stderr.decode()
                exp = full[:-5] + ".err"
                if ARGS.update:
                    with open(exp, "w") as f:
                        f.write(err)
                with open(exp) as f:
                    self.assertEqual(f.read(), err)

    def test_ties(self):
        """An input with a tied name (surg.ties): untie inverts to tie, and a
        tied name the recipe leaves alone is tied again."""
        a = np.arange(6, dtype="<f4").reshape(2, 3)
        x0 = self.path("t0.safetensors")
        stnp.save(x0, {"a": ("F32", a), "b": ("F32", a.copy()), "c": ("F32", a * 3)})
        tie = self.path("tie.surg")
        with open(tie, "w") as f:
            f.write('tie "b" = "a"\n')
        x = self.path("tied.safetensors")
        self.assertEqual(self.surg("run", tie, x0, x)[0], 0)
        _, meta_x, _ = stnp.load_raw(x)
        self.assertEqual(json.loads(meta_x["surg.ties"]), {"b": "a"})
        for i, text in enumerate(['untie "b"\nrename "a" -> "z"\nmap "b" = transpose(x)\n',
                                  'rename "a" -> "q"\n']):
            r = self.path("r%d.surg" % i)
            with open(r, "w") as f:
                f.write(text)
            inv = self.roundtrip(r, x, "tie%d" % i)
            self.assertIn('tie "b" = "a"', inv)
            _, meta_z, _ = stnp.load_raw(self.path("tie%d.z.safetensors" % i))
            self.assertEqual(json.loads(meta_z["surg.ties"]), {"b": "a"})

    def test_mirror_adafactor(self):
        """mirror with t5x's factored Adafactor slots (tests/golden/check/
        t5x.json): renames and transposes of parameters, whose factored
        slots swap v_row and v_col on a square kernel, and a new parameter
        with new slots; the inverse moves every slot back explicitly."""
        x = make_checkpoint(os.path.join(ARGS.golden, "check", "t5x.json"),
                            self.path("t5x.safetensors"), seed=7)
        r = self.path("t5x.surg")
        with open(r, "w") as f:
            f.write('mirror "target/" -> "state/param_states/$1/m" factored '
                    '"state/param_states/$1/v", "state/param_states/$1/v_row", '
                    '"state/param_states/$1/v_col"\n'
                    'rename "target/encoder/**" -> "target/enc/$1"\n'
                    'map "target/enc/{dense,square,small}/kernel" = transpose(x)\n'
                    'fill "target/enc/new/kernel" : f32[256, 192] = zeros\n')
        inv = self.roundtrip(r, x, "t5x")
        self.assertIn('rename "state/param_states/enc/square/kernel/v_row" -> '
                      '"state/param_states/encoder/square/kernel/v_col"', inv)

    def test_names_quoted(self):
        """Names holding glob characters, `$`, quotes and backslashes come
        back: escaped in patterns, `$$` in templates."""
        a = np.arange(6, dtype="<f4").reshape(2, 3)
        x = self.path("odd.safetensors")
        stnp.save(x, {'a*[x]{y}$1"q\\': ("F32", a), "b?": ("I8", np.arange(4, dtype="i1")),
                      "__inverse/c": ("F32", a * 2)})
        r = self.path("odd.surg")
        with open(r, "w") as f:
            f.write('rename "**" -> "new/$1"\nmap "new/b?" = cast(x, f64)\n')
        self.roundtrip(r, x, "odd")

    def test_schema_input(self):
        """--from a schema: the same inverse as from the checkpoint."""
        schema = os.path.join(ARGS.golden, "invert", "model.json")
        x = make_checkpoint(schema, self.path("x.safetensors"))
        r = os.path.join(ARGS.golden, "invert", "ok", "09-chain.surg")
        a = self.surg("invert", r, "--from", schema)
        b = self.surg("invert", r, "--from", x)
        self.assertEqual(a[0], 0)
        self.assertEqual(a[1], b[1])

    def test_usage(self):
        code, out, _ = self.surg("invert", "--help")
        self.assertEqual(code, 0)
        self.assertIn("usage: surg invert RECIPE --from", out)
        self.assertEqual(self.surg("invert", "r.surg"),
                         (2, "", "surg invert: --from CKPT|SCHEMA is needed: what does the "
                          "recipe apply to?\n(see `surg invert --help`)\n"))


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ap.add_argument("--golden", required=True)
    ap.add_argument("--examples", required=True)
    ap.add_argument("--update", action="store_true")
    ARGS, rest = ap.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=1)


if __name__ == "__main__":
    main()
