const DESCRIPTIONS: Record<string, string> = {
  SIGHUP: 'hangup',
  SIGINT: 'interrupt',
  SIGQUIT: 'quit',
  SIGILL: 'illegal instruction',
  SIGTRAP: 'trace trap',
  SIGABRT: 'aborted',
  SIGBUS: 'bus error',
  SIGFPE: 'floating-point exception',
  SIGKILL: 'killed',
  SIGUSR1: 'user signal 1',
  SIGSEGV: 'segmentation fault',
  SIGUSR2: 'user signal 2',
  SIGPIPE: 'broken pipe',
  SIGALRM: 'alarm',
  SIGTERM: 'terminated',
  SIGXCPU: 'CPU time limit exceeded',
  SIGXFSZ: 'file size limit exceeded',
  SIGSYS: 'bad system call',
};

/** Signals whose default action writes a core file (signal(7)). */
const CORE_SIGNALS = new Set(['SIGQUIT', 'SIGILL', 'SIGTRAP', 'SIGABRT', 'SIGBUS', 'SIGFPE', 'SIGSEGV', 'SIGXCPU', 'SIGXFSZ', 'SIGSYS']);

export function describeSignal(name: string): string {
  return DESCRIPTIONS[name] ?? name;
}

export function isCoreSignal(name: string): boolean {
  return CORE_SIGNALS.has(name);
}
