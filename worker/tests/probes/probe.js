// A Node function that does what its event asks; the same probe exists in every language.
exports.handle = async (event) => {
  if ('echo' in event) return event.echo;
  if ('raise' in event) throw new RangeError(event.raise);
  if ('crash' in event) process.kill(process.pid, 'SIGSEGV');
  if ('exit' in event) process.exit(event.exit);
  if ('alloc_mb' in event) {
    const blocks = [];
    for (let i = 0; i < event.alloc_mb; i++) blocks.push(Buffer.alloc(1 << 20, 1));
    globalThis.keep = blocks;
  }
  if ('sleep_ms' in event) await new Promise((r) => setTimeout(r, event.sleep_ms));
  if ('print' in event) process.stdout.write('x'.repeat(event.print));
  if ('env' in event) return process.env[event.env] === undefined ? null : process.env[event.env];
  if ('fds' in event) return require('fs').readdirSync('/proc/self/fd').map(Number).sort((a, b) => a - b);
  if ('ls' in event) return require('fs').readdirSync('.').sort();
  return null;
};
