"""test_zarr.py: zarr arrays (the inside of Orbax checkpoints) in a directory
store, decoded by zarrcat (runtime/zarr.c, zarr_decode.c, kv_dir.c) and
checked byte for byte against NumPy. zarr v2 arrays are written by Debian's
python3-zarr (2.13, numcodecs 0.11) and read back by it; zarr3 arrays are
built here from the spec (zarr-specs docs/v3: bytes, transpose,
sharding_indexed with a crc32c index, zstd, gzip, crc32c), their zstd frames
made by the `zstd` command (no content size) or written block by block; the
Orbax v1 fixture's sharded chunk is taken out of its OCDBT node with
`zstd -d`. Hostile arrays (brief §5) must fail with their exact messages.

usage: test_zarr.py --zarrcat ZARRCAT --fixtures DIR [unittest args]
"""

import argparse
import glob
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

import numcodecs
import numpy as np
import zarr

sys.dont_write_bytecode = True
ARGS = None

# ---- helpers -----------------------------------------------------------------

def zarrcat(*args):
    r = subprocess.run([ARGS.zarrcat, *args], capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def decode(store, name, *opts):
    """The array's bytes as zarrcat decodes them (asserting success)."""
    with tempfile.TemporaryDirectory() as t:
        out = os.path.join(t, "out.raw")
        rc, _, err = zarrcat(store, name, "--out", out, "--tmp", t, *opts)
        assert rc == 0, err
        with open(out, "rb") as f:
            return f.read()


def failure(store, name, *opts):
    """zarrcat's diagnostics for an array that must not decode."""
    with tempfile.TemporaryDirectory() as t:
        rc, _, err = zarrcat(store, name, "--out", os.path.join(t, "o"), *opts)
        assert rc != 0, "decoded what it should have refused"
        return err.strip()


def plain(a):
    """The bytes surg must give: little-endian, C order."""
    a = np.asarray(a)
    return np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"))).tobytes()


CRC_TABLE = []
for n in range(256):
    c = n
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    CRC_TABLE.append(c)


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = CRC_TABLE[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def zstd_cli(b):
    """A zstd frame from the command, read from a pipe: no content size."""
    return subprocess.run(["zstd", "-q", "-c", "--no-check"], input=b, capture_output=True,
                          check=True).stdout


def zstd_raw(b, block=1 << 17):
    """A zstd frame by hand: no content size, a 128 KiB window, raw blocks."""
    out = bytearray(b"\x28\xb5\x2f\xfd\x00\x38")
    parts = [b[i:i + block] for i in range(0, len(b), block)] or [b""]
    for i, p in enumerate(parts):
        h = (len(p) << 3) | (1 if i == len(parts) - 1 else 0)
        out += h.to_bytes(3, "little") + p
    return bytes(out)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


# ---- zarr3 by hand --------------------------------------------------------------

V3_NAMES = {"bool": "bool", "int8": "int8", "uint8": "uint8", "int16": "int16",
            "uint16": "uint16", "int32": "int32", "uint32": "uint32", "int64": "int64",
            "uint64": "uint64", "float16": "float16", "float32": "float32",
            "float64": "float64", "complex64": "complex64"}


def encode(chunk, chain):
    """A full chunk through a codec chain (a2a, a2b, b2b... in order)."""
    data = chunk
    for c in chain:
        n, cfg = c["name"], c.get("configuration", {})
        if n == "transpose":
            data = np.transpose(data, cfg["order"])
        elif n == "bytes":
            order = "<" if cfg.get("endian", "little") == "little" else ">"
            data = np.ascontiguousarray(data.astype(data.dtype.newbyteorder(order))).tobytes()
        elif n == "zstd":
            data = zstd_cli(data)
        elif n == "gzip":
            data = gzip.compress(data)
        elif n == "crc32c":
            data = data + struct.pack("<I", crc32c(data))
        else:
            raise ValueError(n)
    return data


def padded(a, origin, shape, fill):
    """The chunk of `a` at `origin`, full size, the overhang filled."""
    c = np.full(shape, fill, dtype=a.dtype)
    sl = tuple(slice(o, min(o + s, n)) for o, s, n in zip(origin, shape, a.shape))
    part = a[sl]
    c[tuple(slice(0, k) for k in part.shape)] = part
    return c


def shard_bytes(a, origin, shard, inner, codecs, fill, location="end", crc=True, skip=(),
                index_endian="little"):
    grid = [s // i for s, i in zip(shard, inner)]
    blobs, index = [], []
    pos = 0
    for k, h in enumerate(np.ndindex(*grid)):
        if k in skip:
            index.append((2 ** 64 - 1, 2 ** 64 - 1))
            continue
        o = [g + x * i for g, x, i in zip(origin, h, inner)]
        b = encode(padded(a, o, inner, fill), codecs)
        index.append((pos, len(b)))
        blobs.append(b)
        pos += len(b)
    fmt = "<" if index_endian == "little" else ">"
    ix = b"".join(struct.pack(fmt + "QQ", off, n) for off, n in index)
    if crc:
        ix += struct.pack("<I", crc32c(ix))
    data = b"".join(blobs)
    if location == "start":
        index = [(off + len(ix), n) if off != 2 ** 64 - 1 else (off, n) for off, n in index]
        ix = b"".join(struct.pack(fmt + "QQ", off, n) for off, n in index)
        if crc:
            ix += struct.pack("<I", crc32c(ix))
        return ix + data
    return data + ix


def v3_array(store, name, a, chunk, codecs, fill=0, fill_json=None, keys=None, skip=(),
             shard=None):
    """Write zarr.json and the chunks of `a`. shard: (inner, inner codecs,
    location, crc, skipped inner chunks); skip: chunk indices not written."""
    meta = {"zarr_format": 3, "node_type": "array", "shape": list(a.shape),
            "data_type": V3_NAMES[a.dtype.name],
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunk)}},
            "chunk_key_encoding": keys or {"name": "default"},
            "fill_value": fill_json if fill_json is not None else bool(fill)
            if a.dtype == bool else [float(np.real(fill)), float(np.imag(fill))]
            if a.dtype.kind == "c" else fill, "codecs": codecs,
            "attributes": {"x": 1}}
    write(os.path.join(store, name, "zarr.json"), json.dumps(meta).encode())
    enc = meta["chunk_key_encoding"]
    default = enc["name"] == "default"
    sep = enc.get("configuration", {}).get("separator", "/" if default else ".")
    grid = [-(-n // c) for n, c in zip(a.shape, chunk)]
    for k, g in enumerate(np.ndindex(*grid)):
        if k in skip:
            continue
        key = sep.join(str(x) for x in g)
        key = ("c" + (sep + key if g else "")) if default else (key or "0")
        origin = [x * c for x, c in zip(g, chunk)]
        if shard:
            inner, icodecs, loc, crc, iskip = shard
            b = shard_bytes(a, origin, chunk, inner, icodecs, fill if fill_json is None else 0,
                            loc, crc, iskip)
        else:
            b = encode(padded(a, origin, chunk, fill if fill_json is None else 0), codecs)
        write(os.path.join(store, name, *key.split("/")), b)


def sharded(inner, icodecs, location="end", crc=True):
    index = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if crc:
        index.append({"name": "crc32c"})
    return [{"name": "sharding_indexed",
             "configuration": {"chunk_shape": list(inner), "codecs": icodecs,
                               "index_codecs": index, "index_location": location}}]


LE = {"name": "bytes", "configuration": {"endian": "little"}}
BE = {"name": "bytes", "configuration": {"endian": "big"}}
ZSTD = {"name": "zstd", "configuration": {"level": 3, "checksum": False}}
GZIP = {"name": "gzip", "configuration": {"level": 5}}
CRC = {"name": "crc32c"}


def sample(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    n = int(np.prod(shape))
    if dt.kind == "b":
        v = rng.integers(0, 2, n).astype(bool)
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        v = rng.integers(info.min, info.max, n, dtype=dt.newbyteorder("="), endpoint=True)
        v = v.astype(dt)
    elif dt.kind == "c":
        v = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dt)
    else:
        v = (rng.standard_normal(n) * 100).astype(dt)
        v[:3] = [np.inf, -np.inf, np.nan][:min(3, n)]
    return v.reshape(shape)


# ---- zarr v2, written by python3-zarr ------------------------------------------------

class V2(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def roundtrip(self, name, a, **kw):
        z = zarr.open(os.path.join(self.dir, name), mode="w", shape=a.shape, dtype=a.dtype, **kw)
        z[...] = a
        self.assertEqual(decode(self.dir, name), plain(z[...]))
        self.assertEqual(decode(self.dir, name), plain(a))
        return z

    def test_dtypes_orders_compressors(self):
        comps = [None, numcodecs.Zlib(level=1), numcodecs.GZip(level=5), numcodecs.Zstd(level=1)]
        k = 0
        for dt in ["|b1", "|i1", "|u1", "<i2", ">i2", "<u2", ">u2", "<i4", ">i4", "<u4", ">u4",
                   "<i8", ">i8", "<u8", ">u8", "<f2", ">f2", "<f4", ">f4", "<f8", ">f8",
                   "<c8", ">c8"]:
            for order in "CF":
                comp = comps[k % len(comps)]
                k += 1
                with self.subTest(dtype=dt, order=order, compressor=comp):
                    a = sample(dt, (5, 7), k)
                    self.roundtrip(f"a{k}", a, chunks=(2, 3), order=order, compressor=comp,
                                   fill_value=None)

    def test_info(self):
        a = sample("<f4", (5, 7))
        self.roundtrip("w", a, chunks=(2, 3), compressor=None)
        self.assertEqual(zarrcat(self.dir, "w", "--info")[1], "F32 [5, 7] 140\n")
        self.roundtrip("bf", sample(">u2", (3,)), chunks=(2,), compressor=None)
        self.assertEqual(zarrcat(self.dir, "bf", "--info")[1], "U16 [3] 6\n")

    def test_rank0_rank3_slash(self):
        self.roundtrip("s", np.array(42, dtype="<i8"), chunks=(), compressor=None)
        self.roundtrip("s2", np.array(1.5, dtype=">f8"), chunks=(), compressor=numcodecs.Zlib())
        a = sample("<i4", (4, 5, 6), 3)
        for order in "CF":
            self.roundtrip("d" + order, a, chunks=(3, 2, 4), order=order,
                           compressor=numcodecs.Zstd(), dimension_separator="/")
        self.assertTrue(os.path.isfile(os.path.join(self.dir, "dC", "1", "2", "1")))

    def test_big_chunk_transposed(self):
        """An F-order chunk above 4 MiB: staged in a temporary file."""
        a = sample("<f4", (1100, 1000), 9)
        self.roundtrip("big", a, chunks=(1100, 1000), order="F", compressor=numcodecs.Zlib(1))
        self.roundtrip("bigc", a, chunks=(512, 1000), order="C", compressor=numcodecs.Zstd(1))

    def test_chunk_larger_than_array(self):
        a = sample("<i2", (3, 5), 4)
        self.roundtrip("o", a, chunks=(8, 8), compressor=None)

    def test_missing_chunks_fill(self):
        for dt, fill in [("<f4", np.nan), ("<f8", -np.inf), ("<i1", -5), ("<u8", 2 ** 64 - 1),
                         ("|b1", True), ("<f2", 1.5), ("<i8", None), ("<c8", 1 + 2j)]:
            with self.subTest(dtype=dt, fill=fill):
                name = "m" + dt[1:] + str(fill).replace("-", "n")
                z = zarr.open(os.path.join(self.dir, name), mode="w", shape=(5, 6), chunks=(2, 4),
                              dtype=dt, fill_value=fill, compressor=numcodecs.Zlib())
                z[0:2, 0:4] = sample(dt, (2, 4), 1)
                z[4:5, 4:6] = sample(dt, (1, 2), 2)
                want = z[...]
                if fill is None:  # unspecified: zeros, as TensorStore reads it
                    want[np.ones(want.shape, bool)] = 0
                    want[0:2, 0:4] = z[0:2, 0:4]
                    want[4:5, 4:6] = z[4:5, 4:6]
                self.assertEqual(decode(self.dir, name), plain(want))
        err = failure(self.dir, "mf4nan", "--strict")
        self.assertEqual(err, f'array "mf4nan" chunk 0.1 in {self.dir}: is missing (no key '
                              f'"mf4nan/0.1"), and missing chunks are not read as the fill value '
                              f'in this checkpoint [zarr-missing]')

    def test_fixture_aggregate_some(self):
        d = os.path.join(ARGS.fixtures, "orbax", "aggregate_some.checkpoint")
        self.assertEqual(decode(d, "a"), plain(np.arange(8, dtype="<i8")))
        self.assertEqual(decode(d, "b"), plain(np.arange(0, 32, 2, dtype="<i8")))
        self.assertEqual(zarrcat(d, "a", "--info")[1], "I64 [8] 64\n")

    def test_dst_offset(self):
        a = sample("<i4", (3, 4), 5)
        self.roundtrip("off", a, chunks=(2, 3), compressor=None)
        with tempfile.TemporaryDirectory() as t:
            out = os.path.join(t, "o")
            rc, _, err = zarrcat(self.dir, "off", "--out", out, "--at", "100")
            self.assertEqual(rc, 0, err)
            with open(out, "rb") as f:
                self.assertEqual(f.read(), bytes(100) + plain(a))


# ---- zarr3, built from the spec ---------------------------------------------------------

class V3(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_bytes_codecs(self):
        k = 0
        for dt in ["bool", "int8", "uint16", "int32", "uint64", "float16", "float32", "float64",
                   "complex64"]:
            for codecs in ([LE], [BE], [LE, ZSTD], [BE, GZIP], [LE, CRC], [LE, ZSTD, CRC],
                           [LE, CRC, GZIP]):
                if dt in ("bool", "int8") and codecs[0] is BE:
                    continue
                k += 1
                with self.subTest(dtype=dt, codecs=[c["name"] for c in codecs]):
                    a = sample(dt, (5, 7), k)
                    v3_array(self.dir, f"a{k}", a, (2, 3), codecs)
                    self.assertEqual(decode(self.dir, f"a{k}"), plain(a))

    def test_transpose_and_keys(self):
        a = sample("float32", (4, 5, 6), 7)
        for order, keys in [([2, 0, 1], None), ([1, 2, 0], {"name": "v2"}),
                            ([2, 1, 0], {"name": "default", "configuration": {"separator": "."}}),
                            ([0, 1, 2], {"name": "v2", "configuration": {"separator": "/"}})]:
            with self.subTest(order=order, keys=keys):
                name = "t" + "".join(map(str, order))
                v3_array(self.dir, name, a, (3, 2, 4),
                         [{"name": "transpose", "configuration": {"order": order}}, BE, ZSTD],
                         keys=keys)
                self.assertEqual(decode(self.dir, name), plain(a))
        self.assertTrue(os.path.isfile(os.path.join(self.dir, "t201", "c", "1", "2", "1")))
        self.assertTrue(os.path.isfile(os.path.join(self.dir, "t210", "c.1.2.1")))
        self.assertTrue(os.path.isfile(os.path.join(self.dir, "t120", "1.2.1")))

    def test_rank0(self):
        a = np.array(-7, dtype="int64")
        v3_array(self.dir, "s", a, (), [LE, ZSTD])
        self.assertTrue(os.path.isfile(os.path.join(self.dir, "s", "c")))
        self.assertEqual(decode(self.dir, "s"), plain(a))
        v3_array(self.dir, "s2", a, (), [LE], keys={"name": "v2"})
        self.assertTrue(os.path.isfile(os.path.join(self.dir, "s2", "0")))
        self.assertEqual(decode(self.dir, "s2"), plain(a))

    def test_sharding(self):
        a = sample("int32", (10, 9), 11)
        inner_codecs = [[LE, ZSTD], [LE], [BE, GZIP, CRC],
                        [{"name": "transpose", "configuration": {"order": [1, 0]}}, LE, ZSTD]]
        k = 0
        for loc in ["end", "start"]:
            for crc in [True, False]:
                for ic in inner_codecs:
                    k += 1
                    with self.subTest(location=loc, crc=crc, codecs=[c["name"] for c in ic]):
                        v3_array(self.dir, f"h{k}", a, (6, 6), sharded((2, 3), ic, loc, crc),
                                 shard=((2, 3), ic, loc, crc, ()))
                        self.assertEqual(decode(self.dir, f"h{k}"), plain(a))

    def test_sharding_missing(self):
        """Empty inner chunks and a missing shard read as the fill value."""
        a = sample("float32", (8, 8), 12)
        v3_array(self.dir, "m", a, (4, 8), sharded((2, 4), [LE, ZSTD]), fill=2.5,
                 shard=((2, 4), [LE, ZSTD], "end", True, (1, 2)), skip=(1,))
        want = a.copy()
        want[0:2, 4:8] = 2.5
        want[2:4, 0:4] = 2.5
        want[4:8, :] = 2.5
        self.assertEqual(decode(self.dir, "m"), plain(want))
        err = failure(self.dir, "m", "--strict")
        self.assertEqual(err, f'array "m" chunk c/0/0 in {self.dir}, inner chunk [0, 1]: is empty '
                              f"in its shard's index, and missing chunks are not read as the fill "
                              f"value in this checkpoint [zarr-missing]")

    def test_fill_values(self):
        for dt, fill, want in [("float32", "NaN", np.nan), ("float64", "-Infinity", -np.inf),
                               ("float32", "0x7fc00001", None), ("float16", "0x3c00", 1.0),
                               ("bool", True, True), ("uint64", 2 ** 64 - 1, 2 ** 64 - 1),
                               ("int16", -32768, -32768), ("complex64", [1.0, "NaN"], None)]:
            with self.subTest(dtype=dt, fill=fill):
                name = "f" + dt + str(fill).replace("-", "n")
                a = sample(dt, (3, 4), 1)
                v3_array(self.dir, name, a, (2, 2), [LE], fill_json=fill, skip=(1, 2, 3))
                got = np.frombuffer(decode(self.dir, name), dtype=np.dtype(dt).newbyteorder("<"))
                got = got.reshape(a.shape)
                self.assertEqual(got[0:2, 0:2].tobytes(), plain(a[0:2, 0:2]))
                if dt == "float32" and want is None:
                    self.assertEqual(got[2, 3].view("<u4"), 0x7FC00001)
                elif dt == "complex64":
                    self.assertEqual(got[2, 3].real, 1.0)
                    self.assertTrue(np.isnan(got[2, 3].imag))
                else:
                    np.testing.assert_array_equal(got[2, 3], np.array(want, dtype=dt))

    def test_raw_block_frames(self):
        a = sample("uint8", (300000,), 3)
        meta_codecs = [LE, ZSTD]
        v3_array(self.dir, "r", a, (200000,), meta_codecs)
        for k, origin in enumerate([0, 200000]):
            chunk = padded(a, [origin], [200000], 0).tobytes()
            write(os.path.join(self.dir, "r", "c", str(k)), zstd_raw(chunk))
        self.assertEqual(decode(self.dir, "r"), plain(a))

    def test_orbax_v1_fixture(self):
        """a/c/0 and a/zarr.json out of the v1 fixture's OCDBT node."""
        nodes = glob.glob(os.path.join(ARGS.fixtures, "orbax", "v1_checkpoints", "composite_checkpoint",
                                       "checkpoint_metadata_present",
                                       "pytree_checkpointable_has_metadata", "state", "d", "*"))
        found = False
        for path in nodes:
            with open(path, "rb") as f:
                raw = f.read()
            at = raw.find(b"\x28\xb5\x2f\xfd")
            node = subprocess.run(["zstd", "-dc"], input=raw[at:], capture_output=True).stdout
            j = node.find(b'{"chunk_grid"')
            c = node.find(b"\x28\xb5\x2f\xfd\x20\x20")
            if j < 0 or c < 0:
                continue
            meta = node[j:node.index(b'"zarr_format":3}', j) + 16]
            write(os.path.join(self.dir, "a", "zarr.json"), meta)
            write(os.path.join(self.dir, "a", "c", "0"), node[c:c + 61])
            found = True
            break
        self.assertTrue(found)
        self.assertEqual(zarrcat(self.dir, "a", "--info")[1], "I32 [8] 32\n")
        self.assertEqual(decode(self.dir, "a", "--strict"), plain(np.arange(8, dtype="<i4")))


# ---- hostile arrays ------------------------------------------------------------------------

V2_OK = {"zarr_format": 2, "shape": [4], "chunks": [2], "dtype": "<i4", "compressor": None,
         "fill_value": 0, "filters": None, "order": "C"}


class Hostile(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def v2(self, name, files=None, **change):
        meta = dict(V2_OK, **change)
        meta = {k: v for k, v in meta.items() if v != "DROP"}
        write(os.path.join(self.dir, name, ".zarray"), json.dumps(meta).encode())
        for k, b in (files or {}).items():
            write(os.path.join(self.dir, name, k), b)

    def meta_err(self, name, fmt=".zarray"):
        err = failure(self.dir, name)
        prefix = f"{name}/{fmt} in {self.dir}: "
        self.assertTrue(err.startswith(prefix), err)
        return err[len(prefix):]

    def test_metadata(self):
        cases = [
            (dict(shape=[4, 4]), '"shape" has 2 dimensions but "chunks" 1 [zarr-meta]'),
            (dict(chunks=[0]), '"chunks" has a dimension of 0 (each must be at least 1) '
                               '[zarr-meta]'),
            (dict(shape=[-1]), '"shape" has a negative dimension [zarr-meta]'),
            (dict(shape=[2 ** 62], chunks=[1]),
             "the array or its chunks are too large (more than 2^62 bytes, or sizes that "
             "overflow) [zarr-meta]"),
            (dict(shape=[2 ** 40, 2 ** 40], chunks=[1, 1]),
             "the array or its chunks are too large (more than 2^62 bytes, or sizes that "
             "overflow) [zarr-meta]"),
            (dict(shape=[4], chunks=[2 ** 40]),
             "the chunk grid (1 chunks of 4398046511104 bytes) is far larger than the array "
             "(16 bytes) [zarr-meta]"),
            (dict(dtype="<U4"), '"dtype" is "<U4", which surg does not support (it reads bool, '
                                'int8 to uint64, float16/32/64, complex64, bfloat16 and the '
                                'float8 types) [zarr-unsupported]'),
            (dict(dtype="<c16"), '"dtype" is "<c16", which surg does not support (it reads bool, '
                                 'int8 to uint64, float16/32/64, complex64, bfloat16 and the '
                                 'float8 types) [zarr-unsupported]'),
            (dict(dtype=[["a", "<i4"]]), '"dtype" is a structured dtype, which surg does not '
                                         'support [zarr-unsupported]'),
            (dict(compressor={"id": "blosc", "cname": "lz4"}),
             '"compressor" is "blosc", which surg does not support (it reads zstd, zlib and '
             'gzip) [zarr-unsupported]'),
            (dict(filters=[{"id": "delta", "dtype": "<i4"}]),
             '"filters" are set, which surg does not support (only null or []) '
             '[zarr-unsupported]'),
            (dict(order="K"), '"order" is "K", not "C" or "F" [zarr-meta]'),
            (dict(zarr_format=3), '"zarr_format" is not 2 [zarr-meta]'),
            (dict(fill_value="NaN"), '"fill_value" is "NaN", not a value of int32 [zarr-meta]'),
            (dict(fill_value=2 ** 31), '"fill_value" 2147483648 is out of the range of int32 '
                                       '[zarr-meta]'),
            (dict(fill_value=1.5), '"fill_value" is 1.5, not a whole number [zarr-meta]'),
            (dict(dimension_separator="-"), '"dimension_separator" is "-", not "." or "/" '
                                            '[zarr-meta]'),
            (dict(extra=1), 'the .zarray has a key "extra" surg does not know '
                            '[zarr-unsupported]'),
            (dict(order="DROP"), 'the .zarray has no "order" [zarr-meta]'),
        ]
        for k, (change, msg) in enumerate(cases):
            with self.subTest(change=change):
                self.v2(f"m{k}", **change)
                self.assertEqual(self.meta_err(f"m{k}"), msg)
        write(os.path.join(self.dir, "j", ".zarray"), b'{"zarr_format": 2, "shape": [1],}')
        self.assertEqual(self.meta_err("j"), "is not valid JSON: a trailing comma before '}' "
                                             "(at byte 32) [zarr-json]")
        write(os.path.join(self.dir, "d", ".zarray"), b'{"shape": [1], "shape": [2]}')
        self.assertEqual(self.meta_err("d"), 'is not valid JSON: duplicate key "shape" in the '
                                             'metadata (at byte 28) [zarr-json]')

    def test_v3_metadata(self):
        a = np.arange(8, dtype="int32")
        cases = [
            ([{"name": "blosc", "configuration": {}}], "no bytes"),
            ([LE, {"name": "blosc", "configuration": {}}], "blosc"),
            ([LE, ZSTD, GZIP], "twice"),
            (sharded((3,), [LE]), "divide"),
            ([{"name": "transpose", "configuration": {"order": [0, 0]}}, LE], "permutation"),
            (sharded((2,), sharded((1,), [LE])), "inside"),
            ([{"name": "bytes"}], "endian"),
        ]
        msgs = [
            'codec "blosc" is not supported (surg reads transpose, bytes, sharding_indexed, '
            'zstd, gzip and crc32c) [zarr-unsupported]',
            'codec "blosc" is not supported (surg reads transpose, bytes, sharding_indexed, '
            'zstd, gzip and crc32c) [zarr-unsupported]',
            "the codecs compress twice (surg reads one compressor per chain) [zarr-unsupported]",
            "the inner chunk shape does not divide the shard's (dimension 0: 3 into 4) "
            "[zarr-meta]",
            'transpose "order" has 2 entries for an array of rank 1 [zarr-meta]',
            "sharding_indexed inside sharding_indexed is not supported [zarr-unsupported]",
            'codec "bytes" has no "endian" [zarr-meta]',
        ]
        for k, ((codecs, _), msg) in enumerate(zip(cases, msgs)):
            with self.subTest(codecs=codecs):
                meta = {"zarr_format": 3, "node_type": "array", "shape": [8],
                        "data_type": "int32",
                        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4]}},
                        "chunk_key_encoding": {"name": "default"}, "fill_value": 0,
                        "codecs": codecs}
                write(os.path.join(self.dir, f"c{k}", "zarr.json"), json.dumps(meta).encode())
                self.assertEqual(self.meta_err(f"c{k}", "zarr.json"), msg)
        del a
        meta = {"zarr_format": 3, "node_type": "array", "shape": [8], "data_type": "int4",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4]}},
                "chunk_key_encoding": {"name": "default"}, "fill_value": 0, "codecs": [LE]}
        write(os.path.join(self.dir, "i4", "zarr.json"), json.dumps(meta).encode())
        self.assertEqual(self.meta_err("i4", "zarr.json"),
                         '"data_type" is "int4", which surg does not support (it reads bool, '
                         'int8 to uint64, float16/32/64, complex64, bfloat16 and the float8 '
                         'types) [zarr-unsupported]')
        meta.update(data_type="int32", extension={"must_understand": False})
        write(os.path.join(self.dir, "ok", "zarr.json"), json.dumps(meta).encode())
        self.assertEqual(zarrcat(self.dir, "ok", "--info")[1], "I32 [8] 32\n")
        meta.update(storage_transformers=[{"name": "x"}])
        write(os.path.join(self.dir, "st", "zarr.json"), json.dumps(meta).encode())
        self.assertEqual(self.meta_err("st", "zarr.json"),
                         '"storage_transformers" are set, which surg does not support '
                         '[zarr-unsupported]')

    def chunk_err(self, name, key, chunk_bytes, **change):
        self.v2(name, {key: chunk_bytes}, **change)
        err = failure(self.dir, name)
        prefix = f'array "{name}" chunk {key} in {self.dir}: '
        self.assertTrue(err.startswith(prefix), err)
        return err[len(prefix):]

    def test_chunks(self):
        body = np.arange(2, dtype="<i4").tobytes()
        z = {"id": "zstd", "level": 1}
        self.assertEqual(self.chunk_err("s", "0", body + b"x"),
                         "the stored chunk has 9 bytes, not the 8 its codecs and shape need "
                         "[zarr-size]")
        bomb = zstd_cli(bytes(1 << 20))
        self.assertEqual(self.chunk_err("b", "0", bomb, compressor=z),
                         "the zstd stream holds more than the 8 bytes expected [codec-size]")
        self.assertEqual(self.chunk_err("t", "0", zstd_cli(body) + b"junk", compressor=z),
                         "4 bytes follow the end of the zstd stream [codec-size]")
        self.assertEqual(self.chunk_err("c", "0", zstd_cli(body) + zstd_cli(body), compressor=z),
                         "%d bytes follow the end of the zstd stream [codec-size]"
                         % len(zstd_cli(body)))
        self.assertEqual(self.chunk_err("sh", "0", zstd_cli(body[:4]), compressor=z),
                         "the zstd stream ends after 4 of the 8 bytes expected [codec-size]")
        self.assertEqual(self.chunk_err("cut", "0", zstd_cli(body)[:-3], compressor=z),
                         "the zstd stream is cut short after 5 of the 8 bytes expected "
                         "[codec-size]")
        g = {"id": "gzip", "level": 1}
        self.assertEqual(self.chunk_err("g", "0", gzip.compress(body) + gzip.compress(body),
                                        compressor=g),
                         "20 bytes follow the end of the gzip stream [codec-size]"
                         .replace("20", str(len(gzip.compress(body)))))
        self.assertEqual(self.chunk_err("gb", "0", gzip.compress(bytes(1 << 20)), compressor=g),
                         "the gzip stream holds more than the 8 bytes expected [codec-size]")
        self.assertEqual(self.chunk_err("zl", "0", b"\x78\x9c" + b"\xff" * 10,
                                        compressor={"id": "zlib"}),
                         "the zlib stream is corrupt: invalid block type [codec-corrupt]")

    def shard(self, name, data, loc="end", shape=(8,), chunk=(8,), inner=(4,)):
        meta = {"zarr_format": 3, "node_type": "array", "shape": list(shape),
                "data_type": "int32",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunk)}},
                "chunk_key_encoding": {"name": "default"}, "fill_value": 0,
                "codecs": sharded(inner, [LE], loc)}
        write(os.path.join(self.dir, name, "zarr.json"), json.dumps(meta).encode())
        write(os.path.join(self.dir, name, "c", "0"), data)
        err = failure(self.dir, name)
        return err.replace(f'array "{name}" chunk c/0 in {self.dir}', "SHARD")

    def test_shards(self):
        body = np.arange(4, dtype="<i4").tobytes()

        def index(entries, crc=True):
            ix = b"".join(struct.pack("<QQ", o, n) for o, n in entries)
            return ix + (struct.pack("<I", crc32c(ix)) if crc else b"")
        ok = body + body + index([(0, 16), (16, 16)])
        bad_crc = ok[:-1] + bytes([ok[-1] ^ 1])
        self.assertEqual(self.shard("crc", bad_crc),
                         "SHARD: the CRC-32C of the shard's index is %08x, not the %08x stored "
                         "[zarr-crc]" % (crc32c(ok[32:64]), crc32c(ok[32:64]) ^ (1 << 24)))
        self.assertEqual(self.shard("over", body + body + index([(0, 16), (16, 40)])),
                         "SHARD, inner chunk [1]: the shard's index puts it at bytes 16 to 56, "
                         "outside the shard's chunks (bytes 0 to 32) [zarr-shard]")
        self.assertEqual(self.shard("wrap", body + body + index([(0, 16), (2 ** 64 - 8, 16)])),
                         "SHARD, inner chunk [1]: the shard's index puts it at bytes "
                         "18446744073709551608 to 18446744073709551608, outside the shard's "
                         "chunks (bytes 0 to 32) [zarr-shard]")
        self.assertEqual(self.shard("ix", index([(0, 16), (16, 16)]) + body + body, "start"),
                         "SHARD, inner chunk [0]: the shard's index puts it at bytes 0 to 16, "
                         "outside the shard's chunks (bytes 36 to 68) [zarr-shard]")
        self.assertEqual(self.shard("short", b"\0" * 20),
                         "SHARD: the shard has 20 bytes, too few for its index of 36 [zarr-shard]")
        self.assertEqual(self.shard("len", body + body[:12] + index([(0, 16), (16, 12)])),
                         "SHARD, inner chunk [1]: the stored chunk has 12 bytes, not the 16 its "
                         "codecs and shape need [zarr-size]")

    def test_keys_stay_inside(self):
        outside = os.path.join(self.dir, "outside")
        write(os.path.join(outside, "secret"), b"x" * 8)
        store = os.path.join(self.dir, "store")
        os.makedirs(store)
        for key in ["../outside/secret", "/etc/passwd", "a//b", "a/./b", "a\\b", ""]:
            with self.subTest(key=key):
                rc, _, err = zarrcat(store, "--get", key)
                self.assertEqual(rc, 1)
                self.assertIn("[kv-key]", err)
        os.symlink(outside, os.path.join(store, "link"))
        rc, _, err = zarrcat(store, "--get", "link/secret")
        self.assertEqual(err.strip(), f"{store}/link: is a symbolic link; keys are read only "
                                      f"from files beneath {store}, not through links [kv-link]")
        os.symlink(os.path.join(outside, "secret"), os.path.join(store, "f"))
        rc, _, err = zarrcat(store, "--get", "f")
        self.assertIn("[kv-link]", err)
        os.mkfifo(os.path.join(store, "fifo"))
        rc, _, err = zarrcat(store, "--get", "fifo")
        self.assertEqual(err.strip(), f"{store}/fifo: is a FIFO, not a regular file [not-regular]")
        write(os.path.join(store, "b", "x"), b"12")
        write(os.path.join(store, "a", "c", "0"), b"123")
        write(os.path.join(store, "a.b"), b"")
        self.assertEqual(zarrcat(store, "--get", "a/c/0")[1], "3 bytes\n")
        self.assertEqual(zarrcat(store, "--get", "a/c/1")[1], "not found\n")
        self.assertEqual(zarrcat(store, "--get", "a/c/0/x")[1], "not found\n")
        self.assertEqual(zarrcat(store, "--list", "")[1], "a.b 0\na/c/0 3\nb/x 2\n")
        self.assertEqual(zarrcat(store, "--list", "a/")[1], "a/c/0 3\n")

    def test_missing_strict_v2(self):
        self.v2("m", {"0": bytes(8)})
        self.assertEqual(failure(self.dir, "m", "--strict"),
                         f'array "m" chunk 1 in {self.dir}: is missing (no key "m/1"), and '
                         f'missing chunks are not read as the fill value in this checkpoint '
                         f'[zarr-missing]')


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--zarrcat", required=True)
    p.add_argument("--fixtures", required=True)
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=1)


if __name__ == "__main__":
    main()
