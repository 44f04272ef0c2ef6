-- The prompts of one split (to pick one from in the live view).
with final as (
    select id, suite, category, kind, text from ev.prompts where split = $split
)
select * from final order by suite, category, id
