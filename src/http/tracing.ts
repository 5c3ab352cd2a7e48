import type Koa from 'koa';
import { inSpan, markError, tracingActive } from '../telemetry';

/**
 * One span per HTTP request while tracing is on (src/telemetry.ts): `HTTP <METHOD> <route>` (the
 * router's path template, e.g. `/v1/messages/:id`; the method alone when no route matched), kind
 * server, continuing a caller's W3C `traceparent`. Attributes `http.request.method`, `http.route`,
 * `http.response.status_code`, and `coexist_relay.waba_id` when the request names one (a route's
 * `:wabaId`, or `ctx.state.wabaId` set by a handler, e.g. the send API once it resolved the
 * number). A 5xx answer marks the span as an error. First middleware of the app, so the status is
 * the one the client gets. Without tracing it only calls `next`.
 */
export function httpTracing(): Koa.Middleware {
  return async (ctx, next) => {
    if (!tracingActive()) return next();
    await inSpan(
      `HTTP ${ctx.method}`,
      { kind: 'server', attributes: { 'http.request.method': ctx.method }, carrier: ctx.headers },
      async (span) => {
        try {
          await next();
        } finally {
          const route = (ctx as { _matchedRoute?: unknown })._matchedRoute;
          if (typeof route === 'string') {
            span?.updateName(`HTTP ${ctx.method} ${route}`);
            span?.setAttribute('http.route', route);
          }
          const params = (ctx as { params?: Record<string, unknown> }).params;
          const wabaId = (ctx.state as { wabaId?: unknown }).wabaId ?? params?.wabaId;
          if (typeof wabaId === 'string') span?.setAttribute('coexist_relay.waba_id', wabaId);
          span?.setAttribute('http.response.status_code', ctx.status);
          if (ctx.status >= 500) markError(span);
        }
      },
    );
  };
}
