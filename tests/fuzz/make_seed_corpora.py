#!/usr/bin/python3
"""Write the seed corpora of fuzz_safetensors, fuzz_schema, fuzz_index and
fuzz_npz.

    /usr/bin/python3 tests/fuzz/make_seed_corpora.py tests/fuzz/corpus

Each seed is small (under 4 KiB) and means something: a valid file of one
kind, or a near-valid one that breaks exactly one rule. The output is
deterministic; files named crash-* (regressions) are never touched. The
seeds of fuzz_check (corpus/check/*.surg) are written by hand.
"""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np

# dtype name -> (numpy dtype or None, bits per element)
DTYPES = {
    "BOOL": (np.bool_, 8), "U8": (np.uint8, 8), "I8": (np.int8, 8),
    "I16": (np.int16, 16), "U16": (np.uint16, 16), "I32": (np.int32, 32),
    "U32": (np.uint32, 32), "I64": (np.int64, 64), "U64": (np.uint64, 64),
    "F16": (np.float16, 16), "F32": (np.float32, 32), "F64": (np.float64, 64),
    "BF16": (None, 16), "F8_E5M2": (None, 8), "F8_E4M3": (None, 8),
    "F8_E8M0": (None, 8), "F8_E4M3FNUZ": (None, 8), "F8_E5M2FNUZ": (None, 8),
    "C64": (None, 64), "F4": (None, 4), "F6_E2M3": (None, 6), "F6_E3M2": (None, 6),
}


def nbytes(dtype, shape):
    n = 1
    for d in shape:
        n *= d
    return n * DTYPES[dtype][1] // 8


def tensor_bytes(dtype, shape, seed):
    np_type, _ = DTYPES[dtype]
    n = nbytes(dtype, shape)
    if np_type is None:
        return bytes((seed * 31 + i * 7) & 0xFF for i in range(n))
    count = int(np.prod(shape)) if shape else 1
    a = np.arange(seed, seed + count) % (2 if np_type is np.bool_ else 100)
    return a.astype(np_type).astype(np.dtype(np_type).newbyteorder("<")).tobytes()


def safetensors(tensors, metadata=None, order=None, raw_header=None, pad=True):
    """tensors: list of (name, dtype, shape); laid out in the given order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for k, (name, dtype, shape) in enumerate(order or tensors):
        b = tensor_bytes(dtype, shape, k)
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    text = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":"))
    h = text.encode("utf-8") if isinstance(text, str) else text
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def with_header(header_obj, data):
    h = json.dumps(header_obj, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    s = {}
    s["valid-basic"] = safetensors(
        [("params/Dense_0/kernel", "F32", [2, 3]), ("params/Dense_0/bias", "F32", [3]),
         ("opt_state/0/count", "I32", [])],
        metadata={"format": "flax"})
    s["valid-every-dtype"] = safetensors(
        [(f"t_{d.lower()}", d, [4] if d not in ("F4",) else [2, 2]) for d in DTYPES])
    s["valid-empty-header"] = safetensors([], raw_header="{}")
    s["valid-metadata-only"] = safetensors([], metadata={"format": "pt", "note": "no tensors"})
    s["valid-scalar-and-empty"] = safetensors(
        [("scalar", "F64", []), ("empty", "U8", [0]), ("empty2", "BF16", [3, 0, 2])])
    s["valid-torch-names"] = safetensors(
        [("model.layers.10.mlp.up_proj.weight", "BF16", [4, 2]),
         ("model.layers.2.mlp.up_proj.weight", "BF16", [4, 2]),
         ("lm_head.weight", "F16", [2, 2]), ("model.norm.scales", "F8_E8M0", [3]),
         ("model.mask", "BOOL", [5])],
        metadata={"format": "pt", "total": "5"})
    # Names a writer must escape: quotes, backslash, control characters, UTF-8.
    s["valid-escaped-names"] = safetensors(
        [("a\"b\\c", "U8", [1]), ("tab\there\nnewline", "U8", [1]), ("\u00e9t\u00e9/\u4e2d", "I8", [2]),
         ("\U0001F600.emoji", "U16", [1]), ("\x01\x1f\x7f", "U8", [1])],
        metadata={"k\u00e9y": "v\"al\\ue\n", "\x02": "\u2028"})
    # Valid, but not in the reference writer's layout (small dtypes first).
    s["valid-unsorted-layout"] = safetensors(
        [("b", "U8", [3]), ("a", "F64", [1]), ("c", "I16", [1])])
    # Unpadded header, and an unknown field in an entry (ignored, as the reference does).
    hdr = b'{"x":{"dtype":"I64","shape":[1],"data_offsets":[0,8],"extra":[1,{"y":null}]}}'
    s["valid-unpadded-unknown-field"] = struct.pack("<Q", len(hdr)) + hdr + bytes(range(8))
    s["bad-gap"] = with_header({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                                "b": {"dtype": "U8", "shape": [2], "data_offsets": [3, 5]}}, bytes(5))
    s["bad-overlap"] = with_header({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                                    "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}, bytes(3))
    s["bad-trailing"] = with_header({"a": {"dtype": "U16", "shape": [2], "data_offsets": [0, 4]}}, bytes(6))
    s["bad-size-mismatch"] = with_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, bytes(4))
    dup = (b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
           b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}')
    dup += b" " * (-len(dup) % 8)
    s["bad-duplicate-name"] = struct.pack("<Q", len(dup)) + dup + b"\x01\x02"
    s["bad-overflow-shape"] = with_header(
        {"a": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}}, b"")
    s["bad-partial-byte"] = with_header({"a": {"dtype": "F6_E2M3", "shape": [3], "data_offsets": [0, 2]}}, bytes(2))
    s["bad-metadata-not-string"] = with_header({"__metadata__": {"n": 1}}, b"")
    s["bad-header-past-eof"] = struct.pack("<Q", 1000) + b'{"a":{}}'
    return s


def schema_seeds():
    s = {}
    cnn = {"params/Conv_0/kernel": {"dtype": "F32", "shape": [3, 3, 1, 32]},
           "params/Conv_0/bias": {"dtype": "F32", "shape": [32]},
           "params/Dense_0/kernel": {"dtype": "BF16", "shape": [3136, 256]},
           "opt_state/0/count": {"dtype": "I32", "shape": []}}
    s["valid-cnn.json"] = json.dumps(cnn, indent=1)
    s["valid-metadata.json"] = json.dumps(
        {"__metadata__": {"format": "flax", "lora": "[]"}, **cnn}, indent=2)
    s["valid-every-dtype.json"] = json.dumps(
        {f"t.{d}": {"dtype": d, "shape": [2, 4]} for d in DTYPES})
    s["valid-empty.json"] = "  \n{}"
    s["valid-escapes.json"] = (
        '{"__metadata__": {"k\\u00e9y": "line\\nbreak", "\\ud83d\\ude00": "\\"q\\""},'
        ' "a\\/b\\\\c": {"dtype": "U8", "shape": [1]},'
        ' "\\u0001ctl\\t": {"dtype": "BOOL", "shape": [0]},'
        ' "\u4e2d\u6587": {"dtype": "C64", "shape": [1, 1, 1]}}')
    s["valid-offsets-and-extras.json"] = json.dumps(
        {"x": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4], "note": {"a": [1, 2.5e3, None, True]}}})
    s["valid-rank-64.json"] = json.dumps({"deep": {"dtype": "U8", "shape": [1] * 64}})
    s["bad-rank-65.json"] = json.dumps({"deep": {"dtype": "U8", "shape": [1] * 65}})
    s["bad-duplicate-name.json"] = '{"a": {"dtype": "U8", "shape": [1]}, "a": {"dtype": "U8", "shape": [2]}}'
    s["bad-dtype.json"] = '{"a": {"dtype": "F128", "shape": [1]}}'
    s["bad-dimension.json"] = '{"a": {"dtype": "F32", "shape": [2, -1]}, "b": {"dtype": "F32", "shape": [1.5]}}'
    s["bad-overflow.json"] = '{"a": {"dtype": "U64", "shape": [18446744073709551615, 2]}}'
    s["bad-trailing-comma.json"] = '{"a": {"dtype": "U8", "shape": [1]},}'
    s["bad-nesting.json"] = '{"a": {"dtype": "U8", "shape": [1], "x": ' + "[" * 200 + "]" * 200 + "}}"
    s["bad-lone-surrogate.json"] = '{"\\ud800": {"dtype": "U8", "shape": [1]}}'
    return {k: v.encode("utf-8") for k, v in s.items()}


def index_seeds():
    """Against the shards fuzz_index makes: a (x U8[2], y F32[1]), b (z I16[3]),
    c (no tensors), d (x U8[2], w BOOL[0])."""
    def index(weight_map, total=None, **extra):
        obj = dict(extra)
        if total is not None:
            obj["metadata"] = {"total_size": total}
        obj["weight_map"] = weight_map
        return json.dumps(obj, indent=2, sort_keys=True)
    ab = {"x": "a.safetensors", "y": "a.safetensors", "z": "b.safetensors"}
    s = {
        "valid-ab": index(ab, 12),
        "valid-ab-no-total": index(ab),
        "valid-ab-wrong-total": index(ab, 1000),
        "valid-d": index({"w": "d.safetensors", "x": "d.safetensors"}, 2),
        "valid-bd-extra-keys": json.dumps({"metadata": {"total_size": 8, "format": "pt", "x": [1]},
                                           "weight_map": {"z": "b.safetensors", "x": "d.safetensors",
                                                          "w": "d.safetensors"},
                                           "other": {"k": None}}),
        "bad-duplicate-tensor": index({"x": "a.safetensors", "y": "a.safetensors", "w": "d.safetensors"}),
        "bad-misplaced": index({"x": "a.safetensors", "y": "a.safetensors", "z": "a.safetensors"}),
        "bad-unlisted": index({"x": "a.safetensors"}),
        "bad-missing-in-shard": index({"x": "c.safetensors"}),
        "bad-shard-path": index({"x": "../a.safetensors", "y": "./a.safetensors"}),
        "bad-missing-file": index({"q": "nope.safetensors"}),
        "bad-index-as-shard": index({"x": "model.safetensors.index.json"}),
        "bad-no-weight-map": json.dumps({"metadata": {"total_size": 1}}),
        "bad-duplicate-key": '{"weight_map": {"x": "a.safetensors", "x": "a.safetensors"}}',
        "bad-weight-map-value": '{"weight_map": {"x": 1}}',
    }
    return {k: v.encode("utf-8") for k, v in s.items()}


def npy(a):
    """The .npy NumPy writes for array a (its own byte order and layout)."""
    b = io.BytesIO()
    np.lib.format.write_array(b, a, allow_pickle=False)
    return b.getvalue()


def npz(entries, zip64_end=False, comment=b""):
    """A zip archive of (name, bytes[, options]) entries, written by hand so
    it is the same every time (no clock) and any field can be broken."""
    out, cd = bytearray(), bytearray()
    for e in entries:
        name, data = e[0].encode(), e[1]
        o = e[2] if len(e) > 2 else {}
        method = o.get("method", 0)
        stored = zlib.compressobj(9, zlib.DEFLATED, -15) if method == 8 else None
        body = stored.compress(data) + stored.flush() if stored else data
        crc = o.get("crc", zlib.crc32(data))
        usize = o.get("usize", len(data))
        off = o.get("offset", len(out))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, o.get("flags", 0), method, 0, 0x21,
                           crc, len(body), usize, len(name), 0) + name + body
        cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, o.get("flags", 0), method,
                          0, 0x21, crc, len(body), usize, len(name), 0, 0, 0, 0, 0, off) + name
    n = len(entries)
    end = b""
    if zip64_end:
        z = len(out) + len(cd)
        end += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(cd), len(out))
        end += struct.pack("<IIQI", 0x07064B50, 0, z, 1)
        end += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                           0xFFFFFFFF, len(comment))
    else:
        end += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(cd), len(out), len(comment))
    return bytes(out + cd + end + comment)


def npz_seeds():
    """fuzz_npz writes each seed as an .npz and as a .npy."""
    rng = np.random.default_rng(0)
    f32 = rng.standard_normal((3, 4)).astype(np.float32)
    i16 = np.arange(6, dtype=np.int16).reshape(2, 3)
    every = {name: (np.arange(4) % 2 == 0 if t is np.bool_ else np.arange(4).astype(t))
             for name, (t, _) in DTYPES.items() if t is not None}
    every["C64"] = (np.arange(4) + 1j).astype(np.complex64)
    s = {}
    s["valid-stored"] = npz([("params/Dense_0/kernel.npy", npy(f32)),
                             ("params/Dense_0/bias.npy", npy(np.zeros(4, np.float32)))])
    s["valid-deflated"] = npz([("a.npy", npy(f32), {"method": 8}),
                               ("b/c.npy", npy(i16), {"method": 8})])
    s["valid-fortran"] = npz([("f.npy", npy(np.asfortranarray(f32))),
                              ("g.npy", npy(np.asfortranarray(np.arange(24, dtype=np.int8)
                                                              .reshape(2, 3, 4))), {"method": 8})])
    s["valid-big-endian"] = npz([("be.npy", npy(f32.astype(">f4"))),
                                 ("bef.npy", npy(np.asfortranarray(i16.astype(">i2"))),
                                  {"method": 8}),
                                 ("c.npy", npy(every["C64"].astype(">c8")))])
    s["valid-every-dtype"] = npz([(f"{k}.npy", npy(v)) for k, v in every.items()])
    s["valid-scalar-empty"] = npz([("s.npy", npy(np.float64(2.5))),
                                   ("e.npy", npy(np.zeros((0, 3), np.uint16))),
                                   ("dir/", b""), ("notes.txt", b"not an array")])
    s["valid-zip64-end"] = npz([("x.npy", npy(i16))], zip64_end=True, comment=b"PK\x05\x06")
    s["valid-empty-archive"] = npz([])
    s["valid-npy"] = npy(np.asfortranarray(f32.astype(">f4")))
    text = npy(i16)[10:-i16.nbytes][:-3] + b"\n"  # two spaces fewer: aligned after 12 bytes
    s["valid-npy-v2"] = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text + i16.tobytes()
    s["bad-object"] = npz([("o.npy", npy(i16).replace(b"'<i2'", b"'|O' "))])
    s["bad-magic"] = npz([("m.npy", b"\x93NUMPX" + npy(i16)[6:])])
    s["bad-dict"] = npz([("d.npy", npy(i16).replace(b"'fortran_order': False",
                                                    b"'fortran_order': 0    "))])
    s["bad-size"] = npz([("x.npy", npy(i16)[:-2])])
    s["bad-crc"] = npz([("x.npy", npy(i16.astype(">i2")), {"crc": 1})])
    s["bad-bomb"] = npz([("x.npy", npy(np.zeros(4, np.uint8)) + bytes(2000),
                          {"method": 8, "usize": len(npy(np.zeros(4, np.uint8)))})])
    s["bad-duplicate"] = npz([("x.npy", npy(i16)), ("x.npy", npy(i16))])
    s["bad-overlap"] = npz([("x.npy", npy(i16)), ("y.npy", npy(i16), {"offset": 0})])
    s["bad-encrypted"] = npz([("x.npy", npy(i16), {"flags": 1})])
    s["bad-truncated"] = npz([("x.npy", npy(f32))])[:-30]
    return s


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    for sub, seeds in (("safetensors", safetensors_seeds()), ("schema", schema_seeds()),
                       ("index", index_seeds()), ("npz", npz_seeds())):
        d = os.path.join(root, sub)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            assert len(data) < 4096, name
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
