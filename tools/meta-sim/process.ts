import { spawn } from 'node:child_process';
import path from 'node:path';
import type { NumberConfig, NumberConfigPatch, ReceiverStats, SimLog } from './server';

/**
 * The simulator in a process of its own (`cli.ts serve`), driven over its HTTP control routes.
 *
 * What a test judges at the receiver (the cap on a strict 1,000 ms window, the pair limit) is
 * stamped when the simulator's event loop reads each request. In the test's own process that loop
 * also runs the API, the outbox relay and the test: under a burst of direct sends it lagged up to
 * 273 ms (p99 100 ms), and sends written to the socket on time by the workers were read up to
 * 221 ms later, bunched: 21 "arrivals" in a second, one 130429, from sends that had left their slots
 * within the pacer's tolerance. Meta's clock does not wait on the sender's API; this process does
 * not either.
 */
export interface MetaSimulatorProcess {
  /** `http://127.0.0.1:<port>`: the workers' `GRAPH_API_BASE_URL`. */
  url: string;
  pid: number;
  /** Patches one number (`POST /_sim/numbers/:id`); resolves to its new config. */
  setNumber(phoneNumberId: string, patch: NumberConfigPatch): Promise<NumberConfig>;
  /** What one number received (`GET /_sim/receiver-stats`). */
  receiverStats(phoneNumberId: string): Promise<ReceiverStats>;
  /** The accepted and rejected sends of one number (or all), in arrival order (`GET /_sim/log`). */
  log(phoneNumberId?: string): Promise<SimLog>;
  /** Stops the process (SIGTERM, then SIGKILL after 5 s). */
  stop(): Promise<void>;
}

const CLI = path.join(__dirname, 'cli.ts');

/**
 * Starts `meta-sim serve` on a free port with no default cap (set each number's with `setNumber`)
 * and resolves once it listens.
 */
export async function spawnMetaSimulator(options: { latencyMs?: number } = {}): Promise<MetaSimulatorProcess> {
  const args = ['--import', 'tsx', CLI, 'serve', '--port', '0', '--cap', '0'];
  if (options.latencyMs !== undefined) args.push('--latency', String(options.latencyMs));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`meta-sim serve not listening after 30 s:\n${output}`)), 30_000);
    const onData = (b: Buffer): void => {
      output += b.toString();
      const m = /meta-sim listening on (http:\/\/\S+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`meta-sim serve exited:\n${output}`));
    });
  });
  // Keep draining its output (a full pipe would block it).
  child.stdout.resume();
  child.stderr.resume();

  async function control<T>(method: string, route: string, body?: unknown): Promise<T> {
    const res = await fetch(`${url}/_sim/${route}`, {
      method,
      ...(body !== undefined ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}),
    });
    if (!res.ok) throw new Error(`meta-sim ${method} /_sim/${route}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  return {
    url,
    pid: child.pid!,
    setNumber: async (id, patch) =>
      (await control<{ config: NumberConfig }>('POST', `numbers/${encodeURIComponent(id)}`, patch)).config,
    receiverStats: (id) => control<ReceiverStats>('GET', `receiver-stats?phoneNumberId=${encodeURIComponent(id)}`),
    log: (id) => control<SimLog>('GET', `log${id === undefined ? '' : `?phoneNumberId=${encodeURIComponent(id)}`}`),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killer);
    },
  };
}
