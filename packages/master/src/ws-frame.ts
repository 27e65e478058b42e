import { TLSSocket } from 'node:tls';
import WebSocket from 'ws';

import { WS_HEADER_ROOM } from './local-files.js';

/**
 * Writes a binary frame whose bytes have WS_HEADER_ROOM free in front of them in their memory
 * as one buffer: the WebSocket header written in place, the whole written to the socket under
 * `ws` (a server's end: no mask), past ws's Sender. Only where that saves a copy: ws hands a
 * frame to its socket as two buffers (header and payload), and Node's TLS socket copies two
 * buffers into one before it encrypts them (a 256 MiB copy over wss: ~40 ms of the master's
 * CPU, 8% of it), where a plain socket writes both with one writev. The order of frames is
 * kept: ws writes a frame to its socket at once (nothing is queued without permessage-deflate,
 * which drover's endpoints refuse), as this does. False where it did not write: not a TLS
 * socket, not open, or no room; the caller sends it through ws.
 */
export function writeWholeFrame(ws: WebSocket, frame: Buffer, done: (err?: Error | null) => void): boolean {
  // ws keeps its socket here (the library's own field, there since its first versions).
  const socket = (ws as unknown as { _socket?: unknown })._socket;
  if (!(socket instanceof TLSSocket) || ws.readyState !== WebSocket.OPEN || frame.byteOffset < WS_HEADER_ROOM) return false;
  socket.write(withHeader(frame), done);
  return true;
}

/** `frame` with an unmasked, final, binary WebSocket header written in the bytes before it. */
export function withHeader(frame: Buffer): Buffer {
  const length = frame.length;
  const header = length < 126 ? 2 : length < 65536 ? 4 : 10;
  if (frame.byteOffset < header) throw new RangeError('no room for a WebSocket header before the frame');
  const whole = Buffer.from(frame.buffer, frame.byteOffset - header, length + header);
  whole[0] = 0x82; // FIN, binary
  if (header === 2) whole[1] = length;
  else if (header === 4) {
    whole[1] = 126;
    whole.writeUInt16BE(length, 2);
  } else {
    whole[1] = 127;
    whole.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    whole.writeUInt32BE(length >>> 0, 6);
  }
  return whole;
}
