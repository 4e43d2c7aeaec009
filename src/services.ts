/** The long-lived parts of a running service, built once at start-up and handed to resolvers. */
import type { Config } from './config.js';
import type { Database } from './db/connect.js';
import type { ImageLimits } from './images/decode.js';
import type { FetchImageOptions } from './images/fetch.js';
import type { JobRunner } from './jobs/runner.js';
import type { Logger } from './log.js';
import type { ModelService } from './models/service.js';
import type { SearchService } from './search/service.js';

export interface Services {
  config: Config;
  log: Logger;
  database: Database;
  models: ModelService;
  search: SearchService;
  fetchOptions: FetchImageOptions;
  imageLimits: ImageLimits;
  /** Reindex jobs on the pg-boss queue (docs/reindex.md). */
  jobs: JobRunner;
}
