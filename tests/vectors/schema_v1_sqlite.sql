-- The SQLite schema (version 1) as first shipped, kept to prove the generated schema matches.
-- Frozen: never edit; tests/test_schema.py compares a new vault's structure with this.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE keys (
    key_id BLOB PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    wrapped BLOB,
    wrapped_by BLOB NOT NULL,
    created_at TEXT NOT NULL,
    state_changed_at TEXT NOT NULL,
    invocations INTEGER NOT NULL DEFAULT 0,
    max_invocations INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX keys_kind ON keys(kind, state);
CREATE INDEX keys_wrapped_by ON keys(wrapped_by);

CREATE TABLE subjects (
    pseudonym TEXT PRIMARY KEY,
    subject_ref BLOB UNIQUE,
    key_id BLOB NOT NULL REFERENCES keys(key_id),
    created_at TEXT NOT NULL,
    erased_at TEXT,
    minor_until BLOB,
    restricted_to TEXT,
    hold_until TEXT,
    ended_at TEXT
) WITHOUT ROWID;

CREATE TABLE records (
    record_id TEXT PRIMARY KEY,
    record_type TEXT NOT NULL,
    pseudonym TEXT NOT NULL REFERENCES subjects(pseudonym),
    key_id BLOB NOT NULL,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    clear TEXT NOT NULL,
    sealed BLOB NOT NULL,
    erased INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX records_subject ON records(pseudonym);
CREATE INDEX records_key ON records(key_id);

CREATE TABLE blind_index (
    token BLOB NOT NULL,
    record_id TEXT NOT NULL,
    field TEXT NOT NULL,
    PRIMARY KEY (token, record_id, field)
) WITHOUT ROWID;
CREATE INDEX blind_index_record ON blind_index(record_id);

CREATE TABLE consents (
    consent_id TEXT PRIMARY KEY,
    pseudonym TEXT NOT NULL,
    purpose TEXT NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('grant', 'withdraw')),
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    channel TEXT NOT NULL,
    evidence TEXT NOT NULL,
    notice_version TEXT,
    fields TEXT NOT NULL,
    separate INTEGER NOT NULL,
    given_by TEXT NOT NULL,
    expires_at TEXT,
    position INTEGER NOT NULL
);
CREATE INDEX consents_subject ON consents(pseudonym, purpose, position);
CREATE TRIGGER consents_no_update BEFORE UPDATE ON consents
BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;
CREATE TRIGGER consents_no_delete BEFORE DELETE ON consents
BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;

CREATE TABLE holds (
    hold_id TEXT PRIMARY KEY,
    pseudonym TEXT NOT NULL,
    reason TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    actor TEXT NOT NULL,
    released_at TEXT
);
CREATE INDEX holds_subject ON holds(pseudonym);

CREATE TABLE rights_requests (
    request_id TEXT PRIMARY KEY,
    pseudonym TEXT,
    kind TEXT NOT NULL,
    received_at TEXT NOT NULL,
    due_at TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT '',
    closed_at TEXT,
    actor TEXT NOT NULL
);

CREATE TABLE disclosures (
    disclosure_id TEXT PRIMARY KEY,
    pseudonym TEXT NOT NULL,
    recipient TEXT NOT NULL,
    purpose TEXT NOT NULL,
    fields TEXT NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL
);
CREATE INDEX disclosures_subject ON disclosures(pseudonym);

CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    cursor TEXT NOT NULL DEFAULT '',
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE incidents (
    incident_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('leak', 'tamper', 'loss')),
    status TEXT NOT NULL CHECK (status IN ('suspected', 'confirmed', 'closed')),
    detected_at TEXT NOT NULL,
    aware_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    document TEXT NOT NULL,
    affected BLOB
);
CREATE INDEX incidents_status ON incidents(status, detected_at);

CREATE TABLE outbox (
    notification_id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents(incident_id),
    hook TEXT NOT NULL,
    audience TEXT NOT NULL,
    subject TEXT,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivering', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    claims INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
CREATE INDEX outbox_incident ON outbox(incident_id);

CREATE TABLE audit_entries (
    seq INTEGER PRIMARY KEY,
    entry BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
);
CREATE TABLE audit_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL,
    frontier BLOB NOT NULL
);
CREATE TABLE audit_checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
