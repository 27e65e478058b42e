import type { X509Certificate } from 'node:crypto';

/** A certificate's public-key pin: sha256 of its SubjectPublicKeyInfo, as `sha256:HEX` (drover) and `sha256//BASE64` (curl). */
export interface PublicKeyPin {
  fingerprint: string;
  curl: string;
}

/**
 * The pin of a certificate (PEM text, or one a TLS peer presented). It names the key, not the
 * certificate, so a master that renews its certificate with the same key keeps its pin.
 */
export function publicKeyPin(cert: string | Buffer | X509Certificate): PublicKeyPin {
  // node:crypto on first use: the clients carry this module, and most of their commands never pin.
  const crypto = process.getBuiltinModule('node:crypto');
  const x509 = cert instanceof crypto.X509Certificate ? cert : new crypto.X509Certificate(cert);
  const digest = crypto
    .createHash('sha256')
    .update(x509.publicKey.export({ type: 'spki', format: 'der' }))
    .digest();
  return { fingerprint: `sha256:${digest.toString('hex')}`, curl: `sha256//${digest.toString('base64')}` };
}

/** Accepts `sha256:` followed by 64 hex digits (any case); returns it normalised, or null. */
export function parseFingerprint(text: string): string | null {
  const m = /^sha256:([0-9a-fA-F]{64})$/.exec(text.trim());
  return m ? `sha256:${m[1]!.toLowerCase()}` : null;
}

/**
 * TLS options for a connection to a pinned peer: its key, checked by the caller once the
 * handshake is done (publicKeyPin of the peer's certificate), is the only trust. Node's CA store
 * is not consulted, so it is not loaded either (`ca: []`): loading it parses ~140 bundled roots,
 * ~23 ms of every pinned `drover` command and ~1.25 MiB of a worker's memory.
 */
export function pinnedTls(): { rejectUnauthorized: false; ca: string[] } {
  return { rejectUnauthorized: false, ca: [] };
}
