# Guest side of multiboot/root_on_tracked_partition: a root filesystem on a
# tracked plain partition, booted by a real dracut initramfs with the
# 90snapmgr module. vda is the root disk. Phases, in order:
#   image FS     (harness guest) partition vda, make FS on vda1, fill it as
#                a root (busybox, vm-init, a copy of /etc, /usr from the
#                host), install snapmgr (staged by the host), then in a
#                chroot of it, as a user would: `snapmgr track /`. The host
#                then builds the initramfs with the root's dracut in a
#                chroot of it, and a copy without the kernel module.
#   first        (dracut boot) root is on the wrapper; write, snapshot, write
#   second       (dracut boot) same generation and epoch, the image reads
#                its instant, changes cover the first boot's writes
#   nomodule     (dracut boot, no dm-cowfile.ko in the initramfs) root
#                mounts on the raw partition, the volume is given back, why
#                is in the kernel log
#   disabled     (dracut boot, rd.snapmgr=0) the same, for that reason
#   back         (dracut boot) tracking again, in a new generation: the
#                writes made without the module force a full backup;
#                untrack of the mounted root keeps the wrapper to the next
#                boot
#   nostore      (harness guest) delete the store file offline
#   gone         (dracut boot) root mounts on the raw partition, given back
# With FS "disk", vda is an OS disk tracked whole (snapmgr track /dev/vda):
#   image disk   (harness guest) a GPT disk: BIOS boot (stamped), an ext4
#                root, an xfs /data, swap; the root filled as above; in a
#                chroot of it `snapmgr track /dev/vda` with / and /data
#                mounted (both from the next boot, their stores on
#                themselves)
#   disk         (dracut boot) root and /data on their wrappers, swap on;
#                writes, snapshot of the disk, full backup into
#                $VM_RESULTS/vda.img, writes and a delete, a second
#                snapshot, incremental backup; what the disk held at the
#                second instant (files, gap, table) in $VM_RESULTS/instant
#   restored     (dracut boot of the backup image alone, by an initramfs
#                without snapmgr) the same list of the restored disk in
#                $VM_RESULTS/restored: the host compares the two
# Each dracut boot leaves what the next one checks in /var/lib/boot-test.
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")/.." && pwd)
chunkio=$here/chunkio.py
CHUNK=65536
ROOT=/mnt/root
STATE=/var/lib/boot-test/state
phase=$1
fs=${2:-ext4}
VOL=vda1
if [ "$fs" = disk ]; then
	fs=ext4 disk=vda VOL=vda2 DATA=vda3
fi
export PATH=/usr/sbin:/sbin:$PATH

SECONDS=0
log() { echo "== [${SECONDS}s] $*"; }
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }
status_of() { snapmgr --json status $VOL | json_get "[\"$1\"]"; }
sorted_words() { tr ' ' '\n' | sed '/^$/d' | sort -n | tr '\n' ' '; }
image_sum() { dev_sum /dev/mapper/$VOL-snap; }
# changes_chunks SINCE: the chunks `snapmgr changes` reports ("full" or numbers).
changes_chunks() {
	snapmgr --json changes $VOL --since "$1" > /tmp/changes.json
	python3 "$chunkio" chunks $CHUNK < /tmp/changes.json | sorted_words
}
# expect_covers WHAT NEEDED HAVE: every chunk of NEEDED is in HAVE.
expect_covers() {
	local c missing=""
	for c in $2; do
		case " $3 " in *" $c "*) ;; *) missing="$missing $c" ;; esac
	done
	[ -z "$missing" ] || fail "$1: chunks not reported:$missing"
	echo "ok: $1 ($(echo $2 | wc -w) chunks, all reported)"
}
# The device root is mounted from, as major:minor and as a dm name.
root_source() { findmnt -n -o SOURCE /; }
expect_root_on_wrapper() {
	local src
	src=$(root_source)
	expect_eq "$(dmsetup info -c --noheadings -o name "$src" 2>/dev/null)" $VOL "root is mounted from the wrapper"
	expect_eq "$(dmsetup table $VOL | awk '{print $3}')" cowfile "the wrapper's target"
	expect_eq "$(readlink -f "/dev/disk/by-uuid/$(cat /etc/boot-test-uuid)")" "$(readlink -f "$src")" \
		"by-uuid names the wrapper, not the raw partition"
}
expect_root_on_raw() {
	expect_eq "$(readlink -f "$(root_source)")" /dev/$VOL "root is mounted from the raw partition"
	expect_eq "$(dmsetup info $VOL > /dev/null 2>&1 && echo wrapped || echo unwrapped)" unwrapped \
		"no wrapper"
	expect_eq "$(status_of state)" given_back "snapmgr status"
}
# write_file NAME MIB: random data, on disk before we go on.
write_file() {
	mkdir -p /var/lib/boot-test
	dd if=/dev/urandom of="/var/lib/boot-test/$1" bs=1M count="$2" conv=fsync status=none
}
file_chunks() { python3 "$chunkio" file-chunks $CHUNK "$@" | sorted_words; }
# disk_contents: what the OS disk holds, for the host to compare between the
# instant and the restored image: every file the test wrote (the stores
# excluded: an image reads them as zeros) and the partition table.
disk_contents() {
	(cd / && find var/lib/boot-test data -type f ! -name '.snapmgr-*.store' -print0 |
		sort -z | xargs -0 sha256sum)
	sfdisk --dump /dev/vda | grep -v '^device:' | sed 's/^[^ ]* : /: /'
}
# backup_types < BACKUP_JSON: each volume's backup type.
backup_types() {
	python3 -c 'import json,sys; print(" ".join(v["backup_type"] for v in json.load(sys.stdin)["volumes"]))'
}

case $phase in
image)
	log "partition, mkfs, fill"
	if [ -n "${disk:-}" ]; then
		gpt_os_layout /dev/vda 160MiB 320MiB 32MiB
		for _ in $(seq 50); do [ -b /dev/vda4 ] && break; sleep 0.1; done
		stamp /dev/vda1 0 bios-at-image
		mkfs.xfs -q -f /dev/$DATA
		mkswap -q /dev/vda4
	else
		printf 'label: gpt\n,,L\n' | sfdisk -q /dev/vda
		for _ in $(seq 50); do [ -b /dev/vda1 ] && break; sleep 0.1; done
	fi
	if [ "$fs" = xfs ]; then mkfs.xfs -q -f /dev/$VOL; else mkfs.ext4 -q -b 4096 /dev/$VOL; fi
	mkdir -p $ROOT
	mount /dev/$VOL $ROOT
	on_exit "umount -R $ROOT"
	mkdir -p $ROOT/{vm,proc,sys,dev,run,tmp,usr,host,.vm/usr-upper,.vm/usr-work,var/tmp,root,boot,data}
	cp /bin/busybox $ROOT/vm/busybox
	cp "$here/boot/vm-init" $ROOT/vm-init
	# What vm-init needs before it has the host's /usr (and modprobe).
	mkdir -p $ROOT/vm/mods
	n=10
	modprobe -a --show-depends 9pnet_virtio 9p overlay |
	awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r ko; do
		n=$((n + 1))
		case "$ko" in
		*.xz) xz -dc "$ko" ;; *.zst) zstd -qdc "$ko" ;; *) cat "$ko" ;;
		esac > "$ROOT/vm/mods/$n-$(basename "${ko%.*z*}")"
	done
	for d in bin sbin lib lib64; do ln -s usr/$d $ROOT/$d; done
	cp -a /etc $ROOT/etc
	rm -rf $ROOT/etc/snapmgr
	uuid=$(blkid -s UUID -o value /dev/$VOL)
	echo "$uuid" > $ROOT/etc/boot-test-uuid
	echo "UUID=$uuid / $fs defaults 0 1" > $ROOT/etc/fstab
	if [ -n "${disk:-}" ]; then
		data_uuid=$(blkid -s UUID -o value /dev/$DATA)
		echo "$data_uuid" > $ROOT/etc/boot-test-data-uuid
		echo "UUID=$data_uuid /data xfs defaults 0 2" >> $ROOT/etc/fstab
		mount /dev/$DATA $ROOT/data
	fi
	# The same /usr the booted system has: the host's, with an upper
	# layer on this root for what is installed.
	mount -t overlay -o lowerdir=/usr,upperdir=$ROOT/.vm/usr-upper,workdir=$ROOT/.vm/usr-work \
		overlay $ROOT/usr
	mount -t proc proc $ROOT/proc
	mount --rbind /sys $ROOT/sys
	mount --rbind /dev $ROOT/dev
	mount -t tmpfs tmpfs $ROOT/run
	mount -t tmpfs tmpfs $ROOT/tmp

	log "install snapmgr into the new root"
	# The tree the host staged with `cmake --install --strip` and depmod.
	tar -C "$SNAPMGR_STAGE" -cf - . | tar -C $ROOT --keep-directory-symlink -xf -
	if [ -n "${disk:-}" ]; then
		log "snapmgr track /dev/$disk (/ and /data are mounted: tracked from the next boot)"
		chroot $ROOT snapmgr --json track /dev/$disk > /tmp/track.json
		cat /tmp/track.json
		roles=$(python3 -c 'import json,sys; print(" ".join(p["role"] for p in json.load(sys.stdin)["partitions"]))' \
			< /tmp/track.json)
		expect_eq "$roles" "live tracked tracked zeros" "roles of the OS disk's partitions"
		expect_eq "$(json_get '["volumes"][0]["outcome"]' < /tmp/track.json) $(json_get '["volumes"][1]["outcome"]' < /tmp/track.json)" \
			"next_boot next_boot" "the mounted partitions are tracked from the next boot"
		test -f $ROOT/data/.snapmgr-$DATA.store || fail "no store at the root of /data"
		test -f $ROOT/etc/snapmgr/volumes/$DATA.conf || fail "no configuration of /data"
		test -f $ROOT/etc/snapmgr/disks/$disk.json || fail "no configuration of the disk"
		umount $ROOT/data
	else
		log "snapmgr track / (root is mounted: tracking starts at the next boot)"
		chroot $ROOT snapmgr --json track / > /tmp/track.json
		cat /tmp/track.json
		expect_eq "$(json_get '["outcome"]' < /tmp/track.json)" next_boot "track / of a mounted root"
		expect_eq "$(json_get '["name"]' < /tmp/track.json)" $VOL "volume name"
	fi
	test -f $ROOT/.snapmgr-$VOL.store || fail "no store at the root of the filesystem"
	test -f $ROOT/etc/snapmgr/volumes/$VOL.conf || fail "no configuration in the new root's /etc"
	# The host builds the initramfs next, with the root's own dracut in a
	# chroot of it (multiboot/root_on_tracked_partition).
	echo "$uuid" > "$VM_RESULTS/root-uuid"
	echo "${VOL#vda}" > "$VM_RESULTS/root-partition"
	echo "$VM_KERNEL_RELEASE" > "$VM_RESULTS/kernel-release"
	log "image done"
	;;

first)
	expect_root_on_wrapper
	expect_eq "$(status_of state)" tracking "state at the first boot"
	gen=$(status_of generation)
	write_file before-snapshot 8
	log "snapshot of the running root"
	snapmgr snapshot $VOL
	log "checksum of the image"
	image=$(image_sum)
	log "write after the snapshot"
	write_file after-snapshot 4
	sync
	log "record what the next boot checks"
	cat > $STATE <<-EOF
	gen=$gen
	epoch=$(status_of epoch)
	image='$image'
	before='$(file_chunks /var/lib/boot-test/before-snapshot)'
	after='$(file_chunks /var/lib/boot-test/after-snapshot)'
	EOF
	sync
	;;

second)
	expect_root_on_wrapper
	. $STATE
	expect_eq "$(status_of state)" tracking "state after the reboot"
	expect_eq "$(status_of generation)" "$gen" "generation after the reboot"
	expect_eq "$(status_of epoch)" "$epoch" "epoch after the reboot"
	expect_eq "$(status_of snapshot)" active "the snapshot held across the reboot"
	log "checksum of the image"
	expect_eq "$(image_sum)" "$image" "the image reads its instant"
	log "changes"
	expect_covers "first boot's writes before the snapshot, since tracking began" \
		"$before" "$(changes_chunks "$gen:0")"
	expect_covers "first boot's writes after the snapshot, since the snapshot" \
		"$after" "$(changes_chunks "$gen:1")"
	log "done"
	;;

nomodule)
	expect_root_on_raw
	reason=$(status_of attach_error)
	echo "given back because: $reason"
	grep -q "snapmgr.*$VOL: not attached" <(dmesg) || fail "the kernel log does not say why"
	dmesg | grep "snapmgr.*not attached"
	case "$reason" in *cowfile*|*target*) ;; *) fail "the reason does not name the missing target" ;; esac
	write_file untracked 2
	;;

disabled)
	expect_root_on_raw
	reason=$(status_of attach_error)
	echo "given back because: $reason"
	case "$reason" in *rd.snapmgr=0*) ;; *) fail "the reason does not name rd.snapmgr=0" ;; esac
	grep -q "snapmgr.*$VOL: not attached: .*rd.snapmgr=0" <(dmesg) || fail "the kernel log does not say why"
	;;

back)
	expect_root_on_wrapper
	. $STATE
	expect_eq "$(status_of state)" tracking "tracking again with the module back"
	[ "$(status_of generation)" != "$gen" ] || fail "the generation did not change after untracked writes"
	echo "ok: a new generation ($(status_of generation))"
	expect_eq "$(changes_chunks "$gen:1")" "full " "changes since the old generation"
	expect_eq "$(status_of snapshot)" invalid "the snapshot held while writes went untracked"
	snapmgr release $VOL
	log "untrack of the mounted root"
	expect_fail -s 2 "untrack of a mounted root without --keep-store" snapmgr untrack $VOL
	cp /etc/snapmgr/volumes/$VOL.conf /var/lib/boot-test/conf
	snapmgr untrack --keep-store $VOL
	[ ! -e /etc/snapmgr/volumes/$VOL.conf ] || fail "untrack --keep-store left the configuration"
	expect_eq "$(dmsetup table $VOL | awk '{print $3}')" cowfile "the wrapper stays until the next boot"
	# The phases after this one need the volume configured.
	cp /var/lib/boot-test/conf /etc/snapmgr/volumes/$VOL.conf
	;;

disk)
	expect_root_on_wrapper
	if [ "$(dmsetup table $DATA 2>/dev/null | awk '{print $3}')" != cowfile ]; then
		snapmgr status $DATA || true
		udevadm info --query=property /dev/$DATA || true
		fail "/data is not on its wrapper"
	fi
	mount UUID="$(cat /etc/boot-test-data-uuid)" /data
	expect_eq "$(dmsetup info -c --noheadings -o name "$(findmnt -n -o SOURCE /data)" 2>/dev/null)" $DATA \
		"/data is mounted from its wrapper"
	swapon /dev/vda4
	snapmgr --json status $disk > /tmp/status.json
	expect_eq "$(json_get '["table_changed"]' < /tmp/status.json)" None "the partition table, as tracked"
	log "writes, snapshot of the disk, full backup"
	write_file kept 8
	write_file deleted 4
	dd if=/dev/urandom of=/data/kept bs=1M count=24 conv=fsync status=none
	stamp /dev/vda $((512 << 10)) gap-first
	snapmgr --json snapshot $disk > /tmp/snapshot.json
	write_file after-first 2
	snapmgr --json backup $disk "$VM_RESULTS/$disk.img" > /tmp/backup1.json
	cat /tmp/backup1.json
	expect_eq "$(backup_types < /tmp/backup1.json)" "full full" "the first backup of each tracked partition"
	snapmgr release $disk
	log "writes and a delete, second snapshot, incremental backup"
	rm /var/lib/boot-test/deleted
	dd if=/dev/urandom of=/data/kept bs=1M seek=4 count=2 conv=notrunc,fsync status=none
	write_file second 4
	dd if=/dev/urandom of=/data/second bs=1M count=8 conv=fsync status=none
	stamp /dev/vda $((512 << 10)) gap-at-instant
	sync
	disk_contents > "$VM_RESULTS/instant"
	snapmgr --json snapshot $disk > /tmp/snapshot.json
	cat /tmp/snapshot.json
	log "writes after the instant: none of them may reach the backup"
	write_file late 2
	dd if=/dev/urandom of=/data/kept bs=1M count=1 conv=notrunc,fsync status=none
	dd if=/dev/urandom of=/data/late bs=1M count=2 conv=fsync status=none
	stamp /dev/vda $((512 << 10)) gap-late
	stamp /dev/vda1 0 bios-live
	snapmgr --json backup $disk "$VM_RESULTS/$disk.img" > /tmp/backup2.json
	cat /tmp/backup2.json
	expect_eq "$(backup_types < /tmp/backup2.json)" "incremental incremental" "the second backup"
	copied=$(json_get '["copied_bytes"]' < /tmp/backup2.json)
	[ "$copied" -lt $((64 << 20)) ] || fail "the incremental backup copied $copied bytes"
	expect_eq "$(python3 -c 'import json,sys; print(" ".join("%d+%d" % (r["start"], r["length"]) for r in json.load(sys.stdin)["live"]))' \
		< /tmp/backup2.json)" "1048576+1048576" \
		"what the backup says is not from the instant: the BIOS boot partition"
	snapmgr release $disk
	log "the OS disk through the agent: listed with its id, create_snapshot() without a list"
	# The store location on a disk of its own (a disk holding one is
	# never listed); vda's partitions keep their stores on themselves.
	mkfs.ext4 -q /dev/vdb
	mkdir -p /stores /var/lib/snapmgr-agent
	mount /dev/vdb /stores
	mkdir /stores/location
	ip link set lo up
	SNAPMGRD=$(command -v snapmgrd)
	"$SNAPMGRD" make-certs --dir $AGENT_TLS --host localhost --ip 127.0.0.1 > /dev/null
	agent_config /stores/location /var/lib/snapmgr-agent
	start_agent
	"${AGENT_CURL[@]}" "$AGENT_URL/disks/" > /tmp/disks.json
	expect_eq "$(python3 -c 'import json,sys; print(" ".join("%s:%s" % (d["name"], d.get("id")) for d in json.load(sys.stdin)))' \
		< /tmp/disks.json)" "$disk:$disk" "the disks the agent lists: the OS disk, with its id"
	python3 "$here/coriolis_client.py" --tls $AGENT_TLS --endpoint "${AGENT_URL%/api/v1}" \
		snapshot /tmp/agent-snapshot.json
	id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshot_id"])' < /tmp/agent-snapshot.json)
	snapmgr backup $disk /stores/cli.img > /dev/null
	"${AGENT_CURL[@]}" "$AGENT_URL/snapshots/$id/changes/$disk/" > /tmp/changes.json
	expect_eq "$(python3 -c 'import json,sys; c = json.load(sys.stdin); print(c["backup_type"], c["ranges"])' < /tmp/changes.json)" \
		"full [{'length': $(blockdev --getsize64 /dev/vda), 'start_offset': 0}]" "the agent's changes: the whole disk"
	# consume by ranges: the table, the gap, each partition's first MiB,
	# the last MiB (the backup GPT), as the CLI's backup of this snapshot.
	for range in 0:1048576 1048576:1048576 2097152:1048576 169869312:1048576 505413632:1048576 \
		$(($(blockdev --getsize64 /dev/vda) - 1048576)):1048576; do
		start=${range%:*} length=${range#*:}
		expect_eq "$("${AGENT_CURL[@]}" -r "$start-$((start + length - 1))" "$AGENT_URL/snapshots/$id/consume/$disk/" | md5sum | cut -d' ' -f1)" \
			"$(range_md5 /stores/cli.img "$start" "$length")" "consume of bytes $start+$length"
	done
	python3 "$here/coriolis_client.py" --tls $AGENT_TLS --endpoint "${AGENT_URL%/api/v1}" \
		delete /tmp/agent-snapshot.json
	expect_eq "$(snapmgr --json status $disk | json_get '["snapshot_held"]')" False "the disk's snapshot after delete_snapshot"
	kill $AGENT
	wait $AGENT || fail "the agent exited with status $?"
	umount /stores
	swapoff /dev/vda4
	umount /data
	;;

restored)
	expect_eq "$(readlink -f "$(root_source)")" /dev/$VOL "root is mounted from the restored disk's partition"
	expect_eq "$(ls /sys/block | grep -c '^dm-' || true)" 0 "no device-mapper device"
	# As after a power cut: the frozen xfs has its log to replay, at mount.
	mount /dev/$DATA /data
	disk_contents > "$VM_RESULTS/restored"
	umount /data
	xfs_repair -n /dev/$DATA > /tmp/repair.log 2>&1 || { cat /tmp/repair.log; fail "xfs_repair -n of /data"; }
	echo "ok: xfs_repair -n finds /data clean"
	expect_stamp /dev/vda $((512 << 10)) gap-at-instant "the gap holds what it held at the instant"
	expect_stamp /dev/vda1 0 bios-live "the BIOS boot partition holds what the backup read live"
	cmp -s -n "$(blockdev --getsize64 /dev/vda4)" /dev/vda4 /dev/zero || fail "the swap partition is not zeros"
	echo "ok: the swap partition is zeros"
	;;

nostore)
	mkdir -p $ROOT
	mount /dev/vda1 $ROOT
	chattr -i $ROOT/.snapmgr-$VOL.store
	rm $ROOT/.snapmgr-$VOL.store
	umount $ROOT
	echo "store deleted offline"
	;;

gone)
	expect_root_on_raw
	reason=$(status_of attach_error)
	echo "given back because: $reason"
	case "$reason" in *"is gone from its filesystem"*) ;; *) fail "not given back for its store" ;; esac
	dmesg | grep "snapmgr.*$VOL: not attached: .*is gone" | grep -q "the store cannot record it" ||
		fail "the kernel log does not say why, or claims the deleted store recorded it"
	;;
esac
