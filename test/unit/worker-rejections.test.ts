import { spawnSync } from 'node:child_process';
import path from 'node:path';

/**
 * Run in a child process: Jest catches unhandled rejections itself, so only a real process shows
 * what Node does with one (by default: exit 1).
 */
const ROOT = path.join(__dirname, '../..');

function run(install: boolean): { status: number | null; stdout: string } {
  const script = `
    const { createLogger } = require('./src/logger');
    const { installUnhandledRejectionHandler } = require('./src/worker');
    const h = ${install ? "installUnhandledRejectionHandler(createLogger('error', 'test'))" : '{ count: () => 0 }'};
    void Promise.reject(new Error('flush failed after five persists'));
    setTimeout(() => { process.stdout.write('alive ' + h.count() + '\\n'); }, 100);
  `;
  const r = spawnSync(process.execPath, ['--require', 'tsx/cjs', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout + r.stderr };
}

describe('the worker-level unhandled-rejection handler', () => {
  it('logs and counts a rejected promise nobody awaited, and the process keeps running', () => {
    const r = run(true);
    expect(r.stdout).toContain('alive 1');
    expect(r.stdout).toContain('flush failed after five persists');
    expect(r.status).toBe(0);
  });

  it('without it, Node ends the process', () => {
    const r = run(false);
    expect(r.stdout).not.toContain('alive');
    expect(r.status).not.toBe(0);
  });
});
