-- Report ids are unique per school, not globally: a school reusing another school's report id
-- must not make the other's report a duplicate. The global ids of earlier versions stay in
-- report_ids_v1 (checked as well, pruned like the new ones) so that a report stored before
-- this migration and redelivered after it is still a duplicate.
ALTER TABLE report_ids RENAME TO report_ids_v1;
DROP INDEX report_ids_received_at;
CREATE INDEX report_ids_v1_received_at ON report_ids_v1 (received_at);
-- The id leads the key: a batch's ids are looked up with report_id IN (...), and one id
-- rarely belongs to more than one school.
CREATE TABLE report_ids (
    report_id TEXT NOT NULL,
    school_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (report_id, school_id)
) WITHOUT ROWID;
CREATE INDEX report_ids_received_at ON report_ids (received_at);

-- The newest evidence about each device's agent clock: received_at minus the measured_at the
-- agent sent (seconds), whether that is off by more than ingest tolerates, and when it came.
ALTER TABLE devices ADD COLUMN clock_offset_s REAL;
ALTER TABLE devices ADD COLUMN clock_off INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN clock_at REAL;

-- Repair what earlier versions let in. A time outside 1900..2100 (year 0 in UTC made every
-- snapshot fail) becomes the edge of that range; a raw row with such a time goes. Sums that
-- overflowed turned REAL (1.08e19); they saturate at 2^48 as the writer now does.
UPDATE devices SET last_seen = max(min(last_seen, 4102444799), -2208988800)
    WHERE last_seen < -2208988800 OR last_seen >= 4102444800;
UPDATE devices SET inventory_at = max(min(inventory_at, 4102444799), -2208988800)
    WHERE inventory_at < -2208988800 OR inventory_at >= 4102444800;
UPDATE school_reports SET last_report = max(min(last_report, 4102444799), -2208988800)
    WHERE last_report < -2208988800 OR last_report >= 4102444800;
DELETE FROM bandwidth WHERE measured_at < -2208988800 OR measured_at >= 4102444800;
DELETE FROM heartbeat_hours WHERE hour < -2208988800 OR hour >= 4102444800;
UPDATE heartbeat_hours SET
    heartbeats = CAST(min(heartbeats, 281474976710656) AS INTEGER),
    checks = CAST(min(checks, 281474976710656) AS INTEGER),
    checks_ok = CAST(min(checks_ok, 281474976710656) AS INTEGER)
    WHERE heartbeats > 281474976710656 OR checks > 281474976710656
    OR checks_ok > 281474976710656 OR typeof(heartbeats) != 'integer'
    OR typeof(checks) != 'integer' OR typeof(checks_ok) != 'integer';
