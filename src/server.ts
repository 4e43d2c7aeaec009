/**
 * HTTP wiring: Fastify serves /graphql (Apollo Server), /healthz and /readyz, and shuts down
 * gracefully: stop accepting, let in-flight requests finish, then close what the services hold.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { ApolloServer, type ApolloServerPlugin, type GraphQLRequestContext } from '@apollo/server';
import { ApolloServerErrorCode, unwrapResolverError } from '@apollo/server/errors';
import { ApolloServerPluginInlineTraceDisabled } from '@apollo/server/plugin/disabled';
import { fastifyApolloDrainPlugin, fastifyApolloHandler } from '@as-integrations/fastify';
import { ApolloArmor } from '@escape.tech/graphql-armor';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import { sql } from 'kysely';
import { requestDeadline } from './admission/index.js';
import { enforceBudget, operationCost } from './admission/budget.js';
import { isProductId } from './catalog/validate.js';
import { databaseFaultError, dbErrorFields } from './db/faults.js';
import { getMainThumbnail, getThumbnail } from './db/images.js';
import { pendingMigrations } from './db/migrate.js';
import { readFromPrimary } from './db/read-routing.js';
import { maskInternalErrors } from './http/errors.js';
import { invalidInput } from './http/graphql-input.js';
import { registerClientLimits } from './http/rate-limit.js';
import { registerJsonBodyParser } from './http/json-body.js';
import { payloadWorker } from './http/payload-worker.js';
import { registerMultipart, uploadOverflowed } from './http/multipart.js';
import { ErrorCode, isAppError } from './errors.js';
import { registerStorefront } from './http/storefront.js';
import { currentLog, runWithLog, type Logger } from './log.js';
import { metrics } from './metrics/index.js';
import { enablePrometheus } from './metrics/prometheus.js';
import { isAdminToken } from './resolvers/auth.js';
import type { RequestContext } from './resolvers/context.js';
import { buildSchema } from './resolvers/index.js';
import type { Services } from './services.js';

const SCHEMA_DIR = new URL('./schema/', import.meta.url);

export function loadTypeDefs(): string[] {
  return fs
    .readdirSync(SCHEMA_DIR)
    .filter((f) => f.endsWith('.graphql'))
    .sort()
    .map((f) => fs.readFileSync(new URL(f, SCHEMA_DIR), 'utf8'));
}

const APQ_MISMATCH = 'provided sha does not match query';

/** AppErrors keep their code and message; GraphQL's own errors pass; anything else is masked. */
export function formatError(services: Services) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const unwrapped = unwrapResolverError(error);
    // A database that is down or too slow is no bug: the client gets a stable code to retry on.
    const fault = databaseFaultError(unwrapped);
    // The request's own logger (with its reqId) while Apollo formats the errors of that request.
    const log = currentLog(services.log);
    if (fault) log.warn({ err: dbErrorFields(unwrapped), code: fault.code, path: formatted.path }, 'database fault in request');
    const original = fault ?? unwrapped;
    if (isAppError(original)) {
      return { ...formatted, message: original.message, extensions: { ...original.details, code: original.code } };
    }
    // GraphQL's own errors (parse, validation, variable coercion, graphql-armor's limits) are safe to
    // show. Matched by class name along the prototype chain (Apollo subclasses it, and more than one
    // copy of graphql's classes can be loaded: ESM and CommonJS builds).
    // Apollo answers an APQ hash that does not match its query with a GraphQLError without a code
    // (@apollo/server requestPipeline: 'provided sha does not match query', HTTP 400): BAD_REQUEST, the
    // code Apollo gives its other malformed-request errors.
    if (isGraphQLError(original) && formatted.message === APQ_MISMATCH)
      return { message: formatted.message, extensions: { code: ApolloServerErrorCode.BAD_REQUEST } };
    const code = formatted.extensions?.code;
    if (isGraphQLError(original) && code !== ApolloServerErrorCode.INTERNAL_SERVER_ERROR) {
      return code
        ? formatted
        : { ...formatted, extensions: { ...formatted.extensions, code: ApolloServerErrorCode.GRAPHQL_VALIDATION_FAILED } };
    }
    log.error({ err: original, path: formatted.path }, 'unexpected error in GraphQL request');
    return {
      message: 'Internal server error',
      ...(formatted.path ? { path: formatted.path } : {}),
      ...(formatted.locations ? { locations: formatted.locations } : {}),
      extensions: { code: ApolloServerErrorCode.INTERNAL_SERVER_ERROR },
    };
  };
}

function isGraphQLError(e: unknown): boolean {
  for (
    let p = e && typeof e === 'object' ? (Object.getPrototypeOf(e) as object | null) : null;
    p;
    p = Object.getPrototypeOf(p) as object | null
  ) {
    if ((p as { constructor?: { name?: string } }).constructor?.name === 'GraphQLError') return true;
  }
  return false;
}

/** GET /metrics: the Prometheus exposition of this process (src/metrics/); with a token, for its bearer only. */
export function registerMetricsRoute(app: FastifyInstance, token?: string): void {
  const prometheus = enablePrometheus();
  app.get('/metrics', async (req, reply) => {
    if (token !== undefined && !isAdminToken(token, bearerOf(req)))
      return reply.code(401).send({ error: 'metrics need their bearer token' });
    const { contentType, body } = await prometheus.scrape();
    return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
  });
}

export interface HttpServer {
  app: FastifyInstance;
  /** The address it listens on, e.g. http://127.0.0.1:4000 */
  url: string;
  close(): Promise<void>;
}

/** A client's X-Request-Id when it is a plain token (it is echoed into logs), else a fresh UUID. */
export function requestIdOf(header: string | string[] | undefined): string {
  return typeof header === 'string' && /^[\w.:-]{1,128}$/.test(header) ? header : randomUUID();
}

/** Operation names come from clients: only a bounded set become metric labels, the rest are "other". */
const MAX_OPERATION_LABELS = 200;

/** Codes that mean "the service cannot do this right now, retry": answered 503 with Retry-After. */
const RETRYABLE = new Set<string>([ErrorCode.DATABASE_UNAVAILABLE, ErrorCode.OVERLOADED]);

/**
 * Refusals that cost the client its allowance's refusal penalty (admission/allowance.ts): those refused
 * before their cost is charged. An OVERLOADED operation has paid its cost already, and a good client
 * turned away by a full gate must not lose more than that.
 */
const PENALISED = new Set<string>([
  ApolloServerErrorCode.GRAPHQL_PARSE_FAILED,
  ApolloServerErrorCode.GRAPHQL_VALIDATION_FAILED,
  ErrorCode.BUDGET_EXCEEDED,
]);

/** Refusals held in the tarpit before they are sent (src/http/rate-limit.ts), when they are all an answer has. */
const TARPITTED = new Set<string>([...PENALISED, ErrorCode.OVERLOADED, ErrorCode.RATE_LIMITED]);

function bearerOf(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  const match = typeof header === 'string' ? /^Bearer\s+(.+)$/i.exec(header.trim()) : null;
  return match?.[1] ?? null;
}

export async function startHttpServer(services: Services): Promise<HttpServer> {
  const { config } = services;
  const limits = config.limits;
  const app = Fastify({
    // The assertion is not redundant: it fixes Fastify's logger generic, which the instance's type carries.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    loggerInstance: services.log as FastifyBaseLogger,
    // Every line Fastify's request.log writes carries reqId; the id also goes back to the client, so
    // a user's report can be matched with the service's lines (and a proxy's X-Request-Id is kept).
    genReqId: (req) => requestIdOf(req.headers['x-request-id']),
    bodyLimit: config.http.bodyLimit,
    // Let in-flight requests finish on close; new connections are refused.
    forceCloseConnections: 'idle',
    // A client that sends its request slowly (slowloris) or holds idle connections open is cut off.
    requestTimeout: limits.http.requestTimeoutMs,
    connectionTimeout: limits.http.connectionTimeoutMs,
    keepAliveTimeout: limits.http.keepAliveTimeoutMs,
    // Behind a load balancer every client would share its address (and its rate limits) otherwise.
    trustProxy: limits.trustProxy,
  });
  // Node's own bound on receiving the request headers (Fastify has no option for it); must not exceed
  // requestTimeout where that is set.
  app.server.headersTimeout =
    limits.http.requestTimeoutMs > 0 ? Math.min(limits.http.headersTimeoutMs, limits.http.requestTimeoutMs) : limits.http.headersTimeoutMs;
  const isAdminRequest = (request: FastifyRequest) => isAdminToken(config.adminToken, bearerOf(request));

  // A request still running at close() holds a keep-alive connection that would otherwise stay open
  // until Fastify's keepAliveTimeout (72 s) and hold up shutdown that long: once closing, answer with
  // `Connection: close` so the socket ends with the response.
  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  // The request rate limit, the query allowance and the tarpit (src/http/rate-limit.ts). Registered
  // first, so a refused request reads no body.
  const clientLimits = await registerClientLimits(app, limits.rateLimit, limits.trustProxy !== false, isAdminRequest, () => closing);
  const allowance = clientLimits.allowance;
  maskInternalErrors(app); // 5xx answers outside GraphQL carry no internal message (src/http/errors.ts)
  // Large JSON bodies (base64 photos) are parsed off the main thread (src/http/json-body.ts).
  registerJsonBodyParser(app);
  app.addHook('onSend', (req, reply, payload, done) => {
    if (closing) void reply.header('connection', 'close');
    void reply.header('x-request-id', req.id);
    done(null, payload);
  });
  // Latency by route pattern (not the URL: ids and query strings would make a label per request).
  app.addHook('onResponse', (req, reply, done) => {
    metrics.httpRequest(req.routeOptions.url ?? 'unmatched', req.method, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });
  // A name becomes a label once an operation of that name succeeded: a client cannot fill the labels
  // with names of refused or failing requests (it still can with succeeding ones, up to the cap).
  const operationNames = new Set<string>();
  const operationLabel = (name: string | null | undefined, succeeded: boolean): string => {
    if (!name) return 'anonymous';
    if (operationNames.has(name)) return name;
    if (!succeeded || operationNames.size >= MAX_OPERATION_LABELS) return 'other';
    operationNames.add(name);
    return name;
  };

  const armor = new ApolloArmor({
    maxDepth: { n: config.graphql.maxDepth },
    maxAliases: { n: config.graphql.maxAliases },
    costLimit: { maxCost: config.graphql.maxCost },
    // The token limit is Apollo's own parse option (below): graphql-armor's runs its own parse in a
    // plugin hook, where a syntax error escapes Apollo's handling and answers 500 without a code.
    maxTokens: { enabled: false },
    maxDirectives: { n: 50 },
    blockFieldSuggestion: { enabled: config.production },
  });
  const protection = armor.protect();

  const typeDefs = loadTypeDefs();
  // A large JSON body's photos stay on the payload worker; its value carries stand-ins (http/payload-worker.ts).
  payloadWorker().holdImagesIn(typeDefs.join('\n'));
  const apollo = new ApolloServer<RequestContext>({
    // A federation subgraph schema (resolvers/index.ts): Product is an entity a gateway can compose.
    schema: buildSchema(typeDefs, { introspection: config.graphql.introspection, adminToken: config.adminToken }),
    introspection: config.graphql.introspection,
    // Past it, parsing stops: 400 GRAPHQL_PARSE_FAILED, penalised and held like any parse error.
    parseOptions: { maxTokens: config.graphql.maxTokens },
    csrfPrevention: true,
    includeStacktraceInErrorResponses: false,
    allowBatchedHttpRequests: false,
    formatError: formatError(services),
    validationRules: protection.validationRules,
    plugins: [
      // graphql-armor and the fastify integration are typed against Apollo's CJS build; same runtime objects.
      ...(protection.plugins as unknown as ApolloServerPlugin<RequestContext>[]),
      fastifyApolloDrainPlugin(app),
      // Apollo enables federated tracing (ftv1) for a subgraph schema; off: a router's caller would get
      // per-field timings and error details in each response extension, and /metrics already measures.
      ApolloServerPluginInlineTraceDisabled(),
      {
        requestDidStart() {
          const started = performance.now();
          return Promise.resolve({
            // The operation's budget (similarity fields, Σk, Σfirst), with the variables' values known.
            async didResolveOperation(ctx: GraphQLRequestContext<RequestContext>) {
              if (!ctx.document || !ctx.operation) return;
              // Text PostgreSQL cannot store, and strings past any field's bound (http/graphql-input.ts).
              const invalid = invalidInput(ctx.document, ctx.request.variables);
              if (invalid) {
                ctx.contextValue.log.warn({ field: invalid.path }, `refused input: ${invalid.message}`);
                throw new GraphQLError(invalid.message, {
                  extensions: { code: ErrorCode.BAD_USER_INPUT, field: invalid.path, http: { status: 400 } },
                });
              }
              const admin = isAdminToken(config.adminToken, ctx.contextValue.bearerToken);
              const b = limits.budget;
              const cost = operationCost(ctx.document, ctx.operation, ctx.request.variables, (after) =>
                services.search.cursors.depthOf(after),
              );
              enforceBudget(cost, { ...(admin ? b.admin : b.anonymous), pageFirst: b.pageFirst }, admin ? 'admin' : 'anonymous');
              // The client's allowance pays for what the operation asks for (admission/allowance.ts).
              const client = ctx.contextValue.client;
              if (!client) return;
              await allowance.charge(client.payer, 1 + cost.similarityK + cost.pageFirst + cost.embeddings).catch((err: unknown) => {
                throw isAppError(err)
                  ? new GraphQLError(err.message, { extensions: { ...err.details, code: err.code, http: { status: 429 } } })
                  : err;
              });
            },
            // A request that failed only because the database is unavailable or the service is overloaded
            // answers 503 (with a Retry-After), so load balancers and clients treat it as transient.
            async willSendResponse(ctx: GraphQLRequestContext<RequestContext>) {
              const body = ctx.response.body;
              const errors = body?.kind === 'single' ? body.singleResult.errors : undefined;
              const codes = new Set((errors ?? []).map((e) => String(e.extensions?.code)));
              const rateLimitedError = errors?.find((e) => e.extensions?.code === ErrorCode.RATE_LIMITED);
              if (rateLimitedError) {
                ctx.response.http.status = 429;
                ctx.response.http.headers.set('retry-after', String(Number(rateLimitedError.extensions?.retryAfterSeconds) || 1));
              }
              // A refused operation still costs its client (admission/allowance.ts): too large or over budget.
              const client = ctx.contextValue.client;
              if (client && [...codes].some((c) => PENALISED.has(c))) await allowance.penalise(client.payer);
              // ... and is held in the tarpit when it is nothing but refusals (src/http/rate-limit.ts).
              if (codes.size && [...codes].every((c) => TARPITTED.has(c))) ctx.contextValue.tarpit?.();
              if (errors?.length && errors.every((e) => RETRYABLE.has(String(e.extensions?.code)))) {
                ctx.response.http.status = 503;
                ctx.response.http.headers.set('retry-after', '1');
              }
              // An upload cut off at the request byte cap: the rest of the body is not read.
              if (errors?.some((e) => e.extensions?.code === ErrorCode.REQUEST_TOO_LARGE)) {
                ctx.response.http.status = 413;
                ctx.response.http.headers.set('connection', 'close');
              }
              // ctx.operationName is set once the document parsed and the operation was found.
              const code = errors?.[0]?.extensions?.code;
              const outcome = errors?.length ? (typeof code === 'string' ? code : 'error') : 'ok';
              metrics.graphqlOperation(operationLabel(ctx.operationName, outcome === 'ok'), outcome, (performance.now() - started) / 1000);
            },
            didEncounterErrors(ctx: GraphQLRequestContext<RequestContext>) {
              for (const err of ctx.errors ?? []) {
                const original = unwrapResolverError(err);
                if (isAppError(original)) ctx.contextValue.log.info({ code: original.code, msg: original.message }, 'request rejected');
              }
              return Promise.resolve();
            },
          });
        },
      },
    ],
  });
  await apollo.start();

  registerMultipart(app, {
    maxFileBytes: config.images.maxBytes,
    maxFiles: 500, // the upsert batch limit (catalog/validate.ts)
    anonymousMaxFiles: 1, // a shopper's photo
    maxRequestBytes: limits.http.uploadMaxBytes,
    isAdmin: isAdminRequest,
  });
  const graphqlHandler = fastifyApolloHandler(apollo, {
    context: (request, reply) => {
      // The request's deadline; it also fires when the client goes away before the answer is sent,
      // which drops its queued work and aborts its URL fetch.
      const deadline = requestDeadline(limits.requestTimeoutMs);
      reply.raw.once('close', () => {
        deadline.dispose();
        if (!reply.raw.writableFinished) deadline.abort();
      });
      return Promise.resolve({
        services,
        bearerToken: bearerOf(request),
        client: clientLimits.clientOf(request),
        tarpit: () => clientLimits.tarpit(request.raw),
        log: request.log as Logger,
        signal: deadline.signal,
        uploadOverflowed: () => uploadOverflowed(request.raw),
      });
    },
  });
  app.route({
    url: '/graphql',
    method: ['GET', 'POST', 'OPTIONS'],
    // Read replicas: the admin's requests read from the primary (they see their own writes at once), and
    // before an admin request's answer leaves, a write fence sends this process's replica reads to the
    // primary until a replica has replayed that far (db/read-routing.ts). No-ops without replicas.
    onSend: async (request, _reply, payload) => {
      const router = services.database.readRouter;
      if (router && isAdminRequest(request))
        await router
          .fenceWrites()
          .catch((err: unknown) => request.log.warn({ err: dbErrorFields(err) }, 'could not read the write position'));
      return payload;
    },
    // The request's logger is the current one for everything that runs for it (formatError included).
    handler: function (request, reply) {
      // The integration types its handler with its own route generic; same request and reply objects.
      type Args = Parameters<typeof graphqlHandler>;
      const run = () => runWithLog(request.log as Logger, () => graphqlHandler.call(this, request as Args[0], reply as Args[1]));
      return isAdminRequest(request) ? readFromPrimary(run) : run();
    },
  });
  // On the public port only outside production or behind METRICS_TOKEN (METRICS_PORT: a listener of their own).
  if (config.metrics.enabled && config.metrics.port === undefined) {
    if (config.metrics.token !== undefined || !config.production) registerMetricsRoute(app, config.metrics.token);
    else services.log.warn('/metrics is not served on the public port in production: set METRICS_PORT or METRICS_TOKEN');
  }

  app.get('/healthz', { config: { rateLimit: false } }, () => Promise.resolve({ status: 'ok' }));
  registerStorefront(app); // the storefront page (web/) at /

  // Thumbnails made at ingest, straight from the database (no re-download per view): a photo's by its
  // id (immutable: a photo's id changes with its bytes), a product's main photo's by the product's id.
  const thumbnailRoute = (path: string, read: typeof getThumbnail, cacheSeconds: number) =>
    app.get<{ Params: { id: string } }>(path, async (req, reply) => {
      const id = req.params.id;
      let found: Awaited<ReturnType<typeof getThumbnail>>;
      try {
        found = isProductId(id) ? await read(services.database.reads, id) : null;
      } catch (err) {
        // Like GraphQL: a database outage is a 503 with its stable code, not a 500.
        const fault = databaseFaultError(err);
        if (!fault) throw err;
        return reply
          .code(fault.code === ErrorCode.DATABASE_UNAVAILABLE ? 503 : 504)
          .header('retry-after', '1')
          .send({ error: fault.message, code: fault.code });
      }
      if (!found) return reply.code(404).send({ error: 'no such image' });
      return reply
        .header('content-type', 'image/webp')
        .header('cache-control', `public, max-age=${cacheSeconds}`)
        .header('etag', `"${found.sha256.slice(0, 32)}"`)
        .send(found.thumbnail);
    });
  thumbnailRoute('/images/:id/thumbnail.webp', getThumbnail, 31_536_000);
  thumbnailRoute('/products/:id/thumbnail.webp', getMainThumbnail, 86_400);

  app.get('/readyz', { config: { rateLimit: false } }, async (_req, reply) => {
    const checks: Record<string, string> = {};
    let ready = true;
    try {
      await sql`SELECT 1`.execute(services.database.db);
      checks.database = 'ok';
      const pending = await pendingMigrations(services.database.db);
      checks.migrations = pending.length ? `pending: ${pending.join(', ')}` : 'ok';
      if (pending.length) ready = false;
    } catch (err) {
      services.log.warn({ err: dbErrorFields(err) }, 'readiness check failed');
      checks.database = databaseFaultError(err)?.code === ErrorCode.DATABASE_UNAVAILABLE ? 'down' : 'unreachable';
      ready = false;
    }
    const loaded = services.models.loadedModels().map((m) => m.id);
    checks.model = loaded.length ? loaded.join(', ') : 'none loaded (search by image or text unavailable)';
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', checks });
  });

  await app.listen({ host: config.http.host, port: config.http.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.http.port;
  const host = config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host;
  return {
    app,
    url: `http://${host}:${port}`,
    close: async () => {
      await app.close(); // stops accepting, drains in-flight requests, stops Apollo
    },
  };
}
