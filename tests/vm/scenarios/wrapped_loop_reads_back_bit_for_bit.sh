# A cowfile device over a loop device reads back the loop device's content
# bit for bit, and writes through it land on the loop device unchanged.
. "$(dirname "$0")/../lib.sh"

load_modules
loop=$(new_loop 64M)
fill_random "$loop"
want=$(dev_sum "$loop")
size=$(dev_sectors "$loop")
mount_store_fs
new_store /mnt/store/cf.store 8M "$loop"

dmsetup create cf-test --table "0 $size cowfile $loop $STORE_DEV $SB_SECTOR"
on_exit "dmsetup remove cf-test"
expect_eq "$(dev_sectors /dev/mapper/cf-test)" "$size" "wrapper size equals origin size"
expect_eq "$(dev_sum /dev/mapper/cf-test)" "$want" "wrapper reads the origin's bytes"

dd if=/dev/urandom of=/tmp/pattern bs=1M count=3 status=none
dd if=/tmp/pattern of=/dev/mapper/cf-test bs=1M seek=7 oflag=direct status=none
blockdev --flushbufs /dev/mapper/cf-test
expect_eq "$(dd if="$loop" bs=1M skip=7 count=3 iflag=direct status=none | sha256sum | cut -d' ' -f1)" \
	"$(sha256sum < /tmp/pattern | cut -d' ' -f1)" "a write through the wrapper lands on the origin"
