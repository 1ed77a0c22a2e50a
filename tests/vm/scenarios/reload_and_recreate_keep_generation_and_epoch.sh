# A table reload (suspend, load, resume) and a remove + create keep the
# generation, the epoch, the marked chunks and a held snapshot: no change
# is lost and no full resync is needed. The store is marked clean on
# remove and in use while loaded.
. "$(dirname "$0")/../lib.sh"
CHUNK=65536
chunkio=$(dirname "$0")/../chunkio.py

load_modules
ORIGIN=$(new_loop 128M)
fill_random "$ORIGIN"
mount_store_fs
new_store /mnt/store/vol.store 16M "$ORIGIN"
size=$(dev_sectors "$ORIGIN")
table="0 $size cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
dmsetup create vol --table "$table"
on_exit "dmsetup remove vol"
VOL=/dev/mapper/vol
gen=$(status_field vol 2)
e0=$(status_field vol 4)

python3 "$chunkio" write "$VOL" $CHUNK 3 7 11 200 201
dmsetup suspend vol
dd if="$ORIGIN" of=/tmp/instant.img bs=1M iflag=direct status=none
dmsetup message vol 0 snapshot
dmsetup resume vol
python3 "$chunkio" write "$VOL" $CHUNK 5 7 300
marked=$(status_field vol 6)
expect_eq "$marked" "3/$((size * 512 / CHUNK))" "chunks marked after the snapshot"

log "reload the same table"
dmsetup suspend vol
dmsetup load vol --table "$table 2 low_water 90"
dmsetup resume vol
dmsetup table vol
expect_eq "$(dmsetup table vol | cut -d' ' -f7-)" "2 low_water 90" "reloaded table has the new feature"
expect_eq "$(status_field vol 2)" "$gen" "generation after reload"
expect_eq "$(status_field vol 4)" $((e0 + 1)) "epoch after reload"
expect_eq "$(status_field vol 6)" "$marked" "marked chunks after reload"
expect_eq "$(status_field vol 8)" active "snapshot held after reload"
dmsetup create --readonly vol-snap --table "0 $size cowfile-snap $ORIGIN"
expect_eq "$(dev_sum /dev/mapper/vol-snap)" "$(dev_sum /tmp/instant.img)" "image after reload"
dmsetup remove vol-snap

log "remove and create again"
dmsetup remove vol
flags=$("$COWFILE_STORE" dump "$STORE_DEV" "$SB_SECTOR" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clean"])')
expect_eq "$flags" True "store marked clean after remove"
dmsetup create vol --table "$table"
flags=$("$COWFILE_STORE" dump "$STORE_DEV" "$SB_SECTOR" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clean"])')
expect_eq "$flags" False "store marked in use while loaded"
expect_eq "$(status_field vol 2)" "$gen" "generation after re-create"
expect_eq "$(status_field vol 4)" $((e0 + 1)) "epoch after re-create"
expect_eq "$(status_field vol 6)" "$marked" "marked chunks rebuilt from the chunk map"
expect_eq "$(status_field vol 8)" active "snapshot held after re-create"
dmsetup create --readonly vol-snap --table "0 $size cowfile-snap $ORIGIN"
on_exit "dmsetup remove vol-snap"
expect_eq "$(dev_sum /dev/mapper/vol-snap)" "$(dev_sum /tmp/instant.img)" "image after re-create"
# A chunk copied before the re-create is not copied again.
python3 "$chunkio" write "$VOL" $CHUNK 5 7
expect_eq "$(status_field vol 12)" 3 "no second copy of a copied block"
python3 "$chunkio" write "$VOL" $CHUNK 9
expect_eq "$(status_field vol 12)" 4 "a new block gets a copy"
expect_eq "$(dev_sum /dev/mapper/vol-snap)" "$(dev_sum /tmp/instant.img)" "image after more writes"

"$COWFILE_STORE" changes "$STORE_DEV" "$SB_SECTOR" --since "$e0" --json > /tmp/ch.json
expect_eq "$(python3 "$chunkio" chunks $CHUNK < /tmp/ch.json | tr '\n' ' ')" "5 7 9 300 " "changes since the snapshot"
