"""runutil.py: what test_run.py and test_numerics.py share: running `surg run`
on a checkpoint written by stnp, reading the result back with stnp, and
independent NumPy references for the narrow float formats and for comparing
floats bit for bit or within a number of ulps.

Nothing here calls surg's own code for a reference value: every expected
value in the tests is computed with NumPy from the same input.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stnp  # noqa: E402

# recipe dtype name -> safetensors dtype name
ST_DTYPE = {
    "bool": "BOOL", "u8": "U8", "i8": "I8", "i16": "I16", "u16": "U16", "i32": "I32",
    "u32": "U32", "i64": "I64", "u64": "U64", "f16": "F16", "bf16": "BF16", "f32": "F32",
    "f64": "F64", "f8e4m3": "F8_E4M3", "f8e5m2": "F8_E5M2",
}


def unittest_in_temporary_dir(prefix, setup, argv):
    """Make a temporary directory, setup(its path), run __main__'s unit tests
    with the unittest arguments ARGV, remove the directory; exit 0 when every
    test passed, else 1."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        setup(tmp)
        ok = unittest.main(argv=[sys.argv[0]] + argv, exit=False).result.wasSuccessful()
    finally:
        shutil.rmtree(tmp)
    sys.exit(0 if ok else 1)


def run_surg(surg, *args, timeout=120):
    """(exit code, stdout, stderr) of `surg ARGS`."""
    env = dict(os.environ)
    env.setdefault("CI", "1")  # no progress bar
    r = subprocess.run([surg] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout, env=env)
    return (r.returncode, r.stdout.decode("utf-8", errors="replace"),
            without_summary(r.stderr.decode("utf-8", errors="replace")))


# The line `surg run` ends a success with (test_friction.py checks it).
SUMMARY = re.compile(r"surg run: wrote \d+ tensors? \([^)]*\) to .* in \d+\.\d s\n\Z")


def without_summary(err):
    """stderr without the summary line of a successful `surg run`."""
    m = SUMMARY.search(err)
    return err[:m.start()] if m and (m.start() == 0 or err[m.start() - 1] == "\n") else err


def sha256(path):
    """Digest of a file, or of a directory's files (names and contents)."""
    h = hashlib.sha256()
    if os.path.isdir(path):
        for name in sorted(os.listdir(path)):
            h.update(name.encode() + b"\0" + sha256(os.path.join(path, name)).encode())
        return h.hexdigest()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def temporaries(directory):
    """Names in DIRECTORY that look like surg's temporary files."""
    return [n for n in os.listdir(directory) if "surg-tmp" in n]


def metadata_json(metadata, key):
    """metadata[key] parsed as JSON (None when absent)."""
    if not metadata or key not in metadata:
        return None
    return json.loads(metadata[key])


# ---- bit patterns ----------------------------------------------------------

def f32_bits(a):
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32)).view(np.uint32)


def bits_to_f32(b):
    return np.ascontiguousarray(np.asarray(b, dtype=np.uint32)).view(np.float32)


def bf16_to_f32(bits16):
    """bf16 bit patterns (uint16) -> float32: the top half of a float32."""
    return bits_to_f32(np.asarray(bits16, dtype=np.uint32) << 16)


def f32_to_bf16(values):
    """float32 values -> bf16 bit patterns, rounding to nearest, ties to even,
    written from the definition: keep the high 16 bits, and add one unit when
    the dropped low 16 bits are more than half a unit, or exactly half with
    an odd kept part. A carry out of the mantissa moves to the next binade
    (and past the largest finite value to infinity), as it should. NaN stays
    NaN (made quiet)."""
    b = f32_bits(values).astype(np.uint64)
    hi = b >> np.uint64(16)
    lo = b & np.uint64(0xFFFF)
    up = (lo > 0x8000) | ((lo == 0x8000) & ((hi & np.uint64(1)) == 1))
    out = (hi + up.astype(np.uint64)).astype(np.uint16)
    nan = np.isnan(np.asarray(values, dtype=np.float32))
    out[nan] = (hi[nan].astype(np.uint16) | np.uint16(0x0040))
    return out


def bf16_is_nan(bits16):
    b = np.asarray(bits16, dtype=np.uint16)
    return ((b & 0x7F80) == 0x7F80) & ((b & 0x007F) != 0)


def f16_is_nan(bits16):
    b = np.asarray(bits16, dtype=np.uint16)
    return ((b & 0x7C00) == 0x7C00) & ((b & 0x03FF) != 0)


def ulp_distance_f32(a, b):
    """|a - b| in float32 ulps (ordered integer distance); NaN vs NaN is 0,
    NaN vs a number is huge."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)

    def ordered(x):
        i = f32_bits(x).astype(np.int64)
        return np.where(i & 0x80000000, 0x80000000 - i, i + 0)  # -0 and +0 meet

    d = np.abs(ordered(a) - ordered(b))
    both = np.isnan(a) & np.isnan(b)
    one = np.isnan(a) ^ np.isnan(b)
    d = np.where(both, 0, d)
    return np.where(one, 1 << 40, d)


def ulp_distance_f64(a, b):
    """|a - b| in float64 ulps (as ulp_distance_f32)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)

    def ordered(x):
        i = np.ascontiguousarray(x).view(np.int64)
        return np.where(i < 0, -(i & np.int64(0x7FFFFFFFFFFFFFFF)), i)

    with np.errstate(over="ignore"):
        d = np.abs(ordered(a) - ordered(b)).astype(np.float64)
    d = np.where(np.isnan(a) & np.isnan(b), 0, d)
    return np.where(np.isnan(a) ^ np.isnan(b), 2.0 ** 60, d)


# ---- 8-bit floats, from their definitions ---------------------------------

class Minifloat:
    """An 8-bit float format: sign, EXP exponent bits, MAN mantissa bits,
    BIAS. ieee=True: the top exponent holds infinities and NaNs (e5m2);
    ieee=False: only S.1111.111 is NaN and there is no infinity (e4m3fn)."""

    def __init__(self, exp, man, bias, ieee):
        self.exp, self.man, self.bias, self.ieee = exp, man, bias, ieee

    def decode(self, code):
        """The value of one code, as a Python float (nan, ±inf allowed)."""
        sign = -1.0 if code & 0x80 else 1.0
        e = (code >> self.man) & ((1 << self.exp) - 1)
        m = code & ((1 << self.man) - 1)
        top = (1 << self.exp) - 1
        if self.ieee and e == top:
            return float("nan") if m else sign * float("inf")
        if not self.ieee and e == top and m == (1 << self.man) - 1:
            return float("nan")
        if e == 0:
            return sign * m * 2.0 ** (1 - self.bias - self.man)
        return sign * ((1 << self.man) + m) * 2.0 ** (e - self.bias - self.man)

    def is_nan(self, code):
        return self.decode(int(code)) != self.decode(int(code))

    def finite_positive(self):
        """[(value, code)] of every finite non-negative value, ascending."""
        out = []
        for code in range(0x80):
            v = self.decode(code)
            if v == v and v != float("inf"):
                out.append((v, code))
        out.sort()
        return out

    def overflow_value(self):
        """The value one step past the largest finite one (the next value an
        unbounded exponent would give): rounding to it overflows."""
        vmax = self.finite_positive()[-1][0]
        e = int(np.floor(np.log2(vmax)))
        return vmax + 2.0 ** (e - self.man)

    def encode_reference(self, values):
        """Codes for float64 VALUES by brute force: the nearest representable
        value, ties to the even code; past the largest finite value (nearer
        the overflow value, or a tie with it when the largest code is odd)
        infinity for ieee formats, NaN otherwise; NaN -> NaN (None here: any
        NaN code is accepted)."""
        table = self.finite_positive()
        vals = np.array([v for v, _ in table] + [self.overflow_value()], dtype=np.float64)
        codes = np.array([c for _, c in table] + [-1], dtype=np.int64)
        nan_code = (((1 << self.exp) - 1) << self.man) | ((1 << self.man) - 1)
        inf_code = ((1 << self.exp) - 1) << self.man
        # -1 stands for the overflow value; give it the code it would have.
        over_code = inf_code if self.ieee else nan_code
        codes_for_parity = codes.copy()
        codes_for_parity[-1] = ((1 << self.exp) - 1) << self.man if self.ieee else nan_code
        values = np.asarray(values, dtype=np.float64)
        out = []
        for v in values.tolist():
            if v != v:
                out.append(None)
                continue
            sign = 0x80 if np.signbit(v) else 0
            a = abs(v)
            if a == float("inf"):
                out.append(sign | over_code)
                continue
            d = np.abs(vals - a)
            best = d.min()
            idx = np.nonzero(d == best)[0]
            if len(idx) > 1:
                idx = [i for i in idx if codes_for_parity[i] % 2 == 0]
            i = idx[0]
            out.append(sign | (over_code if codes[i] < 0 else int(codes[i])))
        return out


E4M3 = Minifloat(4, 3, 7, ieee=False)
E5M2 = Minifloat(5, 2, 15, ieee=True)


def philox4x32_10(counters, key, word2=0, word3=0):
    """Philox-4x32-10 of counters (k, word2, word3) -- k taking the two low
    words -- for an array of k, in NumPy: the generator's published
    definition, written independently of surg."""
    M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
    mask = np.uint64(0xFFFFFFFF)
    c0 = counters.astype(np.uint64) & mask
    c1 = counters.astype(np.uint64) >> np.uint64(32)
    c2 = np.full_like(c0, word2)
    c3 = np.full_like(c0, word3)
    k0, k1 = key
    for _ in range(10):
        p0 = np.uint64(M0) * c0
        p1 = np.uint64(M1) * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0), p1 & mask,
                          (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1), p0 & mask)
        k0 = (k0 + W0) & 0xFFFFFFFF
        k1 = (k1 + W1) & 0xFFFFFFFF
    return c0, c1, c2, c3


def philox_key(seed, name):
    """The README's key: FNV-1a 64 of the name, mixed with the seed by
    SplitMix64's finalizer; low word first."""
    m = (1 << 64) - 1
    h = 0xCBF29CE484222325
    for byte in name.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & m
    z = h ^ ((seed + 0x9E3779B97F4A7C15) & m)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    z ^= z >> 31
    return z & 0xFFFFFFFF, z >> 32
