// The simulation must agree with the real ABI path: one scripted scenario is run
// against SimModule directly and against IoctlModule whose ioctls go through the
// decoding transport (the kernel side of SEMANTICS.md §0, byte for byte) to
// another SimModule. Every step's outcome — values, events, CBT infos and maps,
// and for failures the error code, errno and message — is recorded as one line;
// the two traces must be identical, and the first difference names its step.
//
// What stays outside the comparison: writes to the devices and diff-storage
// mapping go through the backing SimModule in both worlds (IoctlModule would use
// FIEMAP and /dev nodes, which an image file does not have), and image contents
// are read through it too. Snapshot and generation ids are random, so each is
// replaced by its order of first appearance ("<id 1>") before comparing.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "decoding_transport_support.h"
#include "kernel/ioctl_module.h"
#include "kernel/sim_module.h"
#include "temp_dir.h"

namespace blkvault::kernel {
namespace {

constexpr uint64_t kBlock = 65536;

// Records outcomes as lines, with ids and the world's root made comparable.
class Trace {
 public:
  explicit Trace(std::string root) : root_(std::move(root)) {}

  void line(const std::string& step, const std::string& text) { lines_.push_back(step + ": " + normalize(text)); }

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

 private:
  std::string normalize(std::string text) {
    for (size_t at; (at = text.find(root_)) != std::string::npos;) text.replace(at, root_.size(), "<root>");
    static const std::regex kUuid("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}");
    std::string out;
    auto begin = std::sregex_iterator(text.begin(), text.end(), kUuid);
    size_t last = 0;
    for (auto it = begin; it != std::sregex_iterator(); ++it) {
      out += text.substr(last, static_cast<size_t>(it->position()) - last);
      auto [entry, added] = ids_.try_emplace(it->str(), ids_.size() + 1);
      out += "<id " + std::to_string(entry->second) + ">";
      last = static_cast<size_t>(it->position() + it->length());
    }
    return out + text.substr(last);
  }

  std::string root_;
  std::map<std::string, size_t> ids_;
  std::vector<std::string> lines_;
};

std::string show_infos(const std::vector<CbtInfo>& infos) {
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

// One world: a backing SimModule in its own directory, and the Module under test
// (the SimModule itself, or an IoctlModule over the decoding transport to it).
struct World {
  test::TempDir dir;
  std::unique_ptr<SimModule> sim;
  std::unique_ptr<Module> ioctl;
  testing::DecodingTransport* transport = nullptr;
  Module* module = nullptr;

  explicit World(bool through_ioctl) {
    auto opened = SimModule::open(dir / "sim", SimOptions{.diff_storage_minimum_sectors = 2048});
    EXPECT_TRUE(opened) << opened.error().message();
    sim = std::move(*opened);
    module = sim.get();
    if (through_ioctl) {
      auto t = std::make_unique<testing::DecodingTransport>(*sim);
      transport = t.get();
      IoctlModuleOptions options;
      options.read_chunk_bytes = 5;  // several READ_CBT_MAP calls per map
      ioctl = IoctlModule::with_transport(std::move(t), options);
      module = ioctl.get();
    }
  }

  std::string make_file(const std::string& name, uint64_t size, bool fallocated) {
    std::string p = dir / name;
    int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    EXPECT_GE(fd, 0);
    if (fallocated) {
      EXPECT_EQ(::posix_fallocate(fd, 0, static_cast<off_t>(size)), 0);
    } else {
      std::vector<uint8_t> bytes(size);
      for (size_t i = 0; i < size; i += 512) bytes[i] = static_cast<uint8_t>(i / 512 + name[0]);
      EXPECT_EQ(::pwrite(fd, bytes.data(), size, 0), static_cast<ssize_t>(size));
    }
    ::close(fd);
    return p;
  }
};

// The scenario: every ioctl, every errno of SEMANTICS.md §6.3 that a Module call
// can produce, copy-on-write, overflow, tracker removal and a new generation.
void run_scenario(World& w, Trace& t) {
  Module& m = *w.module;
  SimModule& sim = *w.sim;
  const std::string a_path = w.make_file("a.img", 17 * kBlock - 1024, false);  // 17 blocks, the last partial
  const std::string b_path = w.make_file("b.img", 8 * kBlock, false);
  const DevId a = sim.device_id(a_path).value();
  const DevId b = sim.device_id(b_path).value();
  const DevId missing{240, 77};
  const Uuid unknown{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  std::vector<uint8_t> one(1);
  auto storage = [&](const std::string& name, uint64_t bytes) {
    return sim.map_storage_file(w.make_file(name, bytes, true)).value();
  };
  auto read_map = [&](const std::string& step, DevId dev, uint32_t offset, size_t size) {
    std::vector<uint8_t> map(size, 0xee);
    Status st = m.read_cbt_map(dev, offset, map);
    t.line(step, st ? show_map(map) : Trace::describe(st.error()));
  };
  auto drain_events = [&](const std::string& step, const Uuid& id) {
    for (int i = 0; i < 8; ++i) {
      auto ev = m.wait_event(id, 0);
      t.result(step + " #" + std::to_string(i), ev, show_event);
      if (!ev || !*ev) return;
    }
  };
  auto show_version = [](const Version& v) { return to_string(v); };
  auto show_id = [](const Uuid& id) { return to_string(id); };

  t.result("version", m.version(), show_version);
  t.result("no tracker yet", m.tracked_devices(), show_infos);
  read_map("read map of untracked a", a, 0, 1);
  t.status("remove untracked a", m.remove_tracker(a));
  t.status("mark untracked a", m.mark_dirty(a, std::vector<SectorRange>{{0, 8}}));
  t.result("no snapshot yet", m.snapshots(), show_ids);

  t.result("create [a, a]", m.create_snapshot(std::vector<DevId>{a, a}), show_id);
  t.result("create [missing]", m.create_snapshot(std::vector<DevId>{missing}), show_id);
  auto id1 = m.create_snapshot(std::vector<DevId>{a, b});
  t.result("create [a, b]", id1, show_id);
  if (!id1) return;
  t.result("create [a] while a is held", m.create_snapshot(std::vector<DevId>{a}), show_id);
  t.result("listed", m.snapshots(), show_ids);
  t.result("images before take", m.snapshot_images(*id1), show_images);
  read_map("read map before take", a, 0, 4);
  read_map("read map past the end before take", a, 17, 1);
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
  t.result("images after take", images, show_images);
  read_map("map a after take 1", a, 0, 17);
  read_map("map b after take 1", b, 0, 8);
  read_map("map a from block 11", a, 11, 6);
  read_map("map a last block", a, 16, 1);
  read_map("map a past the end", a, 17, 1);
  read_map("map a longer than the map", a, 10, 9);

  // Copy-on-write: the image keeps the take-time data.
  std::vector<uint8_t> patch(3 * 512, 0x77);
  t.status("write a block 2", sim.write(a_path, 2 * kBlock + 512, patch));
  t.status("write a last block", sim.write(a_path, 16 * kBlock, std::vector<uint8_t>(512, 0x66)));
  if (images && images->size() == 2) {
    const DevId image_a = (*images)[0].image;
    auto reader = sim.open_image(image_a);
    std::vector<uint8_t> got(3 * 512);
    Status rd = reader ? (*reader)->read_at(2 * kBlock + 512, got) : Status(fail(reader.error()));
    t.line("image a block 2 after the write",
           rd ? (got == patch ? "changed (wrong)" : "take-time data") : Trace::describe(rd.error()));
    t.status("mark image a block 9", m.mark_dirty(image_a, std::vector<SectorRange>{{9 * 128 + 3, 1}}));
  }
  t.status("mark a block 5", m.mark_dirty(a, std::vector<SectorRange>{{5 * 128, 128}}));
  t.status("mark a past the end", m.mark_dirty(a, std::vector<SectorRange>{{6 * 128, 1}, {17 * 128, 1}}));
  t.status("mark missing", m.mark_dirty(missing, std::vector<SectorRange>{{0, 1}}));
  read_map("map a after marks", a, 0, 17);
  t.status("remove a while taken", m.remove_tracker(a));
  drain_events("events while held", *id1);

  t.status("destroy", m.destroy_snapshot(*id1));
  t.status("destroy again", m.destroy_snapshot(*id1));
  t.result("wait on destroyed", m.wait_event(*id1, 0), show_event);
  t.result("images of destroyed", m.snapshot_images(*id1), show_images);
  t.result("none listed", m.snapshots(), show_ids);
  read_map("map after destroy", a, 0, 1);
  t.result("tracked after destroy", m.tracked_devices(), show_infos);

  // Take without diff storage: EFAULT, and the snapshot is gone.
  auto id2 = m.create_snapshot(std::vector<DevId>{a});
  t.result("create [a] again", id2, show_id);
  if (!id2) return;
  t.status("take without storage", m.take_snapshot(*id2));
  t.status("destroy after failed take", m.destroy_snapshot(*id2));
  t.result("wait after failed take", m.wait_event(*id2, 0), show_event);

  // Second take: the writes and marks of the first interval show as 2.
  auto id3 = m.create_snapshot(std::vector<DevId>{a, b});
  t.result("create [a, b] for take 2", id3, show_id);
  if (!id3) return;
  auto st3 = storage("storage-3", 1 << 20);
  t.status("append for take 2", m.append_storage(*id3, st3.storage_dev, st3.ranges));
  t.status("take 2", m.take_snapshot(*id3));
  t.result("tracked after take 2", m.tracked_devices(), show_infos);
  read_map("map a after take 2", a, 0, 17);
  read_map("map b after take 2", b, 0, 8);

  // Overflow: one chunk of storage at most, then a large write.
  t.status("limit storage", sim.set_storage_limit(512));
  drain_events("events before overflow", *id3);
  t.status("write 1 MiB of a", sim.write(a_path, 0, std::vector<uint8_t>(1 << 20, 0x55)));
  drain_events("events after overflow", *id3);
  t.status("clear faults", sim.clear_faults());
  t.status("destroy take 2", m.destroy_snapshot(*id3));

  // Tracker removal: the next create starts a new generation.
  t.status("remove a", m.remove_tracker(a));
  t.status("remove a again", m.remove_tracker(a));
  t.result("only b tracked", m.tracked_devices(), show_infos);
  auto id4 = m.create_snapshot(std::vector<DevId>{a});
  t.result("create [a] after removal", id4, show_id);
  if (!id4) return;
  auto st4 = storage("storage-4", 1 << 20);
  t.status("append after removal", m.append_storage(*id4, st4.storage_dev, st4.ranges));
  t.status("take after removal", m.take_snapshot(*id4));
  t.result("a has a new generation", m.tracked_devices(), show_infos);
  read_map("map a of the new generation", a, 0, 17);
  t.status("destroy after removal", m.destroy_snapshot(*id4));

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

TEST(SimIoctlDifferential, SimulationAndIoctlPathAgreeOnEveryStep) {
  World direct(false);
  World through(true);
  Trace direct_trace(direct.dir.path());
  Trace ioctl_trace(through.dir.path());
  run_scenario(direct, direct_trace);
  run_scenario(through, ioctl_trace);
  EXPECT_TRUE(through.transport->violations().empty());

  const auto& d = direct_trace.lines();
  if (std::getenv("BLKVAULT_PRINT_TRACE"))  // to read the scenario's outcomes
    for (const std::string& l : d) std::printf("%s\n", l.c_str());
  const auto& i = ioctl_trace.lines();
  for (size_t n = 0; n < std::min(d.size(), i.size()); ++n) {
    ASSERT_EQ(i[n], d[n]) << "step " << n << " differs (first: ioctl path, second: simulation)";
  }
  ASSERT_EQ(i.size(), d.size());

  // The scenario is not vacuous: the errno table of SEMANTICS.md §6.3, the
  // events and the maps are all in it, worded by module_error().
  auto has = [&](const std::string& want) {
    for (const std::string& l : d)
      if (l == want) return true;
    ADD_FAILURE() << "missing from the trace: " << want;
    return false;
  };
  has("read map of untracked a: error not_found errno 61 \"TRACKER_READ_CBT_MAP of device 240:0: No data available\"");
  has("remove untracked a: error not_found errno 61 \"TRACKER_REMOVE of device 240:0: No data available\"");
  has("mark untracked a: error not_found errno 19 \"TRACKER_MARK_DIRTY_BLOCKS of device 240:0: No such device\"");
  has("create [a, a]: error module errno 22 \"SNAPSHOT_CREATE of devices 240:0, 240:0: Invalid argument\"");
  has("create [missing]: error not_found errno 19 \"SNAPSHOT_CREATE of device 240:77: No such device\"");
  has("create [a] while a is held: error busy errno 114 \"SNAPSHOT_CREATE of device 240:0: Operation already in "
      "progress\"");
  has("images before take: error module errno 19 \"SNAPSHOT_COLLECT_IMAGES of snapshot <id 1>: No such device\"");
  has("read map before take: error module errno 1 \"TRACKER_READ_CBT_MAP of device 240:0: Operation not permitted\"");
  has("read map past the end before take: error module errno 1 \"TRACKER_READ_CBT_MAP of device 240:0: Operation "
      "not permitted\"");
  has("events after create #0: low_free_space requested 2048 (time set)");
  has("events after create #1: no event");
  has("take unknown: error not_found errno 3 \"SNAPSHOT_TAKE of snapshot <id 4>: No such process\"");
  has("destroy unknown: error not_found errno 19 \"SNAPSHOT_DESTROY of snapshot <id 4>: No such device\"");
  has("take again: error module errno 114 \"SNAPSHOT_TAKE of snapshot <id 1>: Operation already in progress\"");
  has("map a past the end: error module errno 22 \"TRACKER_READ_CBT_MAP of device 240:0: Invalid argument\"");
  has("map a longer than the map: error module errno 0 \"TRACKER_READ_CBT_MAP of device 240:0 at block 10: returned "
      "7 bytes, expected 9 (did the map shrink?)\"");
  has("image a block 2 after the write: take-time data");
  has("mark a past the end: error module errno 22 \"TRACKER_MARK_DIRTY_BLOCKS of device 240:0: Invalid argument\"");
  has("map a after marks: map 0 0 0 0 0 1 1 0 0 1 0 0 0 0 0 0 0");
  has("remove a while taken: error busy errno 16 \"TRACKER_REMOVE of device 240:0: Device or resource busy\"");
  has("destroy again: error not_found errno 19 \"SNAPSHOT_DESTROY of snapshot <id 1>: No such device\"");
  has("wait on destroyed: error not_found errno 3 \"SNAPSHOT_WAIT_EVENT of snapshot <id 1>: No such process\"");
  has("take without storage: error module errno 14 \"SNAPSHOT_TAKE of snapshot <id 5>: Bad address\"");
  has("destroy after failed take: error not_found errno 19 \"SNAPSHOT_DESTROY of snapshot <id 5>: No such device\"");
  has("map a after take 2: map 0 0 2 0 0 2 2 0 0 2 0 0 0 0 0 0 2");
  has("events after overflow #0: corrupted 240:0 err 28");
  has("append to unknown: error not_found errno 3 \"SNAPSHOT_APPEND_STORAGE of snapshot <id 4>: No such process\"");
  has("images of unknown: error not_found errno 3 \"SNAPSHOT_COLLECT_IMAGES of snapshot <id 4>: No such process\"");
  has("tracked after take 2: 2 tracked; 240:0 block 65536 capacity 1113088 count 17 generation <id 2> snap 2; 240:1 "
      "block 65536 capacity 524288 count 8 generation <id 3> snap 2");
  has("a has a new generation: 2 tracked; 240:0 block 65536 capacity 1113088 count 17 generation <id 8> snap 1; "
      "240:1 block 65536 capacity 524288 count 8 generation <id 3> snap 2");
  has("remove a again: error not_found errno 61 \"TRACKER_REMOVE of device 240:0: No data available\"");
  has("take empty: error module errno 19 \"SNAPSHOT_TAKE of snapshot <id 9>: No such device\"");
}

}  // namespace
}  // namespace blkvault::kernel

namespace blkvault::kernel {
namespace {

// Outside the ioctls, the two implementations word device problems alike.
TEST(SimIoctlDifferential, DeviceResolutionErrorsReadTheSame) {
  World direct(false);
  World through(true);
  for (World* w : {&direct, &through}) {
    SCOPED_TRACE(w == &direct ? "simulation" : "ioctl path");
    const std::string missing = "/nonexistent-blkvault-device";
    auto gone = w->module->device_id(missing);
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code(), ErrorCode::kNotFound);
    EXPECT_EQ(gone.error().sys_errno(), ENOENT);
    EXPECT_EQ(gone.error().message(), "resolving device " + missing + ": No such file or directory");

    auto dir = w->module->device_id(w->dir.path());
    ASSERT_FALSE(dir);
    EXPECT_EQ(dir.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(dir.error().message().rfind("resolving device " + w->dir.path() + ": not a block device", 0), 0u)
        << dir.error().message();

    // A device neither knows is named by its number in messages.
    auto unknown = w->module->device_path(DevId{240, 77});
    ASSERT_TRUE(unknown) << unknown.error().message();
    EXPECT_EQ(*unknown, "240:77");
  }
}

}  // namespace
}  // namespace blkvault::kernel
