// The worker's local training and the data it reads: FedProx, the learning-rate schedule, the
// synthetic dataset and sampler, server evaluation's determinism, and that each training knob
// of the spec changes what training does.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "aggregator/coordinator.h"
#include "aggregator/evaluation.h"
#include "core/data/batch_loader.h"
#include "core/data/synthetic_dataset.h"
#include "core/optim/flat_adamw.h"
#include "core/policy/flow_matching.h"
#include "core/runtime/cpu_runtime.h"
#include "support/test_support.h"
#include "worker/trainer.h"

using namespace zk0;

namespace {

FederationSpec tiny_spec() {
  return parse_spec(test::small_spec("/tmp/unused", 2, 1, {{"localSteps", "5"}, {"batchSize", "16"}}));
}

RoundTask task(int local_steps, double mu, uint64_t seed, int round = 1) {
  RoundTask t;
  t.round = round;
  t.local_steps = local_steps;
  t.proximal_mu = mu;
  t.seed = seed;
  return t;
}

RoundResult train_once(const FederationSpec& spec, double mu = 0.0, uint64_t seed = 5, int steps = 5) {
  LocalTrainer trainer(spec, spec.clients[0]);
  trainer.open_dataset();
  const ParameterSet global = to_parameter_set(trainer.policy().trainable_parameters());
  return trainer.train_round(global, task(steps, mu, seed));
}

double max_abs_difference(const ParameterSet& a, const ParameterSet& b) {
  double m = 0;
  for (size_t i = 0; i < a.tensors.size(); ++i)
    for (int64_t k = 0; k < a.tensors[i].numel(); ++k)
      m = std::max(m, static_cast<double>(std::fabs(a.tensors[i].as<float>()[k] - b.tensors[i].as<float>()[k])));
  return m;
}

}  // namespace

TEST(FedProx, TermAndGradientMatchHandValues) {
  const at::Tensor w = torch::tensor({1.0f, 2.0f}).requires_grad_(true);
  const at::Tensor v = torch::tensor({{3.0f}}).requires_grad_(true);
  FlatAdamW optimizer({w, v}, {});
  const double term = optimizer.add_proximal_gradient(torch::tensor({0.0f, 0.0f, 1.0f}), 0.1);
  EXPECT_NEAR(term, 0.05 * (1 + 4 + 4), 1e-7);  // mu/2 * (1^2 + 2^2 + (3-1)^2)
  EXPECT_NEAR(w.grad()[0].item<double>(), 0.1, 1e-7);  // mu * (w - anchor)
  EXPECT_NEAR(w.grad()[1].item<double>(), 0.2, 1e-7);
  EXPECT_NEAR(v.grad()[0][0].item<double>(), 0.2, 1e-7);
}

// The flat optimizer against LibTorch's AdamW with clip_grad_norm_: same parameters after
// several steps with weight decay, clipping on some steps and not others, on tensors of
// several shapes whose gradients come from backward().
TEST(FlatAdamW, MatchesTorchAdamWWithClipping) {
  torch::manual_seed(3);
  const std::vector<std::vector<int64_t>> shapes = {{7, 5}, {5}, {3, 4, 2}, {40000}};
  std::vector<at::Tensor> ours, theirs;
  for (const auto& s : shapes) {
    const at::Tensor t = torch::randn(s);
    ours.push_back(t.clone().requires_grad_(true));
    theirs.push_back(t.clone().requires_grad_(true));
  }
  const AdamWOptions o{0.9, 0.95, 1e-8, 0.05};
  FlatAdamW flat(ours, o);
  torch::optim::AdamW reference(theirs, torch::optim::AdamWOptions(1e-3).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
  const auto loss = [](const std::vector<at::Tensor>& ps, double k) {
    at::Tensor sum = at::zeros({});
    for (const auto& p : ps) sum = sum + (p * p * k).sum() + p.sin().sum();
    return sum;
  };
  for (int step = 0; step < 6; ++step) {
    const double k = step % 2 ? 100.0 : 0.01;  // large gradients get clipped, small ones not
    const double lr = 1e-3 * (step + 1);
    flat.zero_grad();
    loss(ours, k).backward();
    const double norm = flat.grad_norm();
    flat.step(lr, clip_scale(norm, 1.0));

    reference.zero_grad();
    loss(theirs, k).backward();
    const double reference_norm = torch::nn::utils::clip_grad_norm_(theirs, 1.0);
    for (auto& group : reference.param_groups()) group.options().set_lr(lr);
    reference.step();
    EXPECT_NEAR(norm, reference_norm, 1e-5 * reference_norm);
  }
  int64_t offset = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    const double scale = theirs[i].abs().max().item<double>();
    EXPECT_LT((ours[i] - theirs[i]).abs().max().item<double>(), 1e-6 * scale) << "tensor " << i;
    EXPECT_EQ(ours[i].data_ptr<float>(), flat.parameters().data_ptr<float>() + offset) << "tensor " << i << " is a view";
    offset += ours[i].numel();
  }
}

TEST(FedProx, WorkerReportsProximalTermOnlyWithMu) {
  const FederationSpec spec = tiny_spec();
  const RoundResult plain = train_once(spec, 0.0);
  const RoundResult prox = train_once(spec, 10.0);
  EXPECT_DOUBLE_EQ(plain.report.proximal_loss, 0.0);
  EXPECT_GT(prox.report.proximal_loss, 0.0);
  EXPECT_NEAR(prox.report.loss, prox.report.policy_loss + prox.report.proximal_loss, 1e-6);
  EXPECT_LT(prox.report.update_norm, plain.report.update_norm);  // the anchor pulls the weights back
}

TEST(LearningRate, ConstantCosineAndWarmup) {
  TrainingSpec t;
  t.learning_rate = 1e-3;
  t.lr_schedule = LrScheduleType::Constant;
  EXPECT_DOUBLE_EQ(learning_rate_at(t, 7, 10), 1e-3);
  t.lr_schedule = LrScheduleType::Cosine;
  t.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(learning_rate_at(t, 0, 11), 1e-3);
  EXPECT_NEAR(learning_rate_at(t, 5, 11), 0.55e-3, 1e-12);  // halfway: mean of lr and min lr
  EXPECT_NEAR(learning_rate_at(t, 10, 11), 1e-4, 1e-12);
  t.warmup_steps = 4;
  EXPECT_NEAR(learning_rate_at(t, 0, 20), 0.2e-3, 1e-12);
  EXPECT_NEAR(learning_rate_at(t, 3, 20), 0.8e-3, 1e-12);
  EXPECT_NEAR(learning_rate_at(t, 4, 20), 1e-3, 1e-12);
}

TEST(FlowMatching, MaskedAndUnmaskedReductions) {
  const at::Tensor target = torch::zeros({1, 2, 2});
  const at::Tensor velocity = torch::tensor({{{1.0f, 1.0f}, {3.0f, 3.0f}}});
  const at::Tensor pad = torch::tensor({{false, true}});
  EXPECT_NEAR(flow_matching_loss(velocity, target, pad, LossReduction::Masked).item<double>(), 1.0, 1e-7);
  EXPECT_NEAR(flow_matching_loss(velocity, target, pad, LossReduction::Unmasked).item<double>(), 5.0, 1e-7);
}

TEST(FlowMatching, TimeFollowsBetaOnePointFiveOne) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const FlowMatchingDraw d = draw_flow_matching(torch::zeros({200000, 1, 1}), gen);
  EXPECT_GE(d.time.min().item<double>(), 0.001);
  EXPECT_LE(d.time.max().item<double>(), 1.0);
  EXPECT_NEAR(d.time.mean().item<double>(), 0.6 * 0.999 + 0.001, 3e-3);  // E[Beta(1.5,1)] = 0.6
}

TEST(SyntheticDataset, EpisodeSubsetPaddingAndNonIidTasks) {
  SyntheticDatasetSpec s{"stack cubes", 5, 20, 1};
  SyntheticDataset all(s, {}, 8, "synthetic:stack cubes");
  SyntheticDataset some(s, {1, 3}, 8, "synthetic:stack cubes");
  EXPECT_EQ(all.size(), 100);
  EXPECT_EQ(some.size(), 40);
  EXPECT_EQ(some.episodes()[1].index, 3);
  // Episode 1 of the subset is episode 3 of the whole dataset: same frames.
  EXPECT_TRUE(at::equal(some.get(20).state, all.get(60).state));
  const Sample end = all.get(17);  // 3 frames before the end of episode 0
  EXPECT_EQ(end.action_is_pad.sum().item<int64_t>(), 5);
  EXPECT_FALSE(end.action_is_pad[2].item<bool>());
  EXPECT_TRUE(at::equal(end.action[7], end.action[2]));  // clamped to the last frame's action
  EXPECT_THROW(SyntheticDataset(s, {7}, 8, "synthetic:stack cubes"), std::runtime_error);
  SyntheticDataset other({"open drawer", 5, 20, 1}, {}, 8, "synthetic:open drawer");
  EXPECT_FALSE(at::allclose(all.action_stats().mean, other.action_stats().mean, 1e-2));
}

TEST(Sampler, ReproducibleEpochsWithoutReplacement) {
  ShuffledSampler a(10, 3, 7), b(10, 3, 7), c(10, 3, 8);
  std::vector<int64_t> epoch0;
  for (int i = 0; i < 3; ++i) {
    const auto x = a.next_batch();
    EXPECT_EQ(x, b.next_batch());
    epoch0.insert(epoch0.end(), x.begin(), x.end());
  }
  std::sort(epoch0.begin(), epoch0.end());
  EXPECT_EQ(std::unique(epoch0.begin(), epoch0.end()), epoch0.end());  // no repeats within an epoch
  a.next_batch();
  EXPECT_EQ(a.epoch(), 1);  // the 10th sample is dropped, as drop_last does
  EXPECT_NE(ShuffledSampler(10, 3, 7).next_batch(), c.next_batch());
  EXPECT_THROW(ShuffledSampler(2, 3, 1), std::invalid_argument);
}

TEST(Evaluation, QuickCoversEveryEpisodeFullCoversEverySample) {
  SyntheticDataset d({"x", 6, 30, 1}, {}, 5, "synthetic:x");
  const auto quick = evaluation_batches(d, EvalMode::Quick, 2, 16, 3);
  ASSERT_EQ(quick.size(), 2u);
  std::set<int64_t> episodes;
  for (const auto& b : quick)
    for (int64_t i : b) episodes.insert(i / 30);
  EXPECT_EQ(episodes.size(), 6u);
  EXPECT_NE(quick, evaluation_batches(d, EvalMode::Quick, 2, 16, 4));
  const auto full = evaluation_batches(d, EvalMode::Full, 2, 16, 3);
  int64_t n = 0;
  for (const auto& b : full) n += static_cast<int64_t>(b.size());
  EXPECT_EQ(n, 180);
  EXPECT_EQ(full.size(), 12u);
}

TEST(Evaluation, DeterministicForFixedSeedAndWeights) {
  const FederationSpec spec = tiny_spec();
  auto policy = make_policy(spec.policy);
  ServerEvaluator eval(spec.evaluation.sets[0], *policy);
  const double a = eval.evaluate(*policy).loss, b = eval.evaluate(*policy).loss;
  EXPECT_EQ(a, b);
  EvaluationSetSpec other = spec.evaluation.sets[0];
  other.seed += 1;
  EXPECT_NE(ServerEvaluator(other, *policy).evaluate(*policy).loss, a);
  other = spec.evaluation.sets[0];
  other.mode = EvalMode::Full;
  const EvalResult full = ServerEvaluator(other, *policy).evaluate(*policy);
  EXPECT_EQ(full.samples, 4 * 40);
}

TEST(Training, LossFallsAndRunsAreReproducible) {
  const FederationSpec spec = tiny_spec();
  LocalTrainer trainer(spec, spec.clients[0]);
  trainer.open_dataset();
  ParameterSet global = to_parameter_set(trainer.policy().trainable_parameters());
  const RoundResult first = trainer.train_round(global, task(40, 0, 1, 1));
  const RoundResult later = trainer.train_round(first.update, task(40, 0, 2, 2));
  EXPECT_LT(later.report.policy_loss, first.report.policy_loss);
  EXPECT_EQ(first.report.samples, 40u * 16u);
  EXPECT_EQ(first.report.steps, 40u);
  // Same spec, same global, same seed: the same update, bit for bit.
  EXPECT_EQ(build_manifest(train_once(spec, 0, 9).update).digest, build_manifest(train_once(spec, 0, 9).update).digest);
  EXPECT_NE(build_manifest(train_once(spec, 0, 9).update).digest, build_manifest(train_once(spec, 0, 10).update).digest);
}

TEST(Training, EveryOptimizerKnobChangesTheUpdate) {
  const FederationSpec base = tiny_spec();
  const ParameterSet reference = train_once(base).update;
  auto differs = [&](const std::function<void(FederationSpec&)>& change) {
    FederationSpec s = base;
    change(s);
    return max_abs_difference(train_once(s).update, reference) > 0;
  };
  EXPECT_TRUE(differs([](FederationSpec& s) { s.training.learning_rate *= 2; }));
  EXPECT_TRUE(differs([](FederationSpec& s) { s.training.betas[0] = 0.5; }));
  EXPECT_TRUE(differs([](FederationSpec& s) { s.training.betas[1] = 0.5; }));
  EXPECT_TRUE(differs([](FederationSpec& s) { s.training.eps = 1e-2; }));
  EXPECT_TRUE(differs([](FederationSpec& s) { s.training.weight_decay = 0.5; }));
  EXPECT_TRUE(differs([](FederationSpec& s) { s.training.batch_size = 8; }));
  EXPECT_TRUE(differs([](FederationSpec& s) { s.training.lr_schedule = LrScheduleType::Constant; }));
  EXPECT_TRUE(differs([](FederationSpec& s) { s.training.min_lr_ratio = 0.9; }));
  EXPECT_TRUE(differs([](FederationSpec& s) { s.training.warmup_steps = 3; }));
  EXPECT_TRUE(differs([](FederationSpec& s) { s.training.grad_clip_norm = 0.01; }));
  EXPECT_TRUE(differs([](FederationSpec& s) { s.training.precision = Precision::BF16; }));
  EXPECT_TRUE(differs([](FederationSpec& s) { s.clients[0].dataset.episodes = {0, 1, 2}; }));
}

// training.seed and training.localSteps reach the worker only through the instruction the
// aggregator computes from the spec: exercised that way, not by passing them to the trainer.
TEST(Training, SeedAndLocalStepsComeFromTheSpecThroughTheInstruction) {
  const auto train_as_instructed = [](const FederationSpec& spec) {
    const RoundPlan plan = make_strategy(spec, testing::TempDir())->configure_round(1, 1, {"c0", "c1"});
    LocalTrainer trainer(spec, spec.clients[0]);
    trainer.open_dataset();
    return trainer.train_round(to_parameter_set(trainer.policy().trainable_parameters()),
                               task(plan.local_steps, plan.proximal_mu, client_round_seed(spec.training.seed, 1, "c0")));
  };
  const FederationSpec base = tiny_spec();
  const RoundResult reference = train_as_instructed(base);
  EXPECT_EQ(reference.report.steps, 5u);  // tiny_spec's localSteps
  EXPECT_EQ(max_abs_difference(train_as_instructed(base).update, reference.update), 0);
  FederationSpec reseeded = base;
  reseeded.training.seed += 1;
  EXPECT_GT(max_abs_difference(train_as_instructed(reseeded).update, reference.update), 0);
  FederationSpec longer = base;
  longer.training.local_steps = 9;
  const RoundResult more = train_as_instructed(longer);
  EXPECT_EQ(more.report.steps, 9u);
  EXPECT_EQ(more.report.samples, 9u * 16u);
  EXPECT_GT(max_abs_difference(more.update, reference.update), 0);
}

TEST(Training, Bf16StaysCloseToFp32) {
  FederationSpec spec = tiny_spec();
  const double fp32 = train_once(spec).report.policy_loss;
  spec.training.precision = Precision::BF16;
  const double bf16 = train_once(spec).report.policy_loss;
  EXPECT_NE(bf16, fp32);
  EXPECT_NEAR(bf16, fp32, 0.05 * fp32);
}

TEST(Resources, CpuSetsThreadsGpuNeedsCuda) {
  // The build loads OpenBLAS's OpenMP flavour (scripts/setup.sh installs it), so LibTorch may use
  // every thread it is given without two thread pools fighting over the cores.
  configure_cpu_runtime(1);
  EXPECT_EQ(at::get_num_threads(), 1);
  const CpuRuntime two = configure_cpu_runtime(2);
  // Debian's LibTorch runs on OpenBLAS (its OpenMP build, as CMake arranges); PyPI's LibTorch 2.x
  // brings MKL, which shares LibTorch's OpenMP pool by itself.
  EXPECT_EQ(two.blas, TORCH_VERSION_MAJOR >= 2 ? "other" : "openblas-openmp");
  EXPECT_EQ(at::get_num_threads(), 2);
  EXPECT_EQ(two.threads, 2);
  EXPECT_EQ(configure_cpu_runtime(1.5).threads, 2);  // resources.cpu rounds up
  EXPECT_GE(available_cpus(), 1);
  FederationSpec spec = tiny_spec();
  spec.clients[0].resources.gpu = 1;
  if (torch::cuda::is_available()) {
    // With CUDA the client trains there, and its update comes back as float32 bytes.
    LocalTrainer gpu(spec, spec.clients[0]);
    EXPECT_TRUE(gpu.policy().device().is_cuda());
    gpu.open_dataset();
    const RoundResult r = gpu.train_round(to_parameter_set(gpu.policy().trainable_parameters()), task(3, 0, 1));
    EXPECT_TRUE(std::isfinite(r.report.loss));
    EXPECT_EQ(r.update.tensors.front().dtype, DType::F32);
  } else {
    try {
      LocalTrainer gpu(spec, spec.clients[0]);
      FAIL() << "expected a SpecError on a machine without CUDA";
    } catch (const SpecError& e) {
      EXPECT_NE(std::string(e.what()).find("spec.clients[0].resources.gpu"), std::string::npos);
    }
  }
}

TEST(Policy, ConfigTrainGroupsAndPretrained) {
  FederationSpec spec = tiny_spec();
  auto small = make_policy(spec.policy);
  spec.policy.config["hiddenDim"] = 128;
  auto wide = make_policy(spec.policy);
  EXPECT_GT(to_parameter_set(wide->parameters()).total_elements(), to_parameter_set(small->parameters()).total_elements());
  // Default: the state encoder is frozen, everything else trains.
  for (const auto& [name, t] : small->frozen_parameters()) EXPECT_EQ(name.rfind("state_encoder.", 0), 0u) << name;
  for (const auto& [name, t] : small->trainable_parameters()) EXPECT_TRUE(t.requires_grad()) << name;
  spec.policy.train = {"action_out_proj"};
  auto head_only = make_policy(spec.policy);
  EXPECT_EQ(head_only->trainable_parameters().size(), 2u);
  spec.policy.train = {"decoder"};
  EXPECT_THROW(make_policy(spec.policy), SpecError);
  spec.policy.train = {};
  spec.policy.config["bogus"] = 1;
  EXPECT_THROW(make_policy(spec.policy), SpecError);
  // Weights derive from initSeed, so every process agrees on the frozen part.
  spec.policy.config.erase("bogus");
  const auto a = build_manifest(to_parameter_set(make_policy(spec.policy)->frozen_parameters())).digest;
  EXPECT_EQ(a, build_manifest(to_parameter_set(make_policy(spec.policy)->frozen_parameters())).digest);
  spec.policy.config["initSeed"] = 1;
  EXPECT_NE(a, build_manifest(to_parameter_set(make_policy(spec.policy)->frozen_parameters())).digest);
  // pretrained: a saved policy loads back with the same weights.
  const std::string dir = test::make_temp_dir("pretrained");
  save_pretrained(*wide, dir);
  spec.policy.config = wide->config_json();
  spec.policy.config.erase("type");
  spec.policy.config["initSeed"] = 77;  // different init, overwritten by the file
  spec.policy.pretrained = dir;
  auto loaded = make_policy(spec.policy);
  EXPECT_EQ(build_manifest(to_parameter_set(loaded->parameters())).digest,
            build_manifest(to_parameter_set(wide->parameters())).digest);
}

namespace {
// A dataset whose samples are slow and whose chosen index fails, to exercise the loader.
class SlowDataset final : public Dataset {
 public:
  explicit SlowDataset(int64_t fail_at) : inner_({"x", 4, 30, 1}, {}, 5, "synthetic:x"), fail_at_(fail_at) {}
  const DatasetInfo& info() const override { return inner_.info(); }
  const std::vector<Episode>& episodes() const override { return inner_.episodes(); }
  int64_t size() const override { return inner_.size(); }
  Sample get(int64_t index) override {
    std::this_thread::sleep_for(std::chrono::microseconds(200 * (index % 7)));
    if (index == fail_at_) throw std::runtime_error("episode 2: bad frame");
    ++gets;
    return inner_.get(index);
  }
  const FeatureStats& state_stats() const override { return inner_.state_stats(); }
  const FeatureStats& action_stats() const override { return inner_.action_stats(); }
  std::atomic<int> gets{0};

 private:
  SyntheticDataset inner_;
  int64_t fail_at_;
};
}  // namespace

TEST(BatchLoader, BatchesArriveInSamplerOrderWhateverTheThreads) {
  SlowDataset data(-1);
  ShuffledSampler a(data.size(), 8, 5), b(data.size(), 8, 5);
  BatchLoader loader(data, [&] { return a.next_batch(); }, 20, 3, 4);
  for (int k = 0; k < 20; ++k) {
    std::vector<Sample> samples;
    for (int64_t i : b.next_batch()) samples.push_back(data.get(i));
    const Batch expected = collate(samples, data.state_stats(), data.action_stats());
    const Batch got = loader.next();
    ASSERT_TRUE(at::equal(got.state, expected.state)) << k;
    ASSERT_TRUE(at::equal(got.action, expected.action)) << k;
  }
  EXPECT_THROW(loader.next(), std::logic_error);
}

TEST(BatchLoader, PrefetchIsBoundedAndErrorsReachTheTrainer) {
  SlowDataset data(-1);
  ShuffledSampler s(data.size(), 4, 1);
  {
    BatchLoader loader(data, [&] { return s.next_batch(); }, 50, 2, 3);
    // The loaders fill the prefetch queue: `prefetch` batches ahead, and never more.
    EXPECT_TRUE(test::wait_until([&] { return data.gets.load() == 3 * 4; }, std::chrono::seconds(10))) << data.gets.load();
    EXPECT_TRUE(test::holds_for([&] { return data.gets.load() == 3 * 4; }, std::chrono::milliseconds(300))) << data.gets.load();
  }
  SlowDataset broken(7);
  std::vector<std::vector<int64_t>> batches = {{0, 1}, {5, 7}, {2, 3}};
  size_t issued = 0;
  BatchLoader loader(broken, [&] { return batches[issued++]; }, 3, 2, 2);
  EXPECT_NO_THROW(loader.next());
  try {
    loader.next();
    FAIL() << "expected the sample's error";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "episode 2: bad frame");
  }
}

// DP-SGD's step (worker/sample_privacy.h) by hand: loss_i = w . x_i has gradient x_i, so the step's
// gradient must be the sum of the x_i each clipped to C, plus noise of std z C, over batchSize.
TEST(SamplePrivacy, PerSampleGradientsAreClippedSummedNoisedAndDividedByTheBatchSize) {
  FederationSpec spec = tiny_spec();
  spec.training.batch_size = 4;
  spec.training.privacy = {true, 1.0, 1e-9, 0, 1e-5, 7};
  const std::string state = test::make_temp_dir("dpsgd-unit");
  const SampleLevelPrivacy privacy(spec, 1000, state, "c0");
  EXPECT_DOUBLE_EQ(privacy.sampling_rate(), 0.004);
  const at::Tensor w = torch::zeros({2}).requires_grad_(true);
  FlatAdamW optimizer({w}, {});
  Batch batch;
  batch.state = torch::tensor({{0.3f, 0.4f}, {0.0f, 3.0f}, {0.6f, 0.8f}});  // norms 0.5, 3 (clipped to 1), 1
  batch.action = torch::zeros({3, 1, 1});
  batch.action_is_pad = torch::zeros({3, 1}, torch::kBool);
  batch.task = {"a", "b", "c"};
  const auto loss_of = [&](const Batch& one) { return (w * one.state[0]).sum(); };
  const PrivateGradient g = private_gradient(optimizer, batch, privacy, loss_of, 1, 0);
  EXPECT_EQ(g.samples, 3);
  EXPECT_NEAR(g.mean_sample_norm, (0.5 + 3 + 1) / 3, 1e-6);
  const at::Tensor grad = optimizer.gradients();
  EXPECT_NEAR(grad[0].item<double>(), (0.3 + 0 + 0.6) / 4, 1e-6);
  EXPECT_NEAR(grad[1].item<double>(), (0.4 + 1 + 0.8) / 4, 1e-6);
  // An empty Poisson draw: the step is noise alone.
  private_gradient(optimizer, Batch{}, privacy, loss_of, 1, 1);
  EXPECT_LT(optimizer.gradients().abs().max().item<double>(), 1e-6);

  // The noise on a large vector: std z C / batchSize.
  spec.training.privacy.noise_multiplier = 2.0;
  const SampleLevelPrivacy noisy(spec, 1000, test::make_temp_dir("dpsgd-noise"), "c0");
  const at::Tensor big = torch::zeros({200000}).requires_grad_(true);
  FlatAdamW big_optimizer({big}, {});
  private_gradient(big_optimizer, Batch{}, noisy, loss_of, 1, 0);
  EXPECT_NEAR(big_optimizer.gradients().std().item<double>(), 2.0 * 1.0 / 4, 0.5 * 5 / std::sqrt(2.0 * 200000));
  // Poisson sampling: each frame with probability q, independently per step.
  size_t drawn = 0;
  for (int step = 0; step < 100; ++step) drawn += noisy.sample(1, step).size();
  EXPECT_NEAR(drawn / 100.0, 4.0, 5 * std::sqrt(4.0 * (1 - 0.004) / 100));
  EXPECT_NE(noisy.sample(1, 0), noisy.sample(1, 1));
}

TEST(SamplePrivacy, SettingsTheClientsDatasetMakesImpossibleAreRefusedWithTheField) {
  FederationSpec spec = tiny_spec();
  spec.training.privacy = {true, 1.0, 1.0, 0, 0.01, std::nullopt};
  try {
    SampleLevelPrivacy(spec, 1000, test::make_temp_dir("dpsgd-bad"), "c0");
    FAIL() << "delta 0.01 with 1000 frames accepted";
  } catch (const SpecError& e) {
    EXPECT_NE(std::string(e.what()).find("spec.training.privacy.delta"), std::string::npos) << e.what();
  }
  spec.training.privacy.delta = 1e-5;
  EXPECT_THROW(SampleLevelPrivacy(spec, 1000, "", "c0"), SpecError);  // no state folder for the accountant
  spec.training.privacy = {true, 1.0, 0, 1e-9, 1e-5, std::nullopt};
  try {
    SampleLevelPrivacy(spec, 1000, test::make_temp_dir("dpsgd-bad2"), "c0");
    FAIL() << "an unreachable target accepted";
  } catch (const SpecError& e) {
    EXPECT_NE(std::string(e.what()).find("spec.training.privacy.targetEpsilon"), std::string::npos) << e.what();
  }
}
