/**
 * docker-compose.yml cannot be run here (no Docker engine), so it is checked statically: against
 * the Compose Specification's JSON Schema (the copy that the `dclint` package ships; draft-07,
 * hence ajv's default entry point) and against this project's deployment rules. Nothing is
 * downloaded at test time.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import { parse } from 'yaml';
import { SEARCH_ATTRIBUTES } from '../../src/contracts';

type Doc = Record<string, unknown>;
type Service = Record<string, unknown>;

const COMPOSE_FILE = path.join(__dirname, '../../docker-compose.yml');
/** The only service allowed to publish a port on every host interface. */
const PUBLIC_SERVICE = 'server';
/** Registered by the setup job ahead of the change that starts using it. */
const UPCOMING_SEARCH_ATTRIBUTES: Record<string, string> = { GateCause: 'Keyword' };

function loadComposeSchema(): Doc {
  const dir = path.dirname(require.resolve('dclint/package.json'));
  const schema = JSON.parse(readFileSync(path.join(dir, 'schemas/compose.schema.json'), 'utf8')) as Doc;
  // The file names the draft by an https URL that ajv does not know under that key; ajv's own
  // draft-07 meta-schema is the same draft, and keeping schema validation on catches a package
  // update that switches drafts.
  if (!/^https?:\/\/json-schema\.org\/draft-07\/schema#?$/.test(String(schema.$schema))) {
    throw new Error(`compose schema is not draft-07 (${String(schema.$schema)}): pick the matching ajv entry point`);
  }
  return { ...schema, $schema: 'http://json-schema.org/draft-07/schema#' };
}

// strictTypes off: the upstream schema uses union types and untyped `oneOf` branches.
const validateSchema = new Ajv({ allErrors: true, strictTypes: false }).compile(loadComposeSchema());

function readCompose(): Doc {
  // `merge`: the file shares environment blocks through YAML merge keys (`<<: *anchor`), as Compose does.
  return parse(readFileSync(COMPOSE_FILE, 'utf8'), { merge: true }) as Doc;
}

function servicesOf(doc: Doc): Record<string, Service> {
  return (doc.services ?? {}) as Record<string, Service>;
}

/** Why `image` is not pinned to a specific version, or undefined when it is. */
function unpinnedReason(image: string): string | undefined {
  if (image.includes('$')) return 'takes its version from a variable';
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return undefined;
  const colon = image.lastIndexOf(':');
  if (colon <= image.lastIndexOf('/')) return 'has no tag';
  const tag = image.slice(colon + 1);
  if (tag === 'latest') return 'uses latest';
  if (!/^v?\d+\.\d+/.test(tag)) return `tag ${tag} is not a major.minor[.patch] version`;
  return undefined;
}

function isLoopback(host: string): boolean {
  return /^127\./.test(host) || host === '::1' || host === 'localhost';
}

/** True when this `ports` entry (short or long syntax) is reachable on every host interface. */
function publishesOnAllInterfaces(entry: unknown): boolean {
  if (typeof entry === 'number') return true; // container port only: a random host port on 0.0.0.0
  if (typeof entry === 'string') {
    const spec = entry.replace(/\/(tcp|udp|sctp)$/, '');
    const ipv6 = /^\[([^\]]+)\]:/.exec(spec);
    if (ipv6) return !isLoopback(ipv6[1] ?? '');
    const parts = spec.split(':');
    return parts.length < 3 || !isLoopback(parts[0] ?? '');
  }
  if (entry !== null && typeof entry === 'object') {
    const hostIp = (entry as { host_ip?: unknown }).host_ip;
    return typeof hostIp !== 'string' || !isLoopback(hostIp);
  }
  return true;
}

/** Schema violations, as `path: message`. */
function schemaProblems(doc: Doc): string[] {
  if (validateSchema(doc)) return [];
  return (validateSchema.errors ?? []).map((e) => `schema: ${e.instancePath || '/'} ${e.message ?? ''}`.trim());
}

/** Violations of the deployment rules this project keeps for docker-compose.yml. */
function policyProblems(doc: Doc): string[] {
  const problems: string[] = [];
  for (const [name, service] of Object.entries(servicesOf(doc))) {
    if (typeof service.image === 'string') {
      const reason = unpinnedReason(service.image);
      if (reason) problems.push(`${name}: image ${service.image} ${reason}`);
    } else if (service.build === undefined) {
      problems.push(`${name}: neither image nor build`);
    }
    if (name !== PUBLIC_SERVICE) {
      const ports = Array.isArray(service.ports) ? (service.ports as unknown[]) : [];
      for (const entry of ports.filter(publishesOnAllInterfaces)) {
        problems.push(`${name}: publishes ${JSON.stringify(entry)} on all interfaces`);
      }
      if (service.network_mode === 'host') problems.push(`${name}: network_mode host exposes every port`);
    }
  }
  const worker = servicesOf(doc).worker;
  if (!worker) problems.push('worker: missing');
  else {
    if (worker.container_name !== undefined) problems.push('worker: container_name prevents --scale');
    if (worker.ports !== undefined) problems.push('worker: host ports prevent --scale');
  }
  return problems;
}

function allProblems(doc: Doc): string[] {
  return [...schemaProblems(doc), ...policyProblems(doc)];
}

describe('docker-compose.yml', () => {
  const doc = readCompose();
  const services = servicesOf(doc);

  it('is valid Compose and keeps the deployment rules (pinned images, one public port, scalable worker)', () => {
    expect(allProblems(doc)).toEqual([]);
  });

  it('a broken copy fails: schema errors, unpinned images, a public Temporal port, a named worker', () => {
    const broken = structuredClone(doc);
    const s = servicesOf(broken);
    s.mongo = { ...s.mongo, image: 'mongo:latest', restart_policy: 'always' };
    s.postgresql = { ...s.postgresql, image: 'postgres' };
    s.temporal = { ...s.temporal, image: 'temporalio/server:${TEMPORAL_VERSION}', ports: ['7233:7233'] };
    s['temporal-ui'] = { ...s['temporal-ui'], ports: [{ target: 8080, published: 8080 }] };
    s.worker = { ...s.worker, container_name: 'worker', ports: 3000 };

    const problems = allProblems(broken);
    expect(problems).toEqual(
      expect.arrayContaining([
        'schema: /services/mongo must NOT have additional properties',
        'schema: /services/worker/ports must be array',
        'mongo: image mongo:latest uses latest',
        'postgresql: image postgres has no tag',
        'temporal: image temporalio/server:${TEMPORAL_VERSION} takes its version from a variable',
        'temporal: publishes "7233:7233" on all interfaces',
        'temporal-ui: publishes {"target":8080,"published":8080} on all interfaces',
        'worker: container_name prevents --scale',
        'worker: host ports prevent --scale',
      ]),
    );
    // The real file is untouched by the mutation.
    expect(allProblems(doc)).toEqual([]);
  });

  it('reads port bindings the way Docker does', () => {
    expect(publishesOnAllInterfaces('3000:3000')).toBe(true);
    expect(publishesOnAllInterfaces('8080')).toBe(true);
    expect(publishesOnAllInterfaces('0.0.0.0:8080:8080')).toBe(true);
    expect(publishesOnAllInterfaces('127.0.0.1:8080:8080/tcp')).toBe(false);
    expect(publishesOnAllInterfaces('127.0.0.1::8080')).toBe(false);
    expect(publishesOnAllInterfaces('[::1]:8080:8080')).toBe(false);
    expect(publishesOnAllInterfaces({ target: 8080, published: 8080, host_ip: '127.0.0.1' })).toBe(false);
    expect(publishesOnAllInterfaces({ target: 8080, host_ip: '0.0.0.0' })).toBe(true);
  });

  it('keeps Temporal frontend and UI off the public interfaces', () => {
    expect(services.temporal?.ports).toBeUndefined();
    expect(services['temporal-ui']?.ports).toEqual(['127.0.0.1:8080:8080']);
    expect(services.server?.ports).toEqual(['3000:3000']);
  });

  it('registers every search attribute the service defines, plus GateCause, with its type', () => {
    const script = String((services['temporal-setup']?.command as string[] | undefined)?.[0]);
    const registered = Object.fromEntries(
      [...script.matchAll(/--name (\w+) --type (\w+)/g)].map((m) => [m[1] ?? '', m[2] ?? '']),
    );
    expect(registered).toEqual({ ...SEARCH_ATTRIBUTES, ...UPCOMING_SEARCH_ATTRIBUTES });
  });

  it('runs MongoDB as replica set rs0 and points both processes at it', () => {
    expect(services.mongo?.command).toEqual(expect.arrayContaining(['--replSet', 'rs0']));
    expect(JSON.stringify(services.mongo?.healthcheck)).toContain("rs.initiate({ _id: 'rs0'");
    for (const name of ['server', 'worker']) {
      const env = services[name]?.environment as Record<string, unknown> | undefined;
      expect(env?.MONGODB_URI).toMatch(/[?&]replicaSet=rs0(&|$)/);
    }
  });

  it('starts the service only after schema, namespace and search attributes are in place', () => {
    for (const name of ['server', 'worker']) {
      expect(services[name]?.depends_on).toMatchObject({
        mongo: { condition: 'service_healthy' },
        'temporal-setup': { condition: 'service_completed_successfully' },
      });
    }
    expect(services.temporal?.depends_on).toMatchObject({
      'temporal-schema': { condition: 'service_completed_successfully' },
    });
  });
});
