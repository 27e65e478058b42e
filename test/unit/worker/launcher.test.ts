import { expect, test } from 'vitest';
import { appEnvironment } from '../../../packages/worker/src/launcher.js';

test("an app's environment is built afresh: nothing of the agent's secrets, the user's variables, drover's own", () => {
  const env = appEnvironment({
    app: 'api',
    workerName: 'w1',
    libDir: '/state/apps/api/lib',
    user: { LOG_LEVEL: 'debug' },
    agentEnv: { PATH: '/usr/bin', HOME: '/var/lib/drover', LANG: 'C.UTF-8', DROVER_TOKEN: 'secret', AWS_SECRET_ACCESS_KEY: 'k', LD_LIBRARY_PATH: '/opt/lib' },
  });
  expect(env).toEqual({
    PATH: '/usr/bin',
    HOME: '/var/lib/drover',
    LANG: 'C.UTF-8',
    LOG_LEVEL: 'debug',
    LD_LIBRARY_PATH: '/state/apps/api/lib:/opt/lib',
    DROVER_APP: 'api',
    DROVER_WORKER: 'w1',
  });
  expect(appEnvironment({ app: 'a', workerName: 'w', libDir: '/l', user: {}, agentEnv: {} }).PATH).toMatch(/\/usr\/bin/);
});
