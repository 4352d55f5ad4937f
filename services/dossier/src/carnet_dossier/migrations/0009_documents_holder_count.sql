-- The holder's side counts its matches on a listing's first page (total_size). The index
-- listings walk in date order now also carries every column that count filters on by
-- default, so the count is an index-only scan instead of one heap page per document (a
-- holder's documents are spread over the whole heap). Type and class filters are counted
-- from it too; other filters still read the heap. Extending the index that pages already
-- use, rather than adding another one, keeps the pages' plans as they were and deposits at
-- one index to maintain. Index-only scans need the visibility map kept up to date, which is
-- autovacuum's work.
CREATE INDEX documents_holder_by_date_covering
    ON documents (holder_id, (coalesce(service_time, created_at)) DESC, document_id DESC)
    INCLUDE (status, invisible_to_holder, invisible_to_representatives, type_code, class_code);
DROP INDEX documents_holder_by_date;
ALTER INDEX documents_holder_by_date_covering RENAME TO documents_holder_by_date;
