/** Renders rows as an aligned text table with a header; numbers align right. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number' || /^-?[\d.,]+( ?[%a-zA-Z]+)?$/.test(String(r[i]))));
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r, row) =>
      r
        .map((c, i) => (numeric[i] && row > 0 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** 0.4 s, 12 s, 3m05s, 2h01m, 3d04h. */
export function formatDuration(ms: number): string {
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.floor(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}

/**
 * Makes text from workers safe to print on a terminal: control characters (clear screen,
 * title changes, OSC 52 clipboard writes) are shown escaped, never sent raw. Newlines and
 * tabs stay. JSON output needs none of this: JSON.stringify escapes them already.
 */
export function escapeControl(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

const BARS = '▁▂▃▄▅▆▇█';

/** Values as a line of block characters, scaled to `max` (empty history: "-"). */
export function sparkline(values: readonly number[], max: number): string {
  if (values.length === 0) return '-';
  const top = Math.max(max, ...values, 1e-9);
  return values.map((v) => BARS[Math.min(BARS.length - 1, Math.max(0, Math.round((v / top) * (BARS.length - 1))))]).join('');
}
