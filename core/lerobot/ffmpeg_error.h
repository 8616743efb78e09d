#pragma once
// FFmpeg's error codes as text, for messages that name the file and what failed.
extern "C" {
#include <libavutil/error.h>
}

#include <string>

namespace zk0::lerobot {

inline std::string av_error(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(code, buf, sizeof buf);
  return buf;
}

}  // namespace zk0::lerobot
