import { z } from 'zod';
import {
  actionPendingSchema,
  actionResultSchema,
  actionSchema,
  phoneNumberListSchema,
  phoneNumberSchema,
  phoneNumberViewSchema,
  WABA_STATES,
  wabaListSchema,
  wabaViewSchema,
} from '../ops/api';
import { deliveryListSchema, replayRequestSchema, replayResultSchema, retryResultSchema } from '../relay/api';
import { acceptedSchema, EXAMPLE_IDS, messageViewSchema, sendSchema } from '../sending/api';

/**
 * The API contract: an OpenAPI 3.1 document generated from the zod schemas that validate the
 * requests (`sendSchema`, `phoneNumberSchema`, `actionSchema`) and describe the answers (next to
 * their handlers), plus the error model of `errors.ts`. Served at `GET /openapi.json` and committed
 * as `openapi.json` (`npm run openapi` rewrites it; a unit test fails when they differ). Cross-field
 * rules live next to the refinement that enforces them, as `.meta({ anyOf })` (`text` required when
 * `type` is text, mps ≤ 20 for coexistence numbers); one cannot be stated in JSON Schema at all
 * (`expiresAt` in the future) and answers 400 like any other field error.
 */

/** The error model rendered by `errorMiddleware`. */
const errorSchema = z.object({
  error: z.object({
    code: z.string().describe('stable snake_case code clients may branch on'),
    message: z.string().describe('for humans'),
    details: z.unknown().optional().describe('e.g. `issues: [{ path, message }]` for field errors'),
  }),
});

const readySchema = z.object({
  ok: z.boolean(),
  down: z.array(z.string()).optional().describe('the dependencies that did not answer'),
  error: errorSchema.shape.error.optional(),
});

type Json = Record<string, unknown>;

/** A JSON Schema (draft 2020-12, the dialect of OpenAPI 3.1) of a zod schema. Requests are
 *  described as zod reads them (`io: input`), answers as handlers build them. */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output', shared: Record<string, Json>): Json {
  const {
    $schema: _,
    $defs,
    ...rest
  } = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' });
  // Named sub-schemas (`.meta({ id })`: the levels of template components) become components of their own.
  for (const [id, def] of Object.entries($defs ?? {})) shared[id] = hoistRefs(def) as Json;
  return hoistRefs(rest) as Json;
}

function hoistRefs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(hoistRefs);
  if (value === null || typeof value !== 'object') return value;
  const out: Json = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = k === '$ref' && typeof v === 'string' ? v.replace(/^#\/\$defs\//, '#/components/schemas/') : hoistRefs(v);
  }
  return out;
}

const ref = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Json): Json => ({ 'application/json': { schema } });

const ERROR_TEXT: Record<number, string> = {
  400: 'malformed request: not JSON, or a field error (`details.issues`)',
  401: 'missing or wrong credentials',
  403: 'refused',
  404: 'not found',
  409: 'conflicts with the current state',
  413: 'body over the cap (the connection is closed after the answer)',
  422: 'well-formed but not acceptable',
  500: 'unexpected failure (logged with the request id)',
  503: 'a dependency is down; retry later',
};

/** Error answers: `{ status: 'what, in this operation' }` (the code list goes in the text). */
function errors(which: Record<number, string>): Json {
  const out: Json = {};
  for (const [status, text] of Object.entries(which)) {
    out[status] = {
      description: text || ERROR_TEXT[Number(status)],
      ...(status === '413' ? { headers: { Connection: { schema: { type: 'string', const: 'close' } } } } : {}),
      ...(status === '429'
        ? { headers: { 'Retry-After': { description: 'seconds', schema: { type: 'string', pattern: '^[0-9]+$' } } } }
        : {}),
      content: json(ref('Error')),
    };
  }
  return out;
}

const ok = (description: string, schemaName: string, extra: Json = {}): Json => ({
  description,
  content: json(ref(schemaName)),
  ...extra,
});

const pathParam = (name: string, description: string, pattern?: string, example?: string): Json => ({
  name,
  in: 'path',
  required: true,
  description,
  schema: pattern ? { type: 'string', pattern } : { type: 'string', minLength: 1 },
  ...(example ? { example } : {}),
});

const SEND = [{ sendKey: [] }];
const OPS = [{ opsKey: [] }];
const DIGITS = '^[0-9]{1,32}$';

/** The document. `webhookPath` is `WEBHOOK_PATH` (the committed file uses the default). */
export function openApiDocument(options: { webhookPath?: string } = {}): Json {
  const webhookPath = options.webhookPath ?? '/webhooks/meta';
  const shared: Record<string, Json> = {};
  const schemas: Record<string, Json> = {
    SendRequest: jsonSchema(sendSchema, 'input', shared),
    Accepted: jsonSchema(acceptedSchema, 'output', shared),
    MessageView: jsonSchema(messageViewSchema, 'output', shared),
    PhoneNumberRequest: jsonSchema(phoneNumberSchema, 'input', shared),
    PhoneNumber: jsonSchema(phoneNumberViewSchema, 'output', shared),
    PhoneNumberList: jsonSchema(phoneNumberListSchema, 'output', shared),
    OperatorAction: jsonSchema(actionSchema, 'input', shared),
    OperatorActionResult: jsonSchema(actionResultSchema, 'output', shared),
    OperatorActionPending: jsonSchema(actionPendingSchema, 'output', shared),
    WabaView: jsonSchema(wabaViewSchema, 'output', shared),
    WabaList: jsonSchema(wabaListSchema, 'output', shared),
    DeliveryList: jsonSchema(deliveryListSchema, 'output', shared),
    RetryResult: jsonSchema(retryResultSchema, 'output', shared),
    ReplayRequest: jsonSchema(replayRequestSchema, 'input', shared),
    ReplayResult: jsonSchema(replayResultSchema, 'output', shared),
    Error: jsonSchema(errorSchema, 'output', shared),
    Ready: jsonSchema(readySchema, 'output', shared),
    Ok: { type: 'object', properties: { ok: { const: true } }, required: ['ok'] },
  };
  // Every /v1 operation: API key auth, and the per-key rate limit and in-flight limit.
  const keyed = {
    401: 'no `Authorization: Bearer <key>` (`missing_api_key`) or a wrong key (`invalid_api_key`)',
    429: "over the API key's rate limit (`rate_limited`) or too many requests in flight (`too_many_requests`); retry after `Retry-After` seconds",
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'coexist-relay',
      version: '0.1.0',
      description:
        'Keeps WhatsApp Cloud API sends safe across coexistence offboarding. Errors are ' +
        '`{ "error": { "code", "message", "details"? } }`. Every answer carries `X-Request-Id`.',
    },
    servers: [{ url: 'http://127.0.0.1:3000', description: '`npm run dev`' }],
    tags: [
      { name: 'send', description: 'send API, keys from SEND_API_KEYS' },
      { name: 'ops', description: 'ops API, keys from OPS_API_KEYS' },
      { name: 'meta', description: "Meta's webhook" },
      { name: 'health' },
    ],
    paths: {
      '/v1/messages': {
        post: {
          tags: ['send'],
          operationId: 'sendMessage',
          summary: 'Accept a message for sending (queued while the WABA is offboarded)',
          security: SEND,
          parameters: [
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: false,
              description:
                'the same key never sends twice and replays the first answer, even when the gate changed since (422 `idempotency_key_reused` with another body; a refused request is judged again)',
              schema: { type: 'string', pattern: '^[\\x21-\\x7e]{1,255}$' },
            },
          ],
          requestBody: { required: true, content: json(ref('SendRequest')) },
          responses: {
            202: ok('accepted', 'Accepted', {
              headers: {
                'Idempotent-Replayed': {
                  description: 'present when this answers a replayed Idempotency-Key',
                  schema: { type: 'string', const: 'true' },
                },
              },
            }),
            ...errors({
              400: 'not JSON (`invalid_json`), a field error (`invalid_request`) or a bad Idempotency-Key (`invalid_idempotency_key`)',
              ...keyed,
              403: 'this API key may not use the WABA of this phone number (`forbidden_waba`)',
              409: 'the WABA cannot send: `partner_removed` or `reconnect_abandoned`',
              413: 'body over 64 KiB (`payload_too_large`)',
              422: 'the number is not registered (`unknown_phone_number`) or the Idempotency-Key was used with another body',
              500: '',
            }),
          },
        },
      },
      '/v1/messages/{id}': {
        get: {
          tags: ['send'],
          operationId: 'getMessage',
          summary: "A message's status, Meta's error and delivery statuses",
          security: SEND,
          parameters: [pathParam('id', 'the `id` of the 202 answer')],
          responses: {
            200: ok('the message', 'MessageView'),
            ...errors({
              ...keyed,
              404: 'no such message, or one of a WABA this key may not use (`unknown_message`: the same answer, so a key learns nothing of other tenants)',
              500: '',
            }),
          },
        },
      },
      '/v1/wabas': {
        get: {
          tags: ['ops'],
          operationId: 'listWabas',
          summary: 'WABAs, optionally in one state',
          security: OPS,
          parameters: [{ name: 'state', in: 'query', required: false, schema: { type: 'string', enum: WABA_STATES } }],
          responses: {
            200: ok('the WABAs (at most 1000)', 'WabaList'),
            ...errors({ 400: 'unknown state (`invalid_state`)', ...keyed, 500: '' }),
          },
        },
      },
      '/v1/wabas/{wabaId}': {
        get: {
          tags: ['ops'],
          operationId: 'getWaba',
          summary: "A WABA's lifecycle state, escalation level and queue length",
          security: OPS,
          parameters: [pathParam('wabaId', 'the WABA id', undefined, EXAMPLE_IDS.wabaId)],
          responses: {
            200: ok('the WABA (connected when it has numbers and no recorded event)', 'WabaView'),
            ...errors({ ...keyed, 404: 'no registered number and no event (`unknown_waba`)', 500: '' }),
          },
        },
      },
      '/v1/wabas/{wabaId}/actions': {
        post: {
          tags: ['ops'],
          operationId: 'applyOperatorAction',
          summary: 'force_resume or force_abandon, with a recorded reason',
          security: OPS,
          parameters: [pathParam('wabaId', 'the WABA id', undefined, EXAMPLE_IDS.wabaId)],
          requestBody: { required: true, content: json(ref('OperatorAction')) },
          responses: {
            200: ok('applied', 'OperatorActionResult'),
            202: ok(
              'accepted by the workflow but not applied within 10 s (it applies it after what it is doing now, e.g. stopping a drain)',
              'OperatorActionPending',
            ),
            ...errors({
              400: 'not JSON (`invalid_json`) or a field error (`invalid_request`)',
              ...keyed,
              409: 'the action does not apply to the current state (`action_refused`)',
              413: 'body over 16 KiB (`payload_too_large`)',
              500: '',
              503: 'Temporal did not accept the action within 10 s (`action_not_accepted`); it may still be applied once Temporal catches up: check `GET /v1/wabas/{wabaId}` before trying again',
            }),
          },
        },
      },
      '/v1/phone-numbers/{phoneNumberId}': {
        put: {
          tags: ['ops'],
          operationId: 'registerPhoneNumber',
          summary: 'Register (or update) a phone number of a WABA',
          security: OPS,
          parameters: [pathParam('phoneNumberId', 'the Cloud API phone number id', DIGITS, EXAMPLE_IDS.phoneNumberId)],
          requestBody: { required: true, content: json(ref('PhoneNumberRequest')) },
          responses: {
            200: ok('updated', 'PhoneNumber'),
            201: ok('registered', 'PhoneNumber'),
            ...errors({
              400: 'not JSON, a field error, an id that is not digits (`invalid_phone_number_id`), or mps over 20 for coexistence (`invalid_mps`)',
              ...keyed,
              413: 'body over 16 KiB (`payload_too_large`)',
              500: '',
            }),
          },
        },
      },
      '/v1/phone-numbers': {
        get: {
          tags: ['ops'],
          operationId: 'listPhoneNumbers',
          summary: 'The registry, optionally of one WABA',
          security: OPS,
          parameters: [{ name: 'wabaId', in: 'query', required: false, schema: { type: 'string' } }],
          responses: {
            200: ok('the numbers (at most 1000)', 'PhoneNumberList'),
            ...errors({ 400: 'more than one wabaId (`invalid_waba_id`)', ...keyed, 500: '' }),
          },
        },
      },
      '/v1/deliveries': {
        get: {
          tags: ['ops'],
          operationId: 'listDeliveries',
          summary: 'Forwarded, pending and dead-lettered Meta deliveries, per forward target, newest first',
          security: OPS,
          parameters: [
            {
              name: 'state',
              in: 'query',
              required: false,
              schema: { type: 'string', enum: ['pending', 'dead', 'delivered'] },
            },
            { name: 'target', in: 'query', required: false, schema: { type: 'string', maxLength: 40 } },
            { name: 'wabaId', in: 'query', required: false, schema: { type: 'string', pattern: DIGITS } },
            { name: 'since', in: 'query', required: false, schema: { type: 'string', format: 'date-time' } },
            { name: 'until', in: 'query', required: false, schema: { type: 'string', format: 'date-time' } },
            { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 1000 } },
          ],
          responses: {
            200: ok('the rows (at most `limit`, default 100)', 'DeliveryList'),
            ...errors({ 400: 'a bad filter (`invalid_request`)', ...keyed, 500: '' }),
          },
        },
      },
      '/v1/deliveries/replay': {
        post: {
          tags: ['ops'],
          operationId: 'replayDeliveries',
          summary:
            'Forwards again the archived deliveries received in [since, until) (RETENTION_DELIVERIES), oldest first, with their original webhook-id',
          security: OPS,
          requestBody: { required: true, content: json(ref('ReplayRequest')) },
          responses: {
            200: ok('what was put back for forwarding', 'ReplayResult'),
            ...errors({
              400: 'a bad range or filter (`invalid_request`), or a body that is not JSON',
              ...keyed,
              404: 'no forward target of that name (`unknown_target`)',
              413: 'a body over 4 KiB',
              500: '',
            }),
          },
        },
      },
      '/v1/deliveries/{deliveryId}/retry': {
        post: {
          tags: ['ops'],
          operationId: 'retryDelivery',
          summary: 'Puts a dead-lettered delivery back for forwarding (all targets, or `target`)',
          security: OPS,
          parameters: [
            pathParam('deliveryId', 'the delivery id (`webhook-id` of the forwarded request)'),
            { name: 'target', in: 'query', required: false, schema: { type: 'string' } },
          ],
          responses: {
            200: ok('how many forwards were put back', 'RetryResult'),
            ...errors({
              ...keyed,
              404: 'no dead-lettered forward of that delivery (`no_dead_letter`)',
              500: '',
            }),
          },
        },
      },
      '/v1/events/catalog': {
        get: {
          tags: ['health'],
          operationId: 'serviceEventCatalog',
          summary:
            'The service events forwarded to targets that ask for the `coexist_relay` field: a JSON Schema per type',
          security: [],
          responses: {
            200: {
              description: 'the catalog (also committed as events.schema.json)',
              content: { 'application/json': { schema: { type: 'object' } } },
            },
          },
        },
      },
      [webhookPath]: {
        get: {
          tags: ['meta'],
          operationId: 'verifyWebhook',
          summary: "Meta's subscription handshake",
          security: [],
          parameters: [
            { name: 'hub.mode', in: 'query', required: true, schema: { type: 'string', const: 'subscribe' } },
            { name: 'hub.verify_token', in: 'query', required: true, schema: { type: 'string' } },
            {
              name: 'hub.challenge',
              in: 'query',
              required: true,
              schema: { type: 'string', minLength: 1, maxLength: 256 },
            },
          ],
          responses: {
            200: {
              description: 'the challenge, echoed',
              content: { 'text/plain': { schema: { type: 'string' } } },
            },
            ...errors({
              400: 'hub.challenge missing or too long (`invalid_challenge`)',
              403: 'wrong hub.mode or hub.verify_token (`verification_failed`)',
            }),
          },
        },
        post: {
          tags: ['meta'],
          operationId: 'receiveWebhook',
          summary: "Meta's deliveries (signed with the app secret); 200 once every event is durable",
          security: [{ metaSignature: [] }],
          requestBody: {
            required: true,
            content: { 'application/json': { schema: { type: 'object', description: "Meta's webhook envelope" } } },
          },
          responses: {
            200: ok('recorded (or another object, ignored)', 'Ok'),
            ...errors({
              400: 'signed but not JSON (`invalid_json`) or not an envelope (`invalid_payload`)',
              401: 'missing or wrong X-Hub-Signature-256 (`missing_signature`, `invalid_signature`)',
              413: 'body over WEBHOOK_MAX_BODY_BYTES (`payload_too_large`)',
              503: 'the events could not be recorded (`sink_unavailable`); Meta redelivers',
            }),
          },
        },
      },
      '/healthz': {
        get: {
          tags: ['health'],
          operationId: 'liveness',
          security: [],
          responses: { 200: ok('alive', 'Ok') },
        },
      },
      '/readyz': {
        get: {
          tags: ['health'],
          operationId: 'readiness',
          security: [],
          responses: {
            200: ok('MongoDB and Temporal answer', 'Ready'),
            503: ok('not ready: `down` names `mongodb` / `temporal` (`not_ready`)', 'Ready'),
          },
        },
      },
      '/metrics': {
        get: {
          tags: ['health'],
          operationId: 'metrics',
          security: [],
          responses: {
            200: { description: 'webhook counters', content: { 'text/plain': { schema: { type: 'string' } } } },
          },
        },
      },
      '/openapi.json': {
        get: {
          tags: ['health'],
          operationId: 'openapi',
          security: [],
          responses: {
            200: { description: 'this document', content: { 'application/json': { schema: { type: 'object' } } } },
          },
        },
      },
    },
    components: {
      securitySchemes: {
        sendKey: { type: 'http', scheme: 'bearer', description: 'a key of SEND_API_KEYS' },
        opsKey: { type: 'http', scheme: 'bearer', description: 'a key of OPS_API_KEYS' },
        metaSignature: {
          type: 'apiKey',
          in: 'header',
          name: 'X-Hub-Signature-256',
          description: '`sha256=` + HMAC-SHA256 of the raw body with META_APP_SECRET',
        },
      },
      schemas: { ...schemas, ...shared },
    },
  };
}

/** The document as committed: `openapi.json` at the repository root (2-space JSON, final newline). */
export const renderOpenApi = (doc: Json = openApiDocument()): string => `${JSON.stringify(doc, null, 2)}\n`;
