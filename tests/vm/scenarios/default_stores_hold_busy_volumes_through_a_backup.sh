# The case that made 4 KiB copies necessary, as a new user meets it: two
# mounted LVM volumes, each tracked with the default store (a tenth of the
# volume, at least 64 MiB), fio writing 4 KiB at random places of a 160 MiB file
# on each (100 writes a second, a busy database), one snapshot of both, and
# a backup of each while the writes go on. With 64 KiB copies the stores
# filled within 10 s (6.4 MiB a second) and the backups failed; now the store holds what
# was overwritten (a 4 KiB copy per block, plus the records), the snapshots
# stay active through both backups, and each image equals its snapshot.
. "$(dirname "$0")/../lib.sh"
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }

load_modules
pv=$(new_loop 700M)
lvm() { command lvm "$@" 2> /tmp/lvm.err || { cat /tmp/lvm.err >&2; return 1; }; }
lvm pvcreate -q "$pv"
lvm vgcreate -q vg "$pv"
on_exit "lvm vgremove -q -f vg >/dev/null 2>&1; lvm pvremove -q $pv >/dev/null 2>&1"
for v in db1 db2; do
	lvm lvcreate -q -y -L 320M -n $v vg
	on_exit "lvm lvremove -q -f vg/$v >/dev/null 2>&1"
	# Inode tables and journal written now: ext4's background init would
	# write megabytes after the snapshot, which a long-lived filesystem
	# does not.
	mkfs.ext4 -q -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 /dev/mapper/vg-$v
	mkdir -p /mnt/$v
	mount /dev/mapper/vg-$v /mnt/$v
	on_exit "umount /mnt/$v"
	dd if=/dev/urandom of=/mnt/$v/table bs=1M count=160 conv=fsync status=none
	"$SNAPMGR" track /dev/mapper/vg-$v > /dev/null
	on_exit "$SNAPMGR release vg-$v 2>/dev/null; $SNAPMGR untrack vg-$v 2>/dev/null || true"
	expect_eq "$("$SNAPMGR" --json status vg-$v | json_get '["store_size_bytes"]')" $((64 << 20)) \
		"vg-$v's default store size"
done

log "4 KiB random writes at 100 a second on both, a snapshot of both, a backup of each"
for v in db1 db2; do
	fio --name=$v --filename=/mnt/$v/table --rw=randwrite --bs=4k --direct=1 \
		--ioengine=libaio --iodepth=4 --rate_iops=100 --time_based --runtime=600 \
		--output=/tmp/fio-$v.out &
	echo $! > /tmp/fio-$v.pid
done
on_exit "kill \$(cat /tmp/fio-db1.pid /tmp/fio-db2.pid) 2>/dev/null || true"
sleep 3
"$SNAPMGR" snapshot vg-db1 vg-db2
start=$SECONDS
# One image at a time in the guest's memory: each is checked, then removed.
for v in db1 db2; do
	"$SNAPMGR" --json backup vg-$v /tmp/$v.img > /tmp/$v.json ||
		fail "the backup of vg-$v failed while the volume took writes ($(dmsetup status vg-$v))"
	expect_eq "$(json_get '["backup_type"]' < /tmp/$v.json)" full "vg-$v's backup type"
	expect_eq "$(status_field vg-$v 8)" active "vg-$v's snapshot after its backup ($(dmsetup status vg-$v))"
	expect_eq "$(dev_sum /tmp/$v.img)" "$(dev_sum /dev/mapper/vg-$v-snap)" "vg-$v's image equals its snapshot"
	rm /tmp/$v.img
done
took=$((SECONDS - start))
# The store must hold at least 1024 copied blocks (4 MiB: with 64 KiB
# copies, 64 MiB, all it has): when the backups were quicker than the writes
# need for that (about 10 s at 100 a second), the writes go on, the
# snapshots held, until they are there, for at most a minute.
for _ in $(seq 60); do
	[ "$(status_field vg-db1 12)" -ge 1024 ] && [ "$(status_field vg-db2 12)" -ge 1024 ] && break
	sleep 1
done
echo "writes went on $((SECONDS - start - took)) s after the backups"
for v in db1 db2; do
	status=$("$SNAPMGR" --json status vg-$v)
	expect_eq "$(echo "$status" | json_get '["snapshot"]')" active "vg-$v's snapshot after both backups"
	used=$(echo "$status" | json_get '["store_used_bytes"]')
	copied=$(($(status_field vg-$v 12) * 4096))
	echo "vg-$v: the store holds $used bytes for $copied bytes overwritten after the snapshot"
	# 1024 blocks: 64 MiB of 64 KiB copies, all the store had before.
	[ "$copied" -ge $((4 << 20)) ] || fail "vg-$v: only $copied bytes were overwritten in the $((SECONDS - start)) s after the snapshot: too little load to show anything"
	[ "$used" -le $((copied + copied / 50 + 8192)) ] ||
		fail "vg-$v: the store takes $used bytes for $copied bytes overwritten (4 KiB copies and 2 record blocks per 251 expected)"
done
kill "$(cat /tmp/fio-db1.pid)" "$(cat /tmp/fio-db2.pid)"
wait
echo "ok: both backups ($took s) done with the writes going on, both snapshots active"
"$SNAPMGR" release vg-db1
"$SNAPMGR" release vg-db2
