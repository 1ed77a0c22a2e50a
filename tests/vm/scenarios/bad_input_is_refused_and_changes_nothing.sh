# Wrong table arguments, missing devices, a superblock with a flipped bit, a
# store made for another volume, messages in the wrong state: each gets a
# clear error, creates nothing and changes nothing; the kernel log stays
# clean (the harness checks it).
. "$(dirname "$0")/../lib.sh"

load_modules
ORIGIN=$(new_loop 64M)
other=$(new_loop 96M)
mount_store_fs
new_store /mnt/store/other.store 4M "$other"
other_sb=$SB_SECTOR
new_store /mnt/store/vol.store 4M "$ORIGIN"
size=$(dev_sectors "$ORIGIN")

# [ro=--readonly] refuse NAME ERROR-TEXT TABLE: creating a device with TABLE
# fails, the kernel says ERROR-TEXT, and no device is left behind.
refuse() {
	local name=$1 text=$2
	shift 2
	dmesg -C
	if dmsetup create ${ro:-} "$name" --table "$*" > /tmp/refuse.out 2>&1; then
		dmsetup remove "$name"
		fail "table accepted: $*"
	fi
	dmsetup info "$name" > /dev/null 2>&1 && fail "$name left behind after a refused table"
	grep -q "$text" <(dmesg) || { dmesg; fail "kernel did not say '$text' for: $*"; }
	echo "ok: refused ($text): $*"
}

refuse bad "Invalid argument count" "0 $size cowfile $ORIGIN"
refuse bad "Invalid argument count" "0 $size cowfile $ORIGIN $STORE_DEV"
refuse bad "Invalid store superblock sector" "0 $size cowfile $ORIGIN $STORE_DEV 12x"
refuse bad "Unknown feature argument" "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR 1 frobnicate"
refuse bad "low_water must be" "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR 2 low_water 0"
refuse bad "Invalid number of feature" "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR 3 low_water 5"
refuse bad "Cannot open origin" "0 $size cowfile /dev/nonexistent $STORE_DEV $SB_SECTOR"
refuse bad "Cannot open store" "0 $size cowfile $ORIGIN /dev/nonexistent $SB_SECTOR"
refuse bad "fit the origin" "0 $((size + 8)) cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
refuse bad "No cowfile store superblock" "0 $size cowfile $ORIGIN $STORE_DEV $((SB_SECTOR + 8))"
refuse bad "not 4 KiB aligned" "0 $size cowfile $ORIGIN $STORE_DEV $((SB_SECTOR + 1))"
refuse bad "another size" "0 $size cowfile $ORIGIN $STORE_DEV $other_sb"
ro=--readonly refuse bad "Invalid argument count" "0 $size cowfile-snap"
ro=--readonly refuse bad "No cowfile device over this origin" "0 $size cowfile-snap $ORIGIN"

log "a store device with 4 KiB logical blocks under an origin of 512-byte ones"
img4k=$(mktemp /tmp/loop4k.XXXXXX)
truncate -s 32M "$img4k"
disk4k=$(losetup --find --show --sector-size 4096 "$img4k")
on_exit "losetup -d $disk4k; rm -f $img4k"
mkfs.ext4 -q -b 4096 "$disk4k"
mkdir -p /mnt/store4k
mount "$disk4k" /mnt/store4k
saved_store=("$STORE_DEV" "$SB_SECTOR")
new_store /mnt/store4k/vol.store 4M "$ORIGIN"
umount /mnt/store4k
refuse bad "logical block size exceeds the origin's" "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
STORE_DEV=${saved_store[0]} SB_SECTOR=${saved_store[1]}

log "a flipped bit in the superblock"
dd if="$STORE_DEV" of=/tmp/sb.orig bs=512 skip="$SB_SECTOR" count=8 iflag=direct status=none
python3 - "$STORE_DEV" "$SB_SECTOR" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
off = int(sys.argv[2]) * 512 + 100
b = os.pread(fd, 1, off)
os.pwrite(fd, bytes([b[0] ^ 0x10]), off)
os.fsync(fd)
PY
refuse bad "Store superblock corrupt" "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
dd if=/tmp/sb.orig of="$STORE_DEV" bs=512 seek="$SB_SECTOR" count=8 oflag=direct conv=notrunc status=none
expect_eq "$(dd if="$STORE_DEV" bs=512 skip="$SB_SECTOR" count=8 iflag=direct status=none | sha256sum)" \
	"$(sha256sum < /tmp/sb.orig)" "superblock untouched by the refused load"

log "the good table loads"
dmsetup create vol --table "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
on_exit "dmsetup remove vol"
status0=$(dmsetup status vol)
echo "status: $status0"

refuse bad2 "Store is in use by another cowfile device" "0 $(dev_sectors "$other") cowfile $other $STORE_DEV $SB_SECTOR"
# A second live device over the same origin and store would share the
# volume, and a snapshot quiesces only the device it is sent to.
refuse vol2 "Store is in use by another cowfile device" "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
refuse bad2 "Origin is tracked with another store" "0 $size cowfile $ORIGIN $STORE_DEV $other_sb"
ro=--readonly refuse snap "No snapshot held" "0 $size cowfile-snap $ORIGIN"
log "reloading vol's own table (the same mapped device) still works"
dmsetup load vol --table "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
dmsetup resume vol
expect_eq "$(dmsetup status vol)" "$status0" "status (generation, epochs, snapshot) after the reload"

log "messages in the wrong state"
expect_fail -s 1 "snapshot while not suspended" dmsetup message vol 0 snapshot
expect_fail -s 1 "new_generation while not suspended" dmsetup message vol 0 new_generation
expect_fail -s 1 "release with no snapshot" dmsetup message vol 0 release
expect_fail -s 1 "unknown message" dmsetup message vol 0 frobnicate
expect_fail -s 1 "snapshot with an argument" dmsetup message vol 0 snapshot now
expect_fail -s 1 "grow without extents" dmsetup message vol 0 grow
expect_fail -s 1 "grow with a malformed extent" dmsetup message vol 0 grow 12
expect_fail -s 1 "grow beyond the device" dmsetup message vol 0 grow 99999999999:8
expect_fail -s 1 "grow unaligned" dmsetup message vol 0 grow 9:8
expect_eq "$(dmsetup status vol)" "$status0" "status unchanged by refused messages"
# blocks * 8 sectors wraps to 0 in 64 bits: the extent's end would be sector 8.
expect_fail -s 1 "grow whose size in sectors overflows" dmsetup message vol 0 grow 8:2305843009213693952
expect_eq "$(dmsetup status vol)" "$status0" "status unchanged by the overflowing grow"
read -r ext_sector ext_blocks < <("$COWFILE_STORE" dump "$STORE_DEV" "$SB_SECTOR" --json |
	python3 -c 'import json, sys; e = json.load(sys.stdin)["extents"][0]; print(e["sector"], e["blocks"])')
[ -n "$ext_blocks" ] || fail "no extent in the store's dump"
expect_fail -s 1 "grow with an extent the store already has" dmsetup message vol 0 grow "$ext_sector:$ext_blocks"
expect_eq "$(dmsetup status vol)" "$status0" "status unchanged by the overlapping grow"
# A free extent of the store's filesystem, as snapmgr grow would allocate:
# valid once, refused when given twice in one message.
fallocate -l 256K /mnt/store/grow.extra
sync /mnt/store/grow.extra
read -r new_sector new_blocks < <(python3 - /mnt/store/grow.extra <<'PY'
import fcntl, struct, sys
with open(sys.argv[1], "rb") as f:
    req = bytearray(struct.pack("=QQIIII", 0, 2**64 - 1, 1, 0, 1, 0) + bytes(56))
    fcntl.ioctl(f.fileno(), 0xC020660B, req)  # FS_IOC_FIEMAP, FIEMAP_FLAG_SYNC
    assert struct.unpack_from("=I", req, 20)[0] == 1, "no extent"
    _, physical, length = struct.unpack_from("=QQQ", req, 32)
    print(physical // 512, length // 4096)
PY
)
[ -n "$new_blocks" ] || fail "no extent found for the new file"
expect_fail -s 1 "grow with the same new extent twice" \
	dmsetup message vol 0 grow "$new_sector:$new_blocks" "$new_sector:$new_blocks"
expect_eq "$(dmsetup status vol)" "$status0" "status unchanged by refused messages"

dmsetup suspend vol
dmsetup message vol 0 snapshot
expect_fail -s 1 "second snapshot while one is held" dmsetup message vol 0 snapshot
dmsetup resume vol
refuse snaprw "read-only" "0 $size cowfile-snap $ORIGIN"
dmsetup create --readonly vol-snap --table "0 $size cowfile-snap $ORIGIN"
expect_fail -s 1 "write to the image" dd if=/dev/zero of=/dev/mapper/vol-snap bs=4k count=1 oflag=direct
expect_fail -s 1 "release while the image exists" dmsetup message vol 0 release
expect_eq "$(status_field vol 8)" active "snapshot still held"
dmsetup remove vol-snap
dmsetup message vol 0 release
expect_eq "$(status_field vol 8)" none "released"

log "the new extent refused above when given twice is a valid grow on its own"
slots=$(status_field vol 7 | cut -d/ -f2)
dmsetup message vol 0 grow "$new_sector:$new_blocks"
expect_eq "$(status_field vol 7 | cut -d/ -f2)" "$((slots + new_blocks))" \
	"log slots after growing by the new extent once (a slot per 4 KiB block)"
