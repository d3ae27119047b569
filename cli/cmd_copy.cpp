// pgq copy in / pgq copy out.
//
// Data streams through in 64 KiB chunks both ways: memory stays flat
// whatever the size. The TABLE argument is SQL, put into the statement as
// given (so `t(a, b)` and `"Odd Name"` work); it is the user's own SQL, as
// with `pgq query`, not a value to quote.
//
// Standard input is read through the event loop when it is a pipe, socket
// or terminal, so that Ctrl-C is seen while waiting for input; regular files
// are read directly (they never block for long, and epoll refuses them).
#include "cmd_copy.hpp"

#include <pgq/copy.hpp>
#include <pgq/pool.hpp>
#include <pgq/timeout.hpp>

#include <CLI/CLI.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace asio = boost::asio;

namespace pgq::cli {
namespace {

constexpr std::size_t chunk_size = 64 * 1024;

struct copy_args {
  std::string target;  // TABLE, TABLE(cols) or, for copy out, a query
  std::string file;    // empty: stdin / stdout
  bool csv = false;
  bool no_header = false;
};

std::string format_options(const copy_args& a) {
  if (!a.csv) return {};
  return a.no_header ? " (FORMAT csv)" : " (FORMAT csv, HEADER true)";
}

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// The data source of copy in: a file, or stdin.
class input {
 public:
  input(const std::string& path, asio::io_context& ctx) {
    if (path.empty() || path == "-") {
      fd_ = STDIN_FILENO;
    } else {
      fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd_ < 0) throw usage_error("cannot read " + path + ": " + std::strerror(errno));
      owned_ = true;
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw_errno("stat " + name(path));
    if (S_ISDIR(st.st_mode)) throw usage_error(name(path) + " is a directory");
    const bool pollable = S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || (S_ISCHR(st.st_mode) && ::isatty(fd_));
    if (pollable) {
      // Asio makes the descriptor non-blocking, which a shell sharing our
      // stdin would inherit: put the flags back afterwards.
      saved_flags_ = ::fcntl(fd_, F_GETFL);
      sd_.emplace(ctx, fd_);
    }
  }
  input(const input&) = delete;
  input& operator=(const input&) = delete;
  ~input() {
    if (sd_) {
      sd_->release();
      if (saved_flags_ >= 0) ::fcntl(fd_, F_SETFL, saved_flags_);
    }
    if (owned_) ::close(fd_);
  }

  // Up to `size` bytes; 0 at the end of the input.
  asio::awaitable<std::size_t> read(char* data, std::size_t size) {
    if (sd_) {
      auto [ec, n] = co_await sd_->async_read_some(asio::buffer(data, size), asio::as_tuple(asio::use_awaitable));
      if (ec == asio::error::eof) co_return 0;
      if (ec) throw boost::system::system_error(ec, "reading the input");
      co_return n;
    }
    for (;;) {
      const ssize_t n = ::read(fd_, data, size);
      if (n >= 0) co_return static_cast<std::size_t>(n);
      if (errno != EINTR) throw_errno("reading the input");
    }
  }

 private:
  static std::string name(const std::string& path) { return path.empty() ? "stdin" : path; }

  int fd_ = -1;
  bool owned_ = false;
  int saved_flags_ = -1;
  std::optional<asio::posix::stream_descriptor> sd_;
};

// The destination of copy out: a file (created or truncated), or stdout.
class output {
 public:
  explicit output(const std::string& path) {
    if (path.empty() || path == "-") {
      fd_ = STDOUT_FILENO;
    } else {
      fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
      if (fd_ < 0) throw usage_error("cannot write " + path + ": " + std::strerror(errno));
      owned_ = true;
    }
  }
  output(const output&) = delete;
  output& operator=(const output&) = delete;
  ~output() {
    if (owned_) ::close(fd_);
  }

  void write(std::string_view data) {
    buffer_.append(data);
    if (buffer_.size() >= chunk_size) flush();
  }
  void flush() {
    std::size_t done = 0;
    while (done < buffer_.size()) {
      const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno("writing the output");
      }
      done += static_cast<std::size_t>(n);
    }
    buffer_.clear();
  }

 private:
  int fd_ = -1;
  bool owned_ = false;
  std::string buffer_;
};

// "\rpgq: copy in: 12.5 MiB" on stderr, twice a second, when it is a terminal.
class progress {
 public:
  explicit progress(const char* what) : what_(what), on_(::isatty(STDERR_FILENO) != 0) {}
  void add(std::size_t bytes, std::uint64_t rows) {
    bytes_ += bytes;
    rows_ += rows;
    if (!on_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - shown_ < std::chrono::milliseconds(500)) return;
    shown_ = now;
    std::cerr << "\rpgq: " << what_ << ": " << std::fixed << std::setprecision(1)
              << static_cast<double>(bytes_) / (1024.0 * 1024.0) << " MiB";
    if (rows_ > 0) std::cerr << ", " << rows_ << " rows";
    std::cerr << std::flush;
  }
  ~progress() {
    if (on_ && shown_ != std::chrono::steady_clock::time_point{}) std::cerr << "\r\033[K" << std::flush;
  }

 private:
  const char* what_;
  bool on_;
  std::uint64_t bytes_ = 0;
  std::uint64_t rows_ = 0;
  std::chrono::steady_clock::time_point shown_{};
};

asio::awaitable<std::uint64_t> copy_in_data(session* s, const std::string* sql, input* in) {
  progress p("copy in");
  pgq::lease conn = co_await s->pool().acquire();
  // Destroyed before `conn` on every way out: an unfinished writer aborts
  // the COPY, so nothing is committed after an error or Ctrl-C.
  pgq::copy_writer w = co_await conn->copy_in(*sql);
  std::string chunk(chunk_size, '\0');
  for (;;) {
    const std::size_t n = co_await in->read(chunk.data(), chunk.size());
    if (n == 0) break;
    co_await w.write(std::string_view(chunk.data(), n));
    p.add(n, 0);
  }
  co_return co_await w.finish();
}

asio::awaitable<std::uint64_t> copy_out_data(session* s, const std::string* sql, output* out) {
  progress p("copy out");
  pgq::lease conn = co_await s->pool().acquire();
  // Destroyed early (error, Ctrl-C), the reader cancels the COPY on the server.
  pgq::copy_reader r = co_await conn->copy_out(*sql);
  while (auto row = co_await r.next()) {
    out->write(*row);
    p.add(row->size(), 1);
  }
  out->flush();
  co_return r.rows_affected();
}

// Runs one copy under --timeout (the whole COPY is one statement) and
// reports the row count as psql does, on stderr: stdout may be the data.
asio::awaitable<int> run_copy(session& s, asio::awaitable<std::uint64_t> op) {
  const auto start = std::chrono::steady_clock::now();
  std::uint64_t rows = 0;
  if (s.timeout()) rows = co_await pgq::with_timeout(std::move(op), *s.timeout());
  else rows = co_await std::move(op);
  std::cerr << "COPY " << rows << '\n';
  if (s.options().verbose) std::cerr << "pgq: " << elapsed_ms(start) << " ms\n";
  co_return exit_code::ok;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())) != 0) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())) != 0) s.remove_suffix(1);
  return s;
}

void check_target(std::string_view target) {
  if (trim(target).empty()) throw usage_error("give a table (or, for copy out, a query)");
}

int copy_in_command(const global_options& g, const copy_args& a) {
  check_target(a.target);
  const std::string sql = "COPY " + std::string(trim(a.target)) + " FROM STDIN" + format_options(a);
  session s(g);
  input in(a.file, s.context());
  const std::string* sp = &sql;
  input* ip = &in;
  return s.run([sp, ip](session& ss) { return run_copy(ss, copy_in_data(&ss, sp, ip)); }, 1);
}

int copy_out_command(const global_options& g, const copy_args& a) {
  check_target(a.target);
  const std::string sql = copy_out_statement(a.target, format_options(a));
  session s(g);
  output out(a.file);
  const std::string* sp = &sql;
  output* op = &out;
  return s.run([sp, op](session& ss) { return run_copy(ss, copy_out_data(&ss, sp, op)); }, 1);
}

bool is_word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '$'; }

// `s` without leading blanks and SQL comments.
std::string_view skip_blanks_and_comments(std::string_view s) {
  for (;;) {
    s = trim(s);
    if (s.substr(0, 2) == "--") {
      const auto nl = s.find('\n');
      s = nl == std::string_view::npos ? std::string_view() : s.substr(nl + 1);
    } else if (s.substr(0, 2) == "/*") {
      // Comments nest in PostgreSQL.
      std::size_t depth = 0, i = 0;
      for (; i + 1 < s.size(); ++i) {
        if (s[i] == '/' && s[i + 1] == '*') ++depth, ++i;
        else if (s[i] == '*' && s[i + 1] == '/' && --depth == 0) break;
      }
      s = i + 2 <= s.size() ? s.substr(i + 2) : std::string_view();
    } else {
      return s;
    }
  }
}

void add_copy_options(CLI::App* cmd, copy_args* a, const char* file_help) {
  cmd->add_option("--file", a->file, file_help);
  cmd->add_flag("--csv", a->csv, "CSV (with a header line) instead of PostgreSQL's text format");
  cmd->add_flag("--no-header", a->no_header, "with --csv: no header line");
  cmd->footer(exit_codes_help);
}

}  // namespace

bool is_copy_query(std::string_view target) {
  const std::string_view s = skip_blanks_and_comments(target);
  if (!s.empty() && s.front() == '(') return true;
  std::size_t n = 0;
  while (n < s.size() && is_word_char(s[n])) ++n;
  std::string word(s.substr(0, n));
  for (auto& c : word) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return word == "SELECT" || word == "WITH" || word == "VALUES" || word == "TABLE";
}

std::string copy_out_statement(std::string_view target, std::string_view options) {
  std::string_view t = trim(target);
  if (is_copy_query(t) && skip_blanks_and_comments(t).front() != '(') {
    while (!t.empty() && (t.back() == ';' || std::isspace(static_cast<unsigned char>(t.back())) != 0)) {
      t.remove_suffix(1);
    }
    // On lines of their own, so that a trailing -- comment ends before ")".
    return "COPY (\n" + std::string(t) + "\n) TO STDOUT" + std::string(options);
  }
  return "COPY " + std::string(t) + " TO STDOUT" + std::string(options);
}

void add_copy_command(CLI::App& app, const global_options& g, int& exit_code) {
  auto* copy =
      app.add_subcommand("copy",
                         "COPY data between a table or query and a file or stdin/stdout, streamed (flat memory).\n"
                         "The row count is printed on stderr as \"COPY N\". Ctrl-C aborts the COPY (exit 130).");
  copy->require_subcommand(1);
  copy->fallthrough();  // global options may follow "copy in ..."
  copy->footer(exit_codes_help);

  auto in_args = std::make_shared<copy_args>();
  auto* in = copy->add_subcommand(
      "in",
      "COPY TABLE FROM STDIN, with the data read from --file or stdin. TABLE is SQL, used as given:\n"
      "a name, a qualified name, \"Quoted Name\", or with a column list: 't(a, b)'.\n"
      "All or nothing: on a bad row nothing is committed and the exit code is 1.");
  in->add_option("table", in_args->target, "the table (SQL), optionally with a column list")->required();
  add_copy_options(in, in_args.get(), "read the data from FILE (default: stdin)");
  in->callback([in_args, &g, &exit_code] { exit_code = copy_in_command(g, *in_args); });

  auto out_args = std::make_shared<copy_args>();
  auto* out =
      copy->add_subcommand("out",
                           "COPY a table, or the rows of a query, TO STDOUT, written to --file or stdout.\n"
                           "A query is anything starting with SELECT, WITH, VALUES or TABLE, or in parentheses:\n"
                           "it is run as COPY (query) TO STDOUT. Anything else is a table (SQL, used as given).\n"
                           "After an error (exit 1) the output holds the rows sent before it.");
  out->add_option("source", out_args->target, "a table (SQL, optionally with a column list) or a query")->required();
  add_copy_options(out, out_args.get(), "write the data to FILE, created or truncated (default: stdout)");
  out->callback([out_args, &g, &exit_code] { exit_code = copy_out_command(g, *out_args); });
}

}  // namespace pgq::cli
