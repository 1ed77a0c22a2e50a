# Guest side of the crash tests; see multiboot/crash_*.
#   crash_guest.sh setup SNAPSHOT(0|1)   make the store, record epoch
#   crash_guest.sh run BOOT              re-create the volume after the
#        previous boot's kill, check it, then write until killed
# Disks: vda origin, vdb store filesystem, vdc write log. The origin has
# enough chunks that a boot's writes do not touch them all, so a lost mark
# would show.
. "$(dirname "$0")/../lib.sh"
CHUNK=65536
WRITERS=4
here=$(dirname "$0")/..
state=$VM_RESULTS/crash.state

load_modules
ORIGIN=/dev/vda
mkdir -p /mnt/store

create_vol() {
	dmsetup create vol --table "0 $(dev_sectors $ORIGIN) cowfile $ORIGIN $STORE_DEV $SB_SECTOR"
}

case "$1" in
setup)
	mkfs.ext4 -q -b 4096 /dev/vdb
	mount /dev/vdb /mnt/store
	new_store /mnt/store/vol.store 272M "$ORIGIN" # room for every chunk
	create_vol
	GEN=$(status_field vol 2)
	INSTANT=""
	if [ "$2" = 1 ]; then
		dmsetup suspend vol
		dd if="$ORIGIN" of=/tmp/instant.img bs=1M iflag=direct status=none
		dmsetup message vol 0 snapshot
		dmsetup resume vol
		INSTANT=$(dev_sum /tmp/instant.img)
		rm /tmp/instant.img
	fi
	dd if=/dev/zero of=/dev/vdc bs=1M oflag=direct status=none || true
	dmsetup remove vol
	umount /mnt/store
	printf 'STORE_DEV=%s\nSB_SECTOR=%s\nGEN=%s\nINSTANT=%s\n' \
		"$STORE_DEV" "$SB_SECTOR" "$GEN" "$INSTANT" > "$state"
	cat "$state"
	;;
run)
	boot=$2
	. "$state"
	mount /dev/vdb /mnt/store
	on_exit "umount /mnt/store"
	create_vol
	on_exit "dmsetup remove vol"
	echo "after boot $((boot - 1)): $(dmsetup status vol)"
	expect_eq "$(status_field vol 2)" "$GEN" "generation survives the crash"
	expect_eq "$(status_field vol 1)" tracking "tracking mode"
	if [ "$boot" -gt 1 ]; then
		"$COWFILE_STORE" changes "$STORE_DEV" "$SB_SECTOR" --since "$(cat "$VM_RESULTS/since.$((boot - 1))")" \
			--json > /tmp/changes.json
		python3 "$here/crashwriter.py" check /dev/mapper/vol /dev/vdc $CHUNK $WRITERS $((boot - 1)) \
			< /tmp/changes.json || fail "a write logged before the crash is missing from the changes"
	fi
	if [ -n "$INSTANT" ]; then
		expect_eq "$(status_field vol 8)" active "snapshot held across the crash"
		dmsetup create --readonly vol-snap --table "0 $(dev_sectors $ORIGIN) cowfile-snap $ORIGIN"
		expect_eq "$(dev_sum /dev/mapper/vol-snap)" "$INSTANT" "image reads its instant after the crash"
		dmsetup remove vol-snap
	fi
	# Ask only for this boot's writes: without a snapshot held, close the
	# open epoch (snapshot and release) so that earlier boots' marks do not
	# answer for this one's; with a snapshot held, every boot writes in the
	# epoch after it.
	if [ -z "$INSTANT" ]; then
		dmsetup suspend vol
		dmsetup message vol 0 snapshot
		dmsetup resume vol
		dmsetup message vol 0 release
	fi
	expect_eq "$(status_field vol 8)" "$([ -n "$INSTANT" ] && echo active || echo none)" "snapshot state"
	echo $(( $(status_field vol 4) - 1 )) > "$VM_RESULTS/since.$boot"
	# Tell the host the checks passed; the writer tells it when every
	# writer has logged its first write, and the power is cut at random
	# after that.
	echo "writing until the VM is killed"
	echo "boot $boot checked" > "$VM_RESULTS/checked.$boot"
	python3 "$here/crashwriter.py" write /dev/mapper/vol /dev/vdc $CHUNK $WRITERS "$boot" \
		"$VM_RESULTS/writing.$boot"
	echo "writer finished before the kill"
	;;
esac
