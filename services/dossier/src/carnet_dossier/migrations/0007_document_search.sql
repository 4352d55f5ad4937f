-- Searching a record: titles matched without accents or case, and an order by the
-- document's date (service time, else deposit time) as well as by deposit.
ALTER TABLE documents ADD COLUMN title_search text NOT NULL DEFAULT '';
UPDATE documents SET title_search = translate(
    lower(title),
    'àâäáãåçéèêëíìîïñóòôöõúùûüýÿ',
    'aaaaaaceeeeiiiinooooouuuuyy'
);
CREATE INDEX documents_holder_by_date
    ON documents (holder_id, (coalesce(service_time, created_at)) DESC, document_id DESC);
