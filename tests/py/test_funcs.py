"""test_funcs.py: the functions of map that merges are written with --
comparisons, where, sin cos acos pow minimum maximum, slice pad repeat
concat, topk_mask and bernoulli -- through `surg run`, every value against
NumPy (inputs written and outputs read with stnp), NaN and infinity
included; the same bytes on 1 and 3 threads; SLERP, TIES and DARE written
in the language against their definitions (mergekit's) in NumPy; and the
functions with NumPy's broadcasting and the reductions over an axis (where
above a row's mean, vocabularies grown by rows of the mean).

  * comparisons and where, minimum, maximum, the layout functions: exact.
  * sin cos acos pow: computed in double with the C library and rounded to
    the tensor's type: within 1 f32 ulp of NumPy's float64 function rounded
    to float32; f64 within 2 ulps of NumPy's float64.
  * topk_mask: the floor(fraction * n) elements largest in magnitude, ties to
    the lower index, NaN above infinity: np.lexsort's order, exactly.
  * bernoulli: the documented stream (Philox draw k on counter (k, 1, j)
    under the output's key; element 4k + i true when word i < p * 2^32).

usage: test_funcs.py --surg SURG [unittest args]
"""

import argparse
import os
import sys
import tempfile
import time
import unittest

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402
from runutil import philox4x32_10, philox_key, ulp_distance_f32  # noqa: E402

ARGS = None  # filled in by main()

F = np.float32
D = np.float64

SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -2.0, np.inf, -np.inf, np.nan, 1e-40, 3.0, -3.0]


class Case(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-funcs-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def run_recipe(self, text, tensors, *opts, out="out.safetensors"):
        """Run TEXT on TENSORS (stnp entries); the output's arrays by name."""
        inp = self.path("in.safetensors")
        stnp.save(inp, tensors)
        r = self.path("r.surg")
        with open(r, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        code, _, err = runutil.run_surg(ARGS.surg, "run", r, inp, self.path(out), *opts)
        self.assertEqual(code, 0, "surg run failed\n%s\n%s" % (text, err))
        got, _, _ = stnp.load(self.path(out))
        return {k: v[1] for k, v in got.items()}

    def fails(self, text, tensors, code, message):
        inp = self.path("in.safetensors")
        stnp.save(inp, tensors)
        r = self.path("r.surg")
        with open(r, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        rc, _, err = runutil.run_surg(ARGS.surg, "check", r, "--from", inp)
        self.assertEqual(rc, code, err)
        self.assertIn(message, err)

    def assertSame(self, got, want, what=""):
        got, want = np.asarray(got), np.asarray(want)
        self.assertEqual(got.shape, want.shape, what)
        self.assertEqual(got.dtype, want.dtype, what)
        if got.dtype.kind == "f":
            u = np.dtype("u%d" % got.dtype.itemsize)
            bad = (got.view(u) != want.view(u)) & ~(np.isnan(got) & np.isnan(want))
        else:
            bad = got != want
        if bad.any():
            i = np.flatnonzero(bad)[:5]
            self.fail("%s: %d of %d differ; first at %s: got %r, want %r" % (
                what, int(bad.sum()), bad.size, i.tolist(), got.ravel()[i].tolist(),
                want.ravel()[i].tolist()))

    def assertUlpsF32(self, got, want, ulps, what=""):
        d = ulp_distance_f32(got, want)
        if (d > ulps).any():
            i = np.flatnonzero(d > ulps)[:5]
            self.fail("%s: %d beyond %d ulp; first at %s: got %r, want %r" % (
                what, int((d > ulps).sum()), ulps, i.tolist(), np.ravel(got)[i].tolist(),
                np.ravel(want)[i].tolist()))


def specials_and_random(n, seed, dtype=F):
    rng = np.random.default_rng(seed)
    v = np.concatenate([np.array(SPECIAL, D), rng.standard_normal(n - len(SPECIAL)) * 3])
    return v.astype(dtype)


def topk_reference(x, fraction):
    """The mask: the floor(fraction * n) largest |x|, ties to the lower
    index, NaN largest (a lexsort on (NaN first, |x| descending, index))."""
    m = np.abs(x.astype(D)).ravel()
    nan = np.isnan(m)
    order = np.lexsort((np.arange(m.size), -np.where(nan, 0, m), ~nan))
    k = int(np.floor(fraction * m.size))
    mask = np.zeros(m.size, bool)
    mask[order[:k]] = True
    return mask.reshape(x.shape)


def bernoulli_reference(seed, name, index, p, n):
    w = philox4x32_10(np.arange((n + 3) // 4, dtype=np.uint64), philox_key(seed, name), 1, index)
    words = np.stack(w, axis=1).ravel()[:n]
    return words.astype(D) < p * 2.0 ** 32


class TestCompareWhere(Case):
    def test_comparisons_f32(self):
        a = specials_and_random(400, 1)
        b = np.roll(a, 7)
        b[:12] = a[:12]  # equal pairs, 0 and -0, NaN with NaN
        b[12] = -0.0
        ops = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
               "==": np.equal, "!=": np.not_equal}
        lines = ['fill "%s" : f32[400] = 0' % k for k in "ABCDEF"]
        for name, op in zip("ABCDEF", ops):
            lines.append('map "%s" = tensor("a") %s tensor("b")' % (name, op))
        lines.append('map "n" = x > 0.1')  # the number in f32, as arithmetic rounds it
        got = self.run_recipe("\n".join(lines), {"a": ("F32", a), "b": ("F32", b),
                                                 "n": ("F32", a)})
        for name, (op, f) in zip("ABCDEF", ops.items()):
            self.assertSame(got[name], f(a, b), "a %s b" % op)
        self.assertSame(got["n"], a > F(0.1), "x > 0.1")

    def test_int_and_mixed(self):
        i = np.arange(-5, 7, dtype=np.int32)
        f = np.linspace(-5, 6, 12).astype(F) + F(0.5)
        got = self.run_recipe('fill "m" : bool[12] = 0\nmap "m" = tensor("i") < tensor("f")\n'
                              'map "i" = x >= 2.5',
                              {"i": ("I32", i), "f": ("F32", f)})
        self.assertSame(got["i"], i >= 2.5)
        self.assertSame(got["m"], i.astype(F) < f)

    def test_where(self):
        a = specials_and_random(64, 2)
        b = np.arange(64, dtype=np.int32) - 30
        got = self.run_recipe(
            'map "w" = where(tensor("a") != tensor("a"), 5, tensor("b"))\n'
            'map "a" = where(x > 0, x, 0)\n'
            'map "b" = where(x > 0, x, tensor("a") * 2)',
            {"a": ("F32", a), "b": ("I32", b), "w": ("F32", np.zeros(64, F))})
        self.assertSame(got["a"], np.where(a > 0, a, F(0)).astype(F))
        # a number and an i32 tensor: the map's result is i32
        self.assertSame(got["w"], np.where(np.isnan(a), 5, b).astype(np.int32))
        # int and f32 branches meet in f32, which the map's result is; "a" is
        # already mapped when b's map reads it
        a2 = np.where(a > 0, a, F(0)).astype(F)
        self.assertSame(got["b"], np.where(b > 0, b.astype(F), a2 * F(2)).astype(F))

    def test_type_errors(self):
        t = {"a": ("F32", np.zeros((2, 3), F)), "m": ("BOOL", np.zeros((2, 3), bool))}
        self.fails('map "a" = where(x, x, 0)', t, 1,
                   "the condition of where is a bool tensor, not f32[2, 3]")
        self.fails('map "a" = where(x > 0, 1, 0)', t, 1,
                   "where between two numbers has no dtype")
        self.fails('map "m" = x < 1', t, 1, "cannot use '<' on a bool tensor")
        self.fails('map "a" = x + (x > 0)', t, 1, "cannot use '+' on a bool tensor")


class TestElementwise(Case):
    def test_f32_functions(self):
        x = specials_and_random(3000, 3)
        y = np.roll(specials_and_random(3000, 4), 5)
        c = np.concatenate([np.linspace(-1.2, 1.2, 2000), SPECIAL, np.zeros(988)]).astype(F)
        got = self.run_recipe(
            'fill "s" : f32[3000] = 0; fill "co" : f32[3000] = 0; fill "ac" : f32[3000] = 0\n'
            'fill "p" : f32[3000] = 0; fill "lo" : f32[3000] = 0; fill "hi" : f32[3000] = 0\n'
            'fill "sq" : f32[3000] = 0\n'
            'map "s" = sin(tensor("x")); map "co" = cos(tensor("x")); map "ac" = acos(tensor("c"))\n'
            'map "p" = pow(tensor("x"), tensor("y")); map "sq" = pow(tensor("x"), 2)\n'
            'map "lo" = minimum(tensor("x"), tensor("y")); map "hi" = maximum(tensor("x"), tensor("y"))',
            {"x": ("F32", x), "y": ("F32", y), "c": ("F32", c)})
        xd, yd = x.astype(D), y.astype(D)
        with np.errstate(all="ignore"):
            self.assertUlpsF32(got["s"], np.sin(xd).astype(F), 1, "sin")
            self.assertUlpsF32(got["co"], np.cos(xd).astype(F), 1, "cos")
            self.assertUlpsF32(got["ac"], np.arccos(c.astype(D)).astype(F), 1, "acos")
            self.assertUlpsF32(got["p"], np.power(xd, yd).astype(F), 1, "pow")
            self.assertSame(got["sq"], np.power(xd, 2.0).astype(F), "pow(x, 2)")
        self.assertSame(got["lo"], np.minimum(x, y), "minimum")
        self.assertSame(got["hi"], np.maximum(x, y), "maximum")

    def test_pow_edges_and_f64(self):
        base = np.array([0.0, 0.0, -8.0, 1.0, np.nan, -1.0, 2.0, np.inf, -0.0, 0.5], D)
        expo = np.array([-1.0, 0.0, 1 / 3, np.nan, 0.0, np.inf, -1075, -0.5, -3.0, np.inf], D)
        x = np.concatenate([expo, np.linspace(-7, 7, 90)])
        c = np.concatenate([np.linspace(-1.1, 1.1, 95), [np.nan, np.inf, -0.0, 1.0, -1.0]])
        got = self.run_recipe('map "b" = pow(x, tensor("e"))\nmap "s" = sin(x)\n'
                              'map "co" = cos(x)\nmap "ac" = acos(x)',
                              {"b": ("F64", base), "e": ("F64", expo), "s": ("F64", x),
                               "co": ("F64", x), "ac": ("F64", c)})
        with np.errstate(all="ignore"):
            self.assertSame(got["b"], np.power(base, expo), "pow f64 edge cases")
            for name, want in (("s", np.sin(x)), ("co", np.cos(x)), ("ac", np.arccos(c))):
                g = got[name]
                ok = (np.isnan(g) & np.isnan(want)) | (np.abs(g - want) <= 2 * np.spacing(np.abs(want)))
                self.assertTrue(ok.all(), "%s f64: got %r want %r" % (name, g[~ok], want[~ok]))


class TestLayout(Case):
    def test_slice_pad_repeat_concat(self):
        rng = np.random.default_rng(5)
        a = rng.standard_normal((4, 6, 3)).astype(F)
        names = "s t p q r c k".split()
        got = self.run_recipe(
            'map "s" = slice(x, 1, 2, -1)\n'
            'map "t" = slice(x, 2, -1)\n'
            'map "p" = pad(x, 1, 2, 1, -0.5)\n'
            'map "q" = pad(x, 2, 0, 2, mean(x))\n'
            'map "r" = repeat(x, 3, 0)\n'
            'map "c" = concat(x, tensor("c") + 1, 1)\n'
            'map "k" = concat(slice(x, 1, 0, 2), slice(x, 1, 4), 1)',
            {n: ("F32", a) for n in names})
        self.assertSame(got["s"], a[:, 2:-1, :])
        self.assertSame(got["t"], a[:, :, 2:])
        self.assertSame(got["p"], np.pad(a, ((0, 0), (2, 1), (0, 0)), constant_values=F(-0.5)))
        m = F(np.mean(a.astype(D)))
        self.assertSame(got["q"], np.pad(a, ((0, 0), (0, 0), (0, 2)), constant_values=m))
        self.assertSame(got["r"], np.repeat(a, 3, axis=0))
        self.assertSame(got["c"], np.concatenate([a, a + F(1)], 1))
        self.assertSame(got["k"], np.concatenate([a[:, 0:2], a[:, 4:]], 1))

    def test_concat_mixed_dtypes(self):
        rng = np.random.default_rng(6)
        e = rng.standard_normal((2, 3)).astype(np.float16)
        f = rng.standard_normal((2, 3)).astype(F)
        got = self.run_recipe('map "e" = concat(x, tensor("f") * 2, x, 0)',
                              {"e": ("F16", e), "f": ("F32", f)})
        self.assertSame(got["e"], np.concatenate([e.astype(F), f * F(2), e.astype(F)], 0))

    def test_kv_heads_repeat(self):
        """Grouped-query attention to multi-head: HF's repeat_kv repeats each
        key/value head n_rep times in a row (expand then reshape), which is
        np.repeat over the head axis of the [heads * head_dim, hidden] weight."""
        kv, hd, hidden, rep = 2, 4, 6, 3
        w = np.random.default_rng(7).standard_normal((kv * hd, hidden)).astype(F)
        got = self.run_recipe('map "k" = reshape(repeat(reshape(x, %d, %d, %d), %d, 0), %d, %d)'
                              % (kv, hd, hidden, rep, kv * rep * hd, hidden), {"k": ("F32", w)})
        # repeat_kv on [batch, kv, seq, hd] states: states[:, :, None].expand(...).reshape
        heads = w.reshape(kv, hd, hidden)
        want = np.broadcast_to(heads[:, None], (kv, rep, hd, hidden)).reshape(kv * rep * hd, hidden)
        self.assertSame(got["k"], want)

    def test_inputs_only_moves(self):
        """Slices and concats of inputs are byte moves: the same values."""
        i = np.arange(60, dtype=np.int64).reshape(5, 12)
        got = self.run_recipe('map "i" = concat(slice(x, 0, 3), repeat(slice(x, 0, 0, 1), 2, 0), 0)',
                              {"i": ("I64", i)})
        self.assertSame(got["i"], np.concatenate([i[3:], np.repeat(i[:1], 2, 0)], 0))

    def test_errors(self):
        t = {"a": ("F32", np.zeros((2, 3), F)), "b": ("F32", np.zeros((3, 3), F))}
        self.fails('map "a" = slice(x, 1, 2, 5)', t, 1,
                   "slice of f32[2, 3] along axis 1 needs 0 <= start <= end <= 3, not 2:5")
        self.fails('map "a" = slice(x, 2, 0)', t, 1, "slice of f32[2, 3] has no axis 2")
        self.fails('map "a" = concat(x, transpose(x), 1)', t, 1,
                   "concat along axis 1 cannot join f32[2, 3] and f32[3, 2]")
        self.fails('map "a" = repeat(x, 0, 0)', t, 1, "repeat needs a count of 1 or more")
        self.fails('map "a" = pad(x, 0, 1, 1, x)', t, 1, "the value of pad is a scalar")


class TestTopk(Case):
    def check(self, x, st, fractions, *opts):
        lines = []
        tensors = {"x": (st, x)}
        for j, f in enumerate(fractions):
            tensors["m%d" % j] = ("BOOL", np.zeros(x.shape, bool))
            lines.append('map "m%d" = topk_mask(tensor("x"), %r)' % (j, f))
        got = self.run_recipe("\n".join(lines), tensors, *opts)
        for j, f in enumerate(fractions):
            self.assertSame(got["m%d" % j], topk_reference(x, f), "topk_mask %s %r" % (st, f))
        return got

    def test_f32_ties_nan_inf(self):
        rng = np.random.default_rng(8)
        x = rng.integers(-6, 7, 5000).astype(F) * F(0.25)  # many ties, both signs
        x[[3, 77, 4000]] = [np.nan, np.inf, -np.inf]
        x[100:110] = -0.0
        self.check(x.reshape(50, 100), "F32", [0.0, 0.0001, 0.1, 0.33, 0.5, 0.9, 0.9999, 1.0])

    def test_f64_int_f16(self):
        rng = np.random.default_rng(9)
        x = rng.standard_normal(999)
        x[::7] = x[1]  # ties, 64-bit keys
        self.check(x, "F64", [0.2, 0.75])
        self.check(rng.integers(-50, 50, 1000).astype(np.int32), "I32", [0.3])
        self.check(rng.standard_normal(1000).astype(np.float16), "F16", [0.5])

    def test_large_and_threads(self):
        """Several chunks, ties across chunk borders, 1 and 3 threads."""
        rng = np.random.default_rng(10)
        x = (rng.integers(0, 40, 300000) - 20).astype(F)
        a = self.check(x, "F32", [0.37], "--threads", "1")
        b = self.check(x, "F32", [0.37], "--threads", "3")
        self.assertSame(a["m0"], b["m0"])

    def test_ties_merge(self):
        """TIES (mergekit's ties with density 0.5, weights 1 and 0.6,
        normalize): trim each task vector by magnitude, elect the sign of the
        weighted sum, average the agreeing weighted deltas."""
        rng = np.random.default_rng(11)
        base, m1, m2 = (rng.standard_normal((16, 24)).astype(F) for _ in range(3))
        agree = 'cast(sign(tensor("m%d/w")) == tensor("sign/w"), f32) * %s'
        divisor = "(%s + %s)" % (agree % (1, "1.0"), agree % (2, "0.6"))
        recipe = """
map "m1/w" = where(topk_mask(x - tensor("base/w"), 0.5), (x - tensor("base/w")) * 1.0, 0)
map "m2/w" = where(topk_mask(x - tensor("base/w"), 0.5), (x - tensor("base/w")) * 0.6, 0)
fill "sign/w" : f32[16, 24] = 0
map "sign/w" = where(tensor("m1/w") + tensor("m2/w") >= 0, full_like(x, 1), full_like(x, -1))
map "base/w" = x + (where(sign(tensor("m1/w")) == tensor("sign/w"), tensor("m1/w"), 0) + where(sign(tensor("m2/w")) == tensor("sign/w"), tensor("m2/w"), 0)) / where(DIV == 0, full_like(x, 1), DIV)
drop "m1/w"; drop "m2/w"; drop "sign/w"
""".replace("DIV", divisor)
        got = self.run_recipe(recipe, {"base/w": ("F32", base), "m1/w": ("F32", m1),
                                       "m2/w": ("F32", m2)})
        deltas, weights = [], [1.0, 0.6]
        for m, wt in zip((m1, m2), weights):
            d = (m - base).astype(D)
            deltas.append(np.where(topk_reference(m - base, 0.5), d, 0) * wt)
        deltas = np.stack(deltas)
        majority = np.where(deltas.sum(0) >= 0, 1.0, -1.0)
        agree = np.sign(deltas) == majority
        mixed = (deltas * agree).sum(0)
        divisor = (np.array(weights)[:, None, None] * agree).sum(0)
        divisor[divisor == 0] = 1
        want = base + mixed / divisor
        np.testing.assert_allclose(got["base/w"], want, rtol=1e-5, atol=1e-6)


class TestBernoulli(Case):
    def test_stream_and_threads(self):
        n = 100003
        text = ('seed 42\nmap "m" = bernoulli(0.3)\n'
                'map "w" = where(bernoulli(0.9), x, 0) + cast(bernoulli(0.5, x), f32)')
        t = {"m": ("BOOL", np.zeros(n, bool)), "w": ("F32", np.ones(n, F))}
        a = self.run_recipe(text, t, "--threads", "1", out="a.safetensors")
        b = self.run_recipe(text, t, "--threads", "3", out="b.safetensors")
        self.assertSame(a["m"], bernoulli_reference(42, "m", 0, 0.3, n))
        want = (np.where(bernoulli_reference(42, "w", 0, 0.9, n), F(1), F(0)) +
                bernoulli_reference(42, "w", 1, 0.5, n).astype(F))
        self.assertSame(a["w"], want)
        self.assertSame(a["m"], b["m"])
        self.assertSame(a["w"], b["w"])
        self.assertLess(abs(a["m"].mean() - 0.3), 0.01)

    def test_dare(self):
        """DARE (mergekit's dare_linear, density 0.7, weight 0.5): keep each
        delta with probability 0.7, rescale by 1/0.7, add to the base."""
        rng = np.random.default_rng(12)
        base, m1 = (rng.standard_normal((32, 8)).astype(F) for _ in range(2))
        got = self.run_recipe(
            'seed 3\nmap "m1/w" = where(bernoulli(0.7), (x - tensor("base/w")) / 0.7, 0)\n'
            'map "base/w" = x + 0.5 * tensor("m1/w")\ndrop "m1/w"',
            {"base/w": ("F32", base), "m1/w": ("F32", m1)})
        keep = bernoulli_reference(3, "m1/w", 0, 0.7, base.size).reshape(base.shape)
        delta = np.where(keep, (m1 - base) / F(0.7), F(0)).astype(F)
        self.assertSame(got["base/w"], (base + F(0.5) * delta).astype(F))


class TestSlerp(Case):
    def test_slerp(self):
        """SLERP as mergekit's slerp(t, v0, v1): the angle between the
        normalized tensors, lerp when they are nearly parallel."""
        rng = np.random.default_rng(13)
        v0, v1 = (rng.standard_normal((20, 30)).astype(F) for _ in range(2))
        t = 0.3
        dot = 'sum(x / norm(x) * (tensor("b/w") / norm(tensor("b/w"))))'
        th = "acos(%s)" % dot
        recipe = ('map "a/w" = where(abs(%s) > 0.9995, (1 - %r) * x + %r * tensor("b/w"), '
                  'sin((1 - %r) * %s) / sin(%s) * x + sin(%r * %s) / sin(%s) * tensor("b/w"))'
                  % (dot, t, t, t, th, th, t, th, th))
        got = self.run_recipe(recipe, {"a/w": ("F32", v0), "b/w": ("F32", v1)})
        a, b = v0.astype(D), v1.astype(D)
        d = np.sum(a / np.linalg.norm(a) * (b / np.linalg.norm(b)))
        theta = np.arccos(d)
        want = np.sin((1 - t) * theta) / np.sin(theta) * a + np.sin(t * theta) / np.sin(theta) * b
        np.testing.assert_allclose(got["a/w"], want, rtol=2e-5, atol=2e-6)


class TestLet(Case):
    """let: a name is one value per matched tensor (one mask however often
    used; bernoulli streams numbered where the map first uses a name), its
    x and captures the map's; a transpose inside a name's value is moved
    with a mirrored tensor's slots only when written around the map's
    value."""

    def test_one_mask_per_name(self):
        n = 5000
        x = np.arange(1, n + 1, dtype=F)
        text = ('seed 9\nlet m = bernoulli(0.5)\nlet other = bernoulli(0.25)\n'
                'map "a" = where(other, x, x) + where(m, x, 0) + where(m, x, 0) + cast(bernoulli(0.3), f32) * 1000000 - x\n'
                'map "b" = cast(m, f32)')
        a = self.run_recipe(text, {"a": ("F32", x), "b": ("F32", x)}, "--threads", "3")
        m0 = bernoulli_reference(9, "a", 1, 0.5, n)  # `other` is drawn first (index 0)
        m2 = bernoulli_reference(9, "a", 2, 0.3, n)
        self.assertSame(a["a"], np.where(m0, 2 * x, F(0)) + np.where(m2, F(1000000), F(0)))
        self.assertSame(a["b"], bernoulli_reference(9, "b", 0, 0.5, n).astype(F))

    def test_captures_and_x_per_match(self):
        rng = np.random.default_rng(4)
        t = {"a/w": ("F32", rng.standard_normal((3, 4)).astype(F)),
             "a/v": ("F32", rng.standard_normal(6).astype(F)),
             "b/w": ("F32", rng.standard_normal((3, 4)).astype(F)),
             "b/v": ("F32", rng.standard_normal(6).astype(F))}
        got = self.run_recipe('let d = tensor("b/$1") - x\nlet s = sum(d * d)\n'
                              'map "a/*" = x + d / s', t)
        for k in ("w", "v"):
            a, b = t["a/" + k][1], t["b/" + k][1]
            d = b - a
            self.assertUlpsF32(got["a/" + k], a + d / F(np.sum(d.astype(D) ** 2)), 1, k)

    def test_mirror_layout(self):
        t = {"params/k": ("F32", np.arange(6, dtype=F).reshape(2, 3)),
             "opt/mu/k": ("F32", np.ones((2, 3), F))}
        got = self.run_recipe('mirror "params/" -> "opt/mu/"\nlet double = x * 2\n'
                              'map "params/k" = transpose(double)', t)
        self.assertSame(got["params/k"], (np.arange(6, dtype=F).reshape(2, 3) * 2).T)
        self.assertSame(got["opt/mu/k"], np.ones((3, 2), F))
        self.fails('mirror "params/" -> "opt/mu/"\nlet t = transpose(x)\nmap "params/k" = t * 2',
                   t, 1, "can follow a layout call (transpose, reshape, slice, pad, repeat, "
                   "concat) only when it wraps the whole value")

    def test_names_of_names_stay_linear(self):
        """Sixty names each using the one before twice: the value is a DAG
        of 2^60 paths, and following the slots of a mirrored parameter must
        look at each name once, not walk every path (a hang)."""
        t = {"params/k": ("F32", np.arange(6, dtype=F).reshape(2, 3)),
             "opt/mu/k": ("F32", np.ones((2, 3), F))}
        lets = "let a0 = x\n" + "".join("let a%d = a%d + a%d\n" % (i, i - 1, i - 1)
                                         for i in range(1, 61))
        start = time.monotonic()
        got = self.run_recipe('mirror "params/" -> "opt/mu/"\n' + lets +
                              'map "params/k" = transpose(a60 * 2)', t)
        self.assertSame(got["params/k"], (np.arange(6, dtype=F).reshape(2, 3) * F(2.0 ** 61)).T)
        self.assertSame(got["opt/mu/k"], np.ones((3, 2), F))
        self.assertLess(time.monotonic() - start, 20)


class TestBroadcast(Case):
    """The functions with NumPy's broadcasting and the reductions over an
    axis: comparisons, where, minimum, maximum and pow between tensors of
    different shapes, and vocabularies grown by rows of the mean."""

    def test_where_above_row_mean(self):
        """Rows of 8 quarters: every row mean is exact, and some values equal
        it (> is strict there)."""
        rng = np.random.default_rng(20)
        x = rng.integers(-8, 9, (6, 8)).astype(F) * F(0.25)
        x[0] = 1  # every value is the mean
        x[1, :4], x[1, 4:] = 2, 0  # mean 1, no value equal to it
        got = self.run_recipe('map "x" = where(x > mean(x, axis=1, keepdims=true), x, 0.0)\n'
                              'map "y" = where(x <= mean(x, 1, true), mean(x, axis=0), x)',
                              {"x": ("F32", x), "y": ("F32", x)})
        m = x.astype(D).mean(axis=1, keepdims=True).astype(F)
        self.assertSame(got["x"], np.where(x > m, x, F(0)))
        self.assertSame(got["y"], np.where(x <= m, x.astype(D).mean(axis=0).astype(F), x))

    def test_where_random_rows(self):
        """Random rows, the mean within an ulp of NumPy's in double: no value
        is that close to its row's mean here, so the choice is exact."""
        rng = np.random.default_rng(21)
        x = rng.standard_normal((40, 33)).astype(F)
        m = x.astype(D).mean(axis=1, keepdims=True)
        self.assertGreater(float(np.min(np.abs(x - m))), 1e-5)
        got = self.run_recipe('map "x" = where(x > mean(x, axis=1, keepdims=true), x, 0.0)',
                              {"x": ("F32", x)})
        self.assertSame(got["x"], np.where(x > m.astype(F), x, F(0)))

    def test_three_way_where_and_comparisons(self):
        rng = np.random.default_rng(22)
        c = rng.standard_normal((3, 1, 4)).astype(F)
        a = rng.standard_normal((5, 1)).astype(F)
        b = np.arange(4, dtype=np.int32) - 2
        got = self.run_recipe(
            'fill "w" : f32[1] = 0; fill "lt" : bool[1] = 0; fill "ne" : bool[1] = 0\n'
            'map "w" = where(tensor("c") > 0, tensor("a"), tensor("b"))\n'
            'map "lt" = tensor("a") < tensor("b")\n'
            'map "ne" = tensor("c") != reshape(tensor("a"), 1, 5, 1)',
            {"c": ("F32", c), "a": ("F32", a), "b": ("I32", b)})
        self.assertEqual(got["w"].shape, (3, 5, 4))
        self.assertSame(got["w"], np.where(c > 0, a, b.astype(F)).astype(F))
        self.assertSame(got["lt"], a < b.astype(F))
        self.assertSame(got["ne"], c != a.reshape(1, 5, 1))

    def test_minimum_maximum_pow(self):
        x = specials_and_random(48, 24).reshape(6, 8)
        row = specials_and_random(20, 25)[4:12]  # [8]: NaN and infinities among them
        col = np.linspace(-2, 2, 6).astype(F).reshape(6, 1)
        got = self.run_recipe(
            'map "lo" = minimum(x, tensor("row"))\n'
            'map "hi" = maximum(tensor("row"), x)\n'
            'map "p" = pow(abs(x), tensor("col"))\n'
            'fill "outer" : f32[1] = 0\n'
            'map "outer" = maximum(tensor("col"), tensor("row"))',
            {"lo": ("F32", x), "hi": ("F32", x), "p": ("F32", x), "row": ("F32", row),
             "col": ("F32", col)})
        self.assertSame(got["lo"], np.minimum(x, row))
        self.assertSame(got["hi"], np.maximum(row, x))
        self.assertSame(got["outer"], np.maximum(col, row))
        with np.errstate(all="ignore"):
            want = np.power(np.abs(x).astype(D), col.astype(D)).astype(F)
        self.assertUlpsF32(got["p"], want, 1, "pow broadcast")

    def test_embedding_grown_by_mean_rows(self):
        """resize_token_embeddings' mean resizing (its noise left out): N new
        rows, each the mean of the existing rows, for the embedding and the
        output head; by concat and repeat, and by pad with broadcasting."""
        rng = np.random.default_rng(26)
        n, d, grow = 50, 24, 6
        emb = rng.standard_normal((n, d)).astype(F)
        head = rng.standard_normal((n, d)).astype(F)
        got = self.run_recipe(
            'map "embed" = concat(x, repeat(mean(x, axis=0, keepdims=true), %d, 0), 0)\n'
            'map "head" = pad(x, 0, 0, %d) + pad(zeros_like(x), 0, 0, %d, 1)'
            ' * mean(x, axis=0, keepdims=true)' % (grow, grow, grow),
            {"embed": ("F32", emb), "head": ("F32", head)})
        for name, w in (("embed", emb), ("head", head)):
            g = got[name]
            self.assertEqual(g.shape, (n + grow, d), name)
            self.assertSame(g[:n], w, name + ": the existing rows")
            want = np.repeat(w.astype(D).mean(axis=0, keepdims=True), grow, 0).astype(F)
            self.assertUlpsF32(g[n:], want, 1, name + ": the new rows")
            self.assertSame(g[n:], np.repeat(g[n:n + 1], grow, 0), name + ": rows alike")

    def test_masks_over_held_values(self):
        """topk_mask of an expression with a reduction over an axis or a
        matmul below it, a reduction over an axis of a mask: the passes in
        order, the same bytes on 1 and 3 threads."""
        rng = np.random.default_rng(27)
        x = rng.standard_normal((300, 40)).astype(F)
        b = rng.standard_normal((300, 4)).astype(F)
        a = rng.standard_normal((4, 40)).astype(F)
        text = ('map "t" = where(topk_mask(x - mean(x, axis=0, keepdims=true), 0.3), x, 0)\n'
                'map "u" = where(topk_mask(tensor("B") @ tensor("A"), 0.1), 1.0, x)\n'
                'map "s" = sum(cast(topk_mask(x, 0.5), f32), axis=1, keepdims=true) + 0 * x')
        t = {"t": ("F32", x), "u": ("F32", x), "s": ("F32", x), "B": ("F32", b),
             "A": ("F32", a)}
        one = self.run_recipe(text, t, "--threads", "1", out="one.safetensors")
        three = self.run_recipe(text, t, "--threads", "3", out="three.safetensors")
        for k in one:
            self.assertSame(one[k], three[k], k + ": 1 and 3 threads")
        centered = x - x.astype(D).mean(axis=0, keepdims=True).astype(F)
        self.assertSame(one["t"], np.where(topk_reference(centered, 0.3), x, F(0)))
        # the product: each element a sum in double, rounded once to f32
        prod = (b.astype(D) @ a.astype(D)).astype(F)
        self.assertSame(one["u"], np.where(topk_reference(prod, 0.1), F(1), x))
        half = topk_reference(x, 0.5).sum(axis=1, keepdims=True).astype(F)
        self.assertSame(one["s"], np.broadcast_to(half, x.shape).astype(F))

    def test_plan_counts_the_passes(self):
        rng = np.random.default_rng(28)
        inp = self.path("in.safetensors")
        stnp.save(inp, {"x": ("F32", rng.standard_normal((64, 8)).astype(F))})
        r = self.path("r.surg")
        with open(r, "w", encoding="utf-8") as f:
            f.write('map "x" = where(topk_mask(x - mean(x, axis=1, keepdims=true), 0.5), x, 0)\n')
        rc, out, err = runutil.run_surg(ARGS.surg, "plan", r, "--from", inp, "--threads", "1")
        self.assertEqual((rc, err), (0, ""))
        # the row means; two radix passes over the f32 keys, which read x
        # again; then the kernel
        self.assertIn("4 passes: where(topk_mask((x - mean(x, axis=1, keepdims=true)), "
                      "256 of 512), x, 0)", out)
        self.assertIn("holds 512 B: f32[64, 1] mean(x, axis=1, keepdims=true), "
                      "a reduction over an axis", out)
        self.assertRegex(out, r"read +8\.0 KiB")


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surg", required=True, help="the surg executable")
    ARGS, rest = parser.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
