import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Gpu, Load } from '@drover/protocol';

/** Reads the worker's persistent id (made on first start) so the master can tell a reconnect from an impostor. */
export async function loadWorkerId(stateDir: string): Promise<string> {
  const file = path.join(stateDir, 'worker-id');
  try {
    const id = (await readFile(file, 'utf8')).trim();
    if (/^[A-Za-z0-9-]{8,128}$/.test(id)) return id;
  } catch {
    // first start
  }
  const id = randomUUID();
  await mkdir(stateDir, { recursive: true });
  await writeFile(file, `${id}\n`, { mode: 0o600 });
  return id;
}

/** Lists NVIDIA GPUs when nvidia-smi is present; none otherwise (never fails the agent). */
export function detectGpus(): Promise<Gpu[]> {
  // Looked for first: a fork of the agent that only finds no nvidia-smi cost ~12 ms of its start.
  if (!onPath('nvidia-smi')) return Promise.resolve([]);
  return new Promise((resolve) => {
    execFile('nvidia-smi', ['--query-gpu=name,memory.total', '--format=csv,noheader,nounits'], { timeout: 5000 }, (err, stdout) => {
      if (err) return resolve([]);
      const gpus = stdout
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const [name = 'GPU', mib = '0'] = line.split(',').map((s) => s.trim());
          return { name, memoryBytes: Math.round(Number(mib) * 1024 * 1024) || 0 };
        });
      resolve(gpus);
    });
  });
}

/** Whether an executable of this name is in one of $PATH's folders. */
function onPath(name: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => {
    if (!dir) return false;
    try {
      accessSync(path.join(dir, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Samples machine load; CPU % is the busy share since the previous sample. */
export class LoadSampler {
  private last = cpuTimes();

  sample(processes: number): Load {
    const now = cpuTimes();
    const total = now.total - this.last.total;
    const idle = now.idle - this.last.idle;
    this.last = now;
    const cpuPercent = total > 0 ? Math.max(0, Math.min(100, ((total - idle) / total) * 100)) : 0;
    const memoryTotalBytes = os.totalmem();
    return {
      cpuPercent: Math.round(cpuPercent * 10) / 10,
      memoryUsedBytes: Math.max(0, memoryTotalBytes - os.freemem()),
      memoryTotalBytes,
      loadAverage: os.loadavg()[0] ?? 0,
      processes,
    };
  }
}

function cpuTimes(): { total: number; idle: number } {
  let total = 0;
  let idle = 0;
  for (const cpu of os.cpus()) {
    const t = cpu.times;
    total += t.user + t.nice + t.sys + t.idle + t.irq;
    idle += t.idle;
  }
  return { total, idle };
}
