-- Report ids keyed by when the report was measured (as its agent sent it), then school and id.
-- Reports arrive in about the order they were measured, so new keys go to the end of the index
-- and a redelivery's lookup lands in its recent pages: the pages a batch touches stay few and
-- in memory however many ids the window holds. Keyed on the id first (0002), every id went to
-- a random page of an index as large as the window, and writes slowed as it grew.
-- A redelivery repeats the report's measured_at, so it still finds its key; the ids stored
-- before this migration stay in report_ids_v2, checked as well until they are pruned.
ALTER TABLE report_ids RENAME TO report_ids_v2;
ALTER INDEX report_ids_pkey RENAME TO report_ids_v2_pkey;
ALTER INDEX report_ids_received_at RENAME TO report_ids_v2_received_at;
CREATE TABLE report_ids (
    measured_at TIMESTAMPTZ NOT NULL,
    school_id TEXT NOT NULL,
    report_id TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (measured_at, school_id, report_id)
);
-- pruning goes by receipt, as before: an id is kept for the window after it arrived
CREATE INDEX report_ids_receipt ON report_ids (received_at);
