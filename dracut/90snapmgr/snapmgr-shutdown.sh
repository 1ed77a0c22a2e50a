#!/bin/sh
# At shutdown, once root is unmounted: remove the images of held snapshots
# first, so that the dm module's hook (dm-shutdown.sh, which follows) then
# removes each wrapper; unloading a wrapper writes its store's clean flag.
# A held snapshot stays in its store and comes back at the next boot.
for dev in /sys/block/dm-*; do
    [ -e "$dev/dm/uuid" ] || continue
    read -r uuid < "$dev/dm/uuid"
    case "$uuid" in
        SNAPMGR-*-snap)
            read -r name < "$dev/dm/name"
            dmsetup --noudevsync remove "$name" || warn "snapmgr: cannot remove $name"
            ;;
    esac
done
