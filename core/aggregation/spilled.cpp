// The machinery of the rules that need a whole round at once: spill each delta as it arrives,
// then visit the coordinates block by block with one block of every update in memory.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "core/aggregation/deltas.h"
#include "core/aggregation/parallel.h"
#include "core/aggregation/rules.h"

namespace zk0 {

namespace {

size_t g_block_budget_bytes = size_t{256} << 20;

size_t block_size(size_t buffers) {
  const size_t per = g_block_budget_bytes / (sizeof(float) * std::max<size_t>(1, buffers));
  return std::clamp<size_t>(per, 1, size_t{1} << 22);
}

// Reads one block of each member into `buffers` (scaled) and points `rows` at them.
void read_block(const SpilledRound& round, const std::vector<size_t>& members, int64_t begin, size_t count,
                std::vector<std::vector<float>>& buffers, std::vector<const float*>& rows) {
  for (size_t k = 0; k < members.size(); ++k) {
    const size_t m = members[k];
    float* b = buffers[k].data();
    round.store->read(round.rows[m], begin, static_cast<int64_t>(count), b);
    const float scale = static_cast<float>(round.scales[m]);
    if (scale != 1.0f)
      parallel_for(count, aggregation_threads(), [&](size_t lo, size_t hi) {
        for (size_t c = lo; c < hi; ++c) b[c] *= scale;
      });
    rows[k] = b;
  }
}


}  // namespace

std::string format_number(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}

std::vector<size_t> all_members(const SpilledRound& round) {
  std::vector<size_t> m(round.size());
  std::iota(m.begin(), m.end(), size_t{0});
  return m;
}

BlockKernel weighted_mean(const SpilledRound& round, const std::vector<size_t>& members) {
  double total = 0;
  for (size_t i : members) total += round.weights[i];
  std::vector<double> shares;
  for (size_t i : members) shares.push_back(round.weights[i] / total);
  return [shares = std::move(shares)](const std::vector<const float*>& rows, size_t begin, size_t end, float* out) {
    for (size_t c = begin; c < end; ++c) {
      double s = 0;
      for (size_t k = 0; k < rows.size(); ++k) s += shares[k] * rows[k][c];
      out[c] = static_cast<float>(s);
    }
  };
}

void set_block_budget_bytes(size_t bytes) { g_block_budget_bytes = bytes; }

void check_weight(const std::string& who, double weight, double round_total_so_far) {
  if (!(weight > 0) || weight > 1) throw std::invalid_argument(who + ": weight must be in (0, 1] (got " + format_number(weight) + ")");
  if (round_total_so_far + weight > 1 + 1e-9) throw std::invalid_argument(who + ": the weights of a round sum to more than 1");
}

ParameterSet combine_blockwise(const SpilledRound& round, const std::vector<size_t>& members, const BlockKernel& kernel) {
  const ParameterSet& global = *round.global;
  ParameterSet out;
  std::vector<int64_t> offsets;
  int64_t total = 0;
  for (const auto& t : global.tensors) {
    out.tensors.push_back(make_tensor(t.name, t.dtype, t.shape));
    offsets.push_back(total);
    total += t.numel();
  }
  const size_t block = std::min<size_t>(block_size(members.size() + 1), static_cast<size_t>(std::max<int64_t>(1, total)));
  std::vector<std::vector<float>> buffers(members.size(), std::vector<float>(block));
  std::vector<const float*> rows(members.size());
  std::vector<float> delta(block);
  size_t tensor = 0;
  for (int64_t begin = 0; begin < total; begin += static_cast<int64_t>(block)) {
    const size_t count = static_cast<size_t>(std::min<int64_t>(total - begin, static_cast<int64_t>(block)));
    read_block(round, members, begin, count, buffers, rows);
    parallel_for(count, aggregation_threads(), [&](size_t lo, size_t hi) { kernel(rows, lo, hi, delta.data()); });
    // global + delta into the tensors this block covers
    for (int64_t c = begin; c < begin + static_cast<int64_t>(count);) {
      while (c >= offsets[tensor] + global.tensors[tensor].numel()) ++tensor;
      const int64_t end = std::min(begin + static_cast<int64_t>(count), offsets[tensor] + global.tensors[tensor].numel());
      const float* g = global.tensors[tensor].as<float>() + (c - offsets[tensor]);
      float* r = out.tensors[tensor].as<float>() + (c - offsets[tensor]);
      const float* d = delta.data() + (c - begin);
      for (int64_t k = 0; k < end - c; ++k) r[k] = g[k] + d[k];
      c = end;
    }
  }
  return out;
}

std::vector<double> pairwise_squared_distances(const SpilledRound& round) {
  const size_t n = round.size();
  const std::vector<size_t> everyone = all_members(round);
  const int64_t total = round.store->elements();
  const size_t block = std::min<size_t>(block_size(n), static_cast<size_t>(std::max<int64_t>(1, total)));
  std::vector<std::vector<float>> buffers(n, std::vector<float>(block));
  std::vector<const float*> rows(n);
  std::vector<double> distances(n * n, 0.0);
  const int threads = aggregation_threads();
  for (int64_t begin = 0; begin < total; begin += static_cast<int64_t>(block)) {
    const size_t count = static_cast<size_t>(std::min<int64_t>(total - begin, static_cast<int64_t>(block)));
    read_block(round, everyone, begin, count, buffers, rows);
    // One partial matrix per slice, merged in slice order: the sums do not depend on timing.
    std::vector<std::vector<double>> partial(static_cast<size_t>(threads), std::vector<double>(n * n, 0.0));
    parallel_slices(count, threads, [&](int slice, size_t lo, size_t hi) {
      std::vector<double>& d = partial[static_cast<size_t>(slice)];
      // Tiles small enough that every row's tile stays in cache while all pairs visit it.
      constexpr size_t kTile = 2048;
      for (size_t t0 = lo; t0 < hi; t0 += kTile) {
        const size_t t1 = std::min(hi, t0 + kTile);
        for (size_t i = 0; i < n; ++i)
          for (size_t j = i + 1; j < n; ++j) {
            const float* a = rows[i];
            const float* b = rows[j];
            double s = 0;
#pragma omp simd reduction(+ : s)
            for (size_t c = t0; c < t1; ++c) {
              const double x = static_cast<double>(a[c]) - b[c];
              s += x * x;
            }
            d[i * n + j] += s;
          }
      }
    });
    for (const auto& d : partial)
      for (size_t k = 0; k < n * n; ++k) distances[k] += d[k];
  }
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j) distances[j * n + i] = distances[i * n + j];
  return distances;
}

SpilledAggregation::SpilledAggregation(std::string rule, const StrategySpec& spec, std::shared_ptr<const ParameterSet> global,
                                       const std::string& scratch_dir)
    : rule_(std::move(rule)), spec_(spec), global_(std::move(global)), store_(scratch_dir, *global_) {
  for (const auto& t : global_->tensors)
    if (t.dtype != DType::F32) throw std::invalid_argument(rule_ + ": tensor '" + t.name + "' is not F32");
}

void SpilledAggregation::add(const std::string& client, const ParameterSet& update, double weight) {
  check_weight(rule_, weight, total_weight_);
  check_same_layout(update, *global_, rule_);
  if (std::find(clients_.begin(), clients_.end(), client) != clients_.end())
    throw std::invalid_argument(rule_ + ": a second update from client '" + client + "'");
  double norm = 0;
  store_.put(update, norm);
  if (!std::isfinite(norm)) throw std::invalid_argument(rule_ + ": the update of client '" + client + "' is not finite");
  clients_.push_back(client);
  weights_.push_back(weight);
  norms_.push_back(norm);
  total_weight_ += weight;
}

AggregationResult SpilledAggregation::finish() {
  const size_t n = clients_.size();
  if (n == 0) throw std::logic_error(rule_ + ": no updates to aggregate");
  if (n < minimum_count())
    throw std::invalid_argument(rule_ + " needs at least " + std::to_string(minimum_count()) + " updates, got " + std::to_string(n));
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return clients_[a] < clients_[b]; });
  SpilledRound round;
  round.store = &store_;
  round.global = global_.get();
  for (size_t k : order) {
    round.rows.push_back(k);  // rows are numbered in arrival order, as put() returned them
    round.clients.push_back(clients_[k]);
    round.weights.push_back(weights_[k]);
    round.norms.push_back(norms_[k]);
  }
  AggregationResult result;
  const std::optional<double> clip = clip_norm(spec_.clipping, round.norms);
  result.clip_norm = clip;
  round.scales = clip_scales(round.norms, clip);
  for (size_t i = 0; i < n; ++i) {
    UpdateDecision d{round.clients[i], "accepted", "", round.norms[i], round.scales[i]};
    if (round.scales[i] < 1) {
      d.outcome = "clipped";
      d.reason = "norm " + format_number(round.norms[i]) + " scaled to the clip norm " + format_number(*clip);
    }
    result.decisions.push_back(d);
  }
  combine(round, result);
  return result;
}

}  // namespace zk0
