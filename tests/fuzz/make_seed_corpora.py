#!/usr/bin/python3
"""Write the seed corpora of fuzz_safetensors, fuzz_schema, fuzz_index,
fuzz_npz, fuzz_pt and fuzz_msgpack.

    /usr/bin/python3 tests/fuzz/make_seed_corpora.py tests/fuzz/corpus

Each seed is small (under 4 KiB) and means something: a valid file of one
kind, or a near-valid one that breaks exactly one rule. The output is
deterministic; files named crash-* (regressions) are never touched. The
seeds of fuzz_check (corpus/check/*.surg) are written by hand.
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import types
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
        "valid-ab-interleaved": index({"x": "a.safetensors", "z": "b.safetensors",
                                       "y": "a.safetensors"}),
        "bad-dir-shard": index({"x": "a.safetensors", "y": "e.safetensors"}),
        "bad-fifo-shard": index({"x": "f.safetensors"}),
        # many distinct shard names, each entry a new one (once quadratic)
        "bad-many-shards": json.dumps({"weight_map": {"t%d" % i: "s%d.safetensors" % i
                                                      for i in range(150)}}),
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


# ---- torch.save files, without PyTorch ---------------------------------------
# Python's own pickler, given stand-ins for the few torch names a state dict
# refers to, writes the same opcodes torch.save does (protocol 2, the memo,
# persistent ids for storages).

def torch_standins():
    """{name: object} of stand-in torch globals, registered in sys.modules."""
    mods = {m: types.ModuleType(m) for m in ("torch", "torch._utils", "torch._tensor",
                                             "torch.storage")}
    mods["torch"]._utils = mods["torch._utils"]
    names = {}

    def define(module, name, obj):
        obj.__module__, obj.__qualname__, obj.__name__ = module, name, name
        setattr(mods[module], name, obj)
        names[name] = obj

    for st in ("FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "BoolStorage",
               "ByteStorage", "ShortStorage"):
        define("torch", st, type(st, (), {}))
    define("torch.storage", "UntypedStorage", type("UntypedStorage", (), {}))
    for fn in ("_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter"):
        define("torch._utils", fn, lambda *a: None)
    define("torch._tensor", "_rebuild_from_type_v2", lambda *a: None)
    define("torch", "Tensor", type("Tensor", (), {}))
    for dt in ("uint16", "float8_e4m3fn", "float32"):
        dtype = type("dtype", (), {"__module__": "torch", "__reduce__": lambda self, n=dt: n})()
        setattr(mods["torch"], dt, dtype)
        names[dt] = dtype
    sys.modules.update(mods)
    return names


class Storage:
    def __init__(self, key, type_name, numel, data):
        self.key, self.type_name, self.numel, self.data = key, type_name, numel, data


class Tensor:
    def __init__(self, storage, offset, size, stride, v3_dtype=None, wrap=None):
        self.args = (storage, offset, size, stride, v3_dtype, wrap)

    def __reduce__(self):
        t = TORCH
        storage, offset, size, stride, v3_dtype, wrap = self.args
        args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())
        if v3_dtype:
            return (t["_rebuild_tensor_v3"], args + (t[v3_dtype],))
        if wrap == "parameter":
            return (t["_rebuild_parameter"], (Tensor(*self.args[:4]), True,
                                              collections.OrderedDict()))
        if wrap == "type":
            return (t["_rebuild_from_type_v2"], (t["_rebuild_tensor_v2"], t["Tensor"], args,
                                                 {"note": 1}))
        return (t["_rebuild_tensor_v2"], args)


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", TORCH[obj.type_name], obj.key, "cpu", obj.numel)
        return None


TORCH = None


def torch_pickle(obj, protocol=2):
    """obj pickled as torch.save pickles it."""
    global TORCH
    TORCH = TORCH or torch_standins()
    b = io.BytesIO()
    TorchPickler(b, protocol=protocol).dump(obj)
    return b.getvalue()


def torch_file(obj, storages, prefix="archive", protocol=2, big=False, method=0,
               pickle_bytes=None):
    """A torch.save-shaped zip: prefix/data.pkl, prefix/data/KEY, version."""
    entries = [(f"{prefix}/data.pkl", pickle_bytes or torch_pickle(obj, protocol))]
    entries += [(f"{prefix}/data/{s.key}", s.data, {"method": method}) for s in storages]
    if big:
        entries.append((f"{prefix}/byteorder", b"big"))
    entries.append((f"{prefix}/version", b"3\n"))
    return npz(entries)


def pt_seeds():
    """fuzz_pt reads each seed as a .pt file, and as a data.pkl it puts in an
    archive beside four storages: 0 (f32[6]), 1 (f16[4]), 2 (i64[1]), 3 (8
    bytes); the pickle-* seeds are such pickles."""
    f32 = Storage("0", "FloatStorage", 6, struct.pack("<6f", *range(6)))
    f16 = Storage("1", "HalfStorage", 4, struct.pack("<4e", 1, 2, 3, 4))
    i64 = Storage("2", "LongStorage", 1, struct.pack("<q", 7))
    u8 = Storage("3", "UntypedStorage", 8, bytes(range(8)))
    w = Tensor(f32, 0, (2, 3), (3, 1))
    s = {}
    s["valid-state-dict"] = torch_file(collections.OrderedDict(
        [("fc.weight", w), ("fc.bias", Tensor(f16, 0, (4,), (1,))),
         ("bn.num_batches_tracked", Tensor(i64, 0, (), ()))]), [f32, f16, i64])
    s["valid-views-ties"] = torch_file(
        {"w": w, "same": w, "wt": Tensor(f32, 0, (3, 2), (1, 3)), "row": Tensor(f32, 3, (3,), (1,)),
         "col": Tensor(f32, 1, (2,), (3,)), "expand": Tensor(f16, 0, (3, 4), (0, 1)),
         "empty": Tensor(f16, 2, (0, 5), (5, 1))}, [f32, f16])
    s["valid-nested-optimizer"] = torch_file(
        {"model": {"w": w}, "optimizer": {"state": {0: {"step": Tensor(i64, 0, (), ()),
                                                       "exp_avg": Tensor(f32, 0, (2, 3), (3, 1))}},
                                          "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999),
                                                            "eps": 1e-8, "params": [0],
                                                            "foreach": None, "name": "g",
                                                            "big": 1 << 80, "neg": -5}]},
         "epoch": 3, "blob": b"\x00\x01"}, [f32, i64], prefix="nested")
    s["valid-v3-untyped"] = torch_file(
        {"u": Tensor(u8, 0, (2, 2), (2, 1), v3_dtype="uint16"),
         "f8": Tensor(u8, 1, (3,), (2,), v3_dtype="float8_e4m3fn")}, [u8])
    s["valid-protocol4-param"] = torch_file(
        {"p": Tensor(f32, 0, (2, 3), (3, 1), wrap="parameter"),
         "t": Tensor(f16, 0, (2, 2), (1, 2), wrap="type")}, [f32, f16], protocol=4)
    s["valid-big-endian"] = torch_file(
        {"w": Tensor(Storage("0", "FloatStorage", 6, struct.pack(">6f", *range(6))), 0, (3, 2),
                     (1, 3)),
         "h": Tensor(Storage("1", "HalfStorage", 4, struct.pack(">4e", 1, 2, 3, 4)), 0, (4,), (1,))},
        [Storage("0", "FloatStorage", 6, struct.pack(">6f", *range(6))),
         Storage("1", "HalfStorage", 4, struct.pack(">4e", 1, 2, 3, 4))], big=True)
    s["valid-lone-tensor"] = torch_file(w, [f32])
    good = torch_file({"w": w}, [f32])
    evil = pickle.dumps({"w": 1, "x": types.SimpleNamespace}, protocol=2)
    s["bad-os-system"] = torch_file(None, [f32], pickle_bytes=(
        b"\x80\x02}q\x00X\x01\x00\x00\x00xcos\nsystem\nX\x04\x00\x00\x00echo\x85Rs."))
    s["bad-unknown-class"] = torch_file(None, [], pickle_bytes=evil)
    s["bad-legacy"] = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03."
    s["bad-missing-storage"] = torch_file({"w": w}, [])
    s["bad-view-past-end"] = torch_file({"w": Tensor(f32, 1, (2, 3), (3, 1))}, [f32])
    s["bad-deflated-storage"] = torch_file({"w": w}, [f32], method=8)
    s["bad-truncated-pickle"] = torch_file(None, [f32], pickle_bytes=(
        pickle.dumps({"w": 1}, protocol=2)[:-3]))
    s["bad-no-pickle"] = npz([("archive/data/0", f32.data)])
    s["bad-zip-cut"] = good[:-10]
    s["pickle-state-dict"] = torch_pickle(collections.OrderedDict(
        [("w", w), ("wt", Tensor(f32, 0, (3, 2), (1, 3))), ("same", w),
         ("h", Tensor(f16, 1, (3,), (1,))), ("n", Tensor(i64, 0, (), ()))]))
    s["pickle-protocol4"] = torch_pickle(
        {"p": Tensor(f32, 0, (2, 3), (3, 1), wrap="parameter"),
         "t": Tensor(f16, 0, (2, 2), (1, 2), wrap="type"),
         "u": Tensor(u8, 0, (2, 2), (2, 1), v3_dtype="uint16"),
         "x": [1, 2.5, "s", None, True, (1 << 70, -3)]}, protocol=4)
    extras = {"w": w, "seen": {1, 2}, "frozen": frozenset([3]), "cfg": {1.5: "x", None: 1},
              "raw": b"\xff\x00"}
    s["pickle-training-extras"] = torch_pickle(extras, protocol=4)
    s["pickle-training-extras-2"] = torch_pickle(extras, protocol=2)
    s["pickle-expand-empty"] = torch_pickle(
        [Tensor(f16, 0, (3, 4), (0, 1)), Tensor(f32, 5, (0, 9), (9, 1)),
         Tensor(f32, 1, (2, 2), (1, 2), v3_dtype="float8_e4m3fn")])
    return s


def msgpack_seeds():
    """Flax's msgpack (flax.serialization.to_bytes): ext 1 arrays, ext 3
    scalars, chunked arrays, lists as maps keyed "0", "1", ..., other leaves."""
    import msgpack

    def arr(a, code=1):
        a = np.asarray(a)
        return msgpack.ExtType(code, msgpack.packb((list(a.shape), a.dtype.name,
                                                     a.tobytes("C"))))

    def pack(tree):
        return msgpack.packb(tree, use_bin_type=True)

    rng = np.random.default_rng(0)
    f32 = rng.standard_normal((3, 4)).astype(np.float32)
    i8 = np.arange(10, dtype=np.int8)
    params = {"Dense_0": {"bias": arr(f32[0]), "kernel": arr(f32)}}
    s = {}
    s["valid-train-state"] = pack({
        "opt_state": {"0": {"count": arr(np.array(3, np.int32)), "mu": params, "nu": params},
                      "1": {}},
        "params": params, "step": 7})
    every = {n: arr(np.zeros((2,), n)) for n in
             ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
              "uint64", "float16", "float32", "float64", "complex64"]}
    every["bf16"] = msgpack.ExtType(1, msgpack.packb(([2], "bfloat16", b"\x80?\x00@")))
    every["f8"] = msgpack.ExtType(1, msgpack.packb(([1], "float8_e4m3fn", b"\x38")))
    s["valid-every-dtype"] = pack(every)
    s["valid-scalars"] = pack({"s": arr(np.float64(2.5), 3), "z": arr(np.zeros((0, 3), np.int16)),
                               "leaves": {"n": None, "t": True, "f": 1.5, "s": "x", "b": b"y",
                                          "c": msgpack.ExtType(2, msgpack.packb((1.0, 2.0)))}})
    s["valid-chunked"] = pack({"w": {"__msgpack_chunked_array__": True,
                                     "shape": {"0": 2, "1": 5},
                                     "chunks": {"0": arr(i8[:4]), "1": arr(i8[4:8]),
                                                "2": arr(i8[8:])}}})
    s["valid-empty"] = pack({})
    s["valid-array-container"] = pack({"layers": [arr(i8[:2]), arr(i8[2:5])]})
    s["bad-size"] = pack({"a": msgpack.ExtType(1, msgpack.packb(([3], "float32", b"\0" * 8)))})
    s["bad-dtype"] = pack({"a": msgpack.ExtType(1, msgpack.packb(([1], "str32", b"\0" * 4)))})
    s["bad-duplicate"] = b"\x82\xa1a" + pack(arr(i8)) + b"\xa1a\xc0"
    s["bad-truncated"] = s["valid-train-state"][:-9]
    s["bad-chunks"] = pack({"w": {"__msgpack_chunked_array__": True, "shape": {"0": 9},
                                  "chunks": {"0": arr(i8[:4])}}})
    s["bad-count"] = b"\x81\xa1a\xdf\x7f\xff\xff\xff"
    s["bad-key"] = pack({1: arr(i8)})
    return s


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    for sub, seeds in (("safetensors", safetensors_seeds()), ("schema", schema_seeds()),
                       ("index", index_seeds()), ("npz", npz_seeds()), ("pt", pt_seeds()),
                       ("msgpack", msgpack_seeds())):
        d = os.path.join(root, sub)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            assert len(data) < 4096, name
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
