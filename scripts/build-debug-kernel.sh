#!/bin/sh
# build-debug-kernel.sh
#
# Build bookworm's 6.1 kernel from Debian's linux-source-6.1 with the
# kernel's own checkers on: KASAN, lockdep (PROVE_LOCKING), kmemleak,
# DEBUG_ATOMIC_SLEEP, UBSAN bounds, DEBUG_LIST and DEBUG_OBJECTS (the full
# list: debug-kernel.config). The config is x86_64 defconfig +
# kvm_guest.config + debug-kernel.config: what the VM scenarios need is
# built in, dm-cowfile builds as a module against the tree.
#
# Result, in the same layout fetch-kernel.sh gives the other kernels:
#   ${SNAPMGR_KERNEL_CACHE:-$HOME/.cache/snapmgr-kernels}/debug/
#     root/boot/vmlinuz-<release>, root/lib/modules/<release>/build -> src
#     release   written last; its presence means the build is complete
# Cached: with a complete build for the same source package and config it
# only prints the release (last line on stdout; progress on stderr). About
# 35 minutes on 2 cores the first time, 2.4 GiB. Needs flex, bison, libelf-dev, bc
# (scripts/install-deps.sh).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache=${SNAPMGR_KERNEL_CACHE:-$HOME/.cache/snapmgr-kernels}/debug
root=$cache/root
stamp=$cache/release
fragment=$here/debug-kernel.config

log() { echo "build-debug-kernel: $*" >&2; }

. "$here/private-apt.sh"
private_apt "$cache/apt" "http://deb.debian.org/debian bookworm main
http://deb.debian.org/debian-security bookworm-security main"

# What a complete build was made from: the source package's version and the
# fragment. Either changing means a rebuild.
want_key() {
	echo "$1"
	cat "$fragment"
}

if [ -s "$stamp" ] && [ -s "$cache/key" ] && [ -e "$root/boot/vmlinuz-$(cat "$stamp")" ]; then
	version=$(sed -n 1p "$cache/key")
	if [ "$(want_key "$version")" = "$(cat "$cache/key")" ]; then
		cat "$stamp"
		exit 0
	fi
fi

for tool in flex bison bc; do
	command -v $tool >/dev/null || { log "$tool missing: run scripts/install-deps.sh"; exit 1; }
done
[ -e /usr/include/libelf.h ] || { log "libelf-dev missing: run scripts/install-deps.sh"; exit 1; }

log "updating package lists"
apt_get update >&2
version=$(apt_cache show linux-source-6.1 | sed -n 's/^Version: //p' | sort -V | tail -n 1)
[ -n "$version" ] || { log "no linux-source-6.1 in bookworm"; exit 1; }
rm -f "$stamp"

debs=$cache/apt/debs
(cd "$debs" && rm -f ./*.deb && apt_get download "linux-source-6.1=$version" >&2)
log "unpacking linux-source-6.1 $version"
rm -rf "$cache/pkg" "$cache/src"
dpkg-deb -x "$debs"/linux-source-6.1_*.deb "$cache/pkg"
mkdir -p "$cache/src"
tar -xaf "$cache/pkg/usr/src/linux-source-6.1.tar.xz" -C "$cache/src" --strip-components=1
rm -rf "$cache/pkg" "$debs"/*.deb

src=$cache/src
cd "$src"
{
	make -s defconfig
	scripts/kconfig/merge_config.sh -m .config kernel/configs/kvm_guest.config "$fragment"
	make -s olddefconfig
} >"$cache/config.log" 2>&1 || { cat "$cache/config.log" >&2; log "configuring failed"; exit 1; }
# Kconfig silently drops what it cannot satisfy: insist on every line.
missing=$(grep -E '^(CONFIG_|# CONFIG_)' "$fragment" | while read -r line; do
	case "$line" in
	"# CONFIG_"*) name=${line#\# }; name=${name%% *}
		! grep -q "^$name=" .config || echo "$line" ;;
	*)	grep -qxF "$line" .config || echo "$line" ;;
	esac
done)
if [ -n "$missing" ]; then
	log "the final .config lacks:"
	echo "$missing" >&2
	exit 1
fi

log "building (about 35 minutes on 2 cores; log: $cache/build.log)"
make -j"$(nproc)" bzImage modules >"$cache/build.log" 2>&1 ||
	{ tail -n 40 "$cache/build.log" >&2; log "kernel build failed: $cache/build.log"; exit 1; }
release=$(make -s kernelrelease)

rm -rf "$root"
mkdir -p "$root/boot"
cp arch/x86/boot/bzImage "$root/boot/vmlinuz-$release"
make -s modules_install INSTALL_MOD_PATH="$root" INSTALL_MOD_STRIP=1 DEPMOD=/sbin/depmod >&2
# modules_install points build at the tree by absolute path: keep it
# relative, so the cache can move.
ln -sfn "$(realpath --relative-to="$root/lib/modules/$release" "$src")" \
	"$root/lib/modules/$release/build"
ln -sfn build "$root/lib/modules/$release/source"

want_key "$version" >"$cache/key"
echo "$release" >"$stamp"
log "release $release in $root"
echo "$release"
