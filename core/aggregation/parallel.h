#pragma once
// Coordinate-parallel loops for the aggregation kernels: a handful of threads over a range, no
// pool, because a round aggregates a few times a minute and a thread starts in microseconds.
#include <algorithm>
#include <cstddef>
#include <thread>
#include <vector>

namespace zk0 {

inline int aggregation_threads() { return std::max(1, std::min(8, static_cast<int>(std::thread::hardware_concurrency()))); }

// kernel(slice, begin, end) over `threads` contiguous slices of [0, n); below `min_parallel`
// elements one slice on the calling thread. Slices are a pure function of (n, threads), so a
// reduction merged in slice order is deterministic.
template <typename Kernel>
void parallel_slices(size_t n, int threads, Kernel&& kernel, size_t min_parallel = size_t{1} << 16) {
  if (threads <= 1 || n < min_parallel) {
    kernel(0, size_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  const size_t per = (n + static_cast<size_t>(threads) - 1) / static_cast<size_t>(threads);
  for (int t = 1; t < threads; ++t) {
    const size_t b = std::min(n, per * static_cast<size_t>(t)), e = std::min(n, b + per);
    pool.emplace_back(kernel, t, b, e);
  }
  kernel(0, 0, std::min(n, per));
  for (auto& th : pool) th.join();
}

template <typename Kernel>
void parallel_for(size_t n, int threads, Kernel&& kernel) {
  parallel_slices(n, threads, [&](int, size_t b, size_t e) { kernel(b, e); }, size_t{1} << 20);
}

}  // namespace zk0
