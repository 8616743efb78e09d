#pragma once
// Columns of a parquet file as plain vectors, read with Apache Arrow C++. Vector features may be
// stored as list, large_list or fixed_size_list of float32 or float64 (LeRobot's writers and
// pandas produce all of these); they come back as float32 rows of a fixed width.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace zk0::lerobot {

struct FloatColumn {
  int64_t width = 0;          // values per row (1 for scalars)
  std::vector<float> values;  // rows * width, row-major
};

struct ParquetColumns {
  int64_t rows = 0;
  std::map<std::string, std::vector<int64_t>> ints;
  std::map<std::string, FloatColumn> floats;
  std::map<std::string, std::vector<std::string>> strings;
  std::map<std::string, std::vector<std::vector<std::string>>> string_lists;
};

enum class ColumnKind { Int64, Float, String, StringList };

// Reads the named columns (all of them must exist, with a kind they can be read as).
// Throws std::runtime_error naming the file and column on any problem.
ParquetColumns read_parquet_columns(const std::string& path, const std::map<std::string, ColumnKind>& columns);

// A column to write. Numeric columns of width > 1 become fixed_size_list<...>[width], which is what
// Hugging Face datasets writes for Sequence(length=N); width 1 is a plain value.
struct WriteColumn {
  WriteColumn(std::string column_name, ColumnKind column_kind, int64_t values_per_row = 1)
      : name(std::move(column_name)), kind(column_kind), width(values_per_row) {}
  std::string name;
  ColumnKind kind = ColumnKind::Float;
  int64_t width = 1;
  bool double_precision = false;  // float64 instead of float32
  std::vector<int64_t> ints;
  std::vector<double> numbers;
  std::vector<std::string> strings;
  std::vector<std::vector<std::string>> string_lists;
};

// Writes `rows` rows split into row groups of the given sizes, Snappy-compressed, with the Arrow
// schema stored and `metadata` as key-value metadata ("huggingface", "pandas", ...). Written to a
// temporary file and renamed, so readers never see half a file.
void write_parquet(const std::string& path, const std::vector<WriteColumn>& columns, int64_t rows,
                   const std::vector<int64_t>& row_groups, const std::map<std::string, std::string>& metadata = {});

// The names of every column in the file's schema.
std::vector<std::string> parquet_column_names(const std::string& path);

}  // namespace zk0::lerobot
