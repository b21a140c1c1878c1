// Checkpoints (core/checkpoint.hpp): a pipeline run killed after any number of saved units and
// rerun with the same store ends bit-identical to an uninterrupted run, for every kill point,
// every pipeline path and any thread count; damaged or foreign records are refused.
#include <adaquant/pipeline/advanced.hpp>
#include <adaquant/pipeline/light.hpp>

#include <catch2/catch.hpp>

#include <limits>
#include <map>
#include <string>

#include "support/expect_error.hpp"
#include "toy_network.hpp"

namespace aq = adaquant;

namespace {
constexpr std::size_t never = std::numeric_limits<std::size_t>::max();
struct killed {};  // what a kill does to a run: nothing after it happens

// A store in memory whose save number kill_at (0-based) throws instead of saving: the state a
// run killed between two saves leaves behind.
struct memory_store : aq::checkpoint_store {
  std::map<std::string, std::string> records;
  std::size_t saves = 0, found = 0, kill_at = never;

  std::optional<std::string> load(const std::string& key) override {
    const auto it = records.find(key);
    if (it == records.end()) return std::nullopt;
    ++found;
    return it->second;
  }
  void save(const std::string& key, std::string_view record) override {
    if (saves == kill_at) throw killed{};
    ++saves;
    records[key] = std::string(record);
  }
};

// One pipeline run: the configuration and how it is run.
struct pipeline_case {
  std::string name;
  std::function<aq::pipeline_report(toy::network&, const aq::execution_context&)> run;
};

std::vector<pipeline_case> cases() {
  aq::light_config light;
  light.quant.weights = aq::quantizer_spec::weights(3);
  light.quant.activations = aq::quantizer_spec::activations(4);
  light.quant.first_last_8bit = false;
  light.bit_allocation = aq::bit_allocation_budget{0.1, {2, 3, 4, 8}, 3};
  aq::advanced_config adv;
  adv.quant = light.quant;
  adv.adaquant->layer.iterations = 30;
  adv.adaquant->layer.seed = 11;
  aq::advanced_config par = adv;
  par.adaquant->order = aq::calibration_order::parallel;
  aq::advanced_config alloc = adv;
  alloc.bit_allocation = aq::bit_allocation_budget{0.1, {2, 4}, 2};
  aq::advanced_config rtn = adv;
  rtn.adaquant.reset();
  aq::advanced_config blocks = adv;
  blocks.quant.weights.gran = aq::granularity::per_block(1, 4);
  aq::light_config light_blocks = light;
  light_blocks.quant.weights.gran = aq::granularity::per_block(1, 4);
  const auto light_run = [](const aq::light_config& c) {
    return [c](toy::network& n, const aq::execution_context& x) {
      return aq::light_pipeline(n, c, x);
    };
  };
  const auto advanced_run = [](const aq::advanced_config& c) {
    return [c](toy::network& n, const aq::execution_context& x) {
      return aq::advanced_pipeline(n, c, x);
    };
  };
  return {{"light with bit allocation, BN tuning, bias correction", light_run(light)},
          {"advanced, sequential AdaQuant", advanced_run(adv)},
          {"advanced, parallel AdaQuant", advanced_run(par)},
          {"advanced with bit allocation over AdaQuant forms", advanced_run(alloc)},
          {"advanced without AdaQuant", advanced_run(rtn)},
          {"advanced, block-wise weights", advanced_run(blocks)},
          {"light, block-wise weights", light_run(light_blocks)}};
}

// Everything a run produced, bit for bit: each final layer as the checkpoint encodes it (raw
// float bits), the report's steps (not their times), bits and sizes.
std::string outcome(const toy::network& net, const aq::pipeline_report& r) {
  aq::detail::record_writer w;
  for (const auto& [id, q] : net.quantized()) aq::detail::put_quantized_layer(w, q);
  for (const auto& s : r.steps) {
    w.str(s.name);
    w.str(s.summary);
  }
  w.values(std::vector<std::int32_t>(r.weight_bits.begin(), r.weight_bits.end()));
  w.values(std::vector<std::int32_t>(r.act_bits.begin(), r.act_bits.end()));
  w.f64(r.weight_bytes);
  w.f64(r.fp32_weight_bytes);
  return w.finish("outcome");
}

aq::execution_context context(std::size_t threads, memory_store* store) {
  aq::execution_context c{threads, 64, {}};
  c.checkpoint = store;
  return c;
}

constexpr std::size_t samples = 120;
}  // namespace

TEST_CASE("a run killed after any saved unit resumes to the uninterrupted result, bit for bit") {
  for (const pipeline_case& pc : cases()) {
    INFO(pc.name);
    toy::network plain(samples);
    const std::string expected = outcome(plain, pc.run(plain, context(1, nullptr)));

    memory_store full;  // a checkpoint changes nothing, and counts the units
    toy::network with_store(samples);
    CHECK(outcome(with_store, pc.run(with_store, context(1, &full))) == expected);
    const std::size_t units = full.saves;
    CHECK(units >= 6);
    CHECK(full.found == 0);

    for (std::size_t k = 0; k < units; ++k) {
      INFO("killed after " << k << " of " << units << " saves (2 threads), resumed on 1");
      memory_store store;
      store.kill_at = k;
      toy::network killed_net(samples);
      CHECK_THROWS_AS(pc.run(killed_net, context(2, &store)), killed);
      REQUIRE(store.saves == k);
      store.kill_at = never;
      toy::network resumed(samples);
      CHECK(outcome(resumed, pc.run(resumed, context(1, &store))) == expected);
      CHECK(store.saves == units);  // each unit saved once: nothing found was computed again
      CHECK(store.found == k);
    }

    // Killed after every single unit, each rerun getting one unit further.
    memory_store store;
    std::size_t runs = 0;
    for (bool done = false; !done; ++runs) {
      store.kill_at = store.saves + 1;
      toy::network net(samples);
      try {
        const std::string got = outcome(net, pc.run(net, context(1 + runs % 2, &store)));
        CHECK(got == expected);
        done = true;
      } catch (const killed&) {
      }
    }
    CHECK(runs == units);
    CHECK(store.saves == units);
  }
}

TEST_CASE("a damaged or foreign checkpoint record is refused, naming its key") {
  aq::advanced_config c;
  c.quant.weights = aq::quantizer_spec::weights(4);
  c.quant.activations = aq::quantizer_spec::activations(4);
  c.adaquant->layer.iterations = 20;
  memory_store full;
  {
    toy::network net(samples);
    (void)aq::advanced_pipeline(net, c, context(1, &full));
  }
  const auto resume = [&](memory_store store) {
    toy::network net(samples);
    (void)aq::advanced_pipeline(net, c, context(1, &store));
  };
  const std::string key = "adaquant.layer-1";
  REQUIRE(full.records.count(key) == 1);

  memory_store flipped = full;
  flipped.records[key][40] ^= 1;
  adaquant_test::expect_error(
      [&] { resume(flipped); }, aq::errc::corrupt_data,
      "checkpoint: checkpoint record 'adaquant.layer-1': checksum mismatch");
  memory_store cut = full;
  cut.records[key].resize(cut.records[key].size() / 2);
  adaquant_test::expect_error([&] { resume(cut); }, aq::errc::corrupt_data,
                              "checkpoint record 'adaquant.layer-1': truncated");
  memory_store swapped = full;
  swapped.records[key] = full.records.at("adaquant.layer-2");
  adaquant_test::expect_error([&] { resume(swapped); }, aq::errc::corrupt_data,
                              "holds the record of 'adaquant.layer-2'");

  // Layer 0's result framed as layer 1's: refused by what it holds (another layer, other sizes).
  {
    aq::detail::record_reader r(full.records.at("adaquant.layer-0"), "adaquant.layer-0", "");
    toy::network net(samples);
    const aq::quantized_layer q = aq::detail::get_quantized_layer(r, net.quantizable_layers()[0]);
    aq::detail::record_writer w;
    aq::detail::put_quantized_layer(w, q);
    aq::detail::put_layer_report(w, aq::detail::get_layer_report(r));
    memory_store foreign = full;
    foreign.records[key] = w.finish(key);
    adaquant_test::expect_error([&] { resume(foreign); }, aq::errc::corrupt_data,
                                "holds layer 0 with 288 weights and 24 biases; layer 1 has 576 "
                                "and 24");
  }
}

TEST_CASE("bit allocation refuses measurements of another run's configurations") {
  aq::light_config c;
  c.quant.weights = aq::quantizer_spec::weights(4);
  c.quant.activations = aq::quantizer_spec::activations(4);
  c.quant.first_last_8bit = false;
  c.bit_allocation = aq::bit_allocation_budget{0.1, {2, 3, 4, 8}, 2};
  memory_store store;
  {
    toy::network net(samples);
    (void)aq::light_pipeline(net, c, context(1, &store));
  }
  REQUIRE(store.records.count("bit_allocation.evals-0") == 1);
  c.bit_allocation->weight_bits = {2, 4, 8};  // another run: other configurations measured
  toy::network net(samples);
  adaquant_test::expect_error([&] { (void)aq::light_pipeline(net, c, context(1, &store)); },
                              aq::errc::corrupt_data,
                              "'bit_allocation.evals-0': measured another configuration");
}

TEST_CASE("a layer report round-trips through a record, the settings it ran with included") {
  aq::layer_report l;
  l.layer_id = 7;
  l.train_samples = 900;
  l.heldout_samples = 100;
  l.mse_before = 0.5;
  l.mse_after = 0.25;
  l.heldout_before = 0.625;
  l.heldout_after = 0.375;
  l.iterations = 1000;
  l.best_iteration = 950;
  l.stopped_early = true;
  l.seconds = 1.5;
  l.adaround = true;
  l.qdrop = 0.5f;
  l.weight_rate = 0.032f;
  l.step_samples = 50;
  l.block_layers = 17;
  l.block_first = 3;
  l.inner_weight = 0.75f;
  l.trial_iterations = 2000;
  l.loss_first = 0.125;
  l.loss_trial = 0.0625;
  l.trial_kept = true;
  aq::detail::record_writer w;
  aq::detail::put_layer_report(w, l);
  aq::detail::record_reader r(w.finish("adaquant.layer-7"), "adaquant.layer-7", "");
  const aq::layer_report g = aq::detail::get_layer_report(r);
  r.done();
  const auto& [id, train, held, mb, ma, hb, ha, it, best, early, sec, ada, qd, rate, step, size,
               first, inner, trial, loss_first, loss_trial, kept] = g;
  CHECK(id == 7);
  CHECK(train == 900);
  CHECK(held == 100);
  CHECK(mb == 0.5);
  CHECK(ma == 0.25);
  CHECK(hb == 0.625);
  CHECK(ha == 0.375);
  CHECK(it == 1000);
  CHECK(best == 950);
  CHECK(early);
  CHECK(sec == 1.5);
  CHECK(ada);
  CHECK(qd == 0.5f);
  CHECK(rate == 0.032f);
  CHECK(step == 50);
  CHECK(size == 17);
  CHECK(first == 3);
  CHECK(inner == 0.75f);
  CHECK(trial == 2000);
  CHECK(loss_first == 0.125);
  CHECK(loss_trial == 0.0625);
  CHECK(kept);
}
