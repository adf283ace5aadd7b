-- 0008_reconciliation: reconciliation runs and their items (issue 12).
--
-- A run is one settlement file matched against the ledger. Its SHA-256 is unique, so a
-- re-upload of the same file finds the earlier run instead of making a second one. The summary
-- holds the counts and the money (currency -> minor units) per class. An item is one line (or
-- one missing movement) that needs attention or was repaired: auto_fixed items are stored
-- resolved with their repair as the note; manual_review and investigate items are open until
-- a person resolves them (open -> resolved, the only transition).

CREATE TABLE recon_runs (
    run_id          text COLLATE "C" NOT NULL,
    file_hash       text COLLATE "C" NOT NULL,
    format          text    NOT NULL,
    batch           text,
    status          text    NOT NULL,
    created_at_ms   bigint  NOT NULL,
    lines           integer NOT NULL,
    summary         jsonb   NOT NULL,
    CONSTRAINT recon_runs_pk PRIMARY KEY (run_id),
    CONSTRAINT recon_runs_file_hash_uq UNIQUE (file_hash),
    CONSTRAINT recon_runs_file_hash_hex CHECK (file_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT recon_runs_format_known CHECK (format IN ('stripe', 'adyen', 'camt053')),
    CONSTRAINT recon_runs_status_known CHECK (status IN ('clean', 'needs_review')),
    CONSTRAINT recon_runs_lines_non_negative CHECK (lines >= 0)
);

CREATE TABLE recon_items (
    item_id           text COLLATE "C" NOT NULL,
    run_id            text COLLATE "C" NOT NULL,
    seq               integer NOT NULL,
    class             text    NOT NULL,
    reason            text    NOT NULL,
    action            text    NOT NULL,
    reference         text    NOT NULL,
    line_number       integer,
    expected_currency text,
    expected_minor    bigint,
    found_currency    text,
    found_minor       bigint,
    detail            text    NOT NULL DEFAULT '',
    status            text    NOT NULL,
    created_at_ms     bigint  NOT NULL,
    resolution_note   text,
    resolved_at_ms    bigint,
    CONSTRAINT recon_items_pk PRIMARY KEY (item_id),
    CONSTRAINT recon_items_run_fk FOREIGN KEY (run_id) REFERENCES recon_runs (run_id),
    CONSTRAINT recon_items_run_seq_uq UNIQUE (run_id, seq),
    CONSTRAINT recon_items_class_known CHECK (
        class IN ('auto_fixed', 'manual_review', 'investigate')),
    CONSTRAINT recon_items_status_known CHECK (status IN ('open', 'resolved')),
    CONSTRAINT recon_items_resolved_has_time CHECK (
        (status = 'resolved') = (resolved_at_ms IS NOT NULL)),
    CONSTRAINT recon_items_expected_pair CHECK (
        (expected_currency IS NULL) = (expected_minor IS NULL)),
    CONSTRAINT recon_items_found_pair CHECK ((found_currency IS NULL) = (found_minor IS NULL))
);

CREATE INDEX recon_items_status_idx ON recon_items (status, class, item_id);
-- Reconciliation asks whether an earlier run already named a reference (flagged once).
CREATE INDEX recon_items_reference_idx ON recon_items (reference, item_id);
