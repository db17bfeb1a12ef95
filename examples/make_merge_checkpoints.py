#!/usr/bin/python3
"""make_merge_checkpoints.py: write three checkpoints of one architecture for
the merge recipes (merge_*.surg) -- a base model and two models fine-tuned
from it -- using NumPy only.

usage: make_merge_checkpoints.py OUTDIR [--hidden H] [--intermediate I]
                                        [--vocab V] [--layers L]

Writes OUTDIR/base.safetensors, OUTDIR/ft1.safetensors and
OUTDIR/ft2.safetensors: LlamaForCausalLM's names and [out, in] layout in
float32 (model.embed_tokens.weight [V, H], per layer self_attn.{q,k,v,o}_proj,
mlp.{gate,up,down}_proj and the two RMSNorm weights, model.norm.weight,
lm_head.weight [V, H]). The defaults (H 256, I 512, V 512, 2 layers: 6.4 MB
a file) give tensors of several chunks, so the thread tests mean something.

The base is drawn as an initializer would (std 0.02; RMSNorm scales near 1).
Each fine-tune adds a task vector of its own: small dense noise everywhere,
larger sparse updates on some entries (the two tasks overlap, often with
opposite signs: what TIES's sign election is for), and, in the MLP, changes
as large as the weights themselves, so SLERP's angle between the two
fine-tunes is wide there and narrow elsewhere (its nearly-parallel fallback
is taken). The final RMSNorm weight is left untouched by both: identical
tensors. The same arguments always give the same bytes.
"""

import argparse
import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import stnp  # noqa: E402


def shapes(hidden, intermediate, vocab, layers):
    """name -> shape, in PyTorch's [out, in] layout."""
    out = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,),
           "lm_head.weight": (vocab, hidden)}
    for i in range(layers):
        p = "model.layers.%d." % i
        out.update({
            p + "self_attn.q_proj.weight": (hidden, hidden),
            p + "self_attn.k_proj.weight": (hidden, hidden),
            p + "self_attn.v_proj.weight": (hidden, hidden),
            p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "mlp.gate_proj.weight": (intermediate, hidden),
            p + "mlp.up_proj.weight": (intermediate, hidden),
            p + "mlp.down_proj.weight": (hidden, intermediate),
            p + "input_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
        })
    return out


def task_vector(rng, name, shape, base):
    """A fine-tune's change to one tensor."""
    if name == "model.norm.weight":
        return np.zeros(shape)
    scale = 0.02 if not name.endswith("norm.weight") else 0.01
    delta = 0.05 * scale * rng.standard_normal(shape)          # dense, small
    hot = rng.random(shape) < 0.1                                # sparse, larger
    delta += np.where(hot, scale * rng.standard_normal(shape), 0)
    if ".mlp." in name:
        delta += 0.8 * scale * rng.standard_normal(shape)        # a wide angle
    return delta


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--layers", type=int, default=2)
    a = ap.parse_args(argv[1:])
    os.makedirs(a.outdir, exist_ok=True)
    rng = np.random.default_rng(16)
    models = {"base": {}, "ft1": {}, "ft2": {}}
    for name, shape in shapes(a.hidden, a.intermediate, a.vocab, a.layers).items():
        if name.endswith("norm.weight"):
            base = 1.0 + 0.01 * rng.standard_normal(shape)
        else:
            base = 0.02 * rng.standard_normal(shape)
        models["base"][name] = ("F32", base.astype(np.float32))
        for ft in ("ft1", "ft2"):
            value = base + task_vector(rng, name, shape, base)
            models[ft][name] = ("F32", value.astype(np.float32))
    for model, tensors in models.items():
        stnp.save(os.path.join(a.outdir, model + ".safetensors"), tensors, order="reference")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
