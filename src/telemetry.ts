/**
 * OpenTelemetry tracing: the one owner of its setup. Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is
 * set; then `startTracing` (called by each entry point before it connects anything) loads the SDK,
 * registers a global tracer provider exporting OTLP/HTTP JSON to `<endpoint>/v1/traces` in
 * batches, and makes the Temporal interceptors available to `connectRuntime` (client) and
 * `createWorker` (activities, workflow spans through a sink). Without it, no OpenTelemetry module
 * is loaded (but `@opentelemetry/api`, which prom-client requires; no tracer is registered):
 * `inSpan` calls its function at once and the Temporal helpers return nothing.
 *
 * The spans (docs/operations.md, "Tracing"): `HTTP <METHOD> <route>` per request (src/http/tracing.ts),
 * `graph <operation>` per Cloud API call (src/adapters/graph/client.ts), and the Temporal
 * interceptors' `StartWorkflow:<type>`, `SignalWithStartWorkflow:<type>`, `RunWorkflow:<type>`,
 * `StartActivity:<type>` and `RunActivity:<type>`. Temporal carries the context in workflow and
 * activity headers, so a send is one trace from its HTTP request to its Graph call.
 */
import type * as Api from '@opentelemetry/api';
import type { Attributes, Span, Tracer } from '@opentelemetry/api';
import type { InjectedSinks, WorkerOptions } from '@temporalio/worker';
import type { OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry';
import type { Config } from './config';

/** How long a shutdown waits for the last spans to be exported. */
export const TRACING_SHUTDOWN_MS = 5_000;

/** The workflow interceptor module a tracing workflow bundle is built with (see `bundleWorkflows`). */
export const WORKFLOW_TRACING_MODULE = '@temporalio/interceptors-opentelemetry/lib/workflow-interceptors';

/** What a tracing process holds while `startTracing` is in force. */
interface Active {
  api: typeof Api;
  tracer: Tracer;
  clientInterceptors: { workflow: OpenTelemetryWorkflowClientInterceptor[] };
  worker: {
    activity: NonNullable<NonNullable<WorkerOptions['interceptors']>['activity']>;
    sinks: InjectedSinks<never>;
  };
}

let active: Active | undefined;

/** Whether tracing is on in this process. */
export const tracingActive = (): boolean => active !== undefined;

/**
 * Starts tracing when `config.tracing` is set (a no-op otherwise) for one process of the service;
 * `component` (`server`, `worker`, `dev`) goes into the resource as `coexist_relay.component`
 * next to `service.name` (`OTEL_SERVICE_NAME`). Resolves to the shutdown: it flushes the spans
 * still queued, waiting at most `TRACING_SHUTDOWN_MS`, and unregisters everything. Once per
 * process at a time.
 */
export async function startTracing(config: Pick<Config, 'tracing'>, component: string): Promise<() => Promise<void>> {
  const settings = config.tracing;
  if (!settings) return async () => undefined;
  if (active) throw new Error('tracing is already started in this process');
  const [api, { NodeTracerProvider, BatchSpanProcessor }, { Resource }, { OTLPTraceExporter }, temporal] =
    await Promise.all([
      import('@opentelemetry/api'),
      import('@opentelemetry/sdk-trace-node'),
      import('@opentelemetry/resources'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@temporalio/interceptors-opentelemetry'),
    ]);
  const resource = new Resource({
    'service.name': settings.serviceName,
    'coexist_relay.component': component,
    'process.pid': process.pid,
  });
  // The SDK's own OTEL_BSP_* and OTEL_EXPORTER_OTLP_HEADERS / _COMPRESSION settings still apply.
  const processor = new BatchSpanProcessor(
    new OTLPTraceExporter({ url: `${settings.endpoint}/v1/traces`, timeoutMillis: TRACING_SHUTDOWN_MS }),
  );
  const provider = new NodeTracerProvider({ resource, spanProcessors: [processor] });
  // Global provider, AsyncLocalStorage context manager and W3C trace-context propagator.
  provider.register();
  const tracer = api.trace.getTracer('coexist-relay');
  active = {
    api,
    tracer,
    clientInterceptors: { workflow: [new temporal.OpenTelemetryWorkflowClientInterceptor()] },
    worker: {
      activity: [
        (ctx) => ({
          inbound: new temporal.OpenTelemetryActivityInboundInterceptor(ctx),
          outbound: new temporal.OpenTelemetryActivityOutboundInterceptor(ctx),
        }),
      ],
      // Workflow code cannot export: its interceptors hand finished spans to this sink.
      sinks: { exporter: temporal.makeWorkflowExporter(processor, resource) } as InjectedSinks<never>,
    },
  };
  let stopping: Promise<void> | undefined;
  return () =>
    (stopping ??= (async () => {
      active = undefined;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        provider.shutdown().catch(() => undefined),
        new Promise((resolve) => (timer = setTimeout(resolve, TRACING_SHUTDOWN_MS))),
      ]);
      clearTimeout(timer);
      api.trace.disable();
      api.context.disable();
      api.propagation.disable();
    })());
}

/** The Temporal client interceptors of a tracing process (`connectRuntime`), else undefined. */
export function temporalClientInterceptors(): Active['clientInterceptors'] | undefined {
  return active?.clientInterceptors;
}

/**
 * What a tracing worker adds to its options (`createWorker`): the activity interceptors and the
 * sink that exports the workflow spans; undefined without tracing. The workflow interceptors are
 * in the workflow bundle (`WORKFLOW_TRACING_MODULE`).
 */
export function temporalWorkerTracing(): Active['worker'] | undefined {
  return active?.worker;
}

export type SpanKindName = 'server' | 'client' | 'internal';

export interface SpanOptions {
  kind: SpanKindName;
  attributes?: Attributes;
  /** Incoming headers carrying a W3C `traceparent`: the span continues the caller's trace. */
  carrier?: Record<string, unknown>;
}

/**
 * Runs `fn` inside a new active span named `name` and ends the span when `fn` settles (a throw
 * marks it as an error and is rethrown). Without tracing, `fn(undefined)` runs directly.
 */
export function inSpan<T>(name: string, options: SpanOptions, fn: (span: Span | undefined) => Promise<T>): Promise<T> {
  const t = active;
  if (!t) return fn(undefined);
  const { api } = t;
  const kind = { server: api.SpanKind.SERVER, client: api.SpanKind.CLIENT, internal: api.SpanKind.INTERNAL }[
    options.kind
  ];
  const parent = options.carrier
    ? api.propagation.extract(api.context.active(), options.carrier)
    : api.context.active();
  return t.tracer.startActiveSpan(name, { kind, attributes: options.attributes ?? {} }, parent, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** Marks a span as failed (a 5xx answer, say) without an exception. */
export function markError(span: Span | undefined, message?: string): void {
  if (span && active) span.setStatus({ code: active.api.SpanStatusCode.ERROR, ...(message ? { message } : {}) });
}
