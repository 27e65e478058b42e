import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { CHUNK_BYTES, FILE_CHUNK_BYTES, FILE_WINDOW_BYTES, type DroverError, decodeChunk, parseControlReply, parseControlRequest } from '@drover/protocol';
import { FileServer } from '../../../packages/master/src/file-server.js';
import { localFiles, openIfSame } from '../../../packages/master/src/local-files.js';
import { RemoteFiles } from '../../../packages/master/src/remote-files.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'drover-files-'));
  dirs.push(d);
  return d;
}

/**
 * The master's RemoteFiles and the client's FileServer joined as over a connection: every
 * message through JSON and the protocol's schemas, every frame through the chunk decoder, in order.
 */
interface Link {
  master: RemoteFiles;
  client: FileServer;
  /** The test's reader took `n` bytes (what the master holds is what arrived and was not taken). */
  take(n: number): void;
  /** The most the master held at once. */
  maxInFlight(): number;
}

function connect(): Link {
  // The client is made after the master that sends to it.
  const peer: { client?: FileServer } = {};
  let delivered = 0;
  let taken = 0;
  let max = 0;
  const master = new RemoteFiles(
    async (reply) => {
      const parsed = parseControlReply(JSON.stringify(reply));
      if (!parsed.ok) throw new Error(parsed.error);
      const m = parsed.message;
      setImmediate(() => (m.type === 'file' ? peer.client!.ask(m) : m.type === 'file-ack' ? peer.client!.ack(m) : undefined));
    },
    async (frame) => void setImmediate(() => peer.client!.chunk(Buffer.from(frame))),
  );
  const client = new FileServer(
    (message) => {
      const parsed = parseControlRequest(JSON.stringify(message));
      if (!parsed.ok) throw new Error(parsed.error);
      const m = parsed.message;
      setImmediate(() => (m.type === 'file-reply' ? master.receiveReply(m) : m.type === 'file-ack' ? master.receiveAck(m) : undefined));
    },
    async (frame) => {
      // Copied now, as a socket write would: the sender reuses the memory once this resolves.
      const c = decodeChunk(Buffer.from(frame));
      if (!c.ok) throw new Error(c.error);
      setImmediate(() => {
        delivered += c.payload.length;
        max = Math.max(max, delivered - taken);
        expect(master.receiveChunk(c.ref, c.payload)).toBeNull();
      });
    },
  );
  peer.client = client;
  return { master, client, take: (n) => void (taken += n), maxInFlight: () => max };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('files over the operator protocol (RemoteFiles ↔ FileServer)', () => {
  test('the master gets only what the command line names', async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'app'), 'binary');
    writeFileSync(path.join(dir, 'secret'), 'do not send');
    const { master, client } = connect();
    client.allowLine('copy w1 ./app --lib=./libx.so', dir);

    expect(await master.describe(path.join(dir, 'app'))).toMatchObject({ path: path.join(dir, 'app'), size: 6, sha256: sha(Buffer.from('binary')) });
    const refused = await master.describe(path.join(dir, 'secret')).catch((e: DroverError) => e);
    expect(refused).toMatchObject({
      code: 'BAD_REQUEST',
      message: `the master asked for ${path.join(dir, 'secret')}, which this command does not name; not sent`,
    });
    // --lib=PATH counts as naming PATH; a missing one is a clear NOT_FOUND.
    expect(await master.describe(path.join(dir, 'libx.so')).catch((e: DroverError) => e)).toMatchObject({
      code: 'NOT_FOUND',
      message: `no file at ${path.join(dir, 'libx.so')} (ENOENT)`,
    });
    const read = master.read({ path: path.join(dir, 'secret'), size: 11, sha256: sha(Buffer.from('do not send')) }, new AbortController().signal);
    await expect(async () => {
      for await (const _ of read) throw new Error('got bytes');
    }).rejects.toMatchObject({ code: 'BAD_REQUEST' });
  });

  test('a read streams the whole file while the master holds at most the window, however slowly it consumes', async () => {
    const dir = tempDir();
    const data = Buffer.alloc(24 * 1024 * 1024 + 123);
    for (let i = 0; i < data.length; i += 4096) data[i] = i % 251;
    const file = path.join(dir, 'big');
    writeFileSync(file, data);
    const link = connect();
    link.client.allowLine(`copy all ${file}`, '/');
    const facts = await link.master.describe(file);
    const hash = createHash('sha256');
    let chunks = 0;
    for await (const chunk of link.master.read(facts, new AbortController().signal)) {
      hash.update(chunk);
      link.take(chunk.length);
      // A slow consumer: the client keeps sending only as far as the window lets it.
      if (++chunks % 8 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    expect(hash.digest('hex')).toBe(sha(data));
    expect(link.maxInFlight()).toBeGreaterThan(CHUNK_BYTES);
    expect(link.maxInFlight()).toBeLessThanOrEqual(FILE_WINDOW_BYTES + FILE_CHUNK_BYTES);
  });

  test('a file that changed size since it was described fails the read with IO_ERROR', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'app');
    writeFileSync(file, Buffer.alloc(3 * CHUNK_BYTES, 7));
    const { master, client } = connect();
    client.allowLine(`copy w1 ${file}`, '/');
    const facts = await master.describe(file);
    truncateSync(file, CHUNK_BYTES);
    await expect(async () => {
      for await (const _ of master.read(facts, new AbortController().signal));
    }).rejects.toMatchObject({ code: 'IO_ERROR', message: `${file} shrank while it was being copied` });
  });

  test('a write appears whole, fsynced and renamed, or not at all; an existing file only with force', async () => {
    const dir = tempDir();
    const target = path.join(dir, 'out.log');
    const { master, client } = connect();
    client.allowLine(`logs w1 7 --out ${target}`, '/');
    const signal = new AbortController().signal;

    const w = await master.create(target, false);
    expect(w.path).toBe(target);
    const part = Buffer.alloc(1024 * 1024, 'x');
    for (let i = 0; i < 20; i++) await w.write(part, signal);
    expect(readdirSync(dir)).toHaveLength(1); // only the temp file, under another name
    expect(readdirSync(dir)[0]).toMatch(/^\.out\.log\.tmp-/);
    expect(await w.finish(true)).toEqual({ path: target, bytes: 20 * 1024 * 1024 });
    expect(readFileSync(target).equals(Buffer.concat(Array(20).fill(part) as Buffer[]))).toBe(true);

    expect(await master.create(target, false).catch((e: DroverError) => e)).toMatchObject({
      code: 'BAD_ARGUMENTS',
      message: `${target} exists; add --force to replace it`,
    });
    const again = await master.create(target, true);
    await again.write(Buffer.from('partial'), signal);
    await again.finish(false);
    expect(readdirSync(dir)).toEqual(['out.log']);
    expect(readFileSync(target).length).toBe(20 * 1024 * 1024);
  });

  test('when the connection goes, reads fail with CANCELLED and half-written files are removed', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'big');
    writeFileSync(file, Buffer.alloc(32 * 1024 * 1024, 1));
    const target = path.join(dir, 'out');
    const { master, client } = connect();
    client.allowLine(`copy w1 ${file}; logs w1 1 --out ${target}`, '/');
    const w = await master.create(target, false);
    await w.write(Buffer.from('half'), new AbortController().signal);
    const facts = await master.describe(file);
    let got = 0;
    await expect(async () => {
      for await (const chunk of master.read(facts, new AbortController().signal)) {
        got += chunk.length;
        if (got >= 4 * CHUNK_BYTES) {
          master.close();
          await client.close();
        }
      }
    }).rejects.toMatchObject({ code: 'CANCELLED', message: 'the client went away' });
    expect(readdirSync(dir)).toEqual(['big']);
  });
});

describe('openIfSame: the master reads a file itself only when it is the very file the client described', () => {
  test('same file: opened; changed, replaced or missing: not', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'app');
    writeFileSync(file, 'v1');
    const files = localFiles();
    const facts = await files.describe(file);
    expect(facts.identity).toMatch(/^\d+:\d+:2:\d+$/);

    const same = await openIfSame(file, facts.identity!);
    expect(same).not.toBeNull();
    await same!.close();
    // Rewritten in place (same inode and size, new mtime), replaced (new inode), gone.
    writeFileSync(file, 'v2');
    utimesSync(file, new Date(), new Date(Date.now() + 5000));
    expect(await openIfSame(file, facts.identity!)).toBeNull();
    const again = await files.describe(file);
    renameSync(file, `${file}.old`);
    writeFileSync(file, 'v2');
    utimesSync(file, statSync(`${file}.old`).atime, statSync(`${file}.old`).mtime);
    expect(await openIfSame(file, again.identity!)).toBeNull();
    rmSync(file);
    expect(await openIfSame(file, again.identity!)).toBeNull();
  });

  test('a client on this machine whose file the master sees: the bytes are read here, none sent by the client', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'app');
    writeFileSync(file, Buffer.alloc(3 * 1024 * 1024, 5));
    let framesFromClient = 0;
    const peer: { client?: FileServer } = {};
    const master = new RemoteFiles(
      async (reply) => void setImmediate(() => (reply.type === 'file' ? peer.client!.ask(reply) : undefined)),
      async () => undefined,
      true,
    );
    peer.client = new FileServer(
      (m) => void setImmediate(() => (m.type === 'file-reply' ? master.receiveReply(m) : undefined)),
      async () => void framesFromClient++,
    );
    peer.client.allowLine(`copy w1 ${file}`, '/');
    const facts = await master.describe(file);
    let bytes = 0;
    for await (const chunk of master.read(facts, new AbortController().signal)) bytes += chunk.length;
    expect(bytes).toBe(3 * 1024 * 1024);
    expect(framesFromClient).toBe(0);
  });
});
