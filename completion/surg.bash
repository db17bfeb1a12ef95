# bash completion for surg(1): its commands, each command's options and
# their values, recipes (.surg) and checkpoints where they belong.
# Installed as share/bash-completion/completions/surg; works without the
# bash-completion package too (`source` it).

_surg_commands='run check plan index fmt schema diff invert lsp suggest'
_surg_global='-h --help --version --diagnostics --color'
_surg_checkpoints='.safetensors .json .npz .npy .pt .pth .bin .tar .msgpack'

# The options of each command, as `surg COMMAND --help` lists them
# (tests/py/test_install.py compares the two).
_surg_options() {
    case $1 in
    run) echo '--in --params --state -q --quiet --to --threads --format --out-format --max-shard-size --writers --reflink --part' ;;
    check) echo '--from --in --params --state --to --graph --format' ;;
    plan) echo '--from --in --params --state --to --json --threads --format --max-shard-size --part' ;;
    index) echo '--plan -q --quiet' ;;
    fmt) echo '--check -w --write --tree' ;;
    schema) echo '--json --format' ;;
    diff) echo '--recipe --schema --rtol --atol --json --format --threads' ;;
    invert) echo '--from --format' ;;
    lsp) echo '' ;;
    suggest) echo '--from --to --format' ;;
    esac
}

# Options that take a value (the next word).
_surg_takes_value() {
    case $1 in
    --diagnostics | --color | --in | --params | --state | --from | --to | --threads | \
        --format | --out-format | --max-shard-size | --recipe | --rtol | --atol | \
        --writers | --reflink | --part | --plan) return 0 ;;
    esac
    return 1
}

# COMPREPLY: the words of $1 that start with $2.
_surg_words() {
    mapfile -t COMPREPLY < <(compgen -W "$1" -- "$2")
}

# COMPREPLY: directories, and files under $1 ending in one of the suffixes
# that follow ('' for any file).
_surg_files() {
    local cur=$1 f s
    shift
    local IFS=$'\n'
    compopt -o filenames 2>/dev/null
    mapfile -t COMPREPLY < <(compgen -d -- "$cur")
    for f in $(compgen -f -- "$cur"); do
        [[ -d $f ]] && continue
        for s in "$@"; do
            if [[ -z $s || $f == *"$s" ]]; then
                COMPREPLY+=("$f")
                break
            fi
        done
    done
}

_surg_checkpoint_files() {
    # shellcheck disable=SC2086 # the suffixes are words
    _surg_files "$1" $_surg_checkpoints
}

_surg() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local cmd='' i w npos=0
    COMPREPLY=()

    # The command is the first word that is neither an option nor a value.
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [[ $w == = ]]; then
            ((i++)) # --in NAME=PATH split at '=' (COMP_WORDBREAKS): skip PATH
        elif [[ $w == -* ]]; then
            _surg_takes_value "$w" && ((i++))
        elif [[ -z $cmd ]]; then
            cmd=$w
        else
            ((npos++)) # a positional argument of the command
        fi
    done

    # --in NAME=PATH: the path after '=' (a word of its own, or not).
    if [[ $prev == = && ${COMP_WORDS[COMP_CWORD - 3]} == --in ]]; then
        _surg_checkpoint_files "$cur"
        return
    fi
    if [[ $prev == --in && $cur == *=* ]]; then
        _surg_checkpoint_files "${cur#*=}"
        local k
        for k in "${!COMPREPLY[@]}"; do COMPREPLY[k]=${cur%%=*}=${COMPREPLY[k]}; done
        return
    fi

    case $prev in
    --diagnostics)
        _surg_words 'human json github' "$cur"
        return ;;
    --color)
        _surg_words 'auto always never' "$cur"
        return ;;
    --format)
        _surg_words 'safetensors npz npy torch msgpack orbax schema' "$cur"
        return ;;
    --out-format)
        _surg_words 'safetensors npz msgpack orbax peft' "$cur"
        return ;;
    --reflink)
        _surg_words 'auto always never' "$cur"
        return ;;
    --from | --to | --params | --state)
        _surg_checkpoint_files "$cur"
        return ;;
    --recipe)
        _surg_files "$cur" .surg
        return ;;
    --part)
        _surg_words 'auto' "$cur"
        return ;;
    --in | --threads | --rtol | --atol | --max-shard-size | --writers | --plan)
        return ;; # a name or a number: nothing to offer
    esac

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            _surg_words "$_surg_global" "$cur"
        else
            _surg_words "$_surg_commands" "$cur"
        fi
        return
    fi
    if [[ $cur == -* ]]; then
        _surg_words "$(_surg_options "$cmd") -h --help --diagnostics --color" "$cur"
        return
    fi
    # Positional arguments: recipes first, then checkpoints.
    case $cmd in
    fmt) _surg_files "$cur" .surg ;;
    schema | diff) _surg_checkpoint_files "$cur" ;;
    index) compopt -o dirnames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
    run | check | plan | invert)
        if ((npos == 0)); then
            _surg_files "$cur" .surg
        elif [[ $cmd == run ]]; then
            _surg_checkpoint_files "$cur" # IN, OUT
        fi ;;
    esac
}

complete -F _surg surg
