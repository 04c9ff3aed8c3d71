# e2e.sh — end-to-end cases of the lab VM (sourced by run-cases.sh; busybox sh).
# blkvault, the real executable, backs up two loop devices with ext4 on them
# through the real veeamblksnap module, into a repository on the lab's scratch
# disk (/scratch, ext4, so the diff storage files there can be FIEMAP-mapped).
#
# The cases share state in $E and run in order; e2e_init_full must run first
# (tests/kernel-lab/run adds it when a later case is asked for alone). Every
# backup's device contents are copied (O_DIRECT reads of the quiesced, unmounted
# device) as "<generation> <device> <copy>" lines in $E/generations, which
# e2e_restore_all restores and compares byte for byte.
#
# Each case runs in its own `sh -e`: its first failing command fails it; `die`
# says why.

E=/scratch/e2e
STATE=/scratch/state
export BLKVAULT_REPO=/scratch/repo
export BLKVAULT_PASSWORD=lab-passphrase
export BLKVAULT_CACHE_DIR=/scratch/cache
MIB=1048576
DEV1_MB=48
DEV2_MB=24
MNT=/tmp/mnt
# Busybox's applets win over PATH in its sh: e2fsprogs' mke2fs is called by its path.

die() { echo "FAILED: $*"; exit 1; }
bv() { echo "+ blkvault $*" >&2; blkvault --state-dir "$STATE" "$@"; }
# The module side only (no repository, so no passphrase work): status --json.
module_status() { env -u BLKVAULT_REPO blkvault --state-dir "$STATE" --json status; }
devs() { cat "$E/devices"; }
dev1() { set -- $(devs); echo "$1"; }
dev2() { set -- $(devs); echo "$2"; }
jq_check() { # FILE FILTER: the filter must be true
  jq -e "$2" "$1" > /dev/null || { echo "JSON in $1:"; cat "$1"; die "not true: $2"; }
}
snapshot_count() { module_status | jq '.module.snapshots | length'; }

# A new generation: its devices' contents, copied while they are quiesced.
record_generation() { # GEN [COPY-TAG]
  for d in $(devs); do
    if [ "${2:-}" = nocopy ]; then echo "$1 $d -" >> "$E/generations"; continue; fi
    c="$E/gen$1-$(basename "$d").img"
    dd if="$d" of="$c" bs=1M iflag=direct 2> /dev/null
    echo "$1 $d $c" >> "$E/generations"
  done
}

copy_devices() { # TAG: copies of both devices now, before a backup
  for d in $(devs); do dd if="$d" of="$E/$1-$(basename "$d").img" bs=1M iflag=direct 2> /dev/null; done
}

# Files written through a mount (round N changes the filesystem differently).
change_files() { # DEVICE ROUND
  mkdir -p "$MNT"
  mount -t ext4 "$1" "$MNT"
  case "$2" in
    1) dd if=/dev/urandom of="$MNT/random1" bs=1M count=6 2> /dev/null
       mkdir "$MNT/small"
       i=0; while [ $i -lt 20 ]; do echo "file $i of $1" > "$MNT/small/f$i"; i=$((i + 1)); done
       echo "round 1" > "$MNT/notes" ;;
    2) dd if=/dev/urandom of="$MNT/random1" bs=64K count=3 seek=40 conv=notrunc 2> /dev/null
       dd if=/dev/urandom of="$MNT/random2" bs=1M count=3 2> /dev/null
       rm "$MNT/small/f3"
       echo "round 2" >> "$MNT/notes" ;;
    *) dd if=/dev/urandom of="$MNT/random$2" bs=256K count=2 2> /dev/null
       echo "round $2" >> "$MNT/notes" ;;
  esac
  umount "$MNT"
}

# Chunks (1 MiB) whose contents differ between two copies.
differing_chunks() { # A B
  n=0; i=0; count=$(( $(stat -c %s "$1") / MIB ))
  while [ $i -lt $count ]; do
    x=$(dd if="$1" bs=1M skip=$i count=1 2> /dev/null | md5sum)
    y=$(dd if="$2" bs=1M skip=$i count=1 2> /dev/null | md5sum)
    [ "$x" = "$y" ] || n=$((n + 1))
    i=$((i + 1))
  done
  echo $n
}

# Rewrites bytes with themselves: the module's filter sees a write (CBT marks
# the blocks), the contents (and the filesystem) stay as they were.
rewrite_same() { # DEVICE OFFSET LENGTH (multiples of 4096)
  dd if="$1" of=/tmp/rewrite bs=4096 skip=$(($2 / 4096)) count=$(($3 / 4096)) iflag=direct 2> /dev/null
  dd if=/tmp/rewrite of="$1" bs=4096 seek=$(($2 / 4096)) oflag=direct conv=notrunc,fsync 2> /dev/null
}

wait_for_snapshot() { # PID: until the backup PID holds a snapshot (it must not end first)
  i=0
  while [ "$(snapshot_count)" = 0 ]; do
    kill -0 "$1" 2> /dev/null || { wait "$1" || true; cat /tmp/backup.out 2> /dev/null; die "the backup ended before it held a snapshot"; }
    i=$((i + 1)); [ $i -lt 300 ] || die "no snapshot appeared"
    sleep 0.1
  done
}

# ---- cases ----

e2e_init_full() {
  rm -rf "$E" "$STATE" "$BLKVAULT_REPO" "$BLKVAULT_CACHE_DIR" /tmp/e2e
  mkdir -p "$E" /tmp/e2e
  truncate -s ${DEV1_MB}M /tmp/e2e/dev1.img
  truncate -s ${DEV2_MB}M /tmp/e2e/dev2.img
  l1=$(losetup -f); losetup "$l1" /tmp/e2e/dev1.img
  l2=$(losetup -f); losetup "$l2" /tmp/e2e/dev2.img
  echo "$l1 $l2" > "$E/devices"
  for d in $l1 $l2; do
    /opt/lab/mke2fs -q -F -t ext4 -E lazy_itable_init=0,lazy_journal_init=0 "$d"
    change_files "$d" 1
  done
  bv init --kdf-ops 1 --kdf-mem 64K
  bv -v --json backup "$l1" "$l2" > "$E/backup1.json" 2> "$E/backup1.err" || { cat "$E/backup1.err"; die "the first backup failed"; }
  cat "$E/backup1.json" "$E/backup1.err"
  jq_check "$E/backup1.json" '.state == "complete" and (.devices | length) == 2'
  jq_check "$E/backup1.json" "[.devices[] | .mode == \"full\" and .reason == \"no earlier backup of this device\"] | all"
  jq_check "$E/backup1.json" ".devices[0].read_bytes == $DEV1_MB * $MIB and .devices[1].read_bytes == $DEV2_MB * $MIB"
  # The real images take O_DIRECT: every byte of both (whole MiB) past the page cache.
  for pair in "$l1 $((DEV1_MB * MIB))" "$l2 $((DEV2_MB * MIB))"; do
    set -- $pair
    grep -q "^$1: $2 of the $2 bytes read from /dev/.* bypassed the page cache (O_DIRECT)\$" "$E/backup1.err" ||
      die "$1 was not read entirely with O_DIRECT"
  done
  record_generation "$(jq .generation "$E/backup1.json")"
  [ "$(snapshot_count)" = 0 ] || die "a snapshot is still held after the backup"
}

# Files changed through a mount: an incremental backup reads every chunk whose
# contents changed and not much more (ext4 also rewrites metadata blocks).
e2e_incremental_mounted() {
  copy_devices before2
  for d in $(devs); do change_files "$d" 2; done
  bv --json backup $(devs) > "$E/backup2.json"
  cat "$E/backup2.json"
  jq_check "$E/backup2.json" '[.devices[] | .mode == "incremental" and .reason == null] | all'
  g=$(jq .generation "$E/backup2.json")
  record_generation "$g"
  n=0
  for d in $(devs); do
    b=$(basename "$d")
    changed=$(differing_chunks "$E/before2-$b.img" "$E/gen$g-$b.img")
    echo "$d: $changed chunk(s) changed contents"
    [ "$changed" -gt 0 ] || die "$d: the round changed nothing?"
    jq_check "$E/backup2.json" ".devices[$n] | .read_bytes % $MIB == 0 and .read_bytes >= $changed * $MIB and .read_bytes >= .changed_bytes and .read_bytes <= .changed_bytes + 16 * $MIB and .read_bytes < .size_bytes / 2"
    n=$((n + 1))
  done
}

# Writes at known offsets of the raw devices: read_bytes is exactly the chunks
# they touch, changed_bytes exactly the CBT blocks (64 KiB) they touch.
e2e_incremental_exact() {
  d1=$(dev1)
  rewrite_same "$d1" $((5 * MIB + 65536)) 4096                # chunk 5, one block
  rewrite_same "$d1" $((20 * MIB - 4096)) 8192                # chunks 19 and 20, two blocks
  rewrite_same "$d1" $((33 * MIB)) $((3 * 65536))             # chunk 33, three blocks
  bv --json backup $(devs) > "$E/backup3.json"
  cat "$E/backup3.json"
  jq_check "$E/backup3.json" '[.devices[] | .mode == "incremental"] | all'
  jq_check "$E/backup3.json" ".devices[0].read_bytes == 4 * $MIB and .devices[0].changed_bytes == 6 * 65536"
  jq_check "$E/backup3.json" '.devices[1].read_bytes == 0 and .devices[1].changed_bytes == 0'
  record_generation "$(jq .generation "$E/backup3.json")"
}

# A backup of a mounted filesystem: the module freezes it at take, so the
# restore is fsck-clean and has the files as they were.
e2e_mounted_backup() {
  d1=$(dev1)
  mkdir -p "$MNT"
  mount -t ext4 "$d1" "$MNT"
  dd if=/dev/urandom of="$MNT/mounted" bs=1M count=2 2> /dev/null
  (cd "$MNT" && find . -type f | sort | xargs md5sum) > "$E/mounted.md5"
  rc=0; bv --json backup $(devs) > "$E/backup4.json" || rc=$?
  umount "$MNT"
  [ $rc = 0 ] || die "backup of a mounted filesystem: exit status $rc"
  g=$(jq .generation "$E/backup4.json")
  record_generation "$g" nocopy
  bv restore --generation "$g" --device "$d1" --to "$E/mounted-restore.img"
  e2fsck -fn "$E/mounted-restore.img"
  mkdir -p /tmp/check
  mount -t ext4 -o ro,noload "$E/mounted-restore.img" /tmp/check
  rc=0; (cd /tmp/check && md5sum -c "$E/mounted.md5" > /dev/null) || rc=$?
  umount /tmp/check
  rm -f "$E/mounted-restore.img"
  [ $rc = 0 ] || die "the restored files differ from the ones in the mounted filesystem"
}

# kill -9 of a running backup leaves its snapshot; cleanup releases it; the next
# backup is a correct incremental.
e2e_kill_cleanup() {
  # Not through bv(): $! must be blkvault's own pid, not a subshell's.
  echo "+ blkvault backup --full $(devs) &" >&2
  blkvault --state-dir "$STATE" backup --full $(devs) > /tmp/backup.out 2>&1 &
  pid=$!
  wait_for_snapshot $pid
  kill -9 $pid
  wait $pid || true
  kill -0 $pid 2> /dev/null && die "the backup survived kill -9"
  module_status > /tmp/status.json
  jq_check /tmp/status.json '.module.snapshots | length == 1 and .[0].owner == "blkvault"'
  bv cleanup > /tmp/cleanup.out
  cat /tmp/cleanup.out
  grep -qx 'released 1 snapshot(s) left behind by interrupted runs' /tmp/cleanup.out || die "cleanup said something else"
  [ "$(snapshot_count)" = 0 ] || die "a snapshot is still held after cleanup"
  for d in $(devs); do change_files "$d" 5; done
  bv --json backup $(devs) > "$E/backup5.json"
  cat "$E/backup5.json"
  jq_check "$E/backup5.json" '[.devices[] | .mode == "incremental"] | all'
  record_generation "$(jq .generation "$E/backup5.json")"
  bv --json list > /tmp/list.json
  jq_check /tmp/list.json '[.generations[] | select(.state == "failed")] | length >= 1'
}

# Heavy writes while the backup holds a snapshot with 1 MiB of diff storage: the
# snapshot overflows, the backup fails with one line and exit status 1, nothing
# is left held, and the next backup (its baseline unchanged) is correct.
e2e_overflow() {
  d1=$(dev1)
  echo "+ blkvault backup --full --diff-storage-size 1M --diff-storage-limit 1M $(devs) &" >&2
  blkvault --state-dir "$STATE" backup --full --diff-storage-size 1M --diff-storage-limit 1M $(devs) \
    > /tmp/backup.out 2> /tmp/overflow.err &
  pid=$!
  wait_for_snapshot $pid
  i=0
  while kill -0 $pid 2> /dev/null && [ $i -lt 30 ]; do
    dd if="$d1" of="$d1" bs=1M skip=24 seek=24 count=24 iflag=direct oflag=direct conv=notrunc 2> /dev/null
    i=$((i + 1))
  done
  rc=0; wait $pid || rc=$?
  cat /tmp/backup.out /tmp/overflow.err
  [ $rc = 1 ] || die "exit status $rc, expected 1"
  [ "$(wc -l < /tmp/overflow.err)" = 1 ] || die "expected exactly one line on stderr"
  grep -qx "blkvault: backup of $d1: the snapshot of $d1 is corrupted (difference storage overflow or I/O error); its image can no longer be read: No space left on device" /tmp/overflow.err ||
    die "unexpected message"
  [ "$(snapshot_count)" = 0 ] || die "a snapshot is still held after the failed backup"
  bv --json backup $(devs) > "$E/backup6.json"
  cat "$E/backup6.json"
  jq_check "$E/backup6.json" '([.devices[] | .mode == "incremental"] | all) and .devices[0].read_bytes >= 24 * 1048576'
  record_generation "$(jq .generation "$E/backup6.json")"
}

# Difference storage on a whole raw disk (/dev/vdb) instead of files: a full
# backup while the device is rewritten in place (copy-on-write into /dev/vdb)
# completes, creates no storage file, and its generation is the take-time data
# (the rewrites write the same bytes, so the copy recorded afterwards is it).
e2e_raw_diff_storage() {
  d1=$(dev1)
  rm -rf "$STATE/diff"
  dd if=/dev/zero of=/dev/vdb bs=1M count=64 oflag=direct 2> /dev/null
  echo "+ blkvault --json backup --full --diff-storage /dev/vdb $(devs) &" >&2
  blkvault --state-dir "$STATE" --json backup --full --diff-storage /dev/vdb $(devs) > "$E/backup7.json" 2> /tmp/raw.err &
  pid=$!
  wait_for_snapshot $pid
  i=0
  while kill -0 $pid 2> /dev/null && [ $i -lt 30 ]; do
    dd if="$d1" of="$d1" bs=1M skip=24 seek=24 count=24 iflag=direct oflag=direct conv=notrunc 2> /dev/null
    i=$((i + 1))
  done
  rc=0; wait $pid || rc=$?
  cat "$E/backup7.json" /tmp/raw.err
  [ $rc = 0 ] || die "exit status $rc"
  [ "$i" -gt 0 ] || die "the backup ended before any write could be copied on write"
  jq_check "$E/backup7.json" '.state == "complete" and ([.devices[] | .mode == "full"] | all)'
  [ -z "$(ls -A "$STATE/diff" 2> /dev/null)" ] || die "storage files were created: $(ls "$STATE/diff")"
  [ "$(head -c 1048576 /dev/vdb | tr -d '\000' | wc -c)" -gt 0 ] || die "nothing was copied to /dev/vdb"
  [ "$(snapshot_count)" = 0 ] || die "a snapshot is still held after the backup"
  record_generation "$(jq .generation "$E/backup7.json")"
}

# Every recorded generation restores byte-identical to its copy, and fsck-clean.
e2e_restore_all() {
  n=0
  while read -r g d c; do
    rm -f /scratch/restore.img
    bv restore --generation "$g" --device "$d" --to /scratch/restore.img
    if [ "$c" != - ]; then cmp /scratch/restore.img "$c" || die "generation $g of $d differs from its copy"; fi
    e2fsck -fn /scratch/restore.img > /tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; die "e2fsck of generation $g of $d"; }
    n=$((n + 1))
  done < "$E/generations"
  rm -f /scratch/restore.img
  echo "restored and checked $n device image(s)"
  [ $n -ge 2 ] || die "nothing to restore"
}

e2e_verify() {
  bv verify --data
  bv --json verify --data > /tmp/verify.json
  jq_check /tmp/verify.json '.clean == true and .data == true'
  bv list
}

# status names both tracked devices with their CBT state, no snapshot held,
# and the last good backup of each device.
e2e_status() {
  bv status
  bv --json status > /tmp/status.json
  for d in $(devs); do
    jq_check /tmp/status.json ".module.tracked_devices | map(select(.device == \"$d\" and .snap_number > 0 and .block_size_bytes == 65536)) | length == 1"
    jq_check /tmp/status.json ".repository.last_good | map(select(.device == \"$d\")) | length == 1"
  done
  jq_check /tmp/status.json '.module.available == true and (.module.snapshots | length) == 0'
}
