#pragma once
// A checkpoint folder (adaquant_ptq --checkpoint DIR): adaquant's checkpoint_store
// (core/checkpoint.hpp) as one file per record, DIR/<key>.rec, each written atomically (a
// temporary file DIR/.tmp-<key>.XXXXXX, fsync, rename, fsync of DIR), so a kill at any point
// leaves every record either complete or absent.
//
// DIR/manifest identifies the run that fills the folder: the tool's build, every argument that
// changes a result (not threads, progress or output paths), the model's and the calibration
// data's SHA-256. Opening a folder:
//   - that does not exist: it is created, a fresh start;
//   - empty: a fresh start; its manifest is written before any record;
//   - with a manifest equal to this run's: the run resumes after the records it holds;
//   - with another manifest: refused (errc::invalid_argument) naming DIR and the first entry that
//     differs (which argument, the model, which input's data), nothing written;
//   - holding other files but no manifest, or locked by a running process: refused.
// DIR/lock is held (flock) while the folder is open, so two runs never fill one folder.
//
// Test hook: with ADAQUANT_TEST_KILL_IN_SAVE=N in the environment, save number N (1-based) writes
// half of its temporary file, syncs it and kills the process (SIGKILL): a kill mid-write.

#include <adaquant/core/checkpoint.hpp>
#include <adaquant_runtime/cli.hpp>

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace adaquant::examples {

// One line of a manifest: kind ("build", "argument", "model", "data"), name, value, and for the
// model and the data the file they were read from (named in errors, not compared: a moved file
// with the same bytes is the same run).
struct run_identity_entry {
  std::string kind, name, value, source{};
};
using run_identity = std::vector<run_identity_entry>;

// The build (adaquant's version, the record format) and the pipeline settings, by flag name
// (ranges as the pipeline resolves them).
[[nodiscard]] run_identity settings_identity(const pipeline_settings& s);

class checkpoint_dir final : public checkpoint_store {
 public:
  // Opens (or creates) `dir` for the run `identity`; `flag` names the folder in errors
  // ("adaquant_ptq: --checkpoint").
  checkpoint_dir(const std::filesystem::path& dir, const run_identity& identity, std::string flag);
  ~checkpoint_dir() override;
  checkpoint_dir(const checkpoint_dir&) = delete;
  checkpoint_dir& operator=(const checkpoint_dir&) = delete;

  [[nodiscard]] std::optional<std::string> load(const std::string& key) override;
  void save(const std::string& key, std::string_view record) override;
  [[nodiscard]] std::string location(const std::string& key) const override;

  // Records the folder held when it was opened.
  [[nodiscard]] std::size_t records_found() const noexcept { return found_; }

 private:
  [[noreturn]] void fail(const std::string& why) const;
  void write_atomically(const std::filesystem::path& target, std::string_view bytes,
                        bool kill_half_way);
  [[nodiscard]] std::filesystem::path record_path(const std::string& key) const;

  std::filesystem::path dir_;
  std::string flag_;
  int lock_fd_ = -1, dir_fd_ = -1;
  std::size_t found_ = 0, saves_ = 0, kill_at_ = 0;
};

}  // namespace adaquant::examples
