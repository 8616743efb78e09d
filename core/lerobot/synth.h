#pragma once
// `zk0 dataset synth`: a complete LeRobot dataset (v2.1 or v3.0) of SO-100-like trajectories with
// rendered camera videos, written with LeRobot's layout, names and encoder settings, for demos
// and tests that must not download anything.
#include <cstdint>
#include <string>
#include <vector>

#include "core/spec/federation_spec.h"

namespace zk0::lerobot {

struct SynthOptions {
  std::string root;
  std::string version = "v3.0";  // or v2.1
  SyntheticDatasetSpec trajectories;
  int fps = 30;
  int cameras = 1;  // observation.images.front, .wrist, .top
  int height = 96, width = 128;
  std::string codec = "av1";  // or h264
};

// The picture camera `camera` (0 front, 1 wrist, 2 top) takes of an arm in joint state `state`.
void render_frame(const float* state, int camera, int height, int width, std::vector<uint8_t>& rgb);

// Writes the dataset under options.root (which must not exist yet). Throws naming the file on
// any failure.
void write_synthetic_dataset(const SynthOptions& options);

}  // namespace zk0::lerobot
