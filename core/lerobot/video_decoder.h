#pragma once
// Frames of an mp4 (AV1 through dav1d, H.264, anything FFmpeg decodes) by timestamp, as
// LeRobot's video backends find them: the frame whose pts * time_base is nearest the requested
// time, which must lie within the tolerance. Requests moving forward continue decoding where the
// last one stopped; only a jump backwards or far ahead seeks (to the keyframe before it).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace zk0::lerobot {

struct RgbFrame {
  int width = 0, height = 0;
  double seconds = 0;         // pts * time_base
  std::vector<uint8_t> rgb;   // height * width * 3, row-major HWC
};

class VideoDecoder {
 public:
  // threads: the codec's own threads; 1 when many decoders already run in parallel.
  explicit VideoDecoder(const std::string& path, int threads = 1);
  ~VideoDecoder();
  VideoDecoder(const VideoDecoder&) = delete;
  VideoDecoder& operator=(const VideoDecoder&) = delete;

  // Throws std::runtime_error naming the file and the time when no frame is within tolerance.
  const RgbFrame& frame_at(double seconds, double tolerance = 1e-4);
  // Decodes every remaining frame from the start and counts them (for integrity checks).
  int64_t count_frames();

  std::string codec() const;
  int width() const;
  int height() const;

 private:
  struct State;
  bool decode_next(RgbFrame& out);  // false at the end of the stream
  void seek(double seconds);
  std::string path_;
  std::unique_ptr<State> state_;
};

}  // namespace zk0::lerobot
