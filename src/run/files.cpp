#include "saddle/run/files.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "saddle/error.h"

namespace saddle {

void prepare_output_dir(const std::string& dir) {
  SADDLE_CHECK(!dir.empty(), "--out must name a directory");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  SADDLE_CHECK(!ec, "cannot write to --out ", dir, ": ", ec.message());
  SADDLE_CHECK(std::filesystem::is_directory(dir, ec), "cannot write to --out ", dir,
               ": not a directory");
  const std::string probe = dir + "/.saddle-write-probe";
  std::FILE* f = std::fopen(probe.c_str(), "wb");
  SADDLE_CHECK(f != nullptr, "cannot write to --out ", dir, ": ", std::strerror(errno));
  std::fclose(f);
  std::filesystem::remove(probe, ec);
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    SADDLE_CHECK(out.good(), "cannot write ", tmp, ": ", std::strerror(errno));
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    out.flush();
    SADDLE_CHECK(out.good(), "cannot write ", tmp, ": ", std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  SADDLE_CHECK(!ec, "cannot rename ", tmp, " to ", path, ": ", ec.message());
}

}  // namespace saddle
