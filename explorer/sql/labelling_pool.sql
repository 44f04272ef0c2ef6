-- Every dev-split response with its prompt (no judge output: labels are decided by reading).
with final as (
    select g.checkpoint_id, g.prompt_id, p.suite, p.category, p.kind, p.text as prompt, g.response
    from ev.generations g
    join ev.prompts p on p.id = g.prompt_id
    where p.split = 'dev'
)
select * from final order by checkpoint_id, prompt_id
