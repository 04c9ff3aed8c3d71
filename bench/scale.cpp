// bench/scale.cpp — the metadata-only scale benchmark of issue 7 (bench/scale
// runs it; docs/BENCHMARKS.md has the results).
//
// Drives repo::Repository's GenerationWriter directly, the way a backup does,
// on a simulated device of --size bytes (default 1 TiB) with the repository's
// chunk size (--chunk-size, default 1 MiB, the repository default): every
// generation changes --change of the chunks (default 1%) at seeded random
// indices, --generations times (default 100). Only the changed chunks are put
// (what an incremental backup reads); the first generation is a full image
// whose other chunks are zeros. Chunk data is synthetic and cheap: zeros with a
// 24-byte stamp (seed, generation, index) at the start, so every chunk is
// distinct, not all-zero, and compresses to a few dozen bytes: the figures are
// those of the metadata (index rows, manifests, pack trailers), not of data.
//
// Prints one line per generation (index bytes added, manifest bytes, commit
// time) and a summary; with --json FILE, also writes the figures as JSON.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "repo/repository.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;
using namespace blkvault;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

uint64_t file_bytes(const fs::path& p) {
  std::error_code ec;
  auto n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

uint64_t tree_bytes(const fs::path& p) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::recursive_directory_iterator(); ++it) {
    if (it->is_regular_file(ec)) total += file_bytes(it->path());
  }
  return total;
}

// Current resident set (VmRSS) in bytes.
uint64_t rss_now() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

uint64_t rss_peak() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

uint64_t parse_size(std::string s) {
  uint64_t mult = 1;
  if (!s.empty()) {
    switch (s.back()) {
      case 'K': mult = 1ull << 10; break;
      case 'M': mult = 1ull << 20; break;
      case 'G': mult = 1ull << 30; break;
      case 'T': mult = 1ull << 40; break;
      default: break;
    }
    if (mult != 1) s.pop_back();
  }
  return std::stoull(s) * mult;
}

struct Options {
  std::string dir;
  uint64_t size = 1ull << 40;
  uint64_t chunk = 1ull << 20;
  double change = 0.01;
  int generations = 100;
  uint64_t seed = 7;
  std::string json;
  bool plan_only = false;
};

int usage() {
  std::fprintf(stderr,
               "usage: blkvault_scale --dir DIR [--size 1T] [--chunk-size 1M] [--change 0.01] [--generations 100]\n"
               "                      [--seed 7] [--json FILE]\n"
               "DIR must not exist or be empty; the repository is created in it.\n");
  return 2;
}

// Puts `indices` of generation `gen` from `threads` threads, like the pipeline.
Status put_all(repo::DeviceWriter& dw, const std::vector<uint64_t>& indices, const Options& o, uint64_t gen,
               size_t threads) {
  std::vector<std::thread> pool;
  std::vector<Status> results(threads);
  for (size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::vector<uint8_t> buf(o.chunk, 0);
      for (size_t i = t; i < indices.size(); i += threads) {
        const uint64_t stamp[3] = {o.seed, gen, indices[i]};
        std::memcpy(buf.data(), stamp, sizeof stamp);
        if (Status st = dw.put(indices[i], buf); !st) {
          results[t] = std::move(st);
          return;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& r : results) {
    if (!r) return r;
  }
  return {};
}

// --plan-only: times device_image of the last generation of an existing repository.
int plan_only(const Options& o) {
  auto opened = repo::Repository::open(o.dir, repo::OpenOptions{});
  if (!opened) {
    std::fprintf(stderr, "blkvault_scale: open: %s\n", opened.error().message().c_str());
    return 1;
  }
  for (int i = 0; i < 3; ++i) {
    const auto t0 = Clock::now();
    auto image = (*opened)->device_image(static_cast<repo::GenerationId>(o.generations), "/dev/scale");
    if (!image) {
      std::fprintf(stderr, "blkvault_scale: device_image: %s\n", image.error().message().c_str());
      return 1;
    }
    fmt::print("plan of generation {}: {:.3f} s ({} chunks), RSS {:.1f} MiB\n", o.generations, since(t0),
               image->chunks.size(), static_cast<double>(rss_now()) / (1 << 20));
  }
  return 0;
}

int run(const Options& o) {
  if (o.plan_only) return plan_only(o);
  if (Status st = repo::init_repository(o.dir, repo::InitOptions{.chunk_size = o.chunk}); !st) {
    std::fprintf(stderr, "blkvault_scale: init %s: %s\n", o.dir.c_str(), st.error().message().c_str());
    return 1;
  }
  const std::string device = "/dev/scale";
  const uint64_t chunks = (o.size + o.chunk - 1) / o.chunk;
  const auto per_gen = static_cast<uint64_t>(static_cast<double>(chunks) * o.change);
  const size_t threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 2, 16);
  const fs::path index = fs::path(o.dir) / "index.sqlite";
  std::mt19937_64 rng(o.seed);
  nlohmann::json gens = nlohmann::json::array();
  fmt::print("scale: {} device, {} chunks of {} KiB, {} changed per generation ({:.2f}%), {} generations, seed {}\n",
             o.size, chunks, o.chunk >> 10, per_gen, o.change * 100, o.generations, o.seed);
  fmt::print("{:>4} {:>12} {:>12} {:>9} {:>9} {:>9}\n", "gen", "index +B", "manifest B", "puts s", "commit s",
             "RSS MiB");
  const auto t_all = Clock::now();
  double commit_total = 0, commit_max = 0;
  uint64_t index_before = 0;
  {
    auto opened = repo::Repository::open(o.dir, repo::OpenOptions{.write = true});
    if (!opened) {
      std::fprintf(stderr, "blkvault_scale: open: %s\n", opened.error().message().c_str());
      return 1;
    }
    auto& r = **opened;
    index_before = file_bytes(index) + file_bytes(index.string() + "-wal");
    uint64_t prev_index = index_before;
    for (int g = 1; g <= o.generations; ++g) {
      std::unordered_set<uint64_t> pick;
      std::uniform_int_distribution<uint64_t> any(0, chunks - 1);
      while (pick.size() < per_gen) pick.insert(any(rng));
      std::vector<uint64_t> indices(pick.begin(), pick.end());
      std::sort(indices.begin(), indices.end());

      auto w = r.begin_generation("scale", "bench");
      if (!w) {
        std::fprintf(stderr, "blkvault_scale: begin: %s\n", w.error().message().c_str());
        return 1;
      }
      auto dw = (*w)->add_device(device, o.size, /*inherit=*/g > 1);
      if (!dw) {
        std::fprintf(stderr, "blkvault_scale: add_device: %s\n", dw.error().message().c_str());
        return 1;
      }
      (*dw)->set_mode(g > 1 ? "incremental" : "full", g > 1 ? "" : "scale benchmark", per_gen * o.chunk);
      (*dw)->set_baseline("scale " + std::to_string(g));
      const auto t_put = Clock::now();
      if (Status st = put_all(**dw, indices, o, static_cast<uint64_t>(g), threads); !st) {
        std::fprintf(stderr, "blkvault_scale: put: %s\n", st.error().message().c_str());
        return 1;
      }
      const double put_s = since(t_put);
      const auto t_commit = Clock::now();
      auto info = (*w)->commit(false);
      const double commit_s = since(t_commit);
      if (!info) {
        std::fprintf(stderr, "blkvault_scale: commit: %s\n", info.error().message().c_str());
        return 1;
      }
      commit_total += commit_s;
      commit_max = std::max(commit_max, commit_s);
      const uint64_t idx = file_bytes(index) + file_bytes(index.string() + "-wal");
      char name[32];
      std::snprintf(name, sizeof name, "%020llu", static_cast<unsigned long long>(info->id));
      const uint64_t manifest = file_bytes(fs::path(o.dir) / "manifests" / name);
      fmt::print("{:>4} {:>12} {:>12} {:>9.3f} {:>9.3f} {:>9.1f}\n", g, static_cast<int64_t>(idx - prev_index),
                 manifest, put_s, commit_s, static_cast<double>(rss_now()) / (1 << 20));
      gens.push_back({{"generation", info->id}, {"index_bytes_added", static_cast<int64_t>(idx - prev_index)},
                      {"index_bytes", idx}, {"manifest_bytes", manifest}, {"put_s", put_s},
                      {"commit_s", commit_s}, {"rss_bytes", rss_now()}});
      prev_index = idx;
    }
  }
  const double build_s = since(t_all);
  const uint64_t rss_after_writes = rss_peak();

  // A restore's plan, in a freshly opened repository: the map of the last generation.
  const auto t_open = Clock::now();
  auto opened = repo::Repository::open(o.dir, repo::OpenOptions{});
  if (!opened) {
    std::fprintf(stderr, "blkvault_scale: reopen: %s\n", opened.error().message().c_str());
    return 1;
  }
  const double open_s = since(t_open);
  const uint64_t rss_before_plan = rss_now();
  const auto t_plan = Clock::now();
  auto image = (*opened)->device_image(static_cast<repo::GenerationId>(o.generations), device);
  const double plan_s = since(t_plan);
  if (!image) {
    std::fprintf(stderr, "blkvault_scale: device_image: %s\n", image.error().message().c_str());
    return 1;
  }
  const uint64_t rss_plan = rss_now();
  const uint64_t index_final = file_bytes(index) + file_bytes(index.string() + "-wal");
  const uint64_t manifests = tree_bytes(fs::path(o.dir) / "manifests");
  const uint64_t packs = tree_bytes(fs::path(o.dir) / "packs");
  const double per_gen_index = static_cast<double>(index_final - index_before) / o.generations;
  fmt::print("index: {} bytes after {} generations, {:.0f} bytes per generation ({:.1f} per changed chunk)\n",
             index_final, o.generations, per_gen_index, per_gen_index / static_cast<double>(per_gen));
  fmt::print("manifests: {} bytes; packs: {} bytes\n", manifests, packs);
  fmt::print("commit: mean {:.3f} s, max {:.3f} s; {} generations written in {:.1f} s\n",
             commit_total / o.generations, commit_max, o.generations, build_s);
  fmt::print("plan a full restore of generation {}: {:.3f} s ({} non-zero chunks), reopening took {:.3f} s\n",
             o.generations, plan_s, image->chunks.size(), open_s);
  fmt::print("RSS: peak while writing {:.1f} MiB; before plan {:.1f} MiB, after plan {:.1f} MiB, peak {:.1f} MiB\n",
             static_cast<double>(rss_after_writes) / (1 << 20), static_cast<double>(rss_before_plan) / (1 << 20),
             static_cast<double>(rss_plan) / (1 << 20), static_cast<double>(rss_peak()) / (1 << 20));
  if (!o.json.empty()) {
    nlohmann::json j = {{"size_bytes", o.size},
                        {"chunk_size", o.chunk},
                        {"chunks", chunks},
                        {"changed_per_generation", per_gen},
                        {"generations", o.generations},
                        {"seed", o.seed},
                        {"index_bytes", index_final},
                        {"index_bytes_per_generation", per_gen_index},
                        {"manifest_bytes", manifests},
                        {"pack_bytes", packs},
                        {"commit_mean_s", commit_total / o.generations},
                        {"commit_max_s", commit_max},
                        {"write_s", build_s},
                        {"reopen_s", open_s},
                        {"plan_s", plan_s},
                        {"plan_chunks", image->chunks.size()},
                        {"rss_peak_writing_bytes", rss_after_writes},
                        {"rss_before_plan_bytes", rss_before_plan},
                        {"rss_after_plan_bytes", rss_plan},
                        {"rss_peak_bytes", rss_peak()},
                        {"per_generation", gens}};
    std::ofstream(o.json) << j.dump(1) << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // one line per generation, as it happens
  Options o;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      if (a == "--dir") o.dir = next();
      else if (a == "--size") o.size = parse_size(next());
      else if (a == "--chunk-size") o.chunk = parse_size(next());
      else if (a == "--change") o.change = std::stod(next());
      else if (a == "--generations") o.generations = std::stoi(next());
      else if (a == "--seed") o.seed = std::stoull(next());
      else if (a == "--json") o.json = next();
      else if (a == "--plan-only") o.plan_only = true;
      else return usage();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "blkvault_scale: %s\n", e.what());
    return usage();
  }
  if (o.dir.empty() || o.generations < 1 || o.change <= 0 || o.change > 1) return usage();
  return run(o);
}
