// blkvault entry point: everything happens in run_cli(); this file only guards
// against an escaped exception so the user still gets one line and an exit code.
#include <malloc.h>

#include <cstdio>
#include <exception>

#include "app/cli.h"

int main(int argc, char** argv) {
  // Buffers of 4 MiB and more (the reader's 8 MiB segments, an upload's 16 MiB
  // parts) come from mmap and go back to the system when freed. With glibc's
  // adaptive threshold they came from the heap of whichever thread allocated
  // them after the first free, and freed ones stayed there, fragmented: a
  // 1.5 GB S3 backup peaked at 160-210 MB. Chunk-sized buffers (1 MiB by
  // default) stay below it and are reused from the heap. `mount` lowers it.
  ::mallopt(M_MMAP_THRESHOLD, 4 << 20);
  // This also fixes the trim threshold at its 128 KiB default, so a freed
  // chunk buffer at the top of a heap goes back to the system: hot loops
  // reuse their buffers instead (restore: ChunkCodec::open_into). A larger
  // trim threshold saved half the remaining page faults of a restore but let
  // its peak RSS wander by +20% between runs (docs/BENCHMARKS.md).
  try {
    return blkvault::app::run_cli(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "blkvault: internal error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "blkvault: internal error: unknown exception\n");
  }
  return blkvault::app::kExitInternal;
}
