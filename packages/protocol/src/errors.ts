/**
 * The closed catalogue of error codes. Every code is documented in the README
 * (a test fails when one is missing there).
 */
export const ErrorCode = {
  BAD_REQUEST: 'BAD_REQUEST',
  BAD_ARGUMENTS: 'BAD_ARGUMENTS',
  BAD_NAME: 'BAD_NAME',
  UNKNOWN_COMMAND: 'UNKNOWN_COMMAND',
  UNKNOWN_WORKER: 'UNKNOWN_WORKER',
  WORKER_UNAVAILABLE: 'WORKER_UNAVAILABLE',
  NOT_FOUND: 'NOT_FOUND',
  APP_NOT_FOUND: 'APP_NOT_FOUND',
  PROCESS_NOT_FOUND: 'PROCESS_NOT_FOUND',
  APP_RUNNING: 'APP_RUNNING',
  EXEC_FAILED: 'EXEC_FAILED',
  LIBRARY_MISSING: 'LIBRARY_MISSING',
  CHECKSUM_MISMATCH: 'CHECKSUM_MISMATCH',
  NO_SPACE: 'NO_SPACE',
  IO_ERROR: 'IO_ERROR',
  BUSY: 'BUSY',
  TIMEOUT: 'TIMEOUT',
  CANCELLED: 'CANCELLED',
  PROTOCOL_ERROR: 'PROTOCOL_ERROR',
  TOO_LARGE: 'TOO_LARGE',
  UNAUTHORIZED: 'UNAUTHORIZED',
  VERSION_MISMATCH: 'VERSION_MISMATCH',
  DUPLICATE_NAME: 'DUPLICATE_NAME',
  MASTER_UNREACHABLE: 'MASTER_UNREACHABLE',
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export const ERROR_CODES = Object.values(ErrorCode) as ErrorCode[];

/** The one error type drover raises on purpose: a code, a one-line message, and the cause for logs. */
export class DroverError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DroverError';
    this.code = code;
  }

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

const ERRNO_CODES: Record<string, ErrorCode> = {
  ENOENT: ErrorCode.NOT_FOUND,
  ENOSPC: ErrorCode.NO_SPACE,
  EDQUOT: ErrorCode.NO_SPACE,
  EACCES: ErrorCode.IO_ERROR,
  EPERM: ErrorCode.IO_ERROR,
  EISDIR: ErrorCode.IO_ERROR,
  ENOTDIR: ErrorCode.IO_ERROR,
  EIO: ErrorCode.IO_ERROR,
  EROFS: ErrorCode.IO_ERROR,
};

/** Turns anything thrown into a DroverError, keeping the original as its cause. */
export function toDroverError(err: unknown): DroverError {
  if (err instanceof DroverError) return err;
  if (err instanceof Error) {
    const errno = (err as NodeJS.ErrnoException).code;
    const code = (errno && ERRNO_CODES[errno]) || ErrorCode.INTERNAL;
    return new DroverError(code, firstLine(err.message), { cause: err });
  }
  return new DroverError(ErrorCode.INTERNAL, firstLine(String(err)), { cause: err });
}

function firstLine(text: string): string {
  const line = text.split('\n', 1)[0] ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/** For the default of an exhaustive switch: a new union member fails to compile where it is not handled. */
export function unreachable(value: never): never {
  throw new DroverError(ErrorCode.INTERNAL, `unhandled case ${JSON.stringify(value)}`);
}
