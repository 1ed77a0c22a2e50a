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
#  - after untrack the raw device has its by-uuid link again.
. "$(dirname "$0")/../lib.sh"
load_modules
unset DM_DISABLE_UDEV # udev makes the nodes and links here, as on a real system
# The harness runs scenarios chrooted into the guest's root; udevadm would
# ignore requests there.
export SYSTEMD_IGNORE_CHROOT=1
modprobe loop
prop() { udevadm info --query=property --name="$1" | sed -n "s/^$2=//p"; }
by_uuid() { readlink -f "/dev/disk/by-uuid/$uuid" 2>/dev/null || echo none; }

log "our rules, naming the snapmgr under test, and systemd-udevd"
mkdir -p /run/udev/rules.d
for r in 58-snapmgr 69-snapmgr-attach; do
	sed "s|/[^ \"]*/snapmgr |$SNAPMGR |g" "$SNAPMGR_BUILD_DIR/udev/$r.rules" > /run/udev/rules.d/$r.rules
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
