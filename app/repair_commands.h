// app/repair_commands.h — `blkvault repair index` and `blkvault repair packs`
// (repo/repair.h, docs/ADMIN.md "Maintenance: repair"), and the two hooks a
// backup uses to store again the chunks repair moved aside. Registers on the
// CLI and runs whichever was given (the pattern of SimCommands).
// Thread-safety: single-threaded (the command's thread).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "app/pipeline.h"
#include "repo/repair.h"

namespace blkvault::app {

struct RepairOptions {
  bool apply = false;  // without: report only, change nothing
};
// Exit status 3 (kCorrupt) when something is wrong and was not repaired.
Status cmd_repair_index(Context& ctx, const RepairOptions& opts);
Status cmd_repair_packs(Context& ctx, const RepairOptions& opts);

// `extents` (sorted, chunk-aligned, as run_pipeline wants them) with every
// chunk of `missing` (one device's) added: the ranges a backup must re-read
// whatever the CBT says, so that chunks no pack holds are stored again.
std::vector<ByteExtent> add_rereads(std::vector<ByteExtent> extents, const std::vector<repo::MissingChunk>& missing,
                                    uint64_t chunk_size, uint64_t device_size);

// After `committed`: tells which of the chunks `device` was missing before the
// backup (`before`) were stored again (a note) and which the source no longer
// holds, naming the generations that stay damaged (a warning each).
void report_rereads(Output& out, repo::Repository& repository, const repo::GenerationInfo& committed,
                    const std::string& device, const std::vector<repo::MissingChunk>& before);

class RepairCommands {
 public:
  void add_to(CLI::App& cli);
  bool parsed() const;
  Status run(Context& ctx);

 private:
  CLI::App* repair_ = nullptr;
  CLI::App* index_ = nullptr;
  CLI::App* packs_ = nullptr;
  RepairOptions index_opts_;
  RepairOptions packs_opts_;
};

}  // namespace blkvault::app
