#pragma once
// Checkpoints: a long run that is killed resumes after its last finished unit of work instead of
// starting over, with a bit-identical result.
//
// checkpoint_store is where finished units go; execution_context::checkpoint points at one
// (nullptr: no checkpoints). The library owns what a unit's result is and how it is encoded; the
// store only keeps bytes under a key (adaquant_ptq's --checkpoint DIR keeps one file per key).
//
//   load(key)          the record saved under key, or nothing
//   save(key, record)  keep record under key, entirely or not at all: a save interrupted by a kill
//                      must leave no record (a file store writes a temporary file, fsyncs it and
//                      renames it over the target)
//   location(key)      where the record lives, for error messages (a file store: its path)
//
// The pipelines (pipeline/light.hpp, pipeline/advanced.hpp) and adaquant_calibrate call load
// before each unit and save after it, from the calling thread, in a fixed order. A unit found in
// the store is not recomputed: its result is installed exactly as if it had just been computed
// (set_quantized in the same order, the same report entries), so every later unit sees the same
// state and the final layers and report are bit-identical to an uninterrupted run, for any thread
// count. Units and their keys ("<id>" is the layer id):
//
//   ranges.layer-<id>             round-to-nearest weights and activation ranges of a layer
//   adaquant.layer-<id>           a layer's AdaQuant result and its layer_report
//   adaquant-w<b>.layer-<id>      the same at b weight bits (bit allocation's candidate forms)
//   bit_allocation.evals-<k>      bit allocation's calibration losses from the k-th measured
//                                 configuration on, up to 8 per record, with their configurations
//   bn_tuning.layer-<id>          a layer refolded by BN tuning
//   bias_correction.layer-<id>    a layer's corrected bias and its largest correction
//   bias_tuning.layer-<id>        a layer's tuned bias and its output MSE before and after
//
// Keys use only [a-z0-9._-]. A store holds one run: one network, calibration set and
// configuration. The library checks that a record is intact and fits the layer it is loaded for
// (errc::corrupt_data naming location(key)); that it comes from the same run is the caller's to
// establish: adaquant_ptq refuses a folder whose manifest (arguments, model and data) differs.
//
// Record format (little-endian), version checkpoint_version (below):
//   "adaqckpt" (8 bytes), u32 version, u32 key length K, the key (K bytes), u64 payload length P,
//   the payload (P bytes), u64 FNV-1a 64 of everything before it.
// Payloads hold floats and doubles as their raw bits, so a loaded result is the computed one.

#include <adaquant/core/error.hpp>

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace adaquant {

class checkpoint_store {
 public:
  virtual ~checkpoint_store() = default;
  [[nodiscard]] virtual std::optional<std::string> load(const std::string& key) = 0;
  virtual void save(const std::string& key, std::string_view record) = 0;
  [[nodiscard]] virtual std::string location(const std::string& key) const {
    return "checkpoint record '" + key + "'";
  }
};

namespace detail {

inline constexpr char checkpoint_magic[8] = {'a', 'd', 'a', 'q', 'c', 'k', 'p', 't'};
// 2 added block-wise weight parameters; 3 the settings a layer ran with, in its layer_report;
// 4 the inner term's weight of block reconstruction, in the report; 5 block reconstruction's trial
// run (its iterations, the two network losses, which run was kept), in the report.
inline constexpr std::uint32_t checkpoint_version = 5;

[[nodiscard]] inline std::uint64_t fnv1a64(std::string_view bytes,
                                           std::uint64_t h = 0xcbf29ce484222325ull) noexcept {
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

// Builds one record's payload; finish() frames it.
class record_writer {
 public:
  void u8(std::uint8_t v) { payload_.push_back(static_cast<char>(v)); }
  void u32(std::uint32_t v) { put_le(payload_, v, 4); }
  void u64(std::uint64_t v) { put_le(payload_, v, 8); }
  void i32(std::int32_t v) { u32(static_cast<std::uint32_t>(v)); }
  void f32(float v) { u32(std::bit_cast<std::uint32_t>(v)); }
  void f64(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
  void str(std::string_view s) {
    u64(s.size());
    payload_.append(s);
  }
  template <class T>
  void values(const std::vector<T>& v) {
    u64(v.size());
    for (const T& x : v) put(x);
  }

  [[nodiscard]] std::string finish(std::string_view key) const {
    std::string r(checkpoint_magic, sizeof checkpoint_magic);
    put_le(r, checkpoint_version, 4);
    put_le(r, key.size(), 4);
    r.append(key);
    put_le(r, payload_.size(), 8);
    r.append(payload_);
    put_le(r, fnv1a64(r), 8);
    return r;
  }

 private:
  static void put_le(std::string& s, std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void put(float v) { f32(v); }
  void put(double v) { f64(v); }
  void put(std::int32_t v) { i32(v); }
  void put(std::uint64_t v) { u64(v); }

  std::string payload_;
};

// Checks a record's frame (magic, version, key, lengths, checksum) and reads its payload; every
// failure throws errc::corrupt_data naming `where`.
class record_reader {
 public:
  record_reader(std::string bytes, std::string_view key, std::string where)
      : bytes_(std::move(bytes)), where_(std::move(where)) {
    const std::size_t n = bytes_.size();
    if (n < 16 || std::memcmp(bytes_.data(), checkpoint_magic, sizeof checkpoint_magic) != 0)
      bad("not a checkpoint record (" + std::to_string(n) + " bytes, no 'adaqckpt' header)");
    pos_ = 8;
    const std::uint64_t version = le(4);
    if (version != checkpoint_version)
      bad("record format version " + std::to_string(version) + ", this build reads version " +
          std::to_string(checkpoint_version));
    const std::uint64_t k = le(4);
    if (k > n - pos_) bad("truncated: the key needs " + std::to_string(k) + " bytes");
    const std::string_view stored(bytes_.data() + pos_, k);
    pos_ += k;
    if (n - pos_ < 8) bad("truncated after the key");
    const std::uint64_t p = le(8);
    if (p > n - pos_ || n - pos_ - p != 8)
      bad("truncated or overlong: " + std::to_string(n) + " bytes, the header declares " +
          std::to_string(pos_ + p + 8));
    end_ = pos_ + p;
    std::uint64_t sum = 0;
    for (int i = 0; i < 8; ++i)
      sum |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes_[end_ + i])) << (8 * i);
    if (sum != fnv1a64(std::string_view(bytes_.data(), end_)))
      bad("checksum mismatch: the record was damaged (remove it to compute its unit again)");
    if (stored != key) bad("holds the record of '" + std::string(stored) + "'");
  }

  std::uint8_t u8() { return static_cast<std::uint8_t>(le(1)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(le(4)); }
  std::uint64_t u64() { return le(8); }
  std::int32_t i32() { return static_cast<std::int32_t>(u32()); }
  float f32() { return std::bit_cast<float>(u32()); }
  double f64() { return std::bit_cast<double>(u64()); }
  std::string str() {
    const std::uint64_t n = count(1);
    std::string s(bytes_.data() + pos_, n);
    pos_ += n;
    return s;
  }
  template <class T>
  std::vector<T> values() {
    const std::uint64_t n = count(sizeof(T));
    std::vector<T> v(n);
    for (T& x : v) x = get(x);
    return v;
  }
  // Throws unless the payload was read to its end.
  void done() const {
    if (pos_ != end_)
      bad(std::to_string(end_ - pos_) + " payload bytes left unread (another record layout)");
  }
  // A payload that does not fit what it is loaded for.
  [[noreturn]] void bad(const std::string& why) const {
    fail(errc::corrupt_data, "checkpoint: " + where_, why);
  }

 private:
  std::uint64_t le(std::size_t bytes) {
    if (bytes > (end_ ? end_ : bytes_.size()) - pos_) bad("payload truncated");
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < bytes; ++i)
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes_[pos_ + i])) << (8 * i);
    pos_ += bytes;
    return v;
  }
  // A declared element count, checked against the bytes present before allocating.
  std::uint64_t count(std::size_t element_bytes) {
    const std::uint64_t n = le(8);
    if (n > (end_ - pos_) / element_bytes)
      bad("payload truncated: " + std::to_string(n) + " elements declared");
    return n;
  }
  float get(float) { return f32(); }
  double get(double) { return f64(); }
  std::int32_t get(std::int32_t) { return i32(); }
  std::uint64_t get(std::uint64_t) { return u64(); }

  std::string bytes_, where_;
  std::size_t pos_ = 0, end_ = 0;
};

// The record of `key` in `store` (nullptr: no checkpoints), its frame checked; nothing when absent.
[[nodiscard]] inline std::optional<record_reader> load_record(checkpoint_store* store,
                                                              const std::string& key) {
  if (!store) return std::nullopt;
  std::optional<std::string> bytes = store->load(key);
  if (!bytes) return std::nullopt;
  return record_reader(std::move(*bytes), key, store->location(key));
}

inline void save_record(checkpoint_store* store, const std::string& key, const record_writer& w) {
  if (store) store->save(key, w.finish(key));
}

}  // namespace detail
}  // namespace adaquant
