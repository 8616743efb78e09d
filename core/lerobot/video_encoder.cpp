#include "core/lerobot/video_encoder.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include "core/lerobot/ffmpeg_error.h"

#include <cstdlib>
#include <stdexcept>

namespace zk0::lerobot {

struct VideoEncoder::State {
  AVFormatContext* format = nullptr;
  AVCodecContext* codec = nullptr;
  AVStream* stream = nullptr;
  SwsContext* sws = nullptr;
  AVFrame* frame = nullptr;
  AVPacket* packet = nullptr;
  int64_t next_pts = 0;
  bool finished = false;

  ~State() {
    sws_freeContext(sws);
    av_frame_free(&frame);
    av_packet_free(&packet);
    avcodec_free_context(&codec);
    if (format) {
      if (!(format->oformat->flags & AVFMT_NOFILE)) avio_closep(&format->pb);
      avformat_free_context(format);
    }
  }
};

VideoEncoder::VideoEncoder(const std::string& path, int width, int height, int fps, const std::string& codec)
    : path_(path), state_(std::make_unique<State>()) {
  setenv("SVT_LOG", "1", 0);  // SVT-AV1 prints its configuration banner unless told errors only
  State& s = *state_;
  auto fail = [&](const std::string& what, int code) {
    throw std::runtime_error(path + ": " + what + (code ? " (" + av_error(code) + ")" : ""));
  };
  const char* encoder_name = codec == "av1" ? "libsvtav1" : codec == "h264" ? "libx264" : nullptr;
  if (!encoder_name) fail("codec must be av1 or h264, not '" + codec + "'", 0);
  const AVCodec* encoder = avcodec_find_encoder_by_name(encoder_name);
  if (!encoder) fail(std::string("this FFmpeg has no ") + encoder_name + " encoder", 0);
  int rc = avformat_alloc_output_context2(&s.format, nullptr, "mp4", path.c_str());
  if (rc < 0) fail("cannot create mp4", rc);
  s.stream = avformat_new_stream(s.format, nullptr);
  s.codec = avcodec_alloc_context3(encoder);
  s.codec->width = width;
  s.codec->height = height;
  s.codec->pix_fmt = AV_PIX_FMT_YUV420P;
  s.codec->time_base = AVRational{1, fps};
  s.codec->framerate = AVRational{fps, 1};
  s.codec->gop_size = 2;
  s.codec->thread_count = 1;
  if (s.format->oformat->flags & AVFMT_GLOBALHEADER) s.codec->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  if (codec == "av1") {
    av_opt_set_int(s.codec->priv_data, "crf", 30, 0);
    av_opt_set_int(s.codec->priv_data, "preset", 12, 0);
  } else {
    av_opt_set(s.codec->priv_data, "preset", "veryfast", 0);
    av_opt_set_int(s.codec->priv_data, "crf", 23, 0);
  }
  if ((rc = avcodec_open2(s.codec, encoder, nullptr)) < 0) fail("cannot open encoder", rc);
  if ((rc = avcodec_parameters_from_context(s.stream->codecpar, s.codec)) < 0) fail("bad codec parameters", rc);
  s.stream->time_base = s.codec->time_base;
  if ((rc = avio_open(&s.format->pb, path.c_str(), AVIO_FLAG_WRITE)) < 0) fail("cannot create file", rc);
  if ((rc = avformat_write_header(s.format, nullptr)) < 0) fail("cannot write header", rc);
  s.frame = av_frame_alloc();
  s.frame->format = AV_PIX_FMT_YUV420P;
  s.frame->width = width;
  s.frame->height = height;
  if ((rc = av_frame_get_buffer(s.frame, 0)) < 0) fail("cannot allocate frame", rc);
  s.packet = av_packet_alloc();
  s.sws = sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, AV_PIX_FMT_YUV420P, SWS_BILINEAR, nullptr, nullptr, nullptr);
}

VideoEncoder::~VideoEncoder() = default;

void VideoEncoder::drain(bool flush) {
  State& s = *state_;
  if (flush) avcodec_send_frame(s.codec, nullptr);
  for (;;) {
    const int rc = avcodec_receive_packet(s.codec, s.packet);
    if (rc == AVERROR_EOF) return;
    // While flushing, SVT-AV1 may answer EAGAIN before its last packet is out: keep asking
    // until it says EOF, or the final frame is lost.
    if (rc == AVERROR(EAGAIN) && !flush) return;
    if (rc == AVERROR(EAGAIN)) continue;
    if (rc < 0) throw std::runtime_error(path_ + ": encoding failed (" + av_error(rc) + ")");
    // Every frame lasts 1/fps. SVT-AV1 leaves durations at 0, and the mp4 muxer's edit list would
    // then cut the last frame off.
    if (s.packet->duration == 0) s.packet->duration = 1;
    av_packet_rescale_ts(s.packet, s.codec->time_base, s.stream->time_base);
    s.packet->stream_index = s.stream->index;
    const int w = av_interleaved_write_frame(s.format, s.packet);
    if (w < 0) throw std::runtime_error(path_ + ": cannot write packet (" + av_error(w) + ")");
  }
}

void VideoEncoder::add_frame(const uint8_t* rgb) {
  State& s = *state_;
  int rc = av_frame_make_writable(s.frame);
  if (rc < 0) throw std::runtime_error(path_ + ": frame not writable (" + av_error(rc) + ")");
  const uint8_t* src[1] = {rgb};
  const int stride[1] = {s.codec->width * 3};
  sws_scale(s.sws, src, stride, 0, s.codec->height, s.frame->data, s.frame->linesize);
  s.frame->pts = s.next_pts++;
  if ((rc = avcodec_send_frame(s.codec, s.frame)) < 0) throw std::runtime_error(path_ + ": cannot encode frame (" + av_error(rc) + ")");
  drain(false);
}

void VideoEncoder::finish() {
  State& s = *state_;
  if (s.finished) return;
  drain(true);
  const int rc = av_write_trailer(s.format);
  if (rc < 0) throw std::runtime_error(path_ + ": cannot write trailer (" + av_error(rc) + ")");
  s.finished = true;
}

}  // namespace zk0::lerobot
