#!/bin/bash
# Scenario of the boot-again self-test: it must never run.
echo "this scenario must not run"
exit 1
