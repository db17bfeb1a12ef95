#!/usr/bin/python3
"""verify_orbax_mlp_rename.py: check, with NumPy (and Python's zlib) alone,
what `surg run examples/mlp_rename.surg IN_DIR OUT` wrote from the Orbax
checkpoint of make_orbax_mlp_checkpoint.py.

usage: verify_orbax_mlp_rename.py IN_DIR OUT.safetensors

The input is read here as Orbax's files say: the tree from _METADATA, each
array from its zarr v2 directory (.zarray, one chunk, zlib or raw). The
output must hold every array under its new name (linear1 -> layer1,
linear2 -> layer2, the Adam moments with their parameters, the step count
where it was), byte for byte, and ModifiedTwoLayerMLP must compute what
TwoLayerMLP did.
"""

import json
import os
import sys
import zlib

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import stnp  # noqa: E402


def read_orbax(d):
    """{name: array} of the arrays of an Orbax per-array checkpoint."""
    with open(os.path.join(d, "_METADATA")) as f:
        tree = json.load(f)["tree_metadata"]
    out = {}
    for leaf in tree.values():
        if leaf["value_metadata"]["value_type"] != "np.ndarray":
            continue
        keys = [k["key"] for k in leaf["key_metadata"]]
        a = os.path.join(d, ".".join(keys))
        with open(os.path.join(a, ".zarray")) as f:
            z = json.load(f)
        chunk = ".".join("0" for _ in z["shape"]) or "0"
        with open(os.path.join(a, chunk), "rb") as f:
            data = f.read()
        if z["compressor"]:
            assert z["compressor"]["id"] == "zlib"
            data = zlib.decompress(data)
        out["/".join(keys)] = np.frombuffer(data, z["dtype"]).reshape(z["shape"])
    return out


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: %s IN_DIR OUT.safetensors\n" % argv[0])
        return 2
    before = read_orbax(argv[1])
    after = {k: a for k, (_, a) in stnp.load(argv[2])[0].items()}
    renamed = {k.replace("linear", "layer"): a for k, a in before.items()}
    if sorted(renamed) != sorted(after):
        print("names differ: %s" % sorted(set(renamed) ^ set(after)))
        return 1
    for name, a in renamed.items():
        if after[name].dtype != a.dtype or after[name].shape != a.shape or \
                after[name].tobytes() != a.tobytes():
            print("%s: not the input's bytes" % name)
            return 1
    x = np.ones((3, 4), np.float32)

    def forward(t, l1, l2):
        h = x @ t["params/%s/kernel" % l1] + t["params/%s/bias" % l1]
        return h @ t["params/%s/kernel" % l2] + t["params/%s/bias" % l2]

    if forward(after, "layer1", "layer2").tobytes() != forward(before, "linear1", "linear2").tobytes():
        print("ModifiedTwoLayerMLP does not compute what TwoLayerMLP did")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
