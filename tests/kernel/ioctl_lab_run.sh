#!/bin/bash
# tests/kernel/ioctl_lab_run.sh — runs ioctl_real_module_test against the REAL veeamblksnap 6.3
# module inside the lab VM (../shared/blksnap-lab, see its README; run its setup.sh once).
# Builds the test without sanitizers in $BUILD, the module in $LAB, boots the VM, prints the
# test's output and exits with its status.
# Env: LAB (default /tmp/blksnap-lab-ioctl), BUILD (default build/ioctl-lab), BLKSNAP_LAB,
#      ACCEL (kvm|tcg; default: see below), NICE (default 10: the VM shares the machine's cores).
#
# Acceleration: the lab's run-vm.sh picks KVM whenever /dev/kvm is writable. Inside a VM without
# nested virtualisation (a Firecracker guest, for one) /dev/kvm can exist and open fine while the
# CPU has neither vmx nor svm: QEMU then prints "host doesn't support requested feature:
# CPUID.01H:ECX.pni" and the guest hangs in SeaBIOS until the timeout. So KVM is used only when
# the CPU flags say it can work; otherwise TCG (software emulation), which boots and runs the test
# in about 30 s here. docs/SIMULATION.md ("The real-module lab") has the details.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export LAB=${LAB:-/tmp/blksnap-lab-ioctl}
BUILD=${BUILD:-$SRC/build/ioctl-lab}
BLKSNAP_LAB=${BLKSNAP_LAB:-$(cd "$SRC/../shared/blksnap-lab" && pwd)}
NICE=${NICE:-10}
if [ -z "${ACCEL:-}" ]; then
  if [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then ACCEL=kvm; else ACCEL=tcg; fi
fi
export ACCEL
echo "ioctl_lab_run: accel=$ACCEL ($( [ -e /dev/kvm ] && echo '/dev/kvm present' || echo 'no /dev/kvm'), cpu virt flags: $(grep -owE 'vmx|svm' /proc/cpuinfo | sort -u | tr '\n' ' ' || true))" >&2
command -v qemu-system-x86_64 >/dev/null || { echo "ioctl_lab_run: qemu-system-x86_64 missing; run $BLKSNAP_LAB/setup.sh" >&2; exit 77; }
nice -n "$NICE" cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
nice -n "$NICE" cmake --build "$BUILD" --target blkvault_kernel -j2 >/dev/null
# /fast: only this test, not the blkvault binary every test target depends on.
nice -n "$NICE" cmake --build "$BUILD" --target ioctl_real_module_test/fast -j2 >/dev/null
[ -f "$LAB/build/veeamblksnap.ko" ] || nice -n "$NICE" "$BLKSNAP_LAB/build-module.sh"
"$BLKSNAP_LAB/make-initramfs.sh" -r \
  'BLKVAULT_LAB_DEVICE=/dev/vda BLKVAULT_LAB_STORAGE=/dev/vdb BLKVAULT_LAB_SCRATCH=/scratch ./ioctl_real_module_test --gtest_color=no' \
  "$BUILD/tests/ioctl_real_module_test" >/dev/null
rc=0
start=$(date +%s)
nice -n "$NICE" "$BLKSNAP_LAB/run-vm.sh" || rc=$?
echo "ioctl_lab_run: VM finished in $(( $(date +%s) - start )) s with status $rc (console log: $LAB/run.log)" >&2
sed -n '/=== LAB: payload start/,/=== LAB: payload rc/p' "$LAB/run.log"
exit $rc
