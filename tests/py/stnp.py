"""stnp.py: an independent NumPy reader and writer for safetensors, used by the
tests as a reference to check surg's own reader and writer against.

Written from the format's rules alone:
  u64 little-endian N | N bytes of UTF-8 JSON header | data region
The header maps each tensor name to {"dtype", "shape", "data_offsets"}, the
offsets relative to the data region, tiling it from 0 without gap or overlap;
an optional "__metadata__" is a string -> string map.

save(path, tensors, metadata=None, order="reference"|"given", add_format=True)
load(path) -> (tensors, metadata, raw_header_bytes)
load_raw(path) -> (dict name -> (dtype, shape, bytes), metadata, raw_header_bytes)
"""

import json
import math
import struct

import numpy as np

# dtype name -> (NumPy dtype or None for "raw bytes", size in bits)
DTYPES = {
    "BOOL": ("?", 8),
    "U8": ("u1", 8),
    "I8": ("i1", 8),
    "I16": ("<i2", 16),
    "U16": ("<u2", 16),
    "I32": ("<i4", 32),
    "U32": ("<u4", 32),
    "I64": ("<i8", 64),
    "U64": ("<u8", 64),
    "F16": ("<f2", 16),
    "BF16": ("<u2", 16),  # carried as bit patterns
    "F32": ("<f4", 32),
    "F64": ("<f8", 64),
    "C64": ("<c8", 64),
    "F8_E4M3": ("u1", 8),
    "F8_E5M2": ("u1", 8),
    "F8_E8M0": ("u1", 8),
    "F8_E4M3FNUZ": ("u1", 8),
    "F8_E5M2FNUZ": ("u1", 8),
    # Sub-byte types: loaded as a flat uint8 array of the raw bytes.
    "F4": (None, 4),
    "F6_E2M3": (None, 6),
    "F6_E3M2": (None, 6),
}

# The reference writer's "alignment order", lowest first; files list tensors by
# this rank descending (U64 first, BOOL last), then by name.
ALIGNMENT_ORDER = [
    "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3",
    "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16",
    "I32", "U32", "F32", "C64", "F64", "I64", "U64",
]
_RANK = {name: i for i, name in enumerate(ALIGNMENT_ORDER)}


class FormatError(ValueError):
    pass


def nbytes_of(dtype, shape):
    """Byte size of a tensor of this dtype and shape."""
    if dtype not in DTYPES:
        raise FormatError("unknown dtype %r" % (dtype,))
    bits = DTYPES[dtype][1] * math.prod(shape)
    if bits % 8:
        raise FormatError("%s%r is not a whole number of bytes" % (dtype, list(shape)))
    return bits // 8


def np_dtype(dtype):
    npd = DTYPES[dtype][0]
    return np.dtype(npd if npd is not None else "u1")


def reference_key(name, dtype):
    """Sort key of the reference order (use with sorted(); ascending)."""
    return (-_RANK[dtype], name.encode("utf-8"))


def _entry(name, value):
    """(dtype, shape, bytes) for one tensors[name] = (dtype, array[, shape])."""
    if len(value) == 2:
        dtype, arr = value
        shape = None
    else:
        dtype, arr, shape = value
    if dtype not in DTYPES:
        raise FormatError("%s: unknown dtype %r" % (name, dtype))
    arr = np.asarray(arr)
    npd = DTYPES[dtype][0]
    if npd is None:
        if shape is None:
            raise FormatError("%s: %s needs an explicit shape" % (name, dtype))
        data = np.ascontiguousarray(arr, dtype="u1").tobytes()
    else:
        want = np.dtype(npd)
        if arr.dtype.itemsize != want.itemsize or arr.dtype.kind != want.kind:
            raise FormatError("%s: array of %s given for %s" % (name, arr.dtype, dtype))
        data = np.ascontiguousarray(arr).astype(want, copy=False).tobytes()
        if shape is None:
            shape = arr.shape
    shape = [int(d) for d in shape]
    if len(data) != nbytes_of(dtype, shape):
        raise FormatError("%s: %d bytes of data for %s%r" % (name, len(data), dtype, shape))
    return dtype, shape, data


def header_bytes(entries, metadata=None, add_format=True, sort_metadata=True):
    """The padded header for [(name, dtype, shape, nbytes)] in file order."""
    meta = dict(metadata) if metadata else {}
    if add_format and "format" not in meta:
        meta["format"] = "pt"
    parts = []
    if meta:
        for k, v in meta.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise FormatError("metadata must map strings to strings")
        items = list(meta.items())
        if sort_metadata:
            items.sort(key=lambda kv: kv[0].encode("utf-8"))
        parts.append(_js("__metadata__") + ":{" +
                     ",".join(_js(k) + ":" + _js(v) for k, v in items) + "}")
    offset = 0
    for name, dtype, shape, size in entries:
        parts.append('%s:{"dtype":%s,"shape":[%s],"data_offsets":[%d,%d]}' % (
            _js(name), _js(dtype), ",".join(str(d) for d in shape), offset, offset + size))
        offset += size
    text = ("{" + ",".join(parts) + "}").encode("utf-8")
    return text + b" " * (-len(text) % 8)


def _js(s):
    return json.dumps(s, ensure_ascii=False)


def save(path, tensors, metadata=None, order="reference", add_format=True):
    """Write tensors {name: (dtype, ndarray)} (or (dtype, raw_u8, shape) for
    sub-byte dtypes) as a safetensors file; return the bytes written.

    order="reference" sorts tensors (and metadata keys) as the reference
    writer does; order="given" keeps both dicts' order, to make inputs that
    are valid but not canonical. add_format adds "format": "pt" to the
    metadata when it has no "format" key, as the reference writers do."""
    rows = []
    for name, value in tensors.items():
        if name == "__metadata__":
            raise FormatError("a tensor may not be named __metadata__")
        dtype, shape, data = _entry(name, value)
        rows.append((name, dtype, shape, data))
    if order == "reference":
        rows.sort(key=lambda r: reference_key(r[0], r[1]))
    elif order != "given":
        raise ValueError("order must be 'reference' or 'given'")
    header = header_bytes([(n, d, s, len(b)) for n, d, s, b in rows], metadata, add_format,
                          sort_metadata=(order == "reference"))
    blob = struct.pack("<Q", len(header)) + header + b"".join(r[3] for r in rows)
    with open(path, "wb") as f:
        f.write(blob)
    return blob


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise FormatError("duplicate key %r in header" % (k,))
        out[k] = v
    return out


def _is_uint(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def parse(blob, where="<bytes>"):
    """Validate a whole file's bytes; return (entries, metadata, raw_header, data)
    with entries a list of (name, dtype, shape, begin, end) in header order."""
    if len(blob) < 8:
        raise FormatError("%s: shorter than the 8-byte header length" % where)
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise FormatError("%s: header length %d past the end of the file" % (where, n))
    raw = blob[8:8 + n]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError("%s: header is not UTF-8: %s" % (where, e))
    if not text.startswith("{"):
        raise FormatError("%s: header does not start with '{'" % where)
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise FormatError("%s: header is not JSON: %s" % (where, e))
    except RecursionError:
        raise FormatError("%s: header nests too deeply" % where)
    if not isinstance(header, dict):
        raise FormatError("%s: header is not an object" % where)
    data = blob[8 + n:]
    metadata = header.pop("__metadata__", None)
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise FormatError("%s: __metadata__ is not a string map" % where)
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise FormatError("%s: %s: entry needs exactly dtype, shape, data_offsets" % (where, name))
        dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPES:
            raise FormatError("%s: %s: unknown dtype %r" % (where, name, dtype))
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            raise FormatError("%s: %s: bad shape %r" % (where, name, shape))
        if (not isinstance(offs, list) or len(offs) != 2 or not all(_is_uint(o) for o in offs)
                or offs[0] > offs[1]):
            raise FormatError("%s: %s: bad data_offsets %r" % (where, name, offs))
        if offs[1] - offs[0] != nbytes_of(dtype, shape):
            raise FormatError("%s: %s: %d bytes for %s%r" % (
                where, name, offs[1] - offs[0], dtype, shape))
        entries.append((name, dtype, shape, offs[0], offs[1]))
    pos = 0
    for name, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin != pos:
            raise FormatError("%s: %s: begins at %d, expected %d (gap or overlap)" % (
                where, name, begin, pos))
        pos = end
    if pos != len(data):
        raise FormatError("%s: tensors cover %d bytes, the data region has %d" % (
            where, pos, len(data)))
    return entries, metadata, raw, data


def load_raw(path):
    """{name: (dtype, shape, bytes)} in header order, metadata (or None), raw header."""
    with open(path, "rb") as f:
        blob = f.read()
    entries, metadata, raw, data = parse(blob, path)
    out = {name: (dtype, shape, data[b:e]) for name, dtype, shape, b, e in entries}
    return out, metadata, raw


def load(path):
    """{name: (dtype, ndarray)} in header order, metadata (or None), raw header."""
    raw_tensors, metadata, raw = load_raw(path)
    out = {}
    for name, (dtype, shape, data) in raw_tensors.items():
        arr = np.frombuffer(data, dtype=np_dtype(dtype))
        if DTYPES[dtype][0] is not None:
            arr = arr.reshape(shape)
        out[name] = (dtype, arr)
    return out, metadata, raw
