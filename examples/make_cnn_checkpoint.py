#!/usr/bin/python3
"""make_cnn_checkpoint.py: write the CNN of Flax's model-surgery guide, with
its Optax Adam state, as a safetensors checkpoint, using NumPy only.

usage: make_cnn_checkpoint.py OUT.safetensors

The model (Flax Linen): Conv(32, 3x3) -> relu -> avg_pool -> Conv(64, 3x3) ->
relu -> avg_pool -> flatten (7*7*64 = 3136) -> Dense(256) -> relu -> Dense(10),
on 28x28x1 images. Names are Flax's flattened paths joined with '/':
params/<module>/<kernel|bias>, and the Adam state opt_state/0/{count,mu,nu}/...
as flax.traverse_util flattens optax's (ScaleByAdamState, EmptyState) tuple.
The same seed always gives the same bytes.
"""

import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import stnp  # noqa: E402

# module -> kernel shape; each bias is the kernel's last dimension.
LAYERS = {
    "Conv_0": (3, 3, 1, 32),
    "Conv_1": (3, 3, 32, 64),
    "Dense_0": (3136, 256),
    "Dense_1": (256, 10),
}


def init_params(rng):
    """lecun_normal-like kernels (normal * sqrt(1 / fan_in)), zero biases."""
    params = {}
    for module, shape in LAYERS.items():
        fan_in = int(np.prod(shape[:-1]))
        kernel = rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)
        params["%s/kernel" % module] = kernel.astype(np.float32)
        params["%s/bias" % module] = np.zeros(shape[-1:], np.float32)
    return params


def adam_state(rng, params, count=100):
    """Moments as after `count` steps: small mu of either sign, non-negative nu."""
    state = {"opt_state/0/count": ("I32", np.array(count, np.int32))}
    for name, p in params.items():
        mu = rng.standard_normal(p.shape) * 1e-3
        nu = np.square(rng.standard_normal(p.shape) * 1e-3)
        state["opt_state/0/mu/" + name] = ("F32", mu.astype(np.float32))
        state["opt_state/0/nu/" + name] = ("F32", nu.astype(np.float32))
    return state


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: %s OUT.safetensors\n" % argv[0])
        return 2
    rng = np.random.default_rng(0)
    params = init_params(rng)
    tensors = {"params/" + name: ("F32", p) for name, p in params.items()}
    tensors.update(adam_state(rng, params))
    stnp.save(argv[1], tensors, order="reference")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
