// The simulation must agree with the ABI path and with the real module: one
// scripted scenario (sim_ioctl_differential_test's run_scenario) is run against
// several "worlds" and every step's outcome — values, events, CBT infos and maps,
// and for failures the error code, errno and message — is recorded as one line.
// The traces must be identical; every difference is reported with its step.
//
// Worlds:
//   SimWorld(direct)   SimModule itself; writes through SimModule::write.
//   SimWorld(ioctl)    IoctlModule whose ioctls go through the decoding transport
//                      (the kernel side of SEMANTICS.md §0, byte for byte) to a
//                      SimModule; writes through that SimModule.
//   RealWorld          IoctlModule on /dev/veeamblksnap (the real module, only in
//                      the lab VM: tests/kernel-lab/run); the devices are loop
//                      devices and writes are O_DIRECT pwrite + fsync on them, so
//                      the module's filter sees them; diff storage is a fallocated,
//                      FIEMAP-mapped file on the lab's ext4 scratch disk.
// The host runs direct vs ioctl; the lab runs direct vs real.
//
// Made comparable before comparing: snapshot and generation ids are random, so
// each is replaced by its order of first appearance ("<id 1>"); devices are
// named ("<a>", "<b>", "<image of a>") instead of their numbers; the world's
// directory becomes "<root>". Image reads that fail are compared by code and
// errno only (their messages name the image node, which differs by nature).
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "common/file_io.h"
#include "common/unique_fd.h"
#include "decoding_transport_support.h"
#include "kernel/abi.h"
#include "kernel/ioctl_module.h"
#include "kernel/sim_module.h"
#include "loop_device_support.h"
#include "temp_dir.h"

namespace blkvault::kernel {
namespace {

constexpr uint64_t kBlock = 65536;
// diff_storage_minimum (sectors) in every world: small, so that the scenario's
// few chunks cross the low-space threshold (SEMANTICS.md §4).
constexpr uint64_t kDiffStorageMinimumSectors = 2048;

// Records outcomes as lines, with ids, devices and the world's root made comparable.
class Trace {
 public:
  explicit Trace(std::string root) : root_(std::move(root)) {}

  // From now on the device number `dev` ("7:0") reads as "<label>".
  void name(DevId dev, const std::string& label) { names_[to_string(dev)] = "<" + label + ">"; }

  void line(const std::string& step, const std::string& text) {
    lines_.push_back(step + ": " + normalize(text));
    if (print_steps_) {  // as they happen, to place a slow step among kernel messages
      std::printf("[%.3f s] %s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(),
                  lines_.back().c_str());
      std::fflush(stdout);
    }
  }

  void status(const std::string& step, const Status& st) { line(step, st ? "ok" : describe(st.error())); }
  template <class T, class F>
  void result(const std::string& step, const Result<T>& r, F&& show) {
    line(step, r ? show(*r) : describe(r.error()));
  }

  const std::vector<std::string>& lines() const { return lines_; }

  static std::string describe(const Error& e) {
    return "error " + std::string(error_code_name(e.code())) + " errno " + std::to_string(e.sys_errno()) + " \"" +
           e.message() + "\"";
  }
  // Without the message: for image reads, whose messages name the image node.
  static std::string describe_io(const Status& st) {
    if (st) return "ok";
    return "error " + std::string(error_code_name(st.error().code())) + " errno " +
           std::to_string(st.error().sys_errno());
  }

 private:
  std::string normalize(std::string text) {
    for (size_t at; (at = text.find(root_)) != std::string::npos;) text.replace(at, root_.size(), "<root>");
    static const std::regex kUuid("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}");
    text = replace_all(text, kUuid, [&](const std::string& id) {
      auto [entry, added] = ids_.try_emplace(id, ids_.size() + 1);
      return "<id " + std::to_string(entry->second) + ">";
    });
    static const std::regex kDevice("\\b[0-9]+:[0-9]+\\b");
    return replace_all(text, kDevice, [&](const std::string& dev) {
      auto it = names_.find(dev);
      return it == names_.end() ? dev : it->second;
    });
  }

  template <class F>
  static std::string replace_all(const std::string& text, const std::regex& re, F&& by) {
    std::string out;
    size_t last = 0;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it) {
      out += text.substr(last, static_cast<size_t>(it->position()) - last);
      out += by(it->str());
      last = static_cast<size_t>(it->position() + it->length());
    }
    return out + text.substr(last);
  }

  std::string root_;
  bool print_steps_ = std::getenv("BLKVAULT_PRINT_STEPS") != nullptr;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::map<std::string, size_t> ids_;
  std::map<std::string, std::string> names_;
  std::vector<std::string> lines_;
};

// Sorted by device number: the real module lists trackers in creation order,
// the simulation by device number (docs/SIMULATION.md, "The real-module lab").
std::string show_infos(std::vector<CbtInfo> infos) {
  std::sort(infos.begin(), infos.end(), [](const CbtInfo& x, const CbtInfo& y) { return x.dev < y.dev; });
  std::string s = std::to_string(infos.size()) + " tracked";
  for (const CbtInfo& i : infos) {
    s += "; " + to_string(i.dev) + " block " + std::to_string(i.block_size_bytes) + " capacity " +
         std::to_string(i.capacity_bytes) + " count " + std::to_string(i.block_count) + " generation " +
         to_string(i.generation_id) + " snap " + std::to_string(i.snap_number);
  }
  return s;
}

std::string show_map(const std::vector<uint8_t>& map) {
  std::string s = "map";
  for (uint8_t b : map) s += " " + std::to_string(b);
  return s;
}

std::string show_event(const std::optional<Event>& e) {
  if (!e) return "no event";
  if (e->code == Event::Code::kLowFreeSpace) {
    return "low_free_space requested " + std::to_string(e->requested_sectors) +
           (e->time_label_ns > 0 ? " (time set)" : " (no time)");
  }
  return "corrupted " + to_string(e->corrupted_device) + " err " + std::to_string(e->error_code);
}

std::string show_ids(const std::vector<Uuid>& ids) {
  std::string s = std::to_string(ids.size()) + " snapshots";
  for (const Uuid& id : ids) s += " " + to_string(id);
  return s;
}

std::string show_images(const std::vector<ImageInfo>& images) {
  std::string s = std::to_string(images.size()) + " images";
  for (const ImageInfo& i : images) s += " " + to_string(i.original) + "->" + to_string(i.image);
  return s;
}

// The scenario's device contents: sector i starts with byte (i + name[0]) mod 256.
std::vector<uint8_t> device_pattern(const std::string& name, uint64_t size_bytes) {
  std::vector<uint8_t> bytes(size_bytes);
  for (size_t i = 0; i < size_bytes; i += kSectorSize) bytes[i] = static_cast<uint8_t>(i / kSectorSize + name[0]);
  return bytes;
}

Status write_new_file(const std::string& path, std::span<const uint8_t> bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return fail(Error::from_errno("creating " + path));
  if (auto st = pwrite_full(fd.get(), bytes, 0, path); !st) return st;
  return fsync_fd(fd.get(), path);
}

Status fallocate_new_file(const std::string& path, uint64_t size_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return fail(Error::from_errno("creating " + path));
  if (int err = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(size_bytes)); err != 0)
    return fail(Error::from_errno("fallocate " + path, err));
  return fsync_fd(fd.get(), path);
}

// A device of the scenario: its name in the trace, the path writes go to, its number.
struct Device {
  std::string name;
  std::string path;
  DevId dev;
};

// What the scenario runs against: a Module, and what lies outside it — the
// devices, the writer (writes the module's filter sees), diff-storage files and
// image reads.
class World {
 public:
  virtual ~World() = default;
  virtual Module& module() = 0;
  // Replaced by "<root>" in the trace.
  virtual std::string root() const = 0;
  // A new device of size_bytes holding device_pattern(name, size_bytes).
  virtual Result<Device> make_device(const std::string& name, uint64_t size_bytes) = 0;
  // The writer: `data` at offset_bytes of the device, seen by the module's filter.
  virtual Status write(const Device& device, uint64_t offset_bytes, std::span<const uint8_t> data) = 0;
  // A fully allocated diff-storage file, mapped for APPEND_STORAGE.
  virtual Result<Module::StorageExtents> make_storage(const std::string& name, uint64_t size_bytes) = 0;
  virtual Result<std::unique_ptr<ImageReader>> open_image(DevId image) = 0;
  // How long one wait of a drain lasts. The real module stores copied chunks from
  // a work queue, so an event may follow the write that caused it by a moment.
  virtual uint32_t drain_timeout_ms() const = 0;
};

// SimModule in its own directory, called directly or through IoctlModule over
// the decoding transport. Writes, storage files and image reads go through the
// backing SimModule in both cases (IoctlModule would need FIEMAP and /dev nodes).
class SimWorld final : public World {
 public:
  explicit SimWorld(bool through_ioctl) {
    auto opened = SimModule::open(dir_ / "sim", SimOptions{.diff_storage_minimum_sectors = kDiffStorageMinimumSectors});
    EXPECT_TRUE(opened) << opened.error().message();
    sim_ = std::move(*opened);
    module_ = sim_.get();
    if (through_ioctl) {
      auto t = std::make_unique<testing::DecodingTransport>(*sim_);
      transport_ = t.get();
      IoctlModuleOptions options;
      options.read_chunk_bytes = 5;  // several READ_CBT_MAP calls per map
      ioctl_ = IoctlModule::with_transport(std::move(t), options);
      module_ = ioctl_.get();
    }
  }

  Module& module() override { return *module_; }
  std::string root() const override { return dir_.path(); }
  const std::string& dir() const { return dir_.path(); }
  testing::DecodingTransport* transport() const { return transport_; }

  Result<Device> make_device(const std::string& name, uint64_t size_bytes) override {
    const std::string path = dir_ / (name + ".img");
    if (auto st = write_new_file(path, device_pattern(name, size_bytes)); !st) return fail(st.error());
    auto dev = sim_->device_id(path);
    if (!dev) return fail(dev.error());
    return Device{name, path, *dev};
  }
  Status write(const Device& device, uint64_t offset_bytes, std::span<const uint8_t> data) override {
    return sim_->write(device.path, offset_bytes, data);
  }
  Result<Module::StorageExtents> make_storage(const std::string& name, uint64_t size_bytes) override {
    const std::string path = dir_ / name;
    if (auto st = fallocate_new_file(path, size_bytes); !st) return fail(st.error());
    return sim_->map_storage_file(path);
  }
  Result<std::unique_ptr<ImageReader>> open_image(DevId image) override { return sim_->open_image(image); }
  uint32_t drain_timeout_ms() const override { return 0; }

 private:
  test::TempDir dir_;
  std::unique_ptr<SimModule> sim_;
  std::unique_ptr<Module> ioctl_;
  testing::DecodingTransport* transport_ = nullptr;
  Module* module_ = nullptr;
};

// The real module (/dev/veeamblksnap) in the lab VM. Devices are loop devices
// over files in a temporary directory; writes are O_DIRECT pwrite + fsync on the
// loop node; storage files are fallocated on `scratch` (ext4) and FIEMAP-mapped.
// diff_storage_minimum is set through the module parameter (0644, read by every
// create) and restored afterwards.
class RealWorld final : public World {
 public:
  static constexpr const char* kMinimumParameter = "/sys/module/veeamblksnap/parameters/diff_storage_minimum";

  // "" when ready, else why not.
  std::string open(const std::string& scratch) {
    scratch_ = scratch;
    auto m = open_module(abi::kControlPath);
    if (!m) return m.error().message();
    module_ = std::move(*m);
    std::ifstream in(kMinimumParameter);
    if (!(in >> saved_minimum_)) return std::string("reading ") + kMinimumParameter;
    if (!set_minimum(std::to_string(kDiffStorageMinimumSectors))) return std::string("writing ") + kMinimumParameter;
    return "";
  }

  ~RealWorld() override {
    if (!module_) return;
    // Leave the module as found: no snapshot, no tracker on our loop devices.
    if (auto ids = module_->snapshots())
      for (const Uuid& id : *ids) (void)module_->destroy_snapshot(id);
    for (const Device& d : devices_) (void)module_->remove_tracker(d.dev);
    loops_.clear();
    for (const std::string& f : storage_files_) ::unlink(f.c_str());
    if (!saved_minimum_.empty()) set_minimum(saved_minimum_);
  }

  Module& module() override { return *module_; }
  std::string root() const override { return dir_.path(); }

  Result<Device> make_device(const std::string& name, uint64_t size_bytes) override {
    const std::string backing = dir_ / (name + ".img");
    const std::string node = dir_ / (name + ".loop");
    if (auto st = write_new_file(backing, device_pattern(name, size_bytes)); !st) return fail(st.error());
    auto loop = std::make_unique<LoopDevice>();
    if (std::string why = loop->attach(backing, node); !why.empty())
      return fail(ErrorCode::kIo, "loop device for " + backing + ": " + why);
    loops_.push_back(std::move(loop));
    auto dev = module_->device_id(node);
    if (!dev) return fail(dev.error());
    devices_.push_back(Device{name, node, *dev});
    return devices_.back();
  }

  Status write(const Device& device, uint64_t offset_bytes, std::span<const uint8_t> data) override {
    UniqueFd fd(::open(device.path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
    if (!fd) return fail(Error::from_errno("opening " + device.path));
    const size_t aligned = (data.size() + 4095) / 4096 * 4096;
    std::unique_ptr<uint8_t, decltype(&std::free)> buffer(static_cast<uint8_t*>(std::aligned_alloc(4096, aligned)),
                                                          &std::free);
    std::memcpy(buffer.get(), data.data(), data.size());
    if (auto st = pwrite_full(fd.get(), std::span<const uint8_t>(buffer.get(), data.size()), offset_bytes, device.path);
        !st)
      return st;
    return fsync_fd(fd.get(), device.path);
  }

  Result<Module::StorageExtents> make_storage(const std::string& name, uint64_t size_bytes) override {
    const std::string path = scratch_ + "/differential-" + name;
    storage_files_.push_back(path);
    if (auto st = fallocate_new_file(path, size_bytes); !st) return fail(st.error());
    return module_->map_storage_file(path);
  }
  Result<std::unique_ptr<ImageReader>> open_image(DevId image) override { return module_->open_image(image); }
  uint32_t drain_timeout_ms() const override { return 25; }  // jiffies: 100 ms at HZ=250

 private:
  static bool set_minimum(const std::string& value) {
    std::ofstream out(kMinimumParameter);
    out << value;
    out.flush();
    return static_cast<bool>(out);
  }

  test::TempDir dir_;
  std::string scratch_;
  std::unique_ptr<Module> module_;
  std::string saved_minimum_;
  std::vector<std::unique_ptr<LoopDevice>> loops_;
  std::vector<Device> devices_;
  std::vector<std::string> storage_files_;
};

// The scenario: every ioctl, every errno of SEMANTICS.md §6.3 that a Module call
// can produce, copy-on-write, low space and overflow, tracker removal and a new
// generation. Only what every world can do: no fault injection.
//
// empty_snapshot: also create (and fail to take) a snapshot of no device. The
// real module accepts it, but its duplicate check then loops 2^32 times with the
// CPU held (unsigned count - 1): about 80 s and soft-lockup warnings under the
// lab's emulation. So the lab leaves it out unless BLKVAULT_LAB_EMPTY_SNAPSHOT=1
// (it ran once and agreed: docs/SIMULATION.md).
void run_scenario(World& w, Trace& t, bool empty_snapshot = true) {
  Module& m = w.module();
  auto a_r = w.make_device("a", 17 * kBlock - 1024);  // 17 blocks, the last partial
  auto b_r = w.make_device("b", 8 * kBlock);
  if (!a_r || !b_r) {
    ADD_FAILURE() << "making the devices: " << (a_r ? b_r.error() : a_r.error()).message();
    return;
  }
  const Device a = *a_r, b = *b_r;
  t.name(a.dev, "a");
  t.name(b.dev, "b");
  const DevId missing{240, 77};
  const Uuid unknown{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  auto storage = [&](const std::string& name, uint64_t bytes) {
    auto s = w.make_storage(name, bytes);
    if (!s) ADD_FAILURE() << "storage " << name << ": " << s.error().message();
    return s ? *s : Module::StorageExtents{};
  };
  auto read_map = [&](const std::string& step, DevId dev, uint32_t offset, size_t size) {
    std::vector<uint8_t> map(size, 0xee);
    Status st = m.read_cbt_map(dev, offset, map);
    t.line(step, st ? show_map(map) : Trace::describe(st.error()));
  };
  auto drain_events = [&](const std::string& step, const Uuid& id) {
    for (int i = 0; i < 8; ++i) {
      auto ev = m.wait_event(id, w.drain_timeout_ms());
      t.result(step + " #" + std::to_string(i), ev, show_event);
      if (!ev || !*ev) return;
    }
  };
  auto name_images = [&](const Result<std::vector<ImageInfo>>& images) {
    if (!images) return;
    for (const ImageInfo& i : *images) t.name(i.image, "image of " + std::string(i.original == a.dev ? "a" : "b"));
  };
  auto read_image = [&](const std::string& step, DevId image, uint64_t offset, size_t size) {
    auto reader = w.open_image(image);
    if (!reader) return t.line(step, Trace::describe_io(fail(reader.error())));
    std::vector<uint8_t> got(size);
    t.line(step, Trace::describe_io((*reader)->read_at(offset, got)));
  };
  auto show_version = [](const Version& v) { return to_string(v); };
  auto show_id = [](const Uuid& id) { return to_string(id); };

  t.result("version", m.version(), show_version);
  t.result("no tracker yet", m.tracked_devices(), show_infos);
  read_map("read map of untracked a", a.dev, 0, 1);
  t.status("remove untracked a", m.remove_tracker(a.dev));
  t.status("mark untracked a", m.mark_dirty(a.dev, std::vector<SectorRange>{{0, 8}}));
  t.result("no snapshot yet", m.snapshots(), show_ids);

  t.result("create [a, a]", m.create_snapshot(std::vector<DevId>{a.dev, a.dev}), show_id);
  t.result("create [missing]", m.create_snapshot(std::vector<DevId>{missing}), show_id);
  auto id1 = m.create_snapshot(std::vector<DevId>{a.dev, b.dev});
  t.result("create [a, b]", id1, show_id);
  if (!id1) return;
  t.result("create [a] while a is held", m.create_snapshot(std::vector<DevId>{a.dev}), show_id);
  t.result("listed", m.snapshots(), show_ids);
  t.result("images before take", m.snapshot_images(*id1), show_images);
  read_map("read map before take", a.dev, 0, 4);
  read_map("read map past the end before take", a.dev, 17, 1);
  t.result("tracked after create", m.tracked_devices(), show_infos);
  drain_events("events after create", *id1);

  t.status("take unknown", m.take_snapshot(unknown));
  t.status("destroy unknown", m.destroy_snapshot(unknown));
  auto st1 = storage("storage-1", 1 << 20);
  t.status("append to unknown", m.append_storage(unknown, st1.storage_dev, st1.ranges));
  t.result("wait on unknown", m.wait_event(unknown, 0), show_event);
  t.result("images of unknown", m.snapshot_images(unknown), show_images);

  t.status("append 1 MiB", m.append_storage(*id1, st1.storage_dev, st1.ranges));
  t.status("take", m.take_snapshot(*id1));
  t.status("take again", m.take_snapshot(*id1));
  t.result("tracked after take 1", m.tracked_devices(), show_infos);
  auto images = m.snapshot_images(*id1);
  name_images(images);
  t.result("images after take", images, show_images);
  read_map("map a after take 1", a.dev, 0, 17);
  read_map("map b after take 1", b.dev, 0, 8);
  read_map("map a from block 11", a.dev, 11, 6);
  read_map("map a last block", a.dev, 16, 1);
  read_map("map a past the end", a.dev, 17, 1);
  read_map("map a longer than the map", a.dev, 10, 9);

  // Copy-on-write: the image keeps the take-time data.
  std::vector<uint8_t> patch(3 * 512, 0x77);
  t.status("write a block 2", w.write(a, 2 * kBlock + 512, patch));
  t.status("write a last block", w.write(a, 16 * kBlock, std::vector<uint8_t>(512, 0x66)));
  if (images && images->size() == 2) {
    const DevId image_a = (*images)[0].image;
    auto reader = w.open_image(image_a);
    std::vector<uint8_t> got(3 * 512);
    Status rd = reader ? (*reader)->read_at(2 * kBlock + 512, got) : Status(fail(reader.error()));
    const std::vector<uint8_t> take_time = device_pattern("a", 17 * kBlock - 1024);
    t.line("image a block 2 after the write",
           rd ? (got == patch ? "changed (wrong)"
                              : std::equal(got.begin(), got.end(), take_time.begin() + 2 * kBlock + 512)
                                    ? "take-time data"
                                    : "other data (wrong)")
              : Trace::describe(rd.error()));
    t.status("mark image a block 9", m.mark_dirty(image_a, std::vector<SectorRange>{{9 * 128 + 3, 1}}));
  }
  t.status("mark a block 5", m.mark_dirty(a.dev, std::vector<SectorRange>{{5 * 128, 128}}));
  t.status("mark a past the end", m.mark_dirty(a.dev, std::vector<SectorRange>{{6 * 128, 1}, {17 * 128, 1}}));
  t.status("mark missing", m.mark_dirty(missing, std::vector<SectorRange>{{0, 1}}));
  read_map("map a after marks", a.dev, 0, 17);
  t.status("remove a while taken", m.remove_tracker(a.dev));
  drain_events("events while held", *id1);

  t.status("destroy", m.destroy_snapshot(*id1));
  t.status("destroy again", m.destroy_snapshot(*id1));
  t.result("wait on destroyed", m.wait_event(*id1, 0), show_event);
  t.result("images of destroyed", m.snapshot_images(*id1), show_images);
  t.result("none listed", m.snapshots(), show_ids);
  read_map("map after destroy", a.dev, 0, 1);
  t.result("tracked after destroy", m.tracked_devices(), show_infos);

  // Take without diff storage: EFAULT, and the snapshot is gone.
  auto id2 = m.create_snapshot(std::vector<DevId>{a.dev});
  t.result("create [a] again", id2, show_id);
  if (!id2) return;
  t.status("take without storage", m.take_snapshot(*id2));
  t.status("destroy after failed take", m.destroy_snapshot(*id2));
  t.result("wait after failed take", m.wait_event(*id2, 0), show_event);

  // Second take: the writes and marks of the first interval show as 2.
  auto id3 = m.create_snapshot(std::vector<DevId>{a.dev, b.dev});
  t.result("create [a, b] for take 2", id3, show_id);
  if (!id3) return;
  // Two 256 KiB chunks of storage: the 1 MiB write below needs four.
  auto st3 = storage("storage-3", 512 << 10);
  t.status("append 512 KiB for take 2", m.append_storage(*id3, st3.storage_dev, st3.ranges));
  t.status("take 2", m.take_snapshot(*id3));
  auto images3 = m.snapshot_images(*id3);
  name_images(images3);
  t.result("images after take 2", images3, show_images);
  t.result("tracked after take 2", m.tracked_devices(), show_infos);
  read_map("map a after take 2", a.dev, 0, 17);
  read_map("map b after take 2", b.dev, 0, 8);

  // Overflow: the write succeeds, a is corrupted, b's image still reads.
  drain_events("events before overflow", *id3);
  t.status("write 1 MiB of a", w.write(a, 0, std::vector<uint8_t>(1 << 20, 0x55)));
  drain_events("events after overflow", *id3);
  if (images3 && images3->size() == 2) {
    read_image("read image a after overflow", (*images3)[0].image, 15 * kBlock, 4096);
    read_image("read image b after overflow", (*images3)[1].image, 0, 4096);
  }
  read_map("map a after overflow", a.dev, 0, 17);
  t.status("destroy take 2", m.destroy_snapshot(*id3));

  // Tracker removal: the next create starts a new generation.
  t.status("remove a", m.remove_tracker(a.dev));
  t.status("remove a again", m.remove_tracker(a.dev));
  t.result("only b tracked", m.tracked_devices(), show_infos);
  auto id4 = m.create_snapshot(std::vector<DevId>{a.dev});
  t.result("create [a] after removal", id4, show_id);
  if (!id4) return;
  auto st4 = storage("storage-4", 1 << 20);
  t.status("append after removal", m.append_storage(*id4, st4.storage_dev, st4.ranges));
  t.status("take after removal", m.take_snapshot(*id4));
  t.result("a has a new generation", m.tracked_devices(), show_infos);
  read_map("map a of the new generation", a.dev, 0, 17);
  t.status("destroy after removal", m.destroy_snapshot(*id4));
  if (!empty_snapshot) return;

  // An empty snapshot is created but cannot be taken.
  auto id5 = m.create_snapshot(std::vector<DevId>{});
  t.result("create []", id5, show_id);
  if (!id5) return;
  auto st5 = storage("storage-5", 1 << 20);
  t.status("append to empty", m.append_storage(*id5, st5.storage_dev, st5.ranges));
  t.status("take empty", m.take_snapshot(*id5));
  t.status("destroy empty", m.destroy_snapshot(*id5));
  t.result("none left", m.snapshots(), show_ids);
}

// Every step of `got` must read as in `want` (the simulation); each difference
// is reported with its step number, the first one fails the test.
void expect_same_trace(const Trace& want, const Trace& got, const std::string& got_name) {
  const auto& d = want.lines();
  const auto& g = got.lines();
  if (std::getenv("BLKVAULT_PRINT_TRACE"))  // to read the scenario's outcomes
    for (size_t n = 0; n < std::max(d.size(), g.size()); ++n)
      std::printf("%3zu sim: %s\n%3zu %s: %s\n", n, n < d.size() ? d[n].c_str() : "-", n, got_name.c_str(),
                  n < g.size() ? g[n].c_str() : "-");
  size_t differences = 0;
  for (size_t n = 0; n < std::min(d.size(), g.size()); ++n) {
    if (g[n] != d[n]) {
      ++differences;
      ADD_FAILURE() << "step " << n << " differs\n  " << got_name << ": " << g[n] << "\n  simulation: " << d[n];
    }
  }
  EXPECT_EQ(g.size(), d.size()) << "the traces have different lengths";
  EXPECT_EQ(differences, 0u);
}

// The scenario is not vacuous: the errno table of SEMANTICS.md §6.3, the
// events and the maps are all in it, worded by module_error().
void expect_scenario_outcomes(const std::vector<std::string>& d, bool empty_snapshot = true) {
  auto has = [&](const std::string& want) {
    for (const std::string& l : d)
      if (l == want) return;
    ADD_FAILURE() << "missing from the trace: " << want;
  };
  has("read map of untracked a: error not_found errno 61 \"TRACKER_READ_CBT_MAP of device <a>: No data available\"");
  has("remove untracked a: error not_found errno 61 \"TRACKER_REMOVE of device <a>: No data available\"");
  has("mark untracked a: error not_found errno 19 \"TRACKER_MARK_DIRTY_BLOCKS of device <a>: No such device\"");
  has("create [a, a]: error module errno 22 \"SNAPSHOT_CREATE of devices <a>, <a>: Invalid argument\"");
  has("create [missing]: error not_found errno 6 \"SNAPSHOT_CREATE of device 240:77: No such device or address\"");
  has("mark missing: error module errno 6 \"TRACKER_MARK_DIRTY_BLOCKS of device 240:77: No such device or address\"");
  has("create [a] while a is held: error busy errno 114 \"SNAPSHOT_CREATE of device <a>: Operation already in "
      "progress\"");
  has("images before take: error module errno 19 \"SNAPSHOT_COLLECT_IMAGES of snapshot <id 1>: No such device\"");
  has("read map before take: error module errno 1 \"TRACKER_READ_CBT_MAP of device <a>: Operation not permitted\"");
  has("read map past the end before take: error module errno 1 \"TRACKER_READ_CBT_MAP of device <a>: Operation "
      "not permitted\"");
  has("events after create #0: low_free_space requested 2048 (time set)");
  has("events after create #1: no event");
  has("take unknown: error not_found errno 3 \"SNAPSHOT_TAKE of snapshot <id 4>: No such process\"");
  has("destroy unknown: error not_found errno 19 \"SNAPSHOT_DESTROY of snapshot <id 4>: No such device\"");
  has("take again: error module errno 114 \"SNAPSHOT_TAKE of snapshot <id 1>: Operation already in progress\"");
  has("map a past the end: error module errno 22 \"TRACKER_READ_CBT_MAP of device <a>: Invalid argument\"");
  has("map a longer than the map: error module errno 0 \"TRACKER_READ_CBT_MAP of device <a> at block 10: returned "
      "7 bytes, expected 9 (did the map shrink?)\"");
  has("image a block 2 after the write: take-time data");
  has("mark a past the end: error module errno 22 \"TRACKER_MARK_DIRTY_BLOCKS of device <a>: Invalid argument\"");
  has("map a after marks: map 0 0 0 0 0 1 1 0 0 1 0 0 0 0 0 0 0");
  has("remove a while taken: error busy errno 16 \"TRACKER_REMOVE of device <a>: Device or resource busy\"");
  has("destroy again: error not_found errno 19 \"SNAPSHOT_DESTROY of snapshot <id 1>: No such device\"");
  has("wait on destroyed: error not_found errno 3 \"SNAPSHOT_WAIT_EVENT of snapshot <id 1>: No such process\"");
  has("take without storage: error module errno 14 \"SNAPSHOT_TAKE of snapshot <id 5>: Bad address\"");
  has("destroy after failed take: error not_found errno 19 \"SNAPSHOT_DESTROY of snapshot <id 5>: No such device\"");
  has("map a after take 2: map 0 0 2 0 0 2 2 0 0 2 0 0 0 0 0 0 2");
  has("read image a after overflow: error io errno 5");
  has("read image b after overflow: ok");
  has("append to unknown: error not_found errno 3 \"SNAPSHOT_APPEND_STORAGE of snapshot <id 4>: No such process\"");
  has("images of unknown: error not_found errno 3 \"SNAPSHOT_COLLECT_IMAGES of snapshot <id 4>: No such process\"");
  has("tracked after take 2: 2 tracked; <a> block 65536 capacity 1113088 count 17 generation <id 2> snap 2; <b> "
      "block 65536 capacity 524288 count 8 generation <id 3> snap 2");
  has("a has a new generation: 2 tracked; <a> block 65536 capacity 1113088 count 17 generation <id 8> snap 1; "
      "<b> block 65536 capacity 524288 count 8 generation <id 3> snap 2");
  has("remove a again: error not_found errno 61 \"TRACKER_REMOVE of device <a>: No data available\"");
  if (empty_snapshot) has("take empty: error module errno 19 \"SNAPSHOT_TAKE of snapshot <id 9>: No such device\"");
}

TEST(SimIoctlDifferential, SimulationAndIoctlPathAgreeOnEveryStep) {
  SimWorld direct(false);
  SimWorld through(true);
  Trace direct_trace(direct.root());
  Trace ioctl_trace(through.root());
  run_scenario(direct, direct_trace);
  run_scenario(through, ioctl_trace);
  EXPECT_TRUE(through.transport()->violations().empty());
  expect_same_trace(direct_trace, ioctl_trace, "ioctl path");
  expect_scenario_outcomes(direct_trace.lines());
}

// The same scenario against the real veeamblksnap 6.3.0.73 in the lab VM
// (tests/kernel-lab/run). Needs BLKVAULT_LAB_SCRATCH (a directory on ext4 for
// FIEMAP-mapped storage files) and BLKVAULT_LAB_DIFFERENTIAL=1 (it creates loop
// devices and changes a module parameter for its duration); skips elsewhere.
TEST(SimIoctlDifferential, RealModuleAgreesWithTheSimulationOnEveryStep) {
  const char* scratch = std::getenv("BLKVAULT_LAB_SCRATCH");
  const char* enabled = std::getenv("BLKVAULT_LAB_DIFFERENTIAL");
  if (!scratch || !enabled || std::string(enabled) != "1")
    GTEST_SKIP() << "not in the blksnap lab VM (BLKVAULT_LAB_SCRATCH / BLKVAULT_LAB_DIFFERENTIAL=1 unset)";
  SimWorld sim(false);
  RealWorld real;
  const std::string why = real.open(scratch);
  ASSERT_EQ(why, "") << "the real module";
  const char* empty_env = std::getenv("BLKVAULT_LAB_EMPTY_SNAPSHOT");
  const bool empty_snapshot = empty_env && std::string(empty_env) == "1";
  Trace sim_trace(sim.root());
  Trace real_trace(real.root());
  run_scenario(sim, sim_trace, empty_snapshot);
  run_scenario(real, real_trace, empty_snapshot);
  expect_same_trace(sim_trace, real_trace, "real module");
  expect_scenario_outcomes(real_trace.lines(), empty_snapshot);
}

}  // namespace
}  // namespace blkvault::kernel

namespace blkvault::kernel {
namespace {

// Outside the ioctls, the two implementations word device problems alike.
TEST(SimIoctlDifferential, DeviceResolutionErrorsReadTheSame) {
  SimWorld direct(false);
  SimWorld through(true);
  for (SimWorld* w : {&direct, &through}) {
    SCOPED_TRACE(w == &direct ? "simulation" : "ioctl path");
    const std::string missing = "/nonexistent-blkvault-device";
    auto gone = w->module().device_id(missing);
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code(), ErrorCode::kNotFound);
    EXPECT_EQ(gone.error().sys_errno(), ENOENT);
    EXPECT_EQ(gone.error().message(), "resolving device " + missing + ": No such file or directory");

    auto dir = w->module().device_id(w->dir());
    ASSERT_FALSE(dir);
    EXPECT_EQ(dir.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(dir.error().message().rfind("resolving device " + w->dir() + ": not a block device", 0), 0u)
        << dir.error().message();

    // A device neither knows is named by its number in messages.
    auto unknown = w->module().device_path(DevId{240, 77});
    ASSERT_TRUE(unknown) << unknown.error().message();
    EXPECT_EQ(*unknown, "240:77");
  }
}

}  // namespace
}  // namespace blkvault::kernel
