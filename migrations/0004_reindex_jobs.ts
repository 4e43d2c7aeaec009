// Reindex jobs: the durable state of re-embedding the catalog with a model (progress, keyset cursor,
// per-product errors, which worker holds it). The queue itself (dispatch, retries) is pg-boss, in its own
// schema `pgboss`, which pg-boss creates and upgrades itself when the service starts (docs/reindex.md).
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE reindex_jobs (
      id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      model_id       text NOT NULL REFERENCES embedding_models (id) ON DELETE CASCADE,
      only_missing   boolean NOT NULL DEFAULT false,
      activate       boolean NOT NULL DEFAULT true,
      state          text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
      queue_job_id   uuid,
      total          integer NOT NULL DEFAULT 0 CHECK (total >= 0),
      processed      integer NOT NULL DEFAULT 0 CHECK (processed >= 0),
      failed         integer NOT NULL DEFAULT 0 CHECK (failed >= 0),
      cursor         bigint NOT NULL DEFAULT 0,
      pass           integer NOT NULL DEFAULT 1 CHECK (pass >= 1),
      errors         jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(errors) = 'array'),
      error          text,
      activated      boolean NOT NULL DEFAULT false,
      attempts       integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
      worker_id      text,
      heartbeat_at   timestamptz,
      run_started_at timestamptz,
      run_processed  integer NOT NULL DEFAULT 0,
      created_at     timestamptz NOT NULL DEFAULT now(),
      started_at     timestamptz,
      finished_at    timestamptz
    )`.execute(db);
  // One open (queued or running) job per model: a second reindex of the same model is refused.
  await sql`CREATE UNIQUE INDEX reindex_jobs_one_open_per_model ON reindex_jobs (model_id) WHERE state IN ('queued', 'running')`.execute(
    db,
  );
  await sql`CREATE INDEX reindex_jobs_created_idx ON reindex_jobs (created_at DESC)`.execute(db);

  const comments: Array<[string, string]> = [
    [
      'TABLE reindex_jobs',
      'One row per reindex request: re-embedding the catalog with a model, then (optionally) making it the active one. Dispatched through the pg-boss queue.',
    ],
    ['COLUMN reindex_jobs.id', 'Job id; the GraphQL ReindexJob.id.'],
    ['COLUMN reindex_jobs.model_id', 'The model whose vectors the job computes.'],
    [
      'COLUMN reindex_jobs.only_missing',
      'True: embed only products without a vector of their current image for the model; false: re-embed every product.',
    ],
    [
      'COLUMN reindex_jobs.activate',
      'Whether the job makes the model the active one when every product has a vector and the index is built.',
    ],
    ['COLUMN reindex_jobs.state', 'queued, running, succeeded, failed or cancelled.'],
    ['COLUMN reindex_jobs.queue_job_id', 'The pg-boss job (pgboss.job.id) that dispatches this reindex.'],
    ['COLUMN reindex_jobs.total', 'Products to process in this job (re-estimated as the job goes: products written meanwhile count).'],
    ['COLUMN reindex_jobs.processed', 'Products processed so far (embedded or failed), committed together with their vectors.'],
    ['COLUMN reindex_jobs.failed', 'Products whose image could not be embedded (see errors).'],
    ['COLUMN reindex_jobs.cursor', 'Keyset cursor: the highest products.id of the last committed batch; a resumed job continues after it.'],
    [
      'COLUMN reindex_jobs.pass',
      'Pass over the catalog: 1 is the keyset walk; later passes sweep products still missing a current vector.',
    ],
    ['COLUMN reindex_jobs.errors', 'The first per-product errors, [{productId, sku, message}], capped at 100 entries.'],
    ['COLUMN reindex_jobs.error', 'Why the job failed or was not activated; NULL when neither.'],
    ['COLUMN reindex_jobs.activated', 'True when this job made its model the active one.'],
    ['COLUMN reindex_jobs.attempts', 'How many times a worker started (or resumed) the job.'],
    ['COLUMN reindex_jobs.worker_id', 'The worker holding the job; every batch commit checks it (a fence against two workers on one job).'],
    [
      'COLUMN reindex_jobs.heartbeat_at',
      'Last sign of life of the holding worker; a running job whose heartbeat is older than the lease is resumed elsewhere.',
    ],
    ['COLUMN reindex_jobs.run_started_at', 'When the current attempt started (for the rate).'],
    ['COLUMN reindex_jobs.run_processed', 'processed when the current attempt started (for the rate).'],
    ['COLUMN reindex_jobs.created_at', 'When the job was requested.'],
    ['COLUMN reindex_jobs.started_at', 'When a worker first started the job.'],
    ['COLUMN reindex_jobs.finished_at', 'When the job reached succeeded, failed or cancelled.'],
  ];
  for (const [target, text] of comments) {
    await sql`COMMENT ON ${sql.raw(target)} IS ${sql.lit(text)}`.execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE reindex_jobs`.execute(db);
}
