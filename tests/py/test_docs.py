"""test_docs.py: the documentation holds together: every relative link in
the project's Markdown files resolves to a file inside the repository (no
link into ../shared or out of the tree), every `#anchor` names a heading of
its file, and README.md stays short enough to read first.

usage: test_docs.py --root DIR [unittest args]
"""

import argparse
import os
import re
import sys
import unittest

ROOT = None  # filled in by main()

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def markdown_files():
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith((".", "build")) and d != "corpus"]
        for f in files:
            if f.endswith(".md"):
                yield os.path.join(top, f)


def anchors(path):
    """GitHub's anchors for the headings of a Markdown file."""
    text = FENCE.sub("", read(path))
    out = set()
    for line in text.splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            a = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(a)
    return out


class TestDocs(unittest.TestCase):
    def test_links_resolve_inside_the_repository(self):
        root = os.path.realpath(ROOT)
        bad = []
        for md in markdown_files():
            text = FENCE.sub("", read(md))
            for target in LINK.findall(text):
                if re.match(r"[a-z]+:", target):
                    continue  # a web address
                path, _, anchor = target.partition("#")
                dest = os.path.realpath(os.path.join(os.path.dirname(md), path) if path else md)
                rel = os.path.relpath(md, root)
                if not (dest == root or dest.startswith(root + os.sep)):
                    bad.append(f"{rel}: {target} leaves the repository")
                elif not os.path.exists(dest):
                    bad.append(f"{rel}: {target} does not exist")
                elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                    bad.append(f"{rel}: {target}: no such heading")
        self.assertEqual(bad, [])

    def test_readme_is_short_and_opens_with_the_two_commands(self):
        lines = read(os.path.join(ROOT, "README.md")).splitlines()
        self.assertLessEqual(len(lines), 250)
        fence = lines.index("```sh")
        self.assertEqual([l.split("#")[0].strip() for l in lines[fence + 1:fence + 3]],
                         ["./dev example", "./dev test"])


def main():
    global ROOT
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    args, rest = ap.parse_known_args()
    ROOT = args.root
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
