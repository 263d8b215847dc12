-- modelplex usage store, SQLite dialect, version 2: the seed's rollups as views.
-- Latency and cost averages count successful requests only; success_rate counts every request.

CREATE VIEW model_performance_metrics AS
SELECT
    r.attributed_model                                             AS model_name,
    r.task                                                         AS task_type,
    COUNT(*)                                                       AS request_count,
    SUM(r.success)                                                 AS success_count,
    CAST(SUM(r.success) AS REAL) / COUNT(*)                        AS success_rate,
    AVG(CASE WHEN r.success = 1 THEN r.latency_ms END)             AS avg_latency_ms,
    AVG(CASE WHEN r.success = 1 THEN r.cost_usd END)               AS avg_cost_usd,
    AVG(COALESCE(f.score, r.quality_score))                        AS avg_quality_score,
    COUNT(COALESCE(f.score, r.quality_score))                      AS quality_samples,
    SUM(r.input_tokens + r.output_tokens)                          AS tokens_used,
    SUM(r.cost_usd)                                                AS total_cost_usd,
    MIN(r.ts)                                                      AS first_ts,
    MAX(r.ts)                                                      AS last_ts
FROM usage_records AS r
LEFT JOIN usage_feedback AS f ON f.request_id = r.request_id
WHERE r.attributed_model IS NOT NULL
GROUP BY r.attributed_model, r.task;

CREATE VIEW model_cost_tracking AS
SELECT
    date(r.ts, 'unixepoch')                                        AS day,
    r.attributed_model                                             AS model_name,
    r.attributed_provider                                          AS provider,
    COUNT(*)                                                       AS request_count,
    SUM(r.success)                                                 AS success_count,
    SUM(r.input_tokens)                                            AS input_tokens,
    SUM(r.output_tokens)                                           AS output_tokens,
    SUM(r.cached_tokens)                                           AS cached_tokens,
    SUM(r.input_tokens + r.output_tokens)                          AS total_tokens,
    SUM(r.cost_usd)                                                AS total_cost_usd,
    SUM(r.cost_usd) / COUNT(*)                                     AS avg_cost_per_request
FROM usage_records AS r
GROUP BY date(r.ts, 'unixepoch'), r.attributed_model, r.attributed_provider;
