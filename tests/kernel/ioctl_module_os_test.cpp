// The parts of IoctlModule that talk to the OS rather than the control device
// (opening it, device paths, image nodes, FIEMAP), and the helpers of module.h.
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/file_io.h"
#include "ioctl_mock_module.h"
#include "kernel/ioctl_module.h"

namespace blkvault::kernel {
namespace {

using ::testing::Return;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "blkvault-ioctl-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// ---- module.h helpers ----

TEST(ModuleHelpers, DevIdPrintsAsMajorColonMinor) {
  EXPECT_EQ(to_string(DevId{8, 16}), "8:16");
  EXPECT_EQ(to_string(DevId{259, 1048575}), "259:1048575");
}

TEST(ModuleHelpers, UuidPrintsCanonicalLowerCaseAndParsesBack) {
  Uuid id{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
  EXPECT_EQ(to_string(id), "00112233-4455-6677-8899-aabbccddeeff");
  EXPECT_EQ(parse_uuid("00112233-4455-6677-8899-aabbccddeeff"), id);
  EXPECT_EQ(parse_uuid("00112233-4455-6677-8899-AABBCCDDEEFF"), id);
}

TEST(ModuleHelpers, ParseUuidRejectsMalformedText) {
  EXPECT_EQ(parse_uuid(""), std::nullopt);
  EXPECT_EQ(parse_uuid("00112233445566778899aabbccddeeff"), std::nullopt);
  EXPECT_EQ(parse_uuid("00112233-4455-6677-8899-aabbccddeefg"), std::nullopt);
  EXPECT_EQ(parse_uuid("00112233-4455-6677-8899_aabbccddeeff"), std::nullopt);
  EXPECT_EQ(parse_uuid("00112233-4455-6677-8899-aabbccddeeff0"), std::nullopt);
  EXPECT_EQ(parse_uuid("0011223-34455-6677-8899-aabbccddeeff"), std::nullopt);
}

TEST(ModuleHelpers, VersionPrintsFourParts) { EXPECT_EQ(to_string(Version{6, 3, 0, 73}), "6.3.0.73"); }

TEST(ModuleHelpers, ModuleErrorClassifiesTheErrnoPerOperation) {
  struct Case {
    const char* op;
    int err;
    ErrorCode code;
  };
  const Case cases[] = {
      {"SNAPSHOT_TAKE", ESRCH, ErrorCode::kNotFound},
      {"SNAPSHOT_DESTROY", ENODEV, ErrorCode::kNotFound},
      {"SNAPSHOT_TAKE", ENODEV, ErrorCode::kModule},  // no devices
      {"SNAPSHOT_COLLECT_IMAGES", ENODEV, ErrorCode::kModule},  // not taken
      {"TRACKER_REMOVE", ENODATA, ErrorCode::kNotFound},
      {"TRACKER_READ_CBT_MAP", ENODATA, ErrorCode::kNotFound},
      {"SNAPSHOT_APPEND_STORAGE", ENODATA, ErrorCode::kModule},  // bad user buffer
      {"TRACKER_MARK_DIRTY_BLOCKS", ENODEV, ErrorCode::kNotFound},
      {"SNAPSHOT_CREATE", ENXIO, ErrorCode::kNotFound},
      {"SNAPSHOT_CREATE", EALREADY, ErrorCode::kBusy},
      {"SNAPSHOT_TAKE", EALREADY, ErrorCode::kModule},
      {"TRACKER_REMOVE", EBUSY, ErrorCode::kBusy},
      {"TRACKER_READ_CBT_MAP", EPERM, ErrorCode::kModule},
      {"SNAPSHOT_CREATE", EACCES, ErrorCode::kPermission},
      {"SNAPSHOT_TAKE", EFAULT, ErrorCode::kModule},
  };
  for (const Case& c : cases) {
    Error e = module_error(c.op, "device 1:2", c.err);
    EXPECT_EQ(e.code(), c.code) << c.op << " " << c.err;
    EXPECT_EQ(e.sys_errno(), c.err);
  }
  EXPECT_EQ(module_error("TRACKER_COLLECT", "", ENOMEM).message(), "TRACKER_COLLECT: Cannot allocate memory");
}

TEST(ModuleHelpers, CheckModuleVersionRefusesAnythingButSixThree) {
  testing::MockModule module;
  EXPECT_CALL(module, version())
      .WillOnce(Return(Result<Version>(Version{6, 3, 1, 1016})))
      .WillOnce(Return(Result<Version>(Version{7, 0, 0, 1})))
      .WillOnce(Return(Result<Version>(Version{6, 2, 0, 101})));
  EXPECT_TRUE(check_module_version(module, "/dev/veeamblksnap"));
  auto st = check_module_version(module, "/dev/veeamblksnap");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kModule);
  EXPECT_EQ(st.error().message(), "veeamblksnap at /dev/veeamblksnap is version 7.0.0.1, blkvault needs the 6.3 ABI");
  st = check_module_version(module, "sim:/x");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "veeamblksnap at sim:/x is version 6.2.0.101, blkvault needs the 6.3 ABI");
}

// ---- opening the control device ----

TEST(IoctlModuleOpen, MissingControlNodeSaysHowToLoadTheModule) {
  TempDir dir;
  const std::string path = dir / "veeamblksnap";
  auto m = IoctlModule::open(path);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), ErrorCode::kModule);
  EXPECT_EQ(m.error().sys_errno(), ENOENT);
  EXPECT_EQ(m.error().message(), "opening " + path +
                                     ": No such file or directory (is the veeamblksnap module loaded? try "
                                     "'modprobe veeamblksnap', or use --module sim:DIR)");
  auto via_spec = open_module(path);
  ASSERT_FALSE(via_spec);
  EXPECT_EQ(via_spec.error().message(), m.error().message());
}

TEST(IoctlModuleOpen, PermissionDeniedSaysToRunAsRoot) {
  Error e = control_open_error("/dev/veeamblksnap", EACCES);
  EXPECT_EQ(e.code(), ErrorCode::kPermission);
  EXPECT_EQ(e.sys_errno(), EACCES);
  EXPECT_EQ(e.message(), "opening /dev/veeamblksnap: Permission denied (run as root)");
  EXPECT_EQ(control_open_error("/dev/veeamblksnap", EIO).message(), "opening /dev/veeamblksnap: Input/output error");
}

TEST(IoctlModuleOpen, ANodeThatIsNotTheModuleFailsItsVersionProbe) {
  TempDir dir;
  const std::string path = dir / "not-a-module";
  write_text(path, "x");
  auto m = IoctlModule::open(path);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), ErrorCode::kModule);
  EXPECT_EQ(m.error().sys_errno(), ENOTTY);
  EXPECT_EQ(m.error().message(), "VERSION of " + path + ": Inappropriate ioctl for device");
}

// ---- device ids and paths ----

TEST(IoctlModuleDevices, DeviceIdOfAMissingPathIsNotFound) {
  auto module = IoctlModule::with_transport(nullptr);
  auto id = module->device_id("/nonexistent/sdz");
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(id.error().message(), "resolving device /nonexistent/sdz: No such file or directory");
}

TEST(IoctlModuleDevices, DeviceIdOfACharacterDeviceIsInvalid) {
  auto module = IoctlModule::with_transport(nullptr);
  auto id = module->device_id("/dev/null");
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(id.error().message(), "resolving device /dev/null: not a block device");
}

TEST(IoctlModuleDevices, DeviceIdOfABlockDeviceIsItsRdev) {
  TempDir dir;
  const std::string node = dir / "disk";
  if (::mknod(node.c_str(), S_IFBLK | 0600, makedev(259, 70000)) != 0) {
    GTEST_SKIP() << "cannot mknod a block device node here: " << std::strerror(errno);
  }
  auto module = IoctlModule::with_transport(nullptr);
  auto id = module->device_id(node);
  ASSERT_TRUE(id) << id.error().message();
  EXPECT_EQ(*id, (DevId{259, 70000}));
}

TEST(IoctlModuleDevices, DevicePathComesFromUeventOrFallsBackToTheNumbers) {
  TempDir sys;
  std::filesystem::create_directories(sys / "8:16");
  write_text(sys / "8:16/uevent", "MAJOR=8\nMINOR=16\nDEVNAME=sdb\nDEVTYPE=disk\nDISKSEQ=9\n");
  std::filesystem::create_directories(sys / "8:32");
  write_text(sys / "8:32/uevent", "MAJOR=8\nMINOR=32\n");
  IoctlModuleOptions options;
  options.sys_dev_block_dir = sys.path();
  auto module = IoctlModule::with_transport(nullptr, options);
  EXPECT_EQ(module->device_path(DevId{8, 16}).value(), "/dev/sdb");
  EXPECT_EQ(module->device_path(DevId{8, 32}).value(), "8:32");
  EXPECT_EQ(module->device_path(DevId{8, 48}).value(), "8:48");
}

// ---- image nodes ----

TEST(IoctlModuleImages, AnImageNodeThatIsNotABlockDeviceIsRefused) {
  TempDir dev;
  write_text(dev / "veeamblksnapimg3", "not a disk");
  IoctlModuleOptions options;
  options.dev_dir = dev.path();
  options.image_node_wait_ms = 0;
  auto module = IoctlModule::with_transport(nullptr, options);
  auto image = module->open_image(DevId{252, 3});
  ASSERT_FALSE(image);
  EXPECT_EQ(image.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(image.error().message(), "opening image " + dev.path() + "/veeamblksnapimg3: not a block device");
}

// A loop device over a file of known content, detached when the last fd closes.
class LoopImage {
 public:
  // Returns an empty string on success, else why it could not be set up.
  std::string attach(const std::string& backing, const std::string& node_dir) {
    int ctl = ::open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) return std::string("/dev/loop-control: ") + std::strerror(errno);
    UniqueFd control(ctl);
    for (int attempt = 0; attempt < 10; ++attempt) {
      int n = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
      if (n < 0) return std::string("LOOP_CTL_GET_FREE: ") + std::strerror(errno);
      const std::string node = node_dir + "/loop-setup";
      ::unlink(node.c_str());
      if (::mknod(node.c_str(), S_IFBLK | 0600, makedev(7, n)) != 0) return std::string("mknod: ") + std::strerror(errno);
      UniqueFd loop(::open(node.c_str(), O_RDWR | O_CLOEXEC));
      ::unlink(node.c_str());
      if (!loop) return std::string("opening loop node: ") + std::strerror(errno);
      UniqueFd file(::open(backing.c_str(), O_RDONLY | O_CLOEXEC));
      if (!file) return std::string("opening backing file: ") + std::strerror(errno);
      struct loop_config config {};
      config.fd = static_cast<uint32_t>(file.get());
      config.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
      if (::ioctl(loop.get(), LOOP_CONFIGURE, &config) == 0) {
        loop_ = std::move(loop);
        minor_ = static_cast<uint32_t>(n);
        return "";
      }
      if (errno != EBUSY) return std::string("LOOP_CONFIGURE: ") + std::strerror(errno);
    }
    return "no free loop device";
  }
  uint32_t minor() const { return minor_; }

 private:
  UniqueFd loop_;  // holds the device; AUTOCLEAR detaches it once every fd is closed
  uint32_t minor_ = 0;
};

TEST(IoctlModuleImages, ReadsAnImageThroughItsNodeOrAPrivateOne) {
  TempDir dir;
  std::filesystem::create_directories(dir / "dev");
  const std::string backing = dir / "backing";
  std::string content(256 * 1024, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>((i * 13 + i / 4096) & 0xff);
  write_text(backing, content);
  LoopImage loop;
  std::string why = loop.attach(backing, dir.path());
  if (!why.empty()) GTEST_SKIP() << "needs root and loop devices: " << why;
  const DevId image{7, loop.minor()};

  IoctlModuleOptions options;
  options.dev_dir = dir / "dev";
  options.image_node_wait_ms = 50;
  auto module = IoctlModule::with_transport(nullptr, options);
  const std::string node = options.dev_dir + "/veeamblksnapimg" + std::to_string(loop.minor());

  // No node: after the wait a private node is used; the reported path is still the node's.
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass == 0 ? "private node" : "udev node");
    auto reader = module->open_image(image);
    ASSERT_TRUE(reader) << reader.error().message();
    EXPECT_EQ((*reader)->path(), node);
    EXPECT_EQ((*reader)->size_bytes(), content.size());
    std::vector<uint8_t> got(8192);
    ASSERT_TRUE((*reader)->read_at(65536 + 512, got));
    EXPECT_EQ(0, std::memcmp(got.data(), content.data() + 65536 + 512, got.size()));
    if (pass == 0) {
      ASSERT_EQ(::mknod(node.c_str(), S_IFBLK | 0600, makedev(image.major, image.minor)), 0);
    }
  }
}

TEST(IoctlModuleImages, ANodeOfAnotherDeviceIsNotUsed) {
  TempDir dir;
  const std::string backing = dir / "backing";
  write_text(backing, std::string(4096, 'a'));
  LoopImage loop;
  std::string why = loop.attach(backing, dir.path());
  if (!why.empty()) GTEST_SKIP() << "needs root and loop devices: " << why;
  // A stale node with the image's name that points at another (nonexistent) loop device.
  const std::string node = dir / ("veeamblksnapimg" + std::to_string(loop.minor()));
  ASSERT_EQ(::mknod(node.c_str(), S_IFBLK | 0600, makedev(7, loop.minor() + 100000)), 0);
  IoctlModuleOptions options;
  options.dev_dir = dir.path();
  options.image_node_wait_ms = 30;
  auto module = IoctlModule::with_transport(nullptr, options);
  auto reader = module->open_image(DevId{7, loop.minor()});
  ASSERT_TRUE(reader) << reader.error().message();
  EXPECT_EQ((*reader)->size_bytes(), 4096u);
  std::vector<uint8_t> got(512);
  ASSERT_TRUE((*reader)->read_at(3584, got));
  EXPECT_EQ(got[0], 'a');
}

// ---- diff-storage files ----

class StorageFileTest : public ::testing::Test {
 protected:
  StorageFileTest() : module_(IoctlModule::with_transport(nullptr)) {}
  TempDir dir_;
  std::unique_ptr<IoctlModule> module_;
};

TEST_F(StorageFileTest, AFallocatedFileMapsToSectorsOfItsFilesystemDevice) {
  const std::string path = dir_ / "diff_storage#0";
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    if (::fallocate(fd.get(), 0, 0, 4 << 20) != 0) GTEST_SKIP() << "fallocate: " << std::strerror(errno);
  }
  auto extents = module_->map_storage_file(path);
  if (!extents && extents.error().code() == ErrorCode::kUnsupported) {
    GTEST_SKIP() << extents.error().message();
  }
  ASSERT_TRUE(extents) << extents.error().message();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(extents->storage_dev, (DevId{major(st.st_dev), minor(st.st_dev)}));
  uint64_t total = 0;
  for (size_t i = 0; i < extents->ranges.size(); ++i) {
    const SectorRange& r = extents->ranges[i];
    EXPECT_GT(r.count_sectors, 0u);
    if (i > 0) {  // merged: no two ranges touch
      const SectorRange& p = extents->ranges[i - 1];
      EXPECT_NE(p.offset_sectors + p.count_sectors, r.offset_sectors);
    }
    total += r.count_sectors;
  }
  EXPECT_EQ(total, (4u << 20) / 512);
}

TEST_F(StorageFileTest, ASparseFileIsRefused) {
  const std::string path = dir_ / "sparse";
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ftruncate(fd.get(), 1 << 20), 0);
  }
  auto extents = module_->map_storage_file(path);
  ASSERT_FALSE(extents);
  if (extents.error().code() == ErrorCode::kUnsupported) GTEST_SKIP() << extents.error().message();
  EXPECT_EQ(extents.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(extents.error().message(),
            "mapping diff-storage file " + path + ": hole at byte 0 (the file must be fully fallocated)");
}

TEST_F(StorageFileTest, ADirectoryIsRefused) {
  auto extents = module_->map_storage_file(dir_.path());
  ASSERT_FALSE(extents);
  EXPECT_EQ(extents.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(extents.error().message(), "mapping diff-storage file " + dir_.path() + ": not a regular file");
}

TEST_F(StorageFileTest, AMissingFileIsNotFound) {
  auto extents = module_->map_storage_file(dir_ / "missing");
  ASSERT_FALSE(extents);
  EXPECT_EQ(extents.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace blkvault::kernel
