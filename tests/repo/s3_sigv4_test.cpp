// SigV4 against the vectors AWS publishes: the generic signing test suite
// (service "service", 2015-08-30) and the S3 API reference's worked examples
// ("examplebucket", 2013-05-24). Vectors transcribed by hand from AWS's pages.
#include <gtest/gtest.h>

#include <string>

#include "repo/s3_sigv4.h"

namespace blkvault::repo::s3 {
namespace {

constexpr const char* kEmptySha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

Credentials suite_creds() { return {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""}; }

Signed suite(std::string method, std::vector<std::pair<std::string, std::string>> query,
             std::vector<std::pair<std::string, std::string>> extra_headers = {}, std::string body = "") {
  SignInput in;
  in.method = std::move(method);
  in.path = "/";
  in.query = std::move(query);
  in.headers = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}};
  for (auto& h : extra_headers) in.headers.push_back(h);
  in.payload_sha256 = sha256_hex(body);
  return sign_v4(in, suite_creds(), "us-east-1", "service", "20150830T123600Z");
}

TEST(SigV4Suite, GetVanilla) {
  auto s = suite("GET", {});
  EXPECT_EQ(s.canonical_request,
            std::string("GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n") +
                kEmptySha);
  EXPECT_EQ(s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
  EXPECT_EQ(s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

TEST(SigV4Suite, GetVanillaQueryOrderKey) {
  // /?Param1=value2&Param1=Value1: equal keys sort by value, byte order.
  auto s = suite("GET", {{"Param1", "value2"}, {"Param1", "Value1"}});
  EXPECT_NE(s.canonical_request.find("\nParam1=Value1&Param1=value2\n"), std::string::npos) << s.canonical_request;
  EXPECT_EQ(s.signature, "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1");
}

TEST(SigV4Suite, GetVanillaQueryOrderValue) {
  auto s = suite("GET", {{"Param1", "value2"}, {"Param1", "value1"}});
  EXPECT_EQ(s.signature, "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694");
}

TEST(SigV4Suite, GetVanillaQueryOrderKeyCase) {
  auto s = suite("GET", {{"Param2", "value2"}, {"Param1", "value1"}});
  EXPECT_EQ(s.signature, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

TEST(SigV4Suite, GetVanillaQueryOrderEncoded) {
  // A key of U+1234 (UTF-8 E1 88 B4) sorts by its encoded form "%E1%88%B4".
  auto s = suite("GET", {{"Param-3", "Value3"}, {"Param", "Value2"}, {"\xE1\x88\xB4", "Value1"}});
  EXPECT_NE(s.canonical_request.find("\n%E1%88%B4=Value1&Param=Value2&Param-3=Value3\n"), std::string::npos);
  EXPECT_EQ(s.signature, "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac");
}

TEST(SigV4Suite, PostVanilla) {
  EXPECT_EQ(suite("POST", {}).signature, "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

TEST(SigV4Suite, PostHeaderValueCase) {
  auto s = suite("POST", {}, {{"My-Header1", "VALUE1"}});
  EXPECT_NE(s.authorization.find("SignedHeaders=host;my-header1;x-amz-date,"), std::string::npos);
  EXPECT_EQ(s.signature, "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d");
}

TEST(SigV4Suite, PostXWwwFormUrlencoded) {
  auto s = suite("POST", {}, {{"Content-Type", "application/x-www-form-urlencoded"}}, "Param1=value1");
  EXPECT_EQ(sha256_hex(std::string_view("Param1=value1")),
            "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
  EXPECT_EQ(s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date, "
            "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");
}

TEST(SigV4Suite, HeaderValuesAreTrimmedAndCollapsed) {
  // Whitespace in a header value does not change what is signed.
  auto a = suite("GET", {}, {{"My-Header1", "value1"}});
  auto b = suite("GET", {}, {{"my-header1", "   value1  "}});
  EXPECT_EQ(a.signature, b.signature);
  auto c = suite("GET", {}, {{"My-Header1", "a   b"}});
  EXPECT_NE(c.canonical_request.find("\nmy-header1:a b\n"), std::string::npos);
}

// The S3 API reference's examples ("Signature Calculations for the
// Authorization Header: Transferring Payload in a Single Chunk").
Signed s3_example(std::string method, std::string path, std::vector<std::pair<std::string, std::string>> query,
                  std::vector<std::pair<std::string, std::string>> headers, std::string payload_sha) {
  SignInput in;
  in.method = std::move(method);
  in.path = std::move(path);
  in.query = std::move(query);
  in.headers = {{"Host", "examplebucket.s3.amazonaws.com"}, {"x-amz-date", "20130524T000000Z"},
                {"x-amz-content-sha256", payload_sha}};
  for (auto& h : headers) in.headers.push_back(h);
  in.payload_sha256 = payload_sha;
  return sign_v4(in, {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""}, "us-east-1", "s3",
                 "20130524T000000Z");
}

TEST(SigV4S3Examples, GetObjectWithRange) {
  auto s = s3_example("GET", "/test.txt", {}, {{"Range", "bytes=0-9"}}, kEmptySha);
  EXPECT_EQ(sha256_hex(s.canonical_request), "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  EXPECT_EQ(s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(SigV4S3Examples, PutObjectEncodesTheKeyOnce) {
  const std::string body = "Welcome to Amazon S3.";
  const std::string sha = sha256_hex(body);
  EXPECT_EQ(sha, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  auto s = s3_example("PUT", "/test$file.text", {},
                      {{"Date", "Fri, 24 May 2013 00:00:00 GMT"}, {"x-amz-storage-class", "REDUCED_REDUNDANCY"}}, sha);
  EXPECT_EQ(s.canonical_request.substr(0, 22), "PUT\n/test%24file.text\n");
  EXPECT_EQ(s.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST(SigV4S3Examples, GetBucketLifecycleAndListObjects) {
  EXPECT_EQ(s3_example("GET", "/", {{"lifecycle", ""}}, {}, kEmptySha).signature,
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
  EXPECT_EQ(s3_example("GET", "/", {{"prefix", "J"}, {"max-keys", "2"}}, {}, kEmptySha).signature,
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST(SigV4Encoding, UnreservedKeptEverythingElseEscaped) {
  EXPECT_EQ(uri_encode("AZaz09-._~", false), "AZaz09-._~");
  EXPECT_EQ(uri_encode("a b/c+d=e&", false), "a%20b%2Fc%2Bd%3De%26");
  EXPECT_EQ(uri_encode("/bucket/a b", true), "/bucket/a%20b");
  EXPECT_EQ(md5_base64(std::span<const uint8_t>()), "1B2M2Y8AsgTpgAmY7PhCfg==");
  EXPECT_EQ(amz_date(1440938160), "20150830T123600Z");
}

}  // namespace
}  // namespace blkvault::repo::s3
