import { MongoClient, MongoServerError, type Collection, type Db, type Document } from 'mongodb';
import type {
  LifecycleEvent,
  MessageContent,
  MessageStatus,
  MetaErrorInfo,
  TemplateBody,
  WabaRecord,
} from '../../contracts';

/**
 * FerretDB has no atomic read-modify-write: what the store layout does about it.
 *
 * FerretDB 1.24 on its own answers reads, updates and deletes by `_id` by scanning the collection
 * (its SQLite index is on another expression than the one it queries with). The project's wrapper
 * (`infra/ferretdb/idindex.go`) adds, for every collection table, an index on exactly that
 * expression (`_ferretdb_sjson->'$._id'`) and keeps it as collections are created (within ~250
 * ms), so exact-`_id` point operations are O(log n) (`npm run bench:store`: flat from 1k to 100k
 * documents). Every other filter (`$in`, ranges, secondary fields) still scans, and an update
 * command of 100 or more statements never returns. So the hot paths insert (cheap at any size)
 * rather than update ever-growing collections, read and delete the queue by exact `_id` only (see
 * src/sending/queue.store.ts), and issue no multi-statement updates. Inserts of facts (`insertFacts`: statuses,
 * forwards, events) and the outbox records are grouped per collection (`groupInsert`
 * in `src/adapters/store/db.ts`): what arrives while one `insertMany` is being written goes out in
 * the next one, so a burst of webhooks costs a commit per group instead of one per delivery
 * (FerretDB writes each `insertMany` in one SQLite transaction); every caller still waits for its
 * own documents to be stored before its ack.
 */

/**
 * MongoDB collections and their documents. Every document is keyed so that the hot reads are by
 * exact `_id` (the only filter FerretDB answers from an index), and every concurrent write is
 * either owned by one writer or an insert guarded by a unique index (the only atomic write on
 * FerretDB). See ARCHITECTURE.md, "Storage".
 */

/** `wabas`: one per WABA; written only by that WABA's lifecycle workflow (through activities). */
export type WabaDoc = Omit<WabaRecord, 'wabaId'> & { _id: string };

/** `phone_numbers`: the registry, written by operators through the ops API. */
export interface PhoneNumberDoc {
  _id: string;
  wabaId: string;
  mps: number;
  coexistence: boolean;
  createdAt: string;
  updatedAt: string;
}

/**
 * `waba_numbers`: which numbers a WABA has, as insert-only slots `<wabaId>#<n>` (n = 0, 1, 2 …,
 * taken in order by `registerPhoneNumber`), so a WABA's numbers are read by exact `_id` (the one
 * filter FerretDB answers from an index). A slot is a hint: a number moved to another WABA keeps
 * its old slot, and readers keep only numbers whose registry document names this WABA.
 */
export interface WabaNumberDoc {
  _id: string;
  wabaId: string;
  phoneNumberId: string;
}

/**
 * `messages`: one per accepted message, inserted at acceptance (`accepted`, or `queued` when the
 * gate is closed). Rarely updated afterwards (`queued` after an "account unusable" answer,
 * `sending` while retrying): the final outcome is a `settlements` document.
 */
export interface MessageDoc {
  _id: string;
  wabaId: string;
  phoneNumberId: string;
  to: string;
  content: MessageContent;
  /** Sent instead of a free-form `content` when the customer service window is closed. */
  fallbackTemplate?: TemplateBody;
  /** Status before settlement: `accepted`, `queued` or `sending` (see `settlements` for the end). */
  status: MessageStatus;
  expiresAt?: string;
  acceptedAt: string;
  queuedAt?: string;
  /** The queue entry's `_id` while queued (set after the entry is inserted; absent before). */
  queueEntryId?: string;
  updatedAt: string;
  /** Failed direct attempts so far (retries). */
  attempts: number;
  /**
   * 2 once Meta failed the first send after accepting it and the message was queued again (see
   * `late_failures`); its second outcome is the settlement of `sendKey(id, 2)`. Absent: round 1.
   */
  round?: number;
  /** When the store wrote it, as a BSON Date: the TTL index's clock. */
  storedAt?: Date;
}

/**
 * `settlements`: a message's final outcome, insert-only (`_id` = message id; the first settlement
 * wins). Inserts stay cheap on FerretDB however large the collection grows, where an update or
 * delete scans the collection.
 */
export interface SettlementDoc {
  /** `sendKey(messageId, round)`: the message id for its first send. */
  _id: string;
  status: Extract<MessageStatus, 'sent' | 'failed' | 'expired' | 'cancelled'>;
  wamid?: string;
  reason?: string;
  error?: MetaErrorInfo;
  attempts?: number;
  /** The service window was closed: the message's fallback template went instead. */
  sentAs?: 'fallback_template';
  at: string;
  /** When the store wrote it, as a BSON Date: the TTL index's clock. */
  storedAt?: Date;
}

/**
 * `queue`: only what is waiting, in two lanes per WABA: `front` (messages queued again after Meta
 * failed them, sent first) and `main`. `_id` is `<wabaId>:<n, zero-padded>` in the main lane and
 * `<wabaId>:000000000000~F<n, zero-padded>` in the front lane, where `n` was taken by inserting a
 * `queue_claims` document of the same `_id` (src/sending/queue.store.ts); a unique index on
 * `messageId` stops a message from queueing twice. Every read and delete is by exact `_id` (an
 * index search on MongoDB and, with the wrapper's index, on FerretDB). Only the WABA's lifecycle
 * workflow (its drain) removes entries. A `tombstone` closes a claim whose entry never came.
 */
export interface QueueDoc {
  _id: string;
  wabaId: string;
  /** The lane position: `n` in the main lane, `-n` in the front lane (unique per WABA). */
  seq: number;
  messageId: string;
  phoneNumberId: string;
  to: string;
  content: MessageContent;
  fallbackTemplate?: TemplateBody;
  expiresAt?: string;
  enqueuedAt: string;
  /** A send workflow is waiting for this message's outcome. */
  notify: boolean;
  /** 2 for a message queued again after Meta failed its first send (see `late_failures`). */
  round?: number;
  /** Front lane: when the API accepted the message (front entries leave in this order). */
  acceptedAt?: string;
  /** A claim closed without an entry (never sent; purged with the claims, see retention.ts). */
  tombstone?: true;
  /** Set on tombstones only: the retention clock. */
  storedAt?: Date;
}

/**
 * `queue_claims`: one per lane position ever taken (`_id` = the queue entry's `_id`), insert-only,
 * kept after the entry left (until retention): a position is never given twice, even to a process
 * whose view of the lane's tail is stale.
 */
export interface QueueClaimDoc {
  _id: string;
  wabaId: string;
  messageId: string;
  round?: number;
  storedAt: Date;
}

/**
 * `queue_marks`: one document per WABA (`_id` = the WABA id) with each lane's tail (`mainTail`,
 * `frontTail`: the highest position known taken, raised with `$max` by whoever queues, a hint that
 * may lag) and head (`mainHead`, `frontHead`: every position up to it has left for good, raised by
 * the drain).
 */
export interface QueueMarkDoc {
  _id: string;
  mainHead?: number;
  mainTail?: number;
  frontHead?: number;
  frontTail?: number;
}

/**
 * `late_failures`: a message Meta accepted (200, wamid) and later failed with an "account
 * unusable" status, queued again once (src/sending/late-failure.ts). Insert-only, `_id` = message
 * id: the insert is the "once".
 */
export interface LateFailureDoc {
  _id: string;
  wabaId: string;
  /** The wamid Meta failed. */
  wamid: string;
  code: number;
  /** The failed status's time (ISO). */
  failedAt: string;
  /** When the message was queued again (ISO). */
  requeuedAt: string;
  storedAt?: Date;
}

/**
 * `account_events`: audit of every `account_update` event (and of the status-derived
 * `SEND_ACCOUNT_UNUSABLE` events), insert-only; `_id` is the event's dedupe key. A lifecycle event
 * is inserted once it has been handed over to its workflow (`signalled`), so the record is also the
 * outbox relay's "done" mark; other events are inserted by the webhook sink (`recorded`, `refused`).
 */
export interface AccountEventDoc {
  _id: string;
  wabaId: string;
  event: string;
  metaTime?: number;
  /** `entry[].id` as sent (for a status-derived event: the message's wamid). */
  entryId: string;
  /** The change's `value` as JSON text (`JSON.stringify` of what Meta sent): kept as a string so
   *  that no key or value Meta sends (`$`/`.`/NUL keys, nested arrays, lone surrogates) can make
   *  the document unstorable (`jsonText` in src/lifecycle/ingest.ts: reads back to the parsed value). */
  raw: string;
  receivedAt: string;
  /** `signalled` (handed over to the lifecycle workflow), `recorded` (not a lifecycle event), or
   *  `refused` (a lifecycle event whose WABA id cannot name a workflow: recorded, never applied). */
  outcome: 'signalled' | 'recorded' | 'refused';
  handedOverAt?: string;
  /** When the store wrote it, as a BSON Date: the TTL index's clock. */
  storedAt?: Date;
  /** The outbox delivery it came from. */
  deliveryId?: string;
}

/** One event of an outbox delivery: what the workflow gets, plus the audit fields. */
export interface OutboxEvent extends LifecycleEvent {
  /** `entry[].id` (or the wamid of a failed status). */
  entryId: string;
  /** The change's `value` as JSON text (empty for a status-derived event). */
  raw: string;
}

/**
 * `outbox`: one per accepted Meta delivery that carries `account_update` events (or a status that
 * closes the gate), inserted by the webhook sink before the 200 (its only write for them), deleted
 * by the relay once every event is handed over and audited (so it holds only pending work). `_id`
 * sorts in arrival order. The raw body is kept for the relay's audit (`auditOfDelivery`); what is
 * forwarded is the `forwards` entries' own copy.
 */
export interface OutboxDoc {
  _id: string;
  /** A Meta webhook delivery, one of the service's own events for forward targets
   *  (src/relay/events.ts), or a `QUEUE_STRAY` for a message queued under a gate hold. */
  kind: 'meta_delivery' | 'service_event' | 'stray';
  receivedAt: string;
  /** The exact request body, base64. */
  raw: string;
  /** Meta's `X-Hub-Signature-256` header as received. */
  signature?: string;
  /** Lifecycle events in body order (WABA order is kept per WABA by the relay). */
  events: OutboxEvent[];
  /**
   * The events that need no hand-over (`recorded`, `refused`), for the relay to audit, as their
   * `account_events` documents in one JSON text. Only when `raw` is empty: otherwise the relay derives them from `raw` (`auditOfDelivery`),
   * so a large batch is stored once, not twice (FerretDB's cost of every write and read of this
   * document grows with its size).
   */
  audit?: string;
  auditCount: number;
  /** The distinct WABA ids of `events`. */
  wabaIds: string[];
}

/**
 * `forwards`: what is still to be forwarded, one entry per (target, delivery); `_id` is
 * `<target>:<delivery id>`, so a target's entries sort in arrival order. Inserted by whoever
 * records the delivery (the webhook sink before the 200, a service event's emitter, a replay),
 * carrying the delivery's bytes itself, so forwarding needs no other record. Only pending and
 * dead-lettered entries live here (a small collection every forwarder scans, without the bytes); a
 * delivered one moves to `forwarded`. Written by the forwarders (several processes may try the
 * same entry: at least once).
 */
export interface ForwardDoc extends DeliveryBytes {
  _id: string;
  target: string;
  deliveryId: string;
  wabaIds: string[];
  receivedAt: string;
  state: 'pending' | 'dead';
  attempts: number;
  /** Epoch ms of the next attempt. */
  nextAt: number;
  /**
   * Epoch ms since when it has been waiting: the delivery's receipt for a new entry, the moment
   * of a replay or of a retry of a dead letter. The clock of FORWARD_MAX_AGE and of the backlog
   * alert (see `pendingAgeMs`).
   */
  pendingSince: number;
  lastError?: string;
}

/**
 * What a delivery's forward entries and `forwarded` rows carry of it: the exact bytes (base64),
 * Meta's `X-Hub-Signature-256` as received (none on a service event), its kind and change fields.
 */
export interface DeliveryBytes {
  kind: OutboxDoc['kind'];
  raw: string;
  signature?: string;
  fields?: string[];
}

/**
 * `forwarded`: insert-only log of delivered forwards (`_id` as in `forwards`; a replay keeps the
 * first), with the bytes that went: the archive `POST /v1/deliveries/replay` sends again, per target.
 */
export interface ForwardedDoc extends DeliveryBytes {
  _id: string;
  target: string;
  deliveryId: string;
  wabaIds: string[];
  receivedAt: string;
  deliveredAt: string;
  attempts: number;
  status: number;
  /** When the store wrote it, as a BSON Date: the retention clock (RETENTION_DELIVERIES). */
  storedAt?: Date;
}

/** `message_statuses`: Meta's delivery statuses, insert-only; `_id` is `<wamid>:<status>`. */
export interface MessageStatusDoc {
  _id: string;
  wamid: string;
  status: string;
  timestamp?: number;
  recipientId?: string;
  wabaId: string;
  phoneNumberId: string;
  /** Meta's errors, projected to fixed keys (never Meta's own sub-objects, so always storable). */
  errors?: { code: number; title?: string; message?: string; details?: string }[];
  receivedAt: string;
  /** When the store wrote it, as a BSON Date: the TTL index's clock. */
  storedAt?: Date;
}

/** `idempotency`: `_id` is the sender's key (scoped by API key); the first answer is kept. */
export interface IdempotencyDoc {
  _id: string;
  messageId: string;
  requestHash: string;
  createdAt: string;
  /** When the store wrote it, as a BSON Date: the TTL index's clock. */
  storedAt?: Date;
}

/**
 * `alert_threads`: the Slack thread of a WABA's open incident (`_id` = WABA id). Written only by
 * that WABA's alert activities; replaced when an incident opens, marked closed when it resolves.
 */
export interface AlertThreadDoc {
  _id: string;
  channel: string;
  ts: string;
  open: boolean;
  openedAt: string;
}

/**
 * `send_slots`: start slots of Cloud API sends, shared by every worker. `_id` names the number's
 * cap slot (`<phoneNumberId>:<index>`), `pair` the recipient's pair slot the same send holds
 * (`<phoneNumberId>><to>:<index>`, under a unique sparse index; absent when no pair limit
 * applies); src/sending/pacing.ts builds them, src/sending/slots.store.ts writes them. Both are
 * taken by inserting the one document, so two workers can never hold the same slot (the insert is
 * atomic on MongoDB and FerretDB alike, each unique index checked in it). Read only to tell which
 * slot a refused claim met where the store does not say (FerretDB). Spent slots stay until the
 * retention round deletes them, a minute after their end (src/adapters/store/retention.ts): the
 * collection holds the slots of the purge interval plus that minute, plus pair slots claimed ahead.
 */
export interface SendSlotDoc {
  _id: string;
  /** The recipient's pair slot this send also holds (unique among the documents that have one). */
  pair?: string;
  /** Epoch ms after which the slot can no longer be claimed (its deletion is then safe). */
  expiresAt: number;
}

/**
 * `send_pauses`: back-offs Meta asked for (130429 for a number, 131056 for a recipient), one
 * insert per key and second (`<key>@<epoch second>`), read by every worker before it claims a
 * slot. Tiny (ended ones are deleted by the key's next reader by exact `_id`, and by the retention
 * purge a minute after they ended), so its prefix scan stays cheap on FerretDB.
 */
export interface SendPauseDoc {
  _id: string;
  key: string;
  until: number;
}

/**
 * `send_attempts`: the per-message attempt ledger (src/sending/ledger.ts), `_id` = message id.
 * Inserted before a message's first Cloud API POST; updated by exact `_id` by the message's one
 * sender (admit or the drain) before each later POST and after each answer (its only writer:
 * FerretDB updates are a read then a write of the whole document).
 */
export interface SendAttemptDoc {
  /** `sendKey(messageId, round)`, also the send's `biz_opaque_callback_data`. */
  _id: string;
  /** The message. */
  messageId: string;
  /** The send's round (absent: 1). */
  round?: number;
  /** POSTs made so far. */
  tries: number;
  /** `in_flight` from just before a POST until its answer is recorded. */
  state: 'in_flight' | 'answered';
  /** Epoch ms of the last POST's start. */
  startedAt: number;
  /** Set once Meta accepted the message (its answer, or a status webhook naming it). */
  wamid?: string;
  confirmedBy?: 'answer' | 'status';
  /** Sends made again after an in-doubt one (at most 1). */
  resends: number;
  /** Epoch ms when the message was first found in doubt. */
  inDoubtAt?: number;
  /** The retention clock (RETENTION_MESSAGES), set by the store's insert. */
  storedAt?: Date;
}

/**
 * `send_confirmations`: a status webhook tagged with a message id (`biz_opaque_callback_data`)
 * whose ledger entry had no wamid yet: insert-only by the webhook sink (`_id` = message id, the
 * first wins), read by the message's sender before it POSTs again.
 */
export interface SendConfirmationDoc {
  _id: string;
  wamid: string;
  status: string;
  at: string;
  /** The retention clock (RETENTION_MESSAGES), set by the store's insert. */
  storedAt?: Date;
}

/**
 * `send_claims`: the claim of a send's POST number `n` ≥ 2 (`_id` = `<send key>/<n>`; the first
 * POST's claim is the ledger entry's insert). Insert-only: of two senders that read the same
 * ledger entry, only the one whose insert wins POSTs again (src/sending/ledger.ts).
 */
export interface SendClaimDoc {
  _id: string;
  storedAt: Date;
}

/**
 * `gate_holds`: the last closure Meta announced for a WABA, `_id` = the WABA id. Written by the
 * webhook sink before the 200 for `ACCOUNT_OFFBOARDED` and `PARTNER_REMOVED` (an upsert that
 * replaces only a hold received earlier, for an event Meta sent no later), so the gate is closed from the ack on (`gateVerdict`),
 * however long the outbox relay takes to hand the event over; it stops counting once the WABA's
 * workflow has handled its event (the WABA document's `closingHandled`; `holdCounts` in
 * src/lifecycle/gate-holds.store.ts), so it is not deleted (except by the relay, for a
 * redelivery of an event handed over already). One per WABA; a hold older than
 * `GATE_HOLD_MAX_MS` is ignored.
 */
export interface GateHoldDoc {
  _id: string;
  eventKey: string;
  type: string;
  receivedAt: string;
  /** Meta's `entry[].time` of the event, when it had one (a redelivery keeps its old time). */
  metaTime?: number;
}

/**
 * `customer_windows`: what the service knows of each customer's service window with a business
 * number, `_id` = `<phoneNumberId>#<customer>` (src/sending/window.ts decides from it). Written
 * with `$max` only, so a later time is never replaced by an earlier one: `lastInboundAt` by the
 * webhook sink for every inbound `messages` webhook (never echoes, statuses or history);
 * `refusedAt` by a sender Meta answered 131047 (the window is closed until a newer inbound).
 */
export interface CustomerWindowDoc {
  _id: string;
  /** Unix seconds of the customer's newest message to the number (the message's own `timestamp`). */
  lastInboundAt?: number;
  /** Unix seconds of Meta's newest 131047 answer for this customer and number. */
  refusedAt?: number;
}

/**
 * `customer_ids`: a customer's phone number by business-scoped user id (`_id` = the BSUID), from
 * inbound webhooks whose contact carries both. Insert-only: a user who changes number gets a new
 * BSUID, so a BSUID's number never changes.
 */
export interface CustomerIdDoc {
  _id: string;
  /** The WhatsApp id (phone number digits). */
  phone: string;
}

export interface Collections {
  wabas: Collection<WabaDoc>;
  phoneNumbers: Collection<PhoneNumberDoc>;
  wabaNumbers: Collection<WabaNumberDoc>;
  messages: Collection<MessageDoc>;
  settlements: Collection<SettlementDoc>;
  queue: Collection<QueueDoc>;
  queueClaims: Collection<QueueClaimDoc>;
  queueMarks: Collection<QueueMarkDoc>;
  accountEvents: Collection<AccountEventDoc>;
  messageStatuses: Collection<MessageStatusDoc>;
  idempotency: Collection<IdempotencyDoc>;
  alertThreads: Collection<AlertThreadDoc>;
  outbox: Collection<OutboxDoc>;
  outboxClaims: Collection<OutboxClaimDoc>;
  forwards: Collection<ForwardDoc>;
  forwarded: Collection<ForwardedDoc>;
  sendSlots: Collection<SendSlotDoc>;
  sendPauses: Collection<SendPauseDoc>;
  sendAttempts: Collection<SendAttemptDoc>;
  sendConfirmations: Collection<SendConfirmationDoc>;
  sendClaims: Collection<SendClaimDoc>;
  gateHolds: Collection<GateHoldDoc>;
  lateFailures: Collection<LateFailureDoc>;
  credentialPauses: Collection<CredentialPauseDoc>;
  customerWindows: Collection<CustomerWindowDoc>;
  customerIds: Collection<CustomerIdDoc>;
}

/**
 * `credential_pauses`: Meta refused a Graph API token (codes 0, 190): sending with it is paused for
 * every WABA that uses it (src/lifecycle/credentials.ts). `_id` = the token's source
 * (`GRAPH_API_TOKEN`, `GRAPH_API_TOKENS_BY_WABA[<waba>]`). Inserted by the sender that met the
 * refusal (a duplicate key is the same pause); `checkedAt` set by the token's credentials workflow
 * at each probe and by a sender meeting a new refusal; deleted by the workflow when a probe with
 * the token succeeds.
 */
export interface CredentialPauseDoc {
  _id: string;
  /** ISO time of the first refusal of this pause. */
  since: string;
  /** ISO time of the last evidence: a probe still refused, or a new refusal (absent before either). */
  checkedAt?: string;
  /** The send that met the refusal: its WABA and number (the workflow probes with them). */
  wabaId: string;
  phoneNumberId: string;
  detail: string;
}

/**
 * `outbox_claims`: which relay handles a delivery for one lease period. `_id` is
 * `<delivery id>:<lease number>` (lease n covers the delivery's age n × lease … (n+1) × lease), so
 * taking a delivery over is an insert that only one relay wins per lease, never an update. Never
 * read; a claim stays after its delivery is gone until the retention round purges it, a minute
 * after `expiresAt` (the lease's end, epoch ms; claims written before it had none and were deleted
 * with their delivery).
 */
export interface OutboxClaimDoc {
  _id: string;
  relayId: string;
  at: string;
  expiresAt?: number;
}

export function collections(db: Db): Collections {
  return {
    wabas: db.collection<WabaDoc>('wabas'),
    phoneNumbers: db.collection<PhoneNumberDoc>('phone_numbers'),
    wabaNumbers: db.collection<WabaNumberDoc>('waba_numbers'),
    messages: db.collection<MessageDoc>('messages'),
    settlements: db.collection<SettlementDoc>('settlements'),
    queue: db.collection<QueueDoc>('queue'),
    queueClaims: db.collection<QueueClaimDoc>('queue_claims'),
    queueMarks: db.collection<QueueMarkDoc>('queue_marks'),
    accountEvents: db.collection<AccountEventDoc>('account_events'),
    messageStatuses: db.collection<MessageStatusDoc>('message_statuses'),
    idempotency: db.collection<IdempotencyDoc>('idempotency'),
    alertThreads: db.collection<AlertThreadDoc>('alert_threads'),
    outbox: db.collection<OutboxDoc>('outbox'),
    outboxClaims: db.collection<OutboxClaimDoc>('outbox_claims'),
    forwards: db.collection<ForwardDoc>('forwards'),
    forwarded: db.collection<ForwardedDoc>('forwarded'),
    sendSlots: db.collection<SendSlotDoc>('send_slots'),
    sendPauses: db.collection<SendPauseDoc>('send_pauses'),
    sendAttempts: db.collection<SendAttemptDoc>('send_attempts'),
    sendConfirmations: db.collection<SendConfirmationDoc>('send_confirmations'),
    sendClaims: db.collection<SendClaimDoc>('send_claims'),
    gateHolds: db.collection<GateHoldDoc>('gate_holds'),
    lateFailures: db.collection<LateFailureDoc>('late_failures'),
    credentialPauses: db.collection<CredentialPauseDoc>('credential_pauses'),
    customerWindows: db.collection<CustomerWindowDoc>('customer_windows'),
    customerIds: db.collection<CustomerIdDoc>('customer_ids'),
  };
}

/**
 * Creates the indexes. Idempotent; run at start-up by the worker and the server. The unique ones
 * carry correctness (FerretDB enforces them); the others serve MongoDB in production.
 */
export async function ensureIndexes(c: Collections): Promise<void> {
  await Promise.all([
    c.queue.createIndex({ messageId: 1 }, { unique: true, name: 'messageId_unique' }),
    c.queue.createIndex({ wabaId: 1, seq: 1 }, { unique: true, name: 'waba_seq_unique' }),
    c.queue.createIndex({ enqueuedAt: 1 }, { name: 'enqueuedAt' }),
    c.queueClaims.createIndex({ storedAt: 1 }, { name: 'storedAt' }),
    c.wabas.createIndex({ state: 1 }, { name: 'state' }),
    c.phoneNumbers.createIndex({ wabaId: 1 }, { name: 'wabaId' }),
    c.messages.createIndex({ wabaId: 1, status: 1 }, { name: 'waba_status' }),
    c.accountEvents.createIndex({ wabaId: 1, receivedAt: 1 }, { name: 'waba_received' }),
    c.messageStatuses.createIndex({ wamid: 1 }, { name: 'wamid' }),
    c.outbox.createIndex({ receivedAt: 1 }, { name: 'receivedAt' }),
    c.forwards.createIndex({ target: 1, state: 1 }, { name: 'target_state' }),
    c.forwarded.createIndex({ deliveryId: 1 }, { name: 'deliveryId' }),
    // These also create the send path's collections up front: creating one on FerretDB during the
    // first send of a drain stalls it by tens of milliseconds, enough to miss a pacing slot.
    c.sendSlots.createIndex({ expiresAt: 1 }, { name: 'expiresAt' }),
    // Sparse: cap slots of sends without a pair limit have none (FerretDB ignores the option and,
    // like SQLite, lets any number of documents lack the field).
    c.sendSlots.createIndex({ pair: 1 }, { unique: true, sparse: true, name: 'pair_unique' }),
    c.outboxClaims.createIndex({ expiresAt: 1 }, { name: 'expiresAt' }),
    c.sendPauses.createIndex({ key: 1 }, { name: 'key' }),
    c.sendAttempts.createIndex({ state: 1 }, { name: 'state' }),
    c.sendConfirmations.createIndex({ at: 1 }, { name: 'at' }),
    c.sendClaims.createIndex({ storedAt: 1 }, { name: 'storedAt' }),
    c.gateHolds.createIndex({ receivedAt: 1 }, { name: 'receivedAt' }),
    c.customerWindows.createIndex({ lastInboundAt: 1 }, { name: 'lastInboundAt' }),
    c.customerIds.createIndex({ phone: 1 }, { name: 'phone' }),
  ]);
}

/** Connects, pings and returns the client with the database's collections (indexes ensured). */
export async function connectMongo(
  uri: string,
  dbName: string,
): Promise<{ client: MongoClient; db: Db; c: Collections }> {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 5_000, maxPoolSize: 20 });
  await client.connect();
  const db = client.db(dbName);
  const c = collections(db);
  await ensureIndexes(c);
  return { client, db, c };
}

/**
 * The database server's clock, epoch ms (whole ms): `hello`'s `localTime`, answered by MongoDB
 * (the primary, where commands go) and by FerretDB v1.24. No collection is read. The pacing
 * clock's source (src/sending/shared-clock.ts).
 */
export async function readServerTime(db: Db): Promise<number> {
  const answer = await db.command({ hello: 1 });
  const time: unknown = answer.localTime;
  if (!(time instanceof Date) || Number.isNaN(time.getTime())) throw new Error('hello answered no localTime');
  return time.getTime();
}

/** True when `err` is a duplicate-key error (the loser of an insert race on a unique index). */
export function isDuplicateKey(err: unknown): boolean {
  return err instanceof MongoServerError && err.code === 11000;
}

/** The per-document errors of a failed `insertMany` (empty when it failed as a whole). */
export function writeErrorsOf(err: unknown): { index?: number; code?: number }[] {
  const writeErrors = (err as { writeErrors?: { index?: number; code?: number }[] | { index?: number; code?: number } })
    .writeErrors;
  return writeErrors === undefined ? [] : Array.isArray(writeErrors) ? writeErrors : [writeErrors];
}

/**
 * True when an `insertMany({ ordered: false })` failed only because some documents were already
 * there (duplicate keys): the others were inserted, and the duplicates are the dedupe at work.
 */
export function isOnlyDuplicateKeys(err: unknown): boolean {
  const list = writeErrorsOf(err);
  if (list.length === 0) return isDuplicateKey(err);
  return list.every((e) => e.code === 11000);
}

/**
 * Inserts one document whose `_id` is a claim (insert-only, atomic on a unique key on MongoDB and
 * FerretDB alike): true when this call inserted it, false when it was already there.
 */
export async function insertOnce<T extends Document>(collection: Collection<T>, doc: T): Promise<boolean> {
  try {
    await collection.insertOne(doc as never);
    return true;
  } catch (err) {
    if (isDuplicateKey(err)) return false;
    throw err;
  }
}

/**
 * Inserts facts whose `_id` names them (one `insertMany`, unordered, grouped with other callers'
 * inserts into the same collection, see `groupInsert`): a document already there is the same fact
 * recorded before (a retry, a redelivery, another process), so duplicates are skipped.
 */
export function insertFacts<T extends Document>(collection: Collection<T>, docs: readonly T[]): Promise<void> {
  return groupInsert(collection, docs, true);
}

interface PendingInsert {
  docs: readonly Document[];
  ignoreDuplicates: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Per collection handle: inserts waiting for the one in flight. */
const insertGroups = new WeakMap<Collection<never>, { waiting: PendingInsert[]; writing: boolean }>();

/** Documents per grouped `insertMany` (a caller's documents are never split). */
const GROUP_MAX_DOCS = 1_000;

/**
 * Group commit: inserts into one collection that arrive while an earlier one is being written wait
 * for it and then go out together, as one unordered `insertMany` (one SQLite transaction, so one
 * commit, on FerretDB; one round trip on MongoDB). The first insert of an idle collection leaves at
 * once, so nothing waits that would not have waited for the database anyway. Each caller's promise
 * settles with its own documents: resolved once they are stored (and, with `ignoreDuplicates`,
 * when some were already there), rejected with the command's error when one of them failed or the
 * command failed as a whole (then some of the group may be stored: every caller here may retry).
 */
export function groupInsert<T extends Document>(
  collection: Collection<T>,
  docs: readonly T[],
  ignoreDuplicates: boolean,
): Promise<void> {
  if (docs.length === 0) return Promise.resolve();
  const key = collection as unknown as Collection<never>;
  let group = insertGroups.get(key);
  if (!group) insertGroups.set(key, (group = { waiting: [], writing: false }));
  const g = group;
  return new Promise<void>((resolve, reject) => {
    g.waiting.push({ docs, ignoreDuplicates, resolve, reject });
    void flushGroup(key, g);
  });
}

async function flushGroup(
  collection: Collection<never>,
  g: { waiting: PendingInsert[]; writing: boolean },
): Promise<void> {
  if (g.writing || g.waiting.length === 0) return;
  g.writing = true;
  const batch: PendingInsert[] = [];
  let count = 0;
  while (g.waiting.length > 0 && (batch.length === 0 || count + g.waiting[0]!.docs.length <= GROUP_MAX_DOCS)) {
    const next = g.waiting.shift()!;
    batch.push(next);
    count += next.docs.length;
  }
  // Per document that failed, its error code; `unplaced`: an error that names no document.
  const failed = new Map<number, number | undefined>();
  let error: unknown;
  let unplaced = false;
  try {
    await collection.insertMany(batch.flatMap((p) => p.docs) as never[], { ordered: false });
  } catch (err) {
    error = err;
    const list = writeErrorsOf(err);
    for (const e of list) if (typeof e.index === 'number') failed.set(e.index, e.code);
    unplaced = failed.size === 0;
  }
  let offset = 0;
  for (const p of batch) {
    const own = Array.from({ length: p.docs.length }, (_, i) => offset + i).filter((i) => failed.has(i));
    offset += p.docs.length;
    // A duplicate named by no document is a skip for callers that skip duplicates (the rest was stored).
    const skipsIt = p.ignoreDuplicates && isDuplicateKey(error);
    const mine = unplaced ? !skipsIt : own.some((i) => !(p.ignoreDuplicates && failed.get(i) === 11000));
    if (mine) p.reject(error);
    else p.resolve();
  }
  g.writing = false;
  void flushGroup(collection, g);
}

/** Statements per delete command: FerretDB stalls on long multi-statement commands. */
const DELETES_PER_COMMAND = 50;

/**
 * Deletes documents by exact `_id`, one statement each (the filter FerretDB answers through the
 * wrapper's index; `{ _id: { $in } }` would scan), at most 50 statements per command. Returns how
 * many were deleted.
 */
export async function deleteByIds<T extends Document>(
  collection: Collection<T>,
  ids: readonly unknown[],
): Promise<number> {
  let deleted = 0;
  for (let i = 0; i < ids.length; i += DELETES_PER_COMMAND) {
    const part = ids.slice(i, i + DELETES_PER_COMMAND);
    const r = await collection.bulkWrite(part.map((id) => ({ deleteOne: { filter: { _id: id } } })) as never, {
      ordered: false,
    });
    deleted += r.deletedCount;
  }
  return deleted;
}
