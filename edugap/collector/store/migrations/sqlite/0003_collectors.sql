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

-- Each group's shared-subscription name ($share/<share_name>/...): the group name and a random
-- part. Mosquitto's acl_file lets every account subscribe to any filter (read access is only
-- checked at delivery), and a school subscribed under the group's name would be handed its
-- share of the reports, which the ACL then withholds from it: they would be lost. A name no
-- school can guess keeps them out.
CREATE TABLE collector_groups (
    group_name TEXT PRIMARY KEY,
    share_name TEXT NOT NULL,
    created_at REAL NOT NULL
);
