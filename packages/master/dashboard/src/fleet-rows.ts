/**
 * The fleet table's rows, kept by hand. A fleet of a thousand workers is a thousand rows, polled
 * every second: as preact vnodes they took ~350 ms to build before the first paint and ~200 ms
 * of diffing every second after. Here each row is cloned from one template and keeps its
 * elements, and a poll writes only the values that changed. Every value goes in as text or an
 * attribute, never as markup, so nothing a worker names can become HTML.
 */

import { bytes, pct } from './format.js';

/** A worker as `workers --json` answers it. */
export interface Worker {
  name: string;
  address: string;
  status: 'available' | 'unavailable';
  liveness: 'ok' | 'suspect' | 'unavailable';
  rttMs: number | null;
  missedHeartbeats: number;
  unavailableSince: string | null;
  connected: boolean;
  lastHeartbeatMs: number;
  hostname: string;
  cpus: number;
  memoryBytes: number;
  labels: Record<string, string>;
  drain: 'draining' | 'drained' | null;
  load: { cpuPercent: number; memoryUsedBytes: number; loadAverage: number; processes: number } | null;
  history?: { t: number[]; cpuPercent: number[]; memoryUsedBytes: number[] };
}

/** What a worker's status badge says, and why (its title). */
export function statusOf(w: Worker): { text: string; why: string } {
  const text = w.liveness === 'ok' ? 'available' : w.liveness === 'suspect' ? 'suspect' : w.connected ? 'unavailable' : 'disconnected';
  const why =
    w.liveness === 'ok'
      ? 'heartbeats on time'
      : w.liveness === 'suspect'
        ? `a heartbeat is overdue (${(w.lastHeartbeatMs / 1000).toFixed(1)} s since the last); still available`
        : `no heartbeat for ${(w.lastHeartbeatMs / 1000).toFixed(1)} s${w.unavailableSince ? `, unavailable since ${new Date(w.unavailableSince).toLocaleTimeString()}` : ''}`;
  return { text: w.drain ? `${text} · ${w.drain}` : text, why };
}

/** A bar's class and fill (percent of its width) for `value` of `max`. */
export function barOf(value: number, max: number): { cls: string; fill: string } {
  const p = max > 0 ? Math.min(100, (value / max) * 100) : 0;
  return { cls: p > 90 ? 'bar hot' : p > 70 ? 'bar warm' : 'bar', fill: `--p:${p.toFixed(1)}%` };
}

/** Whether `w` matches the filter box: a part of its name, host or a label `k=v`. */
export function matches(w: Worker, filter: string): boolean {
  return !filter || w.name.includes(filter) || w.hostname.includes(filter) || Object.entries(w.labels).some(([k, v]) => `${k}=${v}`.includes(filter));
}

const ROW = `<td><a></a><div class="sub"></div></td><td><span></span></td><td></td><td class="hide-sm"></td><td><div class="bar"></div></td><td><div class="bar"></div></td><td class="hide-sm"></td><td class="hide-sm"></td><td class="hide-sm"></td>`;

/** One row's elements, and what was last written to each (a write only where it changed). */
interface RowView {
  tr: HTMLTableRowElement;
  link: HTMLAnchorElement;
  sub: HTMLElement;
  badge: HTMLElement;
  beat: HTMLElement;
  rtt: HTMLElement;
  cpu: HTMLElement;
  mem: HTMLElement;
  load: HTMLElement;
  procs: HTMLElement;
  labels: HTMLElement;
  last: Map<string, string>;
}

export class FleetRows {
  private readonly views = new Map<string, RowView>();
  private readonly template: HTMLTableRowElement;

  constructor(private readonly body: HTMLTableSectionElement) {
    this.template = document.createElement('tr');
    this.template.innerHTML = ROW;
  }

  /** Shows `workers` in their order, those that do not match `filter` hidden. */
  update(workers: Worker[], filter: string): void {
    const seen = new Set<string>();
    // The first fill goes in at once, as one fragment.
    const fresh = this.body.firstChild ? null : document.createDocumentFragment();
    let at = 0;
    for (const w of workers) {
      if (seen.has(w.name)) continue;
      seen.add(w.name);
      let view = this.views.get(w.name);
      if (!view) {
        view = this.make(w.name);
        this.views.set(w.name, view);
      }
      this.fill(view, w, matches(w, filter));
      if (fresh) fresh.appendChild(view.tr);
      else {
        const here = this.body.children[at];
        if (here !== view.tr) this.body.insertBefore(view.tr, here ?? null);
      }
      at++;
    }
    if (fresh) this.body.appendChild(fresh);
    for (const [name, view] of this.views) {
      if (seen.has(name)) continue;
      view.tr.remove();
      this.views.delete(name);
    }
  }

  private make(name: string): RowView {
    const tr = this.template.cloneNode(true) as HTMLTableRowElement;
    tr.dataset.worker = name;
    const td = tr.children;
    const first = (i: number): HTMLElement => td[i]!.firstElementChild as HTMLElement;
    const link = first(0) as HTMLAnchorElement;
    link.href = `#/worker/${encodeURIComponent(name)}`;
    link.textContent = name;
    return {
      tr,
      link,
      sub: td[0]!.lastElementChild as HTMLElement,
      badge: first(1),
      beat: td[2] as HTMLElement,
      rtt: td[3] as HTMLElement,
      cpu: first(4),
      mem: first(5),
      load: td[6] as HTMLElement,
      procs: td[7] as HTMLElement,
      labels: td[8] as HTMLElement,
      last: new Map(),
    };
  }

  private fill(v: RowView, w: Worker, shown: boolean): void {
    put(v, 'hidden', shown ? '' : 'hidden', (x) => (v.tr.hidden = x !== ''));
    put(v, 'row', `row-${w.liveness}`, (x) => (v.tr.className = x));
    put(v, 'sub', `${w.hostname} · ${w.address}`, (x) => (v.sub.textContent = x));
    const status = statusOf(w);
    put(v, 'status', w.liveness, (x) => {
      v.badge.className = `badge ${x}`;
      v.badge.dataset.status = x;
    });
    put(v, 'status-text', status.text, (x) => (v.badge.textContent = x));
    put(v, 'status-why', status.why, (x) => (v.badge.title = x));
    put(v, 'beat', `${(w.lastHeartbeatMs / 1000).toFixed(1)} s ago`, (x) => (v.beat.textContent = x));
    put(v, 'rtt', w.rttMs === null ? '–' : `${w.rttMs.toFixed(1)} ms`, (x) => (v.rtt.textContent = x));
    putBar(v, 'cpu', v.cpu, barOf(w.load?.cpuPercent ?? 0, 100), w.load ? pct(w.load.cpuPercent) : '–');
    putBar(
      v,
      'mem',
      v.mem,
      barOf(w.load?.memoryUsedBytes ?? 0, w.memoryBytes),
      w.load ? `${bytes(w.load.memoryUsedBytes)} / ${bytes(w.memoryBytes)}` : bytes(w.memoryBytes),
    );
    put(v, 'load', w.load ? w.load.loadAverage.toFixed(2) : '–', (x) => (v.load.textContent = x));
    put(v, 'procs', w.load ? String(w.load.processes) : '–', (x) => (v.procs.textContent = x));
    const labels = Object.entries(w.labels).map(([k, val]) => `${k}=${val}`);
    put(v, 'labels', JSON.stringify(labels), () => {
      v.labels.replaceChildren(
        ...labels.map((text) => {
          const span = document.createElement('span');
          span.className = 'label';
          span.textContent = text;
          return span;
        }),
      );
    });
  }
}

/** Writes `value` with `write`, unless it is what row `v` last had under `key`. */
function put(v: RowView, key: string, value: string, write: (value: string) => void): void {
  if (v.last.get(key) === value) return;
  v.last.set(key, value);
  write(value);
}

/** A bar's class, fill and figure (also its title), written together when any of them changed. */
function putBar(v: RowView, key: string, el: HTMLElement, bar: { cls: string; fill: string }, text: string): void {
  put(v, key, `${bar.cls}|${bar.fill}|${text}`, () => {
    el.className = bar.cls;
    el.style.cssText = bar.fill;
    el.textContent = text;
    el.title = text;
  });
}
