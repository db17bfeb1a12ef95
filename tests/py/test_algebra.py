"""test_algebra.py: map's algebra through `surg run`, every value against
NumPy: matmul and `@` (2-D, batched, broadcast batches, 1-D operands, several
dtypes, a contraction longer than a chunk, under a transpose), a LoRA merge
W + 2.0 * (B @ A) over several modules of a checkpoint, row and column
normalization and the other reductions over an axis, NumPy broadcasting of
[n, 1] against [1, m]; the same bytes for 1 and 4 threads; a merge into a
~200 MB W whose peak memory stays far below W; `surg plan` naming what is
held; `surg fmt` of the new syntax.

Tolerances (docs/numerics.md): surg sums a matmul's products in double in
order and rounds once, so its f32 result is within one ulp of the product
computed in float64 by NumPy and rounded to f32; against NumPy's own f32
matmul it is within k * 2^-24 * (|A| @ |B|).

usage: test_algebra.py --surg SURG [unittest args]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402

ARGS = None  # filled in by main()
F, D = np.float32, np.float64
ST = {np.dtype(F): "F32", np.dtype(D): "F64", np.dtype(np.float16): "F16",
      np.dtype(np.int32): "I32"}


def save(path, arrays):
    stnp.save(path, {k: (ST[v.dtype], v) for k, v in arrays.items()})


def load(path):
    tensors, _, _ = stnp.load(path)
    return {k: v[1] for k, v in tensors.items()}


def ulps(a, b):
    """How many f32 steps apart a and b are, elementwise."""
    a = np.asarray(a, F).astype(D)
    b = np.asarray(b, F).astype(D)
    step = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(F)).astype(D)
    return np.abs(a - b) / step


class Algebra(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.rng = np.random.default_rng(16)

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def run_recipe(self, text, arrays, threads=2, name="r.surg"):
        recipe = self.path(name)
        with open(recipe, "w") as f:
            f.write(text)
        src, out = self.path("in.safetensors"), self.path("out-%d.safetensors" % threads)
        if arrays is not None:
            save(src, arrays)
        rc, _, err = runutil.run_surg(ARGS.surg, "run", recipe, src, out, "--threads", threads)
        self.assertEqual((rc, err), (0, ""))
        return load(out), out

    def normal(self, *shape, dtype=F):
        return self.rng.standard_normal(shape).astype(dtype)

    # ---- matmul -----------------------------------------------------------

    def check_f32(self, got, a, b):
        """Within one ulp of the float64 product rounded to f32, and within
        the documented bound of NumPy's f32 matmul."""
        exact = np.matmul(a.astype(D), b.astype(D))
        self.assertEqual(got.shape, exact.shape)
        self.assertEqual(got.dtype, F)
        self.assertLessEqual(float(np.max(ulps(got, exact.astype(F)), initial=0)), 1.0)
        k = a.shape[-1]
        bound = k * 2.0 ** -24 * np.matmul(np.abs(a).astype(D), np.abs(b).astype(D))
        self.assertTrue(np.all(np.abs(got.astype(D) - np.matmul(a, b).astype(D)) <= bound + 1e-30))

    def test_matmul_shapes(self):
        a = {
            "a2": self.normal(37, 19), "b2": self.normal(19, 23),
            "a3": self.normal(3, 5, 7), "b3": self.normal(3, 7, 4),
            "a4": self.normal(2, 1, 5, 7), "bb": self.normal(3, 7, 4),
            "v": self.normal(7), "m": self.normal(5, 7),
            "o1": self.normal(1), "o2": self.normal(1), "o3": self.normal(1), "o4": self.normal(1),
            "o5": self.normal(1), "o6": self.normal(1), "o7": self.normal(1),
        }
        out, _ = self.run_recipe(
            'map "o1" = tensor("a2") @ tensor("b2")\n'
            'map "o2" = matmul(tensor("a3"), tensor("b3"))\n'
            'map "o3" = tensor("a4") @ tensor("bb")\n'        # batch axes broadcast
            'map "o4" = tensor("v") @ tensor("b3")\n'         # 1-D left: [7] as [1, 7]
            'map "o5" = tensor("m") @ tensor("v")\n'          # 1-D right: [7] as [7, 1]
            'map "o6" = tensor("v") @ tensor("v")\n'          # both 1-D: a scalar
            'map "o7" = transpose(tensor("a2") @ tensor("b2"))\n', a)
        self.check_f32(out["o1"], a["a2"], a["b2"])
        self.check_f32(out["o2"], a["a3"], a["b3"])
        self.check_f32(out["o3"], a["a4"], a["bb"])
        self.assertEqual(out["o3"].shape, (2, 3, 5, 4))
        self.check_f32(out["o4"], a["v"], a["b3"])
        self.assertEqual(out["o4"].shape, (3, 4))
        self.check_f32(out["o5"], a["m"], a["v"])
        self.assertEqual(out["o5"].shape, (5,))
        self.check_f32(out["o6"], a["v"], a["v"])
        self.assertEqual(out["o6"].shape, ())
        self.assertTrue(np.array_equal(out["o7"], out["o1"].T))

    def test_matmul_dtypes(self):
        a = {
            "d1": self.normal(9, 13, dtype=D), "d2": self.normal(13, 6, dtype=D),
            "h1": self.normal(8, 5).astype(np.float16), "h2": self.normal(5, 3).astype(np.float16),
            "i1": self.rng.integers(-1000, 1000, (4, 6)).astype(np.int32),
            "i2": self.rng.integers(-1000, 1000, (6, 5)).astype(np.int32),
            "o1": self.normal(1), "o2": self.normal(1), "o3": self.normal(1), "o4": self.normal(1),
        }
        out, _ = self.run_recipe(
            'map "o1" = tensor("d1") @ tensor("d2")\n'
            'map "o2" = tensor("h1") @ tensor("h2")\n'
            'map "o3" = tensor("i1") @ tensor("i2")\n'
            'map "o4" = tensor("h1") @ cast(tensor("h2"), f32)\n', a)
        exact = a["d1"] @ a["d2"]
        self.assertEqual(out["o1"].dtype, D)
        np.testing.assert_allclose(out["o1"], exact, rtol=1e-13, atol=1e-13)
        # f16: accumulated in double, rounded to f32 then stored as f16.
        ref = (a["h1"].astype(D) @ a["h2"].astype(D)).astype(F).astype(np.float16)
        self.assertEqual(out["o2"].dtype, np.float16)
        self.assertTrue(np.array_equal(out["o2"], ref))
        self.assertEqual(out["o3"].dtype, np.int32)
        self.assertTrue(np.array_equal(out["o3"], a["i1"] @ a["i2"]))  # exact in double
        self.check_f32(out["o4"], a["h1"].astype(F), a["h2"].astype(F))

    def test_long_contraction(self):
        """k longer than any chunk: the left row is read a stretch at a time."""
        a = {"a": self.normal(3, 150000), "b": self.normal(150000, 2), "o": self.normal(1)}
        out, _ = self.run_recipe('map "o" = tensor("a") @ tensor("b")\n', a)
        self.check_f32(out["o"], a["a"], a["b"])

    def test_lora_merge(self):
        """PEFT's merge: W + scaling * (B @ A), scaling 2.0, every module at
        once; the adapters dropped."""
        arrays, ref = {}, {}
        for i, (o, n) in enumerate([(96, 64), (64, 96), (300, 40)]):
            w, b, aa = self.normal(o, n), self.normal(o, 8) * F(0.1), self.normal(8, n)
            arrays["model.layers.%d.proj.weight" % i] = w
            arrays["base_model.model.model.layers.%d.proj.lora_B.weight" % i] = b
            arrays["base_model.model.model.layers.%d.proj.lora_A.weight" % i] = aa
            ref["model.layers.%d.proj.weight" % i] = (w, b, aa)
        out, _ = self.run_recipe(
            'map "model.layers.*.proj.weight" = x + 2.0 * ('
            'tensor("base_model.model.model.layers.$1.proj.lora_B.weight") @ '
            'tensor("base_model.model.model.layers.$1.proj.lora_A.weight"))\n'
            'drop "base_model.**"\n', arrays)
        self.assertEqual(sorted(out), sorted(ref))
        for name, (w, b, aa) in ref.items():
            delta = (b.astype(D) @ aa.astype(D)).astype(F)
            want = w + F(2.0) * delta
            self.assertLessEqual(float(np.max(ulps(out[name], want))), 2.0, name)

    # ---- broadcasting and reductions over an axis --------------------------

    def test_broadcast(self):
        a = {"c": self.normal(50, 1), "r": self.normal(1, 70), "v": self.normal(70),
             "m": self.normal(3, 50, 70), "lo": self.normal(50, 1)}
        a["v"] = np.abs(a["v"])  # above the lower bound (clip(x, lo, hi) wants lo <= hi)
        out, _ = self.run_recipe(
            'map "c" = x + tensor("r")\n'
            'map "m" = x * tensor("v") - tensor("lo")\n'
            'map "lo" = clip(x, -0.5, tensor("v"))\n', a)
        self.assertTrue(np.array_equal(out["c"], a["c"] + a["r"]))
        self.assertTrue(np.array_equal(out["m"], a["m"] * a["v"] - a["lo"]))
        self.assertTrue(np.array_equal(out["lo"], np.clip(a["lo"], F(-0.5), a["v"])))

    def test_reductions_over_axes(self):
        x = self.normal(40, 30)
        cube = self.normal(4, 5, 6)
        a = {"x": x, "rows": x, "cols": x, "cube": cube, "c0": cube, "c1": cube, "c2": cube,
             "c3": cube, "c4": cube}
        out, _ = self.run_recipe(
            'map "rows" = x / norm(x, axis=1, keepdims=true)\n'
            'map "cols" = x / norm(x, axis=0, keepdims=true)\n'
            'map "c0" = x - mean(x, axis=-1, keepdims=true)\n'
            'map "c1" = sum(x, axis=1)\n'
            'map "c2" = std(x, 0)\n'
            'map "c3" = max(x, axis=1, keepdims=true) - min(x, axis=1, keepdims=true)\n'
            'map "c4" = x / norm(x, keepdims=true)\n', a)
        xd, cd = x.astype(D), cube.astype(D)

        def near(got, want, tol=2.0):
            self.assertEqual(got.shape, want.shape)
            self.assertLessEqual(float(np.max(ulps(got, want.astype(F)), initial=0)), tol)

        near(out["rows"], x / np.linalg.norm(xd, axis=1, keepdims=True).astype(F))
        near(out["cols"], x / np.linalg.norm(xd, axis=0, keepdims=True).astype(F))
        near(out["c0"], cube - cd.mean(axis=-1, keepdims=True).astype(F))
        near(out["c1"], cd.sum(axis=1))
        near(out["c2"], cd.std(axis=0))
        near(out["c3"], cd.max(axis=1, keepdims=True) - cd.min(axis=1, keepdims=True))
        near(out["c4"], cube / np.float32(np.linalg.norm(cd)))

    def test_reduction_cuts(self):
        """Operands whose slabs are bigger than a chunk, and whose inner
        stretch is too: each result still folds its axis in order."""
        a = {"big": self.normal(2, 50000, 4), "wide": self.normal(3, 2, 100000),
             "s": self.normal(2, 50000, 4), "w": self.normal(3, 2, 100000)}
        out, _ = self.run_recipe(
            'map "s" = mean(tensor("big"), axis=1, keepdims=true) + 0 * x\n'
            'map "w" = x / norm(x, axis=1, keepdims=true)\n', a)
        want = a["big"].astype(D).mean(axis=1, keepdims=True).astype(F) + 0 * a["s"]
        self.assertLessEqual(float(np.max(ulps(out["s"], want))), 1.0)
        wd = a["w"].astype(D)
        want = a["w"] / np.linalg.norm(wd, axis=1, keepdims=True).astype(F)
        self.assertLessEqual(float(np.max(ulps(out["w"], want))), 2.0)

    # ---- threads, memory, plan, fmt ---------------------------------------

    def test_threads_identical(self):
        a = {"W": self.normal(700, 300), "B": self.normal(700, 16), "A": self.normal(16, 300),
             "X": self.normal(64, 500, 3)}
        text = ('map "W" = x + 2.0 * (tensor("B") @ tensor("A")) - mean(x, axis=0, keepdims=true)\n'
                'map "X" = x / norm(x, axis=1, keepdims=true)\n'
                'map "A" = transpose(tensor("W") @ transpose(tensor("W")))\n')
        _, one = self.run_recipe(text, a, threads=1)
        _, four = self.run_recipe(text, None, threads=4)
        self.assertEqual(runutil.sha256(one), runutil.sha256(four))

    def test_memory_bound(self):
        """A merge into a ~200 MB W keeps well under W's size in memory."""
        out, r = 12800, 16
        n = 4096
        src = self.path("big.safetensors")
        b, aa = self.normal(out, r), self.normal(r, n)
        entries = [("A", "F32", [r, n], aa.nbytes), ("B", "F32", [out, r], b.nbytes),
                   ("W", "F32", [out, n], out * n * 4)]
        header = stnp.header_bytes(entries)
        with open(src, "wb") as f:  # W written a block at a time
            f.write(len(header).to_bytes(8, "little") + header + aa.tobytes() + b.tobytes())
            for _ in range(0, out, 1600):
                f.write(self.rng.standard_normal((1600, n), dtype=F).tobytes())
        recipe = self.path("merge.surg")
        with open(recipe, "w") as f:
            f.write('map "W" = x + 2.0 * (tensor("B") @ tensor("A"))\ndrop "{A,B}"\n')
        dst = self.path("merged.safetensors")
        # A child's peak RSS counts its parent's at the fork: surg is started
        # by a fresh, small Python (no NumPy), not by this one.
        r = subprocess.run([sys.executable, "-c", PEAK_RSS, ARGS.surg, "run", recipe, src, dst,
                            "--threads", "2", "-q"], capture_output=True, timeout=300,
                           env=dict(os.environ, CI="1"))
        self.assertEqual((r.returncode, r.stderr.decode()), (0, ""))
        peak = int(r.stdout) * 1024
        self.assertLess(peak, 80 << 20, "peak RSS %d bytes for a 210 MB W" % peak)
        got = np.memmap(dst, dtype=F, mode="r", offset=stnp_data_offset(dst) +
                        stnp_offset_of(dst, "W"), shape=(out, n))
        src_w = np.memmap(src, dtype=F, mode="r", offset=stnp_data_offset(src) +
                          stnp_offset_of(src, "W"), shape=(out, n))
        for i in range(0, out, 3200):  # spot-check blocks of rows
            delta = (b[i:i + 64].astype(D) @ aa.astype(D)).astype(F)
            want = src_w[i:i + 64] + F(2.0) * delta
            self.assertLessEqual(float(np.max(ulps(got[i:i + 64], want))), 2.0)

    def test_plan_says_what_is_held(self):
        a = {"W": self.normal(64, 48), "B": self.normal(64, 4), "A": self.normal(4, 48)}
        save(self.path("p.safetensors"), a)
        recipe = self.path("p.surg")
        with open(recipe, "w") as f:
            f.write('map "W" = x + 2.0 * (tensor("B") @ tensor("A"))\n'
                    'map "B" = x / norm(x, axis=1, keepdims=true)\n')
        rc, out, err = runutil.run_surg(ARGS.surg, "plan", recipe, "--from",
                                        self.path("p.safetensors"), "--threads", "1")
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("holds 768 B: f32[4, 48] A, the right operand of a matmul", out)
        self.assertIn("holds 512 B: f32[64, 1] norm(B, axis=1, keepdims=true), "
                      "a reduction over an axis", out)

    def test_fmt_round_trip(self):
        text = ('map "w"=x+2.0*(tensor("b")@tensor("a"))\n'
                'map "v" = (x @ x) @ x ; map "u" = x @ (x @ x)\n'
                'map "n" = x/norm(x,axis=-1,keepdims=true) - matmul(x, x) * 2\n')
        want = ('map "w" = x + 2.0 * (tensor("b") @ tensor("a"))\n'
                'map "v" = x @ x @ x\n'
                'map "u" = x @ (x @ x)\n'
                'map "n" = x / norm(x, axis=-1, keepdims=true) - matmul(x, x) * 2\n')
        def fmt(recipe):
            r = subprocess.run([ARGS.surg, "fmt", "-"], input=recipe.encode(),
                               capture_output=True, timeout=60)
            return r.returncode, r.stdout.decode(), r.stderr.decode()

        self.assertEqual(fmt(text), (0, want, ""))
        self.assertEqual(fmt(want), (0, want, ""))


PEAK_RSS = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stdout.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def stnp_header(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return 8 + n, json.loads(f.read(n))


def stnp_data_offset(path):
    return stnp_header(path)[0]


def stnp_offset_of(path, name):
    return stnp_header(path)[1][name]["data_offsets"][0]


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--surg", required=True)
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
