#!/usr/bin/python3
"""verify_cnn_normalize.py: check, with NumPy alone, what
`surg run examples/cnn_normalize.surg IN OUT` wrote.

usage: verify_cnn_normalize.py IN.safetensors OUT.safetensors
       verify_cnn_normalize.py IN.msgpack OUT.msgpack

params/Dense_1/kernel must be the input kernel divided by its L2 norm
(computed here in float64, so the f32 result may differ by rounding: within
2 ulp); every other tensor — the rest of the parameters, the Adam moments,
the step count — must be byte for byte the input's. Flax msgpack files are
read with python3-msgpack as flax.serialization.msgpack_restore reads them;
there the tree must also be the input's: every map's keys in the same order,
the values that are not arrays (the step, the empty state) the same.
"""

import os
import sys

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import stnp  # noqa: E402

KERNEL = "params/Dense_1/kernel"
DTYPES = {"float32": "F32", "int32": "I32"}


def load_msgpack(path):
    """({name: (dtype, array)}, the tree with every array replaced by None)."""
    import msgpack

    def hook(code, data):
        if code != 1:
            return msgpack.ExtType(code, data)
        shape, name, buf = msgpack.unpackb(data)
        return (DTYPES[name], np.frombuffer(buf, np.dtype(name)).reshape(shape))

    with open(path, "rb") as f:
        tree = msgpack.unpackb(f.read(), ext_hook=hook)
    flat = {}

    def walk(x, prefix):
        if isinstance(x, dict):
            return {k: walk(v, prefix + k + "/") for k, v in x.items()}
        if isinstance(x, tuple):
            flat[prefix[:-1]] = x
            return None
        return x
    return flat, walk(tree, "")


def load(path):
    if path.endswith(".msgpack"):
        return load_msgpack(path)
    return stnp.load(path)[0], None


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: %s IN.safetensors OUT.safetensors\n" % argv[0])
        return 2
    before, tree_before = load(argv[1])
    after, tree_after = load(argv[2])

    def keys(x):
        return [(k, keys(v)) for k, v in x.items()] if isinstance(x, dict) else x
    if keys(tree_before) != keys(tree_after):
        print("the tree differs: %r\n  became %r" % (keys(tree_before), keys(tree_after)))
        return 1
    if sorted(before) != sorted(after):
        print("names differ: %s" % sorted(set(before) ^ set(after)))
        return 1
    x = before[KERNEL][1].astype(np.float64)
    want = (x / np.sqrt(np.sum(x * x))).astype(np.float32)
    got = after[KERNEL][1]
    ulps = np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32).astype(np.int64))
    if got.shape != want.shape or ulps.max() > 2:
        print("%s: off by up to %d ulp" % (KERNEL, ulps.max()))
        return 1
    same = [n for n in before if n != KERNEL and
            before[n][0] == after[n][0] and before[n][1].tobytes() == after[n][1].tobytes()]
    if len(same) != len(before) - 1:
        print("changed: %s" % sorted(set(before) - set(same) - {KERNEL}))
        return 1
    print("ok: %s is x / norm(x) (max %d ulp from NumPy, norm now %.6f); "
          "the other %d tensors are unchanged, byte for byte"
          % (KERNEL, ulps.max(), float(np.sqrt(np.sum(got.astype(np.float64) ** 2))), len(same)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
