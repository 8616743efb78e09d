// The LeRobot reader against a real v2.1 dataset (shared/fixtures: Unitree G1, 100 episodes,
// AV1 video for episodes 1, 29 and 30) and against damaged copies of it.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/data/lerobot_dataset.h"
#include "core/data/open_dataset.h"
#include "core/lerobot/hub_cache.h"
#include "core/lerobot/inspect.h"
#include "core/lerobot/parquet_table.h"
#include "core/lerobot/synth.h"
#include "core/lerobot/video_decoder.h"
#include "core/util/fs.h"
#include "support/test_support.h"
#include "worker/trainer.h"

using namespace zk0;
using namespace zk0::lerobot;
using zk0::test::what_of;
namespace fs = std::filesystem;

namespace {

std::string fixture() { return test::shared_dir() + "/fixtures/YifanTian07_G1-policy-train"; }
std::string video(int episode) {
  char name[128];
  std::snprintf(name, sizeof name, "/videos/chunk-000/observation.images.cam_high/episode_%06d.mp4", episode);
  return fixture() + name;
}

// A copy of the fixture (meta and the data and videos of a few episodes) that a test may damage.
std::string copy_of_fixture() {
  const std::string dir = test::make_temp_dir("lerobot");
  fs::copy(fixture(), dir, fs::copy_options::recursive);
  return dir;
}

}  // namespace

TEST(LeRobotMetadata, RealV21DatasetFacts) {
  const Metadata m = load_metadata(fixture());
  EXPECT_EQ(m.version, "v2.1");
  EXPECT_EQ(m.robot_type, "Unitree_G1_Inspire");
  EXPECT_EQ(m.fps, 30);
  EXPECT_EQ(m.total_episodes, 100);
  EXPECT_EQ(m.episodes.size(), 100u);
  EXPECT_EQ(m.total_frames, 35965);
  EXPECT_EQ(m.episodes.back().to, 35965);
  EXPECT_EQ(m.feature("observation.state").width(), 26);
  EXPECT_EQ(m.feature("action").names.size(), 26u);  // the nested [[...]] names, flattened
  EXPECT_EQ(m.feature("action").names.front(), "kLeftShoulderPitch");
  ASSERT_EQ(m.cameras(), std::vector<std::string>{"observation.images.cam_high"});
  EXPECT_EQ(m.feature("observation.images.cam_high").codec, "av1");
  EXPECT_EQ(m.tasks.at(0), "Pick up the yellow bottle on the table.");
  EXPECT_EQ(m.data_file(m.episode(7)), fixture() + "/data/chunk-000/episode_000007.parquet");
  EXPECT_EQ(m.video_file(m.episode(29), "observation.images.cam_high"), video(29));
  EXPECT_EQ(m.episode(1).length, 393);
}

TEST(LeRobotMetadata, InspectChecksEveryEpisodeAgainstTheFiles) {
  const auto report = inspect_dataset(load_metadata(fixture()));
  int64_t rows = 0;
  for (const auto& e : report["episodes"]) {
    EXPECT_EQ(e["rows"], e["length"]) << e.dump();
    rows += e["rows"].get<int64_t>();
  }
  EXPECT_EQ(rows, 35965);
  EXPECT_EQ(report["episodes"][29]["videos"]["observation.images.cam_high"], "present");
  EXPECT_EQ(report["episodes"][2]["videos"]["observation.images.cam_high"], "missing");
  ASSERT_EQ(report["problems"].size(), 1u) << report["problems"].dump(2);
  EXPECT_EQ(report["problems"][0], "observation.images.cam_high: video missing for 97 of 100 episodes");
  const std::string text = format_report(report);
  EXPECT_NE(text.find("version v2.1"), std::string::npos);
}

TEST(LeRobotMetadata, AggregatedStatsEqualStatsOfAllRows) {
  const Metadata m = load_metadata(fixture());
  // LeRobot's aggregation of per-episode stats must equal the statistics of every row at once.
  std::vector<double> sum(26, 0), sq(26, 0);
  int64_t n = 0;
  for (const auto& e : m.episodes) {
    const auto t = read_parquet_columns(m.data_file(e), {{"observation.state", ColumnKind::Float}});
    const auto& c = t.floats.at("observation.state");
    for (int64_t r = 0; r < t.rows; ++r, ++n)
      for (int d = 0; d < 26; ++d) {
        const double v = c.values[static_cast<size_t>(r * 26 + d)];
        sum[d] += v;
        sq[d] += v * v;
      }
  }
  const Stats s = m.stats("observation.state");
  EXPECT_EQ(s.count, n);
  for (int d = 0; d < 26; ++d) {
    const double mean = sum[d] / n, std = std::sqrt(std::max(0.0, sq[d] / n - mean * mean));
    EXPECT_NEAR(s.mean[d], mean, 1e-5 * (1 + std::fabs(mean))) << d;
    EXPECT_NEAR(s.std[d], std, 1e-4 * (1 + std)) << d;
  }
  const Stats two = m.stats("observation.state", {1, 29});
  EXPECT_EQ(two.count, 393 + 221);
}

TEST(Video, Av1FrameCountsMatchEpisodeLengths) {
  for (auto [episode, frames] : {std::pair<int, int64_t>{1, 393}, {29, 221}, {30, 277}}) {
    VideoDecoder d(video(episode));
    EXPECT_EQ(d.codec(), "av1");
    EXPECT_EQ(d.width(), 640);
    EXPECT_EQ(d.height(), 480);
    EXPECT_EQ(d.count_frames(), frames) << episode;
  }
}

TEST(Video, FramesByTimestampSequentialAndRandomAgree) {
  const Metadata m = load_metadata(fixture());
  const auto t = read_parquet_columns(m.data_file(m.episode(29)), {{"timestamp", ColumnKind::Float}});
  const auto& ts = t.floats.at("timestamp").values;
  ASSERT_EQ(ts.size(), 221u);
  VideoDecoder sequential(video(29)), random(video(29));
  std::vector<std::vector<uint8_t>> frames;
  for (float s : ts) {
    const RgbFrame& f = sequential.frame_at(s);
    EXPECT_NEAR(f.seconds, s, 1e-4);
    frames.push_back(f.rgb);
  }
  for (size_t i : {200u, 3u, 150u, 0u, 220u, 100u, 101u})  // backwards and forwards jumps seek
    EXPECT_EQ(random.frame_at(ts[i]).rgb, frames[i]) << i;
  EXPECT_NE(frames[0], frames[220]);
}

TEST(Video, PixelsMatchTheFfmpegCommandLine) {
  const int k = 57;
  const std::string out = test::make_temp_dir("ffmpeg") + "/frame.rgb";
  const std::string cmd = "ffmpeg -v error -i " + video(30) + " -vf \"select=eq(n\\," + std::to_string(k) +
                          ")\" -vframes 1 -sws_flags bilinear -f rawvideo -pix_fmt rgb24 " + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const std::string reference = read_file(out);
  VideoDecoder d(video(30));
  const RgbFrame& f = d.frame_at(k / 30.0);
  ASSERT_EQ(reference.size(), f.rgb.size());
  int worst = 0;
  for (size_t i = 0; i < f.rgb.size(); ++i) worst = std::max(worst, std::abs(int(f.rgb[i]) - int(uint8_t(reference[i]))));
  EXPECT_LE(worst, 1);  // within 1/255
}

TEST(Video, TimestampWithoutAFrameWithinToleranceIsAnError) {
  VideoDecoder d(video(1));
  const std::string err = what_of([&] { d.frame_at(10.5 / 30.0); });
  EXPECT_NE(err.find("episode_000001.mp4"), std::string::npos) << err;
  EXPECT_NE(err.find("no frame within"), std::string::npos) << err;
}

TEST(LeRobotDataset, SamplesAsLeRobotBuildsThem) {
  LeRobotDataset ds(fixture(), {1, 29, 30}, 50);
  EXPECT_EQ(ds.size(), 393 + 221 + 277);
  ASSERT_EQ(ds.episodes().size(), 3u);
  EXPECT_EQ(ds.episodes()[1].index, 29);
  EXPECT_EQ(ds.episodes()[1].first_frame, 393);
  // The parquet rows of episode 29, to compare with.
  const Metadata m = load_metadata(fixture());
  const auto t = read_parquet_columns(m.data_file(m.episode(29)), {{"observation.state", ColumnKind::Float}, {"action", ColumnKind::Float}});
  const auto& state = t.floats.at("observation.state").values;
  const auto& action = t.floats.at("action").values;
  const int64_t last = 220;
  for (int64_t frame : {int64_t(0), int64_t(100), last - 10, last}) {
    const Sample s = ds.get(393 + frame);
    EXPECT_EQ(s.episode, 29);
    EXPECT_EQ(s.frame, frame);
    EXPECT_EQ(s.task, "Pick up the yellow bottle on the table.");
    for (int d = 0; d < 26; ++d) EXPECT_EQ(s.state[d].item<float>(), state[static_cast<size_t>(frame * 26 + d)]);
    for (int64_t k = 0; k < 50; ++k) {
      const int64_t source = std::min(frame + k, last);  // clamped to the episode's last frame
      EXPECT_EQ(s.action_is_pad[k].item<bool>(), frame + k > last);
      EXPECT_EQ(s.action[k][25].item<float>(), action[static_cast<size_t>(source * 26 + 25)]);
    }
    const at::Tensor& image = s.images.at("observation.images.cam_high");
    EXPECT_EQ(image.sizes(), (std::vector<int64_t>{3, 480, 640}));
    EXPECT_GE(image.min().item<float>(), 0.0f);
    EXPECT_LE(image.max().item<float>(), 1.0f);
  }
  // Normalisation statistics are this client's own: aggregated over its episodes only.
  const Stats own = m.stats("action", {1, 29, 30});
  EXPECT_NEAR(ds.action_stats().mean[3].item<double>(), own.mean[3], 1e-6);
  const Stats all = m.stats("action");
  EXPECT_GT(std::fabs(own.mean[3] - all.mean[3]), 1e-6);
}

TEST(LeRobotDataset, WorkerTrainsOnARealDatasetWithoutDecodingVideo) {
  FederationSpec spec = parse_spec(test::small_spec("/tmp/unused", 2, 1, {{"localSteps", "3"}, {"batchSize", "16"}}));
  spec.clients[0].dataset = {};
  spec.clients[0].dataset.path = fixture();
  spec.clients[0].dataset.episodes = {0, 2, 5};  // no video exists for these: a policy without vision needs none
  spec.policy.config["stateDim"] = 26;
  spec.policy.config["actionDim"] = 26;
  LocalTrainer trainer(spec, spec.clients[0]);
  trainer.open_dataset();
  const Metadata m = load_metadata(fixture());
  EXPECT_EQ(trainer.dataset().size(), m.episode(0).length + m.episode(2).length + m.episode(5).length);
  RoundTask task;
  task.local_steps = 3;
  task.seed = 1;
  const RoundResult r = trainer.train_round(to_parameter_set(trainer.policy().trainable_parameters()), task);
  EXPECT_TRUE(std::isfinite(r.report.loss));
  EXPECT_EQ(r.report.samples, 48u);
}

TEST(LeRobotBadInput, ErrorsNameTheFileAndEpisode) {
  const std::string dir = copy_of_fixture();
  // A truncated parquet.
  const std::string parquet = dir + "/data/chunk-000/episode_000029.parquet";
  fs::resize_file(parquet, fs::file_size(parquet) / 2);
  std::string err = what_of([&] { LeRobotDataset(dir, {29}, 50); });
  EXPECT_NE(err.find("episode_000029.parquet"), std::string::npos) << err;
  // A missing parquet.
  fs::remove(dir + "/data/chunk-000/episode_000030.parquet");
  err = what_of([&] { LeRobotDataset(dir, {30}, 50); });
  EXPECT_NE(err.find("episode_000030.parquet: missing (episode 30)"), std::string::npos) << err;
  // A corrupt mp4: the middle overwritten with garbage.
  {
    std::fstream f(video(1).replace(0, fixture().size(), dir), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0);
    const std::string garbage(4096, '\x5a');
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  LeRobotDataset one(dir, {1}, 50);
  err = what_of([&] { one.get(5); });
  EXPECT_NE(err.find("episode_000001.mp4"), std::string::npos) << err;
  // A missing video for an episode whose frames are asked for.
  LeRobotDataset two(dir, {2}, 50);
  err = what_of([&] { two.get(0); });
  EXPECT_NE(err.find("video missing (episode 2, observation.images.cam_high)"), std::string::npos) << err;
  // Totals that disagree with the episode table.
  std::string info = read_file(dir + "/meta/info.json");
  info.replace(info.find("\"total_episodes\": 100"), 21, "\"total_episodes\": 101");
  write_file_atomic(dir + "/meta/info.json", info);
  err = what_of([&] { load_metadata(dir); });
  EXPECT_NE(err.find("info.json: total_episodes is 101 but the episode table lists 100"), std::string::npos) << err;
  // Unknown episodes and missing metadata.
  EXPECT_NE(what_of([&] { LeRobotDataset(fixture(), {100}, 50); }).find("episode 100 does not exist"), std::string::npos);
  fs::remove(dir + "/meta/episodes.jsonl");
  info.replace(info.find("\"total_episodes\": 101"), 21, "\"total_episodes\": 100");
  write_file_atomic(dir + "/meta/info.json", info);
  EXPECT_NE(what_of([&] { load_metadata(dir); }).find("episodes.jsonl: missing"), std::string::npos);
}

TEST(LeRobotBadInput, NumbersOutOfRangeAreErrorsNotCasts) {
  // Found by fuzzing: a float where an integer belongs ("1e300") was cast, which is undefined.
  const std::string dir = copy_of_fixture();
  const std::string original = read_file(dir + "/meta/info.json");
  const auto with = [&](const std::string& from, const std::string& to) {
    std::string info = original;
    info.replace(info.find(from), from.size(), to);
    write_file_atomic(dir + "/meta/info.json", info);
    return what_of([&] { load_metadata(dir); });
  };
  std::string err = with("\"total_frames\": ", "\"total_frames\": 1e300, \"was\": ");
  EXPECT_NE(err.find("info.json"), std::string::npos) << err;
  EXPECT_NE(err.find("must be an integer, not 1e+300"), std::string::npos) << err;
  err = with("\"chunks_size\": 1000", "\"chunks_size\": 0");
  EXPECT_NE(err.find("info.json: chunks_size must be positive, not 0"), std::string::npos) << err;
  err = with("\"fps\": 30", "\"fps\": -30");
  EXPECT_NE(err.find("info.json: fps must be positive, not -30"), std::string::npos) << err;
  // A float that holds an integer exactly (what numpy's float64 becomes in json) is that integer.
  EXPECT_EQ(with("\"total_frames\": 35965", "\"total_frames\": 35965.0"), "");
  EXPECT_EQ(load_metadata(dir).total_frames, 35965);
}

namespace {
struct SynthCase {
  std::string version, codec;
  int cameras;
};
void PrintTo(const SynthCase& c, std::ostream* os) { *os << c.version << "/" << c.codec << "/" << c.cameras; }
}  // namespace

class Synth : public ::testing::TestWithParam<SynthCase> {};

TEST_P(Synth, WrittenDatasetReadsBackFrameForFrame) {
  const SynthCase& c = GetParam();
  lerobot::SynthOptions o;
  o.root = test::make_temp_dir("synth") + "/ds";
  o.version = c.version;
  o.codec = c.codec;
  o.cameras = c.cameras;
  o.trajectories = {"stack the cubes", 4, 44, 3};
  lerobot::write_synthetic_dataset(o);
  const Metadata m = load_metadata(o.root);
  EXPECT_EQ(m.version, c.version);
  EXPECT_EQ(m.total_frames, 176);
  for (const auto& cam : m.cameras())  // every frame made it into the files, the last one too
    for (const auto& e : m.episodes) {
      lerobot::VideoDecoder d(m.video_file(e, cam));
      EXPECT_EQ(d.count_frames(), c.version == "v3.0" ? 176 : 44) << m.video_file(e, cam);
      if (c.version == "v3.0") break;  // one file holds every episode
    }
  EXPECT_EQ(inspect_dataset(m)["problems"].size(), 0u) << inspect_dataset(m)["problems"].dump();
  if (c.cameras) {
    EXPECT_EQ(m.feature(m.cameras()[0]).codec, c.codec);
  }

  LeRobotDataset ds(o.root, {1, 3}, 10);
  const auto trajectories = generate_trajectories(o.trajectories, {1, 3});
  ASSERT_EQ(ds.size(), 88);
  std::vector<uint8_t> rendered;
  double worst_mean_error = 0;
  for (int64_t i = 0; i < ds.size(); ++i) {
    const Sample s = ds.get(i);
    const Trajectory& t = trajectories[static_cast<size_t>(i / 44)];
    const int64_t f = i % 44;
    for (int j = 0; j < 6; ++j) ASSERT_EQ(s.state[j].item<float>(), t.states[static_cast<size_t>(f * 6 + j)]) << i;
    EXPECT_EQ(s.task, "stack the cubes");
    EXPECT_EQ(s.action_is_pad.sum().item<int64_t>(), std::max<int64_t>(0, f + 10 - 44));
    for (int cam = 0; cam < c.cameras; ++cam) {
      const at::Tensor image = s.images.at(m.cameras()[static_cast<size_t>(cam)]);  // cameras are sorted: front, top, wrist
      const std::string name = m.cameras()[static_cast<size_t>(cam)];
      const int index = name.find("front") != std::string::npos ? 0 : name.find("wrist") != std::string::npos ? 1 : 2;
      lerobot::render_frame(&t.states[static_cast<size_t>(f * 6)], index, o.height, o.width, rendered);
      const at::Tensor expected =
          at::from_blob(rendered.data(), {o.height, o.width, 3}, at::kByte).permute({2, 0, 1}).to(at::kFloat) / 255.0;
      worst_mean_error = std::max(worst_mean_error, (image - expected).abs().mean().item<double>());
    }
  }
  // Lossy video: every decoded frame is the frame that was rendered for that row, not a neighbour.
  EXPECT_LT(worst_mean_error, 4.0 / 255) << worst_mean_error * 255;
  // Stats from the metadata equal the statistics of the rows.
  const Stats s = m.stats("action", {1, 3});
  double mean0 = 0;
  for (const auto& t : trajectories)
    for (int64_t f = 0; f < 44; ++f) mean0 += t.actions[static_cast<size_t>(f * 6)] / 88.0;
  EXPECT_NEAR(s.mean[0], mean0, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Versions, Synth,
                         ::testing::Values(SynthCase{"v2.1", "av1", 1}, SynthCase{"v3.0", "av1", 2}, SynthCase{"v3.0", "h264", 1},
                                           SynthCase{"v2.1", "h264", 3}, SynthCase{"v3.0", "av1", 0}));

// A dataset named by repoId is read from the Hugging Face Hub's cache layout, by branch or commit.
TEST(HubCache, RepoIdResolvesThroughRefsToTheSnapshot) {
  const std::string cache = test::make_temp_dir("hub-cache") + "/hub";
  const std::string commit = "0123456789abcdef0123456789abcdef01234567";
  const std::string repo = cache + "/datasets--owner--so100-set";
  lerobot::SynthOptions o;
  o.root = repo + "/snapshots/" + commit;
  o.version = "v3.0";
  o.cameras = 0;
  o.trajectories = {"pick", 3, 20, 1};
  lerobot::write_synthetic_dataset(o);
  std::filesystem::create_directories(repo + "/refs");
  std::ofstream(repo + "/refs/main") << commit;  // huggingface_hub writes the hash without a newline
  EXPECT_EQ(hub_snapshot_path("owner/so100-set", "main", cache), o.root);
  EXPECT_EQ(hub_snapshot_path("owner/so100-set", commit, cache), o.root);
  ::setenv("HF_HUB_CACHE", cache.c_str(), 1);
  DatasetSpec spec;
  spec.repo_id = "owner/so100-set";
  spec.revision = "main";
  EXPECT_EQ(open_dataset(spec, 10, false)->size(), 60);
  // Missing revision or dataset: the error names the folder and the command that fills it.
  try {
    hub_snapshot_path("owner/so100-set", "v2", cache);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(repo + "/refs/v2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("huggingface-cli download --repo-type dataset owner/so100-set --revision v2"), std::string::npos);
  }
  EXPECT_THROW(hub_snapshot_path("owner/other", "main", cache), std::runtime_error);
  ::unsetenv("HF_HUB_CACHE");
}
