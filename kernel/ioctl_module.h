// kernel/ioctl_module.h — the Module that talks to the real veeamblksnap 6.3.
//
// Every Module call becomes one or more ioctls on the control device, marshalled
// into the structs of kernel/abi.h and sent through an IoctlTransport (the real
// ioctl(2) in production, a decoding fake in tests). The module's quirks are
// handled here (SEMANTICS.md §2, §6):
//   - TRACKER_COLLECT, SNAPSHOT_COLLECT and SNAPSHOT_COLLECT_IMAGES are always
//     probed with a NULL array first, then fetched, and re-probed while the count
//     races (ENOBUFS / ENODATA), at most kMaxProbeRounds times;
//   - TRACKER_READ_CBT_MAP is read in chunks of at most read_chunk_bytes and its
//     positive byte-count return is checked;
//   - WAIT_EVENT: ENOENT (timeout) and EINTR are "no event", ESRCH is an error.
// Failed ioctls become Errors "<IOCTL> of <device|snapshot>: <strerror>" whose
// sys_errno() is the module's errno, classified by module_error() (module.h).
//
// Besides the ioctls, it resolves device paths (stat, /sys/dev/block), opens
// image nodes /dev/veeamblksnapimg<minor> (waiting for udev, or making a private
// node), and maps diff-storage files with FIEMAP.
//
// Thread-safety: thread-safe; it holds no mutable state besides the transport,
// which must itself allow concurrent calls.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kernel/abi.h"
#include "kernel/ioctl_transport.h"
#include "kernel/module.h"

namespace blkvault::kernel {

struct IoctlModuleOptions {
  std::string control_path = abi::kControlPath;  // for description() and messages
  std::string dev_dir = "/dev";                  // where image nodes appear
  std::string sys_dev_block_dir = "/sys/dev/block";
  // How long open_image() waits for udev to create the image node before it
  // makes its own node in a private temporary directory.
  uint32_t image_node_wait_ms = 5000;
  // Bytes per TRACKER_READ_CBT_MAP call. REQUIRES: > 0.
  uint32_t read_chunk_bytes = 1u << 20;
};

// The error IoctlModule::open reports for a failed open(2) of the control node:
// ENOENT/ENODEV/ENXIO -> kModule with a "modprobe veeamblksnap" hint,
// EACCES/EPERM -> kPermission "(run as root)", anything else -> kModule.
Error control_open_error(const std::string& control_path, int err);

class IoctlModule final : public Module {
 public:
  static constexpr int kMaxProbeRounds = 64;

  // Opens the control node and issues VERSION once (its answer is shown by
  // description()). Errors: control_open_error(); a failed VERSION is kModule
  // "VERSION of <path>: <strerror>". Does not check the version: open_module does.
  static Result<std::unique_ptr<Module>> open(const std::string& control_path);

  // For tests and special setups: a module over any transport. No ioctl is issued.
  static std::unique_ptr<IoctlModule> with_transport(std::unique_ptr<IoctlTransport> transport,
                                                     IoctlModuleOptions options = {});

  IoctlModule(const IoctlModule&) = delete;
  IoctlModule& operator=(const IoctlModule&) = delete;

  std::string description() const override;
  Result<Version> version() override;
  Result<DevId> device_id(const std::string& path) override;
  Result<std::string> device_path(DevId dev) override;
  Result<std::vector<CbtInfo>> tracked_devices() override;
  Status read_cbt_map(DevId dev, uint32_t offset_blocks, std::span<uint8_t> out) override;
  Status mark_dirty(DevId dev, std::span<const SectorRange> ranges) override;
  Status remove_tracker(DevId dev) override;
  Result<Uuid> create_snapshot(std::span<const DevId> devices) override;
  Status destroy_snapshot(const Uuid& id) override;
  Status append_storage(const Uuid& id, DevId storage_dev, std::span<const SectorRange> ranges) override;
  Status take_snapshot(const Uuid& id) override;
  Result<std::vector<Uuid>> snapshots() override;
  Result<std::vector<ImageInfo>> snapshot_images(const Uuid& id) override;
  Result<std::optional<Event>> wait_event(const Uuid& id, uint32_t timeout_ms) override;
  Result<std::unique_ptr<ImageReader>> open_image(DevId image) override;
  Result<StorageExtents> map_storage_file(const std::string& path) override;
  Result<StorageExtents> map_storage_device(const std::string& path) override;

 private:
  IoctlModule(std::unique_ptr<IoctlTransport> transport, IoctlModuleOptions options);

  // Sends one request; on failure returns module_error(<name of nr>, subject, errno).
  Result<int> call(unsigned long request, void* arg, const std::string& subject);

  std::unique_ptr<IoctlTransport> transport_;
  IoctlModuleOptions options_;
  std::optional<Version> opened_version_;  // set once by open(), then read-only
};

}  // namespace blkvault::kernel
