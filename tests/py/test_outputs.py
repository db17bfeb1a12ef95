"""test_outputs.py: outputs never replace what they must not (issue 13, 1-4).

Every case hashes (sha256) the input and every file the run reads or might
touch before and after, lists the output directory before and after, checks
the node type of special files, and compares the exact message and exit code:

  1. no output lands on a file the run reads (the input's index and shards,
     the recipe, the --to target, the other output), whatever the spelling;
  2. an existing FIFO, socket, character device or symbolic link at OUT is
     refused, never replaced; `-` is a usage error, no file named `-`;
  3. a sharded output owns its names: a re-run leaves exactly the new set,
     removing an earlier surg output's stale shards and index, and refuses
     (changing nothing) when a stale name holds a file surg did not write;
  4. every output path is validated before any data is read: a directory
     without --max-shard-size, a file name with it, `.json`,
     `.safetensors.index.json` without it, an unknown extension; the same
     for the two-output form and for surg_ckpt_write (st_rewrite).

usage: test_outputs.py --surg SURG --rewrite ST_REWRITE [unittest args]
"""

import argparse
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402

ARGS = None  # filled in by main()

WRITES = ("cannot tell the format from the name: surg writes a .safetensors, .npz or .msgpack file, "
          "or with --max-shard-size a directory or a PREFIX.safetensors.index.json beside "
          "its shards (or, with --out-format, any of these, or an Orbax or PEFT adapter "
          "directory under any name)")


def tensors(n=3, size=100):
    """n F32 tensors of `size` elements (400 bytes each)."""
    return {"t%d" % i: ("F32", np.arange(size, dtype="<f4") + i) for i in range(n)}


def node_type(path):
    m = os.lstat(path).st_mode
    for name, test in (("link", stat.S_ISLNK), ("fifo", stat.S_ISFIFO), ("sock", stat.S_ISSOCK),
                       ("chr", stat.S_ISCHR), ("dir", stat.S_ISDIR), ("file", stat.S_ISREG)):
        if test(m):
            return name
    return "other"


class OutCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-outputs-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def recipe(self, text='map "t0" = x * 2', name="r.surg"):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text + "\n")
        return p

    def single(self, name="in.safetensors", n=3):
        p = self.path(name)
        stnp.save(p, tensors(n))
        return p

    def hf_sharded(self, name="ck", n=3):
        """A sharded checkpoint as Hugging Face writes it (no surg mark):
        one tensor a shard, and the index."""
        d = self.path(name)
        os.mkdir(d)
        ts = tensors(n)
        files = ["model-%05d-of-%05d.safetensors" % (i + 1, n) for i in range(n)]
        weight_map = {}
        for (k, v), f in zip(sorted(ts.items()), files):
            stnp.save(os.path.join(d, f), {k: v})
            weight_map[k] = f
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 400 * n}, "weight_map": weight_map}, f,
                      indent=2, sort_keys=True)
        return d

    def snapshot(self, *roots):
        """{path: (node type, sha256 of a regular file)} of every node under
        the roots (the roots themselves included)."""
        out = {}
        for root in roots:
            todo = [root]
            while todo:
                p = todo.pop()
                if not os.path.lexists(p):
                    continue
                kind = node_type(p)
                out[p] = (kind, runutil.sha256(p) if kind == "file" else None)
                if kind == "dir":
                    todo.extend(os.path.join(p, n) for n in os.listdir(p))
        return out

    def surg(self, *args, cwd=None):
        env = dict(os.environ, CI="1")
        r = subprocess.run([ARGS.surg, *map(str, args)], capture_output=True, timeout=120,
                           stdin=subprocess.DEVNULL, cwd=cwd, env=env)
        return r.returncode, r.stderr.decode("utf-8", errors="replace")

    def refused(self, args, want_err, code=2, cwd=None, tool=None):
        """Run; the exit code and stderr exactly as given; nothing under the
        temporary directory changed (every node, every file's bytes)."""
        before = self.snapshot(self.tmp)
        if tool:
            r = subprocess.run([tool, *map(str, args)], capture_output=True, timeout=120)
            rc, err = r.returncode, r.stderr.decode()
        else:
            rc, err = self.surg(*args, cwd=cwd)
        self.assertEqual((rc, err), (code, want_err))
        self.assertEqual(self.snapshot(self.tmp), before, "a file changed")

    def listing(self, d):
        return sorted(os.listdir(d))

    def read_index(self, d):
        with open(os.path.join(d, "model.safetensors.index.json")) as f:
            return json.load(f)


# =============================================================================
# 1. An input's own files
# =============================================================================

class TestInputsNeverReplaced(OutCase):
    def test_input_index_as_output(self):
        """`surg run R ck ck/model.safetensors.index.json`: refused, the index
        and every shard unchanged (today: safetensors bytes over the index)."""
        ck = self.hf_sharded()
        r = self.recipe()
        idx = os.path.join(ck, "model.safetensors.index.json")
        self.refused(["run", r, ck, idx],
                     "%s: error: an index of shards is written with --max-shard-size: give "
                     "it, or name a .safetensors file\n" % idx)
        # With --max-shard-size the index is the input's own: refused by identity.
        self.refused(["run", r, ck, idx, "--max-shard-size", "500B"],
                     "".join("%s/%s: error: the output would replace %s/%s, which this run "
                             "reads; write it elsewhere\n" % (ck, f, ck, f)
                             for f in ["model-00001-of-00003.safetensors",
                                       "model-00002-of-00003.safetensors",
                                       "model-00003-of-00003.safetensors",
                                       "model.safetensors.index.json"]))

    def test_input_directory_as_sharded_output(self):
        """`surg run R ck ck --max-shard-size 20B` (and through `..`): refused
        (today: the index replaced, the shards orphaned)."""
        ck = self.hf_sharded()
        r = self.recipe()
        os.mkdir(self.path("sub"))
        other = os.path.join(self.path("sub"), "..", "ck")
        want = "".join("%s/%s: error: the output would replace %s/%s, which this run "
                       "reads; write it elsewhere\n" % (other, f, ck, f)
                       for f in ["model-00001-of-00003.safetensors",
                                 "model-00002-of-00003.safetensors",
                                 "model-00003-of-00003.safetensors",
                                 "model.safetensors.index.json"])
        self.refused(["run", r, ck, other, "--max-shard-size", "20B"], want)

    def test_fewer_shards_into_the_input(self):
        """Two shards written where the input has three: the index is the
        input's (and its shards would be stale names): refused."""
        ck = self.hf_sharded()
        r = self.recipe('keep "**"')
        self.refused(["run", r, ck, ck, "--max-shard-size", "800B"],
                     "%s/model.safetensors.index.json: error: the output would replace "
                     "%s/model.safetensors.index.json, which this run reads; write it "
                     "elsewhere\n" % (ck, ck))

    def test_stale_name_is_an_input_of_another_prefix_run(self):
        """The input is DIR/model.safetensors; the output shards into DIR:
        model.safetensors is a stale name of the output, and an input."""
        d = self.path("d")
        os.mkdir(d)
        inp = self.single(os.path.join("d", "model.safetensors"))
        r = self.recipe()
        self.refused(["run", r, inp, d, "--max-shard-size", "500B"],
                     "%s: error: this run reads %s, and the output %s owns this name: a "
                     "sharded output removes the files of its prefix that it does not write "
                     "again; write the output elsewhere\n" % (inp, inp, d))

    def test_hard_link_to_input(self):
        inp = self.single()
        hard = self.path("hard.safetensors")
        os.link(inp, hard)
        self.refused(["run", self.recipe(), inp, hard],
                     "%s: error: the output would replace %s, which this run reads; write it "
                     "elsewhere\n" % (hard, inp))

    def test_recipe_as_output(self):
        """The recipe file named as OUT (today: overwritten, exit 0)."""
        inp = self.single()
        r = self.recipe(name="recipe.safetensors")
        self.refused(["run", r, inp, r],
                     "%s: error: the output would replace %s, which this run reads; write it "
                     "elsewhere\n" % (r, r))

    def test_target_as_output(self):
        """The --to target as OUT (today: overwritten, exit 0), and a sharded
        target whose files a sharded output would write."""
        inp = self.single()
        r = self.recipe('keep "**"')
        target = self.single("target.safetensors")
        self.refused(["run", r, inp, target, "--to", target],
                     "%s: error: the output would replace %s, which this run reads; write it "
                     "elsewhere\n" % (target, target))
        ck = self.hf_sharded("tgt")
        idx = os.path.join(ck, "model.safetensors.index.json")
        self.refused(["run", r, inp, ck, "--to", idx, "--max-shard-size", "500B"],
                     "".join("%s/%s: error: the output would replace %s/%s, which this run "
                             "reads; write it elsewhere\n" % (ck, f, ck, f)
                             for f in ["model-00001-of-00003.safetensors",
                                       "model-00002-of-00003.safetensors",
                                       "model-00003-of-00003.safetensors",
                                       "model.safetensors.index.json"]))

    def test_two_outputs_one_file(self):
        """--params/--state with OUT_P and OUT_S one file spelled two ways
        (today: both written, one over the other, exit 0)."""
        p = self.single("p.safetensors")
        s = self.single("s.safetensors")
        r = self.recipe('keep "**"')
        out = self.path("o.safetensors")
        same = os.path.join(self.tmp, ".", "o.safetensors")
        self.refused(["run", r, "--params", p, "--state", s, out, same],
                     "%s: error: two outputs are written to this one path\n" % out)
        self.assertFalse(os.path.exists(out))

    def test_two_outputs_one_is_the_other_input(self):
        p = self.single("p.safetensors")
        s = self.single("s.safetensors")
        r = self.recipe('keep "**"')
        self.refused(["run", r, "--params", p, "--state", s, self.path("po.safetensors"), s],
                     "%s: error: the output would replace %s, which this run reads; write it "
                     "elsewhere\n" % (s, s))


# =============================================================================
# 2. Non-regular files
# =============================================================================

class TestSpecialNodes(OutCase):
    def special(self, out, kind_text, kind):
        inp = self.single()
        self.refused(["run", self.recipe(), inp, out],
                     "%s: error: the output is %s: surg writes only regular files, renaming "
                     "each finished one over its name, and never replaces %s\n"
                     % (out, kind_text, kind_text))
        self.assertEqual(node_type(out), kind)

    def test_fifo(self):
        out = self.path("fifo.safetensors")
        os.mkfifo(out)
        self.special(out, "a FIFO", "fifo")

    def test_socket(self):
        out = self.path("sock.safetensors")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(out)
            self.special(out, "a socket", "sock")
        finally:
            s.close()

    @unittest.skipUnless(os.geteuid() == 0, "making a device node needs root")
    def test_character_device(self):
        """As root, `surg run R IN /dev/null` replaced /dev/null: here a node
        1,3 (the null device) made inside the temporary directory."""
        out = self.path("null.safetensors")
        try:
            os.mknod(out, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except OSError as e:
            self.skipTest("mknod refused: %s" % e)
        self.special(out, "a character device", "chr")
        self.assertEqual(os.major(os.lstat(out).st_rdev), 1)

    @unittest.skipUnless(os.geteuid() == 0, "making a device node needs root")
    def test_character_device_named_like_dev_null(self):
        """The same node without an extension: the name alone is refused."""
        out = self.path("null")
        try:
            os.mknod(out, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except OSError as e:
            self.skipTest("mknod refused: %s" % e)
        self.refused(["run", self.recipe(), self.single(), out],
                     "%s: error: %s\n" % (out, WRITES))
        self.assertEqual(node_type(out), "chr")

    def test_symbolic_link(self):
        """A link at OUT is refused: neither the link nor its target changes."""
        target = self.single("target.safetensors")
        out = self.path("link.safetensors")
        os.symlink("target.safetensors", out)
        self.refused(["run", self.recipe(), self.single(), out],
                     "%s: error: the output is a symbolic link: surg renames a finished "
                     "output over its name, which would replace the link, not what it points "
                     "to; write to the file's own name, or remove the link\n" % out)
        self.assertEqual(node_type(out), "link")
        self.assertEqual(os.readlink(out), "target.safetensors")
        self.assertEqual(node_type(target), "file")

    def test_dash(self):
        """`-` is a usage error, and no file named `-` appears."""
        inp = self.single()
        self.refused(["run", self.recipe(), inp, "-"],
                     "surg run: an output is a file, not standard output: name one (./- for a "
                     "file named \"-\")\n(see `surg run --help`)\n", cwd=self.tmp)
        self.assertFalse(os.path.lexists(self.path("-")))
        # ./- is a file named "-" whose format cannot be told.
        self.refused(["run", self.recipe(), inp, "./-"], "./-: error: %s\n" % WRITES,
                     cwd=self.tmp)

    def test_fifo_among_shard_names(self):
        """A FIFO where a shard goes: refused, still a FIFO."""
        d = self.path("out")
        os.mkdir(d)
        fifo = os.path.join(d, "model-00002-of-00003.safetensors")
        os.mkfifo(fifo)
        self.refused(["run", self.recipe(), self.single(), d, "--max-shard-size", "500B"],
                     "%s: error: the output is a FIFO: surg writes only regular files, "
                     "renaming each finished one over its name, and never replaces a FIFO\n"
                     % fifo)
        self.assertEqual(node_type(fifo), "fifo")


# =============================================================================
# 3. Stale outputs
# =============================================================================

class TestStaleOutputs(OutCase):
    def run_ok(self, *args):
        rc, err = self.surg(*args, "--quiet")
        self.assertEqual((rc, err), (0, ""))

    def test_rerun_fewer_shards_then_one_file(self):
        """3 shards, then 2, then one file, then 3 again: the directory holds
        exactly the new set each time (today: old shards and index stay)."""
        inp = self.single()
        r = self.recipe()
        out = self.path("out")
        keep = os.path.join(out, "config.json")  # not a name of the output
        self.run_ok("run", r, inp, out, "--max-shard-size", "500B")
        with open(keep, "w") as f:
            f.write("{}\n")
        three = ["config.json", "model-00001-of-00003.safetensors",
                 "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors",
                 "model.safetensors.index.json"]
        self.assertEqual(self.listing(out), three)
        self.run_ok("run", r, inp, out, "--max-shard-size", "800B")
        self.assertEqual(self.listing(out), ["config.json", "model-00001-of-00002.safetensors",
                                             "model-00002-of-00002.safetensors",
                                             "model.safetensors.index.json"])
        self.assertEqual(sorted(set(self.read_index(out)["weight_map"].values())),
                         ["model-00001-of-00002.safetensors",
                          "model-00002-of-00002.safetensors"])
        self.run_ok("run", r, inp, out, "--max-shard-size", "5GB")
        self.assertEqual(self.listing(out), ["config.json", "model.safetensors"])
        self.run_ok("run", r, inp, out, "--max-shard-size", "500B")
        self.assertEqual(self.listing(out), three)
        with open(keep) as f:
            self.assertEqual(f.read(), "{}\n")
        # What is there reads back as the new output.
        back = self.path("back.safetensors")
        self.run_ok("run", self.recipe('keep "**"', "k.surg"), out, back)
        t, meta, _ = stnp.load(back)
        self.assertEqual(sorted(t), ["t0", "t1", "t2"])
        np.testing.assert_array_equal(t["t0"][1], np.arange(100, dtype="<f4") * 2)
        self.assertNotIn("surg.output", meta)
        self.assertNotIn("surg.plan", meta)

    def test_marks(self):
        """Every file of a sharded output carries the mark; one file does not."""
        inp = self.single()
        out = self.path("out")
        self.run_ok("run", self.recipe(), inp, out, "--max-shard-size", "500B")
        digests = set()
        for f in self.listing(out):
            if f.endswith(".index.json"):
                meta = self.read_index(out)["metadata"]
                self.assertEqual(meta, {"surg.output": "sharded", "total_size": 1200})
            else:
                _, meta, _ = stnp.load(os.path.join(out, f))
                # ...and the plan's digest, the same in every shard (docs/scale.md).
                digest = meta.pop("surg.plan")
                self.assertRegex(digest, "^[0-9a-f]{32}$")
                digests.add(digest)
                self.assertEqual(meta, {"format": "pt", "surg.output": "sharded"}, f)
        self.assertEqual(len(digests), 1)
        one = self.path("one.safetensors")
        self.run_ok("run", self.recipe(), out, one)
        _, meta, _ = stnp.load(one)
        self.assertEqual(meta, {"format": "pt"})

    def test_foreign_stale_shard_refused(self):
        """Stale names holding files surg did not write: refused before
        anything, every one named, nothing changes."""
        inp = self.single()
        r = self.recipe()
        out = self.hf_sharded("out")
        msg = ("%s/%s: error: the output %s owns this name but will not write it again, and "
               "surg did not write this file (no \"surg.output\": \"sharded\" in its "
               "metadata), so it is not removed: beside the new files a loader could take it "
               "for part of them; move it away, or write the output to another directory\n")
        self.refused(["run", r, inp, out, "--max-shard-size", "800B"],
                     "".join(msg % (out, f, out) for f in [
                         "model-00001-of-00003.safetensors",
                         "model-00002-of-00003.safetensors",
                         "model-00003-of-00003.safetensors"]))

    def test_foreign_index_refused_when_one_file(self):
        """The new output is one model.safetensors; a foreign index (and its
        shards) would stay beside it: refused, every name listed."""
        inp = self.single()
        out = self.hf_sharded("out")
        msg = ("%s/%s: error: the output %s owns this name but will not write it again, and "
               "surg did not write this file (no \"surg.output\": \"sharded\" in its "
               "metadata), so it is not removed: beside the new files a loader could take it "
               "for part of them; move it away, or write the output to another directory\n")
        self.refused(["run", self.recipe(), inp, out, "--max-shard-size", "5GB"],
                     "".join(msg % (out, f, out) for f in [
                         "model-00001-of-00003.safetensors",
                         "model-00002-of-00003.safetensors",
                         "model-00003-of-00003.safetensors",
                         "model.safetensors.index.json"]))

    def test_foreign_single_file_refused(self):
        """A model.safetensors not written by surg where shards are to go."""
        inp = self.single()
        out = self.path("out")
        os.mkdir(out)
        self.single(os.path.join("out", "model.safetensors"))
        self.refused(["run", self.recipe(), inp, out, "--max-shard-size", "500B"],
                     "%s/model.safetensors: error: the output %s owns this name but will not "
                     "write it again, and surg did not write this file (no \"surg.output\": "
                     "\"sharded\" in its metadata), so it is not removed: beside the new files "
                     "a loader could take it for part of them; move it away, or write the "
                     "output to another directory\n" % (out, out))

    def test_stale_link_refused(self):
        """A link under a stale name is not surg's, even to surg's file."""
        inp = self.single()
        out = self.path("out")
        self.run_ok("run", self.recipe(), inp, out, "--max-shard-size", "500B")
        os.rename(os.path.join(out, "model-00003-of-00003.safetensors"), self.path("moved"))
        os.symlink(self.path("moved"), os.path.join(out, "model-00003-of-00003.safetensors"))
        self.refused(["run", self.recipe(), inp, out, "--max-shard-size", "800B"],
                     "%s/model-00003-of-00003.safetensors: error: the output %s owns this "
                     "name but will not write it again, and surg did not write this file (no "
                     "\"surg.output\": \"sharded\" in its metadata), so it is not removed: "
                     "beside the new files a loader could take it for part of them; move it "
                     "away, or write the output to another directory\n" % (out, out))

    def test_other_prefix_untouched(self):
        """An index path names the prefix: another prefix's files stay."""
        inp = self.single()
        d = self.path("d")
        self.run_ok("run", self.recipe(), inp, d, "--max-shard-size", "500B")
        before = self.snapshot(d)
        self.run_ok("run", self.recipe(), inp, os.path.join(d, "a.safetensors.index.json"),
                    "--max-shard-size", "800B")
        self.run_ok("run", self.recipe(), inp, os.path.join(d, "a.safetensors.index.json"),
                    "--max-shard-size", "5GB")
        after = self.snapshot(d)
        self.assertEqual({p: v for p, v in after.items() if p in before}, before)
        self.assertEqual(sorted(set(after) - set(before)), [os.path.join(d, "a.safetensors")])


# =============================================================================
# 4. Checked up front
# =============================================================================

class TestCheckedUpFront(OutCase):
    def test_directory_without_shards(self):
        """Today: all the work, then "cannot rename the finished output into
        place"."""
        d = self.path("outdir")
        os.mkdir(d)
        self.refused(["run", self.recipe(), self.single(), d],
                     "%s: error: the output is a directory: name a .safetensors, .npz or .msgpack file, "
                     "or give --max-shard-size to write shards into it (or --out-format "
                     "orbax or peft for an Orbax checkpoint or a PEFT adapter directory)\n" % d)

    def test_file_name_with_shards(self):
        """Today: a directory named x.safetensors appears."""
        out = self.path("x.safetensors")
        self.refused(["run", self.recipe(), self.single(), out, "--max-shard-size", "500B"],
                     "%s: error: --max-shard-size writes shards into a directory (or beside a "
                     "PREFIX.safetensors.index.json), and this name is a file's: name a "
                     "directory, or leave out --max-shard-size for one file\n" % out)
        self.assertFalse(os.path.lexists(out))

    def test_json_names_without_shards(self):
        """Today: safetensors bytes in a .json surg cannot reopen."""
        inp = self.single()
        out = self.path("o.json")
        self.refused(["run", self.recipe(), inp, out],
                     "%s: error: %s (a schema comes from `surg schema`)\n" % (out, WRITES))
        idx = self.path("o.safetensors.index.json")
        self.refused(["run", self.recipe(), inp, idx],
                     "%s: error: an index of shards is written with --max-shard-size: give "
                     "it, or name a .safetensors file\n" % idx)
        self.assertFalse(os.path.lexists(out) or os.path.lexists(idx))

    def test_unknown_extension(self):
        """Today: `.h5` silently gets safetensors."""
        for name in ["o.h5", "o.gguf", "o", "o.safetensors.bak"]:
            out = self.path(name)
            self.refused(["run", self.recipe(), self.single(), out],
                         "%s: error: %s\n" % (out, WRITES))
            self.assertFalse(os.path.lexists(out))

    def test_missing_directory(self):
        out = self.path("no", "such", "o.safetensors")
        self.refused(["run", self.recipe(), self.single(), out],
                     "%s: error: cannot create the output: No such file or directory\n" % out)

    def test_two_outputs_checked_before_either(self):
        """OUT_S has an unknown extension: refused, OUT_P never written."""
        p = self.single("p.safetensors")
        s = self.single("s.safetensors")
        op, os_ = self.path("op.safetensors"), self.path("os.h5")
        self.refused(["run", self.recipe('keep "**"'), "--params", p, "--state", s, op, os_],
                     "%s: error: %s\n" % (os_, WRITES))
        self.assertFalse(os.path.lexists(op))

    def test_ckpt_write(self):
        """surg_ckpt_write (st_rewrite) checks the same way."""
        inp = self.single()
        ck = self.hf_sharded()
        idx = os.path.join(ck, "model.safetensors.index.json")
        self.refused([inp, self.path("o.h5")],
                     "%s: error: %s [out-name]\n" % (self.path("o.h5"), WRITES),
                     tool=ARGS.rewrite)
        self.refused([idx, idx, "500B"],
                     "".join("%s/%s: error: the output would replace %s/%s, which this run "
                             "reads; write it elsewhere [run-overwrite]\n" % (ck, f, ck, f)
                             for f in ["model-00001-of-00003.safetensors",
                                       "model-00002-of-00003.safetensors",
                                       "model-00003-of-00003.safetensors",
                                       "model.safetensors.index.json"]),
                     tool=ARGS.rewrite)
        fifo = self.path("f.safetensors")
        os.mkfifo(fifo)
        self.refused([inp, fifo],
                     "%s: error: the output is a FIFO: surg writes only regular files, "
                     "renaming each finished one over its name, and never replaces a FIFO "
                     "[out-special]\n" % fifo, tool=ARGS.rewrite)
        x = self.path("x.safetensors")
        self.refused([inp, x, "1KB"],
                     "%s: error: --max-shard-size writes shards into a directory (or beside a "
                     "PREFIX.safetensors.index.json), and this name is a file's: name a "
                     "directory, or leave out --max-shard-size for one file [out-name]\n" % x,
                     tool=ARGS.rewrite)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ap.add_argument("--rewrite", required=True)
    ARGS, rest = ap.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    ARGS.rewrite = os.path.abspath(ARGS.rewrite)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
