#include "skiff/armjson/arm_json.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cctype>

namespace skiff::armjson {
namespace {

namespace pb = google::protobuf;

bool EqualsIgnoringCase(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

// The field a JSON name means: exact JSON or proto name first, then either ignoring case.
const pb::FieldDescriptor* FieldFor(const pb::Descriptor& type, const std::string& name) {
  if (const auto* field = type.FindFieldByName(name)) return field;
  for (int i = 0; i < type.field_count(); ++i) {
    if (type.field(i)->json_name() == name) return type.field(i);
  }
  for (int i = 0; i < type.field_count(); ++i) {
    const auto* field = type.field(i);
    if (EqualsIgnoringCase(field->json_name(), name) || EqualsIgnoringCase(field->name(), name)) return field;
  }
  return nullptr;
}

bool IsPlainMessage(const pb::FieldDescriptor& field) {
  if (field.cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) return false;
  // Well-known types (Struct, Timestamp, ...) have their own JSON forms: their keys are data.
  return field.message_type()->file()->package() != "google.protobuf";
}

void Canonicalize(pb::Struct* object, const pb::Descriptor& type);

void CanonicalizeValue(pb::Value* value, const pb::FieldDescriptor& field) {
  if (field.is_map()) {
    // Map keys are data; a map of messages has its values canonicalized.
    const auto* value_field = field.message_type()->map_value();
    if (value->kind_case() == pb::Value::kStructValue && IsPlainMessage(*value_field)) {
      for (auto& [key, entry] : *value->mutable_struct_value()->mutable_fields()) {
        if (entry.kind_case() == pb::Value::kStructValue) {
          Canonicalize(entry.mutable_struct_value(), *value_field->message_type());
        }
      }
    }
    return;
  }
  if (!IsPlainMessage(field)) return;
  if (value->kind_case() == pb::Value::kStructValue) {
    Canonicalize(value->mutable_struct_value(), *field.message_type());
  } else if (value->kind_case() == pb::Value::kListValue) {
    for (auto& item : *value->mutable_list_value()->mutable_values()) {
      if (item.kind_case() == pb::Value::kStructValue) Canonicalize(item.mutable_struct_value(), *field.message_type());
    }
  }
}

void Canonicalize(pb::Struct* object, const pb::Descriptor& type) {
  pb::Struct renamed;
  for (auto& [name, value] : *object->mutable_fields()) {
    const auto* field = FieldFor(type, name);
    if (!field) continue;  // unknown: ignored, as ARM ignores it
    CanonicalizeValue(&value, *field);
    (*renamed.mutable_fields())[field->json_name()] = std::move(value);
  }
  object->Swap(&renamed);
}

}  // namespace

bool ParseArmJson(const std::string& json, pb::Message* message, std::string* error) {
  pb::util::JsonParseOptions strict;
  auto status = pb::util::JsonStringToMessage(json, message, strict);
  if (status.ok()) return true;
  // Some name is not the exact JSON name (other case, or not a property at all): rewrite the
  // names the message knows and drop the rest.
  pb::Struct document;
  if (auto parsed = pb::util::JsonStringToMessage(json, &document); !parsed.ok()) {
    if (error) *error = std::string(parsed.message());
    return false;
  }
  Canonicalize(&document, *message->GetDescriptor());
  std::string canonical;
  (void)pb::util::MessageToJsonString(document, &canonical);
  message->Clear();
  pb::util::JsonParseOptions lenient;
  lenient.ignore_unknown_fields = true;
  status = pb::util::JsonStringToMessage(canonical, message, lenient);
  if (!status.ok()) {
    if (error) *error = std::string(status.message());
    return false;
  }
  return true;
}

}  // namespace skiff::armjson
