#include "core/lerobot/video_decoder.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}

#include "core/lerobot/ffmpeg_error.h"

#include <cmath>
#include <mutex>
#include <stdexcept>

namespace zk0::lerobot {

struct VideoDecoder::State {
  AVFormatContext* format = nullptr;
  AVCodecContext* codec = nullptr;
  SwsContext* sws = nullptr;
  AVPacket* packet = nullptr;
  AVFrame* frame = nullptr;
  int stream = -1;
  double time_base = 0;
  bool draining = false, finished = false;
  RgbFrame previous, current;  // the last two frames decoded
  bool has_previous = false, has_current = false;

  ~State() {
    sws_freeContext(sws);
    av_frame_free(&frame);
    av_packet_free(&packet);
    avcodec_free_context(&codec);
    avformat_close_input(&format);
  }
};

VideoDecoder::VideoDecoder(const std::string& path, int threads) : path_(path), state_(std::make_unique<State>()) {
  static std::once_flag quiet;
  std::call_once(quiet, [] { av_log_set_level(AV_LOG_ERROR); });  // our errors carry the file name instead
  State& s = *state_;
  auto fail = [&](const std::string& what, int code) {
    throw std::runtime_error(path + ": " + what + (code ? " (" + av_error(code) + ")" : ""));
  };
  int rc = avformat_open_input(&s.format, path.c_str(), nullptr, nullptr);
  if (rc < 0) fail("cannot open video", rc);
  if ((rc = avformat_find_stream_info(s.format, nullptr)) < 0) fail("cannot read stream info", rc);
  s.stream = av_find_best_stream(s.format, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (s.stream < 0) fail("no video stream", 0);
  const AVStream* stream = s.format->streams[s.stream];
  s.time_base = av_q2d(stream->time_base);
  const AVCodec* decoder = nullptr;
  if (stream->codecpar->codec_id == AV_CODEC_ID_AV1) decoder = avcodec_find_decoder_by_name("libdav1d");
  if (!decoder) decoder = avcodec_find_decoder(stream->codecpar->codec_id);
  if (!decoder) fail(std::string("no decoder for codec ") + avcodec_get_name(stream->codecpar->codec_id), 0);
  s.codec = avcodec_alloc_context3(decoder);
  if ((rc = avcodec_parameters_to_context(s.codec, stream->codecpar)) < 0) fail("bad codec parameters", rc);
  s.codec->thread_count = threads;
  if ((rc = avcodec_open2(s.codec, decoder, nullptr)) < 0) fail("cannot open decoder", rc);
  s.packet = av_packet_alloc();
  s.frame = av_frame_alloc();
}

VideoDecoder::~VideoDecoder() = default;

std::string VideoDecoder::codec() const { return avcodec_get_name(state_->codec->codec_id); }
int VideoDecoder::width() const { return state_->codec->width; }
int VideoDecoder::height() const { return state_->codec->height; }

bool VideoDecoder::decode_next(RgbFrame& out) {
  State& s = *state_;
  for (;;) {
    int rc = avcodec_receive_frame(s.codec, s.frame);
    if (rc == 0) {
      const int64_t pts = s.frame->best_effort_timestamp != AV_NOPTS_VALUE ? s.frame->best_effort_timestamp : s.frame->pts;
      out.seconds = static_cast<double>(pts) * s.time_base;
      out.width = s.frame->width;
      out.height = s.frame->height;
      out.rgb.resize(static_cast<size_t>(out.width) * out.height * 3);
      s.sws = sws_getCachedContext(s.sws, s.frame->width, s.frame->height, static_cast<AVPixelFormat>(s.frame->format),
                                   s.frame->width, s.frame->height, AV_PIX_FMT_RGB24, SWS_BILINEAR, nullptr, nullptr, nullptr);
      uint8_t* dst[4] = {out.rgb.data(), nullptr, nullptr, nullptr};
      int dst_stride[4] = {out.width * 3, 0, 0, 0};
      sws_scale(s.sws, s.frame->data, s.frame->linesize, 0, s.frame->height, dst, dst_stride);
      av_frame_unref(s.frame);
      return true;
    }
    if (rc == AVERROR_EOF) {
      s.finished = true;
      return false;
    }
    if (rc != AVERROR(EAGAIN)) throw std::runtime_error(path_ + ": decoding failed (" + av_error(rc) + ")");
    if (s.draining) return false;
    // Feed the next packet of our stream, or start draining at the end of the file.
    for (;;) {
      rc = av_read_frame(s.format, s.packet);
      if (rc < 0) {
        if (rc != AVERROR_EOF) throw std::runtime_error(path_ + ": cannot read packet (" + av_error(rc) + ")");
        s.draining = true;
        avcodec_send_packet(s.codec, nullptr);
        break;
      }
      if (s.packet->stream_index != s.stream) {
        av_packet_unref(s.packet);
        continue;
      }
      rc = avcodec_send_packet(s.codec, s.packet);
      av_packet_unref(s.packet);
      if (rc < 0 && rc != AVERROR(EAGAIN)) throw std::runtime_error(path_ + ": corrupt packet (" + av_error(rc) + ")");
      break;
    }
  }
}

void VideoDecoder::seek(double seconds) {
  State& s = *state_;
  const int64_t target = static_cast<int64_t>(std::floor(seconds / s.time_base));
  const int rc = av_seek_frame(s.format, s.stream, target, AVSEEK_FLAG_BACKWARD);
  if (rc < 0) throw std::runtime_error(path_ + ": cannot seek to " + std::to_string(seconds) + " s (" + av_error(rc) + ")");
  avcodec_flush_buffers(s.codec);
  s.draining = s.finished = false;
  s.has_previous = s.has_current = false;
}

const RgbFrame& VideoDecoder::frame_at(double seconds, double tolerance) {
  State& s = *state_;
  constexpr double kSeekAhead = 1.0;  // beyond this, seeking beats decoding every frame in between
  if (s.has_current && std::fabs(s.current.seconds - seconds) <= tolerance) return s.current;
  if (s.has_previous && std::fabs(s.previous.seconds - seconds) <= tolerance) return s.previous;
  if (!s.has_current || seconds < s.current.seconds - tolerance || seconds > s.current.seconds + kSeekAhead || s.finished)
    seek(seconds);
  while (!s.has_current || s.current.seconds < seconds - tolerance) {
    RgbFrame next;
    if (!decode_next(next)) break;
    if (s.has_current) {
      std::swap(s.previous, s.current);
      s.has_previous = true;
    }
    s.current = std::move(next);
    s.has_current = true;
  }
  // The nearest of the frames on either side of the requested time.
  const RgbFrame* best = nullptr;
  for (const RgbFrame* f : {s.has_previous ? &s.previous : nullptr, s.has_current ? &s.current : nullptr})
    if (f && (!best || std::fabs(f->seconds - seconds) < std::fabs(best->seconds - seconds))) best = f;
  if (!best || std::fabs(best->seconds - seconds) > tolerance) {
    char buf[160];
    std::snprintf(buf, sizeof buf, ": no frame within %g s of t=%.6f s (nearest at %.6f s)", tolerance, seconds,
                  best ? best->seconds : NAN);
    throw std::runtime_error(path_ + buf);
  }
  return *best;
}

int64_t VideoDecoder::count_frames() {
  seek(0);
  int64_t n = 0;
  RgbFrame f;
  while (decode_next(f)) ++n;
  return n;
}

}  // namespace zk0::lerobot
