# The GraphQL service as compiled JavaScript (`npm run build`), on Node 24 LTS. Built by docker-compose.yml.
# Three stages: the build (all dependencies, type-checked compile to dist/), the production dependencies
# (npm ci --omit=dev), and the runtime image holding only those two, run as the unprivileged `node` user.

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# tsc needs no install scripts (and the slim image has no compiler for the dev-only native addons).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/copy-build-assets.mjs scripts/
COPY src src
COPY migrations migrations
COPY web web
RUN npm run build

FROM node:24-bookworm-slim AS deps
# onnxruntime-node's install script would fetch CUDA libraries from outside the npm registry; package.json's
# allowScripts denies it, and the variable keeps it a no-op regardless.
ENV ONNXRUNTIME_NODE_INSTALL=skip
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
RUN chown node:node /app
COPY --from=deps /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY package.json ./
COPY bin bin
USER node
EXPOSE 4000
# node directly (not npm): signals reach the service, which drains in-flight requests on SIGTERM.
CMD ["node", "--enable-source-maps", "dist/src/main.js", "serve"]
