# SPDX-License-Identifier: Apache-2.0
# bash completion for sallyportctl(8). Installed as
# <datadir>/bash-completion/completions/sallyportctl; works with or without
# the bash-completion package's helpers.

_sallyportctl() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local prev=${COMP_WORDS[COMP_CWORD - 1]}
    local commands="status agents listeners sessions close drain resume reload relays services metrics help"
    case $prev in
        -s | --socket)
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            return
            ;;
        -t | --timeout | --service | --client)
            return
            ;;
    esac
    # The command is the first word that is neither an option nor an
    # option's value.
    local cmd="" i w
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
            -s | --socket | -t | --timeout | --service | --client) ((i++)) ;;
            -*) ;;
            *)
                cmd=$w
                break
                ;;
        esac
    done
    if [[ $cur == -* ]]; then
        local opts="-s --socket --json -t --timeout -h --help --version"
        [[ $cmd == sessions ]] && opts+=" --service --client"
        mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
        return
    fi
    if [[ -z $cmd ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
    fi
}
complete -F _sallyportctl sallyportctl
