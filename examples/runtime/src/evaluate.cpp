#include <adaquant_runtime/evaluate.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <thread>

namespace adaquant::examples {

eval_result evaluate(const network& net, const image_dataset& data, const normalisation& norm,
                     const eval_options& opt) {
  if (!(opt.batch > 0)) detail::fail(errc::invalid_argument, "evaluate: batch", "must be positive");
  const std::size_t total = opt.limit == 0 ? data.count : std::min(opt.limit, data.count);
  if (!(total > 0)) detail::fail(errc::empty_input, "evaluate: data", "no images");
  const std::size_t chunks = (total + opt.batch - 1) / opt.batch;
  std::size_t threads =
      opt.threads ? opt.threads : std::max(1u, std::thread::hardware_concurrency());
  threads = std::min(threads, chunks);

  eval_result r;
  r.images = total;
  r.predictions.assign(total, 0);
  std::vector<double> image_loss(total, 0.0);  // summed in image order: batch-independent
  std::vector<std::size_t> chunk_correct(chunks, 0);
  std::atomic<std::size_t> next{0};
  std::mutex m;
  std::condition_variable cv;
  std::size_t done = 0;
  std::exception_ptr error;

  auto work = [&] {
    try {
      for (std::size_t c; (c = next.fetch_add(1)) < chunks;) {
        const std::size_t begin = c * opt.batch, n = std::min(opt.batch, total - begin);
        const tensor logits = net.forward(make_batch(data, begin, n, norm));
        const std::span<const std::uint8_t> labels(data.labels.data() + begin, n);
        const std::vector<double> loss = softmax_cross_entropy(logits, labels);
        const std::size_t k = logits.dim(1);
        for (std::size_t i = 0; i < n; ++i) {
          const float* z = logits.data() + i * k;
          const auto pred = static_cast<std::uint8_t>(std::max_element(z, z + k) - z);
          r.predictions[begin + i] = pred;
          chunk_correct[c] += pred == labels[i];
          image_loss[begin + i] = loss[i];
        }
        if (threads == 1) {
          done += n;
          if (opt.progress) opt.progress(done, total);
          continue;
        }
        std::lock_guard lock(m);
        done += n;
        cv.notify_all();
      }
    } catch (...) {
      std::lock_guard lock(m);
      if (!error) error = std::current_exception();
      next = chunks;  // stop the others
      cv.notify_all();
    }
  };
  std::vector<std::thread> pool;
  if (threads == 1) {
    work();
  } else {
    for (std::size_t t = 0; t < threads; ++t) pool.emplace_back(work);
    // The main thread only reports progress, so callbacks never race.
    std::unique_lock lock(m);
    std::size_t reported = 0;
    while (done < total && !error) {
      cv.wait(lock, [&] { return done != reported || error; });
      if (error) break;
      reported = done;
      if (opt.progress) {
        lock.unlock();
        opt.progress(reported, total);
        lock.lock();
      }
    }
    // The workers may finish while the callback runs or before the first wait.
    if (opt.progress && !error && reported != total) {
      lock.unlock();
      opt.progress(total, total);
    }
  }
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  double loss = 0.0;
  for (const double l : image_loss) loss += l;
  for (const std::size_t c : chunk_correct) r.correct += c;
  r.accuracy = static_cast<double>(r.correct) / static_cast<double>(total);
  r.mean_cross_entropy = loss / static_cast<double>(total);
  return r;
}

std::function<void(std::size_t, std::size_t)> stderr_progress(std::string label) {
  return [label = std::move(label), last = -1](std::size_t done, std::size_t total) mutable {
    const int pct = static_cast<int>(100 * done / total);
    if (pct / 10 == last / 10 && done != total) return;  // redraw every 10%
    last = pct;
    std::fprintf(stderr, "\r%s: %zu/%zu (%.0f%%)%s", label.c_str(), done, total,
                 100.0 * static_cast<double>(done) / static_cast<double>(total),
                 done == total ? "\n" : "");
    std::fflush(stderr);
  };
}

}  // namespace adaquant::examples
