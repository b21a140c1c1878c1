#pragma once
// Step "bit_allocation" of the light and advanced pipelines: one weight bit-width per layer from
// bit_allocation_budget::weight_bits such that weight storage is at most max_size_ratio of FP32,
// scored by the network's own calibration_loss() (LossNetwork) of the whole configuration.
//
//   round 1   the paper's table: the loss of every (layer, bits) with every other layer at 8
//             bits, then the exact multiple-choice knapsack (bitalloc/solver.hpp). Its input is
//             the additivity assumption; layers at 2-3 bits together usually lose more than the
//             sum of their one-at-a-time increases.
//   round r   the same table around round r-1's choice x: every (layer l, bits b) with every
//             other layer at its bits in x, dL[l][b] = L(x, l at b) - min_b' L(x, l at b'),
//             solved again. It stops when a choice repeats or after budget.rounds rounds.
//   uniform   every bit-width of weight_bits whose size fits, all layers at it (the first and
//             last at 8 under the first/last-layer convention).
//
// Installed: of every configuration measured that fits the budget (the round choices, the
// uniform ones, and each table's single-layer changes), the one with the lowest calibration
// loss, so the result is never worse than the best fitting uniform bit-width on that loss.
// Cost in calibration_loss() calls, with m layers free to choose and k bit-widths: round 1 the
// 8-bit base, at most m k table entries and its choice; each further round at most m (k - 1) + 1
// (nothing is measured twice); then at most k uniform configurations.
// Checkpoints: the measured losses are saved in measurement order, up to 8 per record
// ("bit_allocation.evals-<index of the first>"); a rerun takes them from there instead of
// measuring again, so it makes the same choices.

#include <adaquant/bitalloc/solver.hpp>
#include <adaquant/pipeline/steps.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <map>
#include <string>
#include <vector>

namespace adaquant::detail {

// The candidate forms of one layer for bit allocation, by weight bits (8 is the base form).
using layer_options = std::map<int, quantized_layer>;

// Every whole-network configuration (weight bits by layer position) measured so far, with its
// calibration loss and where it came from, in measurement order. With a checkpoint, losses
// measured by an earlier run are taken from it, in the same order.
template <LossNetwork Net>
class measured_configurations {
 public:
  struct entry {
    std::vector<int> bits;
    double loss = 0.0;
    std::string origin;
  };
  static constexpr std::size_t per_record = 8;

  measured_configurations(Net& net, const std::vector<layer_options>& options,
                          checkpoint_store* checkpoint = nullptr)
      : net_(net), options_(options), installed_(options.size(), 0), checkpoint_(checkpoint),
        unsaved_(checkpoint ? 0 : npos) {}

  // The loss of configuration `bits`, measured once.
  double loss(const std::vector<int>& bits, const std::string& origin) {
    if (const auto it = index_.find(bits); it != index_.end()) return entries_[it->second].loss;
    double v = 0.0;
    if (!replay(bits, v)) {
      for (std::size_t i = 0; i < bits.size(); ++i)
        if (installed_[i] != bits[i]) {
          net_.set_quantized(options_[i].at(bits[i]));
          installed_[i] = bits[i];
        }
      v = static_cast<double>(net_.calibration_loss());
      if (!std::isfinite(v))
        fail(errc::non_finite, "pipeline: bit_allocation: calibration_loss()",
             "returned " + format_number(v) + " for " + origin);
    }
    index_[bits] = entries_.size();
    entries_.push_back({bits, v, origin});
    if (unsaved_ != npos && entries_.size() - unsaved_ >= per_record) save();
    return v;
  }

  // Saves the measurements not yet in the checkpoint.
  void save() {
    if (unsaved_ == npos || unsaved_ == entries_.size()) return;
    record_writer w;
    w.u64(entries_.size() - unsaved_);
    for (std::size_t k = unsaved_; k < entries_.size(); ++k) {
      w.values(entries_[k].bits);
      w.f64(entries_[k].loss);
    }
    save_record(checkpoint_, key(unsaved_), w);
    unsaved_ = entries_.size();
  }

  [[nodiscard]] const std::vector<entry>& entries() const noexcept { return entries_; }

 private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  static std::string key(std::size_t first) {
    return "bit_allocation.evals-" + std::to_string(first);
  }

  // The next measurement from the checkpoint; false when it holds no more. Its configuration
  // must be the one this run measures next.
  bool replay(const std::vector<int>& bits, double& v) {
    if (replayed_.empty() && checkpoint_ && !exhausted_) {
      std::optional<record_reader> r = load_record(checkpoint_, key(entries_.size()));
      if (!r) {
        exhausted_ = true;
        return false;
      }
      const std::uint64_t count = r->u64();
      for (std::uint64_t k = 0; k < count; ++k) {
        std::vector<int> b = r->values<std::int32_t>();
        replayed_.push_back({std::move(b), r->f64(), {}});
      }
      r->done();
      if (replayed_.empty()) r->bad("holds no measurements");
      replay_where_ = checkpoint_->location(key(entries_.size()));
    }
    if (replayed_.empty()) return false;
    if (replayed_.front().bits != bits)
      fail(errc::corrupt_data, "checkpoint: " + replay_where_,
           "measured another configuration than this run measures next (another run's record)");
    v = replayed_.front().loss;
    replayed_.pop_front();
    unsaved_ = entries_.size() + 1;  // already in the checkpoint
    return true;
  }

  Net& net_;
  const std::vector<layer_options>& options_;
  std::vector<int> installed_;
  std::map<std::vector<int>, std::size_t> index_;
  std::vector<entry> entries_;
  checkpoint_store* checkpoint_;
  std::size_t unsaved_;  // the first entry not in the checkpoint; npos: no checkpoint
  std::deque<entry> replayed_;
  std::string replay_where_;
  bool exhausted_ = false;
};

inline std::string loss_list(const std::vector<double>& v) {
  std::string s;
  char buf[32];
  for (double x : v) {
    std::snprintf(buf, sizeof buf, "%s%.5g", s.empty() ? "" : ", ", x);
    s += buf;
  }
  return s;
}

// The allocation problem around configuration x (whose loss is at_x): each layer's options
// scored by loss(i, b), the loss with layer i at b bits and every other layer as in x, less the
// layer's least (a constant per layer changes no choice; the solver wants increases >= 0).
template <class Loss>
bit_allocation_problem problem_around(const pipeline_state& st,
                                      const std::vector<std::vector<int>>& bits_of,
                                      const std::vector<int>& x, double at_x, Loss&& loss) {
  bit_allocation_problem prob;
  prob.resource_names = {"size_bytes"};
  for (std::size_t i = 0; i < x.size(); ++i) {
    std::vector<double> l;
    for (int b : bits_of[i]) l.push_back(b == x[i] ? at_x : loss(i, b));
    const double least = *std::min_element(l.begin(), l.end());
    bit_allocation_layer layer;
    layer.name = std::to_string(st.layers[i].id);
    for (std::size_t k = 0; k < l.size(); ++k)
      layer.options.push_back({{bits_of[i][k], st.abits[i]},
                               l[k] - least,
                               {weight_bytes(st.layers[i], bits_of[i][k])}});
    prob.layers.push_back(std::move(layer));
  }
  return prob;
}

template <PipelineNetwork Net>
std::string bit_allocation_step(Net& net, pipeline_state& st, const bit_allocation_budget& opt,
                                const std::vector<layer_options>& options,
                                const execution_context& ctx) {
  if constexpr (!LossNetwork<Net>) {
    fail(errc::invalid_argument, "pipeline: bit_allocation",
         "the network has no calibration_loss() member (pipeline/network.hpp, LossNetwork)");
  } else {
    const std::size_t n = st.layers.size();
    std::vector<int> widths(opt.weight_bits);
    std::sort(widths.begin(), widths.end());
    widths.erase(std::unique(widths.begin(), widths.end()), widths.end());
    std::vector<std::vector<int>> bits_of(n);  // the bit-widths layer i may take
    double fp32 = 0.0;
    std::size_t free_layers = 0;
    for (std::size_t i = 0; i < n; ++i) {
      fp32 += weight_bytes(st.layers[i], 32);
      const bool fixed = fixed_at_8bit(st.quant, i, n);
      bits_of[i] = fixed ? std::vector<int>{8} : widths;
      free_layers += fixed ? 0 : 1;
    }
    const double budget = opt.max_size_ratio * fp32;
    const auto size_of = [&](const std::vector<int>& bits) {
      double s = 0.0;
      for (std::size_t i = 0; i < n; ++i) s += weight_bytes(st.layers[i], bits[i]);
      return s;
    };
    // Within the budget (with the tolerance check_bit_allocation grants) and the layers' choices.
    const auto fits = [&](const std::vector<int>& bits) {
      for (std::size_t i = 0; i < n; ++i)
        if (std::find(bits_of[i].begin(), bits_of[i].end(), bits[i]) == bits_of[i].end())
          return false;
      return size_of(bits) <= budget * (1 + 1e-12);
    };

    measured_configurations<Net> measured(net, options, ctx.checkpoint);
    const std::size_t per_round = 1 + free_layers * (widths.size() - 1);
    const std::size_t most = 1 + free_layers * widths.size() +
                             static_cast<std::size_t>(opt.rounds - 1) * per_round + widths.size();
    const auto measure = [&](const std::vector<int>& bits, const std::string& origin) {
      const double v = measured.loss(bits, origin);
      ctx.report("bit_allocation", measured.entries().size(), most);
      return v;
    };

    std::vector<int> x(n, 8);  // round 1 measures around the all-8-bit base
    const double base_loss = measure(x, "the 8-bit base");
    std::vector<std::vector<int>> choices;
    std::vector<double> choice_loss;
    std::string status = std::string(to_string(allocation_status::optimal));
    unsigned long long nodes = 0;
    bool repeated = false;
    for (int round = 1; round <= opt.rounds && !repeated; ++round) {
      const double at_x = choice_loss.empty() ? base_loss : choice_loss.back();
      const bit_allocation_problem prob =
          problem_around(st, bits_of, x, at_x, [&](std::size_t i, int b) {
            std::vector<int> y = x;
            y[i] = b;
            return measure(y, "round " + std::to_string(round) + "'s table, layer " +
                                  std::to_string(st.layers[i].id) + " at " + std::to_string(b) +
                                  " bits");
          });
      const bit_allocation_result r = minimize_loss(prob, {budget});
      nodes += r.nodes;
      if (r.status != allocation_status::optimal) status = std::string(to_string(r.status));
      if (r.status == allocation_status::no_solution) break;  // a node limit; uniform remains
      for (std::size_t i = 0; i < n; ++i) x[i] = bits_of[i][r.choice[i]];
      repeated = std::find(choices.begin(), choices.end(), x) != choices.end();
      choices.push_back(x);
      choice_loss.push_back(measure(x, "allocation round " + std::to_string(round)));
    }

    std::vector<int> uniform_bits;  // those that fit, with their configurations
    std::vector<std::vector<int>> uniform;
    std::string uniform_losses;
    for (int b : widths) {
      std::vector<int> u(n);
      for (std::size_t i = 0; i < n; ++i) u[i] = layer_bits(st.quant, i, n, b);
      if (!fits(u)) continue;
      const double v = measure(u, "uniform " + std::to_string(b) + " bits");
      uniform_losses +=
          (uniform_bits.empty() ? "" : ", ") + std::to_string(b) + " bits " + loss_list({v});
      uniform_bits.push_back(b);
      uniform.push_back(std::move(u));
    }

    measured.save();
    // Lowest loss among everything measured that fits; the first measured wins a tie. One
    // fits: check_bit_allocation proved that the smallest uniform bit-width does.
    const auto& all = measured.entries();
    const typename measured_configurations<Net>::entry* best = nullptr;
    for (const auto& e : all)
      if (fits(e.bits) && (!best || e.loss < best->loss)) best = &e;
    for (std::size_t i = 0; i < n; ++i) {
      st.wbits[i] = best->bits[i];
      st.q[i] = options[i].at(st.wbits[i]);
      net.set_quantized(st.q[i]);
    }

    // Named by the strongest claim: a round's choice, else a uniform width, else its first use.
    std::string winner = best->origin;
    if (const auto u = std::find(uniform.begin(), uniform.end(), best->bits); u != uniform.end())
      winner = "uniform " + std::to_string(uniform_bits[u - uniform.begin()]) + " bits";
    if (const auto c = std::find(choices.begin(), choices.end(), best->bits); c != choices.end())
      winner = "allocation round " + std::to_string(c - choices.begin() + 1);
    char head[160];
    std::snprintf(head, sizeof head, "%s; %s won: loss %.5g at %.0f of %.0f budget bytes",
                  status.c_str(), winner.c_str(), best->loss, size_of(best->bits), budget);
    return std::string(head) + "; allocation by round " + loss_list(choice_loss) +
           (repeated ? " (choice repeated)" : "") + "; uniform " +
           (uniform.empty() ? "none fits" : uniform_losses) + "; 8-bit base " +
           loss_list({base_loss}) + "; " + std::to_string(all.size()) + " evaluations, " +
           std::to_string(nodes) + " nodes";
  }
}

// Validates that bit allocation can meet its budget before any work is done, and that the
// network can give the loss it needs.
template <PipelineNetwork Net>
void check_bit_allocation(const pipeline_state& st, const bit_allocation_budget& opt,
                          const char* fn) {
  const std::string where = std::string(fn) + ": config.bit_allocation";
  if (!LossNetwork<Net>)
    fail(errc::invalid_argument, where,
         "needs the network's calibration_loss() (pipeline/network.hpp, LossNetwork)");
  if (!(opt.max_size_ratio > 0.0 && opt.max_size_ratio <= 1.0))
    fail(errc::invalid_argument, where + ".max_size_ratio",
         "must be in (0, 1], got " + std::to_string(opt.max_size_ratio));
  if (opt.weight_bits.empty()) fail(errc::invalid_argument, where + ".weight_bits", "is empty");
  for (int b : opt.weight_bits)
    if (!(b >= 2 && b <= 16))
      fail(errc::invalid_argument, where + ".weight_bits",
           "bits must be in [2, 16], got " + std::to_string(b));
  if (!(opt.rounds >= 1))
    fail(errc::invalid_argument, where + ".rounds",
         "must be >= 1, got " + std::to_string(opt.rounds));
  const int smallest = *std::min_element(opt.weight_bits.begin(), opt.weight_bits.end());
  double least = 0.0, fp32 = 0.0;
  for (std::size_t i = 0; i < st.layers.size(); ++i) {
    least +=
        weight_bytes(st.layers[i], fixed_at_8bit(st.quant, i, st.layers.size()) ? 8 : smallest);
    fp32 += weight_bytes(st.layers[i], 32);
  }
  if (!(least <= opt.max_size_ratio * fp32 * (1 + 1e-12)))
    fail(errc::infeasible, where + ".max_size_ratio",
         "size ratio " + std::to_string(opt.max_size_ratio) + " is below the smallest achievable " +
             std::to_string(least / fp32));
}

}  // namespace adaquant::detail
