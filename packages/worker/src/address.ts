/** Turns "host:port", "[::1]:7070" or "ws://host:port" into the master's worker URL. */
export function parseMasterAddress(text: string): { ok: true; url: string } | { ok: false; error: string } {
  const withScheme = /^wss?:\/\//.test(text) ? text : `ws://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    return { ok: false, error: `invalid --master ${JSON.stringify(text)}: expected HOST:PORT` };
  }
  if (!url.hostname || !url.port) return { ok: false, error: `invalid --master ${JSON.stringify(text)}: expected HOST:PORT, e.g. 10.0.0.5:7070` };
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/worker';
  return { ok: true, url: url.toString() };
}
