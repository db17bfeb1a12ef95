"""test_editors.py: the editors' syntax highlighting held against the scanner.

For every recipe of the repository (tests/golden/**/*.surg, examples/*.surg)
the scanner's own tokens (tests/tools/surg_tokens, on surg_recipe_tokens)
are the reference:

- the TextMate grammar (editors/vscode/syntaxes/surg.tmLanguage.json) is run
  by a small TextMate matcher written here for the rules it uses (`match`
  with `name` and `captures`, `begin`/`end` with their captures and inner
  `patterns`, `include` of the repository): every byte of every token gets
  the scope its class calls for, and inside strings every escape, capture
  and wildcard gets its own. Its regular expressions are kept to what
  Oniguruma and Python's `re` read alike (checked below);
- the Vim syntax file (editors/vim/) is loaded by a real Vim, headless, with
  its ftdetect file choosing the filetype: synID() at the first byte of
  every token, and of every escape, capture and wildcard in a string, names
  the expected group; every keyword the scanner knows is one of the file's;
- the VS Code extension's manifest points at the grammar and the language
  configuration, whose comment and brackets are the language's.

usage: test_editors.py --tokens SURG_TOKENS --root REPO [unittest args]
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

ARGS = None

STRING_SCOPE = "string.quoted.double.surg"
CLAUSE_WORDS = {"to", "multiple", "into", "config", "rslora", "fan_in_fan_out", "dropout"}
CONSTANTS = {"flax", "torch", "peft"}
# The escapes a string may hold (grammar/parse.c, gr_unescape).
ESCAPE = re.compile(rb'\\(?:x[0-9A-Fa-f]{1,2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|[ntrbfva\\"\'?])')
OPERATOR_SCOPES = {
    b"->": "keyword.operator.arrow", b"...": "keyword.operator.ellipsis",
    **{op: "keyword.operator.comparison" for op in (b"<=", b">=", b"==", b"!=", b"<", b">")},
    **{op: "keyword.operator.arithmetic" for op in (b"+", b"-", b"*", b"/", b"@")},
    b"=": "keyword.operator.assignment", b":": "punctuation.separator.type",
    b",": "punctuation.separator.comma",
    **{op: "punctuation.section.brackets" for op in (b"(", b")", b"[", b"]")},
}
VIM_OPERATORS = {op: "surgOperator" for op in (b"->", b"...", b"<=", b">=", b"==", b"!=", b"<",
                                               b">", b"+", b"-", b"*", b"/", b"@", b"=")}
VIM_OPERATORS.update({op: "surgDelimiter" for op in (b":", b",", b"(", b")", b"[", b"]", b";")})

# Regular-expression syntax that Oniguruma and Python's re read differently,
# or that one of them lacks: none of it may appear in the grammar.
NOT_COMMON = [
    (r"\\[hHKGAzZRXk]", "an escape of Oniguruma's only"), (r"\(\?<[A-Za-z]", "a named group"),
    (r"\(\?>", "an atomic group"), (r"[*+?}]\+", "a possessive quantifier"),
    (r"\\p\{", "a Unicode property"), (r"\(\?[imsx]", "an inline flag"),
    (r"\\[bBwWdDsS]", "a class whose meaning differs with Unicode"),
    (r"\[\[:", "a POSIX bracket"), (r"\\[0-9]", "a back-reference"),
]


def dtypes():
    with open(os.path.join(ARGS.root, "include", "surg", "surg.h")) as f:
        return set(re.findall(r'X\(\w+, "\w+", "(\w+)", \d+, SURG_KIND_\w+\)', f.read()))


def recipes():
    files = sorted(glob.glob(os.path.join(ARGS.root, "tests", "golden", "**", "*.surg"),
                             recursive=True) +
                   glob.glob(os.path.join(ARGS.root, "examples", "*.surg")))
    assert len(files) > 200, files
    return files


def scan(files):
    """{path: (bytes, [(kind, start, end)])} as the scanner sees them."""
    out = {}
    for i in range(0, len(files), 100):
        r = subprocess.run([ARGS.tokens] + files[i:i + 100], capture_output=True, check=True)
        for line in r.stdout.decode().splitlines():
            path, toks = line.split("\t")
            with open(path, "rb") as f:
                text = f.read()
            out[path] = (text, [(k, int(a), int(b)) for k, a, b in
                                (t.split(" ") for t in toks.split(",") if t)])
    return out


def keywords():
    r = subprocess.run([ARGS.tokens, "--keywords"], capture_output=True, check=True, text=True)
    return {w: s == "1" for w, s in (line.split() for line in r.stdout.splitlines())}


def string_parts(text, start, end):
    """Escapes, captures and wildcards in a string token: (start, end, class)."""
    parts = []
    i = start + 1
    body_end = end - 1 if end - start >= 2 and text[end - 1:end] == b'"' else end
    while i < body_end:
        c = text[i:i + 1]
        if c == b"\\" and i + 1 == body_end:
            break  # a lone backslash ends an unterminated string: no escape
        if c == b"\\":
            m = ESCAPE.match(text, i, body_end)
            n = m.end() - i if m else min(2, body_end - i)
            parts.append((i, i + n, "escape" if m else "bad-escape"))
            i += n
        elif c == b"$":
            m = re.compile(rb"\$(?:[0-9]|\{[0-9]+\}|i|\$)").match(text, i, body_end)
            if m:
                parts.append((i, m.end(), "capture"))
                i = m.end()
            else:
                i += 1
        elif c in (b"*", b"?"):
            n = 2 if text[i:i + 2] == b"**" else 1
            parts.append((i, i + n, "wildcard"))
            i += n
        else:
            i += 1
    return parts


# ---- a TextMate matcher for the rules the grammar uses ------------------

class Rule:
    def __init__(self, d, repo):
        self.name = d.get("name")
        self.captures = d.get("captures", {})
        self.match = re.compile(d["match"].encode()) if "match" in d else None
        self.begin = re.compile(d["begin"].encode()) if "begin" in d else None
        self.end = re.compile(d["end"].encode()) if "end" in d else None
        self.begin_captures = d.get("beginCaptures", {})
        self.end_captures = d.get("endCaptures", {})
        self.patterns = flatten(d.get("patterns", []), repo)


def flatten(patterns, repo):
    out = []
    for p in patterns:
        if "include" in p:
            assert p["include"].startswith("#"), p
            out += flatten(repo[p["include"][1:]]["patterns"], repo)
        else:
            out.append(Rule(p, repo))
    return out


def mark(scopes, start, end, names):
    for i in range(start, end):
        scopes[i] = scopes[i] + [n for n in names if n]


def mark_captures(scopes, m, captures, base, at):
    for k, c in captures.items():
        g = int(k)
        if m.group(g) is not None and m.end(g) > m.start(g):
            mark(scopes, at + m.start(g), at + m.end(g), base + [c["name"]])


def tokenize(text, top):
    """Scopes of every byte of text: a list of scope names per byte."""
    scopes = [[] for _ in text]
    stack = []  # open begin/end rules
    line_start = 0
    for line in text.split(b"\n"):
        pos = 0
        while pos <= len(line):
            names = [r.name for r in stack]
            cands = []
            if stack:
                m = stack[-1].end.search(line, pos)
                if m:
                    cands.append((m.start(), 0, m, "end", stack[-1]))
            for k, r in enumerate(stack[-1].patterns if stack else top):
                m = (r.match or r.begin).search(line, pos)
                if m:
                    cands.append((m.start(), k + 1, m, "begin" if r.begin else "match", r))
            if not cands:
                break
            _, _, m, what, r = min(cands, key=lambda c: (c[0], c[1]))
            a, b = line_start + m.start(), line_start + m.end()
            mark(scopes, line_start + pos, a, names)  # the gap before it
            if what == "end":
                mark(scopes, a, b, names)
                mark_captures(scopes, m, r.end_captures, names, line_start)
                stack.pop()
            elif what == "begin":
                mark(scopes, a, b, names + [r.name])
                mark_captures(scopes, m, r.begin_captures, names + [r.name], line_start)
                stack.append(r)
            else:
                mark(scopes, a, b, names + [r.name])
                mark_captures(scopes, m, r.captures, names + [r.name], line_start)
            if m.end() == pos and what == "match":
                pos += 1  # an empty match moves on
            else:
                pos = m.end()
            if what == "begin" and m.end() == m.start():
                raise AssertionError("an empty begin would loop")
        mark(scopes, line_start + pos, line_start + len(line), [r.name for r in stack])
        line_start += len(line) + 1
    return scopes


def token_kind(kind, text, start, end):
    """The scanner's class of a token, as a highlighter can know it: an
    opening bracket past the nesting bound (AST_MAX_DEPTH) is stray to the
    scanner, but still a bracket to one that does not count them."""
    return "operator" if kind == "other" and text[start:end] in (b"(", b"[") else kind


def token_class(kind, text, start, end, kw, types):
    """What a highlighter is to make of a token: a class of the tables below."""
    kind = token_kind(kind, text, start, end)
    word = text[start:end]
    if kind == "keyword":
        if word in (b"factored", b"min"):
            return "mirror-clause"
        return "statement" if kw.get(word.decode(), False) or word == b"let" else "clause"
    if kind == "word":
        w = word.decode()
        if w in types:
            return "dtype"
        if text[end:].lstrip(b" \t")[:1] == b"(":
            return "function"
        return "constant" if w in CONSTANTS else "clause" if w in CLAUSE_WORDS else "variable"
    if kind == "separator":
        return "separator" if word == b";" else "newline"
    return kind


# Each class's TextMate scope (prefix) and Vim group; None: nothing to see
# (a newline); operators by their text.
SCOPES = {
    "statement": "keyword.control.statement", "clause": "keyword.other.clause",
    "mirror-clause": "keyword.other.clause", "dtype": "storage.type.dtype",
    "function": "entity.name.function", "constant": "constant.language",
    "variable": "variable.other", "number": "constant.numeric", "string": STRING_SCOPE,
    "comment": "comment.line.number-sign", "separator": "punctuation.terminator.statement",
    "newline": None, "other": "invalid.illegal",
}
GROUPS = {
    "statement": "surgStatement", "clause": "surgClause", "mirror-clause": "surgMirrorClause",
    "dtype": "surgType", "function": "surgFunction", "constant": "surgConstant",
    "variable": "", "number": "surgNumber", "string": "surgString", "comment": "surgComment",
    "separator": "surgDelimiter", "newline": None, "other": "surgError",
}


def expected_class(kind, text, start, end, kw, types):
    """The scope (prefix) a token's bytes must have, or None to skip it."""
    c = token_class(kind, text, start, end, kw, types)
    return OPERATOR_SCOPES[text[start:end]] if c == "operator" else SCOPES[c]


def vim_group(kind, text, start, end, kw, types):
    c = token_class(kind, text, start, end, kw, types)
    return VIM_OPERATORS[text[start:end]] if c == "operator" else GROUPS[c]


PART_SCOPES = {"escape": "constant.character.escape", "bad-escape": "invalid.illegal.escape",
               "capture": "variable.other.capture", "wildcard": "keyword.operator.wildcard"}
PART_GROUPS = {"escape": "surgEscape", "bad-escape": "surgBadEscape", "capture": "surgCapture",
               "wildcard": "surgGlob"}


class Editors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.files = recipes()
        cls.tokens = scan(cls.files)
        cls.kw = keywords()
        cls.types = dtypes()
        with open(os.path.join(ARGS.root, "editors", "vscode", "syntaxes",
                               "surg.tmLanguage.json")) as f:
            cls.grammar = json.load(f)

    def test_token_classes_seen(self):
        # the recipes exercise every class of the scanner
        kinds = {k for _, toks in self.tokens.values() for k, _, _ in toks}
        self.assertEqual(kinds, {"keyword", "word", "number", "string", "operator",
                                 "separator", "comment", "other"})

    def test_regexes_common(self):
        def regexes(node):
            if isinstance(node, dict):
                for k, v in node.items():
                    if k in ("match", "begin", "end"):
                        yield v
                    else:
                        yield from regexes(v)
            elif isinstance(node, list):
                for v in node:
                    yield from regexes(v)
        found = list(regexes(self.grammar))
        self.assertGreater(len(found), 20)
        for rx in found:
            re.compile(rx)
            for bad, what in NOT_COMMON:
                self.assertIsNone(re.search(bad, rx), f"{rx!r} uses {what}")

    def test_textmate(self):
        g = self.grammar
        top = flatten(g["patterns"], g["repository"])
        checked = 0
        for path, (text, toks) in self.tokens.items():
            scopes = tokenize(text, top)
            for kind, start, end in toks:
                want = expected_class(kind, text, start, end, self.kw, self.types)
                if want is None:
                    continue
                for i in range(start, end):
                    got = scopes[i]
                    ok = any(s.startswith(want + ".") or s == want for s in got)
                    self.assertTrue(ok, f"{path}:{start}: {text[start:end]!r} ({kind}) byte {i}: "
                                        f"{got}, not {want}")
                    checked += 1
                if kind == "string":
                    self.assertIn("punctuation.definition.string.begin.surg", scopes[start])
                    for a, b, what in string_parts(text, start, end):
                        for i in range(a, b):
                            self.assertTrue(scopes[i] and scopes[i][-1].startswith(PART_SCOPES[what]),
                                            f"{path}:{a}: {text[a:b]!r} {what}: {scopes[i]}")
        self.assertGreater(checked, 10000)

    def test_textmate_cases(self):
        # each inner class of a string, and what the recipes lack
        g = self.grammar
        top = flatten(g["patterns"], g["repository"])
        text = b'rename "a/{x,y}/[0-9]*/**\\t\\q" -> "b/$1/${10}/$i/$$"\nseed 1.e5; let z = .5'
        s = tokenize(text, top)
        at = lambda needle, k=0: s[text.index(needle) + k][-1]
        self.assertEqual(at(b"{x"), "punctuation.definition.alternation.surg")
        self.assertEqual(at(b"[0-9]"), "constant.other.character-class.surg")
        self.assertEqual(at(b"\\t"), "constant.character.escape.surg")
        self.assertEqual(at(b"\\q"), "invalid.illegal.escape.surg")
        self.assertEqual(at(b"${10}", 4), "variable.other.capture.surg")
        self.assertEqual(at(b"$i"), "variable.other.capture.surg")
        self.assertEqual(at(b"1.e5", 3), "constant.numeric.surg")
        self.assertEqual(at(b"let"), "keyword.control.statement.surg")
        self.assertEqual(at(b".5"), "constant.numeric.surg")

    def test_vim_keywords(self):
        with open(os.path.join(ARGS.root, "editors", "vim", "syntax", "surg.vim")) as f:
            vim = f.read()
        listed = set()
        for line in vim.splitlines():
            m = re.match(r"syn keyword (surgStatement|surgClause) (.*)", line)
            if m:
                listed |= set(m.group(2).split())
        # by syn match, or as a region's start and its own words
        matched = {"init-lora", "merge-lora", "let", "mirror", "factored", "min"}
        self.assertEqual(set(self.kw) - matched, listed - CLAUSE_WORDS)
        self.assertEqual(set(re.search(r"syn keyword surgMirrorClause contained (.*)", vim)
                             .group(1).split()), {"factored", "min"})
        for w in matched:
            self.assertIn(w.split("-")[0], vim)
        self.assertEqual(set(re.search(r"syn keyword surgType (.*)", vim).group(1).split()),
                         self.types)

    @unittest.skipUnless(shutil.which("vim"), "needs vim (Debian package vim; ./dev setup)")
    def test_vim(self):
        tmp = tempfile.mkdtemp(prefix="surg-vim-")
        try:
            self.run_vim(tmp)
        finally:
            shutil.rmtree(tmp)

    def run_vim(self, tmp):
        probes, want = {}, []
        for path, (text, toks) in self.tokens.items():
            line_starts = [0] + [m.end() for m in re.finditer(b"\n", text)]

            def lc(off):
                ln = max(i for i, s in enumerate(line_starts) if s <= off)
                return [ln + 1, off - line_starts[ln] + 1]
            pts = []
            for kind, start, end in toks:
                group = vim_group(kind, text, start, end, self.kw, self.types)
                if group is None:
                    continue
                pts.append(lc(start))
                want.append((path, start, text[start:end], group))
                if kind == "string":
                    for a, b, what in string_parts(text, start, end):
                        pts.append(lc(a))
                        want.append((path, a, text[a:b], PART_GROUPS[what]))
            probes[path] = pts
        with open(os.path.join(tmp, "probes.json"), "w") as f:
            json.dump(probes, f)
        script = os.path.join(tmp, "probe.vim")
        out = os.path.join(tmp, "out.txt")
        with open(script, "w") as f:
            f.write(f"""
set nocompatible
let &runtimepath = {json.dumps(os.path.join(ARGS.root, "editors", "vim"))} . ',' . &runtimepath
filetype on
syntax on
let s:probes = json_decode(join(readfile({json.dumps(os.path.join(tmp, "probes.json"))}), ''))
let s:out = []
for s:f in keys(s:probes)->sort()
  execute 'silent edit ' . fnameescape(s:f)
  call add(s:out, 'FILE ' . &filetype)
  for [s:l, s:c] in s:probes[s:f]
    call add(s:out, synIDattr(synID(s:l, s:c, 1), 'name'))
  endfor
  silent bwipeout!
endfor
call writefile(s:out, {json.dumps(out)})
qall!
""")
        r = subprocess.run(["vim", "-u", "NONE", "-i", "NONE", "-N", "-es", "-S", script],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
        self.assertTrue(os.path.exists(out), r.stderr.decode(errors="replace"))
        with open(out) as f:
            got = f.read().splitlines()
        files = [line for line in got if line.startswith("FILE ")]
        self.assertEqual(files, ["FILE surg"] * len(probes))  # ftdetect chose it
        got = [line for line in got if not line.startswith("FILE ")]
        want.sort(key=lambda w: (w[0], 0))  # the files in vim's order, probes in place
        order = sorted(probes)
        want = [w for p in order for w in want if w[0] == p]
        self.assertEqual(len(got), len(want))
        # a plain word has no group of its own: inside a mirror statement,
        # the statement's
        bad = [(p, a, t, g, h) for (p, a, t, g), h in zip(want, got)
               if g != h and not (g == "" and h == "surgMirror")]
        self.maxDiff = None
        self.assertEqual(bad[:20], [], f"{len(bad)} tokens with another Vim group")

    def test_vscode_manifest(self):
        base = os.path.join(ARGS.root, "editors", "vscode")
        with open(os.path.join(base, "package.json")) as f:
            pkg = json.load(f)
        (lang,) = pkg["contributes"]["languages"]
        self.assertEqual((lang["id"], lang["extensions"]), ("surg", [".surg"]))
        (gram,) = pkg["contributes"]["grammars"]
        self.assertEqual((gram["language"], gram["scopeName"]), ("surg", self.grammar["scopeName"]))
        self.assertTrue(os.path.exists(os.path.join(base, gram["path"])))
        with open(os.path.join(base, lang["configuration"])) as f:
            conf = json.load(f)
        self.assertEqual(conf["comments"], {"lineComment": "#"})
        self.assertEqual(conf["brackets"], [["(", ")"], ["[", "]"]])


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--root", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
