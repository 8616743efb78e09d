// Rules that treat each coordinate on its own: the mean (with norm bounding), the median
// (FedMedian, Yin et al. 2018) and the trimmed mean (FedTrimmedAvg, Yin et al. 2018).
//
// The median and the trimmed mean ignore the server's weights: a weighted median lets whoever
// carries the most weight choose the value, which is what a robust rule exists to prevent, and
// the bounds these rules come with are for unweighted order statistics. The mean keeps them.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/aggregation/rules.h"

namespace zk0 {

namespace {

class ClippedMean final : public SpilledAggregation {
 public:
  using SpilledAggregation::SpilledAggregation;

 private:
  void combine(const SpilledRound& round, AggregationResult& result) override {
    const std::vector<size_t> everyone = all_members(round);
    result.parameters = combine_blockwise(round, everyone, weighted_mean(round, everyone));
  }
};

// rank[i * stride + c] = #{j : v_j < v_i} + #{j < i : v_j == v_i} for v = rows[.][t0 + c].
// Cloned for AVX-512 and AVX2: the binaries are built for any x86-64, this loop is the rule.
__attribute__((target_clones("avx512f", "avx2", "default"))) void count_ranks(const float* const* rows, size_t n, size_t t0,
                                                                             size_t len, size_t stride, int32_t* rank) {
  for (size_t i = 0; i < n; ++i) {
    int32_t* __restrict r = rank + i * stride;
    const float* __restrict a = rows[i] + t0;
    for (size_t c = 0; c < len; ++c) r[c] = 0;
    for (size_t j = 0; j < n; ++j) {
      const float* __restrict b = rows[j] + t0;
      if (j < i)
        for (size_t c = 0; c < len; ++c) r[c] += b[c] <= a[c];
      else if (j > i)
        for (size_t c = 0; c < len; ++c) r[c] += b[c] < a[c];
    }
  }
}

// The mean of the order statistics [lo, hi) of each coordinate's n values: the median is
// [n/2, n/2 + 1) or, for even n, the two middle values as numpy's median; the trimmed mean is
// [k, n - k). For the n of a round (up to 64) each value's rank is counted against every other
// (ties go to the earlier member, so the ranks are a permutation): n^2 comparisons that
// vectorise across coordinates and never branch, several times faster than sorting each
// coordinate's values. Above 64 members sorting wins and is used.
BlockKernel mean_of_order_statistics(size_t n, size_t lo, size_t hi) {
  return [n, lo, hi](const std::vector<const float*>& rows, size_t begin, size_t end, float* out) {
    const double count = static_cast<double>(hi - lo);
    if (n > 64) {
      std::vector<float> v(n);
      for (size_t c = begin; c < end; ++c) {
        for (size_t k = 0; k < n; ++k) v[k] = rows[k][c];
        std::sort(v.begin(), v.end());
        double s = 0;
        for (size_t r = lo; r < hi; ++r) s += v[r];
        out[c] = static_cast<float>(s / count);
      }
      return;
    }
    constexpr size_t kTile = 256;
    std::vector<int32_t> rank(n * kTile);
    std::vector<double> sum(kTile);
    for (size_t t0 = begin; t0 < end; t0 += kTile) {
      const size_t len = std::min(kTile, end - t0);
      count_ranks(rows.data(), n, t0, len, kTile, rank.data());
      std::fill(sum.begin(), sum.end(), 0.0);
      const int32_t from = static_cast<int32_t>(lo), to = static_cast<int32_t>(hi);
      for (size_t i = 0; i < n; ++i) {
        const int32_t* r = rank.data() + i * kTile;
        const float* a = rows[i] + t0;
        for (size_t c = 0; c < len; ++c) sum[c] += (r[c] >= from && r[c] < to) ? static_cast<double>(a[c]) : 0.0;
      }
      for (size_t c = 0; c < len; ++c) out[t0 + c] = static_cast<float>(sum[c] / count);
    }
  };
}

class Median final : public SpilledAggregation {
 public:
  using SpilledAggregation::SpilledAggregation;

 private:
  void combine(const SpilledRound& round, AggregationResult& result) override {
    const size_t n = round.size(), mid = n / 2;
    result.parameters = combine_blockwise(round, all_members(round), mean_of_order_statistics(n, n % 2 ? mid : mid - 1, mid + 1));
  }
};

class TrimmedMean final : public SpilledAggregation {
 public:
  using SpilledAggregation::SpilledAggregation;

 private:
  // floor(fraction * n) from each tail; the spec makes sure that is at least one at
  // minFitClients, and fewer than half by the fraction's bound.
  size_t trimmed(size_t n) const { return static_cast<size_t>(std::floor(spec_.aggregation.trim_fraction * static_cast<double>(n))); }
  size_t minimum_count() const override {
    size_t n = 1;
    while (trimmed(n) < 1 || 2 * trimmed(n) >= n) ++n;
    return n;
  }
  void combine(const SpilledRound& round, AggregationResult& result) override {
    const size_t n = round.size(), k = trimmed(n);
    result.parameters = combine_blockwise(round, all_members(round), mean_of_order_statistics(n, k, n - k));
  }
};

}  // namespace

std::unique_ptr<Aggregation> make_clipped_mean(const StrategySpec& spec, std::shared_ptr<const ParameterSet> global,
                                               const std::string& scratch_dir) {
  return std::make_unique<ClippedMean>("mean", spec, std::move(global), scratch_dir);
}

std::unique_ptr<Aggregation> make_median(const StrategySpec& spec, std::shared_ptr<const ParameterSet> global,
                                         const std::string& scratch_dir) {
  return std::make_unique<Median>("median", spec, std::move(global), scratch_dir);
}

std::unique_ptr<Aggregation> make_trimmed_mean(const StrategySpec& spec, std::shared_ptr<const ParameterSet> global,
                                               const std::string& scratch_dir) {
  if (!(spec.aggregation.trim_fraction > 0 && spec.aggregation.trim_fraction < 0.5))
    throw std::invalid_argument("trimmedMean: trimFraction must be in (0, 0.5)");
  return std::make_unique<TrimmedMean>("trimmedMean", spec, std::move(global), scratch_dir);
}

}  // namespace zk0
