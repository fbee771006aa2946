#include "saddle/run/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "saddle/error.h"

namespace saddle {

namespace {

std::string reason(int error) { return std::strerror(error); }

// Closes a descriptor on every path out of a function.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now and reports close(2)'s error (NFS reports a full disk here).
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  return ::remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

}  // namespace

bool path_exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

int64_t file_size(const std::string& path) {
  struct stat st;
  SADDLE_CHECK(::stat(path.c_str(), &st) == 0, "cannot read ", path, ": ", reason(errno));
  return static_cast<int64_t>(st.st_size);
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::string parent_directory(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  if (slash == std::string::npos) return "";
  return slash == 0 ? "/" : p.substr(0, slash);
}

void create_directories(const std::string& path) {
  SADDLE_CHECK(!path.empty(), "cannot create a directory with an empty name");
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    const std::string prefix = path.substr(0, pos);
    if (prefix.empty() || is_directory(prefix)) continue;
    if (::mkdir(prefix.c_str(), 0777) != 0 && errno != EEXIST) {
      throw Error("cannot create directory " + prefix + ": " + reason(errno));
    }
    SADDLE_CHECK(is_directory(prefix), "cannot create directory ", path, ": ", prefix,
                 " exists and is not a directory");
  }
}

bool remove_file(const std::string& path) {
  if (::unlink(path.c_str()) == 0) return true;
  SADDLE_CHECK(errno == ENOENT, "cannot remove ", path, ": ", reason(errno));
  return false;
}

void remove_tree(const std::string& path) {
  if (!path_exists(path)) return;
  SADDLE_CHECK(::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0, "cannot remove ",
               path, ": ", reason(errno));
}

void rename_file(const std::string& from, const std::string& to) {
  SADDLE_CHECK(::rename(from.c_str(), to.c_str()) == 0, "cannot rename ", from, " to ", to, ": ",
               reason(errno));
}

std::string read_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  SADDLE_CHECK(fd.get() >= 0, "cannot read ", path, ": ", reason(errno));
  std::string out;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    SADDLE_CHECK(got >= 0, "cannot read ", path, ": ", reason(errno));
    if (got == 0) break;
    out.append(buffer, static_cast<size_t>(got));
  }
  return out;
}

std::string read_file_prefix(const std::string& path, size_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  SADDLE_CHECK(fd.get() >= 0, "cannot read ", path, ": ", reason(errno));
  std::string out(max_bytes, '\0');
  size_t got = 0;
  while (got < max_bytes) {
    const ssize_t n = ::read(fd.get(), out.data() + got, max_bytes - got);
    if (n < 0 && errno == EINTR) continue;
    SADDLE_CHECK(n >= 0, "cannot read ", path, ": ", reason(errno));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

bool is_symlink(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
}

std::vector<std::string> list_directory(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  SADDLE_CHECK(d != nullptr, "cannot list ", dir, ": ", reason(errno));
  std::vector<std::string> names;
  while (const dirent* entry = ::readdir(d)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

std::string make_temp_directory(const std::string& parent, const std::string& prefix) {
  std::string pattern = join_path(parent, prefix + "XXXXXX");
  SADDLE_CHECK(::mkdtemp(pattern.data()) != nullptr, "cannot create a directory in ", parent, ": ",
               reason(errno));
  return pattern;
}

void prepare_output_dir(const std::string& dir) {
  SADDLE_CHECK(!dir.empty(), "--out must name a directory");
  try {
    create_directories(dir);
  } catch (const Error& e) {
    throw Error("cannot write to --out " + dir + ": " + e.what());
  }
  SADDLE_CHECK(is_directory(dir), "cannot write to --out ", dir, ": not a directory");
  // A fresh name (mkstemp: O_CREAT | O_EXCL), so that no existing file or link is touched.
  std::string probe = join_path(dir, ".saddle-write-probe.XXXXXX");
  const int fd = ::mkstemp(probe.data());
  SADDLE_CHECK(fd >= 0, "cannot write to --out ", dir, ": ", reason(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

namespace {

// Writes all of `data`; returns 0 or the errno of the failed write.
int write_all(int fd, const char* data, size_t left) {
  while (left > 0) {
    const ssize_t wrote = ::write(fd, data, left);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote < 0) return errno;
    data += wrote;
    left -= static_cast<size_t>(wrote);
  }
  return 0;
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& contents) {
  std::string tmp = path + ".tmp.XXXXXX";
  Fd fd(::mkstemp(tmp.data()));
  SADDLE_CHECK(fd.get() >= 0, "cannot write ", path,
               ": cannot create a temporary file beside it: ", reason(errno));
  auto fail = [&](const char* stage, int error) {
    ::unlink(tmp.c_str());
    throw Error("cannot write " + path + ": " + stage + reason(error));
  };
  ::fchmod(fd.get(), 0644);
  if (const int error = write_all(fd.get(), contents.data(), contents.size())) fail("", error);
  if (::fsync(fd.get()) != 0) fail("fsync: ", errno);
  if (const int error = fd.close()) fail("close: ", error);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename: ", errno);
}

AppendFile::AppendFile(const std::string& path, const std::string& initial) : path_(path) {
  std::string tmp = path + ".tmp.XXXXXX";
  fd_ = ::mkstemp(tmp.data());
  SADDLE_CHECK(fd_ >= 0, "cannot write ", path,
               ": cannot create a temporary file beside it: ", reason(errno));
  ::fchmod(fd_, 0644);
  int error = write_all(fd_, initial.data(), initial.size());
  if (error == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) error = errno;
  if (error != 0) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(tmp.c_str());
    throw Error("cannot write " + path + ": " + reason(error));
  }
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendFile::append(const std::string& text) {
  SADDLE_CHECK(fd_ >= 0, "cannot write ", path_, ": already closed");
  if (const int error = write_all(fd_, text.data(), text.size())) {
    throw Error("cannot write " + path_ + ": " + reason(error));
  }
}

void AppendFile::close() {
  if (fd_ < 0) return;
  const int sync_error = ::fsync(fd_) == 0 ? 0 : errno;
  const int close_error = ::close(fd_) == 0 ? 0 : errno;
  fd_ = -1;
  SADDLE_CHECK(sync_error == 0 && close_error == 0, "cannot write ", path_, ": ",
               reason(sync_error != 0 ? sync_error : close_error));
}

DirectoryLock::DirectoryLock(const std::string& dir) {
  const std::string path = join_path(dir, ".saddle-lock");
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  SADDLE_CHECK(fd_ >= 0, "cannot lock --out ", dir, ": cannot open ", path, ": ", reason(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    std::string holder;
    try {
      holder = read_file_prefix(path, 256);
    } catch (const Error&) {
    }
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    ::close(fd_);
    fd_ = -1;
    SADDLE_CHECK(error != EWOULDBLOCK, "--out ", dir, " is in use by another run",
                 holder.empty() ? std::string() : ": " + holder,
                 " (wait for it to finish, or choose another --out)");
    throw Error("cannot lock --out " + dir + ": " + reason(error));
  }
  // Who holds it, for the message of a second run.
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  char when[64] = {};
  const std::time_t now = std::time(nullptr);
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  const std::string who =
      "pid " + std::to_string(::getpid()) + " on " + host + " since " + when + "\n";
  if (::ftruncate(fd_, 0) == 0) {
    if (::pwrite(fd_, who.data(), who.size(), 0) < 0) {
      // The lock holds without the note; only the second run's message loses the holder's name.
    }
  }
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace saddle
