# snapmgr on devices that are not dm volumes, and every request it must
# refuse without changing anything:
#  - track of an unused device with a filesystem wraps it at once (store on
#    another filesystem), the data reads back bit for bit, a multi-volume
#    snapshot gives both images one instant, backups equal the images;
#  - create makes a blank device a tracked volume to mkfs;
#  - a mounted plain device is configured for the next boot, not wrapped;
#  - bad requests fail with exit 1 or 2, leave no device, store or
#    configuration behind, and leave what exists unchanged.
. "$(dirname "$0")/../lib.sh"
load_modules
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }
dm_names() { dmsetup info -c --noheadings -o name 2>/dev/null | grep -v '^No devices' | sort | tr '\n' ' '; }
conf_names() { ls /etc/snapmgr/volumes 2>/dev/null | tr '\n' ' '; }

store_disk=$(new_loop 256M)
mkfs.ext4 -q -b 4096 "$store_disk"
mkdir -p /mnt/stores
mount "$store_disk" /mnt/stores
on_exit "umount /mnt/stores"

log "track an unused device: wrapped at once"
data=$(new_loop 128M)
mkfs.ext4 -q -b 4096 "$data"
mkdir -p /mnt/data
mount "$data" /mnt/data
dd if=/dev/urandom of=/mnt/data/f bs=1M count=16 status=none
umount /mnt/data
sum_before=$(dev_sum "$data")
"$SNAPMGR" track "$data" --name data --store /mnt/stores/data.store --chunk-size 16K
on_exit "$SNAPMGR release data 2>/dev/null; umount /mnt/data 2>/dev/null; $SNAPMGR untrack data 2>/dev/null || true"
expect_eq "$(dev_sum /dev/mapper/data)" "$sum_before" "wrapped device reads back the device"
expect_eq "$("$SNAPMGR" --json status data | json_get '["chunk_bytes"]')" 16384 "chunk size"
expect_eq "$(dmsetup info -c --noheadings -o uuid data | cut -c1-8)" SNAPMGR- "dm uuid prefix"

log "create on a blank device"
blank=$(new_loop 64M)
expect_fail "create without --store" "$SNAPMGR" create "$blank" --name blank
"$SNAPMGR" create "$blank" --name blank --store /mnt/stores/blank.store
on_exit "$SNAPMGR release blank 2>/dev/null; umount /mnt/blank 2>/dev/null; $SNAPMGR untrack blank 2>/dev/null || true"
mkfs.ext4 -q -b 4096 /dev/mapper/blank
mkdir -p /mnt/blank
mount /dev/mapper/blank /mnt/blank
dd if=/dev/urandom of=/mnt/blank/g bs=1M count=8 status=none
mount /dev/mapper/data /mnt/data
sync

log "one snapshot command, one instant for both"
"$SNAPMGR" --json snapshot data blank > /tmp/snap.json
cat /tmp/snap.json
expect_eq "$(json_get '[0]["image"]' < /tmp/snap.json)" /dev/mapper/blank-snap "first image"
expect_eq "$(json_get '[1]["image"]' < /tmp/snap.json)" /dev/mapper/data-snap "second image"
sum_data_snap=$(dev_sum /dev/mapper/data-snap)
sum_blank_snap=$(dev_sum /dev/mapper/blank-snap)
dd if=/dev/urandom of=/mnt/data/f bs=1M count=16 conv=notrunc status=none
dd if=/dev/urandom of=/mnt/blank/g bs=1M count=8 conv=notrunc status=none
sync
expect_eq "$(dev_sum /dev/mapper/data-snap)" "$sum_data_snap" "data image after writes"
expect_eq "$(dev_sum /dev/mapper/blank-snap)" "$sum_blank_snap" "blank image after writes"
"$SNAPMGR" backup data /tmp/data.img
expect_eq "$(dev_sum /tmp/data.img)" "$sum_data_snap" "data backup"

log "refusals change nothing"
before_dm=$(dm_names)
before_conf=$(conf_names)
expect_fail "track a missing device" "$SNAPMGR" track /dev/nonexistent
expect_fail "track a tracked volume" "$SNAPMGR" track /dev/mapper/data
expect_fail "track twice under one name" "$SNAPMGR" track "$store_disk" --name data
expect_fail "track with a bad name" "$SNAPMGR" track "$blank" --name 'bad/name'
expect_fail "snapshot while held" "$SNAPMGR" snapshot data
expect_fail "multi snapshot while one is held" "$SNAPMGR" snapshot blank data
expect_fail "release an unknown volume" "$SNAPMGR" release nosuch
expect_fail "untrack with a snapshot held" "$SNAPMGR" untrack data
expect_fail "bad position" "$SNAPMGR" changes data --since nonsense
expect_fail "bad chunk size" "$SNAPMGR" track "$blank" --chunk-size 3K
expect_fail "unknown column" "$SNAPMGR" list -o name,bogus
echo junk > /tmp/not-an-image
expect_fail "backup over a file that is not an image" "$SNAPMGR" backup data /tmp/not-an-image
expect_eq "$(cat /tmp/not-an-image)" junk "file not overwritten"
tmpfs_dir=$(mktemp -d /dev/shm/st.XXXX)
spare=$(new_loop 64M)
expect_fail "store on tmpfs" "$SNAPMGR" track "$spare" --name spare --store "$tmpfs_dir/s.store"
[ ! -e "$tmpfs_dir/s.store" ] || fail "a refused store file was left behind"
expect_fail "store on another tracked volume" "$SNAPMGR" track "$spare" --name spare --store /mnt/data/s.store
[ ! -e /mnt/data/s.store ] || fail "a refused store file was left on another tracked volume"
expect_fail "track a character device" "$SNAPMGR" track /dev/null
btrfs_dev=$(new_loop 128M)
mkfs.btrfs -q "$btrfs_dev"
mkdir -p /mnt/btrfs
mount "$btrfs_dev" /mnt/btrfs
on_exit "umount /mnt/btrfs"
expect_fail "track a mounted btrfs" "$SNAPMGR" track "$btrfs_dev" --name b
expect_fail "store on btrfs" "$SNAPMGR" track "$spare" --name spare --store /mnt/btrfs/s.store
[ ! -e /mnt/btrfs/s.store ] || fail "a refused store file was left on btrfs"
full_dev=$(new_loop 16M)
mkfs.ext4 -q -b 4096 "$full_dev"
mkdir -p /mnt/full
mount "$full_dev" /mnt/full
on_exit "umount /mnt/full"
dd if=/dev/zero of=/mnt/full/filler bs=1M status=none 2>/dev/null || true
expect_fail "store on a full filesystem" "$SNAPMGR" track "$spare" --name spare --store /mnt/full/s.store --store-size 8M
[ ! -e /mnt/full/s.store ] || fail "a refused store file was left on the full filesystem"
rc=0; "$SNAPMGR" frobnicate > /dev/null 2>&1 || rc=$?
expect_eq $rc 2 "exit status of an unknown command"
rc=0; "$SNAPMGR" release nosuch > /dev/null 2>&1 || rc=$?
expect_eq $rc 2 "exit status of a refused request"
expect_eq "$(dm_names)" "$before_dm" "dm devices after the refusals"
expect_eq "$(conf_names)" "$before_conf" "configurations after the refusals"

log "a mounted plain device is configured for the next boot"
boot=$(new_loop 96M)
mkfs.ext4 -q -b 4096 "$boot"
mkdir -p /mnt/boot-vol
mount "$boot" /mnt/boot-vol
"$SNAPMGR" --json track "$boot" --name bootvol > /tmp/t.json
expect_eq "$(json_get '["outcome"]' < /tmp/t.json)" next_boot "outcome for a mounted partition"
expect_eq "$("$SNAPMGR" --json status bootvol | json_get '["state"]')" next_boot "state"
[ -e /mnt/boot-vol/.snapmgr-bootvol.store ] || fail "no store on the mounted filesystem"
dmsetup info bootvol > /dev/null 2>&1 && fail "a mounted device was wrapped"
expect_fail "reattach while it is mounted directly" "$SNAPMGR" reattach bootvol
umount /mnt/boot-vol
log "reattach wraps it once it is not mounted (as the boot would)"
"$SNAPMGR" reattach --all
expect_eq "$("$SNAPMGR" --json status bootvol | json_get '["state"]')" tracking "state after reattach"
mount /dev/mapper/bootvol /mnt/boot-vol
[ -e /mnt/boot-vol/.snapmgr-bootvol.store ] || fail "store not on the wrapped filesystem"
umount /mnt/boot-vol
"$SNAPMGR" list

log "a renamed device is found by its filesystem UUID, a held snapshot comes back"
"$SNAPMGR" snapshot bootvol
boot_instant=$(dev_sum /dev/mapper/bootvol-snap)
mount /dev/mapper/bootvol /mnt/boot-vol
dd if=/dev/urandom of=/mnt/boot-vol/later bs=1M count=4 status=none
umount /mnt/boot-vol
dmsetup remove bootvol-snap # as a shutdown leaves them
dmsetup remove bootvol
boot_img=$(losetup -n -O BACK-FILE "$boot")
losetup -d "$boot"
placeholder=$(new_loop 1M) # takes the old name
boot2=$(losetup --find --show "$boot_img")
on_exit "losetup -d $boot2"
[ "$boot2" != "$boot" ] || fail "the image came back as $boot"
"$SNAPMGR" reattach bootvol
expect_eq "$("$SNAPMGR" --json status bootvol | json_get '["origin"]')" "$boot2" "origin after reattach"
expect_eq "$(dev_sum /dev/mapper/bootvol-snap)" "$boot_instant" "the held snapshot's image after reattach"
"$SNAPMGR" release bootvol
"$SNAPMGR" untrack bootvol --keep-store

log "a release waits for the backup that holds the volume's lock"
"$SNAPMGR" backup --full data /tmp/data2.img &
backup_pid=$!
while flock -n /run/snapmgr/data.lock true; do
	kill -0 $backup_pid 2>/dev/null || break
done
"$SNAPMGR" release data
wait $backup_pid || fail "the backup failed while a release was waiting"
expect_eq "$(dev_sum /tmp/data2.img)" "$sum_data_snap" "backup made while a release waited"

log "release, unmount, untrack: the devices are as they were"
"$SNAPMGR" release blank
umount /mnt/data
# The loop device's page cache still holds what was read from it before
# the writes that went down through the wrapper.
blockdev --flushbufs "$data"
expect_eq "$(dev_sum /dev/mapper/data)" "$(dev_sum "$data")" "wrapper reads the device"
"$SNAPMGR" untrack data
umount /mnt/blank
"$SNAPMGR" untrack blank
expect_eq "$(dm_names)" "" "dm devices at the end"
expect_eq "$(ls /mnt/stores)" lost+found "stores removed"
