-- 0006_payouts: seller payouts, payout schedules and the payout provider's events (issue 11).
--
-- A payout takes money from one merchant's wallet in one currency and is created at most once
-- per creation key (the API's Idempotency-Key namespaced by the caller, or the schedule's
-- period), so a retried request or a second look of the scheduler never pays twice. Its
-- status follows engine/states.py (REQUESTED -> FUNDS_RESERVED -> SUBMITTED -> PAID | FAILED,
-- PAID -> RETURNED); `in_flight` (money reserved, fate unknown) is recovery's input.

CREATE TABLE payouts (
    payout_id       text COLLATE "C" NOT NULL,
    merchant_id     text COLLATE "C" NOT NULL,
    creation_key    text COLLATE "C" NOT NULL,
    currency        text COLLATE "C" NOT NULL,
    amount_minor    bigint  NOT NULL,
    status          text    NOT NULL,
    trigger         text    NOT NULL,
    created_at_ms   bigint  NOT NULL,
    updated_at_ms   bigint  NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    provider_ref    text,
    failure_reason  text,
    version         bigint  NOT NULL DEFAULT 0,
    in_flight       boolean NOT NULL GENERATED ALWAYS AS (
                        status IN ('REQUESTED', 'FUNDS_RESERVED', 'SUBMITTED')) STORED,
    CONSTRAINT payouts_pk PRIMARY KEY (payout_id),
    CONSTRAINT payouts_creation_key_uq UNIQUE (creation_key),
    CONSTRAINT payouts_currency_iso CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT payouts_amount_positive CHECK (amount_minor > 0),
    CONSTRAINT payouts_attempts_non_negative CHECK (attempts >= 0),
    CONSTRAINT payouts_version_non_negative CHECK (version >= 0),
    CONSTRAINT payouts_trigger_known CHECK (trigger IN ('manual', 'scheduled')),
    CONSTRAINT payouts_status_known CHECK (status IN (
        'REQUESTED', 'FUNDS_RESERVED', 'SUBMITTED', 'PAID', 'FAILED', 'RETURNED'))
);

CREATE INDEX payouts_merchant_idx ON payouts (merchant_id, payout_id);
CREATE INDEX payouts_in_flight_idx ON payouts (payout_id) WHERE in_flight;

-- One schedule per merchant; `minimums` maps a currency to its minimum in minor units.
CREATE TABLE payout_schedules (
    merchant_id     text COLLATE "C" NOT NULL,
    interval        text    NOT NULL,
    delay_days      integer NOT NULL DEFAULT 0,
    minimums        jsonb   NOT NULL DEFAULT '{}'::jsonb,
    updated_at_ms   bigint  NOT NULL,
    CONSTRAINT payout_schedules_pk PRIMARY KEY (merchant_id),
    CONSTRAINT payout_schedules_interval_known CHECK (interval IN ('manual', 'daily', 'weekly')),
    CONSTRAINT payout_schedules_delay_range CHECK (delay_days BETWEEN 0 AND 365)
);

-- The payout provider's notices, kept so a duplicate is recognised by its event id (apart
-- from psp_events: another provider, another id space).
CREATE TABLE payout_events (
    event_id        text COLLATE "C" NOT NULL,
    kind            text   NOT NULL,
    payout_id       text COLLATE "C" NOT NULL,
    received_at_ms  bigint NOT NULL,
    CONSTRAINT payout_events_pk PRIMARY KEY (event_id)
);
