# Sourced by every VM scenario: strict mode, assertions, cleanup, devices.
# Runs inside the guest, as root, in a chroot of the host's root filesystem.
set -euo pipefail

# No udev runs in the harness guest: let libdevmapper make /dev/mapper nodes.
export DM_DISABLE_UDEV=1
export PATH="$PATH:/usr/sbin:/sbin"

# log WHAT: a step, stamped with the seconds since the scenario started
# (the output is where a slow step shows).
_log_start=${EPOCHREALTIME/[.,]/}
log() {
	local now=${EPOCHREALTIME/[.,]/}
	printf '== %s [%d.%01ds]\n' "$*" $(((now - _log_start) / 1000000)) $(((now - _log_start) / 100000 % 10))
}
fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_eq ACTUAL EXPECTED WHAT
expect_eq() {
	[ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"
	echo "ok: $3"
}

# expect_fail WHAT CMD...: CMD must exit non-zero.
# expect_fail [-s STATUS] WHAT COMMAND...: COMMAND must fail, with exit
# status STATUS when given; a death by a signal (a segfault, an abort) or a
# shell's "not found" is never the refusal the test expects.
expect_fail() {
	local status="" rc=0 what
	if [ "$1" = -s ]; then
		status=$2
		shift 2
	fi
	what=$1
	shift
	"$@" > /tmp/expect_fail.out 2>&1 || rc=$?
	if [ $rc = 0 ]; then
		cat /tmp/expect_fail.out
		fail "$what: '$*' succeeded"
	fi
	if [ $rc -gt 125 ] || { [ -n "$status" ] && [ "$rc" != "$status" ]; }; then
		cat /tmp/expect_fail.out
		fail "$what: '$*' failed with status $rc, not the expected ${status:-refusal}"
	fi
	echo "ok: $what (status $rc: $(head -c 200 /tmp/expect_fail.out | tr '\n' ' '))"
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

# load_modules [PARAM=VALUE...]: dm-cowfile, with module parameters if given.
load_modules() {
	local deps
	deps=$(modinfo -F depends "$COWFILE_KO" | tr , ' ')
	modprobe -a dm-mod $deps
	insmod "$COWFILE_KO" "$@"
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

# dev_sum DEV|FILE: a checksum of the whole device or file, for equality.
# A device's page cache is dropped first, so nothing stale is read. md5sum
# reading the device itself: under TCG a pipe from dd doubles the time,
# and sha256 takes twice md5's (320 MiB: 2 s hashing, 0.7 s reading).
dev_sum() {
	if [ -b "$1" ]; then
		blockdev --flushbufs "$1"
	fi
	md5sum < "$1" | cut -d' ' -f1
}
dev_sectors() { blockdev --getsz "$1"; }

# gpt_os_layout DEV SIZE2 SIZE3 SIZE4: a GPT as on an OS disk: a 1 MiB
# BIOS boot partition at 1 MiB, two Linux partitions and swap, of the
# sizes given (sfdisk's: 160MiB).
gpt_os_layout() {
	sfdisk -q "$1" <<-EOF
	label: gpt
	start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name=bios
	size=$2, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
	size=$3, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=data
	size=$4, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name=swap
	EOF
}
# range_sum FILE START LENGTH (bytes, multiples of 512): the bytes of a range.
range_sum() {
	dd if="$1" bs=512 skip=$(($2 / 512)) count=$(($3 / 512)) iflag=direct status=none 2>/dev/null ||
		dd if="$1" bs=512 skip=$(($2 / 512)) count=$(($3 / 512)) status=none
}
range_md5() { range_sum "$@" | md5sum | cut -d' ' -f1; }
# stamp DEV OFFSET TEXT: 4 KiB of TEXT at OFFSET bytes, written directly.
stamp_bytes() { python3 -c 'import sys; sys.stdout.write((sys.argv[1] * 4096)[:4096])' "$1"; }
stamp() {
	stamp_bytes "$3" | dd of="$1" bs=4096 seek=$(($2 / 4096)) oflag=direct conv=notrunc status=none
}
# expect_stamp DEV OFFSET TEXT WHAT: the 4 KiB at OFFSET are TEXT's stamp.
expect_stamp() {
	[ "$(range_md5 "$1" "$2" 4096)" = "$(stamp_bytes "$3" | md5sum | cut -d' ' -f1)" ] ||
		fail "$4: $1 at byte $2 does not hold '$3' but '$(range_sum "$1" "$2" 4096 | head -c 40 | tr -c '[:print:]' .)'"
	echo "ok: $4"
}

# ---- cowfile helpers ----
COWFILE_STORE=${COWFILE_STORE:-$SNAPMGR_BUILD_DIR/tools/cowfile-store/cowfile-store}

# status_field DEV N: field N of the cowfile status INFO line, counted from
# the first field after the target name (1: mode, 2: generation, 3:
# generation epoch, 4: epoch, 5: chunk sectors, 6: marked/chunks,
# 7: 4 KiB log slots used/total, 8: snapshot state, 9: snapshot epoch,
# 10: invalid reason, 11: in-core bytes, 12: 4 KiB blocks copied).
status_field() {
	dmsetup status "$1" | awk -v n="$2" '{ print $(3 + n) }'
}

# mount_store_fs [SIZE]: an ext4 of its own for store files, on a loop
# device of SIZE (32M), mounted on /mnt/store until exit; sets STORE_DISK.
mount_store_fs() {
	STORE_DISK=$(new_loop "${1:-32M}")
	mkfs.ext4 -q -b 4096 "$STORE_DISK"
	mkdir -p /mnt/store
	mount "$STORE_DISK" /mnt/store
	on_exit "! mountpoint -q /mnt/store || umount /mnt/store"
}

# mount_store_fs_on_dm SIZE MOUNTPOINT: the same on a dm-linear device
# "storedev" over a new loop device, so that a scenario can swap its table
# (flakey, error) under a store; sets STORE_LOOP, STORE_SECTORS and
# STORE_HEALTHY (the linear table).
mount_store_fs_on_dm() {
	STORE_LOOP=$(new_loop "$1")
	STORE_SECTORS=$(dev_sectors "$STORE_LOOP")
	STORE_HEALTHY="0 $STORE_SECTORS linear $STORE_LOOP 0"
	dmsetup create storedev --table "$STORE_HEALTHY"
	on_exit "dm_remove_if_present storedev"
	mkfs.ext4 -q -b 4096 /dev/mapper/storedev
	mkdir -p "$2"
	mount /dev/mapper/storedev "$2"
	on_exit "! mountpoint -q $2 || umount $2"
}

# dm_remove_if_present NAME: remove a dm device unless it is gone already.
dm_remove_if_present() { ! dmsetup info "$1" > /dev/null 2>&1 || dmsetup remove "$1"; }

# new_store FILE SIZE ORIGIN_DEV [CHUNK_SECTORS]: create a store file on a
# mounted filesystem for ORIGIN_DEV; sets STORE_DEV and SB_SECTOR.
new_store() {
	local out chunk=${4:+--chunk-sectors $4}
	# shellcheck disable=SC2086
	out=$("$COWFILE_STORE" create "$1" --size "$2" --origin-sectors "$(dev_sectors "$3")" $chunk)
	read -r STORE_DEV SB_SECTOR <<< "$out"
	echo "store $1: device $STORE_DEV superblock sector $SB_SECTOR"
}

# make_tracked_fs FSTYPE VOLUME_SIZE STORE_SIZE [CHUNK_SECTORS]: a loop
# origin with a filesystem, a store file on that same filesystem, the
# cowfile device "vol" over it, mounted on /mnt/vol. Sets ORIGIN, VOL,
# STORE_DEV, SB_SECTOR, MNT.
make_tracked_fs() {
	local fstype=$1
	ORIGIN=$(new_loop "$2")
	case "$fstype" in
	ext4) mkfs.ext4 -q -b 4096 "$ORIGIN" ;;
	xfs) mkfs.xfs -q -f "$ORIGIN" ;;
	*) fail "unknown filesystem $fstype" ;;
	esac
	MNT=/mnt/vol
	mkdir -p "$MNT"
	mount "$ORIGIN" "$MNT"
	new_store "$MNT/.snapstore" "$3" "$ORIGIN" "${4:-}"
	[ "$STORE_DEV" = "$ORIGIN" ] || fail "store placed on $STORE_DEV, expected $ORIGIN"
	umount "$MNT"
	dmsetup create vol --table "0 $(dev_sectors "$ORIGIN") cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
	on_exit "dmsetup remove vol"
	VOL=/dev/mapper/vol
	if [ "$fstype" = xfs ]; then mount -o nouuid "$VOL" "$MNT"; else mount "$VOL" "$MNT"; fi
	on_exit "umount $MNT"
}

# snapshot_instant NAME IMAGE_COPY: suspend vol (freezing its filesystem),
# copy the origin as it is at that instant to IMAGE_COPY, take the snapshot,
# resume, and create the read-only image device NAME.
snapshot_instant() {
	dmsetup suspend vol
	dd if="$ORIGIN" of="$2" bs=1M iflag=direct status=none
	dmsetup message vol 0 snapshot
	dmsetup resume vol
	dmsetup create --readonly "$1" --table "0 $(dev_sectors "$ORIGIN") cowfile-snap $ORIGIN"
	on_exit "dmsetup remove $1"
}

# zero_store_ranges FILE: zero the store's own sectors in a copy of the
# origin (the image shows them as zeros).
zero_store_ranges() {
	"$COWFILE_STORE" dump "$STORE_DEV" "$SB_SECTOR" --json |
	python3 -c '
import json, os, sys
d = json.load(sys.stdin)
fd = os.open(sys.argv[1], os.O_WRONLY)
for e in d["extents"]:
    os.pwrite(fd, bytes(e["blocks"] * 4096), e["sector"] * 512)
os.close(fd)
' "$1"
}

# ---- snapmgrd helpers (the agent scenario and bench/guest-bench.sh) ----
SNAPMGRD=${SNAPMGRD:-$SNAPMGR_BUILD_DIR/snapmgrd/snapmgrd}
AGENT_TLS=/tmp/tls
AGENT_URL=https://localhost:8443/api/v1
AGENT_CURL=(curl -sS --cacert $AGENT_TLS/ca.crt --cert $AGENT_TLS/client.crt --key $AGENT_TLS/client.key)

# agent_config LOCATION STATE_DIR [TOP_LINES]: /tmp/agent.conf for an
# agent on 127.0.0.1:8443 using the certificates of make-certs in
# $AGENT_TLS, with one store location and TOP_LINES of more keys.
agent_config() {
	cat > /tmp/agent.conf <<CONF
snapstore_destinations = ["$1"]
state_dir = "$2"
${3:-}

[api]
bind = "127.0.0.1"
port = 8443

[api.tls]
certificate = "$AGENT_TLS/server.crt"
key = "$AGENT_TLS/server.key"
ca_certificate = "$AGENT_TLS/ca.crt"
CONF
}

# start_bench_agent LOCATION: an agent (start_agent) with new certificates
# for localhost, its state in /tmp/agent-state, killed at exit.
start_bench_agent() {
	ip link set lo up
	"$SNAPMGRD" make-certs --dir $AGENT_TLS --host localhost > /dev/null
	agent_config "$1" /tmp/agent-state
	start_agent
	on_exit "kill $AGENT 2> /dev/null || true"
}
# agent_snapshot DISK: the id of a new snapshot of DISK, taken by the agent.
agent_snapshot() {
	"${AGENT_CURL[@]}" -f -X POST -d "{\"tracked_disk_ids\": [\"$1\"]}" "$AGENT_URL/snapshots/" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["snapshot_id"])'
}

# start_agent: snapmgrd on /tmp/agent.conf, logging to /tmp/agent.log;
# returns once it listens, with its pid in AGENT.
start_agent() {
	local started
	started=$(grep -c "listening on" /tmp/agent.log 2> /dev/null || true)
	"$SNAPMGRD" -c /tmp/agent.conf >> /tmp/agent.log 2>&1 &
	AGENT=$!
	for _ in $(seq 100); do
		[ "$(grep -c "listening on" /tmp/agent.log)" -gt "${started:-0}" ] && return
		kill -0 $AGENT || { cat /tmp/agent.log; fail "the agent did not start"; }
		sleep 0.2
	done
	fail "the agent does not answer"
}
