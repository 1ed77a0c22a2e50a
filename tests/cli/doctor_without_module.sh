#!/bin/bash
# doctor_without_module.sh SNAPMGR: snapmgr doctor on this host, where no
# kernel has dm-cowfile (the module is never installed here). With nothing
# configured a kernel without it is a warning (exit 0); once a volume is
# configured it is a problem naming the kernel (exit 1), and the kernel's
# initramfs is looked into (unpacked, then removed). doctor's real
# checks run in vm.packages_install_boot_and_upgrade_under_systemd.
set -u
snapmgr=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export SNAPMGR_CONFIG_DIR=$dir SNAPMGR_RUN_DIR=$dir/run
kernel=""
for k in $(ls /boot | sed -n 's/^vmlinuz-//p'); do
	[ -d "/lib/modules/$k" ] && ! modinfo -k "$k" dm-cowfile > /dev/null 2>&1 && { kernel=$k; break; }
done
[ -n "$kernel" ] || { echo "FAIL: no kernel under /boot without dm-cowfile: nothing to check"; exit 1; }

# expect_doctor WHEN RC VERDICT: doctor exits RC and gives kernel a VERDICT line.
expect_doctor() {
	local out rc
	out=$("$snapmgr" doctor 2>&1)
	rc=$?
	[ $rc = "$2" ] || { echo "FAIL: $1: exit $rc: $out"; exit 1; }
	grep -q "^$3  kernel $kernel.*no dm-cowfile module" <<< "$out" ||
		{ echo "FAIL: $1: no $3 for $kernel: $out"; exit 1; }
	echo "ok: $1: exit $2, a $3 for $kernel"
}

expect_doctor "nothing configured" 0 warning
mkdir -p "$dir/volumes"
printf 'name = vdz\ndevice = /dev/vdz\nmode = wrap\nstore = /s\nstore_device = /dev/vdy\nstore_sb_sector = 0\nstore_uuid = 00000000-0000-0000-0000-000000000001\n' \
	> "$dir/volumes/vdz.conf"
expect_doctor "a volume configured" 1 problem

# With a volume configured, each initramfs is unpacked (into $TMPDIR) and
# looked into: this host's has no snapmgr. Nothing is left behind.
image=/boot/initrd.img-$kernel
[ -e "$image" ] || { echo "FAIL: $kernel has no $image to look into"; exit 1; }
mkdir "$dir/tmp"
out=$(TMPDIR=$dir/tmp "$snapmgr" doctor 2>&1)
grep -q "^warning  initramfs $image: no snapmgr" <<< "$out" ||
	{ echo "FAIL: doctor did not look into $image: $out"; exit 1; }
[ -z "$(ls -A "$dir/tmp")" ] || { echo "FAIL: doctor left $(ls -A "$dir/tmp") in \$TMPDIR"; exit 1; }
echo "ok: $image unpacked, found without snapmgr, nothing left in \$TMPDIR"
