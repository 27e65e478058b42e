import { formatBytes } from '@drover/protocol';
import type { Placement } from './spec.js';

/** A worker as placement sees it: what it offers and what is already promised on it. */
export interface Candidate {
  name: string;
  available: boolean;
  /** Drained workers get no new placements. */
  draining?: boolean;
  labels: Record<string, string>;
  cpus: number;
  memoryBytes: number;
  /** From its last heartbeat, when there was one. */
  memoryUsedBytes: number | null;
  /** Reserved by instances placed there (services and placed launches). */
  reservedCpus: number;
  reservedMemoryBytes: number;
  /** Instances of the program being placed already there (placement spreads them). */
  sameProgram: number;
  /** All service instances placed there (the last tie-break before the name). */
  instances: number;
}

export interface PlacementRequest {
  on: Placement;
  cpus: number;
  memoryBytes: number;
}

export type PlacementResult = { ok: true; worker: string } | { ok: false; reason: string };

function freeOf(c: Candidate): { cpus: number; memory: number } {
  const reservedOrUsed = Math.max(c.reservedMemoryBytes, c.memoryUsedBytes ?? 0);
  return { cpus: c.cpus - c.reservedCpus, memory: c.memoryBytes - reservedOrUsed };
}

function matches(c: Candidate, on: Placement): boolean {
  if (on === 'any' || on === 'all') return true;
  if ('workers' in on) return on.workers.includes(c.name);
  return Object.entries(on.labels).every(([k, v]) => c.labels[k] === v);
}

/** How a message names the workers `on` allows: the roomiest ___ (w1); no ___ is available. */
function roomiestOf(on: Placement): string {
  if (on === 'any' || on === 'all') return 'the roomiest available worker';
  if ('workers' in on) return `the roomiest of ${on.workers.join(', ')}`;
  return `the roomiest worker with ${labelsText(on.labels)}`;
}

function noneAvailable(on: Placement): string {
  if (on === 'any' || on === 'all') return 'no worker is available';
  if ('workers' in on) return on.workers.length === 1 ? `${on.workers[0]} is not available` : `none of ${on.workers.join(', ')} is available`;
  return `no worker with ${labelsText(on.labels)} is available`;
}

const labelsText = (labels: Record<string, string>): string =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');

const cpusText = (n: number): string => `${Number.isInteger(n) ? n : n.toFixed(2)} CPU${n === 1 ? '' : 's'}`;

/**
 * Picks a worker for one instance: among available workers that match `on` and have room for
 * its CPUs and memory after what is already reserved (and, for memory, what its last heartbeat
 * says is used), the one with the fewest instances of the same program (replicas spread first),
 * then the most free room (the shares of CPUs and memory left), then the fewest service
 * instances, then the name, so equal scores always give the same answer. Pure: the tests and the benchmark call it directly.
 */
export function place(request: PlacementRequest, candidates: Candidate[]): PlacementResult {
  let best: { c: Candidate; spread: number; room: number } | null = null;
  const better = (c: Candidate, room: number, b: { c: Candidate; spread: number; room: number }): boolean => {
    if (c.sameProgram !== b.spread) return c.sameProgram < b.spread;
    // Within 1% is equal room: heartbeats move free memory by a little all the time.
    if (Math.abs(room - b.room) > 0.01) return room > b.room;
    if (c.instances !== b.c.instances) return c.instances < b.c.instances;
    return c.name < b.c.name;
  };
  let roomiest: { c: Candidate; free: { cpus: number; memory: number } } | null = null;
  let eligible = 0;
  for (const c of candidates) {
    if (!c.available || c.draining || !matches(c, request.on)) continue;
    eligible++;
    const free = freeOf(c);
    if (
      !roomiest ||
      free.memory / Math.max(1, c.memoryBytes) + free.cpus / Math.max(1, c.cpus) >
        roomiest.free.memory / Math.max(1, roomiest.c.memoryBytes) + roomiest.free.cpus / Math.max(1, roomiest.c.cpus)
    )
      roomiest = { c, free };
    if (free.cpus < request.cpus || free.memory < request.memoryBytes) continue;
    const room = (free.cpus - request.cpus) / Math.max(1, c.cpus) + (free.memory - request.memoryBytes) / Math.max(1, c.memoryBytes);
    if (!best || better(c, room, best)) best = { c, spread: c.sameProgram, room };
  }
  if (best) return { ok: true, worker: best.c.name };
  if (eligible === 0) return { ok: false, reason: noneAvailable(request.on) };
  const needs = [request.cpus > 0 ? cpusText(request.cpus) : null, request.memoryBytes > 0 ? formatBytes(request.memoryBytes) : null]
    .filter(Boolean)
    .join(' and ');
  const r = roomiest!;
  return {
    ok: false,
    reason: `needs ${needs}; ${roomiestOf(request.on)} (${r.c.name}) has ${cpusText(Math.max(0, r.free.cpus))} and ${formatBytes(Math.max(0, r.free.memory))} free`,
  };
}
