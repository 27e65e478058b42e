import { expect, test } from 'vitest';
import { advertise, withPort } from '../../../packages/master/src/advertise.js';

test('--advertise keeps a given port and adds the listening one where none was given', () => {
  expect(withPort('10.0.0.5', 7070)).toBe('10.0.0.5:7070');
  expect(withPort('10.0.0.5:8080', 7070)).toBe('10.0.0.5:8080');
  expect(withPort('master.example', 7070)).toBe('master.example:7070');
  expect(withPort('[::1]:7070', 9)).toBe('[::1]:7070');
  expect(withPort('[::1]', 7070)).toBe('[::1]:7070');
  expect(withPort('fd00::5', 7070)).toBe('[fd00::5]:7070');
  expect(advertise(undefined, '127.0.0.1', 7070)).toBe('127.0.0.1:7070');
  expect(advertise(undefined, '::1', 7070)).toBe('[::1]:7070');
});
