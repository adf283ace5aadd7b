-- 0001_initial: payments, orders, the ledger, wallets, the outbox and the dedup keys.
--
-- Why the database enforces what the code already checks: the code can have bugs, an operator
-- can run SQL by hand, and a second process can race the first. So the schema holds the rules
-- that must never break (DESIGN.md section 4): unique business keys, an append-only ledger,
-- transactions balanced per currency at commit, wallets never below zero.
--
-- Conventions:
-- - Amounts are BIGINT minor units (never float, never numeric); timestamps are BIGINT epoch
--   milliseconds named *_at_ms, like the records.
-- - Identifiers are `text COLLATE "C"`: ordering and paging by id is byte order, the same as
--   Python's string order in the memory store, whatever collation the database was created with.
-- - Constraint names are stable: engine/store/postgres.py maps them to the port's key names, so
--   renaming one here means renaming it there.
-- - Custom SQLSTATEs: PE001 unbalanced ledger transaction, PE002 change to an append-only row.
-- - The hot path is plain SQL that CockroachDB and YugabyteDB also speak; only the guard
--   triggers are PL/pgSQL.

-- --- payments and orders --------------------------------------------------------------------

CREATE TABLE payments (
    payment_id      text COLLATE "C" NOT NULL,
    checkout_id     text COLLATE "C" NOT NULL,
    buyer_id        text COLLATE "C" NOT NULL,
    currency        text COLLATE "C" NOT NULL,
    amount_minor    bigint  NOT NULL,
    status          text    NOT NULL,
    created_at_ms   bigint  NOT NULL,
    updated_at_ms   bigint  NOT NULL,
    expires_at_ms   bigint  NOT NULL,
    return_url      text,
    psp_session_id  text,
    hosted_url      text,
    failure_reason  text,
    version         bigint  NOT NULL DEFAULT 0,
    -- Recovery's input: a payment whose status is not terminal (engine/states.py). A test checks
    -- this expression against the transition tables, so the two cannot drift apart.
    unfinished      boolean NOT NULL GENERATED ALWAYS AS (
                        status IN ('CREATED', 'AWAITING_PAYMENT', 'AUTHORIZED')) STORED,
    CONSTRAINT payments_pk PRIMARY KEY (payment_id),
    CONSTRAINT payments_checkout_id_uq UNIQUE (checkout_id),
    CONSTRAINT payments_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT payments_amount_positive CHECK (amount_minor > 0),
    CONSTRAINT payments_version_non_negative CHECK (version >= 0),
    CONSTRAINT payments_status_known CHECK (status IN (
        'CREATED', 'AWAITING_PAYMENT', 'AUTHORIZED', 'COMPLETED',
        'FAILED', 'EXPIRED', 'REJECTED_BY_RISK'))
);

CREATE INDEX payments_unfinished_idx ON payments (payment_id) WHERE unfinished;

CREATE TABLE payment_orders (
    order_id        text COLLATE "C" NOT NULL,
    payment_id      text COLLATE "C" NOT NULL,
    seller_id       text COLLATE "C" NOT NULL,
    currency        text COLLATE "C" NOT NULL,
    amount_minor    bigint  NOT NULL,
    status          text    NOT NULL,
    created_at_ms   bigint  NOT NULL,
    updated_at_ms   bigint  NOT NULL,
    ledger_booked   boolean NOT NULL DEFAULT false,
    wallet_booked   boolean NOT NULL DEFAULT false,
    attempts        integer NOT NULL DEFAULT 0,
    psp_capture_id  text,
    failure_reason  text,
    version         bigint  NOT NULL DEFAULT 0,
    -- Not yet terminal, or captured but not yet booked into both the ledger and the wallet.
    unfinished      boolean NOT NULL GENERATED ALWAYS AS (
                        status IN ('NOT_STARTED', 'EXECUTING')
                        OR (status = 'SUCCESS' AND NOT (ledger_booked AND wallet_booked))) STORED,
    CONSTRAINT payment_orders_pk PRIMARY KEY (order_id),
    CONSTRAINT payment_orders_payment_fk FOREIGN KEY (payment_id) REFERENCES payments (payment_id),
    CONSTRAINT payment_orders_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT payment_orders_amount_positive CHECK (amount_minor > 0),
    CONSTRAINT payment_orders_attempts_non_negative CHECK (attempts >= 0),
    CONSTRAINT payment_orders_version_non_negative CHECK (version >= 0),
    CONSTRAINT payment_orders_status_known CHECK (status IN (
        'NOT_STARTED', 'EXECUTING', 'SUCCESS', 'FAILED'))
);

CREATE INDEX payment_orders_payment_idx ON payment_orders (payment_id, order_id);
CREATE INDEX payment_orders_unfinished_idx ON payment_orders (order_id) WHERE unfinished;

-- --- the ledger ------------------------------------------------------------------------------

CREATE TABLE ledger_transactions (
    txn_id          text COLLATE "C" NOT NULL,
    kind            text COLLATE "C" NOT NULL,
    reference       text COLLATE "C" NOT NULL,
    created_at_ms   bigint NOT NULL,
    description     text   NOT NULL DEFAULT '',
    CONSTRAINT ledger_transactions_pk PRIMARY KEY (txn_id),
    CONSTRAINT ledger_transactions_kind_reference_uq UNIQUE (kind, reference)
);

-- Debits are positive, credits negative (engine/ledger.py); entry_no keeps the entries in the
-- order they were written, so a transaction reads back exactly as it was posted.
CREATE TABLE ledger_entries (
    txn_id          text COLLATE "C" NOT NULL,
    entry_no        smallint NOT NULL,
    account         text COLLATE "C" NOT NULL,
    currency        text COLLATE "C" NOT NULL,
    amount_minor    bigint   NOT NULL,
    CONSTRAINT ledger_entries_pk PRIMARY KEY (txn_id, entry_no),
    CONSTRAINT ledger_entries_txn_fk FOREIGN KEY (txn_id) REFERENCES ledger_transactions (txn_id),
    CONSTRAINT ledger_entries_entry_no_non_negative CHECK (entry_no >= 0),
    CONSTRAINT ledger_entries_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT ledger_entries_amount_non_zero CHECK (amount_minor <> 0)
);

CREATE INDEX ledger_entries_account_idx ON ledger_entries (account, txn_id, entry_no);

-- Append-only: a posted transaction is never changed or removed; a correction is a new one.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'PE002',
        MESSAGE = format('%s is append-only: %s refused', TG_TABLE_NAME, TG_OP),
        HINT = 'post a correcting transaction instead';
END;
$$;

CREATE TRIGGER ledger_transactions_append_only
    BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_no_truncate
    BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate
    BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Balanced at commit: every transaction has at least two entries and sums to zero in each
-- currency. Deferred, because a transaction and its entries are written by several statements
-- and are only whole when the database transaction commits. It fires for the transaction row
-- too, so a transaction without any entry is refused as well.
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entries_total bigint := 0;
    per_currency record;
BEGIN
    FOR per_currency IN
        SELECT currency, sum(amount_minor) AS total, count(*) AS entries
        FROM ledger_entries WHERE txn_id = NEW.txn_id GROUP BY currency ORDER BY currency
    LOOP
        IF per_currency.total <> 0 THEN
            RAISE EXCEPTION USING
                ERRCODE = 'PE001',
                MESSAGE = format('ledger transaction %s does not balance: %s off by %s minor units',
                                 NEW.txn_id, per_currency.currency, per_currency.total);
        END IF;
        entries_total := entries_total + per_currency.entries;
    END LOOP;
    IF entries_total < 2 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'PE001',
            MESSAGE = format('ledger transaction %s has %s entries; it needs at least two',
                             NEW.txn_id, entries_total);
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER ledger_transactions_balanced
    AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();
CREATE CONSTRAINT TRIGGER ledger_entries_balanced
    AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

-- --- wallets: the ledger's projection per seller and currency, updated in the same commit ----

CREATE TABLE wallets (
    merchant_id     text COLLATE "C" NOT NULL,
    currency        text COLLATE "C" NOT NULL,
    available_minor bigint NOT NULL DEFAULT 0,
    reserved_minor  bigint NOT NULL DEFAULT 0,
    CONSTRAINT wallets_pk PRIMARY KEY (merchant_id, currency),
    CONSTRAINT wallets_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT wallets_available_non_negative CHECK (available_minor >= 0),
    CONSTRAINT wallets_reserved_non_negative CHECK (reserved_minor >= 0)
);

-- --- the outbox: facts to announce, fanned out to one delivery per subscriber ----------------

CREATE TABLE outbox (
    message_id      text COLLATE "C" NOT NULL,
    -- Write order: "oldest message first" for deliveries, whatever the id format.
    seq             bigint NOT NULL GENERATED ALWAYS AS IDENTITY,
    topic           text COLLATE "C" NOT NULL,
    key             text COLLATE "C" NOT NULL,
    payload         jsonb  NOT NULL,
    created_at_ms   bigint NOT NULL,
    CONSTRAINT outbox_pk PRIMARY KEY (message_id),
    CONSTRAINT outbox_seq_uq UNIQUE (seq)
);

CREATE TABLE outbox_subscriptions (
    subscriber      text COLLATE "C" NOT NULL,
    topic           text COLLATE "C" NOT NULL,
    CONSTRAINT outbox_subscriptions_pk PRIMARY KEY (topic, subscriber)
);

-- A subscriber's pending rows are its durable cursor; an acked delivery is deleted, a dead one
-- stays (status 'dead') until it is replayed.
CREATE TABLE outbox_deliveries (
    subscriber          text COLLATE "C" NOT NULL,
    message_id          text COLLATE "C" NOT NULL,
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at_ms  bigint  NOT NULL,
    last_error          text,
    status              text    NOT NULL DEFAULT 'pending',
    dead_at_ms          bigint,
    CONSTRAINT outbox_deliveries_pk PRIMARY KEY (subscriber, message_id),
    CONSTRAINT outbox_deliveries_message_fk FOREIGN KEY (message_id) REFERENCES outbox (message_id),
    CONSTRAINT outbox_deliveries_attempts_non_negative CHECK (attempts >= 0),
    CONSTRAINT outbox_deliveries_status_known CHECK (status IN ('pending', 'dead')),
    CONSTRAINT outbox_deliveries_dead_has_time CHECK ((status = 'dead') = (dead_at_ms IS NOT NULL))
);

CREATE INDEX outbox_deliveries_due_idx
    ON outbox_deliveries (subscriber, next_attempt_at_ms) WHERE status = 'pending';
CREATE INDEX outbox_deliveries_dead_idx
    ON outbox_deliveries (dead_at_ms, message_id) WHERE status = 'dead';

-- --- inbound dedup and API idempotency --------------------------------------------------------

CREATE TABLE psp_events (
    event_id        text COLLATE "C" NOT NULL,
    kind            text   NOT NULL,
    payload         jsonb  NOT NULL,
    received_at_ms  bigint NOT NULL,
    CONSTRAINT psp_events_pk PRIMARY KEY (event_id)
);

CREATE TABLE idempotency (
    scope            text COLLATE "C" NOT NULL,
    key              text COLLATE "C" NOT NULL,
    fingerprint      text    NOT NULL,
    completed        boolean NOT NULL DEFAULT false,
    response_status  integer,
    response_body    bytea,
    response_headers jsonb,
    created_at_ms    bigint  NOT NULL,
    CONSTRAINT idempotency_pk PRIMARY KEY (scope, key),
    CONSTRAINT idempotency_completed_has_response CHECK (
        NOT completed OR (response_status IS NOT NULL AND response_body IS NOT NULL))
);

CREATE INDEX idempotency_created_idx ON idempotency (created_at_ms);
