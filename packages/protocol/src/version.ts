/** Wire protocol version, checked at the handshake. Within a version only additions are allowed. */
export const PROTOCOL_VERSION = 1;

/** Version of the drover agents (master and worker ship together). */
export const AGENT_VERSION = '0.1.0';

/** Largest text frame either side accepts; binary chunks are far smaller. */
export const MAX_FRAME_BYTES = 1024 * 1024;

/** Payload bytes carried by one binary chunk frame. */
export const CHUNK_BYTES = 256 * 1024;

/** Unacknowledged bytes a sender may have in flight for one transfer. */
export const TRANSFER_WINDOW_BYTES = 8 * 1024 * 1024;

/** WebSocket close codes the master uses to refuse or drop a worker. */
export const CloseCode = {
  /** The first frame was not a valid hello. */
  HELLO_EXPECTED: 4000,
  UNAUTHORIZED: 4001,
  VERSION_MISMATCH: 4002,
  DUPLICATE_NAME: 4003,
  /** A newer session of the same worker took over. */
  REPLACED: 4005,
  /** The master is shutting down. */
  SHUTDOWN: 4006,
} as const;
