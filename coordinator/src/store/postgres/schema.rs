//! The PostgreSQL schema and its versioned migrations, run at start-up.
//!
//! Each migration runs once, in its own transaction, in order; `schema_migrations` records
//! which ran. Concurrent coordinators starting on one database serialise on an advisory lock,
//! so exactly one applies each migration. A database whose schema is newer than this
//! coordinator knows is refused: an older coordinator must not write to a layout it does not
//! understand.

use deadpool_postgres::Object;

use super::PgError;

/// The migrations, in order; migration `n` (from 1) is `MIGRATIONS[n - 1]`. Never edit one
/// that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: sagas with their lease, events by round, the registry, live instances.
    r#"
    CREATE TABLE instances (
        id          TEXT PRIMARY KEY,
        started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
        expires_at  TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE sagas (
        id              TEXT PRIMARY KEY,
        workflow        TEXT NOT NULL,
        state           TEXT NOT NULL,
        created_at      BIGINT NOT NULL,
        updated_at      BIGINT NOT NULL,
        idempotency_key TEXT UNIQUE,
        business_key    TEXT,
        owner           TEXT,
        epoch           BIGINT NOT NULL DEFAULT 1,
        active          BOOLEAN NOT NULL,
        finished_at     BIGINT,
        snapshot        BYTEA,
        snapshot_seq    BIGINT
    );
    CREATE INDEX sagas_active_owner ON sagas (owner) WHERE active;
    CREATE INDEX sagas_finished ON sagas (finished_at) WHERE NOT active;
    CREATE INDEX sagas_state ON sagas (state, id);
    CREATE INDEX sagas_workflow ON sagas (workflow, id);
    CREATE INDEX sagas_business_key ON sagas (business_key) WHERE business_key IS NOT NULL;
    CREATE TABLE events (
        saga_id TEXT NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
        seq     BIGINT NOT NULL,
        record  BYTEA NOT NULL,
        PRIMARY KEY (saga_id, seq)
    );
    CREATE TABLE participants (name TEXT PRIMARY KEY, spec BYTEA NOT NULL);
    CREATE TABLE workflows (
        name    TEXT NOT NULL,
        version INT NOT NULL,
        spec    BYTEA NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE workflow_files (name TEXT PRIMARY KEY, spec BYTEA NOT NULL);
    CREATE TABLE registry_generation (id INT PRIMARY KEY, generation BIGINT NOT NULL);
    INSERT INTO registry_generation (id, generation) VALUES (1, 0);
    "#,
    // 2: cheaper writes: appends without a foreign-key check (a lock on the saga's row for
    // every event; the retention sweep deletes a saga's events with it), room in the sagas
    // table's pages for summary updates that change no indexed column to stay on their page
    // (HOT), and no index on state or workflow.
    r#"
    ALTER TABLE events DROP CONSTRAINT IF EXISTS events_saga_id_fkey;
    ALTER TABLE sagas SET (fillfactor = 80);
    -- Every state change of every saga updated these two (measured: two thirds of the
    -- database's time under load); lists filtered by state or workflow read the sagas in
    -- flight through sagas_active_owner, or the rest in id order.
    DROP INDEX IF EXISTS sagas_state;
    DROP INDEX IF EXISTS sagas_workflow;
    "#,
];

/// The schema version this coordinator writes.
pub(super) const LATEST: i32 = MIGRATIONS.len() as i32;

/// Key of the advisory lock migrations run under (any constant shared by all coordinators).
const MIGRATION_LOCK: i64 = 0x5a6a_c00d;

/// Brings the schema to [`LATEST`]; refuses a newer one.
pub(super) async fn migrate(client: &mut Object) -> Result<(), PgError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = apply(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result?;
    unlocked?;
    Ok(())
}

async fn apply(client: &mut Object) -> Result<(), PgError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    INT PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await?;
    let current: i32 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    if current > LATEST {
        return Err(PgError::SchemaTooNew {
            found: current,
            known: LATEST,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i32 + 1;
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, "database schema migrated");
    }
    Ok(())
}
