# Damaged store metadata is never trusted. A fuzz loop (storefuzz.py)
# corrupts the superblock, the extent table, the chunk map blocks, the
# log's record blocks and the index area of a store holding a snapshot and
# marks, one block at a time: every load is either refused with its reason
# in the kernel log, or (a chunk map block) loads with a new generation and
# the snapshot invalid, or (a record block) keeps every copy from the older
# block of its pair or leaves the snapshot invalid, or (an index block,
# scratch space) loads as it was. With the index cache at 4 blocks the
# index of the copies does not fit in core, and with the whole index area
# overwritten with random bytes the image still reads as before. Then the cases a
# fuzzer does not reach: a store device cut short, an origin of another
# size, and two volumes' store files swapped behind snapmgr's back.
. "$(dirname "$0")/../lib.sh"
here=$(dirname "$0")/..
ITERATIONS=${STORE_FUZZ_ITERATIONS:-120}
SEED=${STORE_FUZZ_SEED:-$RANDOM}

load_modules index_cache_blocks=4
ORIGIN=$(new_loop 256M) # 4096 chunks: the chunk map spans several blocks
size=$(dev_sectors "$ORIGIN")
store_loop=$(new_loop 64M)
store_sectors=$(dev_sectors "$store_loop")
dmsetup create storedev --table "0 $store_sectors linear $store_loop 0"
on_exit "dmsetup remove storedev"
mkfs.ext4 -q -b 4096 /dev/mapper/storedev
mkdir -p /mnt/store
mount /dev/mapper/storedev /mnt/store
new_store /mnt/store/other.store 8M "$ORIGIN"
OTHER="$STORE_DEV:$SB_SECTOR"
new_store /mnt/store/vol.store 16M "$ORIGIN"
umount /mnt/store
on_exit "dmsetup remove vol 2>/dev/null || true" # when a step fails with it loaded

log "a store with marks in two epochs and a snapshot held"
table="0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
dmsetup create vol --table "$table"
fio --name=marks --filename=/dev/mapper/vol --rw=randwrite --bs=4k --size=256M --io_size=8M \
	--direct=1 --ioengine=libaio --iodepth=16 --output=/dev/null
dmsetup suspend vol
dmsetup message vol 0 snapshot
dmsetup resume vol
fio --name=copies --filename=/dev/mapper/vol --rw=randwrite --bs=4k --size=256M --io_size=512k \
	--direct=1 --ioengine=libaio --iodepth=16 --output=/dev/null
GEN=$(status_field vol 2)
echo "status: $(dmsetup status vol)"
dmsetup remove vol
dmsetup create vol --table "$table"
expect_eq "$(status_field vol 2) $(status_field vol 8)" "$GEN active" "the undamaged store loads as it was"
# image_sum: the held snapshot's image, read whole.
image_sum() {
	dmsetup create --readonly img --table "0 $size cowfile-snap $ORIGIN"
	dev_sum /dev/mapper/img
	dmsetup remove img
}
IMAGE=$(image_sum)
dmsetup remove vol

log "fuzz: $ITERATIONS corruptions, seed $SEED"
COWFILE_STORE=$COWFILE_STORE python3 "$here/storefuzz.py" "$ITERATIONS" "$SEED" "$ORIGIN" "$STORE_DEV" "$SB_SECTOR" "$GEN" "$OTHER" ||
	fail "fuzz failed (seed $SEED; set STORE_FUZZ_SEED to repeat it)"
dmsetup create vol --table "$table"
expect_eq "$(status_field vol 2) $(status_field vol 8)" "$GEN active" "the store loads as it was once restored"
dmsetup remove vol

log "the whole index area overwritten with random bytes"
"$COWFILE_STORE" dump "$STORE_DEV" "$SB_SECTOR" --json | python3 -c '
import json, os, sys
d = json.load(sys.stdin)
logical = [e["sector"] * 512 + i * 4096 for e in d["extents"] for i in range(e["blocks"])]
fd = os.open(sys.argv[1], os.O_WRONLY)
first, end = d["map_start"] + d["map_blocks"], d["data_start"]
for b in range(first, end):
    os.pwrite(fd, os.urandom(4096), logical[b])
os.fsync(fd)
print(f"index blocks {first}..{end - 1} overwritten")
' "$STORE_DEV"
dmsetup create vol --table "$table"
expect_eq "$(status_field vol 2) $(status_field vol 8)" "$GEN active" "loaded over a random index area"
expect_eq "$(image_sum)" "$IMAGE" "the image over a random index area"
dmsetup remove vol

# refused WHAT REASON TABLE: the load fails and the kernel log says REASON.
refused() {
	expect_fail -s 1 "$1" dmsetup create vol --table "$3"
	dmesg | tail -3 | grep -q "cowfile: $2" || { dmesg | tail -3; fail "$1: the kernel did not say '$2'"; }
	echo "ok: $1 says '$2'"
}
log "store device cut short"
dmsetup suspend storedev
dmsetup load storedev --table "0 $((SB_SECTOR + 8 * 10)) linear $store_loop 0"
dmsetup resume storedev
refused "a store device cut short" "Store extent beyond the end of the store device" "$table"
dmsetup suspend storedev
dmsetup load storedev --table "0 $store_sectors linear $store_loop 0"
dmsetup resume storedev
refused "an origin of another size" "Store belongs to an origin of another size" \
	"0 $((size - 128)) cowfile $ORIGIN $STORE_DEV $SB_SECTOR"

log "two volumes' store files swapped while they were detached"
a=$(new_loop 64M)
b=$(new_loop 64M)
stores=$(new_loop 96M)
mkfs.ext4 -q -b 4096 "$stores"
mkdir -p /mnt/stores
mount "$stores" /mnt/stores
on_exit "umount /mnt/stores"
for v in a b; do
	dev=${!v}
	"$SNAPMGR" track "$dev" --name "fz$v" --store "/mnt/stores/fz$v.store" --store-size 8M
	on_exit "dmsetup remove fz$v 2>/dev/null; $SNAPMGR untrack fz$v"
	dmsetup remove "fz$v"
done
chattr -i /mnt/stores/fza.store /mnt/stores/fzb.store
mv /mnt/stores/fza.store /mnt/stores/tmp.store
mv /mnt/stores/fzb.store /mnt/stores/fza.store
mv /mnt/stores/tmp.store /mnt/stores/fzb.store
chattr +i /mnt/stores/fza.store /mnt/stores/fzb.store
for v in a b; do
	expect_fail -s 1 "reattach fz$v with the other volume's store" "$SNAPMGR" reattach "fz$v"
	grep -q "not where the store records them\|another store\|store UUID" /tmp/expect_fail.out ||
		fail "fz$v: the refusal does not say the store is not its own"
	[ ! -e "/dev/mapper/fz$v" ] || fail "fz$v attached"
done
for v in a b; do
	chattr -i "/mnt/stores/fz$v.store"
	mv "/mnt/stores/fz$v.store" /mnt/stores/tmp.$v
done
mv /mnt/stores/tmp.a /mnt/stores/fzb.store
mv /mnt/stores/tmp.b /mnt/stores/fza.store
chattr +i /mnt/stores/fza.store /mnt/stores/fzb.store
"$SNAPMGR" reattach fza fzb
echo "ok: both attach once their own stores are back"
