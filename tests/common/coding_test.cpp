#include "common/coding.h"

#include <gtest/gtest.h>

#include <array>

namespace blkvault {
namespace {

TEST(Coding, LittleEndianBytesAreExactAndRoundTrip) {
  std::array<uint8_t, 8> b{};
  put_le<uint32_t>(b.data(), 0x4c425642u);
  EXPECT_EQ(b[0], 0x42);
  EXPECT_EQ(b[1], 0x56);
  EXPECT_EQ(b[2], 0x42);
  EXPECT_EQ(b[3], 0x4c);
  EXPECT_EQ(get_le<uint32_t>(b.data()), 0x4c425642u);
  put_le<uint64_t>(b.data(), 0x0102030405060708ull);
  EXPECT_EQ(b[0], 0x08);
  EXPECT_EQ(b[7], 0x01);
  EXPECT_EQ(get_le<uint64_t>(b.data()), 0x0102030405060708ull);
  put_le<uint16_t>(b.data(), 0xfffe);
  EXPECT_EQ(get_le<uint16_t>(b.data()), 0xfffe);
  EXPECT_EQ(b[2], 0x06) << "a 16-bit store touches two bytes only";
}

}  // namespace
}  // namespace blkvault
