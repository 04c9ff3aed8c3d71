#!/usr/bin/env python3
"""bench/bench.py — the benchmark behind bench/run (issues 7, 9, 10 and 12;
docs/BENCHMARKS.md).

Builds one seeded ext4 image, then runs every operation for blkvault, borg,
restic, zstd and a plain read on it, one after the other, dropping the page cache
before each timed step when the machine allows: backups, restores and data
checks on local repositories and (blkvault and restic) on a Ceph RADOS Gateway
started for the run; a delta restore against a full one; browsing a loop mount
of the image served by `blkvault mount` against the original image; the RSS of
a 64 GiB sparse image and bench/scale's metadata figures. Prints a table and
every target as met, missed or not measured; writes it as Markdown and JSON
under bench/results/, and with --update-docs into docs/BENCHMARKS.md. Fails
(exit 1) when a step fails or a restore is not byte-identical; timings never
fail it. Steps the machine cannot run are skipped with the reason.

Run it through bench/run, which installs the peers and builds blkvault; this file
expects BLKVAULT to name the blkvault executable.
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

MIB = 1 << 20
GIB = 1 << 30
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_TIME = 1767225600  # 2026-01-01T00:00:00Z: every timestamp in the image
FS_UUID = "6b1f7a54-2c1e-4d0a-9a53-0b1e5c1d7f00"


class BenchError(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().rstrip("IB").rstrip("B") if text[-1:].isalpha() else text
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def human(n):
    for unit, size in (("TiB", 1 << 40), ("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


# ---------------------------------------------------------------- measuring

class Runner:
    """Runs commands, timing them and reading the peak RSS of the child (wait4)."""

    def __init__(self, work, drop_caches):
        self.work = work
        self.drop = drop_caches
        self.drop_note = None
        self.log_path = os.path.join(work, "commands.log")

    def drop_page_cache(self):
        if not self.drop:
            return
        os.sync()
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        except OSError as e:
            self.drop = False
            self.drop_note = f"the page cache could not be dropped ({e.strerror}): timings are warm-cache"
            log(self.drop_note)

    def run(self, argv, cwd=None, env=None, stdin=None, timed=True, check=True):
        """Returns (seconds, peak_rss_bytes, stdout). Raises BenchError on failure."""
        if timed:
            self.drop_page_cache()
        full_env = dict(os.environ)
        full_env.update(env or {})
        with open(self.log_path, "a") as lg:
            lg.write(f"$ {' '.join(argv)}\n")
        out_path = os.path.join(self.work, "last.stdout")
        err_path = os.path.join(self.work, "last.stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
            # GNU time reports the child's peak RSS; wait4 on a child forked from this
            # (large) Python process would report Python's pages copied at fork.
            rss_path = os.path.join(self.work, "last.rss")
            self.last_start_wall = time.time()
            t0 = time.monotonic()
            p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_path, "--"] + argv, cwd=cwd or self.work,
                               env=full_env, stdin=fin, stdout=out, stderr=err)
            seconds = time.monotonic() - t0
            if stdin:
                fin.close()
        try:
            rss_kib = int(open(rss_path).read().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            rss_kib = 0
        stdout = open(out_path, "rb").read().decode(errors="replace")
        stderr = open(err_path, "rb").read().decode(errors="replace")
        with open(self.log_path, "a") as lg:
            lg.write(f"  exit {p.returncode} in {seconds:.2f}s, peak RSS {rss_kib} KiB\n{stderr[-2000:]}")
        if check and p.returncode != 0:
            raise BenchError(f"`{' '.join(argv)}` failed with exit status {p.returncode}:\n{stderr.strip()[-3000:]}")
        return seconds, rss_kib * 1024, stdout


def then_fsync(argv, path):
    """`argv`, then an fsync of the file it restored (coreutils `sync FILE`):
    borg and restic return with their restored file still in the page cache,
    blkvault's restore fsyncs its target before it returns (a third of a 1 GiB
    restore's time here), so each restore is timed to its data on disk."""
    return ["sh", "-c", 'f=$1; shift; "$@" && sync -- "$f"', "sh", path] + argv


def tree_bytes(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:
                pass
    return total


def data_regions(path):
    """[(offset, end)] of the non-hole regions of a file (SEEK_DATA/SEEK_HOLE)."""
    regions = []
    with open(path, "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            regions.append((start, end))
            pos = end
    return regions


def sparse_identical(a, b):
    """cmp for large sparse files: compares the union of both files' data regions
    (outside it both read as zeros). Returns None or the first differing offset."""
    if os.path.getsize(a) != os.path.getsize(b):
        return -1
    spans = sorted(data_regions(a) + data_regions(b))
    merged = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for s, e in merged:
            pos = s
            while pos < e:
                n = min(8 * MIB, e - pos)
                if os.pread(fa.fileno(), n, pos) != os.pread(fb.fileno(), n, pos):
                    return pos
                pos += n
    return None


def check_identical(image, restored, tool, sparse=False):
    if not os.path.exists(restored):
        raise BenchError(f"RESTORE MISMATCH: {tool} left no restored file at {restored}")
    if sparse:
        where = sparse_identical(image, restored)
        if where is not None:
            raise BenchError(f"RESTORE MISMATCH: {tool}'s restore {restored} differs from {image} (at {where})")
        return
    r = subprocess.run(["cmp", image, restored], capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"RESTORE MISMATCH: {tool}'s restore {restored} differs from {image}: "
                         f"{(r.stdout + r.stderr).strip()}")


# ---------------------------------------------------------------- the image

def usr_files(rng, budget, max_file):
    """A seeded sample of regular files under /usr, walked in sorted order."""
    files = []
    for dirpath, dirs, names in os.walk("/usr"):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(dirpath, n)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if os.path.isfile(p) and not os.path.islink(p) and 0 < st.st_size <= max_file and os.access(p, os.R_OK):
                files.append((p, st.st_size))
    rng.shuffle(files)
    chosen, total = [], 0
    for p, size in files:
        if total >= budget:
            break
        chosen.append((p, size))
        total += size
    chosen.sort()
    return chosen


def metadata_bytes(work, size):
    """What ext4's own metadata (inode tables, bitmaps, journal) uses on an empty
    filesystem of `size`, so the files can bring it to 60%."""
    empty = os.path.join(work, "empty.img")
    make_image(empty, None, size)
    used = fs_used_bytes(empty)
    os.unlink(empty)
    return used


def stage_tree(stage, size, seed, content):
    """Fills `stage` with `content` bytes of files: 75% real files from /usr, 10%
    duplicates of some of them, 15% seeded random (incompressible) files. Returns
    the list of staged files (relative paths)."""
    rng = random.Random(seed)
    random_budget, dup_budget = int(content * 0.15), int(content * 0.10)
    usr_budget = content - random_budget - dup_budget
    staged = []
    for src, _ in usr_files(rng, usr_budget, max_file=min(64 * MIB, max(MIB, size // 16))):
        rel = "usr" + src[len("/usr"):]
        dst = os.path.join(stage, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            shutil.copyfile(src, dst)
        except OSError:
            continue
        staged.append(rel)
    # Duplicates: whole copies of staged files, as users keep them.
    pool = [r for r in staged if os.path.getsize(os.path.join(stage, r)) >= 64 * 1024]
    os.makedirs(os.path.join(stage, "home/copies"), exist_ok=True)
    done = 0
    for i in range(len(pool)):
        if done >= dup_budget or not pool:
            break
        rel = rng.choice(pool)
        dst_rel = f"home/copies/{i:05d}-{os.path.basename(rel)}"
        shutil.copyfile(os.path.join(stage, rel), os.path.join(stage, dst_rel))
        staged.append(dst_rel)
        done += os.path.getsize(os.path.join(stage, dst_rel))
    # Incompressible data: seeded random files of 256 KiB to 32 MiB.
    os.makedirs(os.path.join(stage, "home/media"), exist_ok=True)
    done, i = 0, 0
    while done < random_budget:
        n = min(random_budget - done, int(2 ** rng.uniform(18, 25)))
        n = max(4096, n // 4096 * 4096)
        rel = f"home/media/clip-{i:04d}.bin"
        with open(os.path.join(stage, rel), "wb") as f:
            f.write(rng.randbytes(n))
        staged.append(rel)
        done, i = done + n, i + 1
    for dirpath, dirs, names in os.walk(stage):
        for n in dirs + names:
            os.utime(os.path.join(dirpath, n), (FAKE_TIME, FAKE_TIME), follow_symlinks=False)
    return staged


def make_image(image, stage, size):
    if os.path.exists(image):
        os.unlink(image)
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(FAKE_TIME))
    populate = ["-d", stage] if stage else []
    subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-U", FS_UUID, "-E", f"hash_seed={FS_UUID}",
                    "-L", "benchdisk"] + populate + [image, str(size // 1024) + "k"], check=True, env=env)


def fs_used_bytes(image):
    out = subprocess.run(["dumpe2fs", "-h", image], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    blocks = int(fields["Block count"].strip())
    free = int(fields["Free blocks"].strip())
    bsize = int(fields["Block size"].strip())
    return (blocks - free) * bsize


def file_block_runs(image, rels):
    """Physical block runs [(first_block, count)] of each staged file, via debugfs."""
    cmds = os.path.join(os.path.dirname(image), "debugfs.cmds")
    with open(cmds, "w") as f:
        for rel in rels:
            f.write(f'blocks "/{rel}"\n')
    out = subprocess.run(["debugfs", "-f", cmds, image], capture_output=True, text=True).stdout
    runs, current = {}, None
    for line in out.splitlines():
        if line.startswith("debugfs: blocks"):
            current = line.split('"')[1].lstrip("/")
            continue
        if current is None or not line.strip() or not line.strip().split()[0].isdigit():
            continue
        blocks = [int(b) for b in line.split()]
        file_runs = []
        for b in blocks:
            if file_runs and file_runs[-1][0] + file_runs[-1][1] == b:
                file_runs[-1][1] += 1
            else:
                file_runs.append([b, 1])
        runs[current] = file_runs
        current = None
    return runs


def plan_changes(image, runs, fraction, used, rng, taken):
    """Extents covering `fraction` of the used bytes, inside files' data blocks:
    in-place rewrites of 4 KiB to 2 MiB (log-uniform), never overlapping an
    extent of this same change. Returns [(offset, length)]."""
    target = int(used * fraction)
    weighted = [(rel, r) for rel, rs in runs.items() for r in rs if r[1] >= 1]
    weights = [r[1] for _, r in weighted]
    extents, total, attempts = [], 0, 0
    while total < target and attempts < 200000:
        attempts += 1
        _, (first, count) = rng.choices(weighted, weights)[0]
        blocks = max(1, min(count, int(2 ** rng.uniform(0, 9)), (target - total + 4095) // 4096))
        start = first + rng.randrange(0, count - blocks + 1)
        if any(b in taken for b in range(start, start + blocks)):
            continue
        taken.update(range(start, start + blocks))
        extents.append((start * 4096, blocks * 4096))
        total += blocks * 4096
    extents.sort()
    return extents


def write_changes(runner, bv_env, image, extents, rng, name):
    """New contents for each extent (a third fresh random bytes, the rest the old
    bytes with a small edit in every 4 KiB block, as rewritten files look), written
    through the simulated module's tracked write path in one batch."""
    ext_file = os.path.join(runner.work, f"{name}.extents")
    data_file = os.path.join(runner.work, f"{name}.data")
    with open(image, "rb") as img, open(ext_file, "w") as ef, open(data_file, "wb") as df:
        for off, length in extents:
            if rng.random() < 1 / 3:
                data = rng.randbytes(length)
            else:
                data = bytearray(os.pread(img.fileno(), length, off))
                for b in range(0, length, 4096):
                    p = b + rng.randrange(0, 4096 - 16)
                    data[p:p + 16] = rng.randbytes(16)
            ef.write(f"{off}:{length}\n")
            df.write(data)
    seconds, _, _ = runner.run([os.environ["BLKVAULT"], "-q", "sim", "write", image, "--extents", ext_file],
                               env=bv_env, stdin=data_file, timed=False)
    os.unlink(data_file)
    return seconds


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- object storage (issue 12)

def ceph_scripts():
    """The directory of start.sh/stop.sh of the test gateway (../shared/ceph-rgw
    in the checkout's parent, or BLKVAULT_CEPH_RGW_DIR), or None."""
    for d in (os.environ.get("BLKVAULT_CEPH_RGW_DIR"), os.path.join(ROOT, "..", "shared", "ceph-rgw"),
              "/work/shared/ceph-rgw"):
        if d and os.access(os.path.join(d, "start.sh"), os.X_OK):
            return os.path.abspath(d)
    return None


def ports_free(first, count):
    import socket
    for port in range(first, first + count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


class CephGateway:
    """A single-node Ceph cluster with the RADOS Gateway (S3), started by the
    shared start.sh in work/ceph on a block of 100 free ports and stopped by
    stop(), which only signals the daemons start.sh recorded. The gateway is
    restarted with `tcp_nodelay=1` on its beast frontend, the setting
    docs/OBJECT-STORAGE.md requires for Ceph (both clients gain from it)."""

    BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph-authtool", "monmaptool", "uuidgen", "curl")

    def __init__(self, work, store_bytes):
        self.dir = os.path.join(work, "ceph")
        self.store_bytes = store_bytes
        self.scripts = ceph_scripts()
        self.started = False
        self.env = {}
        self.endpoint = None

    def unavailable(self):
        """Why the gateway cannot be started here, or None."""
        if self.scripts is None:
            return "the Ceph gateway scripts (../shared/ceph-rgw/start.sh) are not there (set BLKVAULT_CEPH_RGW_DIR)"
        missing = [b for b in self.BINARIES if shutil.which(b) is None]
        if missing:
            return (f"the Ceph packages are not installed (no {', '.join(missing)}; "
                    "scripts/install-ceph-deps installs them)")
        return None

    def start(self):
        """Returns None when the gateway answers, else why it did not start."""
        why = self.unavailable()
        if why:
            return why
        base = 0
        for attempt in range(50):
            candidate = 20000 + ((os.getpid() + 41 + attempt * 37) % 120) * 100
            if ports_free(candidate, 100):
                base = candidate
                break
        if not base:
            return "no block of 100 free ports for the Ceph gateway"
        self.port = base + 1
        env = dict(os.environ, MON_PORT=str(base), RGW_PORT=str(self.port), PORT_MIN=str(base + 10),
                   PORT_MAX=str(base + 99), STORE_BYTES=f"{max(2, math.ceil(self.store_bytes / GIB))}G")
        log_path = os.path.join(os.path.dirname(self.dir), "ceph-start.log")
        with open(log_path, "w") as lg:
            self.started = True  # stop() must run even if start.sh dies half-way
            r = subprocess.run(["timeout", "240", os.path.join(self.scripts, "start.sh"), self.dir],
                               env=env, stdout=lg, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            tail = open(log_path).read()[-600:].strip()
            self.stop()
            return f"the Ceph gateway did not start (start.sh exit {r.returncode}): {tail}"
        for line in open(os.path.join(self.dir, "env")):
            if line.startswith("export ") and "=" in line:
                k, v = line[len("export "):].strip().split("=", 1)
                self.env[k] = v
        self.endpoint = self.env.get("S3_ENDPOINT")
        if not self.endpoint or "AWS_ACCESS_KEY_ID" not in self.env:
            self.stop()
            return f"start.sh wrote no usable {self.dir}/env"
        self.env.pop("S3_ENDPOINT")
        why = self.restart_with_nodelay()
        if why:
            self.stop()
            return why
        return None

    def restart_with_nodelay(self):
        pids = open(os.path.join(self.dir, "pids")).read().split("\n")
        rgw = [int(line.split()[1]) for line in pids if line.startswith("rgw.test ")]
        for pid in rgw:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
            for _ in range(100):
                if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z":
                    break
                time.sleep(0.05)
        out = open(os.path.join(self.dir, "log", "rgw.out"), "ab")
        p = subprocess.Popen(["radosgw", "-c", self.env["CEPH_CONF"], "-n", "client.rgw.test", "-f",
                              "--rgw-frontends", f"beast endpoint=127.0.0.1:{self.port} tcp_nodelay=1"],
                             cwd=self.dir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        with open(os.path.join(self.dir, "pids"), "a") as f:
            f.write(f"rgw.test {p.pid}\n")
        for _ in range(300):
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", self.endpoint + "/"])
            if r.returncode == 0:
                asok = os.path.join(self.dir, "run", "client.rgw.test.asok")
                q = subprocess.run(["ceph", "-c", self.env["CEPH_CONF"], "--admin-daemon", asok, "config", "get",
                                    "rgw_frontends"], capture_output=True, text=True)
                self.frontends = q.stdout.strip().replace("\n", " ")
                log(f"object storage: gateway frontends {self.frontends}")
                return None
            if p.poll() is not None:
                break
            time.sleep(0.1)
        return "the Ceph gateway did not answer after its restart with tcp_nodelay=1 (see " + self.dir + "/log)"

    def bucket_bytes(self, bucket):
        """Bytes stored in `bucket` (radosgw-admin bucket stats), or None."""
        r = subprocess.run(["radosgw-admin", "-c", self.env["CEPH_CONF"], "-n", "client.rgw.test", "bucket", "stats",
                            f"--bucket={bucket}"], capture_output=True, text=True)
        try:
            usage = json.loads(r.stdout)["usage"]
            return sum(u.get("size", 0) for u in usage.values())
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def stop(self):
        if not self.started:
            return
        self.started = False
        subprocess.run([os.path.join(self.scripts, "stop.sh"), self.dir], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


# ---------------------------------------------------------------- the tools

class Tools:
    """The command lines of every tool, each with its own repository under work/."""

    def __init__(self, work, image, gateway=None, s3_peers=None):
        self.work, self.image = work, image
        self.gateway = gateway
        self.s3_peers = s3_peers or S3_PEERS
        self.bv = os.environ["BLKVAULT"]
        self.bv_repo = os.path.join(work, "repo-blkvault")
        self.borg_repo = os.path.join(work, "repo-borg")
        self.restic_repo = os.path.join(work, "repo-restic")
        pw = os.path.join(work, "restic.password")
        with open(pw, "w") as f:
            f.write("bench-password\n")
        self.take_file = os.path.join(work, "take.time")
        # The simulation runs this once the snapshot is taken, before any device
        # is read: the time from the start to the taken snapshot.
        self.bv_env = {"BLKVAULT_REPO": self.bv_repo, "BLKVAULT_MODULE": "sim:" + os.path.join(work, "sim"),
                       "BLKVAULT_SIM_AFTER_TAKE": f"date +%s.%N > {self.take_file}"}
        # The encrypted column: the same module (so the same CBT), its own
        # repository with the default encryption, the cipher init picks for
        # this CPU and the default key derivation (paid once per command).
        self.bv_enc_repo = os.path.join(work, "repo-blkvault-enc")
        self.bv_enc_env = dict(self.bv_env, BLKVAULT_REPO=self.bv_enc_repo, BLKVAULT_PASSWORD="bench-password",
                               BLKVAULT_CACHE_DIR=os.path.join(work, "blkvault-cache"))
        self.cipher = None
        self.borg_env = {"BORG_REPO": self.borg_repo, "BORG_BASE_DIR": os.path.join(work, "borg-home"),
                         "BORG_PASSPHRASE": "", "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
                         "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}
        self.restic_env = {"RESTIC_REPOSITORY": self.restic_repo, "RESTIC_PASSWORD_FILE": pw,
                           "RESTIC_CACHE_DIR": os.path.join(work, "restic-cache")}
        # The object-storage columns (issue 12): one bucket each on the same
        # gateway; blkvault unencrypted like its main column, its index in a
        # cache dir as every S3 repository has; restic as above.
        self.buckets = {"blkvault-s3": "bench-blkvault", "restic-s3": "bench-restic"}
        if gateway:
            self.bv_s3_env = dict(self.bv_env, **gateway.env,
                                  BLKVAULT_REPO=f"s3:{gateway.endpoint}/{self.buckets['blkvault-s3']}",
                                  BLKVAULT_CACHE_DIR=os.path.join(work, "blkvault-s3-cache"))
            self.restic_s3_env = dict(self.restic_env, **gateway.env,
                                      RESTIC_REPOSITORY=f"s3:{gateway.endpoint}/{self.buckets['restic-s3']}",
                                      RESTIC_CACHE_DIR=os.path.join(work, "restic-s3-cache"))

    def peers(self):
        """The backup tools of this run, in the order they run."""
        return PEERS + (self.s3_peers if self.gateway else ())

    def init(self, runner):
        # Every change goes through `blkvault sim write`, as every write of a
        # real device passes the kernel filter: declared so, the simulation's
        # take reads nothing (no fingerprint rescan of the image, which the
        # kernel module does not do either; docs/SIMULATION.md).
        runner.run([self.bv, "-q", "sim", "outside-writes", self.image, "none"], env=self.bv_env, timed=False)
        runner.run([self.bv, "-q", "init", "--encryption", "none"], env=self.bv_env, timed=False)
        _, _, out = runner.run([self.bv, "--json", "init"], env=self.bv_enc_env, timed=False)
        try:
            self.cipher = json.loads(out).get("encryption")
        except ValueError:
            self.cipher = None
        runner.run(["borg", "init", "-e", "none"], env=self.borg_env, timed=False)
        runner.run(["restic", "-q", "init", "--repository-version", "2"], env=self.restic_env, timed=False)
        if self.gateway:
            runner.run([self.bv, "-q", "init", "--encryption", "none"], env=self.bv_s3_env, timed=False)
            runner.run(["restic", "-q", "init", "--repository-version", "2"], env=self.restic_s3_env, timed=False)

    def sample_repo(self, runner, tool, k):
        """A new, empty repository for an extra sample `k` of `tool`'s full
        backup (blkvault or blkvault-enc, initialised as the tool's own is), so
        every sample stores the whole image as the first backup does. Returns
        the backup command; drop_sample_repo() removes the repository."""
        env = dict(self.bv_enc_env if tool == "blkvault-enc" else self.bv_env,
                   BLKVAULT_REPO=os.path.join(self.work, f"repo-{tool}-sample{k}"))
        init = [self.bv, "-q", "init"]
        if tool == "blkvault-enc":
            env["BLKVAULT_CACHE_DIR"] = os.path.join(self.work, f"blkvault-cache-sample{k}")
        else:
            init += ["--encryption", "none"]
        runner.run(init, env=env, timed=False)
        return [self.bv, "-q", "--json", "backup", self.image], env, self.work

    def drop_sample_repo(self, env):
        shutil.rmtree(env["BLKVAULT_REPO"], ignore_errors=True)
        if env.get("BLKVAULT_CACHE_DIR") not in (None, self.bv_enc_env["BLKVAULT_CACHE_DIR"]):
            shutil.rmtree(env["BLKVAULT_CACHE_DIR"], ignore_errors=True)

    def backup(self, tool, n):
        img = os.path.basename(self.image)
        return {
            "blkvault": ([self.bv, "-q", "--json", "backup", self.image], self.bv_env, self.work),
            "blkvault-enc": ([self.bv, "-q", "--json", "backup", self.image], self.bv_enc_env, self.work),
            "borg": (["borg", "create", "--chunker-params", "fixed,1048576", "--compression", "zstd,3",
                      f"::g{n}", img], self.borg_env, self.work),
            "restic": (["restic", "-q", "backup", "--host", "bench", img], self.restic_env, self.work),
            "blkvault-s3": ([self.bv, "-q", "--json", "backup", self.image], getattr(self, "bv_s3_env", None),
                            self.work),
            "restic-s3": (["restic", "-q", "backup", "--host", "bench", img], getattr(self, "restic_s3_env", None),
                          self.work),
        }[tool]

    def restore(self, tool, out_dir):
        os.makedirs(out_dir, exist_ok=True)
        img = os.path.basename(self.image)
        if tool in ("blkvault", "blkvault-enc", "blkvault-s3"):
            target = os.path.join(out_dir, img)
            env = {"blkvault": self.bv_env, "blkvault-enc": self.bv_enc_env,
                   "blkvault-s3": getattr(self, "bv_s3_env", None)}[tool]
            return ([self.bv, "-q", "restore", "--device", self.image, "--to", target], env, out_dir), target
        target = os.path.join(out_dir, img)
        if tool == "borg":
            return (then_fsync(["borg", "extract", "--sparse", "::g3"], target), self.borg_env, out_dir), target
        env = self.restic_env if tool == "restic" else self.restic_s3_env
        return ((then_fsync(["restic", "-q", "restore", "latest", "--target", out_dir], target), env, out_dir),
                target)

    def verify(self, tool):
        return {
            "blkvault": ([self.bv, "-q", "verify", "--data"], self.bv_env, self.work),
            "blkvault-enc": ([self.bv, "-q", "verify", "--data"], self.bv_enc_env, self.work),
            "borg": (["borg", "check", "--verify-data"], self.borg_env, self.work),
            "restic": (["restic", "-q", "check", "--read-data"], self.restic_env, self.work),
        }[tool]

    def repo_bytes(self, tool):
        if tool in S3_PEERS:
            return self.gateway.bucket_bytes(self.buckets[tool])
        return tree_bytes({"blkvault": self.bv_repo, "blkvault-enc": self.bv_enc_repo, "borg": self.borg_repo,
                           "restic": self.restic_repo}[tool])


PEERS = ("blkvault", "blkvault-enc", "borg", "restic")
S3_PEERS = ("blkvault-s3", "restic-s3")
# Issue 9 compares blkvault-enc with blkvault within 10%, closer than one
# sample resolves on a machine that varies ~30% from run to run: their full
# backup and restore run SAMPLES times each, interleaved (blkvault,
# blkvault-enc, blkvault, …), and the rows show the medians.
SAMPLED = ("blkvault", "blkvault-enc")
SAMPLES = 3
NOTES = {
    "blkvault": "1 MiB fixed chunks, zstd 3, no encryption (`init --encryption none`), simulated module",
    "blkvault-enc": "the same with the default encryption (`init`: authenticated, the cipher in the targets, "
                    "repokey with the default Argon2id cost paid once per command, index in the cache dir)",
    "borg": "borg 1.2, `--chunker-params fixed,1048576 --compression zstd,3`, `-e none`",
    "restic": "restic 0.14, repository v2 (zstd 'auto'), content-defined chunks, always encrypted (AES-256 + Poly1305)",
    "blkvault-s3": "blkvault's main column with the repository in a bucket of the Ceph RADOS Gateway "
                   "(`--repo s3:http://127.0.0.1:PORT/bench-blkvault`, single node, memstore OSD, beast with "
                   "tcp_nodelay=1), its index in a cache dir",
    "restic-s3": "restic as above with its S3 backend on the same gateway (`-r s3:http://127.0.0.1:PORT/bench-restic`)",
    "zstd": "`zstd -3 -T0` of the whole image: the compression ceiling",
    "read": "`dd bs=1M` of the whole image to /dev/null: the I/O ceiling",
}


def run_benchmark(args, work, results, gateway):
    runner = Runner(work, drop_caches=not args.no_drop)
    rng = random.Random(args.seed)
    image = os.path.join(work, "disk.img")
    size = args.size
    stage = os.path.join(work, "stage")
    os.makedirs(stage)
    t0 = time.monotonic()
    log(f"staging files for a {human(size)} image (seed {args.seed})")
    content = int(size * 0.60) - metadata_bytes(work, size)
    staged = stage_tree(stage, size, args.seed, content)
    make_image(image, stage, size)
    used = fs_used_bytes(image)
    results["image"] = {"size_bytes": size, "used_bytes": used, "used_fraction": round(used / size, 3),
                        "files": len(staged), "seed": args.seed, "sha256": sha256(image),
                        "build_s": round(time.monotonic() - t0, 1)}
    log(f"image {image}: {human(size)}, {used / size:.0%} used, {len(staged)} files, "
        f"built in {results['image']['build_s']}s; sha256 {results['image']['sha256'][:16]}…")
    runs = file_block_runs(image, [r for r in staged if os.path.getsize(os.path.join(stage, r)) >= 16384])
    if not args.keep_stage:
        shutil.rmtree(stage)

    # --quick keeps the smoke test short: blkvault's S3 path only.
    tools = Tools(work, image, gateway, s3_peers=("blkvault-s3",) if args.quick else S3_PEERS)
    tools.init(runner)
    results["cipher"] = tools.cipher
    rows = results["rows"]

    def step(op, tool, cmd, cwd=None, extra=None):
        argv, env, dflt = cmd
        log(f"{op}: {tool}")
        seconds, rss, out = runner.run(argv, cwd=cwd or dflt, env=env)
        row = {"op": op, "tool": tool, "seconds": round(seconds, 3), "rss_bytes": rss}
        row.update(extra or {})
        rows.append(row)
        return row, out

    def take_time():
        """Seconds from the start of the last command to its snapshot taken
        (written by the simulation's BLKVAULT_SIM_AFTER_TAKE), or None."""
        try:
            take = round(float(open(tools.take_file).read()) - runner.last_start_wall, 3)
            os.unlink(tools.take_file)
            return take
        except (OSError, ValueError):
            return None

    def backup_details(row, tool, out, take):
        if tool == "blkvault-enc":
            row["mode"] = json.loads(out)["devices"][0]["mode"]
        if tool == "blkvault":
            if take is not None:
                row["take_s"] = take
            j = json.loads(out)
            dev = j["devices"][0]
            row.update({"read_bytes": j["read_bytes"], "stored_bytes": j["stored_bytes"],
                        "mode": dev["mode"], "device_s": round(dev["duration_s"], 3),
                        "generation": j["generation"]})

    def sample_rows(op, run_sample):
        """SAMPLES samples of each tool of SAMPLED, interleaved; run_sample(tool,
        k) -> (seconds, rss, stdout, take_s, extra), the last (k = SAMPLES - 1)
        in the tool's own repository. Appends one row per tool: the median
        sample's seconds, every sample's ("samples"), the largest peak RSS.
        Returns {tool: (row, median sample, last sample)}."""
        got = {tool: [] for tool in SAMPLED}
        for k in range(SAMPLES):
            for tool in SAMPLED:
                log(f"{op}: {tool} (sample {k + 1} of {SAMPLES})")
                got[tool].append(run_sample(tool, k))
        out = {}
        for tool in SAMPLED:
            s = got[tool]
            mid = sorted(range(len(s)), key=lambda i: s[i][0])[len(s) // 2]
            row = {"op": op, "tool": tool, "seconds": round(s[mid][0], 3), "rss_bytes": max(x[1] for x in s),
                   "samples": [round(x[0], 3) for x in s]}
            rows.append(row)
            out[tool] = (row, s[mid], s[-1])
        return out

    def backup_sample(tool, k, n):
        """One full backup into an empty repository: a new one for the extra
        samples (removed after it), the tool's own for the last."""
        main = k == SAMPLES - 1
        argv, env, cwd = tools.backup(tool, n) if main else tools.sample_repo(runner, tool, k)
        seconds, rss, out = runner.run(argv, cwd=cwd, env=env)
        take = take_time()
        if main:
            return seconds, rss, out, take, {"repo_bytes": tools.repo_bytes(tool)}
        tools.drop_sample_repo(env)
        return seconds, rss, out, take, {}

    def restore_sample(tool, k):
        out_dir = os.path.join(work, "restore-" + tool)
        (argv, env, cwd), target = tools.restore(tool, out_dir)
        seconds, rss, out = runner.run(argv, cwd=cwd, env=env)
        check_identical(image, target, tool)
        shutil.rmtree(out_dir)
        return seconds, rss, out, None, {}

    taken = set()
    before_change = os.path.join(work, "before-1pct.img")
    for n, (op, fraction) in enumerate((("full backup", None), ("1% incremental", 0.01),
                                        ("10% incremental", 0.10)), start=1):
        if fraction == 0.01 and not args.no_delta:
            # The delta restore's target: the image as the full backup saw it,
            # which differs from the 1% incremental's generation by that change.
            subprocess.run(["cp", "--sparse=always", image, before_change], check=True)
        if fraction is not None:
            extents = plan_changes(image, runs, fraction, used, rng, taken)
            seconds = write_changes(runner, tools.bv_env, image, extents, rng, f"change{n}")
            changed = sum(length for _, length in extents)
            results["changes"].append({"op": op, "extents": len(extents), "bytes": changed,
                                       "fraction_of_used": round(changed / used, 4), "write_s": round(seconds, 2)})
            log(f"changed {human(changed)} ({changed / used:.1%} of the used bytes) in {len(extents)} extents "
                f"through the simulated tracker in {seconds:.1f}s")
        for tool in tools.peers():
            if fraction is None and tool in SAMPLED:
                if tool == SAMPLED[0]:
                    for t, (row, mid, main) in sample_rows(op, lambda t, k: backup_sample(t, k, n)).items():
                        row["repo_bytes"] = main[4]["repo_bytes"]
                        backup_details(row, t, mid[2], mid[3])
                        if t == "blkvault":
                            # The main repository's, which the later steps use.
                            row["generation"] = json.loads(main[2])["generation"]
                continue
            row, out = step(op, tool, tools.backup(tool, n))
            row["repo_bytes"] = tools.repo_bytes(tool)
            backup_details(row, tool, out, take_time())
        if fraction is None:
            zst = os.path.join(work, "disk.img.zst")
            row, _ = step(op, "zstd", (["zstd", "-3", "-T0", "-q", "-f", image, "-o", zst], {}, work))
            row["repo_bytes"] = os.path.getsize(zst)
            os.unlink(zst)
            step(op, "read", (["dd", f"if={image}", "of=/dev/null", "bs=1M", "status=none"], {}, work))

    for tool in tools.peers():
        if tool in SAMPLED:
            if tool == SAMPLED[0]:
                sample_rows("restore latest", restore_sample)
                for t in SAMPLED:
                    results["identical"].append(t)
                    log(f"restores of {t} are byte-identical (cmp), all {SAMPLES}")
            continue
        out_dir = os.path.join(work, "restore-" + tool)
        cmd, target = tools.restore(tool, out_dir)
        step("restore latest", tool, cmd)
        check_identical(image, target, tool)
        results["identical"].append(tool)
        log(f"restore of {tool} is byte-identical (cmp)")
        shutil.rmtree(out_dir)
    for tool in PEERS:
        step("verify data", tool, tools.verify(tool))
    if gateway:
        gateway.stop()  # its memory back before the steps that follow

    full_1pct = None
    if args.no_delta:
        results["skipped"]["delta"] = "--no-delta"
    else:
        full_1pct = delta_restore(work, runner, results, tools, before_change, step)
    if args.no_mount:
        results["skipped"]["mount"] = "--no-mount"
    else:
        why = browse(args, work, runner, results, tools)
        if why:
            results["skipped"]["mount"] = why
            log(f"mount rows SKIPPED: {why}")
    if full_1pct:
        delta_rollback(work, runner, results, tools, full_1pct, step)

    if args.large:
        large_image_rss(args, work, runner, results, rng)
    else:
        results["skipped"]["large"] = "--quick" if args.quick else "--large 0"
    results["drop_caches"] = runner.drop and runner.drop_note is None
    results["drop_note"] = runner.drop_note


def delta_restore(work, runner, results, tools, before, step):
    """restore --delta of the 1% incremental's generation onto the image as it was
    before that change (the compare path: every chunk read and hashed, only the
    differing ones written), against a full restore (--force) of the same
    generation onto another copy of that image, a rollback both ways; both
    results must be byte-identical."""
    gens = {r["op"]: r.get("generation") for r in results["rows"] if r["tool"] == "blkvault"}
    gen, prev = gens.get("1% incremental"), gens.get("full backup")
    bv, image = tools.bv, tools.image
    op = "restore 1% generation"
    full = os.path.join(work, "gen-1pct-full.img")
    subprocess.run(["cp", "--sparse=always", before, full], check=True)
    step(op, "blkvault", ([bv, "-q", "restore", "--force", "--device", image, "--to", full, "--generation", str(gen)],
                          tools.bv_env, work))
    _, _, out = runner.run([bv, "--json", "diff", str(prev), str(gen), "--device", image], env=tools.bv_env,
                           timed=False)
    changed = json.loads(out)["devices"][0]["changed_bytes"]
    row, out = step(op, "blkvault --delta", ([bv, "-q", "--json", "restore", "--delta", "--device", image, "--to",
                                              before, "--generation", str(gen)], tools.bv_env, work))
    j = json.loads(out)
    row.update({"path": j["path"], "compared_bytes": j["compared_bytes"], "written_bytes": j["written_bytes"],
                "zero_bytes": j["zero_bytes"], "chunks_written": j["chunks_written"], "diff_changed_bytes": changed,
                "generation": gen})
    check_identical(full, before, "blkvault restore --delta")
    results["identical"].append("blkvault --delta")
    log(f"delta restore of generation {gen} ({j['path']} path) is byte-identical to its full restore (cmp)")
    os.unlink(before)
    return full


def delta_rollback(work, runner, results, tools, full, step):
    """The rollback restore --delta is for: the image itself (the device that was
    backed up, tracked by the module) back to the 1% generation, through the CBT
    path (only what the CBT marks as written since that generation is read).
    Last of the steps on the image, which it changes; compared with the full
    restore of that generation."""
    d = find(results["rows"], "restore 1% generation", "blkvault --delta")
    gen, image = d["generation"], tools.image
    row, out = step("restore 1% generation", "blkvault --delta (cbt)",
                    ([tools.bv, "-q", "--json", "restore", "--delta", "--device", image, "--to", image,
                      "--generation", str(gen)], tools.bv_env, work))
    j = json.loads(out)
    row.update({"path": j["path"], "compared_bytes": j["compared_bytes"], "written_bytes": j["written_bytes"],
                "zero_bytes": j["zero_bytes"], "chunks_written": j["chunks_written"],
                "skipped_bytes": j.get("skipped_bytes"), "cbt_unused_reason": j.get("cbt_unused_reason"),
                "diff_changed_bytes": d["diff_changed_bytes"], "generation": gen})
    check_identical(full, image, "blkvault restore --delta onto the backed-up image")
    results["identical"].append("blkvault --delta (cbt)")
    log(f"delta rollback of the image to generation {gen} ({j['path']} path) is byte-identical (cmp)")
    os.unlink(full)


BROWSE_FILES = 200
# `find` over the whole tree, then every sampled file read and hashed: the
# output (entry count and hashes) must be the same on both mounts.
BROWSE_SCRIPT = 'cd "$1" && find . -xdev | wc -l && xargs -d "\n" -a "$2" sha256sum --'


def browse_unavailable():
    if os.geteuid() != 0:
        return "loop mounts need root"
    for tool in ("fusermount3", "mount", "umount", "losetup"):
        if shutil.which(tool) is None:
            return f"no {tool} on this machine"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        return f"no FUSE on this machine: /dev/fuse: {e.strerror}"
    r = subprocess.run(["losetup", "--find"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"no free loop device: {(r.stdout + r.stderr).strip()}"
    return None


def loop_mount(source, mountpoint):
    os.makedirs(mountpoint, exist_ok=True)
    r = subprocess.run(["mount", "-o", "ro,loop,noload", source, mountpoint], capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"mount -o ro,loop,noload {source} {mountpoint} failed: {(r.stdout + r.stderr).strip()}")


def unmount(mountpoint):
    if os.path.ismount(mountpoint):
        if subprocess.run(["umount", mountpoint], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mountpoint], capture_output=True)


class BlkvaultMount:
    """`blkvault mount --generation latest MNT` in the background (under GNU time
    for its peak RSS), until stop(): fusermount3 -u, then the process's exit."""

    def __init__(self, tools, mountpoint, work):
        self.mnt, self.work = mountpoint, work
        os.makedirs(mountpoint, exist_ok=True)
        self.rss_path = os.path.join(work, "mount.rss")
        self.err = open(os.path.join(work, "mount.stderr"), "wb")
        env = dict(os.environ, **tools.bv_env)
        t0 = time.monotonic()
        self.proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", self.rss_path, "--", tools.bv, "-q", "mount",
                                      "--generation", "latest", mountpoint], env=env, stdout=subprocess.DEVNULL,
                                     stderr=self.err)
        self.image = None
        while time.monotonic() - t0 < 120:
            if self.proc.poll() is not None:
                self.err.close()
                msg = open(os.path.join(work, "mount.stderr"), "rb").read().decode(errors="replace").strip()
                raise BenchError(f"blkvault mount exited with status {self.proc.returncode}: {msg[-2000:]}")
            if os.path.ismount(mountpoint):
                imgs = [n for n in os.listdir(mountpoint) if n.endswith(".img")]
                if imgs:
                    self.image = os.path.join(mountpoint, imgs[0])
                    break
            time.sleep(0.05)
        self.start_s = time.monotonic() - t0
        if self.image is None:
            self.stop()
            raise BenchError(f"blkvault mount served no image at {mountpoint} within 120 s")

    def stop(self):
        """Unmounts and waits; returns the process's peak RSS in bytes (0 if unknown)."""
        if self.proc.poll() is None:
            subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(timeout=30)
        self.err.close()
        try:
            return int(open(self.rss_path).read().strip().splitlines()[-1]) * 1024
        except (OSError, ValueError, IndexError):
            return 0


def browse(args, work, runner, results, tools):
    """Issue 10: `find` plus reading a seeded sample of files on a read-only loop
    mount of the latest generation served by `blkvault mount`, against the same
    on the original image, the page cache dropped before each. Returns None, or
    why the rows were skipped."""
    why = browse_unavailable()
    if why:
        return why
    image = tools.image
    orig, files, fuse = (os.path.join(work, n) for n in ("mnt-original", "mnt-files", "mnt-blkvault"))
    sample_list = os.path.join(work, "browse.list")
    op = f"browse: find + {BROWSE_FILES} files"
    rows = results["rows"]
    try:
        loop_mount(image, orig)
        regular = []
        for dirpath, dirs, names in os.walk(orig):
            dirs.sort()
            for n in sorted(names):
                p = os.path.join(dirpath, n)
                if os.path.isfile(p) and not os.path.islink(p):
                    regular.append(os.path.relpath(p, orig))
        sample = random.Random(args.seed).sample(regular, min(BROWSE_FILES, len(regular)))
        sample_bytes = sum(os.path.getsize(os.path.join(orig, r)) for r in sample)
        with open(sample_list, "w") as f:
            f.write("".join("./" + r + "\n" for r in sample))
        unmount(orig)
        outputs = {}
        for tool in ("blkvault mount", "original image"):
            log(f"{op}: {tool}")
            mounted, setup_s = None, 0.0
            where = files if tool == "blkvault mount" else orig
            try:
                if tool == "blkvault mount":
                    mounted = BlkvaultMount(tools, fuse, work)
                    t0 = time.monotonic()
                    loop_mount(mounted.image, files)
                    setup_s = mounted.start_s + time.monotonic() - t0
                else:
                    loop_mount(image, orig)
                seconds, rss, out = runner.run(["sh", "-c", BROWSE_SCRIPT, "sh", where, sample_list])
            finally:
                unmount(where)
                if mounted:
                    rss = mounted.stop()  # the serving process's, not the reader's
            outputs[tool] = out
            entries = int(out.split("\n", 1)[0].strip())
            rows.append({"op": op, "tool": tool, "seconds": round(seconds, 3), "rss_bytes": rss,
                         "files": len(sample), "entries": entries, "sample_bytes": sample_bytes,
                         "files_per_s": round(len(sample) / seconds, 1) if seconds > 0 else None,
                         "setup_s": round(setup_s, 3)})
        if outputs["blkvault mount"] != outputs["original image"]:
            raise BenchError("MOUNT MISMATCH: find + sha256sum of the sampled files differ between the loop mount "
                             f"of the served image and the original image (see {work})")
        results["identical"].append("blkvault mount (find + sha256 of the sampled files)")
    finally:
        for m in (files, orig):
            unmount(m)
    return None


def large_image_rss(args, work, runner, results, rng):
    """The same kind of content on a much larger, mostly empty (sparse) device:
    blkvault's backup, restore and verify RSS must not grow with the device."""
    size = args.large
    stage = os.path.join(work, "stage-large")
    os.makedirs(stage)
    content = int(args.size * 0.60) - metadata_bytes(work, args.size)
    log(f"large image: the same {human(content)} of files on a {human(size)} sparse image")
    stage_tree(stage, args.size, args.seed, content)
    image = os.path.join(work, "large.img")
    make_image(image, stage, size)
    shutil.rmtree(stage)
    bv = os.environ["BLKVAULT"]
    env = {"BLKVAULT_REPO": os.path.join(work, "repo-large"), "BLKVAULT_MODULE": "sim:" + os.path.join(work, "sim-large")}
    runner.run([bv, "-q", "sim", "outside-writes", image, "none"], env=env, timed=False)
    runner.run([bv, "-q", "init", "--encryption", "none"], env=env, timed=False)
    target = os.path.join(work, "large-restored.img")
    for op, argv in (("full backup", [bv, "-q", "--json", "backup", image]),
                     ("restore latest", [bv, "-q", "restore", "--device", image, "--to", target]),
                     ("verify data", [bv, "-q", "verify", "--data"])):
        log(f"large image {op}: blkvault")
        seconds, rss, _ = runner.run(argv, env=env)
        results["large"].append({"op": op, "tool": "blkvault", "size_bytes": size, "seconds": round(seconds, 3),
                                 "rss_bytes": rss})
    check_identical(image, target, "blkvault (large image)", sparse=True)
    results["identical"].append("blkvault (large image)")
    os.unlink(target)
    os.unlink(image)


# ---------------------------------------------------------------- reporting

def find(rows, op, tool):
    for r in rows:
        if r["op"] == op and r["tool"] == tool:
            return r
    return None


def base_of(r):
    """The (op, tool) a row's ratio is taken against."""
    if r["tool"] in ("zstd", "read"):
        return "full backup", "blkvault"
    if r["tool"] in S3_PEERS:
        return r["op"], "blkvault-s3"
    if r["op"].startswith("browse"):
        return r["op"], "blkvault mount"
    if r["op"] == "restore 1% generation":
        return r["op"], "blkvault --delta"
    return r["op"], "blkvault"


def add_ratios(results):
    size = results["image"]["size_bytes"]
    for r in results["rows"]:
        base = find(results["rows"], *base_of(r))
        device_op = not r["op"].startswith("browse")
        r["mb_per_s"] = round(size / 1e6 / r["seconds"], 1) if r["seconds"] > 0 and device_op else None
        r["ratio"] = round(r["seconds"] / base["seconds"], 2) if base and base["seconds"] > 0 else None


# Issue 10 asks that browsing a mounted generation "feel local" and names no
# number: ours is at least half the files per second of the original image.
BROWSE_LOCAL_FRACTION = 0.5
BV_TOOLS = ("blkvault", "blkvault-enc", "blkvault-s3", "blkvault mount", "blkvault --delta")


def targets(results):
    """Every target of issues 7, 9, 10 and 12: [(description, met, figure)],
    met None when the run did not measure it (the figure says why)."""
    rows, skipped = results["rows"], results.get("skipped", {})
    t = lambda op, tool: find(rows, op, tool)
    out = []

    def missing(desc, why):
        out.append((desc, None, why))

    def ratio(op, tool, bound, desc, base_op=None, base_tool="blkvault", why="no such row"):
        a, b = t(op, tool), t(base_op or op, base_tool)
        if a and b and b["seconds"] > 0:
            x = a["seconds"] / b["seconds"]
            out.append((desc, x >= bound, f"{x:.2f}×"))
        else:
            missing(desc, why)

    ratio("full backup", "borg", 3, "full backup ≥ 3× faster than borg")
    ratio("full backup", "restic", 2, "full backup ≥ 2× faster than restic")
    ratio("full backup", "zstd", 1, "full backup no slower than zstd -3 -T0", "full backup")
    ratio("1% incremental", "borg", 30, "1% incremental ≥ 30× faster than borg's")
    ratio("1% incremental", "restic", 30, "1% incremental ≥ 30× faster than restic's")
    inc, full = t("1% incremental", "blkvault"), t("full backup", "blkvault")
    if inc and full:
        x = inc["seconds"] / full["seconds"]
        out.append(("1% incremental < 5% of blkvault's full backup", x < 0.05, f"{x:.1%}"))
    ratio("restore latest", "borg", 2, "restore ≥ 2× faster than borg extract")
    ratio("restore latest", "restic", 2, "restore ≥ 2× faster than restic restore")
    ratio("verify data", "borg", 2, "verify --data ≥ 2× faster than borg check --verify-data")
    ratio("verify data", "restic", 2, "verify --data ≥ 2× faster than restic check --read-data")
    for op in ("full backup", "1% incremental", "10% incremental"):
        a, b = t(op, "blkvault"), t(op, "borg")
        desc = f"repository ≤ 1.05× borg's after the {op}"
        if a and b:
            x = a["repo_bytes"] / b["repo_bytes"]
            out.append((desc, x <= 1.05, f"{x:.3f}×"))
        else:
            missing(desc, "no such row")
    bv = [r for r in rows + results["large"] if r["tool"] in BV_TOOLS and r.get("rss_bytes")]
    if bv:
        top = max(bv, key=lambda r: r["rss_bytes"])
        where = f"{top['op']}, {top['tool']}" + (f", {human(top['size_bytes'])} image" if "size_bytes" in top else "")
        out.append(("peak RSS < 200 MiB in every blkvault step", top["rss_bytes"] < 200 * MIB,
                    f"{human(top['rss_bytes'])} in {where}"))
        core = [r for r in bv if r["op"] in ("full backup", "1% incremental", "10% incremental", "restore latest",
                                             "verify data")]
        if core and top not in core:
            # The mount holds a chunk cache (64 MiB by default): the same target without it.
            top = max(core, key=lambda r: r["rss_bytes"])
            where = f"{top['op']}, {top['tool']}" + (f", {human(top['size_bytes'])} image" if "size_bytes" in top else "")
            out.append(("peak RSS < 200 MiB in every backup, restore and verify", top["rss_bytes"] < 200 * MIB,
                        f"{human(top['rss_bytes'])} in {where}"))
    desc = "RSS grows < 10% from the image to the 64 GiB sparse image"
    if results["large"]:
        growth = max(lg["rss_bytes"] / t(lg["op"], "blkvault")["rss_bytes"] for lg in results["large"])
        out.append((f"RSS grows < 10% from {human(results['image']['size_bytes'])} to "
                    f"{human(results['large'][0]['size_bytes'])} (sparse)", growth < 1.10, f"{growth - 1:+.1%}"))
    else:
        missing(desc, skipped.get("large", "no large-image step"))
    sc = results.get("scale")
    desc_index = "index < 1 MiB per generation (1 TiB, 1% changed per generation, 100 generations; bench/scale)"
    desc_plan = "plan a full restore of generation 100 of 1 TiB in < 1 s (bench/scale)"
    if sc:
        shape = "" if sc["size_bytes"] == 1 << 40 and sc["generations"] >= 100 else \
            f" [measured at {human(sc['size_bytes'])}, {sc['generations']} generations]"
        out.append((desc_index, sc["index_bytes_per_generation"] < MIB,
                    f"{human(int(sc['index_bytes_per_generation']))} per generation{shape}"))
        out.append((desc_plan, sc["plan_s"] < 1, f"{sc['plan_s']:.3f} s{shape}"))
    else:
        missing(desc_index, skipped.get("scale", "no bench/scale result"))
        missing(desc_plan, skipped.get("scale", "no bench/scale result"))
    for op in ("full backup", "restore latest"):
        a, b = t(op, "blkvault-enc"), t(op, "blkvault")
        desc = f"encrypted {op} within 10% of unencrypted ({results.get('cipher') or 'cipher unknown'}"
        desc += f"; medians of {SAMPLES} samples)" if a and "samples" in a else ")"
        if a and b:
            x = a["seconds"] / b["seconds"]
            out.append((desc, x <= 1.10, f"{x:.2f}×"))
        else:
            missing(desc, "no such row")
    # Issue 10: the mount and delta-restore rows.
    m, o = t(f"browse: find + {BROWSE_FILES} files", "blkvault mount"), \
        t(f"browse: find + {BROWSE_FILES} files", "original image")
    desc = (f"browsing the mounted latest generation feels local: ≥ {BROWSE_LOCAL_FRACTION:.0%} of the original "
            "image's files/s (find + sampled files, cold cache)")
    if m and o:
        x = o["seconds"] / m["seconds"]
        out.append((desc, x >= BROWSE_LOCAL_FRACTION,
                    f"{m['files_per_s']} vs {o['files_per_s']} files/s: {x:.0%}"))
    else:
        missing(desc, skipped.get("mount", "no such row"))
    d, f = t("restore 1% generation", "blkvault --delta"), t("restore 1% generation", "blkvault")
    desc_w = "delta restore writes only the chunks that differ (written + zeros ≤ `diff`'s changed bytes)"
    desc_t = "delta restore of the 1% change faster than a full restore of that generation"
    if d and f:
        w = d["written_bytes"] + d["zero_bytes"]
        out.append((desc_w, w <= d["diff_changed_bytes"], f"{human(w)} written, {human(d['diff_changed_bytes'])} changed"))
        out.append((desc_t, d["seconds"] < f["seconds"], f"{d['seconds']:.2f} s vs {f['seconds']:.2f} s"))
    else:
        missing(desc_w, skipped.get("delta", "no such row"))
        missing(desc_t, skipped.get("delta", "no such row"))
    c = t("restore 1% generation", "blkvault --delta (cbt)")
    desc_c = "delta rollback of the backed-up device takes the CBT path (reads only what changed since)"
    if c:
        out.append((desc_c, c["path"] == "cbt", f"{c['path']} path" + (
            f", {human(c['skipped_bytes'])} not read, {c['seconds']:.2f} s" if c["path"] == "cbt"
            else f": {c.get('cbt_unused_reason')}")))
    else:
        missing(desc_c, skipped.get("delta", "no such row"))
    # Issue 12: object storage, blkvault against restic on the same gateway.
    why = skipped.get("s3", skipped.get("restic-s3", "no such row"))
    ratio("full backup", "restic-s3", 2, "S3: full backup ≥ 2× restic's throughput", base_tool="blkvault-s3", why=why)
    ratio("1% incremental", "restic-s3", 20, "S3: 1% incremental ≥ 20× faster than restic's", base_tool="blkvault-s3",
          why=why)
    ratio("restore latest", "restic-s3", 2, "S3: restore ≥ 2× restic's throughput", base_tool="blkvault-s3", why=why)
    return out


def detail(r):
    """The last column: what the seconds alone do not say."""
    if r["op"].startswith("browse"):
        s = (f"{r['files']} files ({human(r['sample_bytes'])}) of {r['entries']} entries: "
             f"{r['files_per_s']} files/s")
        return s + (f"; serving and loop-mounting took {r['setup_s']:.2f} s" if r["tool"] == "blkvault mount" else "")
    if "path" in r:
        s = (f"{r['path']} path: compared {human(r['compared_bytes'])}, wrote {human(r['written_bytes'])} "
             f"+ {human(r['zero_bytes'])} of zeros ({r['chunks_written']} chunks); `diff` counts "
             f"{human(r['diff_changed_bytes'])} changed")
        if r.get("skipped_bytes"):
            s += f"; {human(r['skipped_bytes'])} not read"
        if r.get("cbt_unused_reason") and r["tool"].endswith("(cbt)"):
            s += f"; CBT not used: {r['cbt_unused_reason']}"
        return s
    if r.get("samples"):
        return f"median of {len(r['samples'])} samples: " + ", ".join(f"{x:.2f}" for x in r["samples"]) + " s"
    return ""


def verdict(met):
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def markdown(results):
    img = results["image"]
    lines = []
    if results["quick"]:
        load = results["machine"].get("load_before", ["?"])[0]
        lines += [f"**Quick smoke run** (`--quick`: {human(img['size_bytes'])} image, no large-image or scale step) "
                  f"on a shared machine (load average {load} at the start): the figures are not representative and "
                  "the targets below are informational only.", ""]
    lines += [f"Image: {human(img['size_bytes'])} ext4, {img['used_fraction']:.0%} used, {img['files']} files, "
              f"seed {img['seed']} (sha256 `{img['sha256'][:16]}…`). "
              f"Page cache {'dropped before every timed step' if results['drop_caches'] else 'NOT dropped: ' + str(results['drop_note'])}. "
              "MB/s = device size (10^6 bytes) / seconds; ratio = seconds / blkvault's seconds for the same "
              "operation (zstd and read: / blkvault's full backup; restic-s3: / blkvault-s3's; the browse rows: / "
              "the mount's; the full restore of the 1% generation: / the delta restore's), so above 1 means "
              "blkvault was faster. Restores are timed until the restored file is on disk (borg's and "
              "restic's followed by `sync FILE`; blkvault's restore fsyncs its target). blkvault's and "
              "blkvault-enc's full backup and restore latest: the median of "
              f"{SAMPLES} samples, run interleaved (each backup into an empty repository), the peak RSS the largest.",
              "",
              "| operation | tool | seconds | MB/s | ratio | peak RSS | repository | detail |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results["rows"]:
        repo = human(r["repo_bytes"]) if r.get("repo_bytes") is not None else ""
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else ""
        lines.append(f"| {r['op']} | {r['tool']} | {r['seconds']:.2f} | {r['mb_per_s'] or ''} | {ratio} | "
                     f"{human(r['rss_bytes'])} | {repo} | {detail(r)} |")
    if results["large"]:
        lines += ["", f"blkvault on a {human(results['large'][0]['size_bytes'])} sparse image with the same files:", "",
                  "| operation | seconds | peak RSS |", "|---|---:|---:|"]
        for r in results["large"]:
            lines.append(f"| {r['op']} | {r['seconds']:.2f} | {human(r['rss_bytes'])} |")
    sc = results.get("scale")
    if sc:
        lines += ["", f"Metadata scale (bench/scale): {human(sc['size_bytes'])} device, {human(sc['chunk_size'])} chunks, "
                      f"{sc['changed_per_generation']} chunks changed per generation, {sc['generations']} generations: "
                      f"index {human(int(sc['index_bytes_per_generation']))} per generation, commit mean "
                      f"{sc['commit_mean_s']:.3f} s, plan of the last generation {sc['plan_s']:.3f} s, peak RSS "
                      f"{human(sc['rss_peak_bytes'])}."]
    lines += ["", "Changes (in-place rewrites of file data through `blkvault sim write --extents`):", ""]
    for c in results["changes"]:
        lines.append(f"- before the {c['op']}: {human(c['bytes'])} in {c['extents']} extents "
                     f"({c['fraction_of_used']:.1%} of the used bytes)")
    bv = [r for r in results["rows"] if r["tool"] == "blkvault" and "read_bytes" in r]
    for r in bv:
        take = (f"; the snapshot was taken {r['take_s']:.2f} s after the start" if "take_s" in r else "")
        lines.append(f"- blkvault {r['op']}: {r['mode']}, read {human(r['read_bytes'])}, stored "
                     f"{human(r['stored_bytes'])}; reading and storing the device took {r['device_s']:.2f} s of the "
                     f"{r['seconds']:.2f} s{take}")
    if results.get("s3"):
        lines += ["", f"Object storage: {results['s3']}"]
    if results.get("skipped"):
        lines += ["", "Skipped:", ""] + [f"- {k}: {v}" for k, v in results["skipped"].items()]
    lines += ["", "Targets:", ""]
    for desc, met, fig in results["targets"]:
        lines.append(f"- {verdict(met)}: {desc} ({fig})")
    lines += ["", "Tools:", ""] + [f"- {k}: {v}" for k, v in NOTES.items()]
    lines += ["", f"Restores compared byte for byte (cmp): {', '.join(results['identical'])}: identical."]
    return "\n".join(lines) + "\n"


def print_table(results):
    print(f"\n{'operation':<26} {'tool':<16} {'seconds':>8} {'MB/s':>8} {'ratio':>6} {'peak RSS':>10} "
          f"{'repository':>11}  detail")
    for r in results["rows"]:
        repo = human(r["repo_bytes"]) if r.get("repo_bytes") is not None else ""
        print(f"{r['op']:<26} {r['tool']:<16} {r['seconds']:>8.2f} {r['mb_per_s'] or 0:>8.1f} "
              f"{r['ratio'] if r['ratio'] is not None else '':>6} {human(r['rss_bytes']):>10} {repo:>11}  {detail(r)}")
    for r in results["large"]:
        print(f"large {human(r['size_bytes'])} {r['op']:<16} blkvault {r['seconds']:.2f}s {human(r['rss_bytes'])}")
    for k, v in results.get("skipped", {}).items():
        print(f"  skipped {k}: {v}")
    print()
    if results["quick"]:
        print("  targets (informational only: a --quick image is too small to judge them)")
    for desc, met, fig in results["targets"]:
        print(f"  {({True: 'met   ', False: 'MISSED', None: 'n/a   '})[met]} {desc}: {fig}")


DOCS = os.path.join(ROOT, "docs", "BENCHMARKS.md")
DOCS_BEGIN = "<!-- latest-results: begin (bench/run --update-docs rewrites up to the end marker) -->"
DOCS_END = "<!-- latest-results: end -->"


def update_docs(md_path, docs_path=DOCS):
    """Replaces the "Latest results" section of docs/BENCHMARKS.md (between the
    two markers) with the results Markdown of one run."""
    md = open(md_path).read()
    doc = open(docs_path).read()
    if DOCS_BEGIN not in doc or DOCS_END not in doc:
        raise BenchError(f"{docs_path} has no latest-results markers")
    first, rest = md.split("\n", 1)
    title = first.lstrip("# ").strip()
    body = f"Recorded by `bench/run` (`--update-docs`, `--docs-from`) from `{os.path.relpath(md_path, ROOT)}`: {title}.\n"
    if "**Quick smoke run**" in rest:
        body += ("\nThese are a smoke run's figures, kept until the full 4 GiB run is recorded "
                 "(`bench/run --update-docs`).\n")
    body += rest.replace("\n# ", "\n### ")
    head, tail = doc.split(DOCS_BEGIN, 1)
    tail = tail.split(DOCS_END, 1)[1]
    with open(docs_path + ".tmp", "w") as f:
        f.write(head + DOCS_BEGIN + "\n\n" + body.strip() + "\n\n" + DOCS_END + tail)
    os.replace(docs_path + ".tmp", docs_path)
    log(f"{os.path.relpath(docs_path, ROOT)}: Latest results rewritten from {md_path}")


def run_scale(results):
    """bench/scale at its defaults (1 TiB, 1% per generation, 100 generations);
    its JSON goes to results["scale"]."""
    log("metadata scale: bench/scale (1 TiB, 100 generations)")
    before = set(os.listdir(os.path.join(ROOT, "bench", "results")))
    with open(os.path.join(tempfile.gettempdir(), f"blkvault-bench-scale-{os.getpid()}.log"), "w") as lg:
        r = subprocess.run(["bash", os.path.join(ROOT, "bench", "scale")], stdout=lg, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise BenchError(f"bench/scale failed with exit status {r.returncode} (its output: {lg.name})")
    new = sorted(n for n in set(os.listdir(os.path.join(ROOT, "bench", "results"))) - before
                 if n.startswith("scale-") and n.endswith(".json"))
    if not new:
        raise BenchError("bench/scale wrote no results")
    results["scale"] = json.load(open(os.path.join(ROOT, "bench", "results", new[-1])))
    results["scale"].pop("per_generation", None)


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def main():
    ap = argparse.ArgumentParser(prog="bench/run", description="blkvault vs borg, restic and zstd on one seeded ext4 image, on local "
                                 "repositories and on a Ceph S3 gateway (docs/BENCHMARKS.md)")
    ap.add_argument("--size", default="4G", help="image size (default 4G; --quick: 256M)")
    ap.add_argument("--quick", action="store_true",
                    help="small image, no large-image or scale step; of the S3 columns only blkvault's, and only "
                         "when the Ceph packages are installed (CI smoke test)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--dir", help="work directory (default: a new one under /var/tmp)")
    ap.add_argument("--seed", type=int, default=7, help="seed of the image, the changes and the browse sample (default 7)")
    ap.add_argument("--large", default=None, help="size of the sparse RSS-growth image (default 64G; 0: skip)")
    ap.add_argument("--no-drop", action="store_true", help="do not drop the page cache before timed steps")
    ap.add_argument("--no-s3", action="store_true", help="skip the object-storage columns (Ceph gateway)")
    ap.add_argument("--no-mount", action="store_true", help="skip the browse rows (blkvault mount + loop mount)")
    ap.add_argument("--no-delta", action="store_true", help="skip the delta-restore rows")
    ap.add_argument("--no-scale", action="store_true", help="skip bench/scale (the 1 TiB metadata targets)")
    ap.add_argument("--scale-json", help="take the scale targets from this bench/scale JSON instead of running it")
    ap.add_argument("--update-docs", action="store_true",
                    help="after a successful run, rewrite the Latest results of docs/BENCHMARKS.md from it")
    ap.add_argument("--docs-from", metavar="MD",
                    help="only rewrite the Latest results of docs/BENCHMARKS.md from this results Markdown; no run")
    ap.add_argument("--keep-stage", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"), help="where the results go")
    args = ap.parse_args()
    if args.docs_from:
        try:
            update_docs(args.docs_from)
        except (BenchError, OSError) as e:
            sys.exit(f"bench: --docs-from: {e}")
        sys.exit(0)
    if "BLKVAULT" not in os.environ:
        sys.exit("bench: BLKVAULT is not set; run bench/run")
    args.size = parse_size("256M" if args.quick and args.size == "4G" else args.size)
    args.large = parse_size(args.large) if args.large is not None else (0 if args.quick else 64 * GIB)
    work = args.dir or tempfile.mkdtemp(prefix="blkvault-bench-", dir="/var/tmp")
    os.makedirs(work, exist_ok=True)
    if os.listdir(work):
        sys.exit(f"bench: work directory {work} is not empty")
    started = datetime.datetime.now(datetime.timezone.utc)
    results = {"started": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "command": "bench/run " + " ".join(sys.argv[1:]),
               "machine": machine(), "quick": args.quick, "rows": [], "large": [], "changes": [], "identical": [],
               "skipped": {}}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    ok, status = True, 0
    t0 = time.monotonic()
    gateway = None
    try:
        if args.scale_json:
            results["scale"] = json.load(open(args.scale_json))
            results["scale"].pop("per_generation", None)
        elif args.no_scale or args.quick:
            results["skipped"]["scale"] = "--quick" if args.quick else "--no-scale"
        else:
            run_scale(results)
        if args.no_s3:
            results["skipped"]["s3"] = "--no-s3"
        else:
            # The image's data twice (blkvault and restic) in the memstore OSD, with room.
            gateway = CephGateway(work, store_bytes=3 * args.size)
            log("object storage: starting the Ceph gateway")
            g0 = time.monotonic()
            why = gateway.start()
            if why:
                gateway = None
                results["skipped"]["s3"] = why
                log(f"object-storage rows SKIPPED: {why}")
            else:
                if args.quick:
                    results["skipped"]["restic-s3"] = "--quick runs blkvault's S3 column only (the S3 targets need a full run)"
                results["s3"] = (f"Ceph RADOS Gateway {gateway.endpoint} (shared/ceph-rgw/start.sh: one mon, one "
                                 f"{os.environ.get('OBJECTSTORE', 'memstore')} OSD; beast restarted with "
                                 f"tcp_nodelay=1), started in {time.monotonic() - g0:.1f} s; repository = bytes in "
                                 "the bucket (radosgw-admin bucket stats)")
                log(f"object storage: gateway at {gateway.endpoint}")
        run_benchmark(args, work, results, gateway)
    except (BenchError, subprocess.CalledProcessError, OSError) as e:
        ok, status = False, 1
        results["error"] = str(e)
        log(f"FAILED: {e}")
    except (Interrupted, KeyboardInterrupt) as e:
        ok, status = False, 130
        results["error"] = f"interrupted ({e or 'SIGINT'})"
        log(f"interrupted ({e or 'SIGINT'})")
    finally:
        if gateway:
            gateway.stop()
    results["duration_s"] = round(time.monotonic() - t0, 1)
    if results["rows"]:
        add_ratios(results)
        results["targets"] = targets(results) if ok else []
        print_table(results)
    os.makedirs(args.results, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ") + ("-quick" if args.quick else "")
    if ok:
        md = markdown(results)
        header = (f"# blkvault benchmark {results['started']}\n\nCommand: `{results['command']}`  \n"
                  f"Machine: {results['machine']['summary']}  \n"
                  f"Duration: {results['duration_s']:.0f} s\n\n")
        for name in (f"{stamp}.md", "latest.md" if not args.quick else "latest-quick.md"):
            with open(os.path.join(args.results, name), "w") as f:
                f.write(header + md)
    for name in (f"{stamp}.json", "latest.json" if not args.quick else "latest-quick.json"):
        with open(os.path.join(args.results, name), "w") as f:
            json.dump(results, f, indent=1, default=str)
    log(f"results in {args.results}/{stamp}.{{md,json}} (took {results['duration_s']}s)")
    if ok and args.update_docs:
        update_docs(os.path.join(args.results, f"{stamp}.md"))
    if args.keep or not ok:
        log(f"work directory kept: {work}")
    else:
        shutil.rmtree(work)
    sys.exit(status)


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    versions = {}
    for tool, argv in (("borg", ["borg", "--version"]), ("restic", ["restic", "version"]),
                       ("zstd", ["zstd", "--version"]), ("blkvault", [os.environ.get("BLKVAULT", "blkvault"), "--version"])):
        try:
            versions[tool] = subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            versions[tool] = "?"
    load = os.getloadavg()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "kernel": platform.release(),
            "load_before": [round(x, 2) for x in load], "versions": versions,
            "summary": f"{cpu}, {os.cpu_count()} cores, {human(mem)} RAM, Linux {platform.release()}, "
                       f"load average {load[0]:.2f} at start"}


if __name__ == "__main__":
    main()
