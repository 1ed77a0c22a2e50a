# A partitioned disk tracked as a group (snapmgr track DISK), snapshotted
# at one instant and backed up as one raw disk image, full then
# incremental. The GPT disk holds a BIOS boot partition (raw: copied live),
# ext4 and xfs partitions (tracked), swap (zeros) and the gaps outside the
# partitions (read at the instant). Checked by content: each partition's
# range in the image equals its snapshot image, the gaps equal what they
# held at the instant, swap is zeros, the boot partition what it holds
# live; the image's own partition table mounts both filesystems with the
# files as they were. A partition resized under the tracked disk makes
# snapshot and backup refuse; untrack leaves nothing behind. Then a dos
# (MBR) disk with a primary and a logical partition.
. "$(dirname "$0")/../lib.sh"

json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }

load_modules
mount_store_fs 200M

log "a GPT disk: BIOS boot, ext4, xfs, swap"
file=$(mktemp /tmp/disk.XXXXXX)
truncate -s 524M "$file"
DISK=$(losetup --find --show --partscan "$file")
on_exit "losetup -d $DISK; rm -f $file"
gpt_os_layout "$DISK" 160MiB 320MiB 32MiB
d=$(basename "$DISK")
for i in 1 2 3 4; do [ -b "${DISK}p$i" ] || fail "no ${DISK}p$i after partscan"; done
stamp "${DISK}p1" 0 bootcode-before
mkfs.ext4 -q -b 4096 "${DISK}p2"
mkfs.xfs -q -f "${DISK}p3"
mkswap -q "${DISK}p4"
# The gap after the GPT entries (byte 512 KiB) as a bootloader would use it.
stamp "$DISK" $((512 << 10)) gap-before
table=$(sfdisk --dump "$DISK")

log "refusals before anything is tracked"
expect_fail -s 2 "track of a disk with --name" "$SNAPMGR" track "$DISK" --name x --store /mnt/store
expect_fail -s 2 "track of a disk with unmounted filesystems and no --store" "$SNAPMGR" track "$DISK"
[ ! -e /etc/snapmgr/disks/$d.json ] || fail "a refused track recorded the disk"
[ -z "$(ls -A /etc/snapmgr/volumes 2>/dev/null)" ] || fail "a refused track left a volume"

log "track the disk: each partition's role"
"$SNAPMGR" --json track "$DISK" --store /mnt/store --no-monitor > /tmp/track.json
cat /tmp/track.json
on_exit "$SNAPMGR untrack $d > /dev/null 2>&1 || true"
for i in 1 2 3 4; do
	roles="${roles:-}$(json_get "['partitions'][$((i - 1))]['role']" < /tmp/track.json) "
done
expect_eq "$roles" "live tracked tracked zeros " "roles of the four partitions"
expect_eq "$(dmsetup table "${d}p2" | awk '{print $3}')" cowfile "${d}p2's wrapper"
expect_eq "$(dmsetup table "${d}p3" | awk '{print $3}')" cowfile "${d}p3's wrapper"
expect_eq "$("$SNAPMGR" list -o name,disk --noheadings --separator ' ' | tr '\n' ' ')" \
	"${d}p2 $d ${d}p3 $d " "list: the partitions' volumes and their disk"
expect_fail -s 2 "the same disk tracked twice" "$SNAPMGR" track "$DISK" --store /mnt/store

mkdir -p /mnt/p2 /mnt/p3
mount /dev/mapper/"${d}p2" /mnt/p2
on_exit "! mountpoint -q /mnt/p2 || umount /mnt/p2"
mount /dev/mapper/"${d}p3" /mnt/p3
on_exit "! mountpoint -q /mnt/p3 || umount /mnt/p3"
dd if=/dev/urandom of=/mnt/p2/a bs=1M count=24 status=none
dd if=/dev/urandom of=/mnt/p3/a bs=1M count=40 status=none
sync
sum2=$(sha256sum < /mnt/p2/a)
sum3=$(sha256sum < /mnt/p3/a)

log "snapshot of the disk: one instant, the gaps read then"
"$SNAPMGR" --json snapshot "$d" > /tmp/snap.json
cat /tmp/snap.json
expect_eq "$(json_get "['volumes'][0]['name']" < /tmp/snap.json) $(json_get "['volumes'][1]['name']" < /tmp/snap.json)" \
	"${d}p2 ${d}p3" "volumes of the disk's snapshot"
expect_eq "$(json_get "['live'][0]['start']" < /tmp/snap.json)+$(json_get "['live'][0]['length']" < /tmp/snap.json)" \
	"1048576+1048576" "the BIOS boot partition is read live"
gap_at_instant=$(range_md5 "$DISK" $((512 << 10)) 4096)
"$SNAPMGR" --json status "$d" > /tmp/status.json
expect_eq "$(json_get "['snapshot_held']" < /tmp/status.json) $(json_get "['table_changed']" < /tmp/status.json)" \
	"True None" "status of the disk: a snapshot held, the table as tracked"
expect_eq "$(json_get "['partitions'][1]['state']" < /tmp/status.json) $(json_get "['partitions'][1]['snapshot']" < /tmp/status.json)" \
	"tracking active" "status of the disk: partition 2"
p2_start=$(($(cat /sys/class/block/${d}p2/start) * 512))
p3_start=$(($(cat /sys/class/block/${d}p3/start) * 512))
p4_start=$(($(cat /sys/class/block/${d}p4/start) * 512))
p2_size=$(($(cat /sys/class/block/${d}p2/size) * 512))
p3_size=$(($(cat /sys/class/block/${d}p3/size) * 512))
p4_size=$(($(cat /sys/class/block/${d}p4/size) * 512))
disk_size=$(blockdev --getsize64 "$DISK")
# After the instant: the files, the gap and the boot partition change.
dd if=/dev/urandom of=/mnt/p2/a bs=1M count=4 conv=notrunc status=none
dd if=/dev/urandom of=/mnt/p3/b bs=1M count=8 status=none
sync
stamp "$DISK" $((512 << 10)) gap-after
stamp "${DISK}p1" 0 bootcode-after

# check_image IMAGE: the image against the held snapshot, range by range.
check_image() {
	expect_eq "$(stat -c %s "$1")" "$disk_size" "size of $(basename "$1")"
	expect_eq "$(range_md5 "$1" "$p2_start" "$p2_size")" "$(dev_sum /dev/mapper/${d}p2-snap)" \
		"partition 2 in $(basename "$1") equals its snapshot image"
	expect_eq "$(range_md5 "$1" "$p3_start" "$p3_size")" "$(dev_sum /dev/mapper/${d}p3-snap)" \
		"partition 3 in $(basename "$1") equals its snapshot image"
	expect_eq "$(range_md5 "$1" "$p4_start" "$p4_size")" \
		"$(head -c "$p4_size" /dev/zero | md5sum | cut -d' ' -f1)" "swap in $(basename "$1") is zeros"
	expect_eq "$(range_md5 "$1" $((512 << 10)) 4096)" "$gap_at_instant" \
		"the gap in $(basename "$1") holds the instant's bytes"
	expect_eq "$(range_md5 "$1" $((1 << 20)) $((1 << 20)))" "$(dev_sum "${DISK}p1")" \
		"the BIOS boot partition in $(basename "$1") is the live one"
	expect_eq "$(range_md5 "$1" $((disk_size - (1 << 20))) $((1 << 20)))" \
		"$(range_md5 "$DISK" $((disk_size - (1 << 20))) $((1 << 20)))" \
		"the disk's last MiB (backup GPT) in $(basename "$1")"
}
# check_files IMAGE SUM2 SUM3 [B]: the image's own table mounts both
# filesystems; their files as at the instant.
check_files() {
	local loop
	expect_eq "$(sfdisk --dump "$1" | grep -v '^device:' | sed 's/^[^ ]* : /: /')" \
		"$(echo "$table" | grep -v '^device:' | sed 's/^[^ ]* : /: /')" "partition table of $(basename "$1")"
	loop=$(losetup --find --show --partscan --read-only "$1")
	mkdir -p /mnt/i2 /mnt/i3
	mount -o ro,noload "${loop}p2" /mnt/i2
	mount -o ro,norecovery,nouuid "${loop}p3" /mnt/i3
	expect_eq "$(sha256sum < /mnt/i2/a)" "$2" "ext4 file in $(basename "$1")"
	expect_eq "$(sha256sum < /mnt/i3/a)" "$3" "xfs file in $(basename "$1")"
	if [ -n "${4:-}" ]; then
		expect_eq "$(sha256sum < /mnt/i3/b)" "$4" "xfs file b in $(basename "$1")"
	else
		[ ! -e /mnt/i3/b ] || fail "file b, written after the instant, is in $(basename "$1")"
	fi
	umount /mnt/i2 /mnt/i3
	losetup -d "$loop"
}

log "full backup: one disk image"
"$SNAPMGR" --json backup "$d" /tmp/disk.img > /tmp/b1.json
cat /tmp/b1.json
expect_eq "$(json_get "['volumes'][0]['backup_type']" < /tmp/b1.json)" full "partition 2's first backup"
expect_eq "$(json_get "['zeros'][0]['start']" < /tmp/b1.json)" "$p4_start" "swap reported as zeros"
expect_eq "$(json_get "['live'][0]['start']" < /tmp/b1.json)" $((1 << 20)) "the boot partition reported live"
check_image /tmp/disk.img
check_files /tmp/disk.img "$sum2" "$sum3"

log "incremental: only what each partition changed"
"$SNAPMGR" release "$d"
[ ! -e /dev/mapper/${d}p2-snap ] || fail "release of the disk left ${d}p2-snap"
sum2b=$(sha256sum < /mnt/p2/a)
sum3b=$(sha256sum < /mnt/p3/b)
gap_at_instant=$(range_md5 "$DISK" $((512 << 10)) 4096)
"$SNAPMGR" --json snapshot "$d" > /tmp/snap2.json
stamp "$DISK" $((512 << 10)) gap-later
"$SNAPMGR" --json backup "$d" /tmp/disk.img > /tmp/b2.json
cat /tmp/b2.json
for i in 0 1; do
	expect_eq "$(json_get "['volumes'][$i]['backup_type']" < /tmp/b2.json)" incremental \
		"second backup of $(json_get "['volumes'][$i]['name']" < /tmp/b2.json)"
done
copied=$(json_get "['copied_bytes']" < /tmp/b2.json)
[ "$copied" -ge $((12 << 20)) ] && [ "$copied" -lt $((disk_size / 4)) ] ||
	fail "incremental copied $copied bytes of $disk_size (12 MiB were written)"
echo "ok: incremental copied $copied of $disk_size bytes"
check_image /tmp/disk.img
check_files /tmp/disk.img "$sum2b" "$sum3" "$sum3b"
"$SNAPMGR" --json backup --full "$d" /tmp/full2.img > /dev/null
expect_eq "$(dev_sum /tmp/disk.img)" "$(dev_sum /tmp/full2.img)" "incremental disk image equals a full one"

log "changes of the disk since the first backup"
"$SNAPMGR" --json changes "$d" --since "$(json_get "['position']" < /tmp/b1.json)" > /tmp/changes.json
expect_eq "$(json_get "['position']" < /tmp/changes.json)" "$(json_get "['position']" < /tmp/b2.json)" \
	"the changes end at the held snapshot, where the second backup ended"
# covered START LENGTH...: every range given is inside the ranges of changes.json.
covered() {
	python3 -c 'import json,sys
r = json.load(open("/tmp/changes.json"))["ranges"]
a = list(map(int, sys.argv[1:]))
for s, n in zip(a[::2], a[1::2]):
    if not any(x["start"] <= s and s + n <= x["start"] + x["length"] for x in r):
        sys.exit("not covered: %d+%d" % (s, n))' "$@"
}
read -r -a b_extents <<< "$(python3 "$SNAPMGR_SOURCE_DIR/tests/vm/chunkio.py" file-extents /mnt/p3/b |
	tr ':\n' '  ')"
shifted=()
for ((i = 0; i < ${#b_extents[@]}; i += 2)); do
	shifted+=($((p3_start + b_extents[i])) "${b_extents[i + 1]}")
done
covered "${shifted[@]}" || fail "changes miss file b, written between the backups"
covered $((512 << 10)) 4096 $((1 << 20)) $((1 << 20)) || fail "changes miss the gap or the boot partition"
! covered "$p4_start" 4096 2>/dev/null || fail "changes name the swap partition"
changed=$(json_get "['changed_bytes']" < /tmp/changes.json)
[ "$changed" -ge $((12 << 20)) ] && [ "$changed" -lt $((disk_size / 4)) ] ||
	fail "changes of the disk: $changed bytes of $disk_size (12 MiB were written)"
echo "ok: changes of the disk cover file b, the gap and the boot partition, not swap ($changed bytes)"
"$SNAPMGR" --json changes "$d" > /tmp/changes.json
expect_eq "$(json_get "['changed_bytes']" < /tmp/changes.json)" $((disk_size - p4_size)) \
	"changes of the disk without a position: all of it but swap"
expect_fail -s 2 "changes since a position of another volume" "$SNAPMGR" changes "$d" --since "vdz9=$(json_get "['volumes'][0]['position']" < /tmp/b1.json)"
expect_fail -s 2 "a snapshot of a disk that holds one" "$SNAPMGR" snapshot "$d"
expect_fail -s 2 "untrack of a disk that holds a snapshot" "$SNAPMGR" untrack "$d"
expect_eq "$(dmsetup table "${d}p2" | awk '{print $3}')" cowfile "${d}p2 after the refused untrack"
"$SNAPMGR" backup "$d" /tmp/disk.img > /dev/null
echo "ok: the held snapshot still backs up after the refusals"
expect_fail -s 2 "a volume's backup into a disk image" "$SNAPMGR" backup "${d}p2" /tmp/disk.img

log "a partition resized under the tracked disk: refused, never a wrong image"
"$SNAPMGR" release "$d"
echo ', +' | sfdisk -q --force -N 4 --no-reread "$DISK" > /dev/null 2>&1 || true
partx -u --nr 4 "$DISK"
[ "$(($(cat /sys/class/block/${d}p4/size) * 512))" -gt "$p4_size" ] || fail "partition 4 did not grow"
expect_fail -s 2 "snapshot of a disk whose table changed" "$SNAPMGR" snapshot "$d"
grep -q "partition 4 was" /tmp/expect_fail.out || fail "the refusal does not say what changed"
"$SNAPMGR" status "$d" | grep -q "^Table: *CHANGED: partition 4 was" || fail "status does not show the changed table"
echo "ok: status shows the changed table"
[ ! -e /dev/mapper/${d}p2-snap ] || fail "a refused snapshot left ${d}p2-snap"

log "untrack of the disk leaves nothing behind"
umount /mnt/p2 /mnt/p3
"$SNAPMGR" untrack "$d"
for v in p2 p3; do
	! dmsetup info "${d}$v" > /dev/null 2>&1 || fail "${d}$v still wrapped"
done
[ -z "$(ls -A /etc/snapmgr/volumes 2>/dev/null)" ] || fail "volume configurations left: $(ls /etc/snapmgr/volumes)"
[ -z "$(ls -A /etc/snapmgr/disks 2>/dev/null)" ] || fail "disk files left: $(ls /etc/snapmgr/disks)"
[ -z "$(ls -A /mnt/store | grep -v lost+found)" ] || fail "stores left: $(ls /mnt/store)"
echo "ok: the disk is untracked"

log "a dos disk: a primary and a logical partition"
mfile=$(mktemp /tmp/mbr.XXXXXX)
truncate -s 100M "$mfile"
MBR=$(losetup --find --show --partscan "$mfile")
on_exit "losetup -d $MBR; rm -f $mfile"
sfdisk -q "$MBR" <<EOF
label: dos
${MBR}p1 : start=2048, size=32MiB, type=83
${MBR}p2 : size=64MiB, type=5
${MBR}p5 : size=32MiB, type=83
EOF
m=$(basename "$MBR")
mkfs.ext4 -q -b 4096 "${MBR}p1"
mkfs.ext4 -q -b 4096 "${MBR}p5"
mtable=$(sfdisk --dump "$MBR")
"$SNAPMGR" --json track "$MBR" --store /mnt/store --no-monitor > /tmp/mtrack.json
on_exit "$SNAPMGR untrack $m > /dev/null 2>&1 || true"
expect_eq "$(json_get "['table_type']" < /tmp/mtrack.json) $(json_get "['volumes'][0]['name']" < /tmp/mtrack.json) $(json_get "['volumes'][1]['name']" < /tmp/mtrack.json)" \
	"dos ${m}p1 ${m}p5" "the dos disk's tracked partitions"
mkdir -p /mnt/m1 /mnt/m5
mount /dev/mapper/"${m}p1" /mnt/m1
on_exit "! mountpoint -q /mnt/m1 || umount /mnt/m1"
mount /dev/mapper/"${m}p5" /mnt/m5
on_exit "! mountpoint -q /mnt/m5 || umount /mnt/m5"
dd if=/dev/urandom of=/mnt/m5/a bs=1M count=8 status=none
sync
"$SNAPMGR" snapshot "$m" > /dev/null
dd if=/dev/urandom of=/mnt/m5/a bs=1M count=2 conv=notrunc status=none
sync
"$SNAPMGR" backup "$m" /tmp/mbr.img > /dev/null
expect_eq "$(sfdisk --dump /tmp/mbr.img | grep -v '^device:' | sed 's/^[^ ]* : /: /')" \
	"$(echo "$mtable" | grep -v '^device:' | sed 's/^[^ ]* : /: /')" "the dos image's table, logical partition included"
for p in 1 5; do
	start=$(($(cat /sys/class/block/${m}p$p/start) * 512))
	size=$(($(cat /sys/class/block/${m}p$p/size) * 512))
	expect_eq "$(range_md5 /tmp/mbr.img "$start" "$size")" "$(dev_sum /dev/mapper/${m}p$p-snap)" \
		"partition $p in the dos image equals its snapshot image"
done
"$SNAPMGR" release "$m"
umount /mnt/m1 /mnt/m5
"$SNAPMGR" untrack "$m"
