#!/bin/sh
# Before switching to the real root: when this initramfs attached a volume,
# ask for it back at shutdown (dracut-shutdown.service restores it only
# then), so that its shutdown hooks remove the wrapper once root is
# unmounted and the store is marked clean. Without it, systemd-shutdown
# cannot detach a wrapper under the read-only root and every reboot looks
# like a crash to the next attach.
for uuid in /sys/block/dm-*/dm/uuid; do
    [ -r "$uuid" ] || continue
    read -r u < "$uuid"
    case "$u" in
        SNAPMGR-*)
            need_shutdown
            break
            ;;
    esac
done
