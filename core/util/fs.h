#pragma once
#include <string>
#include <string_view>

namespace zk0 {

// Writes through a temporary file in the same directory, fsync and rename, so that readers and
// a crash only ever see the old or the new content. Creates parent directories. Throws, leaving it
// alone, when `path` is something other than a regular file (a device such as /dev/null, a pipe).
void write_file_atomic(const std::string& path, std::string_view content);
std::string read_file(const std::string& path);  // throws std::runtime_error naming the path
void fsync_directory(const std::string& dir);

}  // namespace zk0
