#include <adaquant_runtime/checkpoint_dir.hpp>

#include <adaquant/calibrate/adaquant_options.hpp>
#include <adaquant/version.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace adaquant::examples {

namespace fs = std::filesystem;

namespace {
constexpr const char* manifest_header = "adaquant checkpoint manifest 1";

std::string manifest_text(const run_identity& id) {
  std::string s = std::string(manifest_header) + "\n";
  for (const auto& e : id) {
    std::string source = e.source;  // a path: one line, no field separator
    std::replace_if(
        source.begin(), source.end(), [](char c) { return c == '\t' || c == '\n'; }, ' ');
    s += e.kind + "\t" + e.name + "\t" + e.value + "\t" + source + "\n";
  }
  return s;
}

// The entries of a manifest file; nothing when the text is not one.
std::optional<run_identity> parse_manifest(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != manifest_header) return std::nullopt;
  run_identity id;
  while (std::getline(in, line)) {
    const std::size_t a = line.find('\t'), b = line.find('\t', a + 1), c = line.find('\t', b + 1);
    if (a == std::string::npos || b == std::string::npos || c == std::string::npos)
      return std::nullopt;
    id.push_back({line.substr(0, a), line.substr(a + 1, b - a - 1), line.substr(b + 1, c - b - 1),
                  line.substr(c + 1)});
  }
  return id;
}

// What differs between the folder's run (there) and this one (here), in words; empty: nothing.
std::string difference(const run_identity& there, const run_identity& here) {
  const auto what = [](const run_identity_entry& e) {
    if (e.kind == "argument") return "argument " + e.name;
    if (e.kind == "data") return "input '" + e.name + "'";
    return e.kind == "model" ? std::string("the model") : e.kind + " " + e.name;
  };
  const auto reason = [](const run_identity_entry& e) {
    if (e.kind == "argument") return std::string("was made with other arguments");
    if (e.kind == "model") return std::string("was made for another model");
    if (e.kind == "data") return std::string("was made with other calibration data");
    return "was made by another " + e.kind;
  };
  const std::size_t n = std::min(there.size(), here.size());
  for (std::size_t i = 0; i < n; ++i) {
    const run_identity_entry &t = there[i], &h = here[i];
    if (t.kind != h.kind || t.name != h.name)
      return reason(h) + ": it lists " + what(t) + " where this run has " + what(h);
    if (t.value != h.value) {
      if (h.kind != "model" && h.kind != "data")
        return reason(h) + ": " + what(h) + " is " + t.value + " there, " + h.value + " here";
      return reason(h) + ": " + what(h) + " (" + t.source + " there, " + h.source +
             " here) has SHA-256 " + t.value + " there, " + h.value + " here";
    }
  }
  if (there.size() > n) return reason(there[n]) + ": it lists " + what(there[n]) + ", this run not";
  if (here.size() > n) return reason(here[n]) + ": this run has " + what(here[n]) + ", it not";
  return {};
}

bool valid_key(const std::string& key) {
  return !key.empty() && key.front() != '.' && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
  });
}

bool is_bookkeeping(const fs::path& p) {
  const std::string name = p.filename().string();
  return name == "lock" || name.rfind(".tmp-", 0) == 0;
}
}  // namespace

run_identity settings_identity(const pipeline_settings& s) {
  // A member added to pipeline_settings stops the build here until it is part of the identity.
  const auto& [pipeline, wbits, abits, weight_block, weight_only, all_layers, eight_bit_layers,
               weight_range, act_range, percentile, rounding, max_size_ratio, bit_options,
               bit_rounds, recalibrate_allocation, iterations, order, reconstruction, blocks, seed,
               batch_size, step_macs, qdrop, lr_weight, lr_quant, weight_rounding, adaround_lambda,
               inner_weight, trial_iterations, bn_tuning, bn_target, bias] = s;
  const auto number = [](double v) {  // the shortest text that reads back as v
    char buf[40];
    return std::string(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
  };
  const auto on = [](bool b) { return std::string(b ? "on" : "off"); };
  std::string bits;
  for (const int b : bit_options) {
    if (!bits.empty()) bits += ',';
    bits += std::to_string(b);
  }
  std::string eight_bit;
  for (const std::string& part : eight_bit_layers)
    eight_bit += (eight_bit.empty() ? "" : ",") + part;
  const quantization_spec q = quantization_of(s);
  (void)weight_range, (void)act_range;  // as resolved: q.weights.range, q.activations.range
  return {{"build", "adaquant",
           std::to_string(version_major) + "." + std::to_string(version_minor) + "." +
               std::to_string(version_patch)},
          {"build", "record format", std::to_string(detail::checkpoint_version)},
          {"build", "defaults", std::to_string(defaults_revision)},
          {"argument", "--pipeline", pipeline},
          {"argument", "--wbits", std::to_string(wbits)},
          {"argument", "--abits", std::to_string(abits)},
          {"argument", "--weight-granularity",
           weight_block > 0 ? "block:" + std::to_string(weight_block) : "channel"},
          {"argument", "--weight-only", on(weight_only)},
          {"argument", "--all-layers", on(all_layers)},
          {"argument", "--8bit-layers", eight_bit.empty() ? "none" : eight_bit},
          {"argument", "--weight-range", std::string(to_string(q.weights.range))},
          {"argument", "--act-range",
           q.activations ? std::string(to_string(q.activations->range)) : "none"},
          {"argument", "--percentile", number(percentile)},
          {"argument", "--rounding", rounding},
          {"argument", "--max-size-ratio", max_size_ratio ? number(*max_size_ratio) : "off"},
          {"argument", "--bit-options", bits},
          {"argument", "--bit-rounds", std::to_string(bit_rounds)},
          {"argument", "--no-recalibrate-allocation", on(!recalibrate_allocation)},
          {"argument", "--iterations", std::to_string(iterations)},
          {"argument", "--order", order},
          {"argument", "--reconstruction", reconstruction.empty() ? "default" : reconstruction},
          {"argument", "--blocks", blocks},
          {"argument", "--seed", std::to_string(seed)},
          {"argument", "--batch-size", std::to_string(batch_size)},
          {"argument", "--step-macs", number(step_macs)},
          {"argument", "--qdrop", qdrop ? number(*qdrop) : "default"},
          {"argument", "--lr-weight", lr_weight ? number(*lr_weight) : "default"},
          {"argument", "--lr-quant", lr_quant ? number(*lr_quant) : "default"},
          {"argument", "--weight-rounding", weight_rounding.empty() ? "default" : weight_rounding},
          {"argument", "--adaround-lambda", adaround_lambda ? number(*adaround_lambda) : "default"},
          {"argument", "--inner-weight", inner_weight ? number(*inner_weight) : "default"},
          {"argument", "--trial-iterations",
           trial_iterations ? std::to_string(*trial_iterations) : "default"},
          {"argument", "--no-bn-tuning", on(!bn_tuning)},
          {"argument", "--bn-target", bn_target},
          {"argument", "--no-bias", on(!bias)}};
}

checkpoint_dir::checkpoint_dir(const fs::path& dir, const run_identity& identity, std::string flag)
    : dir_(dir), flag_(std::move(flag)) {
  std::error_code ec;
  if (fs::exists(dir_, ec) && !fs::is_directory(dir_, ec)) fail("is not a folder");
  fs::create_directories(dir_, ec);
  if (ec) fail("cannot create the folder: " + ec.message());
  lock_fd_ = ::open((dir_ / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) fail(std::string("cannot create its lock file: ") + std::strerror(errno));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0)
    fail("is in use by another run (its lock file is held)");
  dir_fd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd_ < 0) fail(std::string("cannot open the folder: ") + std::strerror(errno));

  const fs::path manifest = dir_ / "manifest";
  if (fs::exists(manifest, ec)) {
    std::ifstream in(manifest, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::optional<run_identity> there = parse_manifest(text);
    if (!there) fail(manifest.string() + " is not a checkpoint manifest (remove the folder)");
    if (const std::string d = difference(*there, identity); !d.empty())
      fail(d +
           "; rerun with the arguments, model and data it was made with, or use another folder");
  } else {
    for (const auto& entry : fs::directory_iterator(dir_, ec))
      if (!is_bookkeeping(entry.path()))
        fail("holds files but no manifest (" + entry.path().filename().string() +
             "): not a checkpoint folder; use an empty or new one");
    write_atomically(manifest, manifest_text(identity), false);
  }
  // Temporary files of saves a kill interrupted go (the lock is ours, so no save is running);
  // every record's frame is checked now, so a damaged one is refused before any work.
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(".tmp-", 0) == 0) fs::remove(entry.path(), ec);
    if (entry.path().extension() != ".rec") continue;
    const std::string key = entry.path().stem().string();
    if (std::optional<std::string> bytes = load(key))
      (void)detail::record_reader(std::move(*bytes), key, location(key));
    ++found_;
  }
  if (const char* k = std::getenv("ADAQUANT_TEST_KILL_IN_SAVE"))
    kill_at_ = static_cast<std::size_t>(std::strtoull(k, nullptr, 10));
}

checkpoint_dir::~checkpoint_dir() {
  if (dir_fd_ >= 0) ::close(dir_fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the lock
}

void checkpoint_dir::fail(const std::string& why) const {
  throw error(errc::invalid_argument, flag_ + " " + dir_.string() + ": " + why);
}

fs::path checkpoint_dir::record_path(const std::string& key) const {
  if (!valid_key(key)) fail("the record key '" + key + "' is not a file name");
  return dir_ / (key + ".rec");
}

std::string checkpoint_dir::location(const std::string& key) const {
  return record_path(key).string();
}

std::optional<std::string> checkpoint_dir::load(const std::string& key) {
  const fs::path p = record_path(key);
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(p, ec)) return std::nullopt;
    fail("cannot read " + p.string());
  }
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail("cannot read " + p.string());
  return bytes;
}

void checkpoint_dir::save(const std::string& key, std::string_view record) {
  ++saves_;
  write_atomically(record_path(key), record, saves_ == kill_at_);
}

void checkpoint_dir::write_atomically(const fs::path& target, std::string_view bytes,
                                      bool kill_half_way) {
  std::string tmp = (dir_ / (".tmp-" + target.filename().string() + ".XXXXXX")).string();
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) fail("cannot create a temporary file: " + std::string(std::strerror(errno)));
  const auto give_up = [&](const char* what) {
    const std::string reason = std::strerror(errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    fail(std::string(what) + " " + target.string() + ": " + reason);
  };
  const std::size_t size = kill_half_way ? bytes.size() / 2 : bytes.size();
  for (std::size_t done = 0; done < size;) {
    const ::ssize_t k = ::write(fd, bytes.data() + done, size - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) give_up("cannot write");
    done += static_cast<std::size_t>(k);
  }
  if (::fchmod(fd, 0644) != 0) give_up("cannot set the mode of");
  if (::fsync(fd) != 0) give_up("cannot sync");
  if (kill_half_way) std::raise(SIGKILL);
  if (::close(fd) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    fail("cannot close " + target.string() + ": " + reason);
  }
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    fail("cannot rename a temporary file to " + target.string() + ": " + reason);
  }
  if (::fsync(dir_fd_) != 0) fail("cannot sync the folder: " + std::string(std::strerror(errno)));
}

}  // namespace adaquant::examples
