/**
 * Binary chunk frames carry file data (uploads, log fetches) next to the JSON frames.
 * Header (8 bytes, big endian): magic 0xD7, version 1, flags u16 (reserved, 0), ref u32
 * (the id of the request the data belongs to), then the payload.
 */
export const CHUNK_MAGIC = 0xd7;
export const CHUNK_VERSION = 1;
export const CHUNK_HEADER_BYTES = 8;

/** Builds the header for a chunk of transfer `ref`; send it with the payload as one frame. */
export function encodeChunkHeader(ref: number): Buffer {
  const header = Buffer.allocUnsafe(CHUNK_HEADER_BYTES);
  header.writeUInt8(CHUNK_MAGIC, 0);
  header.writeUInt8(CHUNK_VERSION, 1);
  header.writeUInt16BE(0, 2);
  header.writeUInt32BE(ref >>> 0, 4);
  return header;
}

/**
 * Makes the frame in place, without copying the payload: writes the header into the
 * CHUNK_HEADER_BYTES just before `payload` in its memory, which the caller owns and leaves free
 * (a chunk read with headroom, or one received in a frame, whose old header it overwrites).
 */
export function frameInPlace(ref: number, payload: Buffer): Buffer {
  if (payload.byteOffset < CHUNK_HEADER_BYTES) throw new RangeError('the payload has no room for a chunk header before it');
  const frame = Buffer.from(payload.buffer, payload.byteOffset - CHUNK_HEADER_BYTES, payload.length + CHUNK_HEADER_BYTES);
  frame.writeUInt8(CHUNK_MAGIC, 0);
  frame.writeUInt8(CHUNK_VERSION, 1);
  frame.writeUInt16BE(0, 2);
  frame.writeUInt32BE(ref >>> 0, 4);
  return frame;
}

/** Builds one whole chunk frame (header + payload). */
export function encodeChunk(ref: number, payload: Buffer): Buffer {
  return Buffer.concat([encodeChunkHeader(ref), payload], CHUNK_HEADER_BYTES + payload.length);
}

export type DecodedChunk = { ok: true; ref: number; payload: Buffer } | { ok: false; error: string };

/** Reads a chunk frame; the payload is a view into `frame`, not a copy. */
export function decodeChunk(frame: Buffer): DecodedChunk {
  if (frame.length < CHUNK_HEADER_BYTES) return { ok: false, error: `chunk frame of ${frame.length} bytes is shorter than its header` };
  if (frame[0] !== CHUNK_MAGIC) return { ok: false, error: `chunk frame has magic 0x${frame[0]!.toString(16)}, expected 0xd7` };
  if (frame[1] !== CHUNK_VERSION) return { ok: false, error: `chunk frame has version ${frame[1]}, expected ${CHUNK_VERSION}` };
  return { ok: true, ref: frame.readUInt32BE(4), payload: frame.subarray(CHUNK_HEADER_BYTES) };
}
