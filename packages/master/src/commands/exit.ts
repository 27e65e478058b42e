import { defineCommand } from './types.js';

export const exitCommand = defineCommand<{ exit: true }>({
  name: 'exit',
  usage: 'exit',
  summary: 'stop the master, from the shell or master exec (workers and their apps keep running)',
  maxArgs: 0,
  async run() {
    return { exit: true };
  },
  format() {
    return '';
  },
});
