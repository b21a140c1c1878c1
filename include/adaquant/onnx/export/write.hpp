#pragma once
// Writing a file so that a reader never sees half of it: a temporary file beside the target,
// fsync, rename over the target, fsync of the directory (POSIX).

#include <adaquant/core/error.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

namespace adaquant::onnx {
namespace detail::exporting {

[[noreturn]] inline void io_fail(const char* where, const std::filesystem::path& path,
                                 const char* what, int err) {
  adaquant::detail::fail(errc::invalid_argument, where,
                         std::string(what) + " " + path.string() + ": " + std::strerror(err));
}

}  // namespace detail::exporting

// Writes `bytes` to `path` atomically (mode 0644). Throws adaquant::error naming `where`, the
// path and the system's reason; a failed write leaves any previous file at `path` unchanged.
inline void write_file_atomically(const std::filesystem::path& path, std::string_view bytes,
                                  const char* where = "write_file_atomically") {
  using detail::exporting::io_fail;
  std::string tmp = path.string() + ".tmp.XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) io_fail(where, path, "cannot create a temporary file for", errno);
  const auto give_up = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    io_fail(where, path, what, err);
  };
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ::ssize_t k = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) give_up("cannot write");
    done += static_cast<std::size_t>(k);
  }
  if (::fchmod(fd, 0644) != 0) give_up("cannot set the mode of");
  if (::fsync(fd) != 0) give_up("cannot sync");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    io_fail(where, path, "cannot close", err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    io_fail(where, path, "cannot rename the temporary file to", err);
  }
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {  // best effort: the data is already in place
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace adaquant::onnx
