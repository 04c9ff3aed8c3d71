// tests/kernel/ioctl_mock_module.h — a gmock Module for the IoctlModule tests.
#pragma once

#include <gmock/gmock.h>

#include "kernel/module.h"

namespace blkvault::kernel::testing {

class MockModule : public Module {
 public:
  MOCK_METHOD(std::string, description, (), (const, override));
  MOCK_METHOD(Result<Version>, version, (), (override));
  MOCK_METHOD(Result<DevId>, device_id, (const std::string&), (override));
  MOCK_METHOD(Result<std::string>, device_path, (DevId), (override));
  MOCK_METHOD(Result<std::vector<CbtInfo>>, tracked_devices, (), (override));
  MOCK_METHOD(Status, read_cbt_map, (DevId, uint32_t, std::span<uint8_t>), (override));
  MOCK_METHOD(Status, mark_dirty, (DevId, std::span<const SectorRange>), (override));
  MOCK_METHOD(Status, remove_tracker, (DevId), (override));
  MOCK_METHOD(Result<Uuid>, create_snapshot, (std::span<const DevId>), (override));
  MOCK_METHOD(Status, destroy_snapshot, (const Uuid&), (override));
  MOCK_METHOD(Status, append_storage, (const Uuid&, DevId, std::span<const SectorRange>), (override));
  MOCK_METHOD(Status, take_snapshot, (const Uuid&), (override));
  MOCK_METHOD(Result<std::vector<Uuid>>, snapshots, (), (override));
  MOCK_METHOD(Result<std::vector<ImageInfo>>, snapshot_images, (const Uuid&), (override));
  MOCK_METHOD((Result<std::optional<Event>>), wait_event, (const Uuid&, uint32_t), (override));
  MOCK_METHOD(Result<std::unique_ptr<ImageReader>>, open_image, (DevId), (override));
  MOCK_METHOD(Result<StorageExtents>, map_storage_file, (const std::string&), (override));
  MOCK_METHOD(Result<StorageExtents>, map_storage_device, (const std::string&), (override));
};

}  // namespace blkvault::kernel::testing
