# The GraphQL service. Built by docker-compose.yml; runs TypeScript through tsx (`npm start`).
FROM node:20-bookworm-slim

# onnxruntime-node's install script would fetch CUDA libraries from outside the npm registry: skip it.
ENV NODE_ENV=production \
    ONNXRUNTIME_NODE_INSTALL=skip

WORKDIR /app
RUN chown node:node /app
USER node

COPY --chown=node:node package.json package-lock.json .npmrc ./
# Dev dependencies included: `npm start` runs the TypeScript sources through tsx.
RUN npm ci --include=dev && npm cache clean --force

COPY --chown=node:node . .

EXPOSE 4000
CMD ["npm", "start"]
