#include "repo/retention.h"

#include <time.h>

#include <algorithm>
#include <ctime>
#include <cstdio>
#include <set>

namespace blkvault::repo {
namespace {

struct Rule {
  const char* name;
  int count;
  // The bucket a local time falls in, as text ("2026-11-25"); empty for keep-last.
  std::string (*bucket)(const struct tm&);
};

std::string fmt_tm(const char* f, const struct tm& t) {
  char buf[32];
  std::strftime(buf, sizeof buf, f, &t);
  return buf;
}

std::string hour(const struct tm& t) { return fmt_tm("%Y-%m-%d %H:00", t); }
std::string day(const struct tm& t) { return fmt_tm("%Y-%m-%d", t); }
std::string week(const struct tm& t) { return fmt_tm("%G-W%V", t); }
std::string month(const struct tm& t) { return fmt_tm("%Y-%m", t); }
std::string year(const struct tm& t) { return fmt_tm("%Y", t); }

bool committed(const GenerationInfo& g) {
  return g.state == GenerationState::kComplete || g.state == GenerationState::kPartial;
}

}  // namespace

std::string RetentionPolicy::describe() const {
  std::string out;
  auto add = [&](const char* name, int n) {
    if (n == 0) return;
    if (!out.empty()) out += ", ";
    out += std::string("keep-") + name + " " + std::to_string(n);
  };
  add("last", last);
  add("hourly", hourly);
  add("daily", daily);
  add("weekly", weekly);
  add("monthly", monthly);
  add("yearly", yearly);
  return out.empty() ? "no keep rule" : out;
}

Result<std::vector<RetentionDecision>> apply_retention(const std::vector<GenerationInfo>& generations,
                                                       const RetentionPolicy& policy) {
  for (int n : {policy.last, policy.hourly, policy.daily, policy.weekly, policy.monthly, policy.yearly}) {
    if (n < 0) return fail(ErrorCode::kInvalidArgument, "keep counts cannot be negative");
  }
  if (policy.empty()) {
    return fail(ErrorCode::kInvalidArgument,
                "no keep rule given (--keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, "
                "--keep-yearly): refusing to remove every generation");
  }
  std::vector<const GenerationInfo*> gens;
  for (const auto& g : generations) {
    if (committed(g)) gens.push_back(&g);
  }
  // Newest first; ids break ties of equal start times.
  std::sort(gens.begin(), gens.end(), [](const GenerationInfo* a, const GenerationInfo* b) {
    return a->started_ms != b->started_ms ? a->started_ms > b->started_ms : a->id > b->id;
  });
  std::vector<RetentionDecision> out;
  for (const auto* g : gens) out.push_back(RetentionDecision{g->id, g->started_ms, false, {}});

  const Rule rules[] = {{"last", policy.last, nullptr},   {"hourly", policy.hourly, hour},
                        {"daily", policy.daily, day},      {"weekly", policy.weekly, week},
                        {"monthly", policy.monthly, month}, {"yearly", policy.yearly, year}};
  for (const auto& rule : rules) {
    int left = rule.count;
    std::string last_bucket;
    bool first = true;
    for (size_t i = 0; i < gens.size() && left > 0; ++i) {
      if (rule.bucket == nullptr) {
        out[i].keep = true;
        out[i].reasons.push_back("last " + std::to_string(rule.count - left + 1));
        --left;
        continue;
      }
      const time_t secs = static_cast<time_t>(gens[i]->started_ms / 1000);
      struct tm t {};
      localtime_r(&secs, &t);
      const std::string b = rule.bucket(t);
      if (!first && b == last_bucket) continue;  // an older generation in a bucket already kept
      first = false;
      last_bucket = b;
      out[i].keep = true;
      out[i].reasons.push_back(std::string(rule.name) + " " + b);
      --left;
    }
  }
  // The last good backup of every device is never removed.
  std::set<std::string> seen;
  for (size_t i = 0; i < gens.size(); ++i) {
    for (const auto& d : gens[i]->devices) {
      if (!d.complete || seen.count(d.name)) continue;
      seen.insert(d.name);
      out[i].keep = true;
      out[i].reasons.push_back("latest of " + d.name);
    }
  }
  return out;
}

}  // namespace blkvault::repo
