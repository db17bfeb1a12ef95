#!/usr/bin/python3
"""make_llama_checkpoint.py: write a tiny llama-shaped Hugging Face checkpoint
(bf16, `model.safetensors` layout and names) whose output head is stored
beside the token embedding, using NumPy only.

usage: make_llama_checkpoint.py OUT.safetensors

LlamaForCausalLM with vocabulary 64, hidden size 16, 2 layers, 4 attention
heads of 4 and 2 key/value heads, MLP size 40: model.embed_tokens.weight
[64, 16], per layer self_attn.{q,k,v,o}_proj.weight, mlp.{gate,up,down}_proj.
weight and the two RMSNorm weights, model.norm.weight, and lm_head.weight
[64, 16] (the head stored separately, with values of its own, as an untied
export leaves it). The same seed always gives the same bytes.
"""

import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import stnp  # noqa: E402

VOCAB, HIDDEN, LAYERS, HEAD_DIM, KV_HEADS, MLP = 64, 16, 2, 4, 2, 40


def bf16(values):
    """float32 -> bf16 bit patterns, rounded to nearest even (no NaNs here)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def shapes():
    """name -> shape, in PyTorch's [out, in] layout."""
    out = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,),
           "lm_head.weight": (VOCAB, HIDDEN)}
    kv = KV_HEADS * HEAD_DIM
    for i in range(LAYERS):
        p = "model.layers.%d." % i
        out.update({
            p + "self_attn.q_proj.weight": (HIDDEN, HIDDEN),
            p + "self_attn.k_proj.weight": (kv, HIDDEN),
            p + "self_attn.v_proj.weight": (kv, HIDDEN),
            p + "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
            p + "mlp.gate_proj.weight": (MLP, HIDDEN),
            p + "mlp.up_proj.weight": (MLP, HIDDEN),
            p + "mlp.down_proj.weight": (HIDDEN, MLP),
            p + "input_layernorm.weight": (HIDDEN,),
            p + "post_attention_layernorm.weight": (HIDDEN,),
        })
    return out


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: %s OUT.safetensors\n" % argv[0])
        return 2
    rng = np.random.default_rng(0)
    tensors = {}
    for name, shape in shapes().items():
        if name.endswith("norm.weight"):
            values = 1.0 + 0.01 * rng.standard_normal(shape)  # RMSNorm scales near 1
        else:
            values = 0.02 * rng.standard_normal(shape)  # initializer_range 0.02
        tensors[name] = ("BF16", bf16(values))
    stnp.save(argv[1], tensors, order="reference")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
