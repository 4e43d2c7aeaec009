/** The long-lived parts of a running service, built once at start-up and handed to resolvers. */
import type { Config } from './config.js';
import type { Database } from './db/connect.js';
import type { Logger } from './log.js';

export interface Services {
  config: Config;
  log: Logger;
  database: Database;
}
