#!/bin/sh
# make-build-chroot.sh KERNEL_CACHE_DIR
#
# Bootstrap a minimal sid chroot under KERNEL_CACHE_DIR/chroot with the gcc
# named in KERNEL_CACHE_DIR/compiler (written by fetch-kernel.sh: the gcc the
# kernel's headers depend on) and the tools Kbuild needs for an external
# module. Newer kernels ask for a gcc the host's release lacks; their module
# is built in here by kbuild-in-chroot.sh. Idempotent. Needs root and
# debootstrap (scripts/install-deps.sh).
set -eu

[ $# -eq 1 ] || { echo "usage: $0 KERNEL_CACHE_DIR" >&2; exit 2; }
cache=$1
chroot=$cache/chroot
mirror=http://deb.debian.org/debian
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

log() { echo "make-build-chroot: $*" >&2; }

gcc=$(cat "$cache/compiler" 2>/dev/null || echo gcc)
if [ -e "$chroot/.complete" ] && [ "$(cat "$chroot/.complete")" = "$gcc" ]; then
	exit 0
fi
command -v debootstrap >/dev/null || { log "debootstrap missing: run scripts/install-deps.sh"; exit 1; }

rm -rf "$chroot"
log "bootstrapping sid with $gcc into $chroot (several minutes)"
# The host's keyring may lack the newest release key; debootstrap then
# reports which key it could not check against.
debootstrap --variant=minbase --keyring="$keyring" \
	--include="$gcc,libc6-dev,make,bc,bison,flex,libelf-dev,libssl-dev,dwarves,kmod,cpio,xz-utils,zstd" \
	sid "$chroot" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
	{ tail -n 20 "$cache/debootstrap.log" >&2; log "debootstrap failed, log in $cache/debootstrap.log"; exit 1; }
# Trim what a build never reads.
rm -rf "$chroot/var/cache/apt/archives/"*.deb "$chroot/var/lib/apt/lists/"* \
	"$chroot/usr/share/doc" "$chroot/usr/share/man" "$chroot/usr/share/locale"
echo "$gcc" >"$chroot/.complete"
