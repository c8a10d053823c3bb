-- Report ids are unique per school, not globally: a school reusing another school's report id
-- must not make the other's report a duplicate. The global ids of earlier versions stay in
-- report_ids_v1 (checked as well, pruned like the new ones) so that a report stored before
-- this migration and redelivered after it is still a duplicate.
ALTER TABLE report_ids RENAME TO report_ids_v1;
ALTER INDEX report_ids_pkey RENAME TO report_ids_v1_pkey;
ALTER INDEX report_ids_received_at RENAME TO report_ids_v1_received_at;
-- The id leads the key: a batch's ids are looked up with report_id IN (...), and one id
-- rarely belongs to more than one school.
CREATE TABLE report_ids (
    report_id TEXT NOT NULL,
    school_id TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (report_id, school_id)
);
CREATE INDEX report_ids_received_at ON report_ids (received_at);

-- The newest evidence about each device's agent clock: received_at minus the measured_at the
-- agent sent (seconds), whether that is off by more than ingest tolerates, and when it came.
ALTER TABLE devices
    ADD COLUMN clock_offset_s DOUBLE PRECISION,
    ADD COLUMN clock_off BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN clock_at TIMESTAMPTZ;

-- Unlike SQLite, earlier versions could not store a time outside 1900..2100 or an overflowing
-- sum here (the whole batch failed instead), so there is nothing to repair.
