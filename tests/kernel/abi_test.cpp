// The 6.3 ABI declarations: sizes, offsets and request codes checked again at
// run time (abi.h pins them at compile time), the raw bytes a struct puts where
// the module reads them, and the decoding transport's conventions.
#include "kernel/abi.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "decoding_transport_support.h"
#include "ioctl_mock_module.h"

namespace blkvault::kernel {
namespace {

using ::testing::ElementsAre;
using ::testing::Return;
using ::testing::StrictMock;

TEST(Abi, StructSizesMatchTheHeader) {
  EXPECT_EQ(sizeof(abi::Version), 8u);
  EXPECT_EQ(sizeof(abi::DevT), 8u);
  EXPECT_EQ(sizeof(abi::TrackerRemove), 8u);
  EXPECT_EQ(sizeof(abi::CbtInfo), 48u);
  EXPECT_EQ(sizeof(abi::TrackerCollect), 16u);
  EXPECT_EQ(sizeof(abi::TrackerReadCbtBitmap), 24u);
  EXPECT_EQ(sizeof(abi::BlockRange), 16u);
  EXPECT_EQ(sizeof(abi::TrackerMarkDirtyBlocks), 24u);
  EXPECT_EQ(sizeof(abi::SnapshotCreate), 32u);
  EXPECT_EQ(sizeof(abi::SnapshotDestroy), 16u);
  EXPECT_EQ(sizeof(abi::SnapshotAppendStorage), 40u);
  EXPECT_EQ(sizeof(abi::SnapshotTake), 16u);
  EXPECT_EQ(sizeof(abi::SnapshotCollect), 16u);
  EXPECT_EQ(sizeof(abi::ImageInfo), 16u);
  EXPECT_EQ(sizeof(abi::SnapshotCollectImages), 32u);
  EXPECT_EQ(sizeof(abi::SnapshotEvent), 4096u);
  EXPECT_EQ(sizeof(abi::EventLowFreeSpace), 8u);
  EXPECT_EQ(sizeof(abi::EventCorrupted), 12u);
  EXPECT_EQ(sizeof(abi::Mod), 40u);
  EXPECT_EQ(sizeof(abi::Setlog), 24u);
  EXPECT_EQ(sizeof(abi::SectorState), 8u);
  EXPECT_EQ(sizeof(abi::GetSectorState), 24u);
}

TEST(Abi, FieldOffsetsMatchSemanticsTable) {
  EXPECT_EQ(offsetof(abi::CbtInfo, blk_size), 8u);
  EXPECT_EQ(offsetof(abi::CbtInfo, device_capacity), 16u);
  EXPECT_EQ(offsetof(abi::CbtInfo, blk_count), 24u);
  EXPECT_EQ(offsetof(abi::CbtInfo, generation_id), 28u);
  EXPECT_EQ(offsetof(abi::CbtInfo, snap_number), 44u);
  EXPECT_EQ(offsetof(abi::SnapshotCreate, id), 16u);
  EXPECT_EQ(offsetof(abi::SnapshotAppendStorage, count), 24u);
  EXPECT_EQ(offsetof(abi::SnapshotAppendStorage, ranges), 32u);
  EXPECT_EQ(offsetof(abi::SnapshotCollectImages, count), 16u);
  EXPECT_EQ(offsetof(abi::SnapshotCollectImages, image_info_array), 24u);
  EXPECT_EQ(offsetof(abi::SnapshotEvent, timeout_ms), 16u);
  EXPECT_EQ(offsetof(abi::SnapshotEvent, code), 20u);
  EXPECT_EQ(offsetof(abi::SnapshotEvent, time_label), 24u);
  EXPECT_EQ(offsetof(abi::SnapshotEvent, data), 32u);
  EXPECT_EQ(offsetof(abi::EventCorrupted, err_code), 8u);
  EXPECT_EQ(offsetof(abi::SectorState, chunk_state), 4u);
  EXPECT_EQ(offsetof(abi::GetSectorState, state), 16u);
  EXPECT_EQ(offsetof(abi::TrackerReadCbtBitmap, buff), 16u);
  EXPECT_EQ(offsetof(abi::Setlog, filepath), 16u);
}

TEST(Abi, RequestCodesMatchTheHeaderAndDecodeToTheirNr) {
  const std::pair<unsigned long, unsigned> table[] = {
      {0x40085600, abi::kNrVersion},          {0x40085601, abi::kNrTrackerRemove},
      {0x40105602, abi::kNrTrackerCollect},   {0x80185603, abi::kNrTrackerReadCbtMap},
      {0x80185604, abi::kNrTrackerMarkDirtyBlocks}, {0x40205605, abi::kNrSnapshotCreate},
      {0x80105606, abi::kNrSnapshotDestroy},  {0x40285607, abi::kNrSnapshotAppendStorage},
      {0x80105608, abi::kNrSnapshotTake},     {0x40105609, abi::kNrSnapshotCollect},
      {0x4020560a, abi::kNrSnapshotCollectImages}, {0x5000560b, abi::kNrSnapshotWaitEvent},
      {0x40285620, abi::kNrMod},              {0x40185621, abi::kNrSetlog},
      {0x40185622, abi::kNrGetSectorState},
  };
  const unsigned long ours[] = {
      abi::kIoctlVersion,        abi::kIoctlTrackerRemove,    abi::kIoctlTrackerCollect,
      abi::kIoctlTrackerReadCbtMap, abi::kIoctlTrackerMarkDirtyBlocks, abi::kIoctlSnapshotCreate,
      abi::kIoctlSnapshotDestroy, abi::kIoctlSnapshotAppendStorage, abi::kIoctlSnapshotTake,
      abi::kIoctlSnapshotCollect, abi::kIoctlSnapshotCollectImages, abi::kIoctlSnapshotWaitEvent,
      abi::kIoctlMod,            abi::kIoctlSetlog,           abi::kIoctlGetSectorState,
  };
  for (size_t i = 0; i < std::size(table); ++i) {
    EXPECT_EQ(ours[i], table[i].first) << i;
    EXPECT_EQ(_IOC_NR(ours[i]), table[i].second) << i;
    EXPECT_EQ(_IOC_TYPE(ours[i]), 'V') << i;
  }
}

TEST(Abi, CbtInfoBytesLandWhereTheModuleWritesThem) {
  abi::CbtInfo info{};
  info.dev_id = {8, 16};
  info.blk_size = 0x10000;
  info.device_capacity = 0x0102030405060708;
  info.blk_count = 0xabcdef01;
  for (int i = 0; i < 16; ++i) info.generation_id[i] = static_cast<uint8_t>(0xa0 + i);
  info.snap_number = 0x7f;
  uint8_t bytes[48];
  std::memcpy(bytes, &info, sizeof bytes);
  EXPECT_EQ(bytes[0], 8);
  EXPECT_EQ(bytes[4], 16);
  EXPECT_EQ(bytes[10], 1);  // 0x10000 little-endian
  EXPECT_EQ(bytes[16], 0x08);
  EXPECT_EQ(bytes[23], 0x01);
  EXPECT_EQ(bytes[24], 0x01);
  EXPECT_EQ(bytes[27], 0xab);
  EXPECT_EQ(bytes[28], 0xa0);
  EXPECT_EQ(bytes[43], 0xaf);
  EXPECT_EQ(bytes[44], 0x7f);
}

TEST(Abi, NamesAndPathsAreThe63Ones) {
  EXPECT_STREQ(abi::kControlPath, "/dev/veeamblksnap");
  EXPECT_STREQ(abi::kImageNamePrefix, "veeamblksnapimg");
  EXPECT_STREQ(abi::ioctl_name(abi::kNrSnapshotTake), "SNAPSHOT_TAKE");
  EXPECT_STREQ(abi::ioctl_name(abi::kNrTrackerReadCbtMap), "TRACKER_READ_CBT_MAP");
  EXPECT_STREQ(abi::ioctl_name(12), "unknown ioctl");
}

class DecodingTransportTest : public ::testing::Test {
 protected:
  StrictMock<testing::MockModule> kernel_;
  testing::DecodingTransport transport_{kernel_};
};

TEST_F(DecodingTransportTest, UnknownNrIsEnottyWhateverTheTypeAndDirection) {
  abi::Version v{};
  EXPECT_EQ(transport_.call(_IOW('V', 13, abi::Version), &v), -ENOTTY);
  EXPECT_EQ(transport_.call(_IOW('V', 31, abi::Version), &v), -ENOTTY);
  EXPECT_EQ(transport_.call(_IOW('V', 34, abi::GetSectorState), &v), -ENOTTY);
  EXPECT_EQ(transport_.call(_IOW('V', 35, abi::Version), &v), -ENOTTY);
  EXPECT_TRUE(transport_.violations().empty());
}

TEST_F(DecodingTransportTest, DispatchesOnNrAloneButFlagsACodeThatIsNotTheHeaders) {
  // isatty()'s TCGETS (0x5401) has nr 1: the module would run TRACKER_REMOVE.
  EXPECT_CALL(kernel_, remove_tracker(DevId{0x01020304, 0x05060708})).WillOnce(Return(Status{}));
  uint8_t garbage[8] = {4, 3, 2, 1, 8, 7, 6, 5};
  EXPECT_EQ(transport_.call(0x5401, garbage), 0);
  EXPECT_THAT(transport_.violations(), ElementsAre("nr 1 sent as 0x5401, the header's code is 0x40085601"));
}

TEST_F(DecodingTransportTest, FlagsTheEndMarkerNr) {
  abi::Version v{};
  EXPECT_EQ(transport_.call(_IOW('V', 12, abi::Version), &v), -ENOTTY);
  EXPECT_THAT(transport_.violations(), ElementsAre("nr 12 (blk_snap_ioctl_end) sent"));
}

TEST_F(DecodingTransportTest, NullArgumentIsEnodataOrEinvalLikeTheModule) {
  EXPECT_EQ(transport_.call(abi::kIoctlSnapshotTake, nullptr), -ENODATA);
  EXPECT_EQ(transport_.call(abi::kIoctlSnapshotAppendStorage, nullptr), -EINVAL);
  EXPECT_EQ(transport_.call(abi::kIoctlSnapshotWaitEvent, nullptr), -EINVAL);
}

TEST_F(DecodingTransportTest, TrackerCollectTooSmallIsEnobufsWithCountUntouched) {
  CbtInfo a, b;
  a.dev = {8, 0};
  b.dev = {8, 16};
  EXPECT_CALL(kernel_, tracked_devices()).WillRepeatedly(Return(std::vector<CbtInfo>{a, b}));
  abi::CbtInfo array[1]{};
  abi::TrackerCollect arg{1, array};
  EXPECT_EQ(transport_.call(abi::kIoctlTrackerCollect, &arg), -ENOBUFS);
  EXPECT_EQ(arg.count, 1u);
  abi::TrackerCollect probe{0, nullptr};
  EXPECT_EQ(transport_.call(abi::kIoctlTrackerCollect, &probe), 0);
  EXPECT_EQ(probe.count, 2u);
}

TEST_F(DecodingTransportTest, SnapshotCollectTooSmallIsEnodataWithCountSetToTheCapacity) {
  Uuid x{}, y{}, z{};
  x[0] = 1, y[0] = 2, z[0] = 3;
  EXPECT_CALL(kernel_, snapshots()).WillOnce(Return(std::vector<Uuid>{x, y, z}));
  abi::RawUuid ids[2]{};
  abi::SnapshotCollect arg{2, ids};
  EXPECT_EQ(transport_.call(abi::kIoctlSnapshotCollect, &arg), -ENODATA);
  EXPECT_EQ(arg.count, 2u);
  EXPECT_EQ(ids[1][0], 2);
}

TEST_F(DecodingTransportTest, ReadCbtMapReturnsTheBytesCopiedUpToTheEnd) {
  CbtInfo info;
  info.dev = {8, 16};
  info.block_count = 10;
  EXPECT_CALL(kernel_, tracked_devices()).WillRepeatedly(Return(std::vector<CbtInfo>{info}));
  EXPECT_CALL(kernel_, read_cbt_map(DevId{8, 16}, 6u, ::testing::_)).WillOnce(Return(Status{}));
  uint8_t buff[100];
  abi::TrackerReadCbtBitmap arg{{8, 16}, 6, 100, buff};
  EXPECT_EQ(transport_.call(abi::kIoctlTrackerReadCbtMap, &arg), 4);
  // At the end: EINVAL, unless the kernel side says "not taken" first (EPERM).
  EXPECT_CALL(kernel_, read_cbt_map(DevId{8, 16}, 10u, ::testing::_))
      .WillOnce(Return(Status{}))
      .WillOnce(Return(Status(fail(module_error("TRACKER_READ_CBT_MAP", "device 8:16", EPERM)))));
  arg.offset = 10;
  EXPECT_EQ(transport_.call(abi::kIoctlTrackerReadCbtMap, &arg), -EINVAL);
  EXPECT_EQ(transport_.call(abi::kIoctlTrackerReadCbtMap, &arg), -EPERM);
  arg.offset = 0;
  arg.buff = nullptr;
  EXPECT_EQ(transport_.call(abi::kIoctlTrackerReadCbtMap, &arg), -ENODATA);
}

TEST_F(DecodingTransportTest, WaitEventLeavesTheRestOfTheDataAlone) {
  Event e;
  e.code = Event::Code::kLowFreeSpace;
  e.requested_sectors = 262144;
  EXPECT_CALL(kernel_, wait_event(::testing::_, 100u)).WillOnce(Return(Result<std::optional<Event>>(e)));
  auto arg = std::make_unique<abi::SnapshotEvent>();
  std::memset(arg.get(), 0xee, sizeof *arg);
  arg->timeout_ms = 100;
  EXPECT_EQ(transport_.call(abi::kIoctlSnapshotWaitEvent, arg.get()), 0);
  EXPECT_EQ(arg->code, 0u);
  uint64_t requested;
  std::memcpy(&requested, arg->data, 8);
  EXPECT_EQ(requested, 262144u);
  EXPECT_EQ(arg->data[8], 0xee);
}

TEST_F(DecodingTransportTest, ModAnswersLikeThePackagedBuild) {
  abi::Mod mod{};
  EXPECT_EQ(transport_.call(abi::kIoctlMod, &mod), 0);
  EXPECT_EQ(mod.compatibility_flags, 0x2u);
  EXPECT_STREQ(reinterpret_cast<const char*>(mod.name), "standalone");
}

}  // namespace
}  // namespace blkvault::kernel
