// The Krum family (Blanchard et al. 2017; El Mhamdi et al. 2018), on deltas from the round's
// global: Krum keeps the update whose n - f - 2 nearest others are closest (sum of squared L2
// distances), Multi-Krum averages the m best scores, Bulyan picks n - 2f updates by iterated
// Krum and then, per coordinate, averages the n - 4f values nearest the selection's median.
//
// Scores ignore the server's weights (a Byzantine client's distance is what it is); Krum and
// Multi-Krum then average what they selected with the weights renormalised over it, as Flower
// does, and Bulyan's coordinate step is unweighted like the median it centres on. Ties in a
// score go to the client whose name sorts first, so the selection never depends on timing.
#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "core/aggregation/rules.h"

namespace zk0 {

namespace {

// Krum's score of each of `alive` (indices into the round) among `alive`: the sum of its
// max(1, |alive| - f - 2) smallest squared distances to the others.
std::vector<double> krum_scores(const std::vector<double>& distances, size_t n, const std::vector<size_t>& alive, int f) {
  const size_t neighbours = static_cast<size_t>(std::max<long>(1, static_cast<long>(alive.size()) - f - 2));
  std::vector<double> scores;
  std::vector<double> d;
  for (size_t i : alive) {
    d.clear();
    for (size_t j : alive)
      if (j != i) d.push_back(distances[i * n + j]);
    const size_t take = std::min(neighbours, d.size());
    std::partial_sort(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(take), d.end());
    scores.push_back(std::accumulate(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(take), 0.0));
  }
  return scores;
}

// Positions in `alive` ordered by score, ties by position (the round is in client-name order).
std::vector<size_t> by_score(const std::vector<double>& scores) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  return order;
}

void discard(AggregationResult& result, size_t i, const std::string& reason) {
  result.decisions[i].outcome = "discarded";
  result.decisions[i].reason = reason;
}

class MultiKrum final : public SpilledAggregation {
 public:
  MultiKrum(std::string rule, size_t select, const StrategySpec& spec, std::shared_ptr<const ParameterSet> global,
            const std::string& scratch_dir)
      : SpilledAggregation(std::move(rule), spec, std::move(global), scratch_dir), select_(select) {}

 private:
  int f() const { return spec_.aggregation.byzantine; }
  size_t minimum_count() const override { return std::max<size_t>(static_cast<size_t>(2 * f() + 3), select_ + static_cast<size_t>(f())); }
  void combine(const SpilledRound& round, AggregationResult& result) override {
    const size_t n = round.size();
    const std::vector<double> distances = pairwise_squared_distances(round);
    const std::vector<double> scores = krum_scores(distances, n, all_members(round), f());
    const std::vector<size_t> order = by_score(scores);
    std::vector<size_t> selected(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(select_));
    std::sort(selected.begin(), selected.end());
    const double cutoff = scores[order[select_ - 1]];
    for (size_t r = select_; r < n; ++r)
      discard(result, order[r], rule_ + ": score " + format_number(scores[order[r]]) + " not among the " + std::to_string(select_) +
                                    " lowest (the highest kept: " + format_number(cutoff) + ")");
    result.parameters = combine_blockwise(round, selected, weighted_mean(round, selected));
  }
  size_t select_;
};

class Bulyan final : public SpilledAggregation {
 public:
  using SpilledAggregation::SpilledAggregation;

 private:
  int f() const { return spec_.aggregation.byzantine; }
  size_t minimum_count() const override { return static_cast<size_t>(4 * f() + 3); }
  void combine(const SpilledRound& round, AggregationResult& result) override {
    const size_t n = round.size(), theta = n - 2 * static_cast<size_t>(f()), beta = theta - 2 * static_cast<size_t>(f());
    const std::vector<double> distances = pairwise_squared_distances(round);
    std::vector<size_t> alive = all_members(round), selected;
    while (selected.size() < theta) {
      const std::vector<size_t> order = by_score(krum_scores(distances, n, alive, f()));
      selected.push_back(alive[order[0]]);
      alive.erase(alive.begin() + static_cast<std::ptrdiff_t>(order[0]));
    }
    for (size_t i : alive)
      discard(result, i, "bulyan: not among the " + std::to_string(theta) + " updates iterated Krum selected");
    std::sort(selected.begin(), selected.end());
    result.parameters = combine_blockwise(round, selected, [theta, beta](const std::vector<const float*>& rows, size_t begin,
                                                                         size_t end, float* out) {
      std::vector<float> v(theta);
      for (size_t c = begin; c < end; ++c) {
        for (size_t k = 0; k < theta; ++k) v[k] = rows[k][c];
        std::sort(v.begin(), v.end());
        // The beta values nearest the median form a window of the sorted values around it: grow
        // it from the middle towards the nearer neighbour (the lower on a tie).
        size_t lo = (theta - 1) / 2, hi = theta / 2;
        const double median = (static_cast<double>(v[lo]) + v[hi]) / 2;
        while (hi - lo + 1 < beta) {
          if (hi + 1 >= theta || (lo > 0 && median - v[lo - 1] <= v[hi + 1] - median)) --lo;
          else ++hi;
        }
        double s = 0;
        for (size_t k = lo; k <= hi; ++k) s += v[k];
        out[c] = static_cast<float>(s / static_cast<double>(beta));
      }
    });
  }
};

}  // namespace

std::unique_ptr<Aggregation> make_krum(const StrategySpec& spec, std::shared_ptr<const ParameterSet> global,
                                       const std::string& scratch_dir) {
  if (spec.aggregation.byzantine < 0) throw std::invalid_argument("krum: byzantine must not be negative");
  if (spec.aggregation.rule == AggregationRule::Krum) return std::make_unique<MultiKrum>("krum", 1, spec, std::move(global), scratch_dir);
  if (spec.aggregation.select < 1) throw std::invalid_argument("multiKrum: select must be at least 1");
  return std::make_unique<MultiKrum>("multiKrum", static_cast<size_t>(spec.aggregation.select), spec, std::move(global), scratch_dir);
}

std::unique_ptr<Aggregation> make_bulyan(const StrategySpec& spec, std::shared_ptr<const ParameterSet> global,
                                         const std::string& scratch_dir) {
  if (spec.aggregation.byzantine < 0) throw std::invalid_argument("bulyan: byzantine must not be negative");
  return std::make_unique<Bulyan>("bulyan", spec, std::move(global), scratch_dir);
}

}  // namespace zk0
