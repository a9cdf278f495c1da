# Shared helpers for the auto/* scripts.  Source it, do not run it.
#
# Sets XT_ROOT (absolute path of the repository) and offers small
# functions to read auto/releases.

XT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
XT_RELEASES="$XT_ROOT/auto/releases"

xt_die() {
    echo "${0##*/}: error: $*" >&2
    exit 1
}

xt_note() {
    echo "${0##*/}: $*" >&2
}

# xt_shared_dir NAME: the directory ../shared/NAME beside the repository,
# or, for a clone made elsewhere (a temporary directory), beside the local
# repository it was cloned from; prints nothing when neither exists.
xt_shared_dir() {
    local d=$XT_ROOT/../shared/$1 origin
    if [ ! -d "$d" ]; then
        origin=$(git -C "$XT_ROOT" config --get remote.origin.url 2>/dev/null || true)
        case "$origin" in
            /*) d=$origin/../shared/$1 ;;
        esac
    fi
    [ -d "$d" ] && (cd "$d" && pwd)
    return 0
}

# Every supported release, one per line, in file order (default first).
xt_releases() {
    awk '!/^[[:space:]]*(#|$)/ { print $1 }' "$XT_RELEASES"
}

xt_default_release() {
    xt_releases | head -n 1
}

# The pin of release $1 as "KIND VALUE" (KIND: sha256 or git-tree, see
# auto/releases); fails (with a message naming the known releases) for an
# unknown release or a malformed line.
xt_release_pin() {
    local pin
    pin=$(awk -v v="$1" '!/^[[:space:]]*#/ && $1 == v { print $2, $3; exit }' "$XT_RELEASES")
    if [ -z "$pin" ]; then
        echo "${0##*/}: error: unknown nginx release '$1'" \
             "(supported: $(xt_releases | tr '\n' ' ' | sed 's/ $//'); see auto/releases)" >&2
        return 1
    fi
    case "$pin" in
        "sha256 "*)   [[ "${pin#* }" =~ ^[0-9a-f]{64}$ ]] ;;
        "git-tree "*) [[ "${pin#* }" =~ ^[0-9a-f]{40}$ ]] ;;
        *)            false ;;
    esac || {
        echo "${0##*/}: error: auto/releases: bad pin for $1: '$pin'" \
             "(want 'sha256 HEX64' or 'git-tree HEX40')" >&2
        return 1
    }
    echo "$pin"
}

xt_sha256() {
    sha256sum "$1" | awk '{ print $1 }'
}

xt_ncpu() {
    nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2
}
