// --params-file: CSV with a header row, or NDJSON.
#include "params_file.hpp"

#include <nlohmann/json.hpp>

namespace pgq::cli {
namespace {

using param_line = std::vector<std::optional<std::string>>;

std::optional<std::string> json_param(const nlohmann::ordered_json& v) {
  if (v.is_null()) return std::nullopt;
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

std::vector<param_line> parse_ndjson(std::string_view text, std::string_view name) {
  std::vector<param_line> out;
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    nlohmann::ordered_json j;
    try {
      j = nlohmann::ordered_json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw usage_error(std::string(name) + ":" + std::to_string(line_no) + ": not JSON: " + e.what());
    }
    param_line values;
    if (j.is_array() || j.is_object()) {
      for (const auto& v : j) values.push_back(json_param(v));
    } else {
      values.push_back(json_param(j));
    }
    out.push_back(std::move(values));
  }
  return out;
}

std::vector<param_line> parse_csv(std::string_view text, std::string_view name) {
  std::vector<param_line> records;
  param_line record;
  std::string field;
  bool quoted = false;  // the current field was quoted
  bool in_quotes = false;
  bool field_started = false;
  std::size_t line_no = 1;
  std::size_t record_line = 1;
  auto end_field = [&] {
    if (quoted || !field.empty()) record.emplace_back(std::move(field));
    else record.emplace_back(std::nullopt);
    field.clear();
    quoted = false;
    field_started = false;
  };
  auto end_record = [&] {
    end_field();
    const bool blank = record.size() == 1 && !record[0];
    if (!blank) {
      if (!records.empty() && record.size() != records.front().size()) {
        throw usage_error(std::string(name) + ":" + std::to_string(record_line) + ": " + std::to_string(record.size()) +
                          " fields, the header has " + std::to_string(records.front().size()));
      }
      records.push_back(std::move(record));
    }
    record.clear();
    record_line = line_no;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field.push_back('"');
          ++i;
        } else {
          in_quotes = false;
        }
      } else {
        if (c == '\n') ++line_no;
        field.push_back(c);
      }
      continue;
    }
    if (c == '"' && !field_started) {
      in_quotes = quoted = field_started = true;
    } else if (c == ',') {
      end_field();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      ++line_no;
      end_record();
    } else if (quoted) {
      throw usage_error(std::string(name) + ":" + std::to_string(line_no) + ": text after a closing quote");
    } else {
      field.push_back(c);
      field_started = true;
    }
  }
  if (in_quotes) throw usage_error(std::string(name) + ": ends inside a quoted field");
  if (field_started || quoted || !record.empty()) end_record();
  if (records.empty()) throw usage_error(std::string(name) + ": no header line");
  records.erase(records.begin());  // the header names the columns, for people
  return records;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

std::vector<param_line> parse_params_file(std::string_view text, std::string_view name) {
  if (ends_with(name, ".csv")) return parse_csv(text, name);
  if (ends_with(name, ".ndjson") || ends_with(name, ".jsonl") || ends_with(name, ".json")) {
    return parse_ndjson(text, name);
  }
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && (text[first] == '[' || text[first] == '{')) {
    return parse_ndjson(text, name);
  }
  return parse_csv(text, name);
}

}  // namespace pgq::cli
