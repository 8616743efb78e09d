// Parquet files from a dataset (its frames, v3.0's episode and task tables): Arrow decodes, zk0
// checks the columns' types and shapes; any problem is an error naming the file.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "core/lerobot/parquet_table.h"
#include "core/util/fs.h"

#include <fstream>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string file =
      (std::filesystem::temp_directory_path() / ("zk0-fuzz-" + std::to_string(getpid()) + ".parquet")).string();
  std::ofstream(file, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  using zk0::lerobot::ColumnKind;
  try {
    zk0::lerobot::parquet_column_names(file);
    zk0::lerobot::read_parquet_columns(file, {{"episode_index", ColumnKind::Int64},
                                              {"observation.state", ColumnKind::Float},
                                              {"tasks", ColumnKind::StringList}});
  } catch (const std::runtime_error&) {
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
