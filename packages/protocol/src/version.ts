/** Wire protocol version, checked at the handshake. Within a version only additions are allowed. */
export const PROTOCOL_VERSION = 1;

/** Version of the drover agents (master and worker ship together). */
export const AGENT_VERSION = '0.1.0';

/** Largest text frame either side accepts; binary chunks are far smaller. */
export const MAX_FRAME_BYTES = 1024 * 1024;

/**
 * The UTF-8 size of a text to send, when it is past MAX_FRAME_BYTES (the peer would drop the
 * connection); null when it fits. Counted only for a long text: a UTF-16 unit is at most 3 bytes.
 */
export function bytesPastFrame(text: string): number | null {
  if (text.length <= MAX_FRAME_BYTES / 3) return null;
  const bytes = Buffer.byteLength(text);
  return bytes > MAX_FRAME_BYTES ? bytes : null;
}

/**
 * The largest answer a worker gives to one request. One past a frame (a `ps` of a table whose
 * launches carry long command lines) comes as binary chunks of its JSON, then `result-parts`;
 * past this, the worker answers TOO_LARGE. It bounds what the master holds for one request.
 */
export const MAX_RESULT_BYTES = 32 * 1024 * 1024;

/** Payload bytes carried by one binary chunk frame. */
export const CHUNK_BYTES = 256 * 1024;

/** File data read for a copy travels in chunks this big: a whole frame with its 8-byte header. */
export const FILE_CHUNK_BYTES = MAX_FRAME_BYTES - 8;

/** Unacknowledged bytes a sender may have in flight for one transfer. */
export const TRANSFER_WINDOW_BYTES = 8 * 1024 * 1024;

/** Bounds of the heartbeat interval, on both sides: a huge one overflows timers into a busy loop. */
export const HEARTBEAT_MIN_MS = 100;
export const HEARTBEAT_MAX_MS = 60_000;

/** Returns an error message when `ms` is not a usable heartbeat interval, else null. */
export function checkHeartbeatMs(ms: number): string | null {
  if (Number.isInteger(ms) && ms >= HEARTBEAT_MIN_MS && ms <= HEARTBEAT_MAX_MS) return null;
  return `--heartbeat-ms must be a whole number of milliseconds from ${HEARTBEAT_MIN_MS} to ${HEARTBEAT_MAX_MS}, got ${ms}`;
}

/** WebSocket close codes the master uses to refuse or drop a worker. */
export const CloseCode = {
  /** The first frame was not a valid hello. */
  HELLO_EXPECTED: 4000,
  UNAUTHORIZED: 4001,
  VERSION_MISMATCH: 4002,
  DUPLICATE_NAME: 4003,
  /** The worker's name is not allowed (a reserved word). */
  BAD_NAME: 4004,
  /** A newer session of the same worker took over. */
  REPLACED: 4005,
  /** The master is shutting down. */
  SHUTDOWN: 4006,
  /** The peer broke the protocol (ignored flow control). */
  PROTOCOL_VIOLATION: 4007,
} as const;

/** How long an agent lets its master be quiet before it pings it: at most this (10 minutes). */
export const QUIET_MAX_MS = 600_000;

/**
 * Pings from agents a master answers a second at most. An agent pings a master that has been
 * quiet for its quiet time (to learn that it is still there): two heartbeats in a small fleet,
 * and past 2,000 workers at 1 s heartbeats one ms per worker, so a fleet of 20,000 pings every
 * 20 s (a pong per agent every 2 s cost a 19,500-worker master ~15 points of a core). A master
 * that vanished is noticed in twice that (the agent redials then); self-fencing instances keep
 * their own, shorter ping interval. Nomad scales its heartbeat TTLs with the cluster the same way.
 */
export const AGENT_PINGS_PER_SECOND = 1000;

/** The quiet time (ms) a master tells the agents of a fleet of `workers`. */
export function quietMsFor(workers: number, heartbeatMs: number): number {
  return Math.min(QUIET_MAX_MS, Math.max(2 * heartbeatMs, Math.ceil((workers * 1000) / AGENT_PINGS_PER_SECOND)));
}
