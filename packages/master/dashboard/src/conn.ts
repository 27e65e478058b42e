/**
 * The operator protocol as the dashboard speaks it: one WebSocket to /operator, the token
 * offered as a subprotocol, command lines run one at a time with --json answers. A command
 * that follows (logs --follow, events --follow) gets a connection of its own, so polling goes
 * on beside it. The dashboard names no files: a file ask is refused.
 */

import { OutputParts } from '@drover/protocol';

interface Outcome {
  ok: boolean;
  output: string;
  stderr?: string;
}

type Reply =
  | { type: 'out'; text: string }
  /** A piece of results[index]'s output (or stderr), which the done then carries empty. */
  | { type: 'part'; index: number; field?: 'output' | 'stderr'; text: string }
  | { type: 'done'; ok: boolean; results: Outcome[] }
  | { type: 'error'; error: { code: string; message: string } }
  | { type: 'notice'; text: string }
  | { type: 'file'; id: number }
  | { type: 'file-ack' };

interface Pending {
  line: string;
  json: boolean;
  onOut?: (text: string) => void;
  /** The parts of its results so far. */
  parts?: OutputParts;
  resolve(results: Outcome[]): void;
  reject(err: Error): void;
}

export type ConnState = 'connecting' | 'open' | 'closed';

const V = 1;

/** A command failed: its one-line message, as drover prints it. */
export class CommandError extends Error {}

export class Conn {
  private ws: WebSocket | null = null;
  private readonly queue: Pending[] = [];
  private current: Pending | null = null;
  private closed = false;
  private retryMs = 500;
  state: ConnState = 'connecting';

  constructor(
    readonly token: string,
    private readonly opts: { onState?(s: ConnState): void; onNotice?(text: string): void; reconnect: boolean },
  ) {
    this.open();
  }

  /** Runs `line` and answers its JSON (the first command's). */
  async json<T>(line: string): Promise<T> {
    const results = await this.run(line);
    const r = results[0];
    if (!r) throw new CommandError('no answer');
    const parsed = JSON.parse(r.output || 'null') as T | { error?: { message: string } };
    if (!r.ok) {
      const message = (parsed as { error?: { message: string } } | null)?.error?.message ?? r.stderr ?? 'failed';
      throw new CommandError(message);
    }
    return parsed as T;
  }

  run(line: string, onOut?: (text: string) => void, json = true): Promise<Outcome[]> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new CommandError('closed'));
      this.queue.push({ line, json, onOut, resolve, reject });
      this.next();
    });
  }

  close(): void {
    this.closed = true;
    this.ws?.close(1000);
    this.fail('closed');
  }

  private open(): void {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/operator`, ['drover', `drover-token.${this.token}`]);
    this.ws = ws;
    this.setState('connecting');
    ws.onopen = () => {
      this.retryMs = 500;
      this.setState('open');
      if (this.opts.onNotice) this.send({ v: V, type: 'subscribe' });
      this.next();
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (typeof ev.data !== 'string') return;
      this.receive(JSON.parse(ev.data) as Reply);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.setState('closed');
      this.fail('the connection to the master was lost');
      if (this.closed || !this.opts.reconnect) return;
      setTimeout(() => this.open(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 5000);
    };
  }

  private setState(s: ConnState): void {
    if (this.state === s) return;
    this.state = s;
    this.opts.onState?.(s);
  }

  private send(message: object): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  private next(): void {
    if (this.current || this.ws?.readyState !== WebSocket.OPEN) return;
    const p = this.queue.shift();
    if (!p) return;
    this.current = p;
    this.send({ v: V, type: 'run', line: p.line, json: p.json, cwd: '/' });
  }

  private receive(reply: Reply): void {
    switch (reply.type) {
      case 'out':
        return this.current?.onOut?.(reply.text);
      case 'part': {
        const p = this.current;
        if (!p) return;
        (p.parts ??= new OutputParts()).add(reply);
        return;
      }
      case 'done': {
        const p = this.current;
        this.current = null;
        p?.parts?.fill(reply);
        p?.resolve(reply.results);
        return this.next();
      }
      case 'error': {
        const p = this.current;
        this.current = null;
        p?.reject(new CommandError(reply.error.message));
        return this.next();
      }
      case 'notice':
        return this.opts.onNotice?.(reply.text);
      case 'file':
        return this.send({ v: V, type: 'file-reply', id: reply.id, ok: false, error: { code: 'UNAUTHORIZED', message: 'the dashboard serves no files' } });
      case 'file-ack':
        return;
      default:
        return;
    }
  }

  private fail(why: string): void {
    const all = [...(this.current ? [this.current] : []), ...this.queue.splice(0)];
    this.current = null;
    for (const p of all) p.reject(new CommandError(why));
  }
}

/**
 * Follows a command's output (logs --follow, events --follow) on a connection of its own;
 * `onEnd` says why it stopped (null: the command ended). Returns a stop function.
 */
export function follow(token: string, line: string, onText: (text: string) => void, onEnd: (why: string | null) => void): () => void {
  const conn = new Conn(token, { reconnect: false });
  let stopped = false;
  // Text, streamed as it comes (a --json line answers JSON lines instead).
  conn.run(line, onText, false).then(
    (results) => {
      if (stopped) return;
      const r = results[0];
      if (r && !r.ok) onEnd(errorText(r));
      else onEnd(null);
      conn.close();
    },
    (err: Error) => {
      if (!stopped) onEnd(err.message);
    },
  );
  return () => {
    stopped = true;
    conn.close();
  };
}

/** The one-line message of a failed command, JSON or text. */
function errorText(r: Outcome): string {
  try {
    const parsed = JSON.parse(r.output) as { error?: { message?: string } } | null;
    if (parsed?.error?.message) return parsed.error.message;
  } catch {
    // text
  }
  return (r.stderr || r.output || 'failed').replace(/^error: /, '');
}
