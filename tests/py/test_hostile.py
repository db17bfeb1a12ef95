#!/usr/bin/env python3
"""test_hostile.py: what a hostile recipe or a careless run found after issue
13 was merged, each bounded now and checked with its exact diagnostic:

  * templates cannot make names without bound: one name is at most
    100,000,000 bytes, and the names a compilation's templates make total at
    most 256 MiB and 8 bytes for each byte of the input's names, each name
    counting its length and one for each piece of its template (a template
    of 500k `$2` over 100k names, each `$2` empty, was 5e10 steps);
  * a tied name consumed by split, concat, stack or unstack in a mirrored
    tree brings its stored tensor's slots (or zeros, when that tensor has
    none), as language.md says tied names share them (the final mirror
    check failed);
  * a pattern's search remembers failed states in a bit each (a 10 MB name
    against 65 tokens took 2.6 GB);
  * mirror declarations are bounded (256 prefixes in all, 4096 bytes each)
    and checking a tree allocates nothing per parameter and slot (10k
    parameters against 10k slot prefixes took 24 s and 1.5 GB);
  * an output larger than the file system's free space is refused before
    it is reserved (a failed reservation on ext4 holds every free block
    until the file is closed: for that moment the disk is full for every
    other writer).

usage: test_hostile.py --surg SURG [unittest args]
"""

import argparse
import json
import os
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
BOUND = 30.0  # seconds: generous, to catch hangs, not to time anything
RSS_BOUND = 1200 << 10  # KiB: the names budget is 256 MiB (ASan doubles it)


def write_many(path, names, metadata=None):
    """A safetensors file of one f32 scalar per name, written directly (stnp
    is too slow for 100k tensors)."""
    header = {n: {"dtype": "F32", "shape": [], "data_offsets": [4 * i, 4 * i + 4]}
              for i, n in enumerate(names)}
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + bytes(4 * len(names)))


class HostileCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-hostile-")
        self.tmp = self._tmp.name
        self.out = self.path("out.safetensors")

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def recipe(self, text, name="r.surg"):
        with open(self.path(name), "w") as f:
            f.write(text)
        return name

    def surg(self, *args, bound=BOUND):
        """(exit code, stdout, diagnostics as JSON objects, stderr), within
        `bound` seconds; self.rss is the child's peak RSS in KiB."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.Popen([ARGS.surg, "--diagnostics", "json", *args], stdout=out,
                                 stderr=err, cwd=self.tmp, env=dict(os.environ, CI="1"))
            deadline = time.monotonic() + bound
            while True:
                pid, status, usage = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    p.kill()
                    p.wait()
                    self.fail(f"surg {args[0]} ran for more than {bound} s")
                time.sleep(0.02)
            p.returncode = os.waitstatus_to_exitcode(status)
            self.rss = usage.ru_maxrss
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(), err.read().decode()
        self.assertGreaterEqual(p.returncode, 0, f"surg died of signal {-p.returncode}")
        diags = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
        return p.returncode, stdout, diags, stderr

    def assertOneError(self, diags, stderr, where, code, message, notes=None):
        errors = [d for d in diags if d["severity"] == "error"]
        self.assertEqual(len(errors), 1, stderr[:600])
        e = errors[0]
        self.assertEqual((e["file"], e["line"], e["column"], e["code"], e["message"]),
                         where + (code, message))
        if notes is not None:
            self.assertEqual(e["notes"], notes)


BUDGET_NOTE = ("each $0 or capture in a template copies part of the matched name, so a long "
               "template, or one that repeats them, makes long names from every match")


def budget_message(template, at, budget):
    return (f'template "{template}" makes more names than a recipe may: at "{at}", the names '
            f"its templates make go past {budget} bytes (256 MiB, and 8 for each byte of the "
            f"input's names)")


class TestTemplateBounds(HostileCase):
    def names_input(self, n):
        names = ["layer%06d/kernel" % i for i in range(n)]
        write_many(self.path("in.safetensors"), names)
        return names, 256 * 2**20 + 8 * sum(len(x.encode()) for x in names)

    def test_repeated_whole_name(self):
        """2000 $0 over 20k names of 18 bytes would make 720 MB of names
        (it did, and exited 0); the budget stops it at the name that goes
        past, in check, plan and run alike, and the memory stays bounded."""
        names, budget = self.names_input(20_000)
        template = "$0" * 2000
        self.recipe(f'rename "**" -> "{template}"\n')
        # each name costs 18 * 2000 bytes, 2000 pieces and its NUL
        cost = 18 * 2000 + 2000 + 1
        at = names[budget // cost]
        for args in (["check", "r.surg", "--from", "in.safetensors"],
                     ["plan", "r.surg", "--from", "in.safetensors"],
                     ["run", "r.surg", "in.safetensors", "out.safetensors"]):
            with self.subTest(args[0]):
                rc, out, diags, err = self.surg(*args)
                self.assertEqual(rc, 1, err[:300])
                self.assertOneError(diags, err, ("r.surg", 1, 16), "name-budget",
                                    budget_message("$0" * 32 + "…", at, budget),
                                    [BUDGET_NOTE])
                self.assertLess(self.rss, RSS_BOUND)
                self.assertFalse(os.path.exists(self.out))

    def test_empty_captures_cost_their_pieces(self):
        """500k references to an empty capture over 100k names make short
        names, but each costs the template's 500k pieces: 5e10 steps before
        (minutes); now refused within the budget."""
        names, budget = self.names_input(100_000)
        template = "$2" * 500_000 + "$1"
        self.recipe(f'rename "layer*/kernel*" -> "{template}"\n')
        cost = 6 + 500_001 + 1  # "$1" is the 6 digits
        rc, out, diags, err = self.surg("check", "r.surg", "--from", "in.safetensors")
        self.assertEqual(rc, 1, err[:300])
        self.assertOneError(diags, err, ("r.surg", 1, 28), "name-budget",
                            budget_message("$2" * 32 + "…", names[budget // cost], budget))

    def test_one_name_past_any_header(self):
        """A name of more than 100,000,000 bytes fits in no output (the
        largest safetensors header); refused where it is made, in tensor()
        as in rename."""
        name = "n" * 1000
        write_many(self.path("in.safetensors"), [name])
        message = ('template "' + "$0" * 32 + '…" makes a name of 100001000 bytes from "'
                   + "n" * 64 + '…": a name may be at most 100000000 bytes')
        note = ("no output holds a longer name: a safetensors header is at most 100000000 "
                "bytes, an .npz entry's name at most 65,535")
        for text, column in (('rename "**" -> "{}"\n', 16),
                             ('map "**" = x + tensor("{}")\n', 23)):
            with self.subTest(text):
                self.recipe(text.format("$0" * 100_001))
                rc, out, diags, err = self.surg("check", "r.surg", "--from", "in.safetensors")
                self.assertEqual(rc, 1, err[:300])
                self.assertOneError(diags, err, ("r.surg", 1, column), "name-budget", message,
                                    [note])

    def test_within_the_budget(self):
        """Ordinary templates over 100k names, statement after statement,
        are far from the budget."""
        self.names_input(100_000)
        self.recipe('rename "layer*/kernel" -> "model.layers.$1.weight"\n'
                    'rename "model.**" -> "m/$1"\n'
                    'rename "m/layers.*.weight" -> "blocks/$1/w"\n')
        rc, out, diags, err = self.surg("check", "r.surg", "--from", "in.safetensors")
        self.assertEqual((rc, diags), (0, []), err[:300])


class TestPatternMemory(HostileCase):
    def test_long_name_many_wildcards(self):
        """The search remembers failed states in one bit each, not four
        bytes: 65 tokens against a name of 10 MB took 2.6 GB."""
        with open(self.path("in.safetensors"), "wb") as f:
            name = "a" * 10_000_000 + "c"
            header = json.dumps({name: {"dtype": "U8", "shape": [], "data_offsets": [0, 1]},
                                 "b": {"dtype": "U8", "shape": [], "data_offsets": [1, 2]}})
            header += " " * (-len(header) % 8)
            f.write(len(header).to_bytes(8, "little") + header.encode() + b"\0\0")
        self.recipe('drop "' + "*a" * 31 + '*?c"\n')
        rc, out, diags, err = self.surg("check", "r.surg", "--from", "in.safetensors")
        self.assertEqual((rc, diags), (0, []), err[:300])
        self.assertEqual(out, "r.surg: ok: 2 tensors in, 1 out\n")
        self.assertLess(self.rss, 600 << 10)


class TestTiedInMirror(HostileCase):
    """params/c is tied to params/a (a surg.ties record); the Adam-like tree
    opt/mu/ mirrors params/. The tied name shares a's slot."""

    def setUp(self):
        super().setUp()
        self.v = {n: np.arange(k, k + 2, dtype=np.float32)
                  for k, n in enumerate(["params/a", "params/b", "opt/mu/a", "opt/mu/b",
                                         "other/x"])}
        self.v["other/x"] = np.array([7, 8], np.float32)
        stnp.save(self.path("in.safetensors"), {n: ("F32", v) for n, v in self.v.items()},
                  metadata={"surg.ties": json.dumps({"params/c": "params/a",
                                                     "params/d": "other/x"})})

    def run_ok(self, text):
        self.recipe('mirror "params/" -> "opt/mu/"\n' + text)
        rc, out, diags, err = self.surg("run", "r.surg", "in.safetensors", "out.safetensors")
        self.assertEqual((rc, [d for d in diags if d["severity"] == "error"]), (0, []), err)
        return stnp.load(self.out)[0]

    def test_concat_and_stack(self):
        for verb, join in (("concat", np.concatenate), ("stack", np.stack)):
            with self.subTest(verb):
                got = self.run_ok(f'{verb} "params/{{b,c}}" axis 0 -> "params/bc"\n')
                v = self.v
                np.testing.assert_array_equal(got["params/bc"][1],
                                              join([v["params/b"], v["params/a"]]))
                np.testing.assert_array_equal(got["opt/mu/bc"][1],
                                              join([v["opt/mu/b"], v["opt/mu/a"]]))
                # a keeps its value and its slot
                np.testing.assert_array_equal(got["opt/mu/a"][1], v["opt/mu/a"])
                self.assertNotIn("opt/mu/b", got)
                os.unlink(self.out)

    def test_split_and_unstack(self):
        got = self.run_ok('split "params/c" axis 0 -> "params/c1", "params/c2"\n')
        self.assertEqual(got["opt/mu/c1"][1].tolist(), [self.v["opt/mu/a"][0]])
        self.assertEqual(got["opt/mu/c2"][1].tolist(), [self.v["opt/mu/a"][1]])
        np.testing.assert_array_equal(got["opt/mu/a"][1], self.v["opt/mu/a"])
        os.unlink(self.out)
        got = self.run_ok('unstack "params/c" axis 0 -> "params/c$i"\n')
        self.assertEqual(got["opt/mu/c1"][1].tolist(), self.v["opt/mu/a"][1])
        self.assertEqual(got["params/c0"][1].tolist(), self.v["params/a"][0])

    def test_stored_outside_the_tree(self):
        """params/d is stored as other/x, which has no slot: its slot in
        the join is zeros of the slots' dtype."""
        got = self.run_ok('concat "params/{b,d}" axis 0 -> "params/bd"\n')
        np.testing.assert_array_equal(got["params/bd"][1], [1, 2, 7, 8])
        np.testing.assert_array_equal(got["opt/mu/bd"][1], [3, 4, 0, 0])


class TestMirrorBounds(HostileCase):
    def test_slot_trees_that_hold_nothing(self):
        """10k parameters against 100 slot prefixes of 4000 bytes under which
        nothing is: 50 errors and a count, with no name made per parameter
        and slot (4 GB of them before)."""
        write_many(self.path("in.safetensors"), ["params/l%05d" % i for i in range(10_000)])
        prefix = ["s%03d" % k + "s" * 3995 + "/" for k in range(100)]
        self.recipe("mirror \"params/\" -> " + ", ".join(f'"{p}"' for p in prefix) + "\n")
        rc, out, diags, err = self.surg("check", "r.surg", "--from", "in.safetensors")
        self.assertEqual(rc, 1)
        self.assertEqual(len(diags), 51)
        self.assertEqual(diags[0]["message"],
                         f'"params/l00000" has no optimizer slot "{prefix[0]}l00000"')
        self.assertEqual(diags[-1]["message"],
                         "and %d more mismatched slots" % (10_000 * 100 - 50))
        self.assertLess(self.rss, RSS_BOUND)

    def test_prefix_bounds(self):
        write_many(self.path("in.safetensors"), ["params/w", "s/w"])
        slots = ", ".join('"s%03d/"' % k for k in range(300))
        self.recipe(f'mirror "params/" -> {slots}\n')
        rc, out, diags, err = self.surg("check", "r.surg", "--from", "in.safetensors")
        self.assertEqual(rc, 1)
        column = 21 + 255 * len('"s000/", ')
        self.assertOneError(diags, err, ("r.surg", 1, column), "mirror-prefix",
                            "more than 256 mirror prefixes: a recipe's mirror statements "
                            "declare at most 256 trees in all")
        self.recipe('mirror "params/" -> "' + "s" * 5000 + '/"\n')
        rc, out, diags, err = self.surg("check", "r.surg", "--from", "in.safetensors")
        self.assertEqual(rc, 1)
        self.assertOneError(diags, err, ("r.surg", 1, 21), "mirror-prefix",
                            "a mirror prefix may be at most 4096 bytes, not 5001")


class TestFreeSpace(HostileCase):
    def test_output_larger_than_the_free_space(self):
        """On a 1 MiB tmpfs a 4 MB output is refused before it is reserved,
        naming both sizes; nothing is left behind."""
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        mnt = self.path("mnt")
        os.mkdir(mnt)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt],
                          capture_output=True).returncode != 0:
            self.skipTest("cannot mount a tmpfs here")
        try:
            stnp.save(self.path("in.safetensors"), {"a": ("F32", np.zeros(4, np.float32))})
            self.recipe('fill "x" : f32[1000000] = 0\n')
            rc, out, diags, err = self.surg("run", "r.surg", "in.safetensors",
                                            "mnt/o.safetensors")
            self.assertEqual(rc, 2)
            self.assertEqual([(d["file"], d["code"], d["message"]) for d in diags],
                             [("mnt/o.safetensors", "io",
                               "cannot reserve room for the output: it needs 4000176 bytes, "
                               "and the file system has 1048576 free")])
            self.assertEqual(os.listdir(mnt), [])
        finally:
            subprocess.run(["umount", mnt], check=True)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ARGS, rest = ap.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
