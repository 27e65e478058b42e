/** What a VM runs to join: the install one-liner and the plain worker command. */
export interface JoinInfo {
  workerCommand: string;
  installCommand: string | null;
}

/**
 * The join lines. The token travels in DROVER_TOKEN, never as an argument: arguments are
 * readable in `ps` by every local user for as long as the worker (or the installer) runs.
 * `token` is the secret itself, or a placeholder where the lines are printed somewhere that
 * is kept (stdout under systemd goes to the journal).
 */
export function joinLines(opts: {
  advertised: string;
  tls: boolean;
  token: string;
  installer: boolean;
  /** The public-key pin of a self-signed master: every client checks it (as kubeadm join's CA hash). */
  pin?: { fingerprint: string; curl: string };
}): JoinInfo {
  const env = `DROVER_TOKEN=${opts.token}`;
  const scheme = opts.tls ? 'https' : 'http';
  const curl = opts.pin ? `curl -fsSLk --pinnedpubkey ${opts.pin.curl}` : 'curl -fsSL';
  const pinArg = opts.pin ? ` --fingerprint ${opts.pin.fingerprint}` : '';
  return {
    workerCommand: `${env} worker --master ${opts.tls ? 'wss://' : ''}${opts.advertised}${pinArg}`,
    installCommand: opts.installer
      ? `${curl} ${scheme}://${opts.advertised}/install.sh | ${env} sudo --preserve-env=DROVER_TOKEN sh -s${pinArg ? ` --${pinArg}` : ''}`
      : null,
  };
}
