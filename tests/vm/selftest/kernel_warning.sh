# Self-test scenario: succeeds, but leaves a warning in the kernel log.
# The harness must fail it anyway.
echo "WARNING: vm-run self-test: this line must fail the scenario" > /dev/kmsg
echo "scenario itself exits 0"
exit 0
