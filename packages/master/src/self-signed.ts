import { X509Certificate, generateKeyPairSync, randomBytes, sign } from 'node:crypto';

/*
 * A self-signed certificate for the master, made without openssl or a dependency: an EC P-256
 * key from node:crypto, and the few DER structures of an X.509 v1 certificate written here.
 * Clients never check it against a CA or a host name: they pin its public key (the sha256 of
 * its SubjectPublicKeyInfo, as curl's --pinnedpubkey and kubeadm's discovery hash do).
 */

const der = (tag: number, content: Buffer): Buffer => Buffer.concat([Buffer.from([tag]), length(content.length), content]);
const seq = (...parts: Buffer[]): Buffer => der(0x30, Buffer.concat(parts));

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** ecdsa-with-SHA256 (1.2.840.10045.4.3.2). */
const ECDSA_SHA256 = seq(Buffer.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]));

function name(commonName: string): Buffer {
  const cn = Buffer.from([0x06, 0x03, 0x55, 0x04, 0x03]); // 2.5.4.3 commonName
  return seq(der(0x31, seq(cn, der(0x0c, Buffer.from(commonName, 'utf8')))));
}

/** UTCTime (YYMMDDHHMMSSZ) for years before 2050, GeneralizedTime after, as RFC 5280 says. */
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  return d.getUTCFullYear() < 2050 ? der(0x17, Buffer.from(`${iso.slice(2)}Z`)) : der(0x18, Buffer.from(`${iso}Z`));
}

/** A new key and a certificate for it, signed by itself, valid from yesterday for `years`. */
export function createSelfSigned(commonName: string, years = 10): { cert: string; key: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const serial = randomBytes(16);
  // A positive INTEGER in its shortest form: a first byte of 0x00 followed by one below 0x80
  // is not DER (OpenSSL refuses it: "illegal padding"), 1 start in 256 before this.
  serial[0] = 0x40 | (serial[0]! & 0x3f);
  const now = Date.now();
  const tbs = seq(
    der(0x02, serial),
    ECDSA_SHA256,
    name(commonName),
    seq(time(new Date(now - 24 * 3600 * 1000)), time(new Date(now + years * 365 * 24 * 3600 * 1000))),
    name(commonName),
    publicKey.export({ type: 'spki', format: 'der' }),
  );
  const signature = sign('sha256', tbs, privateKey);
  const certDer = seq(tbs, ECDSA_SHA256, der(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const cert = `-----BEGIN CERTIFICATE-----\n${certDer.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;
  new X509Certificate(cert); // throws if what we wrote is not a certificate
  return { cert, key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}
