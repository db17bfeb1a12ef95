"""test_part.py: partitioned runs (issue 18 §1, docs/scale.md).

  - `surg run ... --part I/N` for N = 1, 2, 3, 7 and more parts than shards:
    each part, run into a directory of its own, writes exactly the shards a
    largest-first, least-loaded assignment (computed here from the one run's
    shards' tensor bytes: their sizes without the header) gives it; the parts' union plus `surg index` is byte for
    byte (cmp) the one run, the index equal to the one Python's json.dumps
    makes from the shards' headers; a part with nothing to do succeeds and
    makes nothing, not even the directory;
  - refusals, exact: missing shards named, shards of another plan, a file
    surg did not write at a shard's or the index's name, no shards at all;
    nothing changes on a refusal;
  - a part removes an earlier output's index before its shards go in place,
    and an earlier output's stale shards after, never another part's;
  - --part auto from Open MPI, PMI, Slurm array and torchrun variables
    (surg plan --part auto shows the part chosen; Slurm and torchrun runs
    simulated by setting the variables on N processes), conflicts and hostile
    values refused with exact messages; hostile --part specs;
  - `surg plan --part I/N` shows every part's shards, tensors, bytes read and
    written, summed against the files; `surg plan` of a 100,000-tensor,
    2 TB schema within a generous bound (the time is printed);
  - under mpirun (a build with -DSURG_MPI=ON): no second step, the index
    written by rank 0; a rank with another plan stops every rank before
    anything is written; a rank failing leaves no index (skipped, saying
    why, where mpirun or the MPI build is missing).

usage: test_part.py --surg SURG [--mpi ON|OFF] [unittest args]
"""

import argparse
import heapq
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stnp  # noqa: E402

ARGS = None  # filled in by main()
SHARD = "2KB"  # 15 shards of the checkpoint below
M = 15


def fmt_size(n):
    """A size as surg prints one."""
    units, v, u = ["B", "KiB", "MiB", "GiB"], float(n), 0
    while v >= 1024 and u < 3:
        v, u = v / 1024, u + 1
    return "%d B" % n if u == 0 else "%.1f %s" % (v, units[u])


def shard(k):
    return "model-%05d-of-%05d.safetensors" % (k + 1, M)


def data_bytes(path):
    """A shard's tensor bytes: its size less the 8-byte length and the
    header (which the zero-copy layout pads by the host's block size, so
    parts do not weigh it)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
    return os.path.getsize(path) - 8 - n


def lpt(sizes, n):
    """The partition the docs promise: shards largest first (ties: lower
    number) each to the part with the fewest bytes (ties: lower part)."""
    heap = [(0, p) for p in range(n)]
    owner = {}
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        load, p = heapq.heappop(heap)
        owner[i] = p
        heapq.heappush(heap, (load + sizes[i], p))
    return owner


def expected_index(d):
    """The index Hugging Face's writers make, from the shards' headers."""
    weight_map, total = {}, 0
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            t, _, _ = stnp.load(os.path.join(d, f))
            for name, (_, arr) in t.items():
                weight_map[name] = f
                total += arr.nbytes
    index = {"metadata": {"surg.output": "sharded", "total_size": total},
             "weight_map": weight_map}
    return json.dumps(index, indent=2, sort_keys=True) + "\n"


class PartCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-part-")
        self.tmp = self._tmp.name
        self.inp = self.path("in.safetensors")
        self.data = {"layer.%02d.w" % i: ("F32", (np.arange(10 + (i * 37) % 290) * 0.5 + i)
                                          .astype("<f4")) for i in range(40)}
        self.data_bytes = sum(a.nbytes for _, a in self.data.values())
        stnp.save(self.inp, self.data)
        self.recipe = self.write("r.surg", 'map "**" = x * 2\n')

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, *p):
        return os.path.join(self.tmp, *p)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def surg(self, *args, env=None):
        e = dict(os.environ, CI="1")
        for k in list(e):  # no launcher of the test's own leaks in
            if k.startswith(("OMPI_", "PMI_", "SLURM_")) or k in ("RANK", "WORLD_SIZE"):
                del e[k]
        e.update(env or {})
        r = subprocess.run([ARGS.surg, *map(str, args)], capture_output=True, timeout=120,
                           stdin=subprocess.DEVNULL, env=e)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    def ok(self, *args, env=None):
        rc, out, err = self.surg(*args, env=env)
        self.assertEqual(rc, 0, err)
        return out, err

    def one_run(self, name="one", recipe=None):
        self.ok("run", recipe or self.recipe, self.inp, self.path(name), "--max-shard-size", SHARD)
        return self.path(name)

    def files(self, d):
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def snapshot(self, d):
        out = {}
        for f in self.files(d):
            with open(os.path.join(d, f), "rb") as fh:
                out[f] = fh.read()
        return out

    def assert_same(self, a, b):
        self.assertEqual(self.files(a), self.files(b))
        for f in self.files(a):
            r = subprocess.run(["cmp", os.path.join(a, f), os.path.join(b, f)])
            self.assertEqual(r.returncode, 0, f)


class TestPartition(PartCase):
    def test_union_is_one_run(self):
        one = self.one_run()
        shards = [f for f in self.files(one) if not f.endswith(".json")]
        self.assertEqual(shards, [shard(k) for k in range(M)])
        sizes = [data_bytes(os.path.join(one, f)) for f in shards]
        with open(os.path.join(one, "model.safetensors.index.json")) as f:
            self.assertEqual(f.read(), expected_index(one))
        for n in (1, 2, 3, 7, 20):
            owner = lpt(sizes, n)
            union = self.path("union%d" % n)
            for i in range(n):
                alone = self.path("alone%d_%d" % (n, i))
                _, err = self.ok("run", self.recipe, self.inp, alone, "--max-shard-size", SHARD,
                                 "--part", "%d/%d" % (i, n))
                mine = [shards[k] for k in range(M) if owner[k] == i]
                self.assertEqual(self.files(alone), mine, (n, i))
                self.assertFalse(os.path.exists(alone) and not mine, "an empty part made its directory")
                if not mine:
                    self.assertRegex(err, r"\Asurg run: part %d of %d has no shard to write in "
                                          r"%s in \d+\.\d s\n\Z" % (i, n, re.escape(alone)))
                self.ok("run", self.recipe, self.inp, union, "--max-shard-size", SHARD,
                        "--part", "%d/%d" % (i, n))
            self.assertNotIn("model.safetensors.index.json", self.files(union))
            _, err = self.ok("index", union)
            self.assertEqual(err, "surg index: wrote the index of %s (%d shards, 40 tensors, "
                                  "%s)\n" % (union, M, fmt_size(self.data_bytes)))
            self.assert_same(one, union)
        # With several writers and the zero-copy layout too (whatever the
        # machine's cores): the parts' union is the one run's bytes.
        for extra in (["--writers", "3", "--threads", "1"], ["--reflink", "always", "--writers", "4"]):
            one = self.path("one" + extra[1])
            self.ok("run", self.recipe, self.inp, one, "--max-shard-size", SHARD, *extra)
            union = self.path("union" + extra[1])
            for i in range(3):
                self.ok("run", self.recipe, self.inp, union, "--max-shard-size", SHARD,
                        "--part", "%d/3" % i, *extra)
            self.ok("index", union)
            self.assert_same(one, union)
        # Balanced: no part of 7 holds more than the largest shard above the mean.
        owner = lpt(sizes, 7)
        loads = [sum(s for k, s in enumerate(sizes) if owner[k] == p) for p in range(7)]
        self.assertLessEqual(max(loads) - min(loads), max(sizes))

    def test_prefix_form(self):
        """OUT as DIR/PREFIX.safetensors.index.json, for the parts and for
        surg index alike."""
        os.mkdir(self.path("one"))
        os.mkdir(self.path("parts"))
        self.ok("run", self.recipe, self.inp, self.path("one", "ckpt.safetensors.index.json"),
                "--max-shard-size", SHARD)
        out = self.path("parts", "ckpt.safetensors.index.json")
        for i in range(2):
            self.ok("run", self.recipe, self.inp, out, "--max-shard-size", SHARD,
                    "--part", "%d/2" % i)
        self.assertNotIn("ckpt.safetensors.index.json", self.files(self.path("parts")))
        self.ok("index", out)
        self.assert_same(self.path("one"), self.path("parts"))
        self.assertIn("ckpt-00001-of-%05d.safetensors" % M, self.files(self.path("parts")))

    def test_one_file_output(self):
        """A layout of one file (model.safetensors) needs no index."""
        one = self.path("one")
        self.ok("run", self.recipe, self.inp, one, "--max-shard-size", "1GB")
        parts = self.path("parts")
        for i in range(3):
            self.ok("run", self.recipe, self.inp, parts, "--max-shard-size", "1GB",
                    "--part", "%d/3" % i)
        _, err = self.ok("index", parts)
        self.assertEqual(err, "surg index: %s is one file (40 tensors, %s), which needs "
                              "no index\n" % (parts, fmt_size(self.data_bytes)))
        self.assert_same(one, parts)

    def test_plan_shows_parts(self):
        one = self.one_run()
        sizes = {f: os.path.getsize(os.path.join(one, f)) for f in self.files(one)
                 if not f.endswith(".json")}
        shards = sorted(sizes)
        owner = lpt([data_bytes(os.path.join(one, f)) for f in shards], 3)
        out, _ = self.ok("plan", self.recipe, "--from", self.inp, "--max-shard-size", SHARD,
                         "--part", "1/3", "--json")
        lines = out.strip().split("\n")
        parts = json.loads(lines[-1])
        self.assertEqual(parts["part"], 1)
        for p in range(3):
            mine = [f for k, f in enumerate(shards) if owner[k] == p]
            tensors = sum(len(stnp.load(os.path.join(one, f))[0]) for f in mine)
            data = sum(a.nbytes for f in mine for _, a in stnp.load(os.path.join(one, f))[0].values())
            self.assertEqual(parts["parts"][p], {"shards": len(mine), "tensors": tensors,
                                                 "read": data,  # x * 2 reads each element once
                                                 "written": sum(sizes[f] for f in mine)})
        # The digest the plan shows is the one every shard carries.
        for f in shards:
            _, meta, _ = stnp.load(os.path.join(one, f))
            self.assertEqual(meta, {"format": "pt", "surg.output": "sharded",
                                    "surg.plan": parts["digest"]})
        text, _ = self.ok("plan", self.recipe, "--from", self.inp, "--max-shard-size", SHARD,
                          "--part", "1/3")
        tail = text[text.index("\n  parts (plan "):]
        mine = [f for k, f in enumerate(shards) if owner[k] == 1]
        self.assertIn("\n*       1 %7d %8d %11s %11s\n" % (
            len(mine), parts["parts"][1]["tensors"], fmt_size(parts["parts"][1]["read"]),
            fmt_size(sum(sizes[f] for f in mine))), tail)
        self.assertEqual(tail.count("\n"), 6)

    def test_plan_of_a_trillion_parameters(self):
        """100,000 tensors of bf16, 2 TB, planned in well under the bound."""
        schema = {"model.layers.%d.block.%d.weight" % (l, k): {"dtype": "BF16",
                                                                "shape": [4096, 2441]}
                  for l in range(1000) for k in range(100)}
        with open(self.path("big.json"), "w") as f:
            json.dump(schema, f)
        recipe = self.write("big.surg", 'rename "model.**" -> "m.$1"\nmap "**.weight" = x * 2\n')
        for extra in ([], ["--max-shard-size", "5GB", "--part", "3/8"]):
            t0 = time.monotonic()
            out, _ = self.ok("plan", recipe, "--from", self.path("big.json"), *extra)
            secs = time.monotonic() - t0
            print("surg plan, 100,000 tensors %s: %.2f s" % (" ".join(extra), secs),
                  file=sys.stderr)
            self.assertLess(secs, 20)
        self.assertIn("*       3", out)


class TestIndexRefusals(PartCase):
    def parts(self, recipe=None, only=None, n=3, out="parts"):
        d = self.path(out)
        for i in range(n):
            if only is None or i in only:
                self.ok("run", recipe or self.recipe, self.inp, d, "--max-shard-size", SHARD,
                        "--part", "%d/%d" % (i, n))
        return d

    def refused(self, d, want, code=1):
        before = self.snapshot(d)
        rc, _, err = self.surg("index", d)
        self.assertEqual((rc, err), (code, want))
        self.assertEqual(self.snapshot(d), before)

    def test_missing(self):
        d = self.parts(only=[0, 2])
        one = self.one_run()
        owner = lpt([data_bytes(os.path.join(one, shard(k))) for k in range(M)], 3)
        missing = [shard(k) for k in range(M) if owner[k] == 1]
        self.assertGreater(len(missing), 4)
        self.refused(d, "%s: error: %d of the %d shards are missing: %s and %d more; the index is "
                        "written once every part is done\n"
                     % (d, len(missing), M, ", ".join(missing[:4]), len(missing) - 4))

    def test_other_plan(self):
        other = self.write("other.surg", 'map "**" = x * 3\n')
        d = self.parts(only=[0, 1])
        self.parts(recipe=other, only=[2])
        digests = {}
        for f in self.files(d):
            digests.setdefault(stnp.load(os.path.join(d, f))[1]["surg.plan"], []).append(f)
        self.assertEqual(len(digests), 2)
        first = stnp.load(os.path.join(d, shard(0)))[1]["surg.plan"]
        (bad,) = [k for k in digests if k != first]
        want = "".join('%s/%s: error: written by another plan ("surg.plan": "%s") than '
                       '%s ("%s"): run its part again with the '
                       'same recipe, inputs and --max-shard-size\n' % (d, f, bad, shard(0), first)
                       for f in digests[bad])
        self.refused(d, want)

    def test_foreign_and_empty(self):
        d = self.path("empty")
        os.mkdir(d)
        self.refused(d, "%s: error: no shard of a sharded output is here "
                        "(model-NNNNN-of-MMMMM.safetensors): run the parts first\n" % d)
        d = self.parts()
        stnp.save(os.path.join(d, shard(2)), {"x": ("F32", np.zeros(3, "<f4"))})
        self.refused(d, '%s/%s: error: not a shard of a sharded '
                        'output of surg run (no "surg.output": "sharded" and "surg.plan" in its '
                        'metadata)\n' % (d, shard(2)))
        stnp.save(os.path.join(d, "model-00001-of-00004.safetensors"),
                  {"x": ("F32", np.zeros(3, "<f4"))})
        self.refused(d, "%s: error: the shards here are of more than one output: "
                        "model-00001-of-00004.safetensors beside %s (of %d): re-run any part of "
                        "the output (each removes the files of earlier outputs), or move them "
                        "away\n" % (d, shard(0), M))

    def test_hostile_names(self):
        """Shard names of absurd counts, numbers past the count, other
        spellings: bounded messages, nothing written."""
        d = self.path("odd")
        os.mkdir(d)
        for name in ("model-00000-of-00003.safetensors", "model-00004-of-00003.safetensors",
                     "model-000001-of-00003.safetensors"):
            with open(os.path.join(d, name), "w") as f:
                f.write("x")
        before = self.snapshot(d)
        rc, _, err = self.surg("index", d)  # the names in directory order
        self.assertEqual(rc, 1)
        self.assertEqual(self.snapshot(d), before)
        self.assertTrue(err.startswith("%s: error: " % d), err)
        names = sorted(err.split(": error: ")[1].split(": not named")[0].split(", "))
        self.assertEqual(names, sorted(["model-000001-of-00003.safetensors",
                                        "model-00000-of-00003.safetensors",
                                        "model-00004-of-00003.safetensors"]))
        self.assertTrue(err.endswith(": not named as surg names shards (model-NNNNN-of-MMMMM."
                                     "safetensors, N from 1 to M, five digits or more): move "
                                     "them away\n"), err)
        d = self.path("huge")
        os.mkdir(d)
        self.ok("run", self.recipe, self.inp, self.path("src"), "--max-shard-size", SHARD,
                "--part", "0/1")
        big = "model-00001-of-99999999999.safetensors"
        shutil.copy(os.path.join(self.path("src"), shard(0)), os.path.join(d, big))
        self.refused(d, "%s: error: 99999999998 of the 99999999999 shards are missing: %s and "
                        "99999999994 more; the index is written once every part is done\n"
                     % (d, ", ".join("model-%05d-of-99999999999.safetensors" % k
                                     for k in range(2, 6))))

    def test_foreign_index_not_replaced(self):
        d = self.parts()
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            f.write('{"weight_map": {}}\n')
        self.refused(d, '%s/model.safetensors.index.json: error: surg did not write the file at '
                        'the index\'s name (no "surg.output": "sharded" in its metadata), so it '
                        'is not replaced: move it away\n' % d, code=2)
        before = self.snapshot(d)
        rc, _, err = self.surg("run", self.recipe, self.inp, d, "--max-shard-size", SHARD,
                               "--part", "0/3")
        self.assertEqual((rc, err), (2, '%s/model.safetensors.index.json: error: a part removes '
                                        'the index of an earlier output before its shards go in '
                                        'place (surg index writes the new one), and surg did not '
                                        'write this file (no "surg.output": "sharded" in its '
                                        'metadata), so it is not removed: move it away, or write '
                                        'the output to another directory\n' % d))
        self.assertEqual(self.snapshot(d), before)


class TestEarlierOutputs(PartCase):
    def test_part_removes_index_first_and_stale_after(self):
        out = self.one_run("out")  # a whole earlier output: 15 shards and the index
        self.assertIn("model.safetensors.index.json", self.files(out))
        # The same names, another plan: the first part to finish takes the index away.
        other = self.write("other.surg", 'map "**" = x * 3\n')
        self.ok("run", other, self.inp, out, "--max-shard-size", SHARD, "--part", "0/3")
        self.assertNotIn("model.safetensors.index.json", self.files(out))
        # Another shard size: the earlier files are stale, removed by each part
        # after its own shards, never another part's.
        self.ok("run", other, self.inp, out, "--max-shard-size", "4KB", "--part", "1/3")
        new = [f for f in self.files(out) if not f.endswith("-of-%05d.safetensors" % M)]
        self.assertTrue(new)
        self.assertEqual(self.files(out), new)  # the earlier 15 and the index gone
        self.ok("run", other, self.inp, out, "--max-shard-size", "4KB", "--part", "0/3")
        self.ok("run", other, self.inp, out, "--max-shard-size", "4KB", "--part", "2/3")
        self.assertTrue(set(new) <= set(self.files(out)))
        self.ok("index", out)
        ref = self.path("ref")
        self.ok("run", other, self.inp, ref, "--max-shard-size", "4KB")
        self.assert_same(ref, out)

    def test_empty_part_touches_nothing(self):
        out = self.one_run("out")
        before = self.snapshot(out)
        _, err = self.ok("run", self.write("o.surg", 'map "**" = x * 3\n'), self.inp, out,
                         "--max-shard-size", SHARD, "--part", "19/20")
        self.assertEqual(self.snapshot(out), before)


class TestAuto(PartCase):
    def chosen(self, env):
        out, _ = self.ok("plan", self.recipe, "--from", self.inp, "--max-shard-size", SHARD,
                         "--part", "auto", env=env)
        return [l for l in out.split("\n") if l.startswith("*")][0].split()[1]

    def test_sources(self):
        self.assertEqual(self.chosen({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3"}), "2")
        self.assertEqual(self.chosen({"PMI_RANK": "1", "PMI_SIZE": "3"}), "1")
        self.assertEqual(self.chosen({"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10",
                                      "SLURM_ARRAY_TASK_COUNT": "4"}), "2")
        self.assertEqual(self.chosen({"SLURM_ARRAY_TASK_ID": "14", "SLURM_ARRAY_TASK_MIN": "10",
                                      "SLURM_ARRAY_TASK_COUNT": "3",
                                      "SLURM_ARRAY_TASK_STEP": "2"}), "2")
        self.assertEqual(self.chosen({"RANK": "3", "WORLD_SIZE": "4"}), "3")
        # Two launchers that agree are one.
        self.assertEqual(self.chosen({"RANK": "1", "WORLD_SIZE": "2", "PMI_RANK": "1",
                                      "PMI_SIZE": "2"}), "1")

    def test_env_runs(self):
        """Slurm arrays and torchrun, simulated: N processes, each with its
        variables, then surg index; the one run's bytes."""
        one = self.one_run()
        for name, env_of in (
                ("slurm", lambda i: {"SLURM_ARRAY_TASK_ID": str(i + 1), "SLURM_ARRAY_TASK_MIN": "1",
                                     "SLURM_ARRAY_TASK_COUNT": "4"}),
                ("torchrun", lambda i: {"RANK": str(i), "WORLD_SIZE": "4"})):
            out = self.path(name)
            procs = []
            for i in range(4):
                e = dict(os.environ, CI="1", **env_of(i))
                procs.append(subprocess.Popen([ARGS.surg, "run", self.recipe, self.inp, out,
                                               "--max-shard-size", SHARD, "--part", "auto"],
                                              env=e, stdin=subprocess.DEVNULL,
                                              stderr=subprocess.PIPE))
            for p in procs:
                _, err = p.communicate(timeout=120)
                self.assertEqual(p.returncode, 0, err)
            self.ok("index", out)
            self.assert_same(one, out)

    def test_refusals(self):
        cases = [
            ({}, "auto: no launcher's variables are set (Open MPI's OMPI_COMM_WORLD_RANK, "
                 "PMI_RANK, a Slurm array's SLURM_ARRAY_TASK_ID, torchrun's RANK, each with its "
                 "count): give --part I/N"),
            ({"RANK": "1"}, "auto: WORLD_SIZE is not set, though RANK is"),
            ({"WORLD_SIZE": "4"}, "auto: RANK is not set, though WORLD_SIZE is"),
            ({"RANK": "x1", "WORLD_SIZE": "4"}, "auto: RANK is 'x1', not a whole number"),
            ({"RANK": "-1", "WORLD_SIZE": "4"}, "auto: RANK is '-1', not a whole number"),
            ({"RANK": " 1", "WORLD_SIZE": "4"}, "auto: RANK is ' 1', not a whole number"),
            ({"RANK": "", "WORLD_SIZE": "4"}, "auto: RANK is '', not a whole number"),
            ({"RANK": "1" * 40, "WORLD_SIZE": "4"},
             "auto: RANK is '11111111111111111111...', not a whole number"),
            ({"RANK": "4", "WORLD_SIZE": "4"}, "auto: RANK=4 of WORLD_SIZE=4: parts count from 0, "
                                               "so part 4 of 4 does not exist (the last is 3)"),
            ({"RANK": "0", "WORLD_SIZE": "0"}, "auto: RANK=0 of WORLD_SIZE=0: the number of parts "
                                               "must be at least 1"),
            ({"PMI_RANK": "0", "PMI_SIZE": "2000000"},
             "auto: PMI_RANK=0 of PMI_SIZE=2000000: at most 1000000 parts"),
            ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"},
             "auto: SLURM_ARRAY_TASK_MIN is not set, though SLURM_ARRAY_TASK_ID is"),
            ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "5",
              "SLURM_ARRAY_TASK_COUNT": "4"},
             "auto: SLURM_ARRAY_TASK_ID=3 is below SLURM_ARRAY_TASK_MIN=5"),
            ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0",
              "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "2"},
             "auto: SLURM_ARRAY_TASK_ID=3 is not SLURM_ARRAY_TASK_MIN=0 plus a multiple of "
             "SLURM_ARRAY_TASK_STEP=2"),
            ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0",
              "SLURM_ARRAY_TASK_COUNT": "2", "RANK": "1", "WORLD_SIZE": "2"},
             "auto: the Slurm job array (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN, "
             "SLURM_ARRAY_TASK_COUNT) says part 0 of 2, and torchrun (RANK, WORLD_SIZE) says part "
             "1 of 2: unset the variables that do not belong to this run, or give --part I/N"),
        ]
        for env, msg in cases:
            for cmd in (["plan", self.recipe, "--from", self.inp],
                        ["run", self.recipe, self.inp, self.path("o")]):
                rc, out, err = self.surg(*cmd, "--max-shard-size", SHARD, "--part", "auto",
                                         env=env)
                self.assertEqual((rc, out, err), (2, "", "--part: error: %s\n" % msg), env)
                self.assertFalse(os.path.exists(self.path("o")))

    def test_hostile_specs(self):
        usage = ("--part: error: takes I/N (part I of N, counting from 0: 0/4 to 3/4) or auto "
                 "(from the launcher), not '%s'\n")
        for spec in ("", "1", "a/b", "/3", "1/", "-1/3", "+1/3", " 1/3", "1/3 ", "1/2/3", "1.0/3",
                     "0x1/3", "AUTO", "auto ", "１/3"):
            rc, _, err = self.surg("run", self.recipe, self.inp, self.path("o"),
                                   "--max-shard-size", SHARD, "--part", spec)
            self.assertEqual((rc, err), (2, usage % spec), spec)
        long = "9" * 50 + "/3"
        rc, _, err = self.surg("run", self.recipe, self.inp, self.path("o"), "--max-shard-size",
                               SHARD, "--part", long)
        self.assertEqual((rc, err), (2, usage % (long[:30] + "...")))
        for spec, msg in (("3/3", "3/3: parts count from 0, so part 3 of 3 does not exist (the "
                                  "last is 2)"),
                          ("0/0", "0/0: the number of parts must be at least 1"),
                          ("0/1000001", "0/1000001: at most 1000000 parts"),
                          ("9999999999/9999999999", "9999999999/9999999999: at most 1000000 "
                                                    "parts")):
            rc, _, err = self.surg("run", self.recipe, self.inp, self.path("o"),
                                   "--max-shard-size", SHARD, "--part", spec)
            self.assertEqual((rc, err), (2, "--part: error: %s\n" % msg), spec)
        rc, _, err = self.surg("run", self.recipe, self.inp, self.path("o"), "--part", "0/2")
        self.assertEqual((rc, err), (2, "surg run: --part 0/2: the parts are of a sharded output: "
                                        "give --max-shard-size too (the same in every part)\n"
                                        "(see `surg run --help`)\n"))
        rc, _, err = self.surg("run", self.recipe, self.inp, self.path("o.npz"), "--part", "0/2",
                               "--max-shard-size", SHARD)
        self.assertEqual((rc, err), (2, "%s: error: an .npz is one file: --max-shard-size writes "
                                        "safetensors shards\n" % self.path("o.npz")))
        self.assertFalse(os.path.exists(self.path("o")))


def mpirun():
    return shutil.which("mpirun")


class TestMPI(PartCase):
    def setUp(self):
        super().setUp()
        if ARGS.mpi != "ON":
            self.skipTest("surg was built without MPI (-DSURG_MPI=ON)")
        if not mpirun():
            self.skipTest("mpirun is not installed (Debian: openmpi-bin)")

    def mpi(self, *args, n=3):
        env = dict(os.environ, CI="1", OMPI_ALLOW_RUN_AS_ROOT="1",
                   OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl="self,vader",
                   OMPI_MCA_btl_vader_single_copy_mechanism="none",
                   OMPI_MCA_oob_tcp_if_include="lo", OMPI_MCA_btl_tcp_if_include="lo",
                   OMPI_MCA_rmaps_base_oversubscribe="1")
        r = subprocess.run([mpirun(), "-n", str(n), "--oversubscribe", *map(str, args)],
                           capture_output=True, timeout=300, stdin=subprocess.DEVNULL, env=env)
        return r.returncode, r.stderr.decode()

    def test_no_second_step(self):
        one = self.one_run()
        out = self.path("out")
        t0 = time.monotonic()
        rc, err = self.mpi(ARGS.surg, "run", self.recipe, self.inp, out, "--max-shard-size",
                           SHARD, "--part", "auto")
        print("mpirun -n 3: %.2f s" % (time.monotonic() - t0), file=sys.stderr)
        self.assertEqual(rc, 0, err)
        self.assertIn("surg index: wrote the index of %s (%d shards, 40 tensors, %s)\n"
                      % (out, M, fmt_size(self.data_bytes)), err)
        self.assert_same(one, out)

    def test_other_plan_writes_nothing(self):
        out = self.path("out")
        other = self.write("other.surg", 'map "**" = x * 3\n')
        script = self.write("rank.sh", 'r=%s; [ "$OMPI_COMM_WORLD_RANK" = 1 ] && r=%s\n'
                                       'exec %s run "$r" %s %s --max-shard-size %s --part auto\n'
                            % (self.recipe, other, ARGS.surg, self.inp, out, SHARD))
        rc, err = self.mpi("sh", script)
        self.assertNotEqual(rc, 0)
        self.assertIn("surg run: rank 1 holds another plan (", err)
        self.assertFalse(os.path.exists(out))

    def test_failing_rank_leaves_no_index(self):
        out = self.one_run("out")  # a complete earlier output, index and all
        blocked = self.write("blocked", "a file, not a directory\n")
        other = self.write("other.surg", 'map "**" = x * 3\n')
        # Rank 1 writes where it cannot (its output's directory is a file).
        script = self.write("rank.sh", 'o=%s; [ "$OMPI_COMM_WORLD_RANK" = 1 ] && o=%s/out\n'
                                       'exec %s run %s %s "$o" --max-shard-size %s --part auto\n'
                            % (out, blocked, ARGS.surg, other, self.inp, SHARD))
        rc, err = self.mpi("sh", script)
        self.assertNotEqual(rc, 0)
        self.assertIn("surg run: another rank failed: the index is not written", err)
        self.assertNotIn("model.safetensors.index.json", self.files(out))


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ap.add_argument("--mpi", default="OFF")
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
