import { expect, test } from 'vitest';
import { runFuzz } from '../../scripts/fuzz.mjs';

test('a short fuzz run: hostile frames both ways crash nothing, hang nothing, and write nothing outside the state dirs', async () => {
  const lines: string[] = [];
  const report = await runFuzz({ tries: 600, seconds: 25, log: (l) => void lines.push(l) });
  console.log(lines.join('\n'));
  expect(report.tries).toBeGreaterThan(100);
  expect(report.toWorker).toBeGreaterThan(20);
  expect(report.crashes).toEqual([]);
  expect(report.hangs).toEqual([]);
  expect(report.strayFiles).toEqual([]);
  expect(report.masterGrowthBytes).toBeLessThan(64 * 1024 * 1024);
  expect(report.workerGrowthBytes).toBeLessThan(64 * 1024 * 1024);
});
