// Renders bench/results.json (what `npm run bench` wrote last) as the Markdown table of bench/README.md.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const file = process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'results.json');
const r = JSON.parse(readFileSync(file, 'utf8'));
const n = (x) => (x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(2) : x.toFixed(3));
const lines = [
  `Run ${r.at.slice(0, 16).replace('T', ' ')} UTC${r.quick ? ' (quick mode)' : ''} on ${r.machine.cpus} × ${r.machine.model ?? 'CPU'}, ${(r.machine.memoryBytes / 2 ** 30).toFixed(1)} GiB, Node ${r.machine.node}, Linux ${r.machine.kernel}; files of ${r.sizeMiB} MiB, ${r.runs} runs.`,
  '',
  '| figure | drover | range | baseline (same run) | ratio | target | met |',
  '| --- | --- | --- | --- | --- | --- | --- |',
  ...r.rows.map(
    (x) =>
      `| ${x.what.replace(/\|/g, '\\|')} | ${n(x.drover)} ${x.unit} | ${x.range ? `${n(x.range[0])}–${n(x.range[1])}` : ''} | ${n(x.baseline)} ${x.unit} | ${x.ratio.toFixed(2)}× | ≤ ${x.target.toFixed(2)}× | ${x.met ? 'yes' : '**no**'} |`,
  ),
];
process.stdout.write(`${lines.join('\n')}\n`);
