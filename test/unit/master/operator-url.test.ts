import { describe, expect, test } from 'vitest';
import { operatorUrl } from '../../../packages/master/src/client-transport.js';

describe('the master given to drover --master', () => {
  test('HOST:PORT is wss; ws, wss and the dashboard address (http, https) are taken, with / or /operator', () => {
    expect(operatorUrl('10.0.0.5:7070')).toBe('wss://10.0.0.5:7070/operator');
    expect(operatorUrl('wss://m.example:7070')).toBe('wss://m.example:7070/operator');
    expect(operatorUrl('ws://127.0.0.1:7070/')).toBe('ws://127.0.0.1:7070/operator');
    expect(operatorUrl('http://127.0.0.1:7070/')).toBe('ws://127.0.0.1:7070/operator');
    expect(operatorUrl('https://m.example:7070/operator')).toBe('wss://m.example:7070/operator');
    expect(operatorUrl(' [::1]:7070 ')).toBe('wss://[::1]:7070/operator');
  });

  test('anything else is not a master address', () => {
    for (const bad of ['ws://[::1', 'ftp://h:1', 'ws://h:1/dashboard', 'ws://h:99999', 'user:pw@h:1', 'ws://', '', 'h:1?x=1']) {
      expect(operatorUrl(bad), bad).toBeNull();
    }
  });
});
