import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

/** A child process whose stdout and stderr are collected, with its exit as a promise. */
export interface WatchedChild {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves once `ready` shows in the output; throws (with the output) if it exits or times out first. */
  ready(ready: RegExp, timeoutMs: number): Promise<void>;
}

export function spawnWatched(command: string, args: string[], options: SpawnOptions): WatchedChild {
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (output += b.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const name = [command, ...args].join(' ');
  return {
    child,
    output: () => output,
    exited,
    async ready(ready, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!ready.test(output)) {
        if (child.exitCode !== null) throw new Error(`${name} exited early:\n${output}`);
        if (Date.now() > deadline) throw new Error(`${name} not ready after ${timeoutMs / 1000} s:\n${output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}
