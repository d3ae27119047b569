// The statement splitter: a small lexer that knows just enough of
// PostgreSQL's lexical rules (the same ones psql's own splitter follows) to
// find the semicolons that end statements.
#include <pgq/sql_split.hpp>

#include <array>
#include <cctype>
#include <optional>

namespace pgq {

namespace {

bool is_ident_start(unsigned char c) { return std::isalpha(c) != 0 || c == '_' || c >= 0x80; }
bool is_ident_char(unsigned char c) { return is_ident_start(c) || std::isdigit(c) != 0 || c == '$'; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

class splitter {
 public:
  explicit splitter(std::string_view s) : s_(s) {}

  std::vector<sql_statement> run() {
    while (pos_ < s_.size()) step();
    finish_statement();
    return std::move(out_);
  }

 private:
  struct position {
    std::size_t offset, line, column;
  };

  position here() const { return {pos_, line_, pos_ - line_start_ + 1}; }

  void advance(std::size_t n = 1) {
    for (std::size_t i = 0; i < n && pos_ < s_.size(); ++i) {
      if (s_[pos_] == '\n') {
        ++line_;
        line_start_ = pos_ + 1;
      }
      ++pos_;
    }
  }

  char peek(std::size_t ahead = 0) const { return pos_ + ahead < s_.size() ? s_[pos_ + ahead] : '\0'; }

  [[noreturn]] void fail(const position& at, const std::string& what) const {
    diagnostics d;
    d.message = "line " + std::to_string(at.line) + ", column " + std::to_string(at.column) + ": " + what;
    d.script_line = at.line;
    d.script_column = at.column;
    throw sql_error(make_error_code(errc::sql_split_failed), std::move(d));
  }

  // Marks that the current statement has a token starting here.
  void token() {
    if (!start_) start_ = here();
    end_ = pos_;  // updated by the caller after the token
  }

  void step() {
    const char c = peek();
    if (c == '-' && peek(1) == '-') {
      while (pos_ < s_.size() && peek() != '\n') advance();
      return;
    }
    if (c == '/' && peek(1) == '*') {
      skip_block_comment();
      return;
    }
    if (std::isspace(static_cast<unsigned char>(c)) != 0) {
      advance();
      return;
    }
    if (c == ';' && paren_depth_ == 0 && begin_depth_ == 0) {
      finish_statement();
      advance();
      return;
    }
    token();
    if (c == ';') {
      advance();
    } else if (c == '(') {
      ++paren_depth_;
      advance();
    } else if (c == ')') {
      if (paren_depth_ > 0) --paren_depth_;
      advance();
    } else if (c == '\'') {
      skip_quoted('\'', false, "unterminated quoted string");
    } else if (c == '"') {
      skip_quoted('"', false, "unterminated quoted identifier");
    } else if (c == '$' && skip_dollar_quote()) {
      // done
    } else if (is_ident_start(static_cast<unsigned char>(c))) {
      word();
    } else if (std::isdigit(static_cast<unsigned char>(c)) != 0 || c == '$') {
      // Numbers and $n parameters: digits, letters and dots never hide a ';'.
      advance();
      while (pos_ < s_.size() && (is_ident_char(static_cast<unsigned char>(peek())) || peek() == '.')) advance();
    } else {
      advance();
    }
    end_ = pos_;
  }

  void skip_block_comment() {
    const position at = here();
    advance(2);
    int depth = 1;
    while (depth > 0) {
      if (pos_ >= s_.size()) fail(at, "unterminated /* comment");
      if (peek() == '/' && peek(1) == '*') {
        ++depth;
        advance(2);
      } else if (peek() == '*' && peek(1) == '/') {
        --depth;
        advance(2);
      } else {
        advance();
      }
    }
  }

  // At the opening quote. `backslash`: E'' strings, where \x escapes a char.
  void skip_quoted(char quote, bool backslash, const char* what) {
    const position at = here();
    advance();
    for (;;) {
      if (pos_ >= s_.size()) fail(at, what);
      const char c = peek();
      if (backslash && c == '\\') {
        advance(2);
      } else if (c == quote) {
        if (peek(1) == quote) {
          advance(2);
        } else {
          advance();
          return;
        }
      } else {
        advance();
      }
    }
  }

  // At a '$'. Skips a whole dollar-quoted string and returns true, or returns
  // false (consuming nothing) when the '$' does not open one.
  bool skip_dollar_quote() {
    std::size_t n = 1;
    if (pos_ + 1 < s_.size() && is_ident_start(static_cast<unsigned char>(s_[pos_ + 1]))) {
      n = 2;
      while (pos_ + n < s_.size() && is_ident_char(static_cast<unsigned char>(s_[pos_ + n])) && s_[pos_ + n] != '$')
        ++n;
    }
    if (pos_ + n >= s_.size() || s_[pos_ + n] != '$') return false;
    const std::string_view tag = s_.substr(pos_, n + 1);
    const position at = here();
    const std::size_t close = s_.find(tag, pos_ + tag.size());
    if (close == std::string_view::npos) fail(at, "unterminated dollar-quoted string " + std::string(tag));
    advance(close + tag.size() - pos_);
    return true;
  }

  void word() {
    const std::size_t begin = pos_;
    // E'...' (and e'...'): a string with backslash escapes.
    if ((peek() == 'E' || peek() == 'e') && peek(1) == '\'') {
      advance();
      skip_quoted('\'', true, "unterminated quoted string");
      return;
    }
    while (pos_ < s_.size() && is_ident_char(static_cast<unsigned char>(peek()))) advance();
    const std::string_view w = s_.substr(begin, pos_ - begin);
    // Other string prefixes (B'', X'', N'', U&''): the quote that follows
    // is skipped as a plain string by the next step.
    if (words_seen_ < first_words_.size()) first_words_[words_seen_] = w;
    ++words_seen_;
    if (is_routine_definition()) {
      if (iequals(w, "begin") || iequals(w, "case")) {
        ++begin_depth_;
      } else if (iequals(w, "end") && begin_depth_ > 0) {
        --begin_depth_;
      }
    }
  }

  // CREATE [OR REPLACE] FUNCTION|PROCEDURE: its body may be BEGIN ATOMIC
  // ... END, with semicolons inside.
  bool is_routine_definition() const {
    if (words_seen_ < 2 || !iequals(first_words_[0], "create")) return false;
    const auto routine = [](std::string_view w) { return iequals(w, "function") || iequals(w, "procedure"); };
    if (routine(first_words_[1])) return true;
    return words_seen_ >= 4 && iequals(first_words_[1], "or") && routine(first_words_[3]);
  }

  void finish_statement() {
    if (start_) {
      out_.push_back(sql_statement{std::string(s_.substr(start_->offset, end_ - start_->offset)), start_->line,
                                   start_->column, start_->offset});
    }
    start_.reset();
    paren_depth_ = 0;
    begin_depth_ = 0;
    words_seen_ = 0;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  std::size_t line_ = 1;
  std::size_t line_start_ = 0;
  std::optional<position> start_;
  std::size_t end_ = 0;
  int paren_depth_ = 0;
  int begin_depth_ = 0;
  std::array<std::string_view, 4> first_words_{};
  std::size_t words_seen_ = 0;
  std::vector<sql_statement> out_;
};

}  // namespace

std::vector<sql_statement> split_sql(std::string_view script) { return splitter(script).run(); }

}  // namespace pgq
