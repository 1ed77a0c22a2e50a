# snapmgr grow while a snapshot is held, the store file on xfs: a store too
# small for the writes that follow is grown live, the snapshot stays valid
# and its image keeps reading the instant. A refused grow leaves the store
# file as it was.
# snapmgr wait returns on the volume's next dm event.
. "$(dirname "$0")/../lib.sh"
load_modules
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }

# The store on xfs (ext4 stores are grown by the monitor and agent tests);
# mkfs.xfs refuses a filesystem under 300 MiB.
store_disk=$(new_loop 300M)
mkfs.xfs -q -f "$store_disk"
mkdir -p /mnt/stores
mount "$store_disk" /mnt/stores
on_exit "umount /mnt/stores"
expect_eq "$(findmnt -n -o FSTYPE /mnt/stores)" xfs "the store's filesystem"
data=$(new_loop 128M)
mkfs.ext4 -q -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 "$data"
"$SNAPMGR" track "$data" --name data --store /mnt/stores/data.store --store-size 2M
on_exit "$SNAPMGR release data 2>/dev/null; umount /mnt/data 2>/dev/null; $SNAPMGR untrack data 2>/dev/null || true"
mkdir -p /mnt/data
mount /dev/mapper/data /mnt/data
dd if=/dev/urandom of=/mnt/data/f bs=1M count=16 status=none
sync

"$SNAPMGR" snapshot data
instant=$(dev_sum /dev/mapper/data-snap)
room=$("$SNAPMGR" --json status data | json_get '["store_copy_bytes"]')
echo "copy room before grow: $room bytes"
[ "$room" -lt $((2 << 20)) ] || fail "a 2M store has $room bytes of copy room"

"$SNAPMGR" -v grow data 32M
expect_eq "$(stat -c %s /mnt/stores/data.store)" $(((2 + 32) << 20)) "store file size after grow"
lsattr /mnt/stores/data.store | grep -q -- '-i-' || fail "store not pinned after grow"
room2=$("$SNAPMGR" --json status data | json_get '["store_copy_bytes"]')
echo "copy room after grow: $room2 bytes"
[ "$room2" -ge $((room + (31 << 20))) ] || fail "grow by 32M gave only $((room2 - room)) bytes"

log "8 MiB of first writes: more than the old store could hold"
dd if=/dev/urandom of=/mnt/data/f bs=1M count=8 conv=notrunc oflag=direct status=none
sync
expect_eq "$("$SNAPMGR" --json status data | json_get '["snapshot"]')" active "snapshot state"
expect_eq "$(dev_sum /dev/mapper/data-snap)" "$instant" "image after the writes"
used=$("$SNAPMGR" --json status data | json_get '["store_used_bytes"]')
[ "$used" -gt "$room" ] || fail "the snapshot used $used bytes, not more than the old room $room"
echo "ok: the snapshot uses $used bytes, more than the $room the store had"

log "refusals leave the store as it was"
expect_fail -s 2 "grow by a size that is not 4K aligned" "$SNAPMGR" grow data 1000
expect_fail -s 2 "grow an unknown volume" "$SNAPMGR" grow nosuch 4M
expect_fail -s 2 "grow past the free space" "$SNAPMGR" grow data 1G
expect_eq "$(stat -c %s /mnt/stores/data.store)" $(((2 + 32) << 20)) "store file size after refusals"
lsattr /mnt/stores/data.store | grep -q -- '-i-' || fail "store not pinned after refusals"

log "snapmgr wait blocks until the next event (here: the release)"
"$SNAPMGR" --json wait data > /tmp/wait.json &
wait_pid=$!
sleep 2
kill -0 $wait_pid 2>/dev/null || fail "wait returned before any event"
"$SNAPMGR" release data
timeout 60 tail --pid=$wait_pid -f /dev/null || fail "wait did not return after the release"
wait $wait_pid || fail "wait failed"
expect_eq "$(json_get '["snapshot"]' < /tmp/wait.json)" none "snapshot state wait reports"
umount /mnt/data
"$SNAPMGR" untrack data
