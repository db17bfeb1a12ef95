#!/usr/bin/env python3
"""Speed of `surg plan` on the schema of a 1T-parameter model: 100,000 bf16
tensors of 4096 x 2441 (2.0 TB), a rename and a map over all of them, planned
whole and as part 3 of 8 of an output sharded at 5 GB (--part), median of
several runs, output to /dev/null; and how time grows at 200,000 tensors.

usage: bench/plan_speed.py --surg build/surg [--runs 5]"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

RECIPE = 'rename "model.**" -> "m.$1"\nmap "**.weight" = x * 2\n'


def schema(n):
    return {"model.layers.%d.block.%d.weight" % (i // 100, i % 100):
            {"dtype": "BF16", "shape": [4096, 2441]} for i in range(n)}


def timed(cmd, runs):
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="surg-plan-bench-") as d:
        recipe = os.path.join(d, "r.surg")
        with open(recipe, "w") as f:
            f.write(RECIPE)
        base = {}
        for n in (100_000, 200_000):
            path = os.path.join(d, "s%d.json" % n)
            with open(path, "w") as f:
                json.dump(schema(n), f)
            for label, extra in (("plan", []), ("plan --part 3/8", ["--max-shard-size", "5GB",
                                                                    "--part", "3/8"])):
                t = timed([a.surg, "plan", recipe, "--from", path] + extra, a.runs)
                grow = " (%.2fx the 100k time)" % (t / base[label]) if label in base else ""
                base.setdefault(label, t)
                print("%7d tensors  %-16s %6.0f ms%s" % (n, label, t * 1000, grow))


if __name__ == "__main__":
    sys.exit(main())
