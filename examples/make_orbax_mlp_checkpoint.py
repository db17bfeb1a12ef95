#!/usr/bin/python3
"""make_orbax_mlp_checkpoint.py: write the TwoLayerMLP of Flax NNX's
model-surgery guide, with its Optax Adam state, as an Orbax checkpoint
directory, using NumPy (and Python's zlib) only.

usage: make_orbax_mlp_checkpoint.py OUT_DIR

The tensors are those of make_mlp_checkpoint.py (same seed, same values).
The layout is what Orbax's PyTreeCheckpointer writes with use_ocdbt=False:
a directory per array, named by its path joined with "." (params.linear1.kernel/),
holding a zarr v2 `.zarray` and one chunk `0` (or `0.0`), compressed with
zlib for the kernels and stored raw for the rest; `_METADATA` describing
the tree as Orbax does (json.dumps of tree_metadata: each leaf's key path
with its key types, value_type np.ndarray); and `_CHECKPOINT_METADATA`.
The train state's tree is {params, opt_state: (ScaleByAdamState(count, mu,
nu), EmptyState())}: opt_state/0 is a sequence index (key_type 1), the
empty state opt_state/1 an empty NamedTuple leaf with no data.
"""

import json
import os
import sys
import zlib

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_cnn_checkpoint import adam_state  # noqa: E402  (the same Optax layout)
from make_mlp_checkpoint import init_params  # noqa: E402  (the same model)

ZARR_DTYPE = {"float32": "<f4", "int32": "<i4"}


def key_type(key):
    """Orbax's key types: 1 a sequence index (opt_state's tuple), 2 a dict
    key or a field."""
    return 1 if key.isdigit() else 2


def write_array(out, name, a):
    """One zarr v2 directory as TensorStore writes it for Orbax: chunks =
    shape (one chunk), C order."""
    param = name.replace("/", ".")
    d = os.path.join(out, param)
    os.mkdir(d)
    compressed = name.endswith("/kernel")
    zarray = {"chunks": list(a.shape), "compressor": {"id": "zlib", "level": 1}
              if compressed else None, "dimension_separator": ".",
              "dtype": ZARR_DTYPE[a.dtype.name], "fill_value": None, "filters": None,
              "order": "C", "shape": list(a.shape), "zarr_format": 2}
    with open(os.path.join(d, ".zarray"), "w") as f:
        f.write(json.dumps(zarray, separators=(",", ":"), sort_keys=True))
    data = np.ascontiguousarray(a).tobytes()
    chunk = ".".join("0" for _ in a.shape) or "0"
    with open(os.path.join(d, chunk), "wb") as f:
        f.write(zlib.compress(data, 1) if compressed else data)


def entry(name, value_type, skip, shape=None):
    keys = name.split("/")
    value = {"value_type": value_type, "skip_deserialize": skip}
    if shape is not None:
        value["write_shape"] = list(shape)
    return str(tuple(keys)), {
        "key_metadata": [{"key": k, "key_type": key_type(k)} for k in keys],
        "value_metadata": value}


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: %s OUT_DIR\n" % argv[0])
        return 2
    out = argv[1]
    os.mkdir(out)
    rng = np.random.default_rng(0)
    params = init_params(rng)
    tensors = {"params/" + name: p for name, p in params.items()}
    tensors.update({name: a for name, (_, a) in adam_state(rng, params).items()})
    tree = {}
    for name in sorted(tensors):
        write_array(out, name, tensors[name])
        k, v = entry(name, "np.ndarray", False, tensors[name].shape)
        tree[k] = v
    k, v = entry("opt_state/1", "NamedTuple", True)
    tree[k] = v
    with open(os.path.join(out, "_METADATA"), "w") as f:
        f.write(json.dumps({"tree_metadata": tree, "use_ocdbt": False, "use_zarr3": False,
                            "store_array_data_equal_to_fill_value": True,
                            "custom_metadata": None}))
    with open(os.path.join(out, "_CHECKPOINT_METADATA"), "w") as f:
        f.write(json.dumps({"item_handlers": "orbax.checkpoint._src.handlers."
                            "pytree_checkpoint_handler.PyTreeCheckpointHandler",
                            "metrics": {}, "performance_metrics": {},
                            "init_timestamp_nsecs": 0, "commit_timestamp_nsecs": 0,
                            "custom_metadata": {}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
