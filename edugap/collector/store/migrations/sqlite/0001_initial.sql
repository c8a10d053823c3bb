-- edugap store, SQLite. Times are UTC seconds since the epoch (REAL), so comparisons are exact
-- and cheap; read them with datetime(x, 'unixepoch').

CREATE TABLE schools (
    school_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    province TEXT NOT NULL,
    commune TEXT NOT NULL,
    level TEXT NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    students INTEGER NOT NULL,
    computers_required INTEGER,
    contracted_mbps REAL,
    updated_at REAL NOT NULL
);

-- Every stored report's id: a redelivered id is a duplicate. Pruned by received_at.
CREATE TABLE report_ids (
    report_id TEXT PRIMARY KEY,
    received_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX report_ids_received_at ON report_ids (received_at);

-- Every speed test, raw.
CREATE TABLE bandwidth (
    id INTEGER PRIMARY KEY,
    report_id TEXT NOT NULL,
    school_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    measured_at REAL NOT NULL,
    download_mbps REAL,
    upload_mbps REAL,
    latency_ms REAL,
    error TEXT,
    skipped INTEGER NOT NULL,
    backend TEXT NOT NULL,
    bytes_used INTEGER NOT NULL
);
CREATE INDEX bandwidth_measured_at ON bandwidth (measured_at);

-- One row per device of a school: when last heard from, and its newest inventory.
CREATE TABLE devices (
    school_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    last_seen REAL NOT NULL,
    inventory_at REAL,
    memory_mb INTEGER,
    cpu_cores INTEGER,
    os_name TEXT,
    os_version TEXT,
    out_of_support INTEGER,
    machine_kind TEXT,
    hardware_hash TEXT,
    inventory TEXT,
    PRIMARY KEY (school_id, device_id)
) WITHOUT ROWID;

-- Heartbeats summed per school and UTC hour (hour = start of the hour, epoch seconds).
CREATE TABLE heartbeat_hours (
    school_id TEXT NOT NULL,
    hour INTEGER NOT NULL,
    heartbeats INTEGER NOT NULL,
    checks INTEGER NOT NULL,
    checks_ok INTEGER NOT NULL,
    PRIMARY KEY (school_id, hour)
) WITHOUT ROWID;
CREATE INDEX heartbeat_hours_hour ON heartbeat_hours (hour);

-- Newest measured_at of any stored report per school (registered or not).
CREATE TABLE school_reports (
    school_id TEXT PRIMARY KEY,
    last_report REAL NOT NULL
) WITHOUT ROWID;

-- Rejected messages, bounded to the newest few thousand.
CREATE TABLE rejects (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload_excerpt TEXT NOT NULL
);
