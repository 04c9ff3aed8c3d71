// The job configuration (TOML) and the value parsers it uses, on arbitrary text.
#include "config/job_config.h"
#include "config/schedule.h"
#include "config/values.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace blkvault;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)config::check_text(text, "fuzz.toml");
  if (size < 200) {
    (void)config::parse_size(text);
    (void)config::parse_duration(text);
    (void)config::parse_schedule(text);
  }
  return 0;
}
