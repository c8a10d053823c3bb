-- Collectors that ran against this store, for `edugap collectors` (Mosquitto lists no sessions).
-- Each running collector keeps its row current; a clean stop or a retirement sets `state`.
-- Times are UTC seconds since the epoch, as in the other tables.
CREATE TABLE collectors (
    group_name TEXT NOT NULL,
    name TEXT NOT NULL,
    shared INTEGER NOT NULL,
    client_id_hash TEXT NOT NULL,
    broker TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    state TEXT NOT NULL,
    started_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    state_at REAL NOT NULL,
    PRIMARY KEY (group_name, name)
);
