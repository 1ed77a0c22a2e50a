#!/bin/sh
# fetch-kernel.sh NAME
#
# Fetch one kernel of the module's build matrix from Debian's archive and
# unpack it into a cache, ready for Kbuild and for the VM harness:
#
#   5.10     bullseye (and bullseye-security when it carries a newer one)
#   6.1      bookworm: the host's own installed kernel, nothing is fetched
#   6.12     bookworm-backports
#   newest   sid (unstable); its headers want a gcc bookworm lacks, so a
#            sid chroot with that gcc is bootstrapped too (kbuild-in-chroot.sh)
#   debug    bookworm's 6.1 built from linux-source with KASAN, lockdep,
#            kmemleak and DEBUG_ATOMIC_SLEEP (build-debug-kernel.sh)
#
# The cache is ${SNAPMGR_KERNEL_CACHE:-$HOME/.cache/snapmgr-kernels}/NAME/:
#   root/boot/vmlinuz-<release>, root/lib/modules/<release>/build -> the
#   unpacked headers, with the packages' absolute paths rewritten into root/
#   apt/  the private apt configuration (sources, lists, .deb cache)
#   chroot/  (newest only) the sid build chroot
#
# apt runs with its own sources list, lists and cache; the system's apt
# configuration is never read for sources nor changed. Idempotent: with
# everything cached it only prints the release. The release is the last
# line on stdout; progress goes to stderr.
set -eu

usage() {
	echo "usage: $0 5.10|6.1|6.12|newest|debug" >&2
	exit 2
}
[ $# -eq 1 ] || usage
name=$1
mirror=http://deb.debian.org/debian
security=http://deb.debian.org/debian-security

case "$name" in
5.10)	suites="$mirror bullseye main
$security bullseye-security main" ;;
6.1)	release=$(ls /lib/modules | grep -E '^6\.1\.[0-9]+-[0-9]+-amd64$' | sort -V | tail -n 1)
	if [ -z "$release" ] || [ ! -e "/lib/modules/$release/build/Makefile" ]; then
		echo "fetch-kernel: no bookworm 6.1 kernel with headers installed: run scripts/install-deps.sh" >&2
		exit 1
	fi
	echo "$release"
	exit 0 ;;
6.12)	suites="$mirror bookworm-backports main" ;;
newest)	suites="$mirror sid main" ;;
debug)	exec "$(dirname "$0")/build-debug-kernel.sh" ;;
*)	usage ;;
esac

cache=${SNAPMGR_KERNEL_CACHE:-$HOME/.cache/snapmgr-kernels}/$name
root=$cache/root
stamp=$cache/release

log() { echo "fetch-kernel[$name]: $*" >&2; }

# A finished fetch leaves the release in $stamp, written last.
if [ -s "$stamp" ]; then
	release=$(cat "$stamp")
	if [ -e "$root/boot/vmlinuz-$release" ] && [ -e "$root/lib/modules/$release/build/Makefile" ] &&
	   { [ "$name" != newest ] || [ -x "$cache/chroot/usr/bin/make" ]; }; then
		echo "$release"
		exit 0
	fi
fi

# --- private apt ----------------------------------------------------------
aptdir=$cache/apt
. "$(dirname "$0")/private-apt.sh"
private_apt "$aptdir" "$suites"

log "updating package lists"
apt_get update >&2

# The versioned package a metapackage depends on, e.g.
# linux-image-amd64 -> linux-image-6.12.48+deb12-amd64.
depends_matching() {
	apt_cache depends --no-recommends --no-suggests "$1" |
		sed -n 's/^ *\(Pre\)\{0,1\}Depends: //p' | tr -d '<>' | grep -E "$2" | sort -V | tail -n 1
}
headers=$(depends_matching linux-headers-amd64 '^linux-headers-.*-amd64$')
[ -n "$headers" ] || { log "cannot resolve linux-headers-amd64"; exit 1; }
release=${headers#linux-headers-}
compiler=$(depends_matching "$headers" '^(linux-compiler-)?gcc-[0-9]+(-x86|-for-host)?$' || true)
image=linux-image-$release
if ! apt_cache show "$image" >/dev/null 2>&1; then
	image=$image-unsigned
fi
# Both packages and what they depend on of the same kernel build (the
# headers' -common tree and linux-kbuild; since 7.x the image is split into
# linux-binary-, linux-modules-, linux-base-<release>). Another linux-image
# named as an alternative in the headers' dependencies is left out.
abi=${release%-amd64}
packages="$image $headers"
todo=$packages
while [ -n "$todo" ]; do
	next=""
	for p in $todo; do
		for d in $(apt_cache depends --no-recommends --no-suggests "$p" |
			   sed -n 's/^ *\(Pre\)\{0,1\}Depends: //p' | tr -d '<>' |
			   grep -F -e "$abi" -e linux-kbuild- | grep -v '^linux-image-' || true); do
			case " $packages " in
			*" $d "*) ;;
			*) packages="$packages $d"; next="$next $d" ;;
			esac
		done
	done
	todo=$next
done
case "$packages" in
*-common*) ;;
*) log "no linux-headers-*-common among $packages"; exit 1 ;;
esac
log "release $release:$(echo " $packages" | tr -s ' ')${compiler:+ (built with $compiler)}"

# --- download and unpack --------------------------------------------------
(cd "$aptdir/debs" && rm -f ./*.deb && apt_get download $packages >&2)
rm -rf "$root.new"
mkdir -p "$root.new"
for deb in "$aptdir"/debs/*.deb; do
	log "unpacking $(basename "$deb")"
	dpkg-deb -x "$deb" "$root.new"
done

# Absolute symlinks (lib/modules/<release>/build and source, and in some
# versions scripts/tools) point at the host's /usr: make them relative so
# they resolve inside root/ wherever it lives.
find "$root.new" -type l -lname '/*' | while read -r link; do
	target=$(readlink "$link")
	ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$root.new$target")" "$link"
done
# The per-flavour Makefile includes the common tree by absolute path.
hdrs=$root.new/usr/src/linux-headers-$release
sed -i "s|/usr/src/|$root/usr/src/|g" "$hdrs/Makefile"
for dir in scripts tools; do
	[ -e "$hdrs/$dir" ] || { log "$hdrs/$dir does not resolve"; exit 1; }
done
# Since 7.x the packages are merged-/usr only: usr/lib/modules/<release>
# holds vmlinuz. Give the tree the classic layout the harness expects.
if [ ! -e "$root.new/lib" ] && [ -d "$root.new/usr/lib/modules" ]; then
	ln -s usr/lib "$root.new/lib"
fi
if [ ! -e "$root.new/boot/vmlinuz-$release" ] && [ -e "$root.new/lib/modules/$release/vmlinuz" ]; then
	mkdir -p "$root.new/boot"
	ln -s "../lib/modules/$release/vmlinuz" "$root.new/boot/vmlinuz-$release"
fi
[ -e "$root.new/boot/vmlinuz-$release" ] || { log "no vmlinuz-$release in $image"; exit 1; }
# The packages leave modules.dep to their postinst; the VM's modprobe needs it.
depmod -b "$root.new" "$release"
rm -rf "$root"
mv "$root.new" "$root"
rm -f "$aptdir"/debs/*.deb

if [ -n "$compiler" ]; then
	# The gcc the kernel was built with, e.g. gcc-16: Kbuild wants the same.
	echo "$compiler" | sed 's/^linux-compiler-//; s/-x86$//; s/-for-host$//' >"$cache/compiler"
fi

if [ "$name" = newest ]; then
	"$(dirname "$0")/make-build-chroot.sh" "$cache"
fi

echo "$release" >"$stamp"
echo "$release"
