-- The fingerprints of the checkpoints named in $ids (ids not stored are left out).
select id, fingerprint from ev.checkpoints where list_contains($ids, id)
