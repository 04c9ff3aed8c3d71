// IoctlModule marshalling, through the decoding transport, against a mock Module
// that plays the kernel; plus its error texts and errno mapping.
#include "kernel/ioctl_module.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "decoding_transport_support.h"
#include "ioctl_mock_module.h"
#include "kernel/abi.h"

namespace blkvault::kernel {
namespace {

using ::testing::_;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::Invoke;
using ::testing::Return;
using ::testing::StrictMock;
using testing::DecodingTransport;
using testing::MockModule;

constexpr DevId kSdb{8, 16};
constexpr DevId kSdc{8, 32};
constexpr Uuid kSnapId{0x5f, 0x0c, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1};
const std::string kSnapText = "5f0c1e2d-3c4b-5a69-7887-96a5b4c3d2e1";

CbtInfo make_info(DevId dev, uint32_t block_count, uint8_t snap, uint8_t gen_seed) {
  CbtInfo info;
  info.dev = dev;
  info.block_size_bytes = 65536;
  info.capacity_bytes = uint64_t{block_count} * 65536 - 512;
  info.block_count = block_count;
  for (size_t i = 0; i < 16; ++i) info.generation_id[i] = static_cast<uint8_t>(gen_seed + i * 7);
  info.snap_number = snap;
  return info;
}

bool operator_eq(const CbtInfo& a, const CbtInfo& b) {
  return a.dev == b.dev && a.block_size_bytes == b.block_size_bytes && a.capacity_bytes == b.capacity_bytes &&
         a.block_count == b.block_count && a.generation_id == b.generation_id && a.snap_number == b.snap_number;
}

tl::unexpected<Error> module_fail(std::string_view op, std::string_view subject, int err) {
  return tl::unexpected<Error>(module_error(op, subject, err));
}

// A transport that answers from a script, for returns no real Module can produce.
class ScriptedTransport final : public IoctlTransport {
 public:
  std::function<int(unsigned long, void*)> handler;
  int call(unsigned long request, void* arg) override { return handler(request, arg); }
};

class IoctlModuleTest : public ::testing::Test {
 protected:
  IoctlModuleTest() {
    auto transport = std::make_unique<DecodingTransport>(kernel_);
    transport_ = transport.get();
    IoctlModuleOptions options;
    options.read_chunk_bytes = 1000;
    module_ = IoctlModule::with_transport(std::move(transport), options);
  }
  void TearDown() override { EXPECT_THAT(transport_->violations(), ElementsAre()); }

  StrictMock<MockModule> kernel_;
  DecodingTransport* transport_;
  std::unique_ptr<IoctlModule> module_;
};

TEST_F(IoctlModuleTest, VersionIsDecodedFromTheVersionStruct) {
  EXPECT_CALL(kernel_, version()).WillOnce(Return(Result<Version>(Version{6, 3, 0, 73})));
  auto v = module_->version();
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(to_string(*v), "6.3.0.73");
  EXPECT_THAT(transport_->requests(), ElementsAre(abi::kNrVersion));
}

TEST_F(IoctlModuleTest, TrackedDevicesProbesWithNullThenFetchesEveryField) {
  std::vector<CbtInfo> infos{make_info(kSdb, 1600, 3, 1), make_info(kSdc, 7, 255, 99)};
  EXPECT_CALL(kernel_, tracked_devices()).Times(2).WillRepeatedly(Return(infos));
  auto got = module_->tracked_devices();
  ASSERT_TRUE(got) << got.error().message();
  ASSERT_EQ(got->size(), 2u);
  for (size_t i = 0; i < 2; ++i) EXPECT_TRUE(operator_eq((*got)[i], infos[i])) << i;
  EXPECT_THAT(transport_->requests(), ElementsAre(abi::kNrTrackerCollect, abi::kNrTrackerCollect));
}

TEST_F(IoctlModuleTest, TrackedDevicesWithNoTrackerNeedsOnlyTheProbe) {
  EXPECT_CALL(kernel_, tracked_devices()).WillOnce(Return(std::vector<CbtInfo>{}));
  auto got = module_->tracked_devices();
  ASSERT_TRUE(got);
  EXPECT_TRUE(got->empty());
  EXPECT_THAT(transport_->requests(), ElementsAre(abi::kNrTrackerCollect));
}

TEST_F(IoctlModuleTest, TrackedDevicesProbesAgainWhenATrackerAppearsBeforeTheFetch) {
  std::vector<CbtInfo> one{make_info(kSdb, 10, 1, 1)};
  std::vector<CbtInfo> two{make_info(kSdb, 10, 1, 1), make_info(kSdc, 20, 1, 2)};
  EXPECT_CALL(kernel_, tracked_devices())
      .WillOnce(Return(one))           // probe: 1
      .WillOnce(Return(two))           // fetch with room for 1: ENOBUFS
      .WillRepeatedly(Return(two));    // probe: 2, fetch: 2
  auto got = module_->tracked_devices();
  ASSERT_TRUE(got) << got.error().message();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_TRUE(operator_eq((*got)[1], two[1]));
  EXPECT_EQ(transport_->requests().size(), 4u);
}

TEST_F(IoctlModuleTest, TrackedDevicesReturnsOnlyTheFilledEntriesWhenATrackerGoesAway) {
  std::vector<CbtInfo> two{make_info(kSdb, 10, 1, 1), make_info(kSdc, 20, 1, 2)};
  std::vector<CbtInfo> one{make_info(kSdc, 20, 1, 2)};
  EXPECT_CALL(kernel_, tracked_devices()).WillOnce(Return(two)).WillOnce(Return(one));
  auto got = module_->tracked_devices();
  ASSERT_TRUE(got) << got.error().message();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_TRUE(operator_eq((*got)[0], one[0]));
}

TEST_F(IoctlModuleTest, SnapshotsReturnsOnlyTheFilledIdsWhenOneGoesAway) {
  Uuid other = kSnapId;
  other[0] = 0;
  EXPECT_CALL(kernel_, snapshots())
      .WillOnce(Return(std::vector<Uuid>{kSnapId, other}))
      .WillOnce(Return(std::vector<Uuid>{other}));
  auto got = module_->snapshots();
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_THAT(*got, ElementsAre(other));
}

TEST_F(IoctlModuleTest, SnapshotsWithNoneNeedsOnlyTheProbe) {
  EXPECT_CALL(kernel_, snapshots()).WillOnce(Return(std::vector<Uuid>{}));
  auto got = module_->snapshots();
  ASSERT_TRUE(got);
  EXPECT_TRUE(got->empty());
  EXPECT_THAT(transport_->requests(), ElementsAre(9u));
}

TEST_F(IoctlModuleTest, TrackedDevicesGivesUpWhenTheCountNeverSettles) {
  int calls = 0;
  EXPECT_CALL(kernel_, tracked_devices()).WillRepeatedly(Invoke([&]() -> Result<std::vector<CbtInfo>> {
    ++calls;
    return std::vector<CbtInfo>(static_cast<size_t>(calls), make_info(kSdb, 1, 1, 1));
  }));
  auto got = module_->tracked_devices();
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code(), ErrorCode::kModule);
  EXPECT_EQ(got.error().message(),
            "TRACKER_COLLECT: the count kept changing between probe and fetch (64 tries)");
  EXPECT_EQ(calls, 2 * IoctlModule::kMaxProbeRounds);
}

TEST_F(IoctlModuleTest, TrackedDevicesReportsTheModulesErrno) {
  EXPECT_CALL(kernel_, tracked_devices()).WillOnce(Return(module_fail("TRACKER_COLLECT", "", ENOMEM)));
  auto got = module_->tracked_devices();
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().message(), "TRACKER_COLLECT: Cannot allocate memory");
  EXPECT_EQ(got.error().sys_errno(), ENOMEM);
  EXPECT_EQ(got.error().code(), ErrorCode::kModule);
}

// The mock's map: byte i of the map is (i * 7 + 3) mod 251.
Status fill_map(DevId, uint32_t offset, std::span<uint8_t> out) {
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(((offset + i) * 7 + 3) % 251);
  return {};
}

TEST_F(IoctlModuleTest, ReadCbtMapIsReadInChunksOfAtMostTheConfiguredSize) {
  EXPECT_CALL(kernel_, tracked_devices())
      .WillRepeatedly(Return(std::vector<CbtInfo>{make_info(kSdc, 9, 1, 1), make_info(kSdb, 2600, 2, 5)}));
  EXPECT_CALL(kernel_, read_cbt_map(kSdb, 0u, _)).WillOnce(Invoke(fill_map));
  EXPECT_CALL(kernel_, read_cbt_map(kSdb, 1000u, _)).WillOnce(Invoke(fill_map));
  EXPECT_CALL(kernel_, read_cbt_map(kSdb, 2000u, _)).WillOnce(Invoke([](DevId d, uint32_t o, std::span<uint8_t> s) {
    EXPECT_EQ(s.size(), 600u);
    return fill_map(d, o, s);
  }));
  std::vector<uint8_t> map(2600);
  ASSERT_TRUE(module_->read_cbt_map(kSdb, 0, map));
  for (size_t i = 0; i < map.size(); ++i) ASSERT_EQ(map[i], (i * 7 + 3) % 251) << i;
  EXPECT_THAT(transport_->requests(), ElementsAre(3u, 3u, 3u));
}

TEST_F(IoctlModuleTest, ReadCbtMapStartsAtTheGivenBlock) {
  EXPECT_CALL(kernel_, tracked_devices()).WillRepeatedly(Return(std::vector<CbtInfo>{make_info(kSdb, 2600, 2, 5)}));
  EXPECT_CALL(kernel_, read_cbt_map(kSdb, 2590u, _)).WillOnce(Invoke(fill_map));
  std::vector<uint8_t> map(10);
  ASSERT_TRUE(module_->read_cbt_map(kSdb, 2590, map));
  EXPECT_EQ(map[0], (2590 * 7 + 3) % 251);
  EXPECT_EQ(map[9], (2599 * 7 + 3) % 251);
}

TEST_F(IoctlModuleTest, ReadCbtMapWithoutATakenSnapshotIsEperm) {
  EXPECT_CALL(kernel_, tracked_devices()).WillRepeatedly(Return(std::vector<CbtInfo>{make_info(kSdb, 100, 1, 1)}));
  EXPECT_CALL(kernel_, read_cbt_map(kSdb, 0u, _))
      .WillOnce(Return(module_fail("TRACKER_READ_CBT_MAP", "device 8:16", EPERM)));
  std::vector<uint8_t> map(100);
  auto st = module_->read_cbt_map(kSdb, 0, map);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "TRACKER_READ_CBT_MAP of device 8:16: Operation not permitted");
  EXPECT_EQ(st.error().sys_errno(), EPERM);
  EXPECT_EQ(st.error().code(), ErrorCode::kModule);
}

TEST_F(IoctlModuleTest, ReadCbtMapOfAnUntrackedDeviceIsNotFound) {
  EXPECT_CALL(kernel_, tracked_devices()).WillRepeatedly(Return(std::vector<CbtInfo>{make_info(kSdc, 100, 1, 1)}));
  std::vector<uint8_t> map(100);
  auto st = module_->read_cbt_map(kSdb, 0, map);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "TRACKER_READ_CBT_MAP of device 8:16: No data available");
  EXPECT_EQ(st.error().sys_errno(), ENODATA);
  EXPECT_EQ(st.error().code(), ErrorCode::kNotFound);
}

TEST_F(IoctlModuleTest, ReadCbtMapPastTheEndIsEinvalLikeTheModule) {
  EXPECT_CALL(kernel_, tracked_devices()).WillRepeatedly(Return(std::vector<CbtInfo>{make_info(kSdb, 100, 1, 1)}));
  // The transport first asks the kernel side whether EPERM/EFAULT apply.
  EXPECT_CALL(kernel_, read_cbt_map(kSdb, 100u, _)).WillOnce(Return(Status{}));
  std::vector<uint8_t> map(1);
  auto st = module_->read_cbt_map(kSdb, 100, map);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "TRACKER_READ_CBT_MAP of device 8:16: Invalid argument");
  EXPECT_EQ(st.error().sys_errno(), EINVAL);
}

TEST(IoctlModuleReturns, ReadCbtMapRefusesAShortOrZeroByteCount) {
  auto scripted = std::make_unique<ScriptedTransport>();
  ScriptedTransport* script = scripted.get();
  auto module = IoctlModule::with_transport(std::move(scripted));
  std::vector<uint8_t> map(100);

  script->handler = [](unsigned long, void*) { return 60; };
  auto st = module->read_cbt_map(kSdb, 5, map);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(),
            "TRACKER_READ_CBT_MAP of device 8:16 at block 5: returned 60 bytes, expected 100 (did the map shrink?)");
  EXPECT_EQ(st.error().code(), ErrorCode::kModule);

  script->handler = [](unsigned long, void*) { return 0; };
  st = module->read_cbt_map(kSdb, 0, map);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(),
            "TRACKER_READ_CBT_MAP of device 8:16 at block 0: returned 0 bytes, expected 100 (did the map shrink?)");
}

TEST(IoctlModuleReturns, ShortChunkedReadIsReportedForTheWholeRequest) {
  auto scripted = std::make_unique<ScriptedTransport>();
  std::vector<uint32_t> offsets;
  scripted->handler = [&](unsigned long, void* arg) {
    auto* a = static_cast<abi::TrackerReadCbtBitmap*>(arg);
    offsets.push_back(a->offset);
    return a->offset < 25 ? static_cast<int>(a->length) : 3;  // the map ends at block 28
  };
  IoctlModuleOptions options;
  options.read_chunk_bytes = 10;
  auto module = IoctlModule::with_transport(std::move(scripted), options);
  std::vector<uint8_t> map(25);
  auto st = module->read_cbt_map(kSdb, 5, map);
  ASSERT_FALSE(st);
  // As SimModule and a single READ_CBT_MAP call would say it: 23 of 25 from block 5.
  EXPECT_EQ(st.error().message(),
            "TRACKER_READ_CBT_MAP of device 8:16 at block 5: returned 23 bytes, expected 25 (did the map shrink?)");
  EXPECT_THAT(offsets, ElementsAre(5u, 15u, 25u));
}

TEST(IoctlModuleReturns, UnknownEventCodeIsAnError) {
  auto scripted = std::make_unique<ScriptedTransport>();
  scripted->handler = [](unsigned long request, void* arg) {
    EXPECT_EQ(request, abi::kIoctlSnapshotWaitEvent);
    static_cast<abi::SnapshotEvent*>(arg)->code = 7;
    return 0;
  };
  auto module = IoctlModule::with_transport(std::move(scripted));
  auto got = module->wait_event(kSnapId, 100);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().message(), "SNAPSHOT_WAIT_EVENT of snapshot " + kSnapText + ": unknown event code 7");
}

MATCHER_P(RangesAre, expected, "") {
  std::vector<std::pair<uint64_t, uint64_t>> got;
  for (const SectorRange& r : arg) got.emplace_back(r.offset_sectors, r.count_sectors);
  return got == expected;
}

TEST_F(IoctlModuleTest, MarkDirtyPassesEveryRange) {
  std::vector<std::pair<uint64_t, uint64_t>> want{{0, 8}, {1ull << 40, 3}, {77, 1}};
  EXPECT_CALL(kernel_, mark_dirty(kSdb, RangesAre(want))).WillOnce(Return(Status{}));
  std::vector<SectorRange> ranges{{0, 8}, {1ull << 40, 3}, {77, 1}};
  EXPECT_TRUE(module_->mark_dirty(kSdb, ranges));
}

TEST_F(IoctlModuleTest, MarkDirtyOfAnUntrackedDeviceIsNotFound) {
  EXPECT_CALL(kernel_, mark_dirty(kSdb, _))
      .WillOnce(Return(module_fail("TRACKER_MARK_DIRTY_BLOCKS", "device 8:16", ENODEV)));
  std::vector<SectorRange> ranges{{0, 8}};
  auto st = module_->mark_dirty(kSdb, ranges);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "TRACKER_MARK_DIRTY_BLOCKS of device 8:16: No such device");
  EXPECT_EQ(st.error().code(), ErrorCode::kNotFound);
}

TEST_F(IoctlModuleTest, RemoveTrackerErrorsNameTheDevice) {
  EXPECT_CALL(kernel_, remove_tracker(kSdb)).WillOnce(Return(Status{}));
  EXPECT_TRUE(module_->remove_tracker(kSdb));

  EXPECT_CALL(kernel_, remove_tracker(kSdc)).WillOnce(Return(module_fail("TRACKER_REMOVE", "device 8:32", EBUSY)));
  auto st = module_->remove_tracker(kSdc);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "TRACKER_REMOVE of device 8:32: Device or resource busy");
  EXPECT_EQ(st.error().code(), ErrorCode::kBusy);
  EXPECT_EQ(st.error().sys_errno(), EBUSY);
}

TEST_F(IoctlModuleTest, CreateSnapshotSendsTheDevicesAndReturnsTheId) {
  EXPECT_CALL(kernel_, create_snapshot(ElementsAre(kSdb, kSdc))).WillOnce(Return(Result<Uuid>(kSnapId)));
  std::vector<DevId> devices{kSdb, kSdc};
  auto id = module_->create_snapshot(devices);
  ASSERT_TRUE(id) << id.error().message();
  EXPECT_EQ(to_string(*id), kSnapText);
}

TEST_F(IoctlModuleTest, CreateSnapshotOfADeviceInAnotherSnapshotIsBusy) {
  EXPECT_CALL(kernel_, create_snapshot(_)).WillOnce(Return(module_fail("SNAPSHOT_CREATE", "x", EALREADY)));
  std::vector<DevId> devices{kSdb, kSdc};
  auto id = module_->create_snapshot(devices);
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().message(), "SNAPSHOT_CREATE of devices 8:16, 8:32: Operation already in progress");
  EXPECT_EQ(id.error().code(), ErrorCode::kBusy);
}

TEST_F(IoctlModuleTest, DestroyOfAnUnknownSnapshotIsNotFound) {
  EXPECT_CALL(kernel_, destroy_snapshot(kSnapId)).WillOnce(Return(module_fail("SNAPSHOT_DESTROY", "x", ENODEV)));
  auto st = module_->destroy_snapshot(kSnapId);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "SNAPSHOT_DESTROY of snapshot " + kSnapText + ": No such device");
  EXPECT_EQ(st.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(st.error().sys_errno(), ENODEV);
}

TEST_F(IoctlModuleTest, AppendStorageSendsTheDeviceAndRanges) {
  std::vector<std::pair<uint64_t, uint64_t>> want{{2048, 4096}, {900000, 512}};
  EXPECT_CALL(kernel_, append_storage(kSnapId, (DevId{253, 1}), RangesAre(want))).WillOnce(Return(Status{}));
  std::vector<SectorRange> ranges{{2048, 4096}, {900000, 512}};
  EXPECT_TRUE(module_->append_storage(kSnapId, DevId{253, 1}, ranges));
}

TEST_F(IoctlModuleTest, TakeWithoutStorageFailsWithTheSnapshotNamed) {
  EXPECT_CALL(kernel_, take_snapshot(kSnapId)).WillOnce(Return(module_fail("SNAPSHOT_TAKE", "x", EFAULT)));
  auto st = module_->take_snapshot(kSnapId);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "SNAPSHOT_TAKE of snapshot " + kSnapText + ": Bad address");
  EXPECT_EQ(st.error().code(), ErrorCode::kModule);
  EXPECT_EQ(st.error().sys_errno(), EFAULT);
}

TEST_F(IoctlModuleTest, SnapshotsProbesThenFetchesAndRetriesWhenOneAppears) {
  Uuid other = kSnapId;
  other[15] = 0;
  EXPECT_CALL(kernel_, snapshots())
      .WillOnce(Return(std::vector<Uuid>{kSnapId}))          // probe: 1
      .WillOnce(Return(std::vector<Uuid>{kSnapId, other}))   // fetch: ENODATA, count = 1
      .WillRepeatedly(Return(std::vector<Uuid>{kSnapId, other}));
  auto got = module_->snapshots();
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_THAT(*got, ElementsAre(kSnapId, other));
  EXPECT_THAT(transport_->requests(), ElementsAre(9u, 9u, 9u, 9u));
}

TEST_F(IoctlModuleTest, SnapshotImagesRetriesWithTheRequiredCount) {
  std::vector<ImageInfo> one{{kSdb, DevId{252, 0}}};
  std::vector<ImageInfo> two{{kSdb, DevId{252, 0}}, {kSdc, DevId{252, 1}}};
  EXPECT_CALL(kernel_, snapshot_images(kSnapId))
      .WillOnce(Return(one))  // probe: 1
      .WillRepeatedly(Return(two));  // fetch: ENODATA with count 2, then fetch 2
  auto got = module_->snapshot_images(kSnapId);
  ASSERT_TRUE(got) << got.error().message();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[1].original, kSdc);
  EXPECT_EQ((*got)[1].image, (DevId{252, 1}));
  EXPECT_THAT(transport_->requests(), ElementsAre(10u, 10u, 10u));
}

TEST_F(IoctlModuleTest, SnapshotImagesBeforeTakeIsEnodev) {
  EXPECT_CALL(kernel_, snapshot_images(kSnapId))
      .WillOnce(Return(module_fail("SNAPSHOT_COLLECT_IMAGES", "x", ENODEV)));
  auto got = module_->snapshot_images(kSnapId);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().message(), "SNAPSHOT_COLLECT_IMAGES of snapshot " + kSnapText + ": No such device");
  EXPECT_EQ(got.error().code(), ErrorCode::kModule);
}

TEST_F(IoctlModuleTest, WaitEventDecodesALowFreeSpaceEvent) {
  Event e;
  e.code = Event::Code::kLowFreeSpace;
  e.time_label_ns = 123456789012;
  e.requested_sectors = 2097152;
  EXPECT_CALL(kernel_, wait_event(kSnapId, 100u)).WillOnce(Return(Result<std::optional<Event>>(e)));
  auto got = module_->wait_event(kSnapId, 100);
  ASSERT_TRUE(got) << got.error().message();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->code, Event::Code::kLowFreeSpace);
  EXPECT_EQ((*got)->time_label_ns, 123456789012);
  EXPECT_EQ((*got)->requested_sectors, 2097152u);
}

TEST_F(IoctlModuleTest, WaitEventDecodesACorruptedEvent) {
  Event e;
  e.code = Event::Code::kCorrupted;
  e.time_label_ns = -5;
  e.corrupted_device = kSdc;
  e.error_code = 28;
  EXPECT_CALL(kernel_, wait_event(kSnapId, 0u)).WillOnce(Return(Result<std::optional<Event>>(e)));
  auto got = module_->wait_event(kSnapId, 0);
  ASSERT_TRUE(got && got->has_value());
  EXPECT_EQ((*got)->code, Event::Code::kCorrupted);
  EXPECT_EQ((*got)->time_label_ns, -5);
  EXPECT_EQ((*got)->corrupted_device, kSdc);
  EXPECT_EQ((*got)->error_code, 28);
  EXPECT_EQ((*got)->requested_sectors, 0u);
}

TEST_F(IoctlModuleTest, WaitEventTimeoutAndSignalAreNoEvent) {
  EXPECT_CALL(kernel_, wait_event(kSnapId, 100u))
      .WillOnce(Return(Result<std::optional<Event>>(std::nullopt)))
      .WillOnce(Return(module_fail("SNAPSHOT_WAIT_EVENT", "x", EINTR)))
      .WillOnce(Return(module_fail("SNAPSHOT_WAIT_EVENT", "x", ENOENT)));
  for (int i = 0; i < 3; ++i) {
    auto got = module_->wait_event(kSnapId, 100);
    ASSERT_TRUE(got) << got.error().message();
    EXPECT_FALSE(got->has_value());
  }
}

TEST_F(IoctlModuleTest, WaitEventOnAGoneSnapshotIsNotFound) {
  EXPECT_CALL(kernel_, wait_event(kSnapId, 100u)).WillOnce(Return(module_fail("SNAPSHOT_WAIT_EVENT", "x", ESRCH)));
  auto got = module_->wait_event(kSnapId, 100);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().message(), "SNAPSHOT_WAIT_EVENT of snapshot " + kSnapText + ": No such process");
  EXPECT_EQ(got.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(got.error().sys_errno(), ESRCH);
}

TEST_F(IoctlModuleTest, DescriptionNamesTheControlPath) {
  EXPECT_EQ(module_->description(), "veeamblksnap (/dev/veeamblksnap)");
}

}  // namespace
}  // namespace blkvault::kernel
