#!/usr/bin/python3
"""make_torch_llama_checkpoint.py: write a tiny llama as Hugging Face's
`save_pretrained(..., safe_serialization=False)` writes it: the state dict,
saved by PyTorch's own torch.save, as `pytorch_model.bin`. Needs PyTorch
(Debian's python3-torch).

usage: make_torch_llama_checkpoint.py OUT.bin

The shapes and names are those of make_llama_checkpoint.py (vocabulary 64,
hidden size 16, 2 layers, bf16), but with tie_word_embeddings: the head *is*
the embedding, so `lm_head.weight` and `model.embed_tokens.weight` are one
tensor in the state dict and torch.save stores their storage once. The
same seed always gives the same values.
"""

import collections
import os
import sys

import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_llama_checkpoint import shapes  # noqa: E402


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: %s OUT.bin\n" % argv[0])
        return 2
    g = torch.Generator().manual_seed(0)
    state = collections.OrderedDict()
    for name, shape in shapes().items():
        if name == "lm_head.weight":
            continue
        if name.endswith("norm.weight"):
            values = 1.0 + 0.01 * torch.randn(shape, generator=g)  # RMSNorm scales near 1
        else:
            values = 0.02 * torch.randn(shape, generator=g)  # initializer_range 0.02
        state[name] = values.to(torch.bfloat16)
    state["lm_head.weight"] = state["model.embed_tokens.weight"]  # tied
    torch.save(state, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
