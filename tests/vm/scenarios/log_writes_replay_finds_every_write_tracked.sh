# Every write that reaches a tracked volume is covered by the store's chunk
# map as it was durable at the flush before the write, so a crash at any
# moment leaves a store whose `changes` list every chunk that may have
# changed. dm-log-writes records the disk under the volume (ext4, then xfs,
# each with its store file on itself) while it takes a mixed load across
# snapshots and releases; logwrites.py replays the log flush point by flush
# point and reads each replayed store with cowfile-store. It also checks
# that, while a snapshot is held, no block's overwrite was issued before its
# copy and the log record naming the copy were durable, and loads the
# volume as a crash inside a copy batch would leave it (the log replayed to
# points between the copies, their record, the flush and the overwrite):
# the image must be the instant.
. "$(dirname "$0")/../lib.sh"
logwrites=$(dirname "$0")/../logwrites.py

load_modules
modprobe dm-log-writes
# One set of disks for both filesystems, wiped in between: the guest's /tmp
# holds them all. The log keeps every write's data, mkfs and the store's
# fill included.
DATA=$(new_loop 320M)
LOG=$(new_loop 1G)
SCRATCH=$(new_loop 320M)
COW=$(new_loop 64M) # the throw-away dm-snapshot of each crash state's load
MNT=/mnt/vol
mkdir -p "$MNT"

# The log is complete only once its device is gone, so the run removes the
# devices itself; the cleanup removes what a failure left.
umount_if_mounted() { ! mountpoint -q "$1" || umount "$1"; }

# phase NAME: a mark in the log, so that a miss report says where it was.
phase() {
	dmsetup message lw 0 mark "$1"
	echo "phase $1 at $SECONDS s"
}

# snapshot: suspend (the filesystem frozen, nothing in flight), flush all the
# closing epoch wrote into the log, mark the new epoch there for the checker,
# take the snapshot, resume.
snapshot() {
	local next
	next=$(($(status_field vol 4) + 1))
	dmsetup suspend vol
	sync /dev/mapper/lw
	dmsetup message lw 0 mark "epoch=$next"
	dmsetup message vol 0 snapshot
	dmsetup resume vol
	expect_eq "$(status_field vol 4)" "$next" "epoch after the snapshot"
}

# release: what the held snapshot's epoch wrote is in the log before the mark.
release() {
	sync
	sync /dev/mapper/lw
	dmsetup message lw 0 mark release
	dmsetup message vol 0 release
}

# What a volume sees: files written through the page cache with fsync and
# with O_DIRECT, random writes verified by fio from two jobs at once,
# overwrites, deletes, discards, small files; epochs closed by snapshots,
# with copies into the store while one is held. Sized for some 60 map
# commits per filesystem: the check runs cowfile-store once per commit, at
# 0.1-0.4 s a run in the TCG guest.
workload() {
	local i
	phase files
	dd if=/dev/urandom of="$MNT/a" bs=64k count=32 conv=fsync status=none
	dd if=/dev/urandom of="$MNT/b" bs=1M count=2 oflag=direct status=none
	phase fio
	fio --name=rand --directory="$MNT" --rw=randwrite --bsrange=4k-64k --size=512k \
		--filename_format='rand.$jobnum' --numjobs=2 --direct=1 --ioengine=libaio \
		--iodepth=8 --fsync=16 --verify=crc32c --do_verify=1 --verify_fatal=1 \
		--output=/tmp/fio.out || { cat /tmp/fio.out; fail "fio verify on the volume"; }
	sync

	phase held
	snapshot
	dd if=/dev/urandom of="$MNT/a" bs=4k count=64 seek=100 conv=notrunc,fsync status=none
	fio --name=held --directory="$MNT" --rw=randwrite --bs=4k --size=512k \
		--filename_format='rand.0' --direct=1 --ioengine=libaio --iodepth=4 --fsync=8 \
		--output=/tmp/fio.out || { cat /tmp/fio.out; fail "fio while the snapshot is held"; }
	[ "$(status_field vol 7 | cut -d/ -f1)" -gt 0 ] || fail "no chunk was copied into the store"
	fstrim "$MNT" # dropped by the target: the snapshot still needs the data
	release

	phase trim
	rm "$MNT/b"
	sync
	fstrim -v "$MNT" # passed down and tracked: no snapshot held
	phase small
	mkdir "$MNT/small"
	for i in $(seq 1 20); do
		head -c $((i * 3000)) /dev/urandom > "$MNT/small/$i"
		[ $((i % 5)) -ne 0 ] || sync
	done
	phase held2
	snapshot
	dd if=/dev/urandom of="$MNT/c" bs=256k count=4 oflag=direct,sync status=none
	release
	phase rm
	rm -r "$MNT/small"
	sync
}

run() {
	local fstype=$1 batches=$2 size e0 t
	t=$SECONDS
	log "$fstype: dm-log-writes under the volume"
	blkdiscard -f "$DATA"
	blkdiscard -f "$LOG"
	size=$(dev_sectors "$DATA")
	dmsetup create lw --table "0 $size log-writes $DATA $LOG"
	on_exit "dm_remove_if_present lw"
	case "$fstype" in
	# No lazy init: a background thread zeroing inode tables during the
	# load would make the figures vary from run to run.
	ext4) mkfs.ext4 -q -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 /dev/mapper/lw ;;
	xfs) mkfs.xfs -q -f /dev/mapper/lw ;;
	esac
	mount /dev/mapper/lw "$MNT"
	on_exit "umount_if_mounted $MNT"
	new_store "$MNT/.snapstore" 16M /dev/mapper/lw
	expect_eq "$(stat -Lc %t:%T "$STORE_DEV")" "$(stat -Lc %t:%T /dev/mapper/lw)" \
		"store device ($STORE_DEV) is the logged disk"
	umount "$MNT"
	dmsetup create vol --table "0 $size cowfile /dev/mapper/lw $STORE_DEV $SB_SECTOR"
	on_exit "dm_remove_if_present vol"
	e0=$(status_field vol 4)
	# Whatever is still unflushed would be logged after the mark.
	sync /dev/mapper/lw
	dmsetup message lw 0 mark start

	log "$fstype: load on the tracked volume (epoch $e0)"
	mount /dev/mapper/vol "$MNT"
	echo "setup: $((SECONDS - t)) s"
	workload
	umount "$MNT"
	echo "status: $(dmsetup status vol)"
	dmsetup remove vol
	dmsetup message lw 0 mark end
	echo "log-writes status: $(dmsetup status lw)"
	dmsetup remove lw
	"$COWFILE_STORE" dump "$DATA" "$SB_SECTOR" --json > /tmp/store.json
	echo "setup and load: $((SECONDS - t)) s"

	log "$fstype: replay, checking the store at every flush point"
	t=$SECONDS
	# --compare: the whole log replayed must equal the disk, which a reader
	# that misparsed the log would not achieve.
	python3 "$logwrites" check "$LOG" "$SCRATCH" "$SB_SECTOR" --store-tool "$COWFILE_STORE" \
		--store-dump /tmp/store.json --open-epoch "$e0" --compare "$DATA" \
		--save-answers /tmp/answers.json ||
		fail "$fstype: the store as replayed missed a write or named a copy before it was durable, or the replay is wrong"
	echo "check: $((SECONDS - t)) s"

	# Negative check, on the answers the replay gave: each write checked
	# against the store one flush point too early, the store of a target that
	# made its map durable one flush late. It must report misses, which shows
	# the check tells one flush point from the next.
	if python3 "$logwrites" check "$LOG" "$SCRATCH" "$SB_SECTOR" --store-tool "$COWFILE_STORE" \
		--store-dump /tmp/store.json --open-epoch "$e0" --answers /tmp/answers.json \
		--map-lag 1 > /tmp/lag.out 2>&1; then
		cat /tmp/lag.out
		fail "$fstype: the check found nothing with the map one flush late"
	fi
	grep -A2 '^MISSED:' /tmp/lag.out || { cat /tmp/lag.out; fail "$fstype: the lagged check failed otherwise"; }
	echo "ok: $fstype: with the map one flush late the check reports misses"

	# The same for copies: each overwrite checked against the flush point
	# before the one that made its copy and record durable, as if the
	# target let overwrites go one flush early.
	if python3 "$logwrites" check "$LOG" "$SCRATCH" "$SB_SECTOR" --store-tool "$COWFILE_STORE" \
		--store-dump /tmp/store.json --open-epoch "$e0" --answers /tmp/answers.json \
		--copy-lag 1 > /tmp/lag.out 2>&1; then
		cat /tmp/lag.out
		fail "$fstype: the check found nothing with copies one flush late"
	fi
	grep -q 'OVERWRITE BEFORE ITS COPY' /tmp/lag.out ||
		{ cat /tmp/lag.out; fail "$fstype: the copy-lagged check failed otherwise"; }
	grep -m2 -e 'blocks first overwritten' -e 'OVERWRITE BEFORE ITS COPY' /tmp/lag.out
	echo "ok: $fstype: with copies one flush late the check reports overwrites before their copy"

	log "$fstype: crash states inside copy batches, loaded: the image is the instant"
	t=$SECONDS
	python3 "$logwrites" cuts "$LOG" "$SCRATCH" "$SB_SECTOR" --store-dump /tmp/store.json \
		--cow "$COW" --count "$batches" || fail "$fstype: a crash state inside a copy batch loses the instant"
	echo "cuts: $((SECONDS - t)) s"
}

run ext4 1 # batches cut: 5 loads of the image each (12 s a load)
run xfs 1
echo "scenario: $SECONDS s"
