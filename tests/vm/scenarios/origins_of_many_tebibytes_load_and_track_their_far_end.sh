# An origin of 16 TiB with 256 KiB chunks (64Mi chunks: each change bitmap
# is 8 MiB, more than kmalloc gives) loads, tracks a write to its very last
# chunk, and keeps its in-core memory within 16 MiB per TiB. A store whose
# superblock claims 2^32 chunks or more (16 TiB at 4 KiB chunks, which the
# format allows, but whose bit numbers do not fit the kernel's bitmap
# calls) is refused, unchanged, before the kernel sizes anything by it.
. "$(dirname "$0")/../lib.sh"
here=$(dirname "$0")/..
here=$(cd "$here" && pwd)

load_modules
# Sparse files on the guest's tmpfs: only what is written takes memory.
ORIGIN=$(new_loop 16T)
size=$(dev_sectors "$ORIGIN")
expect_eq "$size" $((1 << 35)) "origin sectors"
mount_store_fs 17400M
log "16 TiB at 256 KiB chunks: a 516 MiB chunk map, a 16 GiB index area (left unwritten)"
t=$SECONDS
new_store /mnt/store/vol.store 16928M "$ORIGIN" 512
echo "store created in $((SECONDS - t)) s"
table="0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
on_exit "dmsetup remove vol 2>/dev/null || true"
t=$SECONDS
dmsetup create vol --table "$table" ||
	fail "the 16 TiB table was refused: $(dmesg | grep 'cowfile: ' | tail -1)"
echo "loaded in $((SECONDS - t)) s: $(dmsetup status vol)"
chunks=$(status_field vol 6 | cut -d/ -f2)
expect_eq "$chunks" $((1 << 26)) "chunks"
core=$(status_field vol 11)
echo "core_bytes $core ($((core >> 20)) MiB for 16 TiB)"
[ "$core" -le $((16 * (16 << 20))) ] || fail "$core bytes in core for 16 TiB, budget 16 MiB per TiB"
EPOCH=$(status_field vol 4)
python3 "$here/chunkio.py" write /dev/mapper/vol 262144 $((chunks - 1))
expect_eq "$(status_field vol 6)" "1/$chunks" "the last chunk marked"
t=$SECONDS
dmsetup remove vol
"$COWFILE_STORE" changes "$STORE_DEV" "$SB_SECTOR" --since $((EPOCH - 1)) --json |
	python3 "$here/chunkio.py" chunks 262144 > /tmp/changes
expect_eq "$(tr '\n' ' ' < /tmp/changes)" "$((chunks - 1)) " "changes after the unload"
echo "unload and changes: $((SECONDS - t)) s"
umount /mnt/store
# Its 516 MiB map lives in the guest's memory: give it back.
store_img=$(losetup -n -O BACK-FILE "$STORE_DISK")
losetup -d "$STORE_DISK"
rm -f "$store_img"

log "a store claiming 2^32 chunks of 4 KiB for the 16 TiB origin"
# Its map would be 32 GiB, so only its superblock and extent table are
# written (storecraft.py forge): the first 8 KiB of a small loop, and the
# rest of the store device an error target, which nothing should read.
map_blocks=$(((1 << 32) / 508 + 1))
index_blocks=$((size / 8192))
store_sectors=$(((2 + map_blocks + index_blocks + 16) * 8))
head_loop=$(new_loop 1M)
dmsetup create bigstore <<TABLE
0 16 linear $head_loop 0
16 $((store_sectors - 16)) error
TABLE
on_exit "dmsetup remove bigstore"
python3 "$here/storecraft.py" forge /dev/mapper/bigstore 0 --origin-sectors "$size" \
	--chunk-sectors 8 --map-blocks "$map_blocks" --data-blocks 16
before=$(dd if="$head_loop" bs=4k count=2 iflag=direct status=none | sha256sum)
dmesg -C
expect_fail -s 1 "load of a store with 2^32 chunks" \
	dmsetup create vol --table "0 $size cowfile $ORIGIN /dev/mapper/bigstore 0"
dmesg | grep "cowfile" || true
grep -q "cowfile: Origin has too many chunks for its chunk size" <(dmesg) ||
	fail "the kernel did not refuse the store for its number of chunks"
expect_eq "$(dd if="$head_loop" bs=4k count=2 iflag=direct status=none | sha256sum)" "$before" \
	"superblock and extent table unchanged by the refused load"
