"""test_ci.py: the GitHub Action and the pre-commit hooks. Their shell steps
(.github/surg-ci.sh) run here with a fake GitHub environment (a workspace,
GITHUB_STEP_SUMMARY, GITHUB_PATH, RUNNER_TEMP) on good and bad recipes: exit
codes, the exact workflow-command annotations (line and column found in the
recipes' text), the job summary; `deps` and `build` with apt-get, sudo,
cmake and git replaced by loggers. action.yml and .pre-commit-hooks.yaml
parse as YAML, every `run:` of the action calls the script, and the hooks'
entries run as pre-commit would run them.

usage: test_ci.py --surg SURG --root DIR [unittest args]
"""

import argparse
import json
import os
import re
import stat
import subprocess
import sys
import unittest

import yaml

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402

ARGS = None
SCRIPT = None
TMP = None
WS = None  # the workspace

SCHEMA = {
    "params/linear1/bias": {"dtype": "F32", "shape": [4]},
    "params/linear1/kernel": {"dtype": "F32", "shape": [3, 4]},
    "params/linear2/kernel": {"dtype": "F32", "shape": [4, 2]},
}
RECIPES = {
    "recipes/good.surg": '# fine\nrename "params/linear1/**" -> "params/first/$1"\n',
    "recipes/bad.surg": 'drop "params/linear1/bias"\ndrop "params/linaer2/kernel"\n',
    "recipes/sub/ugly.surg": 'drop "params/linear1/bias"\nrename   "params/linear2/kernel" -> "k"\n',
    "recipes/odd,name.surg": 'drop  "params/linear1/bias"\n',
    "recipes/inputs.surg": 'drop "a/params/linear1/bias"\n',
}


def write(rel, text):
    path = os.path.join(WS, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def fake_bin(name, body):
    """A command NAME on the test's PATH that logs its arguments to log.txt."""
    d = os.path.join(TMP, "bin")
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write('#!/bin/sh\nprintf "%s\\n" "' + name + ' $*" >> "$FAKE_LOG"\n' + body)
    os.chmod(path, 0o755)


def run_script(*args, env=None, cwd=None, command=None):
    """(exit code, stdout, stderr, summary) of surg-ci.sh ARGS (or of COMMAND)
    in a fake GitHub job's environment."""
    summary = os.path.join(TMP, "summary.md")
    if os.path.exists(summary):
        os.remove(summary)
    full = {"PATH": os.path.join(TMP, "bin") + os.pathsep + os.environ["PATH"],
            "HOME": TMP, "GITHUB_WORKSPACE": WS, "GITHUB_STEP_SUMMARY": summary,
            "GITHUB_PATH": os.path.join(TMP, "github_path"),
            "GITHUB_ACTION_PATH": ARGS.root, "RUNNER_TEMP": os.path.join(TMP, "runner"),
            "FAKE_LOG": os.path.join(TMP, "log.txt")}
    full.update(env or {})
    r = subprocess.run(command or [SCRIPT] + list(args), env=full, cwd=cwd or TMP, capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    text = None
    if os.path.exists(summary):
        with open(summary) as f:
            text = f.read()
    return r.returncode, r.stdout, r.stderr, text


def in_workspace(cmd):
    """CMD run in the workspace, the test's surg first on PATH."""
    return subprocess.run(cmd, cwd=WS, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": os.path.join(TMP, "bin") + os.pathsep
                               + os.environ["PATH"]})


def check(**env):
    return run_script("check", env={"SURG_" + k.rstrip("_").upper(): v for k, v in env.items()})


def at(rel, needle):
    """(line, column, end column) of NEEDLE in a recipe, counted from 1."""
    for n, line in enumerate(RECIPES[rel].splitlines(), 1):
        if needle in line:
            col = line.index(needle) + 1
            return n, col, col + len(needle)
    raise AssertionError(needle)


def not_found(rel, typo, fix):
    line, col, end = at(rel, f'"{typo}"')
    return (f"::error file={rel},line={line},col={col},endLine={line},endColumn={end}::"
            f'pattern "{typo}" matches no tensor%0Anote: did you mean "{fix}"?')


def summary(*rows):
    return "### surg check\n\n| recipe | result |\n| --- | --- |\n" + "".join(
        f"| {r} | {v} |\n" for r, v in rows)


class TestCheckStep(unittest.TestCase):
    def test_good_recipe(self):
        rc, out, err, text = check(recipes="recipes/good.surg", from_="schema.json")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out, "recipes/good.surg: ok: 3 tensors in, 3 out\n")
        self.assertEqual(text, summary(("recipes/good.surg", "ok")))

    def test_bad_recipe(self):
        rc, out, err, text = check(recipes="recipes/bad.surg", from_="schema.json")
        self.assertEqual((rc, err), (1, ""))
        self.assertEqual(out, not_found("recipes/bad.surg", "params/linaer2/kernel",
                                        "params/linear2/kernel") + "\n")
        self.assertEqual(text, summary(("recipes/bad.surg", "1 error(s)")))

    def test_not_formatted(self):
        line, _, _ = at("recipes/sub/ugly.surg", "rename   ")
        rc, out, err, text = check(recipes="recipes/sub/ugly.surg", from_="schema.json")
        self.assertEqual((rc, err), (1, ""))
        self.assertEqual(out, "recipes/sub/ugly.surg: ok: 3 tensors in, 2 out\n"
                              f"::error file=recipes/sub/ugly.surg,line={line},title=surg fmt::"
                              "not in the canonical layout (run surg fmt -w "
                              "recipes/sub/ugly.surg)\n")
        rc, out, err, text = check(recipes="recipes/sub/ugly.surg", from_="schema.json",
                                   fmt="false")
        self.assertEqual((rc, out), (0, "recipes/sub/ugly.surg: ok: 3 tensors in, 2 out\n"))

    def test_property_escapes(self):
        rc, out, err, text = check(recipes="recipes/odd,name.surg", from_="schema.json")
        self.assertEqual(rc, 1)
        self.assertEqual(out.splitlines()[1],
                         "::error file=recipes/odd%2Cname.surg,line=1,title=surg fmt::not in the "
                         "canonical layout (run surg fmt -w recipes/odd,name.surg)")

    def test_globs(self):
        rc, out, err, text = check(recipes="recipes/**/*.surg\n  recipes/bad.surg",
                                   from_="schema.json")
        self.assertEqual((rc, err), (1, ""))
        errors = [line for line in out.splitlines() if line.startswith("::error")]
        self.assertEqual(len(errors), 4)  # inputs.surg's names are not in one input
        self.assertEqual(errors[0], not_found("recipes/bad.surg", "params/linaer2/kernel",
                                              "params/linear2/kernel"))
        # Each recipe once, in the globs' order.
        self.assertEqual(text, summary(
            ("recipes/bad.surg", "1 error(s)"), ("recipes/good.surg", "ok"),
            ("recipes/inputs.surg", "1 error(s)"), ("recipes/odd,name.surg", "1 error(s)"),
            ("recipes/sub/ugly.surg", "1 error(s)")))

    def test_target(self):
        write("target.json", json.dumps({"params/first/bias": SCHEMA["params/linear1/bias"],
                                         "params/linear2/kernel": SCHEMA["params/linear2/kernel"]}))
        rc, out, err, text = check(recipes="recipes/good.surg", from_="schema.json",
                                   to="target.json")
        self.assertEqual((rc, err), (1, ""))
        # at the statement that named it (the template of line 2)
        self.assertEqual(out, "::error file=recipes/good.surg,line=2,col=31,endLine=2,"
                              'endColumn=48::the result has "params/first/kernel" '
                              "(f32[3, 4]), which the target does not\n")

    def test_args(self):
        rc, out, err, text = check(recipes="recipes/inputs.surg", args="--in a=schema.json")
        self.assertEqual((rc, out, err), (0, "recipes/inputs.surg: ok: 3 tensors in, 2 out\n", ""))

    def test_usage_errors(self):
        rc, out, err, _ = check(recipes="nothing/*.surg", from_="schema.json")
        self.assertEqual((rc, out, err), (2, "::error::no recipe matches 'nothing/*.surg'\n", ""))
        rc, out, err, _ = check(recipes="recipes/good.surg")
        self.assertEqual((rc, out, err), (2, "::error::say what the recipes apply to: from "
                                             "(or args: --in NAME=PATH ...)\n", ""))
        rc, out, err, _ = run_script()
        self.assertEqual((rc, out, err), (2, "", "usage: surg-ci.sh deps|build|check|precommit "
                                                 "[ARG...] RECIPE...\n"))


class TestSetupSteps(unittest.TestCase):
    def setUp(self):
        for f in ["log.txt", "github_path"]:
            if os.path.exists(os.path.join(TMP, f)):
                os.remove(os.path.join(TMP, f))

    def log(self):
        with open(os.path.join(TMP, "log.txt")) as f:
            return f.read().splitlines()

    def test_deps(self):
        rc, out, err, _ = run_script("deps")
        self.assertEqual((rc, err), (0, ""))
        packages = "cmake make gcc pkg-config flex bison zlib1g-dev libzstd-dev"
        self.assertEqual(self.log(), [
            "id -u", "sudo apt-get update -q", "apt-get update -q",
            f"sudo apt-get install -y -q --no-install-recommends {packages}",
            f"apt-get install -y -q --no-install-recommends {packages}"])
        # ./dev installs them too (the project's own list).
        with open(os.path.join(ARGS.root, "dev")) as f:
            dev = re.search(r"PACKAGES=\((.*?)\)", f.read(), re.S).group(1).split()
        self.assertEqual(set(packages.split()) - set(dev), set())

    def test_build(self):
        runner = os.path.join(TMP, "runner")
        rc, out, err, _ = run_script("build")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(self.log(), [
            f"cmake -S {ARGS.root} -B {runner}/surg-build -DCMAKE_BUILD_TYPE=Release "
            "-DSURG_TESTS=OFF",
            "nproc ",
            f"cmake --build {runner}/surg-build -j 3",
            f"cmake --install {runner}/surg-build --prefix {runner}/surg"])
        with open(os.path.join(TMP, "github_path")) as f:
            self.assertEqual(f.read(), f"{runner}/surg/bin\n")

    def test_build_a_ref(self):
        runner = os.path.join(TMP, "runner")
        rc, out, err, _ = run_script("build", env={"SURG_REF": "v0.1.0",
                                                   "SURG_REPOSITORY": "someone/surg"})
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(self.log()[:2], [
            f"git clone -q --depth 1 --branch v0.1.0 https://github.com/someone/surg "
            f"{runner}/surg-src",
            f"cmake -S {runner}/surg-src -B {runner}/surg-build -DCMAKE_BUILD_TYPE=Release "
            "-DSURG_TESTS=OFF"])
        rc, out, err, _ = run_script("build", env={"SURG_REF": "v0.1.0", "SURG_REPOSITORY": ""})
        self.assertEqual((rc, out), (2, "::error::ref 'v0.1.0' given but no repository: set "
                                        "repository: OWNER/NAME\n"))


class TestYaml(unittest.TestCase):
    def test_action(self):
        with open(os.path.join(ARGS.root, "action.yml")) as f:
            action = yaml.safe_load(f)
        self.assertEqual(action["runs"]["using"], "composite")
        self.assertEqual(set(action["inputs"]),
                         {"recipes", "from", "to", "args", "fmt", "ref", "repository"})
        commands, env_used, inputs_used = [], set(), set()
        for step in action["runs"]["steps"]:
            self.assertEqual(step["shell"], "bash")
            m = re.fullmatch(r'"\$GITHUB_ACTION_PATH/\.github/surg-ci\.sh" (\w+)', step["run"])
            self.assertIsNotNone(m, step["run"])  # every run: is the tested script
            commands.append(m.group(1))
            for k, v in step.get("env", {}).items():
                env_used.add(k)
                inputs_used.update(re.findall(r"\$\{\{ inputs\.(\w+) \}\}", v))
        self.assertEqual(commands, ["deps", "build", "check"])
        self.assertEqual(inputs_used, set(action["inputs"]))
        with open(SCRIPT) as f:
            read = set(re.findall(r"\$\{?(SURG_[A-Z]+)", f.read()))
        self.assertEqual(env_used, read)

    def test_steps_as_the_runner_runs_them(self):
        """Each step's `run:` through bash as the runner runs it, its env
        made from the inputs as the runner makes it."""
        with open(os.path.join(ARGS.root, "action.yml")) as f:
            action = yaml.safe_load(f)
        inputs = {k: v.get("default", "") for k, v in action["inputs"].items()}
        inputs.update({"recipes": "recipes/good.surg recipes/bad.surg", "from": "schema.json",
                       "repository": "someone/surg"})
        results = []
        for step in action["runs"]["steps"]:
            env = {k: re.sub(r"\$\{\{ inputs\.(\w+) \}\}", lambda m: inputs[m.group(1)], v)
                   for k, v in step.get("env", {}).items()}
            rc, out, err, _ = run_script(env=env, command=["bash", "--noprofile", "--norc",
                                                           "-eo", "pipefail", "-c",
                                                           step["run"]])
            results.append((rc, err))
            if step is action["runs"]["steps"][-1]:
                self.assertEqual(out, "recipes/good.surg: ok: 3 tensors in, 3 out\n" +
                                 not_found("recipes/bad.surg", "params/linaer2/kernel",
                                           "params/linear2/kernel") + "\n")
        self.assertEqual(results, [(0, ""), (0, ""), (1, "")])

    def test_pre_commit_hooks(self):
        with open(os.path.join(ARGS.root, ".pre-commit-hooks.yaml")) as f:
            hooks = {h["id"]: h for h in yaml.safe_load(f)}
        self.assertEqual(set(hooks), {"surg-fmt", "surg-check"})
        self.assertEqual((hooks["surg-fmt"]["entry"], hooks["surg-fmt"]["language"]),
                         ("surg fmt --check", "system"))
        self.assertEqual((hooks["surg-check"]["entry"], hooks["surg-check"]["language"]),
                         (".github/surg-ci.sh precommit", "script"))
        for h in hooks.values():
            files = re.compile(h["files"])
            self.assertTrue(files.search("a.surg") and files.search("dir/b.surg"))
            self.assertFalse(files.search("a.surgx") or files.search("a.surg.bak"))
        mode = os.stat(SCRIPT).st_mode
        self.assertTrue(mode & stat.S_IXUSR and mode & stat.S_IXOTH)

    def test_hooks_run_as_pre_commit_runs_them(self):
        """pre-commit runs ENTRY ARGS FILES... in the repository's root; a
        script hook's entry is a path in the hook's repository."""
        with open(os.path.join(ARGS.root, ".pre-commit-hooks.yaml")) as f:
            hooks = {h["id"]: h for h in yaml.safe_load(f)}
        files = ["recipes/good.surg", "recipes/sub/ugly.surg"]
        entry = hooks["surg-fmt"]["entry"].split()
        r = in_workspace(entry + files)
        self.assertEqual((r.returncode, r.stdout, r.stderr),
                         (1, "", "recipes/sub/ugly.surg: not formatted "
                                 "(run `surg fmt recipes/sub/ugly.surg`)\n"))
        entry = hooks["surg-check"]["entry"].split()
        args = ["--from", "schema.json"]
        r = in_workspace([os.path.join(ARGS.root, entry[0])] + entry[1:] + args +
                         ["recipes/good.surg", "recipes/bad.surg"])
        line, col, end = at("recipes/bad.surg", '"params/linaer2/kernel"')
        source = RECIPES["recipes/bad.surg"].splitlines()[line - 1]
        self.assertEqual((r.returncode, r.stderr), (1, ""))
        self.assertEqual(r.stdout, (
            "recipes/good.surg: ok: 3 tensors in, 3 out\n"
            f'recipes/bad.surg:{line}:{col}: error: pattern "params/linaer2/kernel" matches no '
            "tensor\n"
            f"    {line} | {source}\n"
            f"      | {' ' * (col - 1)}^{'~' * (end - col - 1)}\n"
            'note: did you mean "params/linear2/kernel"?\n'))


def main():
    global ARGS, SCRIPT
    p = argparse.ArgumentParser()
    p.add_argument("--surg", required=True)
    p.add_argument("--root", required=True)
    ARGS, rest = p.parse_known_args()
    ARGS.root = os.path.abspath(ARGS.root)
    SCRIPT = os.path.join(ARGS.root, ".github/surg-ci.sh")
    runutil.unittest_in_temporary_dir("surg-ci-", workspace, rest)


def workspace(tmp):
    """The workspace's recipes and schema; surg and the fakes on PATH."""
    global TMP, WS
    TMP, WS = tmp, os.path.join(tmp, "workspace")
    os.makedirs(os.path.join(TMP, "bin"))
    os.symlink(os.path.abspath(ARGS.surg), os.path.join(TMP, "bin", "surg"))
    fake_bin("apt-get", "")
    fake_bin("sudo", 'exec "$@"\n')
    fake_bin("id", "echo 1000\n")
    fake_bin("cmake", "")
    fake_bin("git", "")
    fake_bin("nproc", "echo 3\n")
    write("schema.json", json.dumps(SCHEMA))
    for rel, text in RECIPES.items():
        write(rel, text)


if __name__ == "__main__":
    main()
