# Every chunk written after an epoch is reported by `changes --since`, and
# no chunk that was not written is: single-chunk writes, a write spanning
# chunks, write-zeroes over many chunks, a discard (tracked while no snapshot
# is held; dropped, so unchanged and unreported, while one is). The store is
# a file on another, mounted filesystem (opened without a claim).
. "$(dirname "$0")/../lib.sh"
CHUNK=65536
chunkio=$(dirname "$0")/../chunkio.py

load_modules
ORIGIN=$(new_loop 256M)
fill_random "$ORIGIN"
mount_store_fs 64M
new_store /mnt/store/vol.store 32M "$ORIGIN"
expect_eq "$STORE_DEV" "$STORE_DISK" "store device is the store filesystem's disk"
size=$(dev_sectors "$ORIGIN")
dmsetup create vol --table "0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
on_exit "dmsetup remove vol"
VOL=/dev/mapper/vol
nchunks=$((size * 512 / CHUNK))
expect_eq "$(status_field vol 6)" "0/$nchunks" "no chunk marked on a new store"
e0=$(status_field vol 4)

# Epoch e0: random chunks, a spanning write, write-zeroes, a discard.
set_a=$(shuf -i 0-$((nchunks - 1)) -n 150 | sort -n)
# shellcheck disable=SC2086
python3 "$chunkio" write "$VOL" $CHUNK $set_a
dd if=/dev/urandom of="$VOL" bs=4k seek=$((1000 * 16 + 15)) count=33 oflag=direct conv=notrunc status=none # chunks 1000-1002
blkdiscard -z -o $((2000 * CHUNK + 4096)) -l $((5 * CHUNK)) "$VOL"                              # chunks 2000-2005
blkdiscard -o $((3000 * CHUNK)) -l $((4 * CHUNK)) "$VOL"                                     # chunks 3000-3003
expect_a=$( { echo "$set_a"; seq 1000 1002; seq 2000 2005; seq 3000 3003; } | sort -n | uniq)
echo "status: $(dmsetup status vol)"
expect_eq "$(status_field vol 6)" "$(echo "$expect_a" | wc -l)/$nchunks" "marked count equals chunks written"

log "snapshot closes epoch $e0"
dmsetup suspend vol
dd if="$ORIGIN" of=/tmp/instant.img bs=1M iflag=direct status=none
dmsetup message vol 0 snapshot
dmsetup resume vol
expect_eq "$(status_field vol 4)" $((e0 + 1)) "epoch after snapshot"
expect_eq "$(status_field vol 6)" "0/$nchunks" "nothing marked in the new epoch"
dmsetup create --readonly vol-snap --table "0 $size cowfile-snap $ORIGIN"
on_exit "dmsetup remove vol-snap"

# Epoch e0+1: another random set, a spanning write; a discard is dropped.
set_b=$(shuf -i 0-$((nchunks - 1)) -n 120 | sort -n)
# shellcheck disable=SC2086
python3 "$chunkio" write "$VOL" $CHUNK $set_b
dd if=/dev/urandom of="$VOL" bs=4k seek=$((500 * 16 + 8)) count=16 oflag=direct conv=notrunc status=none # chunks 500-501
before=$(dd if="$VOL" bs=$CHUNK skip=3500 count=2 iflag=direct status=none | sha256sum)
blkdiscard -o $((3500 * CHUNK)) -l $((2 * CHUNK)) "$VOL"
expect_eq "$(dd if="$VOL" bs=$CHUNK skip=3500 count=2 iflag=direct status=none | sha256sum)" "$before" \
	"a discard while the snapshot is held leaves the data"
expect_b=$( { echo "$set_b"; seq 500 501; } | sort -n | uniq)

"$COWFILE_STORE" changes "$STORE_DEV" "$SB_SECTOR" --since "$e0" --json > /tmp/changes_b.json
got_b=$(python3 "$chunkio" chunks $CHUNK < /tmp/changes_b.json)
[ "$got_b" = "$expect_b" ] || { diff <(echo "$expect_b") <(echo "$got_b") | head; fail "changes since epoch $e0"; }
echo "ok: changes since epoch $e0 are exactly the $(echo "$expect_b" | wc -l) chunks written after it"

"$COWFILE_STORE" changes "$STORE_DEV" "$SB_SECTOR" --since $((e0 - 1)) --json > /tmp/changes_ab.json
got_ab=$(python3 "$chunkio" chunks $CHUNK < /tmp/changes_ab.json)
expect_ab=$( { echo "$expect_a"; echo "$expect_b"; } | sort -n | uniq)
[ "$got_ab" = "$expect_ab" ] || { diff <(echo "$expect_ab") <(echo "$got_ab") | head; fail "changes since epoch $((e0 - 1))"; }
echo "ok: changes since epoch $((e0 - 1)) are exactly the $(echo "$expect_ab" | wc -l) chunks written in both epochs"

expect_eq "$(dev_sum /dev/mapper/vol-snap)" "$(dev_sum /tmp/instant.img)" "image equals the raw volume at the instant"
# shellcheck disable=SC2086
copied_b=$( { python3 "$chunkio" blocks $CHUNK $set_b; seq $((500 * 16 + 8)) $((500 * 16 + 23)); } | sort -u | wc -l)
expect_eq "$(status_field vol 12)" "$copied_b" "one copy per 4 KiB block first written after the snapshot"
used=$(status_field vol 7 | cut -d/ -f1)
[ "$used" -ge "$copied_b" ] && [ "$used" -le $((copied_b + 2 * (copied_b / 251 + 1))) ] ||
	fail "store slots used: $used for $copied_b copies, expected the copies and two record slots per 251"
