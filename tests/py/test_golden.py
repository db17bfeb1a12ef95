#!/usr/bin/env python3
"""Golden tests of the front end and the compiler: for every recipe under
tests/golden/syntax,
the formatted text (.fmt), the syntax tree (.tree) or the exact diagnostics
(.err, caret included) must equal the checked-in file, and likewise the
diagnostics of `surg check` for every recipe under tests/golden/check/errors;
`surg fmt` must be idempotent and keep the tree, over the golden recipes and
every example; real migrations must check clean.

Run with --update to rewrite the expected files after a deliberate change
(then review the diff)."""
import argparse
import glob
import os
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
ARGS = None


def surg(*args, stdin=None):
    p = subprocess.run([ARGS.surg, "--color", "never", *args], input=stdin,
                       capture_output=True, cwd=ARGS.golden)
    return (p.returncode, p.stdout.decode(errors="surrogateescape"),
            p.stderr.decode(errors="surrogateescape"))


def expect_file(test, path, actual):
    full = os.path.join(ARGS.golden, path)
    if ARGS.update:
        with open(full, "w", errors="surrogateescape") as f:
            f.write(actual)
        return
    with open(full, errors="surrogateescape") as f:
        test.assertEqual(f.read(), actual, f"{path} differs")


def recipes(sub):
    return sorted(os.path.relpath(p, ARGS.golden)
                  for p in glob.glob(os.path.join(ARGS.golden, sub, "*.surg")))


class Golden(unittest.TestCase):
    def test_errors(self):
        cases = recipes("syntax/errors")
        self.assertGreaterEqual(len(cases), 30)
        for rel in cases:
            with self.subTest(rel):
                rc, out, err = surg("fmt", rel)
                self.assertEqual(rc, 1, f"{rel} should be rejected")
                self.assertEqual(out, "")
                self.assertIn(f"{rel}:", err)
                expect_file(self, rel[:-5] + ".err", err)

    def test_formatted(self):
        for rel in recipes("syntax/fmt"):
            with self.subTest(rel):
                rc, out, err = surg("fmt", rel)
                self.assertEqual((rc, err), (0, ""))
                expect_file(self, rel[:-5] + ".fmt", out)
                rc, tree, err = surg("fmt", "--tree", rel)
                self.assertEqual((rc, err), (0, ""))
                expect_file(self, rel[:-5] + ".tree", tree)

    def test_idempotent_and_meaning_kept(self):
        paths = [os.path.join(ARGS.golden, r) for r in recipes("syntax/fmt")]
        paths += sorted(glob.glob(os.path.join(ARGS.examples, "**", "*.surg"),
                                  recursive=True))
        self.assertTrue(paths)
        for path in paths:
            with self.subTest(path):
                rc, once, err = surg("fmt", path)
                self.assertEqual((rc, err), (0, ""))
                rc, twice, _ = surg("fmt", "-", stdin=once.encode())
                self.assertEqual(once, twice, "fmt is not idempotent")
                _, tree_in, _ = surg("fmt", "--tree", path)
                _, tree_out, _ = surg("fmt", "--tree", "-", stdin=once.encode())
                self.assertEqual(tree_in, tree_out, "fmt changed the tree")
                rc, _, err = surg("fmt", "--check", "-", stdin=once.encode())
                self.assertEqual((rc, err), (0, ""))

    def test_check_errors(self):
        """Every compile error of SPEC §3, as `surg check` prints it."""
        cases = recipes("check/errors")
        self.assertGreaterEqual(len(cases), 40)
        for rel in cases:
            with self.subTest(rel):
                rc, out, err = surg("check", rel, "--from", "check/model.json")
                self.assertEqual(rc, 1, f"{rel} should be rejected")
                self.assertEqual(out, "")
                expect_file(self, rel[:-5] + ".err", err)

    def test_check_t5x(self):
        """mirror's slots beside each parameter and factored slots, on t5x's
        Adafactor state: every mismatch and every move they cannot follow."""
        cases = recipes("check/t5x")
        self.assertGreaterEqual(len(cases), 7)
        for rel in cases:
            with self.subTest(rel):
                rc, out, err = surg("check", rel, "--from", "check/t5x.json")
                self.assertEqual(rc, 1, f"{rel} should be rejected")
                self.assertEqual(out, "")
                expect_file(self, rel[:-5] + ".err", err)

    def test_check_inputs(self):
        """Several inputs (--in NAME=PATH), each under NAME/: a pattern that
        lacks an input's prefix is told which; one output keeping names
        under an input's prefix beside names moved out is warned of."""
        cases = recipes("check/inputs")
        self.assertGreaterEqual(len(cases), 3)
        for rel in cases:
            with self.subTest(rel):
                rc, out, err = surg("check", rel, "--in", "base=check/inputs/base.json",
                                    "--in", "lora=check/inputs/lora.json")
                self.assertEqual(rc, 1 if "error:" in err else 0, err)
                self.assertEqual(out, "" if rc else f"{rel}: ok: 10 tensors in, 10 out\n")
                expect_file(self, rel[:-5] + ".err", err)

    def test_check_lora_merge(self):
        """merge-lora: every mismatch between an adapter's config and its
        weights, and between the adapter and its base, against schemas of a
        bf16 base, a PEFT adapter (its adapter_config.json beside it) and
        broken adapters under bad/x1/, bad/x2/, ..."""
        cases = recipes("check/lora_merge")
        self.assertGreaterEqual(len(cases), 20)
        for rel in cases:
            with self.subTest(rel):
                rc, out, err = surg("check", rel,
                                    "--in", "base=check/lora_merge/base.json",
                                    "--in", "lora=check/lora_merge/adapter/lora.json",
                                    "--in", "bad=check/lora_merge/bad/lora.json")
                self.assertEqual(rc, 1, f"{rel} should be rejected")
                self.assertEqual(out, "")
                expect_file(self, rel[:-5] + ".err", err)

    def test_check_warnings(self):
        """Warnings of a recipe that compiles (exit 0): init-lora style flax
        on what looks like a PyTorch weight ([out, in]), and none where the
        style fits."""
        cases = recipes("check/warnings")
        self.assertGreaterEqual(len(cases), 3)
        for rel in cases:
            with self.subTest(rel):
                rc, out, err = surg("check", rel, "--from", "check/warnings/model.json")
                self.assertEqual(rc, 0, err)
                self.assertTrue(out.startswith(rel + ": ok: 5 tensors in, "), out)
                expect_file(self, rel[:-5] + ".err", err)

    def test_syntax_hides_nothing(self):
        """Two syntax errors and six others in one recipe: all eight are
        reported, by check and by run (which writes nothing)."""
        rel = "check/errors/d07-syntax-and-semantic.surg"
        rc, out, err = surg("check", rel, "--from", "check/model.json")
        self.assertEqual((rc, out), (1, ""))
        self.assertEqual(err.count(": error: "), 8, err)
        self.assertEqual(err.count("error: unknown statement"), 1)
        self.assertEqual(err.count("error: expected '->'"), 1)
        with tempfile.TemporaryDirectory() as d:
            out_path = os.path.join(d, "o.safetensors")
            rc, out, run_err = surg("run", rel, "check/model.json", out_path)
            self.assertEqual((rc, out, run_err), (1, "", err))
            self.assertEqual(os.listdir(d), [])

    def test_check_meta(self):
        """meta statements: every error of a metadata value, key or pattern,
        against a schema with metadata and values a msgpack input kept."""
        cases = recipes("check/meta")
        self.assertGreaterEqual(len(cases), 18)
        for rel in cases:
            with self.subTest(rel):
                rc, out, err = surg("check", rel, "--from", "check/meta/meta.json")
                self.assertEqual(rc, 1, f"{rel} should be rejected")
                self.assertEqual(out, "")
                expect_file(self, rel[:-5] + ".err", err)

    def test_schema_errors(self):
        """Every error of a schema file (flat or a nested pytree), as `surg
        schema` prints it."""
        cases = sorted(os.path.relpath(p, ARGS.golden)
                       for p in glob.glob(os.path.join(ARGS.golden, "schema", "*.json")))
        self.assertGreaterEqual(len(cases), 6)
        for rel in cases:
            with self.subTest(rel):
                rc, out, err = surg("schema", rel)
                self.assertEqual((rc, out), (1, ""), err)
                expect_file(self, rel[:-5] + ".err", err)

    def test_check_target(self):
        """--to: every missing, unexpected and mismatched tensor, in name order."""
        rc, out, err = surg("check", "check/target.surg", "--from", "check/model.json",
                            "--to", "check/target.json")
        self.assertEqual((rc, out), (1, ""))
        expect_file(self, "check/target.err", err)

    def test_check_target_cases(self):
        """--to, issue 17 §4: a missing and an unexpected tensor of one type
        paired ("renamed?", with the rename), transposes with the map that
        fixes them, each problem at the statement that caused it; each case
        NAME.surg runs against NAME.from.json, to NAME.to.json."""
        cases = recipes("check/target")
        self.assertGreaterEqual(len(cases), 8)
        for rel in cases:
            with self.subTest(rel):
                base = rel[:-5]
                rc, out, err = surg("check", rel, "--from", base + ".from.json",
                                    "--to", base + ".to.json")
                self.assertEqual((rc, out), (1, ""), err)
                expect_file(self, base + ".err", err)

    def test_check_target_fixes(self):
        """The statements the notes give ("to match the target: ...",
        "then: ..."), added to the recipe, make it match the target."""
        for name in ("01-renamed", "02-renamed-untouched", "03-torch-to-flax",
                     "04-transposed", "09-odd-names"):
            with self.subTest(name):
                base = "check/target/" + name
                _, _, err = surg("check", base + ".surg", "--from", base + ".from.json",
                                 "--to", base + ".to.json")
                fixes = [line.split(": ", 2)[2] for line in err.splitlines()
                         if line.startswith(("note: to match the target: ", "note: then: "))]
                self.assertTrue(fixes, err)
                with open(os.path.join(ARGS.golden, base + ".surg")) as f:
                    text = f.read() + "\n".join(fixes) + "\n"
                rc, out, err = surg("check", "-", "--from", base + ".from.json", "--to",
                                    base + ".to.json", stdin=text.encode())
                self.assertEqual((rc, err), (0, ""), text)
                self.assertTrue(out.endswith("matching the target\n"), out)

    def test_check_target_github(self):
        """GitHub annotations of --to land on the recipe's line when a
        statement caused the problem, else on the target."""
        def github(base):
            rc, out, err = surg("--diagnostics", "github", "check", base + ".surg", "--from",
                                base + ".from.json", "--to", base + ".to.json")
            self.assertEqual((rc, out), (1, ""))
            return err
        self.assertEqual(github("check/target/07-renamed-away"),
                         "::error file=check/target/07-renamed-away.surg,line=1,col=30,"
                         "endLine=1,endColumn=49::the result has \"params/encoder/kernel\" "
                         "where the target has \"params/Dense_0/kernel\" (f32[4, 4]): "
                         "renamed?%0Anote: \"params/Dense_0/kernel\" was renamed to "
                         "\"params/encoder/kernel\" on line 1%0Anote: to match the target: "
                         "rename \"params/encoder/kernel\" -> \"params/Dense_0/kernel\"\n")
        self.assertEqual(github("check/target/02-renamed-untouched"),
                         "::error file=check/target/02-renamed-untouched.to.json::the "
                         "result has \"a/w\" where the target has \"a/kernel\" (f32[3, 5]): "
                         "renamed?%0Anote: to match the target: rename \"a/w\" -> "
                         "\"a/kernel\"\n")

    def test_help(self):
        """surg --help, surg run --help (= surg help run) and the help
        topics: the statements, the patterns and an example (issue 17 §5)."""
        os.makedirs(os.path.join(ARGS.golden, "help"), exist_ok=True)
        for args, name in ((["--help"], "usage"), (["run", "--help"], "run"),
                           (["help", "recipe"], "recipe"), (["help", "globs"], "globs"),
                           (["help", "example"], "example")):
            with self.subTest(name):
                rc, out, err = surg(*args)
                self.assertEqual((rc, err), (0, ""))
                expect_file(self, "help/%s.txt" % name, out)
        self.assertEqual(surg("help"), surg("--help"))
        self.assertEqual(surg("help", "run"), surg("run", "--help"))
        self.assertEqual(surg("help", "check"), surg("check", "--help"))
        self.assertEqual(surg("help", "language"), surg("help", "recipe"))
        for name in ("usage", "run"):
            with open(os.path.join(ARGS.golden, "help", name + ".txt")) as f:
                text = f.read()
            for part in ("recipe", "globs", "example"):
                with open(os.path.join(ARGS.golden, "help", part + ".txt")) as f:
                    self.assertIn(f.read(), text)
        self.assertEqual(surg("help", "frobnicate"),
                         (2, "", "surg help: no help on 'frobnicate': the topics are the "
                          "commands (run, check, plan, fmt, schema, diff, invert), recipe and "
                          "globs\n(see `surg help --help`)\n"))
        self.assertEqual(surg("help", "run", "check")[0], 2)

    def test_migrations(self):
        """Real migrations of Flax's guides check clean, against the target."""
        ex = ARGS.examples
        mlp = os.path.join(ex, "mlp", "two_layer_mlp.json")
        modified = os.path.join(ex, "mlp", "modified_two_layer_mlp.json")
        rename = os.path.join(ARGS.golden, "check", "ok", "mlp_rename.surg")
        rc, out, err = surg("check", rename, "--from", mlp, "--to", modified)
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("ok: 13 tensors in, 13 out, matching the target", out)
        # Without the rename the target is not met: each layer is named.
        keep = os.path.join(ARGS.golden, "check", "ok", "mlp_keep.surg")
        rc, out, err = surg("check", keep, "--from", mlp, "--to", modified)
        self.assertEqual(rc, 1)
        self.assertIn('error: the result has "params/linear1/kernel" where the target has '
                      '"params/layer1/kernel" (f32[4, 4]): renamed?\nnote: to match the '
                      'target: rename "params/linear1/kernel" -> "params/layer1/kernel"\n', err)
        cnn = os.path.join(ARGS.golden, "check", "cnn.json")
        rc, out, err = surg("check", os.path.join(ex, "cnn_normalize.surg"), "--from", cnn,
                            "--to", cnn)
        self.assertEqual((rc, err), (0, ""))
        rc, out, err = surg("check", os.path.join(ex, "mlp_port_lora.surg"), "--from", mlp)
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("13 tensors in, 19 out", out)

    def test_check(self):
        rc, _, err = surg("fmt", "--check", "syntax/fmt/layout.surg")
        self.assertEqual(rc, 1)
        self.assertIn("syntax/fmt/layout.surg: not formatted", err)
        rc, _, err = surg("fmt", "--check", "syntax/fmt/statements.surg")
        self.assertEqual((rc, err), (0, ""))

    def test_diagnostic_formats(self):
        rc, _, err = surg("--diagnostics", "json", "fmt", "syntax/errors/01-unknown-statement.surg")
        self.assertEqual(rc, 1)
        self.assertEqual(err, '{"file":"syntax/errors/01-unknown-statement.surg","line":1,'
                         '"column":1,"end_line":1,"end_column":6,"severity":"error",'
                         '"code":"syntax-statement","message":"unknown statement '
                         '\'renme\'","notes":["did you mean \'rename\'?"]}\n')
        rc, _, err = surg("--diagnostics", "github", "fmt", "syntax/errors/32-many-errors.surg")
        self.assertEqual(rc, 1)
        lines = err.splitlines()
        self.assertEqual(len(lines), 3)
        self.assertEqual(lines[0], "::error file=syntax/errors/32-many-errors.surg,line=2,col=1,"
                         "endLine=2,endColumn=7::unknown statement 'renmae'%0A"
                         "note: did you mean 'rename'?")
        rc, _, err = surg("--color", "always", "fmt", "syntax/errors/01-unknown-statement.surg")
        self.assertIn("\033[1;31merror:", err)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ap.add_argument("--golden", required=True)
    ap.add_argument("--examples", required=True)
    ap.add_argument("--update", action="store_true")
    ARGS, rest = ap.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    ARGS.golden = os.path.abspath(ARGS.golden)
    ARGS.examples = os.path.abspath(ARGS.examples)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=1)


if __name__ == "__main__":
    main()
