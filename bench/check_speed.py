#!/usr/bin/env python3
"""Speed of `surg check`: a 50-statement recipe over schemas of 100,000 and
200,000 tensors (a mixture-of-experts decoder, as Mixtral names it), median of
several runs, and how time grows with the number of tensors.

usage: bench/check_speed.py --surg build/surg [--runs 5] [--out DIR]"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
PROJ = ["gate_proj", "up_proj", "down_proj"]


def schema(n_tensors):
    """A mixture-of-experts decoder in Hugging Face's names (as Mixtral's),
    96 layers with as many experts as it takes to reach n_tensors."""
    layers = 96
    per_layer = n_tensors // layers
    experts = (per_layer - 7) // 3
    s = {"model.embed_tokens.weight": {"dtype": "BF16", "shape": [32000, 64]},
         "model.norm.weight": {"dtype": "BF16", "shape": [64]},
         "lm_head.weight": {"dtype": "BF16", "shape": [32000, 64]}}
    for i in range(layers):
        p = f"model.layers.{i}"
        for a in ATTENTION:
            s[f"{p}.self_attn.{a}.weight"] = {"dtype": "BF16", "shape": [64, 64]}
        s[f"{p}.input_layernorm.weight"] = {"dtype": "BF16", "shape": [64]}
        s[f"{p}.post_attention_layernorm.weight"] = {"dtype": "BF16", "shape": [64]}
        s[f"{p}.block_sparse_moe.gate.weight"] = {"dtype": "BF16", "shape": [experts, 64]}
        for e in range(experts):
            for w, shape in (("w1", [128, 64]), ("w2", [64, 128]), ("w3", [128, 64])):
                s[f"{p}.block_sparse_moe.experts.{e}.{w}.weight"] = {"dtype": "BF16",
                                                                    "shape": shape}
    return s


def recipe():
    """50 statements of a real migration: Mixtral's per-expert weights to a
    fused-expert layout, norms to f32, LoRA on attention, checks throughout."""
    lines = [
        "seed 0",
        'expect "model.layers.*.self_attn.{q,k,v,o}_proj.weight" : bf16[64, 64]',
        'expect "model.layers.*.block_sparse_moe.experts.*.w{1,3}.weight" : bf16[128, 64]',
        'expect "model.layers.*.block_sparse_moe.experts.*.w2.weight" : bf16[64, 128]',
        'rename "model.layers.*.block_sparse_moe.experts.*.w1.weight" '
        '-> "model.layers.$1.mlp.experts.$2.gate_proj.weight"',
        'rename "model.layers.*.block_sparse_moe.experts.*.w3.weight" '
        '-> "model.layers.$1.mlp.experts.$2.up_proj.weight"',
        'rename "model.layers.*.block_sparse_moe.experts.*.w2.weight" '
        '-> "model.layers.$1.mlp.experts.$2.down_proj.weight"',
        'rename "model.layers.*.block_sparse_moe.gate.weight" -> "model.layers.$1.mlp.router.weight"',
        'stack "model.layers.*.mlp.experts.*.gate_proj.weight" axis 0 '
        '-> "model.layers.$1.mlp.experts.gate_proj"',
        'stack "model.layers.*.mlp.experts.*.up_proj.weight" axis 0 '
        '-> "model.layers.$1.mlp.experts.up_proj"',
        'stack "model.layers.*.mlp.experts.*.down_proj.weight" axis 0 '
        '-> "model.layers.$1.mlp.experts.down_proj"',
        'map "model.layers.*.{input,post_attention}_layernorm.weight" = cast(x, f32)',
        'map "model.norm.weight" = cast(x, f32)',
        'init-lora "model.layers.*.self_attn.{q,v}_proj.weight" rank 8 alpha 16',
        'tie "lm_head.weight" = "model.embed_tokens.weight"',
        'drop optional "model.layers.*.self_attn.rotary_emb.inv_freq"',
        'map "model.embed_tokens.weight" = x / norm(x)',
        'layout torch',
    ]
    for k in range(0, 96, 6):
        lines.append(f'expect "model.layers.{k}.mlp.experts.*_proj" : bf16[*, *, *]')
    for k in range(0, 84, 6):
        lines.append(f'map "model.layers.{k}.mlp.router.weight" = x * 0.5')
    lines.append('keep "model.**"')
    lines.append('expect "model.norm.weight" : f32[64]')
    assert len(lines) == 50, len(lines)
    return "\n".join(lines) + "\n"


def median_time(cmd, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True)
        times.append(time.perf_counter() - t0)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr.decode()}")
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rpath = os.path.join(d, "migrate.surg")
        with open(rpath, "w") as f:
            f.write(recipe())
        results = {}
        for n in (100_000, 200_000):
            spath = os.path.join(d, f"schema{n}.json")
            with open(spath, "w") as f:
                json.dump(schema(n), f)
            results[n] = median_time([args.surg, "check", rpath, "--from", spath], args.runs)
        ratio = results[200_000] / results[100_000]
        print("| tensors | `surg check`, 50 statements (median of %d) |" % args.runs)
        print("| --- | --- |")
        for n, t in results.items():
            print(f"| {n:,} | {t * 1000:.0f} ms |")
        print(f"\n200k / 100k: {ratio:.2f}x (target: under 200 ms at 100k, growth <= 2.3x)")


if __name__ == "__main__":
    main()
