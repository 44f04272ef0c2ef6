-- Every saved decision record, newest first, exactly as stored (verified against its hash on read).
with final as (
    select id, created_at, author, checkpoint_id, lambda_safe, lambda_helpful, judge, rationale, payload, content_hash
    from rv.decisions
)
select * from final order by id desc
