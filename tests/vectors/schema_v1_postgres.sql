-- The PostgreSQL schema (version 1) as first shipped, kept to prove the generated schema matches.
-- Frozen: never edit; tests/test_schema.py compares a new vault's structure with this.
-- The backend wrote every column type TEXT and rewrote it to TEXT COLLATE "C" before
-- running the script; this is the script as it ran.
CREATE TABLE meta (
    key TEXT COLLATE "C" PRIMARY KEY,
    value TEXT COLLATE "C" NOT NULL
);

CREATE TABLE keys (
    key_id BYTEA PRIMARY KEY,
    kind TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    wrapped BYTEA,
    wrapped_by BYTEA NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    state_changed_at TEXT COLLATE "C" NOT NULL,
    invocations BIGINT NOT NULL DEFAULT 0,
    max_invocations BIGINT NOT NULL
);
CREATE INDEX keys_kind ON keys(kind, state);
CREATE INDEX keys_wrapped_by ON keys(wrapped_by);

CREATE TABLE subjects (
    pseudonym TEXT COLLATE "C" PRIMARY KEY,
    subject_ref BYTEA UNIQUE,
    key_id BYTEA NOT NULL REFERENCES keys(key_id),
    created_at TEXT COLLATE "C" NOT NULL,
    erased_at TEXT COLLATE "C",
    minor_until BYTEA,
    restricted_to TEXT COLLATE "C",
    hold_until TEXT COLLATE "C",
    ended_at TEXT COLLATE "C"
);

CREATE TABLE records (
    record_id TEXT COLLATE "C" PRIMARY KEY,
    record_type TEXT COLLATE "C" NOT NULL,
    pseudonym TEXT COLLATE "C" NOT NULL REFERENCES subjects(pseudonym),
    key_id BYTEA NOT NULL,
    version BIGINT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    clear TEXT COLLATE "C" NOT NULL,
    sealed BYTEA NOT NULL,
    erased INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX records_subject ON records(pseudonym);
CREATE INDEX records_key ON records(key_id);

CREATE TABLE blind_index (
    token BYTEA NOT NULL,
    record_id TEXT COLLATE "C" NOT NULL,
    field TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (token, record_id, field)
);
CREATE INDEX blind_index_record ON blind_index(record_id);

CREATE TABLE consents (
    consent_id TEXT COLLATE "C" PRIMARY KEY,
    pseudonym TEXT COLLATE "C" NOT NULL,
    purpose TEXT COLLATE "C" NOT NULL,
    event TEXT COLLATE "C" NOT NULL CHECK (event IN ('grant', 'withdraw')),
    at TEXT COLLATE "C" NOT NULL,
    actor TEXT COLLATE "C" NOT NULL,
    channel TEXT COLLATE "C" NOT NULL,
    evidence TEXT COLLATE "C" NOT NULL,
    notice_version TEXT COLLATE "C",
    fields TEXT COLLATE "C" NOT NULL,
    separate INTEGER NOT NULL,
    given_by TEXT COLLATE "C" NOT NULL,
    expires_at TEXT COLLATE "C",
    position BIGINT NOT NULL
);
CREATE INDEX consents_subject ON consents(pseudonym, purpose, position);

CREATE TABLE holds (
    hold_id TEXT COLLATE "C" PRIMARY KEY,
    pseudonym TEXT COLLATE "C" NOT NULL,
    reason TEXT COLLATE "C" NOT NULL,
    starts_at TEXT COLLATE "C" NOT NULL,
    ends_at TEXT COLLATE "C" NOT NULL,
    actor TEXT COLLATE "C" NOT NULL,
    released_at TEXT COLLATE "C"
);
CREATE INDEX holds_subject ON holds(pseudonym);

CREATE TABLE rights_requests (
    request_id TEXT COLLATE "C" PRIMARY KEY,
    pseudonym TEXT COLLATE "C",
    kind TEXT COLLATE "C" NOT NULL,
    received_at TEXT COLLATE "C" NOT NULL,
    due_at TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    outcome TEXT COLLATE "C" NOT NULL DEFAULT '',
    closed_at TEXT COLLATE "C",
    actor TEXT COLLATE "C" NOT NULL
);

CREATE TABLE disclosures (
    disclosure_id TEXT COLLATE "C" PRIMARY KEY,
    pseudonym TEXT COLLATE "C" NOT NULL,
    recipient TEXT COLLATE "C" NOT NULL,
    purpose TEXT COLLATE "C" NOT NULL,
    fields TEXT COLLATE "C" NOT NULL,
    at TEXT COLLATE "C" NOT NULL,
    actor TEXT COLLATE "C" NOT NULL
);
CREATE INDEX disclosures_subject ON disclosures(pseudonym);

CREATE TABLE jobs (
    job_id TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    params TEXT COLLATE "C" NOT NULL,
    cursor TEXT COLLATE "C" NOT NULL DEFAULT '',
    done BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL DEFAULT 0,
    started_at TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL
);

CREATE TABLE incidents (
    incident_id TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('leak', 'tamper', 'loss')),
    status TEXT COLLATE "C" NOT NULL CHECK (status IN ('suspected', 'confirmed', 'closed')),
    detected_at TEXT COLLATE "C" NOT NULL,
    aware_at TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    document TEXT COLLATE "C" NOT NULL,
    affected BYTEA
);
CREATE INDEX incidents_status ON incidents(status, detected_at);

CREATE TABLE outbox (
    notification_id TEXT COLLATE "C" PRIMARY KEY,
    incident_id TEXT COLLATE "C" NOT NULL REFERENCES incidents(incident_id),
    hook TEXT COLLATE "C" NOT NULL,
    audience TEXT COLLATE "C" NOT NULL,
    subject TEXT COLLATE "C",
    payload TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL CHECK (state IN ('pending', 'delivering', 'delivered', 'dead')),
    attempts BIGINT NOT NULL DEFAULT 0,
    claims BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT COLLATE "C" NOT NULL,
    last_error TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at TEXT COLLATE "C" NOT NULL,
    delivered_at TEXT COLLATE "C"
);
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
CREATE INDEX outbox_incident ON outbox(incident_id);

CREATE TABLE audit_entries (
    seq BIGINT PRIMARY KEY,
    entry BYTEA NOT NULL,
    leaf_hash BYTEA NOT NULL
);
CREATE TABLE audit_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL,
    frontier BYTEA NOT NULL
);
CREATE TABLE audit_checkpoints (
    size BIGINT PRIMARY KEY,
    root BYTEA NOT NULL,
    note TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL
);

-- Append-only tables: row triggers refuse UPDATE and DELETE, a statement trigger TRUNCATE.
CREATE FUNCTION ownervault_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = TG_ARGV[0], ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER consents_no_update BEFORE UPDATE ON consents FOR EACH ROW
    EXECUTE FUNCTION ownervault_append_only('the consent ledger is append-only');
CREATE TRIGGER consents_no_delete BEFORE DELETE ON consents FOR EACH ROW
    EXECUTE FUNCTION ownervault_append_only('the consent ledger is append-only');
CREATE TRIGGER consents_no_truncate BEFORE TRUNCATE ON consents FOR EACH STATEMENT
    EXECUTE FUNCTION ownervault_append_only('the consent ledger is append-only');
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints FOR EACH ROW
    EXECUTE FUNCTION ownervault_append_only('checkpoints are append-only');
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints FOR EACH ROW
    EXECUTE FUNCTION ownervault_append_only('checkpoints are append-only');
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ownervault_append_only('checkpoints are append-only');
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries FOR EACH ROW
    EXECUTE FUNCTION ownervault_append_only('audit entries are append-only');
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries FOR EACH ROW
    EXECUTE FUNCTION ownervault_append_only('audit entries are append-only');
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries FOR EACH STATEMENT
    EXECUTE FUNCTION ownervault_append_only('audit entries are append-only');
