#pragma once

#include <string>

namespace google::protobuf {
class Message;
}

namespace skiff::armjson {

// Parses ARM JSON into `message` as ARM reads it: property names match the message's JSON names
// case-insensitively (Azure's own examples write `memoryInGb` for `memoryInGB`); properties the
// message does not know are ignored. The exact-case document (the usual one) is parsed once; only
// a document with some other name is rewritten first. false with `error` set on malformed JSON or
// a value of the wrong type.
bool ParseArmJson(const std::string& json, google::protobuf::Message* message, std::string* error);

}  // namespace skiff::armjson
