"""test_man.py: the man pages and the bash completion say what the command
and the language have: every command `surg --help` lists has its section in
surg(1) and is completed; every option of `surg COMMAND --help` is in that
section and is completed; every statement of docs/language.md and every
function of its INIT and EXPR tables is in surg-recipe(5); the recipes in
surg-recipe(5) are valid (its synopsis compiles against the MLP example's
schema), and the commands in surg(1)'s examples exist.

usage: test_man.py --surg SURG --root DIR [unittest args]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import unittest

ARGS = None
OPTION = re.compile(r"(?<![\w-])--?[a-z][a-z-]*")


def read(rel):
    with open(os.path.join(ARGS.root, rel), encoding="utf-8") as f:
        return f.read()


def surg(*args, stdin=""):
    r = subprocess.run([ARGS.surg] + list(args), input=stdin, capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stdout, r.stderr


def help_sections():
    """{'commands': [...], 'options': [...]} from `surg --help`."""
    rc, out, _ = surg("--help")
    assert rc == 0
    sections, current = {}, None
    for line in out.splitlines():
        m = re.fullmatch(r"(\w+):", line)
        if m:
            current = sections.setdefault(m.group(1), [])
        elif current is not None and line.strip():
            current.append(line)
        else:
            current = None
    return sections


def help_commands():
    return list(dict.fromkeys(m.group(1) for line in help_sections()["commands"]
                              if (m := re.match(r"  ([a-z]+) ", line))))


def command_options(cmd):
    rc, out, _ = surg(cmd, "--help")
    assert rc == 0, cmd
    return set(OPTION.findall(out)) - {"-h", "--help"}


def man_text(rel):
    """A page's source with troff's escapes for '-' and quotes undone."""
    return read(rel).replace("\\-", "-").replace("\\(dq", '"').replace("\\(rs", "\\")


def man_sections(rel, macro):
    """{title: text} of a page's .SH (macro 'SH') or .SS sections."""
    out, title = {}, None
    for line in man_text(rel).splitlines():
        m = re.match(r"\.(SH|SS) (.*)", line)
        if m:
            title = m.group(2).strip('"') if m.group(1) == macro else title
            if m.group(1) == macro:
                out[title] = ""
            continue
        if title is not None:
            out[title] += line + "\n"
    return out


def completion(expr):
    """The words a shell expression of the completion script prints."""
    script = os.path.join(ARGS.root, "completion/surg.bash")
    r = subprocess.run(["bash", "-c", f'source "$1"; {expr}', "_", script],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr, r.stderr
    return r.stdout.split()


def markdown_section(text, heading):
    m = re.search(r"^#+ " + re.escape(heading) + r"\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, heading
    return m.group(1)


class TestSurg1(unittest.TestCase):
    def test_every_command_has_a_section(self):
        commands = help_commands()
        self.assertGreaterEqual(len(commands), 7)
        sections = [re.match(r"surg (\w+)", t).group(1)
                    for t in man_sections("man/surg.1", "SS") if t.startswith("surg ")]
        self.assertEqual(sections, commands)
        synopsis = man_sections("man/surg.1", "SH")["SYNOPSIS"]
        self.assertEqual(list(dict.fromkeys(re.findall(r"^\.B (\w+)$", synopsis, re.M))),
                         commands)

    def test_every_option_of_a_command_is_in_its_section(self):
        sections = {re.match(r"surg (\w+)", t).group(1): body
                    for t, body in man_sections("man/surg.1", "SS").items()}
        for cmd in help_commands():
            documented = set(OPTION.findall(sections[cmd]))
            self.assertEqual(command_options(cmd) - documented, set(), cmd)

    def test_global_options(self):
        opts = {o for line in help_sections()["options"] for o in OPTION.findall(line)}
        self.assertEqual(opts, {"-h", "--help", "--version", "--diagnostics", "--color"})
        text = man_sections("man/surg.1", "SH")["GLOBAL OPTIONS"]
        self.assertEqual(opts - set(OPTION.findall(text)), set())
        for value in ["human", "json", "github", "auto", "always", "never"]:
            self.assertIn(value, text)

    def test_examples_use_real_commands(self):
        text = man_sections("man/surg.1", "SH")["EXAMPLES"]
        used = re.findall(r"^surg (\w+)", text, re.M)
        self.assertGreater(len(used), 3)
        self.assertEqual(set(used) - set(help_commands()), set())


class TestCompletion(unittest.TestCase):
    def test_commands(self):
        self.assertEqual(completion("echo $_surg_commands"), help_commands())

    def test_options_of_each_command(self):
        for cmd in help_commands():
            self.assertEqual(set(completion(f"_surg_options {cmd}")), command_options(cmd), cmd)

    def test_global_options(self):
        opts = {o for line in help_sections()["options"] for o in OPTION.findall(line)}
        self.assertEqual(set(completion("echo $_surg_global")), opts)


class TestSurgRecipe5(unittest.TestCase):
    def test_every_statement(self):
        block = markdown_section(read("docs/language.md"), "Statements")
        block = re.search(r"```\n(.*?)```", block, re.S).group(1)
        statements = set()
        for line in block.splitlines():
            words = line.split()
            if words and re.fullmatch(r"[a-z-]+", words[0]):
                statements.add(words[0] + (" " + words[1] if words[0] == "meta"
                                           and words[1] in ("drop", "keep") else ""))
        self.assertGreater(len(statements), 20)
        text = man_sections("man/surg-recipe.5", "SH")["STATEMENTS"]
        entries = set()
        for m in re.finditer(r"^\.T[PQ]\n\.B[IR]? \"?([a-z-]+(?: (?:drop|keep))?)", text, re.M):
            entries.add(m.group(1))
        entries |= {"meta"}  # `meta "KEY" = VALUE` begins with a quoted key
        self.assertEqual(statements - entries, set())

    def test_every_initializer_and_function(self):
        lang = read("docs/language.md")
        page = man_text("man/surg-recipe.5")
        for heading, section in [("INIT: values for `fill` and `init-lora`", "INIT"),
                                 ("EXPR: expressions for `map`", "EXPRESSIONS")]:
            table = markdown_section(lang, heading)
            names = set()
            for row in re.findall(r"^\| (.*?) \|", table, re.M):
                for code in re.findall(r"`([^`]*)`", row):
                    if re.fullmatch(r"[a-z_]+( [a-z_]+)*", code):
                        names.update(code.split())  # `abs sqrt exp`
                    names.update(re.findall(r"\b([a-z_]+)\(", code))
            self.assertGreater(len(names), 8, heading)
            if section == "INIT":
                text = man_sections("man/surg-recipe.5", "SS")["INIT"]
            else:
                text = man_sections("man/surg-recipe.5", "SH")[section]
            missing = {n for n in names - {"x"} if not re.search(r"\b" + n + r"\b", text)}
            self.assertEqual(missing, set(), heading)
        self.assertIn("SYNOPSIS", page)

    def examples(self):
        """The recipes of the page's .EX blocks."""
        return [re.sub(r"\\(.)", r"\1", b) for b in
                re.findall(r"^\.EX\n(.*?)^\.EE", man_text("man/surg-recipe.5"), re.S | re.M)]

    def test_examples_are_recipes(self):
        examples = self.examples()
        self.assertEqual(len(examples), 3)
        for text in examples:
            rc, out, err = surg("fmt", "-", stdin=text)
            self.assertEqual((rc, err), (0, ""), text)

    def test_synopsis_compiles_against_the_mlp(self):
        schema = os.path.join(ARGS.root, "examples/mlp/two_layer_mlp.json")
        with open(schema) as f:
            n = sum(1 for k in json.load(f) if k != "__metadata__")
        rc, out, err = surg("check", "-", "--from", schema, stdin=self.examples()[0])
        # init-lora adds lora_a and lora_b to params/ and to its two mirrors.
        self.assertEqual((rc, out, err), (0, f"<stdin>: ok: {n} tensors in, {n + 6} out\n", ""))


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--surg", required=True)
    p.add_argument("--root", required=True)
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
