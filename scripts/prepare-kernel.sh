#!/usr/bin/env bash
# Prepare the Linux 6.12 source tree that rewriter works on, as a git
# repository with a single, reproducible commit.
#
# Environment:
#   KERNEL_CACHE  cache directory (default: $HOME/.cache/rewriter); the
#                 downloaded linux-source-6.12 .deb is kept here
#   KERNEL_TREE   final tree (default: $KERNEL_CACHE/linux-6.12)
#
# The tree comes from Debian's linux-source-6.12 package.  It is built in a
# temporary directory next to $KERNEL_TREE and renamed into place only when
# it is complete, so an interrupted run never leaves a half-made tree at
# $KERNEL_TREE.  A stamp file inside the tree's .git directory marks a
# finished tree; when it is present the script does nothing.
set -euo pipefail

PKG=linux-source-6.12
STAMP_NAME=rewriter-kernel.stamp
IDENT_NAME="Debian $PKG"
IDENT_EMAIL="rewriter@localhost"
IDENT_DATE="2024-11-17T00:00:00Z"
NEED_KB=$((4 * 1024 * 1024))   # ~1.7 GB tree + ~0.5 GB objects + tarball

log() { printf 'prepare-kernel: [%3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Do not let a caller's git environment point us at another repository.
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY \
      GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_CEILING_DIRECTORIES || true

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

command -v git >/dev/null 2>&1 || die "'git' not found"

KERNEL_CACHE=${KERNEL_CACHE:-$HOME/.cache/rewriter}
KERNEL_TREE=${KERNEL_TREE:-$KERNEL_CACHE/linux-6.12}
KERNEL_TREE=${KERNEL_TREE%/}
[ -n "$KERNEL_TREE" ] || die "KERNEL_TREE must not be /"

mkdir -p "$KERNEL_CACHE"
KERNEL_CACHE=$(cd "$KERNEL_CACHE" && pwd -P)
tree_parent=$(dirname "$KERNEL_TREE")
tree_name=$(basename "$KERNEL_TREE")
mkdir -p "$tree_parent"
tree_parent=$(cd "$tree_parent" && pwd -P)
KERNEL_TREE=$tree_parent/$tree_name
stamp=$KERNEL_TREE/.git/$STAMP_NAME

# --- is there already a usable tree? --------------------------------------

is_repo() {      # $1: directory; true if it is a git work tree with a HEAD
    [ -d "$1/.git" ] &&
        git -C "$1" rev-parse -q --verify 'HEAD^{commit}' >/dev/null 2>&1
}

is_linux_612() { # $1: directory; true if HEAD has pte_offset_map_nolock()
    git -C "$1" grep -q -w pte_offset_map_nolock HEAD -- include/linux/mm.h \
        2>/dev/null
}

use_cached() {
    if is_repo "$KERNEL_TREE" && [ -f "$stamp" ]; then
        echo "kernel: using cached tree $KERNEL_TREE" \
             "(HEAD $(git -C "$KERNEL_TREE" rev-parse --short HEAD))"
        exit 0
    fi
}

use_cached

# Only one preparation at a time per cache; the loser of the race waits and
# then finds the finished tree.  (flock is in util-linux, which Debian
# always has.)
if command -v flock >/dev/null 2>&1; then
    exec 9>"$KERNEL_CACHE/.prepare-kernel.lock"
    if ! flock -n 9; then
        log "waiting for another prepare-kernel run to finish"
        flock 9
    fi
    use_cached
fi

# A repository made earlier by hand (without the stamp) is adopted when it
# really is Linux 6.12 with pte_offset_map_nolock(); it is never deleted.
if is_repo "$KERNEL_TREE" && is_linux_612 "$KERNEL_TREE"; then
    {
        echo "package=$PKG"
        echo "commit=$(git -C "$KERNEL_TREE" rev-parse HEAD)"
        echo "adopted=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } >"$stamp.tmp"
    mv -f "$stamp.tmp" "$stamp"
    echo "kernel: adopted existing tree $KERNEL_TREE" \
         "(HEAD $(git -C "$KERNEL_TREE" rev-parse --short HEAD)); wrote stamp"
    exit 0
fi

if [ -e "$KERNEL_TREE" ] || [ -L "$KERNEL_TREE" ]; then
    die "$KERNEL_TREE exists but is not a Linux 6.12 git repository;" \
        "move it away or set KERNEL_TREE to another path"
fi

# --- build a new tree -------------------------------------------------------

for tool in apt-get dpkg dpkg-deb tar xz df; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "'$tool' not found (run 'make deps' to install missing tools)"
done

work=
download=
cleanup() {
    if [ -n "$download" ]; then rm -rf -- "$download"; fi
    if [ -n "$work" ]; then
        log "removing temporary directory $work"
        rm -rf -- "$work"
    fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# Leftovers of runs that were killed too hard to clean up after themselves.
# We hold the lock, so nobody else is using them.
for old in "$tree_parent/.$tree_name.tmp."*; do
    [ -d "$old" ] || continue
    log "removing leftover $old"
    rm -rf -- "$old"
done

avail_kb=$(df -Pk "$tree_parent" | awk 'NR == 2 { print $4 }')
if [ -n "$avail_kb" ] && [ "$avail_kb" -lt "$NEED_KB" ]; then
    die "need about $((NEED_KB / 1024 / 1024)) GB free in $tree_parent," \
        "only $((avail_kb / 1024)) MB available"
fi

# Newest linux-source-6.12 .deb already in the cache, if any.
newest_deb() {
    local best='' f v bv
    for f in "$KERNEL_CACHE/${PKG}_"*_all.deb; do
        [ -f "$f" ] || continue
        v=$(deb_version "$f")
        if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$bv"; then
            best=$f
            bv=$v
        fi
    done
    printf '%s' "$best"
}

deb_version() {  # linux-source-6.12_6.12.117-1~deb12u1_all.deb -> 6.12.117-1~deb12u1
    local v
    v=$(basename "$1")
    v=${v#"${PKG}_"}
    v=${v%_all.deb}
    printf '%s' "${v//%3a/:}"
}

apt_download() {
    local opts=()
    # As root, apt would otherwise warn that it cannot drop to user _apt.
    if [ "$(id -u)" -eq 0 ]; then opts=(-o APT::Sandbox::User=root); fi
    (cd "$download" && apt-get -q "${opts[@]}" download "$PKG")
}

deb=$(newest_deb)
if [ -n "$deb" ]; then
    log "using cached $(basename "$deb")"
else
    log "downloading $PKG with apt-get download"
    download=$(mktemp -d "$KERNEL_CACHE/.download.XXXXXX")
    if ! apt_download; then
        log "download failed; refreshing package lists (apt-get update)"
        rm -f -- "$download"/*.deb
        $SUDO apt-get -q update
        apt_download || die "apt-get download $PKG failed"
    fi
    for f in "$download/${PKG}_"*_all.deb; do
        [ -f "$f" ] || die "apt-get download produced no $PKG .deb"
        mv -f -- "$f" "$KERNEL_CACHE/"
    done
    rm -rf -- "$download"
    download=
    deb=$(newest_deb)
fi
version=$(deb_version "$deb")

work=$(mktemp -d "$tree_parent/.$tree_name.tmp.XXXXXX")
log "extracting $(basename "$deb") in $work"
dpkg-deb -x "$deb" "$work/deb"
tarball=$work/deb/usr/src/$PKG.tar.xz
[ -f "$tarball" ] || die "$(basename "$deb") does not contain usr/src/$PKG.tar.xz"
mkdir "$work/src"
tar -xJf "$tarball" -C "$work/src" --no-same-owner
rm -rf -- "$work/deb"
[ -d "$work/src/$PKG" ] || die "$PKG.tar.xz did not unpack to $PKG/"
tree=$work/tree
mv -- "$work/src/$PKG" "$tree"

log "creating git repository (this takes a minute or two)"
(
    # Ignore the user's and the system's git configuration so that the
    # commit (and so its hash) is the same on every machine.
    export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
    export GIT_AUTHOR_NAME="$IDENT_NAME" GIT_AUTHOR_EMAIL="$IDENT_EMAIL"
    export GIT_COMMITTER_NAME="$IDENT_NAME" GIT_COMMITTER_EMAIL="$IDENT_EMAIL"
    export GIT_AUTHOR_DATE="$IDENT_DATE" GIT_COMMITTER_DATE="$IDENT_DATE"
    cd "$tree"
    git init -q -b master
    # Debian's top-level .gitignore ignores everything, hence -f.
    git add -f -A
    # gc.auto=0: no background "git gc --auto" that would outlive us.
    git -c gc.auto=0 commit -q --no-verify -m "Linux 6.12 (Debian $PKG $version)"
    log "packing objects"
    # Pack the ~90000 loose objects now; otherwise the first commit made in
    # this tree later would start a slow automatic "git gc".
    git repack -a -d -q --window=0
)
is_linux_612 "$tree" ||
    die "the new tree has no pte_offset_map_nolock() in include/linux/mm.h"

commit=$(git -C "$tree" rev-parse HEAD)
{
    echo "package=$PKG"
    echo "version=$version"
    echo "deb=$(basename "$deb")"
    echo "commit=$commit"
    echo "prepared=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$tree/.git/$STAMP_NAME"

# The stamp is already inside, so tree and stamp appear together.
mv -T -- "$tree" "$KERNEL_TREE"
rm -rf -- "$work"
work=

echo "kernel: prepared $KERNEL_TREE (HEAD ${commit:0:12}," \
     "Debian $PKG $version) in ${SECONDS}s"
