#include "decoding_transport_support.h"

#include <linux/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>

namespace blkvault::kernel::testing {

namespace {

// Full request codes of the 6.3 header (SEMANTICS.md §0), by nr.
std::optional<unsigned long> header_code(unsigned nr) {
  switch (nr) {
    case 0: return 0x40085600;
    case 1: return 0x40085601;
    case 2: return 0x40105602;
    case 3: return 0x80185603;
    case 4: return 0x80185604;
    case 5: return 0x40205605;
    case 6: return 0x80105606;
    case 7: return 0x40285607;
    case 8: return 0x80105608;
    case 9: return 0x40105609;
    case 10: return 0x4020560a;
    case 11: return 0x5000560b;
    case 32: return 0x40285620;
    case 33: return 0x40185621;
    case 34: return 0x40185622;
    default: return std::nullopt;
  }
}

// Native-endian field access at explicit byte offsets, as copy_from_user sees it.
template <class T>
T get(const unsigned char* p, size_t offset) {
  T v;
  std::memcpy(&v, p + offset, sizeof v);
  return v;
}
template <class T>
void put(unsigned char* p, size_t offset, T v) {
  std::memcpy(p + offset, &v, sizeof v);
}
DevId get_dev(const unsigned char* p, size_t offset) {
  return DevId{get<uint32_t>(p, offset), get<uint32_t>(p, offset + 4)};
}
void put_dev(unsigned char* p, size_t offset, DevId d) {
  put<uint32_t>(p, offset, d.major);
  put<uint32_t>(p, offset + 4, d.minor);
}
Uuid get_uuid(const unsigned char* p, size_t offset) {
  Uuid id;
  std::memcpy(id.data(), p + offset, id.size());
  return id;
}
unsigned char* get_ptr(const unsigned char* p, size_t offset) {
  return reinterpret_cast<unsigned char*>(get<uintptr_t>(p, offset));
}
std::vector<SectorRange> get_ranges(const unsigned char* array, uint32_t count) {
  std::vector<SectorRange> out(count);
  for (uint32_t i = 0; i < count; ++i) {
    out[i].offset_sectors = get<uint64_t>(array, i * 16);
    out[i].count_sectors = get<uint64_t>(array, i * 16 + 8);
  }
  return out;
}

int errno_of(const Error& e) { return -(e.sys_errno() != 0 ? e.sys_errno() : EIO); }

}  // namespace

int DecodingTransport::call(unsigned long request, void* arg) {
  const unsigned nr = _IOC_NR(request);
  {
    std::lock_guard lock(mutex_);
    requests_.push_back(nr);
    auto expected = header_code(nr);
    if (nr == 12) {
      violations_.push_back("nr 12 (blk_snap_ioctl_end) sent");
    } else if (expected && *expected != request) {
      char text[96];
      std::snprintf(text, sizeof text, "nr %u sent as 0x%lx, the header's code is 0x%lx", nr, request, *expected);
      violations_.push_back(text);
    }
  }
  if (!header_code(nr) || nr == 34) return -ENOTTY;  // no handler (34: not built)
  if (arg == nullptr) {
    // copy_from_user of the argument fails: ENODATA, except EINVAL for these two.
    return nr == 7 || nr == 11 ? -EINVAL : -ENODATA;
  }
  return dispatch(nr, static_cast<unsigned char*>(arg));
}

std::vector<unsigned> DecodingTransport::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

std::vector<std::string> DecodingTransport::violations() const {
  std::lock_guard lock(mutex_);
  return violations_;
}

int DecodingTransport::dispatch(unsigned nr, unsigned char* a) {
  switch (nr) {
    case 0: {  // VERSION {u16 major, minor, revision, build}
      auto v = target_.version();
      if (!v) return errno_of(v.error());
      put<uint16_t>(a, 0, v->major);
      put<uint16_t>(a, 2, v->minor);
      put<uint16_t>(a, 4, v->revision);
      put<uint16_t>(a, 6, v->build);
      return 0;
    }
    case 1: {  // TRACKER_REMOVE {dev 0}
      auto st = target_.remove_tracker(get_dev(a, 0));
      return st ? 0 : errno_of(st.error());
    }
    case 2: {  // TRACKER_COLLECT {u32 count 0, cbt_info* 8}; cbt_info is 48 bytes
      auto infos = target_.tracked_devices();
      if (!infos) return errno_of(infos.error());
      const uint32_t n = static_cast<uint32_t>(infos->size());
      unsigned char* array = get_ptr(a, 8);
      if (array == nullptr) {
        put<uint32_t>(a, 0, n);
        return 0;
      }
      if (get<uint32_t>(a, 0) < n) return -ENOBUFS;  // count not copied back
      for (uint32_t i = 0; i < n; ++i) {
        unsigned char* e = array + i * 48;
        const CbtInfo& info = (*infos)[i];
        put_dev(e, 0, info.dev);
        put<uint32_t>(e, 8, info.block_size_bytes);
        put<uint64_t>(e, 16, info.capacity_bytes);
        put<uint32_t>(e, 24, info.block_count);
        std::memcpy(e + 28, info.generation_id.data(), 16);
        put<uint8_t>(e, 44, info.snap_number);
      }
      put<uint32_t>(a, 0, n);
      return 0;
    }
    case 3: {  // READ_CBT_MAP {dev 0, u32 offset 8, u32 length 12, u8* buff 16}
      const DevId dev = get_dev(a, 0);
      const uint32_t offset = get<uint32_t>(a, 8);
      const uint32_t length = get<uint32_t>(a, 12);
      unsigned char* buff = get_ptr(a, 16);
      auto infos = target_.tracked_devices();
      if (!infos) return errno_of(infos.error());
      auto it = std::find_if(infos->begin(), infos->end(), [&](const CbtInfo& i) { return i.dev == dev; });
      if (it == infos->end()) return -ENODATA;
      if (offset >= it->block_count) {
        // The module checks "taken" (EPERM) and "corrupted" (EFAULT) before the
        // offset (EINVAL): let the backing Module say which applies.
        auto st = target_.read_cbt_map(dev, offset, std::span<uint8_t>());
        return st ? -EINVAL : errno_of(st.error());
      }
      const uint32_t n = std::min(length, it->block_count - offset);
      if (buff == nullptr) return -ENODATA;
      auto st = target_.read_cbt_map(dev, offset, std::span<uint8_t>(buff, n));
      if (!st) return errno_of(st.error());
      return static_cast<int>(n);
    }
    case 4: {  // MARK_DIRTY {dev 0, u32 count 8, block_range* 16}
      const uint32_t count = get<uint32_t>(a, 8);
      unsigned char* array = get_ptr(a, 16);
      if (array == nullptr && count > 0) return -ENODATA;
      auto ranges = get_ranges(array, count);
      auto st = target_.mark_dirty(get_dev(a, 0), ranges);
      return st ? 0 : errno_of(st.error());
    }
    case 5: {  // SNAPSHOT_CREATE {u32 count 0, dev_t* 8, uuid id 16}
      const uint32_t count = get<uint32_t>(a, 0);
      unsigned char* array = get_ptr(a, 8);
      if (array == nullptr && count > 0) return -ENODATA;
      std::vector<DevId> devices(count);
      for (uint32_t i = 0; i < count; ++i) devices[i] = get_dev(array, i * 8);
      auto id = target_.create_snapshot(devices);
      if (!id) return errno_of(id.error());
      std::memcpy(a + 16, id->data(), 16);
      return 0;
    }
    case 6: {  // SNAPSHOT_DESTROY {uuid 0}
      auto st = target_.destroy_snapshot(get_uuid(a, 0));
      return st ? 0 : errno_of(st.error());
    }
    case 7: {  // APPEND_STORAGE {uuid 0, dev 16, u32 count 24, block_range* 32}
      const uint32_t count = get<uint32_t>(a, 24);
      unsigned char* array = get_ptr(a, 32);
      if (array == nullptr && count > 0) return -ENODATA;
      auto ranges = get_ranges(array, count);
      auto st = target_.append_storage(get_uuid(a, 0), get_dev(a, 16), ranges);
      return st ? 0 : errno_of(st.error());
    }
    case 8: {  // SNAPSHOT_TAKE {uuid 0}
      auto st = target_.take_snapshot(get_uuid(a, 0));
      return st ? 0 : errno_of(st.error());
    }
    case 9: {  // SNAPSHOT_COLLECT {u32 count 0, uuid* 8}
      auto ids = target_.snapshots();
      if (!ids) return errno_of(ids.error());
      const uint32_t n = static_cast<uint32_t>(ids->size());
      unsigned char* array = get_ptr(a, 8);
      if (array == nullptr) {
        put<uint32_t>(a, 0, n);
        return 0;
      }
      const uint32_t capacity = get<uint32_t>(a, 0);
      const uint32_t written = std::min(capacity, n);
      for (uint32_t i = 0; i < written; ++i) std::memcpy(array + i * 16, (*ids)[i].data(), 16);
      put<uint32_t>(a, 0, written);
      return capacity < n ? -ENODATA : 0;
    }
    case 10: {  // COLLECT_IMAGES {uuid 0, u32 count 16, image_info* 24}
      auto images = target_.snapshot_images(get_uuid(a, 0));
      if (!images) return errno_of(images.error());
      const uint32_t n = static_cast<uint32_t>(images->size());
      unsigned char* array = get_ptr(a, 24);
      if (array == nullptr) {
        put<uint32_t>(a, 16, n);
        return 0;
      }
      if (get<uint32_t>(a, 16) < n) {
        put<uint32_t>(a, 16, n);
        return -ENODATA;
      }
      for (uint32_t i = 0; i < n; ++i) {
        put_dev(array, i * 16, (*images)[i].original);
        put_dev(array, i * 16 + 8, (*images)[i].image);
      }
      put<uint32_t>(a, 16, n);
      return 0;
    }
    case 11: {  // WAIT_EVENT {uuid 0, u32 timeout 16, u32 code 20, s64 time 24, data 32}
      auto event = target_.wait_event(get_uuid(a, 0), get<uint32_t>(a, 16));
      if (!event) return errno_of(event.error());
      if (!*event) return -ENOENT;
      const Event& e = **event;
      put<uint32_t>(a, 20, static_cast<uint32_t>(e.code));
      put<int64_t>(a, 24, e.time_label_ns);
      if (e.code == Event::Code::kLowFreeSpace) {
        put<uint64_t>(a, 32, e.requested_sectors);
      } else {
        put_dev(a, 32, e.corrupted_device);
        put<int32_t>(a, 40, e.error_code);
      }
      return 0;
    }
    case 32: {  // MOD {u64 flags 0, u8 name[32] 8}
      put<uint64_t>(a, 0, 0x2);
      std::memset(a + 8, 0, 32);
      std::memcpy(a + 8, "standalone", 10);
      return 0;
    }
    case 33:  // SETLOG {s32 tz 0, u32 level 4, u32 size 8, u8* path 16}
      return get<uint32_t>(a, 8) == 0 ? -EINVAL : 0;
    default:  // 12 (never sent), 13..31, 34 (not built), 35+
      return -ENOTTY;
  }
}

}  // namespace blkvault::kernel::testing
