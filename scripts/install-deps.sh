#!/bin/sh
# Install every Debian package the build, the VM harness and the tests need.
# Idempotent: when everything is present it prints nothing and exits 0.
set -eu

PACKAGES="
build-essential cmake pkg-config git
libdevmapper-dev libblkid-dev libfmt-dev libcli11-dev nlohmann-json3-dev libcpp-httplib-dev libtoml11-dev libssl-dev curl openssl python3 python3-requests iproute2
libgtest-dev googletest
linux-image-amd64 linux-headers-amd64 kmod dwarves sparse
qemu-system-x86 busybox-static cpio zstd debootstrap scdoc groff-base
flex bison bc libelf-dev
dmsetup lvm2 thin-provisioning-tools e2fsprogs xfsprogs btrfs-progs fio util-linux
dracut-core udev fdisk
dkms lintian
"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done

[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# lvm2 and friends would start services in a real system; in a container
# policy-rc.d may be absent, so never let a postinst failure stop us quietly.
apt-get install -y -qq --no-install-recommends $missing >/dev/null
