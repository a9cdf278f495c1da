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

# Every supported release, one per line, in file order (default first).
xt_releases() {
    awk '!/^[[:space:]]*(#|$)/ { print $1 }' "$XT_RELEASES"
}

xt_default_release() {
    xt_releases | head -n 1
}

# Expected sha256 of the pristine tarball of release $1; fails (with a
# message naming the known releases) for an unknown release.
xt_release_sha256() {
    local sum
    sum=$(awk -v v="$1" '!/^[[:space:]]*#/ && $1 == v { print $2; exit }' "$XT_RELEASES")
    if [ -z "$sum" ]; then
        echo "${0##*/}: error: unknown nginx release '$1'" \
             "(supported: $(xt_releases | tr '\n' ' ' | sed 's/ $//'); see auto/releases)" >&2
        return 1
    fi
    echo "$sum"
}

xt_sha256() {
    sha256sum "$1" | awk '{ print $1 }'
}

xt_ncpu() {
    nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2
}
