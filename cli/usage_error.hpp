// The CLI's error for a bad command line or input file (exit code 2). Its own
// header so that parsers such as params_file.cpp need nothing else of the CLI.
#pragma once

#include <stdexcept>

namespace pgq::cli {

/// A mistake on the command line or in an input file: exit code 2.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace pgq::cli
