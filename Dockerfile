# One image for both processes of the service: `server` (Koa) and `worker` (Temporal worker).
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY workflows ./workflows
COPY activities ./activities
COPY src ./src
USER node
# Overridden per service in docker-compose.yml.
CMD ["npx", "tsx", "src/server-main.ts"]
