"""test_roundtrip.py: checks surg's safetensors reader and writer against NumPy
(stnp.py) through st_rewrite, the identity surgery: values survive, the output
is byte-identical to the reference writer's, shards split as documented, and
failures leave nothing behind.

usage: test_roundtrip.py --rewrite ST_REWRITE [--surg SURG] --fixtures DIR [unittest args]
"""

import argparse
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stnp  # noqa: E402

ARGS = None  # filled in by main()

# Fixture dtype names (NumPy spelling) -> safetensors names.
FIXTURE_DTYPES = {
    "float16": "F16", "float32": "F32", "float64": "F64", "bool": "BOOL",
    "uint8": "U8", "int8": "I8", "int16": "I16", "int32": "I32", "int64": "I64",
}
FIXTURE_SHAPES = [[3], [3, 5], [3, 5, 7]]
SHARD_NAME = re.compile(r"^model-(\d{5})-of-(\d{5})\.safetensors$")


def rewrite(*args):
    return subprocess.run([ARGS.rewrite] + [str(a) for a in args],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=120)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def fixture(*parts):
    return os.path.join(ARGS.fixtures, *parts)


def all_numeric_tensors():
    """One tensor of every dtype, edge values included, plus a scalar and a
    zero-size tensor; names chosen to exercise the byte order of names."""
    rng = np.random.default_rng(20240601)

    def ints(dt, shape):
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
        flat = a.reshape(-1)
        flat[0], flat[1] = info.min, info.max
        return a

    f16 = rng.standard_normal((5, 3)).astype("<f2")
    f16.reshape(-1)[:4] = [np.inf, -np.inf, np.nan, -0.0]
    f32 = rng.standard_normal((2, 3, 4)).astype("<f4")
    # A NaN with a payload and a denormal: must travel as bits, not values.
    f32.reshape(-1)[:2] = np.array([0x7FC12345, 0x00000001], "<u4").view("<f4")
    f64 = rng.standard_normal((7,)).astype("<f8")
    f64[0] = np.finfo("<f8").max
    return {
        # Deliberately not in the reference order: BOOL first, U64 late.
        "mask": ("BOOL", rng.random((4, 5)) < 0.5),
        "layer.w": ("F32", f32),
        "Layer.w": ("F16", f16),
        "w0": ("F32", rng.standard_normal((3,)).astype("<f4")),
        "w.x": ("F32", rng.standard_normal((2, 2)).astype("<f4")),
        "w": ("F32", rng.standard_normal((1,)).astype("<f4")),
        "Wq": ("F32", rng.standard_normal((2,)).astype("<f4")),
        "scalar": ("F32", np.array(3.5, "<f4")),
        "empty": ("F32", np.zeros((0, 3), "<f4")),
        "f64": ("F64", f64),
        "bf16": ("BF16", rng.integers(0, 1 << 16, size=(3, 4), dtype="<u2")),
        "f8_e4m3": ("F8_E4M3", rng.integers(0, 256, size=(6,), dtype="u1")),
        "f8_e5m2": ("F8_E5M2", rng.integers(0, 256, size=(2, 3), dtype="u1")),
        "i8": ("I8", ints("i1", (9,))),
        "u8": ("U8", ints("u1", (3, 3))),
        "i16": ("I16", ints("<i2", (4, 2))),
        "u16": ("U16", ints("<u2", (5,))),
        "i32": ("I32", ints("<i4", (2, 5))),
        "u64": ("U64", ints("<u8", (3,))),
        "u32": ("U32", ints("<u4", (2, 2, 2))),
        "i64": ("I64", ints("<i8", (4,))),
        "empty_i64": ("I64", np.zeros((2, 0), "<i8")),
        "scalar_bool": ("BOOL", np.array(True)),
    }


class RewriteCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="surg-py-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def run_ok(self, *args):
        r = rewrite(*args)
        self.assertEqual(r.returncode, 0, "st_rewrite %s failed:\n%s" % (
            " ".join(map(str, args)), r.stderr.decode(errors="replace")))
        return r

    def assert_same_tensors(self, got, want):
        """got, want: {name: (dtype, ndarray)}; equal names, dtypes, shapes, values, bits."""
        self.assertEqual(sorted(got), sorted(want))
        for name, (dtype, arr) in want.items():
            gdtype, garr = got[name]
            self.assertEqual(gdtype, dtype, name)
            self.assertEqual(garr.shape, arr.shape, name)
            self.assertEqual(garr.dtype, stnp.np_dtype(dtype), name)
            floating = np.issubdtype(garr.dtype, np.floating)
            self.assertTrue(np.array_equal(garr, arr, equal_nan=floating), name)
            self.assertEqual(garr.tobytes(), np.ascontiguousarray(arr).astype(
                stnp.np_dtype(dtype)).tobytes(), name)

    def assert_canonical(self, path):
        """The file is exactly what the reference writer makes of its own contents."""
        tensors, metadata, _ = stnp.load(path)
        want = stnp.save(self.path("canonical.tmp"), tensors, metadata, order="reference")
        os.unlink(self.path("canonical.tmp"))
        got = read(path)
        if got != want:
            n = struct.unpack("<Q", got[:8])[0]
            self.fail("%s is not in the reference layout.\n got header: %r\nwant header: %r" % (
                path, got[8:8 + n], want[8:8 + struct.unpack("<Q", want[:8])[0]]))
        return tensors, metadata

    def assert_no_temp_files(self, directory):
        left = [f for f in os.listdir(directory) if "surg-tmp" in f]
        self.assertEqual(left, [], "temporary files left in %s" % directory)


class TestNumpyRoundTrip(RewriteCase):
    """(a) NumPy writes, st_rewrite rewrites, NumPy reads back."""

    def roundtrip(self, tensors, metadata, add_format):
        src, out = self.path("in.safetensors"), self.path("out.safetensors")
        stnp.save(src, tensors, metadata, order="given", add_format=add_format)
        self.run_ok(src, out)
        got, got_meta, _ = stnp.load(out)
        self.assert_same_tensors(got, tensors)
        want = stnp.save(self.path("want.safetensors"), tensors, metadata, order="reference")
        self.assertEqual(read(out), want, "output is not byte-identical to the reference layout")
        self.assert_no_temp_files(self.tmp)
        return got, got_meta

    def test_input_is_not_in_reference_order(self):
        # Guards the premise of the tests below.
        tensors = all_numeric_tensors()
        ref = sorted(tensors, key=lambda n: stnp.reference_key(n, tensors[n][0]))
        self.assertNotEqual(list(tensors), ref)

    def test_every_dtype_with_metadata(self):
        # Metadata keys given unsorted; the output sorts them.
        meta = {"note": "x", "format": "np"}
        got, got_meta = self.roundtrip(all_numeric_tensors(), meta, add_format=False)
        self.assertEqual(got_meta, {"format": "np", "note": "x"})
        names = list(got)
        self.assertEqual(names[0], "u64")
        self.assertEqual(names[-2:], ["mask", "scalar_bool"])
        self.assertEqual([n for n in names if n.startswith(("w", "W", "layer", "Layer"))
                          and got[n][0] == "F32"],
                         ["Wq", "layer.w", "w", "w.x", "w0"])

    def test_every_dtype_without_metadata(self):
        src = self.path("in.safetensors")
        stnp.save(src, all_numeric_tensors(), None, order="given", add_format=False)
        self.assertNotIn(b"__metadata__", read(src))
        _, got_meta = self.roundtrip(all_numeric_tensors(), None, add_format=False)
        self.assertEqual(got_meta, {"format": "pt"})

    def test_metadata_without_format_gets_pt(self):
        _, got_meta = self.roundtrip(all_numeric_tensors(), {"zz": "1", "a": "2"}, add_format=False)
        self.assertEqual(got_meta, {"a": "2", "format": "pt", "zz": "1"})

    def test_single_scalar(self):
        self.roundtrip({"s": ("F64", np.array(-2.25, "<f8"))}, None, add_format=False)

    def test_only_empty_tensors(self):
        got, _ = self.roundtrip({"f": ("I8", np.zeros((3, 0, 2), "i1")),
                                 "e": ("F32", np.zeros((0,), "<f4"))}, None, add_format=False)
        self.assertEqual(got["f"][1].shape, (3, 0, 2))

    def test_names_needing_escapes_and_utf8(self):
        tensors = {
            'q"uote': ("F32", np.arange(2, dtype="<f4")),
            "back\\slash": ("F32", np.arange(3, dtype="<f4")),
            "caf\u00e9/w": ("F32", np.arange(4, dtype="<f4")),
            "cafe/w": ("F32", np.arange(5, dtype="<f4")),
        }
        self.roundtrip(tensors, {"k\u00e9y": "v\"al\\"}, add_format=True)


    def test_raw_dtypes_pass_through(self):
        # Types NumPy cannot compute on travel as bytes; F4 is 4 bits a value.
        tensors = {
            "f4": ("F4", np.array([0x12, 0x34, 0x56], "u1"), [2, 3]),
            "c64": ("C64", np.array([1 + 2j, -3.5j], "<c8")),
            "e8m0": ("F8_E8M0", np.array([127, 128], "u1")),
        }
        src, out = self.path("in.safetensors"), self.path("out.safetensors")
        stnp.save(src, tensors, order="given", add_format=False)
        self.run_ok(src, out)
        self.assertEqual(stnp.load_raw(out)[0], stnp.load_raw(src)[0])
        self.assertEqual(read(out), stnp.save(self.path("want.safetensors"), tensors))

    def test_no_tensors(self):
        src, out = self.path("in.safetensors"), self.path("out.safetensors")
        stnp.save(src, {}, add_format=False)
        self.run_ok(src, out)
        self.assertEqual(read(out), struct.pack("<Q", 32) + b'{"__metadata__":{"format":"pt"}}')

    def test_offsets_in_another_order_than_the_header(self):
        # Valid: the header lists b first but a's bytes come first.
        header = (b'{"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]},'
                  b'"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}')
        header += b" " * (-len(header) % 8)
        src, out = self.path("in.safetensors"), self.path("out.safetensors")
        with open(src, "wb") as f:
            f.write(struct.pack("<Q", len(header)) + header + b"AAABB")
        self.run_ok(src, out)
        self.assert_canonical(out)
        got = stnp.load_raw(out)[0]
        self.assertEqual(got["a"][2], b"AAA")
        self.assertEqual(got["b"][2], b"BB")


class TestReferenceFixture(RewriteCase):
    """(b) The file the reference writer made, rewritten."""

    def test_values_and_bytes(self):
        src = fixture("safetensors-reference", "model.numpy.safetensors")
        out = self.path("out.safetensors")
        self.run_ok(src, out)
        got, got_meta = self.assert_canonical(out)
        self.assertEqual(len(got), 27)
        src_raw, src_meta, _ = stnp.load_raw(src)
        out_raw, _, _ = stnp.load_raw(out)
        for np_name, st_name in FIXTURE_DTYPES.items():
            for shape in FIXTURE_SHAPES:
                name = "%s_%s" % (np_name, "".join(map(str, shape)))
                expect = np.arange(math.prod(shape)).reshape(shape)
                expect = (expect % 2).astype(bool) if np_name == "bool" else expect.astype(np_name)
                dtype, arr = got[name]
                self.assertEqual(dtype, st_name, name)
                self.assertEqual(arr.shape, tuple(shape), name)
                self.assertTrue(np.array_equal(arr, expect), name)
                self.assertEqual(out_raw[name][2], src_raw[name][2], name)
        self.assertEqual(got_meta, dict(src_meta or {}, **({} if src_meta and "format" in src_meta
                                                            else {"format": "pt"})))
        # The reference writer's order is ours: only the metadata may differ.
        self.assertEqual(list(out_raw), list(src_raw))


class TestSharded(RewriteCase):
    """(c) Sharded input through the index, and sharded output."""

    def read_sharded(self, directory):
        """{name: (dtype, shape, bytes)} of a sharded checkpoint, through its index."""
        with open(os.path.join(directory, "model.safetensors.index.json")) as f:
            index = json.load(f)
        out, cache = {}, {}
        for name, shard in index["weight_map"].items():
            if shard not in cache:
                cache[shard] = stnp.load_raw(os.path.join(directory, shard))[0]
            self.assertIn(name, cache[shard], "%s not in %s" % (name, shard))
            out[name] = cache[shard][name]
        # Every tensor of every shard is in the index, and only once.
        self.assertEqual(sum(len(t) for t in cache.values()), len(out))
        return out, index

    def test_fixture_index_is_consistent(self):
        tensors, index = self.read_sharded(fixture("safetensors-reference", "sharded"))
        self.assertEqual(len(tensors), 36)
        self.assertEqual(index["metadata"]["total_size"], 4305)
        self.assertEqual(sum(len(t[2]) for t in tensors.values()), 4305)

    def merge(self, src):
        out = self.path("merged.safetensors")
        self.run_ok(src, out)
        return out

    def test_merge_from_directory_and_from_index(self):
        shards = fixture("safetensors-reference", "sharded")
        want, _ = self.read_sharded(shards)
        merged = self.merge(shards)
        _, meta = self.assert_canonical(merged)
        self.assertEqual(meta, {"format": "pt"})
        got, _, _ = stnp.load_raw(merged)
        self.assertEqual(got, want)
        via_index = self.path("via-index.safetensors")
        self.run_ok(os.path.join(shards, "model.safetensors.index.json"), via_index)
        self.assertEqual(read(via_index), read(merged))
        self.assert_no_temp_files(self.tmp)

    def expected_shards(self, sizes, max_size):
        """Greedy in name byte order: a shard takes tensors while they fit."""
        shards, current, used = [], [], 0
        for name in sorted(sizes, key=lambda n: n.encode("utf-8")):
            if current and used + sizes[name] > max_size:
                shards.append(current)
                current, used = [], 0
            current.append(name)
            used += sizes[name]
        if current:
            shards.append(current)
        return shards

    def test_split_into_shards(self):
        merged = self.merge(fixture("safetensors-reference", "sharded"))
        originals, _, _ = stnp.load_raw(merged)
        outdir = self.path("split")
        os.mkdir(outdir)
        self.run_ok(merged, outdir, "1000")

        index_path = os.path.join(outdir, "model.safetensors.index.json")
        with open(index_path) as f:
            text = f.read()
        index = json.loads(text)
        self.assertEqual(text, json.dumps(index, indent=2, sort_keys=True) + "\n")
        self.assertEqual(sorted(index), ["metadata", "weight_map"])
        sizes = {n: len(t[2]) for n, t in originals.items()}
        self.assertEqual(index["metadata"]["total_size"], sum(sizes.values()))
        self.assertEqual(sorted(index["weight_map"]), sorted(originals))

        plan = self.expected_shards(sizes, 1000)
        m = len(plan)
        files = ["model-%05d-of-%05d.safetensors" % (i + 1, m) for i in range(m)]
        self.assertEqual(sorted(os.listdir(outdir)), sorted(files + ["model.safetensors.index.json"]))
        for f in files:
            self.assertRegex(f, SHARD_NAME)
        want_map = {name: files[i] for i, names in enumerate(plan) for name in names}
        self.assertEqual(index["weight_map"], want_map)

        for i, f in enumerate(files):
            shard_path = os.path.join(outdir, f)
            tensors, _ = self.assert_canonical(shard_path)
            self.assertEqual(sorted(tensors), sorted(plan[i]), f)
            data = sum(len(stnp.load_raw(shard_path)[0][n][2]) for n in tensors)
            if len(tensors) > 1:
                self.assertLessEqual(data, 1000, f)

        back, _ = self.read_sharded(outdir)
        self.assertEqual(back, originals)

        # And the shards read back as one checkpoint give the same file.
        again = self.path("again.safetensors")
        self.run_ok(outdir, again)
        self.assertEqual(read(again), read(merged))

    def test_everything_fits_in_one_shard(self):
        merged = self.merge(fixture("safetensors-reference", "sharded"))
        outdir = self.path("one")
        os.mkdir(outdir)
        self.run_ok(merged, outdir, "100000")
        self.assertEqual(os.listdir(outdir), ["model.safetensors"])
        # The single file's tensors and metadata, with the mark every file of
        # a sharded output carries; written again as one file, the merged
        # checkpoint's very bytes.
        one = os.path.join(outdir, "model.safetensors")
        got, got_meta, _ = stnp.load_raw(one)
        want, want_meta, _ = stnp.load_raw(merged)
        self.assertEqual(got, want)
        self.assertEqual(got_meta, dict(want_meta, **{"surg.output": "sharded"}))
        again = self.path("again.safetensors")
        self.run_ok(one, again)
        self.assertEqual(read(again), read(merged))

    def test_tensor_larger_than_shard_size_gets_its_own_shard(self):
        tensors = {
            "a": ("F32", np.arange(10, dtype="<f4")),        # 40 bytes
            "b": ("F32", np.arange(100, dtype="<f4")),       # 400 bytes, > max
            "c": ("U8", np.arange(20, dtype="u1")),          # 20 bytes
            "d": ("U8", np.arange(30, dtype="u1")),          # 30 bytes
        }
        src = self.path("in.safetensors")
        stnp.save(src, tensors)
        outdir = self.path("split")
        os.mkdir(outdir)
        self.run_ok(src, outdir, "64")
        with open(os.path.join(outdir, "model.safetensors.index.json")) as f:
            index = json.load(f)
        files = ["model-%05d-of-00003.safetensors" % i for i in (1, 2, 3)]
        self.assertEqual(index["weight_map"], {"a": files[0], "b": files[1],
                                               "c": files[2], "d": files[2]})
        self.assertEqual(index["metadata"]["total_size"], 490)
        back, _ = self.read_sharded(outdir)
        self.assertEqual(back, stnp.load_raw(src)[0])


class TestBadShardedInput(RewriteCase):
    """A sharded checkpoint whose index and shards disagree is wrong (exit 1)."""

    def broken_copy(self, edit):
        src = fixture("safetensors-reference", "sharded")
        d = self.path("sharded")
        os.mkdir(d)
        for f in os.listdir(src):
            shutil.copyfile(os.path.join(src, f), os.path.join(d, f))
        index_path = os.path.join(d, "model.safetensors.index.json")
        with open(index_path) as f:
            index = json.load(f)
        edit(index["weight_map"])
        with open(index_path, "w") as f:
            json.dump(index, f)
        out = self.path("out.safetensors")
        r = rewrite(d, out)
        self.assertEqual(r.returncode, 1, r.stderr.decode(errors="replace"))
        self.assertIn("model.safetensors.index.json", r.stderr.decode(errors="replace"))
        self.assertFalse(os.path.exists(out))
        self.assert_no_temp_files(self.tmp)

    def test_index_names_a_tensor_the_shard_lacks(self):
        self.broken_copy(lambda m: m.update({"nosuch": "model-00001-of-00006.safetensors"}))

    def test_shard_holds_a_tensor_the_index_lacks(self):
        self.broken_copy(lambda m: m.pop("bool_3"))

    def test_shard_path_outside_the_directory(self):
        self.broken_copy(lambda m: m.update({"bool_3": "../model.numpy.safetensors"}))


class TestFailures(RewriteCase):
    """(d) Bad input or a bad destination: the right exit code, nothing written."""

    def assert_fails(self, src, out, code, mention=None):
        r = rewrite(src, out)
        err = r.stderr.decode(errors="replace")
        self.assertEqual(r.returncode, code, "stderr: %s" % err)
        if mention:
            self.assertIn(mention, err)
        self.assertFalse(os.path.exists(out), "%s was created" % out)
        return err

    def test_hostile_header_length(self):
        src = fixture("hostile", "header-length-past-eof.safetensors")
        outdir = self.path("out")
        os.mkdir(outdir)
        self.assert_fails(src, os.path.join(outdir, "out.safetensors"), 1,
                          "header-length-past-eof.safetensors")
        self.assertEqual(os.listdir(outdir), [])

    def test_failure_keeps_existing_output(self):
        src = fixture("hostile", "header-length-past-eof.safetensors")
        out = self.path("out.safetensors")
        with open(out, "wb") as f:
            f.write(b"old contents")
        r = rewrite(src, out)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(read(out), b"old contents")
        self.assertEqual(os.listdir(self.tmp), ["out.safetensors"])

    def test_missing_output_directory(self):
        src = fixture("safetensors-reference", "model.numpy.safetensors")
        out = self.path("no", "such", "dir", "out.safetensors")
        self.assert_fails(src, out, 2)
        self.assertEqual(os.listdir(self.tmp), [])

    def test_missing_input(self):
        src = self.path("missing.safetensors")
        out = self.path("out.safetensors")
        self.assert_fails(src, out, 2, "missing.safetensors")
        self.assertEqual(os.listdir(self.tmp), [])

    def malformed(self, mutate):
        """A valid file from NumPy, then broken by mutate(bytearray) -> bytes."""
        good = stnp.save(self.path("good.tmp"), {"a": ("F32", np.arange(6, dtype="<f4")),
                                                 "b": ("I16", np.arange(4, dtype="<i2"))})
        os.unlink(self.path("good.tmp"))
        bad, blob = self.path("bad.safetensors"), mutate(bytearray(good))
        with self.assertRaises(stnp.FormatError):  # the test's premise
            stnp.parse(blob)
        with open(bad, "wb") as f:
            f.write(blob)
        outdir = self.path("out")
        os.mkdir(outdir)
        self.assert_fails(bad, os.path.join(outdir, "out.safetensors"), 1, "bad.safetensors")
        self.assertEqual(os.listdir(outdir), [])
        self.assert_no_temp_files(self.tmp)

    def with_header(self, blob, edit):
        n = struct.unpack("<Q", blob[:8])[0]
        header = bytes(blob[8:8 + n])
        new = edit(header)
        new += b" " * (-len(new) % 8)
        return struct.pack("<Q", len(new)) + new + bytes(blob[8 + n:])

    def test_truncated_data(self):
        self.malformed(lambda b: bytes(b[:-3]))

    def test_trailing_bytes_after_data(self):
        self.malformed(lambda b: bytes(b) + b"\0" * 8)

    def test_shorter_than_length_field(self):
        self.malformed(lambda b: bytes(b[:5]))

    def test_header_not_json(self):
        self.malformed(lambda b: self.with_header(b, lambda h: h.replace(b'"a":', b'"a"', 1)))

    # In reference order a (F32[6]) is at [0,24] and b (I16[4]) at [24,32].
    def test_offsets_with_a_gap(self):
        self.malformed(lambda b: self.with_header(
            b, lambda h: h.replace(b"[24,32]", b"[26,34]")) + b"\0\0")

    def test_offsets_overlap(self):
        self.malformed(lambda b: self.with_header(
            b, lambda h: h.replace(b"[24,32]", b"[20,28]"))[:-4])

    def raw_header(self, header, data=b""):
        """A file around a hand-written header (not validated here)."""
        header += b" " * (-len(header) % 8)
        return lambda b: struct.pack("<Q", len(header)) + header + data

    def test_duplicate_tensor_name(self):
        self.malformed(self.raw_header(
            b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
            b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"xy"))

    def test_shape_size_overflows(self):
        self.malformed(self.raw_header(
            b'{"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,0]}}'))

    def test_unknown_dtype(self):
        self.malformed(self.raw_header(
            b'{"a":{"dtype":"X9","shape":[1],"data_offsets":[0,1]}}', b"x"))

    def test_metadata_not_strings(self):
        self.malformed(self.raw_header(
            b'{"__metadata__":{"n":1},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"x"))

    def test_header_length_huge(self):
        self.malformed(lambda b: struct.pack("<Q", 2 ** 64 - 1) + bytes(b[8:]))

    def test_deeply_nested_header(self):
        depth = 100000
        self.malformed(self.raw_header(b'{"__metadata__":' + b'{"a":' * depth + b"1" +
                                       b"}" * depth + b"}"))

    def test_size_does_not_match_shape(self):
        self.malformed(lambda b: self.with_header(b, lambda h: h.replace(b"[6]", b"[7]")))


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rewrite", required=True, help="the st_rewrite program")
    parser.add_argument("--surg", help="the surg program (unused here)")
    parser.add_argument("--fixtures", required=True, help="shared/fixtures")
    ARGS, rest = parser.parse_known_args()
    ARGS.rewrite = os.path.abspath(ARGS.rewrite)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
