// Output files that are never half-written: a run's directory is checked for writability before
// any work starts, and final files are written to a temporary name and renamed into place.
#pragma once

#include <string>

namespace saddle {

// Creates `dir` (and parents) if needed and checks a file can be created in it; throws
// saddle::Error("cannot write to --out DIR: reason") otherwise.
void prepare_output_dir(const std::string& dir);

// Writes `contents` to `path` atomically (temporary file in the same directory, then rename).
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace saddle
