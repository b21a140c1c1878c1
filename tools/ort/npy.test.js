'use strict';
// node --test tools/ort: the .npy reader accepts what numpy.save writes and rejects malformed
// files with a message naming the file and the rule (the same cases as tests/runtime for C++).
const test = require('node:test');
const assert = require('node:assert');
const { parseNpy, npyBytes } = require('./npy');

function npyFile(dict, data, major = 1, raw = false) {
  const h = Buffer.from(raw ? dict : `${dict}   \n`, 'latin1');
  const len = Buffer.alloc(major === 1 ? 2 : 4);
  if (major === 1) len.writeUInt16LE(h.length); else len.writeUInt32LE(h.length);
  return Buffer.concat([Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]), len, h, data]);
}
const f4 = (shape) => `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
const d8 = Buffer.from(new Float32Array([1, 2]).buffer);

test('npyBytes writes what numpy.save writes and parseNpy reads it back', () => {
  const b = npyBytes('float32', [3], new Float32Array([1.5, -2, 0.25]));
  const dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
  assert.strictEqual(b.length, 128 + 12);
  assert.deepStrictEqual([...b.subarray(0, 10)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 118, 0]);
  assert.strictEqual(b.toString('latin1', 10, 128), dict + ' '.repeat(117 - dict.length) + '\n');
  const a = parseNpy(b, 'mem');
  assert.deepStrictEqual(a.shape, [3]);
  assert.deepStrictEqual([...a.data], [1.5, -2, 0.25]);
  const l = parseNpy(npyBytes('int64', [2, 2], new BigInt64Array([0n, -1n, 1n << 40n, 9n])), 'mem');
  assert.strictEqual(l.dtype, 'int64');
  assert.deepStrictEqual([...l.data], [0n, -1n, 1n << 40n, 9n]);
  assert.deepStrictEqual([...parseNpy(npyBytes('float32', [], new Float32Array([7])), 'm').data], [7]);
  assert.deepStrictEqual(parseNpy(npyBytes('float32', [2, 0, 3], new Float32Array(0)), 'm').shape, [2, 0, 3]);
  const v2 = parseNpy(npyFile("{'shape':(1,2),'fortran_order':False,'descr':'<f4'}", d8, 2), 'm');
  assert.deepStrictEqual([...v2.data], [1, 2]);
});

test('parseNpy rejects malformed files naming the file and the rule', () => {
  const bad = (b, part) => assert.throws(() => parseNpy(b, 'x.npy'), (e) => {
    assert.ok(e.message.startsWith('x.npy: '), e.message);
    assert.ok(e.message.includes(part), `"${e.message}" lacks "${part}"`);
    return true;
  });
  const dict = (descr, fortran, shape) => `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}}`;
  const good = npyFile(f4('(2,)'), d8);
  parseNpy(good, 'x.npy');
  bad(good.subarray(0, 9), 'truncated');
  let b = Buffer.from(good); b[1] = 0x6e; bad(b, 'bad magic');
  b = Buffer.from(good); b[6] = 3; bad(b, 'unsupported format version 3.0');
  b = Buffer.from(good); b[7] = 1; bad(b, 'unsupported format version 1.1');
  bad(npyFile(f4('(2,)'), d8, 2).subarray(0, 11), 'no header length');
  b = Buffer.from(good); b[9] = 0x7f; bad(b, 'truncated: the header declares');
  bad(npyFile(f4('(2,)'), d8, 1, true), "one '\\n'");
  bad(npyFile(f4('(2,)') + 'x', d8), "one '\\n'");
  bad(npyFile("{'descr': '<f4', 'shape': (2,)}", d8), "needs 'descr', 'fortran_order' and 'shape'");
  bad(npyFile("{'x': 1, " + f4('(2,)').slice(1), d8), "unexpected or repeated key 'x'");
  bad(npyFile("{'descr': '<f4', 'descr': '<f4'}", d8), "repeated key 'descr'");
  bad(npyFile('{"descr": \'<f4\'}', d8), "expected '''");
  bad(npyFile("{'descr': '<f\x01'}", d8), 'unsupported character');
  bad(npyFile("{'descr' '<f4'}", d8), "expected ':'");
  bad(npyFile("{'descr': '<f4' 'shape': (2,)}", d8), "expected ',' or '}'");
  bad(npyFile(dict('<f4', 'false', '(2,)'), d8), 'expected False or True');
  bad(npyFile(dict('<f4', 'True', '(2,)'), d8), 'fortran_order True');
  for (const descr of ['<f8', '>f4', '|u1', '']) bad(npyFile(dict(descr, 'False', '(2,)'), d8), `element type '${descr}'`);
  bad(npyFile(f4('(2)'), d8), 'one-element shape is written (n,)');
  bad(npyFile(f4('(-2,)'), d8), 'expected a non-negative integer');
  bad(npyFile(f4('(02,)'), d8), 'leading zero');
  bad(npyFile(f4('(2 1)'), d8), "expected ',' or ')'");
  bad(npyFile(f4('(2,'), d8), 'header at byte');
  bad(npyFile(f4('[2]'), d8), "expected '('");
  bad(npyFile(f4('(99999999999999999999999,)'), d8), 'dimension overflows');
  bad(npyFile(f4(`(${'1, '.repeat(33)})`), d8), 'rank exceeds 32');
  bad(npyFile(f4('(1000000000, 1000000000)'), d8),
    'truncated: shape (1000000000, 1000000000) needs 4000000000000000000 data bytes');
  bad(npyFile(f4('(3,)'), d8), 'truncated: shape (3,) needs 12');
  bad(npyFile(f4('(1,)'), d8), 'trailing data: shape (1,) needs 4');
  bad(npyFile(f4('(2, 0)'), d8), 'trailing data');
});
