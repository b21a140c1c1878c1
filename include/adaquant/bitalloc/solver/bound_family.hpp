#pragma once
// Bounds of the search states. Family (q, mu) keeps row q exact and prices every other row r by
// mu_r >= 0 (any such mu gives a valid bound). For a state with cost c and use u at stage k:
//   bound = c + F_k(cap_q - u_q) + sum_{r != q} mu_r (u_r - cap_r),
//   F_k(x) = LP min of sum (c_o + sum_{r != q} mu_r a_{o,r}) over the core layers k.. with
//            row q <= x,
// solved greedily on the layers' lower hulls in the (a_q, priced cost) plane. Fenwick trees over
// the hull segments (by decreasing efficiency) make dropping a layer a point update and F a
// prefix search, both O(log S).

#include <adaquant/bitalloc/lp_bound.hpp>

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

namespace adaquant::detail {

struct family_segment {
  double eff, da, dc;  // efficiency dc / da, row-q increase, priced-cost decrease
  std::size_t k;       // core position of the segment's layer
  std::size_t from, to;
};

struct bound_family {
  std::size_t q;
  std::vector<double> mu;      // mu[q] == 0
  double penalty_cap = 0.0;    // sum_{r != q} mu_r cap_r
  std::vector<double> priced;  // per option: c_o + sum_{r != q} mu_r a_{o,r}
  std::vector<family_segment> segs;
  std::vector<std::size_t> hull_start;          // per core layer: its hull's lightest option
  std::vector<double> fen_da, fen_dc;           // Fenwick trees over segs of the layers still free
  std::vector<std::size_t> seg_first, seg_pos;  // positions of layer k's segments
  double base_w = 0.0, base_c = 0.0;  // row q and priced cost of the free layers' hull starts

  bound_family(const mckp& p, const std::vector<std::size_t>& core, std::size_t row,
               std::vector<double> multipliers)
      : q(row) {
    const std::size_t R = p.rows, K = core.size();
    multipliers[q] = 0.0;
    mu = std::move(multipliers);
    for (std::size_t r = 0; r < R; ++r) penalty_cap += mu[r] * p.cap[r];
    priced.resize(p.options());
    for (std::size_t o = 0; o < p.options(); ++o) {
      double v = p.cost[o];
      for (std::size_t r = 0; r < R; ++r) v += mu[r] * p.a(o, r);
      priced[o] = v;
    }
    lp1_workspace ws;
    sort_by_weight(p, q, ws);
    auto cost = [&](std::size_t o) { return priced[o]; };
    auto weight = [&](std::size_t o) { return p.a(o, q); };
    hull_start.resize(K);
    for (std::size_t k = 0; k < K; ++k) {
      const std::size_t g = core[k];
      group_hull(ws.hull, ws.sorted, p.begin[g], p.begin[g + 1], cost, weight);
      hull_start[k] = ws.hull.front();
      for (std::size_t h = 0; h + 1 < ws.hull.size(); ++h) {
        const std::size_t from = ws.hull[h], to = ws.hull[h + 1];
        const double da = weight(to) - weight(from), dc = cost(from) - cost(to);
        segs.push_back({dc / da, da, dc, k, from, to});
      }
    }
    std::stable_sort(
        segs.begin(), segs.end(),
        [](const family_segment& x, const family_segment& y) { return x.eff > y.eff; });
  }

  // Indexes the segments by layer and builds F_0.
  void index_layers(const mckp& p) {
    const std::size_t K = hull_start.size();
    seg_first.assign(K + 1, 0);
    for (const auto& sg : segs) ++seg_first[sg.k + 1];
    for (std::size_t k = 0; k < K; ++k) seg_first[k + 1] += seg_first[k];
    seg_pos.resize(segs.size());
    std::vector<std::size_t> fill(seg_first.begin(), seg_first.end() - 1);
    for (std::size_t i = 0; i < segs.size(); ++i) seg_pos[fill[segs[i].k]++] = i;
    rebuild(p, 0);
  }

  // F over the layers [removed, K), from scratch.
  void rebuild(const mckp& p, std::size_t removed) {
    const std::size_t S = segs.size();
    fen_da.assign(S + 1, 0.0);
    fen_dc.assign(S + 1, 0.0);
    for (std::size_t i = 1; i <= S; ++i) {
      const auto& sg = segs[i - 1];
      if (sg.k >= removed) {
        fen_da[i] += sg.da;
        fen_dc[i] += sg.dc;
      }
      const std::size_t up = i + (i & (~i + 1));
      if (up <= S) {
        fen_da[up] += fen_da[i];
        fen_dc[up] += fen_dc[i];
      }
    }
    base_w = 0.0;
    base_c = 0.0;
    for (std::size_t j = removed; j < hull_start.size(); ++j) {
      base_w += p.a(hull_start[j], q);
      base_c += priced[hull_start[j]];
    }
  }

  // Takes core layer j out of F.
  void drop_layer(const mckp& p, std::size_t j) {
    const std::size_t S = segs.size();
    for (std::size_t t = seg_first[j]; t < seg_first[j + 1]; ++t) {
      const std::size_t i0 = seg_pos[t];
      const double da = segs[i0].da, dc = segs[i0].dc;
      for (std::size_t i = i0 + 1; i <= S; i += i & (~i + 1)) {
        fen_da[i] -= da;
        fen_dc[i] -= dc;
      }
    }
    base_w -= p.a(hull_start[j], q);
    base_c -= priced[hull_start[j]];
  }

  // F(x) of the free layers: inf when even their lightest choice exceeds x.
  [[nodiscard]] double lp_value(double x) const {
    const double room = x - base_w;
    if (!(room >= 0.0)) return inf;
    const std::size_t S = segs.size();
    std::size_t pos = 0;
    double left = room, gained = 0.0;
    std::size_t step = 1;
    while (step * 2 <= S) step *= 2;
    for (; step > 0; step >>= 1) {
      const std::size_t nxt = pos + step;
      if (nxt <= S && fen_da[nxt] <= left) {
        pos = nxt;
        left -= fen_da[nxt];
        gained += fen_dc[nxt];
      }
    }
    // segments [0, pos) of the free layers fit whole; segment pos (free, else past the end)
    // breaks at efficiency eff
    double v = base_c - gained;
    if (pos < S) v -= std::max(0.0, left) * segs[pos].eff;
    return v;
  }
};

// The families a search uses, all over the same free layers. Family 0 is (0, root lambda); with
// two rows a second family keeps row 1 exact instead. (Families with scaled multipliers were
// tried and did not pay for their cost on synthetic networks.)
class stage_bounds {
 public:
  stage_bounds(const mckp& p, const std::vector<std::size_t>& core,
               const std::vector<double>& lambda)
      : p_(p) {
    fams_.emplace_back(p, core, 0, lambda);
    if (p.rows == 2) fams_.emplace_back(p, core, 1, lambda);
    for (auto& fm : fams_) fm.index_layers(p);
  }

  [[nodiscard]] const bound_family& primary() const { return fams_[0]; }

  // Leaves layers k.. free. Layers go one at a time; an exact rebuild every 256 layers bounds the
  // drift of the incremental sums.
  void free_from(std::size_t k) {
    for (; removed_upto_ < k; ++removed_upto_) {
      const std::size_t j = removed_upto_;
      for (auto& fm : fams_) fm.drop_layer(p_, j);
      if ((j + 1) % 256 == 0)
        for (auto& fm : fams_) fm.rebuild(p_, j + 1);
    }
  }

  // Bound of a state with cost c and use u[] completed by the free layers: the best family.
  [[nodiscard]] double bound(double c, const double* u) const {
    double best = -inf;
    for (const auto& fm : fams_) {
      double b = c - fm.penalty_cap + fm.lp_value(p_.cap[fm.q] - u[fm.q]);
      for (std::size_t r = 0; r < p_.rows; ++r) b += fm.mu[r] * u[r];
      best = std::max(best, b);
    }
    return best;
  }

 private:
  const mckp& p_;
  std::vector<bound_family> fams_;
  std::size_t removed_upto_ = 0;  // layers [0, removed_upto_) are out of every F
};

}  // namespace adaquant::detail
