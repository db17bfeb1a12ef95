"""test_run.py: `surg run` end to end. Every input is written with stnp (the
repository's independent NumPy safetensors writer), every output read back
with stnp, and every expected value computed with NumPy from the same input;
surg is compared with itself only in the determinism checks.

Numerical contract checked here (SPEC §3.2 and the README's decisions):
  * + - * / unary - abs sign sqrt clip on float tensors: computed in float32
    (float64 for f64 tensors), each operation rounded: bit-identical to NumPy
    float32 (float64) arithmetic in the same order.
  * exp log tanh: within 1 float32 ulp of NumPy's float64 function rounded to
    float32 (the runtime computes them in double, then rounds).
  * reductions (norm, mean, std with ddof=0, sum, min, max) accumulate in
    float64 and round to float32: on data whose float64 sums are exact (small
    dyadic numbers, a power-of-two count) bit-identical to NumPy's float64
    result rounded to float32; on general data within 1 float32 ulp of it
    (min and max always exact).
  * bf16/f16 results: the float32 result rounded to nearest even, compared as
    bit patterns with NumPy's astype(float16) and runutil.f32_to_bf16.
  * integer tensors compute in float64 and store rounded to nearest even,
    saturating; cast(float, int) truncates toward zero, saturates, NaN -> 0.
  * random initializers: checked statistically over 2^20 values each (mean,
    standard deviation, bounds, the whole distribution by a Kolmogorov
    distance), plus determinism across thread counts and seeds.

usage: test_run.py --surg SURG [unittest args]
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import unittest

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402
from runutil import f32_bits, f32_to_bf16, bf16_to_f32, ulp_distance_f32  # noqa: E402
from runutil import philox4x32_10, philox_key  # noqa: E402

ARGS = None  # filled in by main()

F = np.float32
D = np.float64
TRUNC_STD = 0.87962566103423978  # std of N(0, 1) cut to [-2, 2]


def f32(a):
    return np.asarray(a, dtype=np.float32)


def bf16(values):
    """bf16 bit patterns of float values (through float32, rounded to nearest even)."""
    return f32_to_bf16(f32(values))


def phi(z):
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


class RunCase(unittest.TestCase):
    """Helpers: a scratch directory, inputs written by stnp, surg run."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-run-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def save(self, tensors, name="in.safetensors", metadata=None):
        p = self.path(name)
        stnp.save(p, tensors, metadata)
        return p

    def recipe(self, text, name="r.surg"):
        p = self.path(name)
        with open(p, "w", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        return p

    def surg(self, *args):
        return runutil.run_surg(ARGS.surg, *args)

    def run_raw(self, text, inp, *opts, out="out.safetensors", recipe_name="r.surg"):
        """Run; return (code, stderr, out path). INP is a path or a tensor dict."""
        if isinstance(inp, dict):
            inp = self.save(inp)
        r = self.recipe(text, recipe_name)
        o = out if os.path.isabs(out) else self.path(out)
        code, _, err = self.surg("run", r, inp, o, *opts)
        return code, err, o

    def run_ok(self, text, inp, *opts, out="out.safetensors"):
        """Run a recipe that must succeed; return (tensors, metadata) of OUT.
        Also checks that the input is unchanged and no temporary is left."""
        if isinstance(inp, dict):
            inp = self.save(inp)
        before = runutil.sha256(inp)
        code, err, o = self.run_raw(text, inp, *opts, out=out)
        self.assertEqual(code, 0, "surg run failed (exit %d)\nrecipe:\n%s\n%s" % (code, text, err))
        self.assertEqual(runutil.sha256(inp), before, "the input changed")
        self.assertEqual(runutil.temporaries(os.path.dirname(o)), [],
                         "temporary files left beside the output")
        if os.path.isdir(o):
            return o, None
        tensors, metadata, _ = stnp.load(o)
        return tensors, metadata

    def run_fails(self, code, text, inp, *opts, out="out.safetensors"):
        got, err, o = self.run_raw(text, inp, *opts, out=out)
        self.assertEqual(got, code, "surg run: exit %d, want %d\nrecipe:\n%s\n%s" % (
            got, code, text, err))
        return err, o

    # ---- comparisons ----

    def assertBitsEqual(self, got, want, what=""):
        got = np.asarray(got)
        want = np.asarray(want)
        self.assertEqual(got.shape, want.shape, "%s: shape" % what)
        if got.dtype.kind == "f":
            g = got.view(np.dtype("u%d" % got.dtype.itemsize))
            w = want.astype(got.dtype).view(np.dtype("u%d" % got.dtype.itemsize))
            nan_ok = np.isnan(got) & np.isnan(want.astype(got.dtype))
            bad = (g != w) & ~nan_ok
        else:
            bad = got != want
        if bad.any():
            i = np.flatnonzero(bad)[:5]
            self.fail("%s: %d of %d elements differ; first at %s: got %r, want %r" % (
                what, int(bad.sum()), bad.size, i.tolist(),
                got.ravel()[i].tolist(), want.ravel()[i].tolist()))

    def assertUlps(self, got, want, ulps, what=""):
        got = f32(got)
        want = f32(want)
        self.assertEqual(got.shape, want.shape, "%s: shape" % what)
        d = ulp_distance_f32(got, want)
        if (d > ulps).any():
            i = np.flatnonzero(d > ulps)[:5]
            self.fail("%s: %d elements beyond %d ulp; first at %s: got %r, want %r (%s ulp)" % (
                what, int((d > ulps).sum()), ulps, i.tolist(), got.ravel()[i].tolist(),
                want.ravel()[i].tolist(), d.ravel()[i].tolist()))

    def tensor(self, tensors, name, dtype=None):
        self.assertIn(name, tensors, "output has no tensor %r (it has %s)" % (
            name, sorted(tensors)))
        dt, arr = tensors[name]
        if dtype is not None:
            self.assertEqual(dt, dtype, "%s: dtype" % name)
        return arr


def raw_bytes(path):
    tensors, _, _ = stnp.load_raw(path)
    return {n: (d, s, b) for n, (d, s, b) in tensors.items()}


# =============================================================================
# Copies: rename, drop, keep, tie
# =============================================================================

class TestCopies(RunCase):
    def inputs(self):
        rng = np.random.default_rng(1)
        return {
            "params/linear1/kernel": ("F32", rng.standard_normal((4, 5)).astype(F)),
            "params/linear1/bias": ("BF16", rng.integers(0, 65535, 5, dtype=np.uint16)),
            "params/linear2/kernel": ("F16", rng.standard_normal((5, 3)).astype(np.float16)),
            "params/linear2/bias": ("F8_E4M3", rng.integers(0, 255, 3, dtype=np.uint8)),
            "params/embed": ("F64", rng.standard_normal((6, 2))),
            "opt/count": ("I32", np.array(7, dtype=np.int32)),
            "opt/u": ("U16", rng.integers(0, 65535, (2, 2), dtype=np.uint16)),
            "opt/c": ("C64", (rng.standard_normal(3) + 1j).astype(np.complex64)),
            "flags": ("BOOL", np.array([True, False, True])),
            "dropout_rng": ("U8", np.arange(8, dtype=np.uint8)),
        }

    def test_rename_copies_bytes(self):
        inp = self.save(self.inputs())
        src = raw_bytes(inp)
        o = self.path("out.safetensors")
        self.run_ok('rename "params/linear{1,2}/**" -> "params/layer$1/$2"\n'
                    'rename "opt/*" -> "optimizer/$1"', inp)
        got = raw_bytes(o)
        want_names = {
            "params/layer1/kernel": "params/linear1/kernel",
            "params/layer1/bias": "params/linear1/bias",
            "params/layer2/kernel": "params/linear2/kernel",
            "params/layer2/bias": "params/linear2/bias",
            "params/embed": "params/embed",
            "optimizer/count": "opt/count",
            "optimizer/u": "opt/u",
            "optimizer/c": "opt/c",
            "flags": "flags",
            "dropout_rng": "dropout_rng",
        }
        self.assertEqual(sorted(got), sorted(want_names))
        for new, old in want_names.items():
            self.assertEqual(got[new], src[old], "%s is not a byte copy of %s" % (new, old))

    def test_drop(self):
        inp = self.save(self.inputs())
        src = raw_bytes(inp)
        self.run_ok('drop "dropout_rng"\ndrop "opt/**"\ndrop optional "nothing/**"', inp)
        got = raw_bytes(self.path("out.safetensors"))
        want = {n for n in src if n != "dropout_rng" and not n.startswith("opt/")}
        self.assertEqual(set(got), want)
        for n in want:
            self.assertEqual(got[n], src[n], n)

    def test_keep(self):
        inp = self.save(self.inputs())
        src = raw_bytes(inp)
        self.run_ok('keep "params/**", "flags", optional "batch_stats/**"', inp)
        got = raw_bytes(self.path("out.safetensors"))
        want = {n for n in src if n.startswith("params/") or n == "flags"}
        self.assertEqual(set(got), want)
        for n in want:
            self.assertEqual(got[n], src[n], n)

    def test_input_metadata_kept(self):
        inp = self.save({"a": ("F32", np.ones(3, F))},
                        metadata={"format": "flax", "note": "kept"})
        _, meta = self.run_ok('map "a" = x * 2', inp)
        self.assertEqual(meta.get("format"), "flax")
        self.assertEqual(meta.get("note"), "kept")

    def test_tie(self):
        rng = np.random.default_rng(2)
        emb = rng.standard_normal((8, 4)).astype(F)
        head = rng.standard_normal((8, 4)).astype(F)
        inp = self.save({"embed/embedding": ("F32", emb), "lm_head/kernel": ("F32", head),
                         "other": ("BF16", np.arange(3, dtype=np.uint16))})
        src = raw_bytes(inp)
        o = self.path("out.safetensors")
        _, meta = self.run_ok('tie "lm_head/kernel" = "embed/embedding"', inp)
        got = raw_bytes(o)
        self.assertEqual(sorted(got), ["embed/embedding", "other"])
        self.assertEqual(got["embed/embedding"], src["embed/embedding"])
        self.assertEqual(runutil.metadata_json(meta, "surg.ties"),
                         {"lm_head/kernel": "embed/embedding"})
        # The stored tensor appears once: the data region is exactly the two
        # remaining tensors.
        entries, _, _, data = stnp.parse(open(o, "rb").read())
        self.assertEqual(len(data), emb.nbytes + 6)

    def test_tie_follows_rename_and_drop(self):
        rng = np.random.default_rng(3)
        a = rng.standard_normal((3, 3)).astype(F)
        inp = self.save({"a": ("F32", a), "b": ("F32", a * 2), "c": ("F32", a * 3),
                         "d": ("F32", a * 4)})
        _, meta = self.run_ok('tie "b" = "a"\ntie "d" = "c"\nrename "a" -> "z"\ndrop "c"', inp)
        got = raw_bytes(self.path("out.safetensors"))
        # "d" was tied to "c": when "c" goes, "d" takes over its data.
        self.assertEqual(sorted(got), ["d", "z"])
        self.assertEqual(got["z"][2], a.tobytes())
        self.assertEqual(got["d"][2], (a * 3).tobytes())
        self.assertEqual(runutil.metadata_json(meta, "surg.ties"), {"b": "z"})

    def test_recorded_ties_are_read_back(self):
        """A file surg tied earlier: its recorded ties are tied names again,
        so a rename carries them and a drop of the stored tensor hands its
        data to the tied name; a record that names missing tensors is
        dropped with a warning."""
        a = np.arange(6, dtype=F).reshape(2, 3)
        inp = self.save({"a": ("F32", a), "c": ("F32", a + 1)},
                        metadata={"surg.ties": json.dumps({"b": "a", "x": "nowhere"})})
        code, err, o = self.run_raw('rename "a" -> "z"', inp)
        self.assertEqual(code, 0, err)
        self.assertIn('"x" -> "nowhere"', err)
        _, meta, _ = stnp.load(o)
        self.assertEqual(runutil.metadata_json(meta, "surg.ties"), {"b": "z"})
        _, meta = self.run_ok('drop "a"', inp, out="dropped.safetensors")
        self.assertNotIn("surg.ties", meta or {})
        got = raw_bytes(self.path("dropped.safetensors"))
        self.assertEqual(sorted(got), ["b", "c"])  # "b" took over "a"'s data
        self.assertEqual(got["b"][2], a.tobytes())
        # Untouched, the record is written again as it was (less what did
        # not fit).
        _, meta = self.run_ok('keep "**"', inp, out="kept.safetensors")
        self.assertEqual(runutil.metadata_json(meta, "surg.ties"), {"b": "a"})


# =============================================================================
# fill
# =============================================================================

class TestFill(RunCase):
    def test_fill_existing(self):
        inp = {
            "a": ("F32", np.arange(6, dtype=F).reshape(2, 3)),
            "h": ("F16", np.arange(4, dtype=np.float16)),
            "b": ("BF16", np.arange(5, dtype=np.uint16)),
            "d": ("F64", np.arange(3, dtype=D)),
            "i": ("I32", np.arange(4, dtype=np.int32)),
            "u": ("U8", np.arange(4, dtype=np.uint8)),
            "z": ("F32", np.arange(4, dtype=F)),
            "o": ("BF16", np.arange(4, dtype=np.uint16)),
            "e": ("F8_E4M3", np.arange(4, dtype=np.uint8)),
            "q": ("BOOL", np.array([False, True, False])),
        }
        t, _ = self.run_ok('fill "a" = 0.5\nfill "h" = -1.25\nfill "b" = 0.5\n'
                           'fill "d" = -1e-3\nfill "i" = -3\nfill "u" = ones\n'
                           'fill "z" = zeros\nfill "o" = ones\nfill "e" = 0.5\nfill "q" = 1', inp)
        self.assertBitsEqual(self.tensor(t, "a", "F32"), np.full((2, 3), 0.5, F), "a")
        self.assertBitsEqual(self.tensor(t, "h", "F16"), np.full(4, -1.25, np.float16), "h")
        self.assertBitsEqual(self.tensor(t, "b", "BF16"), np.full(5, 0x3F00, np.uint16), "b")
        self.assertBitsEqual(self.tensor(t, "d", "F64"), np.full(3, -1e-3, D), "d")
        self.assertBitsEqual(self.tensor(t, "i", "I32"), np.full(4, -3, np.int32), "i")
        self.assertBitsEqual(self.tensor(t, "u", "U8"), np.ones(4, np.uint8), "u")
        self.assertBitsEqual(self.tensor(t, "z", "F32"), np.zeros(4, F), "z")
        self.assertBitsEqual(self.tensor(t, "o", "BF16"), np.full(4, 0x3F80, np.uint16), "o")
        # 0.5 in f8e4m3: exponent 6 (bias 7), mantissa 0: 0 0110 000
        self.assertBitsEqual(self.tensor(t, "e", "F8_E4M3"), np.full(4, 0x30, np.uint8), "e")
        self.assertBitsEqual(self.tensor(t, "q", "BOOL"), np.ones(3, bool), "q")

    def test_fill_inexact_value_rounds(self):
        # 0.1 is stored as the nearest value of each dtype.
        inp = {"a": ("F32", np.zeros(3, F)), "h": ("F16", np.zeros(3, np.float16)),
               "b": ("BF16", np.zeros(3, np.uint16)), "d": ("F64", np.zeros(3, D))}
        t, _ = self.run_ok('fill "a" = 0.1\nfill "h" = 0.1\nfill "b" = 0.1\nfill "d" = 0.1', inp)
        self.assertBitsEqual(self.tensor(t, "a"), np.full(3, 0.1, F), "a")
        self.assertBitsEqual(self.tensor(t, "h"), np.full(3, 0.1, np.float16), "h")
        self.assertBitsEqual(self.tensor(t, "b"), np.full(3, 0x3DCD, np.uint16), "b")
        self.assertBitsEqual(self.tensor(t, "d"), np.full(3, 0.1, D), "d")

    def test_fill_new(self):
        inp = {"a": ("F32", np.ones(2, F))}
        t, _ = self.run_ok('fill "n" : bf16[2, 3] = 1\nfill "s" : f32[] = 0.25\n'
                           'fill "k" : i64[4] = -7\nfill "z" : f16[3, 1, 2] = zeros\n'
                           'fill "e" : f32[0, 4] = 1', inp)
        self.assertEqual(sorted(t), ["a", "e", "k", "n", "s", "z"])
        self.assertBitsEqual(self.tensor(t, "n", "BF16"), np.full((2, 3), 0x3F80, np.uint16), "n")
        self.assertBitsEqual(self.tensor(t, "s", "F32"), np.array(0.25, F), "s")
        self.assertBitsEqual(self.tensor(t, "k", "I64"), np.full(4, -7, np.int64), "k")
        self.assertBitsEqual(self.tensor(t, "z", "F16"), np.zeros((3, 1, 2), np.float16), "z")
        self.assertEqual(self.tensor(t, "e", "F32").shape, (0, 4))

    def test_fill_glob(self):
        inp = {"p/a/bias": ("F32", np.ones(3, F)), "p/b/bias": ("F32", np.ones(2, F)),
               "p/a/kernel": ("F32", np.ones((2, 2), F))}
        t, _ = self.run_ok('fill "p/**/bias" = zeros', inp)
        self.assertBitsEqual(self.tensor(t, "p/a/bias"), np.zeros(3, F))
        self.assertBitsEqual(self.tensor(t, "p/b/bias"), np.zeros(2, F))
        self.assertBitsEqual(self.tensor(t, "p/a/kernel"), np.ones((2, 2), F))


# =============================================================================
# map: float32 arithmetic, function by function
# =============================================================================

def _general_data():
    """Full-mantissa float32 data with zeros, a tiny value and negatives."""
    rng = np.random.default_rng(10)
    x = (rng.standard_normal((37, 41)) * 3).astype(F)
    x.ravel()[:3] = [0.0, -0.0, 1e-30]
    b = (rng.standard_normal((37, 41)) + 0.5).astype(F)
    b[np.abs(b) < 1e-3] = 1.0
    return x, b


# name, expression, NumPy float32 reference of (x, b), allowed ulps
ELEMENTWISE = [
    ("add", 'x + tensor("b")', lambda x, b: x + b, 0),
    ("sub", 'x - tensor("b")', lambda x, b: x - b, 0),
    ("mul", 'x * tensor("b")', lambda x, b: x * b, 0),
    ("div", 'x / tensor("b")', lambda x, b: x / b, 0),
    ("neg", '-x', lambda x, b: -x, 0),
    ("scalars", 'x * 0.375 + 3', lambda x, b: x * F(0.375) + F(3), 0),
    ("scalar_left", '2 - x / 3', lambda x, b: F(2) - x / F(3), 0),
    ("recip", '1 / (x * x + 1)', lambda x, b: F(1) / (x * x + F(1)), 0),
    ("order", '(x - tensor("b")) * (x + 2) / 7', lambda x, b: (x - b) * (x + F(2)) / F(7), 0),
    ("left_assoc", 'x - 1 - tensor("b")', lambda x, b: (x - F(1)) - b, 0),
    ("right_group", 'x - (1 - tensor("b"))', lambda x, b: x - (F(1) - b), 0),
    ("neg_mul", '-x * 2.5', lambda x, b: (-x) * F(2.5), 0),
    ("abs", 'abs(x)', lambda x, b: np.abs(x), 0),
    ("sign", 'sign(x)', lambda x, b: np.sign(x), 0),
    ("sqrt", 'sqrt(abs(x))', lambda x, b: np.sqrt(np.abs(x)), 0),
    ("sqrt2", 'sqrt(x * x + tensor("b") * tensor("b"))', lambda x, b: np.sqrt(x * x + b * b), 0),
    ("clip", 'clip(x, 0.5, 4)', lambda x, b: np.clip(x, F(0.5), F(4)), 0),
    ("clip_expr", 'clip(x * 2, tensor("b"), 4) + 1',
     lambda x, b: np.where(x * F(2) < b, b, np.minimum(x * F(2), F(4))) + F(1), 0),
    ("exp", 'exp(x)', lambda x, b: np.exp(x.astype(D)).astype(F), 1),
    ("log", 'log(abs(x) + 0.5)', lambda x, b: np.log((np.abs(x) + F(0.5)).astype(D)).astype(F), 1),
    ("tanh", 'tanh(x)', lambda x, b: np.tanh(x.astype(D)).astype(F), 1),
    ("exp_chain", 'exp(x / 4) * 2', lambda x, b: np.exp((x / F(4)).astype(D)).astype(F) * F(2), 1),
    ("full_like", 'full_like(x, 0.5)', lambda x, b: np.full_like(x, 0.5), 0),
    ("full_like_mul", 'full_like(x, 2) * x', lambda x, b: np.full_like(x, 2) * x, 0),
    ("zeros_like", 'zeros_like(x)', lambda x, b: np.zeros_like(x), 0),
    ("zeros_like_add", 'zeros_like(x) + tensor("b")', lambda x, b: np.zeros_like(x) + b, 0),
    ("transpose", 'transpose(x)', lambda x, b: x.T, 0),
    ("transpose_expr", 'transpose(x * 2 + tensor("b"))', lambda x, b: (x * F(2) + b).T, 0),
    ("transpose_perm", 'transpose(x, 1, 0)', lambda x, b: x.T, 0),
    ("reshape", 'reshape(x, 41, -1)', lambda x, b: x.reshape(41, -1), 0),
    ("reshape_flat", 'reshape(x, -1)', lambda x, b: x.reshape(-1), 0),
    ("reshape_3d", 'reshape(x - tensor("b"), 1, 37, 41)', lambda x, b: (x - b).reshape(1, 37, 41), 0),
    ("f64", 'cast(x, f64) * 0.1 + 1', lambda x, b: x.astype(D) * 0.1 + 1.0, 0),
]

# name, expression, NumPy float64 reduction -> float32 scalar
REDUCTIONS = [
    ("norm", 'norm(x)', lambda x: np.sqrt(np.sum(x.astype(D) ** 2))),
    ("mean", 'mean(x)', lambda x: np.mean(x.astype(D))),
    ("std", 'std(x)', lambda x: np.std(x.astype(D))),
    ("sum", 'sum(x)', lambda x: np.sum(x.astype(D))),
    ("min", 'min(x)', lambda x: np.min(x.astype(D))),
    ("max", 'max(x)', lambda x: np.max(x.astype(D))),
]


class TestMapF32(RunCase):
    def test_elementwise(self):
        x, b = _general_data()
        inp = {"b": ("F32", b)}
        lines = []
        for name, expr, _, _ in ELEMENTWISE:
            inp["e/" + name] = ("F32", x)
            lines.append('map "e/%s" = %s' % (name, expr))
        t, _ = self.run_ok("\n".join(lines), inp)
        self.assertBitsEqual(self.tensor(t, "b"), b, "b is untouched")
        for name, expr, ref, ulps in ELEMENTWISE:
            with self.subTest(expr=expr):
                want = ref(x, b)
                dtype = "F64" if want.dtype == D else "F32"
                got = self.tensor(t, "e/" + name, dtype)
                if ulps == 0:
                    self.assertBitsEqual(got, want, expr)
                else:
                    self.assertUlps(got, want, ulps, expr)

    def test_literal_subexpressions(self):
        """Operations on numbers alone (-1, 1 + 2, abs(-1)) inside a map:
        the constant meets x as a weak scalar."""
        x, _ = _general_data()
        d = x.astype(D) * 1.25
        cases = [
            ("clip", "F32", x, 'clip(x, -0.5, 0.25)', np.clip(x, F(-0.5), F(0.25))),
            ("clip2", "F32", x, 'clip(x * 2, -1, 1) + 1', np.clip(x * F(2), F(-1), F(1)) + F(1)),
            ("plus_neg", "F32", x, 'x + -1', x + F(-1)),
            ("sum", "F32", x, 'x * (1 + 2)', x * F(3)),
            ("abs", "F32", x, 'x + abs(-1)', x + F(1)),
            ("prod", "F32", x, 'x - 2 * 3', x - F(6)),
            ("f64clip", "F64", d, 'clip(x, -2, 2) - 1', np.clip(d, -2.0, 2.0) - 1.0),
        ]
        inp = {"c/" + c[0]: (c[1], c[2]) for c in cases}
        t, _ = self.run_ok("\n".join('map "c/%s" = %s' % (c[0], c[3]) for c in cases), inp)
        for name, st, _, expr, want in cases:
            with self.subTest(expr=expr):
                self.assertBitsEqual(self.tensor(t, "c/" + name, st), want, expr)

    def test_inexact_literals_round_to_f32(self):
        """A number meets an f32 tensor as an f32 (a weak scalar takes the
        type of what it meets, as in JAX and NumPy): x * 0.1 multiplies by
        float32(0.1), not by the double 0.1."""
        x, _ = _general_data()
        cases = [("mul", 'x * 0.1', x * F(0.1)), ("add", 'x + 0.1', x + F(0.1)),
                 ("div", 'x / 0.3', x / F(0.3)), ("affine", 'x * 0.1 + 3', x * F(0.1) + F(3)),
                 ("sub", '1.1 - x', F(1.1) - x)]
        inp = {"c/" + c[0]: ("F32", x) for c in cases}
        t, _ = self.run_ok("\n".join('map "c/%s" = %s' % (c[0], c[1]) for c in cases), inp)
        for name, expr, want in cases:
            with self.subTest(expr=expr):
                self.assertBitsEqual(self.tensor(t, "c/" + name, "F32"), want, expr)

    def test_reductions_general(self):
        """General float32 data: within 1 float32 ulp of NumPy in float64
        rounded to float32; min and max exact."""
        x, _ = _general_data()
        inp = {"r/" + n: ("F32", x) for n, _, _ in REDUCTIONS}
        t, _ = self.run_ok("\n".join('map "r/%s" = %s' % (n, e) for n, e, _ in REDUCTIONS), inp)
        for name, expr, ref in REDUCTIONS:
            with self.subTest(expr=expr):
                got = self.tensor(t, "r/" + name, "F32")
                self.assertEqual(got.shape, ())
                want = F(ref(x))
                self.assertUlps(got, want, 0 if name in ("min", "max") else 1, expr)

    def test_reductions_exact(self):
        """Small dyadic values, 2048 of them: every float64 sum is exact, so
        reductions and the arithmetic around them are bit-identical."""
        rng = np.random.default_rng(11)
        x = (rng.integers(-4096, 4097, (32, 64)) / 1024.0).astype(F)
        cases = REDUCTIONS + [
            ("centered", 'x - mean(x)', lambda x: x - F(np.mean(x.astype(D)))),
            ("normalized", 'x / norm(x)', lambda x: x / F(np.sqrt(np.sum(x.astype(D) ** 2)))),
            ("standardized", '(x - mean(x)) / std(x)',
             lambda x: (x - F(np.mean(x.astype(D)))) / F(np.std(x.astype(D)))),
            ("minmax", '(x - min(x)) / (max(x) - min(x))',
             lambda x: (x - x.min()) / (x.max() - x.min())),
            ("scaled_sum", 'x * sum(x) + 1', lambda x: x * F(np.sum(x.astype(D))) + F(1)),
            ("nested", 'x - mean(x - mean(x))',
             lambda x: x - F(np.mean((x - F(np.mean(x.astype(D)))).astype(D)))),
        ]
        inp = {"r/" + c[0]: ("F32", x) for c in cases}
        t, _ = self.run_ok("\n".join('map "r/%s" = %s' % (c[0], c[1]) for c in cases), inp)
        for name, expr, ref in cases:
            with self.subTest(expr=expr):
                self.assertBitsEqual(self.tensor(t, "r/" + name, "F32"), f32(ref(x)), expr)

    def test_large_multichunk(self):
        """Half a million elements (several chunks), three threads."""
        rng = np.random.default_rng(12)
        x = (rng.standard_normal((512, 1024)) * 2 + 0.25).astype(F)
        inp = {"a": ("F32", x), "b": ("F32", x), "c": ("F32", x), "d": ("F32", x),
               "e": ("F32", x)}
        t, _ = self.run_ok('map "a" = (x - mean(x)) / std(x)\nmap "b" = x * 3 - 1\n'
                           'map "c" = transpose(x)\nmap "d" = norm(x)\n'
                           'map "e" = transpose(x / max(x))', inp, "--threads", "3")
        m, s = F(np.mean(x.astype(D))), F(np.std(x.astype(D)))
        got_a = self.tensor(t, "a")
        want_a = (x - m) / s
        self.assertLess(float(np.max(np.abs(got_a - want_a))), 1e-5,
                        "(x - mean(x)) / std(x) against NumPy's float32 scalars")
        self.assertBitsEqual(self.tensor(t, "b"), x * F(3) - F(1), "x * 3 - 1")
        self.assertBitsEqual(self.tensor(t, "c"), x.T, "transpose")
        self.assertUlps(self.tensor(t, "d"), F(np.sqrt(np.sum(x.astype(D) ** 2))), 1, "norm")
        self.assertBitsEqual(self.tensor(t, "e"), (x / x.max()).T, "transpose(x / max(x))")

    def test_layout_3d(self):
        x = np.arange(2 * 3 * 4, dtype=F).reshape(2, 3, 4) * F(0.5)
        cases = [
            ("t102", 'transpose(x, 1, 0, 2)', x.transpose(1, 0, 2)),
            ("t201", 'transpose(x, 2, 0, 1)', x.transpose(2, 0, 1)),
            ("trev", 'transpose(x)', x.transpose(2, 1, 0)),
            ("r4", 'reshape(x, 4, -1)', x.reshape(4, -1)),
            ("r_t", 'transpose(reshape(x, 6, 4))', x.reshape(6, 4).T),
            ("t_r", 'reshape(transpose(x, 0, 2, 1), 8, 3)', x.transpose(0, 2, 1).reshape(8, 3)),
            ("t_math", 'transpose(x + 1, 1, 2, 0) * 2', (x + F(1)).transpose(1, 2, 0) * F(2)),
        ]
        inp = {"l/" + n: ("F32", x) for n, _, _ in cases}
        t, _ = self.run_ok("\n".join('map "l/%s" = %s' % (n, e) for n, e, _ in cases), inp)
        for name, expr, want in cases:
            with self.subTest(expr=expr):
                self.assertBitsEqual(self.tensor(t, "l/" + name, "F32"), want, expr)

    def test_transpose_moves_other_dtypes(self):
        rng = np.random.default_rng(13)
        b = rng.integers(0, 65535, (5, 7), dtype=np.uint16)
        q = rng.integers(0, 255, (3, 4, 2), dtype=np.uint8)
        i = rng.integers(-1000, 1000, (4, 6), dtype=np.int64)
        t, _ = self.run_ok('map "b" = transpose(x)\nmap "q" = transpose(x, 2, 0, 1)\n'
                           'map "i" = reshape(transpose(x), 3, 8)',
                           {"b": ("BF16", b), "q": ("F8_E5M2", q), "i": ("I64", i)})
        self.assertBitsEqual(self.tensor(t, "b", "BF16"), b.T)
        self.assertBitsEqual(self.tensor(t, "q", "F8_E5M2"), q.transpose(2, 0, 1))
        self.assertBitsEqual(self.tensor(t, "i", "I64"), i.T.reshape(3, 8))

    def test_tensor_captures(self):
        rng = np.random.default_rng(14)
        inp, base, ft = {}, {}, {}
        for k in range(3):
            base[k] = rng.standard_normal((4, 6)).astype(F)
            ft[k] = rng.standard_normal((4, 6)).astype(F)
            inp["layers/%d/kernel" % k] = ("F32", base[k])
            inp["ft/%d/kernel" % k] = ("F32", ft[k])
        t, _ = self.run_ok('map "layers/*/kernel" = x + 0.5 * (tensor("ft/$1/kernel") - x)', inp)
        for k in range(3):
            self.assertBitsEqual(self.tensor(t, "layers/%d/kernel" % k),
                                 base[k] + F(0.5) * (ft[k] - base[k]), "layer %d" % k)
            self.assertBitsEqual(self.tensor(t, "ft/%d/kernel" % k), ft[k])

    def test_tensor_sees_state_before_statement(self):
        a = np.arange(4, dtype=F)
        t, _ = self.run_ok('map "a" = x * 2\nmap "b" = x + tensor("a")\nmap "a" = x + tensor("b")',
                           {"a": ("F32", a), "b": ("F32", a + F(10))})
        a1 = a * F(2)
        b1 = (a + F(10)) + a1
        self.assertBitsEqual(self.tensor(t, "b"), b1)
        self.assertBitsEqual(self.tensor(t, "a"), a1 + b1)

    def test_chained_maps(self):
        x, _ = _general_data()
        t, _ = self.run_ok('map "a" = x * 3\nmap "a" = x + 1\nmap "a" = sqrt(abs(x))',
                           {"a": ("F32", x)})
        self.assertBitsEqual(self.tensor(t, "a"), np.sqrt(np.abs(x * F(3) + F(1))))

    def test_scalar_and_empty(self):
        t, _ = self.run_ok('map "s" = x * 2 + 1\nmap "e" = x * 2\nmap "m" = x - mean(x)',
                           {"s": ("F32", np.array(1.5, F)), "e": ("F32", np.zeros((0, 3), F)),
                            "m": ("F32", np.array(3.0, F))})
        self.assertBitsEqual(self.tensor(t, "s"), np.array(4.0, F))
        self.assertEqual(self.tensor(t, "e").shape, (0, 3))
        self.assertBitsEqual(self.tensor(t, "m"), np.array(0.0, F))

    def test_nan_and_inf_propagate(self):
        x = f32([np.nan, np.inf, -np.inf, 1.0, 0.0, -0.0])
        t, _ = self.run_ok('map "a" = x * 2 + 1\nmap "b" = abs(x)\nmap "c" = sign(x)\n'
                           'map "d" = 1 / x\nmap "e" = clip(x, 0, 1)\nmap "n" = x + max(x)',
                           {n: ("F32", x) for n in "abcden"})
        with np.errstate(divide="ignore", invalid="ignore"):
            self.assertBitsEqual(self.tensor(t, "a"), x * F(2) + F(1), "x * 2 + 1")
            self.assertBitsEqual(self.tensor(t, "b"), np.abs(x), "abs")
            self.assertBitsEqual(self.tensor(t, "d"), F(1) / x, "1 / x")
        c = self.tensor(t, "c")
        self.assertTrue(np.isnan(c[0]))
        self.assertBitsEqual(c[1:], np.sign(x[1:]), "sign")
        e = self.tensor(t, "e")
        self.assertTrue(np.isnan(e[0]), "clip keeps NaN")
        self.assertTrue(np.array_equal(e[1:], f32([1, 0, 1, 0, 0])), "clip: %r" % e)
        self.assertTrue(np.isnan(self.tensor(t, "n")).all(), "a NaN makes max NaN")


# =============================================================================
# map on other dtypes: bf16, f16, f64, integers, casts, promotion
# =============================================================================

class TestMapDtypes(RunCase):
    def test_bf16(self):
        rng = np.random.default_rng(20)
        xb = bf16(rng.standard_normal((23, 19)) * 4)
        yb = bf16(rng.standard_normal((23, 19)) + 0.3)
        yb[bf16_to_f32(yb) == 0] = 0x3F80
        x, y = bf16_to_f32(xb), bf16_to_f32(yb)
        cases = [
            ("mul", 'x * tensor("y")', x * y),        # 16-bit products: many ties
            ("div", 'x / tensor("y")', x / y),
            ("affine", 'x * 1.75 + 0.3125', x * F(1.75) + F(0.3125)),
            ("mix", '(x - tensor("y")) * (x + tensor("y")) / 3', (x - y) * (x + y) / F(3)),
            ("sqrt", 'sqrt(abs(x))', np.sqrt(np.abs(x))),
            ("std", '(x - mean(x)) / std(x)', None),
            ("tr", 'transpose(x * 2)', (x * F(2)).T),
        ]
        inp = {"y": ("BF16", yb)}
        inp.update({"b/" + n: ("BF16", xb) for n, _, _ in cases})
        inp["b/exp"] = ("BF16", xb)
        text = "\n".join('map "b/%s" = %s' % (n, e) for n, e, _ in cases) + '\nmap "b/exp" = exp(x / 4)'
        t, _ = self.run_ok(text, inp)
        for name, expr, want in cases:
            if want is None:
                continue
            with self.subTest(expr=expr):
                self.assertBitsEqual(self.tensor(t, "b/" + name, "BF16"), f32_to_bf16(want), expr)
        # The float64 reductions, rounded to f32, meet the bf16 data in f32.
        x64 = x.astype(D)
        want = (x - F(x64.mean())) / F(x64.std())
        got = bf16_to_f32(self.tensor(t, "b/std", "BF16"))
        self.assertLessEqual(int(np.max(np.abs(
            got.view(np.int32).astype(np.int64) - bf16_to_f32(f32_to_bf16(want)).view(
                np.int32).astype(np.int64)))) >> 16, 1, "(x - mean(x)) / std(x) within 1 bf16 ulp")
        # exp: computed in double, rounded to f32, then to bf16: within one bf16 ulp.
        e = np.exp((x / F(4)).astype(D)).astype(F)
        got = self.tensor(t, "b/exp", "BF16").astype(np.int32)
        self.assertLessEqual(int(np.max(np.abs(got - f32_to_bf16(e).astype(np.int32)))), 1, "exp")

    def test_f16(self):
        rng = np.random.default_rng(21)
        x = (rng.standard_normal((17, 29)) * 8).astype(np.float16)
        y = (rng.standard_normal((17, 29)) + 0.2).astype(np.float16)
        y[y == 0] = 1
        xf, yf = x.astype(F), y.astype(F)
        cases = [
            ("mul", 'x * tensor("y")', xf * yf),
            ("div", 'x / 3', xf / F(3)),
            ("add", 'x + tensor("y") * 1000', xf + yf * F(1000)),
            ("big", 'x * 10000', xf * F(10000)),  # overflows f16 to inf
            ("tiny", 'x * 0.0000001', xf * F(1e-7)),  # subnormals and underflow
            ("neg", '-abs(x)', -np.abs(xf)),
        ]
        inp = {"y": ("F16", y)}
        inp.update({"h/" + n: ("F16", x) for n, _, _ in cases})
        with np.errstate(over="ignore"):
            t, _ = self.run_ok("\n".join('map "h/%s" = %s' % (n, e) for n, e, _ in cases), inp)
            for name, expr, want in cases:
                with self.subTest(expr=expr):
                    self.assertBitsEqual(self.tensor(t, "h/" + name, "F16"),
                                         want.astype(np.float16), expr)

    def test_f64(self):
        rng = np.random.default_rng(22)
        x = rng.standard_normal((13, 11)) * 5
        y = rng.standard_normal((13, 11)) + 0.5
        cases = [
            ("arith", 'x * 0.1 + tensor("y") / 3', x * 0.1 + y / 3.0, 0),
            ("sqrt", 'sqrt(abs(x) + 1)', np.sqrt(np.abs(x) + 1.0), 0),
            ("clip", 'clip(x, 0, 2) - 1', np.clip(x, 0.0, 2.0) - 1.0, 0),
            ("norm", 'x / norm(x)', None, 0),
            ("exp", 'exp(x / 8)', np.exp(x / 8.0), 1),
            ("tanh", 'tanh(x)', np.tanh(x), 1),
        ]
        inp = {"y": ("F64", y)}
        inp.update({"d/" + n: ("F64", x) for n, _, _, _ in cases})
        t, _ = self.run_ok("\n".join('map "d/%s" = %s' % (n, e) for n, e, _, _ in cases), inp)
        for name, expr, want, ulps in cases:
            with self.subTest(expr=expr):
                got = self.tensor(t, "d/" + name, "F64")
                if want is None:
                    want = x / np.sqrt(np.sum(x * x))
                    ulps = 2  # the sum's order may differ from NumPy's pairwise sum
                d = runutil.ulp_distance_f64(got, want)
                self.assertLessEqual(float(d.max()), ulps, "%s: %s ulp" % (expr, d.max()))

    def test_integers(self):
        i32 = np.array([0, 1, -1, 5, -5, 7, -7, 2, 6, 100000, -2147483648, 2147483647],
                       dtype=np.int32)
        z32 = np.array([1, 0, 0, 2, 0, 3, 1, 1, 0, 7, 1, 1], dtype=np.int32)
        i8 = np.array([1, -3, 5, 100, -100, 7, 0, -128, 127], dtype=np.int8)
        u8 = np.array([0, 1, 199, 200, 201, 255, 56, 128], dtype=np.uint8)
        i16 = np.array([0, 30, -30, 33, -33, 32767, -32768], dtype=np.int16)
        i64 = np.array([0, 3, -3, 1 << 40, -(1 << 40)], dtype=np.int64)

        def rne_sat(v, dt):
            info = np.iinfo(dt)
            v = np.where(np.isnan(v), 0, v)
            return np.clip(np.rint(v), info.min, info.max).astype(dt)

        cases = [
            ("i32/affine", "I32", i32, 'x * 3 - 7', lambda v: v.astype(D) * 3 - 7, np.int32),
            ("i32/half", "I32", i32, 'x / 2', lambda v: v.astype(D) / 2, np.int32),
            ("i32/quarter", "I32", i32, 'x / 4', lambda v: v.astype(D) / 4, np.int32),
            ("i32/neg", "I32", i32, '-x', lambda v: -v.astype(D), np.int32),
            ("i32/abs", "I32", i32, 'abs(x)', lambda v: np.abs(v.astype(D)), np.int32),
            ("i32/mean", "I32", i32[:10], 'x - mean(x)',
             lambda v: v.astype(D) - np.mean(v.astype(D)), np.int32),
            ("i32/div0", "I32", i32, 'x / tensor("z32")',
             lambda v: v.astype(D) / z32.astype(D), np.int32),
            ("i8/times1.5", "I8", i8, 'x * 1.5', lambda v: v.astype(D) * 1.5, np.int8),
            ("i8/times100", "I8", i8, 'x * 100', lambda v: v.astype(D) * 100, np.int8),
            ("u8/minus", "U8", u8, 'x - 200', lambda v: v.astype(D) - 200, np.uint8),
            ("u8/plus", "U8", u8, 'x + 100', lambda v: v.astype(D) + 100, np.uint8),
            ("u8/clip", "U8", u8, 'clip(x, 10, 150)', lambda v: np.clip(v.astype(D), 10, 150),
             np.uint8),
            ("i16/times", "I16", i16, 'x * 1000', lambda v: v.astype(D) * 1000, np.int16),
            ("i16/sign", "I16", i16, 'sign(x) * 2', lambda v: np.sign(v.astype(D)) * 2, np.int16),
            ("i64/affine", "I64", i64, 'x * 2 + 1', lambda v: v.astype(D) * 2 + 1, np.int64),
        ]
        inp = {"z32": ("I32", z32)}
        for name, st, v, _, _, _ in cases:
            inp[name] = (st, v)
        t, _ = self.run_ok("\n".join('map "%s" = %s' % (c[0], c[3]) for c in cases), inp)
        with np.errstate(divide="ignore", invalid="ignore"):
            for name, st, v, expr, ref, dt in cases:
                with self.subTest(tensor=name, expr=expr):
                    self.assertBitsEqual(self.tensor(t, name, st), rne_sat(ref(v), dt),
                                         "%s = %s" % (name, expr))

    def test_cast_float_to_int(self):
        x = f32([np.nan, np.inf, -np.inf, 3e9, -3e9, 2.5, -2.5, -0.7, 0.7, 1.99, -1.99,
                 2147483520.0, -2147483648.0, 100.5, 255.9, 300.0, -0.0, 1e-30])

        def trunc_sat(v, dt):
            info = np.iinfo(dt)
            v = v.astype(D)
            with np.errstate(invalid="ignore"):
                v = np.where(np.isnan(v), 0, np.trunc(v))
            return np.clip(v, info.min, info.max).astype(dt)

        cases = [("i32", "I32", np.int32), ("u8", "U8", np.uint8), ("i8", "I8", np.int8),
                 ("i16", "I16", np.int16), ("u16", "U16", np.uint16)]
        inp = {"c/" + n: ("F32", x) for n, _, _ in cases}
        inp["c/bool"] = ("F32", x)
        text = "\n".join('map "c/%s" = cast(x, %s)' % (n, n) for n, _, _ in cases)
        text += '\nmap "c/bool" = cast(x, bool)'
        t, _ = self.run_ok(text, inp)
        for name, st, dt in cases:
            with self.subTest(dtype=name):
                self.assertBitsEqual(self.tensor(t, "c/" + name, st), trunc_sat(x, dt),
                                     "cast(x, %s)" % name)
        self.assertBitsEqual(self.tensor(t, "c/bool", "BOOL"), x.astype(bool), "cast(x, bool)")

    def test_cast_saturates_i64(self):
        x = f32([np.inf, -np.inf, 1e30, -1e30, np.nan, 2.0 ** 62, -(2.0 ** 63), 9.5])
        t, _ = self.run_ok('map "a" = cast(x, i64)', {"a": ("F32", x)})
        want = np.array([2 ** 63 - 1, -2 ** 63, 2 ** 63 - 1, -2 ** 63, 0, 2 ** 62, -2 ** 63, 9],
                        dtype=np.int64)
        self.assertBitsEqual(self.tensor(t, "a", "I64"), want, "cast(x, i64) saturates")

    def test_cast_int_to_float(self):
        i = np.array([0, 1, -1, 16777217, 16777219, -16777219, 2147483647, -2147483647, 123456789],
                     dtype=np.int32)
        u = np.arange(0, 256, dtype=np.uint8)
        t, _ = self.run_ok('map "i" = cast(x, f32)\nmap "j" = cast(x, f16)\n'
                           'map "k" = cast(x, bf16)\nmap "u" = cast(x, f16)',
                           {"i": ("I32", i), "j": ("I32", i), "k": ("I32", i), "u": ("U8", u)})
        with np.errstate(over="ignore"):
            self.assertBitsEqual(self.tensor(t, "i", "F32"), i.astype(F), "i32 -> f32")
            self.assertBitsEqual(self.tensor(t, "j", "F16"), i.astype(np.float16), "i32 -> f16")
        self.assertBitsEqual(self.tensor(t, "k", "BF16"), self._bf16_of_ints(i), "i32 -> bf16")
        self.assertBitsEqual(self.tensor(t, "u", "F16"), u.astype(np.float16), "u8 -> f16")

    @staticmethod
    def _bf16_of_ints(i):
        """bf16 of integers rounded once (exactly: via float64, which holds
        every i32, then rounding the float64 to 8 significant bits)."""
        out = []
        for v in i.tolist():
            if v == 0:
                out.append(0)
                continue
            m, e = math.frexp(abs(v))  # abs(v) = m * 2^e, m in [0.5, 1)
            q = m * 256  # 8 significant bits
            r = round(q)  # Python rounds half to even
            val = math.ldexp(r, e - 8) * (1 if v > 0 else -1)
            out.append(int(np.array([val], F).view(np.uint32)[0] >> 16))
        return np.array(out, dtype=np.uint16)

    def test_cast_i64_to_f32_rounds_once(self):
        # 2^60 + 2^36 + 1 is just above the midpoint between two float32
        # values: one correct rounding goes up; rounding first to float64
        # (dropping the + 1) makes it a tie that goes down to even.
        i = np.array([(1 << 60) + (1 << 36) + 1, -((1 << 60) + (1 << 36) + 1), (1 << 62) + 1],
                     dtype=np.int64)
        t, _ = self.run_ok('map "a" = cast(x, f32)', {"a": ("I64", i)})
        want = np.array([float((1 << 60) + (1 << 37)), -float((1 << 60) + (1 << 37)),
                         float(1 << 62)], dtype=F)
        self.assertBitsEqual(self.tensor(t, "a", "F32"), want, "cast(i64, f32)")

    def test_cast_between_floats(self):
        rng = np.random.default_rng(23)
        x = (rng.standard_normal(4000) * 100).astype(F)
        inp = {n: ("F32", x) for n in ("h", "b", "d", "hb", "back")}
        t, _ = self.run_ok('map "h" = cast(x, f16)\nmap "b" = cast(x, bf16)\n'
                           'map "d" = cast(x, f64)\nmap "hb" = cast(cast(x, f16), bf16)\n'
                           'map "back" = cast(cast(x, bf16), f32) * 2', inp)
        self.assertBitsEqual(self.tensor(t, "h", "F16"), x.astype(np.float16), "f32 -> f16")
        self.assertBitsEqual(self.tensor(t, "b", "BF16"), f32_to_bf16(x), "f32 -> bf16")
        self.assertBitsEqual(self.tensor(t, "d", "F64"), x.astype(D), "f32 -> f64")
        self.assertBitsEqual(self.tensor(t, "hb", "BF16"),
                             f32_to_bf16(x.astype(np.float16).astype(F)), "f32 -> f16 -> bf16")
        self.assertBitsEqual(self.tensor(t, "back", "F32"),
                             bf16_to_f32(f32_to_bf16(x)) * F(2), "f32 -> bf16 -> f32")

    def test_promotion(self):
        rng = np.random.default_rng(24)
        h = (rng.standard_normal(50)).astype(np.float16)
        bb = bf16(rng.standard_normal(50))
        f = rng.standard_normal(50).astype(F)
        i8 = rng.integers(-100, 100, 50, dtype=np.int8)
        i16 = rng.integers(-1000, 1000, 50, dtype=np.int16)
        i32 = rng.integers(-1000, 1000, 50, dtype=np.int32)
        d = rng.standard_normal(50)
        inp = {"h": ("F16", h), "bb": ("BF16", bb), "f": ("F32", f), "i8": ("I8", i8),
               "i16": ("I16", i16), "i32": ("I32", i32), "d": ("F64", d)}
        for k in ("1", "2", "3", "4", "5"):
            inp["p" + k] = inp[{"1": "h", "2": "bb", "3": "i32", "4": "i8", "5": "f"}[k]]
        t, _ = self.run_ok('map "p1" = x + tensor("bb")\n'   # f16 + bf16 -> f32
                           'map "p2" = x * tensor("f")\n'    # bf16 * f32 -> f32
                           'map "p3" = x + tensor("f")\n'    # i32 + f32 -> f32
                           'map "p4" = x + tensor("i16")\n'  # i8 + i16 -> i64
                           'map "p5" = x + tensor("d")',     # f32 + f64 -> f64
                           inp)
        bf = bf16_to_f32(bb)
        self.assertBitsEqual(self.tensor(t, "p1", "F32"), h.astype(F) + bf, "f16 + bf16")
        self.assertBitsEqual(self.tensor(t, "p2", "F32"), bf * f, "bf16 * f32")
        self.assertBitsEqual(self.tensor(t, "p3", "F32"), i32.astype(F) + f, "i32 + f32")
        self.assertBitsEqual(self.tensor(t, "p4", "I64"), i8.astype(np.int64) + i16, "i8 + i16")
        self.assertBitsEqual(self.tensor(t, "p5", "F64"), f.astype(D) + d, "f32 + f64")


# =============================================================================
# init-lora
# =============================================================================

class TestInitLora(RunCase):
    def check_he_uniform(self, a, fan_in, what):
        bound = math.sqrt(6.0 / fan_in)
        self.assertLessEqual(float(np.max(np.abs(a))), bound * (1 + 1e-6), "%s: bound" % what)
        self.assertGreater(float(np.max(np.abs(a))), 0.95 * bound, "%s: spread" % what)
        n = a.size
        sd = bound / math.sqrt(3)
        self.assertLess(abs(float(a.astype(D).mean())), 5 * sd / math.sqrt(n), "%s: mean" % what)
        self.assertLess(abs(float(a.astype(D).std()) / sd - 1), 0.05, "%s: std" % what)

    def test_flax(self):
        rng = np.random.default_rng(30)
        k = rng.standard_normal((256, 64)).astype(F)
        other = rng.standard_normal(64).astype(F)
        inp = self.save({"params/Dense_0/kernel": ("F32", k), "params/Dense_0/bias": ("F32", other)})
        src = raw_bytes(inp)
        t, meta = self.run_ok('seed 0\ninit-lora "params/Dense_0/kernel" rank 8', inp)
        self.assertEqual(sorted(t), ["params/Dense_0/bias", "params/Dense_0/kernel",
                                     "params/Dense_0/lora/lora_a", "params/Dense_0/lora/lora_b"])
        got = raw_bytes(self.path("out.safetensors"))
        self.assertEqual(got["params/Dense_0/kernel"], src["params/Dense_0/kernel"])
        a = self.tensor(t, "params/Dense_0/lora/lora_a", "F32")
        b = self.tensor(t, "params/Dense_0/lora/lora_b", "F32")
        self.assertEqual(a.shape, (256, 8))
        self.assertEqual(b.shape, (8, 64))
        self.assertBitsEqual(b, np.zeros((8, 64), F), "lora_b")
        self.check_he_uniform(a, 256, "lora_a")
        self.assertEqual(runutil.metadata_json(meta, "surg.lora"), [{
            "r": 8, "lora_alpha": 8, "style": "flax", "target": "params/Dense_0/kernel",
            "lora_a": "params/Dense_0/lora/lora_a", "lora_b": "params/Dense_0/lora/lora_b"}])
        # The adapted model computes what the base model did.
        xin = rng.standard_normal((5, 256)).astype(F)
        self.assertBitsEqual(xin @ k + (xin @ a) @ b, xin @ k, "forward pass")

    def test_peft(self):
        rng = np.random.default_rng(31)
        tensors = {}
        for layer in range(3):
            tensors["model.layers.%d.self_attn.q_proj.weight" % layer] = (
                "F32", rng.standard_normal((96, 128)).astype(F))
            tensors["model.layers.%d.self_attn.k_proj.weight" % layer] = (
                "F32", rng.standard_normal((32, 128)).astype(F))
        t, meta = self.run_ok('init-lora "model.layers.*.self_attn.q_proj.weight" rank 4 alpha 16',
                              tensors)
        want_names = set(tensors)
        records = []
        for layer in range(3):
            mod = "model.layers.%d.self_attn.q_proj" % layer
            ad = "base_model.model." + mod  # as PEFT's get_peft_model_state_dict names it
            want_names |= {ad + ".lora_A.weight", ad + ".lora_B.weight"}
            records.append({"r": 4, "lora_alpha": 16, "style": "peft", "target": mod + ".weight",
                            "lora_a": ad + ".lora_A.weight", "lora_b": ad + ".lora_B.weight"})
        self.assertEqual(set(t), want_names)
        got_records = runutil.metadata_json(meta, "surg.lora")
        self.assertEqual(sorted(got_records, key=lambda r: r["target"]), records)
        As = []
        for layer in range(3):
            mod = "model.layers.%d.self_attn.q_proj" % layer
            w = self.tensor(t, mod + ".weight", "F32")
            self.assertBitsEqual(w, tensors[mod + ".weight"][1], "weight untouched")
            A = self.tensor(t, "base_model.model." + mod + ".lora_A.weight", "F32")
            B = self.tensor(t, "base_model.model." + mod + ".lora_B.weight", "F32")
            self.assertEqual(A.shape, (4, 128))
            self.assertEqual(B.shape, (96, 4))
            self.assertBitsEqual(B, np.zeros((96, 4), F), "lora_B")
            # kaiming_uniform(a=sqrt(5)): bound sqrt(2/6) * sqrt(3/in) = 1/sqrt(in)
            bound = 1 / math.sqrt(128)
            self.assertLessEqual(float(np.max(np.abs(A))), bound * (1 + 1e-6))
            self.assertGreater(float(np.max(np.abs(A))), 0.95 * bound)
            self.assertLess(abs(float(A.astype(D).std()) / (bound / math.sqrt(3)) - 1), 0.08)
            xin = rng.standard_normal((7, 128)).astype(F)
            self.assertBitsEqual(xin @ w.T + (xin @ A.T) @ B.T, xin @ w.T, "forward pass")
            As.append(A)
        self.assertFalse(np.array_equal(As[0], As[1]), "each adapter draws its own values")

    def test_bf16_kernel_and_as(self):
        rng = np.random.default_rng(32)
        k = bf16(rng.standard_normal((64, 16)))
        t, meta = self.run_ok('seed 3\ninit-lora "params/dense/kernel" rank 4 alpha 2.5 '
                              'a = normal(0, 0.01) b = zeros as "params/dense/A", "params/dense/B"',
                              {"params/dense/kernel": ("BF16", k)})
        self.assertEqual(sorted(t), ["params/dense/A", "params/dense/B", "params/dense/kernel"])
        A = bf16_to_f32(self.tensor(t, "params/dense/A", "BF16"))
        self.assertEqual(A.shape, (64, 4))
        self.assertLess(abs(float(A.astype(D).std()) / 0.01 - 1), 0.15)
        self.assertBitsEqual(self.tensor(t, "params/dense/B", "BF16"), np.zeros((4, 16), np.uint16))
        rec = runutil.metadata_json(meta, "surg.lora")
        self.assertEqual(len(rec), 1)
        self.assertEqual(rec[0]["r"], 4)
        self.assertEqual(rec[0]["lora_alpha"], 2.5)
        self.assertEqual((rec[0]["lora_a"], rec[0]["lora_b"]), ("params/dense/A", "params/dense/B"))

    def test_style_override(self):
        rng = np.random.default_rng(33)
        w = rng.standard_normal((12, 20)).astype(F)  # named like torch, laid out [in, out]
        t, meta = self.run_ok('init-lora "enc/proj" rank 2 style flax', {"enc/proj": ("F32", w)})
        self.assertEqual(self.tensor(t, "enc/lora/lora_a").shape, (12, 2))
        self.assertEqual(self.tensor(t, "enc/lora/lora_b").shape, (2, 20))
        self.assertLessEqual(float(np.max(np.abs(self.tensor(t, "enc/lora/lora_a")))),
                             math.sqrt(6 / 12) * (1 + 1e-6))


# =============================================================================
# split, concat, stack, unstack
# =============================================================================

class TestStructural(RunCase):
    def test_split_equal(self):
        rng = np.random.default_rng(40)
        qkv = rng.standard_normal((8, 12)).astype(F)
        t, _ = self.run_ok('split "p/qkv/kernel" axis 1 -> "p/q/kernel", "p/k/kernel", "p/v/kernel"',
                           {"p/qkv/kernel": ("F32", qkv)})
        self.assertEqual(sorted(t), ["p/k/kernel", "p/q/kernel", "p/v/kernel"])
        for name, part in zip(("q", "k", "v"), np.split(qkv, 3, axis=1)):
            self.assertBitsEqual(self.tensor(t, "p/%s/kernel" % name), part, name)

    def test_split_sizes(self):
        rng = np.random.default_rng(41)
        a = bf16(rng.standard_normal((10, 3, 4)))
        t, _ = self.run_ok('split "gu" axis 0 sizes 3, 7 -> "g", "u"\n', {"gu": ("BF16", a)})
        g, u = np.split(a, [3], axis=0)
        self.assertBitsEqual(self.tensor(t, "g", "BF16"), g)
        self.assertBitsEqual(self.tensor(t, "u", "BF16"), u)

    def test_split_middle_axis_with_captures(self):
        rng = np.random.default_rng(42)
        inp, src = {}, {}
        for k in range(2):
            src[k] = rng.standard_normal((2, 9, 3)).astype(F)
            inp["l%d/qkv" % k] = ("F32", src[k])
        t, _ = self.run_ok('split "*/qkv" axis 1 sizes 2, 3, 4 -> "$1/q", "$1/k", "$1/v"', inp)
        for k in range(2):
            for name, part in zip("qkv", np.split(src[k], [2, 5], axis=1)):
                self.assertBitsEqual(self.tensor(t, "l%d/%s" % (k, name)), part)

    def test_concat_alternative_order(self):
        rng = np.random.default_rng(43)
        q, k, v = (rng.standard_normal((4, n)).astype(F) for n in (2, 3, 5))
        t, _ = self.run_ok('concat "p/{v,q,k}/kernel" axis 1 -> "p/vqk/kernel"',
                           {"p/q/kernel": ("F32", q), "p/k/kernel": ("F32", k),
                            "p/v/kernel": ("F32", v)})
        self.assertEqual(sorted(t), ["p/vqk/kernel"])
        self.assertBitsEqual(self.tensor(t, "p/vqk/kernel"), np.concatenate([v, q, k], axis=1))

    def test_concat_natural_order_groups(self):
        rng = np.random.default_rng(44)
        inp, parts = {}, {"enc": [], "dec": []}
        for side in parts:
            for i in range(12):
                a = rng.standard_normal((i % 3 + 1, 4)).astype(F)
                parts[side].append(a)
                inp["%s/layers_%d/w" % (side, i)] = ("F32", a)
        t, _ = self.run_ok('concat "*/layers_*/w" axis 0 -> "$1/w"', inp)
        self.assertEqual(sorted(t), ["dec/w", "enc/w"])
        for side in parts:
            self.assertBitsEqual(self.tensor(t, side + "/w"), np.concatenate(parts[side], 0), side)

    def test_stack(self):
        rng = np.random.default_rng(45)
        inp, layers = {}, []
        for i in range(11):
            a = rng.integers(-100, 100, (3, 2), dtype=np.int16)
            layers.append(a)
            inp["layers_%d/kernel" % i] = ("I16", a)
        t, _ = self.run_ok('stack "layers_*/kernel" axis 0 -> "layers/kernel"', inp)
        self.assertEqual(sorted(t), ["layers/kernel"])
        self.assertBitsEqual(self.tensor(t, "layers/kernel", "I16"), np.stack(layers, 0))
        t, _ = self.run_ok('stack "layers_*/kernel" axis 2 -> "layers/kernel"', inp,
                           out="out2.safetensors")
        self.assertBitsEqual(self.tensor(t, "layers/kernel", "I16"), np.stack(layers, 2))

    def test_unstack(self):
        rng = np.random.default_rng(46)
        a = rng.standard_normal((5, 3, 4)).astype(F)
        b = bf16(rng.standard_normal((3, 6, 2)))
        t, _ = self.run_ok('unstack "layers/kernel" axis 0 -> "layers_$i/kernel"\n'
                           'unstack "b" axis 1 -> "b_$i"', {"layers/kernel": ("F32", a),
                                                             "b": ("BF16", b)})
        self.assertEqual(sorted(t), sorted(["layers_%d/kernel" % i for i in range(5)] +
                                           ["b_%d" % i for i in range(6)]))
        for i in range(5):
            self.assertBitsEqual(self.tensor(t, "layers_%d/kernel" % i), a[i], "layer %d" % i)
        for i in range(6):
            self.assertBitsEqual(self.tensor(t, "b_%d" % i, "BF16"), b[:, i, :], "b %d" % i)

    def test_round_trip(self):
        rng = np.random.default_rng(47)
        a = rng.standard_normal((6, 9)).astype(F)
        inp = self.save({"a": ("F32", a)})
        self.run_ok('split "a" axis 1 -> "a0", "a1", "a2"\nconcat "a{0,1,2}" axis 1 -> "a"\n'
                    'unstack "a" axis 0 -> "r$i"\nstack "r*" axis 0 -> "a"', inp)
        self.assertEqual(raw_bytes(self.path("out.safetensors")), raw_bytes(inp))


# =============================================================================
# mirror
# =============================================================================

class TestMirror(RunCase):
    SHAPES = {"old/kernel": (4, 6), "gone/bias": (6,), "t/kernel": (4, 6), "qkv/kernel": (4, 9),
              "d/kernel": (8, 4), "f/bias": (6,), "v/kernel": (4, 6), "l_0/kernel": (3, 2),
              "l_1/kernel": (3, 2), "tie/kernel": (4, 6)}

    def state(self):
        """bf16 parameters under p/, f32 slots under o/mu/ and o/nu/, a count outside."""
        rng = np.random.default_rng(50)
        inp, params, slots = {}, {}, {"o/mu/": {}, "o/nu/": {}}
        for name, shape in self.SHAPES.items():
            params[name] = bf16(rng.standard_normal(shape))
            inp["p/" + name] = ("BF16", params[name])
            for s in slots:
                slots[s][name] = rng.standard_normal(shape).astype(F)
                inp[s + name] = ("F32", slots[s][name])
        inp["o/count"] = ("I32", np.array(12, np.int32))
        return inp, params, slots

    def test_slots_follow_moves(self):
        """rename, drop, transpose, split, stack, tie and a value map."""
        inp, params, slots = self.state()
        t, meta = self.run_ok(
            'mirror "p/" -> "o/mu/", "o/nu/"\n'
            'rename "p/old/kernel" -> "p/new/kernel"\n'
            'drop "p/gone/bias"\n'
            'map "p/t/kernel" = transpose(x)\n'
            'split "p/qkv/kernel" axis 1 -> "p/q/kernel", "p/k/kernel", "p/w/kernel"\n'
            'map "p/v/kernel" = x * 2\n'
            'stack "p/l_*/kernel" axis 0 -> "p/l/kernel"\n'
            'tie "p/tie/kernel" = "p/v/kernel"', inp)
        rel = ["new/kernel", "t/kernel", "q/kernel", "k/kernel", "w/kernel", "d/kernel",
               "f/bias", "v/kernel", "l/kernel"]
        want_names = {"o/count"} | {"p/" + r for r in rel} | {s + r for s in slots for r in rel}
        self.assertEqual(set(t), want_names)
        self.assertEqual(runutil.metadata_json(meta, "surg.ties"),
                         {"p/tie/kernel": "p/v/kernel"})
        self.assertBitsEqual(self.tensor(t, "o/count", "I32"), np.array(12, np.int32))
        # the parameters
        self.assertBitsEqual(self.tensor(t, "p/new/kernel", "BF16"), params["old/kernel"])
        self.assertBitsEqual(self.tensor(t, "p/t/kernel", "BF16"), params["t/kernel"].T)
        for n, part in zip("qkw", np.split(params["qkv/kernel"], 3, axis=1)):
            self.assertBitsEqual(self.tensor(t, "p/%s/kernel" % n, "BF16"), part)
        self.assertBitsEqual(self.tensor(t, "p/v/kernel", "BF16"),
                             f32_to_bf16(bf16_to_f32(params["v/kernel"]) * F(2)))
        self.assertBitsEqual(self.tensor(t, "p/l/kernel", "BF16"),
                             np.stack([params["l_0/kernel"], params["l_1/kernel"]]))
        # the slots, in each tree
        for s, orig in slots.items():
            with self.subTest(slots=s):
                self.assertBitsEqual(self.tensor(t, s + "new/kernel", "F32"), orig["old/kernel"])
                self.assertBitsEqual(self.tensor(t, s + "t/kernel", "F32"), orig["t/kernel"].T)
                for n, part in zip("qkw", np.split(orig["qkv/kernel"], 3, axis=1)):
                    self.assertBitsEqual(self.tensor(t, s + "%s/kernel" % n, "F32"), part)
                self.assertBitsEqual(self.tensor(t, s + "d/kernel", "F32"), orig["d/kernel"])
                self.assertBitsEqual(self.tensor(t, s + "v/kernel", "F32"), orig["v/kernel"])
                self.assertBitsEqual(self.tensor(t, s + "l/kernel", "F32"),
                                     np.stack([orig["l_0/kernel"], orig["l_1/kernel"]]))

    def test_new_and_filled_params_get_zero_slots(self):
        """fill of a new name and init-lora give zero slots of the slots'
        dtype (f32 here, beside bf16 parameters); fill resets the slots."""
        inp, params, slots = self.state()
        t, _ = self.run_ok(
            'mirror "p/" -> "o/mu/", "o/nu/"\n'
            'seed 1\n'
            'fill "p/add/bias" : bf16[5] = 1\n'
            'init-lora "p/d/kernel" rank 2\n'
            'fill "p/f/bias" = 0.5', inp)
        rel = list(self.SHAPES) + ["add/bias", "d/lora/lora_a", "d/lora/lora_b"]
        want_names = {"o/count"} | {"p/" + r for r in rel} | {s + r for s in slots for r in rel}
        self.assertEqual(set(t), want_names)
        self.assertBitsEqual(self.tensor(t, "p/add/bias", "BF16"), np.full(5, 0x3F80, np.uint16))
        self.assertBitsEqual(self.tensor(t, "p/f/bias", "BF16"), np.full(6, 0x3F00, np.uint16))
        self.assertEqual(self.tensor(t, "p/d/lora/lora_a", "BF16").shape, (8, 2))
        self.assertBitsEqual(self.tensor(t, "p/d/lora/lora_b", "BF16"), np.zeros((2, 4), np.uint16))
        for s, orig in slots.items():
            with self.subTest(slots=s):
                self.assertBitsEqual(self.tensor(t, s + "add/bias", "F32"), np.zeros(5, F))
                self.assertBitsEqual(self.tensor(t, s + "d/kernel", "F32"), orig["d/kernel"])
                self.assertBitsEqual(self.tensor(t, s + "d/lora/lora_a", "F32"), np.zeros((8, 2), F))
                self.assertBitsEqual(self.tensor(t, s + "d/lora/lora_b", "F32"), np.zeros((2, 4), F))
                self.assertBitsEqual(self.tensor(t, s + "f/bias", "F32"), np.zeros(6, F))
                self.assertBitsEqual(self.tensor(t, s + "v/kernel", "F32"), orig["v/kernel"])

    def test_reshape_and_unstack_follow(self):
        rng = np.random.default_rng(51)
        p = rng.standard_normal((3, 4, 2)).astype(F)
        r = rng.standard_normal((4, 6)).astype(F)
        mu_p, mu_r = rng.standard_normal((3, 4, 2)).astype(F), rng.standard_normal((4, 6)).astype(F)
        t, _ = self.run_ok('mirror "params/" -> "opt/mu/"\n'
                           'unstack "params/layers" axis 0 -> "params/layer_$i"\n'
                           'map "params/r" = reshape(x * 2, 8, -1)',
                           {"params/layers": ("F32", p), "params/r": ("F32", r),
                            "opt/mu/layers": ("F32", mu_p), "opt/mu/r": ("F32", mu_r)})
        for i in range(3):
            self.assertBitsEqual(self.tensor(t, "params/layer_%d" % i), p[i])
            self.assertBitsEqual(self.tensor(t, "opt/mu/layer_%d" % i), mu_p[i])
        self.assertBitsEqual(self.tensor(t, "params/r"), (r * F(2)).reshape(8, 3))
        self.assertBitsEqual(self.tensor(t, "opt/mu/r"), mu_r.reshape(8, 3))


# =============================================================================
# Random initializers
# =============================================================================

N = 1 << 20


def fans(shape, layout):
    """(fan_in, fan_out) as jax.nn.initializers (flax) and torch.nn.init (torch) read them."""
    if layout == "flax":
        rf = math.prod(shape[:-2])
        return shape[-2] * rf, shape[-1] * rf
    rf = math.prod(shape[2:])
    return shape[1] * rf, shape[0] * rf


def uniform_cdf(lo, hi):
    return lambda v: min(1.0, max(0.0, (v - lo) / (hi - lo)))


def normal_cdf(mean, std):
    return lambda v: phi((v - mean) / std)


def truncated_cdf(scale):
    lo, hi = phi(-2.0), phi(2.0)
    return lambda v: min(1.0, max(0.0, (phi(v / scale) - lo) / (hi - lo)))


class TestInitializers(RunCase):
    """Each distribution over 2^20 values: mean within 5 standard errors,
    standard deviation within 0.4%, bounds, and the Kolmogorov distance to the
    exact CDF below 0.0025 (its 99.99% quantile at this size is about 0.002),
    and no correlation between neighbours or between tensors."""

    @classmethod
    def setUpClass(cls):
        fk, tw = (2048, 512), (512, 2048)
        cls.cases = [
            # name, type, init, (mean, std, lo, hi, cdf)
            ("n/normal", "f32[%d]" % N, "normal(0.5, 2)", 0.5, 2.0, None, None,
             normal_cdf(0.5, 2.0)),
            ("n/normal_std", "f32[%d]" % N, "normal(std=0.02)", 0.0, 0.02, None, None,
             normal_cdf(0.0, 0.02)),
            ("n/uniform", "f32[%d]" % N, "uniform(-3, 1)", -1.0, 4 / math.sqrt(12), -3.0, 1.0,
             uniform_cdf(-3.0, 1.0)),
            ("n/trunc", "f32[%d]" % N, "truncated_normal(0.5)", 0.0, 0.5 * TRUNC_STD, -1.0, 1.0,
             truncated_cdf(0.5)),
            ("n/normal_f64", "f64[%d]" % N, "normal(1, 3)", 1.0, 3.0, None, None,
             normal_cdf(1.0, 3.0)),
            ("n/uniform_f64", "f64[%d]" % N, "uniform(0, 1)", 0.5, 1 / math.sqrt(12), 0.0, 1.0,
             uniform_cdf(0.0, 1.0)),
        ]
        fin, fout = fans(fk, "flax")
        for name, init, kind, scale in [
                ("he_u", "he_uniform", "u", math.sqrt(6 / fin)),
                ("lecun_u", "lecun_uniform", "u", math.sqrt(3 / fin)),
                ("xavier_u", "xavier_uniform", "u", math.sqrt(6 / (fin + fout))),
                ("he_n", "he_normal", "t", math.sqrt(2 / fin) / TRUNC_STD),
                ("lecun_n", "lecun_normal", "t", math.sqrt(1 / fin) / TRUNC_STD),
                ("xavier_n", "xavier_normal", "t", math.sqrt(2 / (fin + fout)) / TRUNC_STD)]:
            cls.cases.append(cls.fan_case("f/%s/kernel" % name, "f32[%d, %d]" % fk, init, kind,
                                          scale))
        tin, _ = fans(tw, "torch")
        for name, init, kind, scale in [
                ("ku", "kaiming_uniform(a=2.2360679775)", "u",
                 math.sqrt(2 / (1 + 5.0000000000)) * math.sqrt(3 / tin)),
                ("ku0", "kaiming_uniform(a=0)", "u", math.sqrt(2) * math.sqrt(3 / tin)),
                ("kn", "kaiming_normal(a=0)", "n", math.sqrt(2) / math.sqrt(tin)),
                ("kn1", "kaiming_normal(a=1)", "n", 1 / math.sqrt(tin))]:
            cls.cases.append(cls.fan_case("t/%s.weight" % name, "f32[%d, %d]" % tw, init, kind,
                                          scale))
        cls.cases.append(("b/normal", "bf16[%d]" % N, "normal(0, 1)", 0.0, 1.0, None, None,
                          normal_cdf(0.0, 1.0)))
        text = "seed 42\n" + "\n".join('fill "%s" : %s = %s' % c[:3] for c in cls.cases)
        cls._tmp = tempfile.TemporaryDirectory(prefix="surg-init-")
        d = cls._tmp.name
        stnp.save(os.path.join(d, "in.safetensors"), {"x": ("F32", np.zeros(1, F))})
        with open(os.path.join(d, "r.surg"), "w") as f:
            f.write(text + "\n")
        cls.result = runutil.run_surg(ARGS.surg, "run", os.path.join(d, "r.surg"),
                                      os.path.join(d, "in.safetensors"),
                                      os.path.join(d, "out.safetensors"))
        cls.out = None
        if cls.result[0] == 0:
            cls.out, _, _ = stnp.load(os.path.join(d, "out.safetensors"))

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    @staticmethod
    def fan_case(name, typ, init, kind, scale):
        if kind == "u":
            return (name, typ, init, 0.0, scale / math.sqrt(3), -scale, scale,
                    uniform_cdf(-scale, scale))
        if kind == "t":
            return (name, typ, init, 0.0, scale * TRUNC_STD, -2 * scale, 2 * scale,
                    truncated_cdf(scale))
        return (name, typ, init, 0.0, scale, None, None, normal_cdf(0.0, scale))

    def values(self, name):
        self.assertEqual(self.result[0], 0, "surg run failed:\n%s" % self.result[2])
        dt, a = self.out[name]
        if dt == "BF16":
            return bf16_to_f32(a).astype(D).ravel()
        return a.astype(D).ravel()

    def test_distributions(self):
        for name, typ, init, mean, std, lo, hi, cdf in self.cases:
            with self.subTest(init=init, tensor=name):
                v = self.values(name)
                self.assertEqual(v.size, N)
                self.assertTrue(np.isfinite(v).all(), "non-finite values")
                n = v.size
                self.assertLess(abs(v.mean() - mean), 5 * std / math.sqrt(n),
                                "mean %r, want %r" % (v.mean(), mean))
                self.assertLess(abs(v.std() / std - 1), 0.004, "std %r, want %r" % (v.std(), std))
                if lo is not None:
                    self.assertGreaterEqual(v.min(), lo - abs(lo) * 1e-6, "below the lower bound")
                    self.assertLessEqual(v.max(), hi + abs(hi) * 1e-6, "above the upper bound")
                    # the bounds are reached (the whole range is used)
                    span = hi - lo
                    self.assertLess(v.min() - lo, 0.01 * span)
                    self.assertLess(hi - v.max(), 0.01 * span)
                s = np.sort(v)
                lo_q, hi_q = s[int(0.0005 * n)], s[int(0.9995 * n)]
                pts = np.linspace(lo_q, hi_q, 81)
                emp = np.searchsorted(s, pts, side="right") / n
                theo = np.array([cdf(p) for p in pts])
                ks = float(np.max(np.abs(emp - theo)))
                limit = 0.0025 if not typ.startswith("bf16") else 0.006
                self.assertLess(ks, limit, "distance to the CDF %.5f" % ks)
                # neighbours are independent (Box-Muller pairs included)
                r = np.corrcoef(v[:-1], v[1:])[0, 1]
                self.assertLess(abs(r), 5 / math.sqrt(n), "lag-1 correlation %r" % r)
                r2 = np.corrcoef(v[0::2], v[1::2])[0, 1]
                self.assertLess(abs(r2), 5 / math.sqrt(n / 2), "pair correlation %r" % r2)

    def test_tensors_are_independent(self):
        """Streams are keyed by name: no two tensors are rescaled copies."""
        names = [c[0] for c in self.cases if c[1].startswith("f32") and c[1].endswith("%d]" % N)
                 or c[0].startswith(("f/", "t/"))]
        vals = {n: self.values(n) for n in names}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                r = np.corrcoef(vals[a], vals[b])[0, 1]
                self.assertLess(abs(r), 6 / math.sqrt(N), "%s and %s correlate: %r" % (a, b, r))

    def test_receptive_field_fans(self):
        """Convolution kernels: fans include the receptive field."""
        cases = [("c/flax/kernel", (3, 3, 64, 128), "flax", "he_uniform"),
                 ("c/torch.weight", (128, 64, 3, 3), "torch", "kaiming_uniform(a=0)"),
                 ("c/xav/kernel", (5, 32, 96), "flax", "xavier_uniform"),
                 ("c/lec", (256, 3, 3), "torch", "lecun_uniform")]
        text = "seed 7\n"
        for name, shape, layout, init in cases:
            if not name.endswith(("kernel", "weight")):
                text += "layout %s\n" % layout
            text += 'fill "%s" : f32[%s] = %s\n' % (name, ", ".join(map(str, shape)), init)
        t, _ = self.run_ok(text, {"x": ("F32", np.zeros(1, F))})
        for name, shape, layout, init in cases:
            with self.subTest(tensor=name):
                v = self.tensor(t, name, "F32")
                self.assertEqual(v.shape, shape)
                fin, fout = fans(shape, layout)
                if init.startswith("he"):
                    b = math.sqrt(6 / fin)
                elif init.startswith("kaiming"):
                    b = math.sqrt(2) * math.sqrt(3 / fin)
                elif init.startswith("xavier"):
                    b = math.sqrt(6 / (fin + fout))
                else:
                    b = math.sqrt(3 / fin)
                self.assertLessEqual(float(np.abs(v).max()), b * (1 + 1e-6), "bound")
                self.assertGreater(float(np.abs(v).max()), 0.99 * b, "bound reached")
                sd = b / math.sqrt(3)
                self.assertLess(abs(float(v.astype(D).std()) / sd - 1), 0.02, "std")

    def test_fill_existing_keeps_dtype(self):
        rng = np.random.default_rng(60)
        inp = {"w/kernel": ("BF16", bf16(rng.standard_normal((512, 256)))),
               "h": ("F16", np.zeros((300, 300), np.float16))}
        t, _ = self.run_ok('fill "w/kernel" = lecun_normal\nfill "h" = uniform(-0.5, 0.5)', inp)
        w = bf16_to_f32(self.tensor(t, "w/kernel", "BF16")).astype(D)
        self.assertEqual(w.shape, (512, 256))
        scale = math.sqrt(1 / 512) / TRUNC_STD
        self.assertLessEqual(float(np.abs(w).max()), 2 * scale * (1 + 2 ** -7))
        self.assertLess(abs(w.std() / (scale * TRUNC_STD) - 1), 0.02)
        h = self.tensor(t, "h", "F16").astype(D)
        self.assertLessEqual(float(np.abs(h).max()), 0.5)
        self.assertLess(abs(h.std() / (1 / math.sqrt(12)) - 1), 0.02)


# =============================================================================
# Determinism
# =============================================================================

class TestRandomStream(RunCase):
    """The values themselves, from the documented construction: draw k is
    Philox on counter k under the tensor's key; for f32 it makes elements
    4k..4k+3 as two Box-Muller pairs of 24-bit uniforms (cosine first),
    computed here in float64. surg computes them in float32 with its own
    log, sin and cos: within a few float32 ulps of the radius."""

    def test_normal_f32_is_the_documented_stream(self):
        n = 1 << 18
        t, _ = self.run_ok('seed 1234\nfill "w/x" : f32[%d] = normal(0, 1)' % n,
                           {"a": ("F32", np.zeros(1, F))})
        got = self.tensor(t, "w/x", "F32").astype(D)
        w = philox4x32_10(np.arange(n // 4, dtype=np.uint64), philox_key(1234, "w/x"))
        want = np.empty(n, D)
        for p in range(2):
            u1 = 1.0 - (w[2 * p] >> np.uint64(8)).astype(D) * 2.0 ** -24
            angle = 2 * np.pi * (w[2 * p + 1] >> np.uint64(8)).astype(D) * 2.0 ** -24
            radius = np.sqrt(-2.0 * np.log(u1))
            want[2 * p::4] = radius * np.cos(angle)
            want[2 * p + 1::4] = radius * np.sin(angle)
        radius = np.repeat(np.sqrt(want[0::2] ** 2 + want[1::2] ** 2), 2)
        err = np.abs(got - want) / np.maximum(radius, 2.0 ** -20)
        self.assertLess(float(err.max()), 4 * 2.0 ** -23,
                        "largest error %.3g of the radius at element %d" % (
                            err.max(), int(err.argmax())))

    def test_uniform_f64_is_the_documented_stream(self):
        n = 1 << 12
        t, _ = self.run_ok('seed 7\nfill "u" : f64[%d] = uniform(0, 1)' % n,
                           {"a": ("F32", np.zeros(1, F))})
        w = philox4x32_10(np.arange(n // 2, dtype=np.uint64), philox_key(7, "u"))
        want = np.empty(n, D)
        for p in range(2):
            bits = (w[2 * p] << np.uint64(21)) ^ (w[2 * p + 1] >> np.uint64(11))
            want[p::2] = bits.astype(D) * 2.0 ** -53
        self.assertBitsEqual(self.tensor(t, "u", "F64"), want, "uniform f64")


class TestDeterminism(RunCase):
    def inputs(self):
        rng = np.random.default_rng(70)
        return {"a": ("F32", rng.standard_normal((700, 500)).astype(F)),
                "b": ("BF16", bf16(rng.standard_normal((300, 400)))),
                "p/Dense_0/kernel": ("F32", rng.standard_normal((256, 128)).astype(F))}

    RECIPE = ('seed %d\n'
              'fill "n1" : f32[300001] = normal(0, 1)\n'
              'fill "n2" : bf16[1000, 300] = truncated_normal(0.02)\n'
              'fill "n3/kernel" : f32[512, 300] = he_normal\n'
              'fill "n4" : f64[70001] = uniform(-1, 1)\n'
              'map "a" = (x - mean(x)) / std(x)\n'
              'map "b" = transpose(x * 2 + sum(x))\n'
              'init-lora "p/Dense_0/kernel" rank 8\n')

    def test_threads(self):
        inp = self.save(self.inputs())
        digests = {}
        for threads in (1, 2, 7):
            o = "out%d.safetensors" % threads
            self.run_ok(self.RECIPE % 5, inp, "--threads", str(threads), out=o)
            digests[threads] = runutil.sha256(self.path(o))
        self.assertEqual(len(set(digests.values())), 1, "outputs differ by thread count: %s" %
                         digests)

    def test_seed(self):
        inp = self.save(self.inputs())
        t5, _ = self.run_ok(self.RECIPE % 5, inp, out="s5.safetensors")
        t5b, _ = self.run_ok(self.RECIPE % 5, inp, out="s5b.safetensors")
        t6, _ = self.run_ok(self.RECIPE % 6, inp, out="s6.safetensors")
        self.assertEqual(runutil.sha256(self.path("s5.safetensors")),
                         runutil.sha256(self.path("s5b.safetensors")), "the same seed")
        for name in ("n1", "n2", "n3/kernel", "n4", "p/Dense_0/lora/lora_a"):
            a, b = self.tensor(t5, name), self.tensor(t6, name)
            self.assertLess(float(np.mean(a == b)), 0.01, "%s barely changes with the seed" % name)
        for name in ("a", "b", "p/Dense_0/kernel", "p/Dense_0/lora/lora_b"):
            self.assertBitsEqual(self.tensor(t5, name), self.tensor(t6, name), name)

    def test_unrelated_statements(self):
        inp = self.save({"a": ("F32", np.ones(10, F))})
        t1, _ = self.run_ok('seed 3\nfill "n" : f32[5000] = normal(0, 1)', inp, out="o1.safetensors")
        t2, _ = self.run_ok('seed 3\nfill "m" : f32[5000] = normal(0, 1)\nmap "a" = x * 2\n'
                            'fill "k" : f32[7] = uniform(0, 1)\nfill "n" : f32[5000] = normal(0, 1)\n'
                            'fill "z" : f32[5000] = normal(0, 1)', inp, out="o2.safetensors")
        self.assertBitsEqual(self.tensor(t2, "n"), self.tensor(t1, "n"), "n")
        self.assertFalse(np.array_equal(self.tensor(t2, "m"), self.tensor(t2, "n")),
                         "two names draw the same values")
        # A prefix of a longer tensor: element i depends on i only.
        t3, _ = self.run_ok('seed 3\nfill "n" : f32[100000] = normal(0, 1)', inp,
                            out="o3.safetensors")
        self.assertBitsEqual(self.tensor(t3, "n")[:5000], self.tensor(t1, "n"), "prefix")
        # Keyed by the name at generation: a later rename keeps the values.
        t4, _ = self.run_ok('seed 3\nfill "n" : f32[5000] = normal(0, 1)\nrename "n" -> "q"', inp,
                            out="o4.safetensors")
        self.assertBitsEqual(self.tensor(t4, "q"), self.tensor(t1, "n"), "renamed")

    def test_generated_through_a_transpose(self):
        """A generated tensor read through a transpose draws each element from
        its own index (scattered), and must equal the one made in order."""
        inp = self.save({"a": ("F32", np.ones(3, F))})
        for init, dtype, shape in (("normal(0, 1)", "f32", (37, 53)),
                                   ("uniform(-1, 1)", "bf16", (64, 3)),
                                   ("truncated_normal(1)", "f64", (5, 33))):
            plain = 'seed 9\nfill "g" : %s[%d, %d] = %s' % (dtype, shape[0], shape[1], init)
            t1, _ = self.run_ok(plain, inp, out="plain.safetensors")
            t2, _ = self.run_ok(plain + '\nmap "g" = transpose(x)', inp, out="moved.safetensors")
            want = self.tensor(t1, "g").T
            self.assertBitsEqual(self.tensor(t2, "g"), want, "%s through transpose" % init)


class TestSharedSubexpressions(RunCase):
    def test_doubling_chain(self):
        """40 maps of x + x: each value is used twice, so evaluating the tree
        naively would take 2^40 steps; the result is x * 2^40 exactly."""
        x = (np.arange(200000, dtype=F) / F(200000)).astype(F)
        t, _ = self.run_ok("\n".join(['map "w" = x + x'] * 40), {"w": ("F32", x)})
        self.assertBitsEqual(self.tensor(t, "w"), x * F(2.0 ** 40), "x doubled 40 times")

    def test_shared_value_in_concat_parts(self):
        """One input tensor in two parts of a concat (by tensor()), beside a
        computed part: each part keeps its own values."""
        a = np.arange(12, dtype=F).reshape(3, 4)
        b = (np.arange(12, dtype=F).reshape(3, 4) + F(100))
        t, _ = self.run_ok('map "a2" = tensor("a")\nmap "a" = x * 2\n'
                           'concat "{a,b,a2}" axis 1 -> "c"\n',
                           {"a": ("F32", a), "b": ("F32", b), "a2": ("F32", b)})
        want = np.concatenate([a * F(2), b, a], axis=1)
        self.assertBitsEqual(self.tensor(t, "c"), want, "concat")


# =============================================================================
# Parameters and optimizer state in separate files
# =============================================================================

class TestSplitState(RunCase):
    """--params P --state S: the recipe sees P under params/ and S under
    opt_state/; OUT_P and OUT_S get them back without the prefixes."""

    def files(self):
        rng = np.random.default_rng(90)
        params = {"Dense_0/kernel": ("F32", rng.standard_normal((3, 4)).astype(F)),
                  "Dense_0/bias": ("F32", rng.standard_normal(4).astype(F))}
        state = {"0/count": ("I32", np.array(7, np.int32))}
        for slot in ("mu", "nu"):
            for name, (dt, arr) in params.items():
                state["0/%s/%s" % (slot, name)] = (dt, rng.standard_normal(arr.shape).astype(F))
        return (self.save(params, "p.safetensors", {"format": "flax"}),
                self.save(state, "s.safetensors"), params, state)

    RECIPE = ('mirror "params/" -> "opt_state/0/mu/", "opt_state/0/nu/"\n'
              'rename "params/Dense_0/**" -> "params/layer1/$1"\n'
              'map "params/layer1/kernel" = transpose(x * 2)\n'
              'init-lora "params/layer1/kernel" rank 2\n')

    def run_split(self, recipe, p, s, *extra):
        r = self.recipe(recipe)
        return self.surg("run", r, "--params", p, "--state", s, self.path("p2.safetensors"),
                         self.path("s2.safetensors"), *extra)

    def test_values_follow_in_both_files(self):
        p, s, params, state = self.files()
        before = (runutil.sha256(p), runutil.sha256(s))
        code, _, err = self.run_split(self.RECIPE, p, s)
        self.assertEqual(code, 0, err)
        self.assertEqual((runutil.sha256(p), runutil.sha256(s)), before, "an input changed")
        tp, mp, _ = stnp.load(self.path("p2.safetensors"))
        ts, ms, _ = stnp.load(self.path("s2.safetensors"))
        k = params["Dense_0/kernel"][1]
        self.assertEqual(sorted(tp), ["layer1/bias", "layer1/kernel", "layer1/lora/lora_a",
                                      "layer1/lora/lora_b"])
        self.assertBitsEqual(self.tensor(tp, "layer1/kernel"), k.T * F(2), "kernel")
        self.assertBitsEqual(self.tensor(tp, "layer1/bias"), params["Dense_0/bias"][1], "bias")
        self.assertEqual(self.tensor(tp, "layer1/lora/lora_a").shape, (4, 2))
        self.assertBitsEqual(self.tensor(tp, "layer1/lora/lora_b"), np.zeros((2, 3), F), "B")
        for slot in ("mu", "nu"):
            # A value map leaves the slots; its transpose applies to them too.
            self.assertBitsEqual(self.tensor(ts, "0/%s/layer1/kernel" % slot),
                                 state["0/%s/Dense_0/kernel" % slot][1].T, slot)
            self.assertBitsEqual(self.tensor(ts, "0/%s/layer1/bias" % slot),
                                 state["0/%s/Dense_0/bias" % slot][1], slot)
            for ab, shape in (("a", (4, 2)), ("b", (2, 3))):
                self.assertBitsEqual(self.tensor(ts, "0/%s/layer1/lora/lora_%s" % (slot, ab)),
                                     np.zeros(shape, F), "zero slot")
        self.assertBitsEqual(self.tensor(ts, "0/count"), np.array(7, np.int32), "count")
        # Each file's records name its own tensors, without the prefix.
        lora = json.loads(mp["surg.lora"])
        self.assertEqual([(r["target"], r["lora_a"], r["lora_b"]) for r in lora],
                         [("layer1/kernel", "layer1/lora/lora_a", "layer1/lora/lora_b")])
        self.assertEqual(mp["format"], "flax")
        self.assertNotIn("surg.lora", ms or {})

    def test_same_result_as_one_checkpoint(self):
        """The split run writes exactly the tensors of a run on the combined
        checkpoint, prefixes aside."""
        p, s, params, state = self.files()
        code, _, err = self.run_split(self.RECIPE, p, s)
        self.assertEqual(code, 0, err)
        both = {"params/" + n: v for n, v in params.items()}
        both.update({"opt_state/" + n: v for n, v in state.items()})
        whole, _ = self.run_ok(self.RECIPE, both, out="whole.safetensors")
        split = {}
        for prefix, path in (("params/", "p2.safetensors"), ("opt_state/", "s2.safetensors")):
            t, _, _ = stnp.load(self.path(path))
            split.update({prefix + n: v for n, v in t.items()})
        self.assertEqual(sorted(split), sorted(whole))
        for name in whole:
            self.assertBitsEqual(split[name][1], whole[name][1], name)

    def test_check_and_plan_take_the_parts(self):
        p, s, _, _ = self.files()
        r = self.recipe(self.RECIPE)
        code, out, err = self.surg("check", r, "--params", p, "--state", s)
        self.assertEqual(code, 0, err)
        code, out, err = self.surg("plan", r, "--params", p, "--state", s, "--json")
        self.assertEqual(code, 0, err)
        names = [t["name"] for t in json.loads(out)["tensors"]]
        self.assertIn("opt_state/0/mu/layer1/kernel", names)
        self.assertIn("params/layer1/lora/lora_a", names)

    def test_a_tensor_outside_both_trees_is_refused(self):
        p, s, _, _ = self.files()
        code, _, err = self.run_split('fill "extra" : f32[2] = 0', p, s)
        self.assertEqual(code, 1, err)
        self.assertIn('"extra" is under none of "params/", "opt_state/"', err)
        self.assertFalse(os.path.exists(self.path("p2.safetensors")))
        self.assertFalse(os.path.exists(self.path("s2.safetensors")))

    def test_a_tie_across_files_is_refused(self):
        p, s, _, _ = self.files()
        code, _, err = self.run_split('tie "opt_state/0/mu/Dense_0/bias" = "params/Dense_0/bias"',
                                      p, s)
        self.assertEqual(code, 1, err)
        self.assertIn("a tie is stored within one file", err)
        self.assertEqual(runutil.temporaries(self.tmp), [])

    def test_usage(self):
        p, s, _, _ = self.files()
        r = self.recipe('map "params/Dense_0/bias" = x + 1')
        for args in ((r, "--params", p, "--state", s, self.path("only.safetensors")),
                     (r, "--params", p, p, self.path("a.safetensors"), self.path("b.safetensors")),
                     (r, "--params", p, "--params", p, self.path("x.safetensors"))):
            code, _, err = self.surg("run", *args)
            self.assertEqual(code, 2, "%s: %s" % (args, err))
        # --params alone: one input, one output.
        code, _, err = self.surg("run", r, "--params", p, self.path("p3.safetensors"))
        self.assertEqual(code, 0, err)
        t, _, _ = stnp.load(self.path("p3.safetensors"))
        self.assertEqual(sorted(t), ["Dense_0/bias", "Dense_0/kernel"])


# =============================================================================
# Sharded output
# =============================================================================

class TestSharded(RunCase):
    def test_shards(self):
        rng = np.random.default_rng(80)
        tensors = {"t%d" % i: ("F32", rng.standard_normal(100).astype(F)) for i in range(5)}
        tensors["big"] = ("F32", rng.standard_normal(300).astype(F))  # 1200 bytes: its own shard
        tensors["s"] = ("BF16", bf16(rng.standard_normal(50)))          # 100 bytes
        inp = self.save(tensors)
        out = self.path("sharded")
        self.run_ok('map "t0" = x * 2', inp, "--max-shard-size", "1000", out=out)
        want = {n: a for n, (_, a) in tensors.items()}
        want["t0"] = want["t0"] * F(2)
        # Greedy cut over names in byte order, at most 1000 bytes of data a shard.
        sizes = {n: want[n].nbytes for n in want}
        shards, cur, cur_size = [], [], 0
        for n in sorted(want, key=lambda s: s.encode()):
            if cur and cur_size + sizes[n] > 1000:
                shards.append(cur)
                cur, cur_size = [], 0
            cur.append(n)
            cur_size += sizes[n]
        shards.append(cur)
        m = len(shards)
        names = ["model-%05d-of-%05d.safetensors" % (i + 1, m) for i in range(m)]
        files = sorted(os.listdir(out))
        self.assertEqual(files, sorted(names + ["model.safetensors.index.json"]))
        with open(os.path.join(out, "model.safetensors.index.json")) as f:
            text = f.read()
        index = json.loads(text)
        weight_map = {n: names[i] for i, group in enumerate(shards) for n in group}
        self.assertEqual(index["weight_map"], weight_map)
        self.assertEqual(int(index["metadata"]["total_size"]), sum(sizes.values()))
        self.assertEqual(text.rstrip("\n"), json.dumps(index, indent=2, sort_keys=True))
        seen = {}
        for i, fname in enumerate(names):
            t, _, _ = stnp.load(os.path.join(out, fname))
            self.assertEqual(sorted(t), sorted(shards[i]), fname)
            seen.update(t)
        for n, a in want.items():
            self.assertBitsEqual(seen[n][1], a, n)
        # surg reads the sharded output back.
        t2, _ = self.run_ok('keep "**"', out, out="back.safetensors")
        for n, a in want.items():
            self.assertBitsEqual(self.tensor(t2, n), a, n)

    def test_one_shard(self):
        a = np.arange(10, dtype=F)
        out = self.path("single")
        self.run_ok('map "a" = x + 1', {"a": ("F32", a)}, "--max-shard-size", "5GB", out=out)
        self.assertEqual(os.listdir(out), ["model.safetensors"])
        t, _, _ = stnp.load(os.path.join(out, "model.safetensors"))
        self.assertBitsEqual(t["a"][1], a + F(1))


# =============================================================================
# Safety: refusals, exit codes, no partial output, no temporaries
# =============================================================================

class TestSafety(RunCase):
    def setUp(self):
        super().setUp()
        self.inp = self.save({"a": ("F32", np.arange(12, dtype=F)),
                              "b": ("F32", np.ones(3, F))})
        self.digest = runutil.sha256(self.inp)

    def assertNoTemporaries(self, directory=None):
        self.assertEqual(runutil.temporaries(directory or self.tmp), [])

    def test_output_mode_follows_umask(self):
        """The output is readable as any new file is (0666 less the umask),
        not private as a temporary file starts."""
        for mask, want in ((0o022, 0o644), (0o077, 0o600)):
            old = os.umask(mask)
            try:
                o = "mode%o.safetensors" % mask
                self.run_ok('map "a" = x * 2', self.inp, out=o)
            finally:
                os.umask(old)
            self.assertEqual(os.stat(self.path(o)).st_mode & 0o777, want, "umask %o" % mask)

    def test_out_equals_in(self):
        self.run_fails(2, 'map "a" = x * 2', self.inp, out=self.inp)
        self.assertEqual(runutil.sha256(self.inp), self.digest)
        self.assertNoTemporaries()

    def test_out_is_in_spelled_differently(self):
        other = os.path.join(self.tmp, ".", "in.safetensors")
        self.run_fails(2, 'map "a" = x * 2', self.inp, out=other)
        self.assertEqual(runutil.sha256(self.inp), self.digest)
        link = self.path("link.safetensors")
        os.link(self.inp, link)
        self.run_fails(2, 'map "a" = x * 2', self.inp, out=link)
        self.assertEqual(runutil.sha256(self.inp), self.digest)
        self.assertNoTemporaries()

    def test_recipe_error(self):
        err, o = self.run_fails(1, 'map "c" = x * 2', self.inp)
        self.assertIn("r.surg:1:", err)
        self.assertFalse(os.path.exists(o))
        self.assertNoTemporaries()
        err, o = self.run_fails(1, 'map "a" = reshape(x, 5, -1)', self.inp)
        self.assertFalse(os.path.exists(o))
        self.assertNoTemporaries()

    def test_error_keeps_existing_output(self):
        o = self.path("out.safetensors")
        with open(o, "wb") as f:
            f.write(b"old")
        self.run_fails(1, 'map "nope" = x', self.inp)
        with open(o, "rb") as f:
            self.assertEqual(f.read(), b"old")
        self.assertNoTemporaries()
        # and a successful run replaces it
        t, _ = self.run_ok('map "a" = x + 1', self.inp)
        self.assertBitsEqual(self.tensor(t, "a"), np.arange(12, dtype=F) + F(1))

    def test_sharded_recipe_error(self):
        out = self.path("shards")
        self.run_fails(1, 'drop "missing"', self.inp, "--max-shard-size", "10", out=out)
        self.assertFalse(os.path.exists(out) and os.listdir(out), "shards written")
        self.assertNoTemporaries()

    def test_missing_input(self):
        _, o = self.run_fails(2, 'keep "**"', self.path("absent.safetensors"))
        self.assertFalse(os.path.exists(o))

    def test_missing_output_directory(self):
        o = self.path("no", "such", "dir", "out.safetensors")
        self.run_fails(2, 'keep "**"', self.inp, out=o)
        self.assertFalse(os.path.exists(self.path("no")))
        self.assertNoTemporaries()

    def test_malformed_input(self):
        bad = self.path("bad.safetensors")
        with open(self.inp, "rb") as f:
            blob = f.read()
        with open(bad, "wb") as f:
            f.write(blob[:-4])  # the data region is too short
        _, o = self.run_fails(1, 'keep "**"', bad)
        self.assertFalse(os.path.exists(o))
        self.assertNoTemporaries()

    def test_usage_errors(self):
        r = self.recipe('keep "**"')
        for args in (["run", r, self.inp], ["run", r, self.inp, self.path("o.safetensors"),
                                            "--threads", "0"],
                     ["run", r, self.inp, self.path("o.safetensors"), "--max-shard-size", "lots"]):
            code, _, err = self.surg(*args)
            self.assertEqual(code, 2, "surg %s: exit %d\n%s" % (" ".join(args), code, err))
        self.assertFalse(os.path.exists(self.path("o.safetensors")))

    def test_to_target(self):
        target = self.path("target.json")
        with open(target, "w") as f:
            json.dump({"a": {"dtype": "F32", "shape": [3, 4]}, "b": {"dtype": "F32", "shape": [3]}},
                      f)
        t, _ = self.run_ok('map "a" = reshape(x, 3, 4)', self.inp, "--to", target)
        self.assertBitsEqual(self.tensor(t, "a"), np.arange(12, dtype=F).reshape(3, 4))
        _, o = self.run_fails(1, 'map "a" = reshape(x, 4, 3)', self.inp, "--to", target,
                              out="mismatch.safetensors")
        self.assertFalse(os.path.exists(o))
        self.assertNoTemporaries()


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surg", required=True, help="the surg executable")
    ARGS, rest = parser.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
