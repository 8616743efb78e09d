#include "core/lerobot/parquet_table.h"

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <parquet/arrow/reader.h>
#include <parquet/arrow/writer.h>
#include <arrow/util/key_value_metadata.h>

#include <cstdio>
#include <filesystem>
#include <parquet/exception.h>

#include <stdexcept>

namespace zk0::lerobot {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) { throw std::runtime_error(path + ": " + what); }

template <typename T>
T check(arrow::Result<T> result, const std::string& path, const char* what) {
  if (!result.ok()) fail(path, std::string(what) + ": " + result.status().ToString());
  return std::move(result).ValueUnsafe();
}

std::unique_ptr<parquet::arrow::FileReader> open(const std::string& path) {
  auto file = check(arrow::io::ReadableFile::Open(path), path, "cannot open");
  try {
    return check(parquet::arrow::OpenFile(file, arrow::default_memory_pool()), path, "not a readable parquet file");
  } catch (const parquet::ParquetException& e) {
    fail(path, std::string("not a readable parquet file: ") + e.what());
  }
}

// Appends the float or double values of `array` (rows offset..offset+n) as float32.
void append_numbers(const arrow::Array& array, int64_t offset, int64_t n, std::vector<float>& out, const std::string& where) {
  switch (array.type_id()) {
    case arrow::Type::FLOAT: {
      const auto& a = static_cast<const arrow::FloatArray&>(array);
      for (int64_t i = 0; i < n; ++i) out.push_back(a.Value(offset + i));
      return;
    }
    case arrow::Type::DOUBLE: {
      const auto& a = static_cast<const arrow::DoubleArray&>(array);
      for (int64_t i = 0; i < n; ++i) out.push_back(static_cast<float>(a.Value(offset + i)));
      return;
    }
    case arrow::Type::INT64: {  // statistics' counts
      const auto& a = static_cast<const arrow::Int64Array&>(array);
      for (int64_t i = 0; i < n; ++i) out.push_back(static_cast<float>(a.Value(offset + i)));
      return;
    }
    default: throw std::runtime_error(where + ": values must be float32 or float64, not " + array.type()->ToString());
  }
}

void read_float_column(const arrow::ChunkedArray& column, FloatColumn& out, const std::string& where) {
  out.values.reserve(static_cast<size_t>(column.length()));
  for (const auto& chunk : column.chunks()) {
    if (chunk->null_count() > 0) throw std::runtime_error(where + ": has null rows");
    const auto type = chunk->type_id();
    if (type == arrow::Type::FLOAT || type == arrow::Type::DOUBLE || type == arrow::Type::INT64) {
      out.width = 1;
      append_numbers(*chunk, 0, chunk->length(), out.values, where);
      continue;
    }
    // list, large_list and fixed_size_list all expose value_offset / value_length per row.
    const auto* list = dynamic_cast<const arrow::BaseListArray<arrow::ListType>*>(chunk.get());
    const auto* large = dynamic_cast<const arrow::BaseListArray<arrow::LargeListType>*>(chunk.get());
    const auto* fixed = dynamic_cast<const arrow::FixedSizeListArray*>(chunk.get());
    if (!list && !large && !fixed) throw std::runtime_error(where + ": unsupported column type " + chunk->type()->ToString());
    const arrow::Array& values = list ? *list->values() : large ? *large->values() : *fixed->values();
    for (int64_t row = 0; row < chunk->length(); ++row) {
      const int64_t begin = list ? list->value_offset(row) : large ? large->value_offset(row) : fixed->value_offset(row);
      const int64_t length = list ? list->value_length(row) : large ? large->value_length(row) : fixed->value_length();
      if (out.width == 0) out.width = length;
      if (length != out.width)
        throw std::runtime_error(where + ": row " + std::to_string(row) + " has " + std::to_string(length) +
                                 " values, earlier rows " + std::to_string(out.width));
      append_numbers(values, begin, length, out.values, where);
    }
  }
}

void read_int_column(const arrow::ChunkedArray& column, std::vector<int64_t>& out, const std::string& where) {
  for (const auto& chunk : column.chunks()) {
    if (chunk->null_count() > 0) throw std::runtime_error(where + ": has null rows");
    if (chunk->type_id() != arrow::Type::INT64) throw std::runtime_error(where + ": must be int64, not " + chunk->type()->ToString());
    const auto& a = static_cast<const arrow::Int64Array&>(*chunk);
    for (int64_t i = 0; i < a.length(); ++i) out.push_back(a.Value(i));
  }
}

void read_string_column(const arrow::ChunkedArray& column, std::vector<std::string>& out, const std::string& where) {
  for (const auto& chunk : column.chunks()) {
    if (chunk->type_id() == arrow::Type::STRING) {
      const auto& a = static_cast<const arrow::StringArray&>(*chunk);
      for (int64_t i = 0; i < a.length(); ++i) out.push_back(a.GetString(i));
    } else if (chunk->type_id() == arrow::Type::LARGE_STRING) {
      const auto& a = static_cast<const arrow::LargeStringArray&>(*chunk);
      for (int64_t i = 0; i < a.length(); ++i) out.push_back(a.GetString(i));
    } else {
      throw std::runtime_error(where + ": must be a string column, not " + chunk->type()->ToString());
    }
  }
}

void read_string_list_column(const arrow::ChunkedArray& column, std::vector<std::vector<std::string>>& out,
                             const std::string& where) {
  for (const auto& chunk : column.chunks()) {
    const auto* list = dynamic_cast<const arrow::ListArray*>(chunk.get());
    if (!list) throw std::runtime_error(where + ": must be a list of strings, not " + chunk->type()->ToString());
    std::vector<std::string> all;
    read_string_column(arrow::ChunkedArray(list->values()), all, where);
    for (int64_t row = 0; row < list->length(); ++row)
      out.emplace_back(all.begin() + list->value_offset(row), all.begin() + list->value_offset(row) + list->value_length(row));
  }
}

}  // namespace

std::vector<std::string> parquet_column_names(const std::string& path) {
  auto reader = open(path);
  std::shared_ptr<arrow::Schema> schema;
  const auto status = reader->GetSchema(&schema);
  if (!status.ok()) fail(path, "cannot read the schema: " + status.ToString());
  return schema->field_names();
}

ParquetColumns read_parquet_columns(const std::string& path, const std::map<std::string, ColumnKind>& columns) {
  auto reader = open(path);
  std::shared_ptr<arrow::Schema> schema;
  if (!reader->GetSchema(&schema).ok()) fail(path, "cannot read the schema");
  ParquetColumns out;
  out.rows = -1;
  for (const auto& [name, kind] : columns) {
    // GetFieldIndex is -1 for a missing and for a repeated name: either way the column is not one thing.
    const int field = schema->GetFieldIndex(name);
    if (field < 0) fail(path, "column '" + name + "' is missing or appears more than once");
    std::shared_ptr<arrow::ChunkedArray> column;
    try {
      // ReadColumn takes a top-level field index; ReadTable's indices are leaf columns, which differ once a
      // schema nests.
      const auto status = reader->ReadColumn(field, &column);
      if (!status.ok()) fail(path, "cannot read column '" + name + "': " + status.ToString());
    } catch (const parquet::ParquetException& e) {
      fail(path, "cannot read column '" + name + "': " + e.what());
    }
    if (!column) fail(path, "cannot read column '" + name + "'");
    if (out.rows >= 0 && column->length() != out.rows)
      fail(path, "column '" + name + "' has " + std::to_string(column->length()) + " rows, others " +
                     std::to_string(out.rows));
    out.rows = column->length();
    const std::string where = path + ": column '" + name + "'";
    switch (kind) {
      case ColumnKind::Int64: read_int_column(*column, out.ints[name], where); break;
      case ColumnKind::Float: read_float_column(*column, out.floats[name], where); break;
      case ColumnKind::String: read_string_column(*column, out.strings[name], where); break;
      case ColumnKind::StringList: read_string_list_column(*column, out.string_lists[name], where); break;
    }
  }
  if (out.rows < 0) out.rows = reader->parquet_reader()->metadata()->num_rows();
  return out;
}

namespace {

std::shared_ptr<arrow::Array> build_column(const WriteColumn& c, int64_t rows, const std::string& where) {
  auto ok = [&](const arrow::Status& st) {
    if (!st.ok()) throw std::runtime_error(where + ": " + st.ToString());
  };
  std::shared_ptr<arrow::Array> out;
  switch (c.kind) {
    case ColumnKind::Int64:
    case ColumnKind::Float: {
      const bool is_int = c.kind == ColumnKind::Int64;
      const size_t expected = static_cast<size_t>(rows * c.width);
      if ((is_int ? c.ints.size() : c.numbers.size()) != expected)
        throw std::runtime_error(where + ": holds the wrong number of values");
      std::shared_ptr<arrow::ArrayBuilder> values;
      if (is_int) values = std::make_shared<arrow::Int64Builder>();
      else if (c.double_precision) values = std::make_shared<arrow::DoubleBuilder>();
      else values = std::make_shared<arrow::FloatBuilder>();
      auto append = [&](size_t i) {
        if (is_int) return static_cast<arrow::Int64Builder&>(*values).Append(c.ints[i]);
        if (c.double_precision) return static_cast<arrow::DoubleBuilder&>(*values).Append(c.numbers[i]);
        return static_cast<arrow::FloatBuilder&>(*values).Append(static_cast<float>(c.numbers[i]));
      };
      if (c.width == 1) {
        for (size_t i = 0; i < expected; ++i) ok(append(i));
        ok(values->Finish(&out));
        break;
      }
      arrow::FixedSizeListBuilder list(arrow::default_memory_pool(), values, static_cast<int32_t>(c.width));
      for (int64_t r = 0; r < rows; ++r) {
        ok(list.Append());
        for (int64_t k = 0; k < c.width; ++k) ok(append(static_cast<size_t>(r * c.width + k)));
      }
      ok(list.Finish(&out));
      break;
    }
    case ColumnKind::String: {
      arrow::StringBuilder b;
      for (const auto& v : c.strings) ok(b.Append(v));
      ok(b.Finish(&out));
      break;
    }
    case ColumnKind::StringList: {
      auto values = std::make_shared<arrow::StringBuilder>();
      arrow::ListBuilder list(arrow::default_memory_pool(), values);
      for (const auto& row : c.string_lists) {
        ok(list.Append());
        for (const auto& v : row) ok(values->Append(v));
      }
      ok(list.Finish(&out));
      break;
    }
  }
  if (out->length() != rows) throw std::runtime_error(where + ": has " + std::to_string(out->length()) + " rows, not " + std::to_string(rows));
  return out;
}

}  // namespace

void write_parquet(const std::string& path, const std::vector<WriteColumn>& columns, int64_t rows,
                   const std::vector<int64_t>& row_groups, const std::map<std::string, std::string>& metadata) {
  std::vector<std::shared_ptr<arrow::Field>> fields;
  std::vector<std::shared_ptr<arrow::Array>> arrays;
  for (const auto& c : columns) {
    arrays.push_back(build_column(c, rows, path + ": column '" + c.name + "'"));
    fields.push_back(arrow::field(c.name, arrays.back()->type(), false));
  }
  std::vector<std::string> keys, values;
  for (const auto& [k, v] : metadata) {
    keys.push_back(k);
    values.push_back(v);
  }
  auto schema = arrow::schema(fields)->WithMetadata(std::make_shared<arrow::KeyValueMetadata>(keys, values));
  auto table = arrow::Table::Make(schema, arrays, rows);
  const std::string tmp = path + ".tmp";
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  auto out = check(arrow::io::FileOutputStream::Open(tmp), path, "cannot create");
  auto props = parquet::WriterProperties::Builder().compression(parquet::Compression::SNAPPY)->build();
  auto arrow_props = parquet::ArrowWriterProperties::Builder().store_schema()->build();
  auto writer = check(parquet::arrow::FileWriter::Open(*schema, arrow::default_memory_pool(), out, props, arrow_props), path,
                      "cannot start writing");
  int64_t offset = 0;
  for (int64_t n : row_groups) {
    const auto st = writer->WriteTable(*table->Slice(offset, n), n);
    if (!st.ok()) fail(path, "cannot write: " + st.ToString());
    offset += n;
  }
  if (offset != rows) fail(path, "row groups do not add up to the rows");
  if (!writer->Close().ok() || !out->Close().ok()) fail(path, "cannot finish writing");
  std::filesystem::rename(tmp, path);
}

}  // namespace zk0::lerobot
