"""test_layering.py: the folders are the pipeline, and a folder includes
only what comes before it in it. Every project `#include` in a source file
is resolved to the folder that holds the header, and that folder must be
one this folder may see:

  support/   support/, include/ (the public header)
  grammar/   grammar/, support/, include/
  runtime/   runtime/, support/, include/ (never compiler/ or grammar/:
             the plan, runtime/plan.h, is all the runtime knows of them)
  compiler/  anything but cli/
  cli/       cli/, include/ (the public API only)

Includes are resolved both when written with their folder
("runtime/plan.h") and by bare name ("plan.h"): the file's own folder
first, as the preprocessor looks, then the one folder holding that name (a
bare name two folders hold is an error of its own: which one is meant
depends on the include path). Headers generated into the build tree
(grammar/parser.h, from grammar/parser.y) belong to the folder of their
source. In the tree itself every project include of the library's folders
is written with its folder, so a crossing shows at the include line; the
command includes its own cli.h beside it, and its build sees no other
project folder.

usage: test_layering.py --root DIR [unittest args]
"""

import argparse
import os
import re
import sys
import tempfile
import unittest

ROOT = None  # filled in by main()

FOLDERS = ("support", "grammar", "runtime", "compiler", "cli", "include")
MAY_SEE = {
    "support": {"support", "include"},
    "grammar": {"grammar", "support", "include"},
    "runtime": {"runtime", "support", "include"},
    "compiler": {"compiler", "runtime", "grammar", "support", "include"},
    "cli": {"cli", "include"},
    "include": {"include"},
}
GENERATED = {"parser.h": "grammar", "grammar/parser.h": "grammar"}  # bison's, from parser.y
QUALIFIED = ("support", "grammar", "runtime", "compiler")  # write "runtime/plan.h"
SOURCES = (".c", ".h", ".y", ".l")
INCLUDE = re.compile(r'^\s*#\s*include\s*(["<])([^">]+)[">]', re.M)


def headers(root):
    """Every header of the project: {folder-relative path: folder}."""
    out = {}
    for folder in FOLDERS:
        for top, _, files in os.walk(os.path.join(root, folder)):
            for f in files:
                if f.endswith(".h"):
                    path = os.path.relpath(os.path.join(top, f), root)
                    out[path] = folder
    return out


def resolve(root, known, src, name, quoted):
    """(folder, None) for the header `src` means by `name`, (None, why)
    when it cannot be told, or (None, None) for a system header."""
    here = os.path.dirname(src)
    own = os.path.normpath(os.path.join(here, name))
    if quoted and own in known:
        return known[own], None
    if os.path.normpath(name) in known:  # folder-qualified: "runtime/plan.h"
        return known[os.path.normpath(name)], None
    if name in GENERATED and "/" in name:
        return GENERATED[name], None
    if os.path.join("include", name) in known:  # "surg/surg.h"
        return "include", None
    if "/" not in name:
        holders = sorted({f for p, f in known.items() if os.path.basename(p) == name})
        if len(holders) == 1:
            return holders[0], None
        if len(holders) > 1:
            return None, f'"{name}" is in {" and ".join(h + "/" for h in holders)}: write its folder'
        if name in GENERATED:
            return GENERATED[name], None
    if not quoted:
        return None, None
    return None, f'"{name}" is no header of the project'


def violations(root, qualified=False):
    """Every include that crosses the layering, as "file: message" lines;
    with `qualified`, also every project include of the library's folders
    written without its folder."""
    known = headers(root)
    out = []
    for folder in FOLDERS:
        for top, _, files in os.walk(os.path.join(root, folder)):
            for f in sorted(files):
                if not f.endswith(SOURCES):
                    continue
                src = os.path.relpath(os.path.join(top, f), root)
                with open(os.path.join(root, src), encoding="utf-8") as fh:
                    text = fh.read()
                for m in INCLUDE.finditer(text):
                    name = m.group(2)
                    where, why = resolve(root, known, src, name, m.group(1) == '"')
                    if why:
                        out.append(f"{src}: {why}")
                    elif (qualified and where and where != "include" and "/" not in name
                          and folder in QUALIFIED):
                        out.append(f'{src}: write "{name}" with its folder: "{where}/{name}"')
                    elif where and where not in MAY_SEE[folder]:
                        out.append(f'{src}: includes "{name}" from {where}/, '
                                   f"which {folder}/ may not see")
    return sorted(out)


def tree(files):
    """A temporary project tree holding `files` ({path: text})."""
    d = tempfile.TemporaryDirectory()
    for path, text in files.items():
        full = os.path.join(d.name, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as fh:
            fh.write(text)
    return d


class Layering(unittest.TestCase):
    def test_the_tree(self):
        self.assertEqual(violations(ROOT, qualified=True), [])

    def test_bare_names_are_found(self):
        with tree({
            "support/buf.h": "",
            "runtime/plan.h": '#include "buf.h"\n#include "support/buf.h"\n',
            "grammar/parse.c": '#include "grammar/parser.h"\n#include "parser.h"\n',
            "cli/cli.h": "",
            "cli/main.c": '#include "cli.h"\n',
        }) as root:
            self.assertEqual(violations(root, qualified=True), [
                'grammar/parse.c: write "parser.h" with its folder: "grammar/parser.h"',
                'runtime/plan.h: write "buf.h" with its folder: "support/buf.h"',
            ])

    def test_crossings_are_found_bare_and_qualified(self):
        with tree({
            "include/surg/surg.h": "",
            "support/buf.h": '#include "surg/surg.h"\n',
            "grammar/ast.h": '#include "buf.h"\n',
            "grammar/parse.c": '#include "parser.h"\n#include "lower.h"\n',
            "compiler/lower.h": '#include "ast.h"\n#include "runtime/plan.h"\n',
            "runtime/plan.h": '#include "buf.h"\n#include <stdio.h>\n',
            "runtime/exec.c": '#include "plan.h"\n#include "lower.h"\n',
            "runtime/kernel.c": '#include "compiler/lower.h"\n#include "grammar/ast.h"\n',
            "cli/cli.h": '#include "surg/surg.h"\n',
            "cli/main.c": '#include "cli.h"\n#include "buf.h"\n#include <plan.h>\n',
        }) as root:
            self.assertEqual(violations(root), [
                'cli/main.c: includes "buf.h" from support/, which cli/ may not see',
                'cli/main.c: includes "plan.h" from runtime/, which cli/ may not see',
                'grammar/parse.c: includes "lower.h" from compiler/, which grammar/ may not see',
                'runtime/exec.c: includes "lower.h" from compiler/, which runtime/ may not see',
                'runtime/kernel.c: includes "compiler/lower.h" from compiler/, '
                'which runtime/ may not see',
                'runtime/kernel.c: includes "grammar/ast.h" from grammar/, '
                'which runtime/ may not see',
            ])

    def test_a_bare_name_two_folders_hold(self):
        with tree({
            "compiler/plan.h": "",
            "runtime/plan.h": "",
            "compiler/plan.c": '#include "plan.h"\n',
            "cli/main.c": '#include "plan.h"\n#include "nowhere.h"\n',
        }) as root:
            self.assertEqual(violations(root), [
                'cli/main.c: "nowhere.h" is no header of the project',
                'cli/main.c: "plan.h" is in compiler/ and runtime/: write its folder',
            ])


def main():
    global ROOT
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    args, rest = ap.parse_known_args()
    ROOT = os.path.abspath(args.root)
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
