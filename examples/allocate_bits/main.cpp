// allocate_bits: choose one bit-width option per layer from a CSV sensitivity table, exactly.
//
//   allocate_bits table.csv --max-size-bytes 2500000 [--max-bops N] [--json]
//   allocate_bits table.csv --max-loss-delta 0.05 [--minimize size_bytes|bops] [--json]
//
// CSV header: layer,option,bits_w,bits_a,loss_delta,size_bytes,bops (see
// adaquant/bitalloc/csv.hpp). Exit status: 0 solved (optimal, or stopped by a limit with a proven
// gap), 1 bad input / infeasible / no solution within the limits, 2 usage error.

#include <adaquant/bitalloc/csv.hpp>
#include <adaquant/bitalloc/solver.hpp>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr const char* usage =
    "usage: allocate_bits FILE.csv [options]   (FILE '-' reads stdin)\n"
    "  --max-size-bytes N   budget on the total size_bytes\n"
    "  --max-bops N         budget on the total bops\n"
    "  --max-loss-delta X   dual form: minimise a resource subject to total loss_delta <= X\n"
    "  --minimize R         resource minimised by the dual form: size_bytes (default) or bops\n"
    "  --node-limit N       stop after N search nodes (reproducible); reports the proven gap\n"
    "  --time-limit S       stop after S seconds; reports the proven gap\n"
    "  --relative-gap G     accept a solution within G * |objective| of optimal (default 1e-9)\n"
    "  --json               print one JSON object instead of a table\n"
    "At least one of --max-size-bytes, --max-bops, --max-loss-delta is required.\n";

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 9.0e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  const auto res = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  return std::string(buf, res.ptr);
}

bool parse_number(std::string_view s, double& out) {
  std::string t(s);
  char* end = nullptr;
  out = std::strtod(t.c_str(), &end);
  return !t.empty() && end == t.c_str() + t.size() && std::isfinite(out) && out >= 0.0;
}

}  // namespace

int main(int argc, char** argv) {
  const double inf = std::numeric_limits<double>::infinity();
  std::string path;
  double max_size = inf, max_bops = inf, max_loss = inf;
  bool json = false, dual = false;
  std::string minimize = "size_bytes";
  adaquant::bit_allocation_options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&](double& out) {
      if (i + 1 >= argc || !parse_number(argv[i + 1], out)) {
        std::fprintf(stderr, "allocate_bits: %.*s needs a non-negative number\n%s",
                     static_cast<int>(a.size()), a.data(), usage);
        std::exit(2);
      }
      ++i;
    };
    if (a == "--help" || a == "-h") {
      std::fputs(usage, stdout);
      return 0;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--max-size-bytes") {
      value(max_size);
    } else if (a == "--max-bops") {
      value(max_bops);
    } else if (a == "--max-loss-delta") {
      value(max_loss);
      dual = true;
    } else if (a == "--node-limit") {
      double n = 0;
      value(n);
      opt.node_limit = static_cast<std::uint64_t>(n);
    } else if (a == "--time-limit") {
      value(opt.time_limit_seconds);
    } else if (a == "--relative-gap") {
      value(opt.relative_gap);
    } else if (a == "--minimize") {
      if (i + 1 >= argc || (std::string_view(argv[i + 1]) != "size_bytes" &&
                            std::string_view(argv[i + 1]) != "bops")) {
        std::fprintf(stderr, "allocate_bits: --minimize takes size_bytes or bops\n%s", usage);
        return 2;
      }
      minimize = argv[++i];
    } else if (!a.empty() && a[0] == '-' && a != "-") {
      std::fprintf(stderr, "allocate_bits: unknown option %s\n%s", argv[i], usage);
      return 2;
    } else if (path.empty()) {
      path = a;
    } else {
      std::fprintf(stderr, "allocate_bits: more than one input file\n%s", usage);
      return 2;
    }
  }
  if (path.empty() || (max_size == inf && max_bops == inf && !dual)) {
    std::fputs(usage, stderr);
    return 2;
  }

  try {
    adaquant::bit_allocation_csv csv;
    if (path == "-") {
      csv = adaquant::read_bit_allocation_csv(std::cin, "<stdin>");
    } else {
      std::ifstream in(path);
      if (!in) {
        std::fprintf(stderr, "allocate_bits: cannot open %s\n", path.c_str());
        return 1;
      }
      csv = adaquant::read_bit_allocation_csv(in, path);
    }
    const double budgets[2] = {max_size, max_bops};
    adaquant::bit_allocation_result r;
    if (dual) {
      const double weights[2] = {minimize == "size_bytes" ? 1.0 : 0.0,
                                 minimize == "bops" ? 1.0 : 0.0};
      r = adaquant::maximize_saving(csv.problem, max_loss, weights, budgets, opt);
    } else {
      r = adaquant::minimize_loss(csv.problem, budgets, opt);
    }
    if (r.status == adaquant::allocation_status::no_solution) {
      std::fprintf(stderr,
                   "allocate_bits: the limits stopped the search before any feasible choice was "
                   "found (lower bound %s); raise --node-limit/--time-limit\n",
                   number(r.lower_bound).c_str());
      return 1;
    }
    const auto& layers = csv.problem.layers;
    if (json) {
      std::string s = "{\"status\": " + json_string(to_string(r.status)) +
                      ", \"objective\": " + number(r.objective) + ", \"gap\": " + number(r.gap()) +
                      ", \"lower_bound\": " + number(r.lower_bound) +
                      ", \"loss_delta\": " + number(r.loss_delta) +
                      ", \"size_bytes\": " + number(r.resources[0]) +
                      ", \"bops\": " + number(r.resources[1]) +
                      ", \"nodes\": " + std::to_string(r.nodes) + ", \"choice\": [";
      for (std::size_t l = 0; l < layers.size(); ++l) {
        if (l) s += ", ";
        s += "{\"layer\": " + json_string(layers[l].name) +
             ", \"option\": " + std::to_string(csv.ids[l][r.choice[l]]) + "}";
      }
      s += "]}\n";
      std::fputs(s.c_str(), stdout);
      return 0;
    }
    std::printf("%-24s %8s %6s %6s %14s %14s %20s\n", "layer", "option", "bits_w", "bits_a",
                "loss_delta", "size_bytes", "bops");
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const auto& o = layers[l].options[r.choice[l]];
      std::printf("%-24s %8lld %6d %6d %14.6g %14s %20s\n", layers[l].name.c_str(),
                  static_cast<long long>(csv.ids[l][r.choice[l]]), o.bits.bits_w, o.bits.bits_a,
                  o.loss_delta, number(o.resources[0]).c_str(), number(o.resources[1]).c_str());
    }
    std::printf("\nstatus      %s (gap %s, lower bound %s, %llu nodes)\n",
                std::string(to_string(r.status)).c_str(), number(r.gap()).c_str(),
                number(r.lower_bound).c_str(), static_cast<unsigned long long>(r.nodes));
    std::printf("loss_delta  %.10g\n", r.loss_delta);
    std::printf("size_bytes  %s%s\n", number(r.resources[0]).c_str(),
                max_size < inf ? (" (budget " + number(max_size) + ")").c_str() : "");
    std::printf("bops        %s%s\n", number(r.resources[1]).c_str(),
                max_bops < inf ? (" (budget " + number(max_bops) + ")").c_str() : "");
    if (dual)
      std::printf(
          "minimised   %s subject to loss_delta <= %s (saving %s vs. the largest options)\n",
          minimize.c_str(), number(max_loss).c_str(), number(r.saving).c_str());
    return 0;
  } catch (const adaquant::error& e) {
    std::fprintf(stderr, "allocate_bits: %s\n", e.what());
    return 1;
  }
}
