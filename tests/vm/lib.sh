# Sourced by every VM scenario: strict mode, assertions, cleanup, devices.
# Runs inside the guest, as root, in a chroot of the host's root filesystem.
set -euo pipefail

# No udev runs in the harness guest: let libdevmapper make /dev/mapper nodes.
export DM_DISABLE_UDEV=1
export PATH="$PATH:/usr/sbin:/sbin"

log() { echo "== $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_eq ACTUAL EXPECTED WHAT
expect_eq() {
	[ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"
	echo "ok: $3"
}

# expect_fail WHAT CMD...: CMD must exit non-zero.
expect_fail() {
	local what=$1
	shift
	if "$@" > /tmp/expect_fail.out 2>&1; then
		cat /tmp/expect_fail.out
		fail "$what: '$*' succeeded"
	fi
	echo "ok: $what ($(head -c 200 /tmp/expect_fail.out | tr '\n' ' '))"
}

# Cleanups run in reverse order at exit, so a failed scenario still removes
# its devices and unloads the module (which is where leaks show up).
_cleanups=()
on_exit() { _cleanups=("$*" "${_cleanups[@]+"${_cleanups[@]}"}"); }
_run_cleanups() {
	local rc=$? c
	for c in "${_cleanups[@]+"${_cleanups[@]}"}"; do
		eval "$c" || echo "cleanup failed: $c" >&2
	done
	exit $rc
}
trap _run_cleanups EXIT

load_modules() {
	local deps
	deps=$(modinfo -F depends "$COWFILE_KO" | tr , ' ')
	modprobe -a dm-mod $deps
	insmod "$COWFILE_KO"
	on_exit "rmmod dm_cowfile"
}

# new_loop SIZE: a loop device over a sparse file in the guest's tmpfs.
new_loop() {
	local img dev
	img=$(mktemp /tmp/loop.XXXXXX)
	truncate -s "$1" "$img"
	modprobe loop
	dev=$(losetup --find --show "$img")
	on_exit "losetup -d $dev; rm -f $img"
	echo "$dev"
}

# fill_random DEV: random content over the whole device.
fill_random() {
	dd if=/dev/urandom of="$1" bs=1M oflag=direct status=none 2>/dev/null ||
		true # dd stops with ENOSPC at the end of the device
	blockdev --flushbufs "$1"
}

dev_sum() { sha256sum < "$1" | cut -d' ' -f1; }
dev_sectors() { blockdev --getsz "$1"; }
