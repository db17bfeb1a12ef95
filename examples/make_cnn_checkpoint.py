#!/usr/bin/python3
"""make_cnn_checkpoint.py: write the CNN of Flax's model-surgery guide, with
its Optax Adam state, as a safetensors checkpoint (NumPy only) or, for an OUT
named *.msgpack, as Flax's msgpack of a TrainState (with python3-msgpack).

usage: make_cnn_checkpoint.py OUT.safetensors
       make_cnn_checkpoint.py OUT.msgpack

The model (Flax Linen): Conv(32, 3x3) -> relu -> avg_pool -> Conv(64, 3x3) ->
relu -> avg_pool -> flatten (7*7*64 = 3136) -> Dense(256) -> relu -> Dense(10),
on 28x28x1 images. Names are Flax's flattened paths joined with '/':
params/<module>/<kernel|bias>, and the Adam state opt_state/0/{count,mu,nu}/...
as flax.traverse_util flattens optax's (ScaleByAdamState, EmptyState) tuple.
The same seed always gives the same bytes.

The .msgpack is what flax.serialization.to_bytes(state) writes for the
TrainState {"step": 100, "params": ..., "opt_state": (ScaleByAdamState(count,
mu, nu), EmptyState())}: maps in the order to_state_dict gives them (step,
params, opt_state), each module's kernel before its bias as Linen creates
them, while Optax's mu and nu, rebuilt by jax.tree_util, have their keys
sorted (bias, kernel); every array ext 1 of msgpack [shape, dtype name, C-order
bytes]; step a plain int; the EmptyState an empty map.
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


def nest(flat, names):
    """{"a/b": x} as {"a": {"b": x}}, the keys in the order of `names`."""
    out = {}
    for name in names:
        node = out
        *maps, leaf = name.split("/")
        for m in maps:
            node = node.setdefault(m, {})
        node[leaf] = flat[name]
    return out


def ndarray(a):
    """Flax's msgpack ext 1 of a NumPy array."""
    import msgpack
    return msgpack.ExtType(1, msgpack.packb((list(a.shape), a.dtype.name, a.tobytes("C")),
                                            use_bin_type=True))


def write_msgpack(path, params, state):
    import msgpack
    created = ["%s/%s" % (m, leaf) for m in LAYERS for leaf in ("kernel", "bias")]
    jax_sorted = sorted(created)  # tree_util rebuilds dicts with their keys sorted
    arrays = {n: ndarray(p) for n, p in params.items()}
    slot = {k: {n: ndarray(state["opt_state/0/%s/%s" % (k, n)][1]) for n in params}
            for k in ("mu", "nu")}
    tree = {"step": 100,
            "params": nest(arrays, created),
            "opt_state": {"0": {"count": ndarray(state["opt_state/0/count"][1]),
                                "mu": nest(slot["mu"], jax_sorted),
                                "nu": nest(slot["nu"], jax_sorted)},
                          "1": {}}}
    with open(path, "wb") as f:
        f.write(msgpack.packb(tree, use_bin_type=True))


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: %s OUT.safetensors|OUT.msgpack\n" % argv[0])
        return 2
    rng = np.random.default_rng(0)
    params = init_params(rng)
    state = adam_state(rng, params)
    if argv[1].endswith(".msgpack"):
        write_msgpack(argv[1], params, state)
        return 0
    tensors = {"params/" + name: ("F32", p) for name, p in params.items()}
    tensors.update(state)
    stnp.save(argv[1], tensors, order="reference")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
