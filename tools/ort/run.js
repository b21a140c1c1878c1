#!/usr/bin/env node
'use strict';
// Runs an ONNX model with ONNX Runtime (CPU, onnxruntime-node pinned in package.json; install with
// tools/ort/install.sh) on every sample of .npy inputs and reports accuracy, logits and latency.
//
//   node tools/ort/run.js --model m.onnx --inputs x.npy|DIR [--labels y.npy] [--batch 64]
//        [--threads 1] [--outputs out.npy] [--compare ref.npy] [--latency] [--warmup 10]
//        [--repeats 100] [--no-spinning] [--level disabled|basic|extended|all]
//        [--matmulnbits-accuracy 0-4] --json out.json
//
// --inputs     one .npy for a single-input model, or a directory holding <input name>.npy for
//              every model input; float32 or int64 (token ids); the first axis is the sample axis
//              and must agree across inputs.
// --labels     int64 [N]: top-1 (argmax of the first output, first index on ties) and the count
//              of correct samples.
// --outputs    writes the first output for all samples as float32 .npy (numpy.save's bytes).
// --compare    float32 .npy of the same shape (e.g. PyTorch's logits): largest absolute
//              difference and how many samples' argmax differ.
// --latency    median wall time of session.run at batch 1 and 64 (the first samples), after
//              --warmup runs, over --repeats runs, with intraOpNumThreads = --threads.
// --level      ORT's graph optimisation level (default all). QDQ models exported by adaquant_ptq
//              compute exactly what adaquant simulated with `disabled` (every node as written);
//              from `basic` on ORT may quantize float biases to int32 and fuse DequantizeLinear +
//              Conv/MatMul into its integer kernels, which round differently.
// --matmulnbits-accuracy N  accuracy level of the MatMulNBits kernels ORT fuses blocked 4-bit
//              DequantizeLinear + MatMul into (session.qdq_matmulnbits_accuracy_level): 0 or 1
//              computes in float32 (the simulation's numbers), 4 (ORT 1.30's default) quantizes the
//              activations to int8 inside the kernel, faster and no longer weight-only.
// --no-spinning  ORT's intra-op threads sleep instead of spin-waiting between ops
//              (session.intra_op.allow_spinning = 0): faster with 2 threads on a busy machine.
// The JSON report holds every figure printed. Exit status: 0 on success, 2 on bad arguments, 1 on
// any other error (unreadable or malformed .npy, model load or run failure).

const fs = require('node:fs');
const path = require('node:path');
const ort = require('onnxruntime-node');
const { NpyError, readNpy, writeNpy } = require('./npy');

const USAGE = 'usage: node tools/ort/run.js --model m.onnx --inputs x.npy|DIR [--labels y.npy] ' +
  '[--batch 64] [--threads 1] [--outputs out.npy] [--compare ref.npy] [--latency] [--warmup 10] ' +
  '[--repeats 100] [--no-spinning] [--level disabled|basic|extended|all] ' +
  '[--matmulnbits-accuracy 0-4] --json out.json';

class UsageError extends Error {}

function parseArgs(argv) {
  const a = { batch: 64, threads: 1, warmup: 10, repeats: 100, latency: false, spinning: true,
    level: 'all' };
  const strings = ['model', 'inputs', 'labels', 'outputs', 'compare', 'json', 'level',
    'matmulnbits-accuracy'];
  const counts = ['batch', 'threads', 'warmup', 'repeats'];
  for (let i = 0; i < argv.length; ++i) {
    const flag = argv[i], name = flag.replace(/^--/, '');
    if (flag === '--latency') { a.latency = true; continue; }
    if (flag === '--no-spinning') { a.spinning = false; continue; }
    if (!flag.startsWith('--') || !(strings.includes(name) || counts.includes(name)))
      throw new UsageError(`unknown argument '${flag}'`);
    if (i + 1 >= argv.length) throw new UsageError(`${flag} needs a value`);
    const v = argv[++i];
    if (counts.includes(name)) {
      if (!/^[0-9]+$/.test(v) || Number(v) < (name === 'warmup' ? 0 : 1))
        throw new UsageError(`${flag}: expected a positive integer, got '${v}'`);
      a[name] = Number(v);
    } else if (name === 'matmulnbits-accuracy') {
      if (!/^[0-4]$/.test(v)) throw new UsageError(`${flag}: expected 0, 1, 2, 3 or 4, got '${v}'`);
      a.matmulnbitsAccuracy = v;
    } else {
      a[name] = v;
    }
  }
  if (!['disabled', 'basic', 'extended', 'all'].includes(a.level))
    throw new UsageError(`--level: expected disabled, basic, extended or all, got '${a.level}'`);
  for (const required of ['model', 'inputs', 'json'])
    if (!a[required]) throw new UsageError(`--${required} is required`);
  return a;
}

// name -> { dtype, shape, data } for every model input.
function loadInputs(session, where) {
  const names = session.inputNames;
  let arrays;
  if (fs.statSync(where).isDirectory()) {
    arrays = Object.fromEntries(names.map((n) => [n, readNpy(path.join(where, `${n}.npy`))]));
  } else {
    if (names.length !== 1)
      throw new UsageError(`the model has ${names.length} inputs (${names.join(', ')}): pass a directory of <name>.npy`);
    arrays = { [names[0]]: readNpy(where) };
  }
  const counts = new Set(Object.values(arrays).map((x) => (x.shape.length ? x.shape[0] : -1)));
  if (counts.size !== 1 || counts.has(-1))
    throw new NpyError(`${where}: every input needs the same first (sample) axis, got ${[...counts]}`);
  return arrays;
}

// Samples [begin, end) of every input as ORT tensors.
function feeds(arrays, begin, end) {
  const out = {};
  for (const [name, x] of Object.entries(arrays)) {
    const per = x.shape.slice(1).reduce((p, d) => p * d, 1);
    out[name] = new ort.Tensor(x.dtype, x.data.slice(begin * per, end * per), [end - begin, ...x.shape.slice(1)]);
  }
  return out;
}

function argmax(data, offset, k) {
  let best = 0;
  for (let j = 1; j < k; ++j) if (data[offset + j] > data[offset + best]) best = j;
  return best;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function timeBatch(session, arrays, batch, warmup, repeats) {
  const f = feeds(arrays, 0, batch);
  for (let i = 0; i < warmup; ++i) await session.run(f);
  const ms = [];
  for (let i = 0; i < repeats; ++i) {
    const t0 = process.hrtime.bigint();
    await session.run(f);
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const s = [...ms].sort((a, b) => a - b);
  return {
    batch, median_ms: median(ms), min_ms: s[0], p90_ms: s[Math.min(s.length - 1, Math.floor(0.9 * s.length))],
    median_ms_per_sample: median(ms) / batch,
  };
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const session = await ort.InferenceSession.create(a.model, {
    intraOpNumThreads: a.threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: a.level,
    extra: { session: Object.assign({ intra_op: { allow_spinning: a.spinning ? '1' : '0' } },
      a.matmulnbitsAccuracy === undefined ? {} :
        { qdq_matmulnbits_accuracy_level: a.matmulnbitsAccuracy }) },
  });
  const arrays = loadInputs(session, a.inputs);
  const n = Object.values(arrays)[0].shape[0];
  const outName = session.outputNames[0];
  const report = {
    model: a.model, inputs: a.inputs, onnxruntime: ort.env.versions.node,
    input_names: session.inputNames, output_name: outName, samples: n, batch: a.batch,
    threads: a.threads, spinning: a.spinning, graph_optimization_level: a.level,
  };

  let logits = null, outShape = null;
  const t0 = process.hrtime.bigint();
  for (let b = 0; b < n; b += a.batch) {
    const e = Math.min(n, b + a.batch);
    const y = (await session.run(feeds(arrays, b, e)))[outName];
    if (y.type !== 'float32') throw new Error(`output ${outName} is ${y.type}, expected float32`);
    if (!logits) {
      outShape = [n, ...y.dims.slice(1)];
      logits = new Float32Array(outShape.reduce((p, d) => p * d, 1));
    }
    const per = logits.length / n;
    if (y.data.length !== (e - b) * per) throw new Error(`output ${outName}: unexpected shape [${y.dims}]`);
    logits.set(y.data, b * per);
  }
  report.output_shape = outShape;
  report.seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const k = logits.length / n;

  if (a.outputs) {
    writeNpy(a.outputs, 'float32', outShape, logits);
    report.outputs = a.outputs;
  }
  if (a.labels) {
    const y = readNpy(a.labels);
    if (y.dtype !== 'int64' || y.shape.length !== 1 || y.shape[0] !== n)
      throw new NpyError(`${a.labels}: expected int64 [${n}], got ${y.dtype} [${y.shape}]`);
    let correct = 0;
    for (let i = 0; i < n; ++i) if (BigInt(argmax(logits, i * k, k)) === y.data[i]) ++correct;
    report.correct = correct;
    report.top1 = correct / n;
  }
  if (a.compare) {
    const r = readNpy(a.compare);
    if (r.dtype !== 'float32' || r.shape.join() !== outShape.join())
      throw new NpyError(`${a.compare}: expected float32 [${outShape}], got ${r.dtype} [${r.shape}]`);
    let maxDiff = 0, mismatches = 0;
    for (let i = 0; i < logits.length; ++i) maxDiff = Math.max(maxDiff, Math.abs(logits[i] - r.data[i]));
    for (let i = 0; i < n; ++i) if (argmax(logits, i * k, k) !== argmax(r.data, i * k, k)) ++mismatches;
    report.compare = { reference: a.compare, max_abs_diff: maxDiff, argmax_mismatches: mismatches };
  }
  if (a.latency) {
    report.latency = { threads: a.threads, warmup: a.warmup, repeats: a.repeats, batches: [] };
    for (const b of [1, 64]) {
      if (b > n) continue;
      report.latency.batches.push(await timeBatch(session, arrays, b, a.warmup, a.repeats));
    }
  }
  fs.writeFileSync(a.json, JSON.stringify(report, null, 1) + '\n');
  const parts = [`${path.basename(a.model)}: ${n} samples`];
  if ('correct' in report) parts.push(`${report.correct} correct (top-1 ${(100 * report.top1).toFixed(2)}%)`);
  if (report.compare) parts.push(`max |diff| ${report.compare.max_abs_diff.toExponential(2)}, ${report.compare.argmax_mismatches} argmax mismatches`);
  for (const l of report.latency ? report.latency.batches : [])
    parts.push(`batch ${l.batch}: median ${l.median_ms.toFixed(3)} ms`);
  console.log(parts.join(', ') + ` (threads ${a.threads})`);
  await session.release();
}

main().catch((e) => {
  console.error(`run.js: ${e.message}`);
  if (e instanceof UsageError) console.error(USAGE);
  process.exit(e instanceof UsageError ? 2 : 1);
});
