-- Several engine processes on one database (issue 14): ownership leases.
--
-- The key space of the engine's entities is cut into a fixed number of partitions (a stable
-- hash of the entity's family key, engine/leases.py). A partition is driven by the process that
-- holds its lease: `owner` is that process's incarnation id, `expires_at` is on the database's
-- clock (now()), and `epoch` grows by one at every takeover, so a paused old owner whose lease
-- was taken cannot commit: every unit of work of an owned entity checks (owner, epoch) in its
-- own transaction (engine/store/pg_leases.py). Rows are never deleted: a partition with no
-- owner has owner NULL.
CREATE TABLE partition_leases (
    partition   integer NOT NULL,
    owner       text COLLATE "C",
    epoch       bigint NOT NULL DEFAULT 0,
    expires_at  timestamptz NOT NULL DEFAULT '-infinity',
    CONSTRAINT partition_leases_pk PRIMARY KEY (partition),
    CONSTRAINT partition_leases_partition_ck CHECK (partition >= 0),
    CONSTRAINT partition_leases_epoch_ck CHECK (epoch >= 0)
);

-- The live processes of the engine, each with the URL where it serves the API (a request
-- for a partition another process owns is forwarded there) and a membership that lapses
-- like a lease: the fair share of partitions is their number divided by the live members.
CREATE TABLE lease_members (
    incarnation text COLLATE "C" NOT NULL,
    url         text NOT NULL,
    expires_at  timestamptz NOT NULL,
    CONSTRAINT lease_members_pk PRIMARY KEY (incarnation)
);
