-- Decisions are append-only: this is the only statement that writes the table (no update, no delete).
insert into decisions (created_at, author, checkpoint_id, lambda_safe, lambda_helpful, judge, rationale, payload,
                       content_hash)
values ($created_at, $author, $checkpoint_id, $lambda_safe, $lambda_helpful, $judge, $rationale, $payload,
        $content_hash)
returning id
