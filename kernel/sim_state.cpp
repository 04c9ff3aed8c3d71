#include "kernel/sim_state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>

#include <fmt/format.h>
#include <xxhash.h>

#include "common/file_io.h"

namespace blkvault::kernel::sim {
namespace {

constexpr char kMagic[8] = {'B', 'V', 'S', 'I', 'M', 'S', 'T', '\0'};
constexpr uint32_t kFormatVersion = 1;
constexpr size_t kHeaderSize = 48;

// ---- little-endian encoding ----

class Encoder {
 public:
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) u8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) u8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  void boolean(bool v) { u8(v ? 1 : 0); }
  void dev(DevId d) {
    u32(d.major);
    u32(d.minor);
  }
  void uuid(const Uuid& id) { out_.append(reinterpret_cast<const char*>(id.data()), id.size()); }
  void bytes(std::span<const uint8_t> b) {
    u64(b.size());
    out_.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  void str(std::string_view s) {
    u64(s.size());
    out_.append(s);
  }
  void u64s(const std::vector<uint64_t>& v) {
    u64(v.size());
    for (uint64_t x : v) u64(x);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == in_.size(); }
  uint8_t u8() {
    if (!need(1)) return 0;
    return static_cast<uint8_t>(in_[pos_++]);
  }
  uint32_t u32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{u8()} << (8 * i);
    return v;
  }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{u8()} << (8 * i);
    return v;
  }
  int64_t i64() { return static_cast<int64_t>(u64()); }
  bool boolean() { return u8() != 0; }
  DevId dev() {
    DevId d;
    d.major = u32();
    d.minor = u32();
    return d;
  }
  Uuid uuid() {
    Uuid id{};
    if (need(id.size())) {
      std::memcpy(id.data(), in_.data() + pos_, id.size());
      pos_ += id.size();
    }
    return id;
  }
  std::vector<uint8_t> bytes() {
    uint64_t n = u64();
    std::vector<uint8_t> v;
    if (!need(n)) return v;
    v.assign(in_.begin() + static_cast<ptrdiff_t>(pos_), in_.begin() + static_cast<ptrdiff_t>(pos_ + n));
    pos_ += n;
    return v;
  }
  std::string str() {
    uint64_t n = u64();
    if (!need(n)) return {};
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  std::vector<uint64_t> u64s() {
    uint64_t n = u64();
    std::vector<uint64_t> v;
    if (!need(n * 8)) return v;
    v.reserve(n);
    for (uint64_t i = 0; i < n; ++i) v.push_back(u64());
    return v;
  }
  // A count of items each at least `min_item_bytes` long, refused if the rest is shorter.
  uint64_t count(size_t min_item_bytes) {
    uint64_t n = u64();
    if (min_item_bytes && n > (in_.size() - pos_) / min_item_bytes) ok_ = false;
    return ok_ ? n : 0;
  }

 private:
  bool need(uint64_t n) {
    if (!ok_ || n > in_.size() - pos_) {
      ok_ = false;
      return false;
    }
    return true;
  }
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

void encode_stamp(Encoder& e, const FileStamp& s) {
  e.u64(s.size);
  e.i64(s.mtime_ns);
  e.i64(s.ctime_ns);
  e.u64(s.ino);
  e.boolean(s.trusted);
}

FileStamp decode_stamp(Decoder& d) {
  FileStamp s;
  s.size = d.u64();
  s.mtime_ns = d.i64();
  s.ctime_ns = d.i64();
  s.ino = d.u64();
  s.trusted = d.boolean();
  return s;
}

void encode_optional_uuid(Encoder& e, const std::optional<Uuid>& id) {
  e.boolean(id.has_value());
  if (id) e.uuid(*id);
}

std::optional<Uuid> decode_optional_uuid(Decoder& d) {
  if (!d.boolean()) return std::nullopt;
  return d.uuid();
}

void encode_event(Encoder& e, const StoredEvent& ev) {
  e.u32(static_cast<uint32_t>(ev.code));
  e.i64(ev.time_ns);
  e.u64(ev.requested_sectors);
  e.dev(ev.device);
  e.u32(static_cast<uint32_t>(ev.error_code));
}

StoredEvent decode_event(Decoder& d) {
  StoredEvent ev;
  ev.code = static_cast<Event::Code>(d.u32());
  ev.time_ns = d.i64();
  ev.requested_sectors = d.u64();
  ev.device = d.dev();
  ev.error_code = static_cast<int32_t>(d.u32());
  return ev;
}

void encode_snap_device(Encoder& e, const SnapDevice& sd) {
  e.dev(sd.dev);
  e.boolean(sd.image_minor.has_value());
  e.u32(sd.image_minor.value_or(0));
  e.boolean(sd.tracked);
  e.u64(sd.capacity_bytes);
  e.u32(sd.block_size);
  e.u32(sd.chunk_size);
  e.u64s(sd.fingerprints);
  e.u64(sd.cow.size());
  for (const auto& [chunk, loc] : sd.cow) {
    e.u64(chunk);
    e.dev(loc.storage_dev);
    e.u64(loc.sector);
  }
  e.boolean(sd.corrupted);
  e.u32(static_cast<uint32_t>(sd.corrupt_errno));
}

SnapDevice decode_snap_device(Decoder& d) {
  SnapDevice sd;
  sd.dev = d.dev();
  bool has_image = d.boolean();
  uint32_t minor = d.u32();
  if (has_image) sd.image_minor = minor;
  sd.tracked = d.boolean();
  sd.capacity_bytes = d.u64();
  sd.block_size = d.u32();
  sd.chunk_size = d.u32();
  sd.fingerprints = d.u64s();
  uint64_t n = d.count(24);
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t chunk = d.u64();
    ChunkLocation loc;
    loc.storage_dev = d.dev();
    loc.sector = d.u64();
    sd.cow.emplace(chunk, loc);
  }
  sd.corrupted = d.boolean();
  sd.corrupt_errno = static_cast<int32_t>(d.u32());
  return sd;
}

void encode_snapshot(Encoder& e, const Snapshot& s) {
  e.uuid(s.id);
  e.boolean(s.listed);
  e.boolean(s.taken);
  e.u64(s.devices.size());
  for (const SnapDevice& sd : s.devices) encode_snap_device(e, sd);
  e.u64(s.ranges.size());
  for (const StorageRange& r : s.ranges) {
    e.dev(r.dev);
    e.u64(r.offset_sectors);
    e.u64(r.count_sectors);
  }
  e.u64(s.cursor_range);
  e.u64(s.cursor_offset);
  e.u64(s.capacity_sectors);
  e.u64(s.filled_sectors);
  e.u64(s.requested_sectors);
  e.boolean(s.low_space);
  e.boolean(s.overflow);
  e.u64(s.events.size());
  for (const StoredEvent& ev : s.events) encode_event(e, ev);
}

Snapshot decode_snapshot(Decoder& d) {
  Snapshot s;
  s.id = d.uuid();
  s.listed = d.boolean();
  s.taken = d.boolean();
  uint64_t n = d.count(8);
  for (uint64_t i = 0; i < n && d.ok(); ++i) s.devices.push_back(decode_snap_device(d));
  n = d.count(24);
  for (uint64_t i = 0; i < n; ++i) {
    StorageRange r;
    r.dev = d.dev();
    r.offset_sectors = d.u64();
    r.count_sectors = d.u64();
    s.ranges.push_back(r);
  }
  s.cursor_range = d.u64();
  s.cursor_offset = d.u64();
  s.capacity_sectors = d.u64();
  s.filled_sectors = d.u64();
  s.requested_sectors = d.u64();
  s.low_space = d.boolean();
  s.overflow = d.boolean();
  n = d.count(32);
  for (uint64_t i = 0; i < n; ++i) s.events.push_back(decode_event(d));
  return s;
}

void encode_tracker(Encoder& e, const Tracker& t) {
  e.dev(t.dev);
  e.u64(t.capacity_bytes);
  e.u32(t.block_size);
  e.u32(t.block_count);
  e.uuid(t.generation);
  e.u8(t.previous);
  e.u8(t.active);
  e.boolean(t.map_corrupted);
  e.bytes(t.write_map);
  e.bytes(t.read_map);
  encode_optional_uuid(e, t.owner);
  e.boolean(t.fingerprints_valid);
  e.u64s(t.fingerprints);
  encode_stamp(e, t.stamp);
}

Tracker decode_tracker(Decoder& d) {
  Tracker t;
  t.dev = d.dev();
  t.capacity_bytes = d.u64();
  t.block_size = d.u32();
  t.block_count = d.u32();
  t.generation = d.uuid();
  t.previous = d.u8();
  t.active = d.u8();
  t.map_corrupted = d.boolean();
  t.write_map = d.bytes();
  t.read_map = d.bytes();
  t.owner = decode_optional_uuid(d);
  t.fingerprints_valid = d.boolean();
  t.fingerprints = d.u64s();
  t.stamp = decode_stamp(d);
  return t;
}

Uuid random_uuid() {
  std::random_device rd;
  Uuid id;
  for (size_t i = 0; i < id.size(); i += 4) {
    uint32_t v = rd();
    std::memcpy(id.data() + i, &v, 4);
  }
  return id;
}

void put_header(std::string& out, const Uuid& instance, uint64_t counter, uint64_t payload_len) {
  Encoder e;
  e.u32(kFormatVersion);
  e.u32(0);
  e.uuid(instance);
  e.u64(counter);
  e.u64(payload_len);
  out.assign(kMagic, sizeof kMagic);
  out += e.take();
}

struct Header {
  Uuid instance{};
  uint64_t counter = 0;
  uint64_t payload_len = 0;
};

Result<Header> parse_header(std::string_view raw, const std::string& what) {
  if (raw.size() < kHeaderSize || std::memcmp(raw.data(), kMagic, sizeof kMagic) != 0) {
    return fail(ErrorCode::kCorrupt, fmt::format("{}: not a simulated-module state file (bad magic)", what));
  }
  Decoder d(raw.substr(8, kHeaderSize - 8));
  uint32_t version = d.u32();
  if (version != kFormatVersion) {
    return fail(ErrorCode::kUnsupported,
                fmt::format("{}: state format version {} is not supported (this build reads {})", what, version,
                            kFormatVersion));
  }
  d.u32();
  Header h;
  h.instance = d.uuid();
  h.counter = d.u64();
  h.payload_len = d.u64();
  return h;
}

}  // namespace

bool State::writes_only_through_sim(DevId dev) const {
  return std::find(sim_writes_only.begin(), sim_writes_only.end(), dev) != sim_writes_only.end();
}

const RegistryEntry* State::find_registered(DevId dev) const {
  for (const RegistryEntry& e : registry)
    if (e.dev == dev) return &e;
  return nullptr;
}

const RegistryEntry* State::find_registered(const std::string& canonical_path) const {
  for (const RegistryEntry& e : registry)
    if (e.path == canonical_path) return &e;
  return nullptr;
}

Snapshot* State::find_listed(const Uuid& id) {
  for (Snapshot& s : snapshots)
    if (s.id == id && s.listed) return &s;
  return nullptr;
}

const Snapshot* State::find_listed(const Uuid& id) const {
  return const_cast<State*>(this)->find_listed(id);
}

std::string encode_state(const State& state) {
  Encoder e;
  e.u64(state.registry.size());
  for (const RegistryEntry& r : state.registry) {
    e.dev(r.dev);
    e.str(r.path);
    e.boolean(r.block_device);
  }
  e.u32(state.next_file_minor);
  e.u64(state.trackers.size());
  for (const auto& [dev, t] : state.trackers) encode_tracker(e, t);
  e.u64(state.snapshots.size());
  for (const Snapshot& s : state.snapshots) encode_snapshot(e, s);
  e.u64(state.diff_storage_minimum_sectors);
  e.boolean(state.faults.list_bug);
  e.boolean(state.faults.storage_limit_sectors.has_value());
  e.u64(state.faults.storage_limit_sectors.value_or(0));
  e.u64(state.faults.read_errors.size());
  for (const ReadFault& f : state.faults.read_errors) {
    e.dev(f.device);
    e.u64(f.offset_bytes);
    e.u64(f.length_bytes);
  }
  e.u64(state.faults.lose_next_write.size());
  for (DevId d : state.faults.lose_next_write) e.dev(d);
  // Appended after the version-1 layout only when there are any, so a state
  // without lost ranges (or sim-only devices) stays readable by builds that
  // predate them, and theirs reads here as none. The sim-only list follows the
  // lost ranges, which are then written even when empty.
  if (!state.faults.lose_ranges.empty() || !state.sim_writes_only.empty()) {
    e.u64(state.faults.lose_ranges.size());
    for (const ReadFault& f : state.faults.lose_ranges) {
      e.dev(f.device);
      e.u64(f.offset_bytes);
      e.u64(f.length_bytes);
    }
  }
  if (!state.sim_writes_only.empty()) {
    e.u64(state.sim_writes_only.size());
    for (DevId d : state.sim_writes_only) e.dev(d);
  }
  return e.take();
}

Result<State> decode_state(std::string_view payload, const std::string& what) {
  Decoder d(payload);
  State s;
  uint64_t n = d.count(17);
  for (uint64_t i = 0; i < n && d.ok(); ++i) {
    RegistryEntry r;
    r.dev = d.dev();
    r.path = d.str();
    r.block_device = d.boolean();
    s.registry.push_back(std::move(r));
  }
  s.next_file_minor = d.u32();
  n = d.count(8);
  for (uint64_t i = 0; i < n && d.ok(); ++i) {
    Tracker t = decode_tracker(d);
    s.trackers.emplace(t.dev, std::move(t));
  }
  n = d.count(16);
  for (uint64_t i = 0; i < n && d.ok(); ++i) s.snapshots.push_back(decode_snapshot(d));
  s.diff_storage_minimum_sectors = d.u64();
  s.faults.list_bug = d.boolean();
  bool has_limit = d.boolean();
  uint64_t limit = d.u64();
  if (has_limit) s.faults.storage_limit_sectors = limit;
  n = d.count(24);
  for (uint64_t i = 0; i < n; ++i) {
    ReadFault f;
    f.device = d.dev();
    f.offset_bytes = d.u64();
    f.length_bytes = d.u64();
    s.faults.read_errors.push_back(f);
  }
  n = d.count(8);
  for (uint64_t i = 0; i < n; ++i) s.faults.lose_next_write.push_back(d.dev());
  if (d.ok() && !d.at_end()) {
    n = d.count(24);
    for (uint64_t i = 0; i < n; ++i) {
      ReadFault f;
      f.device = d.dev();
      f.offset_bytes = d.u64();
      f.length_bytes = d.u64();
      s.faults.lose_ranges.push_back(f);
    }
  }
  if (d.ok() && !d.at_end()) {
    n = d.count(8);
    for (uint64_t i = 0; i < n; ++i) s.sim_writes_only.push_back(d.dev());
  }
  if (!d.ok() || !d.at_end()) return fail(ErrorCode::kCorrupt, what + ": malformed state payload");
  return s;
}

Result<FileLock> FileLock::acquire(const std::string& path, bool exclusive) {
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(path, O_RDWR | O_CREAT, 0600));
  int r;
  do {
    r = ::flock(fd.get(), exclusive ? LOCK_EX : LOCK_SH);
  } while (r != 0 && errno == EINTR);
  if (r != 0) return fail_errno("locking " + path);
  return FileLock(std::move(fd));
}

Result<std::shared_ptr<StateStore>> StateStore::open(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return fail_errno("creating " + dir);
  } else if (!std::filesystem::is_directory(dir, ec)) {
    return fail(ErrorCode::kInvalidArgument, "simulated module state " + dir + " is not a directory");
  }
  std::shared_ptr<StateStore> store(new StateStore(dir));
  BLKVAULT_TRY_ASSIGN(FileLock lock, FileLock::acquire(store->lock_path(), true));
  if (!std::filesystem::exists(store->state_path(), ec)) {
    BLKVAULT_TRY(store->save_locked(State{}));
  }
  BLKVAULT_TRY(store->load_locked());
  return store;
}

Result<std::shared_ptr<const State>> StateStore::load_locked() {
  const std::string path = state_path();
  BLKVAULT_TRY_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY));
  std::string head(kHeaderSize, '\0');
  BLKVAULT_TRY_ASSIGN(size_t got, pread_full(fd.get(), {reinterpret_cast<uint8_t*>(head.data()), head.size()}, 0,
                                             path, /*allow_short=*/true));
  head.resize(got);
  BLKVAULT_TRY_ASSIGN(Header h, parse_header(head, path));
  {
    std::lock_guard<std::mutex> g(mu_);
    if (cached_ && h.instance == cached_instance_ && h.counter == cached_counter_) return cached_;
  }
  BLKVAULT_TRY_ASSIGN(uint64_t size, fd_size(fd.get(), path));
  if (size != kHeaderSize + h.payload_len + 8) {
    return fail(ErrorCode::kCorrupt, fmt::format("{}: size {} does not match its header", path, size));
  }
  std::string raw(size, '\0');
  BLKVAULT_TRY(pread_full(fd.get(), {reinterpret_cast<uint8_t*>(raw.data()), raw.size()}, 0, path));
  uint64_t want = XXH3_64bits(raw.data(), kHeaderSize + h.payload_len);
  Decoder trailer(std::string_view(raw).substr(kHeaderSize + h.payload_len));
  if (trailer.u64() != want) return fail(ErrorCode::kCorrupt, path + ": checksum mismatch");
  BLKVAULT_TRY_ASSIGN(State state, decode_state(std::string_view(raw).substr(kHeaderSize, h.payload_len), path));
  auto shared = std::make_shared<const State>(std::move(state));
  std::lock_guard<std::mutex> g(mu_);
  cached_ = shared;
  cached_instance_ = h.instance;
  cached_counter_ = h.counter;
  return shared;
}

Status StateStore::save_locked(State state) {
  Uuid instance;
  uint64_t counter;
  {
    std::lock_guard<std::mutex> g(mu_);
    instance = cached_ ? cached_instance_ : random_uuid();
    counter = cached_ ? cached_counter_ + 1 : 1;
  }
  std::string payload = encode_state(state);
  std::string file;
  put_header(file, instance, counter, payload.size());
  file += payload;
  Encoder trailer;
  trailer.u64(XXH3_64bits(file.data(), file.size()));
  file += trailer.take();
  BLKVAULT_TRY(write_file_atomic(state_path(), file));
  std::lock_guard<std::mutex> g(mu_);
  cached_ = std::make_shared<const State>(std::move(state));
  cached_instance_ = instance;
  cached_counter_ = counter;
  return {};
}

}  // namespace blkvault::kernel::sim
