export interface FuzzReport {
  seed: number;
  tries: number;
  toMaster: number;
  toWorker: number;
  crashes: string[];
  hangs: string[];
  masterGrowthBytes: number;
  workerGrowthBytes: number;
  strayFiles: string[];
}

export function runFuzz(opts?: { tries?: number; seconds?: number; seed?: number; log?: (line: string) => void }): Promise<FuzzReport>;
