#!/usr/bin/env python3
"""Zero-copy outputs and parallel shard writers (issue 18), in one run so the
figures are ratios on the same disk at the same moment.

share    On an XFS image made with reflinks (`mkfs.xfs -m reflink=1`, 8 GiB,
         sparse, mounted through a loop device: needs root), the llama-shaped
         stack of run_speed.py (f32, 672 MB) is renamed and has a layer
         dropped by
           surg        `surg run` (default `--reflink auto`: its copies
                       share the input's blocks),
           surg-never  `surg run --reflink never` (the layout before this:
                       the reference's, every byte copied),
           cp          `cp --reflink=never IN OUT && sync OUT` (a durable
                       copy: what a copy costs on this disk),
         and, as the floor, `cp --reflink=always` (the whole file cloned).
         Each is timed `--runs` times (median) with its output removed
         before each run; the space each takes is the file system's free
         space before and after (after a sync).
writers  In the work directory's file system (the machine's disk), a sharded
         output of the same stack (`--max-shard-size 100MB`, 7 shards):
         a rename (copies) and a scale (`map "**" = x * 2`, computed), with
         `--writers 1` (one file at a time, synced one after another: the
         way before) against `--writers 2` and `4`, at the same --threads.

usage: bench/run_share.py --surg build/surg [--runs 3] [--dir DIR] [--cases share,writers]"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_speed  # noqa: E402  (the stack and its writer)


def timed(argv, out):
    """Seconds of argv (its output removed first), and the bytes it took."""
    for p in (out,):
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.unlink(p)
    os.sync()
    free0 = free(os.path.dirname(out))
    t0 = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, shell=isinstance(argv, str))
    secs = time.monotonic() - t0
    return secs, free0 - free(os.path.dirname(out))


def free(path):
    os.sync()
    v = os.statvfs(path)
    return v.f_bfree * v.f_frsize


def median(runs, argv, out):
    got = [timed(argv, out) for _ in range(runs)]
    return statistics.median(s for s, _ in got), statistics.median(u for _, u in got)


def mount_xfs(top):
    img, mnt = os.path.join(top, "xfs.img"), os.path.join(top, "mnt")
    os.makedirs(mnt, exist_ok=True)
    with open(img, "wb") as f:
        f.truncate(8 << 30)
    subprocess.run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", img], check=True)
    subprocess.run(["mount", "-o", "loop", img, mnt], check=True)
    return mnt


def share(args, work):
    if os.geteuid() != 0 or not shutil.which("mkfs.xfs"):
        print("share: skipped (needs root and mkfs.xfs to mount an XFS image)")
        return
    mnt = mount_xfs(work)
    try:
        src = os.path.join(mnt, "in.safetensors")
        run_speed.write_checkpoint(src, run_speed.llama_tensors(), np.random.default_rng(0))
        size = os.path.getsize(src)
        print("share: XFS (reflink=1) on a loop device, %.0f MB checkpoint, median of %d"
              % (size / 1e6, args.runs))
        print("%-6s %-28s %9s %10s %8s" % ("case", "how", "seconds", "MB taken", "x surg"))
        recipes = {"rename": 'rename "model.**" -> "base.$1"\n',
                   "drop": 'drop "model.layers.3.**"\n'}
        for case, text in recipes.items():
            recipe = os.path.join(work, case + ".surg")
            with open(recipe, "w") as f:
                f.write(text)
            out = os.path.join(mnt, "out.safetensors")
            rows = [("surg", [args.surg, "run", "-q", recipe, src, out]),
                    ("surg --reflink never", [args.surg, "run", "-q", recipe, src, out,
                                              "--reflink", "never"]),
                    ("cp --reflink=never + sync",
                     "cp --reflink=never '%s' '%s' && sync '%s'" % (src, out, out)),
                    ("cp --reflink=always + sync",
                     "cp --reflink=always '%s' '%s' && sync '%s'" % (src, out, out))]
            base = None
            for how, argv in rows:
                secs, used = median(args.runs, argv, out)
                base = base or secs
                print("%-6s %-28s %9.3f %10.1f %8.1f" % (case, how, secs, used / 1e6, secs / base))
            os.unlink(out)
    finally:
        subprocess.run(["umount", mnt])


def writers(args, work):
    src = os.path.join(work, "in.safetensors")
    if not os.path.exists(src):
        run_speed.write_checkpoint(src, run_speed.llama_tensors(), np.random.default_rng(0))
    threads = os.cpu_count() or 1
    print("writers: %s, %d threads, 100MB shards, median of %d"
          % (os.path.realpath(work), threads, args.runs))
    print("%-7s %-10s %9s %11s" % ("case", "writers", "seconds", "x 1 writer"))
    for case, text in (("rename", 'rename "model.**" -> "base.$1"\n'),
                       ("scale", 'map "**" = x * 2\n')):
        recipe = os.path.join(work, case + ".surg")
        with open(recipe, "w") as f:
            f.write(text)
        out = os.path.join(work, "shards")
        one = None
        for w in (1, 2, 4):
            secs, _ = median(args.runs, [args.surg, "run", "-q", recipe, src, out,
                                         "--max-shard-size", "100MB", "--writers", str(w),
                                         "--threads", str(threads), "--reflink", "never"], out)
            one = one or secs
            print("%-7s %-10d %9.3f %11.2f" % (case, w, secs, one / secs))
        shutil.rmtree(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--surg", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", help="work directory (default: a temporary one under /var/tmp)")
    ap.add_argument("--cases", default="share,writers")
    args = ap.parse_args()
    args.surg = os.path.abspath(args.surg)
    work = args.dir or tempfile.mkdtemp(prefix="surg-share-", dir="/var/tmp")
    os.makedirs(work, exist_ok=True)
    try:
        for case in args.cases.split(","):
            {"share": share, "writers": writers}[case](args, work)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
