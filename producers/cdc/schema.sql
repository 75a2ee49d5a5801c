-- The operational table users change; Debezium captures it through the publication below.
-- Versions come from one sequence, assigned by a trigger on every INSERT and UPDATE: the database
-- is the clock, so a later change always carries a larger version (also after a delete and
-- re-insert), and the pipeline's version fence can compare them.
CREATE SEQUENCE IF NOT EXISTS documents_version_seq;

CREATE TABLE IF NOT EXISTS documents (
    id          text        NOT NULL,
    tenant      text        NOT NULL DEFAULT 'default',
    title       text        NOT NULL DEFAULT '',
    body        text        NOT NULL DEFAULT '',
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     bigint      NOT NULL DEFAULT nextval('documents_version_seq'),
    PRIMARY KEY (tenant, id)
);

-- Deletes must carry the whole old row (its version) in Debezium's `before`.
ALTER TABLE documents REPLICA IDENTITY FULL;

CREATE OR REPLACE FUNCTION documents_stamp_version() RETURNS trigger AS $$
BEGIN
    NEW.version := nextval('documents_version_seq');
    NEW.updated_at := now();
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS documents_stamp_version ON documents;
CREATE TRIGGER documents_stamp_version
    BEFORE INSERT OR UPDATE ON documents
    FOR EACH ROW EXECUTE FUNCTION documents_stamp_version();

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'streamrag_documents') THEN
        CREATE PUBLICATION streamrag_documents FOR TABLE documents;
    END IF;
END
$$;
