-- edugap store, PostgreSQL.

CREATE TABLE schools (
    school_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    province TEXT NOT NULL,
    commune TEXT NOT NULL,
    level TEXT NOT NULL,
    lat DOUBLE PRECISION NOT NULL,
    lon DOUBLE PRECISION NOT NULL,
    students INTEGER NOT NULL,
    computers_required INTEGER,
    contracted_mbps DOUBLE PRECISION,
    updated_at TIMESTAMPTZ NOT NULL
);

-- Every stored report's id: the unique key makes idempotency hold across collectors.
CREATE TABLE report_ids (
    report_id TEXT PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX report_ids_received_at ON report_ids (received_at);

CREATE TABLE bandwidth (
    id BIGSERIAL PRIMARY KEY,
    report_id TEXT NOT NULL,
    school_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    measured_at TIMESTAMPTZ NOT NULL,
    download_mbps DOUBLE PRECISION,
    upload_mbps DOUBLE PRECISION,
    latency_ms DOUBLE PRECISION,
    error TEXT,
    skipped BOOLEAN NOT NULL,
    backend TEXT NOT NULL,
    bytes_used BIGINT NOT NULL
);
CREATE INDEX bandwidth_measured_at ON bandwidth (measured_at);

CREATE TABLE devices (
    school_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    inventory_at TIMESTAMPTZ,
    memory_mb BIGINT,
    cpu_cores BIGINT,
    os_name TEXT,
    os_version TEXT,
    out_of_support BOOLEAN,
    machine_kind TEXT,
    hardware_hash TEXT,
    inventory TEXT,
    PRIMARY KEY (school_id, device_id)
);

CREATE TABLE heartbeat_hours (
    school_id TEXT NOT NULL,
    hour TIMESTAMPTZ NOT NULL,
    heartbeats BIGINT NOT NULL,
    checks BIGINT NOT NULL,
    checks_ok BIGINT NOT NULL,
    PRIMARY KEY (school_id, hour)
);
CREATE INDEX heartbeat_hours_hour ON heartbeat_hours (hour);

CREATE TABLE school_reports (
    school_id TEXT PRIMARY KEY,
    last_report TIMESTAMPTZ NOT NULL
);

CREATE TABLE rejects (
    id BIGSERIAL PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload_excerpt TEXT NOT NULL
);
