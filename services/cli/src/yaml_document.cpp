// `skiff create -f group.yaml`: the YAML that `az container create -f` takes, turned into the JSON
// the API reads. yaml-cpp parses; plain scalars take YAML 1.2's core types (null, booleans,
// numbers), quoted ones stay strings.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <regex>

#include "skiff/cli/cli.h"

namespace skiff::cli {
namespace {

namespace pb = google::protobuf;

void PlainScalar(const std::string& text, pb::Value* out) {
  static const std::regex kNull("^(~|null|Null|NULL|)$");
  static const std::regex kTrue("^(true|True|TRUE)$");
  static const std::regex kFalse("^(false|False|FALSE)$");
  static const std::regex kNumber(R"(^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$)");
  if (std::regex_match(text, kNull)) {
    out->set_null_value(pb::NULL_VALUE);
  } else if (std::regex_match(text, kTrue)) {
    out->set_bool_value(true);
  } else if (std::regex_match(text, kFalse)) {
    out->set_bool_value(false);
  } else if (std::regex_match(text, kNumber) && std::isfinite(std::stod(text))) {
    out->set_number_value(std::stod(text));
  } else {
    out->set_string_value(text);
  }
}

void Convert(const YAML::Node& node, pb::Value* out, int depth) {
  if (depth > 64) throw std::runtime_error("nested more than 64 levels");
  switch (node.Type()) {
    case YAML::NodeType::Map:
      for (const auto& item : node) {
        Convert(item.second, &(*out->mutable_struct_value()->mutable_fields())[item.first.as<std::string>()], depth + 1);
      }
      if (!out->has_struct_value()) out->mutable_struct_value();
      break;
    case YAML::NodeType::Sequence:
      out->mutable_list_value();
      for (const auto& item : node) Convert(item, out->mutable_list_value()->add_values(), depth + 1);
      break;
    case YAML::NodeType::Scalar:
      // yaml-cpp tags plain scalars "?" and quoted ones "!".
      if (node.Tag() == "!") out->set_string_value(node.Scalar());
      else PlainScalar(node.Scalar(), out);
      break;
    default:
      out->set_null_value(pb::NULL_VALUE);
  }
}

}  // namespace

std::optional<std::string> YamlToJson(const std::string& text, std::string* error) {
  try {
    YAML::Node root = YAML::Load(text);
    if (!root.IsMap()) {
      if (error) *error = "the YAML document is not a mapping";
      return std::nullopt;
    }
    pb::Value value;
    Convert(root, &value, 0);
    std::string json;
    (void)pb::util::MessageToJsonString(value, &json);
    return json;
  } catch (const std::exception& e) {
    if (error) *error = e.what();
    return std::nullopt;
  }
}

}  // namespace skiff::cli
