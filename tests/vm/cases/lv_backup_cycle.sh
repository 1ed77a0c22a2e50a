# Sourced by the lv_backup_cycle_* scenarios with FSTYPE set: the whole
# user cycle through snapmgr on a real LVM logical volume that stays mounted
# and takes writes throughout.
#  0. a track that fails at the table load leaves everything as it was;
#  1. track slides the wrapper under the mounted LV while fio writes and
#     later verifies its data (the filesystem must not notice);
#  2. snapshot + backup: a full image, equal to the snapshot image device
#     and holding the files as they were;
#  3. more writes, a new snapshot, an incremental backup: it copies only the
#     changed chunks, and the image then equals a fresh full backup;
#  4. untrack restores the LV's table exactly, removes the -real device,
#     the store and the configuration, with the filesystem still mounted.
: "${FSTYPE:?}"

modprobe dm-mod
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }

pv=$(new_loop 512M)
# lvm, quiet unless it fails
lvm() { command lvm "$@" 2> /tmp/lvm.err || { cat /tmp/lvm.err >&2; return 1; }; }
lvm pvcreate -q "$pv"
lvm vgcreate -q vg "$pv"
on_exit "lvm vgremove -q -f vg >/dev/null 2>&1; lvm pvremove -q $pv >/dev/null 2>&1"
lvm lvcreate -q -y -L 320M -n lv vg
on_exit "lvm lvremove -q -f vg/lv >/dev/null 2>&1"
LV=/dev/mapper/vg-lv
case "$FSTYPE" in
ext4) mkfs.ext4 -q -b 4096 "$LV" ;;
xfs) mkfs.xfs -q -f "$LV" ;;
esac
MNT=/mnt/lv
mkdir -p "$MNT"
mount "$LV" "$MNT"
on_exit "umount $MNT"
table_before=$(dmsetup table vg-lv)

log "a track that fails part way (no cowfile target yet) undoes what it did"
expect_fail -s 1 "track without the dm-cowfile module" "$SNAPMGR" -v track "$LV"
grep -q "creating vg-lv-real" /tmp/expect_fail.out || fail "the failure came before the insertion began"
expect_eq "$(dmsetup table vg-lv)" "$table_before" "vg-lv's table after the failed track"
dmsetup info vg-lv-real > /dev/null 2>&1 && fail "vg-lv-real was left behind"
[ -z "$(ls -A /etc/snapmgr/volumes 2>/dev/null)" ] || fail "a configuration was left behind"
[ ! -e "$MNT/.snapmgr-vg-lv.store" ] || fail "the store file was left behind"
load_modules

log "track the mounted LV while fio writes to it"
fio --name=live --filename="$MNT/fio.dat" --size=48M --bs=4k --rw=randwrite \
	--ioengine=libaio --iodepth=8 --direct=1 --verify=crc32c --do_verify=1 \
	--loops=3 --output="$VM_RESULTS/fio-live.txt" &
fio_pid=$!
sleep 2
"$SNAPMGR" -v track "$LV" --store-size 48M
on_exit "$SNAPMGR untrack vg-lv 2>/dev/null || true"
wait "$fio_pid" || { cat "$VM_RESULTS/fio-live.txt"; fail "fio failed or its verify found bad data"; }
grep -q "err= 0" "$VM_RESULTS/fio-live.txt" || fail "fio reported errors"
echo "ok: fio wrote and verified 3 passes across the insertion"
expect_eq "$(dmsetup table vg-lv | awk '{print $3}')" cowfile "vg-lv's table after track"
expect_eq "$(dmsetup table vg-lv-real)" "$table_before" "vg-lv-real carries the LV's old table"
expect_eq "$("$SNAPMGR" --json status vg-lv | json_get '["state"]')" tracking "state"
store=$("$SNAPMGR" --json status vg-lv | json_get '["store"]')
expect_eq "$(stat -c %a "$store")" 600 "store file mode"
lsattr "$store" | grep -q -- '-i-' || fail "store $store is not immutable"
echo "ok: store $store is pinned"

log "first snapshot, full backup"
dd if=/dev/urandom of="$MNT/a" bs=1M count=24 status=none
sync
sum_a=$(sha256sum < "$MNT/a")
"$SNAPMGR" snapshot vg-lv
"$SNAPMGR" --json backup vg-lv /tmp/backup.img > /tmp/b1.json
cat /tmp/b1.json
expect_eq "$(json_get '["backup_type"]' < /tmp/b1.json)" full "first backup type"
expect_eq "$(dev_sum /tmp/backup.img)" "$(dev_sum /dev/mapper/vg-lv-snap)" "full image equals the snapshot image"
expect_eq "$(stat -c %a /tmp/backup.img)" 600 "backup image mode"
pos1=$(json_get '["position"]' < /tmp/b1.json)

log "writes after the snapshot do not reach the image"
dd if=/dev/urandom of="$MNT/a" bs=1M count=4 conv=notrunc status=none
dd if=/dev/urandom of="$MNT/b" bs=1M count=8 status=none
sync
sum_a2=$(sha256sum < "$MNT/a")
sum_b=$(sha256sum < "$MNT/b")
check_image_files() { # IMAGE SUM_A [SUM_B]
	local m=/mnt/check opts=ro
	mkdir -p $m
	[ "$FSTYPE" = xfs ] && opts=ro,norecovery,nouuid
	[ "$FSTYPE" = ext4 ] && opts=ro,noload
	mount -o "loop,$opts" "$1" $m
	expect_eq "$(sha256sum < $m/a)" "$2" "file a in $(basename "$1")"
	if [ -n "${3:-}" ]; then
		expect_eq "$(sha256sum < $m/b)" "$3" "file b in $(basename "$1")"
	else
		[ ! -e $m/b ] || fail "file b, written after the snapshot, is in $(basename "$1")"
	fi
	umount $m
}
check_image_files /tmp/backup.img "$sum_a"
expect_eq "$(dev_sum /tmp/backup.img)" "$(dev_sum /dev/mapper/vg-lv-snap)" "image device unchanged by later writes"

log "second snapshot, incremental backup"
"$SNAPMGR" release vg-lv
"$SNAPMGR" --json changes vg-lv --since "$pos1" > /tmp/c2.json
expect_eq "$(json_get '["backup_type"]' < /tmp/c2.json)" incremental "changes since the first backup"
"$SNAPMGR" snapshot vg-lv
"$SNAPMGR" --json backup vg-lv /tmp/backup.img > /tmp/b2.json
cat /tmp/b2.json
expect_eq "$(json_get '["backup_type"]' < /tmp/b2.json)" incremental "second backup type"
expect_eq "$(json_get '["since"]' < /tmp/b2.json)" "$pos1" "incremental builds on the first position"
copied=$(json_get '["copied_bytes"]' < /tmp/b2.json)
size=$(json_get '["size_bytes"]' < /tmp/b2.json)
[ "$copied" -ge $((12 << 20)) ] || fail "incremental copied $copied bytes, less than the 12 MiB written"
[ "$copied" -lt $((size / 4)) ] || fail "incremental copied $copied of $size bytes"
echo "ok: incremental copied $copied of $size bytes"
expect_eq "$(dev_sum /tmp/backup.img)" "$(dev_sum /dev/mapper/vg-lv-snap)" "incremental image equals the second snapshot"
"$SNAPMGR" --json backup --full vg-lv /tmp/full2.img > /tmp/b3.json
expect_eq "$(dev_sum /tmp/backup.img)" "$(dev_sum /tmp/full2.img)" "incremental image equals a full backup"
check_image_files /tmp/backup.img "$sum_a2" "$sum_b"

log "refused while a snapshot is held, nothing changes"
expect_fail -s 2 "snapshot while one is held" "$SNAPMGR" snapshot vg-lv
expect_fail -s 2 "untrack while a snapshot is held" "$SNAPMGR" untrack vg-lv
expect_eq "$(dmsetup table vg-lv | awk '{print $3}')" cowfile "table after refused untrack"
"$SNAPMGR" release vg-lv

log "untrack restores the LV exactly, still mounted"
"$SNAPMGR" -v untrack vg-lv
expect_eq "$(dmsetup table vg-lv)" "$table_before" "vg-lv's table after untrack"
dmsetup info vg-lv-real > /dev/null 2>&1 && fail "vg-lv-real still exists"
[ ! -e "$store" ] || fail "store $store still exists"
[ ! -e /etc/snapmgr/volumes/vg-lv.conf ] || fail "configuration still exists"
echo "ok: -real, store and configuration are gone"
dd if=/dev/urandom of="$MNT/c" bs=1M count=4 status=none
sync
expect_eq "$(sha256sum < "$MNT/a")" "$sum_a2" "file a after untrack"
