#!/usr/bin/env python3
"""test_bounds.py: recipes built to exhaust the stack or the clock — deep
expressions, long chains of statements, chained reductions, shared nodes —
each ends well within its time bound, with success and the right values or
with the exact diagnostic at the place the bound is crossed; none crashes.

  * an expression nests at most 256 levels (a 200k-term sum, 100k nested
    parentheses, 20k signs: syntax-depth, from fmt, check, plan and run);
  * a value is at most 1024 operations deep (20k chained maps: graph-depth at
    the statement that goes past it);
  * planning is linear (80 chained x / norm(x), doubling concatenations,
    slices of 2^40 rows), and the executor never sleeps (40 reduction levels);
  * a chain of x + x is evaluated once per level (100 levels: 2^100 * x).

usage: test_bounds.py --surg SURG [unittest args]
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
BOUND = 20.0  # seconds: generous, to catch hangs, not to time anything


class BoundsCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-bounds-")
        self.tmp = self._tmp.name
        self.ck = self.path("in.safetensors")
        stnp.save(self.ck, {"w": ("F32", np.arange(1, 17, dtype=np.float32)),
                            "v": ("F32", np.full(16, 0.5, np.float32))})
        self.out = self.path("out.safetensors")

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def recipe(self, text, name="r.surg"):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def surg(self, *args, bound=BOUND):
        """(exit code, stdout, diagnostics as JSON objects), within `bound`."""
        t0 = time.monotonic()
        try:
            r = subprocess.run([ARGS.surg, "--diagnostics", "json", *args],
                               capture_output=True, timeout=bound, cwd=self.tmp,
                               env=dict(os.environ, CI="1"))
        except subprocess.TimeoutExpired:
            self.fail(f"surg {' '.join(args[:1])} ran for more than {bound} s")
        self.assertGreaterEqual(r.returncode, 0, f"surg died of signal {-r.returncode}")
        diags = [json.loads(line) for line in r.stderr.decode().splitlines()
                 if line.startswith("{")]
        self.elapsed = time.monotonic() - t0
        return r.returncode, r.stdout.decode(), diags, r.stderr.decode()

    def assertOnlyError(self, diags, stderr, line, column, code, message):
        errors = [d for d in diags if d["severity"] == "error"]
        self.assertTrue(errors, f"no error diagnostic: {stderr[:300]}")
        e = errors[0]
        self.assertEqual((e["file"], e["line"], e["column"], e["code"], e["message"]),
                         ("r.surg", line, column, code, message))
        self.assertEqual(len(errors), 1, [d["message"] for d in errors])
        return e

    def assertRejected(self, line, column, code, message, commands=("fmt", "check", "plan",
                                                                     "run")):
        """Every command refuses r.surg with exactly this one error; run
        writes nothing."""
        for cmd in commands:
            with self.subTest(cmd):
                args = {"fmt": ["fmt", "r.surg"],
                        "check": ["check", "r.surg", "--from", self.ck],
                        "plan": ["plan", "r.surg", "--from", self.ck],
                        "run": ["run", "r.surg", self.ck, self.out]}[cmd]
                rc, out, diags, err = self.surg(*args)
                self.assertEqual(rc, 1, err[:300])
                self.assertEqual(out, "")
                self.assertOnlyError(diags, err, line, column, code, message)
                self.assertFalse(os.path.exists(self.out))

    def result(self):
        return stnp.load(self.out)[0]["w"][1]


EXPR_DEPTH = "this expression nests more than 256 levels deep"
PARENS = "parentheses nest more than 256 levels deep"
GRAPH_DEPTH = "this statement makes a value more than 1024 operations deep"


class TestExpressionDepth(BoundsCase):
    def test_sum_of_200k_terms(self):
        """x+x+...: the tree leans left 200k deep; the 256th '+' is where it
        goes past the bound (column 10 + 2 * 256)."""
        self.recipe('map "w" = ' + "+".join(["x"] * 200_000) + "\n")
        self.assertRejected(1, 10 + 2 * 256, "syntax-depth", EXPR_DEPTH)

    def test_nested_parentheses(self):
        """100k: the 257th '(' is refused, and the parser's stack never
        fills ("memory exhausted" before)."""
        self.recipe('map "w" = ' + "(" * 100_000 + "x" + ")" * 100_000 + "\n")
        self.assertRejected(1, 11 + 256, "syntax-depth", PARENS)

    def test_parentheses_at_the_bound(self):
        """Parentheses make no level of the tree: 256 pairs around x * 2
        run (the most the lexer takes open at once); the 257th '(' is
        refused."""
        self.recipe('map "w" = ' + "(" * 256 + "x * 2" + ")" * 256 + "\n")
        rc, out, diags, err = self.surg("run", "r.surg", self.ck, self.out)
        self.assertEqual((rc, diags), (0, []), err)
        np.testing.assert_array_equal(self.result(), np.arange(1, 17, dtype=np.float32) * 2)
        os.unlink(self.out)
        self.recipe('map "w" = ' + "(" * 257 + "x" + ")" * 257 + "\n")
        self.assertRejected(1, 11 + 256, "syntax-depth", PARENS, commands=("fmt",))

    def test_formatted_deep_signs_parse_again(self):
        """fmt writes - - x as -(-x): its parentheses must not push a
        recipe at the bound past it (fuzz_recipe found 255 signs formatted
        into text that no longer parsed)."""
        for n in (255, 256):
            self.recipe('map "w" = ' + "- " * (n - 1) + "x\n")
            rc, once, diags, err = self.surg("fmt", "r.surg")
            self.assertEqual((rc, diags), (0, []), err[:300])
            self.assertEqual(once.count("("), n - 2)
            self.recipe(once, name="once.surg")
            rc, twice, diags, err = self.surg("fmt", "once.surg")
            self.assertEqual((rc, diags, twice), (0, [], once), err[:300])

    def test_nested_calls_and_signs(self):
        """abs(abs(...)) nests by its parentheses; - - - x by its signs. The
        statement is dropped; the next one is still checked."""
        self.recipe('map "w" = ' + "- " * 300 + "x\nrenme \"w\"\n")
        rc, _, diags, err = self.surg("fmt", "r.surg")
        self.assertEqual(rc, 1)
        self.assertEqual([(d["line"], d["column"], d["code"]) for d in diags],
                         [(1, 10 + 2 * (300 - 256) + 1, "syntax-depth"),
                          (2, 1, "syntax-statement")])
        self.assertEqual(diags[0]["message"], EXPR_DEPTH)
        self.recipe('map "w" = ' + "abs(" * 300 + "x" + ")" * 300 + "\n")
        self.assertRejected(1, 11 + 4 * 256 + 3, "syntax-depth", PARENS, commands=("fmt",))

    def test_parser_stack_bound(self):
        """20k signs fill the parser's own stack before any node is made:
        that is said as a depth error, not as "out of memory"."""
        self.recipe('map "w" = ' + "-" * 20_000 + "x\n")
        self.assertRejected(1, 11 + 9_994, "syntax-depth",
                            "this statement nests too deeply to parse (more than 10000 levels)",
                            commands=("fmt", "check"))


class TestGraphDepth(BoundsCase):
    def test_20k_chained_maps(self):
        """Each map adds a multiplication: the one that makes the value
        1025 operations deep (the input is 1) is refused, once."""
        self.recipe('map "w" = x * 2\n' * 20_000)
        self.assertRejected(1024, 1, "graph-depth", GRAPH_DEPTH, commands=("check", "run"))

    def test_chain_at_the_bound(self):
        """1023 maps: 1024 operations deep, run on the worker threads."""
        self.recipe('map "w" = x * 2\nmap "w" = x * 0.5\n' * 511 + 'map "w" = x + 1\n')
        rc, out, diags, err = self.surg("run", "r.surg", self.ck, self.out, "--threads", "2")
        self.assertEqual((rc, diags), (0, []), err)
        np.testing.assert_array_equal(self.result(), np.arange(2, 18, dtype=np.float32))

    def test_chain_of_x_plus_x(self):
        """Every value of a chunk is kept: 100 levels of x + x cost 100
        additions (a memo of 64 values made it 2^36, out of scratch)."""
        self.recipe('map "w" = x + x\n' * 100)
        rc, out, diags, err = self.surg("run", "r.surg", self.ck, self.out)
        self.assertEqual((rc, diags), (0, []), err)
        np.testing.assert_array_equal(self.result(),
                                      np.arange(1, 17, dtype=np.float32) * np.float32(2.0**100))


def norm_chain(w, n):
    """x / norm(x), n times, in f32 as surg computes it (the norm in double,
    rounded to f32; the division in f32)."""
    w = w.astype(np.float32)
    for _ in range(n):
        norm = np.float32(np.sqrt(np.sum(w.astype(np.float64) ** 2)))
        w = (w / norm).astype(np.float32)
    return w


class TestLinearTime(BoundsCase):
    def test_80_chained_norms(self):
        """plan took 0.5 s at 56 statements, 8 s at 60, and never ended at
        80 (fusion remembered passes in 32 bits)."""
        self.recipe('map "w" = x / norm(x)\n' * 80)
        rc, out, diags, err = self.surg("plan", "r.surg", "--from", self.ck)
        self.assertEqual((rc, diags), (0, []), err)
        self.assertRegex(out, r"w\s+f32\[16\]\s+compute\s+81 passes")
        rc, out, diags, err = self.surg("plan", "r.surg", "--from", self.ck, "--json")
        self.assertEqual(rc, 0, err)
        t = [t for t in json.loads(out)["tensors"] if t["name"] == "w"][0]
        self.assertEqual((t["passes"], t["read"]), (81, 81 * 64))  # w read in every pass
        rc, out, diags, err = self.surg("run", "r.surg", self.ck, self.out)
        self.assertEqual((rc, diags), (0, []), err)
        np.testing.assert_allclose(self.result(), norm_chain(np.arange(1, 17), 80),
                                   rtol=1e-6)

    def test_long_lists_parse_in_linear_time(self):
        """Lists (split's targets, keep's patterns, sizes, a call's
        arguments) grew by walking to their end: 200k split targets took
        35 s to parse."""
        n = 200_000
        targets = ", ".join('"p%d"' % i for i in range(n))
        self.recipe('split "w" axis 0 -> %s\n' % targets)
        rc, out, diags, err = self.surg("fmt", "r.surg")
        self.assertEqual((rc, diags), (0, []), err[:300])
        self.assertEqual(out.count('"p'), n)
        rc, out, diags, err = self.surg("check", "r.surg", "--from", self.ck)
        self.assertEqual(rc, 1)
        self.assertEqual(diags[0]["message"], 'axis 0 of "w" has 16 elements, which do not '
                                              'split into 200000 equal parts')
        self.recipe("keep %s\n" % ", ".join('optional "k%d"' % i for i in range(n)) +
                    'map "v" = clip(x, %s)\n' % ", ".join(["1"] * n))
        rc, out, diags, err = self.surg("fmt", "r.surg")
        self.assertEqual(rc, 0, err[:300])
        self.assertEqual(out.count("optional"), n)

    def test_40_reduction_levels_run_without_sleeping(self):
        """Each level was a run of jobs the executor polled every 100 ms:
        4 s for 40 levels of a 16-element tensor. The last worker to stop
        wakes it: well under 3 s, on any machine."""
        self.recipe('map "w" = tensor("v") * mean(x)\n' * 40)
        rc, out, diags, err = self.surg("run", "r.surg", self.ck, self.out, "--threads", "2",
                                        bound=3.0)
        self.assertEqual((rc, diags), (0, []), err)
        w = np.arange(1, 17, dtype=np.float32)
        for _ in range(40):
            w = (np.float32(0.5) * np.float32(np.mean(w.astype(np.float64)))) * np.ones(16, np.float32)
        np.testing.assert_allclose(self.result(), w, rtol=1e-6)

    def test_doubling_concatenation(self):
        """c = concat(c, c), 50 times (tensor() makes the second part the
        same node): each shared node is looked at once, not 2^50 times."""
        stnp.save(self.ck, {"a": ("U8", np.array([7], np.uint8)),
                            "b": ("U8", np.array([9], np.uint8))})
        lines = ['drop "b"']
        for i in range(50):
            lines += [f'fill "b" : u8[{2**i}] = zeros', 'map "b" = tensor("a")',
                      'concat "{a,b}" axis 0 -> "a"']
        self.recipe("\n".join(lines) + "\n")
        rc, out, diags, err = self.surg("plan", "r.surg", "--from", self.ck)
        self.assertEqual((rc, diags), (0, []), err)
        self.assertRegex(out, r"a\s+u8\[1125899906842624\]\s+move")
        # The same for 12 levels, run: 4096 copies of the byte.
        self.recipe("\n".join(lines[:1 + 3 * 12]) + "\n")
        rc, out, diags, err = self.surg("run", "r.surg", self.ck, self.out)
        self.assertEqual((rc, diags), (0, []), err)
        got = stnp.load(self.out)[0]
        self.assertEqual(list(got), ["a"])
        np.testing.assert_array_equal(got["a"][1], np.full(4096, 7, np.uint8))

    def test_runs_of_2_to_the_40_rows(self):
        """A slice or a one-part concat of 2^40 adjacent rows merged into one
        range row by row; now bounded, and a strided move instead."""
        schema = self.path("big.json")
        with open(schema, "w") as f:
            json.dump({"w": {"dtype": "U8", "shape": [2**40, 2]}}, f)
        for text, name in (('split "w" axis 1 sizes 2 -> "a"\n', "a"),
                           ('concat "w" axis 1 -> "a"\n', "a")):
            with self.subTest(text):
                self.recipe(text)
                rc, out, diags, err = self.surg("plan", "r.surg", "--from", schema)
                self.assertEqual((rc, diags), (0, []), err)
                self.assertRegex(out, name + r"\s+u8\[1099511627776, 2\]\s+move")


class TestTargetPairs(BoundsCase):
    """--to pairs missing and unexpected names by sorting on their types
    (issue 17 §4): 100k of each answer within the bound, paired one to one
    where each layer's names agree, and left apart where no pairing is
    sure."""

    def schema(self, name, tensors):
        p = self.path(name)
        with open(p, "w") as f:
            json.dump({k: {"dtype": "F32", "shape": s} for k, s in tensors.items()}, f)
        return p

    def test_100k_renamed_layers(self):
        n = 100_000
        src = self.schema("from.json", {"old.%d.w" % i: [2, 3] for i in range(n)})
        dst = self.schema("to.json", {"new.%d.w" % i: [2, 3] for i in range(n)})
        self.recipe('keep "**"\n')
        rc, out, diags, err = self.surg("check", "r.surg", "--from", src, "--to", dst)
        self.assertEqual((rc, out), (1, ""))
        self.assertEqual(len(diags), n)
        want = {'the result has "old.%d.w" where the target has "new.%d.w" (f32[2, 3]): '
                'renamed?' % (i, i) for i in range(n)}
        self.assertEqual({d["message"] for d in diags}, want)
        self.assertEqual({d["code"] for d in diags}, {"target-renamed"})

    def test_one_large_group(self):
        """50k missing and 50k unexpected of one type and no digits to go
        by: paired in natural order; 50k against 49,999: none is paired."""
        n = 50_000
        def word(i):
            return "".join("abcdefghij"[int(c)] for c in "%05d" % i)
        src = self.schema("from.json", {"p/%s" % word(i): [4] for i in range(n)})
        dst = self.schema("to.json", {"q/%s" % word(i): [4] for i in range(n)})
        self.recipe('keep "**"\n')
        rc, _, diags, err = self.surg("check", "r.surg", "--from", src, "--to", dst)
        self.assertEqual(rc, 1)
        self.assertEqual(len(diags), n)
        self.assertEqual(diags[0]["message"], 'the result has "p/aaaaa" where the target has '
                         '"q/aaaaa" (f32[4]): renamed?')
        dst = self.schema("to.json", {"q/%s" % word(i): [4] for i in range(n - 1)})
        rc, _, diags, err = self.surg("check", "r.surg", "--from", src, "--to", dst)
        self.assertEqual(rc, 1)
        self.assertEqual(len(diags), 2 * n - 1)
        self.assertEqual({d["code"] for d in diags}, {"target-missing", "target-unexpected"})


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ARGS, rest = ap.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
