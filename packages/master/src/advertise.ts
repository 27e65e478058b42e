import os from 'node:os';

/** HOST:PORT a VM should dial: --advertise, else the bound host, else this machine's first external IPv4. */
export function advertise(given: string | undefined, host: string, port: number): string {
  if (given) return withPort(given, port);
  return `${advertisedHost(host)}:${port}`;
}

/** HOST, HOST:PORT, [V6] or [V6]:PORT → HOST:PORT with `port` where none was given. */
export function withPort(given: string, port: number): string {
  if (given.startsWith('[')) return /\]:\d+$/.test(given) ? given : `${given}:${port}`;
  if (given.includes(':') && given.split(':').length > 2) return `[${given}]:${port}`; // a bare IPv6 address
  return given.includes(':') ? given : `${given}:${port}`;
}

function advertisedHost(host: string): string {
  if (host !== '0.0.0.0' && host !== '::') return host.includes(':') ? `[${host}]` : host;
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}
