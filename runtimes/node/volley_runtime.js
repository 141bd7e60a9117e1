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

// A frame: `parts` are u64 (bigint), u32 (number) or text, in the kind's order.
function encode(kind, parts) {
  const chunks = [Buffer.from([kind])];
  for (const part of parts) {
    if (typeof part === 'bigint') {
      const b = Buffer.alloc(8);
      b.writeBigUInt64BE(part);
      chunks.push(b);
    } else if (typeof part === 'number') {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(part);
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

function sendTo(fd, kind, ...parts) {
  const frame = encode(kind, parts);
  let off = 0;
  while (off < frame.length) {
    try {
      off += fs.writeSync(fd, frame, off);
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

// Frames arrive on `input`; each whole one is handed to `onFrame` in order, and the next
// is not read until the promise it returns settles: one task at a time. `onEnd` runs once
// the stream has ended and the last frame is done.
function frames(input, onFrame, onEnd) {
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
  input.on('end', () => chain.then(onEnd));
}

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

// What one conversation holds: where its frames go, its handler once INIT loaded it, and
// what a protocol error does (the worker's conversation exits the process).
function conversation(out, quit) {
  return { out, quit, handler: null, warming: quit === null };
}

async function onFrame(rt, kind, fields) {
  const fail = (code) => (rt.quit ? rt.quit(code) : undefined);
  if (rt.handler === null) {
    if (kind !== INIT) return fail(2);
    const protocol = fields.u32();
    // A prewarmed runtime was started before its function was known.
    const functionName = fields.text();
    if (!rt.warming) process.env.VOLLEY_FUNCTION = functionName;
    const name = fields.text() || 'handle';
    const code = fields.text();
    if (protocol !== PROTOCOL_VERSION) {
      sendTo(rt.out, INIT_FAILED, 'ProtocolMismatch', `runtime speaks ${PROTOCOL_VERSION}, worker ${protocol}`, '');
      return fail(2);
    }
    const started = process.hrtime.bigint();
    try {
      const mod = require(code);
      const fn = mod[name.split('.').pop()];
      if (typeof fn !== 'function') throw new TypeError(`the code exports no function "${name}"`);
      rt.handler = fn;
    } catch (e) {
      sendTo(rt.out, INIT_FAILED, ...failure(e));
      return fail(1);
    }
    const initUs = (process.hrtime.bigint() - started) / 1000n;
    sendTo(rt.out, READY, 'node', process.versions.node, initUs);
    return undefined;
  }
  if (kind !== INVOKE) return fail(2);
  const taskId = fields.u64();
  fields.u32();
  fields.u64();
  const args = fields.text();
  try {
    const value = await rt.handler(JSON.parse(args));
    const result = JSON.stringify(value === undefined ? null : value);
    await flush();
    sendTo(rt.out, RESULT, taskId, result);
  } catch (e) {
    await flush();
    sendTo(rt.out, ERROR, taskId, ...failure(e));
  }
  return undefined;
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

// A runtime started ahead of its code (`VOLLEY_FUNCTION` empty) has time to spare until
// INIT comes, so it holds one whole conversation with itself first: an INIT for an empty
// module of its own and one INVOKE, through a stream handle like descriptor 3, the same
// functions, and replies written to /dev/null. Node compiles on first use and V8 fills
// its inline caches on first runs: measured on a prewarmed runtime, INIT to READY spent
// 0.3-0.4 ms before the frame reached `onFrame`, 0.4-0.7 ms in `require` of an empty
// module and 0.2-0.4 ms in the first write. Nothing of it stays behind.
function warmAhead() {
  const path = require('path');
  const dir = process.cwd();
  const warmModule = path.join(dir, '.volley-warm.js');
  const socket = path.join(dir, '.volley-warm.sock');
  let nowhere = null;
  let finished = false;
  // Once, whichever way the conversation ends; nothing of it may take the runtime down.
  const done = () => {
    if (finished) return;
    finished = true;
    server.close();
    try { delete require.cache[require.resolve(warmModule)]; } catch (_) { /* never loaded */ }
    fs.unlink(socket, () => {});
    fs.unlink(warmModule, () => {});
    if (nowhere !== null) fs.close(nowhere, () => {});
  };
  const server = net.createServer((peer) => {
    peer.on('error', done);
    peer.end(Buffer.concat([
      encode(INIT, [PROTOCOL_VERSION, '', 'handle', warmModule]),
      encode(INVOKE, [1n, 0, 0n, '{}']),
    ]));
  });
  server.on('error', done);
  try {
    fs.writeFileSync(warmModule, 'exports.handle = async () => null;\n');
    nowhere = fs.openSync('/dev/null', 'w');
  } catch (_) {
    done();
    return;
  }
  const rt = conversation(nowhere, null);
  server.listen(socket, () => {
    const reader = net.connect(socket);
    reader.on('error', done);
    frames(reader, (kind, fields) => onFrame(rt, kind, fields).catch(done), done);
  });
}

warm();
const worker = conversation(4, (code) => process.exit(code));
if (!process.env.VOLLEY_FUNCTION) warmAhead();
// A pipe handle on the event loop (epoll), not a file stream read on the thread pool.
frames(
  new net.Socket({ fd: 3, readable: true, writable: false }),
  (kind, fields) => onFrame(worker, kind, fields),
  () => process.exit(0),
);
