-- 0004_refunds: refunds of captured orders (issue 11, the refund part).
--
-- A refund belongs to one captured order and is created at most once per creation key (the
-- API's Idempotency-Key, or the caller's own key), so a retried request never makes a second
-- refund. Its status follows engine/states.py (REQUESTED -> SUBMITTED -> SUCCEEDED | FAILED);
-- `unfinished` is recovery's input, and a test checks it against the transition table.
-- The amount is positive: a zero or negative refund would move money the wrong way.

CREATE TABLE refunds (
    refund_id       text COLLATE "C" NOT NULL,
    order_id        text COLLATE "C" NOT NULL,
    creation_key    text COLLATE "C" NOT NULL,
    currency        text COLLATE "C" NOT NULL,
    amount_minor    bigint  NOT NULL,
    status          text    NOT NULL,
    created_at_ms   bigint  NOT NULL,
    updated_at_ms   bigint  NOT NULL,
    reason          text,
    attempts        integer NOT NULL DEFAULT 0,
    psp_refund_id   text,
    failure_reason  text,
    version         bigint  NOT NULL DEFAULT 0,
    unfinished      boolean NOT NULL GENERATED ALWAYS AS (
                        status IN ('REQUESTED', 'SUBMITTED')) STORED,
    CONSTRAINT refunds_pk PRIMARY KEY (refund_id),
    CONSTRAINT refunds_order_fk FOREIGN KEY (order_id) REFERENCES payment_orders (order_id),
    CONSTRAINT refunds_creation_key_uq UNIQUE (creation_key),
    CONSTRAINT refunds_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT refunds_amount_positive CHECK (amount_minor > 0),
    CONSTRAINT refunds_attempts_non_negative CHECK (attempts >= 0),
    CONSTRAINT refunds_version_non_negative CHECK (version >= 0),
    CONSTRAINT refunds_status_known CHECK (status IN (
        'REQUESTED', 'SUBMITTED', 'SUCCEEDED', 'FAILED'))
);

CREATE INDEX refunds_order_idx ON refunds (order_id, refund_id);
CREATE INDEX refunds_unfinished_idx ON refunds (refund_id) WHERE unfinished;
