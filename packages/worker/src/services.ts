import type { WorkerToMaster } from '@drover/protocol';
import type { Link } from './link.js';
import type { Logger } from './logger.js';
import type { LogPolicy } from './log-pump.js';
import { ProcessTable } from './process-table.js';
import { AppStore } from './store.js';
import { Keeper } from './keeper.js';
import { Supervisor } from './supervisor.js';
import { Transfers, type ChunkSender } from './transfers.js';
import { tuneMemory } from './memory-trim.js';

export interface ServicesOptions {
  stateDir: string;
  workerName: string;
  logger: Logger;
  send: (message: WorkerToMaster) => boolean;
  logPolicy?: LogPolicy;
}

/** What the request handlers work with: the app store, the supervisor, file transfers. */
export class Services {
  readonly store: AppStore;
  readonly supervisor: Supervisor;
  readonly keeper: Keeper;
  readonly transfers: Transfers;
  readonly logger: Logger;
  readonly workerName: string;
  readonly stateDir: string;
  /** Held while a benchmark runs: one at a time per worker. */
  benchRunning = false;
  private link: ChunkSender | null = null;

  private constructor(opts: ServicesOptions, store: AppStore, table: ProcessTable) {
    this.store = store;
    this.logger = opts.logger;
    this.workerName = opts.workerName;
    this.stateDir = opts.stateDir;
    this.supervisor = new Supervisor(table, store, opts.workerName, opts.logger, (m) => void opts.send(m), opts.logPolicy);
    this.keeper = new Keeper(opts.stateDir, this.supervisor, opts.logger);
    this.supervisor.onEnded = (r) => this.keeper.onProcessEnded(r);
    this.transfers = new Transfers(store.stagingDir, opts.workerName, opts.logger, opts.send, () => this.chunkSender());
    tuneMemory(opts.stateDir, opts.logger);
  }

  static async open(opts: ServicesOptions): Promise<Services> {
    const store = new AppStore(opts.stateDir, opts.workerName);
    await store.open();
    const table = new ProcessTable(opts.stateDir, opts.logger);
    await table.load();
    const services = new Services(opts, store, table);
    await services.keeper.load();
    await services.supervisor.adopt();
    await services.keeper.resume();
    return services;
  }

  attachLink(link: Link): void {
    this.link = link;
    this.keeper.startFencing(() => link.masterSilentMs());
  }

  async close(): Promise<void> {
    this.keeper.close();
    await this.supervisor.close();
  }

  private chunkSender(): ChunkSender {
    if (!this.link) throw new Error('no link');
    return this.link;
  }
}
