#include "core/tokenizer/tokenizer.h"

#include <algorithm>
#include <cstddef>
#include <stdexcept>

// The C interface of core/tokenizer/rust/src/lib.rs.
extern "C" {
struct Zk0Tokenizer;
Zk0Tokenizer* zk0_tok_from_file(const char* path, int add_prefix_space, char** error);
int zk0_tok_encode(const Zk0Tokenizer* tok, const char* text, size_t len, int add_special_tokens,
                   int64_t max_length, int truncate_left, uint32_t** ids, size_t* n_ids, char** error);
void zk0_tok_free_ids(uint32_t* ids, size_t n_ids);
void zk0_tok_free_string(char* s);
void zk0_tok_destroy(Zk0Tokenizer* tok);
}

namespace zk0 {

namespace {

// Takes ownership of a Rust error string.
std::string take_error(char* error) {
  std::string msg = error ? error : "unknown error";
  zk0_tok_free_string(error);
  return msg;
}

}  // namespace

void Tokenizer::Destroy::operator()(Handle* h) const { zk0_tok_destroy(reinterpret_cast<Zk0Tokenizer*>(h)); }

Tokenizer Tokenizer::from_file(const std::string& tokenizer_json, std::optional<bool> add_prefix_space) {
  char* error = nullptr;
  Zk0Tokenizer* tok =
      zk0_tok_from_file(tokenizer_json.c_str(), add_prefix_space ? (*add_prefix_space ? 1 : 0) : -1, &error);
  if (!tok) throw std::runtime_error("cannot load tokenizer " + tokenizer_json + ": " + take_error(error));
  return Tokenizer(reinterpret_cast<Handle*>(tok));
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  return encode(text, add_special_tokens, -1, false);
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, bool add_special_tokens, int64_t max_length,
                                       bool truncate_left) const {
  if (!handle_) throw std::runtime_error("tokenizer: use of a moved-from Tokenizer");
  uint32_t* ids = nullptr;
  size_t n = 0;
  char* error = nullptr;
  if (zk0_tok_encode(reinterpret_cast<const Zk0Tokenizer*>(handle_.get()), text.data(), text.size(),
                     add_special_tokens ? 1 : 0, max_length, truncate_left ? 1 : 0, &ids, &n, &error) != 0)
    throw std::runtime_error("tokenizer: cannot encode text: " + take_error(error));
  std::vector<int64_t> out(ids, ids + n);
  zk0_tok_free_ids(ids, n);
  return out;
}

TokenizedPrompts tokenize_prompts(const Tokenizer& tokenizer, const std::vector<std::string>& tasks,
                                  int64_t max_length, bool pad_to_max_length, bool truncate_left,
                                  int64_t pad_id) {
  if (max_length < 0) throw std::invalid_argument("tokenize_prompts: max_length must be >= 0");
  std::vector<std::vector<int64_t>> rows;
  rows.reserve(tasks.size());
  int64_t longest = 0;
  for (const std::string& task : tasks) {
    // SmolVLA's newline step: "\n" appended unless the task already ends with one.
    const bool ends_with_newline = !task.empty() && task.back() == '\n';
    // transformers adds special tokens by default, and LeRobot does not turn that off.
    rows.push_back(tokenizer.encode(ends_with_newline ? task : task + "\n", true, max_length, truncate_left));
    longest = std::max<int64_t>(longest, static_cast<int64_t>(rows.back().size()));
  }
  TokenizedPrompts out;
  out.batch = static_cast<int64_t>(tasks.size());
  out.length = pad_to_max_length ? max_length : longest;
  out.ids.assign(static_cast<size_t>(out.batch * out.length), pad_id);
  out.attention_mask.assign(out.ids.size(), 0);
  for (size_t b = 0; b < rows.size(); ++b) {
    const size_t row = b * static_cast<size_t>(out.length);
    std::copy(rows[b].begin(), rows[b].end(), out.ids.begin() + static_cast<std::ptrdiff_t>(row));
    std::fill_n(out.attention_mask.begin() + static_cast<std::ptrdiff_t>(row), rows[b].size(), uint8_t{1});
  }
  return out;
}

}  // namespace zk0
