import { h, render, type ComponentChildren } from 'preact';
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { Conn, CommandError, follow, type ConnState } from './conn.js';
import { bytes, pct, ago, type Spark } from './format.js';
import { FleetRows, statusOf, type Worker } from './fleet-rows.js';
import './style.css';

const html = htm.bind(h);

// ---- what the master answers (the --json of its commands) ----

type Row<T> = ({ worker: string; ok: true } & T) | { worker: string; ok: false; error: { message: string } };
interface Proc {
  pid: number;
  app: string;
  state: string;
  startedAt: string;
  exit: { reason?: string; code?: number | null; signal?: string | null } | null;
  instance?: { id: string };
}
interface Usage {
  pid: number;
  cpuPercent: number;
  rssBytes: number;
  maxRssBytes: number;
}
interface Instance {
  id: string;
  worker: string | null;
  pid: number | null;
  state: string;
  restarts: number;
  lastExit: { reason?: string } | null;
  movedFrom: { worker: string; why: string } | null;
}
interface Service {
  name: string;
  file: string;
  appliedAt: string;
  programs: { name: string; version: string; desired: number; running: number; instances: Instance[]; pending: { id: string; reason: string }[] }[];
}
interface DEvent {
  at: string;
  kind: string;
  worker?: string;
  text: string;
}
interface Who {
  name: string;
  role: 'admin' | 'read-only';
  token: string;
}

// ---- shared state: one connection for every page's polling ----

let conn: Conn | null = null;
const listeners = new Set<() => void>();
let pendingNotify = 0;
/** Pages refresh on a fleet change: at most twice a second, however many workers change at once. */
const notify = (): void => {
  if (pendingNotify) return;
  pendingNotify = window.setTimeout(() => {
    pendingNotify = 0;
    listeners.forEach((f) => f());
  }, 500);
};

/** Re-renders on a change of the connection or a fleet notice. */
function useConnTick(): number {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const f = (): void => setTick((t) => t + 1);
    listeners.add(f);
    return () => void listeners.delete(f);
  }, []);
  return tick;
}

/** Runs `line` now and every `ms` (and on each fleet notice) while mounted. */
function usePoll<T>(line: string | null, ms: number): { data: T | null; error: string | null } {
  const [state, setState] = useState<{ data: T | null; error: string | null }>({ data: null, error: null });
  const tick = useConnTick();
  useEffect(() => {
    if (!line || !conn) return;
    let alive = true;
    let timer = 0;
    let first = takePrefetched<T>(line);
    const once = async (): Promise<void> => {
      try {
        const answer = first ?? conn!.json<T>(line);
        first = null;
        const data = await answer;
        if (alive) setState({ data, error: null });
      } catch (err) {
        if (alive && err instanceof CommandError) setState((s) => ({ data: s.data, error: err.message }));
      }
      if (alive) timer = window.setTimeout(() => void once(), ms);
    };
    void once();
    return () => {
      alive = false;
      clearTimeout(timer);
    };
  }, [line, ms, tick]);
  return state;
}

// ---- small parts ----

function Sparkline({ values, max, label }: { values: number[]; max: number; label: string }) {
  const w = 120;
  const hgt = 28;
  if (values.length < 2) return html`<span class="spark-empty" title=${label}>—</span>`;
  // max 0: scaled between the lowest and highest value shown (memory of one process).
  const bottom = max > 0 ? 0 : Math.min(...values);
  const top = Math.max(max, ...values);
  const span = top - bottom || 1;
  const pts = values.map((v, i) => `${((i / (values.length - 1)) * w).toFixed(1)},${(hgt - 1 - ((v - bottom) / span) * (hgt - 2)).toFixed(1)}`).join(' ');
  return html`<svg class="spark" viewBox="0 0 ${w} ${hgt}" width=${w} height=${hgt} role="img" aria-label=${label}>
    <title>${label}</title>
    <polyline points=${pts} fill="none" stroke="currentColor" stroke-width="1.5" />
  </svg>`;
}

function Status({ w }: { w: Worker }) {
  const { text, why } = statusOf(w);
  return html`<span class=${`badge ${w.liveness}`} data-status=${w.liveness} title=${why}>${text}</span>`;
}

function ErrorLine({ error }: { error: string | null }) {
  return error ? html`<p class="error" role="alert">${error}</p>` : null;
}

/** A write action: asks first, then runs the line and says how it went. */
function Action({ who, label, line, ask, danger }: { who: Who; label: string; line: string; ask: string; danger?: boolean }) {
  const [busy, setBusy] = useState(false);
  if (who.role !== 'admin') return null;
  const go = async (): Promise<void> => {
    if (!window.confirm(ask)) return;
    setBusy(true);
    try {
      await conn!.json(line);
    } catch (err) {
      window.alert(`${label} failed: ${(err as Error).message}`);
    } finally {
      setBusy(false);
    }
  };
  return html`<button class=${danger ? 'danger' : ''} disabled=${busy} onClick=${() => void go()}>${busy ? '…' : label}</button>`;
}

// ---- pages ----

/** The fleet's rows: kept by hand (fleet-rows.ts), written before the browser paints. */
function FleetBody({ workers, filter }: { workers: Worker[] | null; filter: string }) {
  const body = useRef<HTMLTableSectionElement>(null);
  const rows = useRef<FleetRows | null>(null);
  useLayoutEffect(() => {
    if (!body.current) return;
    rows.current ??= new FleetRows(body.current);
    rows.current.update(workers ?? [], filter);
  }, [workers, filter]);
  return html`<tbody ref=${body}></tbody>`;
}

function Fleet() {
  const { data, error } = usePoll<Worker[]>('workers --json', 1000);
  const [filter, setFilter] = useState('');
  const count = (l: Worker['liveness']): number => (data ?? []).filter((w) => w.liveness === l).length;
  return html`<section>
    <h1>Fleet</h1>
    <p class="summary">
      ${
        data
          ? html`${data.length} workers: <b class="ok">${count('ok')} available</b>, <b class="suspect">${count('suspect')} suspect</b>,${' '}<b
                class="unavailable"
                >${count('unavailable')} unavailable</b
              >`
          : 'loading…'
      }
    </p>
    <${ErrorLine} error=${error} />
    <input
      class="filter"
      placeholder="filter by name, host or label"
      value=${filter}
      onInput=${(e: Event) => setFilter((e.target as HTMLInputElement).value)}
    />
    <div class="scroll">
      <table id="fleet">
        <thead>
          <tr>
            <th>Worker</th>
            <th>Status</th>
            <th>Heartbeat</th>
            <th class="hide-sm">RTT</th>
            <th>CPU</th>
            <th>Memory</th>
            <th class="hide-sm">Load</th>
            <th class="hide-sm">Procs</th>
            <th class="hide-sm">Labels</th>
          </tr>
        </thead>
        <${FleetBody} workers=${data} filter=${filter} />
      </table>
    </div>
  </section>`;
}

/** Per-process CPU and RSS since the page opened (the master keeps the worker's own 15 minutes). */
function useProcessHistory(usage: Row<Usage>[] | null): Map<number, Spark> {
  const seen = useRef(new Map<number, Spark>());
  useMemo(() => {
    for (const u of usage ?? []) {
      if (!u.ok) continue;
      let s = seen.current.get(u.pid);
      if (!s) seen.current.set(u.pid, (s = { cpu: [], rss: [] }));
      s.cpu.push(u.cpuPercent);
      s.rss.push(u.rssBytes);
      if (s.cpu.length > 300) {
        s.cpu.shift();
        s.rss.shift();
      }
    }
  }, [usage]);
  return seen.current;
}

function WorkerPage({ name, who }: { name: string; who: Who }) {
  const q = name.replace(/[^A-Za-z0-9._-]/g, '');
  const worker = usePoll<Worker[]>(`workers ${q} --history --json`, 2000);
  const ps = usePoll<Row<Proc>[]>(`ps ${q} --json`, 2000);
  const usage = usePoll<Row<Usage>[]>(`usage ${q} --json`, 3000);
  const history = useProcessHistory(usage.data);
  const w = worker.data?.[0];
  const usageOf = new Map((usage.data ?? []).flatMap((u) => (u.ok ? [[u.pid, u] as const] : [])));
  const procs = (ps.data ?? []).flatMap((p) => (p.ok ? [p] : []));
  const failed = (ps.data ?? []).flatMap((p) => (p.ok ? [] : [p.error.message]));
  return html`<section>
    <p><a href="#/">← Fleet</a></p>
    <h1>${name} ${w ? html`<${Status} w=${w} />` : null}</h1>
    <${ErrorLine} error=${worker.error ?? ps.error ?? failed[0] ?? null} />
    ${
      w &&
      html`<div class="cards">
        <div class="card">
          <div class="k">CPU (15 min)</div>
          <${Sparkline} values=${w.history?.cpuPercent ?? []} max=${100} label="CPU % over 15 minutes" />
          <div class="v">${w.load ? pct(w.load.cpuPercent) : '–'}</div>
        </div>
        <div class="card">
          <div class="k">Memory (15 min)</div>
          <${Sparkline} values=${w.history?.memoryUsedBytes ?? []} max=${w.memoryBytes} label="memory used over 15 minutes" />
          <div class="v">${w.load ? `${bytes(w.load.memoryUsedBytes)} of ${bytes(w.memoryBytes)}` : bytes(w.memoryBytes)}</div>
        </div>
        <div class="card">
          <div class="k">Heartbeat</div>
          <div class="v">${(w.lastHeartbeatMs / 1000).toFixed(1)} s ago</div>
          <div class="sub">
            ${`RTT ${w.rttMs === null ? '–' : `${w.rttMs.toFixed(1)} ms`}${w.unavailableSince ? ` · unavailable since ${new Date(w.unavailableSince).toLocaleTimeString()}` : ''}`}
          </div>
        </div>
        <div class="card">
          <div class="k">Machine</div>
          <div class="v">${w.cpus} CPUs</div>
          <div class="sub">${w.hostname} · ${w.address}</div>
        </div>
      </div>`
    }
    <h2>Processes</h2>
    <div class="scroll">
      <table id="processes">
        <thead>
          <tr>
            <th>PID</th>
            <th>App</th>
            <th>State</th>
            <th>Started</th>
            <th>CPU</th>
            <th>RSS</th>
            <th>Peak</th>
            <th>Exit</th>
            <th></th>
          </tr>
        </thead>
        <tbody>
          ${
            procs.length === 0 && ps.data
              ? html`<tr>
                  <td colspan="9" class="sub">no processes</td>
                </tr>`
              : null
          }
          ${procs.map((p) => {
            const u = usageOf.get(p.pid);
            const s = history.get(p.pid);
            return html`<tr key=${p.pid} data-pid=${p.pid}>
              <td>${p.pid}</td>
              <td>${p.app}${p.instance ? html`<div class="sub">${p.instance.id}</div>` : null}</td>
              <td><span class=${`badge st-${p.state}`}>${p.state}</span></td>
              <td>${ago(p.startedAt)}</td>
              <td>${u ? pct(u.cpuPercent) : '–'} <${Sparkline} values=${s?.cpu ?? []} max=${100} label="CPU %" /></td>
              <td>${u ? bytes(u.rssBytes) : '–'} <${Sparkline} values=${s?.rss ?? []} max=${0} label="resident memory" /></td>
              <td>${u ? bytes(u.maxRssBytes) : '–'}</td>
              <td>${p.exit?.reason ?? ''}</td>
              <td>
                <div class="actions">
                  <a class="button" href=${`#/logs/${encodeURIComponent(name)}/${p.pid}`}>Log</a>
                  ${
                    p.state !== 'dead' && p.state !== 'zombie' && !p.exit
                      ? html`<${Action}
                            who=${who}
                            label="Stop"
                            line=${`stop ${q} ${p.pid} --json`}
                            ask=${`Stop ${p.app} (pid ${p.pid}) on ${name} with SIGINT?`}
                          />
                          <${Action}
                            who=${who}
                            label="Kill"
                            danger
                            line=${`kill ${q} ${p.pid} --json`}
                            ask=${`Kill ${p.app} (pid ${p.pid}) on ${name} with SIGKILL?`}
                          />`
                      : null
                  }
                </div>
              </td>
            </tr>`;
          })}
        </tbody>
      </table>
    </div>
  </section>`;
}

function Services({ who }: { who: Who }) {
  const { data, error } = usePoll<Service[]>('status --json', 2000);
  return html`<section>
    <h1>Services</h1>
    <${ErrorLine} error=${error} />
    ${data && data.length === 0 ? html`<p class="sub">no services (apply a service file to start one)</p>` : null}
    ${(data ?? []).map(
      (s) =>
        html`<article class="service" key=${s.name} data-service=${s.name}>
          <h2>
            ${s.name} <${Action} who=${who} label="Restart" line=${`restart ${s.name} --json`} ask=${`Restart every instance of ${s.name}, one at a time?`} />
          </h2>
          <div class="sub">applied ${ago(s.appliedAt)} from ${s.file}</div>
          ${s.programs.map(
            (p) =>
              html`<div class="program" key=${p.name}>
                <h3>
                  ${p.name} <span class=${`badge ${p.running >= p.desired ? 'ok' : 'suspect'}`}>${p.running} of ${p.desired} running</span>
                  <span class="sub">version ${p.version}</span>
                </h3>
                <div class="scroll">
                  <table>
                    <thead>
                      <tr>
                        <th>Instance</th>
                        <th>Worker</th>
                        <th>PID</th>
                        <th>State</th>
                        <th>Restarts</th>
                        <th>Last exit</th>
                      </tr>
                    </thead>
                    <tbody>
                      ${p.instances.map(
                        (i) =>
                          html`<tr key=${i.id}>
                            <td>${i.id}</td>
                            <td>${i.worker ? html`<a href=${`#/worker/${encodeURIComponent(i.worker)}`}>${i.worker}</a>` : '–'}</td>
                            <td>${i.pid && i.worker ? html`<a href=${`#/logs/${encodeURIComponent(i.worker)}/${i.pid}`}>${i.pid}</a>` : '–'}</td>
                            <td>
                              <span class=${`badge st-${i.state}`}>${i.state}</span
                              >${i.movedFrom ? html`<div class="sub">moved from ${i.movedFrom.worker} (${i.movedFrom.why})</div>` : null}
                            </td>
                            <td>${i.restarts}</td>
                            <td>${i.lastExit?.reason ?? ''}</td>
                          </tr>`,
                      )}
                    </tbody>
                  </table>
                </div>
                ${p.pending.map((q) => html`<p class="pending">pending ${q.id}: ${q.reason}</p>`)}
              </div>`,
          )}
        </article>`,
    )}
  </section>`;
}

function Events({ who }: { who: Who }) {
  const [events, setEvents] = useState<DEvent[]>([]);
  const [end, setEnd] = useState<string | null>(null);
  useEffect(() => {
    let partial = '';
    const stop = follow(
      who.token,
      'events --since 1h --follow --json',
      (text) => {
        const lines = (partial + text).split('\n');
        partial = lines.pop() ?? '';
        const got = lines.filter(Boolean).map((l) => JSON.parse(l) as DEvent);
        if (got.length) setEvents((old) => [...got.reverse(), ...old].slice(0, 2000));
      },
      (why) => setEnd(why ?? 'the event stream ended'),
    );
    return stop;
  }, [who.token]);
  return html`<section>
    <h1>Events</h1>
    <p class="sub">the last hour, newest first, live</p>
    <${ErrorLine} error=${end} />
    <ul class="events" id="events">
      ${events.map((e, i) => html`<li key=${`${e.at}-${i}`}><time>${new Date(e.at).toLocaleTimeString()}</time> <span class=${`kind k-${e.kind}`}>${e.kind}</span> ${e.text}</li>`)}
    </ul>
  </section>`;
}

const MAX_LOG_CHARS = 2 * 1024 * 1024;

function Logs({ worker, pid, who }: { worker: string; pid: string; who: Who }) {
  const [text, setText] = useState('');
  const [end, setEnd] = useState<{ why: string | null } | null>(null);
  const [stick, setStick] = useState(true);
  const pre = useRef<HTMLPreElement>(null);
  useEffect(() => {
    setText('');
    setEnd(null);
    const q = worker.replace(/[^A-Za-z0-9._-]/g, '');
    const p = pid.replace(/[^0-9]/g, '');
    return follow(
      who.token,
      `logs ${q} ${p} --tail 500 --follow`,
      (chunk) => setText((t) => (t.length + chunk.length > MAX_LOG_CHARS ? (t + chunk).slice(-MAX_LOG_CHARS / 2) : t + chunk)),
      (why) => setEnd({ why }),
    );
  }, [worker, pid, who.token]);
  useEffect(() => {
    if (stick && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [text, stick]);
  return html`<section>
    <p><a href=${`#/worker/${encodeURIComponent(worker)}`}>← ${worker}</a></p>
    <h1>Log of pid ${pid} on ${worker}</h1>
    <label class="sub"
      ><input type="checkbox" checked=${stick} onChange=${(e: Event) => setStick((e.target as HTMLInputElement).checked)} /> follow the end</label
    >
    <pre id="log" ref=${pre}>${text}</pre>
    ${end ? html`<p class=${end.why ? 'error' : 'sub'}>${end.why ?? 'the process ended; this is all of its log'}</p>` : html`<p class="sub live">live</p>`}
  </section>`;
}

// ---- shell: login, navigation, routing ----

function Login({ onLogin }: { onLogin: (w: Who) => void }) {
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    const token = (new FormData(e.target as HTMLFormElement).get('token') as string).trim();
    const who = await whoami(token);
    if ('error' in who) setError(who.error);
    else onLogin(who);
  };
  return html`<main class="login">
    <form onSubmit=${(e: Event) => void submit(e)}>
      <h1>drover</h1>
      <p class="sub">The master printed a dashboard token when it started (it is also in its state dir, file dashboard-token).</p>
      <label for="token">Token</label>
      <input id="token" name="token" type="password" autocomplete="current-password" required autofocus />
      <button type="submit">Log in</button>
      <${ErrorLine} error=${error} />
    </form>
  </main>`;
}

async function whoami(token: string): Promise<Who | { error: string; refused?: boolean }> {
  try {
    const res = await fetch('/api/whoami', { headers: { authorization: `Bearer ${token}` } });
    const body = (await res.json()) as { name: string; role: Who['role'] } | { error: string };
    return 'error' in body ? { ...body, refused: res.status === 401 } : { ...body, token };
  } catch {
    return { error: 'the master does not answer' };
  }
}

function useRoute(): string[] {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const f = (): void => setHash(location.hash);
    window.addEventListener('hashchange', f);
    return () => window.removeEventListener('hashchange', f);
  }, []);
  return hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
}

// ---- a reload's head start ----

/** What the connection's changes go to: the App's handler once it has one. */
let connState: (s: ConnState) => void = () => undefined;

function connect(token: string): Conn {
  return new Conn(token, { reconnect: true, onState: (s) => connState(s), onNotice: () => notify() });
}

/**
 * A tab that kept its login (a reload) asks who it is, opens its connection and asks for the
 * fleet all at once, as the script loads: none of the three waits for another or for the first
 * render. A refused token closes the connection unused.
 */
const kept = sessionStorage.getItem('drover-token');
const keptWho = kept ? whoami(kept) : null;
let early: Conn | null = kept ? connect(kept) : null;
let prefetched: { line: string; answer: Promise<unknown> } | null = null;
if (early && /^#?\/?$/.test(location.hash)) {
  const line = 'workers --json';
  const answer = early.json(line);
  answer.catch(() => undefined);
  prefetched = { line, answer };
}

/** The head start's answer to `line`, once. */
function takePrefetched<T>(line: string): Promise<T> | null {
  const p = prefetched;
  prefetched = null;
  return p && p.line === line ? (p.answer as Promise<T>) : null;
}

function App() {
  const [who, setWho] = useState<Who | null>(null);
  const [state, setState] = useState<ConnState>('connecting');
  const [checked, setChecked] = useState(false);
  const route = useRoute();
  // A reload keeps the login for this tab (sessionStorage), never beyond it.
  useEffect(() => {
    if (!keptWho) return setChecked(true);
    void keptWho.then((w) => {
      if (!('error' in w)) setWho(w);
      else {
        early?.close();
        early = null;
      }
      setChecked(true);
    });
  }, []);
  // Made while rendering, so the pages' first queries go out at once.
  useMemo(() => {
    conn?.close();
    conn = null;
    if (!who) return;
    // The head start's connection, if it was made with this login's token.
    const adopted = early?.token === who.token ? early : null;
    if (!adopted) early?.close();
    early = null;
    sessionStorage.setItem('drover-token', who.token);
    const token = who.token;
    const onState = (s: ConnState): void => {
      setState(s);
      notify();
      // Lost: a revoked token logs out; a master that is away is waited for.
      if (s === 'closed')
        void whoami(token).then((w) => {
          if ('error' in w && w.refused) {
            sessionStorage.removeItem('drover-token');
            setWho(null);
          }
        });
    };
    connState = onState;
    conn = adopted ?? connect(token);
    if (adopted) queueMicrotask(() => onState(adopted.state));
  }, [who]);
  if (!checked) return null;
  if (!who) return html`<${Login} onLogin=${setWho} />`;
  const logout = (): void => {
    sessionStorage.removeItem('drover-token');
    setWho(null);
  };
  const [page, a, b] = route;
  let body: ComponentChildren;
  switch (page) {
    case 'worker':
      body = html`<${WorkerPage} key=${a} name=${a ?? ''} who=${who} />`;
      break;
    case 'services':
      body = html`<${Services} who=${who} />`;
      break;
    case 'events':
      body = html`<${Events} who=${who} />`;
      break;
    case 'logs':
      body = html`<${Logs} worker=${a ?? ''} pid=${b ?? ''} who=${who} />`;
      break;
    default:
      body = html`<${Fleet} />`;
  }
  const nav = (href: string, text: string, on: boolean) => html`<a href=${href} class=${on ? 'on' : ''}>${text}</a>`;
  return html`<div>
    <header>
      <b class="brand">drover</b>
      <nav>
        ${nav('#/', 'Fleet', !page || page === 'worker' || page === 'logs')} ${nav('#/services', 'Services', page === 'services')}
        ${nav('#/events', 'Events', page === 'events')}
      </nav>
      <span class=${`conn conn-${state}`} title=${`connection: ${state}`}
        >${state === 'open' ? 'live' : state === 'connecting' ? 'connecting…' : 'reconnecting…'}</span
      >
      <span class="who">${who.name} (${who.role})</span>
      <button class="link" onClick=${logout}>Log out</button>
    </header>
    <main>${body}</main>
  </div>`;
}

render(html`<${App} />`, document.getElementById('app')!);
