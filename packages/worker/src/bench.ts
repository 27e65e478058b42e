import { DroverError, ErrorCode, type RequestOf, type ResultDataOf } from '@drover/protocol';
import type { Services } from './services.js';

/** Timed create / copy / delete of a file (issue 4). */
export async function runBench(_request: RequestOf<'bench'>, services: Services, _signal: AbortSignal): Promise<ResultDataOf<'bench'>> {
  throw new DroverError(ErrorCode.BAD_REQUEST, `bench is not available on ${services.workerName} yet`);
}
