#include "bench/expr.hpp"

#include "bench/random.hpp"
#include "usage_error.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace pgq::cli::bench {

void script_error(const std::string& file, std::size_t line, const std::string& msg) {
  throw usage_error(file + ":" + std::to_string(line) + ": " + msg);
}

std::size_t variable_index(std::vector<std::string>& variables, std::string_view name) {
  for (std::size_t i = 0; i < variables.size(); ++i) {
    if (variables[i] == name) return i;
  }
  variables.emplace_back(name);
  return variables.size() - 1;
}

bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; }

namespace {

// Parses the expression of one \set line.
class expr_parser {
 public:
  expr_parser(std::vector<std::string>& variables, std::string_view text, const std::vector<bool>& defined,
              const std::string& file, std::size_t line)
      : variables_(variables), text_(text), defined_(defined), file_(file), line_(line) {}

  expr parse() {
    expr e = sum();
    skip_space();
    if (pos_ != text_.size()) fail("unexpected \"" + std::string(text_.substr(pos_)) + "\"");
    return e;
  }

 private:
  [[noreturn]] void fail(const std::string& msg) { script_error(file_, line_, "\\set: " + msg); }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_])) != 0) ++pos_;
  }
  bool eat(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  static expr binary(expr::kind k, expr a, expr b) {
    expr e;
    e.k = k;
    e.args.push_back(std::move(a));
    e.args.push_back(std::move(b));
    return e;
  }
  expr sum() {
    expr e = product();
    for (;;) {
      if (eat('+')) e = binary(expr::kind::add, std::move(e), product());
      else if (eat('-')) e = binary(expr::kind::sub, std::move(e), product());
      else return e;
    }
  }
  expr product() {
    expr e = unary();
    for (;;) {
      if (eat('*')) e = binary(expr::kind::mul, std::move(e), unary());
      else if (eat('/')) e = binary(expr::kind::div, std::move(e), unary());
      else if (eat('%')) e = binary(expr::kind::mod, std::move(e), unary());
      else return e;
    }
  }
  expr unary() {
    if (eat('-')) {
      expr e;
      e.k = expr::kind::negate;
      e.args.push_back(unary());
      return e;
    }
    if (eat('+')) return unary();
    return primary();
  }
  expr primary() {
    skip_space();
    if (pos_ >= text_.size()) fail("expression ends too soon");
    if (eat('(')) {
      expr e = sum();
      if (!eat(')')) fail("missing )");
      return e;
    }
    const char c = text_[pos_];
    if (std::isdigit(static_cast<unsigned char>(c)) != 0) {
      std::int64_t v = 0;
      while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_])) != 0) {
        v = v * 10 + (text_[pos_++] - '0');
      }
      if (pos_ < text_.size() && (text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E')) {
        fail("only integer expressions are supported");
      }
      expr e;
      e.value = v;
      return e;
    }
    if (c == ':') {
      ++pos_;
      const std::size_t start = pos_;
      while (pos_ < text_.size() && ident_char(text_[pos_])) ++pos_;
      const std::string_view name = text_.substr(start, pos_ - start);
      if (name.empty()) fail("a variable name must follow ':'");
      expr e;
      e.k = expr::kind::variable;
      e.var = variable_index(variables_, name);
      if (e.var >= defined_.size() || !defined_[e.var]) fail("variable :" + std::string(name) + " is not set before");
      return e;
    }
    if (std::isalpha(static_cast<unsigned char>(c)) != 0) {
      const std::size_t start = pos_;
      while (pos_ < text_.size() && ident_char(text_[pos_])) ++pos_;
      const std::string name(text_.substr(start, pos_ - start));
      if (!eat('(')) fail("unknown word \"" + name + "\" (variables are written :name)");
      expr e;
      if (name == "random" || name == "random_uniform") e.k = expr::kind::random;
      else if (name == "abs") e.k = expr::kind::abs;
      else if (name == "least") e.k = expr::kind::least;
      else if (name == "greatest") e.k = expr::kind::greatest;
      else fail("unsupported function " + name + "() (random, abs, least, greatest)");
      if (!eat(')')) {
        do {
          e.args.push_back(sum());
        } while (eat(','));
        if (!eat(')')) fail("missing ) after the arguments of " + name + "()");
      }
      const std::size_t n = e.args.size();
      if ((e.k == expr::kind::random && n != 2) || (e.k == expr::kind::abs && n != 1) || n == 0) {
        fail("wrong number of arguments to " + name + "()");
      }
      return e;
    }
    fail("unexpected \"" + std::string(text_.substr(pos_)) + "\"");
  }

  std::vector<std::string>& variables_;
  std::string_view text_;
  const std::vector<bool>& defined_;
  const std::string& file_;
  std::size_t line_;
  std::size_t pos_ = 0;
};

}  // namespace

expr parse_expr(std::string_view text, std::vector<std::string>& variables, const std::vector<bool>& defined,
                const std::string& file, std::size_t line) {
  return expr_parser(variables, text, defined, file, line).parse();
}

std::int64_t evaluate(const expr& e, const std::vector<std::int64_t>& vars, std::uint64_t& rng) {
  auto arg = [&](std::size_t i) { return evaluate(e.args[i], vars, rng); };
  switch (e.k) {
    case expr::kind::number: return e.value;
    case expr::kind::variable: return vars[e.var];
    case expr::kind::negate: return -arg(0);
    case expr::kind::add: return arg(0) + arg(1);
    case expr::kind::sub: return arg(0) - arg(1);
    case expr::kind::mul: return arg(0) * arg(1);
    case expr::kind::div:
    case expr::kind::mod: {
      const std::int64_t a = arg(0);
      const std::int64_t b = arg(1);
      if (b == 0) throw usage_error("\\set: division by zero");
      return e.k == expr::kind::div ? a / b : a % b;
    }
    case expr::kind::random: {
      const std::int64_t lo = arg(0);
      const std::int64_t hi = arg(1);
      if (hi < lo) throw usage_error("\\set: random() with an empty range");
      const auto span = static_cast<unsigned __int128>(static_cast<std::uint64_t>(hi - lo)) + 1;
      const auto r = static_cast<std::uint64_t>((span * next_random(rng)) >> 64);
      return lo + static_cast<std::int64_t>(r);
    }
    case expr::kind::abs: return std::abs(arg(0));
    case expr::kind::least:
    case expr::kind::greatest: {
      std::int64_t v = arg(0);
      for (std::size_t i = 1; i < e.args.size(); ++i) {
        v = e.k == expr::kind::least ? std::min(v, arg(i)) : std::max(v, arg(i));
      }
      return v;
    }
  }
  return 0;
}

}  // namespace pgq::cli::bench
