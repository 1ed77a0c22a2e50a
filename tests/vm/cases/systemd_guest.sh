# Guest side of multiboot/packages_install_boot_and_upgrade_under_systemd:
# a real Debian 12 system (scripts/make-system-image.sh) booted with
# systemd as PID 1, its root on vda1, an LVM disk on vdb, vdc for the
# agent to back up and vdd for its stores. Each phase is
# one boot, run by vm-job.service once the system is up; nothing here
# comes from the host but this script, lib.sh and the packages.
#   systemd_guest.sh PHASE [UPGRADE]   (UPGRADE: yes, the default, or no)
#   install   (the image's own generic initramfs, no snapmgr) dpkg -i both
#             packages: DKMS builds the module; an LV in fstab tracked by
#             live insertion; `snapmgr track /`; doctor refuses the reboot
#             until `dracut -f`; the new initramfs goes to the host
#   tracked   (that initramfs) root mounts through the wrapper, the LV
#             is mounted only once its wrapper is in, no unit failed, the
#             attach unit and snapmgr-monitor@ ran; snapshot and backup;
#             snapmgrd under its hardened unit serves a full backup of vdc
#             to the Coriolis client; with UPGRADE yes (the default) the
#             6.12 kernel is installed with dpkg (DKMS builds for it, its
#             initramfs holds the module), doctor and dracut refuse it
#             without the module; `systemctl reboot`
#   upgraded  (6.12 and its initramfs, after the clean reboot) tracking
#             continues in the same generation, changes since before the
#             upgrade are incremental and cover what was written
. "$(dirname "$0")/../lib.sh"
# udev runs here: libdevmapper waits for it, as on any system.
unset DM_DISABLE_UDEV
phase=$1
upgrade=${2:-yes} # the tracked phase installs the next kernel
ROOT=vda1
LV=vg0-data
STATE=/var/lib/systemd-test
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d'"$1"')'; }
status_of() { snapmgr --json status "$1" | json_get "[\"$2\"]"; }

# The boot itself: systemd is PID 1, the boot finished with no unit
# failed; how long it took goes to the host.
expect_clean_systemd_boot() {
	expect_eq "$(cat /proc/1/comm)" systemd "PID 1"
	local state
	state=$(systemctl is-system-running --wait || true)
	if [ "$state" != running ]; then
		systemctl --failed --no-pager || true
		fail "system state '$state', expected running"
	fi
	expect_eq "$(systemctl --failed --no-legend --plain | wc -l)" 0 "systemctl --failed lists nothing"
	systemd-analyze time | tee "$VM_RESULTS/boot-time"
}

expect_root_on_wrapper() {
	local src
	src=$(findmnt -n -o SOURCE /)
	expect_eq "$(dmsetup info -c --noheadings -o name "$src" 2>/dev/null)" $ROOT "root is mounted from the wrapper"
	expect_eq "$(dmsetup table $ROOT | awk '{print $3}')" cowfile "the root wrapper's target"
	expect_eq "$(readlink -f "/dev/disk/by-uuid/$(findmnt -n -o UUID /)")" "$(readlink -f "$src")" \
		"by-uuid names the wrapper, not the raw partition"
	expect_eq "$(status_of $ROOT state)" tracking "snapmgr status $ROOT"
}

# The LV in fstab is mounted from its wrapper, and only after the wrapper
# was in: the udev rules kept it from systemd (SYSTEMD_READY=0) until the
# attach unit they started (69-snapmgr-attach.rules) slid it under.
expect_lv_attached_before_its_mount() {
	expect_eq "$(dmsetup table $LV | awk '{print $3}')" cowfile "$LV's table is the wrapper"
	dmsetup info $LV-real > /dev/null || fail "no $LV-real under the wrapper"
	expect_eq "$(findmnt -n -o SOURCE /data)" /dev/mapper/$LV "/data is mounted from $LV"
	expect_eq "$(status_of $LV state)" tracking "snapmgr status $LV"
	local attached mounted
	attached=$(journalctl -b -o json --no-pager UNIT=snapmgr-attach-$LV.service |
		python3 -c '
import json, sys
t = [int(json.loads(l)["__MONOTONIC_TIMESTAMP"]) for l in sys.stdin
     if "Deactivated successfully" in json.loads(l).get("MESSAGE", "")]
print(t[-1] if t else "")')
	[ -n "$attached" ] || { journalctl -b --no-pager | grep -i snapmgr || true; fail "no snapmgr-attach-$LV.service ran this boot"; }
	mounted=$(systemctl show -P ActiveEnterTimestampMonotonic data.mount)
	[ "$mounted" -gt 0 ] || fail "data.mount never became active"
	[ "$mounted" -gt "$attached" ] ||
		fail "/data was mounted at ${mounted}us, before its wrapper was in (attach unit done at ${attached}us)"
	echo "ok: snapmgr-attach-$LV.service finished at ${attached}us, /data mounted at ${mounted}us"
}

expect_monitors_active() {
	local v
	for v in $ROOT $LV; do
		expect_eq "$(systemctl is-active snapmgr-monitor@$v.service)" active "snapmgr-monitor@$v runs"
	done
}

expect_doctor_ok() {
	snapmgr doctor | tee /tmp/doctor || { echo "doctor:"; cat /tmp/doctor; fail "snapmgr doctor found a problem: $1"; }
	echo "ok: snapmgr doctor: $1"
}
# expect_doctor_problem WHAT PATTERN: exit 1, PATTERN in a "problem" line.
expect_doctor_problem() {
	local rc=0
	snapmgr doctor > /tmp/doctor 2>&1 || rc=$?
	cat /tmp/doctor
	expect_eq $rc 1 "snapmgr doctor exits 1: $1"
	grep -q "^problem .*$2" /tmp/doctor || fail "doctor does not say '$2'"
}

mkdir -p $STATE
case $phase in
install)
	log "the system as installed, without snapmgr"
	expect_clean_systemd_boot
	log "dpkg -i the packages (no network: dependencies from the system)"
	dpkg -i "$SNAPMGR_DEBS"/snapmgr-dkms_*.deb "$SNAPMGR_DEBS"/snapmgr_*.deb > /tmp/dpkg.log 2>&1 ||
		{ cat /tmp/dpkg.log; fail "dpkg -i"; }
	dkms status | tee /tmp/dkms
	grep -q "dm-cowfile/.*, $(uname -r), .*installed" /tmp/dkms || fail "DKMS did not install the module for $(uname -r)"
	modinfo -F filename dm-cowfile | grep -q "^/lib/modules/$(uname -r)/updates/dkms/" ||
		fail "modprobe finds $(modinfo -F filename dm-cowfile), not DKMS's module"
	expect_doctor_ok "no volume yet"

	log "an LV in fstab, tracked by live insertion"
	pvcreate -q /dev/vdb
	vgcreate -q vg0 /dev/vdb
	lvcreate -q -y -L 96M -n data vg0
	mkfs.ext4 -q -b 4096 /dev/vg0/data # small filesystems get 1 KiB blocks, which stores refuse
	echo "/dev/vg0/data /data ext4 defaults 0 2" >> /etc/fstab
	mkdir /data
	systemctl daemon-reload
	mount /data
	dd if=/dev/urandom of=/data/before bs=1M count=8 conv=fsync status=none
	snapmgr track /dev/vg0/data
	expect_eq "$(status_of $LV state)" tracking "$LV tracked live"
	expect_eq "$(systemctl is-active snapmgr-monitor@$LV.service)" active "track started snapmgr-monitor@$LV"

	log "track /: the mounted root is attached from the next boot"
	snapmgr track /
	expect_eq "$(status_of $ROOT state)" next_boot "snapmgr status $ROOT"
	expect_doctor_problem "the initramfs cannot attach root yet" \
		"initramfs /boot/initrd.img-$(uname -r): no snapmgr"
	log "dracut -f"
	dracut -f > /tmp/dracut.log 2>&1 || { cat /tmp/dracut.log; fail "dracut -f"; }
	lsinitrd > /tmp/lsinitrd
	for f in usr/sbin/snapmgr etc/snapmgr/volumes/$ROOT.conf etc/snapmgr/volumes/$LV.conf dm-cowfile.ko \
		pre-pivot/40-snapmgr-attach-pending.sh pre-pivot/50-snapmgr-needshutdown.sh \
		shutdown/20-snapmgr-shutdown.sh \
		"[0-9][0-9]-snapmgr.rules" 69-snapmgr-initqueue.rules; do
		grep -q "$f" /tmp/lsinitrd || fail "the initramfs lacks $f"
	done
	echo "ok: the initramfs holds snapmgr, the module, the rules and both configurations"
	expect_doctor_ok "ready to reboot"
	cp "/boot/initrd.img-$(uname -r)" "$VM_RESULTS/initrd.img"
	;;

tracked)
	log "the first boot with snapmgr"
	expect_clean_systemd_boot
	expect_root_on_wrapper
	expect_lv_attached_before_its_mount
	expect_monitors_active
	expect_doctor_ok "tracking"
	# What snapmgr costs a boot: the initqueue's attach of root (module
	# load to "tracking") and the LV's attach unit, for the note.
	journalctl -b -o short-monotonic --no-pager |
		grep -E 'dm_cowfile: loading|tracking changes|snapmgr-attach-.*(Started|Deactivated)|Mounted data.mount' |
		tee "$VM_RESULTS/snapmgr-boot.log"

	log "a snapshot of both and a backup of the LV"
	dd if=/dev/urandom of=/data/after-track bs=1M count=4 conv=fsync status=none
	snapmgr --json snapshot $ROOT $LV > /tmp/snap.json
	json_get '[0]["position"]' < /tmp/snap.json > $STATE/root-position
	snapmgr --json backup $LV /var/tmp/data.img > /tmp/backup.json
	expect_eq "$(json_get '["backup_type"]' < /tmp/backup.json)" full "the first backup of $LV"
	expect_eq "$(sha256sum < /var/tmp/data.img)" "$(sha256sum < /dev/mapper/$LV-snap)" \
		"the backup of $LV equals its snapshot image"
	snapmgr release $ROOT
	snapmgr release $LV
	# What the upgrade boot must find among the changes since the snapshot.
	dd if=/dev/urandom of=$STATE/written-after-snapshot bs=1M count=2 conv=fsync status=none
	filefrag -e $STATE/written-after-snapshot > $STATE/extents

	log "snapmgrd under its hardened unit: vdc backed up through the Coriolis client"
	dd if=/dev/urandom of=/dev/vdc bs=1M count=64 oflag=direct status=none
	mkfs.ext4 -q -b 4096 /dev/vdd
	mkdir -p /srv/stores
	mount /dev/vdd /srv/stores
	snapmgrd make-certs --dir /etc/snapmgr/tls --host localhost --ip 127.0.0.1 > /dev/null
	cat > /etc/snapmgr/agent.conf <<'CONF'
snapstore_destinations = ["/srv/stores"]
state_dir = "/var/lib/snapmgr/agent"
store_size = "8M"
snap_store_file_size = "16M"

[api]
bind = "127.0.0.1"
port = 8443

[api.tls]
certificate = "/etc/snapmgr/tls/server.crt"
key = "/etc/snapmgr/tls/server.key"
ca_certificate = "/etc/snapmgr/tls/ca.crt"
CONF
	systemctl start snapmgrd
	for _ in $(seq 100); do
		grep -q "listening on" <(journalctl -u snapmgrd --no-pager) && break
		sleep 0.2
	done
	grep -q "listening on" <(journalctl -u snapmgrd --no-pager) ||
		{ journalctl -u snapmgrd --no-pager; fail "snapmgrd did not start"; }
	client() {
		python3 "$(dirname "$0")/../coriolis_client.py" --tls /etc/snapmgr/tls \
			--endpoint https://localhost:8443 "$@"
	}
	client map /srv/stores vdc
	client snapshot /tmp/agent-snap.json vdc
	client backup /tmp/agent-snap.json vdc /var/tmp/vdc.img --expect full
	expect_eq "$(sha256sum < /var/tmp/vdc.img)" "$(sha256sum < /dev/mapper/vdc-snap)" \
		"the agent's backup of vdc equals its snapshot image"
	client delete /tmp/agent-snap.json
	expect_eq "$(systemctl is-active snapmgrd)" active "snapmgrd still runs"
	if journalctl -u snapmgrd --no-pager | grep -i -E 'not permitted|denied'; then
		fail "the hardened unit refused snapmgrd something"
	fi
	systemd-analyze security snapmgrd.service | tail -n 1 | tee "$VM_RESULTS/snapmgrd-security"
	systemctl stop snapmgrd

	# The kernel upgrade: the next boot is its kernel. Without it (the
	# default suite) the next boot is not made: the host checks the clean
	# reboot's store and the test ends.
	if [ "$upgrade" = yes ]; then
		log "a kernel without the module: doctor says so, dracut refuses its initramfs"
		next=$(ls /root/kernel-upgrade | sed -n 's/^linux-image-\(.*\)_.*_amd64\.deb$/\1/p')
		[ -n "$next" ] || fail "no kernel package in /root/kernel-upgrade"
		log "dpkg -i the $next kernel and headers"
		# Each line stamped with the seconds since the start, kept for the
		# host (where the upgrade's time goes: unpacking, depmod, DKMS, dracut).
		dpkg -i /root/kernel-upgrade/*.deb 2>&1 |
			(start=${EPOCHREALTIME%.*}; while IFS= read -r line; do
				echo "$((${EPOCHREALTIME%.*} - start)) $line"; done) > "$VM_RESULTS/dpkg-kernel.log" ||
			{ cat "$VM_RESULTS/dpkg-kernel.log"; fail "dpkg -i the $next kernel"; }
		grep -E 'Unpacking|Setting up linux|dkms: autoinstall|dracut: Generating' "$VM_RESULTS/dpkg-kernel.log"
		tail -n 1 "$VM_RESULTS/dpkg-kernel.log"
		dkms status | tee /tmp/dkms
		grep -q "dm-cowfile/.*, $next, .*installed" /tmp/dkms || fail "DKMS did not build the module for $next"
		lsinitrd "/boot/initrd.img-$next" > /tmp/lsinitrd-next
		for f in dm-cowfile.ko etc/snapmgr/volumes/$ROOT.conf usr/sbin/snapmgr; do
			grep -q "$f" /tmp/lsinitrd-next || fail "the $next initramfs lacks $f"
		done
		echo "ok: DKMS built the module for $next, its initramfs holds it"
		expect_doctor_ok "both kernels have the module"

		# Its file removed, as a failed DKMS build leaves it (depmod's index
		# still names it: modprobe, modinfo and dracut find no file either way,
		# and depmod of 6.12 takes a minute under emulation).
		log "the $next module removed"
		ko=$(modinfo -k "$next" -F filename dm-cowfile)
		mv "$ko" /root/dm-cowfile.ko.away
		expect_doctor_problem "the next kernel lacks the module" "kernel $next (default boot): no dm-cowfile module"
		# Only the snapmgr module and what it needs (dm, rootfs-block): the
		# refusal is its installkernel's, and a whole hostonly run takes two
		# minutes under emulation.
		log "dracut for $next"
		rc=0
		dracut -f --kver "$next" -m snapmgr > /tmp/dracut-refused.log 2>&1 || rc=$?
		cat /tmp/dracut-refused.log | tail -n 3
		[ $rc -ne 0 ] || fail "dracut built an initramfs for $next without dm-cowfile"
		grep -q "no dm-cowfile module for kernel $next" /tmp/dracut-refused.log || fail "dracut's refusal does not say why"
		# Listed into a file: grep -q ending the pipe early fails lsinitrd
		# (pipefail), as it once did here.
		lsinitrd "/boot/initrd.img-$next" > /tmp/lsinitrd-kept
		grep -q dm-cowfile.ko /tmp/lsinitrd-kept || fail "the refused run replaced the initramfs"
		echo "ok: dracut refused an initramfs without the module, the previous one is kept"
		mv /root/dm-cowfile.ko.away "$ko"

		cp "/boot/vmlinuz-$next" "/boot/initrd.img-$next" "$VM_RESULTS/"
		echo "$next" > $STATE/next-kernel
	fi
	snapmgr --json status $ROOT | json_get '["generation"]' > $STATE/generation
	cp /etc/snapmgr/volumes/$ROOT.conf "$VM_RESULTS/root.conf"
	log "systemctl reboot"
	touch "$VM_RESULTS/reboot"
	;;

upgraded)
	log "the upgraded kernel, after a clean reboot"
	expect_eq "$(uname -r)" "$(cat $STATE/next-kernel)" "the running kernel"
	expect_clean_systemd_boot
	expect_root_on_wrapper
	expect_lv_attached_before_its_mount
	expect_monitors_active
	expect_eq "$(status_of $ROOT generation)" "$(cat $STATE/generation)" "the generation across reboot and upgrade"
	expect_eq "$(status_of vdc state)" tracking "the agent's disk, attached at boot (its store's filesystem unmounted)"
	if dmesg | grep -E 'cowfile.*(new generation|not durable at the crash|lost tracking)'; then
		fail "the kernel log shows a crash path or a lost generation"
	fi
	snapmgr --json changes $ROOT --since "$(cat $STATE/root-position)" > /tmp/changes.json
	expect_eq "$(json_get '["backup_type"]' < /tmp/changes.json)" incremental "changes since before the upgrade"
	python3 - /tmp/changes.json $STATE/extents <<'EOF' || fail "a block written after the snapshot is not among the changes"
import json, re, sys
ranges = [(r["start"], r["start"] + r["length"]) for r in json.load(open(sys.argv[1]))["ranges"]]
blocks = 0
for line in open(sys.argv[2]):
    m = re.match(r"\s*\d+:\s*\d+\.\.\s*\d+:\s*(\d+)\.\.\s*(\d+):", line)
    if not m:
        continue
    for b in range(int(m.group(1)), int(m.group(2)) + 1):
        blocks += 1
        if not any(s <= b * 4096 < e for s, e in ranges):
            sys.exit(f"block {b} not covered")
print(f"ok: the {blocks} blocks written after the snapshot are among the changes")
EOF
	expect_doctor_ok "after the upgrade"
	;;
esac
echo "ok: phase $phase"
