'use strict';
// node --test tools/ort: run.js end to end on a few images (skipped until tools/ort/install.sh ran).
const test = require('node:test');
const assert = require('node:assert');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { npyBytes, readNpy } = require('./npy');

const installed = fs.existsSync(path.join(__dirname, 'node_modules', 'onnxruntime-node'));
const model = path.join(__dirname, '..', '..', 'models', 'resnet_fm.onnx');
const run = (...args) => spawnSync(process.execPath, [path.join(__dirname, 'run.js'), ...args], { encoding: 'utf8' });

test('run.js: logits, labels, latency and its error exits', { skip: !installed && 'run tools/ort/install.sh' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adaquant_ort_'));
  const x = new Float32Array(3 * 784).map((_, i) => Math.sin(i) * 2);
  fs.writeFileSync(path.join(dir, 'x.npy'), npyBytes('float32', [3, 1, 28, 28], x));
  fs.writeFileSync(path.join(dir, 'y.npy'), npyBytes('int64', [3], new BigInt64Array([0n, 1n, 2n])));
  const out = path.join(dir, 'out.npy'), json = path.join(dir, 'r.json');
  const r = run('--model', model, '--inputs', path.join(dir, 'x.npy'), '--labels', path.join(dir, 'y.npy'),
    '--batch', '2', '--outputs', out, '--compare', out, '--latency', '--warmup', '0', '--repeats', '3',
    '--json', json);
  assert.strictEqual(r.status, 0, r.stderr);
  const rep = JSON.parse(fs.readFileSync(json, 'utf8'));
  assert.deepStrictEqual(rep.output_shape, [3, 10]);
  assert.ok(rep.correct >= 0 && rep.correct <= 3);
  assert.deepStrictEqual(readNpy(out).shape, [3, 10]);
  assert.strictEqual(rep.compare.max_abs_diff, 0);  // --compare read the file --outputs wrote
  assert.deepStrictEqual(rep.latency.batches.map((b) => b.batch), [1]);  // 64 > 3 samples
  // Batching does not change the logits.
  const r1 = run('--model', model, '--inputs', path.join(dir, 'x.npy'), '--batch', '1', '--compare', out, '--json', json);
  assert.strictEqual(r1.status, 0, r1.stderr);
  assert.ok(JSON.parse(fs.readFileSync(json, 'utf8')).compare.max_abs_diff < 1e-5);

  assert.strictEqual(run('--model', model, '--json', json).status, 2);
  assert.strictEqual(run('--model', model, '--inputs', out, '--batch', 'x', '--json', json).status, 2);
  const acc = run('--model', model, '--inputs', out, '--matmulnbits-accuracy', '5', '--json', json);
  assert.strictEqual(acc.status, 2);
  assert.match(acc.stderr, /--matmulnbits-accuracy: expected 0, 1, 2, 3 or 4, got '5'/);
  const acc0 = run('--model', model, '--inputs', path.join(dir, 'x.npy'), '--matmulnbits-accuracy', '0',
    '--compare', out, '--json', json);
  assert.strictEqual(acc0.status, 0, acc0.stderr);  // a model without MatMulNBits: same logits
  assert.strictEqual(JSON.parse(fs.readFileSync(json, 'utf8')).compare.max_abs_diff, 0);
  fs.writeFileSync(path.join(dir, 'bad.npy'), npyBytes('float32', [3, 1, 28, 28], x).subarray(0, 200));
  const bad = run('--model', model, '--inputs', path.join(dir, 'bad.npy'), '--json', json);
  assert.strictEqual(bad.status, 1);
  assert.match(bad.stderr, /bad\.npy: truncated/);
  fs.rmSync(dir, { recursive: true });
});
