"""_schema.py: abstract states in Python — Schema, what a checkpoint's
header or a schema file holds (names, dtypes, shapes, metadata), and
schema_of, which makes one from a tree of arrays or of their shapes."""

import dataclasses
import json
from collections.abc import Mapping
from typing import Tuple


@dataclasses.dataclass(frozen=True)
class Tensor:
    """A tensor of an abstract state: its safetensors dtype name ("F32") and
    shape. It has .shape and .dtype, so a Schema is itself a tree
    schema_of takes."""
    dtype: str
    shape: Tuple[int, ...]

    def to_dict(self):
        return {"dtype": self.dtype, "shape": list(self.shape)}


class Schema(Mapping):
    """An abstract state: tensor name -> Tensor, in byte order of names, with
    the checkpoint's metadata (`__metadata__`) and its tied names (name ->
    the tensor it is stored as). `name` is what diagnostics call it when it
    is checked against (its file, or "<schema_of>")."""

    def __init__(self, tensors, metadata=None, ties=None, name="<schema>", text=None):
        self._tensors = dict(sorted(tensors.items(), key=lambda kv: kv[0].encode()))
        self.metadata = dict(metadata or {})
        self.ties = dict(ties or {})
        self.name = name
        self._text = text  # the library's schema JSON, when it wrote it

    def __getitem__(self, key):
        return self._tensors[key]

    def __iter__(self):
        return iter(self._tensors)

    def __len__(self):
        return len(self._tensors)

    def __eq__(self, other):
        if isinstance(other, Schema):
            return (self._tensors, self.metadata, self.ties) == \
                (other._tensors, other.metadata, other.ties)
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        inner = ", ".join(f"{k!r}: {v.dtype}{list(v.shape)}" for k, v in self._tensors.items())
        return f"Schema({{{inner}}})"

    def to_dict(self):
        """The schema file's JSON as a dict (docs/formats.md, Schema files).
        Tied names travel as surg records them, in the metadata "surg.ties"."""
        meta = dict(self.metadata)
        if self.ties and "surg.ties" not in meta:
            meta["surg.ties"] = json.dumps(self.ties, separators=(",", ":"))
        out = {"__metadata__": meta} if meta else {}
        out.update((k, v.to_dict()) for k, v in self._tensors.items())
        return out

    def json(self):
        """The schema file's text: what `surg schema --json` prints."""
        if self._text is not None:
            return self._text
        return json.dumps(self.to_dict(), indent=2) + "\n"


# Depth of nesting schema_of follows, as the JSON reader bounds a schema
# file's: a deeper tree is an error, never a deep recursion.
MAX_DEPTH = 128


def dtype_name(dtype):
    """The name of a NumPy, JAX, ml_dtypes or PyTorch dtype as a schema
    takes it: NumPy's (`float32`, `bfloat16`, `float8_e4m3fn`, ...).
    PyTorch's dtypes print as `torch.float32`, and their names after the
    dot are NumPy's."""
    if isinstance(dtype, type):  # a scalar type: numpy.float32
        return dtype.__name__
    name = getattr(dtype, "name", None)
    if not isinstance(name, str):
        name = str(dtype)
    return name[len("torch."):] if name.startswith("torch.") else name


def _shape(path, shape):
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise TypeError(f"schema_of: {path!r}: shape {shape!r} is not a tuple of integers "
                        "(a dimension without a size cannot be checked)") from None
    if any(d < 0 for d in dims):
        raise ValueError(f"schema_of: {path!r}: shape {shape!r} has a negative dimension")
    return dims


def _is_leaf(x):
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, Mapping)


def _children(x, variable_value):
    """(key, child) pairs of a tree node, or None when x is not one."""
    if callable(getattr(x, "to_pure_dict", None)):  # flax.nnx.State
        return list(x.to_pure_dict().items())
    if callable(getattr(x, "flat_state", None)):  # an nnx state that only flattens
        flat = x.flat_state()
        pairs = flat.items() if hasattr(flat, "items") else flat
        return [(tuple(path), leaf) for path, leaf in pairs]
    if isinstance(x, Mapping):
        return list(x.items())
    if isinstance(x, tuple) and hasattr(x, "_fields"):  # a namedtuple: optax's states
        return [(f, getattr(x, f)) for f in x._fields]
    if isinstance(x, (list, tuple)):
        return list(enumerate(x))
    if dataclasses.is_dataclass(x) and not isinstance(x, type):  # flax.struct
        return [(f.name, getattr(x, f.name)) for f in dataclasses.fields(x)
                if f.metadata.get("pytree_node", True)]
    if hasattr(x, "value"):  # a Variable or VariableState of flax.nnx
        return [("value", x.value)] if variable_value else [((), x.value)]
    return None


def _key(path, k, sep):
    """A child's name: its key (a path tuple of flat_state: each segment)
    after the parent's, joined with sep."""
    segs = k if isinstance(k, tuple) else (k,)
    for s in segs:
        if not isinstance(s, (str, int)) or isinstance(s, bool):
            raise TypeError(f"schema_of: {path!r}: key {s!r} is neither a string nor an "
                            "integer: no tensor name can be made of it")
        s = str(s)
        path = f"{path}{sep}{s}" if path else s
    return path


def tensors_of(tree, sep="/", variable_value=False):
    """{name: (dtype name, shape)} of every array-like leaf of a tree,
    walked with an explicit stack."""
    out = {}
    seen = {}  # id -> the container, kept alive so no id is reused
    stack = [("", tree, 0)]
    while stack:
        path, x, depth = stack.pop()
        if _is_leaf(x):
            if path in out:
                raise ValueError(f"schema_of: the name {path!r} is reached twice")
            out[path] = (dtype_name(x.dtype), _shape(path, x.shape))
            continue
        if isinstance(x, Mapping) and ("dtype" in x or "shape" in x) and \
                isinstance(x.get("dtype"), str):  # a schema file's own entry
            if path in out:
                raise ValueError(f"schema_of: the name {path!r} is reached twice")
            out[path] = (x["dtype"], _shape(path, x.get("shape", ())))
            continue
        if x is None or isinstance(x, (bool, int, float, complex, str, bytes)):
            continue  # not a tensor: surg's readers skip these too (a step count, a name)
        kids = _children(x, variable_value)
        if kids is None:
            raise TypeError(f"schema_of: {path or '(the root)'!r}: {type(x).__name__} is "
                            "neither an array (with .shape and .dtype) nor a tree of them")
        if depth >= MAX_DEPTH:
            raise ValueError(f"schema_of: {path!r}: the tree nests deeper than {MAX_DEPTH}")
        if id(x) in seen:
            raise ValueError(f"schema_of: {path or '(the root)'!r}: the same container "
                             "appears twice in the tree (a cycle?)")
        seen[id(x)] = x
        for k, child in reversed(kids):
            stack.append((path if k == () else _key(path, k, sep), child, depth + 1))
    if "" in out:
        raise ValueError("schema_of: an array at the root has no name: give a dict "
                         "{name: array}")
    return out
