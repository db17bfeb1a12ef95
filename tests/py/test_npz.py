"""test_npz.py: NumPy's .npz and .npy in and out of surg, checked against
NumPy itself. Inputs are written by real NumPy (np.save, np.savez,
np.savez_compressed; Fortran order, big-endian, every supported dtype, nested
names, 0-d and empty arrays) or, for broken and hostile files, byte by byte
here; outputs are read back with numpy.load and stnp (the repository's own
safetensors reader) and compared value for value with numpy.load of the
input.

usage: test_npz.py --surg SURG --force64 WRITE_KNOBS [unittest args]
"""

import argparse
import io
import json
import os
import struct
import sys
import tempfile
import unittest
import zipfile
import zlib

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stnp  # noqa: E402
from runutil import run_surg, sha256, temporaries  # noqa: E402

ARGS = None  # filled in by main()

# NumPy dtype -> surg's safetensors name
ST = {
    "bool": "BOOL", "int8": "I8", "uint8": "U8", "int16": "I16", "uint16": "U16",
    "int32": "I32", "uint32": "U32", "int64": "I64", "uint64": "U64",
    "float16": "F16", "float32": "F32", "float64": "F64", "complex64": "C64",
}


def sample(dtype, shape, seed=0):
    """Values of every kind the dtype has (negative, large, fractional)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    dt = np.dtype(dtype)
    if dt.kind == "b":
        a = rng.integers(0, 2, n).astype(bool)
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
    elif dt.kind == "c":
        a = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dt)
    else:
        a = (rng.standard_normal(n) * 100).astype(dt)
    return a.reshape(shape)


def every_dtype():
    """{name: array}: each dtype, C and Fortran order, both byte orders."""
    arrays = {}
    for i, name in enumerate(ST):
        a = sample(name, (3, 4, 2), seed=i)
        arrays[f"c/{name}"] = a
        arrays[f"f/{name}"] = np.asfortranarray(a)
        if a.dtype.itemsize > 1:
            arrays[f"be/{name}"] = a.astype(a.dtype.newbyteorder(">"))
            arrays[f"fbe/{name}"] = np.asfortranarray(a.astype(a.dtype.newbyteorder(">")))
    arrays["deep/nested/path/scalar"] = np.float64(2.5)
    arrays["deep/nested/empty"] = np.zeros((0, 7), np.int16)
    arrays["deep/nested.dotted.name"] = np.arange(6, dtype=np.uint16).reshape(2, 3)
    arrays["vec"] = np.arange(10, dtype=">f4")
    return arrays


def plain(a):
    """The array as surg stores it: little-endian, C order."""
    a = np.asarray(a)
    return a.astype(a.dtype.newbyteorder("<"), order="C")


# ---- hand-made archives ------------------------------------------------------

def npy_bytes(a):
    b = io.BytesIO()
    np.lib.format.write_array(b, np.asanyarray(a), allow_pickle=False)
    return b.getvalue()


def npy_header(descr, shape):
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": descr, "fortran_order": False,
                                             "shape": shape})
    return b.getvalue()


def zip_bytes(entries, comment=b""):
    """A zip of entries {name, data (as stored), method, usize, crc} (each
    field but name and data defaults to a stored entry's)."""
    out, cd = bytearray(), bytearray()
    for e in entries:
        name = e["name"].encode()
        data = e["data"]
        method = e.get("method", 0)
        usize = e.get("usize", len(data))
        crc = e.get("crc", zlib.crc32(data))
        off = e.get("offset", len(out))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc,
                           len(data), usize, len(name), 0) + name + data
        cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc,
                          len(data), usize, len(name), 0, 0, 0, 0, 0, off) + name
    n = len(entries)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(cd), len(out), len(comment))
    return bytes(out + cd + end + comment)


def deflate_raw(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


class NpzCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-npz-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def surg(self, *args):
        return run_surg(ARGS.surg, *args)

    def ok(self, *args):
        rc, out, err = self.surg(*args)
        self.assertEqual(rc, 0, f"surg {' '.join(map(str, args))}: {err}")
        return out, err

    def fails(self, want_rc, *args, text=None):
        rc, out, err = self.surg(*args)
        self.assertEqual(rc, want_rc, f"surg {' '.join(map(str, args))}: {out} {err}")
        if text:
            self.assertIn(text, err)
        return err

    def recipe(self, text, name="r.surg"):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def schema(self, ckpt):
        out, _ = self.ok("schema", ckpt, "--json")
        return json.loads(out)

    def write(self, name, data):
        p = self.path(name)
        with open(p, "wb") as f:
            f.write(data)
        return p


class TestReading(NpzCase):
    def test_schema_of_savez(self):
        arrays = every_dtype()
        for save in (np.savez, np.savez_compressed):
            p = self.path(f"{save.__name__}.npz")
            save(p, **arrays)
            got = self.schema(p)
            self.assertEqual(sorted(got), sorted(arrays))
            for name, a in arrays.items():
                self.assertEqual(got[name]["dtype"], ST[np.dtype(a.dtype).name], name)
                self.assertEqual(got[name]["shape"], list(np.shape(a)), name)

    def test_schema_tree(self):
        p = self.path("tree.npz")
        np.savez(p, **{"params/Dense_0/kernel": np.zeros((3, 4), np.float32),
                       "params/Dense_0/bias": np.zeros(4, np.float32)})
        out, _ = self.ok("schema", p)
        self.assertIn("kernel  f32[3, 4]", out)
        self.assertIn("2 tensors", out)

    def test_single_npy(self):
        a = np.asfortranarray(sample("float64", (5, 3)).astype(">f8"))
        p = self.path("weights.npy")
        np.save(p, a)
        self.assertEqual(self.schema(p), {"weights": {"dtype": "F64", "shape": [5, 3]}})
        out = self.path("out.safetensors")
        self.ok("run", self.recipe('rename "weights" -> "w"\n'), p, out)
        tensors, _, _ = stnp.load(out)
        np.testing.assert_array_equal(tensors["w"][1], plain(a))

    def test_check_and_plan(self):
        p = self.path("in.npz")
        np.savez_compressed(p, a=np.zeros((2, 2), np.float32))
        r = self.recipe('expect "a" : f32[2, 2]\nmap "a" = x + 1\n')
        out, _ = self.ok("check", r, "--from", p)
        self.assertIn("ok", out)
        out, _ = self.ok("plan", r, "--from", p)
        self.assertIn("compute", out)
        self.assertIn("decoded first: 1 input array (16 B)", out)
        plan = json.loads(self.ok("plan", r, "--from", p, "--json")[0])
        self.assertEqual(plan["decoded_first"], {"tensors": 1, "bytes": 16})
        stored = self.path("stored.npz")
        np.savez(stored, a=np.zeros((2, 2), np.float32))
        out, _ = self.ok("plan", r, "--from", stored)
        self.assertNotIn("decoded", out)

    def test_headers_only(self):
        """A 64 GiB array (a hole in a sparse file, behind ZIP64 records) is
        described at once: opening reads no data."""
        p = self.path("huge.npz")
        n = 16 << 30  # float32 elements: 64 GiB
        header = npy_header("<f4", (n,))
        usize = len(header) + 4 * n
        name = b"big.npy"
        with open(p, "wb") as f:
            extra = struct.pack("<HHQQ", 1, 16, usize, usize)
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, 0, 0xFFFFFFFF,
                                0xFFFFFFFF, len(name), len(extra)) + name + extra + header)
            cd_at = f.tell() + 4 * n
            f.seek(cd_at)
            cd = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, 0,
                             0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra), 0, 0, 0, 0, 0)
            cd += name + extra
            f.write(cd)
            z64 = f.tell()
            f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 1, 1, len(cd), cd_at))
            f.write(struct.pack("<IIQI", 0x07064B50, 0, z64, 1))
            f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                                0xFFFFFFFF, 0))
        self.assertEqual(self.schema(p), {"big": {"dtype": "F32", "shape": [n]}})
        out, _ = self.ok("plan", self.recipe('rename "big" -> "b"\n'), "--from", p)
        self.assertIn("copy", out)


class TestRun(NpzCase):
    def run_recipe(self, src, out, recipe, *extra):
        self.ok("run", self.recipe(recipe), src, out, *extra)

    def check_renamed(self, arrays, got, prefix="m/"):
        """got: {name: ndarray}; every array renamed under prefix, equal to
        NumPy's own values, plain."""
        self.assertEqual(sorted(got), sorted(prefix + k for k in arrays))
        for name, a in arrays.items():
            g = got[prefix + name]
            want = plain(a)
            self.assertEqual(g.dtype, want.dtype, name)
            self.assertEqual(g.shape, want.shape, name)
            np.testing.assert_array_equal(g, want, err_msg=name)

    def test_to_safetensors(self):
        arrays = every_dtype()
        for save in (np.savez, np.savez_compressed):
            src = self.path(f"{save.__name__}.npz")
            save(src, **arrays)
            out = self.path(f"{save.__name__}.safetensors")
            self.run_recipe(src, out, 'rename "**" -> "m/$1"\n')
            tensors, _, _ = stnp.load(out)
            self.check_renamed(np.load(src), {k: v[1] for k, v in tensors.items()})

    def test_to_npz(self):
        arrays = every_dtype()
        for save in (np.savez, np.savez_compressed):
            src = self.path(f"{save.__name__}.npz")
            save(src, **arrays)
            out = self.path(f"{save.__name__}.out.npz")
            self.run_recipe(src, out, 'rename "**" -> "m/$1"\n')
            with np.load(out) as got:
                self.check_renamed(np.load(src), {k: got[k] for k in got.files})
            with zipfile.ZipFile(out) as z:
                self.assertIsNone(z.testzip())  # every CRC right
                for info in z.infolist():
                    self.assertEqual(info.compress_type, zipfile.ZIP_STORED)
                    # the .npy header NumPy would write for the same array
                    data = z.read(info)
                    a = np.load(io.BytesIO(data))
                    self.assertEqual(data, npy_bytes(a), info.filename)
                    self.assertEqual(z.getinfo(info.filename).header_offset % 1, 0)

    def test_map_values(self):
        a = sample("float32", (6, 5))
        b = np.asfortranarray(sample("float64", (4, 3), seed=3)).astype(">f8")
        src = self.path("in.npz")
        np.savez_compressed(src, **{"layer/kernel": a, "layer/bias": b})
        for out in (self.path("o.safetensors"), self.path("o.npz")):
            self.run_recipe(src, out, 'map "layer/kernel" = x * 2 + 1\n'
                                      'map "layer/bias" = transpose(x) / 4\n')
            if out.endswith(".npz"):
                got = dict(np.load(out))
            else:
                got = {k: v[1] for k, v in stnp.load(out)[0].items()}
            np.testing.assert_array_equal(got["layer/kernel"], a * np.float32(2) + np.float32(1))
            np.testing.assert_array_equal(got["layer/bias"], plain(b).T / 4)

    def test_deterministic(self):
        src = self.path("in.npz")
        np.savez_compressed(src, **every_dtype())
        digests = set()
        for threads in (1, 3):
            out = self.path(f"o{threads}.npz")
            self.run_recipe(src, out, 'map "c/float32" = x * 3\n', "--threads", threads)
            digests.add(sha256(out))
        self.assertEqual(len(digests), 1)

    def test_ties_are_arrays(self):
        src = self.path("in.safetensors")
        emb = sample("float32", (8, 4))
        stnp.save(src, {"embed": ("F32", emb), "head": ("F32", emb * 0)})
        out = self.path("o.npz")
        _, err = self.ok("run", self.recipe('tie "head" = "embed"\n'), src, out)
        self.assertEqual(err, "")
        got = np.load(out)
        self.assertEqual(sorted(got.files), ["embed", "head"])
        np.testing.assert_array_equal(got["head"], emb)
        np.testing.assert_array_equal(got["embed"], emb)

    def test_metadata_dropped_with_warning(self):
        src = self.path("in.safetensors")
        stnp.save(src, {"d/kernel": ("F32", sample("float32", (4, 3)))})
        out = self.path("o.npz")
        _, err = self.ok("run", self.recipe('init-lora "d/kernel" rank 2\n'), src, out)
        self.assertIn("surg.lora", err)
        self.assertIn("not written", err)
        self.assertEqual(sorted(np.load(out).files),
                         ["d/kernel", "d/lora/lora_a", "d/lora/lora_b"])

    def test_many_arrays_zip64_end(self):
        """More than 65,535 arrays need the ZIP64 end of central directory."""
        n = 70000
        src = self.path("many.safetensors")
        stnp.save(src, {f"t{i}": ("U8", np.array([i % 256], np.uint8)) for i in range(n)})
        out = self.path("many.npz")
        self.run_recipe(src, out, 'rename "t{1,2}*" -> "u$1$2"\n')
        with np.load(out) as got:
            self.assertEqual(len(got.files), n)
            self.assertEqual(got["u15"][0], 15)
            self.assertEqual(got["t69999"][0], 69999 % 256)

    def test_forced_zip64_records(self):
        """ZIP64 extra fields and end records on a small file: NumPy reads them."""
        src = self.path("in.npz")
        arrays = every_dtype()
        np.savez_compressed(src, **arrays)
        out = self.path("z64.npz")
        import subprocess
        subprocess.run([ARGS.force64, src, out, "--zip64"], check=True)
        with zipfile.ZipFile(out) as z:
            self.assertIsNone(z.testzip())
        with np.load(out) as got:
            self.check_renamed(arrays, {k: got[k] for k in got.files}, prefix="")
        self.assertEqual(self.schema(out), self.schema(src))

    def test_npz_refusals(self):
        src = self.path("in.safetensors")
        stnp.save(src, {"w": ("BF16", np.zeros((2, 2), np.uint16))})
        self.fails(1, "run", self.recipe('rename "w" -> "v"\n'), src, self.path("o.npz"),
                   text="cannot hold")
        self.assertFalse(os.path.exists(self.path("o.npz")))
        self.ok("run", self.recipe('map "w" = cast(x, f32)\n'), src, self.path("o.npz"))
        self.fails(2, "run", self.recipe('rename "w" -> "v"\n'), src, self.path("o.npy"),
                   text="one array")
        self.fails(2, "run", self.recipe('rename "w" -> "v"\n'), src, self.path("o.npz"),
                   "--max-shard-size", "1KB", text="one file")


class TestHostile(NpzCase):
    """Broken and hostile inputs: a clear error naming the file (and the
    array), a non-zero exit, never a crash, nothing written."""

    def refused(self, p, text, rc=1, run=False):
        if run:
            out = self.path("out.safetensors")
            err = self.fails(rc, "run", self.recipe('rename "**" -> "x/$1"\n'), p, out,
                             text=text)
            self.assertFalse(os.path.exists(out))
            self.assertEqual(temporaries(self.tmp), [])
        else:
            err = self.fails(rc, "schema", p, text=text)
        self.assertIn(os.path.basename(p), err)
        return err

    def test_object_array(self):
        p = self.path("obj.npz")
        np.savez(p, fine=np.zeros(2), things=np.array([{"a": 1}, None], dtype=object))
        err = self.refused(p, "Python objects")
        self.assertIn('"things"', err)

    def test_unsupported_dtypes(self):
        p = self.path("str.npz")
        np.savez(p, s=np.array(["ab", "c"]), c=np.zeros(2, np.complex128),
                 r=np.zeros(2, [("x", "<f4")]))
        err = self.refused(p, "not supported")
        for name in ('"s"', '"c"', '"r"'):
            self.assertIn(name, err)

    def test_zip_bomb_lying_size(self):
        """The directory claims 4 KiB of data; the stream inflates to 64 MiB.
        Found when the array is decoded (or at once when the entry is so
        small that reading its header reaches its end)."""
        header = npy_header("<f4", (1024,))
        body = header + bytes(64 << 20)
        e = {"name": "x.npy", "data": deflate_raw(body), "method": 8,
             "usize": len(header) + 4096, "crc": zlib.crc32(header + bytes(4096))}
        p = self.write("bomb.npz", zip_bytes([e]))
        self.assertEqual(self.schema(p), {"x": {"dtype": "F32", "shape": [1024]}})
        self.refused(p, "zip bomb", run=True)
        small = dict(e, usize=len(header) + 16)
        self.refused(self.write("small.npz", zip_bytes([small])), "zip bomb")

    def test_zip_bomb_ratio(self):
        """A shape of 4 GB from a few kilobytes: more than deflate can give."""
        header = npy_header("|u1", (10**9,))
        e = {"name": "x.npy", "data": deflate_raw(header + bytes(1 << 20)), "method": 8,
             "usize": len(header) + 10**9, "crc": 0}
        self.refused(self.write("ratio.npz", zip_bytes([e])), "zip bomb")

    def test_corrupt_files(self):
        good = self.path("good.npz")
        np.savez_compressed(good, a=np.arange(100, dtype=">f4"), b=np.zeros(3))
        with open(good, "rb") as f:
            blob = f.read()
        self.refused(self.write("cut.npz", blob[:-10]), "end of central directory")
        self.refused(self.write("head.npz", blob[:40]), "end of central directory")
        self.refused(self.write("empty.npz", b""), "end of central directory")
        # the central directory's offset past the end
        bad = bytearray(blob)
        end = blob.rindex(b"PK\x05\x06")
        struct.pack_into("<I", bad, end + 16, len(blob) + 100)
        self.refused(self.write("cdoff.npz", bytes(bad)), "central directory")
        # an entry's local header offset past the directory
        bad = bytearray(blob)
        cd = blob.index(b"PK\x01\x02")
        struct.pack_into("<I", bad, cd + 42, len(blob) - 30)
        self.refused(self.write("offset.npz", bytes(bad)), "local header")
        # a flipped bit in the deflated data: found when it is decoded
        bad = bytearray(blob)
        bad[60] ^= 0x55
        self.refused(self.write("flip.npz", bytes(bad)), "corrupt", run=True)

    def test_bad_npy(self):
        a = npy_bytes(np.arange(6, dtype=np.int32))
        cases = {
            "magic.npz": [{"name": "x.npy", "data": b"\x93NUMPX" + a[6:]}],
            "version.npz": [{"name": "x.npy", "data": a[:6] + b"\x09\x00" + a[8:]}],
            "dict.npz": [{"name": "x.npy", "data": a.replace(b"'descr'", b"'dascr'")}],
            "eval.npz": [{"name": "x.npy", "data": a.replace(b"'<i4'", b"eval()")}],
            "size.npz": [{"name": "x.npy", "data": a[:-4]}],
            "long.npz": [{"name": "x.npy", "data": a + b"\0\0\0\0"}],
            "overflow.npz": [{"name": "x.npy", "data": a.replace(
                b"(6,)", b"(4294967296, 4294967296, 4294967296,)")}],
            "hdrlen.npz": [{"name": "x.npy", "data": a[:8] + b"\xff\xff" + a[10:]}],
            "dup.npz": [{"name": "x.npy", "data": a}, {"name": "x.npy", "data": a}],
            "noname.npz": [{"name": ".npy", "data": a}],
        }
        texts = {"magic.npz": "NUMPY", "version.npz": "version", "dict.npz": "'dascr'",
                 "eval.npz": "quoted string", "size.npz": "need 24 bytes",
                 "long.npz": "need 24 bytes", "overflow.npz": "overflows",
                 "hdrlen.npz": "runs past", "dup.npz": "two entries",
                 "noname.npz": "a name may not be empty"}
        for name, entries in cases.items():
            with self.subTest(name):
                err = self.refused(self.write(name, zip_bytes(entries)), texts[name])
                if name not in ("dup.npz", "noname.npz"):
                    self.assertIn('"x"', err)
        # a bare .npy cut short, and one with trailing bytes
        self.refused(self.write("cut.npy", a[:-1]), "need 24 bytes")
        self.refused(self.write("extra.npy", a + b"more"), "need 24 bytes")
        self.refused(self.write("tiny.npy", a[:5]), "NUMPY")

    def test_bad_crc(self):
        """A stored big-endian array is decoded, so its CRC is checked."""
        a = npy_bytes(np.arange(6, dtype=">i4"))
        p = self.write("crc.npz", zip_bytes([{"name": "x.npy", "data": a, "crc": 1}]))
        self.refused(p, "CRC", run=True)

    def test_not_arrays_ignored(self):
        a = npy_bytes(np.arange(3, dtype=np.int8))
        p = self.write("mixed.npz", zip_bytes([{"name": "x.npy", "data": a},
                                               {"name": "README.txt", "data": b"hi"},
                                               {"name": "dir/", "data": b""}]))
        rc, out, err = self.surg("schema", p, "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {"x": {"dtype": "I8", "shape": [3]}})
        self.assertIn("README.txt", err)


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surg", required=True, help="the surg executable")
    parser.add_argument("--force64", required=True, help="the write_knobs tool")
    ARGS, rest = parser.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    ARGS.force64 = os.path.abspath(ARGS.force64)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
