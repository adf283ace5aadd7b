-- 0007_disputes: chargebacks the PSP opened on captured orders (issue 11, the chargeback part).
--
-- A dispute is born at the PSP: its id is the PSP's, so every event about it (created, funds
-- withdrawn, closed, funds reinstated; in any order, duplicated) finds the one row. Its status
-- follows engine/states.py (OPEN -> WON | LOST); `unfinished` (OPEN) is recovery's input, and a
-- test checks it against the transition table. The amount is what the PSP withdrew: positive.

CREATE TABLE disputes (
    dispute_id      text COLLATE "C" NOT NULL,
    order_id        text COLLATE "C" NOT NULL,
    psp_capture_id  text COLLATE "C" NOT NULL,
    currency        text COLLATE "C" NOT NULL,
    amount_minor    bigint  NOT NULL,
    status          text    NOT NULL,
    created_at_ms   bigint  NOT NULL,
    updated_at_ms   bigint  NOT NULL,
    reason          text,
    version         bigint  NOT NULL DEFAULT 0,
    unfinished      boolean NOT NULL GENERATED ALWAYS AS (status = 'OPEN') STORED,
    CONSTRAINT disputes_pk PRIMARY KEY (dispute_id),
    CONSTRAINT disputes_order_fk FOREIGN KEY (order_id) REFERENCES payment_orders (order_id),
    CONSTRAINT disputes_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT disputes_amount_positive CHECK (amount_minor > 0),
    CONSTRAINT disputes_version_non_negative CHECK (version >= 0),
    CONSTRAINT disputes_status_known CHECK (status IN ('OPEN', 'WON', 'LOST'))
);

CREATE INDEX disputes_order_idx ON disputes (order_id, dispute_id);
CREATE INDEX disputes_unfinished_idx ON disputes (dispute_id) WHERE unfinished;
