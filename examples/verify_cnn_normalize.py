#!/usr/bin/python3
"""verify_cnn_normalize.py: check, with NumPy alone, what
`surg run examples/cnn_normalize.surg IN OUT` wrote.

usage: verify_cnn_normalize.py IN.safetensors OUT.safetensors

params/Dense_1/kernel must be the input kernel divided by its L2 norm
(computed here in float64, so the f32 result may differ by rounding: within
2 ulp); every other tensor — the rest of the parameters, the Adam moments,
the step count — must be byte for byte the input's.
"""

import os
import sys

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import stnp  # noqa: E402

KERNEL = "params/Dense_1/kernel"


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: %s IN.safetensors OUT.safetensors\n" % argv[0])
        return 2
    before, _, _ = stnp.load(argv[1])
    after, _, _ = stnp.load(argv[2])
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
