#!/bin/sh
# build-module.sh NAME BUILD_DIR
#
# Build dm-cowfile.ko for one kernel of the matrix (NAME as for
# fetch-kernel.sh: 5.10, 6.1, 6.12, newest, debug) with W=1 and -Werror, in a copy
# of dm-target/ under BUILD_DIR/dm-target/<release>/. Fetches the kernel
# into the cache first when it is not there. Fails when the build fails or
# prints any warning. The build log is BUILD_DIR/dm-target/<release>.log.
set -eu

[ $# -eq 2 ] || { echo "usage: $0 5.10|6.1|6.12|newest|debug BUILD_DIR" >&2; exit 2; }
name=$1
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../dm-target" && pwd)
mkdir -p "$2"
build=$(cd "$2" && pwd)
kcache=${SNAPMGR_KERNEL_CACHE:-$HOME/.cache/snapmgr-kernels}

release=$("$here/fetch-kernel.sh" "$name" | tail -n 1)
if [ "$name" = 6.1 ]; then
	kdir=/lib/modules/$release/build
else
	kdir=$kcache/$name/root/lib/modules/$release/build
fi
out=$build/dm-target/$release
log=$out.log
mkdir -p "$out"
cp -a --remove-destination -u "$src/." "$out/"

set -- make -C "$kdir" M="$out" W=1 KCFLAGS=-Werror
case "$name" in
# The 5.10 headers name gcc-10; the host's gcc builds it.
5.10)	set -- "$@" CC=gcc ;;
esac
set -- "$@" modules

echo "build-module: $name ($release) in $out" >&2
status=0
if [ "$name" = newest ]; then
	mkdir -p "$kcache"
	"$here/kbuild-in-chroot.sh" "$kcache/$name/chroot" \
		"$src:$build:$(cd "$kcache" && pwd)" "$@" >"$log" 2>&1 || status=$?
else
	"$@" >"$log" 2>&1 || status=$?
fi
cat "$log"
if [ "$status" -ne 0 ]; then
	echo "build-module: $name ($release): make failed ($status)" >&2
	exit 1
fi
if grep -qi 'warning' "$log"; then
	echo "build-module: $name ($release): warnings, see above" >&2
	exit 1
fi
[ -e "$out/dm-cowfile.ko" ] || { echo "build-module: no dm-cowfile.ko in $out" >&2; exit 1; }
echo "build-module: $name ($release): $out/dm-cowfile.ko" >&2
