# Our udev rules on a running systemd-udevd (with Debian's own rules: 55-dm,
# 60-persistent-storage, 95-dm-notify), for a disk configured for tracking
# that appears while the system runs:
#  - the raw device is claimed: SYSTEMD_READY=0, no by-uuid link;
#  - the attach rule queues `snapmgr reattach --boot NAME` as a transient
#    systemd service (checked with udevadm test: no systemd runs in this
#    guest, so the job the service would run is run by hand);
#  - once attached, /dev/disk/by-uuid/<uuid> and /dev/snapmgr/NAME name the
#    wrapper; a snapshot's image, which carries the same filesystem UUID,
#    gets /dev/snapmgr/NAME-snap and never takes by-uuid;
#  - a later change event on the raw device leaves it claimed;
#  - after untrack the raw device has its by-uuid link again;
#  - an LVM volume configured for live insertion comes back after a
#    "reboot" (deactivated and activated again) hidden from the disk rules
#    until reattach --boot has put its wrapper in, then linked;
#  - the same under lvm2's own rule names (10-dm, 11-dm-lvm, 13-dm-disk, as
#    Fedora, Arch and SUSE install them) with our rules at 12, the number the
#    build picks there; at 58 under those names the LV would be linked
#    before it is hidden (the negative control: the renaming matters).
. "$(dirname "$0")/../lib.sh"
load_modules
unset DM_DISABLE_UDEV # udev makes the nodes and links here, as on a real system
# The harness runs scenarios chrooted into the guest's root; udevadm would
# ignore requests there.
export SYSTEMD_IGNORE_CHROOT=1
modprobe loop
prop() { udevadm info --query=property --name="$1" | sed -n "s/^$2=//p"; }
# -e: a missing link is "none" (-f would name the path itself once
# /dev/disk/by-uuid exists)
by_uuid() { readlink -e "/dev/disk/by-uuid/$uuid" 2>/dev/null || echo none; }

log "our rules, naming the snapmgr under test, and systemd-udevd"
mkdir -p /run/udev/rules.d
claim_rules=$(cd "$SNAPMGR_BUILD_DIR/udev" && echo [0-9][0-9]-snapmgr.rules)
[ -f "$SNAPMGR_BUILD_DIR/udev/$claim_rules" ] || fail "no claim rules in the build: $claim_rules"
for r in "$claim_rules" 69-snapmgr-attach.rules; do
	sed "s|/[^ \"]*/snapmgr |$SNAPMGR |g" "$SNAPMGR_BUILD_DIR/udev/$r" > /run/udev/rules.d/$r
done
/lib/systemd/systemd-udevd --daemon
on_exit "udevadm control --exit"
udevadm settle

log "a disk with ext4, configured for tracking while it was mounted, then removed"
img=$(mktemp /tmp/disk.XXXXXX)
truncate -s 128M "$img"
on_exit "rm -f $img"
dev=$(losetup --find --show "$img")
mkfs.ext4 -q -b 4096 "$dev"
uuid=$(blkid -s UUID -o value "$dev")
mkdir -p /mnt/hot
mount "$dev" /mnt/hot
"$SNAPMGR" track /mnt/hot --name hot
on_exit "$SNAPMGR release hot 2>/dev/null; $SNAPMGR untrack hot 2>/dev/null || true"
dd if=/dev/urandom of=/mnt/hot/data bs=1M count=4 status=none
umount /mnt/hot
losetup -d "$dev"
udevadm settle

log "hot-add it"
dev=$(losetup --find --show "$img")
on_exit "losetup -d $dev"
udevadm settle
expect_eq "$(prop "$dev" SNAPMGR_VOLUME)" hot "udev knows the volume"
expect_eq "$(prop "$dev" SNAPMGR_CLAIM)" 1 "the raw device is claimed"
expect_eq "$(prop "$dev" SYSTEMD_READY)" 0 "systemd does not see the raw device"
expect_eq "$(by_uuid)" none "no by-uuid link to the raw device"

mkdir -p /run/systemd/system # what the attach rule tests for systemd
udevadm test "/sys/class/block/$(basename "$dev")" > /tmp/udevadm-test 2>&1 || true
rmdir /run/systemd/system
queued=$(grep "systemd-run --no-block" /tmp/udevadm-test | grep "snapmgr-attach-hot .*reattach --boot hot") ||
	{ cat /tmp/udevadm-test; fail "the attach rule does not queue reattach --boot hot"; }
echo "ok: the attach rule queues: $queued"

log "what the queued service runs"
"$SNAPMGR" reattach --boot hot
udevadm settle
wrapper=$(readlink -f /dev/mapper/hot)
expect_eq "$(by_uuid)" "$wrapper" "by-uuid names the wrapper"
expect_eq "$(readlink -f /dev/snapmgr/hot)" "$wrapper" "/dev/snapmgr/hot"
log "a change event on the raw device does not take the link back"
udevadm trigger --action=change "$dev"
udevadm settle
expect_eq "$(prop "$dev" SNAPMGR_ATTACHED)" 1 "udev sees the raw device attached"
expect_eq "$(prop "$dev" SNAPMGR_CLAIM)" 1 "still claimed"
expect_eq "$(by_uuid)" "$wrapper" "by-uuid still names the wrapper"
mount "/dev/disk/by-uuid/$uuid" /mnt/hot
dd if=/dev/urandom of=/mnt/hot/more bs=1M count=2 conv=fsync status=none

log "a snapshot's image carries the same filesystem UUID"
"$SNAPMGR" snapshot hot
udevadm settle
expect_eq "$(readlink -f /dev/snapmgr/hot-snap)" "$(readlink -f /dev/mapper/hot-snap)" "/dev/snapmgr/hot-snap"
expect_eq "$(by_uuid)" "$wrapper" "by-uuid still names the wrapper"
"$SNAPMGR" release hot
umount /mnt/hot

log "untrack gives the raw device its link back"
"$SNAPMGR" untrack hot
udevadm trigger --action=change "$dev"
udevadm settle
expect_eq "$(prop "$dev" SNAPMGR_CLAIM)" "" "no claim after untrack"
expect_eq "$(by_uuid)" "$dev" "by-uuid names the raw device again"
echo "ok: a hot-added tracked disk is claimed, attached and linked as the wrapper"

log "an LVM volume, tracked by live insertion"
lvm() { command lvm "$@" 2> /tmp/lvm.err || { cat /tmp/lvm.err >&2; return 1; }; }
pv=$(new_loop 96M)
lvm pvcreate -q "$pv"
lvm vgcreate -q uv "$pv"
on_exit "lvm vgremove -q -f uv >/dev/null 2>&1; lvm pvremove -q $pv >/dev/null 2>&1"
lvm lvcreate -q -y -L 64M -n lv uv
mkfs.ext4 -q -b 4096 /dev/mapper/uv-lv
uuid=$(blkid -s UUID -o value /dev/mapper/uv-lv)
mkdir -p /mnt/lv
mount /dev/mapper/uv-lv /mnt/lv
"$SNAPMGR" track /dev/mapper/uv-lv --store-size 8M
on_exit "$SNAPMGR untrack uv-lv 2>/dev/null || true"
umount /mnt/lv
udevadm settle
lv=$(readlink -f /dev/mapper/uv-lv)
expect_eq "$(by_uuid)" "$lv" "by-uuid names the LV with its wrapper in"

# As a reboot does: the LV comes back with LVM's table alone, its wrapper
# not yet in.
reactivate() {
	lvm vgchange -q -an uv
	dmsetup remove uv-lv-real
	udevadm settle
	lvm vgchange -q -ay uv
	udevadm settle
	lv=$(readlink -f /dev/mapper/uv-lv)
	expect_eq "$(dmsetup table uv-lv | awk '{ print $3 }')" linear "uv-lv's table before reattach"
}
hidden_until_reattached() {
	expect_eq "$(prop "$lv" SNAPMGR_CLAIM)" 1 "$1: the LV is claimed"
	expect_eq "$(prop "$lv" SYSTEMD_READY)" 0 "$1: systemd does not see the LV"
	expect_eq "$(by_uuid)" none "$1: no by-uuid link to the LV without its wrapper"
	"$SNAPMGR" reattach --boot uv-lv
	udevadm settle
	expect_eq "$(dmsetup table uv-lv | awk '{ print $3 }')" cowfile "$1: uv-lv's table after reattach"
	expect_eq "$(by_uuid)" "$lv" "$1: by-uuid names the LV with its wrapper in"
}
reactivate
hidden_until_reattached "Debian's rule names"

log "lvm2's own rule names, our rules at 12"
for pair in 55-dm:10-dm 56-lvm:11-dm-lvm 60-persistent-storage-dm:13-dm-disk; do
	cp "/lib/udev/rules.d/${pair%:*}.rules" "/run/udev/rules.d/${pair#*:}.rules"
	ln -s /dev/null "/run/udev/rules.d/${pair%:*}.rules"
done
mv "/run/udev/rules.d/$claim_rules" /run/udev/rules.d/12-snapmgr.rules
udevadm control --reload
reactivate
hidden_until_reattached "lvm2's rule names"

log "negative control: lvm2's rule names, our rules at 58"
mv /run/udev/rules.d/12-snapmgr.rules /run/udev/rules.d/58-snapmgr.rules
udevadm control --reload
reactivate
expect_eq "$(by_uuid)" "$lv" "at 58 under lvm2's names, the LV is linked before our rules hide it"
echo "ok: negative control: the rule order decides"
"$SNAPMGR" reattach --boot uv-lv
"$SNAPMGR" untrack uv-lv
echo "ok: an LVM volume configured for insertion is hidden at boot until its wrapper is in"
