// config/values.h: sizes, durations and "did you mean".
#include "config/values.h"

#include <gtest/gtest.h>

#include <array>

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
