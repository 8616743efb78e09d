#pragma once
// What the rules share inside core/aggregation: the streaming mean, and the base of the rules that
// need the whole round at once (they spill deltas to an UpdateStore, then run blockwise).
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/aggregation/strategy.h"
#include "core/aggregation/update_store.h"

namespace zk0 {

// Throws std::invalid_argument unless weight is in (0, 1] and the round's weights stay at most 1.
void check_weight(const std::string& who, double weight, double round_total_so_far);

// mean.cpp: the fixed-point mean, for the mean rule without norm bounding. `max_delta` bounds
// every update's L2 distance from the global (spec.strategy.maxUpdateNorm).
std::unique_ptr<Aggregation> make_streaming_mean(std::shared_ptr<const ParameterSet> global, double max_delta);

// A round as the spilled rules see it in finish(): rows in client-name order, with the scale
// norm bounding chose for each (1 when not clipped).
struct SpilledRound {
  const UpdateStore* store = nullptr;
  const ParameterSet* global = nullptr;
  std::vector<size_t> rows;
  std::vector<std::string> clients;
  std::vector<double> weights;  // the server's, as given to add()
  std::vector<double> norms;    // of the deltas as sent
  std::vector<double> scales;
  size_t size() const { return rows.size(); }
};

// Runs the kernel block by block over every coordinate, on all cores: rows[k][c] for c in
// [begin, end) are coordinates of the k-th of `members` (indices into round.rows), already
// scaled; the kernel writes the result's delta for them to out[c], and global + out becomes the
// result. Memory: one block per member plus one, about 256 MB in all whatever the member count.
using BlockKernel = std::function<void(const std::vector<const float*>& rows, size_t begin, size_t end, float* out)>;
ParameterSet combine_blockwise(const SpilledRound& round, const std::vector<size_t>& members, const BlockKernel& kernel);

// The mean of `members` with the server's weights renormalised over them, summed in member
// (client-name) order so the result does not depend on arrival order.
BlockKernel weighted_mean(const SpilledRound& round, const std::vector<size_t>& members);

// Every member of the round, 0..n-1.
std::vector<size_t> all_members(const SpilledRound& round);

// A number for a decision's reason or an error: six significant digits.
std::string format_number(double v);

// The bytes one pass's block buffers may take, 256 MB unless a test shrinks it to make small
// inputs cross block boundaries.
void set_block_budget_bytes(size_t bytes);

// Squared L2 distances between the scaled deltas of every pair of the round's rows (n x n, row
// major), in one pass over the store.
std::vector<double> pairwise_squared_distances(const SpilledRound& round);

// The base of every rule that needs the whole round: add() spills, finish() bounds norms and hands
// the round to combine().
class SpilledAggregation : public Aggregation {
 public:
  SpilledAggregation(std::string rule, const StrategySpec& spec, std::shared_ptr<const ParameterSet> global,
                     const std::string& scratch_dir);
  void add(const std::string& client, const ParameterSet& update, double weight) override;
  size_t count() const override { return clients_.size(); }
  AggregationResult finish() override;

 protected:
  // The least count the rule runs on; finish() refuses fewer with the rule named.
  virtual size_t minimum_count() const { return 1; }
  // Fills result.parameters; may mark decisions discarded (with the reason).
  virtual void combine(const SpilledRound& round, AggregationResult& result) = 0;
  const std::string rule_;
  const StrategySpec spec_;

 private:
  std::shared_ptr<const ParameterSet> global_;
  UpdateStore store_;
  std::vector<std::string> clients_;
  std::vector<double> weights_, norms_;
  double total_weight_ = 0;
};

// coordinate_wise.cpp
std::unique_ptr<Aggregation> make_clipped_mean(const StrategySpec& spec, std::shared_ptr<const ParameterSet> global,
                                               const std::string& scratch_dir);
std::unique_ptr<Aggregation> make_median(const StrategySpec& spec, std::shared_ptr<const ParameterSet> global,
                                         const std::string& scratch_dir);
std::unique_ptr<Aggregation> make_trimmed_mean(const StrategySpec& spec, std::shared_ptr<const ParameterSet> global,
                                               const std::string& scratch_dir);
// krum.cpp: Krum and Multi-Krum (selection, then the weighted mean of the selected) and Bulyan.
std::unique_ptr<Aggregation> make_krum(const StrategySpec& spec, std::shared_ptr<const ParameterSet> global,
                                       const std::string& scratch_dir);
std::unique_ptr<Aggregation> make_bulyan(const StrategySpec& spec, std::shared_ptr<const ParameterSet> global,
                                         const std::string& scratch_dir);

// private_mean.cpp: the mean under spec.strategy.privacy, for the round `round` describes.
struct PrivateRound;
std::unique_ptr<Aggregation> make_private_mean(std::shared_ptr<const ParameterSet> global, std::shared_ptr<PrivateRound> round);

// norm_bounding.cpp: the round's clip norm (none without clipping) and each row's scale.
std::optional<double> clip_norm(const ClippingSpec& spec, std::vector<double> norms);
std::vector<double> clip_scales(const std::vector<double>& norms, std::optional<double> clip_norm);

}  // namespace zk0
