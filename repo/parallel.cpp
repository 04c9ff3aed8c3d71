#include "repo/parallel.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace blkvault::repo {

Status parallel_for(size_t n, size_t threads, const CancelToken* cancel,
                    const std::function<Status(size_t, size_t)>& work, const std::string& cancelled_message) {
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex mu;  // first
  std::optional<Error> first;
  auto keep = [&](Error e) {
    std::lock_guard g(mu);
    if (!first) first = std::move(e);
    stop = true;
  };
  auto body = [&](size_t worker) {
    while (!stop.load()) {
      if (cancel != nullptr && cancel->cancelled()) return keep(Error(ErrorCode::kCancelled, cancelled_message));
      const size_t i = next++;
      if (i >= n) return;
      if (Status st = work(i, worker); !st) return keep(std::move(st).error());
    }
  };
  const size_t workers = parallel_workers(n, threads);
  std::vector<std::thread> pool;
  for (size_t t = 1; t < workers; ++t) pool.emplace_back(body, t);
  body(0);
  for (auto& t : pool) t.join();
  if (first) return tl::unexpected(std::move(*first));
  return {};
}

}  // namespace blkvault::repo
