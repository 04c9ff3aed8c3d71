// `blkvault demo`: the main job, end to end, on the simulated kernel module.
//
// It runs the real executable for every step and prints each command, so the
// demo doubles as a tutorial: make an ext4 image, back it up (full), change
// files in it, back it up again (incremental, reading only what changed),
// restore both generations, compare them byte for byte with copies taken at
// snapshot time, fsck them, and verify every stored byte.
#include <cstdlib>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "app/commands.h"
#include "app/subprocess.h"
#include "common/file_io.h"

namespace blkvault::app {
namespace fs = std::filesystem;
namespace {

class Demo {
 public:
  Demo(Context& ctx, std::string exe, std::string dir) : ctx_(ctx), exe_(std::move(exe)), dir_(std::move(dir)) {}

  Status run(uint64_t size) {
    image_ = dir_ + "/disk.img";
    repo_ = dir_ + "/repo";
    sim_ = "sim:" + dir_ + "/sim";
    bool ext4 = program_available("mkfs.ext4") && program_available("debugfs");

    step("1. Make a " + format_bytes(size) + (ext4 ? " ext4 filesystem image with files in it" : " image of generated data"));
    if (ext4) {
      BLKVAULT_TRY(make_ext4(size));
    } else {
      BLKVAULT_TRY(make_generated(size));
    }

    step("2. Create a repository");
    // The repository is encrypted, as by default; the demo's passphrase is in
    // the environment of the commands it runs (unless BLKVAULT_PASSWORD is set).
    ::setenv("BLKVAULT_PASSWORD", "blkvault demo passphrase", /*overwrite=*/0);
    ::setenv("BLKVAULT_CACHE_DIR", (dir_ + "/cache").c_str(), 1);
    BLKVAULT_TRY(blkvault({"init", "--repo", repo_}));

    step("3. Full backup through the simulated veeamblksnap module");
    BLKVAULT_TRY_ASSIGN(auto first, backup());
    BLKVAULT_TRY(copy_file(image_, dir_ + "/expected-1.img"));

    step(ext4 ? "4. Change files in the filesystem (debugfs writes the image directly; the simulation detects it)"
              : "4. Change blocks through the simulated module's tracked write path");
    if (ext4) {
      BLKVAULT_TRY(change_ext4());
    } else {
      BLKVAULT_TRY(change_generated(size));
    }

    step("5. Incremental backup: only the changed blocks are read");
    BLKVAULT_TRY_ASSIGN(auto second, backup());
    BLKVAULT_TRY(copy_file(image_, dir_ + "/expected-2.img"));

    step("6. Restore both generations and compare them with the images at backup time");
    for (auto [gen, expected] : {std::pair{first, std::string("expected-1.img")}, std::pair{second, std::string("expected-2.img")}}) {
      std::string target = fmt::format("{}/restored-{}.img", dir_, gen.generation);
      BLKVAULT_TRY(blkvault({"restore", "--repo", repo_, "--generation", std::to_string(gen.generation), "--device",
                             image_, "--to", target}));
      BLKVAULT_TRY(compare(target, dir_ + "/" + expected));
      if (ext4) BLKVAULT_TRY(fsck(target));
    }

    step("7. Verify every stored byte");
    BLKVAULT_TRY(blkvault({"verify", "--data", "--repo", repo_}));

    step("8. What the repository holds");
    BLKVAULT_TRY(blkvault({"list", "--repo", repo_}));

    double ratio = second.read_bytes ? static_cast<double>(size) / static_cast<double>(second.read_bytes) : 0;
    ctx_.out.result(fmt::format(
        "\nDemo passed.\n"
        "  full backup:        read {} of {}, stored {}\n"
        "  incremental backup: read {} ({:.1f}x less than the device), stored {} new\n"
        "  both generations restored byte-identical{}; verify --data clean.\n",
        format_bytes(first.read_bytes), format_bytes(size), format_bytes(first.stored_bytes),
        format_bytes(second.read_bytes), ratio, format_bytes(second.stored_bytes),
        ext4 ? " and fsck-clean" : ""));
    return {};
  }

 private:
  struct BackupFigures {
    int64_t generation = 0;
    uint64_t read_bytes = 0;
    uint64_t stored_bytes = 0;
  };

  void step(const std::string& what) { ctx_.out.result("\n== " + what); }

  Status run_checked(const std::vector<std::string>& argv, std::string* captured = nullptr) {
    std::string shown;
    for (const auto& a : argv) shown += (shown.empty() ? "" : " ") + a;
    ctx_.out.result("$ " + shown);
    BLKVAULT_TRY_ASSIGN(auto r, run_process(argv, captured != nullptr));
    if (captured) *captured = r.stdout_text;
    if (r.exit_status != 0) {
      return fail(ErrorCode::kIo, fmt::format("demo step failed: '{}' exited with status {}", shown, r.exit_status));
    }
    return {};
  }

  Status blkvault(std::vector<std::string> args, std::string* captured = nullptr) {
    args.insert(args.begin(), exe_);
    if (captured) args.push_back("--json");
    return run_checked(args, captured);
  }

  Result<BackupFigures> backup() {
    std::string json_text;
    // Difference storage: the simulated module asks for 1 GiB; a demo needs far less.
    BLKVAULT_TRY(blkvault({"backup", "--repo", repo_, "--module", sim_, "--diff-storage-size", "64M",
                           "--diff-storage-limit", "256M", image_},
                          &json_text));
    BackupFigures f;
    try {
      auto j = nlohmann::json::parse(json_text);
      f.generation = j.at("generation").get<int64_t>();
      f.read_bytes = j.at("read_bytes").get<uint64_t>();
      f.stored_bytes = j.at("stored_bytes").get<uint64_t>();
      for (const auto& d : j.at("devices")) {
        ctx_.out.result(fmt::format("   {}: {} backup{}, read {} of {}", d.at("name").get<std::string>(),
                                    d.at("mode").get<std::string>(),
                                    d.at("reason").is_string() ? " (" + d.at("reason").get<std::string>() + ")" : "",
                                    format_bytes(d.at("read_bytes").get<uint64_t>()),
                                    format_bytes(d.at("size_bytes").get<uint64_t>())));
      }
    } catch (const std::exception& e) {
      return fail(ErrorCode::kInternal, fmt::format("demo: unexpected backup --json output: {}", e.what()));
    }
    return f;
  }

  Status make_generated(uint64_t size) {
    std::mt19937_64 rng(42);
    BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(image_, O_WRONLY | O_CREAT | O_EXCL, 0600));
    std::vector<uint8_t> block(1 << 20);
    for (uint64_t off = 0; off < size; off += block.size()) {
      const uint64_t kind = (off >> 20) % 4;  // random, text-like, zero, duplicate
      for (size_t i = 0; i < block.size(); i += 8) {
        uint64_t v = kind == 0 ? rng() : kind == 1 ? 0x2065687420666f20ull + (i & 0xff) : kind == 2 ? 0 : i * 31;
        std::memcpy(block.data() + i, &v, 8);
      }
      BLKVAULT_TRY(pwrite_full(fd.get(), {block.data(), std::min<uint64_t>(block.size(), size - off)}, off, image_));
    }
    return fd.close(image_);
  }

  Status make_ext4(uint64_t size) {
    std::string staging = dir_ + "/files";
    fs::create_directories(staging + "/etc");
    fs::create_directories(staging + "/data");
    std::mt19937_64 rng(42);
    static const char* kWords[] = {"block", "device", "snapshot", "backup", "chunk", "restore", "kernel", "extent"};
    for (int f = 0; f < 40; ++f) {
      std::ofstream out(fmt::format("{}/etc/config-{:02}.txt", staging, f));
      for (int line = 0; line < 2000; ++line) out << kWords[rng() % 8] << ' ' << kWords[rng() % 8] << ' ' << rng() % 1000 << '\n';
    }
    const uint64_t data_budget = size / 3;
    for (uint64_t f = 0, written = 0; written < data_budget; ++f) {
      std::ofstream out(fmt::format("{}/data/blob-{:03}.bin", staging, f), std::ios::binary);
      std::vector<uint64_t> buf(512 << 10 >> 3);
      for (auto& v : buf) v = rng();
      out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(buf.size() * 8));
      written += buf.size() * 8;
    }
    fs::copy(staging + "/etc", staging + "/etc-copy", fs::copy_options::recursive);  // duplicate content
    BLKVAULT_TRY(run_checked({"truncate", "-s", std::to_string(size), image_}));
    return run_checked({"mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", staging, image_});
  }

  Status change_ext4() {
    std::string note = dir_ + "/files/note.txt";
    {
      std::ofstream out(note);
      for (int i = 0; i < 20000; ++i) out << "changed after the first backup, line " << i << '\n';
    }
    BLKVAULT_TRY(run_checked({"debugfs", "-w", "-R", "write " + note + " /note.txt", image_}));
    BLKVAULT_TRY(run_checked({"debugfs", "-w", "-R", "rm /etc/config-07.txt", image_}));
    return run_checked({"debugfs", "-w", "-R", "mkdir /new-dir", image_});
  }

  Status change_generated(uint64_t size) {
    std::string patch = dir_ + "/patch.bin";
    {
      std::ofstream out(patch, std::ios::binary);
      for (int i = 0; i < 100000; ++i) out << "patched ";
    }
    return run_checked({"sh", "-c",
                        fmt::format("'{}' sim write --module '{}' '{}' --offset {} < '{}'", exe_, sim_, image_,
                                    size / 2, patch)});
  }

  Status copy_file(const std::string& from, const std::string& to) {
    std::error_code ec;
    fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
    if (ec) return fail(ErrorCode::kIo, fmt::format("copying {} to {}: {}", from, to, ec.message()));
    return {};
  }

  Status compare(const std::string& a, const std::string& b) {
    BLKVAULT_TRY(run_checked({"cmp", a, b}));
    ctx_.out.result("   identical");
    return {};
  }

  Status fsck(const std::string& image) { return run_checked({"e2fsck", "-fn", image}); }

  Context& ctx_;
  std::string exe_, dir_, image_, repo_, sim_;
};

}  // namespace

Status cmd_demo(Context& ctx, const DemoOptions& opts, const std::string& self_exe) {
  BLKVAULT_TRY_ASSIGN(uint64_t size, parse_size(opts.size));
  if (size < (32ull << 20)) return fail(ErrorCode::kInvalidArgument, "demo --size must be at least 32M");
  std::string dir = opts.dir;
  bool temporary = dir.empty();
  if (temporary) {
    std::string tmpl = (fs::temp_directory_path() / "blkvault-demo-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) return fail_errno("creating a temporary directory");
    dir = tmpl;
  } else {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return fail(ErrorCode::kIo, fmt::format("creating {}: {}", dir, ec.message()));
    if (!fs::is_empty(dir)) return fail(ErrorCode::kInvalidArgument, fmt::format("demo directory {} is not empty", dir));
  }
  ctx.out.result("blkvault demo in " + dir);
  Demo demo(ctx, self_exe, dir);
  Status st = demo.run(size);
  if (temporary && !opts.keep && st) {
    fs::remove_all(dir);
  } else {
    ctx.out.note("work directory kept: " + dir);
  }
  return st;
}

}  // namespace blkvault::app
