#!/usr/bin/env python3
"""bench/bench.py — the benchmark behind bench/run (issue 7, docs/BENCHMARKS.md).

Builds one seeded ext4 image, then runs every operation for blkvault, borg,
restic, zstd and a plain read on it, one after the other, dropping the page cache
before each timed step when the machine allows. Prints a table and writes it as
Markdown and JSON under bench/results/. Fails (exit 1) when a step fails or a
restore is not byte-identical; timings never fail it.

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
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
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


# ---------------------------------------------------------------- the tools

class Tools:
    """The command lines of every tool, each with its own repository under work/."""

    def __init__(self, work, image):
        self.work, self.image = work, image
        self.bv = os.environ["BLKVAULT"]
        self.bv_repo = os.path.join(work, "repo-blkvault")
        self.borg_repo = os.path.join(work, "repo-borg")
        self.restic_repo = os.path.join(work, "repo-restic")
        pw = os.path.join(work, "restic.password")
        with open(pw, "w") as f:
            f.write("bench-password\n")
        self.take_file = os.path.join(work, "take.time")
        # The simulation runs this once the snapshot is taken, before any device
        # is read: the time to take, including the simulated module's
        # fingerprint scan of the image (docs/SIMULATION.md), which the real
        # module does not do.
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

    def init(self, runner):
        runner.run([self.bv, "-q", "init", "--encryption", "none"], env=self.bv_env, timed=False)
        _, _, out = runner.run([self.bv, "--json", "init"], env=self.bv_enc_env, timed=False)
        try:
            self.cipher = json.loads(out).get("encryption")
        except ValueError:
            self.cipher = None
        runner.run(["borg", "init", "-e", "none"], env=self.borg_env, timed=False)
        runner.run(["restic", "-q", "init", "--repository-version", "2"], env=self.restic_env, timed=False)

    def backup(self, tool, n):
        img = os.path.basename(self.image)
        return {
            "blkvault": ([self.bv, "-q", "--json", "backup", self.image], self.bv_env, self.work),
            "blkvault-enc": ([self.bv, "-q", "--json", "backup", self.image], self.bv_enc_env, self.work),
            "borg": (["borg", "create", "--chunker-params", "fixed,1048576", "--compression", "zstd,3",
                      f"::g{n}", img], self.borg_env, self.work),
            "restic": (["restic", "-q", "backup", "--host", "bench", img], self.restic_env, self.work),
        }[tool]

    def restore(self, tool, out_dir):
        os.makedirs(out_dir, exist_ok=True)
        img = os.path.basename(self.image)
        if tool in ("blkvault", "blkvault-enc"):
            target = os.path.join(out_dir, img)
            env = self.bv_env if tool == "blkvault" else self.bv_enc_env
            return ([self.bv, "-q", "restore", "--device", self.image, "--to", target], env, out_dir), target
        if tool == "borg":
            return (["borg", "extract", "--sparse", "::g3"], self.borg_env, out_dir), os.path.join(out_dir, img)
        return ((["restic", "-q", "restore", "latest", "--target", out_dir], self.restic_env, out_dir),
                os.path.join(out_dir, img))

    def verify(self, tool):
        return {
            "blkvault": ([self.bv, "-q", "verify", "--data"], self.bv_env, self.work),
            "blkvault-enc": ([self.bv, "-q", "verify", "--data"], self.bv_enc_env, self.work),
            "borg": (["borg", "check", "--verify-data"], self.borg_env, self.work),
            "restic": (["restic", "-q", "check", "--read-data"], self.restic_env, self.work),
        }[tool]

    def repo_bytes(self, tool):
        return tree_bytes({"blkvault": self.bv_repo, "blkvault-enc": self.bv_enc_repo, "borg": self.borg_repo,
                           "restic": self.restic_repo}[tool])


PEERS = ("blkvault", "blkvault-enc", "borg", "restic")
NOTES = {
    "blkvault": "1 MiB fixed chunks, zstd 3, no encryption (`init --encryption none`), simulated module",
    "blkvault-enc": "the same with the default encryption (`init`: authenticated, the cipher in the targets, "
                    "repokey with the default Argon2id cost paid once per command, index in the cache dir)",
    "borg": "borg 1.2, `--chunker-params fixed,1048576 --compression zstd,3`, `-e none`",
    "restic": "restic 0.14, repository v2 (zstd 'auto'), content-defined chunks, always encrypted (AES-256 + Poly1305)",
    "zstd": "`zstd -3 -T0` of the whole image: the compression ceiling",
    "read": "`dd bs=1M` of the whole image to /dev/null: the I/O ceiling",
}


def run_benchmark(args, work, results):
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

    tools = Tools(work, image)
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

    taken = set()
    for n, (op, fraction) in enumerate((("full backup", None), ("1% incremental", 0.01),
                                        ("10% incremental", 0.10)), start=1):
        if fraction is not None:
            extents = plan_changes(image, runs, fraction, used, rng, taken)
            seconds = write_changes(runner, tools.bv_env, image, extents, rng, f"change{n}")
            changed = sum(length for _, length in extents)
            results["changes"].append({"op": op, "extents": len(extents), "bytes": changed,
                                       "fraction_of_used": round(changed / used, 4), "write_s": round(seconds, 2)})
            log(f"changed {human(changed)} ({changed / used:.1%} of the used bytes) in {len(extents)} extents "
                f"through the simulated tracker in {seconds:.1f}s")
        for tool in PEERS:
            row, out = step(op, tool, tools.backup(tool, n))
            row["repo_bytes"] = tools.repo_bytes(tool)
            if tool == "blkvault-enc":
                row["mode"] = json.loads(out)["devices"][0]["mode"]
            if tool == "blkvault":
                try:
                    row["take_s"] = round(float(open(tools.take_file).read()) - runner.last_start_wall, 3)
                    os.unlink(tools.take_file)
                except (OSError, ValueError):
                    pass
                j = json.loads(out)
                dev = j["devices"][0]
                row.update({"read_bytes": j["read_bytes"], "stored_bytes": j["stored_bytes"],
                            "mode": dev["mode"], "device_s": round(dev["duration_s"], 3)})
        if fraction is None:
            zst = os.path.join(work, "disk.img.zst")
            row, _ = step(op, "zstd", (["zstd", "-3", "-T0", "-q", "-f", image, "-o", zst], {}, work))
            row["repo_bytes"] = os.path.getsize(zst)
            os.unlink(zst)
            step(op, "read", (["dd", f"if={image}", "of=/dev/null", "bs=1M", "status=none"], {}, work))

    for tool in PEERS:
        out_dir = os.path.join(work, "restore-" + tool)
        cmd, target = tools.restore(tool, out_dir)
        step("restore latest", tool, cmd)
        check_identical(image, target, tool)
        results["identical"].append(tool)
        log(f"restore of {tool} is byte-identical (cmp)")
        shutil.rmtree(out_dir)
    for tool in PEERS:
        step("verify data", tool, tools.verify(tool))
    results["drop_caches"] = runner.drop and runner.drop_note is None
    results["drop_note"] = runner.drop_note

    if args.large:
        large_image_rss(args, work, runner, results, rng)


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


def add_ratios(results):
    size = results["image"]["size_bytes"]
    for r in results["rows"]:
        base_op = "full backup" if r["tool"] in ("zstd", "read") else r["op"]
        base = find(results["rows"], base_op, "blkvault")
        r["mb_per_s"] = round(size / 1e6 / r["seconds"], 1) if r["seconds"] > 0 else None
        r["ratio"] = round(r["seconds"] / base["seconds"], 2) if base and base["seconds"] > 0 else None


def targets(results):
    """Each target of issue 7: (description, met, figure)."""
    rows = results["rows"]
    t = lambda op, tool: find(rows, op, tool)
    out = []

    def ratio(op, tool, bound, desc, base_op=None):
        a, b = t(op, tool), t(base_op or op, "blkvault")
        if a and b:
            x = a["seconds"] / b["seconds"]
            out.append((desc, x >= bound, f"{x:.2f}×"))

    ratio("full backup", "borg", 3, "full backup ≥ 3× faster than borg")
    ratio("full backup", "restic", 2, "full backup ≥ 2× faster than restic")
    ratio("full backup", "zstd", 1, "full backup no slower than zstd -3 -T0", "full backup")
    ratio("1% incremental", "borg", 30, "1% incremental ≥ 30× faster than borg's")
    ratio("1% incremental", "restic", 30, "1% incremental ≥ 30× faster than restic's")
    inc, full = t("1% incremental", "blkvault"), t("full backup", "blkvault")
    if inc and full:
        x = inc["seconds"] / full["seconds"]
        out.append(("1% incremental < 5% of blkvault's full backup", x < 0.05, f"{x:.1%}"))
        if "take_s" in inc and "take_s" in full:
            # The same two targets without the simulated module's take (its
            # fingerprint scan reads the whole image; the kernel module does not).
            after = inc["seconds"] - inc["take_s"]
            for peer in ("borg", "restic"):
                p = t("1% incremental", peer)
                if p:
                    y = p["seconds"] / after
                    out.append((f"(without the simulated take) 1% incremental ≥ 30× faster than {peer}'s",
                                y >= 30, f"{y:.1f}×"))
            y = after / (full["seconds"] - full["take_s"])
            out.append(("(without the simulated take) 1% incremental < 5% of the full backup", y < 0.05, f"{y:.1%}"))
    for op in ("full backup", "restore latest"):
        a, b = t(op, "blkvault-enc"), t(op, "blkvault")
        if a and b:
            x = a["seconds"] / b["seconds"]
            out.append((f"encrypted {op} within 10% of unencrypted ({results.get('cipher') or 'cipher unknown'})",
                        x <= 1.10, f"{x:.2f}×"))
    ratio("restore latest", "borg", 2, "restore ≥ 2× faster than borg extract")
    ratio("restore latest", "restic", 2, "restore ≥ 2× faster than restic restore")
    ratio("verify data", "borg", 2, "verify --data ≥ 2× faster than borg check --verify-data")
    ratio("verify data", "restic", 2, "verify --data ≥ 2× faster than restic check --read-data")
    for op in ("full backup", "1% incremental", "10% incremental"):
        a, b = t(op, "blkvault"), t(op, "borg")
        if a and b:
            x = a["repo_bytes"] / b["repo_bytes"]
            out.append((f"repository ≤ 1.05× borg's after the {op}", x <= 1.05, f"{x:.3f}×"))
    bv = [r for r in rows + results["large"] if r["tool"] in ("blkvault", "blkvault-enc")]
    if bv:
        peak = max(r["rss_bytes"] for r in bv)
        out.append(("peak RSS < 200 MiB in every blkvault step", peak < 200 * MIB, human(peak)))
    if results["large"]:
        growth = max(lg["rss_bytes"] / t(lg["op"], "blkvault")["rss_bytes"] for lg in results["large"])
        out.append((f"RSS grows < 10% from {human(results['image']['size_bytes'])} to "
                    f"{human(results['large'][0]['size_bytes'])} (sparse)", growth < 1.10, f"{growth - 1:+.1%}"))
    return out


def markdown(results):
    img = results["image"]
    lines = [f"Image: {human(img['size_bytes'])} ext4, {img['used_fraction']:.0%} used, {img['files']} files, "
             f"seed {img['seed']} (sha256 `{img['sha256'][:16]}…`). "
             f"Page cache {'dropped before every timed step' if results['drop_caches'] else 'NOT dropped: ' + str(results['drop_note'])}. "
             "MB/s = device size (10^6 bytes) / seconds; ratio = seconds / blkvault's seconds for the same "
             "operation (zstd and read: / blkvault's full backup), so above 1 means blkvault was faster.", "",
             "| operation | tool | seconds | MB/s | ratio | peak RSS | repository |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        repo = human(r["repo_bytes"]) if "repo_bytes" in r else ""
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else ""
        lines.append(f"| {r['op']} | {r['tool']} | {r['seconds']:.2f} | {r['mb_per_s'] or ''} | {ratio} | "
                     f"{human(r['rss_bytes'])} | {repo} |")
    if results["large"]:
        lines += ["", f"blkvault on a {human(results['large'][0]['size_bytes'])} sparse image with the same files:", "",
                  "| operation | seconds | peak RSS |", "|---|---:|---:|"]
        for r in results["large"]:
            lines.append(f"| {r['op']} | {r['seconds']:.2f} | {human(r['rss_bytes'])} |")
    lines += ["", "Changes (in-place rewrites of file data through `blkvault sim write --extents`):", ""]
    for c in results["changes"]:
        lines.append(f"- before the {c['op']}: {human(c['bytes'])} in {c['extents']} extents "
                     f"({c['fraction_of_used']:.1%} of the used bytes)")
    bv = [r for r in results["rows"] if r["tool"] == "blkvault" and "read_bytes" in r]
    for r in bv:
        take = (f"; the snapshot was taken {r['take_s']:.2f} s after the start (the simulated module's take, "
                f"with its fingerprint scan of the image)" if "take_s" in r else "")
        lines.append(f"- blkvault {r['op']}: {r['mode']}, read {human(r['read_bytes'])}, stored "
                     f"{human(r['stored_bytes'])}; reading and storing the device took {r['device_s']:.2f} s of the "
                     f"{r['seconds']:.2f} s{take}")
    lines += ["", "Targets:", ""]
    for desc, met, fig in results["targets"]:
        lines.append(f"- {'met' if met else '**missed**'}: {desc} ({fig})")
    lines += ["", "Tools:", ""] + [f"- {k}: {v}" for k, v in NOTES.items()]
    lines += ["", f"Restores compared byte for byte (cmp): {', '.join(results['identical'])}: identical."]
    return "\n".join(lines) + "\n"


def print_table(results):
    print(f"\n{'operation':<16} {'tool':<12} {'seconds':>8} {'MB/s':>8} {'ratio':>6} {'peak RSS':>10} {'repository':>11}")
    for r in results["rows"]:
        print(f"{r['op']:<16} {r['tool']:<12} {r['seconds']:>8.2f} {r['mb_per_s'] or 0:>8.1f} "
              f"{r['ratio'] if r['ratio'] is not None else '':>6} {human(r['rss_bytes']):>10} "
              f"{human(r['repo_bytes']) if 'repo_bytes' in r else '':>11}")
    for r in results["large"]:
        print(f"large {human(r['size_bytes'])} {r['op']:<16} blkvault {r['seconds']:.2f}s {human(r['rss_bytes'])}")
    print()
    if results["quick"]:
        print("  targets (informational only: a --quick image is too small to judge them)")
    for desc, met, fig in results["targets"]:
        print(f"  {'met   ' if met else 'MISSED'} {desc}: {fig}")


def main():
    ap = argparse.ArgumentParser(prog="bench/run", description="blkvault vs borg, restic and zstd on one seeded ext4 image")
    ap.add_argument("--size", default="4G", help="image size (default 4G; --quick: 256M)")
    ap.add_argument("--quick", action="store_true", help="small image, no large-image step (CI smoke test)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--dir", help="work directory (default: a new one under /var/tmp)")
    ap.add_argument("--seed", type=int, default=7, help="seed of the image and of the changes (default 7)")
    ap.add_argument("--large", default=None, help="size of the sparse RSS-growth image (default 64G; 0: skip)")
    ap.add_argument("--no-drop", action="store_true", help="do not drop the page cache before timed steps")
    ap.add_argument("--keep-stage", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"), help="where the results go")
    args = ap.parse_args()
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
               "machine": machine(), "quick": args.quick, "rows": [], "large": [], "changes": [], "identical": []}
    ok = True
    t0 = time.monotonic()
    try:
        run_benchmark(args, work, results)
    except BenchError as e:
        ok = False
        results["error"] = str(e)
        log(f"FAILED: {e}")
    except subprocess.CalledProcessError as e:
        ok = False
        results["error"] = str(e)
        log(f"FAILED: {e}")
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
                  f"Machine: {results['machine']['summary']}\n\n")
        for name in (f"{stamp}.md", "latest.md" if not args.quick else "latest-quick.md"):
            with open(os.path.join(args.results, name), "w") as f:
                f.write(header + md)
    for name in (f"{stamp}.json", "latest.json" if not args.quick else "latest-quick.json"):
        with open(os.path.join(args.results, name), "w") as f:
            json.dump(results, f, indent=1, default=str)
    log(f"results in {args.results}/{stamp}.{{md,json}} (took {results['duration_s']}s)")
    if args.keep or not ok:
        log(f"work directory kept: {work}")
    else:
        shutil.rmtree(work)
    sys.exit(0 if ok else 1)


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
