// Migration files: names, checksums and loading. Pure (no connection), so
// that the fuzz targets can build it without the rest of the library.
#include <pgq/migrate.hpp>

#include <pgq/error.hpp>

#include "migrate/migrate_files.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>

namespace pgq {

// ================================================================ SHA-256
// FIPS 180-4. Ours, so that the checksum needs no crypto library.

namespace {

constexpr std::array<std::uint32_t, 64> sha256_k = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

constexpr std::uint32_t rotr(std::uint32_t x, int n) noexcept { return (x >> n) | (x << (32 - n)); }

void sha256_block(std::array<std::uint32_t, 8>& h, const unsigned char* p) noexcept {
  std::array<std::uint32_t, 64> w{};
  for (int i = 0; i < 16; ++i) {
    w[i] = (std::uint32_t{p[4 * i]} << 24) | (std::uint32_t{p[4 * i + 1]} << 16) | (std::uint32_t{p[4 * i + 2]} << 8) |
           std::uint32_t{p[4 * i + 3]};
  }
  for (int i = 16; i < 64; ++i) {
    const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (int i = 0; i < 64; ++i) {
    const std::uint32_t s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
    const std::uint32_t ch = (e & f) ^ (~e & g);
    const std::uint32_t t1 = hh + s1 + ch + sha256_k[i] + w[i];
    const std::uint32_t s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
    const std::uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
    const std::uint32_t t2 = s0 + maj;
    hh = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
  h[5] += f;
  h[6] += g;
  h[7] += hh;
}

}  // namespace

std::string sha256_hex(std::string_view data) {
  std::array<std::uint32_t, 8> h = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t full = data.size() / 64 * 64;
  for (std::size_t i = 0; i < full; i += 64) sha256_block(h, bytes + i);

  // The tail, the 0x80 marker and the length in bits: one or two blocks.
  std::array<unsigned char, 128> tail{};
  const std::size_t rest = data.size() - full;
  if (rest > 0) std::memcpy(tail.data(), bytes + full, rest);
  tail[rest] = 0x80;
  const std::size_t tail_len = rest + 1 + 8 <= 64 ? 64 : 128;
  const std::uint64_t bits = static_cast<std::uint64_t>(data.size()) * 8;
  for (int i = 0; i < 8; ++i) tail[tail_len - 1 - i] = static_cast<unsigned char>(bits >> (8 * i));
  for (std::size_t i = 0; i < tail_len; i += 64) sha256_block(h, tail.data() + i);

  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (std::uint32_t word : h) {
    for (int shift = 28; shift >= 0; shift -= 4) out += hex[(word >> shift) & 0xF];
  }
  return out;
}

std::string normalize_line_endings(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\r') {
      out += '\n';
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string migration_checksum(std::string_view text) { return sha256_hex(normalize_line_endings(text)); }

bool is_no_transaction(std::string_view text) {
  constexpr std::string_view directive = "-- pgq:no-transaction";
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);  // a UTF-8 byte order mark
  if (!text.starts_with(directive)) return false;
  text.remove_prefix(directive.size());
  for (char c : text) {
    if (c == '\n' || c == '\r') return true;
    if (c != ' ' && c != '\t') return false;
  }
  return true;
}

// ================================================================ file names

namespace {

// errc::bad_migration about `file` (a file name, or a path when reading
// failed), naming it in diag().script.
[[noreturn]] void bad_migration(std::string message, std::string_view file, std::optional<std::int64_t> version = {},
                                std::optional<std::size_t> line = {}) {
  diagnostics d;
  d.message = std::move(message);
  d.script = std::string(file);
  d.script_line = line;
  d.migration_version = version;
  throw sql_error(make_error_code(errc::bad_migration), std::move(d));
}

bool is_name_char(char c) noexcept { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-'; }

[[noreturn]] void bad_name(std::string_view file, std::string_view why) {
  bad_migration("migration file \"" + std::string(file) + "\": " + std::string(why) +
                    " (expected NNNN_name.up.sql or NNNN_name.down.sql)",
                file);
}

}  // namespace

std::optional<migration_file_name> parse_migration_file_name(std::string_view file) {
  if (!file.ends_with(".sql")) return std::nullopt;
  std::string_view stem = file.substr(0, file.size() - 4);
  migration_file_name out;
  if (stem.ends_with(".up")) {
    out.direction = migration_direction::up;
    stem.remove_suffix(3);
  } else if (stem.ends_with(".down")) {
    out.direction = migration_direction::down;
    stem.remove_suffix(5);
  } else {
    bad_name(file, "the name does not end in .up.sql or .down.sql");
  }
  std::size_t digits = 0;
  while (digits < stem.size() && std::isdigit(static_cast<unsigned char>(stem[digits])) != 0) ++digits;
  if (digits == 0) bad_name(file, "the name does not start with a version number");
  if (digits > 18) bad_name(file, "the version has more than 18 digits");
  if (digits == stem.size() || stem[digits] != '_') bad_name(file, "the version is not followed by _name");
  out.version_text = std::string(stem.substr(0, digits));
  for (char c : out.version_text) out.version = out.version * 10 + (c - '0');
  if (out.version == 0) bad_name(file, "the version must be greater than 0");
  out.name = std::string(stem.substr(digits + 1));
  if (out.name.empty()) bad_name(file, "the name after the version is empty");
  if (!std::all_of(out.name.begin(), out.name.end(), is_name_char)) {
    bad_name(file, "the name may hold only letters, digits, _ and -");
  }
  return out;
}

// ================================================================ loading

namespace {

std::string upper_first_word(std::string_view text) {
  std::string w;
  for (char c : text) {
    if (std::isalpha(static_cast<unsigned char>(c)) == 0) break;
    w += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return w;
}

migration_script make_script(migration_file f, std::int64_t version) {
  migration_script s;
  s.no_transaction = is_no_transaction(f.text);
  try {
    s.statements = split_sql(f.text);
  } catch (const sql_error& e) {
    // Still errc::sql_split_failed, with its line and column, now naming the file.
    diagnostics d = e.diag();
    d.message = "migration file \"" + f.name + "\": " + d.message;
    d.script = f.name;
    d.migration_version = version;
    throw sql_error(e.code(), std::move(d));
  }
  if (!s.no_transaction) {
    for (std::size_t i = 0; i < s.statements.size(); ++i) {
      const std::string w = upper_first_word(s.statements[i].text);
      if (w == "BEGIN" || w == "START" || w == "COMMIT" || w == "END" || w == "ROLLBACK" || w == "ABORT") {
        bad_migration("migration file \"" + f.name + "\", line " + std::to_string(s.statements[i].line) + ": " + w +
                          " controls the transaction, but pgq already runs the file in one; "
                          "remove it, or make \"-- pgq:no-transaction\" the first line",
                      f.name, version, s.statements[i].line);
      }
    }
  }
  s.file = std::move(f.name);
  s.text = std::move(f.text);
  return s;
}

}  // namespace

std::vector<migration> load_migrations(std::vector<migration_file> files) {
  struct pair {
    std::optional<migration_file_name> up_name, down_name;
    std::optional<migration_file> up, down;
  };
  std::map<std::int64_t, pair> by_version;
  for (auto& f : files) {
    auto parsed = parse_migration_file_name(f.name);
    if (!parsed) continue;
    auto& p = by_version[parsed->version];
    const bool up = parsed->direction == migration_direction::up;
    auto& slot = up ? p.up : p.down;
    if (slot) {
      bad_migration("migration file \"" + f.name + "\": version " + parsed->version_text + " already has " +
                        (up ? "an up" : "a down") + " file, \"" + slot->name + "\"; versions must be unique",
                    f.name, parsed->version);
    }
    const auto& other = up ? p.down_name : p.up_name;
    if (other && other->name != parsed->name) {
      bad_migration("migration file \"" + f.name + "\": its name differs from \"" + (up ? p.down : p.up)->name +
                        "\", which has the same version",
                    f.name, parsed->version);
    }
    (up ? p.up_name : p.down_name) = *parsed;
    slot = std::move(f);
  }
  std::vector<migration> out;
  out.reserve(by_version.size());
  for (auto& [version, p] : by_version) {
    if (!p.up) {
      bad_migration("migration file \"" + p.down->name + "\": a down file without its up file", p.down->name, version);
    }
    migration m;
    m.version = version;
    m.name = p.up_name->name;
    m.label = p.up_name->version_text + "_" + m.name;
    m.checksum = migration_checksum(p.up->text);
    m.up = make_script(std::move(*p.up), version);
    if (p.down) m.down = make_script(std::move(*p.down), version);
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<migration> load_migrations(const std::filesystem::path& dir) {
  std::vector<migration_file> files;
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) bad_migration("cannot read the migrations directory \"" + dir.string() + "\": " + ec.message(), dir.string());
  for (const auto& entry : it) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in) bad_migration("cannot read the migration file \"" + entry.path().string() + "\"", entry.path().string());
    files.push_back(migration_file{entry.path().filename().string(), std::move(text).str()});
  }
  return load_migrations(std::move(files));
}

// ================================================================ status

std::string_view to_string(migration_state s) noexcept {
  switch (s) {
    case migration_state::pending: return "pending";
    case migration_state::applied: return "applied";
    case migration_state::drifted: return "drifted";
    case migration_state::missing_file: return "missing file";
  }
  return "unknown";
}

std::size_t status_report::count(migration_state s) const noexcept {
  return static_cast<std::size_t>(
      std::count_if(migrations.begin(), migrations.end(), [s](const migration_status& m) { return m.state == s; }));
}

bool status_report::in_sync() const noexcept {
  return std::all_of(migrations.begin(), migrations.end(),
                     [](const migration_status& m) { return m.state == migration_state::applied; });
}

}  // namespace pgq
