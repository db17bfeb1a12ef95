#!/usr/bin/env python3
"""Speed and memory of `surg run` against the two baselines of issue 6, in
one run so the figures are ratios on the same disk at the same moment:

  copy   `cp IN OUT && sync OUT`: a durable copy, the practical limit (surg
         syncs its output too);
  naive  the usual Python: load every tensor into memory (as
         safetensors.numpy.load_file does: a NumPy array per tensor), edit
         the dict, save everything (as save_file does: one bytes object with
         the header and all data, then a write), plus an fsync so it is as
         durable as the others.

The checkpoint is a llama-shaped stack of f32 layers (>= 512 MiB) written
once into the work directory. Each case is timed `--runs` times (median
reported); outputs are deleted before every run, since replacing a file
costs more than writing a new one. Peak memory is each command's maximum
resident set, measured by bench/peak_rss (built with surg).

The "convert" case reads the same stack saved by torch.save as a Hugging
Face `pytorch_model.bin` (lm_head tied to the embedding, as transformers
ties them) and writes safetensors; its naive way is `torch.load` and the
save above (tensors through `.numpy()`), as conversion scripts do.

The "msgpack" case is a rename in a Flax msgpack checkpoint (~500 MB: a
TrainState-like tree {"step", "params": {"embed", "layers_N": {"attn",
"mlp"}, ...}} of f32 arrays, ext 1 as flax.serialization writes them), beside
a durable copy of that file; its naive way is Flax's: msgpack_restore (the
whole file unpacked into arrays), the dict edited, to_bytes, a write and an
fsync. The "msgpack_open" case opens a 1 GB Flax msgpack with `surg schema`
and reports the bytes read (the command's read calls, /proc/PID/io rchar,
through peak_rss) against the file's size: only the structure is read.

The "lora" case merges a PEFT adapter of rank 16 (adapter_model.safetensors
and adapter_config.json in a directory, r 16, lora_alpha 32, on every
q/k/v/o/gate/up/down projection of the stack: 405 MB of the 642 MiB
computed) into the stack with `merge-lora "lora/" into "base/"`; its naive
way loads both files into NumPy, adds 2 * (B @ A) in f32 to each weight, as
PEFT's merge_and_unload does, and saves. "lora_qv" is the same adapter on
q_proj and v_proj only (64 MB computed, the rest copied).

usage: bench/run_speed.py --surg build/surg [--runs 5] [--dir DIR]
                          [--cases rename,scale,cast,fill,convert,msgpack,msgpack_open,lora,lora_qv]"""
import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.dont_write_bytecode = True

HIDDEN, INTER, VOCAB, LAYERS = 1024, 2816, 32000, 8
FILL_TENSORS, FILL_SHAPE = 8, (4096, 4096)  # 8 x 64 MiB = 512 MiB


def llama_tensors():
    """(name, shape) of the stack, in Hugging Face's names."""
    out = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(LAYERS):
        p = f"model.layers.{i}"
        for a in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out.append((f"{p}.self_attn.{a}.weight", (HIDDEN, HIDDEN)))
        out.append((f"{p}.mlp.gate_proj.weight", (INTER, HIDDEN)))
        out.append((f"{p}.mlp.up_proj.weight", (INTER, HIDDEN)))
        out.append((f"{p}.mlp.down_proj.weight", (HIDDEN, INTER)))
        out.append((f"{p}.input_layernorm.weight", (HIDDEN,)))
        out.append((f"{p}.post_attention_layernorm.weight", (HIDDEN,)))
    out.append(("model.norm.weight", (HIDDEN,)))
    out.append(("lm_head.weight", (VOCAB, HIDDEN)))
    return out


def write_checkpoint(path, tensors, rng):
    """A safetensors file of f32 normal(0, 0.02) values, written tensor by
    tensor so the generator itself stays small."""
    header, offset = {}, 0
    for name, shape in tensors:
        n = int(np.prod(shape)) * 4
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name, shape in tensors:
            f.write((rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)).tobytes())
    os.replace(path + ".tmp", path)


# ---- Flax msgpack ----------------------------------------------------------

MSGPACK_LAYERS = 7  # the embedding and 7 layers: 491 MB


def flax_tensors(layers):
    """(name, shape) of a Flax tree of the stack: params/embed/embedding,
    params/layers_N/attn/{query,key,value,out}/kernel, .../mlp/{gate,up,down}/kernel."""
    out = [("params/embed/embedding", (VOCAB, HIDDEN))]
    for i in range(layers):
        for a in ("query", "key", "value", "out"):
            out.append((f"params/layers_{i}/attn/{a}/kernel", (HIDDEN, HIDDEN)))
        out.append((f"params/layers_{i}/mlp/gate/kernel", (HIDDEN, INTER)))
        out.append((f"params/layers_{i}/mlp/up/kernel", (HIDDEN, INTER)))
        out.append((f"params/layers_{i}/mlp/down/kernel", (INTER, HIDDEN)))
        out.append((f"params/layers_{i}/norm/scale", (HIDDEN,)))
    return out


def write_flax_msgpack(path, tensors, rng):
    """What flax.serialization.to_bytes writes for {"step": 1000, "params":
    ...} of f32 arrays (normal(0, 0.02), or zeros when rng is None), written
    array by array: each map's head, then per array the ext 32 head and
    msgpack [shape, "float32", bin head], then the data."""
    import msgpack
    tree = {"step": 1000}
    for name, shape in tensors:
        node = tree
        *maps, leaf = name.split("/")
        for m in maps:
            node = node.setdefault(m, {})
        node[leaf] = shape

    def head(n):
        return bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)

    with open(path + ".tmp", "wb") as f:
        def put(node):
            f.write(head(len(node)))
            for k, v in node.items():
                f.write(msgpack.packb(k))
                if isinstance(v, dict):
                    put(v)
                elif isinstance(v, int):
                    f.write(msgpack.packb(v))
                else:
                    a = (rng.standard_normal(v, dtype=np.float32) * np.float32(0.02)
                         if rng is not None else np.zeros(v, np.float32))
                    data = a.tobytes()
                    inner = b"\x93" + msgpack.packb(list(v)) + msgpack.packb("float32")
                    inner += b"\xc6" + struct.pack(">I", len(data))
                    f.write(b"\xc9" + struct.pack(">I", len(inner) + len(data)) + b"\x01")
                    f.write(inner)
                    f.write(data)
        put(tree)
    os.replace(path + ".tmp", path)


def naive_msgpack_rename(src, dst):
    """Flax's way: msgpack_restore, edit the dict, to_bytes, write, fsync."""
    import msgpack

    def hook(code, data):
        shape, name, buf = msgpack.unpackb(data)
        return np.frombuffer(buf, np.dtype(name)).reshape(shape).copy()

    def ext(x):
        if isinstance(x, np.ndarray):
            return msgpack.ExtType(1, msgpack.packb((list(x.shape), x.dtype.name, x.tobytes()),
                                                    use_bin_type=True))
        return x
    with open(src, "rb") as f:
        tree = msgpack.unpackb(f.read(), ext_hook=hook)
    for i in range(MSGPACK_LAYERS):
        attn = tree["params"][f"layers_{i}"]["attn"]
        attn["q"] = attn.pop("query")
        del tree["params"][f"layers_{i}"]["norm"]
    whole = msgpack.packb(tree, default=ext, use_bin_type=True)
    with open(dst, "wb") as f:
        f.write(whole)
        f.flush()
        os.fsync(f.fileno())


# ---- the naive approach -------------------------------------------------

DTYPES = {"F32": np.float32, "BF16": np.uint16}


def naive_load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        arr = np.frombuffer(data, dtype=DTYPES[info["dtype"]], count=(e - b) // 4, offset=b)
        out[name] = (info["dtype"], arr.reshape(info["shape"]).copy())
    del data
    return out


def naive_save(path, tensors, metadata=None):
    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        dtype, arr = tensors[name]
        blob = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    whole = struct.pack("<Q", len(raw)) + raw + b"".join(blobs)
    del blobs
    with open(path, "wb") as f:
        f.write(whole)
        f.flush()
        os.fsync(f.fileno())


def to_bf16(a):
    """f32 -> bf16 bits, round to nearest even (NaN kept quiet)."""
    u = a.view(np.uint32)
    rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    nan = np.isnan(a)
    return np.where(nan, (u >> np.uint32(16)) | np.uint32(0x40), rounded).astype(np.uint16)


def write_torch_bin(path, src):
    """The stack of `src` saved by torch.save as pytorch_model.bin, with
    lm_head.weight the embedding itself (one storage, as a tied model saves)."""
    import torch
    t = {k: torch.from_numpy(a) for k, (_, a) in naive_load(src).items()}
    t["lm_head.weight"] = t["model.embed_tokens.weight"]
    torch.save(t, path + ".tmp")
    os.replace(path + ".tmp", path)


def naive_convert(src, dst):
    """torch.load, then every tensor saved as safetensors; the tie kept by
    dropping the shared name, as safetensors' save_model does."""
    import torch
    sd = torch.load(src, map_location="cpu")
    seen, t = set(), {}
    for k, v in sd.items():
        key = (v.storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.stride())
        if key not in seen:
            seen.add(key)
            t[k] = ("F32", v.contiguous().numpy())
    del sd
    naive_save(dst, t, {"format": "pt"})


LORA_R, LORA_ALPHA = 16, 32
LORA_ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def write_adapter(directory, tensors, modules, rng):
    """A PEFT adapter directory: adapter_model.safetensors with
    base_model.model.<module>.lora_A/B.weight, and adapter_config.json."""
    os.makedirs(directory, exist_ok=True)
    pairs = []
    for name, shape in tensors:
        if name.endswith(".weight") and name.split(".")[-2] in modules:
            mod = name[:-len(".weight")]
            pairs.append((f"base_model.model.{mod}.lora_A.weight", (LORA_R, shape[1])))
            pairs.append((f"base_model.model.{mod}.lora_B.weight", (shape[0], LORA_R)))
    write_checkpoint(os.path.join(directory, "adapter_model.safetensors"), pairs, rng)
    with open(os.path.join(directory, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": LORA_R, "lora_alpha": LORA_ALPHA,
                   "target_modules": list(modules), "use_rslora": False,
                   "fan_in_fan_out": False}, f)


def naive_lora(src, adapter_dir, dst):
    """Both files loaded whole; each targeted weight += scaling * (B @ A) in
    f32, as merge_and_unload computes it on a CPU; saved whole."""
    t = naive_load(src)
    ad = naive_load(os.path.join(adapter_dir, "adapter_model.safetensors"))
    scaling = np.float32(LORA_ALPHA / LORA_R)
    for name, (_, a) in ad.items():
        if not name.endswith(".lora_A.weight"):
            continue
        mod = name[len("base_model.model."):-len(".lora_A.weight")]
        b = ad[name.replace("lora_A", "lora_B")][1]
        t[mod + ".weight"] = ("F32", t[mod + ".weight"][1] + (b @ a) * scaling)
    naive_save(dst, t, {"format": "pt"})


def naive(case, src, dst, extra=None):
    if case in ("lora", "lora_qv"):
        return naive_lora(src, extra, dst)
    if case == "convert":
        return naive_convert(src, dst)
    if case == "msgpack":
        return naive_msgpack_rename(src, dst)
    t = naive_load(src)
    meta = None
    if case == "rename":
        for i in range(LAYERS):
            p = f"model.layers.{i}"
            t[f"{p}.self_attn.query.weight"] = t.pop(f"{p}.self_attn.q_proj.weight")
            del t[f"{p}.post_attention_layernorm.weight"]
        del t["lm_head.weight"]  # tied: stored once, as the embedding
        meta = {"lm_head.weight": "model.embed_tokens.weight"}
    elif case == "scale":
        t = {k: (d, a * np.float32(0.5)) for k, (d, a) in t.items()}
    elif case == "cast":
        t = {k: ("BF16", to_bf16(a)) for k, (_, a) in t.items()}
    elif case == "fill":
        rng = np.random.default_rng(0)
        for i in range(FILL_TENSORS):
            t[f"new.{i}.weight"] = ("F32", rng.normal(0, 0.02, FILL_SHAPE).astype(np.float32))
    naive_save(dst, t, meta)


# ---- the cases ----------------------------------------------------------

RECIPES = {
    "rename": "\n".join([
        'rename "model.layers.*.self_attn.q_proj.weight" -> "model.layers.$1.self_attn.query.weight"',
        'drop "model.layers.*.post_attention_layernorm.weight"',
        'tie "lm_head.weight" = "model.embed_tokens.weight"',
    ]),
    "scale": 'map "**" = x * 0.5',
    "cast": 'map "**" = cast(x, bf16)',
    "convert": "",
    "msgpack": "\n".join([
        'rename "params/layers_*/attn/query/kernel" -> "params/layers_$1/attn/q/kernel"',
        'drop "params/layers_*/norm/scale"',
    ]),
    "lora": 'merge-lora "lora/" into "base/"\nrename "base/**" -> "$1"',
    "lora_qv": 'merge-lora "lora/" into "base/"\nrename "base/**" -> "$1"',
    "fill": "\n".join(["seed 0"] + [
        f'fill "new.{i}.weight" : f32[{FILL_SHAPE[0]}, {FILL_SHAPE[1]}] = normal(0, 0.02)'
        for i in range(FILL_TENSORS)]),
}

TITLES = {
    "rename": "rename/drop/tie only",
    "scale": 'map "**" = x * 0.5',
    "cast": 'map "**" = cast(x, bf16)',
    "fill": "fill 512 MiB of normal(0, 0.02)",
    "convert": "pytorch_model.bin -> safetensors",
    "msgpack": "Flax msgpack: rename + drop",
    "lora": "merge-lora r16, all projections",
    "lora_qv": "merge-lora r16, q_proj + v_proj",
}


PEAK = None  # bench/peak_rss.c, built next to surg


IO = {}  # the last command's I/O counters, from peak_rss


def timed(argv):
    """(seconds, peak RSS in MiB) of a command, run under peak_rss."""
    t0 = time.perf_counter()
    proc = subprocess.run([PEAK] + argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    err = proc.stderr.decode(errors="replace").splitlines()
    if proc.returncode != 0 or not err or not err[-1].startswith("peak_rss_kib "):
        sys.exit(f"run_speed: failed: {' '.join(argv)}\n" + "\n".join(err))
    IO.clear()
    for line in err:
        if line.startswith("io_"):
            IO[line.split()[0]] = int(line.split()[1])
    return elapsed, int(err[-1].split()[1]) / 1024


def median_of(runs, argv, out):
    times, rss = [], []
    for _ in range(runs):
        if out and os.path.exists(out):
            os.remove(out)
        subprocess.run(["sync"], check=True)
        t, r = timed(argv)
        times.append(t)
        rss.append(r)
    if out:
        os.remove(out)
    return statistics.median(times), max(rss)


def msgpack_open(args, work):
    """surg schema of a 1 GB Flax msgpack: its time and the bytes it read."""
    path = os.path.join(work, "flax-1g.msgpack")
    if not os.path.exists(path):
        write_flax_msgpack(path, flax_tensors(2 * MSGPACK_LAYERS + 4), None)
    size = os.path.getsize(path)
    n = len(flax_tensors(2 * MSGPACK_LAYERS + 4))
    t, rss = median_of(args.runs, [args.surg, "schema", path], None)
    print(f"{'Flax msgpack: schema of ' + f'{size / 1e9:.2f} GB':34} {t:7.3f}s "
          f"{rss:8.1f} MiB RSS; read {IO.get('io_rchar', 0) / 1e6:.2f} MB "
          f"({IO.get('io_rchar', 0) / size * 100:.3f}% of the file; {n} arrays), "
          f"{IO.get('io_read_bytes', 0) / 1e6:.2f} MB of it from the disk")


def fill_scaling(args, recipe, src, out):
    """Generation speed by thread count: on the disk (capped by it), and into
    memory (/dev/shm, where there is one), which shows the generator."""
    fill_bytes = FILL_TENSORS * FILL_SHAPE[0] * FILL_SHAPE[1] * 4
    places = [("disk", out)]
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        places.append(("memory", os.path.join("/dev/shm", "surg-bench-%d.safetensors" % os.getpid())))
    for where, dst in places:
        rates = {}
        for threads in (1, 2):
            t, _ = median_of(args.runs, [args.surg, "run", "--threads", str(threads), recipe, src,
                                         dst], dst)
            rates[threads] = fill_bytes / t / 1e6
            print(f"  fill to {where}, {threads} thread{'s' if threads > 1 else ' '}: {t:.3f} s, "
                  f"{rates[threads] / threads:5.0f} MB/s per thread")
        print(f"  fill to {where}, 2 threads / 1 thread: {rates[2] / rates[1]:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--surg", required=True)
    ap.add_argument("--peak-rss", help="the peak_rss program (default: next to surg)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", help="work directory (default: a new one under the current directory)")
    ap.add_argument("--cases",
                    default="rename,scale,cast,fill,convert,msgpack,msgpack_open,lora,lora_qv")
    args = ap.parse_args()
    global PEAK
    PEAK = args.peak_rss or os.path.join(os.path.dirname(os.path.abspath(args.surg)), "peak_rss")

    work = args.dir or tempfile.mkdtemp(prefix="surg-bench-", dir=".")
    os.makedirs(work, exist_ok=True)
    big = os.path.join(work, "llama.safetensors")
    small = os.path.join(work, "small.safetensors")
    rng = np.random.default_rng(1)
    if not os.path.exists(big):
        write_checkpoint(big, llama_tensors(), rng)
    if not os.path.exists(small):
        write_checkpoint(small, [("model.norm.weight", (HIDDEN,))], rng)
    torch_bin = os.path.join(work, "pytorch_model.bin")
    if "convert" in args.cases.split(",") and not os.path.exists(torch_bin):
        write_torch_bin(torch_bin, big)
    out = os.path.join(work, "out.safetensors")
    size = os.path.getsize(big)
    cores = os.cpu_count()
    print(f"checkpoint: {len(llama_tensors())} f32 tensors, {size / 2**20:.0f} MiB; "
          f"{cores} cores; median of {args.runs}\n")

    def durable_copy(src):
        t, _ = median_of(args.runs, ["sh", "-c", f'cp "{src}" "{out}" && sync "{out}"'], out)
        print(f"{'durable copy of ' + os.path.basename(src):34} {t:7.3f} s  "
              f"{os.path.getsize(src) / t / 1e6:6.0f} MB/s")
        return t

    copy_t = durable_copy(big)
    # The conversion is measured against a copy of its own input.
    bin_copy_t = durable_copy(torch_bin) if os.path.exists(torch_bin) else None
    flax = os.path.join(work, "flax.msgpack")
    if "msgpack" in args.cases.split(",") and not os.path.exists(flax):
        write_flax_msgpack(flax, flax_tensors(MSGPACK_LAYERS), rng)
    flax_copy_t = durable_copy(flax) if os.path.exists(flax) else None
    print()
    header = f"{'case':34} {'surg':>8} {'x copy':>7} {'RSS MiB':>8} {'naive':>8} {'RSS MiB':>8} {'speedup':>8} {'memory':>7}"
    print(header)
    print("-" * len(header))
    me = os.path.abspath(__file__)
    for case in args.cases.split(","):
        if case == "msgpack_open":
            msgpack_open(args, work)
            continue
        recipe = os.path.join(work, case + ".surg")
        with open(recipe, "w") as f:
            f.write(RECIPES[case] + "\n")
        src = {"fill": small, "convert": torch_bin, "msgpack": flax}.get(case, big)
        dst = os.path.join(work, "out.msgpack") if case == "msgpack" else out
        if case in ("lora", "lora_qv"):
            adapter = os.path.join(work, "adapter-" + case)
            if not os.path.exists(os.path.join(adapter, "adapter_config.json")):
                write_adapter(adapter, llama_tensors(),
                              LORA_ALL if case == "lora" else ("q_proj", "v_proj"), rng)
            argv = [args.surg, "run", recipe, "--in", "base=" + src, "--in", "lora=" + adapter, dst]
            naive_argv = [sys.executable, me, "--naive", case, src, dst, adapter]
        else:
            argv = [args.surg, "run", recipe, src, dst]
            naive_argv = [sys.executable, me, "--naive", case, src, dst]
        st, srss = median_of(args.runs, argv, dst)
        nt, nrss = median_of(args.runs, naive_argv, dst)
        base = {"convert": bin_copy_t, "msgpack": flax_copy_t}.get(case, copy_t)
        print(f"{TITLES[case]:34} {st:7.3f}s {st / base:6.2f}x {srss:8.1f} {nt:7.3f}s "
              f"{nrss:8.0f} {nt / st:7.1f}x {nrss / srss:6.0f}x")
        if case == "fill":
            fill_scaling(args, recipe, src, out)
    if not args.dir:
        shutil.rmtree(work)


if __name__ == "__main__":
    if len(sys.argv) in (5, 6) and sys.argv[1] == "--naive":
        naive(*sys.argv[2:])
    else:
        main()
