#!/usr/bin/python3
"""make_mlp_checkpoint.py: write the TwoLayerMLP of Flax NNX's model-surgery
guide, as after some training, with its Optax Adam state, as a safetensors
checkpoint, using NumPy only.

usage: make_mlp_checkpoint.py OUT.safetensors

The model (Flax NNX): linear1 = nnx.Linear(4, 4) -> linear2 = nnx.Linear(4, 4),
no activation in between. Names are the flattened state joined with '/':
params/linear{1,2}/{kernel,bias} (kernel [in, out], so y = x @ kernel + bias),
and the Adam state opt_state/0/{count,mu,nu}/... mirroring the parameters, as
examples/mlp/two_layer_mlp.json describes. The biases are not zero, as they
would be after training, so that a test can tell them apart. The same seed
always gives the same bytes.
"""

import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "py"))
import stnp  # noqa: E402
from make_cnn_checkpoint import adam_state  # noqa: E402  (the same Optax layout)

DIM = 4


def init_params(rng):
    """lecun_normal-like kernels (normal * sqrt(1 / fan_in)), small biases."""
    params = {}
    for module in ("linear1", "linear2"):
        kernel = rng.standard_normal((DIM, DIM)) * np.sqrt(1.0 / DIM)
        params["%s/kernel" % module] = kernel.astype(np.float32)
        params["%s/bias" % module] = (rng.standard_normal(DIM) * 0.1).astype(np.float32)
    return params


def main(argv):
    split = len(argv) == 4 and argv[1] == "--split"
    if len(argv) != 2 and not split:
        sys.stderr.write("usage: %s OUT.safetensors\n"
                         "       %s --split PARAMS.safetensors STATE.safetensors\n"
                         % (argv[0], argv[0]))
        return 2
    rng = np.random.default_rng(0)
    params = init_params(rng)
    tensors = {"params/" + name: ("F32", p) for name, p in params.items()}
    tensors.update(adam_state(rng, params))
    if not split:
        stnp.save(argv[1], tensors, order="reference")
        return 0
    # The same tensors in two files, each without its top-level prefix, as
    # a training loop that saves parameters and optimizer state apart would.
    for path, prefix in ((argv[2], "params/"), (argv[3], "opt_state/")):
        part = {n[len(prefix):]: v for n, v in tensors.items() if n.startswith(prefix)}
        stnp.save(path, part, order="reference")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
