-- The HTTP API's own data: API keys (stored hashed, with a scope) and merchant webhook
-- endpoints. See engine/access.py for why a SHA-256 of a 256-bit key is the right hash.

CREATE TABLE api_keys (
    key_id         text COLLATE "C" NOT NULL,
    key_hash       text COLLATE "C" NOT NULL,
    scope          text   NOT NULL,
    label          text   NOT NULL DEFAULT '',
    created_at_ms  bigint NOT NULL,
    revoked_at_ms  bigint,
    CONSTRAINT api_keys_pk PRIMARY KEY (key_id),
    CONSTRAINT api_keys_key_hash_uq UNIQUE (key_hash),
    CONSTRAINT api_keys_hash_is_sha256 CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT api_keys_scope_known CHECK (
        scope IN ('storefront', 'admin') OR scope ~ '^merchant:[A-Za-z0-9._~-]{1,128}$')
);

CREATE TABLE webhook_endpoints (
    merchant_id    text COLLATE "C" NOT NULL,
    url            text    NOT NULL,
    secret         text    NOT NULL,
    created_at_ms  bigint  NOT NULL,
    enabled        boolean NOT NULL DEFAULT true,
    CONSTRAINT webhook_endpoints_pk PRIMARY KEY (merchant_id),
    CONSTRAINT webhook_endpoints_url_http CHECK (url ~ '^https?://' AND length(url) <= 2048)
);
