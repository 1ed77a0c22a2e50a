# snapmgr grow while a snapshot is held, the store file on xfs: a store too
# small for the writes that follow is grown live, the snapshot stays valid
# and its image keeps reading the instant. A refused grow leaves the store
# file as it was.
# snapmgr wait returns on the volume's next dm event. snapshot warns when
# the store's room is smaller than what changed since the previous
# snapshot. The text output of grow, wait and snapshot's warning are parsed.
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

log "a snapshot after 16 MiB of writes warns that the 2M store is too small"
"$SNAPMGR" --json snapshot data > /tmp/snap.json 2> /tmp/snap.err
cat /tmp/snap.err
instant=$(dev_sum /dev/mapper/data-snap)
room=$("$SNAPMGR" --json status data | json_get '["store_room_bytes"]')
echo "room before grow: $room bytes"
[ "$room" -lt $((2 << 20)) ] || fail "a 2M store has $room bytes of room"
changed=$(json_get '[0]["changed_bytes"]' < /tmp/snap.json)
[ "$changed" -ge $((16 << 20)) ] || fail "snapshot says $changed bytes changed, not the 16 MiB written"
expect_eq "$(json_get '[0]["store_room_bytes"]' < /tmp/snap.json)" "$room" "snapshot's store_room_bytes"
grep -q "^snapmgr: warning: data: the store's room ($room bytes) is smaller than what the volume wrote since its previous snapshot ($changed bytes).*snapmgr grow data SIZE.*snapmgr monitor data" /tmp/snap.err ||
	fail "no warning on stderr that the store is too small"
json_get '[0]["warnings"][0]' < /tmp/snap.json | grep -q "room ($room bytes) is smaller" ||
	fail "no warnings entry in the snapshot's JSON"
echo "ok: snapshot warns that the store is too small, on stderr and in JSON"

log "grow by 32M; wait, in text, returns on the grow's event"
"$SNAPMGR" wait data > /tmp/wait.txt &
wait_pid=$!
sleep 2
kill -0 $wait_pid 2>/dev/null || fail "wait returned before any event"
"$SNAPMGR" -v grow data 32M > /tmp/grow.out
expect_eq "$(stat -c %s /mnt/stores/data.store)" $(((2 + 32) << 20)) "store file size after grow"
expect_eq "$(cat /tmp/grow.out)" "data: store is now $(((2 + 32) << 20)) bytes" "grow's output"
timeout 60 tail --pid=$wait_pid -f /dev/null || fail "wait did not return after the grow"
wait $wait_pid || fail "wait failed"
cat /tmp/wait.txt
# "data: tracking, snapshot active, store USED of ROOM bytes used"
read -r w_name w_state w_snap w_snap_state w_store w_used w_of w_room w_rest < /tmp/wait.txt
expect_eq "$w_name $w_state $w_snap $w_snap_state $w_store $w_of $w_rest" \
	"data: tracking, snapshot active, store of bytes used" "wait's line"
[ "$w_used" -le "$w_room" ] || fail "wait says $w_used of $w_room bytes used"
[ "$w_room" -gt "$room" ] || fail "wait says the room is $w_room bytes after the grow, not more than $room"
lsattr /mnt/stores/data.store | grep -q -- '-i-' || fail "store not pinned after grow"
room2=$("$SNAPMGR" --json status data | json_get '["store_room_bytes"]')
echo "room after grow: $room2 bytes"
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

log "8 MiB written since the last snapshot fit the grown store: no warning"
"$SNAPMGR" --json snapshot data > /tmp/snap.json 2> /tmp/snap.err
changed=$(json_get '[0]["changed_bytes"]' < /tmp/snap.json)
room=$(json_get '[0]["store_room_bytes"]' < /tmp/snap.json)
[ "$changed" -ge $((8 << 20)) ] && [ "$changed" -lt "$room" ] ||
	fail "snapshot says $changed bytes changed for a room of $room bytes"
expect_eq "$(json_get '[0]["warnings"]' < /tmp/snap.json)" "[]" "warnings of a snapshot whose store is large enough"
expect_eq "$(cat /tmp/snap.err)" "" "snapshot's stderr"
"$SNAPMGR" release data
umount /mnt/data
"$SNAPMGR" untrack data
