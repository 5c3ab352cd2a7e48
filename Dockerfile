# One image for both processes of the service: `server` (Koa, the default command) and `worker`
# (Temporal worker: `node dist/src/worker-main.js`, set per service in docker-compose.yml).

# Build: every dependency, TypeScript compiled to dist/, the workflow bundles prebuilt
# (dist/workflow-bundle.js, and dist/workflow-bundle-tracing.js for a worker with
# OTEL_EXPORTER_OTLP_ENDPOINT; loaded by the compiled worker instead of bundling at start).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY tools/build-workflows.ts ./tools/
RUN npm run build

# Run: production dependencies and dist/ only (no TypeScript sources, tools or tests).
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
USER node
# In a container the listener must not stay on loopback (the config default).
ENV HOST=0.0.0.0 PORT=3000
EXPOSE 3000
# The server answers GET /healthz. The worker has no HTTP endpoint: in its container (PID 1 runs
# worker-main, directly or under `init: true`) the check passes while the process runs; the
# container ends when the worker does, and a worker that stopped polling shows in Temporal
# (`temporal task-queue describe --task-queue coexist-relay` lists no poller).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["node", "-e", "if (require('node:fs').readFileSync('/proc/1/cmdline', 'utf8').includes('worker-main')) process.exit(0); fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1));"]
# Signals go straight to node (exec form): SIGTERM drains and exits 0 (see src/boot.ts).
# Node's heap limit: 1 GiB per process (docs/operations.md, "Build and deploy"); the container should allow
# about 1.3 GiB (heap + native memory).
CMD ["node", "--max-old-space-size=1024", "dist/src/server-main.js"]
