"""test_diff.py: `surg diff A B` against NumPy: pairs built with NumPy (equal;
one value 1 ULP away; NaNs and their payloads; -0 and +0; names missing and
extra; a dtype and a shape changed; tolerances at their boundary against
numpy.isclose; bf16; integers; a sharded set against one file; .npz and
Flax .msgpack against safetensors; schemas), every count, maximum and first
index computed in NumPy; `--recipe` (a normalization streamed into the
comparison, equal within rtol, different bit for bit; the same with 1 and 3
threads); peak memory on a ~200 MB pair; exit codes and usage errors.

usage: test_diff.py --surg SURG [unittest args]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import unittest

import msgpack
import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402

ARGS = None  # filled in by main()
ST = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64",
      np.dtype(np.float16): "F16", np.dtype(np.int32): "I32", np.dtype(np.int64): "I64",
      np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}

PEAK_RSS = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stdout.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def save(path, arrays):
    stnp.save(path, {k: v if isinstance(v, tuple) else (ST[v.dtype], v)
                     for k, v in arrays.items()})


def ordered(bits, width):
    """Sign-magnitude float bits on one line of integers (-0 and +0 are 0)."""
    bits = bits.astype(object)
    sign = 1 << (width - 1)
    return np.array([-(b & (sign - 1)) if b & sign else b for b in bits.ravel()], dtype=object)


def expect(a, b, rtol=None, atol=None, width=None):
    """What surg diff reports for two arrays of one float dtype, computed
    with NumPy: (differing, max_abs, max_rel, max_ulp, first index)."""
    uint = {16: np.uint16, 32: np.uint32, 64: np.uint64}[width]
    ba, bb = a.view(uint).ravel(), b.view(uint).ravel()
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    if rtol is None:
        differ = ba != bb
    else:
        differ = ~np.isclose(x, y, rtol=rtol, atol=atol, equal_nan=True)
    ok = ~(np.isnan(x) | np.isnan(y))
    with np.errstate(divide="ignore", invalid="ignore"):
        absd = np.where(x == y, 0.0, np.abs(x - y))
        rel = np.where(absd == 0, 0.0, absd / np.abs(y))
    ulp = np.abs(ordered(ba, width) - ordered(bb, width))
    first = np.unravel_index(int(np.argmax(differ)), a.shape) if differ.any() else None
    return (int(differ.sum()), float(absd[ok].max(initial=0)), float(rel[ok].max(initial=0)),
            int(ulp[ok].max(initial=0)), [int(i) for i in first] if first else None)


class Diff(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.rng = np.random.default_rng(17)

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def surg(self, *args):
        return runutil.run_surg(ARGS.surg, *args)

    def diff_json(self, a, b, *args, rc=1):
        code, out, err = self.surg("diff", a, b, "--json", *args)
        self.assertEqual(code, rc, err)
        self.assertEqual(err, "")
        return json.loads(out)

    def pair(self, a, b, ext_a="safetensors", ext_b="safetensors"):
        pa, pb = self.path("a." + ext_a), self.path("b." + ext_b)
        for p, arrays in ((pa, a), (pb, b)):
            if p.endswith(".npz"):
                np.savez(p, **arrays)
            else:
                save(p, arrays)
        return pa, pb

    def check_values(self, got, a, b, rtol=None, atol=None, width=32):
        n, mabs, mrel, mulp, first = expect(a, b, rtol, atol, width)
        self.assertEqual(got["status"], "values")
        self.assertEqual(got["differing"], n)
        self.assertEqual(got["elements"], a.size)
        json_num = lambda v: "inf" if v == np.inf else v  # JSON has no infinity
        self.assertEqual(got["max_abs"], json_num(mabs))
        self.assertEqual(got["max_rel"], json_num(mrel))
        self.assertEqual(got["max_ulp"], mulp)
        self.assertEqual(got["first_index"], first)

    # ---- equal and one ULP --------------------------------------------------

    def test_equal(self):
        w = self.rng.standard_normal((3, 5)).astype(np.float32)
        a, b = self.pair({"w": w, "n": np.arange(7, dtype=np.int64)},
                         {"w": w.copy(), "n": np.arange(7, dtype=np.int64)})
        self.assertEqual(self.surg("diff", a, b),
                         (0, "2 compared: 2 equal, 0 differ; 0 only in A, 0 only in B\n", ""))
        got = self.diff_json(a, b, rc=0)
        self.assertEqual(got["equal"], True)
        self.assertEqual(got["mode"], "bit-exact")
        self.assertEqual(got["differences"], [])
        self.assertEqual(got["summary"], {"compared": 2, "equal": 2, "different": 0,
                                          "only_in_a": 0, "only_in_b": 0})

    def test_one_ulp(self):
        w = self.rng.standard_normal((4, 6)).astype(np.float32)
        v = w.copy()
        v.view(np.uint32)[2, 3] += 1
        a, b = self.pair({"w": w}, {"w": v})
        n, mabs, mrel, mulp, first = expect(w, v, width=32)
        self.assertEqual((n, mulp, first), (1, 1, [2, 3]))
        code, out, err = self.surg("diff", a, b)
        self.assertEqual((code, err), (1, ""))
        self.assertEqual(out, "values differ: w: 1 of 24 elements (max abs %.6g, max rel %.6g, "
                              "max ulp 1, first at [2, 3])\n"
                              "1 compared: 0 equal, 1 differ; 0 only in A, 0 only in B\n"
                         % (mabs, mrel))
        got = self.diff_json(a, b)
        self.check_values(got["differences"][0], w, v)
        self.assertEqual(got["differences"][0]["dtype"], ["f32", "f32"])
        self.assertEqual(got["differences"][0]["shape"], [[4, 6], [4, 6]])

    def test_many_random_f64(self):
        w = self.rng.standard_normal((300, 257))
        v = w.copy()
        idx = self.rng.integers(0, w.size, 500)
        v.ravel()[idx] += self.rng.standard_normal(500) * 1e-9
        v.ravel()[7] = -v.ravel()[7]
        a, b = self.pair({"w": w}, {"w": v})
        self.check_values(self.diff_json(a, b)["differences"][0], w, v, width=64)
        for rtol, atol in ((1e-9, 0.0), (0.0, 1e-9), (1e-10, 1e-10)):
            got = self.diff_json(a, b, "--rtol", repr(rtol), "--atol", repr(atol))
            self.check_values(got["differences"][0], w, v, rtol, atol, width=64)

    # ---- NaN and signed zero ------------------------------------------------

    def test_nan(self):
        w = np.array([1.0, np.nan, 3.0, np.nan, 5.0], np.float32)
        same = w.copy()
        a, b = self.pair({"w": w}, {"w": same})
        self.assertEqual(self.surg("diff", a, b)[0], 0)  # the same bits
        payload = w.copy()
        payload.view(np.uint32)[1] = 0x7fc00001  # another NaN
        a, b = self.pair({"w": w}, {"w": payload})
        got = self.diff_json(a, b)["differences"][0]
        self.check_values(got, w, payload)
        self.assertEqual((got["differing"], got["max_abs"], got["first_index"]), (1, 0, [1]))
        # Within a tolerance a NaN equals a NaN in the same place, not a number.
        self.assertEqual(self.surg("diff", a, b, "--atol", "0")[0], 0)
        num = w.copy()
        num[3] = 4.0
        a, b = self.pair({"w": w}, {"w": num})
        got = self.diff_json(a, b, "--atol", "1")["differences"][0]
        self.check_values(got, w, num, 0.0, 1.0)
        self.assertEqual((got["differing"], got["first_index"]), (1, [3]))

    def test_signed_zero(self):
        w = np.array([0.0, 1.0, -0.0], np.float32)
        v = np.array([-0.0, 1.0, -0.0], np.float32)
        a, b = self.pair({"z": w}, {"z": v})
        code, out, _ = self.surg("diff", a, b)
        self.assertEqual(code, 1)
        self.assertEqual(out.splitlines()[0], "values differ: z: 1 of 3 elements (max abs 0, "
                                              "max rel 0, max ulp 0, first at [0])")
        self.assertEqual(self.surg("diff", a, b, "--rtol", "0")[0], 0)

    def test_infinities(self):
        w = np.array([np.inf, -np.inf, 1.0, 0.0], np.float32)
        v = np.array([np.inf, np.inf, np.inf, 1.0], np.float32)
        a, b = self.pair({"w": w}, {"w": v})
        got = self.diff_json(a, b, "--rtol", "0.5")["differences"][0]
        self.assertEqual(got["differing"], 3)
        self.assertEqual(got["max_abs"], "inf")
        self.assertEqual(got["first_index"], [1])

    # ---- names, dtypes, shapes -------------------------------------------------

    def test_names_dtypes_shapes(self):
        w = np.ones((2, 3), np.float32)
        a, b = self.pair({"gone": w, "dt": w, "sh": w, "same": w},
                         {"new": w, "dt": w.astype(np.float16), "sh": w.reshape(3, 2),
                          "same": w})
        code, out, err = self.surg("diff", a, b)
        self.assertEqual((code, err), (1, ""))
        self.assertEqual(out, "dtype differs: dt: f32 vs f16\n"
                              "only in A: gone\n"
                              "only in B: new\n"
                              "shape differs: sh: [2, 3] vs [3, 2]\n"
                              "3 compared: 1 equal, 2 differ; 1 only in A, 1 only in B\n")
        got = self.diff_json(a, b)
        self.assertEqual(got["differences"], [
            {"name": "dt", "status": "dtype", "dtype": ["f32", "f16"],
             "shape": [[2, 3], [2, 3]]},
            {"name": "gone", "status": "only_in_a"},
            {"name": "new", "status": "only_in_b"},
            {"name": "sh", "status": "shape", "dtype": ["f32", "f32"],
             "shape": [[2, 3], [3, 2]]}])
        # Abstract states only: the same answer, no values read.
        self.assertEqual(self.surg("diff", a, b, "--schema")[:2], (code, out))

    def test_schema(self):
        w = np.arange(6, dtype=np.float32).reshape(2, 3)
        a, b = self.pair({"w": w}, {"w": w + 1})
        self.assertEqual(self.surg("diff", a, b)[0], 1)
        self.assertEqual(self.surg("diff", a, b, "--schema"),
                         (0, "1 compared: 1 equal, 0 differ; 0 only in A, 0 only in B\n", ""))
        schema = self.path("s.json")
        with open(schema, "w") as f:
            json.dump({"w": {"dtype": "F32", "shape": [2, 3]}}, f)
        self.assertEqual(self.surg("diff", schema, b)[0], 0)
        with open(schema, "w") as f:
            json.dump({"w": {"dtype": "F32", "shape": [6]}}, f)
        got = self.diff_json(a, schema)
        self.assertEqual(got["mode"], "schema")
        self.assertEqual(got["differences"][0]["status"], "shape")

    # ---- tolerances ----------------------------------------------------------

    def test_tolerance_boundary(self):
        # |a - b| <= atol + rtol * |b|, b from B, at and just past the bound.
        b = np.array([1.0, 1.0, -2.0, 0.0, 0.0, 4.0, 100.0], np.float64)
        a = np.array([1.75, np.nextafter(1.75, 9), -3.5, 0.25, -0.2500001, 4.0, 100.5])
        pa, pb = self.pair({"x": a}, {"x": b})
        for rtol, atol in ((0.5, 0.25), (0.5, 0.0), (0.0, 0.25), (0.005, 0.0)):
            close = np.isclose(a, b, rtol=rtol, atol=atol)
            got = self.diff_json(pa, pb, "--rtol", repr(rtol), "--atol", repr(atol),
                                 rc=0 if close.all() else 1)
            if close.all():
                continue
            self.check_values(got["differences"][0], a, b, rtol, atol, width=64)

    def test_tolerance_random_f32(self):
        b = self.rng.standard_normal(5000).astype(np.float32)
        a = (b * (1 + self.rng.standard_normal(5000) * 1e-4)).astype(np.float32)
        pa, pb = self.pair({"x": a}, {"x": b})
        for rtol, atol in ((1e-4, 1e-6), (3e-4, 0.0), (0.0, 1e-5)):
            got = self.diff_json(pa, pb, "--rtol", repr(rtol), "--atol", repr(atol))
            self.check_values(got["differences"][0], a, b, rtol, atol)

    def test_integers(self):
        x = np.array([1, -5, 2**62, 7], np.int64)
        y = np.array([1, 5, -(2**62), 7], np.int64)
        pa, pb = self.pair({"i": x, "u": np.array([3, 200], np.uint8),
                            "b": np.array([True, False])},
                           {"i": y, "u": np.array([3, 4], np.uint8),
                            "b": np.array([True, True])})
        got = {d["name"]: d for d in self.diff_json(pa, pb)["differences"]}
        self.assertEqual(got["i"]["differing"], 2)
        self.assertEqual(got["i"]["max_ulp"], 2**63)  # the exact integer difference
        self.assertEqual(got["i"]["max_abs"], float(2**63))
        self.assertEqual(got["i"]["first_index"], [1])
        self.assertEqual((got["u"]["max_abs"], got["u"]["max_ulp"]), (196.0, 196))
        self.assertEqual(got["u"]["max_rel"], 196 / 4)
        self.assertEqual((got["b"]["differing"], got["b"]["first_index"]), (1, [1]))
        got = self.diff_json(pa, pb, "--atol", "196")
        self.assertEqual([d["name"] for d in got["differences"]], ["i"])

    def test_bf16(self):
        bits = runutil.f32_to_bf16(self.rng.standard_normal((8, 8)).astype(np.float32))
        other = bits.copy()
        other[5, 1] += 1
        other[6, 2] += 3
        pa, pb = self.pair({"h": ("BF16", bits)}, {"h": ("BF16", other)})
        got = self.diff_json(pa, pb)["differences"][0]
        x = runutil.bf16_to_f32(bits).astype(np.float64)
        y = runutil.bf16_to_f32(other).astype(np.float64)
        d = np.abs(x - y)
        self.assertEqual(got["dtype"], ["bf16", "bf16"])
        self.assertEqual((got["differing"], got["max_ulp"], got["first_index"]), (2, 3, [5, 1]))
        self.assertEqual(got["max_abs"], float(d.max()))
        self.assertEqual(got["max_rel"], float((d / np.abs(y)).max()))

    def test_f16(self):
        w = self.rng.standard_normal(100).astype(np.float16)
        v = w.copy()
        v.view(np.uint16)[40] += 2
        pa, pb = self.pair({"h": w}, {"h": v})
        self.check_values(self.diff_json(pa, pb)["differences"][0], w, v, width=16)

    # ---- formats ---------------------------------------------------------------

    def test_sharded_against_one_file(self):
        arrays = {"a.w": self.rng.standard_normal((5, 4)).astype(np.float32),
                  "b.w": self.rng.standard_normal(9).astype(np.float32),
                  "c.n": np.arange(3, dtype=np.int32)}
        one = self.path("one.safetensors")
        save(one, arrays)
        os.mkdir(self.path("sh"))
        save(self.path("sh/model-00001-of-00002.safetensors"), {"a.w": arrays["a.w"]})
        save(self.path("sh/model-00002-of-00002.safetensors"),
             {"b.w": arrays["b.w"], "c.n": arrays["c.n"]})
        with open(self.path("sh/model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": {
                "a.w": "model-00001-of-00002.safetensors",
                "b.w": "model-00002-of-00002.safetensors",
                "c.n": "model-00002-of-00002.safetensors"}}, f)
        self.assertEqual(self.surg("diff", self.path("sh"), one)[0], 0)
        changed = dict(arrays)
        changed["b.w"] = arrays["b.w"].copy()
        changed["b.w"][8] += 1
        save(one, changed)
        got = self.diff_json(self.path("sh/model.safetensors.index.json"), one)
        self.check_values(got["differences"][0], arrays["b.w"], changed["b.w"])

    def test_npz_against_safetensors(self):
        w = self.rng.standard_normal((6, 7)).astype(np.float32)
        v = w.copy()
        v[5, 6] = 0.5
        pa, pb = self.pair({"w": w, "k": np.arange(4, dtype=np.int64)},
                           {"w": v, "k": np.arange(4, dtype=np.int64)}, ext_b="npz")
        got = self.diff_json(pa, pb)
        self.assertEqual(len(got["differences"]), 1)
        self.check_values(got["differences"][0], w, v)
        np.savez_compressed(pb, w=w, k=np.arange(4, dtype=np.int64))  # deflated
        self.assertEqual(self.surg("diff", pa, pb)[0], 0)

    def test_msgpack(self):
        w = self.rng.standard_normal((3, 4)).astype(np.float32)

        def ext(x):
            return msgpack.ExtType(1, msgpack.packb((list(x.shape), x.dtype.name, x.tobytes()),
                                                    use_bin_type=True))
        mp = self.path("m.msgpack")
        with open(mp, "wb") as f:
            f.write(msgpack.packb({"params": {"kernel": ext(w)}}, use_bin_type=True))
        st = self.path("m.safetensors")
        save(st, {"params/kernel": w})
        self.assertEqual(self.surg("diff", mp, st),
                         (0, "1 compared: 1 equal, 0 differ; 0 only in A, 0 only in B\n", ""))
        v = w.copy()
        v[0, 0] = -v[0, 0]
        save(st, {"params/kernel": v})
        self.check_values(self.diff_json(mp, st)["differences"][0], w, v)

    def test_torch(self):
        """A torch.save state dict against safetensors, both ways."""
        import torch
        w = self.rng.standard_normal((5, 3)).astype(np.float32)
        pt = self.path("m.pt")
        torch.save({"layer.weight": torch.from_numpy(w.copy()),
                    "layer.bias": torch.arange(3, dtype=torch.int64)}, pt)
        st = self.path("m.safetensors")
        save(st, {"layer.weight": w, "layer.bias": np.arange(3, dtype=np.int64)})
        self.assertEqual(self.surg("diff", pt, st),
                         (0, "2 compared: 2 equal, 0 differ; 0 only in A, 0 only in B\n", ""))
        v = w.copy()
        v[4, 2] = np.nextafter(v[4, 2], np.float32(np.inf))
        save(st, {"layer.weight": v, "layer.bias": np.arange(3, dtype=np.int64)})
        self.check_values(self.diff_json(st, pt)["differences"][0], v, w)

    # ---- --recipe --------------------------------------------------------------

    def test_recipe(self):
        w = self.rng.standard_normal((64, 300)).astype(np.float32)
        keep = np.arange(10, dtype=np.int32)
        a = self.path("a.safetensors")
        save(a, {"w": w, "keep": keep, "old": w[:2]})
        recipe = self.path("r.surg")
        with open(recipe, "w") as f:
            f.write('map "w" = x / norm(x, axis=1, keepdims=true)\n'
                    'rename "old" -> "new"\n')
        x = w.astype(np.float64)
        want = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        b = self.path("b.safetensors")
        save(b, {"w": want, "keep": keep, "new": w[:2]})
        code, out, err = self.surg("diff", a, b, "--recipe", recipe, "--rtol", "1e-6")
        self.assertEqual((code, out, err),
                         (0, "3 compared: 3 equal, 0 differ; 0 only in A, 0 only in B\n", ""))
        off = want.copy()
        off[10, 20] *= 1.001
        off[63, 299] *= 1.01
        save(b, {"w": off, "keep": keep + 1, "new": w[:2]})
        runs = []
        for threads in ("1", "3"):
            got = self.diff_json(a, b, "--recipe", recipe, "--threads", threads)
            runs.append(got)
            self.assertEqual(got["recipe"], recipe)
            d = {e["name"]: e for e in got["differences"]}
            self.assertEqual(sorted(d), ["keep", "w"])
            self.assertEqual((d["keep"]["differing"], d["keep"]["max_abs"]), (10, 1.0))
            self.assertEqual(d["keep"]["first_index"], [0])
            self.assertGreaterEqual(d["w"]["differing"], 2)
            got = self.diff_json(a, b, "--recipe", recipe, "--rtol", "1e-5",
                                 "--threads", threads)
            d = {e["name"]: e for e in got["differences"]}
            self.assertEqual(d["w"]["differing"], 2)
            self.assertEqual(d["w"]["first_index"], [10, 20])
            n, _, _, _, first = expect(want, off, 1e-5, 0.0, 32)
            self.assertEqual((n, first), (2, [10, 20]))
        self.assertEqual(runs[0], runs[1])
        # Nothing was written beside the inputs.
        self.assertEqual(sorted(os.listdir(self.dir)), ["a.safetensors", "b.safetensors",
                                                        "r.surg"])

    def test_recipe_schema_and_errors(self):
        w = np.ones((2, 2), np.float32)
        a = self.path("a.safetensors")
        save(a, {"w": w})
        recipe = self.path("r.surg")
        with open(recipe, "w") as f:
            f.write('rename "w" -> "v"\n')
        schema = self.path("s.json")
        with open(schema, "w") as f:
            json.dump({"v": {"dtype": "F32", "shape": [2, 2]}}, f)
        self.assertEqual(self.surg("diff", a, schema, "--recipe", recipe)[0], 0)
        with open(recipe, "w") as f:
            f.write('rename "nothing" -> "v"\n')
        code, out, err = self.surg("diff", a, schema, "--recipe", recipe)
        self.assertEqual((code, out), (2, ""))
        self.assertEqual(err, recipe + ':1:8: error: pattern "nothing" matches no tensor\n'
                              '    1 | rename "nothing" -> "v"\n'
                              '      |        ^~~~~~~~~\n')

    # ---- bounds, exit codes, usage ------------------------------------------------

    def test_memory_bound(self):
        n = 25 * 1024 * 1024  # 100 MB of f32 a side
        a, b = self.path("big-a.safetensors"), self.path("big-b.safetensors")
        w = np.ones(n, np.float32)
        save(a, {"w": w})
        w[n - 1] = 2
        save(b, {"w": w})
        del w
        rss = self.path("rss.py")
        with open(rss, "w") as f:
            f.write(PEAK_RSS)
        r = subprocess.run([sys.executable, rss, ARGS.surg, "diff", a, b, "--json"],
                           capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 1, r.stderr)
        out = r.stdout.decode()
        peak_kb = int(out[out.rindex("}") + 2:])
        got = json.loads(out[:out.rindex("}") + 1])
        self.assertEqual(got["differences"][0]["first_index"], [n - 1])
        self.assertLess(peak_kb, 48 * 1024, "peak RSS %d KiB on a 200 MB pair" % peak_kb)

    def test_exit_codes_and_usage(self):
        w = np.ones(3, np.float32)
        a, b = self.pair({"w": w}, {"w": w})
        cases = [
            (("diff",), "surg diff: diff takes two checkpoints, A and B\n"),
            (("diff", a), "surg diff: diff takes two checkpoints, A and B\n"),
            (("diff", a, b, a),
             "surg diff: unexpected argument '%s': diff takes two checkpoints\n" % a),
            (("diff", a, b, "--rtol"), "surg diff: --rtol needs a value\n"),
            (("diff", a, b, "--rtol", "-1"),
             "surg diff: --rtol takes a number of 0 or more, not '-1'\n"),
            (("diff", a, b, "--atol", "nan"),
             "surg diff: --atol takes a number of 0 or more, not 'nan'\n"),
            (("diff", a, b, "--threads", "0"),
             "surg diff: --threads takes a number from 1 to 1024, not '0'\n"),
            (("diff", a, b, "--frob"), "surg diff: unknown option '--frob'\n"),
        ]
        for args, msg in cases:
            code, out, err = self.surg(*args)
            self.assertEqual((code, out, err), (2, "", msg + "(see `surg diff --help`)\n"), args)
        code, out, err = self.surg("diff", a, self.path("missing.safetensors"))
        self.assertEqual((code, out, err), (2, "", self.path("missing.safetensors") +
                                            ": error: cannot open: No such file or directory\n"))
        code, out, _ = self.surg("diff", "--help")
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith("usage: surg diff A B"))
        self.assertIn("diff A B", self.surg("--help")[1])


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--surg", required=True)
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
