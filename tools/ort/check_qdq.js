#!/usr/bin/env node
// Runs the QDQ models the exporter's tests leave behind (ADAQUANT_ORT_CASES=<dir>
// test_onnx_export) through ONNX Runtime's CPU provider and compares every output with the
// tests' C++ reference interpreter (or, for "compare_with" cases, with ONNX Runtime's own run of
// the reference model). Prints, per case and output, the largest absolute difference and how many
// values differ at all; exits 1 when a model fails to load or run, or a difference exceeds --tol.
//
//   node tools/ort/check_qdq.js <dir> [--tol 1e-4] [--level disabled|basic|extended|all]
//
// The default level, disabled, runs every node as the graph states it. From 'extended' on, ONNX
// Runtime fuses DequantizeLinear into integer kernels (MatMulNBits for 4-bit weights, QGemm /
// QLinearConv / MatMulIntegerToFloat for 8-bit), whose results differ from the float graph.
//
// Needs the npm package onnxruntime-node (installed with --ignore-scripts: its install script
// fetches optional GPU libraries; the CPU library ships inside the package).
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

function readFloats(file) {
  const b = fs.readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

let level = 'disabled';

async function run(modelFile, feeds, names) {
  const session = await ort.InferenceSession.create(modelFile, { graphOptimizationLevel: level });
  const out = await session.run(feeds, names || session.outputNames);
  return out;
}

function compare(got, want) {
  let maxAbs = 0, differ = 0;
  if (got.length !== want.length) return { maxAbs: Infinity, differ: Math.max(got.length, want.length) };
  for (let i = 0; i < want.length; ++i) {
    const d = Math.abs(got[i] - want[i]);
    if (got[i] !== want[i]) ++differ;
    if (d > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? Infinity : d;
  }
  return { maxAbs, differ };
}

async function main() {
  const args = process.argv.slice(2);
  const dir = args[0];
  const tolIdx = args.indexOf('--tol');
  const tol = tolIdx >= 0 ? Number(args[tolIdx + 1]) : 1e-4;
  const levelIdx = args.indexOf('--level');
  if (levelIdx >= 0) level = args[levelIdx + 1];
  if (!dir) {
    console.error('usage: check_qdq.js <dir> [--tol 1e-4]');
    process.exit(2);
  }
  console.log(`onnxruntime-node ${ort.env.versions.common}, graph optimizations: ${level}`);
  let failed = 0, worst = 0;
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
    const c = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    const feeds = {};
    for (const [name, t] of Object.entries(c.inputs))
      feeds[name] = new ort.Tensor('float32', readFloats(path.join(dir, t.file)), t.shape);
    try {
      const got = await run(path.join(dir, c.model), feeds, c.outputs ? Object.keys(c.outputs) : undefined);
      const want = {};
      if (c.compare_with) {
        const ref = await run(path.join(dir, c.compare_with), feeds);
        for (const [k, v] of Object.entries(ref)) want[k] = v.data;
      } else {
        for (const [k, t] of Object.entries(c.outputs)) want[k] = readFloats(path.join(dir, t.file));
      }
      for (const [k, w] of Object.entries(want)) {
        if (!got[k]) continue;  // the reference model's extra outputs
        const r = compare(got[k].data, w);
        worst = Math.max(worst, r.maxAbs);
        const bad = r.maxAbs > tol;
        failed += bad;
        console.log(`${bad ? 'FAIL' : 'ok  '} ${c.model} ${k}: max |diff| ${r.maxAbs.toExponential(3)}, ` +
                    `${r.differ}/${w.length} values differ`);
      }
    } catch (e) {
      ++failed;
      console.log(`FAIL ${c.model}: ${String(e.message || e).split('\n')[0]}`);
    }
  }
  console.log(`largest difference ${worst.toExponential(3)}; ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main();
