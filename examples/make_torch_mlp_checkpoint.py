#!/usr/bin/python3
"""make_torch_mlp_checkpoint.py: write the state dict of a small PyTorch MLP,
as `safetensors.torch.save_file(model.state_dict(), OUT)` would, using NumPy
only.

usage: make_torch_mlp_checkpoint.py [--adam] OUT.safetensors

The model (PyTorch): fc1 = nn.Linear(5, 6) -> relu -> fc2 = nn.Linear(6, 3).
nn.Linear stores weight as [out_features, in_features] and computes
y = x @ weight.T + bias; the values are drawn as its default initialization
draws them (uniform in +-1/sqrt(in_features), weight and bias alike).

--adam adds the state of torch.optim.Adam after 100 steps, flattened as
`optimizer.state_dict()["state"]` is: optimizer.state.<i>.{exp_avg,
exp_avg_sq,step} for the i-th of model.parameters() (fc1.weight, fc1.bias,
fc2.weight, fc2.bias), each moment of its parameter's shape and `step` a
float32 scalar, as a training checkpoint holds it. The same seed always
gives the same bytes.
"""

import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import stnp  # noqa: E402

# module -> (in_features, out_features)
LAYERS = {"fc1": (5, 6), "fc2": (6, 3)}


def adam_state(rng, parameters, step=100):
    """torch.optim.Adam's state: moments as after `step` steps, small exp_avg
    of either sign, non-negative exp_avg_sq."""
    state = {}
    for i, p in enumerate(parameters):
        prefix = "optimizer.state.%d." % i
        state[prefix + "exp_avg"] = ("F32", (rng.standard_normal(p.shape) * 1e-3).astype(np.float32))
        sq = np.square(rng.standard_normal(p.shape) * 1e-3)
        state[prefix + "exp_avg_sq"] = ("F32", sq.astype(np.float32))
        state[prefix + "step"] = ("F32", np.array(step, np.float32))
    return state


def main(argv):
    adam = len(argv) == 3 and argv[1] == "--adam"
    if len(argv) != 2 and not adam:
        sys.stderr.write("usage: %s [--adam] OUT.safetensors\n" % argv[0])
        return 2
    rng = np.random.default_rng(0)
    tensors = {}
    for module, (fan_in, fan_out) in LAYERS.items():
        bound = 1.0 / np.sqrt(fan_in)
        weight = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
        bias = rng.uniform(-bound, bound, fan_out).astype(np.float32)
        tensors[module + ".weight"] = ("F32", weight)
        tensors[module + ".bias"] = ("F32", bias)
    if adam:  # model.parameters() order: the order the layers were made in
        tensors.update(adam_state(rng, [a for _, a in tensors.values()]))
    stnp.save(argv[-1], tensors, order="reference")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
