import { randomBytes } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { access, constants, copyFile, link, mkdir, open, readFile, readdir, rename, rm, statfs, symlink } from 'node:fs/promises';
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

/**
 * drover's own file in a version folder. App files match FILE_NAME_PATTERN, which never starts
 * with a dot, so no executable or library can be called this (an app named manifest.json is fine).
 */
const MANIFEST = '.manifest.json';
/** The symlink that names the current version, inside each app's folder. */
const CURRENT = 'current';

/**
 * Apps on disk, one folder per version, made current by one rename:
 *   apps/APP/current -> v-<id>          (a symlink, swapped atomically)
 *   apps/APP/v-<id>/EXE, lib/*, .manifest.json
 * A copy builds a new version folder whole (new files moved in, kept ones hard-linked), then
 * renames a new symlink over `current`: a crash leaves the old version or the new one, never a
 * mix. Leftovers of an interrupted copy are removed at start. No path leaves the state dir.
 */
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
    for (const app of await readdir(this.appsDir)) {
      if (checkName(app)) continue;
      await this.recover(app);
    }
  }

  /** The app's folder (holding its versions). */
  appDir(app: string): string {
    assertName(app, 'app name');
    return path.join(this.appsDir, app);
  }

  /** The folder of the app's current version (a real path, not the symlink), or null when it has none. */
  async versionDir(app: string): Promise<string | null> {
    try {
      // Synchronous: a symlink in the dentry cache reads in microseconds; through the thread
      // pool it cost a launch 0.2 ms.
      const target = readlinkSync(path.join(this.appDir(app), CURRENT));
      return path.join(this.appDir(app), target);
    } catch {
      return null;
    }
  }

  async manifest(app: string): Promise<Manifest | null> {
    const cached = this.manifests.get(app);
    if (cached) return cached;
    const dir = await this.versionDir(app);
    if (!dir) return null;
    try {
      const parsed = Manifest.safeParse(JSON.parse(await readFile(path.join(dir, MANIFEST), 'utf8')));
      if (parsed.success) this.manifests.set(app, parsed.data);
      return parsed.success ? parsed.data : null;
    } catch {
      return null;
    }
  }

  /** The manifest, or an error that tells the user what to do. */
  async requireManifest(app: string): Promise<Manifest> {
    const manifest = await this.manifest(app);
    if (!manifest) throw this.notFound(app);
    return manifest;
  }

  /**
   * Builds the new version in a fresh folder (staged files moved in, kept ones hard-linked from
   * the current version, which must still have them), then makes it current with one rename.
   */
  async commit(app: string, executable: string, staged: Map<string, string>, files: AppFile[], keep: AppFile[]): Promise<AppFile[]> {
    const dir = this.appDir(app);
    const old = await this.manifest(app);
    const oldDir = await this.versionDir(app);
    for (const k of keep) {
      const had = old?.files.find((f) => f.kind === k.kind && f.name === k.name && f.sha256 === k.sha256);
      if (!had || !oldDir)
        throw new DroverError(ErrorCode.BAD_REQUEST, `${k.name} is not present on ${this.workerName} with sha256 ${k.sha256.slice(0, 12)}…; copy again`);
    }
    for (const f of files) {
      if (!staged.has(fileKey(f))) throw new DroverError(ErrorCode.BAD_REQUEST, `${f.name} was not uploaded before commit`);
    }
    const version = `v-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    const next = path.join(dir, version);
    await mkdir(path.join(next, 'lib'), { recursive: true });
    try {
      for (const k of keep) await linkOrCopy(fileIn(oldDir!, k), fileIn(next, k));
      for (const f of files) await rename(staged.get(fileKey(f))!, fileIn(next, f));
      const all = [...files, ...keep];
      const manifest: Manifest = { app, executable, files: all, updatedAt: new Date().toISOString() };
      await writeFileAtomic(path.join(next, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, 0o644);
      await syncDir(path.join(next, 'lib'));
      await syncDir(next);
      // The switch: one rename of a new symlink over `current`.
      const link = path.join(dir, `.current-${randomBytes(4).toString('hex')}`);
      await symlink(version, link);
      await rename(link, path.join(dir, CURRENT));
      await syncDir(dir);
      this.manifests.set(app, manifest);
    } catch (err) {
      await rm(next, { recursive: true, force: true });
      throw err;
    }
    // Running processes keep their open files; the old folder only goes from the namespace.
    if (oldDir && oldDir !== next) await rm(oldDir, { recursive: true, force: true });
    return this.manifests.get(app)!.files;
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

  /**
   * Makes an app's folder whole after a crash: an interrupted switch leaves a `.current-*` link
   * and an unreferenced version (both removed); a folder from before versions is moved into one;
   * a folder with no version at all (a first copy that never finished) is removed.
   */
  private async recover(app: string): Promise<void> {
    const dir = this.appDir(app);
    const entries = await readdir(dir).catch(() => [] as string[]);
    let current = await this.versionDir(app);
    if (!current && entries.includes('manifest.json')) current = await this.migrate(app, entries);
    if (!current) {
      await rm(dir, { recursive: true, force: true });
      return;
    }
    const keep = path.basename(current);
    for (const e of await readdir(dir)) {
      if (e === CURRENT || e === keep) continue;
      if (e.startsWith('.current-') || e.startsWith('v-')) await rm(path.join(dir, e), { recursive: true, force: true });
    }
  }

  /** apps/APP/{EXE, lib/, manifest.json} (the layout before versions) → apps/APP/v-migrated/. */
  private async migrate(app: string, entries: string[]): Promise<string> {
    const dir = this.appDir(app);
    const next = path.join(dir, 'v-migrated');
    await mkdir(next, { recursive: true });
    for (const e of entries) {
      if (e === 'v-migrated') continue;
      await rename(path.join(dir, e), path.join(next, e === 'manifest.json' ? MANIFEST : e));
    }
    await syncDir(next);
    const link = path.join(dir, `.current-migrate`);
    await rm(link, { force: true });
    await symlink('v-migrated', link);
    await rename(link, path.join(dir, CURRENT));
    await syncDir(dir);
    return next;
  }

  private notFound(app: string): DroverError {
    return new DroverError(ErrorCode.APP_NOT_FOUND, `app "${app}" is not on ${this.workerName}: copy it first (copy ${this.workerName} PATH --as ${app})`);
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

/** A file's place in a version folder: the executable at the top, libraries under lib/. */
export function fileIn(dir: string, file: Pick<AppFile, 'kind' | 'name'>): string {
  const bad = checkFileName(file.name);
  if (bad) throw new DroverError(ErrorCode.BAD_NAME, bad);
  return file.kind === 'exe' ? path.join(dir, file.name) : path.join(dir, 'lib', file.name);
}

/** A kept file goes into the new version as a hard link (no copy, no extra space); a copy where links are refused. */
async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch {
    await copyFile(from, to);
  }
}

function assertName(name: string, what: string): void {
  const bad = checkName(name, what);
  if (bad) throw new DroverError(ErrorCode.BAD_NAME, bad);
}
