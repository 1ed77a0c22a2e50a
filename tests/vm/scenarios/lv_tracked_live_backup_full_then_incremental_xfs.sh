# xfs on a mounted LVM volume: live insertion under fio load, full and
# incremental backups equal to the snapshot, untrack restores the LV.
. "$(dirname "$0")/../lib.sh"
FSTYPE=xfs
. "$(dirname "$0")/../cases/lv_backup_cycle.sh"
