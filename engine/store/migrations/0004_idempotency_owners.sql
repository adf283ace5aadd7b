-- Idempotency claims that die with their process (issue 14): a claim records its owner, the
-- incarnation of the process that runs the request, and each live process holds a lease it
-- renews every heartbeat. A claim whose owner's lease has lapsed (the process was killed) is
-- taken over at once by the next request with the same key, instead of after the in-flight
-- timeout. Claims written before this migration have no owner and keep the timeout.
ALTER TABLE idempotency ADD COLUMN owner text COLLATE "C";

CREATE TABLE process_leases (
    incarnation     text COLLATE "C" NOT NULL,
    lease_until_ms  bigint NOT NULL,
    CONSTRAINT process_leases_pk PRIMARY KEY (incarnation)
);
