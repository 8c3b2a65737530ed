PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE records (
    kiosk TEXT NOT NULL,
    id TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    created TEXT NOT NULL,
    received_at REAL NOT NULL,
    body TEXT NOT NULL,
    sha BLOB,
    envelope TEXT,
    digest TEXT,
    key_id TEXT,
    PRIMARY KEY (kiosk, id),
    UNIQUE (kiosk, stream, seq)
);
INSERT INTO records VALUES('k-old-01','01JDX600000000000000000001','0123456789abcdef',1,'rating','2026-12-02T09:00:00.000+07:00',1796307398.6661167144,'{"level":"hai_long"}',X'5ef9de43942c6b8aaab77008cae5990d1d4dea47693e8645d28202de4050cb84','{"v":1,"type":"record","kind":"rating","kiosk":"k-old-01","stream":"0123456789abcdef","seq":1,"id":"01JDX600000000000000000001","created":"2026-12-02T09:00:00.000+07:00","body":{"level":"hai_long"},"sig":{"alg":"ed25519","kid":"VHCfjoEd8Yyypne1A81WhQ","value":"KVCOeBEzMQjwUKdsI6h2OyORNWLpnU7MrVUIfkaYlTgucHBKcS1__D0NTaLuIcunfzdbbMaVQXR_-7Fny5UNBA"}}','TQlVfYqc-BpmdMClwRMbWPAiNdLUPu6gvSd3Ul3ANck','VHCfjoEd8Yyypne1A81WhQ');
INSERT INTO records VALUES('k-old-01','01JDX600000000000000000002','0123456789abcdef',2,'rating','2026-12-02T09:00:00.000+07:00',1796307398.6661167144,'{"level":"hai_long"}',X'5ef9de43942c6b8aaab77008cae5990d1d4dea47693e8645d28202de4050cb84','{"v":1,"type":"record","kind":"rating","kiosk":"k-old-01","stream":"0123456789abcdef","seq":2,"id":"01JDX600000000000000000002","created":"2026-12-02T09:00:00.000+07:00","body":{"level":"hai_long"},"sig":{"alg":"ed25519","kid":"VHCfjoEd8Yyypne1A81WhQ","value":"u3rckFiekfLMn4xzjWKmEOY0UNLNqEke4OSxMruE_lAzivRPo3lvlRLzduItVUt8Rg9E2_ffpqezt4F3GqkrAQ"}}','O4X_fmsbnOAH4pJ4_D45Za5gg6nsJCR5Vo746g10tA4','VHCfjoEd8Yyypne1A81WhQ');
INSERT INTO records VALUES('k-old-01','01JDX600000000000000000003','0123456789abcdef',3,'rating','2026-12-02T09:00:00.000+07:00',1796307398.6661167144,'{"level":"hai_long"}',X'5ef9de43942c6b8aaab77008cae5990d1d4dea47693e8645d28202de4050cb84','{"v":1,"type":"record","kind":"rating","kiosk":"k-old-01","stream":"0123456789abcdef","seq":3,"id":"01JDX600000000000000000003","created":"2026-12-02T09:00:00.000+07:00","body":{"level":"hai_long"},"sig":{"alg":"ed25519","kid":"VHCfjoEd8Yyypne1A81WhQ","value":"-G5yZY6hgG-k0XZV78K3aK1EsrRiNtx5B4WDNMqZ_GnIQZTo2Ej9ZpKUv5uWQq1w9xi0eL8zEfxwuWVyIfnmCA"}}','nRmiNVihmiIV3qnu9fg0GylqMzi1A72rgVf4KKj228Y','VHCfjoEd8Yyypne1A81WhQ');
INSERT INTO records VALUES('k-old-01','01JDX600000000000000000004','0123456789abcdef',5,'rating','2026-12-02T09:00:00.000+07:00',1796307398.6661167144,'{"level":"hai_long"}',X'5ef9de43942c6b8aaab77008cae5990d1d4dea47693e8645d28202de4050cb84','{"v":1,"type":"record","kind":"rating","kiosk":"k-old-01","stream":"0123456789abcdef","seq":5,"id":"01JDX600000000000000000004","created":"2026-12-02T09:00:00.000+07:00","body":{"level":"hai_long"},"sig":{"alg":"ed25519","kid":"VHCfjoEd8Yyypne1A81WhQ","value":"iHnqZgatynaEYv7v6dWkPPvRdUX5Q4FRlf72dO-3mEFtVUVsEJvwegwvfC41lZDdgBl7dTZtUpEhBwsY_-0aCw"}}','4Vb7_9ufP0o76V3ddItE-E7IJaXZ8uxGlSzdTxZYLcs','VHCfjoEd8Yyypne1A81WhQ');
INSERT INTO records VALUES('k-old-02','01JDX600000000000000000005','fedcba9876543210',1,'chunk','2026-12-02T09:00:00.000+07:00',1796307398.6661167144,'{"att":"01JDX5V7Q6M1B8X3Z4K0N2R7TA","index":0,"total":3,"size":100,"sha256":"389f84f7c811f5723ecae4ef0623a0c56a963cbfeedd530941142a5a01ed2933","data":"QVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQQ==","file_sha256":"1ccef9e74785f7519c65df62593a1a5307e759a84856aeba9bce707491c14391","file_size":300}',X'16ec539292bf8ad5babea492515e22609e7c47a39291da6455a5888633bc0023','{"v":1,"type":"record","kind":"chunk","kiosk":"k-old-02","stream":"fedcba9876543210","seq":1,"id":"01JDX600000000000000000005","created":"2026-12-02T09:00:00.000+07:00","body":{"att":"01JDX5V7Q6M1B8X3Z4K0N2R7TA","index":0,"total":3,"size":100,"sha256":"389f84f7c811f5723ecae4ef0623a0c56a963cbfeedd530941142a5a01ed2933","data":"QVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQVBTQQ==","file_sha256":"1ccef9e74785f7519c65df62593a1a5307e759a84856aeba9bce707491c14391","file_size":300},"sig":{"alg":"ed25519","kid":"VHCfjoEd8Yyypne1A81WhQ","value":"kyctjsMTM1011me0BELYEBipIiMRlNw-lhRC2R9xhdr-xSADXL_TyAG4qEN9sfYQ79HtQhO4FM57jeA0XbiQCQ"}}','XV_iDGtab0thqcuyhU_yl-eGuD4cFQWo9dsm-ymFV88','VHCfjoEd8Yyypne1A81WhQ');
INSERT INTO records VALUES('k-old-02','01JDX600000000000000000006','fedcba9876543210',2,'rating','2026-12-02T09:00:00.000+07:00',1796307398.6661167144,'{"level":"hai_long"}',X'5ef9de43942c6b8aaab77008cae5990d1d4dea47693e8645d28202de4050cb84','{"v":1,"type":"record","kind":"rating","kiosk":"k-old-02","stream":"fedcba9876543210","seq":2,"id":"01JDX600000000000000000006","created":"2026-12-02T09:00:00.000+07:00","body":{"level":"hai_long"},"sig":{"alg":"ed25519","kid":"VHCfjoEd8Yyypne1A81WhQ","value":"SVfCdhmh4cMoseOiXu8HfLWc28tsgVbX6ax_55klBBm7Kv5wSJJzLFRlYbO02fk7ZwJ5o-Xz1l8fOxuO987zBw"}}','uKmco1NvUs0BYdzJXy8BxtB_lGmh8gRrXeJ6jwNCpRE','VHCfjoEd8Yyypne1A81WhQ');
CREATE TABLE streams (
    kiosk TEXT NOT NULL,
    stream TEXT NOT NULL,
    contiguous_seq INTEGER NOT NULL DEFAULT 0,
    max_seq INTEGER NOT NULL DEFAULT 0,
    gap_since REAL,
    first_seen REAL NOT NULL,
    updated REAL NOT NULL,
    missing_count INTEGER NOT NULL DEFAULT 0,
    gap_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kiosk, stream)
);
INSERT INTO streams VALUES('k-old-01','0123456789abcdef',3,5,1796307398.6661167144,1796307398.6661167144,1796307398.6661167144,1,1);
INSERT INTO streams VALUES('k-old-02','fedcba9876543210',2,2,NULL,1796307398.6661167144,1796307398.6661167144,0,0);
CREATE TABLE dead_letters (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    topic TEXT NOT NULL,
    topic_kiosk TEXT,
    reason TEXT NOT NULL,
    record_id TEXT,
    payload_len INTEGER NOT NULL,
    payload_head BLOB NOT NULL
, count INTEGER NOT NULL DEFAULT 1, last_at REAL, dedup_key TEXT);
INSERT INTO dead_letters VALUES(1,1796307398.6661167144,'aps/v1/k-old-01/up/records','k-old-01','bad-json: JSONDecodeError',NULL,15,X'6e6f74206a736f6e20617420616c6c',1,1796307398.6661167144,'4d8d5b12aa0bd7985a294d583e1e7efff35795dafb77181c32a8e09771aa5598');
CREATE TABLE rejected_records (
    kiosk TEXT NOT NULL,
    id TEXT NOT NULL,
    stream TEXT,
    seq INTEGER,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (kiosk, id)
);
CREATE TABLE kiosks (
    kiosk TEXT PRIMARY KEY,
    state TEXT,
    state_at REAL,
    last_heartbeat_at REAL,
    queued INTEGER,
    oldest_queued TEXT,
    devices TEXT,
    heartbeat TEXT,
    clock_skew_s REAL,
    clock_skew_at REAL,
    heartbeat_ts REAL,
    state_ts REAL,
    history_at REAL
);
INSERT INTO kiosks VALUES('k-old-01','online',1796307398.6698901653,NULL,NULL,NULL,NULL,NULL,130598.66599999999743,1796307398.6661167144,NULL,NULL,NULL);
INSERT INTO kiosks VALUES('k-old-02',NULL,NULL,NULL,NULL,NULL,NULL,NULL,130598.66599999999743,1796307398.6661167144,NULL,NULL,NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE kiosk_health_history (
    kiosk TEXT NOT NULL,
    at REAL NOT NULL,
    queued INTEGER,
    oldest_queued_s REAL,
    disk_free_bytes INTEGER,
    clock_skew_s REAL,
    agent_version TEXT,
    devices TEXT,
    last_error TEXT,
    PRIMARY KEY (kiosk, at)
) WITHOUT ROWID;
CREATE TABLE stream_gaps (
    kiosk TEXT NOT NULL,
    stream TEXT NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (kiosk, stream, lo)
) WITHOUT ROWID;
INSERT INTO stream_gaps VALUES('k-old-01','0123456789abcdef',4,4,1796307398.6661167144);
CREATE TABLE attachments (
    kiosk TEXT NOT NULL,
    att TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('complete', 'corrupt', 'expired')),
    reason TEXT,
    data BLOB,
    completed_at REAL NOT NULL,
    PRIMARY KEY (kiosk, att)
);
CREATE TABLE attachment_progress (
    kiosk TEXT NOT NULL,
    att TEXT NOT NULL,
    total INTEGER NOT NULL,
    file_size INTEGER NOT NULL,
    file_sha256 TEXT NOT NULL,
    received INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (kiosk, att)
);
INSERT INTO attachment_progress VALUES('k-old-02','01JDX5V7Q6M1B8X3Z4K0N2R7TA',3,300,'1ccef9e74785f7519c65df62593a1a5307e759a84856aeba9bce707491c14391',1,100,1796307398.6661167144,1796307398.6661167144);
CREATE TABLE attachment_chunks (
    kiosk TEXT NOT NULL,
    att TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (kiosk, att, idx)
);
INSERT INTO attachment_chunks VALUES('k-old-02','01JDX5V7Q6M1B8X3Z4K0N2R7TA',0,X'41505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341505341');
CREATE TABLE kiosk_usage (
    kiosk TEXT PRIMARY KEY,
    records INTEGER NOT NULL DEFAULT 0,
    records_bytes INTEGER NOT NULL DEFAULT 0,
    dead_letters INTEGER NOT NULL DEFAULT 0
);
INSERT INTO kiosk_usage VALUES('k-old-01',4,452,1);
INSERT INTO kiosk_usage VALUES('k-old-02',2,591,0);
CREATE TABLE kiosk_limit_events (
    kiosk TEXT NOT NULL,
    event TEXT NOT NULL,
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (kiosk, event)
);
DELETE FROM sqlite_sequence;
INSERT INTO sqlite_sequence VALUES('dead_letters',1);
CREATE INDEX records_kind ON records (kind, received_at);
CREATE INDEX streams_gap_since ON streams (gap_since) WHERE gap_since IS NOT NULL;
CREATE INDEX rejected_stream_seq ON rejected_records (kiosk, stream, seq);
CREATE INDEX stream_gaps_since ON stream_gaps (kiosk, stream, since);
CREATE INDEX attachment_progress_last ON attachment_progress (last_at);
CREATE UNIQUE INDEX dead_letters_dedup ON dead_letters (dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX dead_letters_last ON dead_letters (last_at);
CREATE TRIGGER kiosk_usage_record_out AFTER DELETE ON records BEGIN
    UPDATE kiosk_usage SET records = records - 1,
        records_bytes = records_bytes - (length(OLD.body) + length(OLD.kind)
            + length(OLD.created) + 58)
        WHERE kiosk = OLD.kiosk;
END;
CREATE TRIGGER kiosk_usage_record_body AFTER UPDATE OF body ON records BEGIN
    UPDATE kiosk_usage SET records_bytes = records_bytes
        - length(OLD.body) + length(NEW.body)
        WHERE kiosk = NEW.kiosk;
END;
CREATE TRIGGER kiosk_usage_dead_in AFTER INSERT ON dead_letters BEGIN
    INSERT INTO kiosk_usage (kiosk, dead_letters) VALUES (coalesce(NEW.topic_kiosk, ''), 1)
        ON CONFLICT (kiosk) DO UPDATE SET dead_letters = dead_letters + 1;
END;
CREATE TRIGGER kiosk_usage_dead_out AFTER DELETE ON dead_letters BEGIN
    UPDATE kiosk_usage SET dead_letters = dead_letters - 1
        WHERE kiosk = coalesce(OLD.topic_kiosk, '');
END;
COMMIT;
