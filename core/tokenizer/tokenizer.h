#pragma once
// Text tokenizer for SmolVLA prompts: Hugging Face `tokenizers` (Rust, core/tokenizer/rust) behind
// a small C interface, so ids match Python's tokenizer.json loading exactly. Torch-free.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace zk0 {

class Tokenizer {
 public:
  // Loads a Hugging Face tokenizer.json; throws std::runtime_error naming the file on failure.
  // transformers' PreTrainedTokenizerFast replaces add_prefix_space of a top-level ByteLevel
  // pre-tokenizer with tokenizer_config.json's (false when absent): pass that value to match it.
  // nullopt keeps tokenizer.json's, as the tokenizers library does. (SmolLM2/SmolVLM2 nest
  // ByteLevel in a Sequence, which transformers leaves alone, so either gives the same ids.)
  static Tokenizer from_file(const std::string& tokenizer_json,
                             std::optional<bool> add_prefix_space = std::nullopt);

  // Ids of `text` (UTF-8; throws std::runtime_error otherwise). Special tokens come only from the
  // tokenizer's post-processor and only when asked for.
  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens = false) const;
  // As transformers' `truncation=True`: at most `max_length` ids, special tokens included; keeps
  // the last text tokens when `truncate_left`, else the first.
  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens, int64_t max_length,
                              bool truncate_left) const;

  // Safe to call encode from several threads on one Tokenizer.
  Tokenizer(Tokenizer&&) noexcept = default;
  Tokenizer& operator=(Tokenizer&&) noexcept = default;
  ~Tokenizer() = default;

 private:
  struct Handle;
  struct Destroy {
    void operator()(Handle* h) const;
  };
  explicit Tokenizer(Handle* h) : handle_(h) {}
  std::unique_ptr<Handle, Destroy> handle_;
};

// Row-major [batch, length]: ids right-padded with pad_id; mask 1 for real tokens, 0 for padding.
struct TokenizedPrompts {
  int64_t batch = 0;
  int64_t length = 0;
  std::vector<int64_t> ids;
  std::vector<uint8_t> attention_mask;  // bytes, so it wraps directly as a bool tensor
};

// SmolVLA's prompt tokenization as LeRobot does it (a newline appended to each task unless it
// already ends with one, then `tokenizer(tasks, max_length=..., truncation=True,
// padding="max_length" or "longest", padding_side="right")`, special tokens added by the
// tokenizer's post-processor as transformers does by default).
TokenizedPrompts tokenize_prompts(const Tokenizer& tokenizer, const std::vector<std::string>& tasks,
                                  int64_t max_length, bool pad_to_max_length, bool truncate_left,
                                  int64_t pad_id);

}  // namespace zk0
