#include <pgq/metrics.hpp>

#include <catch2/catch.hpp>

#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

// The value of the sample line that starts with `series` followed by a space.
std::string sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 && line[series.size()] == ' ') {
      return line.substr(series.size() + 1);
    }
  }
  return "<missing: " + series + ">";
}

}  // namespace

TEST_CASE("metrics: operation durations are a histogram under OpenTelemetry's name", "[metrics]") {
  pgq::metrics m;
  pgq::operation_sample ok;
  ok.db_namespace = "shop";
  ok.operation = "SELECT";
  ok.server_address = "db1";
  ok.seconds = 0.003;
  m.record_operation(ok);
  ok.seconds = 0.2;
  m.record_operation(ok);
  ok.seconds = 30;  // past the last bucket: only +Inf
  m.record_operation(ok);
  pgq::operation_sample failed = ok;
  failed.status_code = "23505";
  failed.error_type = "23505";
  failed.seconds = 0.001;  // on a bound: counted in it (le)
  m.record_operation(failed);

  const std::string text = m.prometheus_text();
  CHECK(text.find("# TYPE db_client_operation_duration_seconds histogram\n") != std::string::npos);
  const std::string ok_labels =
      R"(db_system_name="postgresql",db_namespace="shop",db_operation_name="SELECT",server_address="db1")";
  const std::string base = "db_client_operation_duration_seconds";
  CHECK(sample(text, base + "_bucket{" + ok_labels + R"(,le="0.001"})") == "0");
  CHECK(sample(text, base + "_bucket{" + ok_labels + R"(,le="0.005"})") == "1");
  CHECK(sample(text, base + "_bucket{" + ok_labels + R"(,le="0.5"})") == "2");
  CHECK(sample(text, base + "_bucket{" + ok_labels + R"(,le="10"})") == "2");
  CHECK(sample(text, base + "_bucket{" + ok_labels + R"(,le="+Inf"})") == "3");
  CHECK(sample(text, base + "_count{" + ok_labels + "}") == "3");
  CHECK(std::stod(sample(text, base + "_sum{" + ok_labels + "}")) == Approx(30.203));
  const std::string err_labels =
      R"(db_system_name="postgresql",db_namespace="shop",db_operation_name="SELECT",db_response_status_code="23505",error_type="23505",server_address="db1")";
  CHECK(sample(text, base + "_bucket{" + err_labels + R"(,le="0.001"})") == "1");
  CHECK(sample(text, base + "_count{" + err_labels + "}") == "1");
}

TEST_CASE("metrics: connection gauges, timeouts and times of each pool", "[metrics]") {
  pgq::metrics m;
  m.set_connection_count("main", 3, 7);
  m.set_connection_count("main", 4, 6);  // a gauge: the last value stands
  m.set_connection_limits("main", 10, 2, 10);
  m.set_pending_requests("main", 5);
  m.add_timeout("main");
  m.add_timeout("main");
  m.record_create_time("main", 0.02);
  m.record_wait_time("main", 0.0001);
  m.record_use_time("main", 2);
  const std::string text = m.prometheus_text();
  const std::string pool = R"(db_client_connection_pool_name="main")";
  CHECK(sample(text, "db_client_connection_count{" + pool + R"(,db_client_connection_state="idle"})") == "4");
  CHECK(sample(text, "db_client_connection_count{" + pool + R"(,db_client_connection_state="used"})") == "6");
  CHECK(sample(text, "db_client_connection_max{" + pool + "}") == "10");
  CHECK(sample(text, "db_client_connection_idle_min{" + pool + "}") == "2");
  CHECK(sample(text, "db_client_connection_idle_max{" + pool + "}") == "10");
  CHECK(sample(text, "db_client_connection_pending_requests{" + pool + "}") == "5");
  CHECK(text.find("# TYPE db_client_connection_timeouts_total counter\n") != std::string::npos);
  CHECK(sample(text, "db_client_connection_timeouts_total{" + pool + "}") == "2");
  CHECK(sample(text, "db_client_connection_create_time_seconds_count{" + pool + "}") == "1");
  CHECK(sample(text, "db_client_connection_create_time_seconds_bucket{" + pool + R"(,le="0.05"})") == "1");
  CHECK(sample(text, "db_client_connection_wait_time_seconds_bucket{" + pool + R"(,le="0.001"})") == "1");
  CHECK(sample(text, "db_client_connection_use_time_seconds_bucket{" + pool + R"(,le="1"})") == "0");
  CHECK(sample(text, "db_client_connection_use_time_seconds_bucket{" + pool + R"(,le="5"})") == "1");
}

TEST_CASE("metrics: pgq's own counters and the cache hit ratio", "[metrics]") {
  pgq::metrics m;
  CHECK(sample(m.prometheus_text(), "pgq_statement_cache_hit_ratio") == "0");
  for (int i = 0; i < 3; ++i) m.add_statement_cache_lookup(true);
  m.add_statement_cache_lookup(false);
  m.add_server_cancel();
  m.add_reconnect();
  m.add_reconnect();
  m.record_pipeline_depth(1);
  m.record_pipeline_depth(40);
  const std::string text = m.prometheus_text();
  CHECK(sample(text, "pgq_statement_cache_hits_total") == "3");
  CHECK(sample(text, "pgq_statement_cache_misses_total") == "1");
  CHECK(sample(text, "pgq_statement_cache_hit_ratio") == "0.75");
  CHECK(sample(text, "pgq_server_cancels_total") == "1");
  CHECK(sample(text, "pgq_reconnects_total") == "2");
  CHECK(sample(text, R"(pgq_pipeline_depth_bucket{le="1"})") == "1");
  CHECK(sample(text, R"(pgq_pipeline_depth_bucket{le="32"})") == "1");
  CHECK(sample(text, R"(pgq_pipeline_depth_bucket{le="64"})") == "2");
  CHECK(sample(text, "pgq_pipeline_depth_sum") == "41");
}

TEST_CASE("metrics: label values are escaped and every line is valid exposition format", "[metrics]") {
  pgq::metrics m;
  m.set_pending_requests("we\"ird\\pool\nname", 1);
  pgq::operation_sample s;
  s.db_namespace = "a\"b";
  s.operation = "SELECT";
  s.seconds = 0.5;
  m.record_operation(s);
  const std::string text = m.prometheus_text();
  CHECK(
      sample(text, R"(db_client_connection_pending_requests{db_client_connection_pool_name="we\"ird\\pool\nname"})") ==
      "1");
  const std::regex comment(R"(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+)");
  const std::regex line(
      R"re([a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\["\\n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\["\\n])*")*\})? (-?[0-9.e+-]+|\+Inf|NaN))re");
  std::istringstream in(text);
  std::string l;
  int lines = 0;
  while (std::getline(in, l)) {
    ++lines;
    INFO(l);
    CHECK((std::regex_match(l, comment) || std::regex_match(l, line)));
  }
  CHECK(lines > 20);
  CHECK(text.back() == '\n');
}

TEST_CASE("metrics: bad bucket bounds are refused", "[metrics]") {
  pgq::metrics_options o;
  o.duration_buckets = {0.1, 0.01};
  CHECK_THROWS_AS(pgq::metrics(o), std::invalid_argument);
  o.duration_buckets = {0.1, 0.1};
  CHECK_THROWS_AS(pgq::metrics(o), std::invalid_argument);
  o.duration_buckets = {};
  pgq::metrics no_buckets(o);  // only +Inf: allowed
  pgq::operation_sample s;
  s.seconds = 1;
  no_buckets.record_operation(s);
  CHECK(sample(no_buckets.prometheus_text(),
               R"(db_client_operation_duration_seconds_bucket{db_system_name="postgresql",le="+Inf"})") == "1");
}

TEST_CASE("metrics: samples from many threads are all counted", "[metrics]") {
  pgq::metrics m;
  constexpr int threads = 4;
  constexpr int per_thread = 5000;
  std::vector<std::thread> ts;
  ts.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&m, t] {
      pgq::operation_sample s;
      s.operation = (t % 2 == 0) ? "SELECT" : "INSERT";
      s.seconds = 0.002;
      for (int i = 0; i < per_thread; ++i) {
        m.record_operation(s);
        m.add_statement_cache_lookup(i % 2 == 0);
        if (i % 100 == 0) (void)m.prometheus_text();
      }
    });
  }
  for (auto& t : ts) t.join();
  const std::string text = m.prometheus_text();
  CHECK(
      sample(text,
             R"(db_client_operation_duration_seconds_count{db_system_name="postgresql",db_operation_name="SELECT"})") ==
      std::to_string(2 * per_thread));
  CHECK(
      sample(text,
             R"(db_client_operation_duration_seconds_count{db_system_name="postgresql",db_operation_name="INSERT"})") ==
      std::to_string(2 * per_thread));
  CHECK(sample(text, "pgq_statement_cache_hits_total") == std::to_string(threads * per_thread / 2));
}

TEST_CASE("metrics: operation_name is the first keyword, never the text", "[metrics]") {
  CHECK(pgq::operation_name("select 1") == "SELECT");
  CHECK(pgq::operation_name("  \n\tInsert into t values ($1)") == "INSERT");
  CHECK(pgq::operation_name("-- a comment\nUPDATE t SET x = 1") == "UPDATE");
  CHECK(pgq::operation_name("/* outer /* nested */ still */ delete from t") == "DELETE");
  CHECK(pgq::operation_name("(SELECT 1) UNION (SELECT 2)") == "SELECT");
  CHECK(pgq::operation_name("WITH x AS (SELECT 1) SELECT * FROM x") == "WITH");
  CHECK(pgq::operation_name("") == "");
  CHECK(pgq::operation_name("   -- only a comment") == "");
  CHECK(pgq::operation_name("/* unterminated") == "");
  CHECK(pgq::operation_name("123") == "");
  CHECK(pgq::operation_name(std::string(100, 'a')).size() == 32);
}
