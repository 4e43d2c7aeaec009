/**
 * Counts the statements a running test service reads a table with (its FROM), by putting a Kysely plugin
 * on the service's read handle for the length of `fn`: what tests of batching (DataLoaders, one
 * statement per batch rather than one per row) assert on.
 */
import type { KyselyPlugin } from 'kysely';
import type { TestService } from './service.js';

export async function countStatementsFrom(service: TestService, table: string, fn: () => Promise<unknown>): Promise<number> {
  let n = 0;
  const counter: KyselyPlugin = {
    transformQuery(args) {
      const from = (args.node as { from?: { froms?: Array<{ table?: { identifier?: { name?: string } } }> } }).from;
      if (from?.froms?.some((f) => f.table?.identifier?.name === table)) n++;
      return args.node;
    },
    transformResult: (args) => Promise.resolve(args.result),
  };
  const database = service.service.services.database as { reads: typeof service.service.services.database.reads };
  const reads = database.reads;
  database.reads = reads.withPlugin(counter);
  try {
    await fn();
  } finally {
    database.reads = reads;
  }
  return n;
}
