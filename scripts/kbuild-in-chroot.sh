#!/bin/sh
# kbuild-in-chroot.sh CHROOT DIR[:DIR...] COMMAND [ARGS...]
#
# Run COMMAND inside the build chroot made by make-build-chroot.sh, with
# each DIR of the colon-separated list bind-mounted at the same path (the
# project, the build directory, the kernel cache), so absolute paths mean
# the same inside and out. The mounts live in a private mount namespace and
# vanish with the command. Needs root.
#
#   scripts/kbuild-in-chroot.sh ~/.cache/snapmgr-kernels/newest/chroot \
#       "$PWD:$HOME/.cache/snapmgr-kernels" make -C KDIR M=DIR modules
set -eu

[ $# -ge 3 ] || { echo "usage: $0 CHROOT DIR[:DIR...] COMMAND [ARGS...]" >&2; exit 2; }
chroot=$1
dirs=$2
shift 2
[ -x "$chroot/usr/bin/make" ] || { echo "kbuild-in-chroot: no build chroot at $chroot" >&2; exit 1; }

exec unshare --mount --propagation private sh -eu -c '
chroot=$1 dirs=$2
shift 2
mount -t proc proc "$chroot/proc"
mount --rbind /dev "$chroot/dev"
IFS=:
for d in $dirs; do
	mkdir -p "$chroot$d"
	mount --bind "$d" "$chroot$d"
done
unset IFS
cd /
exec chroot "$chroot" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
' kbuild-in-chroot "$chroot" "$dirs" "$@"
