#!/bin/bash
# tests/kernel/ioctl_lab_run.sh — runs ioctl_real_module_test against the REAL veeamblksnap
# 6.3 module inside the lab VM (../shared/blksnap-lab, see its README; run its setup.sh once).
# Builds the test without sanitizers in $BUILD, the module in $LAB, boots the VM, prints the
# test's output and exits with its status.
# Env: LAB (default /tmp/blksnap-lab-ioctl), BUILD (default build/ioctl-lab), BLKSNAP_LAB.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export LAB=${LAB:-/tmp/blksnap-lab-ioctl}
BUILD=${BUILD:-$SRC/build/ioctl-lab}
BLKSNAP_LAB=${BLKSNAP_LAB:-$(cd "$SRC/../shared/blksnap-lab" && pwd)}
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" --target blkvault_kernel -j2 >/dev/null
# /fast: only this test, not the blkvault binary every test target depends on.
cmake --build "$BUILD" --target ioctl_real_module_test/fast -j2 >/dev/null
[ -f "$LAB/build/veeamblksnap.ko" ] || "$BLKSNAP_LAB/build-module.sh"
"$BLKSNAP_LAB/make-initramfs.sh" -r \
  'BLKVAULT_LAB_DEVICE=/dev/vda BLKVAULT_LAB_STORAGE=/dev/vdb BLKVAULT_LAB_SCRATCH=/scratch ./ioctl_real_module_test --gtest_color=no' \
  "$BUILD/tests/ioctl_real_module_test" >/dev/null
rc=0
"$BLKSNAP_LAB/run-vm.sh" || rc=$?
sed -n '/=== LAB: payload start/,/=== LAB: payload rc/p' "$LAB/run.log"
exit $rc
