# Guest side of harness_fails_on_kmemleak_report: the kernel's kmemleak
# sample allocates and drops objects on load and on unload; the scenario
# itself succeeds.
PATH=/usr/sbin:/sbin:$PATH
insmod "$LEAKY_KO"
rmmod kmemleak_test
