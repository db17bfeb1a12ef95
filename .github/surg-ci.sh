#!/usr/bin/env bash
# surg-ci.sh: the shell steps of the GitHub Action (action.yml) and of the
# `surg-check` pre-commit hook (.pre-commit-hooks.yaml); docs/ci.md.
#
#   surg-ci.sh deps        install what building surg needs (apt-get)
#   surg-ci.sh build       build and install surg, put it on the job's PATH
#   surg-ci.sh check       check the recipes of $SURG_RECIPES, annotating the
#                          pull request (GitHub workflow commands)
#   surg-ci.sh precommit [ARG...] RECIPE...
#                          `surg check RECIPE ARG...` for each *.surg argument
#
# Inputs come in the environment, never spliced into a command line:
# SURG_RECIPES (globs, one per line or space-separated, relative to
# $GITHUB_WORKSPACE), SURG_FROM, SURG_TO, SURG_ARGS (more arguments of
# `surg check`), SURG_FMT (true: also require the canonical layout),
# SURG_REF and SURG_REPOSITORY (build that ref instead of the action's own).
set -euo pipefail

# What building surg needs on Debian or Ubuntu (no test dependencies).
BUILD_PACKAGES=(cmake make gcc pkg-config flex bison zlib1g-dev libzstd-dev)

die() {
    echo "::error::$*"
    exit 2
}

deps() {
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        "${BUILD_PACKAGES[@]}"
}

build() {
    local src=${GITHUB_ACTION_PATH:?} tmp=${RUNNER_TEMP:-/tmp}
    if [ -n "${SURG_REF:-}" ]; then
        [ -n "${SURG_REPOSITORY:-}" ] || die "ref '$SURG_REF' given but no repository: set repository: OWNER/NAME"
        src=$tmp/surg-src
        rm -rf "$src"
        git clone -q --depth 1 --branch "$SURG_REF" "https://github.com/$SURG_REPOSITORY" "$src"
    fi
    cmake -S "$src" -B "$tmp/surg-build" -DCMAKE_BUILD_TYPE=Release -DSURG_TESTS=OFF
    cmake --build "$tmp/surg-build" -j "$(nproc 2>/dev/null || echo 2)"
    cmake --install "$tmp/surg-build" --prefix "$tmp/surg"
    echo "$tmp/surg/bin" >>"${GITHUB_PATH:?}"
}

# RECIPES: the recipes the globs of $SURG_RECIPES match, each once, in order.
collect_recipes() {
    local patterns pattern f matched
    local -A seen=()
    read -ra patterns -d '' <<<"${SURG_RECIPES:-**/*.surg}" || true
    shopt -s globstar nullglob
    RECIPES=()
    for pattern in "${patterns[@]}"; do
        # shellcheck disable=SC2206 # the pattern is a glob, split already
        matched=($pattern)
        [ ${#matched[@]} -gt 0 ] || die "no recipe matches '$pattern'"
        for f in "${matched[@]}"; do
            if [ -f "$f" ] && [ -z "${seen[$f]:-}" ]; then
                seen[$f]=1
                RECIPES+=("$f")
            fi
        done
    done
}

# Text for a workflow command: %, CR and LF escaped (gh_message), and ':'
# and ',' too in a property's value (gh_property).
gh_message() {
    local v=${1//%/%25}
    v=${v//$'\r'/%0D}
    printf '%s' "${v//$'\n'/%0A}"
}

gh_property() {
    local v
    v=$(gh_message "$1")
    v=${v//:/%3A}
    printf '%s' "${v//,/%2C}"
}

# The first line where a recipe differs from its canonical layout (the
# output of `surg fmt`), for the annotation.
first_difference() {
    local line
    line=$(diff -- "$1" "$2" | head -n 1 | grep -o '^[0-9]*') || true
    echo "${line:-1}"
}

# check_one RECIPE [SURG ARGS...]: `surg check`, then (SURG_FMT) the layout;
# prints what surg says (workflow commands in --diagnostics github), returns
# surg's exit status (1 for a recipe not formatted).
check_one() {
    local recipe=$1 rc=0
    shift
    surg "$@" check "$recipe" "${check_args[@]}" 2>&1 || rc=$?
    if [ "${SURG_FMT:-true}" = true ] && [ $rc -ne 2 ]; then
        local canonical
        canonical=$(mktemp)
        if surg "$@" fmt "$recipe" >"$canonical" 2>/dev/null && ! cmp -s "$recipe" "$canonical"; then
            local line
            line=$(first_difference "$recipe" "$canonical")
            echo "::error file=$(gh_property "$recipe"),line=$line,title=surg fmt::not in the canonical layout (run surg fmt -w $(gh_message "$recipe"))"
            [ $rc -ne 0 ] || rc=1
        fi
        rm -f "$canonical"
    fi
    return $rc
}

check() {
    cd "${GITHUB_WORKSPACE:?}"
    check_args=()
    [ -z "${SURG_FROM:-}" ] || check_args+=(--from "$SURG_FROM")
    [ -z "${SURG_TO:-}" ] || check_args+=(--to "$SURG_TO")
    local extra
    read -ra extra <<<"${SURG_ARGS:-}"
    check_args+=("${extra[@]}")
    [ ${#check_args[@]} -gt 0 ] || die "say what the recipes apply to: from (or args: --in NAME=PATH ...)"
    collect_recipes
    local recipe out rc worst=0 summary=${GITHUB_STEP_SUMMARY:-/dev/null}
    printf '### surg check\n\n| recipe | result |\n| --- | --- |\n' >>"$summary"
    for recipe in "${RECIPES[@]}"; do
        rc=0
        out=$(check_one "$recipe" --diagnostics github) || rc=$?
        [ -z "$out" ] || printf '%s\n' "$out"
        local errors
        errors=$(grep -c '^::error' <<<"$out" || true)
        if [ $rc -eq 0 ]; then
            printf '| %s | ok |\n' "$recipe" >>"$summary"
        else
            printf '| %s | %s error(s) |\n' "$recipe" "$errors" >>"$summary"
            [ $rc -gt $worst ] && worst=$rc
        fi
    done
    exit $worst
}

precommit() {
    SURG_FMT=false # the surg-fmt hook checks the layout
    check_args=()
    local recipes=() a
    for a in "$@"; do
        case $a in
        *.surg) recipes+=("$a") ;;
        *) check_args+=("$a") ;;
        esac
    done
    local recipe rc worst=0
    for recipe in "${recipes[@]}"; do
        rc=0
        check_one "$recipe" || rc=$?
        [ $rc -gt $worst ] && worst=$rc
    done
    exit $worst
}

case ${1:-} in
deps | build | check) "$1" ;;
precommit) shift && precommit "$@" ;;
*) echo "usage: surg-ci.sh deps|build|check|precommit [ARG...] RECIPE..." >&2 && exit 2 ;;
esac
