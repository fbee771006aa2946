// Paths for the tests without std::filesystem (saddle/run/files.h says why): a string with `/`,
// scratch directories, and the helpers of saddle/run/files.h.
#pragma once

#include <cstdlib>
#include <ostream>
#include <string>
#include <utility>

#include "saddle/run/files.h"

namespace saddle::testing {

class Path {
 public:
  Path() = default;
  Path(std::string value) : value_(std::move(value)) {}  // NOLINT: implicit, like fs::path
  Path(const char* value) : value_(value) {}             // NOLINT
  Path operator/(const std::string& name) const { return Path(join_path(value_, name)); }
  const std::string& string() const { return value_; }
  const char* c_str() const { return value_.c_str(); }
  operator const std::string&() const { return value_; }  // NOLINT
  bool operator==(const Path& other) const { return value_ == other.value_; }

 private:
  std::string value_;
};

inline std::ostream& operator<<(std::ostream& os, const Path& path) { return os << path.string(); }

// Where the tests put their scratch files: $TMPDIR, else /tmp.
inline Path temp_root() {
  const char* dir = std::getenv("TMPDIR");
  return Path(dir != nullptr && *dir != '\0' ? dir : "/tmp");
}

// A new, empty scratch directory (mkdtemp) named after `prefix`.
inline Path fresh_temp_dir(const std::string& prefix) {
  return Path(make_temp_directory(temp_root(), prefix + "_"));
}

}  // namespace saddle::testing
