# A filesystem mounted read-write on the raw device while its wrapper was
# gone (a rescue system, a boot without snapmgr) changes its superblock in
# the origin's first chunk; the kernel records that chunk's checksum at a
# clean unload and compares it at the next load: a new generation (the next
# backup is full) and a held snapshot invalid (origin_changed). A read-only
# mount writes nothing and changes nothing. ext4 and xfs, store file on the
# tracked filesystem itself. What this cannot see (writes that leave the
# first chunk alone, anything after a crash) is in docs/RELIABILITY.md.
. "$(dirname "$0")/../lib.sh"

load_modules
mkdir -p /mnt/raw /mnt/vol
# since_full: whether changes since the snapshot are "full".
since_full() {
	"$COWFILE_STORE" changes "$STORE_DEV" "$SB_SECTOR" --since "$EPOCH" --generation "$GEN" --json |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["backup_type"] == "full")'
}
for fs in ext4 xfs; do
	log "$fs"
	ORIGIN=$(new_loop 320M) # xfs wants 300 MB
	size=$(dev_sectors "$ORIGIN")
	case $fs in
	ext4) mkfs.ext4 -q -b 4096 "$ORIGIN"; ro_opts=ro,noload ;;
	xfs) mkfs.xfs -q -f "$ORIGIN"; ro_opts=ro,norecovery ;;
	esac
	mount "$ORIGIN" /mnt/raw
	new_store /mnt/raw/.store 32M "$ORIGIN"
	umount /mnt/raw
	table="0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
	dmsetup create vol --table "$table"
	mount /dev/mapper/vol /mnt/vol
	dd if=/dev/urandom of=/mnt/vol/before bs=1M count=4 conv=fsync status=none
	umount /mnt/vol
	dmsetup suspend vol
	dmsetup message vol 0 snapshot
	dmsetup resume vol
	GEN=$(status_field vol 2)
	EPOCH=$(status_field vol 9)
	mount /dev/mapper/vol /mnt/vol
	dd if=/dev/urandom of=/mnt/vol/after bs=1M count=4 conv=fsync status=none
	umount /mnt/vol
	dmsetup remove vol
	"$COWFILE_STORE" dump "$STORE_DEV" "$SB_SECTOR" | grep "^origin sum" ||
		fail "the clean unload recorded no checksum of the origin"

	dmsetup create vol --table "$table"
	expect_eq "$(status_field vol 2) $(status_field vol 8)" "$GEN active" "$fs: untouched origin, same generation and snapshot"
	dmsetup remove vol

	mount -o "$ro_opts" "$ORIGIN" /mnt/raw
	cat /mnt/raw/before > /dev/null
	umount /mnt/raw
	dmsetup create vol --table "$table"
	expect_eq "$(status_field vol 2) $(status_field vol 8)" "$GEN active" "$fs: read-only raw mount, same generation and snapshot"
	expect_eq "$(since_full)" False "$fs: changes since the snapshot are incremental"
	dmsetup remove vol

	mount "$ORIGIN" /mnt/raw
	echo "written without the wrapper" > /mnt/raw/unwrapped
	umount /mnt/raw
	dmsetup create vol --table "$table"
	on_exit "dmsetup remove vol"
	echo "status: $(dmsetup status vol)"
	[ "$(status_field vol 2)" != "$GEN" ] || fail "$fs: same generation after a read-write raw mount"
	echo "ok: $fs: new generation after a read-write raw mount"
	expect_eq "$(status_field vol 8) $(status_field vol 10)" "invalid origin_changed" "$fs: snapshot state"
	expect_eq "$(since_full)" True "$fs: changes since the snapshot are full"
	grep -q "origin written while not tracked" <(dmesg) || fail "$fs: the kernel log does not say why"
	dmsetup message vol 0 release
	dmsetup remove vol
	_cleanups=("${_cleanups[@]:1}") # vol's on_exit: removed already
done
