-- modelplex usage store, SQLite dialect, version 1: records, their attempts, feedback.
-- Times are epoch seconds (REAL, UTC); booleans are 0/1; tags are JSON text.
-- attributed_model/attributed_provider: the model that served the request, or for a request that
-- nothing served, the last model actually called (see docs/accounting.md).

CREATE TABLE usage_records (
    request_id          TEXT PRIMARY KEY,
    ts                  REAL NOT NULL,
    kind                TEXT NOT NULL DEFAULT 'chat',
    task                TEXT,
    strategy            TEXT,
    experiment_arm      TEXT,
    user_id             TEXT,
    api_key_id          TEXT,
    tags                TEXT NOT NULL DEFAULT '[]',
    model               TEXT,
    provider            TEXT,
    attributed_model    TEXT,
    attributed_provider TEXT,
    attempt_count       INTEGER NOT NULL DEFAULT 0,
    fallback_used       INTEGER NOT NULL DEFAULT 0,
    input_tokens        INTEGER NOT NULL DEFAULT 0,
    output_tokens       INTEGER NOT NULL DEFAULT 0,
    cached_tokens       INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens  INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens    INTEGER NOT NULL DEFAULT 0,
    cost_usd            REAL NOT NULL DEFAULT 0,
    provider_cost_usd   REAL,
    usage_estimated     INTEGER NOT NULL DEFAULT 0,
    latency_ms          REAL NOT NULL DEFAULT 0,
    ttft_ms             REAL,
    success             INTEGER NOT NULL DEFAULT 1,
    error_type          TEXT,
    quality_score       REAL,
    selection_reason    TEXT NOT NULL DEFAULT ''
);

CREATE INDEX ix_usage_records_ts ON usage_records (ts);
CREATE INDEX ix_usage_records_user_ts ON usage_records (user_id, ts);
CREATE INDEX ix_usage_records_key_ts ON usage_records (api_key_id, ts);

-- Small rows keyed by request id: WITHOUT ROWID keeps each row in its primary-key b-tree only, one
-- random-key insert per row instead of two (table + unique index).
CREATE TABLE usage_attempts (
    request_id  TEXT NOT NULL REFERENCES usage_records (request_id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    target      TEXT NOT NULL,
    provider    TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    error_type  TEXT,
    status_code INTEGER,
    latency_ms  REAL NOT NULL DEFAULT 0,
    retry       INTEGER NOT NULL DEFAULT 0,
    detail      TEXT,
    PRIMARY KEY (request_id, idx)
) WITHOUT ROWID;

-- Feedback may arrive before its record is written (it is queued and journaled independently),
-- so it lives in its own table; the latest score for a request wins.
CREATE TABLE usage_feedback (
    request_id TEXT PRIMARY KEY,
    score      REAL NOT NULL,
    comment    TEXT,
    ts         REAL NOT NULL
) WITHOUT ROWID;
