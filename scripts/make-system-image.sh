#!/bin/bash
# make-system-image.sh KERNEL_RELEASE
#
# A real Debian 12 system for the systemd VM tests (tests/vm/systemd/):
# debootstrap of bookworm with systemd as init, udev, dracut, lvm2, DKMS and
# the compiler it needs, kernel KERNEL_RELEASE (the one the project is
# built for) with its headers, what the snapmgr package depends on, and
# python3-requests for the Coriolis client (tests/vm/coriolis_client.py); in
# /root/kernel-upgrade the packages of bookworm-backports' kernel (6.12) and
# its headers, for the kernel-upgrade test, which has no network. The guest
# runs the job vm-run gives it from vm-job.service (tests/vm/systemd/vm-job).
#
# Built once into ${SNAPMGR_SYSTEM_CACHE:-~/.cache/snapmgr-system}/bookworm:
#   root.img   ext4 filesystem image of the system (sparse), UUID in root-uuid
#   boot/      vmlinuz-RELEASE and initrd.img-RELEASE (a generic dracut
#              initramfs with systemd) to boot it with
# and reused while KERNEL_RELEASE and this script are unchanged. The last
# line on stdout is the cache directory. Needs root and debootstrap.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 KERNEL_RELEASE" >&2; exit 2; }
release=$1
here=$(cd "$(dirname "$0")" && pwd)
cache=${SNAPMGR_SYSTEM_CACHE:-$HOME/.cache/snapmgr-system}/bookworm
mirror=http://deb.debian.org/debian
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
# The root filesystem's UUID, fixed so that /etc/fstab can name it.
uuid=5a9e0d2c-31f4-4e0b-9b7e-2f3c1d5e7a10
key="$release $(cat "$0" "$here"/../tests/vm/systemd/vm-job* | sha256sum | cut -c1-16)"

log() { echo "make-system-image: $*" >&2; }

if [ "$(cat "$cache/complete" 2>/dev/null)" = "$key" ]; then
	echo "$cache"
	exit 0
fi
command -v debootstrap >/dev/null || { log "debootstrap missing: run scripts/install-deps.sh"; exit 1; }

rm -rf "$cache"
mkdir -p "$cache"
root=$cache/root
log "bootstrapping Debian 12 into $root (a few minutes)"
debootstrap --variant=minbase --keyring="$keyring" --include=systemd-sysv,udev \
	bookworm "$root" "$mirror" > "$cache/debootstrap.log" 2>&1 ||
	{ tail -n 20 "$cache/debootstrap.log" >&2; log "debootstrap failed, log in $cache/debootstrap.log"; exit 1; }

cat > "$root/etc/apt/sources.list" <<EOF
deb [signed-by=$keyring] $mirror bookworm main
deb [signed-by=$keyring] $mirror bookworm-updates main
deb [signed-by=$keyring] http://deb.debian.org/debian-security bookworm-security main
deb [signed-by=$keyring] $mirror bookworm-backports main
EOF
# No daemon starts in the chroot.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
# The initramfs the kernel's postinst builds here is the first boot's: a
# generic one (hostonly would describe this machine, not the VM). The
# system's own configuration, for every dracut run in the VM, is hostonly
# as a Debian server's (50-vm.conf, written after).
mkdir -p "$root/etc/dracut.conf.d"
cat > "$root/etc/dracut.conf.d/00-image-build.conf" <<'EOF'
hostonly="no"
dracutmodules+=" systemd systemd-initrd base udev-rules rootfs-block dm fs-lib kernel-modules shutdown "
add_drivers+=" virtio_blk virtio_pci ext4 "
EOF

packages="linux-image-$release linux-headers-$release dkms dracut lvm2 dmsetup kmod
	e2fsprogs fdisk procps python3 python3-requests zstd libcpp-httplib0.11 libfmt9 libssl3 libdevmapper1.02.1 libblkid1"
# shellcheck disable=SC2016
unshare -m --propagation private bash -euo pipefail -c '
	root=$1 cache=$2
	shift 2
	mount -t proc proc "$root/proc"
	mount -t sysfs sysfs "$root/sys"
	mount --bind /dev "$root/dev"
	mount -t tmpfs tmpfs "$root/tmp"
	in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
	in_root apt-get -q update
	# Unsafe I/O: the tree becomes an image (mke2fs -d) or is made again.
	in_root apt-get -q install -y --no-install-recommends -o DPkg::Options::=--force-unsafe-io "$@"
	# The next kernel, for the upgrade test: fetched here, installed by
	# dpkg in the guest (no network there).
	in_root apt-get -q clean
	in_root apt-get -q install -y --no-install-recommends --download-only \
		-t bookworm-backports linux-image-amd64 linux-headers-amd64
	mkdir -p "$root/root/kernel-upgrade"
	mv "$root"/var/cache/apt/archives/*.deb "$root/root/kernel-upgrade/"
	rm "$root"/root/kernel-upgrade/linux-image-amd64_* "$root"/root/kernel-upgrade/linux-headers-amd64_*
	in_root apt-get -q clean
' image "$root" "$cache" $packages > "$cache/apt.log" 2>&1 ||
	{ tail -n 30 "$cache/apt.log" >&2; log "installing the packages failed, log in $cache/apt.log"; exit 1; }
ls "$root/root/kernel-upgrade" | grep -q '^linux-image-6\.12' ||
	{ log "no 6.12 kernel among $(ls "$root/root/kernel-upgrade")"; exit 1; }
rm -f "$root/etc/dracut.conf.d/00-image-build.conf" "$root/usr/sbin/policy-rc.d"
rm -rf "$root/var/lib/apt/lists/"* "$root/usr/share/doc/"* "$root/usr/share/man/"* "$root/usr/share/locale/"*

mkdir -p "$cache/boot"
cp "$root/boot/vmlinuz-$release" "$root/boot/initrd.img-$release" "$cache/boot/" ||
	{ log "the kernel's postinst left no initrd.img-$release"; exit 1; }

# The system: root by UUID, a hostname, a serial console without getty
# (the job runs from vm-job.service and powers off), dracut as a server
# has it.
cat > "$root/etc/dracut.conf.d/50-vm.conf" <<'EOF'
# The VM's disk and filesystem drivers are modules; root is found by UUID.
hostonly="yes"
hostonly_cmdline="no"
add_drivers+=" virtio_blk virtio_pci "
# zstd at its own default level: dracut's default (gzip -9) took a minute
# per image under emulation, and its "zstd" means level 15 (of a 132 MB
# image: 13.5 s on the host, against 0.4 s at level 3).
compress="zstd -q -3 -T0"
EOF
echo "UUID=$uuid / ext4 rw,errors=remount-ro 0 1" > "$root/etc/fstab"
echo vm > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vm\n' > "$root/etc/hosts"
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"
install -m 755 "$here/../tests/vm/systemd/vm-job" "$root/usr/local/sbin/vm-job"
install -m 644 "$here/../tests/vm/systemd/vm-job.service" "$root/etc/systemd/system/vm-job.service"
ln -sf ../vm-job.service "$root/etc/systemd/system/multi-user.target.wants/vm-job.service"
for unit in emergency rescue; do
	mkdir -p "$root/etc/systemd/system/$unit.service.d"
	install -m 644 "$here/../tests/vm/systemd/vm-job-emergency.conf" "$root/etc/systemd/system/$unit.service.d/vm-job.conf"
done
echo "$uuid" > "$cache/root-uuid"

log "making the filesystem image"
size=$(( $(du -sm "$root" | cut -f1) + 2048 ))
mke2fs -q -t ext4 -U "$uuid" -L debian-root -d "$root" "$cache/root.img" "${size}M" > /dev/null
rm -rf "$root"
echo "$key" > "$cache/complete"
echo "$cache"
