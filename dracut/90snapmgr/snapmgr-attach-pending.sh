#!/bin/sh
# Before switching to the real root: attach the volumes whose attach job is
# still queued. dracut's main loop stops running queued jobs as soon as
# root is there (it checks after each job), so a tracked volume other than
# root (a /data or /var partition of the same disk) whose job came after
# root's would be left claimed and unattached: for the real root's udev to
# attach, late, or never where the real root runs no udev. udev settles
# first, so that a job for a device still being probed is queued.
udevadm settle --timeout=30 > /dev/null 2>&1
for job in "$hookdir"/initqueue/settled/snapmgr-attach-*.sh; do
    [ -e "$job" ] || continue
    # shellcheck disable=SC1090 disable=SC2097 disable=SC2098
    job=$job . "$job"
done
