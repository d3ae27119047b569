// libFuzzer target: migration file names and migration sets.
//
// An input without a NUL byte is one file name: parse_migration_file_name()
// either returns nothing (not a .sql file), throws sql_error
// (errc::bad_migration), or returns parts that spell the name again.
//
// An input with NUL bytes is a migration set, name\0text\0name\0text...:
// load_migrations() either throws sql_error (errc::bad_migration or
// errc::sql_split_failed) naming the file, or returns migrations sorted by
// version, unique, each with an up script of that version and a checksum of
// its text.
#include <pgq/migrate.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

void check_name(std::string_view name) {
  std::optional<pgq::migration_file_name> parsed;
  try {
    parsed = pgq::parse_migration_file_name(name);
  } catch (const pgq::sql_error& e) {
    if (e.code() != pgq::errc::bad_migration) std::abort();
    if (!name.ends_with(".sql")) std::abort();  // only .sql files are refused
    if (std::string_view(e.what()).find("migration file") == std::string_view::npos) std::abort();
    return;
  }
  if (!parsed) {
    if (name.ends_with(".sql")) std::abort();
    return;
  }
  const auto& p = *parsed;
  if (p.version <= 0 || p.version_text.empty() || p.version_text.size() > 18 || p.name.empty()) std::abort();
  std::int64_t v = 0;
  for (char c : p.version_text) {
    if (c < '0' || c > '9') std::abort();
    v = v * 10 + (c - '0');
  }
  if (v != p.version) std::abort();
  const std::string again =
      p.version_text + "_" + p.name + (p.direction == pgq::migration_direction::up ? ".up.sql" : ".down.sql");
  if (again != name) std::abort();
}

void check_set(std::string_view data) {
  std::vector<std::string> parts;
  std::size_t pos = 0;
  while (pos <= data.size()) {
    std::size_t end = data.find('\0', pos);
    if (end == std::string_view::npos) end = data.size();
    parts.emplace_back(data.substr(pos, end - pos));
    pos = end + 1;
  }
  std::vector<pgq::migration_file> files;
  for (std::size_t i = 0; i + 1 < parts.size(); i += 2) files.push_back({parts[i], parts[i + 1]});
  std::vector<pgq::migration> loaded;
  try {
    loaded = pgq::load_migrations(files);
  } catch (const pgq::sql_error& e) {
    if (e.code() != pgq::errc::bad_migration && e.code() != pgq::errc::sql_split_failed) std::abort();
    if (std::string_view(e.what()).empty() || e.diag().script.empty()) std::abort();
    return;
  }
  std::int64_t last = 0;
  for (const auto& m : loaded) {
    if (m.version <= last) std::abort();  // sorted, no duplicates
    last = m.version;
    if (m.checksum != pgq::migration_checksum(m.up.text) || m.checksum.size() != 64) std::abort();
    const auto up = pgq::parse_migration_file_name(m.up.file);
    if (!up || up->version != m.version || up->direction != pgq::migration_direction::up) std::abort();
    if (m.down) {
      const auto down = pgq::parse_migration_file_name(m.down->file);
      if (!down || down->version != m.version || down->direction != pgq::migration_direction::down) std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (text.find('\0') == std::string_view::npos) check_name(text);
  else check_set(text);
  return 0;
}
