// The Volley runtime for Node.js: loads a user's function and runs one task at a time.
//
// Speaks the protocol of docs/runtime-protocol.md on descriptors 3 (frames in) and 4
// (frames out); stdout and stderr stay the user's and become the task's log. The code is
// a CommonJS `.js` file whose `exports[handler]` (default `handle`) may be async.
'use strict';

const fs = require('fs');
const net = require('net');

const PROTOCOL_VERSION = 1;
const MAX_FRAME_BYTES = 8 * 1024 * 1024;
const INIT = 1, READY = 2, INIT_FAILED = 3, INVOKE = 4, RESULT = 5, ERROR = 6;

function encode(kind, parts) {
  const chunks = [Buffer.from([kind])];
  for (const part of parts) {
    if (typeof part === 'bigint') {
      const b = Buffer.alloc(8);
      b.writeBigUInt64BE(part);
      chunks.push(b);
    } else {
      const data = Buffer.from(String(part), 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32BE(data.length);
      chunks.push(len, data);
    }
  }
  const body = Buffer.concat(chunks);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

function send(kind, ...parts) {
  const frame = encode(kind, parts);
  let off = 0;
  while (off < frame.length) {
    try {
      off += fs.writeSync(4, frame, off);
    } catch (e) {
      if (e.code !== 'EAGAIN') throw e;
    }
  }
}

class Fields {
  constructor(body) { this.body = body; this.pos = 1; }
  u32() { const v = this.body.readUInt32BE(this.pos); this.pos += 4; return v; }
  u64() { const v = this.body.readBigUInt64BE(this.pos); this.pos += 8; return v; }
  text() {
    const n = this.u32();
    const v = this.body.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
}

function failure(err) {
  if (err instanceof Error) {
    return [err.constructor && err.constructor.name || 'Error', err.message, err.stack || ''];
  }
  return ['Error', String(err), ''];
}

// Frames arrive on descriptor 3; each whole one is handed to `onFrame` in order, and the
// next is not read until the promise it returns settles: one task at a time.
function frames(onFrame) {
  // A pipe handle on the event loop (epoll), not a file stream read on the thread pool.
  const input = new net.Socket({ fd: 3, readable: true, writable: false });
  let buf = Buffer.alloc(0);
  let chain = Promise.resolve();
  input.on('data', (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    for (;;) {
      if (buf.length < 4) return;
      const len = buf.readUInt32BE(0);
      if (len === 0 || len > MAX_FRAME_BYTES) process.exit(2);
      if (buf.length < 4 + len) return;
      const body = buf.subarray(4, 4 + len);
      buf = buf.subarray(4 + len);
      chain = chain.then(() => onFrame(body[0], new Fields(body)));
    }
  });
  input.on('end', () => chain.then(() => process.exit(0)));
}

let handler = null;

// Output still queued in a stream is written before the answer, so it belongs to the
// task that printed it (a pipe's writes may be queued while the other end is slow).
function flushed(stream) {
  if (!stream.writableLength) return null;
  return new Promise((resolve) => stream.write('', resolve));
}

async function flush() {
  await flushed(process.stdout);
  await flushed(process.stderr);
}

async function onFrame(kind, fields) {
  if (handler === null) {
    if (kind !== INIT) process.exit(2);
    const protocol = fields.u32();
    // A prewarmed runtime was started before its function was known.
    process.env.VOLLEY_FUNCTION = fields.text();
    const name = fields.text() || 'handle';
    const code = fields.text();
    if (protocol !== PROTOCOL_VERSION) {
      send(INIT_FAILED, 'ProtocolMismatch', `runtime speaks ${PROTOCOL_VERSION}, worker ${protocol}`, '');
      process.exit(2);
    }
    const started = process.hrtime.bigint();
    try {
      const mod = require(code);
      const fn = mod[name.split('.').pop()];
      if (typeof fn !== 'function') throw new TypeError(`the code exports no function "${name}"`);
      handler = fn;
    } catch (e) {
      send(INIT_FAILED, ...failure(e));
      process.exit(1);
    }
    const initUs = (process.hrtime.bigint() - started) / 1000n;
    send(READY, 'node', process.versions.node, initUs);
    return;
  }
  if (kind !== INVOKE) process.exit(2);
  const taskId = fields.u64();
  fields.u32();
  fields.u64();
  const args = fields.text();
  try {
    const value = await handler(JSON.parse(args));
    const result = JSON.stringify(value === undefined ? null : value);
    await flush();
    send(RESULT, taskId, result);
  } catch (e) {
    await flush();
    send(ERROR, taskId, ...failure(e));
  }
}

// Functions are compiled on their first call: one pass through what serving a function
// runs (a frame encoded and decoded, JSON, the clock, the output streams) before INIT
// arrives, so a prewarmed runtime has it done before its code comes.
function warm() {
  const frame = encode(INVOKE, [1n, '{"a":[1]}']);
  const fields = new Fields(frame.subarray(4));
  fields.u64();
  JSON.stringify(JSON.parse(fields.text()));
  process.hrtime.bigint();
  void process.stdout.writableLength;
  void process.stderr.writableLength;
  require.resolve(__filename);
}

warm();
frames(onFrame);
