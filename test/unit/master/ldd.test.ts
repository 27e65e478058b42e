import { describe, expect, test } from 'vitest';
import { parseLdd } from '@drover/protocol';
import { isSystemLibrary, librariesToCopy } from '../../../packages/master/src/ldd.js';

describe('which libraries copy ships', () => {
  test('system folders and their multiarch subfolders are system; the rest is not', () => {
    for (const p of [
      '/lib/libz.so.1',
      '/lib64/libz.so.1',
      '/usr/lib/libssl.so.3',
      '/usr/lib64/libssl.so.3',
      '/lib/x86_64-linux-gnu/libz.so.1',
      '/usr/lib/aarch64-linux-gnu/libcrypto.so.3',
    ]) {
      expect(isSystemLibrary(p), p).toBe(true);
    }
    for (const p of ['/usr/local/lib/libfoo.so', '/opt/vendor/lib/libbar.so.2', '/home/me/build/libx.so', '/usr/lib/x86_64-linux-gnu/nested/deeper/liby.so']) {
      expect(isSystemLibrary(p), p).toBe(false);
    }
  });

  test('ldd output: runtime and system libraries are skipped, third-party ones kept, missing ones named', () => {
    const out = [
      '\tlinux-vdso.so.1 (0x00007ffd)',
      '\tlibgreet.so.1 => /opt/greet/libgreet.so.1 (0x00007f01)',
      '\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f02)',
      '\tlibm.so.6 => /opt/weird/libm.so.6 (0x00007f03)',
      '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f04)',
      '\tlibmissing.so.2 => not found',
      '\tlibtool.so.0 => /usr/local/lib/libtool.so.0 (0x00007f05)',
      '\t/lib64/ld-linux-x86-64.so.2 (0x00007f06)',
    ].join('\n');
    expect(librariesToCopy(out)).toEqual({
      libraries: [
        { name: 'libgreet.so.1', path: '/opt/greet/libgreet.so.1' },
        { name: 'libtool.so.0', path: '/usr/local/lib/libtool.so.0' },
      ],
      missing: ['libmissing.so.2'],
    });
  });

  test('the worker reads the same output: what is missing, and a library that cannot be loaded', () => {
    const report = parseLdd('\tlibmissing.so.2 => not found\n\tlibgreet.so.1 => /opt/libgreet.so.1 (0x1)\n');
    expect(report).toEqual({ resolved: [{ name: 'libgreet.so.1', path: '/opt/libgreet.so.1' }], missing: ['libmissing.so.2'], broken: null });
    const broken = parseLdd('./app: error while loading shared libraries: /srv/app/lib/libfx.so.2: file too short\n');
    expect(broken.broken).toEqual({ name: 'libfx.so.2', why: 'file too short' });
  });
});
