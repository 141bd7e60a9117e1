-- The results database: every benchmark run with --db lands here, keyed by run id.
-- Times are Unix microseconds (requests) or milliseconds (samples, runs).

CREATE TABLE IF NOT EXISTS runs (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,          -- sweep, load, replay, chaos, demo
    command       TEXT NOT NULL,          -- the full command line
    revision      TEXT NOT NULL,
    host          TEXT NOT NULL,
    cores         INTEGER NOT NULL,
    seed          INTEGER,
    started_ms    INTEGER NOT NULL,
    ended_ms      INTEGER NOT NULL,
    started_at    TEXT NOT NULL,          -- RFC 3339
    verdict       TEXT,                   -- PASS, FAIL, or NULL without --assert
    volley_version TEXT NOT NULL
);

-- One value per named measure of a run (what --assert and compare read).
CREATE TABLE IF NOT EXISTS run_metrics (
    run_id  INTEGER NOT NULL REFERENCES runs(id),
    name    TEXT NOT NULL,
    value   REAL NOT NULL,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE IF NOT EXISTS assertions (
    run_id    INTEGER NOT NULL REFERENCES runs(id),
    expr      TEXT NOT NULL,
    measured  REAL,
    passed    INTEGER NOT NULL
);

-- The performance_test.csv columns, one row per measured point.
CREATE TABLE IF NOT EXISTS points (
    run_id          INTEGER NOT NULL REFERENCES runs(id),
    point           INTEGER NOT NULL,
    Mode TEXT, OpType TEXT, nWorkers INTEGER, nTasks INTEGER, TotalTime REAL,
    Scaling TEXT, Store TEXT, TaskMs INTEGER, SlotsPerWorker INTEGER, Repeat INTEGER,
    Throughput REAL, LatencyP50Ms REAL, LatencyP99Ms REAL, OverheadMs REAL, Efficiency REAL,
    FailedTasks INTEGER, Timestamp TEXT, GitRevision TEXT, Host TEXT, Cores INTEGER,
    PRIMARY KEY (run_id, point)
);

-- One row per task or invocation.
CREATE TABLE IF NOT EXISTS requests (
    run_id        INTEGER NOT NULL REFERENCES runs(id),
    point         INTEGER,                -- the point of a sweep, NULL otherwise
    task_id       INTEGER,
    function      TEXT,
    state         TEXT NOT NULL,          -- completed, failed, refused, unfinished
    intended_us   INTEGER,                -- open loop: when it was due to leave
    submitted_us  INTEGER,
    dispatched_us INTEGER,
    completed_us  INTEGER,
    latency_us    INTEGER,                -- open loop: from intended send; closed: from submit
    wait_us       INTEGER,
    run_us        INTEGER,
    worker        TEXT,
    attempts      INTEGER,
    error         TEXT
);
CREATE INDEX IF NOT EXISTS requests_by_time ON requests (run_id, completed_us);

-- Replay: one row per trace minute.
CREATE TABLE IF NOT EXISTS minutes (
    run_id     INTEGER NOT NULL REFERENCES runs(id),
    minute     INTEGER NOT NULL,
    target     INTEGER, issued INTEGER, completed INTEGER, failed INTEGER, late INTEGER,
    PRIMARY KEY (run_id, minute)
);

CREATE TABLE IF NOT EXISTS process_samples (
    run_id     INTEGER NOT NULL REFERENCES runs(id),
    unix_ms    INTEGER NOT NULL,
    role       TEXT NOT NULL,             -- dispatcher, worker, redis, client
    pid        INTEGER NOT NULL,
    cpu_ms     REAL NOT NULL,             -- CPU time so far (user + system)
    rss_bytes  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS process_samples_by_time ON process_samples (run_id, unix_ms);

-- Filled by the elastic pool's cold-start study: one row per cold task, its breakdown.
CREATE TABLE IF NOT EXISTS coldstarts (
    run_id         INTEGER NOT NULL REFERENCES runs(id),
    task_id        INTEGER NOT NULL,
    function       TEXT,
    decision_us    INTEGER, spawn_us INTEGER, ready_us INTEGER, init_us INTEGER,
    registered_us  INTEGER, dispatched_us INTEGER, finished_us INTEGER,
    -- Since schema 2: the runtimes scenario's case (python/fresh/empty), and when the
    -- instance's runtime began and was up (= ready_us for a built-in).
    variant        TEXT, runtime_began_us INTEGER, runtime_up_us INTEGER
);
CREATE INDEX IF NOT EXISTS coldstarts_by_run ON coldstarts (run_id, task_id);
