#pragma once
// Bit allocation as a multiple-choice knapsack (the paper's integer program, Eq. 5).
//
// Layer l picks exactly one option o from its own list. Choosing it costs the measured loss
// increase dL[l][o] and R resources a_r[l][o] (model bytes, BOPs = MACs x bits_w x bits_a, a
// latency table, ...). Two forms are solved exactly (see solver.hpp):
//
//   minimize_loss:    min  sum_l dL[l][x_l]             s.t. sum_l a_r[l][x_l] <= B_r  for every r
//   maximize_saving:  max  sum_l (ref_l - w . a[l][x_l]) s.t. sum_l dL[l][x_l] <= D  (and budgets)
//
// where ref_l is the largest weighted resource among layer l's options (its all-max-bits choice),
// so "saving" is measured against the most expensive configuration.
//
// Feasibility: a row whose data (every a_r[l][o] and B_r) are integers below 2^53 is compared
// exactly (sums of such doubles are exact). Any other row accepts totals up to
// B_r + feasibility_tolerance * max(1, |B_r|); this absorbs rounding in summed doubles.
// Optimality: a result is "optimal" when objective - lower_bound <= max(absolute_gap,
// relative_gap * |objective|), the usual MIP gap convention.

#include <adaquant/core/error.hpp>

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace adaquant {

// Bit-widths of one layer configuration. Informational for the solver; sensitivity.hpp uses them.
struct bit_config {
  int bits_w = 8;
  int bits_a = 8;
  friend bool operator==(const bit_config&, const bit_config&) = default;
};

struct bit_option {
  bit_config bits{};
  double loss_delta = 0.0;        // measured loss increase; finite, >= 0
  std::vector<double> resources;  // one entry per problem resource; finite, >= 0
};

struct bit_allocation_layer {
  std::string name;
  std::vector<bit_option> options;  // at least one
};

struct bit_allocation_problem {
  std::vector<std::string> resource_names;  // e.g. {"size_bytes", "bops"}
  std::vector<bit_allocation_layer> layers;

  [[nodiscard]] std::size_t num_resources() const noexcept { return resource_names.size(); }
  [[nodiscard]] std::size_t num_layers() const noexcept { return layers.size(); }
};

struct bit_allocation_options {
  std::uint64_t node_limit = 0;  // branch-and-bound nodes; 0 = unlimited. Reproducible.
  double time_limit_seconds =
      std::numeric_limits<double>::infinity();  // wall clock; not reproducible
  double relative_gap = 1e-9;                   // stop when gap <= relative_gap * |objective| ...
  double absolute_gap = 0.0;                    // ... or gap <= absolute_gap
  double feasibility_tolerance = 1e-9;          // relative slack for rows with non-integer data
};

enum class allocation_status {
  optimal,      // objective proven within the requested gap of the optimum
  gap,          // a limit stopped the search: best solution found, with its proven gap
  no_solution,  // a limit stopped the search before any feasible choice was found
};

[[nodiscard]] constexpr std::string_view to_string(allocation_status s) noexcept {
  switch (s) {
    case allocation_status::optimal:
      return "optimal";
    case allocation_status::gap:
      return "gap";
    case allocation_status::no_solution:
      return "no_solution";
  }
  return "unknown";
}

struct bit_allocation_result {
  allocation_status status = allocation_status::no_solution;
  std::vector<std::size_t> choice;  // per layer: index into layers[l].options
  // The minimised quantity: total loss_delta (minimize_loss) or total weighted resource
  // (maximize_saving). +inf when status == no_solution.
  double objective = std::numeric_limits<double>::infinity();
  double lower_bound = -std::numeric_limits<double>::infinity();  // proven: optimum >= this
  double loss_delta = 0.0;                                        // total loss_delta of `choice`
  std::vector<double> resources;  // total of each resource for `choice`
  double saving = 0.0;            // maximize_saving only: reference - objective
  std::uint64_t nodes = 0;        // branch-and-bound nodes explored
  double seconds = 0.0;           // wall time (informational)

  // objective - lower_bound; 0 when the optimum is proven exactly.
  [[nodiscard]] double gap() const noexcept {
    return status == allocation_status::no_solution
               ? std::numeric_limits<double>::infinity()
               : (objective > lower_bound ? objective - lower_bound : 0.0);
  }
};

namespace detail {
inline std::string layer_where(std::string_view fn, const bit_allocation_problem& p,
                               std::size_t l) {
  std::string w(fn);
  w += ": layers[" + std::to_string(l) + "]";
  if (!p.layers[l].name.empty()) w += " ('" + p.layers[l].name + "')";
  return w;
}

inline std::string format_number(double v) {
  if (std::isfinite(v) && std::fabs(v) < 9.0e15 && v == std::floor(v))
    return std::to_string(static_cast<long long>(v));
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  return std::string(buf, res.ptr);
}
}  // namespace detail

// Throws adaquant::error for: no layers / a layer without options (empty_input); an option whose
// resource count differs from resource_names (shape_mismatch); NaN or infinite loss_delta or
// resource (non_finite); negative loss_delta or resource (invalid_argument).
inline void validate(const bit_allocation_problem& p,
                     std::string_view fn = "bit_allocation_problem") {
  if (!(!p.layers.empty()))
    detail::fail(errc::empty_input, std::string(fn) + ": layers", "the problem has no layers");
  const std::size_t R = p.num_resources();
  for (std::size_t l = 0; l < p.layers.size(); ++l) {
    const auto& layer = p.layers[l];
    if (!(!layer.options.empty()))
      detail::fail(errc::empty_input, detail::layer_where(fn, p, l), "the layer has no options");
    for (std::size_t o = 0; o < layer.options.size(); ++o) {
      const auto& opt = layer.options[o];
      // where-strings are built only on failure: validation runs on every solve
      auto at = [&](std::string_view field) {
        return detail::layer_where(fn, p, l) + ".options[" + std::to_string(o) + "]." +
               std::string(field);
      };
      if (!(opt.resources.size() == R))
        detail::fail(errc::shape_mismatch, at("resources"),
                     "expected " + std::to_string(R) + " values (one per resource), got " +
                         std::to_string(opt.resources.size()));
      if (!(std::isfinite(opt.loss_delta)))
        detail::fail(errc::non_finite, at("loss_delta"),
                     "must be finite, got " + detail::format_number(opt.loss_delta));
      if (!(opt.loss_delta >= 0.0))
        detail::fail(errc::invalid_argument, at("loss_delta"),
                     "must be >= 0, got " + detail::format_number(opt.loss_delta));
      for (std::size_t r = 0; r < R; ++r) {
        const double v = opt.resources[r];
        if (std::isfinite(v) && v >= 0.0) continue;
        const std::string rw =
            at("resources[" + std::to_string(r) + "]") + " (" + p.resource_names[r] + ")";
        if (!(std::isfinite(v)))
          detail::fail(errc::non_finite, rw, "must be finite, got " + detail::format_number(v));
        detail::fail(errc::invalid_argument, rw, "must be >= 0, got " + detail::format_number(v));
      }
    }
  }
}

}  // namespace adaquant
