# A cowfile table writes its store at load and on every first write, so it
# is refused when it could not write: a read-only store device ("Store
# device is read-only"), a read-only origin ("Origin device is
# read-only"), a table loaded read-only ("cowfile needs a writable
# table"). No refused load changes a byte of the store device; once the
# devices are writable again the same store loads as it was.
. "$(dirname "$0")/../lib.sh"

load_modules
ORIGIN=$(new_loop 64M)
size=$(dev_sectors "$ORIGIN")
mount_store_fs
new_store /mnt/store/vol.store 4M "$ORIGIN"
# Unmounted: nothing but the kernel writes the store device from now on.
umount /mnt/store
table="0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
GEN=$("$COWFILE_STORE" dump "$STORE_DEV" "$SB_SECTOR" --json |
	python3 -c 'import json, sys; print(json.load(sys.stdin)["generation_uuid"])')

# The store device's bytes as the disk has them (the kernel writes past the
# page cache).
store_sum() { dd if="$STORE_DEV" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1; }

# [ro=--readonly] refuse ERROR-TEXT: loading the table fails, the kernel
# says ERROR-TEXT, no device is left behind and the store is unchanged.
refuse() {
	local text=$1 before
	before=$(store_sum)
	dmesg -C
	if dmsetup create ${ro:-} vol --table "$table" > /tmp/refuse.out 2>&1; then
		echo "loaded: $(dmsetup status vol)"
		[ "$(store_sum)" = "$before" ] || echo "and the load wrote the store"
		dmsetup remove vol
		fail "table accepted (${ro:-read-write table}): $table"
	fi
	dmsetup info vol > /dev/null 2>&1 && fail "vol left behind after a refused table"
	grep -q "cowfile: $text" <(dmesg) || { dmesg; fail "the kernel did not say '$text'"; }
	expect_eq "$(store_sum)" "$before" "store device unchanged by the refused load ($text)"
}

log "read-only store device"
blockdev --setro "$STORE_DEV"
on_exit "blockdev --setrw $STORE_DEV"
refuse "Store device is read-only"
blockdev --setrw "$STORE_DEV"

log "read-only origin"
blockdev --setro "$ORIGIN"
on_exit "blockdev --setrw $ORIGIN"
refuse "Origin device is read-only"
blockdev --setrw "$ORIGIN"

log "read-only table"
ro=--readonly refuse "cowfile needs a writable table"

log "writable again: the store loads as it was and tracks"
dmsetup create vol --table "$table"
on_exit "dmsetup remove vol"
expect_eq "$(status_field vol 1) $(status_field vol 2) $(status_field vol 6) $(status_field vol 8)" \
	"tracking $GEN 0/1024 none" "mode, generation, marks and snapshot"
python3 "$(dirname "$0")/../chunkio.py" write /dev/mapper/vol 65536 5
expect_eq "$(status_field vol 6)" "1/1024" "the written chunk is marked"
