// Helpers of the end-to-end tests: run the built pgq binary as a child
// process, and read the server's view through libpq directly.
#pragma once

#include <catch2/catch.hpp>

#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <poll.h>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#ifndef PGQ_CLI_PATH
#error "PGQ_CLI_PATH must name the pgq binary"
#endif

namespace pgq_cli_test {

using namespace std::chrono_literals;

inline std::string dsn() {
  const char* v = std::getenv("PGQ_TEST_DSN");
  if (v == nullptr || *v == '\0') {
    FAIL(
        "PGQ_TEST_DSN is not set: the CLI tests need a server "
        "(scripts/test starts one; or export PGQ_TEST_DSN=$(scripts/pg start))");
  }
  return v;
}

struct outcome {
  int code = -1;
  std::string out;
  std::string err;
  long max_rss_kib = 0;  ///< the process's peak resident memory
};

// A running pgq process with its stdin, stdout and stderr on pipes. Its
// stdin gets `input` and is closed, unless `keep_stdin` (then send() more
// and close_stdin()).
class child {
 public:
  explicit child(std::vector<std::string> args, const std::string& input = {}, bool keep_stdin = false) {
    if (std::find(args.begin(), args.end(), "--dsn") == args.end()) {
      args.insert(args.begin(), {"--dsn", dsn()});
    }
    args.insert(args.begin(), PGQ_CLI_PATH);
    int in[2], out[2], err[2];
    REQUIRE(::pipe(in) == 0);
    REQUIRE(::pipe(out) == 0);
    REQUIRE(::pipe(err) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) ::close(fd);
      std::vector<char*> argv;
      argv.reserve(args.size() + 1);
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    in_ = in[1];
    out_ = out[0];
    err_ = err[0];
    send(input);
    if (!keep_stdin) close_stdin();
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  ~child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    close_stdin();
    if (out_ >= 0) ::close(out_);
    if (err_ >= 0) ::close(err_);
  }

  void signal(int sig) { ::kill(pid_, sig); }

  void send(const std::string& data) {
    ::signal(SIGPIPE, SIG_IGN);  // a pgq that exited fails the write, not the test run
    std::size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(in_, data.data() + done, data.size() - done);
      REQUIRE(n > 0);
      done += static_cast<std::size_t>(n);
    }
  }
  void close_stdin() {
    if (in_ >= 0) ::close(in_);
    in_ = -1;
  }

  // Reads stdout and stderr until stdout holds `needle` (true) or `limit`
  // passed or the output ended (false). What was read stays for wait().
  bool read_until(const std::string& needle, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (partial_.out.find(needle) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0 || (out_ < 0 && err_ < 0)) return false;
      poll_once(left);
    }
    return true;
  }

  // Reads until the process exits; fails the test after `limit`.
  outcome wait(std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (out_ >= 0 || err_ >= 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) FAIL("pgq did not finish within " << limit.count() << " ms; stderr: " << partial_.err);
      poll_once(left);
    }
    int status = 0;
    struct rusage usage {};
    ::wait4(pid_, &status, 0, &usage);
    pid_ = -1;
    outcome o = std::move(partial_);
    o.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    o.max_rss_kib = usage.ru_maxrss;
    return o;
  }

  // The output read so far (by read_until).
  const outcome& so_far() const { return partial_; }

 private:
  void poll_once(std::chrono::milliseconds left) {
    pollfd fds[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
    ::poll(fds, 2, static_cast<int>(left.count()));
    for (int k = 0; k < 2; ++k) {
      int& fd = k == 0 ? out_ : err_;
      if (fd < 0 || fds[k].revents == 0) continue;
      char buf[65536];
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) {
        ::close(fd);
        fd = -1;
      } else {
        (k == 0 ? partial_.out : partial_.err).append(buf, static_cast<std::size_t>(n));
      }
    }
  }

  pid_t pid_ = -1;
  int in_ = -1;
  int out_ = -1;
  int err_ = -1;
  outcome partial_;
};

inline outcome pgq(std::vector<std::string> args, const std::string& input = {}) {
  child c(std::move(args), input);
  return c.wait();
}

// One value from the server through libpq (NULL as "<null>").
inline std::string server_value(const std::string& sql) {
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectdb(dsn().c_str()), &PQfinish);
  REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
  std::unique_ptr<PGresult, decltype(&PQclear)> r(PQexec(conn.get(), sql.c_str()), &PQclear);
  const auto st = PQresultStatus(r.get());
  INFO(sql << ": " << PQresultErrorMessage(r.get()));
  REQUIRE((st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK));
  if (st != PGRES_TUPLES_OK || PQntuples(r.get()) == 0) return {};
  return PQgetisnull(r.get(), 0, 0) ? "<null>" : PQgetvalue(r.get(), 0, 0);
}

// Polls `sql` until it returns `expected` (true) or `limit` passes (false).
inline bool wait_for_value(const std::string& sql, const std::string& expected,
                           std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (server_value(sql) != expected) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

inline std::string temp_file(const std::string& name, const std::string& text) {
  std::string path = "/tmp/pgq_cli_test_" + std::to_string(::getpid()) + "_" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

inline std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

const std::string table = "pgq_cli_t" + std::to_string(::getpid());

}  // namespace pgq_cli_test
