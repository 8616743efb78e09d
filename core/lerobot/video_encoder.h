#pragma once
// Writes RGB frames to an mp4 the way LeRobot encodes its videos: AV1 through SVT-AV1 with
// yuv420p, a keyframe every 2 frames, crf 30, preset 12 (or H.264 through x264, as many
// community datasets are), frame i at pts i / fps.
#include <cstdint>
#include <memory>
#include <string>

namespace zk0::lerobot {

class VideoEncoder {
 public:
  VideoEncoder(const std::string& path, int width, int height, int fps, const std::string& codec);
  ~VideoEncoder();
  VideoEncoder(const VideoEncoder&) = delete;
  VideoEncoder& operator=(const VideoEncoder&) = delete;

  void add_frame(const uint8_t* rgb);  // height * width * 3 bytes, HWC
  void finish();                       // flushes the encoder and writes the index; required

 private:
  void drain(bool flush);
  struct State;
  std::string path_;
  std::unique_ptr<State> state_;
};

}  // namespace zk0::lerobot
