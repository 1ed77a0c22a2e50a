# xfs on the cowfile device, store file on that filesystem.
. "$(dirname "$0")/../lib.sh"
FSTYPE=xfs
. "$(dirname "$0")/../cases/snapshot_image.sh"
