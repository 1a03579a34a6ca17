// tessera/tokenizer/post_processors.hpp: special tokens around a single sequence (HF tokenizers
// `processors`): TemplateProcessing, BertProcessing ([CLS] A [SEP]), RobertaProcessing
// (<s> A </s>), ByteLevel (ids unchanged), Sequence. With add_special_tokens = false the ids are
// left as they are.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <tessera/tokenizer/common.hpp>

namespace tessera {
inline namespace v0 {
namespace tok {

/// Ids before and after the sequence (every supported processor reduces to this for one input).
class template_post_processor final : public post_processor {
 public:
  template_post_processor(std::vector<std::int32_t> prefix, std::vector<std::int32_t> suffix)
      : prefix_(std::move(prefix)), suffix_(std::move(suffix)) {}
  void process(std::vector<std::int32_t>& ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    ids.insert(ids.begin(), prefix_.begin(), prefix_.end());
    ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  }
  const std::vector<std::int32_t>& prefix() const noexcept { return prefix_; }
  const std::vector<std::int32_t>& suffix() const noexcept { return suffix_; }

 private:
  std::vector<std::int32_t> prefix_, suffix_;
};

class sequence_post_processor final : public post_processor {
 public:
  explicit sequence_post_processor(std::vector<std::unique_ptr<post_processor>> p) : items_(std::move(p)) {}
  void process(std::vector<std::int32_t>& ids, bool add_special_tokens) const override {
    for (const auto& p : items_) p->process(ids, add_special_tokens);
  }

 private:
  std::vector<std::unique_ptr<post_processor>> items_;
};

/// A post-processor from its tokenizer.json object; nullptr for null or a no-op (ByteLevel).
inline std::unique_ptr<post_processor> post_processor_from_json(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = detail::type_of(j, "post_processor");
  if (type == "ByteLevel") return nullptr;
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    // "sep": [token, id], "cls": [token, id]
    return std::make_unique<template_post_processor>(
        std::vector<std::int32_t>{detail::id_of(j.at("cls").at(1), "tokenizer.json: post_processor cls id")},
        std::vector<std::int32_t>{detail::id_of(j.at("sep").at(1), "tokenizer.json: post_processor sep id")});
  }
  if (type == "TemplateProcessing") {
    std::vector<std::int32_t> prefix, suffix;
    bool seen_a = false;
    for (const auto& item : j.at("single")) {
      if (item.contains("Sequence")) {
        if (item["Sequence"].at("id").get<std::string>() != "A")
          throw config_error("tokenizer.json: TemplateProcessing single template uses sequence " + item["Sequence"]["id"].dump());
        seen_a = true;
      } else if (item.contains("SpecialToken")) {
        const std::string name = item["SpecialToken"].at("id").get<std::string>();
        const auto& st = j.at("special_tokens");
        if (!st.contains(name))
          throw config_error("tokenizer.json: TemplateProcessing special token \"" + name + "\" is not defined");
        for (const auto& id : st[name].at("ids"))
          (seen_a ? suffix : prefix).push_back(detail::id_of(id, "tokenizer.json: TemplateProcessing special token id"));
      } else {
        throw config_error("tokenizer.json: TemplateProcessing item " + item.dump());
      }
    }
    return std::make_unique<template_post_processor>(std::move(prefix), std::move(suffix));
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<post_processor>> items;
    for (const auto& p : j.at("processors"))
      if (auto q = post_processor_from_json(p)) items.push_back(std::move(q));
    return std::make_unique<sequence_post_processor>(std::move(items));
  }
  detail::unsupported("post_processor", type);
}

}  // namespace tok
}  // namespace v0
}  // namespace tessera
