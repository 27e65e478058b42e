import { readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import type { AppFile } from '@drover/protocol';
import { writeFileAtomic } from '../atomic-write.js';
import type { Logger } from '../logger.js';
import type { ProgramSpec, ServiceSpec } from './spec.js';

/** One instance the master wants: where it was placed (null: waiting in the queue). */
export interface Slot {
  /** service.program.version.ordinal (or .worker for programs on all workers): the worker keeps it by this id. */
  id: string;
  worker: string | null;
  /** When it joined the queue (its order among equal priorities). */
  queuedAt: number;
  /** Where it ran before the master moved it: its worker was lost (since: when last heard) or drained. */
  movedFrom?: { worker: string; why: 'lost' | 'drained'; since: number };
}

export interface ProgramState {
  spec: ProgramSpec;
  /** sha256 of what defines a run (files, args, env, policies), 12 hex digits: a new one is a new version. */
  version: string;
  /** The app's files, kept in the master's artifact store by sha256. */
  files: AppFile[];
  slots: Slot[];
}

export interface ServiceState {
  name: string;
  /** Where the service file was, on the machine it was applied from. */
  file: string;
  appliedAt: string;
  programs: ProgramState[];
}

interface StateFile {
  version: 1;
  services: ServiceState[];
  /** Workers drained: no new placements there. */
  drained?: string[];
}

/** The app a program version is copied to on a worker: service.program.version (8 hex digits). */
export function appName(service: string, program: ProgramState | { spec: { name: string }; version: string }): string {
  return `${service}.${program.spec.name}.${program.version.slice(0, 8)}`;
}

/** The master's desired state, durable in <state>/services.json: written whole, fsynced and renamed on every change. */
export class ServiceStore {
  services: ServiceState[] = [];
  drained = new Set<string>();
  private readonly file: string;
  private saving: Promise<void> = Promise.resolve();

  constructor(
    stateDir: string,
    private readonly logger: Logger,
  ) {
    this.file = path.join(stateDir, 'services.json');
  }

  async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch {
      return;
    }
    try {
      const parsed = JSON.parse(text) as StateFile;
      if (parsed.version !== 1 || !Array.isArray(parsed.services)) throw new Error('not a drover services file');
      this.services = parsed.services;
      this.drained = new Set(parsed.drained ?? []);
    } catch (err) {
      const aside = `${this.file}.corrupt-${Date.now()}`;
      this.logger.error({ err, aside }, 'services.json is unreadable; moved it aside');
      await rename(this.file, aside).catch(() => undefined);
    }
  }

  get(name: string): ServiceState | undefined {
    return this.services.find((s) => s.name === name);
  }

  /** Replaces (or adds, or with null removes) a service and writes the whole state; resolves once on disk. */
  async put(name: string, service: ServiceState | null): Promise<void> {
    const rest = this.services.filter((s) => s.name !== name);
    this.services = service ? [...rest, service].sort((a, b) => a.name.localeCompare(b.name)) : rest;
    await this.save();
  }

  /** Writes the current state (one write at a time; each writes what is current when it runs). */
  save(): Promise<void> {
    const write = (): Promise<void> =>
      writeFileAtomic(this.file, `${JSON.stringify({ version: 1, services: this.services, drained: [...this.drained] } satisfies StateFile)}\n`, 0o600);
    const next = this.saving.then(write, write);
    this.saving = next.catch(() => undefined);
    return next;
  }

  /** Every file any service still needs (the artifact store keeps these). */
  referencedFiles(): Set<string> {
    return new Set(this.services.flatMap((s) => s.programs.flatMap((p) => p.files.map((f) => f.sha256))));
  }
}

export type { ServiceSpec };
