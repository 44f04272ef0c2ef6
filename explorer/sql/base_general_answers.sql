-- The base model's own answers to held-out general prompts: the reference text of the capability proxy.
with final as (
    select p.id, p.text, g.response
    from ev.generations g
    join ev.prompts p on p.id = g.prompt_id
    where g.checkpoint_id = 'base' and g.gen_key = $gen_key and p.split = $split and p.kind = 'general'
)
select * from final order by id
