"""test_numerics.py: surg's conversions between number formats, bit for bit,
through `surg run` with casts, against independent references:

  * f16:  every one of the 65,536 bit patterns decoded (NumPy's float16 ->
          float32); encoding from float32 and from float64 compared with
          NumPy's astype(np.float16) (one correct rounding, ties to even).
  * bf16: every pattern decoded (a bf16 is the top half of a float32);
          encoding from float32 against round-to-nearest-even written on the
          float32 bits (runutil.f32_to_bf16), and from float64 against the
          same rule on the float64 bits (one rounding, no detour via float32).
  * f8e4m3 (float8_e4m3fn: bias 7, no infinities, only S.1111.111 is NaN,
    largest 448) and f8e5m2 (IEEE-like, bias 15, infinities): all 256 codes
          decoded, compared with the value computed from the definition;
          encoding compared with a brute-force search over every code: the
          nearest value, ties to the even code, and overflow (rounding past
          the largest finite value) to infinity (e5m2) or NaN (e4m3fn).

Inputs are written with stnp (BF16 and F8 as raw uint16/uint8 patterns).
NaN is compared as "both NaN" (payload and sign not checked).

usage: test_numerics.py --surg SURG [unittest args]
"""

import argparse
import os
import sys
import tempfile
import unittest

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402
from runutil import E4M3, E5M2, bits_to_f32, f32_bits, f32_to_bf16  # noqa: E402

ARGS = None  # filled in by main()

F = np.float32
D = np.float64
ALL16 = np.arange(65536, dtype=np.uint32).astype(np.uint16)
ALL8 = np.arange(256, dtype=np.uint16).astype(np.uint8)


def f32(a):
    return np.asarray(a, dtype=np.float32)


def exactly_f32(values):
    """The float64 values that float32 holds exactly, as float32."""
    v = np.asarray(values, dtype=D)
    with np.errstate(over="ignore"):
        f = v.astype(F)
    keep = (f.astype(D) == v) | np.isnan(v)
    return f[keep]


def f32_neighbours(values):
    """Each float32 value and the float32 values either side of it."""
    v = np.asarray(values, dtype=F)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.concatenate([v, np.nextafter(v, F(np.inf)), np.nextafter(v, F(-np.inf))])


def with_negatives(v):
    v = np.asarray(v)
    return np.concatenate([v, -v])


def random_f32(n, seed):
    """Random float32 bit patterns: every exponent, NaNs and infinities included."""
    rng = np.random.default_rng(seed)
    return bits_to_f32(rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32))


def bf16_from_f64_reference(values):
    """bf16 patterns of float64 values in bf16's normal range (or past its
    largest value), rounded once, to nearest, ties to even, on the float64
    bits: keep the sign, the exponent and the top 7 of the 52 mantissa bits.
    A carry that runs past the largest bf16 gives 2^128, which float32 turns
    into infinity."""
    v = np.asarray(values, dtype=D)
    b = v.view(np.uint64)
    drop = np.uint64(45)
    hi = b >> drop
    lo = b & np.uint64((1 << 45) - 1)
    half = np.uint64(1 << 44)
    up = (lo > half) | ((lo == half) & ((hi & np.uint64(1)) == 1))
    r = ((hi + up.astype(np.uint64)) << drop).view(D)
    with np.errstate(over="ignore"):
        return (f32_bits(r.astype(F)) >> 16).astype(np.uint16)


def f8_encode_reference(fmt, values):
    """Brute force over every code of FMT (vectorized): codes for float64
    VALUES; None where the result must be NaN (any NaN code accepted)."""
    table = fmt.finite_positive()
    vals = np.array([v for v, _ in table] + [fmt.overflow_value()], dtype=D)
    codes = np.array([c for _, c in table] + [-1], dtype=np.int64)
    nan_code = (((1 << fmt.exp) - 1) << fmt.man) | ((1 << fmt.man) - 1)
    inf_code = ((1 << fmt.exp) - 1) << fmt.man
    over_code = inf_code if fmt.ieee else nan_code
    parity = codes.copy()
    parity[-1] = over_code  # the code the overflow value would have
    v = np.asarray(values, dtype=D)
    a = np.abs(v)
    finite = np.isfinite(a)
    af = np.where(finite, a, 0.0)
    d = np.abs(vals[None, :] - af[:, None])
    best = d.min(axis=1)
    tie = d == best[:, None]
    first = np.argmax(tie, axis=1)
    last = len(vals) - 1 - np.argmax(tie[:, ::-1], axis=1)
    pick = np.where(parity[first] % 2 == 0, first, last)
    mag = np.where(codes[pick] < 0, over_code, codes[pick])
    # At or past the overflow value (infinity included) nothing is nearer;
    # handled apart, as float64 distances to huge values all round alike.
    mag = np.where(a >= fmt.overflow_value(), over_code, mag)
    sign = np.where(np.signbit(v), 0x80, 0)
    out = (mag | sign).astype(np.int64)
    result = []
    for i, c in enumerate(out.tolist()):
        if np.isnan(v[i]) or fmt.is_nan(c):
            result.append(None)
        else:
            result.append(c)
    return result


def f8_interesting_values(fmt):
    """Every representable value, every midpoint (0 to the first subnormal,
    the largest to the overflow value included), values just either side of
    each midpoint, far past the largest, tiny ones; both signs; float32."""
    pos = [v for v, _ in fmt.finite_positive()]
    pts = pos + [fmt.overflow_value()]
    mids = [(a + b) / 2 for a, b in zip(pts, pts[1:])]
    quarter = [a + (b - a) / 4 for a, b in zip(pts, pts[1:])]
    big = [fmt.overflow_value() * k for k in (1.0, 1.5, 2.0, 1000.0)] + [1e30, 3.0e38]
    tiny = [1e-30, 2.0 ** -149, 2.0 ** -126, pos[1] / 4, pos[1] * 0.75]
    base = exactly_f32(pos + mids + quarter + big + tiny)
    v = f32_neighbours(base)
    v = np.concatenate([with_negatives(v), f32([np.inf, -np.inf, np.nan, -np.nan])])
    return v


class NumericsCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-num-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def run_casts(self, tensors, lines):
        """surg run over TENSORS {name: (st dtype, array)} with map LINES
        ["name" = expr]; return the output's tensors."""
        inp = os.path.join(self.tmp, "in.safetensors")
        out = os.path.join(self.tmp, "out.safetensors")
        recipe = os.path.join(self.tmp, "r.surg")
        stnp.save(inp, tensors)
        with open(recipe, "w") as f:
            f.write("\n".join("map %s" % ln for ln in lines) + "\n")
        code, _, err = runutil.run_surg(ARGS.surg, "run", recipe, inp, out)
        self.assertEqual(code, 0, "surg run failed (exit %d)\n%s" % (code, err))
        tensors, _, _ = stnp.load(out)
        return tensors

    def out(self, tensors, name, dtype):
        self.assertIn(name, tensors)
        dt, a = tensors[name]
        self.assertEqual(dt, dtype, name)
        return a

    def assertFloatBits(self, got, want, inputs, what):
        """Equal bit patterns, or both NaN."""
        got = np.asarray(got)
        want = np.asarray(want, dtype=got.dtype)
        u = np.dtype("u%d" % got.dtype.itemsize)
        both_nan = np.isnan(got) & np.isnan(want)
        bad = (got.view(u) != want.view(u)) & ~both_nan
        self.report(bad, got.view(u), want.view(u), inputs, what)

    def report(self, bad, got, want, inputs, what):
        if bad.any():
            i = np.flatnonzero(bad)[:6]
            ins = np.asarray(inputs).ravel()[i]
            self.fail("%s: %d of %d differ; inputs %s: got %s, want %s" % (
                what, int(bad.sum()), bad.size,
                [repr(x) for x in ins.tolist()],
                [hex(int(x)) for x in np.asarray(got).ravel()[i]],
                [hex(int(x)) for x in np.asarray(want).ravel()[i]]))

    def assertCodes(self, got, want, fmt_is_nan, inputs, what):
        """GOT codes against reference codes (None: any NaN code)."""
        got = np.asarray(got).ravel()
        bad = np.zeros(got.size, dtype=bool)
        want_codes = np.zeros(got.size, dtype=np.int64)
        for i, w in enumerate(want):
            g = int(got[i])
            if w is None:
                bad[i] = not fmt_is_nan(g)
                want_codes[i] = -1
            else:
                bad[i] = g != w
                want_codes[i] = w
        self.report(bad, got, want_codes, inputs, what)


# =============================================================================
# f16
# =============================================================================

class TestF16(NumericsCase):
    def test_decode_all_patterns(self):
        h = ALL16.view(np.float16)
        t = self.run_casts({"a": ("F16", h), "b": ("F16", h)},
                           ['"a" = cast(x, f32)', '"b" = cast(x, f64)'])
        self.assertFloatBits(self.out(t, "a", "F32"), h.astype(F), ALL16, "f16 -> f32")
        self.assertFloatBits(self.out(t, "b", "F64"), h.astype(D), ALL16, "f16 -> f64")

    def f32_inputs(self):
        h = ALL16.view(np.float16)
        finite = np.sort(np.unique(h[np.isfinite(h)].astype(D)))
        pos = finite[finite >= 0]
        # midpoints between adjacent f16 values, 65504 and the overflow point
        # 65536 included; every one is exactly a float32
        pts = np.concatenate([pos, [65536.0]])
        mids = exactly_f32((pts[:-1] + pts[1:]) / 2)
        self.assertEqual(mids.size, pts.size - 1, "every f16 midpoint is a float32")
        base = np.concatenate([h[np.isfinite(h)].astype(F), mids,
                               f32([65504, 65519.99, 65520, 65535, 65536, 1e5, 3e38,
                                    2.0 ** -24, 2.0 ** -25, 2.0 ** -26, 1e-30, 2.0 ** -149,
                                    np.inf, -np.inf, np.nan])])
        v = np.concatenate([with_negatives(f32_neighbours(base)), random_f32(200000, 1)])
        return v

    def test_encode_from_f32(self):
        v = self.f32_inputs()
        t = self.run_casts({"a": ("F32", v)}, ['"a" = cast(x, f16)'])
        with np.errstate(over="ignore", invalid="ignore"):
            want = v.astype(np.float16)
        self.assertFloatBits(self.out(t, "a", "F16"), want, v, "f32 -> f16")

    def test_encode_from_f64(self):
        """float64 inputs round once: a value a hair above a midpoint rounds
        up even though float32 would make it a tie first."""
        h = ALL16.view(np.float16)
        pos = np.sort(np.unique(h[np.isfinite(h) & (h >= 0)].astype(D)))
        pts = np.concatenate([pos, [65536.0]])
        mids = (pts[:-1] + pts[1:]) / 2
        eps = mids * 2.0 ** -40
        v = np.concatenate([mids, mids + eps, mids - eps, pos])
        v = np.concatenate([v, -v, np.random.default_rng(2).standard_normal(50000) * 1000])
        t = self.run_casts({"a": ("F64", v)}, ['"a" = cast(x, f16)'])
        with np.errstate(over="ignore"):
            want = v.astype(np.float16)
        self.assertFloatBits(self.out(t, "a", "F16"), want, v, "f64 -> f16")

    def test_arithmetic_stored_as_f16(self):
        """A map on an f16 tensor: computed in float32, rounded once to f16."""
        h = ALL16.view(np.float16)
        t = self.run_casts({"a": ("F16", h), "b": ("F16", h)},
                           ['"a" = x * 3', '"b" = x / 10 + 1'])
        x = h.astype(F)
        with np.errstate(over="ignore", invalid="ignore"):
            self.assertFloatBits(self.out(t, "a", "F16"), (x * F(3)).astype(np.float16), ALL16,
                                 "x * 3")
            self.assertFloatBits(self.out(t, "b", "F16"), (x / F(10) + F(1)).astype(np.float16),
                                 ALL16, "x / 10 + 1")


# =============================================================================
# bf16
# =============================================================================

class TestBF16(NumericsCase):
    def test_decode_all_patterns(self):
        t = self.run_casts({"a": ("BF16", ALL16), "b": ("BF16", ALL16)},
                           ['"a" = cast(x, f32)', '"b" = cast(x, f64)'])
        want = bits_to_f32(ALL16.astype(np.uint32) << 16)
        self.assertFloatBits(self.out(t, "a", "F32"), want, ALL16, "bf16 -> f32")
        self.assertFloatBits(self.out(t, "b", "F64"), want.astype(D), ALL16, "bf16 -> f64")

    def test_encode_from_f32(self):
        hi = ALL16.astype(np.uint32) << 16
        # every bf16 value, every midpoint (low half 0x8000) and the float32
        # values either side of it, and near-zero low halves
        bits = np.concatenate([hi, hi | 0x8000, hi | 0x7FFF, hi | 0x8001, hi | 0x0001,
                               hi | 0xFFFF])
        v = np.concatenate([bits_to_f32(bits), random_f32(200000, 3)])
        t = self.run_casts({"a": ("F32", v)}, ['"a" = cast(x, bf16)'])
        got = self.out(t, "a", "BF16")
        want = f32_to_bf16(v)
        nan = np.isnan(v)
        bad = (got != want) & ~nan
        self.report(bad, got, want, v, "f32 -> bf16")
        self.report(nan & ~runutil.bf16_is_nan(got), got, want, v, "f32 NaN -> bf16 NaN")

    def test_encode_from_f64(self):
        """float64 inputs round once, straight to bf16."""
        rng = np.random.default_rng(4)
        hi = ALL16.astype(np.uint32) << 16
        fin = bits_to_f32(hi)
        fin = fin[np.isfinite(fin)].astype(D)
        fin = fin[np.abs(fin) >= 2.0 ** -126]          # bf16's normal range
        mids = bits_to_f32((hi | 0x8000))
        mids = mids[np.isfinite(mids)].astype(D)
        mids = mids[np.abs(mids) >= 2.0 ** -126]
        eps = np.abs(mids) * 2.0 ** -40
        big = np.array([3.4e38, 3.3895313892515355e38, 3.3961775292304e38, 1e300, -1e300])
        rnd = rng.standard_normal(50000) * np.exp2(rng.integers(-100, 100, 50000))
        v = np.concatenate([fin, mids, mids + eps, mids - eps, big, rnd])
        t = self.run_casts({"a": ("F64", v)}, ['"a" = cast(x, bf16)'])
        got = self.out(t, "a", "BF16")
        want = bf16_from_f64_reference(v)
        self.report(got != want, got, want, v, "f64 -> bf16")

    def test_arithmetic_stored_as_bf16(self):
        t = self.run_casts({"a": ("BF16", ALL16), "b": ("BF16", ALL16)},
                           ['"a" = x * 3', '"b" = x / 10 + 1'])
        x = bits_to_f32(ALL16.astype(np.uint32) << 16)
        with np.errstate(over="ignore", invalid="ignore"):
            for name, want in (("a", x * F(3)), ("b", x / F(10) + F(1))):
                got = self.out(t, name, "BF16")
                ref = f32_to_bf16(want)
                nan = np.isnan(want)
                self.report((got != ref) & ~nan, got, ref, ALL16, name)
                self.report(nan & ~runutil.bf16_is_nan(got), got, ref, ALL16, name + " NaN")


# =============================================================================
# f8e4m3 (float8_e4m3fn) and f8e5m2
# =============================================================================

class TestF8(NumericsCase):
    def check_decode(self, st, fmt):
        t = self.run_casts({"a": (st, ALL8), "b": (st, ALL8)},
                           ['"a" = cast(x, f32)', '"b" = cast(x, f64)'])
        want = np.array([fmt.decode(int(c)) for c in ALL8], dtype=D)
        self.assertFloatBits(self.out(t, "a", "F32"), want.astype(F), ALL8, st + " -> f32")
        self.assertFloatBits(self.out(t, "b", "F64"), want, ALL8, st + " -> f64")

    def test_decode_e4m3(self):
        self.check_decode("F8_E4M3", E4M3)
        # the definition's landmarks, as a check on the reference itself
        self.assertEqual(E4M3.decode(0x7E), 448.0)
        self.assertEqual(E4M3.decode(0x01), 2.0 ** -9)
        self.assertEqual(E4M3.decode(0x78), 256.0)
        self.assertTrue(np.isnan(E4M3.decode(0x7F)) and np.isnan(E4M3.decode(0xFF)))
        self.assertEqual(sum(np.isnan(E4M3.decode(c)) for c in range(256)), 2)

    def test_decode_e5m2(self):
        self.check_decode("F8_E5M2", E5M2)
        self.assertEqual(E5M2.decode(0x7B), 57344.0)
        self.assertEqual(E5M2.decode(0x7C), np.inf)
        self.assertEqual(E5M2.decode(0xFC), -np.inf)
        self.assertEqual(E5M2.decode(0x01), 2.0 ** -16)
        self.assertEqual(sum(np.isnan(E5M2.decode(c)) for c in range(256)), 6)

    # (value, e4m3fn code, e5m2 code); None: a NaN code. Known results of
    # the formats' definitions, as ml_dtypes gives them.
    LANDMARKS = [
        (448.0, 0x7E, 0x5F), (464.0, 0x7E, 0x5F), (465.0, None, 0x5F), (480.0, None, 0x60),
        (-464.0, 0xFE, 0xDF), (1e9, None, 0x7C), (-np.inf, None, 0xFC),
        (57344.0, None, 0x7B), (61439.0, None, 0x7B), (61440.0, None, 0x7C),
        (2.0 ** -9, 0x01, 0x18), (2.0 ** -10, 0x00, 0x14), (3 * 2.0 ** -10, 0x02, 0x1A),
        (2.0 ** -10 + 2.0 ** -20, 0x01, 0x14), (2.0 ** -17, 0x00, 0x00),
        (2.0 ** -17 + 2.0 ** -30, 0x00, 0x01), (-2.0 ** -30, 0x80, 0x80),
        (1.0625, 0x38, 0x3C), (1.1875, 0x3A, 0x3D), (1.125, 0x39, 0x3C), (1.375, 0x3B, 0x3E),
        (0.0, 0x00, 0x00), (-0.0, 0x80, 0x80), (np.nan, None, None),
    ]

    def test_landmarks(self):
        v = np.array([x for x, _, _ in self.LANDMARKS], dtype=D)
        for fmt, col in ((E4M3, 1), (E5M2, 2)):
            want = [row[col] for row in self.LANDMARKS]
            ref = f8_encode_reference(fmt, v)
            self.assertEqual(ref, want, "the reference itself")
        t = self.run_casts({"a": ("F64", v), "b": ("F64", v)},
                           ['"a" = cast(x, f8e4m3)', '"b" = cast(x, f8e5m2)'])
        self.assertCodes(self.out(t, "a", "F8_E4M3"), [r[1] for r in self.LANDMARKS],
                         E4M3.is_nan, v, "f64 -> f8e4m3")
        self.assertCodes(self.out(t, "b", "F8_E5M2"), [r[2] for r in self.LANDMARKS],
                         E5M2.is_nan, v, "f64 -> f8e5m2")

    def check_encode(self, recipe_dtype, st, fmt, src_dtype, values):
        t = self.run_casts({"a": (src_dtype, values)}, ['"a" = cast(x, %s)' % recipe_dtype])
        got = self.out(t, "a", st)
        with np.errstate(invalid="ignore"):  # signalling NaNs among the random bits
            src = values.astype(D)  # every source here converts to float64 exactly
        want = f8_encode_reference(fmt, src)
        self.assertCodes(got, want, fmt.is_nan, values, "%s -> %s" % (src_dtype, recipe_dtype))

    def test_encode_e4m3_from_f32(self):
        v = np.concatenate([f8_interesting_values(E4M3), random_f32(20000, 5),
                            self.log_uniform(E4M3, 30000, 6)])
        self.check_encode("f8e4m3", "F8_E4M3", E4M3, "F32", v)

    def test_encode_e5m2_from_f32(self):
        v = np.concatenate([f8_interesting_values(E5M2), random_f32(20000, 7),
                            self.log_uniform(E5M2, 30000, 8)])
        self.check_encode("f8e5m2", "F8_E5M2", E5M2, "F32", v)

    def test_encode_from_f16_all_patterns(self):
        h = ALL16.view(np.float16)
        self.check_encode("f8e5m2", "F8_E5M2", E5M2, "F16", h)
        self.check_encode("f8e4m3", "F8_E4M3", E4M3, "F16", h)

    def test_encode_from_integers(self):
        self.check_encode("f8e4m3", "F8_E4M3", E4M3, "U8", np.arange(256, dtype=np.uint8))
        self.check_encode("f8e5m2", "F8_E5M2", E5M2, "I8", np.arange(-128, 128).astype(np.int8))

    def test_arithmetic_stored_as_f8(self):
        """A map on an f8 tensor: computed in float32, rounded once to f8
        (x * 2 overflows the largest values: NaN for e4m3fn, inf for e5m2)."""
        for st, fmt in (("F8_E4M3", E4M3), ("F8_E5M2", E5M2)):
            with self.subTest(dtype=st):
                t = self.run_casts({"a": (st, ALL8), "b": (st, ALL8)},
                                   ['"a" = x * 2', '"b" = x / 3'])
                x = np.array([fmt.decode(int(c)) for c in ALL8], dtype=D).astype(F)
                with np.errstate(over="ignore", invalid="ignore"):
                    for name, res in (("a", x * F(2)), ("b", x / F(3))):
                        want = f8_encode_reference(fmt, res.astype(D))
                        self.assertCodes(self.out(t, name, st), want, fmt.is_nan, ALL8,
                                         "%s: %s" % (st, name))

    @staticmethod
    def log_uniform(fmt, n, seed):
        """float32 values spread over the format's whole range, both signs."""
        rng = np.random.default_rng(seed)
        pos = [v for v, _ in fmt.finite_positive()]
        lo, hi = np.log2(pos[1]) - 2, np.log2(fmt.overflow_value()) + 1
        v = np.exp2(rng.uniform(lo, hi, n)) * rng.choice([-1.0, 1.0], n)
        return v.astype(F)


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surg", required=True, help="the surg executable")
    ARGS, rest = parser.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
