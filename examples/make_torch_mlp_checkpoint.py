#!/usr/bin/python3
"""make_torch_mlp_checkpoint.py: write the state dict of a small PyTorch MLP,
as `safetensors.torch.save_file(model.state_dict(), OUT)` would, using NumPy
only.

usage: make_torch_mlp_checkpoint.py OUT.safetensors

The model (PyTorch): fc1 = nn.Linear(5, 6) -> relu -> fc2 = nn.Linear(6, 3).
nn.Linear stores weight as [out_features, in_features] and computes
y = x @ weight.T + bias; the values are drawn as its default initialization
draws them (uniform in +-1/sqrt(in_features), weight and bias alike). The
same seed always gives the same bytes.
"""

import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import stnp  # noqa: E402

# module -> (in_features, out_features)
LAYERS = {"fc1": (5, 6), "fc2": (6, 3)}


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: %s OUT.safetensors\n" % argv[0])
        return 2
    rng = np.random.default_rng(0)
    tensors = {}
    for module, (fan_in, fan_out) in LAYERS.items():
        bound = 1.0 / np.sqrt(fan_in)
        weight = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
        bias = rng.uniform(-bound, bound, fan_out).astype(np.float32)
        tensors[module + ".weight"] = ("F32", weight)
        tensors[module + ".bias"] = ("F32", bias)
    stnp.save(argv[1], tensors, order="reference")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
