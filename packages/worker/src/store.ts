import { randomBytes } from 'node:crypto';
import { access, constants, mkdir, open, readFile, rename, rm, statfs } from 'node:fs/promises';
import path from 'node:path';
import { AppFile, DroverError, ErrorCode, checkFileName, checkName } from '@drover/protocol';
import * as z from 'zod';
import { syncDir, writeFileAtomic } from './atomic.js';

const Manifest = z.object({
  app: z.string(),
  executable: z.string(),
  files: z.array(AppFile),
  updatedAt: z.string(),
});
export type Manifest = z.infer<typeof Manifest>;

/** Apps on disk: <state>/apps/<app>/<executable>, lib/*, manifest.json. No path leaves the state dir. */
export class AppStore {
  readonly appsDir: string;
  readonly stagingDir: string;
  readonly logsDir: string;
  private readonly trashDir: string;
  /** Manifests read once and kept until the app is copied again or deleted. */
  private readonly manifests = new Map<string, Manifest>();

  constructor(
    readonly stateDir: string,
    private readonly workerName: string,
  ) {
    this.appsDir = path.join(stateDir, 'apps');
    this.stagingDir = path.join(stateDir, 'staging');
    this.logsDir = path.join(stateDir, 'logs');
    this.trashDir = path.join(stateDir, 'trash');
  }

  /** Creates the folders and clears what an interrupted copy or delete left behind. */
  async open(): Promise<void> {
    await rm(this.stagingDir, { recursive: true, force: true });
    await rm(this.trashDir, { recursive: true, force: true });
    // benchmark files of an agent that died mid-run
    await rm(path.join(this.stateDir, 'bench'), { recursive: true, force: true });
    for (const dir of [this.appsDir, this.stagingDir, this.logsDir]) await mkdir(dir, { recursive: true });
  }

  appDir(app: string): string {
    assertName(app, 'app name');
    return path.join(this.appsDir, app);
  }

  /** Where a file of an app lives: the executable at the top, libraries under lib/. */
  filePath(app: string, file: Pick<AppFile, 'kind' | 'name'>): string {
    const bad = checkFileName(file.name);
    if (bad) throw new DroverError(ErrorCode.BAD_NAME, bad);
    const dir = this.appDir(app);
    return file.kind === 'exe' ? path.join(dir, file.name) : path.join(dir, 'lib', file.name);
  }

  async manifest(app: string): Promise<Manifest | null> {
    const cached = this.manifests.get(app);
    if (cached) return cached;
    try {
      const parsed = Manifest.safeParse(JSON.parse(await readFile(path.join(this.appDir(app), 'manifest.json'), 'utf8')));
      if (parsed.success) this.manifests.set(app, parsed.data);
      return parsed.success ? parsed.data : null;
    } catch (err) {
      if (err instanceof DroverError) throw err;
      return null;
    }
  }

  /** The manifest, or an error that tells the user what to do. */
  async requireManifest(app: string): Promise<Manifest> {
    const manifest = await this.manifest(app);
    if (!manifest) {
      throw new DroverError(ErrorCode.APP_NOT_FOUND, `app "${app}" is not on ${this.workerName}: copy it first (copy ${this.workerName} PATH --as ${app})`);
    }
    return manifest;
  }

  /**
   * Moves staged files into the app folder and writes the new manifest. Files kept from the
   * previous version must still match; files of the previous version not named again are removed.
   */
  async commit(app: string, executable: string, staged: Map<string, string>, files: AppFile[], keep: AppFile[]): Promise<AppFile[]> {
    const dir = this.appDir(app);
    const old = await this.manifest(app);
    this.manifests.delete(app);
    for (const k of keep) {
      const had = old?.files.find((f) => f.kind === k.kind && f.name === k.name && f.sha256 === k.sha256);
      if (!had)
        throw new DroverError(ErrorCode.BAD_REQUEST, `${k.name} is not present on ${this.workerName} with sha256 ${k.sha256.slice(0, 12)}…; copy again`);
    }
    for (const f of files) {
      if (!staged.has(fileKey(f))) throw new DroverError(ErrorCode.BAD_REQUEST, `${f.name} was not uploaded before commit`);
    }
    await mkdir(path.join(dir, 'lib'), { recursive: true });
    for (const f of files) await rename(staged.get(fileKey(f))!, this.filePath(app, f));
    const all = [...files, ...keep];
    const wanted = new Set(all.map(fileKey));
    for (const f of old?.files ?? []) {
      if (!wanted.has(fileKey(f))) await rm(this.filePath(app, f), { force: true });
    }
    await syncDir(path.join(dir, 'lib'));
    await syncDir(dir);
    const manifest: Manifest = { app, executable, files: all, updatedAt: new Date().toISOString() };
    await writeFileAtomic(path.join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`, 0o644);
    this.manifests.set(app, manifest);
    return all;
  }

  /** Removes an app's folder: moved aside in one rename, then deleted, so no half-app is ever seen. */
  async remove(app: string): Promise<string[]> {
    const manifest = await this.requireManifest(app);
    this.manifests.delete(app);
    await mkdir(this.trashDir, { recursive: true });
    const aside = path.join(this.trashDir, `${app}-${randomBytes(4).toString('hex')}`);
    await rename(this.appDir(app), aside);
    await rm(aside, { recursive: true, force: true });
    return manifest.files.map((f) => (f.kind === 'exe' ? f.name : `lib/${f.name}`));
  }

  /** Checks that the executable can be run here: present, executable, a format this machine runs. */
  async checkExecutable(file: string, app: string): Promise<void> {
    try {
      await access(file, constants.X_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new DroverError(ErrorCode.APP_NOT_FOUND, `the executable of "${app}" is missing on ${this.workerName}: copy it again`);
      throw new DroverError(ErrorCode.EXEC_FAILED, `${path.basename(file)} is not executable on ${this.workerName} (${code})`);
    }
    const head = Buffer.alloc(20);
    const fh = await open(file, 'r');
    try {
      await fh.read(head, 0, 20, 0);
    } finally {
      await fh.close();
    }
    if (head[0] === 0x23 && head[1] === 0x21) return; // #! script
    if (head.readUInt32BE(0) !== 0x7f454c46) {
      throw new DroverError(ErrorCode.EXEC_FAILED, `exec format error: ${path.basename(file)} is neither an ELF binary nor a #! script`);
    }
    const machine = head[5] === 2 ? head.readUInt16BE(18) : head.readUInt16LE(18);
    const want = ELF_MACHINES[process.arch];
    if (want !== undefined && machine !== want) {
      const built = Object.entries(ELF_MACHINES).find(([, m]) => m === machine)?.[0] ?? `ELF machine ${machine}`;
      throw new DroverError(ErrorCode.EXEC_FAILED, `exec format error: ${path.basename(file)} is built for ${built}, ${this.workerName} is ${process.arch}`);
    }
  }

  /** Free bytes in the filesystem holding `dir`. */
  async freeBytes(dir: string): Promise<number> {
    const s = await statfs(dir);
    return s.bavail * s.bsize;
  }
}

const ELF_MACHINES: Partial<Record<string, number>> = { ia32: 3, arm: 40, x64: 62, arm64: 183, riscv64: 243, ppc64: 21, s390x: 22 };

export function fileKey(f: Pick<AppFile, 'kind' | 'name'>): string {
  return `${f.kind}:${f.name}`;
}

function assertName(name: string, what: string): void {
  const bad = checkName(name, what);
  if (bad) throw new DroverError(ErrorCode.BAD_NAME, bad);
}
