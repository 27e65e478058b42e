import { X509Certificate } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { createSelfSigned } from '../../../packages/master/src/self-signed.js';

describe('createSelfSigned', () => {
  test('every certificate is valid DER, whatever its random serial (a leading zero byte was refused 1 time in 256)', () => {
    for (let i = 0; i < 400; i++) {
      const { cert } = createSelfSigned('drover master', 1);
      const x = new X509Certificate(cert);
      expect(x.subject).toBe('CN=drover master');
      expect(x.verify(x.publicKey)).toBe(true);
    }
  });
});
