"""test_lsp.py: `surg lsp` driven by a scripted client over pipes, speaking
the Language Server Protocol as an editor does: diagnostics (the same as
`surg check` says, at the same place), hover on a pattern, completion,
formatting (the same text as `surg fmt`), the lifecycle and its exit codes,
and hostile framing.

The abstract state is a schema this test writes; what each pattern matches
and every position (in UTF-16 code units, or in bytes when the client
offers UTF-8) is worked out here from the text, not taken from surg.

usage: test_lsp.py --surg SURG --root REPO [unittest args]
"""

import argparse
import json
import os
import re
import resource
import select
import subprocess
import sys
import tempfile
import time
import unittest

ARGS = None

SCHEMA = {
    "params/Dense_0/kernel": {"dtype": "F32", "shape": [3, 4]},
    "params/Dense_0/bias": {"dtype": "F32", "shape": [4]},
    "params/Dense_1/kernel": {"dtype": "BF16", "shape": [4, 2]},
    "params/Dense_1/bias": {"dtype": "F32", "shape": [2]},
    **{f"layers.{i}.weight": {"dtype": "F16", "shape": [8, 8]} for i in range(25)},
}
OTHER_SCHEMA = {"w": {"dtype": "F64", "shape": []}}


def sanitized():
    """Whether surg is built with AddressSanitizer, whose shadow memory does
    not fit an address-space limit (and which aborts on a huge malloc)."""
    with open(ARGS.surg, "rb") as f:
        return b"__asan_init" in f.read()


def frame(body):
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class Client:
    """One `surg lsp` process and the messages it sends back."""

    def __init__(self, cwd, limit_memory=False):
        limit_memory = limit_memory and not sanitized()

        def limit():
            if limit_memory:  # a malloc of what a hostile header claims would fail
                resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))
        self.p = subprocess.Popen([ARGS.surg, "lsp"], cwd=cwd, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  preexec_fn=limit)
        self.next_id = 1
        self.pending = b""

    def send_raw(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def send(self, obj):
        self.send_raw(frame(json.dumps(obj).encode()))

    def notify(self, method, params):
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method, params=None):
        i = self.next_id
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": i, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        r = self.read()
        assert r.get("id") == i, r
        return r

    def _fill(self):
        ready, _, _ = select.select([self.p.stdout], [], [], 30)
        assert ready, "surg lsp sent nothing within 30 s"
        chunk = os.read(self.p.stdout.fileno(), 65536)
        assert chunk, "surg lsp closed its output"
        self.pending += chunk

    def read(self):
        while b"\r\n\r\n" not in self.pending:
            self._fill()
        head, self.pending = self.pending.split(b"\r\n\r\n", 1)
        m = re.fullmatch(rb"Content-Length: (\d+)", head)
        assert m, head
        n = int(m.group(1))
        while len(self.pending) < n:
            self._fill()
        body, self.pending = self.pending[:n], self.pending[n:]
        return json.loads(body)

    def finish(self):
        """Close its input; its exit code, and what is left on its output."""
        self.p.stdin.close()
        rest = self.p.stdout.read()
        code = self.p.wait(timeout=30)
        self.p.stdout.close()
        self.p.stderr.close()
        return code, self.pending + rest


def utf16_units(s):
    return len(s.encode("utf-16-le")) // 2


def position(text, offset, utf8=False):
    """LSP position of a character offset of text."""
    before = text[:offset]
    line = before.count("\n")
    col = before[before.rfind("\n") + 1:]
    return {"line": line, "character": len(col.encode()) if utf8 else utf16_units(col)}


def span(text, needle, utf8=False, nth=0):
    at = -1
    for _ in range(nth + 1):
        at = text.index(needle, at + 1)
    return {"start": position(text, at, utf8), "end": position(text, at + len(needle), utf8)}


class Lsp(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="surg-lsp-")
        for name, schema in (("model.schema.json", SCHEMA), ("other.json", OTHER_SCHEMA)):
            with open(os.path.join(self.dir, name), "w") as f:
                json.dump(schema, f)
        self.uri = "file://" + os.path.join(self.dir, "port%20it.surg")
        self.path = os.path.join(self.dir, "port it.surg")

    def tearDown(self):
        for name in os.listdir(self.dir):
            os.remove(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def start(self, utf8=False, options=None, root=True):
        c = Client(self.dir)
        caps = {"general": {"positionEncodings": ["utf-8", "utf-16"]}} if utf8 else {}
        params = {"processId": None, "capabilities": caps}
        if root:
            params["rootUri"] = "file://" + self.dir
        if options is not None:
            params["initializationOptions"] = options
        r = c.request("initialize", params)
        caps = r["result"]["capabilities"]
        self.assertEqual(caps["positionEncoding"], "utf-8" if utf8 else "utf-16")
        self.assertEqual(caps["textDocumentSync"], {"openClose": True, "change": 1})
        self.assertTrue(caps["hoverProvider"])
        self.assertTrue(caps["documentFormattingProvider"])
        c.notify("initialized", {})
        return c

    def open(self, c, text, version=1):
        c.notify("textDocument/didOpen", {"textDocument": {
            "uri": self.uri, "languageId": "surg", "version": version, "text": text}})
        return self.diagnostics(c, version)

    def change(self, c, text, version):
        c.notify("textDocument/didChange", {"textDocument": {"uri": self.uri, "version": version},
                                            "contentChanges": [{"text": text}]})
        return self.diagnostics(c, version)

    def diagnostics(self, c, version):
        m = c.read()
        self.assertEqual(m["method"], "textDocument/publishDiagnostics")
        self.assertEqual(m["params"]["uri"], self.uri)
        self.assertEqual(m["params"]["version"], version)
        return m["params"]["diagnostics"]

    def close(self, c):
        self.assertEqual(c.request("shutdown")["result"], None)
        c.notify("exit", None)
        code, rest = c.finish()
        self.assertEqual((code, rest), (0, b""))

    def check_json(self, text):
        """`surg check`'s diagnostics of text, as JSON lines."""
        with open(self.path, "w") as f:
            f.write(text)
        r = subprocess.run([ARGS.surg, "check", self.path, "--from",
                            os.path.join(self.dir, "model.schema.json"), "--diagnostics", "json"],
                           capture_output=True, timeout=60)
        os.remove(self.path)
        self.assertEqual(r.returncode, 1)
        return [json.loads(line) for line in r.stderr.decode().splitlines()]

    # -- diagnostics ------------------------------------------------------

    # An astral character (two UTF-16 units, one column, four bytes) before
    # the error on its line tells the encodings apart.
    BROKEN = ("# surg: from model.schema.json\n"
              "drop optional \"x\U0001F600\"; map \"params/Dense_0/kernal\" = x * 2\n")
    FIXED = BROKEN.replace("kernal", "kernel")

    def expect_typo(self, diags, text, utf8):
        self.assertEqual(len(diags), 1, diags)
        d = diags[0]
        self.assertEqual(d["range"], span(text, '"params/Dense_0/kernal"', utf8))
        self.assertEqual(d["severity"], 1)
        self.assertEqual(d["code"], "match-none")
        self.assertEqual(d["message"], 'pattern "params/Dense_0/kernal" matches no tensor\n'
                                       'note: did you mean "params/Dense_0/kernel"?')
        # the same as `surg check` says, at the same place
        (ref,) = self.check_json(text)
        self.assertEqual(d["message"], "\n".join([ref["message"]] +
                                                 ["note: " + n for n in ref["notes"]]))
        line = text.splitlines()[ref["line"] - 1]
        self.assertEqual(d["range"]["start"]["line"], ref["line"] - 1)
        to = (lambda s: len(s.encode())) if utf8 else utf16_units
        self.assertEqual(d["range"]["start"]["character"], to(line[:ref["column"] - 1]))
        self.assertEqual(d["range"]["end"]["character"], to(line[:ref["end_column"] - 1]))

    def test_diagnostics_as_you_type(self):
        c = self.start()
        self.expect_typo(self.open(c, self.BROKEN), self.BROKEN, False)
        self.assertEqual(self.change(c, self.FIXED, 2), [])
        # a syntax error, then a change made by range (incremental sync)
        bad = self.FIXED.replace("x * 2", "x * ")
        diags = self.change(c, bad, 3)
        self.assertEqual([d["code"] for d in diags], ["syntax"])
        at = bad.index("x * ") + 4
        c.notify("textDocument/didChange", {
            "textDocument": {"uri": self.uri, "version": 4},
            "contentChanges": [{"range": {"start": position(bad, at), "end": position(bad, at)},
                                "text": "3"}]})
        self.assertEqual(self.diagnostics(c, 4), [])
        self.close(c)

    def test_syntax_errors_hide_nothing(self):
        """As surg check: after a syntax error, what parsed is compiled too."""
        c = self.start()
        text = self.BROKEN + 'rename "a" "b"\n'
        diags = self.open(c, text)
        self.assertEqual(sorted(d["code"] for d in diags), ["match-none", "syntax-rename-arrow"])
        self.close(c)

    def test_many_diagnostics(self):
        """40,000 errors in as many lines are placed without a pass over the
        text each (the bound only catches a quadratic walk)."""
        c = self.start()
        text = 'rename "a" "b"\n' * 40000
        t = time.monotonic()
        diags = self.open(c, text)
        self.assertLess(time.monotonic() - t, 30)
        self.assertEqual(len(diags), 40000)
        self.assertEqual(diags[-1]["range"]["start"]["line"], 39999)
        self.close(c)

    def test_diagnostics_utf8(self):
        c = self.start(utf8=True)
        self.expect_typo(self.open(c, self.BROKEN), self.BROKEN, True)
        self.close(c)

    def test_state_from_setting(self):
        text = 'map "w" = x + 1\n'
        c = self.start(options={"surg": {"from": "other.json"}})
        self.assertEqual(self.open(c, text), [])
        # another state, named by the setting: "w" is no tensor there
        c.notify("workspace/didChangeConfiguration",
                 {"settings": {"surg": {"from": "model.schema.json"}}})
        diags = self.diagnostics(c, 1)
        self.assertEqual([(d["code"], d["range"]) for d in diags],
                         [("match-none", span(text, '"w"'))])
        self.close(c)

    def test_state_missing(self):
        text = "# surg: from nowhere.json\ndrop \"a\"\n"
        c = self.start()
        diags = self.open(c, text)
        self.assertEqual(len(diags), 1, diags)
        self.assertEqual(diags[0]["range"], {"start": {"line": 0, "character": 0},
                                             "end": {"line": 0, "character": 25}})
        where = os.path.join(self.dir, "nowhere.json")
        self.assertTrue(diags[0]["message"].startswith(where + ": "), diags[0]["message"])
        self.close(c)

    # -- hover ------------------------------------------------------------

    RECIPE = ("# surg: from model.schema.json\n"
              "rename \"params/Dense_1/**\" -> \"params/Out/$1\"\n"
              "map \"params/*/kernel\" = x * 2\n"
              "drop \"layers.*.weight\"\n")

    def hover(self, c, text, needle):
        at = text.index(needle) + 2
        r = c.request("textDocument/hover", {"textDocument": {"uri": self.uri},
                                             "position": position(text, at)})
        return r["result"]

    def test_hover(self):
        c = self.start()
        self.assertEqual(self.open(c, self.RECIPE), [])
        h = self.hover(c, self.RECIPE, '"params/*/kernel"')
        # the state the statement sees: after the rename
        self.assertEqual(h["contents"], {"kind": "markdown", "value":
                         "`params/*/kernel` matches 2 tensors:\n\n```text\n"
                         "params/Dense_0/kernel  f32[3, 4]\n"
                         "params/Out/kernel  bf16[4, 2]\n```"})
        self.assertEqual(h["range"], span(self.RECIPE, '"params/*/kernel"'))
        h = self.hover(c, self.RECIPE, '"layers.*.weight"')
        names = sorted(n for n in SCHEMA if n.startswith("layers."))  # byte order
        self.assertEqual(h["contents"]["value"],
                         "`layers.*.weight` matches 25 tensors:\n\n```text\n" +
                         "".join(f"{n}  f16[8, 8]\n" for n in names[:20]) +
                         "… and 5 more\n```")
        # the rename's own pattern, against the input
        h = self.hover(c, self.RECIPE, '"params/Dense_1/**"')
        self.assertEqual(h["contents"]["value"],
                         "`params/Dense_1/**` matches 2 tensors:\n\n```text\n"
                         "params/Dense_1/bias  f32[2]\nparams/Dense_1/kernel  bf16[4, 2]\n```")
        # a syntax error further down, as one is typed, leaves hover working above it
        typing = self.RECIPE + 'rename "params/Out/**" ->\n'
        self.change(c, typing, 2)
        h = self.hover(c, typing, '"params/*/kernel"')
        self.assertTrue(h["contents"]["value"].startswith("`params/*/kernel` matches 2 tensors:"))
        self.assertIsNone(self.hover(c, typing, '"params/Out/**"'))
        self.change(c, self.RECIPE, 3)
        # a template is no pattern; nor is a comment
        self.assertIsNone(self.hover(c, self.RECIPE, '"params/Out/$1"'))
        self.assertIsNone(self.hover(c, self.RECIPE, "surg: from"))
        self.close(c)

    # -- completion -------------------------------------------------------

    def complete(self, c, text, at):
        r = c.request("textDocument/completion", {"textDocument": {"uri": self.uri},
                                                  "position": position(text, at)})
        return r["result"]

    def test_completion(self):
        c = self.start()
        text = self.RECIPE + 'expect "params/D'
        self.open(c, text)
        r = self.complete(c, text, len(text))
        self.assertFalse(r["isIncomplete"])
        # after the rename, only Dense_0 is left under params/D
        self.assertEqual(sorted((i["label"], i["detail"]) for i in r["items"]),
                         [("params/Dense_0/bias", "f32[4]"), ("params/Dense_0/kernel", "f32[3, 4]")])
        start = position(text, len(text) - len("params/D"))
        for i in r["items"]:
            self.assertEqual(i["textEdit"], {"range": {"start": start, "end": position(text, len(text))},
                                             "newText": i["label"]})
        # at the start of a statement: the statement keywords of the grammar
        with open(os.path.join(ARGS.root, "grammar", "ast.h")) as f:
            table = f.read().split("#define AST_STATEMENTS(X)")[1].split("typedef")[0]
        words = set(re.findall(r'X\(\w+, "([\w-]+)"\)', table))
        text2 = self.RECIPE + "re"
        self.change(c, text2, 2)
        r = self.complete(c, text2, len(text2))
        self.assertEqual({i["label"] for i in r["items"]}, words)
        self.assertEqual({i["kind"] for i in r["items"]}, {14})
        # after a statement's first word, outside a string: nothing
        r = self.complete(c, text2, text2.index("x * 2") + 1)
        self.assertEqual(r["items"], [])
        self.close(c)

    # -- formatting -------------------------------------------------------

    def test_formatting(self):
        text = ("# surg: from model.schema.json\n"
                "rename   \"params/Dense_1/**\"->\"params/Out/$1\" ;  map \"params/*/kernel\"=(x*2)\n")
        c = self.start()
        self.open(c, text)
        with open(self.path, "w") as f:
            f.write(text)
        fmt = subprocess.run([ARGS.surg, "fmt", self.path], capture_output=True, timeout=60)
        os.remove(self.path)
        self.assertEqual(fmt.returncode, 0)
        r = c.request("textDocument/formatting", {"textDocument": {"uri": self.uri},
                                                  "options": {"tabSize": 4, "insertSpaces": True}})
        end = position(text, len(text))
        self.assertEqual(r["result"], [{"range": {"start": {"line": 0, "character": 0}, "end": end},
                                        "newText": fmt.stdout.decode()}])
        # formatted already: no edit; a syntax error: none either
        self.change(c, fmt.stdout.decode(), 2)
        r = c.request("textDocument/formatting", {"textDocument": {"uri": self.uri}, "options": {}})
        self.assertEqual(r["result"], [])
        self.change(c, "rename \"a\" \"b\"\n", 3)
        r = c.request("textDocument/formatting", {"textDocument": {"uri": self.uri}, "options": {}})
        self.assertIsNone(r["result"])
        self.close(c)

    # -- the protocol -----------------------------------------------------

    def test_lifecycle(self):
        c = Client(self.dir)
        r = c.request("textDocument/hover", {})
        self.assertEqual(r["error"]["code"], -32002)
        c.notify("textDocument/didOpen", {})  # dropped before initialize: no answer
        c.request("initialize", {"capabilities": {}})
        r = c.request("initialize", {"capabilities": {}})
        self.assertEqual(r["error"]["code"], -32600)
        r = c.request("textDocument/hover", {"textDocument": {"uri": "file:///x.surg"}})
        self.assertEqual(r["error"], {"code": -32602,
                                      "message": "hover needs textDocument and position"})
        r = c.request("textDocument/hover", {"textDocument": {"uri": "file:///never-opened.surg"},
                                             "position": {"line": 0, "character": 0}})
        self.assertEqual(r["result"], None)
        r = c.request("no/such/method", {})
        self.assertEqual(r["error"], {"code": -32601, "message": "Method not found: no/such/method"})
        c.notify("no/such/notification", {})  # ignored: the next answer is the next request's
        c.notify("$/cancelRequest", {"id": 1})
        r = c.request("shutdown")
        self.assertEqual(r["result"], None)
        r = c.request("textDocument/hover", {})
        self.assertEqual(r["error"]["code"], -32600)
        c.notify("exit", None)
        self.assertEqual(c.finish(), (0, b""))
        # exit without shutdown: 1; the input closing without exit: 1
        c = Client(self.dir)
        c.request("initialize", {"capabilities": {}})
        c.notify("exit", None)
        self.assertEqual(c.finish(), (1, b""))
        c = Client(self.dir)
        self.assertEqual(c.finish(), (1, b""))

    def test_command_line(self):
        r = subprocess.run([ARGS.surg, "lsp", "--help"], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith(b"usage: surg lsp\n"))
        r = subprocess.run([ARGS.surg, "lsp", "bogus"], capture_output=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout, r.stderr),
                         (2, b"", b"surg lsp: unexpected argument 'bogus'\n"
                                  b"(see `surg lsp --help`)\n"))
        # --stdio, which clients add, is what it does anyway
        r = subprocess.run([ARGS.surg, "lsp", "--stdio"], input=frame(b'{"jsonrpc":"2.0",'
                           b'"method":"exit"}'), capture_output=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout), (1, b""))

    def test_malformed(self):
        c = self.start()
        for body, code in ((b"{\"jsonrpc\":", -32700), (b"\xff\xfe", -32700),
                           (b"[" * 200 + b"]" * 200, -32700),
                           (b"{\"a\":1,\"a\":2}", -32700), (b"[1]", -32600),
                           (b"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"x\"}", -32600),
                           (b"{\"jsonrpc\":\"2.0\",\"id\":7}", -32600)):
            c.send_raw(frame(body))
            r = c.read()
            self.assertEqual((r["id"], r["error"]["code"]), (7 if b"7" in body else None, code),
                             body)
        # a version no integer holds, positions past every line's end, a
        # change whose range is backwards: no harm done
        c.notify("textDocument/didOpen", {"textDocument": {
            "uri": self.uri, "languageId": "surg", "version": 1e300, "text": "drop \"a\"\n"}})
        self.assertEqual(self.diagnostics(c, 0), [])
        r = c.request("textDocument/hover", {"textDocument": {"uri": self.uri},
                                             "position": {"line": 4e9, "character": 1e300}})
        self.assertEqual(r["error"]["code"], -32602)
        r = c.request("textDocument/completion", {"textDocument": {"uri": self.uri},
                                                  "position": {"line": 70, "character": 900}})
        self.assertEqual(r["result"]["items"][0]["kind"], 14)
        c.notify("textDocument/didChange", {
            "textDocument": {"uri": self.uri, "version": 2},
            "contentChanges": [{"range": {"start": {"line": 0, "character": 3},
                                          "end": {"line": 0, "character": 1}}, "text": "x"}]})
        self.assertEqual(self.diagnostics(c, 2), [])
        # the server goes on: a string id comes back as it was
        c.send({"jsonrpc": "2.0", "id": "abc", "method": "shutdown"})
        self.assertEqual(c.read(), {"jsonrpc": "2.0", "id": "abc", "result": None})
        c.notify("exit", None)
        self.assertEqual(c.finish(), (0, b""))

    def test_oversized(self):
        # a terabyte announced, under a 512 MiB address space (under ASan,
        # which aborts on such a malloc, without): refused, not allocated;
        # the stream then ends inside the skipped body
        c = Client(self.dir, limit_memory=True)
        c.send_raw(b"Content-Length: 1099511627776\r\n\r\n{}")
        r = c.read()
        self.assertEqual(r, {"jsonrpc": "2.0", "id": None, "error": {
            "code": -32600,
            "message": "a message of 1099511627776 bytes is refused: the limit is 67108864 bytes"}})
        self.assertEqual(c.finish(), (1, b""))

    def test_bad_frames(self):
        for head, why in ((b"Content-Type: x\r\n\r\n{}", "a header without Content-Length"),
                          (b"Content-Length: 12x\r\n\r\n{}",
                           "Content-Length is not a decimal number of bytes"),
                          (b"Content-Length: 99999999999999999999999\r\n\r\n",
                           "Content-Length is not a decimal number of bytes"),
                          (b"X" * 5000, "a header line is cut off or longer than 1024 bytes"),
                          (b"Content-Length: 10\r\n\r\n{}", "the stream ended inside a message")):
            c = Client(self.dir)
            c.send_raw(head)
            c.p.stdin.close()
            r = c.read()
            self.assertEqual(r["error"], {"code": -32700, "message": "Parse error: " + why +
                                          "; the stream cannot be followed any further"}
                             if why != "the stream ended inside a message" else r["error"])
            if why == "the stream ended inside a message":
                self.assertEqual(r["error"]["message"], "Parse error: " + why +
                                 "; the stream cannot be followed any further")
            self.assertEqual(c.p.wait(timeout=30), 1)
            c.p.stdout.close()
            c.p.stderr.close()


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ap.add_argument("--root", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
