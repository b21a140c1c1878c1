#pragma once
// The dataflow program of a block of consecutive quantizable layers (objectives/block_objective.hpp
// documents the objective built on it).
//
// Values live in slots, each holding a fixed number of floats per sample. Slots 0 .. inputs-1 are
// the block's external inputs (values the network captures); op i writes slot inputs + i and reads
// only earlier slots (so the program is in topological order and every value is written once):
//
//   layer(k, a)    the block's k-th quantizable layer applied to slot a:
//                  Q_w(W_k + V_k) * Q_a,k(a) + b'_k (a's size must be the layer's input size)
//   relu(a)        max(a, 0)
//   relu6(a)       min(max(a, 0), 6)
//   add(a, b)      a + b (same sizes)
//   identity(a)    a
//
// `output` names the slot the block's loss compares with the targets. Every layer of the block is
// used by exactly one layer op. Layouts per sample are those of objectives/geometry.hpp (a
// convolution's [C, H, W], a linear layer's [in]); an elementwise op does not care.

#include <adaquant/core/error.hpp>
#include <adaquant/objectives/geometry.hpp>

#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

enum class block_op_kind { layer, relu, relu6, add, identity };

struct block_op {
  block_op_kind kind = block_op_kind::identity;
  std::size_t layer = 0;  // layer: index into the block's layers
  std::size_t a = 0;      // argument slot
  std::size_t b = 0;      // second argument slot (add)

  [[nodiscard]] static constexpr block_op layer_of(std::size_t k, std::size_t a) noexcept {
    return {block_op_kind::layer, k, a, 0};
  }
  [[nodiscard]] static constexpr block_op relu(std::size_t a) noexcept {
    return {block_op_kind::relu, 0, a, 0};
  }
  [[nodiscard]] static constexpr block_op relu6(std::size_t a) noexcept {
    return {block_op_kind::relu6, 0, a, 0};
  }
  [[nodiscard]] static constexpr block_op add(std::size_t a, std::size_t b) noexcept {
    return {block_op_kind::add, 0, a, b};
  }
  [[nodiscard]] static constexpr block_op identity(std::size_t a) noexcept {
    return {block_op_kind::identity, 0, a, 0};
  }
};

struct block_program {
  std::vector<std::size_t> input_sizes;  // floats per sample of each external input slot
  std::vector<block_op> ops;             // op i writes slot input_sizes.size() + i
  std::size_t output = 0;                // the compared slot

  [[nodiscard]] std::size_t inputs() const noexcept { return input_sizes.size(); }
  [[nodiscard]] std::size_t slots() const noexcept { return input_sizes.size() + ops.size(); }

  // Floats per sample of every slot, checking the program against the block's layer geometries.
  // Throws errc::invalid_argument (naming `where` and the op) for no inputs, an external input of
  // size 0, an op reading a slot that is not earlier, a layer index out of range or used twice, a
  // layer never used, an output slot out of range, a linear layer with rows > 1; and
  // errc::shape_mismatch for a layer whose input slot's size is not its input size, or an add of
  // two slots of different sizes.
  [[nodiscard]] std::vector<std::size_t> slot_sizes(std::span<const layer_geometry> layers,
                                                    const std::string& where) const {
    const auto bad = [&](errc e, const std::string& what, const std::string& why) {
      detail::fail(e, where + what, why);
    };
    if (input_sizes.empty()) bad(errc::invalid_argument, ".input_sizes", "a block needs an input");
    std::vector<std::size_t> size(input_sizes);
    for (std::size_t i = 0; i < size.size(); ++i)
      if (size[i] == 0)
        bad(errc::invalid_argument, ".input_sizes[" + std::to_string(i) + "]", "is 0");
    std::vector<bool> used(layers.size(), false);
    for (std::size_t i = 0; i < ops.size(); ++i) {
      const block_op& op = ops[i];
      const std::string at = ".ops[" + std::to_string(i) + "]";
      const std::size_t self = size.size();
      const auto arg = [&](std::size_t s, const char* name) {
        if (!(s < self))
          bad(errc::invalid_argument, at + "." + name,
              "reads slot " + std::to_string(s) + ", only slots < " + std::to_string(self) +
                  " are written before it");
        return size[s];
      };
      const std::size_t a = arg(op.a, "a");
      switch (op.kind) {
        case block_op_kind::layer: {
          if (!(op.layer < layers.size()))
            bad(errc::invalid_argument, at + ".layer",
                std::to_string(op.layer) + " is not one of the block's " +
                    std::to_string(layers.size()) + " layers");
          if (used[op.layer])
            bad(errc::invalid_argument, at + ".layer",
                "layer " + std::to_string(op.layer) + " is used twice");
          used[op.layer] = true;
          const layer_geometry& g = layers[op.layer];
          g.validate(where + ": layer " + std::to_string(op.layer) + " geometry");
          if (g.kind == layer_kind::linear && g.linear.rows != 1)
            bad(errc::invalid_argument, at + ".layer",
                "layer " + std::to_string(op.layer) +
                    " is a token-wise linear layer (rows > 1), not supported in a block");
          if (!(a == g.input_per_sample()))
            bad(errc::shape_mismatch, at + ".a",
                "slot " + std::to_string(op.a) + " holds " + std::to_string(a) +
                    " floats per sample, layer " + std::to_string(op.layer) + " takes " +
                    std::to_string(g.input_per_sample()));
          size.push_back(g.output_per_sample());
          break;
        }
        case block_op_kind::add: {
          const std::size_t b = arg(op.b, "b");
          if (!(a == b))
            bad(errc::shape_mismatch, at,
                "adds slots of " + std::to_string(a) + " and " + std::to_string(b) +
                    " floats per sample");
          size.push_back(a);
          break;
        }
        case block_op_kind::relu:
        case block_op_kind::relu6:
        case block_op_kind::identity:
          size.push_back(a);
          break;
      }
    }
    for (std::size_t k = 0; k < used.size(); ++k)
      if (!used[k])
        bad(errc::invalid_argument, ".ops",
            "no op applies layer " + std::to_string(k) + " of the block");
    if (!(output < size.size()))
      bad(errc::invalid_argument, ".output",
          "slot " + std::to_string(output) + " does not exist (" + std::to_string(size.size()) +
              " slots)");
    return size;
  }
};

}  // namespace adaquant
