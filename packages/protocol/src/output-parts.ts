/**
 * Joins the `part` messages of a command's results into its `done` (the client side of
 * ControlPart in control.ts): add each part as it comes, then fill the done, which empties what
 * was kept. No imports but types: the dashboard bundles it too.
 */
export class OutputParts {
  private readonly kept = new Map<string, string[]>();

  add(part: { index: number; field?: 'output' | 'stderr'; text: string }): void {
    const key = `${part.index}:${part.field ?? 'output'}`;
    const list = this.kept.get(key);
    if (list) list.push(part.text);
    else this.kept.set(key, [part.text]);
  }

  fill(done: { results: { output: string; stderr?: string }[] }): void {
    for (const [key, list] of this.kept) {
      const [index, field] = key.split(':') as [string, 'output' | 'stderr'];
      const r = done.results[Number(index)];
      if (r) r[field] = list.join('') + (r[field] ?? '');
    }
    this.kept.clear();
  }
}
