// config/values.h: sizes, durations, rates and "did you mean".
#include "config/values.h"

#include <gtest/gtest.h>

#include <array>

#include <fmt/format.h>

namespace blkvault::config {
namespace {

TEST(ConfigSize, ReadsBytesAndBinaryUnits) {
  EXPECT_EQ(parse_size("65536").value(), 65536u);
  EXPECT_EQ(parse_size("64K").value(), 64u << 10);
  EXPECT_EQ(parse_size("512M").value(), 512u << 20);
  EXPECT_EQ(parse_size("512m").value(), 512u << 20);
  EXPECT_EQ(parse_size("1G").value(), 1ull << 30);
  EXPECT_EQ(parse_size("4GiB").value(), 4ull << 30);
  EXPECT_EQ(parse_size("2TB").value(), 2ull << 40);
  EXPECT_EQ(parse_size("1.5G").value(), 3ull << 29);
  EXPECT_EQ(parse_size("0").value(), 0u);
}

TEST(ConfigSize, RefusesWhatIsNotASize) {
  EXPECT_EQ(parse_size("16Q").error().message(),
            "invalid size '16Q': expected a number with an optional unit K, M, G or T (powers of 1024)");
  EXPECT_FALSE(parse_size(""));
  EXPECT_FALSE(parse_size("G"));
  EXPECT_FALSE(parse_size("-1G"));
  EXPECT_FALSE(parse_size("1.G"));
  EXPECT_FALSE(parse_size("1 G"));
  EXPECT_EQ(parse_size("1.3").error().message(), "invalid size '1.3': not a whole number of bytes");
  EXPECT_EQ(parse_size("99999999999T").error().message(), "invalid size '99999999999T': too large");
  EXPECT_EQ(parse_size("ACCEPTEDGIB").error().code(), ErrorCode::kInvalidArgument);
}

TEST(ConfigSize, FormatsTheShortestExactSpelling) {
  EXPECT_EQ(format_size(16ull << 30), "16G");
  EXPECT_EQ(format_size(512ull << 20), "512M");
  EXPECT_EQ(format_size(1536ull << 20), "1536M");
  EXPECT_EQ(format_size(4097), "4097");
  EXPECT_EQ(format_size(0), "0");
}

TEST(ConfigDuration, ReadsSecondsAndUnits) {
  EXPECT_EQ(parse_duration("90").value(), 90u);
  EXPECT_EQ(parse_duration("30s").value(), 30u);
  EXPECT_EQ(parse_duration("5m").value(), 300u);
  EXPECT_EQ(parse_duration("2h").value(), 7200u);
  EXPECT_EQ(parse_duration("1d").value(), 86400u);
  EXPECT_EQ(parse_duration("1h30m").value(), 5400u);
  EXPECT_EQ(parse_duration("1d2h3m4s").value(), 93784u);
}

TEST(ConfigDuration, RefusesWhatIsNotADuration) {
  EXPECT_EQ(parse_duration("5 min").error().message(),
            "invalid duration '5 min': expected seconds, or numbers with units d, h, m, s such as '90s', '5m' or "
            "'1h30m'");
  EXPECT_EQ(parse_duration("30m1h").error().message(),
            "invalid duration '30m1h': units must go from largest to smallest, each once");
  EXPECT_EQ(parse_duration("1m30").error().message(),
            "invalid duration '1m30': a number without a unit after a unit");
  EXPECT_FALSE(parse_duration(""));
  EXPECT_FALSE(parse_duration("m"));
  EXPECT_FALSE(parse_duration("5w"));
}

TEST(ConfigClosestMatch, SuggestsOnlyLikelyTypos) {
  constexpr std::array<std::string_view, 3> kKeys = {"keep-daily", "keep-weekly", "keep-last"};
  EXPECT_EQ(closest_match("keep-dayly", kKeys), "keep-daily");
  EXPECT_EQ(closest_match("keep_weekly", kKeys), "keep-weekly");
  EXPECT_EQ(closest_match("Keep-Last", kKeys), "keep-last");
  EXPECT_EQ(closest_match("schedule", kKeys), "");
  EXPECT_EQ(closest_match("x", kKeys), "");
}

}  // namespace
}  // namespace blkvault::config

namespace blkvault::config {
namespace {

TEST(ConfigRate, ReadsMegabytesASecondInPowersOfTen) {
  EXPECT_EQ(*parse_rate("20"), 20e6);
  EXPECT_EQ(*parse_rate("2.5"), 2.5e6);
  EXPECT_EQ(*parse_rate("0.5"), 500e3);
  EXPECT_EQ(*parse_rate("1000000"), 1e12);
  for (const char* bad : {"0", "0.0", "-5", "+5", "abc", "", "1e3", "5M", " 5", "5.", ".5", "1000001", "nan", "inf",
                          "0x10"}) {
    auto r = parse_rate(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.error().message(),
              fmt::format("'{}' is not a rate: expected a positive number of MB/s (1 MB = 10^6 bytes)", bad));
  }
}

TEST(ConfigRate, ReadLimitIsARateOrAutoWithAnOptionalMaximum) {
  auto fixed = parse_read_limit("20");
  ASSERT_TRUE(fixed);
  EXPECT_FALSE(fixed->adaptive);
  EXPECT_EQ(fixed->max_bytes_per_s, 20e6);
  auto a = parse_read_limit("auto");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->adaptive);
  EXPECT_EQ(a->max_bytes_per_s, 0);
  auto m = parse_read_limit("auto:150");
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->adaptive);
  EXPECT_EQ(m->max_bytes_per_s, 150e6);
  for (const char* bad : {"auto:", "auto:abc", "auto:0", "Auto", "auto:auto", "0", "-5", "abc"}) {
    auto r = parse_read_limit(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().message(), fmt::format("'{}' is not a read limit: expected a positive number of MB/s (1 MB = "
                                               "10^6 bytes), 'auto' or 'auto:MAX'",
                                               bad));
  }
}

}  // namespace
}  // namespace blkvault::config
