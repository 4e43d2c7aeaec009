/**
 * The command-line entry: `serve` (default), `migrate [up|status|down]`, `import`, `reindex`, `model`, `tag`,
 * `duplicates`, `eval`.
 * Run as `npm start`, `npm run migrate -- status`, or `npm run cli -- <command> --help`.
 */
import { parseArgs } from 'node:util';
import { startService, stopOnSignals } from './app.js';
import { blockUnneededLoaders } from './images/decode.js';
import { loadConfigOrReport, type Config } from './config.js';
import { migrateDown, migrateToLatest, migrationStatus } from './db/migrate.js';
import { applySearchLanguage } from './db/search-language.js';
import { IMPORT_USAGE, importCommand, MODEL_USAGE, modelCommand, REINDEX_USAGE, reindexCommand } from './cli/admin.js';
import { EVAL_USAGE, evalCommand } from './eval/cli.js';
import { DUPLICATES_USAGE, duplicatesCommand, TAG_USAGE, tagCommand } from './cli/intelligence.js';
import { createLogger, type Logger } from './log.js';
import { openConfiguredDatabase } from './services.js';

interface Command {
  summary: string;
  usage: string;
  run(args: string[], config: Config, log: Logger): Promise<void>;
}

const commands: Record<string, Command> = {
  serve: {
    summary: 'Run the GraphQL service (embedded database unless DATABASE_URL is set).',
    usage: 'serve',
    async run(_args, config, log) {
      blockUnneededLoaders(); // libvips loaders no product photo needs (images/decode.ts)
      const service = await startService(config, log);
      const psql = service.services.database.psqlUrl;
      // The psql URL carries the port's password: on stdout for the operator, masked in the log.
      log.info({ url: `${service.http.url}/graphql`, psql: psql?.replace(/:[^:@/]+@/, ':***@') ?? null }, 'service ready');
      process.stdout.write(`\nGraphQL:  ${service.http.url}/graphql\n`);
      if (psql) process.stdout.write(`psql:     psql "${psql}"\n`);
      process.stdout.write('\n');
      stopOnSignals(service, log);
    },
  },
  model: {
    summary: 'Models: list, activate (roll back), drop vectors; fetch from the hub, path, generate stand-ins.',
    usage: MODEL_USAGE,
    run: modelCommand,
  },
  import: {
    summary: 'Import a catalog file (JSON Lines or CSV), resumable, with a per-row error report.',
    usage: IMPORT_USAGE,
    run: importCommand,
  },
  reindex: {
    summary: 'Re-embed the catalog with a model on the job queue, then switch search to it atomically.',
    usage: REINDEX_USAGE,
    run: reindexCommand,
  },
  tag: {
    summary: 'Tag the catalog with zero-shot labels as suggestions (a durable job); accept them into products.',
    usage: TAG_USAGE,
    run: tagCommand,
  },
  duplicates: {
    summary: 'Find near-duplicate products through the HNSW index (scan), list their groups (list).',
    usage: DUPLICATES_USAGE,
    run: duplicatesCommand,
  },
  eval: {
    summary: 'Measure retrieval (recall@1/5/10, MRR) of one or more models on the catalog; table, HTML report, --json.',
    usage: EVAL_USAGE,
    run: evalCommand,
  },
  migrate: {
    summary: 'Apply migrations: up (default, to the latest), status, or down (one step).',
    usage: 'migrate [up|status|down]',
    async run(args, config, log) {
      const action = args[0] ?? 'up';
      if (!['up', 'status', 'down'].includes(action)) throw new UsageError(`unknown migrate action "${action}"`);
      // No psql port: a one-shot command must not take a running service's port.
      const database = await openConfiguredDatabase(config, log, { psqlPort: false });
      try {
        if (action === 'status') {
          for (const m of await migrationStatus(database.db)) {
            process.stdout.write(`${m.executedAt ? `applied ${m.executedAt.toISOString()}` : 'pending'}  ${m.name}\n`);
          }
        } else if (action === 'down') {
          const undone = await migrateDown(database.db);
          process.stdout.write(undone.length ? `reverted ${undone.join(', ')}\n` : 'nothing to revert\n');
        } else {
          const applied = await migrateToLatest(database.db);
          process.stdout.write(applied.length ? `applied ${applied.join(', ')}\n` : 'already up to date\n');
          // SEARCH_LANGUAGE changed since the documents were built: rebuild them (src/db/search-language.ts).
          const language = config.search.language;
          if (language && (await applySearchLanguage(database.db, language)))
            process.stdout.write(`rebuilt the full-text documents with the '${language}' configuration\n`);
        }
      } finally {
        await database.close();
      }
    },
  },
};

class UsageError extends Error {}

function help(): string {
  const lines = Object.entries(commands).map(([name, c]) => {
    const u = c.usage.split('\n')[0]!;
    return `  ${(u.length <= 28 ? u : `${name} …`).padEnd(28)} ${c.summary}`;
  });
  return `Usage: vps <command> [options]\n\nCommands:\n${lines.join('\n')}\n\nEach command takes --help. Settings come from the environment (see README).\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name = 'serve', ...rest] = argv;
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  const { values } = parseArgs({ args: rest, options: { help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: false });
  if (values.help) {
    process.stdout.write(`Usage: vps ${command.usage}\n\n${command.summary}\n`);
    return 0;
  }
  const config = loadConfigOrReport();
  if (!config) return 2;
  const log = createLogger(config.logLevel, { format: config.logFormat });
  try {
    // Each command parses its own arguments (flags included).
    await command.run(rest, config, log);
    return name === 'serve' ? -1 : 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n\nUsage: vps ${command.usage}\n`);
      return 2;
    }
    log.error({ err }, `${name} failed`);
    process.stderr.write(`\n${name} failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

const code = await main(process.argv.slice(2));
if (code >= 0) process.exit(code);
