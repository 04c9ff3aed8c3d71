#!/bin/sh
# run-cases.sh CASE... — the lab VM's payload (tests/kernel-lab/run packs it as /opt/lab).
# Runs each case in order and prints, for the host to parse:
#   === CASE <name> START
#   ... the case's output ...
#   === CASE <name> PASS|FAIL <seconds>s
# Cases: the gtest binaries below, and the e2e_* functions of e2e.sh (named with dashes).
# Busybox sh: no bash-isms.
cd /opt/lab || exit 1
export PATH=/opt/lab:$PATH
export MKE2FS_CONFIG=/opt/lab/mke2fs.conf

now() { cut -d' ' -f1 /proc/uptime; }

# A gtest binary that must really run its tests (a skip is a failure here).
gtest_case() {
  out=/tmp/gtest.out
  "$@" --gtest_color=no > "$out" 2>&1; rc=$?
  cat "$out"
  [ $rc -eq 0 ] || return $rc
  if grep -q '\[  SKIPPED \]' "$out"; then echo "the test skipped inside the lab VM"; return 1; fi
  grep -q '\[  PASSED  \]' "$out" || { echo "no test passed"; return 1; }
}

run_case() {
  case "$1" in
    ioctl-real-module)
      BLKVAULT_LAB_DEVICE=/dev/vda BLKVAULT_LAB_STORAGE=/dev/vdb BLKVAULT_LAB_SCRATCH=/scratch \
        gtest_case ./ioctl_real_module_test ;;
    differential)
      BLKVAULT_LAB_SCRATCH=/scratch BLKVAULT_LAB_DIFFERENTIAL=1 BLKVAULT_PRINT_STEPS=1 \
        gtest_case ./sim_ioctl_differential_test --gtest_filter='*RealModule*' ;;
    e2e-*)
      fn=$(echo "$1" | tr - _)
      # Its own shell with -e (not a subshell: -e is ignored inside `if`), so the
      # case's first failing command fails it; at most 5 minutes.
      timeout 300 sh -e -c ". /opt/lab/e2e.sh; $fn" ;;
    *) echo "unknown case $1"; return 2 ;;
  esac
}

failed=0
for c in "$@"; do
  echo "=== CASE $c START"
  t0=$(now)
  if run_case "$c" 2>&1; then r=PASS; else r=FAIL; failed=$((failed + 1)); fi
  t1=$(now)
  echo "=== CASE $c $r $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b - a}')s"
done
exit $failed
