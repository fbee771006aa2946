// Files and directories of a run's outputs (stage 4 of game -> exchange -> solver -> metrics): the
// run's directory is checked for writability before any work starts, and final files are written
// to a fresh temporary name (never an existing one, never through a link) and renamed into place.
//
// Everything here uses POSIX calls, never std::filesystem, and so must the rest of saddle: the
// PyTorch wheels export the std::filesystem symbols of the libstdc++ they link statically
// (pytorch/pytorch#133437), and a program linked against such a LibTorch crashes when its own
// std::filesystem calls bind to those copies.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace saddle {

// Whether anything exists at `path` (a dangling symbolic link counts).
bool path_exists(const std::string& path);
// Whether `path` is a directory / a regular file (links are followed).
bool is_directory(const std::string& path);
bool is_regular_file(const std::string& path);
// Size in bytes; throws saddle::Error naming the path when it cannot be read.
int64_t file_size(const std::string& path);

// "a/b" from ("a", "b"); the part before the last '/' ("" when there is none, "/" for "/x").
std::string join_path(const std::string& dir, const std::string& name);
std::string parent_directory(const std::string& path);

// mkdir -p; throws saddle::Error("cannot create directory PATH: reason").
void create_directories(const std::string& path);
// Removes a file or link (not what it points to); false when nothing was there.
bool remove_file(const std::string& path);
// rm -r: removes `path` and everything below it without following links; missing is fine.
void remove_tree(const std::string& path);
// rename(2); throws saddle::Error naming both paths.
void rename_file(const std::string& from, const std::string& to);
// The whole file; throws saddle::Error naming the path.
std::string read_file(const std::string& path);
// At most the first `max_bytes` bytes of the file.
std::string read_file_prefix(const std::string& path, size_t max_bytes);
// Whether `path` is a symbolic link (not followed).
bool is_symlink(const std::string& path);
// The names in `dir` (no "." or ".."), sorted; throws when it cannot be read.
std::vector<std::string> list_directory(const std::string& dir);
// A new, empty directory PARENT/PREFIXxxxxxx (mkdtemp); returns its path.
std::string make_temp_directory(const std::string& parent, const std::string& prefix);

// Creates `dir` (and parents) if needed and checks a file can be created in it; throws
// saddle::Error("cannot write to --out DIR: reason") otherwise.
void prepare_output_dir(const std::string& dir);

// Writes `contents` to `path` atomically: a new temporary file beside it (O_CREAT | O_EXCL, so an
// existing file or link is never written through), every write checked, fsync, then rename. On
// failure the temporary file is removed, `path` keeps its previous contents, and the error names
// the file and the reason ("no space left on device").
void write_file_atomic(const std::string& path, const std::string& contents);

// A file that grows by appends, for records streamed during a run. It is created as a new
// temporary file beside `path`, given `initial` contents, and renamed to `path`, so that it never
// writes through an existing file or link; every later append is checked and a failure (a full
// disk) is a saddle::Error naming the file.
class AppendFile {
 public:
  AppendFile(const std::string& path, const std::string& initial);
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  void append(const std::string& text);
  // Flushes to the disk and closes; appends after it throw.
  void close();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// The lock of a run directory, held for the object's lifetime: an exclusive flock(2) on
// DIR/.saddle-lock, which also records who holds it. A second run into the same directory gets
// saddle::Error("--out DIR is in use by another run: pid P on HOST since TIME").
class DirectoryLock {
 public:
  explicit DirectoryLock(const std::string& dir);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace saddle
