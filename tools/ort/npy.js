'use strict';
// NumPy .npy files for tools/ort: float32 ('<f4') and int64 ('<i8'), little-endian, C order.
// The reader is strict and accepts what adaquant's C++ reader (examples/runtime npy.hpp) accepts:
// format 1.0 or 2.0; a header dict with exactly 'descr', 'fortran_order' (False) and 'shape' (a
// Python tuple of non-negative integers, rank <= 32) ending in '\n'; exactly product(shape) *
// itemsize data bytes, checked before anything is allocated. The writer makes what numpy.save
// (numpy >= 1.23) makes, byte for byte.

const fs = require('node:fs');
const os = require('node:os');

// Typed arrays use the host's byte order; .npy here is little-endian.
if (os.endianness() !== 'LE') throw new Error('tools/ort/npy.js needs a little-endian host');

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);  // \x93NUMPY
const DTYPES = {
  '<f4': { type: 'float32', bytes: 4, array: Float32Array },
  '<i8': { type: 'int64', bytes: 8, array: BigInt64Array },
};
const MAX_RANK = 32;

class NpyError extends Error {}

function parseHeader(text, fail) {
  let i = 0;
  const peek = () => text[i];
  const spaces = () => { while (text[i] === ' ') ++i; };
  const expect = (c) => { if (text[i] !== c) fail(`header at byte ${i}: expected '${c}'`); ++i; };
  const string = () => {
    expect("'");
    const b = i;
    while (i < text.length && text[i] !== "'") {
      const c = text.charCodeAt(i);
      if (c < 0x20 || c > 0x7e || c === 0x5c) fail(`header at byte ${i}: unsupported character`);
      ++i;
    }
    expect("'");
    return text.slice(b, i - 1);
  };
  const keyword = () => {
    for (const [w, v] of [['False', false], ['True', true]])
      if (text.startsWith(w, i)) { i += w.length; return v; }
    return fail(`header at byte ${i}: expected False or True`);
  };
  const integer = () => {
    const m = /^[0-9]+/.exec(text.slice(i, i + 40));
    if (!m) fail(`header at byte ${i}: expected a non-negative integer`);
    if (m[0].length > 1 && m[0][0] === '0') fail(`header at byte ${i}: leading zero in a dimension`);
    const v = BigInt(m[0]);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`header at byte ${i}: dimension overflows`);
    i += m[0].length;
    return Number(v);
  };
  const shape = () => {
    const dims = [];
    let comma = false;
    expect('(');
    spaces();
    while (peek() !== ')') {
      if (dims.length === MAX_RANK) fail(`header at byte ${i}: rank exceeds ${MAX_RANK}`);
      dims.push(integer());
      spaces();
      comma = peek() === ',';
      if (comma) { ++i; spaces(); } else if (peek() !== ')') fail(`header at byte ${i}: expected ',' or ')' in the shape`);
    }
    if (dims.length === 1 && !comma) fail(`header at byte ${i}: a one-element shape is written (n,)`);
    ++i;
    return dims;
  };

  const r = {};
  expect('{');
  for (;;) {
    spaces();
    if (peek() === '}') break;
    const key = string();
    spaces();
    expect(':');
    spaces();
    if (key === 'descr' && !('descr' in r)) r.descr = string();
    else if (key === 'fortran_order' && !('fortran' in r)) r.fortran = keyword();
    else if (key === 'shape' && !('shape' in r)) r.shape = shape();
    else fail(`header at byte ${i}: unexpected or repeated key '${key}'`);
    spaces();
    if (peek() === ',') { ++i; continue; }
    if (peek() !== '}') fail(`header at byte ${i}: expected ',' or '}'`);
  }
  ++i;
  spaces();
  if (!(i + 1 === text.length && text[i] === '\n'))
    fail(`header at byte ${i}: the header must end with spaces and one '\\n' after the dict`);
  if (!('descr' in r && 'fortran' in r && 'shape' in r))
    fail("header: the dict needs 'descr', 'fortran_order' and 'shape'");
  if (r.fortran) fail('header: fortran_order True is not supported (C order only)');
  return r;
}

// Parses a .npy file held in a Buffer: { dtype: 'float32'|'int64', shape: [..], data: typed array }.
function parseNpy(buf, source) {
  const fail = (why) => { throw new NpyError(`${source}: ${why}`); };
  if (buf.length < 10) fail(`truncated: ${buf.length} bytes, a .npy file has >= 10`);
  if (!buf.subarray(0, 6).equals(MAGIC)) fail('bad magic (expected \\x93NUMPY)');
  const major = buf[6], minor = buf[7];
  if (!((major === 1 || major === 2) && minor === 0))
    fail(`unsupported format version ${major}.${minor} (1.0 and 2.0 only)`);
  const lenBytes = major === 1 ? 2 : 4;
  if (buf.length < 8 + lenBytes) fail('truncated: no header length');
  const headerLen = lenBytes === 2 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  if (headerLen > buf.length - 8 - lenBytes)
    fail(`truncated: the header declares ${headerLen} bytes, ${buf.length - 8 - lenBytes} follow`);
  const text = buf.toString('latin1', 8 + lenBytes, 8 + lenBytes + headerLen);
  const h = parseHeader(text, fail);
  const dt = DTYPES[h.descr];
  if (!dt) fail(`element type '${h.descr}', expected '<f4' or '<i8'`);
  const repr = `(${h.shape.join(', ')}${h.shape.length === 1 ? ',' : ''})`;
  const count = h.shape.reduce((a, d) => a * BigInt(d), 1n);
  const need = count * BigInt(dt.bytes);
  const offset = 8 + lenBytes + headerLen, have = BigInt(buf.length - offset);
  if (have < need) fail(`truncated: shape ${repr} needs ${need} data bytes, ${have} present`);
  if (have > need) fail(`trailing data: shape ${repr} needs ${need} data bytes, ${have} present`);
  // Copy into an aligned typed array (the data offset need not be a multiple of 8).
  const data = new dt.array(Number(count));
  Buffer.from(data.buffer).set(buf.subarray(offset));
  return { dtype: dt.type, shape: h.shape, data };
}

function readNpy(path) {
  let buf;
  try {
    buf = fs.readFileSync(path);
  } catch (e) {
    throw new NpyError(`${path}: cannot read: ${e.code || e.message}`);
  }
  return parseNpy(buf, path);
}

// What numpy.save writes for a float32 or int64 array of `shape`.
function npyBytes(dtype, shape, data) {
  const descr = Object.keys(DTYPES).find((k) => DTYPES[k].type === dtype);
  if (!descr) throw new NpyError(`npyBytes: unsupported dtype ${dtype}`);
  const count = shape.reduce((a, d) => a * d, 1);
  if (count !== data.length) throw new NpyError(`npyBytes: shape [${shape}] does not hold ${data.length} values`);
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  if (shape.length > 0) dict += ' '.repeat(21 - String(shape[0]).length);
  const pad = 64 - ((10 + dict.length + 1) % 64);
  const header = Buffer.alloc(10);
  MAGIC.copy(header);
  header[6] = 1;
  header.writeUInt16LE(dict.length + pad + 1, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.concat([header, Buffer.from(dict + ' '.repeat(pad) + '\n', 'latin1'), body]);
}

function writeNpy(path, dtype, shape, data) {
  fs.writeFileSync(path, npyBytes(dtype, shape, data));
}

module.exports = { NpyError, parseNpy, readNpy, npyBytes, writeNpy };
